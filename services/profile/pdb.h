/*
 * pdb.h - where profiles live in LMDB, and the writes that keep every
 * table consistent with them.
 *
 * Named databases in the shared environment:
 *   profile.profiles    customer id -> packed cxm.v1.Profile
 *   profile.identities  (type, custom type, value) -> customer id
 *   profile.redirects   merged-away customer id -> surviving customer id
 *   profile.merges      merge id -> before/after snapshots of both profiles
 *   profile.segments    segment id -> packed cxm.v1.Segment
 *   profile.members     (segment id, customer id) -> ""
 *   profile.requests    UpsertProfile request id -> customer id
 *   profile.receipts    erased customer id -> packed cxm.v1.DeletionReceipt
 *   profile.receipt_ids receipt id -> erased customer id (filled for receipts
 *                       made before it existed when the store opens)
 *   profile.suppressed  HMAC-SHA256(salt, identity key) -> receipt id: identities
 *                       erased with suppress_identities, kept without the
 *                       personal data itself
 *   profile.meta        "salt" -> 32 random bytes, made when the data is new
 *
 * The store is sealed: these tables, their handles and key layouts are
 * private to pdb.c, and everything the handlers need is a function here.
 *
 * pdb_save is the one way a profile is written: it stores the profile and
 * brings segment membership up to date in the same transaction, so a
 * reader never sees a profile and its memberships disagree.
 *
 * Functions take a transaction (writes need a write transaction: a
 * cxm_store_submit job), return 0 or a CXM_E* code (CXM_ENOTFOUND for an
 * absent key), write out-parameters only on success, and allocate results
 * in the given arena, so they stay valid after the transaction, except
 * where a function says it points into the map.
 */
#ifndef CXM_PROFILE_PDB_H
#define CXM_PROFILE_PDB_H

#include "cxm/store.h"
#include "model.h"

#define PDB_ID_LEN 18 /* "c" + 16 hex digits + NUL */

typedef struct pdb pdb;

/* Open the tables in store (creating the salt on first use). Must not be
 * called inside a transaction. *out is released with pdb_close. */
int pdb_open(cxm_store *store, pdb **out);
void pdb_close(pdb *db);

/* The store the tables live in (for cxm_store_read_begin / submit). */
cxm_store *pdb_store(const pdb *db);

/* A new random id with the given one-letter prefix ("c" customer, "m"
 * merge, "r" receipt) into out[PDB_ID_LEN]. */
void pdb_new_id(char prefix, char *out);

/* ---- profiles ---- */

/* Follow redirects from a (possibly merged-away) customer id to the live
 * profile's id, copied into arena. *redirected tells whether one was taken. */
int pdb_resolve_id(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a,
                   const char **live, bool *redirected);

/* The customer id an identity belongs to, or CXM_ENOTFOUND. */
int pdb_identity_owner(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, cxm_arena *a,
                       const char **customer_id);

/* 0 when a live profile has this id, else CXM_ENOTFOUND. */
int pdb_exists(cxm_txn *t, const pdb *db, const char *customer_id);

/* Load a live profile by id (no redirect), or CXM_ENOTFOUND. */
int pdb_load(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a, prof_profile **out);

/* The stored bytes (a packed cxm.v1.Profile) of a live profile, without
 * decoding: *bytes points into the map and is valid only until t ends (or
 * the next write in t). For replies spliced from stored bytes. */
int pdb_load_packed(cxm_txn *t, const pdb *db, const char *customer_id, const void **bytes,
                    size_t *len);

/* Called for each profile of a scan with the decoded profile (in the
 * scan's arena) and its stored size in bytes: 0 = go on, > 0 = stop (the
 * scan returns 0), < 0 = stop and return that error. */
typedef int (*pdb_profile_fn)(prof_profile *p, size_t stored_len, void *user);

/* Every live profile whose id sorts after `after` ("" = from the first),
 * in id order. */
int pdb_scan(cxm_txn *t, const pdb *db, cxm_arena *a, const char *after, pdb_profile_fn fn,
             void *user);

/* Store p (version and updated time set by the caller), link every identity
 * it lists to it, and update segment membership (p->segment_ids too). */
int pdb_save(cxm_txn *t, const pdb *db, cxm_arena *a, prof_profile *p);

/* Remove a profile, its identity links and memberships (not redirects). */
int pdb_remove(cxm_txn *t, const pdb *db, const prof_profile *p);

/* ---- merges ---- */

/* Make a merged-away customer id resolve to the surviving one, or (clear)
 * to itself again; clearing an absent redirect is CXM_ENOTFOUND. */
int pdb_redirect_set(cxm_txn *t, const pdb *db, const char *from, const char *to);
int pdb_redirect_clear(cxm_txn *t, const pdb *db, const char *from);

/* Merge snapshots: the four profiles a merge needs to be undone. */
typedef struct pdb_snapshot {
    prof_profile *target_before, *source_before, *target_after;
    Cxm__V1__MergeRecord *record;
} pdb_snapshot;

int pdb_put_snapshot(cxm_txn *t, const pdb *db, cxm_arena *a, const pdb_snapshot *s);
int pdb_get_snapshot(cxm_txn *t, const pdb *db, const char *merge_id, cxm_arena *a,
                     pdb_snapshot *out);
/* Erase a merge's snapshot (CXM_ENOTFOUND if it has none). */
int pdb_erase_snapshot(cxm_txn *t, const pdb *db, const char *merge_id);

/* The merge that moved customer_id (a merged-away id) furthest along its
 * redirects: the last hop, the one whose target is live and so the one to
 * undo first. *merge_id is an arena copy. CXM_ENOTFOUND when customer_id
 * is not redirected. */
int pdb_latest_merge_of(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a,
                        const char **merge_id);

/* ---- erasure ---- */

/* Record that an identity was erased with suppression, under a keyed hash
 * (the value itself is not kept). */
int pdb_suppress(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, const char *receipt_id);

/* The receipt id that suppressed this identity (arena copy), or
 * CXM_ENOTFOUND. */
int pdb_suppressed_by(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, cxm_arena *a,
                      const char **receipt_id);

/* The deletion receipt of an erased customer id, or CXM_ENOTFOUND. */
int pdb_receipt_get(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a,
                    Cxm__V1__DeletionReceipt **out);
/* The deletion receipt with this receipt id, or CXM_ENOTFOUND. */
int pdb_receipt_by_id(cxm_txn *t, const pdb *db, const char *receipt_id, cxm_arena *a,
                      Cxm__V1__DeletionReceipt **out);
/* Keep r under r->customer_id, findable by r->receipt_id too. */
int pdb_receipt_put(cxm_txn *t, const pdb *db, cxm_arena *a, const Cxm__V1__DeletionReceipt *r);

/* Record that `service` finished erasing the receipt's customer: its entry
 * becomes DONE with records_erased, at_ms and detail (NULL = ""), and once
 * every service on the receipt is DONE the receipt's completed_at is set
 * to the latest of their times. A service not on the receipt is added as
 * DONE (one enabled after the erasure still counts). Idempotent: a service
 * already DONE is left as it was, *changed false and nothing written; the
 * bus subscriber can apply a redelivered event safely.
 * CXM_ENOTFOUND for an unknown receipt id; CXM_EINVAL when service is not
 * a slug name (cxm_svc_slug_valid), at_ms is not positive, or detail is
 * not UTF-8 of at most PDB_DETAIL_MAX bytes. Needs a write transaction. */
#define PDB_DETAIL_MAX 1024
int pdb_receipt_confirm(cxm_txn *t, const pdb *db, const char *receipt_id, const char *service,
                        uint64_t records_erased, int64_t at_ms, const char *detail, cxm_arena *a,
                        bool *changed);

/* ---- idempotent upserts ---- */

/* The customer an UpsertProfile request id was applied to, or
 * CXM_ENOTFOUND; and remembering it. */
int pdb_request_get(cxm_txn *t, const pdb *db, const char *request_id, cxm_arena *a,
                    const char **customer_id);
int pdb_request_put(cxm_txn *t, const pdb *db, const char *request_id, const char *customer_id);

/* ---- segments ---- */

/* One segment definition, or CXM_ENOTFOUND; and storing one (its
 * membership is not touched: see pdb_evaluate_segment). */
int pdb_segment_get(cxm_txn *t, const pdb *db, const char *segment_id, cxm_arena *a,
                    Cxm__V1__Segment **out);
int pdb_segment_put(cxm_txn *t, const pdb *db, cxm_arena *a, const Cxm__V1__Segment *seg);

/* Every stored segment, in id order. */
int pdb_segments(cxm_txn *t, const pdb *db, cxm_arena *a, Cxm__V1__Segment ***out, size_t *n);

/* Called by pdb_evaluate_segment, in its transaction, for each profile
 * that entered (entered true) or left the segment; customer_id is valid
 * during the call only. 0 = go on, else the evaluation stops with it. */
typedef int (*pdb_member_fn)(cxm_txn *t, const char *customer_id, bool entered, void *user);

/* Re-evaluate one segment over every profile (after its definition
 * changed); returns the member count, and calls on_change (may be NULL)
 * for each profile whose membership changed. */
int pdb_evaluate_segment(cxm_txn *t, const pdb *db, cxm_arena *a, const Cxm__V1__Segment *seg,
                         uint64_t *members, pdb_member_fn on_change, void *user);

/* A page of a segment's member ids in id order: up to limit ids after
 * `after` ("" = from the first) into *ids (arena), *more when others
 * follow, and *total the segment's member count. */
typedef struct pdb_members_page {
    char **ids;
    size_t n;
    uint64_t total;
    bool more;
} pdb_members_page;

int pdb_members(cxm_txn *t, const pdb *db, cxm_arena *a, const char *segment_id, const char *after,
                size_t limit, pdb_members_page *out);

#endif
