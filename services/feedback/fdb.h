/*
 * fdb.h - where the feedback service keeps its data in LMDB: the only code
 * that knows its tables and key layouts.
 *
 * Named databases in the shared environment (prefix fb_):
 *   fb_survey_cur  survey_id -> u32 current version BE + u64 responses BE
 *                  (responses: how many stored responses answered any
 *                  version; a kind change needs it to be 0)
 *   fb_survey_ver  (survey_id, u32 version) -> packed Survey, every version
 *   fb_responses   response_id -> u32 length BE, the packed stored
 *                  SubmitResponseRequest (customer_id, answer time,
 *                  touchpoint, channel and stage resolved), then the packed
 *                  SubmitResponseResponse: the first outcome, for replays
 *   fb_frec        (i64 at_ms, response_id) -> frec (frec.h), answer-time
 *                  order; written and deleted with fagg_apply
 *   fb_cust        (customer_id, i64 at_ms, response_id) -> "": a
 *                  customer's responses, for the recontact gates and erasure
 *   fb_hash        u64 cxm_hash(0, customer_id) BE -> customer_id: whose a
 *                  record is (frec.customer), so the segment filter follows
 *                  the record's customer to the one it was merged into
 *   fb_dict        "s" + name -> u32 id; "i" + u32 BE -> name
 *   fb_meta        "dict" -> u32 next dictionary id
 *   fb_stage       customer_id -> u8 JourneyStage (journey's StageChanged)
 *   fb_seg         (segment_id, u64 cxm_hash(0, customer_id)) -> ""
 *   fb_cseg        (customer_id, segment_id) -> "": erasure's index of fb_seg
 *   fb_merged      source customer_id -> target customer_id
 *   fb_members     (target, source) -> ""
 *
 * Merges never move rows: a customer's responses are those stored under it
 * and under every id merged into it (transitively), so an unmerge is exact.
 *
 * Functions take a transaction (writes need a write transaction), return 0
 * or a CXM_E* code (CXM_ENOTFOUND for an absent key) and allocate results in
 * the given arena. Thread-safe as LMDB is: the fdb itself is read-only after
 * open.
 */
#ifndef CXM_FEEDBACK_FDB_H
#define CXM_FEEDBACK_FDB_H

#include <stdbool.h>
#include <stdint.h>

#include "cxm/store.h"
#include "cxm/v1/feedback.pb-c.h"
#include "fagg.h"
#include "fan.h"
#include "frec.h"

#define FDB_MAX_GROUP 256 /* ids in one merge group */

typedef struct fdb fdb;

/* Open the tables in store (not inside a transaction); agg is the
 * aggregates every frec write and delete updates (not owned). */
int fdb_open(cxm_store *store, const fagg *agg, fdb **out);
void fdb_close(fdb *db);
cxm_store *fdb_store(const fdb *db);

/* ---- surveys ---- */

/* The current version of survey_id (*survey NULL-able) and its response
 * count. CXM_ENOTFOUND when the survey was never stored. */
int fdb_survey_get(cxm_txn *t, fdb *db, cxm_arena *a, const char *survey_id, uint32_t version,
                   Cxm__V1__Survey **survey);
int fdb_survey_head(cxm_txn *t, fdb *db, const char *survey_id, uint32_t *version,
                    uint64_t *responses);

/* Store s (its version set by the caller) as survey_id's current version. */
int fdb_survey_put(cxm_txn *t, fdb *db, cxm_arena *a, const Cxm__V1__Survey *s);

/* Current versions in survey_id order, after `after` ("" = from the first):
 * fn gets each until it returns nonzero (> 0 stops, < 0 is returned). */
typedef int (*fdb_survey_fn)(const Cxm__V1__Survey *s, void *user);
int fdb_survey_list(cxm_txn *t, fdb *db, cxm_arena *a, const char *after, fdb_survey_fn fn,
                    void *user);

/* ---- responses ---- */

/* The stored request and first outcome of response_id; CXM_ENOTFOUND. */
int fdb_response_get(cxm_txn *t, fdb *db, cxm_arena *a, const char *response_id,
                     Cxm__V1__SubmitResponseRequest **req, Cxm__V1__SubmitResponseResponse **resp);

/* Store one response: the request (customer.customer_id, submitted_at,
 * touchpoint, channel and stage resolved), its outcome, its record r (with
 * fagg_apply +1), the customer index and the survey's response count. */
int fdb_response_put(cxm_txn *t, fdb *db, cxm_arena *a, const Cxm__V1__SubmitResponseRequest *req,
                     const Cxm__V1__SubmitResponseResponse *resp, const frec *r);

/* The dictionary id of name (survey ids, touchpoints), made in t when new;
 * ids start at 1 (0 means "none" in frec). */
int fdb_intern(cxm_txn *t, fdb *db, const char *name, uint32_t *id);
/* The name of a dictionary id, in a; CXM_ENOTFOUND for an unknown id. */
int fdb_dict_name(cxm_txn *t, fdb *db, cxm_arena *a, uint32_t id, const char **name);
/* The id of name, or CXM_ENOTFOUND when never interned. */
int fdb_dict_id(cxm_txn *t, fdb *db, const char *name, uint32_t *id);

/* What the recontact gates need about a customer's group (root and every
 * id merged into it) at time at: the latest answer time at or before at
 * (INT64_MIN for none), and the answer times in (at - window, at], oldest
 * first, in the arena (so a gate can say when the window frees up). */
typedef struct fdb_history {
    int64_t last_ms;
    uint64_t in_window;
    const int64_t *window_ms; /* in_window times, ascending */
} fdb_history;
int fdb_history_get(cxm_txn *t, fdb *db, cxm_arena *a, const char *customer_id, int64_t at,
                    int64_t window_ms, fdb_history *out);

/* ---- replicas ---- */

int fdb_stage_set(cxm_txn *t, fdb *db, const char *customer_id, int stage);
/* UNSPECIFIED (0) when unknown. */
int fdb_stage_get(cxm_txn *t, fdb *db, const char *customer_id, int *stage);
int fdb_segment_set(cxm_txn *t, fdb *db, const char *segment_id, const char *customer_id, bool in);
int fdb_in_segment(cxm_txn *t, fdb *db, const char *segment_id, uint64_t customer_hash, bool *in);

/* source merged into (and unmerged from) target. */
int fdb_merge_set(cxm_txn *t, fdb *db, const char *source, const char *target);
int fdb_merge_clear(cxm_txn *t, fdb *db, const char *source, const char *target);
/* Where id leads along merges (id itself when not merged), in a. */
int fdb_root(cxm_txn *t, fdb *db, cxm_arena *a, const char *id, const char **root);
/* root and every id merged into it, transitively, root first. */
int fdb_group(cxm_txn *t, fdb *db, cxm_arena *a, const char *root, const char ***ids, size_t *n);

/* ---- analytics source ---- */

/* A fan_src over the store in t; the source's memory comes from a, which
 * must live as long as the source. segment_id NULL or "" = no segment
 * filter (in_segment NULL); else a record counts when the customer it was
 * recorded under, or the one that customer was merged into, is in the
 * segment. */
int fdb_src(cxm_txn *t, fdb *db, cxm_arena *a, const char *segment_id, fan_src *out);

/* ---- erasure ---- */

/* Delete every response of id and of merged[0..n) (with their records
 * through fagg_apply -1 and their index rows), their stage, segment and
 * merge rows; *count counts the responses and replica rows deleted. */
int fdb_erase(cxm_txn *t, fdb *db, cxm_arena *a, const char *id, char *const *merged, size_t n,
              uint64_t *count);

#endif
