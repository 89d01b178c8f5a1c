/*
 * fan.h - feedback analytics: GetScores and GapAnalysis over the response
 * records (frec.h), exactly as proto/cxm/v1/feedback.proto defines them.
 *
 * The computation is kept apart from the store: the caller hands a source
 * (fan_src) that scans records in answer-time order and names dictionary
 * ids, so the same code runs over the service's LMDB tables and over the
 * in-memory records of the unit and reference tests. When the source also
 * hands the incremental aggregates (fagg.h), a query they can answer (no
 * segment filter, a zone whose offsets are whole hours) reads them instead
 * of the records; the two paths give the same numbers.
 *
 * Which path: the cells when the source has them (agg), the request has no
 * segment filter (membership is per customer, cells are not) and the
 * buckets start on UTC hours (no buckets, HOUR buckets, or a zone whose
 * offsets over the range are whole hours); the partial hours at the edges
 * of each bucket (a range off the hour) are then read from the records.
 * Else every record in range is scanned. GapAnalysis has no zone and no
 * segment: it reads the cells whenever agg is set.
 *
 * Ranges: from inclusive, to exclusive, 0 = open. Without buckets an open
 * end is simply unbounded. With buckets, the series must be finite: an
 * open end is bounded by the data, so the series runs from the bucket
 * holding the first response stored in range to the bucket holding the
 * last (responses of any kind and survey, so series of different kinds over
 * the same data line up); no response at all gives groups without buckets.
 *
 * Validation: each function first checks its request and answers
 * CXM_EINVAL with a message naming the field (svc.h conventions) in err.
 * Results are allocated in the arena; nothing is kept between calls.
 * Thread-safe: no state of its own.
 */
#ifndef CXM_FAN_H
#define CXM_FAN_H

#include <stdbool.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/svc.h"
#include "cxm/v1/feedback.pb-c.h"
#include "fagg.h"
#include "frec.h"

/* Called for each record; nonzero stops the scan and is returned. */
typedef int (*fan_rec_fn)(const frec *r, void *user);

typedef struct fan_src {
    /* Every record answered in [from_ms, to_ms) (INT64_MIN / INT64_MAX for
     * open ends), oldest first; returns 0, fn's nonzero value, or a CXM_E*
     * code of the store. */
    int (*scan)(void *src, int64_t from_ms, int64_t to_ms, fan_rec_fn fn, void *user);
    /* The name of dictionary id (touchpoint or survey id); NULL if unknown. */
    const char *(*name)(void *src, uint32_t id);
    /* The dictionary id of name, or 0 when the name was never stored (a
     * filter naming it then matches nothing). */
    uint32_t (*id)(void *src, const char *name);
    /* GetScores' segment_id filter: is the customer (frec.customer) in the
     * request's segment now? NULL when the request has no segment_id. */
    bool (*in_segment)(void *src, uint64_t customer);
    void *src;
    /* The aggregates kept in step with the records, and the read
     * transaction to read them in; agg NULL = scan the records only. */
    const fagg *agg;
    cxm_txn *txn;
} fan_src;

/* GetScoresRequest -> GetScoresResponse. */
int fan_scores(const fan_src *s, const Cxm__V1__GetScoresRequest *req, cxm_arena *a,
               Cxm__V1__GetScoresResponse **out, char err[CXM_SVC_ERR_MAX]);

/* GapAnalysisRequest -> GapAnalysisResponse. */
int fan_gaps(const fan_src *s, const Cxm__V1__GapAnalysisRequest *req, cxm_arena *a,
             Cxm__V1__GapAnalysisResponse **out, char err[CXM_SVC_ERR_MAX]);

#endif
