/*
 * fsent_impl.h - private to the sentiment library (fsent*.c) and its trainer
 * (train.c): the in-memory model, the feature extractor both share, and the
 * model file format. Nothing else includes this.
 *
 * Training and scoring must see exactly the same features, so the trainer
 * calls the same extractor (fsent__features) the library scores with; the
 * only difference is the sink: the library sums weights, the trainer
 * collects hashed indices.
 */
#ifndef CXM_FSENT_IMPL_H
#define CXM_FSENT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "feedback/senti/fsent.h"

#define FSENT__MAGIC "CXMSENT1"
#define FSENT__VERSION 1u
#define FSENT__HEADER 32u  /* magic, version, nsections, total size, checksum */
#define FSENT__SECTION 64u /* one per language */
#define FSENT__MIN_BITS 8u
#define FSENT__MAX_BITS 22u
#define FSENT__MAX_CLAUSES 32

/* Feature switches of a language table (flags). */
#define FSENT__F_WORDS 1u   /* ko: whole words; en: word unigrams */
#define FSENT__F_BIGRAMS 2u /* en: word bigrams */
#define FSENT__F_ROLES 8u   /* a clause before a contrast also gets role-tagged copies */
#define FSENT__F_NORM 32u   /* z divides the weights' sum by sqrt(feature count) */
#define FSENT__F_ALL (FSENT__F_WORDS | FSENT__F_BIGRAMS | FSENT__F_ROLES | FSENT__F_NORM)

/* One language's linear model: z = bias + scale * sum(w[feature]), and the
 * calibration P(positive) = sigmoid(platt_a * z + platt_b). */
typedef struct fsent__table {
    bool present;
    uint32_t bits;      /* 2^bits weights */
    uint32_t ngram_max; /* ko: character n-grams 1..ngram_max (3 or 4); en: 0 */
    uint32_t flags;     /* FSENT__F_* */
    float scale, bias;
    float platt_a, platt_b;
    float neutral; /* confidence below which a text or clause is NEUTRAL */
    const int8_t *w;
} fsent__table;

struct fsent_model {
    fsent__table t[2]; /* [0] Korean, [1] English */
    void *owned;       /* the file's bytes when loaded, else NULL */
};

/* A word of a fixed list, with its length (lists are scanned per word). */
typedef struct fsent__word {
    const char *s;
    size_t n;
} fsent__word;
#define FSENT__W(lit)                                                                              \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

/* A weight at least a quarter of its table's largest (int8 127) counts as
 * evidence in fsent.c's confidence cap. */
#define FSENT__STRONG 32

/* Where features go: summed into sum against w, or (w NULL) their indices
 * collected into idx while n < cap; n counts them all either way. */
typedef struct fsent__sink {
    const int8_t *w;
    uint32_t shift; /* 64 - bits: an index is the hash's top bits */
    uint64_t role;  /* non-zero: every feature also emitted xor role */
    int64_t sum;
    uint32_t strong; /* features whose weight reaches FSENT__STRONG either way */
    uint32_t *idx;
    size_t n, cap;
} fsent__sink;

/* The features of clause i of nc, text[0..len), in language lang
 * (FSENT_LANG_KO or FSENT_LANG_EN) under table t's settings. A clause
 * before a contrast (i < nc - 1) is marked when t's flags ask
 * (FSENT__F_ROLES): "good, but ..." may weigh differently from "good". */
void fsent__features(const fsent__table *t, fsent_lang lang, const char *text, size_t len, int i,
                     int nc, fsent__sink *s);

/* Clause boundaries of text[0..len): fills begin[i], end[i] of at most
 * FSENT__MAX_CLAUSES clauses covering the text in order; returns the count
 * (at least 1 when len > 0). */
int fsent__clauses(fsent_lang lang, const char *text, size_t len, uint32_t *begin, uint32_t *end);

/* Validate a model image and point m's tables into it (no copy); CXM_EINVAL
 * with a reason in err (256 bytes). */
int fsent__parse(const uint8_t *p, size_t n, fsent_model *m, char *err);

/* The linear score of a weight sum over n features under t's settings. */
static inline double fsent__z(const fsent__table *t, int64_t sum, size_t n)
{
    double x = (double)t->scale * (double)sum;
    if ((t->flags & FSENT__F_NORM) && n > 1)
        x /= __builtin_sqrt((double)n);
    return t->bias + x;
}

/* Write the present tables of t[0..2), weights and all, to path; CXM_EIO
 * with a reason in err (256 bytes). */
int fsent__write(const char *path, const fsent__table t[2], char *err);

#endif
