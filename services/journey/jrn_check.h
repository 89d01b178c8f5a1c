/*
 * jrn_check.h - validation of every JourneyService request, on the worker
 * thread before any work is queued (see services/README.md).
 *
 * Each function returns 0, or a CXM_E* code with a message in err
 * (CXM_SVC_ERR_MAX bytes) that starts with the field path
 * ("events[12].properties.price: must be finite") and says what to do.
 * Identities are normalised in place (copies in arena a) with the shared
 * identity rules (cxm/ident.h), so resolution matches stored spellings.
 * Pure apart from that; thread-safe.
 */
#ifndef CXM_JRN_CHECK_H
#define CXM_JRN_CHECK_H

#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/v1/journey.pb-c.h"

#define JRN_MAX_BATCH 1000 /* events per Track / TrackStream message */
#define JRN_MAX_PROPS 64   /* properties per event */
#define JRN_MAX_LINKS 10   /* link_identities per event */
#define JRN_FUTURE_MS (5 * 60 * 1000)

/* Limits that come from flags. */
typedef struct jrn_limits {
    int64_t max_lateness_ms; /* older occurred_at is rejected */
} jrn_limits;

/* A batch as a whole (Track, and each TrackStream message): 1 to
 * JRN_MAX_BATCH events. None is CXM_EINVAL; more is CXM_ENOMEM naming
 * "events" and the limit (RESOURCE_EXHAUSTED: the whole batch is refused;
 * CXM_ETOOBIG would answer INVALID_ARGUMENT, see cxm/err.h). */
int jrn_check_batch_size(size_t n, char *err);

/* One event of a batch, in place: every field (event_id, customer ref,
 * link_identities, touchpoint, channel, event_type, occurred_at against now
 * and the lateness bound, properties (names, values finite, at most
 * JRN_MAX_PROPS), value finite, currency [A-Z]{3}, session_id, item_id;
 * output-only fields must be unset). occurred_at 0 becomes now. The
 * message names the field relative to the event ("channel: must be set"),
 * so the caller prefixes nothing: EventRejection.reason is exactly err.
 * CXM_EINVAL on failure. */
int jrn_check_event(const jrn_limits *l, cxm_arena *a, Cxm__V1__TouchpointEvent *ev, int64_t now,
                    char *err);

/* One per read or rule RPC; unset defaults are filled in place (page size,
 * window 14 days, max_length 5, limit 20, goal window 7 days, ...). */
int jrn_check_timeline(cxm_arena *a, Cxm__V1__GetTimelineRequest *req, int *page_size, char *err);
int jrn_check_state(cxm_arena *a, Cxm__V1__GetJourneyStateRequest *req, char *err);
int jrn_check_rules(const Cxm__V1__UpsertStageRulesRequest *req, char *err);
int jrn_check_funnel(Cxm__V1__FunnelRequest *req, int64_t now, char *err);
int jrn_check_paths(Cxm__V1__PathsRequest *req, int64_t now, char *err);
int jrn_check_touchpoints(Cxm__V1__TouchpointStatsRequest *req, int64_t now, char *err);

#endif
