/*
 * test_personalisation.c - the PersonalisationService over gRPC against the
 * real cxmd, with profile, journey and feedback in the same process so bus
 * events flow: validation naming fields, the catalogue and its pages, cold
 * start, interaction batches, training (sync, async, one at a time, model
 * infos), eligibility (stage, channel, placement, segments, consent and its
 * revocation), caps and pauses, service recovery after a detractor NPS,
 * explanations, similar experiences, erasure, and garbage bytes; a TrainModel
 * waiting for an automatic training, two at once.
 *
 *   test_personalisation PATH_TO_CXMD CASE
 */
#include <inttypes.h>
#include <pthread.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "cxm/client.h"
#include "cxm/v1/feedback.pb-c.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "harness.h"

#define SVC "/cxm.v1.PersonalisationService/"
#define PROFILE "/cxm.v1.ProfileService/"
#define FEEDBACK "/cxm.v1.FeedbackService/"
#define EMAIL CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL
#define OFFER CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_OFFER
#define CONTENT CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_CONTENT
#define ACTION CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_SERVICE_ACTION
#define WEB CXM__V1__CHANNEL__CHANNEL_WEB
#define APP CXM__V1__CHANNEL__CHANNEL_APP
#define CONSIDERATION CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION
#define PURCHASE CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE
#define HOUR_MS 3600000LL
#define INVALID GRPC_STATUS_INVALID_ARGUMENT

static cxm_arena arena; /* everything of the running case; freed at exit */

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

#define fmt(...) harness_fmt(&arena, __VA_ARGS__)
#define by_email(email) harness_ref_identity(&arena, EMAIL, email)
#define by_id(customer_id) harness_ref_id(&arena, customer_id)

static void expect(grpc_status_code st, const char *d, grpc_status_code want, const char *needle)
{
    CHECK(st == want, "status %d, want %d (%s): %s", st, want, needle, d);
    CHECK(strstr(d, needle), "\"%s\" does not name %s", d, needle);
}

/* A call expected to fail with want, its message naming needle. */
static void fails(cxm_channel *ch, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *d, grpc_status_code want, const char *needle)
{
    void *resp;
    char details[512] = "";
    grpc_status_code st = call(ch, method, req, d, &resp, details);
    expect(st, details, want, needle);
}

/* ---- the catalogue ---- */

static Cxm__V1__Experience *exp_new(const char *id, Cxm__V1__ExperienceKind kind)
{
    Cxm__V1__Experience *e = cxm_arena_alloc(&arena, sizeof *e);
    cxm__v1__experience__init(e);
    e->experience_id = (char *)id;
    e->kind = kind;
    e->title = fmt("title of %s", id);
    e->eligibility = cxm_arena_alloc(&arena, sizeof *e->eligibility);
    cxm__v1__eligibility__init(e->eligibility);
    return e;
}

static Cxm__V1__UpsertExperienceResponse *upsert(cxm_channel *ch, Cxm__V1__Experience *e)
{
    Cxm__V1__UpsertExperienceRequest req = CXM__V1__UPSERT_EXPERIENCE_REQUEST__INIT;
    req.experience = e;
    Cxm__V1__UpsertExperienceResponse *r;
    CALL_OK(ch, UpsertExperience, req, cxm__v1__upsert_experience_response, r);
    return r;
}

static void bad_experience(cxm_channel *ch, Cxm__V1__Experience *e, const char *field)
{
    Cxm__V1__UpsertExperienceRequest req = CXM__V1__UPSERT_EXPERIENCE_REQUEST__INIT;
    req.experience = e;
    fails(ch, "UpsertExperience", &req.base, &cxm__v1__upsert_experience_response__descriptor,
          INVALID, field);
}

/* items[0..n) as CONTENT experiences with value 0. */
static void catalogue(cxm_channel *ch, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        upsert(ch, exp_new(ids[i], CONTENT));
}

static char **strv(size_t n, ...)
{
    char **v = cxm_arena_alloc(&arena, (n + 1) * sizeof *v);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        v[i] = va_arg(ap, char *);
    va_end(ap);
    return v;
}

/* An experience for one journey stage, and one that needs a consent. */
static Cxm__V1__Experience *for_stage(const char *id, Cxm__V1__JourneyStage stage)
{
    Cxm__V1__Experience *e = exp_new(id, CONTENT);
    e->eligibility->stages = cxm_arena_alloc(&arena, sizeof *e->eligibility->stages);
    e->eligibility->stages[0] = stage;
    e->eligibility->n_stages = 1;
    return e;
}

static Cxm__V1__Experience *needs_consent(const char *id, const char *scope)
{
    Cxm__V1__Experience *e = exp_new(id, CONTENT);
    e->eligibility->required_consents = strv(1, scope);
    e->eligibility->n_required_consents = 1;
    return e;
}

/* ---- interactions ---- */

static Cxm__V1__Interaction *inter(const char *iid, Cxm__V1__CustomerRef *who, const char *item,
                                   double weight)
{
    Cxm__V1__Interaction *it = cxm_arena_alloc(&arena, sizeof *it);
    cxm__v1__interaction__init(it);
    it->interaction_id = (char *)iid;
    it->customer = who;
    it->item_id = (char *)item;
    it->weight = weight;
    it->interaction_type = "view";
    return it;
}

static Cxm__V1__RecordInteractionsResponse *record(cxm_channel *ch, Cxm__V1__Interaction **v,
                                                   size_t n)
{
    Cxm__V1__RecordInteractionsRequest req = CXM__V1__RECORD_INTERACTIONS_REQUEST__INIT;
    req.interactions = v;
    req.n_interactions = n;
    req.source = "test";
    Cxm__V1__RecordInteractionsResponse *r;
    CALL_OK(ch, RecordInteractions, req, cxm__v1__record_interactions_response, r);
    return r;
}

/* customer (by id) interacted with each item once. */
static void history(cxm_channel *ch, const char *customer, const char *const *items, size_t n)
{
    Cxm__V1__Interaction **v = cxm_arena_alloc(&arena, (n + 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = inter(fmt("%s-%s", customer, items[i]), by_id(customer), items[i], 1);
    Cxm__V1__RecordInteractionsResponse *r = record(ch, v, n);
    CHECK(r->accepted == n, "%s: %u of %zu accepted", customer, r->accepted, n);
}

static const char *const group_a[] = {"a0", "a1", "a2", "a3"};
static const char *const group_b[] = {"b0", "b1", "b2", "b3"};

/* Two tastes: customers of group a like a0..a3, of group b b0..b3; the
 * catalogue holds both groups. Returns nothing; "alice" saw a0 and a1. */
static void two_tastes(cxm_channel *ch, int customers)
{
    catalogue(ch, group_a, 4);
    catalogue(ch, group_b, 4);
    for (int i = 0; i < customers; i++) {
        history(ch, fmt("ua%d", i), group_a, 4);
        history(ch, fmt("ub%d", i), group_b, 4);
    }
    history(ch, "alice", group_a, 2);
}

/* ---- Recommend ---- */

static Cxm__V1__RecommendRequest *rreq(Cxm__V1__CustomerRef *who)
{
    Cxm__V1__RecommendRequest *r = cxm_arena_alloc(&arena, sizeof *r);
    cxm__v1__recommend_request__init(r);
    r->customer = who;
    r->context = cxm_arena_alloc(&arena, sizeof *r->context);
    cxm__v1__recommend_context__init(r->context);
    r->k = 100;
    return r;
}

static Cxm__V1__RecommendResponse *recommend(cxm_channel *ch, Cxm__V1__RecommendRequest *req)
{
    Cxm__V1__RecommendResponse *r;
    CALL_OK(ch, Recommend, *req, cxm__v1__recommend_response, r);
    CHECK(strlen(r->recommendation_id) == 32, "recommendation_id \"%s\"", r->recommendation_id);
    for (size_t i = 0; i < r->n_recommendations; i++)
        CHECK(r->recommendations[i]->rank == i + 1, "rank %u at %zu", r->recommendations[i]->rank,
              i);
    return r;
}

static int position(const Cxm__V1__RecommendResponse *r, const char *id)
{
    for (size_t i = 0; i < r->n_recommendations; i++)
        if (strcmp(r->recommendations[i]->experience_id, id) == 0)
            return (int)i;
    return -1;
}

static bool returns(cxm_channel *ch, Cxm__V1__RecommendRequest *req, const char *id)
{
    return position(recommend(ch, req), id) >= 0;
}

/* Poll until returns(id) == want, up to ms; the time it took. */
static double until(cxm_channel *ch, Cxm__V1__RecommendRequest *req, const char *id, bool want,
                    double ms)
{
    double t0 = test_now_ms();
    while (returns(ch, req, id) != want) {
        CHECK(test_now_ms() - t0 < ms, "%s still %s after %.0f ms", id,
              want ? "not recommended" : "recommended", ms);
        usleep(10000);
    }
    return test_now_ms() - t0;
}

/* Reasons sum to 1 and each has text. */
static void check_reasons(const Cxm__V1__Recommendation *r)
{
    double sum = 0;
    CHECK(r->n_reasons > 0, "%s has no reasons", r->experience_id);
    for (size_t i = 0; i < r->n_reasons; i++) {
        CHECK(*r->reasons[i]->text && r->reasons[i]->contribution > 0, "%s reason %zu",
              r->experience_id, i);
        sum += r->reasons[i]->contribution;
    }
    CHECK(fabs(sum - 1) < 1e-9, "%s: contributions sum to %.12f", r->experience_id, sum);
}

static const Cxm__V1__Reason *reason_of(const Cxm__V1__Recommendation *r, Cxm__V1__ReasonKind k)
{
    for (size_t i = 0; i < r->n_reasons; i++)
        if (r->reasons[i]->kind == k)
            return r->reasons[i];
    return NULL;
}

/* ---- outcomes and training ---- */

static Cxm__V1__RecordOutcomeResponse *outcome(cxm_channel *ch, const char *oid,
                                               Cxm__V1__CustomerRef *who, const char *exp,
                                               Cxm__V1__OutcomeKind kind)
{
    Cxm__V1__RecordOutcomeRequest req = CXM__V1__RECORD_OUTCOME_REQUEST__INIT;
    req.outcome_id = (char *)oid;
    req.customer = who;
    req.experience_id = (char *)exp;
    req.outcome = kind;
    Cxm__V1__RecordOutcomeResponse *r;
    CALL_OK(ch, RecordOutcome, req, cxm__v1__record_outcome_response, r);
    return r;
}

static Cxm__V1__TrainModelRequest *treq(Cxm__V1__Algorithm algo)
{
    Cxm__V1__TrainModelRequest *r = cxm_arena_alloc(&arena, sizeof *r);
    cxm__v1__train_model_request__init(r);
    r->algorithm = algo;
    r->activation = CXM__V1__ACTIVATION__ACTIVATION_ALWAYS;
    return r;
}

static Cxm__V1__TrainModelResponse *train(cxm_channel *ch, Cxm__V1__TrainModelRequest *req)
{
    Cxm__V1__TrainModelResponse *r;
    CALL_OK(ch, TrainModel, *req, cxm__v1__train_model_response, r);
    return r;
}

static Cxm__V1__GetModelInfoResponse *model_info(cxm_channel *ch)
{
    Cxm__V1__GetModelInfoRequest req = CXM__V1__GET_MODEL_INFO_REQUEST__INIT;
    Cxm__V1__GetModelInfoResponse *r;
    CALL_OK(ch, GetModelInfo, req, cxm__v1__get_model_info_response, r);
    return r;
}

static Cxm__V1__TrainModelRequest__ParamsEntry *param(const char *name, double v)
{
    Cxm__V1__TrainModelRequest__ParamsEntry *e = cxm_arena_alloc(&arena, sizeof *e);
    cxm__v1__train_model_request__params_entry__init(e);
    e->key = (char *)name;
    e->value = v;
    return e;
}

/* ALS with 64 factors and 40 iterations: a training that takes a while. */
static Cxm__V1__TrainModelRequest *slow_als(void)
{
    Cxm__V1__TrainModelRequest *r = treq(CXM__V1__ALGORITHM__ALGORITHM_ALS);
    r->params = cxm_arena_alloc(&arena, 2 * sizeof *r->params);
    r->params[0] = param("factors", 64);
    r->params[1] = param("iterations", 40);
    r->n_params = 2;
    return r;
}

/* Polls GetModelInfo until a training started by trigger runs. */
static Cxm__V1__GetModelInfoResponse *training_by(cxm_channel *ch, const char *trigger)
{
    Cxm__V1__GetModelInfoResponse *mi = model_info(ch);
    for (double end = test_now_ms() + 30000;
         !mi->training || strcmp(mi->training->trigger, trigger) != 0; mi = model_info(ch)) {
        CHECK(test_now_ms() < end, "no training by \"%s\" in 30 s", trigger);
        usleep(2000);
    }
    return mi;
}

/* Polls GetModelInfo until no training runs. */
static Cxm__V1__GetModelInfoResponse *trained(cxm_channel *ch)
{
    Cxm__V1__GetModelInfoResponse *mi = model_info(ch);
    for (double end = test_now_ms() + 60000; mi->training; mi = model_info(ch)) {
        CHECK(test_now_ms() < end, "the training did not end in 60 s");
        usleep(20000);
    }
    return mi;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- profile ---- */

static const char *profile_of(cxm_channel *ch, const char *email)
{
    Cxm__V1__Identity id = CXM__V1__IDENTITY__INIT, *ids[] = {&id};
    id.type = EMAIL;
    id.value = (char *)email;
    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    req.identities = ids;
    req.n_identities = 1;
    Cxm__V1__UpsertProfileResponse *r;
    char d[512];
    CHECK(pcall(ch, "UpsertProfile", &req.base, &cxm__v1__upsert_profile_response__descriptor, &r,
                d) == GRPC_STATUS_OK,
          "UpsertProfile: %s", d);
    return r->profile->customer_id;
}

static void set_consent(cxm_channel *ch, const char *id, const char *scope,
                        Cxm__V1__ConsentState state)
{
    Cxm__V1__SetConsentRequest req = CXM__V1__SET_CONSENT_REQUEST__INIT;
    req.customer = by_id(id);
    req.scope = (char *)scope;
    req.state = state;
    req.source = "web_banner";
    Cxm__V1__SetConsentResponse *r;
    char d[512];
    CHECK(pcall(ch, "SetConsent", &req.base, &cxm__v1__set_consent_response__descriptor, &r, d) ==
              GRPC_STATUS_OK,
          "SetConsent: %s", d);
}

/* ---- cases ---- */

static const char *const methods[] = {"UpsertExperience",   "Recommend",      "RecordOutcome",
                                      "SimilarExperiences", "TrainModel",     "GetModelInfo",
                                      "RecordInteractions", "ListExperiences"};

/* Garbage bytes to every method; then every kind of bad field, named. */
static void case_validation(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        cxm_client_result res;
        CHECK(cxm_client_unary(ch, fmt(SVC "%s", methods[i]), "\xff\xff\xff\x01", 4, 5000, &res) ==
                  0,
              "call %s", methods[i]);
        CHECK(res.status == INVALID, "garbage to %s: status %d", methods[i], res.status);
        cxm_client_result_dispose(&res);
    }
    upsert(ch, exp_new("known", CONTENT));

    Cxm__V1__RecommendRequest *r = rreq(by_id("c1"));
    const ProtobufCMessageDescriptor *rd = &cxm__v1__recommend_response__descriptor;
    r->k = 101;
    fails(ch, "Recommend", &r->base, rd, INVALID, "k: at most 100");
    r->k = 10;
    r->n_exclude_experience_ids = 1001;
    r->exclude_experience_ids = cxm_arena_alloc(&arena, 1001 * sizeof(char *));
    for (int i = 0; i < 1001; i++)
        r->exclude_experience_ids[i] = "x";
    fails(ch, "Recommend", &r->base, rd, INVALID, "exclude_experience_ids");
    r->n_exclude_experience_ids = 2;
    r->exclude_experience_ids[1] = "bad id";
    fails(ch, "Recommend", &r->base, rd, INVALID, "exclude_experience_ids[1]");
    r->n_exclude_experience_ids = 0;
    r->kinds = cxm_arena_alloc(&arena, sizeof *r->kinds);
    r->kinds[0] = 42;
    r->n_kinds = 1;
    fails(ch, "Recommend", &r->base, rd, INVALID, "kinds[0]: unknown experience kind 42");
    r->n_kinds = 0;
    r->context->channel = 99;
    fails(ch, "Recommend", &r->base, rd, INVALID, "context.channel: unknown channel 99");
    r->context->channel = 0;
    r->context->stage = 77;
    fails(ch, "Recommend", &r->base, rd, INVALID, "context.stage");
    r->context->stage = 0;
    r->customer = NULL;
    fails(ch, "Recommend", &r->base, rd, INVALID, "customer");

    Cxm__V1__Experience *e = exp_new("", CONTENT);
    bad_experience(ch, e, "experience.experience_id");
    e = exp_new("bad id!", CONTENT);
    bad_experience(ch, e, "experience.experience_id");
    bad_experience(ch, exp_new("x", 0), "experience.kind");
    bad_experience(ch, exp_new("x", 9), "experience.kind: unknown experience kind 9");
    e = exp_new("x", OFFER);
    Cxm__V1__Channel chans[] = {WEB, APP, 42};
    e->eligibility->channels = chans;
    e->eligibility->n_channels = 3;
    bad_experience(ch, e, "experience.eligibility.channels[2]: unknown channel 42");
    e = exp_new("x", OFFER);
    e->eligibility->placements = strv(2, "home", "");
    e->eligibility->n_placements = 2;
    bad_experience(ch, e, "experience.eligibility.placements[1]");
    e = exp_new("x", OFFER);
    e->weight = 101;
    bad_experience(ch, e, "experience.weight");
    e = exp_new("x", OFFER);
    e->value = -1;
    bad_experience(ch, e, "experience.value");
    e = exp_new("x", OFFER);
    e->value = NAN;
    bad_experience(ch, e, "experience.value");
    e = exp_new("x", OFFER);
    e->valid_from_unix_ms = 2000;
    e->valid_until_unix_ms = 1000;
    bad_experience(ch, e, "experience.valid_until_unix_ms");
    e = exp_new("x", OFFER);
    Cxm__V1__ContactCap cap = CXM__V1__CONTACT_CAP__INIT, *caps[5] = {&cap, &cap, &cap, &cap, &cap};
    cap.max_contacts = 1;
    cap.period_ms = HOUR_MS;
    e->contact_caps = caps;
    e->n_contact_caps = 5;
    bad_experience(ch, e, "experience.contact_caps");
    e->n_contact_caps = 1;
    cap.period_ms = 1000;
    bad_experience(ch, e, "experience.contact_caps[0].period_ms");
    cap.period_ms = HOUR_MS;
    cap.max_contacts = 0;
    bad_experience(ch, e, "experience.contact_caps[0].max_contacts");
    e = exp_new("x", OFFER);
    e->pause_after_dismiss_ms = -5;
    bad_experience(ch, e, "experience.pause_after_dismiss_ms");
    e = exp_new("x", OFFER);
    e->title = cxm_arena_calloc(&arena, 300, 1);
    memset(e->title, 'a', 299);
    bad_experience(ch, e, "experience.title");

    Cxm__V1__RecordOutcomeRequest o = CXM__V1__RECORD_OUTCOME_REQUEST__INIT;
    const ProtobufCMessageDescriptor *od = &cxm__v1__record_outcome_response__descriptor;
    o.outcome_id = "o1";
    o.customer = by_id("c1");
    o.experience_id = "nope";
    o.outcome = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_CLICK;
    fails(ch, "RecordOutcome", &o.base, od, GRPC_STATUS_NOT_FOUND, "experience_id: no experience");
    o.experience_id = "known";
    o.outcome = 0;
    fails(ch, "RecordOutcome", &o.base, od, INVALID, "outcome");
    o.outcome = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_CLICK;
    o.occurred_at_unix_ms = harness_wall_ms() + 3 * 24 * HOUR_MS;
    fails(ch, "RecordOutcome", &o.base, od, INVALID, "occurred_at_unix_ms");
    o.occurred_at_unix_ms = 0;
    o.outcome_id = "";
    fails(ch, "RecordOutcome", &o.base, od, INVALID, "outcome_id");

    Cxm__V1__SimilarExperiencesRequest s = CXM__V1__SIMILAR_EXPERIENCES_REQUEST__INIT;
    const ProtobufCMessageDescriptor *sd = &cxm__v1__similar_experiences_response__descriptor;
    s.experience_id = "nope";
    fails(ch, "SimilarExperiences", &s.base, sd, GRPC_STATUS_NOT_FOUND, "experience_id");
    s.experience_id = "known";
    s.k = 101;
    fails(ch, "SimilarExperiences", &s.base, sd, INVALID, "k");

    const ProtobufCMessageDescriptor *td = &cxm__v1__train_model_response__descriptor;
    Cxm__V1__TrainModelRequest *t = treq(CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN);
    fails(ch, "TrainModel", &t->base, td, GRPC_STATUS_FAILED_PRECONDITION,
          "no interactions to train on: RecordInteractions first");
    Cxm__V1__TrainModelRequest__ParamsEntry *ps[] = {param("bogus", 1)};
    t->params = ps;
    t->n_params = 1;
    fails(ch, "TrainModel", &t->base, td, INVALID, "params.bogus");
    ps[0] = param("neighbours", 5000);
    fails(ch, "TrainModel", &t->base, td, INVALID, "params.neighbours");
    ps[0] = param("lambda", 10); /* EASE's, not item-kNN's */
    fails(ch, "TrainModel", &t->base, td, INVALID, "params.lambda");
    t->n_params = 0;
    t->holdout_fraction = 0.7;
    fails(ch, "TrainModel", &t->base, td, INVALID, "holdout_fraction");
    t->holdout_fraction = 0;
    t->algorithm = 17;
    fails(ch, "TrainModel", &t->base, td, INVALID, "algorithm");

    Cxm__V1__RecordInteractionsRequest ri = CXM__V1__RECORD_INTERACTIONS_REQUEST__INIT;
    const ProtobufCMessageDescriptor *rid = &cxm__v1__record_interactions_response__descriptor;
    fails(ch, "RecordInteractions", &ri.base, rid, INVALID, "interactions");
    ri.n_interactions = 1001;
    ri.interactions = cxm_arena_alloc(&arena, 1001 * sizeof *ri.interactions);
    for (int i = 0; i < 1001; i++)
        ri.interactions[i] = inter("i", by_id("c1"), "known", 1);
    fails(ch, "RecordInteractions", &ri.base, rid, INVALID, "interactions: at most 1000");

    Cxm__V1__ListExperiencesRequest l = CXM__V1__LIST_EXPERIENCES_REQUEST__INIT;
    l.page_size = 5000;
    fails(ch, "ListExperiences", &l.base, &cxm__v1__list_experiences_response__descriptor, INVALID,
          "page_size");
}

/* Upsert creates then replaces (created_at kept); pages in id order. */
static void case_catalogue(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    for (int i = 24; i >= 0; i--) {
        Cxm__V1__UpsertExperienceResponse *r = upsert(ch, exp_new(fmt("e%02d", i), CONTENT));
        CHECK(r->created && r->experience->created_at_unix_ms > 0, "e%02d created", i);
    }
    Cxm__V1__Experience *e = exp_new("e03", OFFER);
    e->value = 12.5;
    Cxm__V1__Experience__MetadataEntry m = CXM__V1__EXPERIENCE__METADATA_ENTRY__INIT, *ms[] = {&m};
    m.key = "url";
    m.value = "https://example.com/e03";
    e->metadata = ms;
    e->n_metadata = 1;
    Cxm__V1__UpsertExperienceResponse *r = upsert(ch, e);
    CHECK(!r->created && r->experience->kind == OFFER && r->experience->value == 12.5 &&
              r->experience->updated_at_unix_ms >= r->experience->created_at_unix_ms,
          "e03 replaced");
    Cxm__V1__ListExperiencesRequest l = CXM__V1__LIST_EXPERIENCES_REQUEST__INIT;
    l.page_size = 10;
    int seen = 0, pages = 0;
    for (;;) {
        Cxm__V1__ListExperiencesResponse *p;
        CALL_OK(ch, ListExperiences, l, cxm__v1__list_experiences_response, p);
        pages++;
        for (size_t i = 0; i < p->n_experiences; i++, seen++)
            CHECK(strcmp(p->experiences[i]->experience_id, fmt("e%02d", seen)) == 0,
                  "page %d item %zu is %s", pages, i, p->experiences[i]->experience_id);
        if (!*p->next_page_token)
            break;
        l.page_token = p->next_page_token;
    }
    CHECK(seen == 25 && pages == 3, "%d experiences in %d pages", seen, pages);
    /* Metadata comes back with a recommendation. */
    Cxm__V1__RecommendResponse *rr = recommend(ch, rreq(by_id("c1")));
    int at = position(rr, "e03");
    CHECK(at == 0, "e03, the only valuable one, first (at %d)", at);
    CHECK(rr->recommendations[0]->n_metadata == 1 &&
              strcmp(rr->recommendations[0]->metadata[0]->value, "https://example.com/e03") == 0,
          "metadata returned");
}

/* Before any model: popularity with model_version 0; batches with
 * rejections by index and duplicates. */
static void case_interactions(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    static const char *const items[] = {"p0", "p1", "p2", "p3"};
    catalogue(ch, items, 4);
    Cxm__V1__RecommendResponse *r = recommend(ch, rreq(by_email("nobody@example.com")));
    CHECK(r->model_version == 0 && r->cold_start && !*r->customer_id && r->n_recommendations == 4,
          "empty log: %zu fills, version %" PRIu64, r->n_recommendations, r->model_version);
    Cxm__V1__Interaction *v[7];
    int n = 0;
    for (int c = 0; c < 3; c++) /* p2 three times, p1 twice, p0 once */
        for (int i = c; i < 3; i++)
            if (n < 5) {
                v[n] = inter(fmt("x%d", n), by_id(fmt("c%d", c)), items[2 - (i - c)], 1);
                n++;
            }
    v[5] = inter("bad", by_id("c9"), "not an id", 1);
    v[6] = inter("zero", by_id("c9"), "p3", 0);
    Cxm__V1__RecordInteractionsResponse *ir = record(ch, v, 7);
    CHECK(ir->accepted == 5 && ir->duplicates == 0 && ir->n_rejected == 2,
          "%u accepted %zu rejected", ir->accepted, ir->n_rejected);
    CHECK(ir->rejected[0]->index == 5 && strstr(ir->rejected[0]->reason, "item_id") &&
              ir->rejected[1]->index == 6 && strstr(ir->rejected[1]->reason, "weight") &&
              strcmp(ir->rejected[1]->interaction_id, "zero") == 0,
          "rejections: %u %s / %u %s", ir->rejected[0]->index, ir->rejected[0]->reason,
          ir->rejected[1]->index, ir->rejected[1]->reason);
    ir = record(ch, v, 5);
    CHECK(ir->accepted == 0 && ir->duplicates == 5, "again: %u accepted %u duplicates",
          ir->accepted, ir->duplicates);
    /* An identity creates a profile. */
    Cxm__V1__Interaction *w[] = {inter("y1", by_email("new@example.com"), "p1", 2)};
    ir = record(ch, w, 1);
    CHECK(ir->accepted == 1, "identity interaction");
    /* recodb's popularity snapshot of the log is retaken once a second. */
    double end = test_now_ms() + 5000;
    while ((r = recommend(ch, rreq(by_email("nobody@example.com"))))
               ->recommendations[0]
               ->model_score == 0) {
        CHECK(test_now_ms() < end, "the log's popularity not served in 5 s");
        usleep(50000);
    }
    CHECK(r->model_version == 0 && r->cold_start && r->n_recommendations == 4, "popularity");
    CHECK(strcmp(r->recommendations[0]->experience_id, "p1") == 0 ||
              strcmp(r->recommendations[0]->experience_id, "p2") == 0,
          "most popular first: %s", r->recommendations[0]->experience_id);
    CHECK(position(r, "p3") == 3, "never interacted last: %d", position(r, "p3"));
}

/* Sync and async training, one at a time, model infos, what the model
 * recommends and explains, similar experiences. */
static void case_train(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    two_tastes(ch, 30);
    Cxm__V1__SimilarExperiencesRequest s = CXM__V1__SIMILAR_EXPERIENCES_REQUEST__INIT;
    s.experience_id = "a0";
    Cxm__V1__SimilarExperiencesResponse *sr;
    CALL_OK(ch, SimilarExperiences, s, cxm__v1__similar_experiences_response, sr);
    CHECK(sr->model_version == 0 && sr->n_experiences == 0, "no model: nothing similar");
    CHECK(!model_info(ch)->serving, "no model yet");

    Cxm__V1__TrainModelResponse *t1 = train(ch, treq(CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN));
    CHECK(t1->activated && t1->model->version > 0 &&
              t1->model->state == CXM__V1__MODEL_STATE__MODEL_STATE_SERVING &&
              t1->model->algorithm == CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN &&
              t1->model->n_params == 2 && strcmp(t1->model->trigger, "rpc") == 0 &&
              t1->model->metrics && t1->model->items == 8,
          "first model: version %" PRIu64 " state %d items %" PRIu64, t1->model->version,
          t1->model->state, t1->model->items);
    Cxm__V1__GetModelInfoResponse *mi = model_info(ch);
    CHECK(mi->serving && mi->serving->version == t1->model->version && !mi->previous &&
              !mi->training,
          "infos after the first");

    Cxm__V1__RecommendRequest *q = rreq(by_id("alice"));
    q->k = 2;
    q->explain = true;
    Cxm__V1__RecommendResponse *r = recommend(ch, q);
    CHECK(r->model_version == t1->model->version && !r->cold_start && r->n_recommendations == 2,
          "alice: version %" PRIu64 " cold %d n %zu", r->model_version, r->cold_start,
          r->n_recommendations);
    for (size_t i = 0; i < 2; i++) {
        const Cxm__V1__Recommendation *x = r->recommendations[i];
        CHECK(strcmp(x->experience_id, "a2") == 0 || strcmp(x->experience_id, "a3") == 0,
              "alice gets a2, a3 (not what she saw): %s", x->experience_id);
        CHECK(x->model_score > 0 && x->score > 0, "scores of %s", x->experience_id);
        check_reasons(x);
        const Cxm__V1__Reason *why =
            reason_of(x, CXM__V1__REASON_KIND__REASON_KIND_SIMILAR_TO_HISTORY);
        CHECK(why && (strcmp(why->related_item_id, "a0") == 0 ||
                      strcmp(why->related_item_id, "a1") == 0),
              "%s similar to a history item", x->experience_id);
    }
    s.k = 3;
    CALL_OK(ch, SimilarExperiences, s, cxm__v1__similar_experiences_response, sr);
    CHECK(sr->model_version == t1->model->version && sr->n_experiences == 3, "similar to a0: %zu",
          sr->n_experiences);
    for (size_t i = 0; i < sr->n_experiences; i++)
        CHECK(sr->experiences[i]->experience_id[0] == 'a' &&
                  strcmp(sr->experiences[i]->experience_id, "a0") != 0 &&
                  sr->experiences[i]->similarity > 0 && sr->experiences[i]->similarity <= 1,
              "similar to a0: %s", sr->experiences[i]->experience_id);

    Cxm__V1__TrainModelResponse *t2 = train(ch, treq(CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN));
    mi = model_info(ch);
    CHECK(mi->serving && mi->serving->version == t2->model->version && mi->previous &&
              mi->previous->version == t1->model->version,
          "previous kept");

    /* A slower training, asynchronously: one at a time. */
    Cxm__V1__Interaction *bulk[1000];
    for (int i = 0; i < 4000; i++) {
        const char *items[] = {i % 2 ? "a0" : "b0", i % 3 ? "a1" : "b1", "a2", "b3"};
        bulk[i % 1000] = inter(fmt("bulk%d", i), by_id(fmt("bulk%d", i / 4)), items[i % 4], 1);
        if (i % 1000 == 999)
            CHECK(record(ch, bulk, 1000)->accepted == 1000, "bulk batch");
    }
    Cxm__V1__TrainModelRequest *slow = slow_als();
    slow->run_async = true;
    Cxm__V1__TrainModelResponse *t3 = train(ch, slow);
    CHECK(t3->model->state == CXM__V1__MODEL_STATE__MODEL_STATE_TRAINING && !t3->activated,
          "async: state %d", t3->model->state);
    fails(ch, "TrainModel", &treq(0)->base, &cxm__v1__train_model_response__descriptor,
          GRPC_STATUS_FAILED_PRECONDITION, "is running");
    mi = model_info(ch);
    CHECK(mi->training && mi->training->progress >= 0 && mi->training->progress <= 1 &&
              strcmp(mi->training->trigger, "rpc") == 0,
          "training visible");
    mi = trained(ch);
    CHECK(mi->serving->algorithm == CXM__V1__ALGORITHM__ALGORITHM_ALS &&
              mi->serving->version > t2->model->version &&
              mi->previous->version == t2->model->version,
          "the async model serves: version %" PRIu64, mi->serving->version);
}

/* The default algorithm chooses on each customer's latest interactions:
 * customers walking a ring of 12 experiences in order (each starting
 * elsewhere, a minute apart) make "what comes next" the question, which
 * only the sequence model answers (EASE sees s2 and s6 alike after s3, s4,
 * s5); the choice, its validation and the model's parameters are in the
 * ModelInfo that TrainModel and GetModelInfo give. */
static void case_choice(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    const int ring = 12, walk = 8, customers = 60;
    for (int i = 0; i < ring; i++)
        upsert(ch, exp_new(fmt("s%d", i), CONTENT));
    int64_t start = harness_wall_ms() - 2 * 24 * HOUR_MS;
    Cxm__V1__Interaction *v[8];
    for (int c = 0; c < customers; c++) {
        for (int k = 0; k < walk; k++) {
            v[k] = inter(fmt("w%d-%d", c, k), by_id(fmt("walker%d", c)), fmt("s%d", (c + k) % ring),
                         1);
            v[k]->occurred_at_unix_ms = start + (c * walk + k) * 60000;
        }
        CHECK(record(ch, v, (size_t)walk)->accepted == (uint32_t)walk, "walker %d", c);
    }
    for (int k = 0; k < 3; k++) {
        v[k] = inter(fmt("dave-%d", k), by_id("dave"), fmt("s%d", 3 + k), 1);
        v[k]->occurred_at_unix_ms = start + k * 60000;
    }
    CHECK(record(ch, v, 3)->accepted == 3, "dave");

    Cxm__V1__TrainModelResponse *t = train(ch, treq(0));
    const Cxm__V1__ModelInfo *m = t->model;
    const Cxm__V1__ModelChoice *c = m->choice;
    CHECK(t->activated && m->algorithm == CXM__V1__ALGORITHM__ALGORITHM_SEQUENCE && c,
          "the default chose %d, choice %s", m->algorithm, c ? "set" : "missing");
    CHECK(strcmp(c->validation, "temporal") == 0 && c->customers == (uint64_t)customers &&
              c->ndcg_at_10 > c->ease_ndcg_at_10 && !*c->note,
          "choice: %s validation of %" PRIu64 " customers, ndcg %.4f against EASE %.4f, note "
          "\"%s\"",
          c->validation, c->customers, c->ndcg_at_10, c->ease_ndcg_at_10, c->note);
    double blend = -1;
    for (size_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i]->key, "blend") == 0)
            blend = m->params[i]->value;
    CHECK(m->n_params == 5 && blend > 0 && blend <= 1, "%zu params, blend %g", m->n_params, blend);
    Cxm__V1__GetModelInfoResponse *mi = model_info(ch);
    CHECK(mi->serving && mi->serving->choice && mi->serving->choice->ndcg_at_10 == c->ndcg_at_10,
          "GetModelInfo keeps the choice");

    Cxm__V1__RecommendRequest *q = rreq(by_id("dave"));
    q->k = 1;
    Cxm__V1__RecommendResponse *r = recommend(ch, q);
    CHECK(r->n_recommendations == 1 && strcmp(r->recommendations[0]->experience_id, "s6") == 0,
          "dave saw s3, s4, s5 in that order: s6 comes next, got %s",
          r->n_recommendations ? r->recommendations[0]->experience_id : "nothing");
}

/* Every eligibility rule, on catalogue fills (k = 100 returns all that
 * are eligible): channel, placement, stage, kinds, validity, disabled,
 * exclude, consumed, segments in and out, consent and its revocation. */
static void case_eligibility(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    const char *id = profile_of(ch, "elig@example.com");
    upsert(ch, exp_new("any", CONTENT));
    Cxm__V1__Experience *e = exp_new("web", CONTENT);
    Cxm__V1__Channel web[] = {WEB};
    e->eligibility->channels = web;
    e->eligibility->n_channels = 1;
    upsert(ch, e);
    e = exp_new("home", CONTENT);
    e->eligibility->placements = strv(1, "home");
    e->eligibility->n_placements = 1;
    upsert(ch, e);
    upsert(ch, for_stage("consider", CONSIDERATION));
    e = exp_new("offer", OFFER);
    upsert(ch, e);
    e = exp_new("off", CONTENT);
    e->disabled = true;
    upsert(ch, e);
    e = exp_new("later", CONTENT);
    e->valid_from_unix_ms = harness_wall_ms() + 24 * HOUR_MS;
    upsert(ch, e);
    e = exp_new("gone", CONTENT);
    e->valid_until_unix_ms = harness_wall_ms() - HOUR_MS;
    upsert(ch, e);
    e = exp_new("members", CONTENT);
    e->eligibility->segment_ids = strv(1, "known");
    e->eligibility->n_segment_ids = 1;
    upsert(ch, e);
    e = exp_new("outsiders", CONTENT);
    e->eligibility->excluded_segment_ids = strv(1, "known");
    e->eligibility->n_excluded_segment_ids = 1;
    upsert(ch, e);
    upsert(ch, needs_consent("consented", "personalisation"));
    upsert(ch, exp_new("seen", CONTENT));
    history(ch, id, (const char *const[]){"seen"}, 1);

    Cxm__V1__RecommendRequest *q = rreq(by_id(id));
    Cxm__V1__RecommendResponse *r = recommend(ch, q);
    const char *no[] = {"web",  "home",    "consider",  "off", "later",
                        "gone", "members", "consented", "seen"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        CHECK(position(r, no[i]) < 0, "%s returned without its context or customer fact", no[i]);
    CHECK(position(r, "any") >= 0 && position(r, "offer") >= 0 && position(r, "outsiders") >= 0,
          "the unrestricted ones");
    q->context->channel = WEB;
    q->context->placement = "home";
    q->context->stage = CONSIDERATION;
    r = recommend(ch, q);
    CHECK(position(r, "web") >= 0 && position(r, "home") >= 0 && position(r, "consider") >= 0,
          "context matches");
    q->context->channel = APP;
    q->context->placement = "checkout";
    q->context->stage = PURCHASE;
    r = recommend(ch, q);
    CHECK(position(r, "web") < 0 && position(r, "home") < 0 && position(r, "consider") < 0,
          "other context");
    q->context->channel = 0;
    q->context->placement = "";
    q->context->stage = 0;
    q->kinds = cxm_arena_alloc(&arena, sizeof *q->kinds);
    q->kinds[0] = OFFER;
    q->n_kinds = 1;
    r = recommend(ch, q);
    CHECK(r->n_recommendations == 1 && position(r, "offer") == 0, "kinds: offers only");
    q->n_kinds = 0;
    q->exclude_experience_ids = strv(1, "any");
    q->n_exclude_experience_ids = 1;
    CHECK(!returns(ch, q, "any"), "excluded");
    q->n_exclude_experience_ids = 0;

    /* Segments: profile evaluates "known" (has an email) and tells us. */
    harness_identity_segment(ch, &arena, "known", EMAIL);
    until(ch, q, "members", true, 15000);
    CHECK(!returns(ch, q, "outsiders"), "excluded segment");

    /* Consent: granted, then revoked, gone within a second. */
    set_consent(ch, id, "personalisation", CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED);
    until(ch, q, "consented", true, 5000);
    set_consent(ch, id, "personalisation", CXM__V1__CONSENT_STATE__CONSENT_STATE_DENIED);
    double took = until(ch, q, "consented", false, 1000);
    fprintf(stderr, "consent revocation took effect in %.0f ms\n", took);
    /* An unknown identity never passes a consent rule. */
    CHECK(!returns(ch, rreq(by_email("stranger@example.com")), "consented"), "stranger");
}

/* Caps count impressions (record_impressions and RecordOutcome), pauses
 * start at accept/dismiss, outcomes are idempotent. */
static void case_contact(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__Experience *e = exp_new("capped", OFFER);
    Cxm__V1__ContactCap cap = CXM__V1__CONTACT_CAP__INIT, *caps[] = {&cap};
    cap.max_contacts = 2;
    cap.period_ms = HOUR_MS;
    e->contact_caps = caps;
    e->n_contact_caps = 1;
    upsert(ch, e);
    e = exp_new("dismissable", CONTENT);
    e->pause_after_dismiss_ms = HOUR_MS;
    upsert(ch, e);
    e = exp_new("acceptable", CONTENT);
    e->pause_after_accept_ms = HOUR_MS;
    upsert(ch, e);
    upsert(ch, exp_new("plain", CONTENT));

    Cxm__V1__RecommendRequest *q = rreq(by_id("cc1"));
    q->record_impressions = true;
    CHECK(returns(ch, q, "capped"), "first impression");
    CHECK(returns(ch, q, "capped"), "second impression");
    CHECK(!returns(ch, q, "capped"), "the cap holds after two impressions");
    CHECK(returns(ch, q, "plain"), "no cap, no limit");

    q = rreq(by_id("cc2"));
    CHECK(returns(ch, q, "capped") && returns(ch, q, "capped") && returns(ch, q, "capped"),
          "without record_impressions nothing counts");
    outcome(ch, "imp1", by_id("cc2"), "capped", CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION);
    outcome(ch, "imp2", by_id("cc2"), "capped", CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION);
    Cxm__V1__RecordOutcomeResponse *o =
        outcome(ch, "imp2", by_id("cc2"), "capped", CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION);
    CHECK(o->duplicate && strcmp(o->customer_id, "cc2") == 0, "replayed outcome is a duplicate");
    CHECK(!returns(ch, q, "capped"), "outcome impressions hit the cap");

    o = outcome(ch, "dis1", by_id("cc2"), "dismissable",
                CXM__V1__OUTCOME_KIND__OUTCOME_KIND_DISMISS);
    CHECK(!o->duplicate, "dismissed");
    CHECK(!returns(ch, q, "dismissable"), "paused after dismiss");
    outcome(ch, "acc1", by_id("cc2"), "acceptable", CXM__V1__OUTCOME_KIND__OUTCOME_KIND_ACCEPT);
    CHECK(!returns(ch, q, "acceptable"), "paused after accept");
    CHECK(returns(ch, rreq(by_id("cc3")), "acceptable"), "another customer is not paused");
    /* An identity creates its customer; the answer names it. */
    o = outcome(ch, "id1", by_email("out@example.com"), "plain",
                CXM__V1__OUTCOME_KIND__OUTCOME_KIND_CLICK);
    CHECK(*o->customer_id && !o->duplicate, "identity outcome");
    Cxm__V1__RecommendResponse *r = recommend(ch, rreq(by_email("out@example.com")));
    CHECK(strcmp(r->customer_id, o->customer_id) == 0 && position(r, "plain") < 0,
          "the clicked experience counts as consumed");
}

static void nps_detractor(cxm_channel *ch, const char *email)
{
    Cxm__V1__SurveyQuestion q = CXM__V1__SURVEY_QUESTION__INIT, *qs[] = {&q};
    q.question_id = "score";
    q.kind = CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE;
    q.text = "how likely";
    q.required = true;
    Cxm__V1__Survey s = CXM__V1__SURVEY__INIT;
    s.survey_id = "nps";
    s.kind = CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS;
    s.title = "nps";
    s.touchpoint = "checkout";
    s.channel = WEB;
    s.language = "en";
    s.active = true;
    s.questions = qs;
    s.n_questions = 1;
    Cxm__V1__UpsertSurveyRequest us = CXM__V1__UPSERT_SURVEY_REQUEST__INIT;
    us.survey = &s;
    Cxm__V1__UpsertSurveyResponse *ur;
    char d[512];
    CHECK(harness_call(ch, FEEDBACK, "UpsertSurvey", &us.base,
                       &cxm__v1__upsert_survey_response__descriptor, &arena, &ur,
                       d) == GRPC_STATUS_OK,
          "UpsertSurvey: %s", d);
    Cxm__V1__SubmitResponseRequest sr = CXM__V1__SUBMIT_RESPONSE_REQUEST__INIT;
    sr.response_id = "r1";
    sr.survey_id = "nps";
    sr.customer = by_email(email);
    sr.score = 2;
    Cxm__V1__SubmitResponseResponse *rr;
    CHECK(harness_call(ch, FEEDBACK, "SubmitResponse", &sr.base,
                       &cxm__v1__submit_response_response__descriptor, &arena, &rr,
                       d) == GRPC_STATUS_OK,
          "SubmitResponse: %s", d);
}

/* A detractor NPS puts the customer in service recovery: the service
 * action first, offers held back; explanations sum to 1. */
static void case_recovery(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    const char *id = profile_of(ch, "angry@example.com");
    Cxm__V1__Experience *e = exp_new("discount", OFFER);
    e->value = 100;
    e->weight = 3;
    upsert(ch, e);
    e = exp_new("callback", ACTION);
    upsert(ch, e);
    e = for_stage("guide", CONSIDERATION);
    e->value = 5;
    upsert(ch, e);
    Cxm__V1__RecommendRequest *q = rreq(by_id(id));
    q->explain = true;
    q->context->stage = CONSIDERATION;
    Cxm__V1__RecommendResponse *r = recommend(ch, q);
    CHECK(!r->service_recovery && r->offers_held_back == 0 && position(r, "discount") == 0,
          "before: the valuable offer first (at %d)", position(r, "discount"));
    const Cxm__V1__Recommendation *top = r->recommendations[0];
    check_reasons(top);
    const Cxm__V1__Reason *boost = reason_of(top, CXM__V1__REASON_KIND__REASON_KIND_BOOSTED);
    CHECK(boost && strstr(boost->text, "x3"), "boosted x3");
    int g = position(r, "guide");
    CHECK(g >= 0, "guide returned");
    check_reasons(r->recommendations[g]);
    const Cxm__V1__Reason *fit =
        reason_of(r->recommendations[g], CXM__V1__REASON_KIND__REASON_KIND_STAGE_FIT);
    CHECK(fit && strstr(fit->text, "consideration"), "stage fit explained");

    nps_detractor(ch, "angry@example.com");
    double end = test_now_ms() + 10000;
    while (!(r = recommend(ch, q))->service_recovery) {
        CHECK(test_now_ms() < end, "the detractor answer did not reach personalisation in 10 s");
        usleep(20000);
    }
    CHECK(position(r, "callback") == 0 && position(r, "discount") < 0 && r->offers_held_back >= 1,
          "recovery: callback at %d, discount at %d, %u held back", position(r, "callback"),
          position(r, "discount"), r->offers_held_back);
    for (size_t i = 0; i < r->n_recommendations; i++)
        check_reasons(r->recommendations[i]);
    const Cxm__V1__Reason *why =
        reason_of(r->recommendations[0], CXM__V1__REASON_KIND__REASON_KIND_SERVICE_RECOVERY);
    CHECK(why && strstr(why->text, "detractor NPS"), "recovery explained");
    /* Someone else is not in recovery. */
    r = recommend(ch, rreq(by_id("calm")));
    CHECK(!r->service_recovery && position(r, "discount") == 0, "calm customer unaffected");
}

/* DeleteProfile erases the customer's interactions and outcomes: the next
 * Recommend is a cold start, and the receipt counts what was erased. */
static void case_erasure(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    two_tastes(ch, 10);
    const char *id = profile_of(ch, "bye@example.com");
    history(ch, id, group_a, 2);
    outcome(ch, "bye1", by_id(id), "a0", CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION);
    train(ch, treq(CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN));
    Cxm__V1__RecommendRequest *q = rreq(by_id(id));
    q->k = 2;
    Cxm__V1__RecommendResponse *r = recommend(ch, q);
    CHECK(!r->cold_start && r->model_version > 0, "before: from the history");
    const Cxm__V1__ServiceErasure *f = harness_erase(ch, &arena, id, "personalisation");
    CHECK(f->records_erased >= 3, "personalisation erased %" PRIu64, f->records_erased);
    r = recommend(ch, q);
    CHECK(r->cold_start, "after the erasure: a cold start");
    Cxm__V1__Interaction *again[] = {inter(fmt("%s-a0", id), by_id(id), "a0", 1)};
    CHECK(record(ch, again, 1)->accepted == 1, "its interaction ids were erased too");
}

/* journey's events reach the service: an add_to_cart about an item moves
 * the customer to CONSIDERATION (StageChanged, the replica) and counts as
 * an interaction with the item (TouchpointTracked, the log). */
static void case_journey(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    catalogue(ch, group_a, 4);
    upsert(ch, for_stage("consider", CONSIDERATION));
    Cxm__V1__RecommendRequest *q = rreq(by_email("shopper@example.com"));
    Cxm__V1__RecommendResponse *r = recommend(ch, q);
    CHECK(position(r, "consider") < 0 && position(r, "a2") >= 0 && !*r->customer_id,
          "before: no stage, unknown");
    Cxm__V1__TouchpointEvent ev = CXM__V1__TOUCHPOINT_EVENT__INIT, *evs[] = {&ev};
    ev.event_id = "cart1";
    ev.customer = by_email("shopper@example.com");
    ev.touchpoint = "product_page";
    ev.channel = WEB;
    ev.event_type = "add_to_cart";
    ev.item_id = "a2";
    Cxm__V1__TrackRequest tr = CXM__V1__TRACK_REQUEST__INIT;
    tr.events = evs;
    tr.n_events = 1;
    Cxm__V1__TrackResponse *tres;
    char d[512];
    CHECK(harness_call(ch, "/cxm.v1.JourneyService/", "Track", &tr.base,
                       &cxm__v1__track_response__descriptor, &arena, &tres, d) == GRPC_STATUS_OK &&
              tres->accepted == 1,
          "Track: %s", d);
    until(ch, q, "consider", true, 10000);
    until(ch, q, "a2", false, 10000);
    q->explain = true;
    r = recommend(ch, q);
    int at = position(r, "consider");
    CHECK(*r->customer_id && at >= 0, "the shopper is known now");
    check_reasons(r->recommendations[at]);
    CHECK(reason_of(r->recommendations[at], CXM__V1__REASON_KIND__REASON_KIND_STAGE_FIT),
          "the replicated stage fits");
}

/* The retrain policy: a server told to retrain every 20 interactions
 * trains on its own once they arrived, and says why. */
static void case_policy(cxm_channel *unused, test_server *srv)
{
    (void)unused;
    static const char *const args[] = {
        "--grace", "3s", "--workers", "2", "--reco-retrain-interactions", "20", NULL};
    test_server own;
    harness_start(&own, srv->binary, args);
    cxm_channel *ch;
    CHECK(cxm_channel_open(own.target, NULL, &ch) == 0, "channel to %s", own.target);
    two_tastes(ch, 3);
    Cxm__V1__GetModelInfoResponse *mi = model_info(ch);
    for (double end = test_now_ms() + 15000; !mi->serving; mi = model_info(ch)) {
        CHECK(test_now_ms() < end, "no automatic training in 15 s");
        usleep(50000);
    }
    CHECK(strcmp(mi->serving->trigger, "every 20 interactions") == 0, "trigger \"%s\"",
          mi->serving->trigger);
    cxm_channel_close(ch);
    CHECK(harness_stop(&own, SIGTERM, 10000) == 0, "own server stopped");
    harness_cleanup(&own);
}

/* n interactions of customers "<prefix>N", 10 each: 4 of 8 hot items
 * (h0..h7, in a row) and 6 of `tail` items taken in turn; with about five
 * customers per tail item, EASE (the automatic choice) keeps them all, so
 * training takes a while (~0.1 s for 5000 and 600 here). */
static void bulk_load(cxm_channel *ch, const char *prefix, int n, int tail)
{
    Cxm__V1__Interaction *v[1000];
    for (int i = 0; i < n; i++) {
        int c = i / 10, j = i % 10;
        const char *item = j < 4 ? fmt("h%d", (c + j) % 8) : fmt("t%d", (c * 6 + j - 4) % tail);
        v[i % 1000] = inter(fmt("%s%d", prefix, i), by_id(fmt("%s%d", prefix, c)), item, 1);
        if (i % 1000 == 999 || i == n - 1)
            CHECK(record(ch, v, (size_t)(i % 1000 + 1))->accepted == (uint32_t)(i % 1000 + 1),
                  "bulk batch ending at %d", i);
    }
}

#define AUTO_TRIGGER "every 5000 interactions"

/* Loading interactions through RecordInteractions makes the policy train;
 * a TrainModel that arrives meanwhile waits for it instead of failing:
 * sync, it is answered with its own model, which serves; async, it says it
 * waits, a second one fails, and its model serves in the end. */
static void case_train_queue(cxm_channel *unused, test_server *srv)
{
    (void)unused;
    static const char *const args[] = {
        "--grace", "3s", "--workers", "2", "--reco-retrain-interactions", "5000", NULL};
    static const char *const hot[] = {"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"};
    test_server own;
    harness_start(&own, srv->binary, args);
    cxm_channel *ch;
    CHECK(cxm_channel_open(own.target, NULL, &ch) == 0, "channel to %s", own.target);
    catalogue(ch, hot, 8);
    bulk_load(ch, "q", 5000, 600);
    training_by(ch, AUTO_TRIGGER);
    int64_t sent_ms = wall_ms();
    Cxm__V1__TrainModelResponse *t = train(ch, treq(CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN));
    Cxm__V1__GetModelInfoResponse *mi = model_info(ch);
    CHECK(t->activated && strcmp(t->model->trigger, "rpc") == 0 && mi->serving &&
              mi->serving->version == t->model->version && mi->previous &&
              strcmp(mi->previous->trigger, AUTO_TRIGGER) == 0,
          "TrainModel's model serves after the automatic one");
    CHECK(mi->previous->trained_at_unix_ms > sent_ms &&
              t->model->started_at_unix_ms >= mi->previous->trained_at_unix_ms,
          "TrainModel (sent at %" PRId64 ") waited for the automatic training (ended at %" PRId64
          ") and started at %" PRId64,
          sent_ms, mi->previous->trained_at_unix_ms, t->model->started_at_unix_ms);
    Cxm__V1__RecommendResponse *r = recommend(ch, rreq(by_id("q3")));
    CHECK(r->model_version == t->model->version && !r->cold_start && r->n_recommendations > 0,
          "q3 is served by version %" PRIu64 ": %" PRIu64, t->model->version, r->model_version);

    bulk_load(ch, "w", 5000, 600);
    mi = training_by(ch, AUTO_TRIGGER);
    CHECK(mi->training->started_at_unix_ms >= t->model->trained_at_unix_ms + t->model->training_ms,
          "the policy paused after TrainModel's training as long as it took");
    Cxm__V1__TrainModelRequest *aq = treq(CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN);
    aq->run_async = true;
    Cxm__V1__TrainModelResponse *ta = train(ch, aq);
    CHECK(ta->model->state == CXM__V1__MODEL_STATE__MODEL_STATE_TRAINING &&
              strcmp(ta->model->trigger, "rpc") == 0 &&
              strcmp(ta->model->phase, "waiting for the automatic training to end") == 0,
          "async TrainModel waits: phase \"%s\"", ta->model->phase);
    fails(ch, "TrainModel", &treq(0)->base, &cxm__v1__train_model_response__descriptor,
          GRPC_STATUS_FAILED_PRECONDITION, "a TrainModel started at");
    training_by(ch, "rpc");
    mi = trained(ch);
    /* The automatic model (activated if better) or t's is previous. */
    CHECK(strcmp(mi->serving->trigger, "rpc") == 0 && mi->serving->version > t->model->version + 1,
          "the async TrainModel's model serves after the second automatic one: version %" PRIu64
          " trigger \"%s\", previous \"%s\"",
          mi->serving->version, mi->serving->trigger, mi->previous ? mi->previous->trigger : "");
    cxm_channel_close(ch);
    CHECK(harness_stop(&own, SIGTERM, 10000) == 0, "own server stopped");
    harness_cleanup(&own);
}

typedef struct sync_train {
    const char *target;
    Cxm__V1__TrainModelRequest *req;
    grpc_status_code st;
    char details[512];
    uint64_t version;
} sync_train;

/* A sync TrainModel on its own channel and arena. */
static void *sync_train_main(void *arg)
{
    sync_train *s = arg;
    cxm_arena a;
    cxm_channel *ch;
    Cxm__V1__TrainModelResponse *resp = NULL;
    cxm_arena_init(&a, NULL, 0, 0);
    CHECK(cxm_channel_open(s->target, NULL, &ch) == 0, "channel to %s", s->target);
    s->st = harness_call(ch, SVC, "TrainModel", s->req, &cxm__v1__train_model_response__descriptor,
                         &a, &resp, s->details);
    s->version = s->st == GRPC_STATUS_OK && resp ? resp->model->version : 0;
    cxm_channel_close(ch);
    cxm_arena_dispose(&a);
    return NULL;
}

/* Two TrainModel calls at once: the second is FAILED_PRECONDITION, naming
 * when the first started; the first gets its model. */
static void case_train_twice(cxm_channel *ch, test_server *srv)
{
    two_tastes(ch, 30);
    bulk_load(ch, "x", 400, 400);
    sync_train first = {.target = srv->target, .req = slow_als()};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, sync_train_main, &first) == 0, "thread");
    training_by(ch, "rpc");
    fails(ch, "TrainModel", &treq(0)->base, &cxm__v1__train_model_response__descriptor,
          GRPC_STATUS_FAILED_PRECONDITION, "is running: poll GetModelInfo");
    pthread_join(th, NULL);
    CHECK(first.st == GRPC_STATUS_OK && first.version > 0, "the first TrainModel: %d %s", first.st,
          first.details);
    CHECK(model_info(ch)->serving->version == first.version, "the first's model serves");
}

/* profile merges B into A: B's history, contacts and consents are A's, and
 * Recommend for B's id answers for A. */
static void case_merge(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    catalogue(ch, group_a, 4);
    Cxm__V1__Experience *e = exp_new("once", CONTENT);
    e->pause_after_dismiss_ms = HOUR_MS;
    upsert(ch, e);
    upsert(ch, needs_consent("consented", "personalisation"));
    const char *a = profile_of(ch, "merge-a@example.com");
    const char *b = profile_of(ch, "merge-b@example.com");
    history(ch, b, group_a, 2);
    outcome(ch, "mo1", by_id(b), "once", CXM__V1__OUTCOME_KIND__OUTCOME_KIND_DISMISS);
    set_consent(ch, b, "personalisation", CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED);
    Cxm__V1__RecommendRequest *qa = rreq(by_id(a));
    CHECK(returns(ch, qa, "a0") && returns(ch, qa, "once") && !returns(ch, qa, "consented"),
          "before: A has nothing of B's");
    until(ch, rreq(by_id(b)), "consented", true, 5000);
    Cxm__V1__MergeProfilesRequest m = CXM__V1__MERGE_PROFILES_REQUEST__INIT;
    m.target_customer_id = (char *)a;
    m.source_customer_id = (char *)b;
    m.reason = "test merge";
    Cxm__V1__MergeProfilesResponse *mr;
    char d[512];
    CHECK(pcall(ch, "MergeProfiles", &m.base, &cxm__v1__merge_profiles_response__descriptor, &mr,
                d) == GRPC_STATUS_OK,
          "MergeProfiles: %s", d);
    until(ch, qa, "consented", true, 5000);
    CHECK(!returns(ch, qa, "a0") && !returns(ch, qa, "a1") && !returns(ch, qa, "once"),
          "after: B's consumed items and pause are A's");
    Cxm__V1__RecommendResponse *r = recommend(ch, rreq(by_id(b)));
    CHECK(strcmp(r->customer_id, a) == 0, "B's id answers for A: %s", r->customer_id);
}

static const harness_case cases[] = {
    {"validation", case_validation},
    {"catalogue", case_catalogue},
    {"interactions", case_interactions},
    {"train", case_train},
    {"choice", case_choice},
    {"eligibility", case_eligibility},
    {"contact", case_contact},
    {"recovery", case_recovery},
    {"erasure", case_erasure},
    {"journey", case_journey},
    {"policy", case_policy},
    {"train_queue", case_train_queue},
    {"train_twice", case_train_twice},
    {"merge", case_merge},
};

int main(int argc, char **argv)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    int rc = harness_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
    cxm_arena_dispose(&arena);
    return rc;
}
