/*
 * test_journey.c - the JourneyService over gRPC against the real cxmd, with
 * the profile service in the same process resolving identities: per-event
 * validation, dedup, timelines with late events, identity linking that
 * follows merges and unmerges, stages under default and replaced rules,
 * the erasure cascade, the acknowledging stream, and kill -9 amid streams
 * (every acknowledged event is there after restart).
 *
 *   test_journey PATH_TO_CXMD CASE
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "cxm/client.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "harness.h"

#define SVC "/cxm.v1.JourneyService/"
#define PROFILE "/cxm.v1.ProfileService/"
#define ANON CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_ANONYMOUS_ID
#define EMAIL CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL
#define WEB CXM__V1__CHANNEL__CHANNEL_WEB
#define APP CXM__V1__CHANNEL__CHANNEL_APP
#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)

static cxm_arena arena; /* everything of the running case; freed at exit */
static int64_t t0;      /* an hour ago: the base of the cases' event times */

static grpc_status_code call(cxm_channel *ch, const char *method, const void *req,
                             const ProtobufCMessageDescriptor *resp_desc, void *resp, char *details)
{
    return harness_call(ch, SVC, method, req, resp_desc, &arena, resp, details);
}

static grpc_status_code pcall(cxm_channel *ch, const char *method, const void *req,
                              const ProtobufCMessageDescriptor *resp_desc, void *resp,
                              char *details)
{
    return harness_call(ch, PROFILE, method, req, resp_desc, &arena, resp, details);
}

/* The harness's builders, in this case's arena. */
#define wall_ms harness_wall_ms
#define fmt(...) harness_fmt(&arena, __VA_ARGS__)
#define by_identity(type, value) harness_ref_identity(&arena, type, value)
#define by_id(customer_id) harness_ref_id(&arena, customer_id)

static Cxm__V1__Identity *ident(Cxm__V1__IdentityType type, const char *value)
{
    Cxm__V1__Identity *id = cxm_arena_alloc(&arena, sizeof *id);
    cxm__v1__identity__init(id);
    id->type = type;
    id->value = (char *)value;
    return id;
}

/* An event of the anonymous visitor `who`. */
static Cxm__V1__TouchpointEvent *event(const char *id, const char *who, const char *touchpoint,
                                       Cxm__V1__Channel channel, const char *type, int64_t at)
{
    Cxm__V1__TouchpointEvent *e = cxm_arena_alloc(&arena, sizeof *e);
    cxm__v1__touchpoint_event__init(e);
    e->event_id = (char *)id;
    e->customer = by_identity(ANON, who);
    e->touchpoint = (char *)touchpoint;
    e->channel = channel;
    e->event_type = (char *)type;
    e->occurred_at_unix_ms = at;
    return e;
}

static void add_prop(Cxm__V1__TouchpointEvent *e, const char *name, Cxm__V1__Value *v)
{
    Cxm__V1__TouchpointEvent__PropertiesEntry **props =
        cxm_arena_alloc(&arena, (e->n_properties + 1) * sizeof *props);
    if (e->n_properties)
        memcpy(props, e->properties, e->n_properties * sizeof *props);
    Cxm__V1__TouchpointEvent__PropertiesEntry *p = cxm_arena_alloc(&arena, sizeof *p);
    cxm__v1__touchpoint_event__properties_entry__init(p);
    p->key = (char *)name;
    p->value = v;
    props[e->n_properties++] = p;
    e->properties = props;
}

static Cxm__V1__Value *num(double d)
{
    Cxm__V1__Value *v = cxm_arena_alloc(&arena, sizeof *v);
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    v->number_value = d;
    return v;
}

static Cxm__V1__Value *boolean(bool b)
{
    Cxm__V1__Value *v = cxm_arena_alloc(&arena, sizeof *v);
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_BOOL_VALUE;
    v->bool_value = b;
    return v;
}

static Cxm__V1__TrackResponse *track(cxm_channel *ch, Cxm__V1__TouchpointEvent **evs, size_t n)
{
    Cxm__V1__TrackRequest req = CXM__V1__TRACK_REQUEST__INIT;
    req.events = evs;
    req.n_events = n;
    Cxm__V1__TrackResponse *resp;
    CALL_OK(ch, Track, req, cxm__v1__track_response, resp);
    return resp;
}

static Cxm__V1__GetJourneyStateResponse *state_of(cxm_channel *ch, Cxm__V1__CustomerRef *ref,
                                                  grpc_status_code *st)
{
    Cxm__V1__GetJourneyStateRequest req = CXM__V1__GET_JOURNEY_STATE_REQUEST__INIT;
    req.customer = ref;
    Cxm__V1__GetJourneyStateResponse *resp = NULL;
    char d[512];
    *st = call(ch, "GetJourneyState", &req.base, &cxm__v1__get_journey_state_response__descriptor,
               &resp, d);
    CHECK(*st == GRPC_STATUS_OK || *st == GRPC_STATUS_NOT_FOUND, "GetJourneyState: %d %s", *st, d);
    return resp;
}

/* The customer's state once it holds `count` events (resolution runs in the
 * background), within 60 s: the wait is generous because a loaded 2-core
 * machine slows the pipeline several times over; nothing is lost meanwhile. */
static Cxm__V1__GetJourneyStateResponse *wait_events(cxm_channel *ch, Cxm__V1__CustomerRef *ref,
                                                     uint64_t count)
{
    double end = test_now_ms() + 60000;
    for (;;) {
        grpc_status_code st;
        Cxm__V1__GetJourneyStateResponse *s = state_of(ch, ref, &st);
        if (st == GRPC_STATUS_OK && s->event_count == count)
            return s;
        CHECK(test_now_ms() < end, "%" PRIu64 " events after 60 s, want %" PRIu64,
              st == GRPC_STATUS_OK ? s->event_count : 0, count);
        usleep(20000);
    }
}

static Cxm__V1__GetTimelineResponse *timeline(cxm_channel *ch, Cxm__V1__GetTimelineRequest *req)
{
    Cxm__V1__GetTimelineResponse *resp;
    CALL_OK(ch, GetTimeline, *req, cxm__v1__get_timeline_response, resp);
    return resp;
}

static void expect_error(cxm_channel *ch, const char *method, const void *req,
                         grpc_status_code want, const char *needle)
{
    char d[512];
    grpc_status_code st = call(ch, method, req, &cxm__v1__track_response__descriptor, NULL, d);
    CHECK(st == want, "%s: status %d (%s), want %d", method, st, d, want);
    CHECK(!needle || strstr(d, needle), "%s: message \"%s\" lacks \"%s\"", method, d, needle);
}

/* Events accepted but not yet resolved, over every customer. */
static uint64_t global_pending(cxm_channel *ch)
{
    Cxm__V1__TouchpointStatsRequest req = CXM__V1__TOUCHPOINT_STATS_REQUEST__INIT;
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = t0 - DAY_MS;
    range.to_unix_ms = t0 + DAY_MS;
    req.range = &range;
    Cxm__V1__TouchpointStatsResponse *resp;
    CALL_OK(ch, TouchpointStats, req, cxm__v1__touchpoint_stats_response, resp);
    return resp->pending_events;
}

/* ---- cases ---- */

/* Bad events are rejected one by one with their index and field path; the
 * rest of the batch is stored; an oversized batch is refused whole. */
static void case_validation(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__TouchpointEvent *evs[6];
    evs[0] = event("v-ok-1", "anon-v1", "home", WEB, "page_view", t0);
    evs[1] = event("v-bad-channel", "anon-v1", "home", CXM__V1__CHANNEL__CHANNEL_UNSPECIFIED,
                   "page_view", t0);
    evs[2] = event("v-bad-price", "anon-v1", "cart", WEB, "add_to_cart", t0 + 1);
    add_prop(evs[2], "price", num(NAN));
    evs[3] = event("v-future", "anon-v1", "home", WEB, "page_view", wall_ms() + HOUR_MS);
    evs[4] = event("v-too-old", "anon-v1", "home", WEB, "page_view", wall_ms() - 400 * DAY_MS);
    evs[5] = event("v-bad-touchpoint", "anon-v1", "bad touchpoint!", WEB, "page_view", t0);
    Cxm__V1__TrackResponse *r = track(ch, evs, 6);
    CHECK(r->accepted == 1 && r->duplicates == 0, "accepted %u", r->accepted);
    CHECK(r->n_rejected == 5, "%zu rejected", r->n_rejected);
    const char *want[] = {"channel", "properties.price", "occurred_at_unix_ms",
                          "occurred_at_unix_ms", "touchpoint"};
    for (size_t i = 0; i < 5; i++) {
        Cxm__V1__EventRejection *rj = r->rejected[i];
        CHECK(rj->index == i + 1, "rejection %zu has index %u", i, rj->index);
        CHECK(strcmp(rj->event_id, evs[i + 1]->event_id) == 0, "event id %s", rj->event_id);
        CHECK(strstr(rj->reason, want[i]), "reason \"%s\" lacks \"%s\"", rj->reason, want[i]);
    }

    /* A repeat is a duplicate, stored once. */
    r = track(ch, evs, 1);
    CHECK(r->accepted == 0 && r->duplicates == 1, "repeat: %u accepted %u dup", r->accepted,
          r->duplicates);
    wait_events(ch, by_identity(ANON, "anon-v1"), 1);

    /* 1001 events: refused whole, naming the limit. */
    Cxm__V1__TouchpointEvent **many = cxm_arena_alloc(&arena, 1001 * sizeof *many);
    for (int i = 0; i < 1001; i++)
        many[i] = event(fmt("v-many-%d", i), "anon-v2", "home", WEB, "page_view", t0);
    Cxm__V1__TrackRequest big = CXM__V1__TRACK_REQUEST__INIT;
    big.events = many;
    big.n_events = 1001;
    expect_error(ch, "Track", &big, GRPC_STATUS_RESOURCE_EXHAUSTED, "1000");
    big.n_events = 0;
    expect_error(ch, "Track", &big, GRPC_STATUS_INVALID_ARGUMENT, "events");
    /* Nothing of the refused batch was stored. */
    grpc_status_code st;
    state_of(ch, by_identity(ANON, "anon-v2"), &st);
    CHECK(st == GRPC_STATUS_NOT_FOUND, "refused batch left a customer: %d", st);

    /* Garbage bytes. */
    char d[512];
    cxm_client_result res;
    CHECK(cxm_client_unary(ch, SVC "Track", "\xff\xff\xff", 3, 5000, &res) == 0, "call");
    CHECK(res.status == GRPC_STATUS_INVALID_ARGUMENT, "garbage: %d", res.status);
    cxm_client_result_dispose(&res);
    (void)d;
}

/* Timeline order, filters, paging, and a late event in its place. */
static void case_timeline(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__TouchpointEvent *evs[30];
    for (int i = 0; i < 30; i++)
        evs[i] =
            event(fmt("t-%02d", i), "anon-t", i % 3 ? "product_page" : "home", i % 2 ? APP : WEB,
                  i % 3 ? "product_view" : "page_view", t0 + (int64_t)i * 60000);
    /* The late one first arrives last. */
    track(ch, evs + 1, 29);
    track(ch, evs, 1);
    Cxm__V1__CustomerRef *who = by_identity(ANON, "anon-t");
    Cxm__V1__GetJourneyStateResponse *s = wait_events(ch, who, 30);
    CHECK(s->first_seen_unix_ms == t0 && s->last_seen_unix_ms == t0 + 29 * 60000,
          "first/last seen");

    /* Paging through all, newest first, 7 a page. */
    Cxm__V1__GetTimelineRequest req = CXM__V1__GET_TIMELINE_REQUEST__INIT;
    req.customer = who;
    req.page_size = 7;
    int seen = 0;
    int64_t prev = INT64_MAX;
    for (;;) {
        Cxm__V1__GetTimelineResponse *r = timeline(ch, &req);
        for (size_t i = 0; i < r->n_events; i++, seen++) {
            CHECK(r->events[i]->occurred_at_unix_ms < prev, "order at %d", seen);
            prev = r->events[i]->occurred_at_unix_ms;
            CHECK(strcmp(r->events[i]->event_id, fmt("t-%02d", 29 - seen)) == 0, "event %s at %d",
                  r->events[i]->event_id, seen);
            CHECK(r->events[i]->customer_id && r->events[i]->customer_id[0], "customer_id set");
        }
        if (!*r->next_page_token)
            break;
        req.page_token = r->next_page_token;
    }
    CHECK(seen == 30, "%d events paged", seen);

    /* Filters: page views in the web channel, oldest first, in a range. */
    Cxm__V1__GetTimelineRequest f = CXM__V1__GET_TIMELINE_REQUEST__INIT;
    f.customer = who;
    char *types[] = {"page_view"};
    Cxm__V1__Channel chans[] = {WEB};
    f.event_types = types;
    f.n_event_types = 1;
    f.channels = chans;
    f.n_channels = 1;
    f.oldest_first = true;
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = t0 + 60000;
    range.to_unix_ms = t0 + 25 * 60000;
    f.range = &range;
    Cxm__V1__GetTimelineResponse *r = timeline(ch, &f);
    /* i % 3 == 0 and i even: 6, 12, 18, 24 within [1, 25). */
    CHECK(r->n_events == 4, "%zu filtered events", r->n_events);
    CHECK(strcmp(r->events[0]->event_id, "t-06") == 0 &&
              strcmp(r->events[3]->event_id, "t-24") == 0,
          "filtered order");

    /* A token reused with other filters is refused. */
    req.page_token = NULL;
    req.page_size = 5;
    Cxm__V1__GetTimelineResponse *p1 = timeline(ch, &req);
    f.page_token = p1->next_page_token;
    expect_error(ch, "GetTimeline", &f, GRPC_STATUS_INVALID_ARGUMENT, "page_token");
}

/* A login links the anonymous history to the known customer; an unmerge
 * gives each side its own events back. */
static void case_identity(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    /* The known customer, with one event of their own. */
    Cxm__V1__TouchpointEvent *known = event("i-known-1", "unused", "account", APP, "page_view", t0);
    known->customer = by_identity(EMAIL, "mia@example.com");
    track(ch, &known, 1);
    Cxm__V1__TouchpointEvent *anon[3];
    for (int i = 0; i < 3; i++)
        anon[i] = event(fmt("i-anon-%d", i), "anon-mia", "product_page", WEB, "product_view",
                        t0 + 1000 + i);
    track(ch, anon, 3);
    wait_events(ch, by_identity(ANON, "anon-mia"), 3);
    wait_events(ch, by_identity(EMAIL, "mia@example.com"), 1);

    /* The login: the email, carrying the anonymous id. */
    Cxm__V1__TouchpointEvent *login =
        event("i-login", "unused", "account", WEB, "login", t0 + 5000);
    login->customer = by_identity(EMAIL, "mia@example.com");
    Cxm__V1__Identity *link = ident(ANON, "anon-mia");
    login->link_identities = &link;
    login->n_link_identities = 1;
    track(ch, &login, 1);
    Cxm__V1__GetJourneyStateResponse *s = wait_events(ch, by_identity(EMAIL, "mia@example.com"), 5);
    const char *survivor = s->customer_id;

    /* The anonymous id now names the same customer, with the same history. */
    Cxm__V1__GetJourneyStateResponse *a = wait_events(ch, by_identity(ANON, "anon-mia"), 5);
    CHECK(strcmp(a->customer_id, survivor) == 0, "anon resolves to %s, email to %s", a->customer_id,
          survivor);

    /* Undo the merge in the profile service: each side sees its own again. */
    Cxm__V1__GetProfileRequest gp = CXM__V1__GET_PROFILE_REQUEST__INIT;
    gp.customer = by_id(survivor);
    Cxm__V1__GetProfileResponse *prof;
    char d[512];
    CHECK(pcall(ch, "GetProfile", &gp.base, &cxm__v1__get_profile_response__descriptor, &prof, d) ==
              GRPC_STATUS_OK,
          "GetProfile: %s", d);
    CHECK(prof->profile->n_merges >= 1, "no merge recorded");
    Cxm__V1__UnmergeProfileRequest um = CXM__V1__UNMERGE_PROFILE_REQUEST__INIT;
    um.merge_id = prof->profile->merges[0]->merge_id;
    const char *source = prof->profile->merges[0]->source_customer_id;
    Cxm__V1__UnmergeProfileResponse *ur;
    CHECK(pcall(ch, "UnmergeProfile", &um.base, &cxm__v1__unmerge_profile_response__descriptor, &ur,
                d) == GRPC_STATUS_OK,
          "UnmergeProfile: %s", d);
    /* The survivor keeps what it had plus the login; the source its own 3. */
    wait_events(ch, by_id(source), 3);
    s = wait_events(ch, by_id(survivor), 2);
    CHECK(strcmp(s->customer_id, survivor) == 0, "survivor id");
}

/* Default rules move a customer through stages; replacing the rules
 * recomputes the stored history in the background. */
static void case_stages(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__TouchpointEvent *evs[3];
    evs[0] = event("s-1", "anon-s", "search_landing", WEB, "page_view", t0);
    evs[1] = event("s-2", "anon-s", "product_page", WEB, "product_view", t0 + 60000);
    evs[2] = event("s-3", "anon-s", "checkout", WEB, "purchase", t0 + 120000);
    track(ch, evs, 3);
    Cxm__V1__CustomerRef *who = by_identity(ANON, "anon-s");
    Cxm__V1__GetJourneyStateResponse *s = wait_events(ch, who, 3);
    CHECK(s->stage == CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE, "stage %d", s->stage);
    CHECK(s->stage_since_unix_ms == t0 + 120000, "since");
    CHECK(s->n_transitions == 3 && s->transition_count == 3, "%zu transitions", s->n_transitions);
    CHECK(s->transitions[0]->to_stage == CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE &&
              strcmp(s->transitions[0]->event_id, "s-3") == 0,
          "latest transition first");
    CHECK(s->transitions[2]->from_stage == CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_UNSPECIFIED,
          "first transition from nothing");
    CHECK(s->n_time_in_stage == 3, "%zu stages timed", s->n_time_in_stage);
    CHECK(s->time_in_stage[0]->total_ms == 60000, "awareness lasted %" PRId64,
          s->time_in_stage[0]->total_ms);

    /* A default rule with a property condition: a purchase flagged
     * repeat=true is RETENTION. */
    Cxm__V1__TouchpointEvent *rep[2];
    rep[0] = event("r-1", "anon-r", "checkout", WEB, "purchase", t0);
    rep[1] = event("r-2", "anon-r", "checkout", WEB, "purchase", t0 + 60000);
    add_prop(rep[1], "repeat", boolean(true));
    track(ch, rep, 2);
    Cxm__V1__GetJourneyStateResponse *rs = wait_events(ch, by_identity(ANON, "anon-r"), 2);
    CHECK(rs->stage == CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_RETENTION && rs->n_transitions == 2 &&
              strcmp(rs->transitions[0]->rule_id, "retention.repeat-purchase") == 0,
          "repeat purchase: stage %d after %zu transitions", rs->stage, rs->n_transitions);

    /* The profile hears of it over the bus: the standard trait. */
    double until = test_now_ms() + 10000;
    for (;;) {
        Cxm__V1__GetProfileRequest gp = CXM__V1__GET_PROFILE_REQUEST__INIT;
        gp.customer = by_id(s->customer_id);
        Cxm__V1__GetProfileResponse *prof;
        char d[512];
        CHECK(pcall(ch, "GetProfile", &gp.base, &cxm__v1__get_profile_response__descriptor, &prof,
                    d) == GRPC_STATUS_OK,
              "GetProfile: %s", d);
        const Cxm__V1__StandardTraits *st = prof->profile->standard_traits;
        if (st && st->journey_stage == CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE) {
            CHECK(st->journey_stage_since_unix_ms == t0 + 120000, "trait since %" PRId64,
                  st->journey_stage_since_unix_ms);
            break;
        }
        CHECK(test_now_ms() < until, "profile's journey_stage trait is %d",
              st ? (int)st->journey_stage : -1);
        usleep(20000);
    }

    /* New rules: only purchases count, as RETENTION. */
    Cxm__V1__GetStageRulesRequest gr = CXM__V1__GET_STAGE_RULES_REQUEST__INIT;
    Cxm__V1__GetStageRulesResponse *cur;
    CALL_OK(ch, GetStageRules, gr, cxm__v1__get_stage_rules_response, cur);
    CHECK(cur->version == 0 && cur->n_rules > 0, "defaults in force");
    Cxm__V1__StageRule rule = CXM__V1__STAGE_RULE__INIT;
    rule.rule_id = "buy";
    rule.event_type = "purchase";
    rule.stage = CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_RETENTION;
    Cxm__V1__StageRule *rules[] = {&rule};
    Cxm__V1__UpsertStageRulesRequest up = CXM__V1__UPSERT_STAGE_RULES_REQUEST__INIT;
    up.rules = rules;
    up.n_rules = 1;
    up.expected_version = 7;
    expect_error(ch, "UpsertStageRules", &up, GRPC_STATUS_FAILED_PRECONDITION, "version");
    up.expected_version = 0;
    Cxm__V1__UpsertStageRulesResponse *ur;
    CALL_OK(ch, UpsertStageRules, up, cxm__v1__upsert_stage_rules_response, ur);
    CHECK(ur->version >= 1 && ur->rule_count == 1, "version %" PRIu64, ur->version);
    rule.stage = CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_UNSPECIFIED;
    expect_error(ch, "UpsertStageRules", &up, GRPC_STATUS_INVALID_ARGUMENT, "rules[0].stage");

    double end = test_now_ms() + 10000;
    for (;;) {
        CALL_OK(ch, GetStageRules, gr, cxm__v1__get_stage_rules_response, cur);
        grpc_status_code st;
        s = state_of(ch, who, &st);
        if (cur->recompute_done == cur->recompute_total && s->rules_version == ur->version)
            break;
        CHECK(test_now_ms() < end, "recompute %" PRIu64 "/%" PRIu64, cur->recompute_done,
              cur->recompute_total);
        usleep(20000);
    }
    CHECK(s->stage == CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_RETENTION, "recomputed stage %d",
          s->stage);
    CHECK(s->transition_count == 1, "%u transitions under the new rules", s->transition_count);
}

/* DeleteProfile erases the customer's events here too, and the receipt
 * counts them. */
static void case_erasure(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__TouchpointEvent *evs[4];
    for (int i = 0; i < 4; i++)
        evs[i] = event(fmt("e-%d", i), "anon-e", "home", WEB, "page_view", t0 + i);
    track(ch, evs, 4);
    Cxm__V1__GetJourneyStateResponse *s = wait_events(ch, by_identity(ANON, "anon-e"), 4);
    const Cxm__V1__ServiceErasure *j = harness_erase(ch, &arena, s->customer_id, "journey");
    CHECK(j->records_erased >= 4, "journey erased %" PRIu64, j->records_erased);
    grpc_status_code st;
    state_of(ch, by_id(s->customer_id), &st);
    CHECK(st == GRPC_STATUS_NOT_FOUND, "erased customer still has a journey: %d", st);
}

/* ---- streams ---- */

/* A packed TrackStreamRequest of n events "PREFIX-k" for visitor who. */
static uint8_t *stream_message(const char *prefix, int first, int n, const char *who, size_t *len)
{
    Cxm__V1__TouchpointEvent **evs = cxm_arena_alloc(&arena, (size_t)n * sizeof *evs);
    for (int i = 0; i < n; i++)
        evs[i] = event(fmt("%s-%d", prefix, first + i), who, "product_page", APP, "product_view",
                       t0 + first + i);
    Cxm__V1__TrackStreamRequest m = CXM__V1__TRACK_STREAM_REQUEST__INIT;
    m.events = evs;
    m.n_events = (size_t)n;
    *len = protobuf_c_message_get_packed_size(&m.base);
    uint8_t *buf = cxm_arena_alloc(&arena, *len);
    protobuf_c_message_pack(&m.base, buf);
    return buf;
}

static Cxm__V1__TrackStreamResponse *recv_ack(cxm_client_stream *s)
{
    uint8_t *msg;
    size_t len;
    if (cxm_client_stream_recv(s, &msg, &len) != 1)
        return NULL;
    Cxm__V1__TrackStreamResponse *ack =
        cxm__v1__track_stream_response__unpack(cxm_arena_protobuf(&arena), len, msg);
    free(msg);
    CHECK(ack, "an acknowledgement that does not decode");
    return ack;
}

/* 20 messages of 500 with 4 in flight: 20 acks in order; then a message
 * that does not decode ends the stream, the acknowledged events stay. */
static void case_stream(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    cxm_client_stream *s;
    CHECK(cxm_client_stream_open(ch, SVC "TrackStream", 30000, &s) == 0, "open");
    int sent = 0, acked = 0;
    while (acked < 20) {
        while (sent < 20 && sent - acked < 4) {
            size_t len;
            uint8_t *m = stream_message("st", sent * 500, 500, "anon-stream", &len);
            CHECK(cxm_client_stream_send(s, m, len) == 0, "send %d", sent);
            sent++;
        }
        Cxm__V1__TrackStreamResponse *ack = recv_ack(s);
        CHECK(ack, "ack %d missing", acked);
        CHECK(ack->message_index == (uint32_t)acked && ack->accepted == 500, "ack %u: %u accepted",
              ack->message_index, ack->accepted);
        acked++;
    }
    CHECK(cxm_client_stream_send(s, "\xff\xff\xff", 3) == 0 || 1, "garbage sent");
    cxm_client_stream_close_send(s);
    while (recv_ack(s))
        ;
    cxm_client_result res;
    cxm_client_stream_finish(s, &res);
    CHECK(res.status == GRPC_STATUS_INVALID_ARGUMENT, "garbage ended the stream with %d: %s",
          res.status, res.details);
    cxm_client_result_dispose(&res);
    wait_events(ch, by_identity(ANON, "anon-stream"), 10000);

    /* The same again: all duplicates. */
    CHECK(cxm_client_stream_open(ch, SVC "TrackStream", 30000, &s) == 0, "open");
    size_t len;
    uint8_t *m = stream_message("st", 0, 500, "anon-stream", &len);
    CHECK(cxm_client_stream_send(s, m, len) == 0, "send");
    cxm_client_stream_close_send(s);
    Cxm__V1__TrackStreamResponse *ack = recv_ack(s);
    CHECK(ack && ack->duplicates == 500 && ack->accepted == 0, "resend not all duplicates");
    cxm_client_stream_finish(s, &res);
    CHECK(res.status == GRPC_STATUS_OK, "clean end: %d %s", res.status, res.details);
    cxm_client_result_dispose(&res);
}

/* A client that goes away mid-stream loses only what was not acknowledged:
 * every event of the acknowledged messages is there, and the server goes
 * on serving. */
static void case_disconnect(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    cxm_client_stream *s;
    CHECK(cxm_client_stream_open(ch, SVC "TrackStream", 30000, &s) == 0, "open");
    for (int i = 0; i < 6; i++) {
        size_t len;
        uint8_t *m = stream_message("dc", i * 500, 500, "anon-dc", &len);
        CHECK(cxm_client_stream_send(s, m, len) == 0, "send %d", i);
    }
    int acked = 0;
    for (; acked < 3; acked++)
        CHECK(recv_ack(s), "ack %d", acked);
    cxm_client_stream_cancel(s);
    cxm_client_result res;
    cxm_client_stream_finish(s, &res);
    cxm_client_result_dispose(&res);
    double end = test_now_ms() + 10000;
    for (;;) {
        grpc_status_code st;
        Cxm__V1__GetJourneyStateResponse *js = state_of(ch, by_identity(ANON, "anon-dc"), &st);
        if (st == GRPC_STATUS_OK && js->event_count >= (uint64_t)acked * 500 &&
            global_pending(ch) == 0) {
            js = state_of(ch, by_identity(ANON, "anon-dc"), &st);
            CHECK(js->event_count % 500 == 0 && js->event_count <= 3000,
                  "%" PRIu64 " events after the disconnect", js->event_count);
            break;
        }
        CHECK(test_now_ms() < end, "acknowledged events missing after the disconnect");
        usleep(20000);
    }
    Cxm__V1__TouchpointEvent *e = event("dc-after", "anon-dc2", "home", WEB, "page_view", t0);
    CHECK(track(ch, &e, 1)->accepted == 1, "serving after the disconnect");
}

/* A funnel over one segment counts only its members: segment membership
 * comes from the profile service over the bus. */
static void case_segment(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    const char *who[5] = {"seg0@example.com", "seg1@example.com", "seg2@example.com", "anon-seg3",
                          "anon-seg4"};
    Cxm__V1__TouchpointEvent *evs[10];
    for (int i = 0; i < 5; i++) {
        evs[2 * i] = event(fmt("sg-%d-a", i), who[i], "home", WEB, "page_view", t0 + i * 10);
        evs[2 * i + 1] =
            event(fmt("sg-%d-b", i), who[i], "checkout", WEB, "purchase", t0 + i * 10 + 60000);
        if (i < 3)
            evs[2 * i]->customer = evs[2 * i + 1]->customer = by_identity(EMAIL, who[i]);
    }
    track(ch, evs, 10);
    for (int i = 0; i < 5; i++)
        wait_events(ch, i < 3 ? by_identity(EMAIL, who[i]) : by_identity(ANON, who[i]), 2);

    harness_identity_segment(ch, &arena, "known", EMAIL);

    Cxm__V1__FunnelStep s1 = CXM__V1__FUNNEL_STEP__INIT, s2 = CXM__V1__FUNNEL_STEP__INIT;
    s1.event_type = "page_view";
    s2.event_type = "purchase";
    Cxm__V1__FunnelStep *steps[] = {&s1, &s2};
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = t0 - 1000;
    range.to_unix_ms = wall_ms();
    Cxm__V1__FunnelRequest fr = CXM__V1__FUNNEL_REQUEST__INIT;
    fr.steps = steps;
    fr.n_steps = 2;
    fr.range = &range;
    Cxm__V1__FunnelResponse *all, *known;
    CALL_OK(ch, Funnel, fr, cxm__v1__funnel_response, all);
    CHECK(all->steps[0]->customers == 5 && all->steps[1]->customers == 5, "everyone: %" PRIu64,
          all->steps[0]->customers);
    fr.segment_id = "known";
    double end = test_now_ms() + 10000;
    for (;;) {
        CALL_OK(ch, Funnel, fr, cxm__v1__funnel_response, known);
        if (known->steps[0]->customers == 3)
            break;
        CHECK(test_now_ms() < end, "segment funnel: %" PRIu64 " customers, want 3",
              known->steps[0]->customers);
        usleep(20000);
    }
    CHECK(known->steps[1]->customers == 3 && known->steps[1]->conversion == 1.0, "converted");
}

/* One streaming client per trial; cxmd is killed -9 while it streams and
 * restarted on the same data. Every event of every acknowledged message is
 * in the customer's journey afterwards. */
typedef struct streamer {
    const char *target, *who;
    int trial;
    atomic_int acked_messages;
    atomic_bool stop;
} streamer;

#define K9_TRIALS 3
#define K9_BATCH 500

static void *streamer_main(void *arg)
{
    streamer *st = arg;
    cxm_channel *ch;
    if (cxm_channel_open(st->target, NULL, &ch) != 0)
        return NULL;
    cxm_client_stream *s;
    if (cxm_client_stream_open(ch, SVC "TrackStream", 60000, &s) == 0) {
        int sent = 0;
        char prefix[32];
        snprintf(prefix, sizeof prefix, "k9-%d", st->trial);
        while (!atomic_load(&st->stop)) {
            while (sent - atomic_load(&st->acked_messages) < 4) {
                size_t len;
                uint8_t *m = stream_message(prefix, sent * K9_BATCH, K9_BATCH, st->who, &len);
                if (cxm_client_stream_send(s, m, len) != 0)
                    goto out;
                sent++;
            }
            uint8_t *msg;
            size_t len;
            if (cxm_client_stream_recv(s, &msg, &len) != 1)
                break;
            free(msg);
            atomic_fetch_add(&st->acked_messages, 1);
        }
    out:;
        cxm_client_result res;
        cxm_client_stream_cancel(s);
        cxm_client_stream_finish(s, &res);
        cxm_client_result_dispose(&res);
    }
    cxm_channel_close(ch);
    return NULL;
}

static void case_kill9(cxm_channel *first, test_server *srv)
{
    (void)first;
    int acked[K9_TRIALS];
    for (int k = 0; k < K9_TRIALS; k++) {
        streamer st = {.target = srv->target, .who = fmt("anon-k9-%d", k), .trial = k};
        pthread_t th;
        pthread_create(&th, NULL, streamer_main, &st);
        for (double end = test_now_ms() + 20000; atomic_load(&st.acked_messages) < 3 + k;)
            CHECK(test_now_ms() < end, "trial %d: %d messages acknowledged in 20 s", k,
                  atomic_load(&st.acked_messages));
        usleep((useconds_t)(rand() % 100) * 1000);
        CHECK(harness_stop(srv, SIGKILL, 5000) == 128 + SIGKILL, "kill -9");
        atomic_store(&st.stop, true);
        pthread_join(th, NULL);
        acked[k] = atomic_load(&st.acked_messages);
        harness_restart(srv);
    }
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv->target, NULL, &ch) == 0, "channel");
    for (int k = 0; k < K9_TRIALS; k++) {
        /* At least the acknowledged events; perhaps more (stored but not
         * acknowledged before the kill). None of them twice. */
        uint64_t want = (uint64_t)acked[k] * K9_BATCH, have = 0;
        double end = test_now_ms() + 90000;
        for (;;) {
            grpc_status_code st;
            Cxm__V1__GetJourneyStateResponse *s =
                state_of(ch, by_identity(ANON, fmt("anon-k9-%d", k)), &st);
            if (st == GRPC_STATUS_OK && s->event_count >= want && global_pending(ch) == 0) {
                s = state_of(ch, by_identity(ANON, fmt("anon-k9-%d", k)), &st);
                have = s->event_count;
                break;
            }
            CHECK(test_now_ms() < end, "trial %d: %" PRIu64 " of %" PRIu64 " acknowledged events",
                  k, st == GRPC_STATUS_OK ? s->event_count : 0, want);
            usleep(50000);
        }
        CHECK(have % K9_BATCH == 0, "trial %d: %" PRIu64 " events, not whole messages", k, have);
        printf("kill9 trial %d: %d messages acknowledged, %" PRIu64 " events present\n", k,
               acked[k], have);
    }
    cxm_channel_close(ch);
}

/* cxm-journey on its own with its profile service down: events are
 * accepted and wait, then resolve in order once profile is back. */
static void case_profile_down(cxm_channel *unused, test_server *srv)
{
    (void)unused;
    test_server prof, jrn;
    const char *profile_addr = harness_profile_stopped(&arena, srv, &prof);
    const char *jrn_args[] = {"--profile-addr", profile_addr, NULL};
    harness_start(&jrn, harness_sibling(&arena, srv, "cxm-journey"), jrn_args);
    cxm_channel *ch;
    CHECK(cxm_channel_open(jrn.target, NULL, &ch) == 0, "channel");

    Cxm__V1__TouchpointEvent *evs[50];
    for (int i = 0; i < 50; i++)
        evs[i] = event(fmt("pd-%d", i), "anon-pd", "home", WEB, "page_view", t0 + i);
    Cxm__V1__TrackResponse *r = track(ch, evs, 50);
    CHECK(r->accepted == 50, "%u accepted with profile down", r->accepted);
    usleep(300000);
    CHECK(global_pending(ch) == 50, "%" PRIu64 " pending", global_pending(ch));

    harness_restart(&prof);
    wait_events(ch, by_identity(ANON, "anon-pd"), 50);
    CHECK(global_pending(ch) == 0, "pending left");
    cxm_channel_close(ch);
    CHECK(harness_stop(&jrn, SIGTERM, 10000) == 0, "journey drained");
    CHECK(harness_stop(&prof, SIGTERM, 10000) == 0, "profile drained");
    harness_cleanup(&jrn);
    harness_cleanup(&prof);
}

static const harness_case cases[] = {
    {"profile_down", case_profile_down},
    {"validation", case_validation},
    {"timeline", case_timeline},
    {"identity", case_identity},
    {"stages", case_stages},
    {"erasure", case_erasure},
    {"stream", case_stream},
    {"kill9", case_kill9},
    {"disconnect", case_disconnect},
    {"segment", case_segment},
};

int main(int argc, char **argv)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    t0 = wall_ms() - HOUR_MS;
    int rc = harness_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
    cxm_arena_dispose(&arena);
    return rc;
}
