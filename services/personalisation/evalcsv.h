/*
 * evalcsv.h - interaction files for the offline evaluator (cxm-eval): strict
 * CSV reading, string ids mapped to dense indices, de-duplication,
 * train/test splits and the reco_matrix the recommendation core trains on.
 *
 * File format, checked strictly so that a bad export fails loudly instead of
 * skewing the numbers:
 *   - the first line is exactly "user,item,rating,ts" (a trailing '\r' is
 *     accepted on every line, so CRLF files read);
 *   - every other line has exactly four comma-separated fields; user and item
 *     are non-empty strings of at most EVAL_ID_MAX bytes; rating is a finite
 *     number > 0 (strtod syntax), used as the interaction weight; ts is a
 *     decimal integer (any unit, larger = later);
 *   - quoted fields are not supported: a '"' anywhere is an error, because a
 *     quoted comma would otherwise be silently mis-split;
 *   - blank lines are errors too, except a single final newline.
 * Every error names the file and line ("ratings.csv:3: rating \"x\" is not a
 * number").
 *
 * Indices are given in order of first appearance, so a run is deterministic
 * for a given file. Not thread-safe; one data set per thread.
 */
#ifndef CXM_EVALCSV_H
#define CXM_EVALCSV_H

#include <stddef.h>
#include <stdint.h>

#include "personalisation/reco.h"

#define EVAL_ID_MAX 256 /* longest user or item id, in bytes */

/* String ids <-> dense indices 0..n-1 (open addressing, strings kept for
 * output). Zero-initialise before use. */
typedef struct eval_ids {
    char **names;    /* n strings, index -> id */
    uint32_t n, cap; /* names used / allocated */
    uint32_t *slots; /* hash table of index + 1 (0 = empty), nslots a power of two */
    uint32_t nslots;
} eval_ids;

/* The index of id (len bytes, need not be NUL-terminated), adding it if new.
 * Returns 0 or CXM_ENOMEM / CXM_ETOOBIG (more than UINT32_MAX - 1 ids). */
int eval_ids_intern(eval_ids *ids, const char *id, size_t len, uint32_t *out);
/* The index of id, or UINT32_MAX when unknown. */
uint32_t eval_ids_find(const eval_ids *ids, const char *id);
void eval_ids_free(eval_ids *ids);

/* One interaction, with indices into the data set's eval_ids. */
typedef struct eval_event {
    uint32_t user, item;
    float rating;
    int64_t ts;
} eval_event;

/* A growable list of interactions. Zero-initialise before use. */
typedef struct eval_log {
    eval_event *ev;
    size_t n, cap;
} eval_log;

int eval_log_push(eval_log *log, const eval_event *e);
void eval_log_free(eval_log *log);

/* Read a whole interaction file, appending to out and interning ids into
 * users/items (shared between files, so a train and a test file agree on
 * indices). Returns 0, CXM_EINVAL (format; err names file:line), CXM_EIO
 * (cannot open or read) or CXM_ENOMEM. */
int eval_csv_read(const char *path, eval_ids *users, eval_ids *items, eval_log *out, char *err,
                  size_t errlen);

/* Merge repeated (user, item) pairs, keeping the largest rating and the
 * latest ts; leaves the log sorted by (user, item). */
void eval_log_dedupe(eval_log *log);

typedef enum eval_split_kind {
    EVAL_SPLIT_RANDOM = 1, /* per user, a seeded shuffle */
    EVAL_SPLIT_TEMPORAL,   /* per user, the latest by ts (ties: higher item index) */
} eval_split_kind;

/* Split a de-duplicated log (sorted by user, as eval_log_dedupe leaves it)
 * per user: round(frac * n) of a user's n interactions go to test, but at
 * least one always stays in train, so a user with one interaction is train
 * only. The same seed and input give the same split (splitmix64; the seed is
 * unused by EVAL_SPLIT_TEMPORAL). train and test are appended to. Returns 0,
 * CXM_EINVAL (frac outside [0, 1]) or CXM_ENOMEM. */
int eval_split(const eval_log *all, eval_split_kind kind, double frac, uint64_t seed,
               eval_log *train, eval_log *test);

/* The next value of the splitmix64 sequence in *state: the splits' (and
 * the synthetic benchmark data's) seeded random numbers. */
uint64_t eval_splitmix64(uint64_t *state);

/* Renumber users and items so that those seen in train come first (in order
 * of first appearance in train, then in test): the model's catalogue is then
 * 0..*nitems_train-1, and test-only items keep indices >= it, relevant but
 * never recommendable. Applies to ids, train and test. Returns 0 or
 * CXM_ENOMEM. */
int eval_reindex(eval_ids *users, eval_ids *items, eval_log *train, eval_log *test,
                 uint32_t *nusers_train, uint32_t *nitems_train);

/* Build a CSR matrix (rows sorted ascending and unique) of nusers x nitems
 * from a de-duplicated log whose indices are all below those bounds; ts is
 * filled in. Returns 0, CXM_EINVAL (an index out of bounds) or CXM_ENOMEM. */
int eval_matrix_build(const eval_log *log, uint32_t nusers, uint32_t nitems, reco_matrix *out);
void eval_matrix_free(reco_matrix *m);

#endif
