/*
 * fb_rpc.h - the FeedbackService handlers: the method table, the bus
 * subscriptions' apply functions and the erasure of a customer.
 *
 * Writes (UpsertSurvey, SubmitResponse) are checked on the worker thread,
 * then run as one write job in the store's group commit (svc.h) and are
 * answered after the commit. SubmitResponse and CheckEligibility resolve
 * their customer through the profile service (resolve.h) on the resolve
 * queue's thread (ctx->queue: a blocking call to profile on a server worker
 * could wait for itself in cxmd), so a profile service that cannot be
 * reached fails the call UNAVAILABLE with nothing written. Reads run on the
 * worker in one read transaction. The handlers find their state as the
 * fb_ctx (fbctx.h) of the call.
 */
#ifndef CXM_FEEDBACK_FB_RPC_H
#define CXM_FEEDBACK_FB_RPC_H

#include <stddef.h>

#include "cxm/server.h"
#include "cxm/store.h"
#include "cxm/v1/events.pb-c.h"
#include "fbctx.h"

extern const cxm_method fb_methods[];
extern const size_t fb_nmethods;
extern const cxm_method_access fb_access[];
extern const size_t fb_naccess;

/* journey's StageChanged: the customer's current stage (user = fb_ctx). */
int fb_apply_journey(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* profile's CustomerMerged, CustomerUnmerged, SegmentMembershipChanged. */
int fb_apply_profile(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* The erasure cascade's erase function (svc.h; user = fb_ctx): responses,
 * their records and aggregates, the customer index, replicas, follow-ups. */
int fb_erase(cxm_txn *t, const char *customer_id, char *const *merged, size_t nmerged,
             uint64_t *records, void *user);

#endif
