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
 *   profile.suppressed  HMAC-SHA256(salt, identity key) -> receipt id: identities
 *                       erased with suppress_identities, kept without the
 *                       personal data itself
 *   profile.meta        "salt" -> 32 random bytes, made when the data is new
 *
 * pdb_save is the one way a profile is written: it stores the profile and
 * brings segment membership up to date in the same transaction, so a
 * reader never sees a profile and its memberships disagree.
 *
 * Functions take a transaction (read or write as their names say), return
 * 0 or a CXM_E* code, and allocate results in the given arena.
 */
#ifndef CXM_PROFILE_PDB_H
#define CXM_PROFILE_PDB_H

#include "cxm/store.h"
#include "model.h"

#define PDB_ID_LEN 18 /* "c" + 16 hex digits + NUL */

typedef struct pdb {
    cxm_store *store;
    MDB_dbi profiles, identities, redirects, merges, segments, members, requests, receipts;
    MDB_dbi suppressed, meta;
    uint8_t salt[32];
} pdb;

/* Open the tables (creating the salt on first use). */
int pdb_open(cxm_store *store, pdb *db);

/* Record that an identity was erased with suppression, under a keyed hash
 * (the value itself is not kept). */
int pdb_suppress(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, const char *receipt_id);

/* The receipt id that suppressed this identity (arena copy), or
 * CXM_ENOTFOUND. */
int pdb_suppressed_by(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, cxm_arena *a,
                      const char **receipt_id);

/* A new random id with the given one-letter prefix ("c" customer, "m"
 * merge, "r" receipt) into out[PDB_ID_LEN]. */
void pdb_new_id(char prefix, char *out);

/* The key of an identity in profile.identities (normalised value). */
int pdb_identity_key(const Cxm__V1__Identity *id, uint8_t *buf, size_t *len);

/* Follow redirects from a (possibly merged-away) customer id to the live
 * profile's id, copied into arena. *redirected tells whether one was taken. */
int pdb_resolve_id(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a,
                   const char **live, bool *redirected);

/* The customer id an identity belongs to, or CXM_ENOTFOUND. */
int pdb_identity_owner(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, cxm_arena *a,
                       const char **customer_id);

/* Load a live profile by id (no redirect), or CXM_ENOTFOUND. */
int pdb_load(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a, prof_profile **out);

/* Store p (version and updated time set by the caller), link every identity
 * it lists to it, and update segment membership (p->segment_ids too). */
int pdb_save(cxm_txn *t, const pdb *db, cxm_arena *a, prof_profile *p);

/* Remove a profile, its identity links and memberships (not redirects). */
int pdb_remove(cxm_txn *t, const pdb *db, const prof_profile *p);

/* Pack m into arena memory and store it under key. */
int pdb_put_message(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a,
                    const ProtobufCMessage *m);

/* Merge snapshots: the four profiles a merge needs to be undone. */
typedef struct pdb_snapshot {
    prof_profile *target_before, *source_before, *target_after;
    Cxm__V1__MergeRecord *record;
} pdb_snapshot;

int pdb_put_snapshot(cxm_txn *t, const pdb *db, cxm_arena *a, const pdb_snapshot *s);
int pdb_get_snapshot(cxm_txn *t, const pdb *db, const char *merge_id, cxm_arena *a,
                     pdb_snapshot *out);

/* Every stored segment, in id order. */
int pdb_segments(cxm_txn *t, const pdb *db, cxm_arena *a, Cxm__V1__Segment ***out, size_t *n);

/* Re-evaluate one segment over every profile (after its definition
 * changed); returns the member count. */
int pdb_evaluate_segment(cxm_txn *t, const pdb *db, cxm_arena *a, const Cxm__V1__Segment *seg,
                         uint64_t *members);

#endif
