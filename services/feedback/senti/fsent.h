/*
 * fsent.h - sentiment of Korean and English customer text, on the box.
 *
 * Pure C, no network, no allocation per call: the language is detected
 * (Hangul or not), the text is split into clauses at contrast markers
 * (하지만, 그런데, 는데, but, however, ...), each clause is scored by a
 * linear model over hashed features (Korean: character n-grams; English:
 * word n-grams), and the clause scores make the label: NEGATIVE or
 * POSITIVE, NEUTRAL inside a calibrated low-confidence band, MIXED when
 * clauses disagree clearly. Aspects (delivery/배송, staff/직원, ...) are
 * found by lexicon with their byte offsets and take the sentiment of the
 * clause they sit in.
 *
 * The model is one binary blob (the format is private to fsent.c, versioned
 * and checked on load); the trained model is built into the binary
 * (fsent_builtin) and a file may replace it (fsent_load).
 *
 * Thread-safe: a model is read-only once loaded.
 */
#ifndef CXM_FSENT_H
#define CXM_FSENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FSENT_MAX_ASPECTS 16 /* aspects reported per text */
#define FSENT_MAX_TEXT 8192  /* bytes; longer texts are CXM_EINVAL */

typedef struct fsent_model fsent_model;

/* Labels, equal in value to Cxm__V1__SentimentLabel. */
enum {
    FSENT_UNSUPPORTED = 0, /* language not supported: nothing analysed */
    FSENT_NEGATIVE = 1,
    FSENT_NEUTRAL = 2,
    FSENT_POSITIVE = 3,
    FSENT_MIXED = 4
};

typedef enum fsent_lang { FSENT_LANG_DETECT = 0, FSENT_LANG_KO, FSENT_LANG_EN } fsent_lang;

typedef struct fsent_aspect {
    const char *aspect;  /* normalised English name, lower case, static: "delivery" */
    int label;           /* FSENT_* */
    double score;        /* -1 to 1 */
    uint32_t begin, end; /* byte offsets of the mention, [begin, end) */
} fsent_aspect;

typedef struct fsent_result {
    int label;
    double score;         /* -1 (negative) to 1 (positive) */
    double confidence;    /* 0 to 1, calibrated: P(label is right) */
    const char *language; /* "ko", "en", static; "" when unsupported */
    size_t naspects;
    fsent_aspect aspects[FSENT_MAX_ASPECTS];
} fsent_result;

/* The model compiled into the binary. Never NULL. */
const fsent_model *fsent_builtin(void);

/* A model from a file written by the trainer (cxm-senti-train); CXM_EINVAL
 * with a reason in err (256 bytes) for a file that is not one. */
int fsent_load(const char *path, fsent_model **out, char *err);
void fsent_free(fsent_model *m);

/* Analyse text[0..len) (valid UTF-8, at most FSENT_MAX_TEXT bytes; the
 * caller validates). lang FSENT_LANG_DETECT detects; text in neither
 * language gives FSENT_UNSUPPORTED. Aspects only when asked. Returns 0, or
 * CXM_EINVAL for a text over the limit. */
int fsent_analyze(const fsent_model *m, const char *text, size_t len, fsent_lang lang, bool aspects,
                  fsent_result *out);

#endif
