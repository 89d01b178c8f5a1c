/*
 * evalcsv.h - interaction files for the offline evaluator (cxm-eval): strict
 * CSV reading into ids (recoids.h) and a log (recolog.h), train/test splits,
 * and the renumbering that puts the training catalogue first.
 *
 * File format, checked strictly so that a bad export fails loudly instead of
 * skewing the numbers:
 *   - the first line is exactly "user,item,rating,ts", or MovieLens' own
 *     "userId,movieId,rating,timestamp" (same columns, so a MovieLens
 *     ratings.csv reads as it is); a trailing '\r' is accepted on every
 *     line, so CRLF files read;
 *   - every other line has exactly four comma-separated fields; user and item
 *     are non-empty strings of at most EVAL_ID_MAX bytes; rating is a finite
 *     number > 0 (strtod syntax), used as the interaction weight; ts is a
 *     decimal integer (any unit, larger = later; MovieLens: seconds);
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

#include "personalisation/reco/recoids.h"
#include "personalisation/reco/recolog.h"

#define EVAL_ID_MAX 256 /* longest user or item id, in bytes */

/* Read a whole interaction file, appending to out and interning ids into
 * users/items (shared between files, so a train and a test file agree on
 * indices). Returns 0, CXM_EINVAL (format; err names file:line), CXM_EIO
 * (cannot open or read) or CXM_ENOMEM. */
int eval_csv_read(const char *path, recoids *users, recoids *items, recolog *out, char *err,
                  size_t errlen);

typedef enum eval_split_kind {
    EVAL_SPLIT_RANDOM = 1, /* per user, a seeded shuffle */
    EVAL_SPLIT_TEMPORAL,   /* per user, the latest by ts (ties: higher item index) */
} eval_split_kind;

/* Split a de-duplicated log (sorted by user, as recolog_dedupe leaves it)
 * per user: round(frac * n) of a user's n interactions go to test, but at
 * least one always stays in train, so a user with one interaction is train
 * only. The same seed and input give the same split (cxm_splitmix64, hash.h; the seed is
 * unused by EVAL_SPLIT_TEMPORAL). train and test are appended to. Returns 0,
 * CXM_EINVAL (frac outside [0, 1]) or CXM_ENOMEM. */
int eval_split(const recolog *all, eval_split_kind kind, double frac, uint64_t seed, recolog *train,
               recolog *test);

/* Renumber users and items so that those seen in train come first (each
 * group in byte order of the ids, the numbering recodb trains with, so
 * that cxm-eval and the service train the same model): the catalogue is then
 * 0..*nitems_train-1, and test-only items keep indices >= it, relevant but
 * never recommendable. Applies to ids, train and test. Returns 0 or
 * CXM_ENOMEM. */
int eval_reindex(recoids *users, recoids *items, recolog *train, recolog *test,
                 uint32_t *nusers_train, uint32_t *nitems_train);

#endif
