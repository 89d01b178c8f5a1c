/*
 * jan.h - journey analytics: Funnel, Paths and TouchpointStats computed over
 * compact customer timelines (jrec.h), exactly as proto/cxm/v1/journey.proto
 * defines them.
 *
 * Pure: the caller (the RPC handler) opens a read snapshot, wraps it as a
 * jsource and a jdict, and gets the response message built in arena a.
 * The request must have passed jrn_check_* (defaults filled in). Every
 * function walks the source once; memory is O(distinct keys of the answer
 * + one customer's records), never O(events); Funnel also keeps one time per
 * customer and step for its exact quantiles. segment_id is the source's to
 * apply (it hands out only the segment's customers); pending_events is the
 * caller's to fill in.
 *
 * Returns 0, CXM_ENOMEM, CXM_EINVAL for a request no check would pass (more
 * than 32 funnel steps, over 1000 buckets, a path length of 1 or over 10),
 * or the source's error.
 */
#ifndef CXM_JAN_H
#define CXM_JAN_H

#include "cxm/arena.h"
#include "cxm/v1/journey.pb-c.h"
#include "jrec.h"

int jan_funnel(const Cxm__V1__FunnelRequest *req, const jdict *dict, const jsource *src,
               cxm_arena *a, Cxm__V1__FunnelResponse **out);

int jan_paths(const Cxm__V1__PathsRequest *req, const jdict *dict, const jsource *src, cxm_arena *a,
              Cxm__V1__PathsResponse **out);

/* Feedback scores per touchpoint come from the caller (they are not in the
 * records): fb(ctx, touchpoint id, out) fills the touchpoint's scores in
 * range, or leaves them zero; fb may be NULL. */
typedef int (*jan_feedback_fn)(void *ctx, uint32_t touchpoint, Cxm__V1__TouchpointFeedback *out);

int jan_touchpoints(const Cxm__V1__TouchpointStatsRequest *req, const jdict *dict,
                    const jsource *src, jan_feedback_fn fb, void *fb_ctx, cxm_arena *a,
                    Cxm__V1__TouchpointStatsResponse **out);

#endif
