/*
 * fuzz_journey_req.c - every JourneyService request, decoded as the server
 * decodes it and run through the checks its handler runs before any work:
 * the first byte picks the method, the rest is the request.
 */
#include <stdlib.h>

#include "cxm/hash.h"
#include "cxm/svc.h"
#include "fuzz.h"
#include "journey/jrn_check.h"
#include "journey/jrn_rpc.h"

static const jrn_limits limits = {.max_lateness_ms = 30LL * 86400000};

/* A batch and each of its events, as ingest_prepare checks them: a bad
 * event is rejected alone, so every event is checked. */
static int events(Cxm__V1__TouchpointEvent **evs, size_t n, cxm_arena *a, char *err)
{
    int rc = jrn_check_batch_size(n, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char why[CXM_SVC_ERR_MAX] = "";
        if (jrn_check_event(&limits, a, evs[i], FUZZ_NOW_MS, why) != 0 && !why[0])
            abort(); /* an EventRejection's reason must say why */
    }
    return rc;
}

static int track(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__TrackRequest *req = (Cxm__V1__TrackRequest *)m;
    return events(req->events, req->n_events, a, err);
}

static int track_stream(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__TrackStreamRequest *req = (Cxm__V1__TrackStreamRequest *)m;
    return events(req->events, req->n_events, a, err);
}

/* GetTimeline: the check, then the page token its handler parses. */
static int timeline(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__GetTimelineRequest *req = (Cxm__V1__GetTimelineRequest *)m;
    int page_size = 0;
    const char *after;
    int rc = jrn_check_timeline(a, req, &page_size, err);
    return rc ? rc : cxm_svc_token_parse(req->page_token, CXM_HASH_INIT, &after, err);
}

static int state(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return jrn_check_state(a, (Cxm__V1__GetJourneyStateRequest *)m, err);
}

static int rules(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return jrn_check_rules((Cxm__V1__UpsertStageRulesRequest *)m, err);
}

static int no_fields(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return 0; /* GetStageRules: an empty request, only the decoding counts */
}

static int funnel(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return jrn_check_funnel((Cxm__V1__FunnelRequest *)m, FUZZ_NOW_MS, err);
}

static int paths(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return jrn_check_paths((Cxm__V1__PathsRequest *)m, FUZZ_NOW_MS, err);
}

static int touchpoints(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return jrn_check_touchpoints((Cxm__V1__TouchpointStatsRequest *)m, FUZZ_NOW_MS, err);
}

static const fuzz_check checks[] = {
    {"Track", track},
    {"TrackStream", track_stream},
    {"GetTimeline", timeline},
    {"GetJourneyState", state},
    {"UpsertStageRules", rules},
    {"GetStageRules", no_fields},
    {"Funnel", funnel},
    {"Paths", paths},
    {"TouchpointStats", touchpoints},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_service(jrn_methods, jrn_nmethods, checks, sizeof checks / sizeof checks[0], data, size);
    return 0;
}
