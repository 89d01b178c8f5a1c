/*
 * test_ffu.c - close-the-loop follow-ups (services/feedback/ffu.c) on a real
 * store in a temp dir, the real in-process bus (FollowUpChanged recorded by
 * a subscriber) and the four handlers called over gRPC on an in-process
 * server: opening rules and thresholds, assignment rules in order,
 * deterministic ids and idempotency (also across a rolled-back
 * transaction), the state machine, expected_version, notes, listing order,
 * filters and paging against a naive model, overdue, events and their open
 * count, erasure, merge and unmerge, and request validation.
 *
 *   test_ffu bench   100k follow-ups opened in batches of 1000, then the
 *                    median ListFollowUps page for each kind of filter
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "test_server.h"
#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/svc.h"
#include "feedback/fbctx.h"
#include "feedback/ffu.h"

#define HOUR 3600000LL
#define S_OPEN CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_OPEN
#define S_PROGRESS CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_IN_PROGRESS
#define S_WAITING CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_WAITING_ON_CUSTOMER
#define S_CLOSED CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CLOSED
#define S_DISMISSED CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_DISMISSED
#define R_LOW CXM__V1__FOLLOW_UP_REASON__FOLLOW_UP_REASON_LOW_SCORE
#define R_TEXT CXM__V1__FOLLOW_UP_REASON__FOLLOW_UP_REASON_NEGATIVE_TEXT
#define L_NEG CXM__V1__SENTIMENT_LABEL__SENTIMENT_LABEL_NEGATIVE
#define L_NEU CXM__V1__SENTIMENT_LABEL__SENTIMENT_LABEL_NEUTRAL
#define C_WEB CXM__V1__CHANNEL__CHANNEL_WEB
#define C_APP CXM__V1__CHANNEL__CHANNEL_APP

static char dir[] = "/tmp/cxm-test-ffu-XXXXXX";
static cxm_store *store;
static cxm_bus *bus;
static MDB_dbi events_dbi;
static fb_ctx ctx;
static cxm_channel *ch;
static int64_t t0; /* the wall clock at start, rounded to an hour */

/* ---- the event recorder: FollowUpChanged by sequence, applied once ---- */

static int record_apply(cxm_txn *txn, const Cxm__V1__Event *ev, void *user)
{
    (void)user;
    uint8_t key[8], buf[1024];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(ev->sequence >> (56 - 8 * i));
    size_t n = protobuf_c_message_get_packed_size(&ev->base);
    if (n > sizeof buf)
        return CXM_ETOOBIG;
    protobuf_c_message_pack(&ev->base, buf);
    return cxm_txn_put(txn, events_dbi, key, 8, buf, n, 0);
}

typedef struct ev_list {
    cxm_arena *a;
    Cxm__V1__Event **ev;
    size_t n;
} ev_list;

static int collect(const void *k, size_t kl, const void *v, size_t vl, void *user)
{
    (void)k, (void)kl;
    ev_list *l = user;
    Cxm__V1__Event *e = cxm__v1__event__unpack(cxm_arena_protobuf(l->a), vl, v);
    if (!e)
        return CXM_ECORRUPT;
    Cxm__V1__Event **grown = cxm_arena_alloc(l->a, (l->n + 1) * sizeof *grown);
    if (l->n)
        memcpy(grown, l->ev, l->n * sizeof *grown);
    grown[l->n++] = e;
    l->ev = grown;
    return 0;
}

static int collect_fn(cxm_txn *t, void *user)
{
    return cxm_txn_scan_prefix(t, events_dbi, NULL, 0, false, collect, user);
}

/* Events emitted so far (the producer's sequence), waiting until the
 * subscriber applied all of them. */
static uint64_t emitted(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__GetBusStatusResponse *r;
    uint64_t seq = 0;
    if (cxm_bus_status(bus, &a, &r) == 0)
        for (size_t i = 0; i < r->n_producers; i++)
            if (strcmp(r->producers[i]->producer, "feedback") == 0)
                seq = r->producers[i]->last_sequence;
    cxm_arena_dispose(&a);
    return seq;
}

/* Every recorded event, once all emitted ones arrived (5 s at most). */
static ev_list events(cxm_arena *a)
{
    uint64_t want = emitted();
    ev_list l = {a, NULL, 0};
    for (int i = 0; i < 500; i++) {
        l.n = 0;
        CHECK_EQ_INT(cxm_store_read(store, collect_fn, &l), 0);
        if (l.n >= want)
            break;
        usleep(10000);
    }
    CHECK_EQ_INT(l.n, want);
    return l;
}

static const Cxm__V1__Event *last_event(cxm_arena *a)
{
    ev_list l = events(a);
    return l.n ? l.ev[l.n - 1] : NULL;
}

/* ---- direct calls in write transactions ---- */

typedef struct resp_job {
    ffu_response r;
    const char *id;
    char out[64];
    int fail; /* returned after the call: the transaction rolls back */
} resp_job;

static int resp_fn(cxm_txn *t, void *user)
{
    resp_job *j = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int rc = ffu_on_response(t, ctx.fu, &j->r, &a, &j->id);
    j->out[0] = '\0';
    if (rc == 0 && j->id)
        snprintf(j->out, sizeof j->out, "%s", j->id);
    cxm_arena_dispose(&a);
    return rc ? rc : j->fail;
}

/* A response to an NPS survey (threshold 6, due 24 h) by default. */
static ffu_response resp(const char *rid, const char *cust, double score, int64_t at)
{
    return (ffu_response){.response_id = rid,
                          .survey_id = "nps.main",
                          .customer_id = cust,
                          .touchpoint = "checkout",
                          .kind = CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS,
                          .channel = C_WEB,
                          .score = score,
                          .threshold = 6,
                          .due_hours = 24,
                          .now_ms = at};
}

/* Submit r; the follow-up id, or "" when none was opened. */
static const char *submit(ffu_response r, char out[64])
{
    resp_job j = {.r = r};
    CHECK_EQ_INT(cxm_store_write(store, resp_fn, &j), 0);
    snprintf(out, 64, "%s", j.out);
    return out;
}

typedef struct move_job {
    int op; /* 0 merge, 1 unmerge, 2 erase */
    const char *a, *b;
    char *const *merged;
    size_t nmerged;
    uint64_t records;
} move_job;

static int move_fn(cxm_txn *t, void *user)
{
    move_job *m = user;
    m->records = 0;
    if (m->op == 0)
        return ffu_merge(t, ctx.fu, m->a, m->b);
    if (m->op == 1)
        return ffu_unmerge(t, ctx.fu, m->a, m->b);
    return ffu_erase(t, ctx.fu, m->a, m->merged, m->nmerged, &m->records);
}

/* ---- the handlers over gRPC ---- */

static const cxm_method methods[] = {
    {"ListFollowUps", CXM_UNARY, &cxm__v1__list_follow_ups_request__descriptor, ffu_on_list},
    {"UpdateFollowUp", CXM_UNARY, &cxm__v1__update_follow_up_request__descriptor, ffu_on_update},
    {"GetFollowUpPolicy", CXM_UNARY, &cxm__v1__get_follow_up_policy_request__descriptor,
     ffu_on_get_policy},
    {"SetFollowUpPolicy", CXM_UNARY, &cxm__v1__set_follow_up_policy_request__descriptor,
     ffu_on_set_policy},
};

static cxm_service service = {
    .name = "cxm.v1.FeedbackService", .methods = methods, .nmethods = 4, .ctx = &ctx};
static unit_server srv = {.opts = {.listen = "127.0.0.1:0", .workers = 2}, .service = &service};

static char details[512];

static grpc_status_code call(const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *d, cxm_arena *a, void *out)
{
    char path[96];
    snprintf(path, sizeof path, "/cxm.v1.FeedbackService/%s", method);
    cxm_client_result r = {0};
    ProtobufCMessage *m = NULL;
    if (cxm_client_unary_pb(ch, path, req, d, a, 10000, &m, &r) != 0)
        return GRPC_STATUS_UNKNOWN;
    grpc_status_code st = r.status;
    snprintf(details, sizeof details, "%s", r.details ? r.details : "");
    *(ProtobufCMessage **)out = m;
    cxm_client_result_dispose(&r);
    return st;
}

static grpc_status_code update(Cxm__V1__UpdateFollowUpRequest *req, cxm_arena *a,
                               Cxm__V1__FollowUp **out)
{
    Cxm__V1__UpdateFollowUpResponse *r = NULL;
    grpc_status_code st =
        call("UpdateFollowUp", &req->base, &cxm__v1__update_follow_up_response__descriptor, a, &r);
    *out = r ? r->follow_up : NULL;
    return st;
}

static grpc_status_code list(Cxm__V1__ListFollowUpsRequest *req, cxm_arena *a,
                             Cxm__V1__ListFollowUpsResponse **out)
{
    *out = NULL;
    return call("ListFollowUps", &req->base, &cxm__v1__list_follow_ups_response__descriptor, a,
                out);
}

static grpc_status_code set_policy(Cxm__V1__FollowUpPolicy *p, cxm_arena *a,
                                   Cxm__V1__FollowUpPolicy **out)
{
    Cxm__V1__SetFollowUpPolicyRequest req = CXM__V1__SET_FOLLOW_UP_POLICY_REQUEST__INIT;
    req.policy = p;
    Cxm__V1__SetFollowUpPolicyResponse *r = NULL;
    grpc_status_code st = call("SetFollowUpPolicy", &req.base,
                               &cxm__v1__set_follow_up_policy_response__descriptor, a, &r);
    if (out)
        *out = r ? r->policy : NULL;
    return st;
}

static Cxm__V1__FollowUp *get_one(const char *id, cxm_arena *a)
{
    Cxm__V1__UpdateFollowUpRequest req = CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    req.follow_up_id = (char *)id;
    Cxm__V1__FollowUp *fu = NULL;
    CHECK_EQ_INT(update(&req, a, &fu), GRPC_STATUS_OK); /* an empty update changes nothing */
    return fu;
}

/* Every follow-up, through unfiltered pages of 1000. */
static size_t list_all(cxm_arena *a, Cxm__V1__FollowUp ***out)
{
    Cxm__V1__ListFollowUpsRequest req = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    req.page_size = 1000;
    Cxm__V1__ListFollowUpsResponse *r = NULL;
    CHECK_EQ_INT(list(&req, a, &r), GRPC_STATUS_OK);
    *out = r ? r->follow_ups : NULL;
    CHECK(r && !*r->next_page_token);
    return r ? r->n_follow_ups : 0;
}

/* ---- tests ---- */

static void test_opening_rules(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char id[64];
    uint64_t before = emitted();
    /* Low score at and under the threshold; above it nothing. */
    CHECK(strncmp(submit(resp("o1", "c-open", 6, t0), id), "fu-", 3) == 0);
    Cxm__V1__FollowUp *fu = get_one(id, &a);
    CHECK(fu && fu->reason == R_LOW && fu->state == S_OPEN && fu->version == 1);
    CHECK(fu && fu->due_at_unix_ms == t0 + 24 * HOUR && fu->created_at_unix_ms == t0);
    CHECK(fu && !*fu->owner && strcmp(fu->response_id, "o1") == 0 && fu->score == 6);
    CHECK(fu && strcmp(fu->touchpoint, "checkout") == 0 && fu->channel == C_WEB);
    CHECK_EQ_STR(submit(resp("o2", "c-open", 7, t0), id), "");
    /* Negative text: NEGATIVE at or under -0.6 by default. */
    ffu_response r = resp("o3", "c-open", 9, t0);
    r.has_text = true;
    r.label = L_NEG;
    r.sentiment_score = -0.6;
    CHECK(*submit(r, id));
    CHECK((fu = get_one(id, &a)) && fu->reason == R_TEXT);
    r.response_id = "o4";
    r.sentiment_score = -0.59;
    CHECK_EQ_STR(submit(r, id), "");
    r.response_id = "o5";
    r.label = L_NEU;
    r.sentiment_score = -0.9;
    CHECK_EQ_STR(submit(r, id), "");
    r.response_id = "o6"; /* text without has_text is not text */
    r.label = L_NEG;
    r.has_text = false;
    CHECK_EQ_STR(submit(r, id), "");
    /* A low score wins over negative text. */
    r = resp("o7", "c-open", 2, t0);
    r.has_text = true;
    r.label = L_NEG;
    r.sentiment_score = -0.95;
    CHECK((fu = get_one(submit(r, id), &a)) && fu->reason == R_LOW);
    /* A negative threshold disables the score rule, not the text rule. */
    r.response_id = "o8";
    r.threshold = -1;
    CHECK((fu = get_one(submit(r, id), &a)) && fu->reason == R_TEXT);
    r = resp("o9", "c-open", 0, t0);
    r.threshold = -1;
    CHECK_EQ_STR(submit(r, id), "");
    /* Threshold 0 (a resolved CSAT can not be 0, but a score of 0 is). */
    r = resp("o10", "c-open", 0, t0);
    r.threshold = 0;
    CHECK(*submit(r, id));
    /* due_hours 0 (not resolved by the caller) is 48. */
    r = resp("o11", "c-open", 1, t0);
    r.due_hours = 0;
    CHECK((fu = get_one(submit(r, id), &a)) && fu->due_at_unix_ms == t0 + 48 * HOUR);
    CHECK_EQ_INT(emitted() - before, 6); /* o1, o3, o7, o8, o10, o11 */

    /* The policy: its own threshold, then ignore_text. */
    CHECK(ffu_strongly_negative(ctx.fu, L_NEG, -0.6));
    CHECK(!ffu_strongly_negative(ctx.fu, L_NEG, -0.5));
    CHECK(!ffu_strongly_negative(ctx.fu, L_NEU, -1));
    Cxm__V1__FollowUpPolicy p = CXM__V1__FOLLOW_UP_POLICY__INIT, *got = NULL;
    p.negative_text_score = -0.4;
    CHECK_EQ_INT(set_policy(&p, &a, &got), GRPC_STATUS_OK);
    CHECK(got && got->negative_text_score == -0.4 && got->updated_at_unix_ms >= t0);
    CHECK(ffu_strongly_negative(ctx.fu, L_NEG, -0.5));
    r = resp("o12", "c-open", 9, t0);
    r.has_text = true;
    r.label = L_NEG;
    r.sentiment_score = -0.45;
    CHECK(*submit(r, id));
    p.ignore_text = true;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_OK);
    r.response_id = "o13";
    r.sentiment_score = -1;
    CHECK_EQ_STR(submit(r, id), "");
    CHECK(ffu_strongly_negative(ctx.fu, L_NEG, -1)); /* still strongly negative */
    /* A policy of 0 is the default -0.6, and Get says so. */
    p = (Cxm__V1__FollowUpPolicy)CXM__V1__FOLLOW_UP_POLICY__INIT;
    CHECK_EQ_INT(set_policy(&p, &a, &got), GRPC_STATUS_OK);
    CHECK(got && got->negative_text_score == -0.6);
    CHECK(!ffu_strongly_negative(ctx.fu, L_NEG, -0.5));
    Cxm__V1__GetFollowUpPolicyRequest gq = CXM__V1__GET_FOLLOW_UP_POLICY_REQUEST__INIT;
    Cxm__V1__GetFollowUpPolicyResponse *gr = NULL;
    CHECK_EQ_INT(call("GetFollowUpPolicy", &gq.base,
                      &cxm__v1__get_follow_up_policy_response__descriptor, &a, &gr),
                 GRPC_STATUS_OK);
    CHECK(gr && gr->policy && gr->policy->negative_text_score == -0.6 && !gr->policy->ignore_text);
    cxm_arena_dispose(&a);
}

static Cxm__V1__FollowUpAssignment rule(const char *survey, const char *tp, int channel, int reason,
                                        const char *owner, uint32_t hours)
{
    Cxm__V1__FollowUpAssignment m = CXM__V1__FOLLOW_UP_ASSIGNMENT__INIT;
    m.survey_id = (char *)survey;
    m.touchpoint = (char *)tp;
    m.channel = channel;
    m.reason = reason;
    m.owner = (char *)owner;
    m.due_hours = hours;
    return m;
}

static void test_assignment(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__FollowUpAssignment m[] = {
        rule("nps.main", "", 0, R_TEXT, "text-team", 0), rule("", "delivery", 0, 0, "ops", 4),
        rule("", "", C_WEB, 0, "web", 0),
        rule("nps.main", "delivery", 0, 0, "never", 0), /* shadowed by rule 1 */
    };
    Cxm__V1__FollowUpAssignment *pm[] = {&m[0], &m[1], &m[2], &m[3]};
    Cxm__V1__FollowUpPolicy p = CXM__V1__FOLLOW_UP_POLICY__INIT;
    p.assignments = pm;
    p.n_assignments = 4;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_OK);
    char id[64];
    Cxm__V1__FollowUp *fu;
    ffu_response r = resp("a1", "c-assign", 0, t0);
    r.touchpoint = "delivery";
    CHECK((fu = get_one(submit(r, id), &a)) && strcmp(fu->owner, "ops") == 0 &&
          fu->due_at_unix_ms == t0 + 4 * HOUR);
    r.response_id = "a2"; /* negative text: rule 0 first */
    r.score = 10;
    r.has_text = true;
    r.label = L_NEG;
    r.sentiment_score = -0.9;
    CHECK((fu = get_one(submit(r, id), &a)) && strcmp(fu->owner, "text-team") == 0 &&
          fu->due_at_unix_ms == t0 + 24 * HOUR);
    r = resp("a3", "c-assign", 0, t0);
    r.survey_id = "csat.store";
    CHECK((fu = get_one(submit(r, id), &a)) && strcmp(fu->owner, "web") == 0);
    r.response_id = "a4";
    r.channel = C_APP;
    CHECK((fu = get_one(submit(r, id), &a)) && !*fu->owner && fu->due_at_unix_ms == t0 + 24 * HOUR);
    p.n_assignments = 0;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_OK);
    cxm_arena_dispose(&a);
}

static void test_idempotency(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char id1[64], id2[64];
    uint64_t before = emitted();
    submit(resp("dup-1", "c-dup", 1, t0), id1);
    submit(resp("dup-1", "c-dup", 1, t0 + HOUR), id2); /* a duplicate submission */
    CHECK(*id1 && strcmp(id1, id2) == 0);
    CHECK_EQ_STR(submit(resp("dup-1", "c-dup", 10, t0), id2), id1); /* whatever it says now */
    CHECK_EQ_INT(emitted() - before, 1);
    Cxm__V1__FollowUp *fu = get_one(id1, &a);
    CHECK(fu && fu->created_at_unix_ms == t0 && fu->version == 1);
    /* A rolled-back transaction leaves nothing; its rerun gets the same id. */
    resp_job j = {.r = resp("dup-2", "c-dup", 1, t0), .fail = CXM_ESTALE};
    CHECK_EQ_INT(cxm_store_write(store, resp_fn, &j), CXM_ESTALE);
    snprintf(id1, sizeof id1, "%s", j.out);
    CHECK(*id1);
    CHECK_EQ_INT(emitted() - before, 1);
    Cxm__V1__UpdateFollowUpRequest req = CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    req.follow_up_id = id1;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_NOT_FOUND);
    CHECK(strstr(details, "follow_up_id: no follow-up"));
    CHECK_EQ_STR(submit(resp("dup-2", "c-dup", 1, t0), id2), id1);
    CHECK_EQ_INT(emitted() - before, 2);
    /* Ids depend on the response id only. */
    CHECK(strcmp(submit(resp("dup-3", "c-other", 3, t0 - HOUR), id2), id1) != 0);
    cxm_arena_dispose(&a);
}

static void test_state_machine(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char id[64], id2[64];
    submit(resp("s1", "c-sm", 0, t0), id);
    const Cxm__V1__Event *ev = last_event(&a);
    CHECK(ev && ev->payload_case == CXM__V1__EVENT__PAYLOAD_FOLLOW_UP_CHANGED);
    CHECK(ev && strcmp(ev->customer_id, "c-sm") == 0 &&
          strcmp(ev->follow_up_changed->follow_up_id, id) == 0 &&
          ev->follow_up_changed->open_follow_ups == 1 && ev->follow_up_changed->state == S_OPEN &&
          ev->follow_up_changed->reason == R_LOW &&
          strcmp(ev->follow_up_changed->response_id, "s1") == 0 &&
          strcmp(ev->follow_up_changed->touchpoint, "checkout") == 0);
    submit(resp("s2", "c-sm", 0, t0), id2);
    CHECK((ev = last_event(&a)) && ev->follow_up_changed->open_follow_ups == 2);

    Cxm__V1__UpdateFollowUpRequest req = CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    Cxm__V1__FollowUp *fu = NULL;
    req.follow_up_id = id;
    req.state = S_PROGRESS;
    req.owner = "kim";
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->state == S_PROGRESS && fu->version == 2 && strcmp(fu->owner, "kim") == 0 &&
          fu->closed_at_unix_ms == 0 && fu->updated_at_unix_ms >= t0);
    CHECK((ev = last_event(&a)) && ev->follow_up_changed->state == S_PROGRESS &&
          strcmp(ev->follow_up_changed->owner, "kim") == 0 &&
          ev->follow_up_changed->open_follow_ups == 2);
    /* The same state and owner again: nothing changes, no event. */
    uint64_t before = emitted();
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->version == 2);
    CHECK_EQ_INT(emitted(), before);
    /* Close: closed_at set, the open count drops. */
    req = (Cxm__V1__UpdateFollowUpRequest)CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    req.follow_up_id = id;
    req.state = S_CLOSED;
    req.expected_version = 2;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    int64_t closed_at = fu ? fu->closed_at_unix_ms : 0;
    CHECK(fu && fu->version == 3 && closed_at >= t0 && strcmp(fu->owner, "kim") == 0);
    CHECK((ev = last_event(&a)) && ev->follow_up_changed->open_follow_ups == 1 &&
          ev->follow_up_changed->state == S_CLOSED);
    /* A stale expected_version names both versions and changes nothing. */
    req.state = S_OPEN;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_FAILED_PRECONDITION);
    CHECK(strstr(details, "expected_version") && strstr(details, "version 3, not 2"));
    CHECK((fu = get_one(id, &a)) && fu->state == S_CLOSED && fu->version == 3);
    /* CLOSED to CLOSED changes nothing; to DISMISSED keeps closed_at. */
    req.expected_version = 3;
    req.state = S_CLOSED;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->version == 3);
    req.state = S_DISMISSED;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->version == 4 && fu->closed_at_unix_ms == closed_at);
    CHECK((ev = last_event(&a)) && ev->follow_up_changed->open_follow_ups == 1);
    /* Reopen: closed_at cleared, counted again; then waiting, unassigned. */
    req.expected_version = 0;
    req.state = S_OPEN;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->version == 5 && fu->closed_at_unix_ms == 0 && fu->state == S_OPEN);
    CHECK((ev = last_event(&a)) && ev->follow_up_changed->open_follow_ups == 2);
    req.state = S_WAITING;
    req.unassign = true;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->version == 6 && !*fu->owner && fu->state == S_WAITING);
    CHECK((ev = last_event(&a)) && !*ev->follow_up_changed->owner);
    req.state = 0; /* unassigning the unassigned changes nothing */
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->version == 6);

    /* Notes: appended oldest first with author and time; a change each. */
    req = (Cxm__V1__UpdateFollowUpRequest)CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    req.follow_up_id = id;
    req.note = "called, no answer";
    req.author = "kim";
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    req.note = "전화 드렸습니다";
    req.author = "lee";
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->version == 8 && fu->n_notes == 2);
    CHECK(fu && fu->n_notes == 2 && strcmp(fu->notes[0]->text, "called, no answer") == 0 &&
          strcmp(fu->notes[1]->author, "lee") == 0 && fu->notes[1]->created_at_unix_ms >= t0);
    CHECK((ev = last_event(&a)) && strcmp(ev->follow_up_changed->follow_up_id, id) == 0);
    CHECK(fu && fu->state == S_WAITING); /* a note alone leaves the state */

    /* Bad input, each naming its field. */
    static char big[4098];
    memset(big, 'n', sizeof big - 1);
    req.note = big;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "note"));
    big[4096] = '\0'; /* exactly 4 KiB is fine */
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    req.note = "x";
    req.author = "";
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "author: required with a note"));
    req = (Cxm__V1__UpdateFollowUpRequest)CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    req.follow_up_id = id;
    req.owner = "kim";
    req.unassign = true;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "unassign"));
    req.unassign = false;
    req.state = 9;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "state"));
    req.state = 0;
    req.follow_up_id = "";
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "follow_up_id"));
    req.follow_up_id = "fu-0000000000000000";
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_NOT_FOUND);

    /* At most 200 notes, so the follow-up always fits a reply; it can still
     * be closed after that. */
    req = (Cxm__V1__UpdateFollowUpRequest)CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    req.follow_up_id = id;
    req.note = "again";
    req.author = "kim";
    for (int i = 3; i < 200; i++)
        CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->n_notes == 200);
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_FAILED_PRECONDITION);
    CHECK(strstr(details, "note: the follow-up already has 200 notes"));
    req.note = "";
    req.state = S_CLOSED;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    CHECK(fu && fu->state == S_CLOSED && fu->n_notes == 200);
    cxm_arena_dispose(&a);
}

static void test_policy_validation(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__FollowUpPolicy p = CXM__V1__FOLLOW_UP_POLICY__INIT;
    p.negative_text_score = 0.1;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "policy.negative_text_score: must be -1 to 0"));
    p.negative_text_score = -1.5;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_INVALID_ARGUMENT);
    p.negative_text_score = -1;
    Cxm__V1__FollowUpAssignment ok = rule("", "", 0, 0, "owner", 0);
    Cxm__V1__FollowUpAssignment *many[101];
    for (int i = 0; i < 101; i++)
        many[i] = &ok;
    p.assignments = many;
    p.n_assignments = 101;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "policy.assignments: at most 100"));
    p.n_assignments = 100;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_OK);
    Cxm__V1__FollowUpAssignment bad[] = {
        rule("Bad!", "", 0, 0, "o", 0), rule("", "tp x", 0, 0, "o", 0),
        rule("", "", 99, 0, "o", 0),    rule("", "", 0, 7, "o", 0),
        rule("", "", 0, 0, "", 0),      rule("", "", 0, 0, "o", 100000),
    };
    const char *want[] = {"policy.assignments[1].survey_id", "policy.assignments[1].touchpoint",
                          "policy.assignments[1].channel",   "policy.assignments[1].reason",
                          "policy.assignments[1].owner",     "policy.assignments[1].due_hours"};
    for (int i = 0; i < 6; i++) {
        Cxm__V1__FollowUpAssignment *two[] = {&ok, &bad[i]};
        p.assignments = two;
        p.n_assignments = 2;
        CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_INVALID_ARGUMENT);
        CHECK(strstr(details, want[i]));
    }
    char owner[130];
    memset(owner, 'o', 129);
    owner[129] = '\0';
    Cxm__V1__FollowUpAssignment lng = rule("", "", 0, 0, owner, 0), *one[] = {&lng};
    p.assignments = one;
    p.n_assignments = 1;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "policy.assignments[0].owner"));
    owner[128] = '\0';
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_OK);
    Cxm__V1__SetFollowUpPolicyRequest none = CXM__V1__SET_FOLLOW_UP_POLICY_REQUEST__INIT;
    Cxm__V1__SetFollowUpPolicyResponse *r = NULL;
    CHECK_EQ_INT(call("SetFollowUpPolicy", &none.base,
                      &cxm__v1__set_follow_up_policy_response__descriptor, &a, &r),
                 GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "policy: required"));
    p = (Cxm__V1__FollowUpPolicy)CXM__V1__FOLLOW_UP_POLICY__INIT;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_OK);
    cxm_arena_dispose(&a);
}

/* ---- listing against a naive model ---- */

typedef struct lcase {
    int states[3];
    size_t nstates;
    const char *owner, *customer, *touchpoint, *survey;
    bool unassigned, overdue;
    int64_t from, to;
} lcase;

static bool naive_keep(const lcase *c, const Cxm__V1__FollowUp *f, int64_t now)
{
    bool st = c->nstates == 0;
    for (size_t i = 0; i < c->nstates; i++)
        st |= (int)f->state == c->states[i];
    bool open = f->state != S_CLOSED && f->state != S_DISMISSED;
    return st && (!c->owner || strcmp(c->owner, f->owner) == 0) && (!c->unassigned || !*f->owner) &&
           (!c->customer || strcmp(c->customer, f->customer_id) == 0) &&
           (!c->touchpoint || strcmp(c->touchpoint, f->touchpoint) == 0) &&
           (!c->survey || strcmp(c->survey, f->survey_id) == 0) &&
           (!c->from || f->created_at_unix_ms >= c->from) &&
           (!c->to || f->created_at_unix_ms < c->to) &&
           (!c->overdue || (open && f->due_at_unix_ms < now));
}

static int by_due(const void *x, const void *y)
{
    const Cxm__V1__FollowUp *a = *(Cxm__V1__FollowUp *const *)x,
                            *b = *(Cxm__V1__FollowUp *const *)y;
    if (a->due_at_unix_ms != b->due_at_unix_ms)
        return a->due_at_unix_ms < b->due_at_unix_ms ? -1 : 1;
    return strcmp(a->follow_up_id, b->follow_up_id);
}

/* Page through c with page size ps; the ids must be the model's, in order. */
static void check_case(const lcase *c, int ps, Cxm__V1__FollowUp **all, size_t nall)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__ListFollowUpsRequest req = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    int states[3];
    memcpy(states, c->states, sizeof states);
    req.states = (Cxm__V1__FollowUpState *)states;
    req.n_states = c->nstates;
    req.owner = (char *)(c->owner ? c->owner : "");
    req.unassigned = c->unassigned;
    req.customer_id = (char *)(c->customer ? c->customer : "");
    req.touchpoint = (char *)(c->touchpoint ? c->touchpoint : "");
    req.survey_id = (char *)(c->survey ? c->survey : "");
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = c->from;
    range.to_unix_ms = c->to;
    req.created = c->from || c->to ? &range : NULL;
    req.overdue_only = c->overdue;
    req.page_size = ps;
    size_t got = 0, pages = 0, nwant = 0;
    bool same = true;
    const Cxm__V1__FollowUp **want = cxm_arena_alloc(&a, (nall + 1) * sizeof *want);
    int64_t now = cxm_svc_now_ms();
    for (size_t i = 0; i < nall; i++)
        if (naive_keep(c, all[i], now))
            want[nwant++] = all[i];
    for (;;) {
        Cxm__V1__ListFollowUpsResponse *r = NULL;
        CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_OK);
        if (!r)
            break;
        pages++;
        CHECK(r->n_follow_ups <= (size_t)ps);
        for (size_t i = 0; i < r->n_follow_ups; i++, got++)
            same &=
                got < nwant && strcmp(r->follow_ups[i]->follow_up_id, want[got]->follow_up_id) == 0;
        if (!*r->next_page_token)
            break;
        CHECK(r->n_follow_ups == (size_t)ps); /* short pages only at the end */
        req.page_token = r->next_page_token;
        if (pages > nall + 2)
            break;
    }
    CHECK_EQ_INT(got, nwant);
    CHECK(same);
    if (!same || got != nwant)
        fprintf(stderr, "  case: owner=%s customer=%s states=%zu overdue=%d ps=%d\n",
                c->owner ? c->owner : "-", c->customer ? c->customer : "-", c->nstates, c->overdue,
                ps);
    cxm_arena_dispose(&a);
}

static void test_listing(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    /* A small world: 48 follow-ups of 4 customers, due from 30 h ago to
     * 17 h ahead (never near now), in every state, three owners. */
    static const char *owners[] = {"", "kim", "lee"};
    static const char *tps[] = {"checkout", "delivery", "store"};
    static const int states[] = {S_OPEN, S_PROGRESS, S_WAITING, S_CLOSED, S_DISMISSED};
    /* Due times are now + k hours + 30 minutes: never near the clock. */
    int64_t tn = cxm_svc_now_ms();
    for (int i = 0; i < 48; i++) {
        char rid[32], cust[32], id[64];
        snprintf(rid, sizeof rid, "l%d", i);
        snprintf(cust, sizeof cust, "c-list-%d", i % 4);
        ffu_response r =
            resp(rid, cust, i % 7, tn - (int64_t)(54 - (i * 7) % 48) * HOUR - HOUR / 2);
        r.touchpoint = tps[i % 3];
        r.survey_id = i % 5 ? "nps.main" : "csat.web";
        submit(r, id);
        Cxm__V1__UpdateFollowUpRequest req = CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
        req.follow_up_id = id;
        req.state = states[i % 5];
        req.owner = (char *)owners[(i / 2) % 3];
        Cxm__V1__FollowUp *fu = NULL;
        CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    }
    Cxm__V1__FollowUp **all;
    size_t nall = list_all(&a, &all);
    CHECK(nall >= 48);
    for (size_t i = 1; i < nall; i++) /* the unfiltered list is the order itself */
        CHECK(by_due(&all[i - 1], &all[i]) < 0);
    qsort(all, nall, sizeof *all, by_due);
    size_t overdue = 0;
    for (size_t i = 0; i < nall; i++)
        overdue += all[i]->due_at_unix_ms < tn && all[i]->state != S_CLOSED &&
                   all[i]->state != S_DISMISSED;
    CHECK(overdue > 5 && overdue < nall);

    const lcase cases[] = {
        {.nstates = 0},
        {.states = {S_OPEN}, .nstates = 1},
        {.states = {S_CLOSED, S_PROGRESS}, .nstates = 2},
        {.owner = "kim"},
        {.unassigned = true},
        {.states = {S_WAITING}, .nstates = 1, .unassigned = true},
        {.overdue = true},
        {.states = {S_OPEN, S_CLOSED}, .nstates = 2, .overdue = true},
        {.owner = "lee", .overdue = true},
        {.customer = "c-list-1"},
        {.states = {S_OPEN}, .nstates = 1, .customer = "c-list-2", .overdue = true},
        {.touchpoint = "delivery"},
        {.survey = "csat.web"},
        {.owner = "kim", .touchpoint = "store", .survey = "nps.main"},
        {.from = tn - 40 * HOUR, .to = tn - 20 * HOUR},
        {.states = {S_PROGRESS}, .nstates = 1, .unassigned = true, .from = tn - 30 * HOUR},
        {.customer = "nobody"},
        {.owner = "nobody"},
    };
    const int sizes[] = {1, 3, 7, 1000};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t s = 0; s < 4; s++)
            check_case(&cases[c], sizes[s], all, nall);

    /* Bad input. */
    Cxm__V1__ListFollowUpsRequest req = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    Cxm__V1__ListFollowUpsResponse *r = NULL;
    req.owner = "kim";
    req.unassigned = true;
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "unassigned"));
    req = (Cxm__V1__ListFollowUpsRequest)CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    req.page_size = -1;
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "page_size"));
    req.page_size = 5000; /* cut to 1000 */
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_OK);
    req.page_size = 0; /* 50 */
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_OK);
    CHECK(r && r->n_follow_ups == (nall < 50 ? nall : 50));
    int st[] = {12};
    req.states = (Cxm__V1__FollowUpState *)st;
    req.n_states = 1;
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "states[0]"));
    req.n_states = 0;
    Cxm__V1__TimeRange bad = CXM__V1__TIME_RANGE__INIT;
    bad.from_unix_ms = 20;
    bad.to_unix_ms = 10;
    req.created = &bad;
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "created"));
    req.created = NULL;
    req.page_size = 2;
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_OK);
    CHECK(r && *r->next_page_token);
    char *token = r ? r->next_page_token : "";
    req.owner = "kim"; /* a token of other filters */
    req.page_token = token;
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "page_token"));
    req.owner = "";
    char forged[128];
    snprintf(forged, sizeof forged, "%.17s12.fu-zz", token);
    req.page_token = forged;
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(details, "page_token"));
    req.page_token = "garbage";
    CHECK_EQ_INT(list(&req, &a, &r), GRPC_STATUS_INVALID_ARGUMENT);
    cxm_arena_dispose(&a);
}

/* ---- erasure and merges ---- */

static size_t count_of(const char *customer, cxm_arena *a)
{
    Cxm__V1__ListFollowUpsRequest req = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    req.customer_id = (char *)customer;
    req.page_size = 1000;
    Cxm__V1__ListFollowUpsResponse *r = NULL;
    CHECK_EQ_INT(list(&req, a, &r), GRPC_STATUS_OK);
    return r ? r->n_follow_ups : 0;
}

static void test_erase_merge(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char id[64], xid[64], bid[64];
    submit(resp("m1", "c-a", 0, t0), id);
    submit(resp("m2", "c-a", 0, t0 + HOUR), id);
    submit(resp("m3", "c-b", 0, t0 + 2 * HOUR), bid);
    submit(resp("m4", "c-x", 0, t0 + 3 * HOUR), xid);
    Cxm__V1__UpdateFollowUpRequest req = CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    Cxm__V1__FollowUp *fu = NULL;
    req.follow_up_id = id; /* one of A's is closed: not counted as open */
    req.state = S_CLOSED;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);

    /* X into B, then B into A: all of them are A's, announced with A's count. */
    move_job m = {0, "c-x", "c-b"};
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    CHECK_EQ_INT(count_of("c-b", &a), 2);
    m = (move_job){0, "c-b", "c-a"};
    uint64_t before = emitted();
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    CHECK_EQ_INT(emitted() - before, 2);
    const Cxm__V1__Event *ev = last_event(&a);
    CHECK(ev && strcmp(ev->customer_id, "c-a") == 0 && ev->follow_up_changed->open_follow_ups == 3);
    CHECK_EQ_INT(count_of("c-a", &a), 4);
    CHECK_EQ_INT(count_of("c-b", &a), 0);
    CHECK((fu = get_one(bid, &a)) && strcmp(fu->customer_id, "c-a") == 0 && fu->version == 2);
    /* Unmerge B from A: B's and X's come back to B; then X from B. */
    m = (move_job){1, "c-b", "c-a"};
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    CHECK_EQ_INT(count_of("c-a", &a), 2);
    CHECK_EQ_INT(count_of("c-b", &a), 2);
    CHECK((ev = last_event(&a)) && strcmp(ev->customer_id, "c-b") == 0 &&
          ev->follow_up_changed->open_follow_ups == 2);
    m = (move_job){1, "c-x", "c-b"};
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    CHECK_EQ_INT(count_of("c-b", &a), 1);
    CHECK_EQ_INT(count_of("c-x", &a), 1);
    CHECK((fu = get_one(xid, &a)) && strcmp(fu->customer_id, "c-x") == 0);
    m = (move_job){1, "c-x", "c-b"}; /* nothing left to move */
    before = emitted();
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    CHECK_EQ_INT(emitted(), before);

    /* Erase A with B merged into it: both go, X stays; by id too. */
    m = (move_job){0, "c-b", "c-a"};
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    char *merged[] = {"c-b"};
    m = (move_job){2, "c-a", NULL, merged, 1};
    before = emitted();
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    CHECK_EQ_INT(m.records, 3);
    CHECK_EQ_INT(emitted(), before);
    CHECK_EQ_INT(count_of("c-a", &a), 0);
    CHECK_EQ_INT(count_of("c-b", &a), 0);
    CHECK_EQ_INT(count_of("c-x", &a), 1);
    req = (Cxm__V1__UpdateFollowUpRequest)CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    req.follow_up_id = bid;
    CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_NOT_FOUND);
    Cxm__V1__FollowUp **all;
    size_t nall = list_all(&a, &all);
    for (size_t i = 0; i < nall; i++)
        CHECK(strcmp(all[i]->customer_id, "c-a") != 0 && strcmp(all[i]->customer_id, "c-b") != 0);
    /* Unmerge after the erasure finds nothing; erasing again erases nothing. */
    m = (move_job){1, "c-b", "c-a"};
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    m = (move_job){2, "c-a", NULL, merged, 1};
    CHECK_EQ_INT(cxm_store_write(store, move_fn, &m), 0);
    CHECK_EQ_INT(m.records, 0);
    cxm_arena_dispose(&a);
}

/* ---- bench: test_ffu bench ---- */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct bench_batch {
    int first, n;
    int64_t base;
} bench_batch;

/* n responses, each opening a follow-up: 20k customers, 50 touchpoints
 * (one response in 10k at "rare"), created over the last 30 days. */
static int bench_fn(cxm_txn *t, void *user)
{
    bench_batch *b = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int rc = 0;
    for (int i = b->first; i < b->first + b->n && rc == 0; i++) {
        char rid[32], cust[32], tp[16];
        snprintf(rid, sizeof rid, "b%d", i);
        snprintf(cust, sizeof cust, "bc%d", i % 20000);
        snprintf(tp, sizeof tp, i % 10000 == 7 ? "rare" : "tp%d", i % 50);
        ffu_response r = resp(rid, cust, i % 7, b->base + (int64_t)(i * 7919 % 720) * HOUR);
        r.touchpoint = tp;
        const char *id;
        rc = ffu_on_response(t, ctx.fu, &r, &a, &id);
        cxm_arena_reset(&a);
    }
    cxm_arena_dispose(&a);
    return rc;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The median of 21 ListFollowUps calls, and their page's size. */
static double bench_list(Cxm__V1__ListFollowUpsRequest *req, size_t *n)
{
    double t[21];
    for (int i = 0; i < 21; i++) {
        cxm_arena a;
        cxm_arena_init(&a, NULL, 0, 0);
        Cxm__V1__ListFollowUpsResponse *r = NULL;
        double start = mono_ms();
        CHECK_EQ_INT(list(req, &a, &r), GRPC_STATUS_OK);
        t[i] = mono_ms() - start;
        *n = r ? r->n_follow_ups : 0;
        cxm_arena_dispose(&a);
    }
    qsort(t, 21, sizeof *t, cmp_double);
    return t[10];
}

static void bench(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__FollowUpAssignment m[10], *pm[10];
    char owners[10][16], tps[10][16];
    for (int k = 0; k < 10; k++) {
        snprintf(owners[k], sizeof owners[k], "owner-%d", k);
        snprintf(tps[k], sizeof tps[k], "tp%d", k);
        m[k] = rule("", tps[k], 0, 0, owners[k], 0);
        pm[k] = &m[k];
    }
    Cxm__V1__FollowUpPolicy p = CXM__V1__FOLLOW_UP_POLICY__INIT;
    p.assignments = pm;
    p.n_assignments = 10;
    CHECK_EQ_INT(set_policy(&p, &a, NULL), GRPC_STATUS_OK);
    const int total = 100000, per = 1000;
    double start = mono_ms();
    for (int i = 0; i < total; i += per) {
        bench_batch b = {i, per, cxm_svc_now_ms() - 30 * 24 * HOUR};
        CHECK_EQ_INT(cxm_store_write(store, bench_fn, &b), 0);
    }
    double took = mono_ms() - start;
    printf("ffu_on_response: %d follow-ups opened in %.0f ms (%.1f us each, batches of %d, "
           "with FollowUpChanged)\n",
           total, took, took * 1e3 / total, per);
    Cxm__V1__ListFollowUpsRequest lq = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    Cxm__V1__ListFollowUpsResponse *lr = NULL; /* the 1000 due first go in progress: 1% */
    lq.page_size = 1000;
    CHECK_EQ_INT(list(&lq, &a, &lr), GRPC_STATUS_OK);
    Cxm__V1__FollowUp **first = lr ? lr->follow_ups : NULL;
    for (size_t i = 0; lr && i < lr->n_follow_ups; i++) {
        Cxm__V1__UpdateFollowUpRequest req = CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
        Cxm__V1__FollowUp *fu = NULL;
        req.follow_up_id = first[i]->follow_up_id;
        req.state = S_PROGRESS;
        CHECK_EQ_INT(update(&req, &a, &fu), GRPC_STATUS_OK);
    }
    static const char *names[] = {"no filter",
                                  "owner",
                                  "unassigned",
                                  "states (1%)",
                                  "overdue_only",
                                  "customer_id",
                                  "touchpoint (rare: every summary read)"};
    for (int c = 0; c < 7; c++) {
        Cxm__V1__ListFollowUpsRequest req = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
        int st[] = {S_PROGRESS};
        if (c == 1)
            req.owner = "owner-3";
        if (c == 2)
            req.unassigned = true;
        if (c == 3) {
            req.states = (Cxm__V1__FollowUpState *)st;
            req.n_states = 1;
        }
        req.overdue_only = c == 4;
        if (c == 5)
            req.customer_id = "bc77";
        if (c == 6)
            req.touchpoint = "rare";
        size_t n = 0;
        double ms = bench_list(&req, &n);
        printf("ListFollowUps over %d, %s: %zu on the page, median %.3f ms\n", total, names[c], n,
               ms);
    }
    cxm_arena_dispose(&a);
}

/* ---- setup ---- */

static int setup(void)
{
    if (!mkdtemp(dir))
        return -1;
    cxm_store_opts so = {.nosync = true};
    cxm_bus_producer *p;
    if (cxm_store_open(dir, &so, &store) != 0 || cxm_bus_create(store, NULL, &bus) != 0 ||
        cxm_bus_producer_open(bus, "feedback", &p) != 0 ||
        cxm_store_dbi(store, "t.events", 0, &events_dbi) != 0 ||
        cxm_bus_subscribe(bus, "recorder", "feedback", NULL, 0, record_apply, NULL) != 0 ||
        ffu_open(store, p, &ctx.fu) != 0 || cxm_bus_start(bus) != 0)
        return -1;
    ctx.store = store;
    return unit_server_start(&srv, &ch);
}

int main(int argc, char **argv)
{
    t0 = cxm_svc_now_ms() / HOUR * HOUR;
    CHECK_EQ_INT(setup(), 0);
    if (check_failures)
        return check_report();
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        bench();
    } else {
        test_opening_rules();
        test_assignment();
        test_idempotency();
        test_state_machine();
        test_policy_validation();
        test_listing();
        test_erase_merge();
    }
    cxm_channel_close(ch);
    unit_server_stop(&srv);
    cxm_bus_destroy(bus);
    ffu_close(ctx.fu);
    cxm_store_close(store);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    return check_report();
}
