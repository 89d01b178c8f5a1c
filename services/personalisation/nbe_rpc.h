/*
 * nbe_rpc.h - the PersonalisationService handlers: the method table, the
 * bus subscriptions' apply functions and the erasure of a customer.
 *
 * Recommend is the hot path: for a customer_id ref it answers on the
 * server worker from one read transaction (replica, feedback signals, the
 * in-memory catalogue, recodb's cached candidates), with this thread's
 * recodb_reader and the call's arena, and writes nothing unless
 * record_impressions asks. An identity ref waits on the resolve queue's
 * thread (resolve.h) first, never on a worker.
 *
 * Writes (UpsertExperience, RecordOutcome, RecordInteractions) are checked
 * on the worker, resolve their customers on the resolve queue when they
 * name identities, then run as one write job in the store's group commit
 * (svc.h) and are answered after the commit. TrainModel and GetModelInfo
 * are nbe_train.h's.
 */
#ifndef CXM_PERSONALISATION_NBE_RPC_H
#define CXM_PERSONALISATION_NBE_RPC_H

#include <stddef.h>

#include "cxm/server.h"
#include "cxm/store.h"
#include "cxm/v1/events.pb-c.h"
#include "nbectx.h"

extern const cxm_method nbe_methods[];
extern const size_t nbe_nmethods;
extern const cxm_method_access nbe_access[];
extern const size_t nbe_naccess;

/* profile's SegmentMembershipChanged, ConsentChanged, CustomerMerged,
 * CustomerUnmerged (user = nbe_ctx): the replica, and merges of the
 * service's own tables and the interaction log. */
int nbe_apply_profile(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* journey's StageChanged (the replica) and TouchpointTracked naming an
 * item (the interaction log, weight = the event's strength). */
int nbe_apply_journey(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* feedback's FeedbackReceived and FollowUpChanged: the signals that put a
 * customer into service recovery. */
int nbe_apply_feedback(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* The erasure cascade's erase function (svc.h; user = nbe_ctx): signals,
 * contacts, outcome and interaction ids, the interaction log and the
 * replica, of the customer and of every merged id. */
int nbe_erase(cxm_txn *t, const char *customer_id, char *const *merged, size_t nmerged,
              uint64_t *records, void *user);

#endif
