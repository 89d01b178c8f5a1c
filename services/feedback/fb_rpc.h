/*
 * fb_rpc.h - the FeedbackService handlers: the method table, the bus
 * subscriptions' apply functions and the erasure of a customer.
 *
 * Writes (UpsertSurvey, SubmitResponse) are checked on the worker thread,
 * then run as one write job in the store's group commit (svc.h) and are
 * answered after the commit. SubmitResponse resolves its customer through
 * the profile service (resolve.h) before its job, on the resolver thread
 * below, so a profile service that cannot be reached fails the call
 * UNAVAILABLE with nothing written. Reads
 * run on the worker in one read transaction. The handlers find their state
 * as the fb_ctx (fbctx.h) of the call.
 */
#ifndef CXM_FEEDBACK_FB_RPC_H
#define CXM_FEEDBACK_FB_RPC_H

#include <stddef.h>

#include "cxm/server.h"
#include "cxm/store.h"
#include "cxm/v1/events.pb-c.h"
#include "fbctx.h"

/* The resolver thread: SubmitResponse and CheckEligibility wait there
 * for their customer, because a blocking call to profile on a server
 * worker could wait for itself in cxmd (profile's call may be queued on
 * that very worker). It takes every waiting call at once, resolves them in
 * one batch, then queues the write or answers. Start after ctx->resolver
 * is open; stop before it closes: calls still waiting are resolved and
 * answered first, then the thread ends. */
int fb_queue_start(fb_ctx *ctx);
void fb_queue_stop(fb_ctx *ctx);

extern const cxm_method fb_methods[];
extern const size_t fb_nmethods;

/* journey's StageChanged: the customer's current stage (user = fb_ctx). */
int fb_apply_journey(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* profile's CustomerMerged, CustomerUnmerged, SegmentMembershipChanged. */
int fb_apply_profile(cxm_txn *t, const Cxm__V1__Event *ev, void *user);

/* The erasure cascade's erase function (svc.h; user = fb_ctx): responses,
 * their records and aggregates, the customer index, replicas, follow-ups. */
int fb_erase(cxm_txn *t, const char *customer_id, char *const *merged, size_t nmerged,
             uint64_t *records, void *user);

#endif
