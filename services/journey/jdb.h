/*
 * jdb.h - where journeys live in LMDB: the only code that knows the journey
 * tables, their handles and key layouts.
 *
 * Named databases in the shared environment:
 *   journey.dedup     event_id -> received_at (i64 BE): idempotency of ingest
 *   journey.pending   sequence (u64 BE) -> packed TouchpointEvent accepted but
 *                     not yet resolved to a customer (received_at set)
 *   journey.tl        (home, at_ms, eid) -> packed TouchpointEvent (its
 *                     customer_id = home); stage is NOT kept here: it lives
 *                     in the record (cols) and is filled in on reads, so a
 *                     stage rewrite never touches the full events
 *   journey.cols      home -> array of jrec sorted by (at_ms, eid)
 *   journey.dict      "s" + string -> u32 id; "i" + u32 BE -> string
 *   journey.merged    source customer id -> target customer id
 *   journey.members   (target, source) -> ""
 *   journey.groups    root with merged ids -> its group as the analytics
 *                     read it: u32 nhomes, each home as u16 length + bytes,
 *                     zero padding to 8, then the merged jrec array (home
 *                     set). Derived, kept by jdb_group_save on every
 *                     recomputation, so a query reads one value per merged
 *                     customer instead of walking its merges
 *   journey.state     root customer id -> packed GetJourneyStateResponse
 *                     (stage, since, transitions (latest 50), count,
 *                     time_in_stage up to the latest transition, version)
 *   journey.segments  (segment id, customer id) -> ""
 *   journey.csegs     (customer id, segment id) -> "": erasure's index
 *   journey.feedback  (touchpoint, answered_at, response id) -> kind u8 +
 *                     score i32 BE
 *   journey.rules     "current" -> packed GetStageRulesResponse (rules,
 *                     version, updated_at)
 *   journey.idents    (type, custom type, value) -> customer id an identity
 *                     ref was resolved to here: reads by identity use it
 *                     (they must not create profiles)
 *   journey.meta      counters: "seq" (pending), "dict" (next id),
 *                     "sweep" (dedup sweep position), "dropped", and the
 *                     recomputation's progress
 *
 * A "home" is the customer id an event was resolved to when it was stored;
 * a "root" is where a home leads by following journey.merged (transitive:
 * a target merged again). Merges never move stored rows: a root's journey
 * is the union of its group's homes (root first, then every id merged into
 * it, transitively), so an unmerge is exact.
 *
 * Functions take a transaction (writes need a write transaction), return 0
 * or a CXM_E* code (CXM_ENOTFOUND for an absent key), and allocate results
 * in the given arena unless they say they point into the map.
 */
#ifndef CXM_JOURNEY_JDB_H
#define CXM_JOURNEY_JDB_H

#include <stdbool.h>
#include <stdint.h>

#include "cxm/store.h"
#include "cxm/v1/journey.pb-c.h"
#include "jrec.h"

#define JDB_MAX_HOMES 255        /* ids in one merge group (jrec.home is a u8) */
#define JDB_DICT_MAX 131070      /* distinct strings: 65535 event types + touchpoints */
#define JDB_DICT_OTHER "(other)" /* what a string past the cap is stored as */

typedef struct jdb jdb;

/* Open the tables in store and load the dictionary cache. Must not be called
 * inside a transaction. */
int jdb_open(cxm_store *store, jdb **out);
void jdb_close(jdb *db);
cxm_store *jdb_store(const jdb *db);

/* The deployment's base currency (ISO 4217, or "" for none): an event's
 * value counts in totals when its currency is empty or this one. Set once
 * after open, before any event is stored. */
void jdb_set_base_currency(jdb *db, const char *code);

/* ---- ingest ---- */

/* Record event_id as received at now, unless a copy was received within
 * window_ms (then *dup is true and nothing is written). An expired entry is
 * replaced. */
int jdb_dedup(cxm_txn *t, jdb *db, const char *event_id, int64_t now, int64_t window_ms, bool *dup);

/* Delete up to max dedup entries received before `before` (ms), walking the
 * table from where the previous sweep stopped (wrapping around), looking at
 * no more than 4 * max entries. *removed counts deletions. */
int jdb_dedup_sweep(cxm_txn *t, jdb *db, int64_t before, size_t max, size_t *removed);

/* Append ev (validated, received_at and occurred_at set) to the pending
 * queue under the next sequence number. */
int jdb_pending_append(cxm_txn *t, jdb *db, cxm_arena *a, const Cxm__V1__TouchpointEvent *ev);

/* The same with ev already packed (the ingest path packs once, off the
 * writer thread). */
int jdb_pending_append_packed(cxm_txn *t, jdb *db, const void *packed, size_t len);

typedef struct jdb_pending {
    uint64_t seq;
    Cxm__V1__TouchpointEvent *ev;
} jdb_pending;

/* The oldest pending events, at most max, decoded into a: *n set. */
int jdb_pending_oldest(cxm_txn *t, jdb *db, cxm_arena *a, size_t max, jdb_pending *out, size_t *n);
int jdb_pending_del(cxm_txn *t, jdb *db, uint64_t seq);

/* Pending events in all (customer_id NULL: O(1)) or whose customer ref is
 * exactly customer_id, among the oldest JDB_PENDING_SCAN_MAX (a bounded
 * scan, so a long backlog never makes a read slow). */
#define JDB_PENDING_SCAN_MAX 65536
int jdb_pending_count(cxm_txn *t, jdb *db, const char *customer_id, uint64_t *n);

/* ---- timeline ---- */

/* The jrec of ev (stage UNSPECIFIED, home 0, type and touchpoint interned
 * in t). */
int jdb_make_rec(cxm_txn *t, jdb *db, const Cxm__V1__TouchpointEvent *ev, jrec *out);

/* Store ev under home: the full event in tl and its record r in home's
 * cols array, in (at_ms, eid) order (a late event goes in its place; the
 * same (at_ms, eid) again replaces the earlier record). ev->customer_id is
 * set to home by the caller. */
int jdb_tl_put(cxm_txn *t, jdb *db, cxm_arena *a, const char *home,
               const Cxm__V1__TouchpointEvent *ev, const jrec *r);

/* The full event of record r stored under home, decoded into a. */
int jdb_tl_get(cxm_txn *t, jdb *db, cxm_arena *a, const char *home, const jrec *r,
               Cxm__V1__TouchpointEvent **out);

/* home's records, aligned (copied into a when the map's copy is not). */
int jdb_cols_get(cxm_txn *t, jdb *db, cxm_arena *a, const char *home, const jrec **recs, size_t *n);
/* Replace home's records (same events, e.g. new stages). */
int jdb_cols_put(cxm_txn *t, jdb *db, const char *home, const jrec *recs, size_t n);

/* ---- dictionary ---- */

/* The id of s, made in t when new (id JDB_DICT_OTHER's once the cap is
 * reached, logged once). New ids become visible to jdb_dict_id/name only
 * after jdb_dict_commit (called after t committed); jdb_dict_rollback
 * forgets them (t aborted or reruns). */
int jdb_dict_intern(cxm_txn *t, jdb *db, const char *s, uint32_t *id);
void jdb_dict_commit(jdb *db);
void jdb_dict_rollback(jdb *db);

/* A jdict over the cache, falling back on t for ids committed by another
 * thread since (names then copied into a). ctx storage is the caller's. */
typedef struct jdb_dict_ctx {
    jdb *db;
    cxm_txn *t;
    cxm_arena *a;
} jdb_dict_ctx;
jdict jdb_dict(jdb_dict_ctx *ctx);

/* ---- merges ---- */

/* source merged into target. When source was merged into another id
 * before (no unmerge seen), that id's members row of source and its saved
 * group go (its root must be recomputed by the caller). */
int jdb_merge_set(cxm_txn *t, jdb *db, const char *source, const char *target);
/* CXM_ENOTFOUND when source was not merged into target. */
int jdb_merge_clear(cxm_txn *t, jdb *db, const char *source, const char *target);

/* Where id leads along merges (id itself when not merged), in a. */
int jdb_root(cxm_txn *t, jdb *db, cxm_arena *a, const char *id, const char **root);

/* root and every id merged into it, transitively, root first; at most
 * JDB_MAX_HOMES (CXM_ETOOBIG past it). */
int jdb_group(cxm_txn *t, jdb *db, cxm_arena *a, const char *root, const char ***homes, size_t *n);

/* The group's records merged in (at_ms, eid) order, home set to the index
 * into homes. */
int jdb_group_recs(cxm_txn *t, jdb *db, cxm_arena *a, const char *const *homes, size_t nhomes,
                   jrec **recs, size_t *n);

/* Keep (nhomes > 1) or drop (nhomes <= 1) root's row in journey.groups:
 * the group and its records with their stages, as jrn_recompute made them. */
int jdb_group_save(cxm_txn *t, jdb *db, const char *root, const char *const *homes, size_t nhomes,
                   const jrec *recs, size_t n);

/* Drop id's row in journey.groups (id was merged into another customer). */
int jdb_group_drop(cxm_txn *t, jdb *db, const char *id);

/* True when id has events stored under it or is a merge target. */
int jdb_known(cxm_txn *t, jdb *db, const char *id, bool *known);

/* Remember that identity id was resolved to customer_id; and look it up
 * (CXM_ENOTFOUND when never seen here). */
int jdb_ident_put(cxm_txn *t, jdb *db, const Cxm__V1__Identity *id, const char *customer_id);
int jdb_ident_get(cxm_txn *t, jdb *db, cxm_arena *a, const Cxm__V1__Identity *id,
                  const char **customer_id);

/* ---- state and rules ---- */

int jdb_state_get(cxm_txn *t, jdb *db, cxm_arena *a, const char *root,
                  Cxm__V1__GetJourneyStateResponse **out);
int jdb_state_put(cxm_txn *t, jdb *db, cxm_arena *a, const char *root,
                  const Cxm__V1__GetJourneyStateResponse *s);

/* How many roots have a state row (the roots with events). */
int jdb_state_count(cxm_txn *t, jdb *db, uint64_t *n);

/* The stored rule set, or CXM_ENOTFOUND (the defaults are in force). */
int jdb_rules_get(cxm_txn *t, jdb *db, cxm_arena *a, Cxm__V1__GetStageRulesResponse **out);
int jdb_rules_put(cxm_txn *t, jdb *db, cxm_arena *a, const Cxm__V1__GetStageRulesResponse *r);

/* A u64 in journey.meta (absent reads 0). */
int jdb_meta_get(cxm_txn *t, jdb *db, const char *name, uint64_t *v);
int jdb_meta_put(cxm_txn *t, jdb *db, const char *name, uint64_t v);

/* ---- replicated from other services ---- */

int jdb_segment_set(cxm_txn *t, jdb *db, const char *segment_id, const char *customer_id, bool in);
int jdb_in_segment(cxm_txn *t, jdb *db, const char *segment_id, const char *customer_id, bool *in);

int jdb_feedback_put(cxm_txn *t, jdb *db, const char *touchpoint, int64_t answered_at,
                     const char *response_id, int kind, int32_t score);
/* NPS and CSAT of touchpoint from answers in [from, to). */
int jdb_feedback_scores(cxm_txn *t, jdb *db, const char *touchpoint, int64_t from, int64_t to,
                        Cxm__V1__TouchpointFeedback *out);

/* ---- analytics source ---- */

/* Every root (after `after`, "" = from the first, in id order), one at a
 * time, with its group's records; only roots in segment_id when it is set
 * (NULL or ""). Customers without merges are handed out from their stored
 * array without merging. */
typedef struct jdb_src jdb_src;
/* How props_match judges conditions on an event's properties
 * (jrules_conditions_hold: passed in so the store needs no rules). */
typedef bool (*jdb_cond_fn)(Cxm__V1__PropertyCondition *const *conds, size_t n,
                            Cxm__V1__TouchpointEvent__PropertiesEntry *const *props, size_t nprops);
int jdb_src_open(cxm_txn *t, jdb *db, const char *after, const char *segment_id, jdb_cond_fn cond,
                 jdb_src **out);
void jdb_src_close(jdb_src *s);
jsource jdb_source(jdb_src *s);

/* ---- erasure ---- */

/* Delete every row of id and of merged[0..n) (timeline, records, state,
 * segments, merges, identities resolved to them, pending events naming
 * them); *count counts them. The saved group of a root one of them was
 * merged into goes too (uncounted: derived), as it holds their records. */
int jdb_erase(cxm_txn *t, jdb *db, const char *id, char *const *merged, size_t n, uint64_t *count);

#endif
