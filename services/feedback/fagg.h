/*
 * fagg.h - incremental aggregates of the survey responses, so GetScores and
 * GapAnalysis over millions of responses read a few thousand cells instead
 * of every record.
 *
 * Each response record (frec.h) adds to one score cell (its UTC hour and its
 * dimensions: survey, touchpoint, channel, stage) and to one rating cell per
 * ExpectationRating (hour, survey, channel, stage, rated touchpoint). Cells
 * hold exact counts and sums (score histogram; rating sums, disappointed
 * count, and the sums the Pearson correlation with the NPS score needs), so
 * an answer from cells equals an answer from the records.
 *
 * The store's writers call fagg_apply inside the transaction that writes or
 * deletes the record, so cells never disagree with the records. Readers use
 * fagg_scores_cells / fagg_rating_cells through fan.h. The cell layout is
 * private to fagg.c.
 */
#ifndef CXM_FAGG_H
#define CXM_FAGG_H

#include <stdint.h>

#include "cxm/store.h"
#include "frec.h"

typedef struct fagg fagg;

/* Opens (creates) the aggregate tables in the service's store. */
int fagg_open(cxm_store *store, fagg **out);
void fagg_close(fagg *g);

/* Adds (sign +1) or removes (sign -1, erasure) one record's contribution. */
int fagg_apply(cxm_txn *txn, const fagg *g, const frec *r, int sign);

/* ---- the sums, shared by the cells and by fan.c's record scan ---------- */

/* A double-double: hi + lo carry about 106 bits, so sums of ratings (which
 * may be fractional) and of their exact products do not depend on the order
 * they were added in beyond ~1e-30 relative; the cell path and the record
 * path then agree far below the 1e-9 the tests ask. */
typedef struct fagg_dd {
    double hi, lo;
} fagg_dd;

/* Exact score counts: hist[s] responses scored s (0 to 10). */
typedef struct fagg_scores {
    uint64_t hist[11];
} fagg_scores;

/* The ratings of one touchpoint: all of them, and those given in NPS
 * responses with the sums Pearson's correlation of experience (x) with the
 * NPS score (y) needs. */
typedef struct fagg_rates {
    uint64_t n, disappointed; /* ratings; experience < expectation */
    uint64_t m, sy, syy;      /* NPS ratings; sums of the score and its square */
    fagg_dd se, sx;           /* sums of expectation, experience (all ratings) */
    fagg_dd mx, mxx, mxy;     /* NPS ratings: sums of x, x*x, x*y */
} fagg_rates;

void fagg_dd_add(fagg_dd *a, double b);
void fagg_dd_add_dd(fagg_dd *a, fagg_dd b);
/* a*b added exactly (fma splits the product). */
void fagg_dd_add_prod(fagg_dd *a, double x, double y);

/* Adds (sign +1) or removes (-1) one rating of record r. */
void fagg_rates_add(fagg_rates *t, const frec *r, const frec_rating *rt, int sign);
void fagg_rates_merge(fagg_rates *into, const fagg_rates *from);
void fagg_scores_merge(fagg_scores *into, const fagg_scores *from);

/* ---- readers ----------------------------------------------------------- */

/* A score cell: the responses of one kind, survey, touchpoint, channel and
 * stage answered in one UTC hour or day. */
typedef struct fagg_scell {
    uint8_t kind, channel, stage;
    uint32_t survey, touchpoint;
    const fagg_scores *v; /* valid during the callback only */
} fagg_scell;

/* A rating cell: the ratings of one rated touchpoint in the responses of one
 * survey, channel and stage in one UTC hour or day. */
typedef struct fagg_rcell {
    uint8_t channel, stage;
    uint32_t survey, touchpoint;
    const fagg_rates *v; /* valid during the callback only */
} fagg_rcell;

typedef int (*fagg_scell_fn)(const fagg_scell *c, void *user);
typedef int (*fagg_rcell_fn)(const fagg_rcell *c, void *user);

/* Every cell of the responses answered in [from_ms, to_ms), which must be
 * whole UTC hours (INT64_MIN / INT64_MAX for open ends): whole UTC days
 * come from the day cells, the hours around them from the hour cells. A
 * combination of dimensions may come in several cells. fn's nonzero return
 * stops the walk and is returned; else 0 or a store error. */
int fagg_scores_cells(cxm_txn *txn, const fagg *g, int64_t from_ms, int64_t to_ms, fagg_scell_fn fn,
                      void *user);
int fagg_rating_cells(cxm_txn *txn, const fagg *g, int64_t from_ms, int64_t to_ms, fagg_rcell_fn fn,
                      void *user);

/* The UTC hour (ms) of the first / last response with any cell, or
 * CXM_ENOTFOUND when there is none. */
int fagg_first_hour(cxm_txn *txn, const fagg *g, int64_t *hour_ms);
int fagg_last_hour(cxm_txn *txn, const fagg *g, int64_t *hour_ms);

#endif
