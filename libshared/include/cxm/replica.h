/*
 * replica.h - what a service knows about a customer from other services'
 * events: the journey stage (journey's StageChanged), segment memberships
 * (profile's SegmentMembershipChanged), granted consents (profile's
 * ConsentChanged) and merges (profile's CustomerMerged/CustomerUnmerged).
 *
 * Why a module: a service decides on the request path from these facts
 * (personalisation's eligibility) and must never ask another service
 * synchronously for them; each service keeps its own copy, applied from the
 * bus in the subscription's transaction. One record per customer holds
 * stage, segments and consents, so a decision costs one read.
 *
 * Tables (in the caller's store, names prefixed with `prefix`):
 *   <prefix>.rcust   customer id -> record (stage, since, segments, consents)
 *   <prefix>.ralias  merged-away id -> surviving id
 *   <prefix>.rgroup  surviving id, merged id -> "" (for erasure and unmerge)
 *
 * Limits: a customer's record keeps at most CXM_REPLICA_SEGMENTS_MAX
 * segments and CXM_REPLICA_CONSENTS_MAX granted scopes; an event that would
 * pass them keeps the first ones and logs once (a warning naming the
 * customer id), it never fails the subscription.
 *
 * Threading: thread-safe; state is in the store. Errors: 0 or CXM_E*.
 */
#ifndef CXM_REPLICA_H
#define CXM_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/store.h"
#include "cxm/v1/events.pb-c.h"

#define CXM_REPLICA_SEGMENTS_MAX 256
#define CXM_REPLICA_CONSENTS_MAX 64

typedef struct cxm_replica cxm_replica;

/* Open (creating) the tables "<prefix>.rcust" etc. in store. prefix is a
 * short service name ("pers"), copied. */
int cxm_replica_open(cxm_store *store, const char *prefix, cxm_replica **out);
void cxm_replica_close(cxm_replica *r);

/* Apply one event of profile or journey (a cxm_bus_apply_fn body): the
 * types above change the replica, others are ignored (0). Merges move the
 * source's record into the target's (segments and consents united, the
 * later stage kept) and record the alias; an unmerge removes the alias and
 * gives the source back an empty record (profile re-announces its facts).
 * Returns 0, or a store error (the bus retries). */
int cxm_replica_apply(cxm_txn *t, cxm_replica *r, const Cxm__V1__Event *ev);

/* The surviving id of id (id itself when never merged away), in the arena
 * or pointing at id. */
int cxm_replica_root(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id, const char **root);

/* One customer's facts. Arrays are sorted (bytewise) and point into the
 * arena or into the read transaction's map (valid until it ends). */
typedef struct cxm_replica_customer {
    bool known;          /* any fact recorded */
    int stage;           /* Cxm__V1__JourneyStage; 0 = unknown */
    int64_t stage_since; /* unix ms */
    const char **segments;
    size_t nsegments;
    const char **consents; /* scopes currently GRANTED */
    size_t nconsents;
} cxm_replica_customer;

/* customer_id's facts (not following aliases: pass the root). A customer
 * without a record gets {known = false}, not an error. */
int cxm_replica_get(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *customer_id,
                    cxm_replica_customer *out);

/* Binary searches over a fetched record. */
bool cxm_replica_in_segment(const cxm_replica_customer *c, const char *segment_id);
bool cxm_replica_granted(const cxm_replica_customer *c, const char *scope);

/* Erase customer_id's record, aliases and group rows; *records (may be
 * NULL) gets the count of rows deleted. */
int cxm_replica_erase(cxm_txn *t, cxm_replica *r, const char *customer_id, uint64_t *records);

#endif
