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

#endif
