/*
 * test_nbe_kill.c - acknowledged personalisation writes survive kill -9 of
 * the real cxmd.
 *
 * Two client threads write as fast as cxmd answers, one RecordOutcome after
 * another (impressions, clicks, accepts, dismissals) and one
 * RecordInteractions batch after another, and note every id the server
 * acknowledged. cxmd is killed with SIGKILL while they run, right after
 * acknowledged replies, and restarted on the same data directory. Then
 * every acknowledged outcome id answers duplicate = true, every
 * acknowledged batch comes back entirely as duplicates, an id never sent is
 * not a duplicate, and an impression acknowledged before the kill still
 * counts against its experience's contact cap (Recommend leaves the capped
 * experience out for that customer and not for another).
 *
 *   test_nbe_kill PATH_TO_CXMD kill9
 *
 * Exits 77 (skipped) while cxmd does not serve PersonalisationService.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "cxm/client.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "harness.h"

#define SVC "/cxm.v1.PersonalisationService/"
#define EMAIL CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL
#define NEXP 10         /* experiences e0..e9, plus "capped" */
#define BATCH 10        /* interactions per RecordInteractions */
#define MAX_WRITES 4000 /* per thread: far more than run before the kill */
#define KILL_AFTER 60   /* acknowledged writes of each thread before the kill */

static cxm_arena arena; /* the main thread's calls; freed at exit */

static grpc_status_code call(cxm_channel *ch, const char *method, const void *req,
                             const ProtobufCMessageDescriptor *resp_desc, void *resp, char *details)
{
    return harness_call(ch, SVC, method, req, resp_desc, &arena, resp, details);
}

#define fmt(...) harness_fmt(&arena, __VA_ARGS__)

/* ---- requests (in the caller's arena a) ---- */

static Cxm__V1__RecordOutcomeRequest *outcome(cxm_arena *a, int i)
{
    static const Cxm__V1__OutcomeKind kinds[] = {
        CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION, CXM__V1__OUTCOME_KIND__OUTCOME_KIND_CLICK,
        CXM__V1__OUTCOME_KIND__OUTCOME_KIND_ACCEPT, CXM__V1__OUTCOME_KIND__OUTCOME_KIND_DISMISS};
    Cxm__V1__RecordOutcomeRequest *r = cxm_arena_alloc(a, sizeof *r);
    cxm__v1__record_outcome_request__init(r);
    r->outcome_id = harness_fmt(a, "o%d", i);
    r->customer = harness_ref_identity(a, EMAIL, harness_fmt(a, "k%d@example.com", i % 7));
    r->experience_id = harness_fmt(a, "e%d", i % NEXP);
    r->outcome = kinds[i % 4];
    return r;
}

/* Batch b: interactions "x<b>-0".."x<b>-9" of customer k<b % 7>. */
static Cxm__V1__RecordInteractionsRequest *interactions(cxm_arena *a, int b)
{
    Cxm__V1__Interaction **items = cxm_arena_alloc(a, BATCH * sizeof *items);
    for (int j = 0; j < BATCH; j++) {
        Cxm__V1__Interaction *it = items[j] = cxm_arena_alloc(a, sizeof *it);
        cxm__v1__interaction__init(it);
        it->interaction_id = harness_fmt(a, "x%d-%d", b, j);
        it->customer = harness_ref_identity(a, EMAIL, harness_fmt(a, "k%d@example.com", b % 7));
        it->item_id = harness_fmt(a, "e%d", (b + j) % NEXP);
        it->weight = 1 + j % 3;
        it->interaction_type = "view";
    }
    Cxm__V1__RecordInteractionsRequest *r = cxm_arena_alloc(a, sizeof *r);
    cxm__v1__record_interactions_request__init(r);
    r->interactions = items;
    r->n_interactions = BATCH;
    r->source = "test";
    return r;
}

/* ---- the writers ---- */

typedef struct writer {
    const char *target;
    bool batches;      /* RecordInteractions, else RecordOutcome */
    atomic_int acked;  /* writes 0..acked-1 were acknowledged, in order */
    atomic_bool stop;  /* set by the main thread after the restart */
    int unexpected;    /* a status other than OK / UNAVAILABLE before the kill */
    char details[600]; /* of the first unexpected status */
    pthread_t tid;
} writer;

/* One write; OK means it is durable. */
static grpc_status_code write_one(writer *w, cxm_channel *ch, cxm_arena *a, int i, char *details)
{
    void *resp;
    if (w->batches)
        return harness_call(ch, SVC, "RecordInteractions", interactions(a, i),
                            &cxm__v1__record_interactions_response__descriptor, a, &resp, details);
    return harness_call(ch, SVC, "RecordOutcome", outcome(a, i),
                        &cxm__v1__record_outcome_response__descriptor, a, &resp, details);
}

/* Writes 0, 1, 2, ... one after another until the server goes away (the
 * kill): the writes acknowledged are exactly 0..acked-1. */
static void *writer_main(void *p)
{
    writer *w = p;
    cxm_channel *ch;
    CHECK(cxm_channel_open(w->target, NULL, &ch) == 0, "channel");
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char details[512];
    for (int i = 0; i < MAX_WRITES && !atomic_load(&w->stop); i++) {
        grpc_status_code st = write_one(w, ch, &a, i, details);
        cxm_arena_reset(&a);
        if (st != GRPC_STATUS_OK) {
            if (st != GRPC_STATUS_UNAVAILABLE && st != GRPC_STATUS_DEADLINE_EXCEEDED &&
                st != GRPC_STATUS_CANCELLED && !w->unexpected++)
                snprintf(w->details, sizeof w->details, "write %d: status %d: %s", i, st, details);
            break;
        }
        atomic_store(&w->acked, i + 1);
    }
    cxm_arena_dispose(&a);
    cxm_channel_close(ch);
    return NULL;
}

/* ---- the case ---- */

static void upsert(cxm_channel *ch, const char *id, bool capped)
{
    Cxm__V1__ContactCap cap = CXM__V1__CONTACT_CAP__INIT, *caps = &cap;
    cap.max_contacts = 1;
    cap.period_ms = 86400000;
    Cxm__V1__Experience e = CXM__V1__EXPERIENCE__INIT;
    e.experience_id = (char *)id;
    e.kind = CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_CONTENT;
    e.title = (char *)id;
    if (capped)
        e.contact_caps = &caps, e.n_contact_caps = 1;
    Cxm__V1__UpsertExperienceRequest req = CXM__V1__UPSERT_EXPERIENCE_REQUEST__INIT;
    req.experience = &e;
    Cxm__V1__UpsertExperienceResponse *resp;
    CALL_OK(ch, UpsertExperience, req, cxm__v1__upsert_experience_response, resp);
}

/* Skip (77) while cxmd does not serve PersonalisationService. */
static void skip_unless_served(cxm_channel *ch, test_server *srv)
{
    Cxm__V1__ListExperiencesRequest req = CXM__V1__LIST_EXPERIENCES_REQUEST__INIT;
    Cxm__V1__ListExperiencesResponse *resp;
    char d[512];
    if (call(ch, "ListExperiences", &req, &cxm__v1__list_experiences_response__descriptor, &resp,
             d) != GRPC_STATUS_UNIMPLEMENTED)
        return;
    printf("cxmd does not serve PersonalisationService yet (%s): skipping\n", d);
    cxm_channel_close(ch);
    harness_stop(srv, SIGTERM, 10000);
    harness_cleanup(srv);
    exit(77);
}

static Cxm__V1__RecordOutcomeResponse *outcome_ok(cxm_channel *ch, Cxm__V1__RecordOutcomeRequest *r)
{
    Cxm__V1__RecordOutcomeResponse *resp;
    CALL_OK(ch, RecordOutcome, *r, cxm__v1__record_outcome_response, resp);
    return resp;
}

/* Whether Recommend (k = 100, more than the catalogue) for email returns id. */
static bool recommends(cxm_channel *ch, const char *email, const char *id)
{
    Cxm__V1__RecommendRequest req = CXM__V1__RECOMMEND_REQUEST__INIT;
    req.customer = harness_ref_identity(&arena, EMAIL, email);
    req.k = 100;
    Cxm__V1__RecommendResponse *resp;
    CALL_OK(ch, Recommend, req, cxm__v1__recommend_response, resp);
    for (size_t i = 0; i < resp->n_recommendations; i++)
        if (strcmp(resp->recommendations[i]->experience_id, id) == 0)
            return true;
    return false;
}

/* An impression of "capped" shown to cap@example.com (its cap is 1 a day)
 * and one of e0 to free@example.com, acknowledged before the kill. */
static void before_kill(cxm_channel *ch)
{
    Cxm__V1__RecordOutcomeRequest *r = outcome(&arena, 0);
    r->outcome_id = "cap-1";
    r->customer = harness_ref_identity(&arena, EMAIL, "cap@example.com");
    r->experience_id = "capped";
    r->outcome = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION;
    CHECK(!outcome_ok(ch, r)->duplicate, "cap-1 is new");
    r->outcome_id = "free-1";
    r->customer = harness_ref_identity(&arena, EMAIL, "free@example.com");
    r->experience_id = "e0";
    CHECK(!outcome_ok(ch, r)->duplicate, "free-1 is new");
    CHECK(recommends(ch, "free@example.com", "capped"), "capped is eligible for free@example.com");
    CHECK(!recommends(ch, "cap@example.com", "capped"),
          "capped is over its cap for cap@example.com");
}

/* Start both writers and SIGKILL cxmd once each has KILL_AFTER writes
 * acknowledged (they keep writing: the kill lands between replies). */
static void write_and_kill(test_server *srv, writer *w)
{
    for (int t = 0; t < 2; t++) {
        w[t].target = srv->target;
        w[t].batches = t == 1;
        CHECK(pthread_create(&w[t].tid, NULL, writer_main, &w[t]) == 0, "thread");
    }
    double t0 = test_now_ms();
    while ((atomic_load(&w[0].acked) < KILL_AFTER || atomic_load(&w[1].acked) < KILL_AFTER) &&
           test_now_ms() - t0 < 60000 && !w[0].unexpected && !w[1].unexpected)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    CHECK(harness_stop(srv, SIGKILL, 5000) == 128 + SIGKILL, "kill -9");
    for (int t = 0; t < 2; t++) {
        pthread_join(w[t].tid, NULL);
        CHECK(!w[t].unexpected, "%s", w[t].details);
        CHECK(w[t].acked >= KILL_AFTER, "only %d writes acknowledged in 60 s", (int)w[t].acked);
    }
    printf("kill9: killed after %d outcomes and %d batches of %d interactions acknowledged\n",
           (int)w[0].acked, (int)w[1].acked, BATCH);
}

/* After the restart: every acknowledged write is there exactly once. */
static void check_after(cxm_channel *ch, writer *w)
{
    for (int i = 0; i < w[0].acked; i++)
        CHECK(outcome_ok(ch, outcome(&arena, i))->duplicate, "acknowledged outcome o%d is lost", i);
    for (int b = 0; b < w[1].acked; b++) {
        Cxm__V1__RecordInteractionsResponse *resp;
        CALL_OK(ch, RecordInteractions, *interactions(&arena, b),
                cxm__v1__record_interactions_response, resp);
        CHECK(resp->duplicates == BATCH && resp->n_rejected == 0,
              "acknowledged batch %d: %" PRIu32 " of %d are duplicates after the restart", b,
              resp->duplicates, BATCH);
    }
    Cxm__V1__RecordOutcomeRequest *fresh = outcome(&arena, 0);
    fresh->outcome_id = "never-sent-before";
    CHECK(!outcome_ok(ch, fresh)->duplicate, "an id never sent answers duplicate");
    CHECK(!recommends(ch, "cap@example.com", "capped"),
          "the acknowledged impression of capped no longer counts against its cap");
    CHECK(recommends(ch, "free@example.com", "capped"), "capped is gone for free@example.com");
}

static void case_kill9(cxm_channel *first, test_server *srv)
{
    skip_unless_served(first, srv);
    for (int i = 0; i < NEXP; i++)
        upsert(first, fmt("e%d", i), false);
    upsert(first, "capped", true);
    before_kill(first);
    writer w[2] = {0};
    write_and_kill(srv, w);
    harness_restart(srv);
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv->target, NULL, &ch) == 0, "channel");
    check_after(ch, w);
    printf("kill9: all %d outcomes and %d interactions answer duplicate after the restart\n",
           (int)w[0].acked, (int)w[1].acked * BATCH);
    cxm_channel_close(ch);
}

static const harness_case cases[] = {{"kill9", case_kill9}};

int main(int argc, char **argv)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    int rc = harness_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
    cxm_arena_dispose(&arena);
    return rc;
}
