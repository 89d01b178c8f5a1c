/*
 * prof_rpc.h - the ProfileService handlers: the method table, and the state
 * every handler reaches through its call (cxm_call_service_ctx).
 *
 * Reads (GetProfile, ResolveIdentity of a known identity, SearchProfiles,
 * ListSegmentMembers, GetDeletionReceipt) run on the worker thread in an LMDB read transaction.
 * Every write is checked on the worker (prof_check.h), then runs as one
 * write job (svc.h) inside the store's group commit: the job loads the
 * profile, changes it, saves it through the store (pdb.h) and builds the
 * response, all in the transaction; the call is answered after the commit.
 */
#ifndef CXM_PROFILE_RPC_H
#define CXM_PROFILE_RPC_H

#include <stddef.h>

#include "cxm/bus.h"
#include "cxm/svc.h"
#include "cxm/server.h"
#include "cxm/ident.h"
#include "model.h"
#include "pdb.h"

/* The profile service's state, made by the module's open (profile.c) and
 * read-only while it serves. */
typedef struct prof_ctx {
    pdb *db;
    cxm_ident_config ident;
    prof_unique_types unique;
    /* The other services that must confirm an erasure: a receipt lists
     * each as PENDING until it does (pdb_receipt_confirm). */
    const char *const *erasure_services;
    size_t nerasure_services;
    /* Where the events of every change go, in the change's transaction
     * (bus.h): CustomerMerged, CustomerUnmerged, CustomerDeleted,
     * ConsentChanged, SegmentMembershipChanged, TraitsChanged. */
    cxm_bus_producer *events;
    /* This service's own part of an erasure, confirmed on the receipt only
     * after a compaction of its store (svc.h, cxm_svc_erasure_confirmer). */
    cxm_svc_erasure erasure;
} prof_ctx;

/* The confirmer's confirm (svc.h) for profile's own part: the "profile"
 * entry of the receipt becomes DONE, user = the prof_ctx. */
int prof_erasure_confirm(cxm_txn *t, const char *customer_id, const char *receipt_id,
                         uint64_t records, void *user);

/* The bus subscription's apply (bus.h) for the ErasureCompleted events of
 * the erasure services, user = the prof_ctx: the service's entry on the
 * receipt becomes DONE (pdb_receipt_confirm). An event naming another
 * service than its producer, or an unknown receipt, is logged and skipped:
 * retrying could never succeed. */
int prof_erasure_completed(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* Bus apply for the journey service's events: its ErasureCompleted, and
 * StageChanged, which sets the customer's standard trait journey_stage. */
int prof_journey_event(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* Bus apply for the feedback service's FeedbackReceived, which sets
 * last_nps (and its category), last_csat or last_ces when the answer is not
 * older than the stored one, and FollowUpChanged, which sets
 * open_follow_ups. Other events are ignored. */
int prof_feedback_event(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

extern const cxm_method prof_methods[];
extern const size_t prof_nmethods;
extern const cxm_method_access prof_access[];
extern const size_t prof_naccess;

#endif
