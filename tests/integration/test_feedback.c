/*
 * test_feedback.c - the FeedbackService over gRPC against the real cxmd,
 * with the profile service in the same process resolving customers:
 * surveys and their versions, responses with validation naming fields,
 * idempotent replays, every gate through CheckEligibility and
 * SubmitResponse, scores and gaps, sentiment, the erasure cascade, kill -9
 * right after acknowledged responses, and cxm-feedback with its profile
 * service down.
 *
 *   test_feedback PATH_TO_CXMD CASE
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cxm/client.h"
#include "cxm/v1/feedback.pb-c.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "harness.h"

#define SVC "/cxm.v1.FeedbackService/"
#define PROFILE "/cxm.v1.ProfileService/"
#define JOURNEY "/cxm.v1.JourneyService/"
#define EMAIL CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL
#define NPS CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS
#define CSAT CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT
#define WEB CXM__V1__CHANNEL__CHANNEL_WEB
#define APP CXM__V1__CHANNEL__CHANNEL_APP
#define Q_SCORE CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE
#define Q_TEXT CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT
#define Q_CHOICE CXM__V1__QUESTION_KIND__QUESTION_KIND_SINGLE_CHOICE
#define Q_GAP CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP
#define HOUR_MS 3600000LL

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

/* The harness's builders, in this case's arena. */
#define wall_ms harness_wall_ms
#define fmt(...) harness_fmt(&arena, __VA_ARGS__)
#define by_email(email) harness_ref_identity(&arena, EMAIL, email)
#define by_id(customer_id) harness_ref_id(&arena, customer_id)

/* ---- surveys ---- */

static Cxm__V1__SurveyQuestion *question(const char *id, Cxm__V1__QuestionKind kind, bool required)
{
    Cxm__V1__SurveyQuestion *q = cxm_arena_alloc(&arena, sizeof *q);
    cxm__v1__survey_question__init(q);
    q->question_id = (char *)id;
    q->kind = kind;
    q->text = fmt("question %s", id);
    q->required = required;
    return q;
}

/* A survey of kind about touchpoint "checkout": the score, a free text, a
 * single choice (a/b) and an expectation gap of "delivery". */
static Cxm__V1__Survey *survey(const char *id, Cxm__V1__SurveyKind kind)
{
    Cxm__V1__Survey *s = cxm_arena_alloc(&arena, sizeof *s);
    cxm__v1__survey__init(s);
    s->survey_id = (char *)id;
    s->kind = kind;
    s->title = "how was it";
    s->touchpoint = "checkout";
    s->channel = WEB;
    s->language = "en";
    s->active = true;
    Cxm__V1__SurveyQuestion **qs = cxm_arena_alloc(&arena, 4 * sizeof *qs);
    qs[0] = question("score", Q_SCORE, true);
    qs[1] = question("why", Q_TEXT, false);
    qs[2] = question("pick", Q_CHOICE, false);
    static char *opts[] = {"a", "b"};
    qs[2]->options = opts;
    qs[2]->n_options = 2;
    qs[3] = question("gap", Q_GAP, false);
    qs[3]->touchpoint = "delivery";
    s->questions = qs;
    s->n_questions = 4;
    return s;
}

static Cxm__V1__UpsertSurveyResponse *upsert(cxm_channel *ch, Cxm__V1__Survey *s)
{
    Cxm__V1__UpsertSurveyRequest req = CXM__V1__UPSERT_SURVEY_REQUEST__INIT;
    req.survey = s;
    Cxm__V1__UpsertSurveyResponse *r;
    CALL_OK(ch, UpsertSurvey, req, cxm__v1__upsert_survey_response, r);
    return r;
}

/* The status and message of a call expected to fail. */
static grpc_status_code fails(cxm_channel *ch, const char *method, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *d, char *details)
{
    void *resp;
    return call(ch, method, req, d, &resp, details);
}

static void expect(grpc_status_code st, const char *d, grpc_status_code want, const char *needle)
{
    CHECK(st == want, "status %d, want %d (%s): %s", st, want, needle, d);
    CHECK(strstr(d, needle), "\"%s\" does not name %s", d, needle);
}

static void bad_survey(cxm_channel *ch, Cxm__V1__Survey *s, const char *field)
{
    Cxm__V1__UpsertSurveyRequest req = CXM__V1__UPSERT_SURVEY_REQUEST__INIT;
    req.survey = s;
    char d[512];
    grpc_status_code st =
        fails(ch, "UpsertSurvey", &req.base, &cxm__v1__upsert_survey_response__descriptor, d);
    expect(st, d, GRPC_STATUS_INVALID_ARGUMENT, field);
}

/* ---- responses ---- */

static Cxm__V1__SubmitResponseRequest *response(const char *rid, const char *survey_id,
                                                const char *email, double score)
{
    Cxm__V1__SubmitResponseRequest *r = cxm_arena_alloc(&arena, sizeof *r);
    cxm__v1__submit_response_request__init(r);
    r->response_id = (char *)rid;
    r->survey_id = (char *)survey_id;
    r->customer = by_email(email);
    r->score = score;
    return r;
}

static grpc_status_code submit(cxm_channel *ch, Cxm__V1__SubmitResponseRequest *r,
                               Cxm__V1__SubmitResponseResponse **out, char *d)
{
    return call(ch, "SubmitResponse", &r->base, &cxm__v1__submit_response_response__descriptor, out,
                d);
}

static Cxm__V1__SubmitResponseResponse *submit_ok(cxm_channel *ch,
                                                  Cxm__V1__SubmitResponseRequest *r)
{
    Cxm__V1__SubmitResponseResponse *out;
    char d[512];
    grpc_status_code st = submit(ch, r, &out, d);
    CHECK(st == GRPC_STATUS_OK, "SubmitResponse %s: %d %s", r->response_id, st, d);
    return out;
}

static void add_rating(Cxm__V1__SubmitResponseRequest *r, const char *tp, double exp, double got)
{
    Cxm__V1__ExpectationRating **v = cxm_arena_alloc(&arena, (r->n_ratings + 1) * sizeof *v);
    if (r->n_ratings)
        memcpy(v, r->ratings, r->n_ratings * sizeof *v);
    Cxm__V1__ExpectationRating *e = cxm_arena_alloc(&arena, sizeof *e);
    cxm__v1__expectation_rating__init(e);
    e->touchpoint = (char *)tp;
    e->expectation = exp;
    e->experience = got;
    v[r->n_ratings++] = e;
    r->ratings = v;
}

static void add_answer(Cxm__V1__SubmitResponseRequest *r, const char *q, const char *v)
{
    Cxm__V1__SubmitResponseRequest__AnswersEntry **a =
        cxm_arena_alloc(&arena, (r->n_answers + 1) * sizeof *a);
    if (r->n_answers)
        memcpy(a, r->answers, r->n_answers * sizeof *a);
    Cxm__V1__SubmitResponseRequest__AnswersEntry *e = cxm_arena_alloc(&arena, sizeof *e);
    cxm__v1__submit_response_request__answers_entry__init(e);
    e->key = (char *)q;
    e->value = (char *)v;
    a[r->n_answers++] = e;
    r->answers = a;
}

static void bad_response(cxm_channel *ch, Cxm__V1__SubmitResponseRequest *r, const char *field)
{
    Cxm__V1__SubmitResponseResponse *out;
    char d[512];
    expect(submit(ch, r, &out, d), d, GRPC_STATUS_INVALID_ARGUMENT, field);
}

static Cxm__V1__CheckEligibilityResponse *eligibility(cxm_channel *ch, const char *survey_id,
                                                      const char *email, Cxm__V1__Channel channel)
{
    Cxm__V1__CheckEligibilityRequest req = CXM__V1__CHECK_ELIGIBILITY_REQUEST__INIT;
    req.survey_id = (char *)survey_id;
    req.customer = by_email(email);
    req.channel = channel;
    Cxm__V1__CheckEligibilityResponse *r;
    CALL_OK(ch, CheckEligibility, req, cxm__v1__check_eligibility_response, r);
    return r;
}

static uint64_t nps_responses(cxm_channel *ch)
{
    Cxm__V1__GetScoresRequest req = CXM__V1__GET_SCORES_REQUEST__INIT;
    req.kind = NPS;
    Cxm__V1__GetScoresResponse *r;
    CALL_OK(ch, GetScores, req, cxm__v1__get_scores_response, r);
    uint64_t n = 0;
    for (size_t i = 0; i < r->n_groups; i++)
        n += r->groups[i]->total ? r->groups[i]->total->responses : 0;
    return n;
}

/* ---- cases ---- */

/* Upserts, versions, GetSurvey of every version, ListSurveys paged, and
 * the survey's validation naming fields. */
static void case_surveys(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__UpsertSurveyResponse *r = upsert(ch, survey("post-purchase", NPS));
    CHECK(r->created && r->survey->version == 1, "created %d version %u", r->created,
          r->survey->version);
    CHECK(r->survey->created_at_unix_ms > 0, "created_at");
    r = upsert(ch, survey("post-purchase", NPS));
    CHECK(!r->created && r->survey->version == 1, "identical upsert: version %u",
          r->survey->version);
    Cxm__V1__Survey *s = survey("post-purchase", NPS);
    s->title = "a new title";
    r = upsert(ch, s);
    CHECK(r->survey->version == 2, "changed upsert: version %u", r->survey->version);
    upsert(ch, survey("support", CSAT));
    upsert(ch, survey("zeta", CSAT));

    Cxm__V1__GetSurveyRequest g = CXM__V1__GET_SURVEY_REQUEST__INIT;
    g.survey_id = "post-purchase";
    g.version = 1;
    Cxm__V1__GetSurveyResponse *gr;
    CALL_OK(ch, GetSurvey, g, cxm__v1__get_survey_response, gr);
    CHECK(gr->survey->version == 1 && strcmp(gr->survey->title, "how was it") == 0, "version 1");
    g.version = 0;
    CALL_OK(ch, GetSurvey, g, cxm__v1__get_survey_response, gr);
    CHECK(gr->survey->version == 2 && strcmp(gr->survey->title, "a new title") == 0, "current");
    char d[512];
    g.version = 3;
    expect(fails(ch, "GetSurvey", &g.base, &cxm__v1__get_survey_response__descriptor, d), d,
           GRPC_STATUS_NOT_FOUND, "version");
    g.survey_id = "nope";
    g.version = 0;
    expect(fails(ch, "GetSurvey", &g.base, &cxm__v1__get_survey_response__descriptor, d), d,
           GRPC_STATUS_NOT_FOUND, "survey_id");

    Cxm__V1__ListSurveysRequest l = CXM__V1__LIST_SURVEYS_REQUEST__INIT;
    l.page_size = 2;
    Cxm__V1__ListSurveysResponse *lr;
    CALL_OK(ch, ListSurveys, l, cxm__v1__list_surveys_response, lr);
    CHECK(lr->n_surveys == 2 && *lr->next_page_token, "first page: %zu", lr->n_surveys);
    CHECK(strcmp(lr->surveys[0]->survey_id, "post-purchase") == 0, "order");
    l.page_token = lr->next_page_token;
    CALL_OK(ch, ListSurveys, l, cxm__v1__list_surveys_response, lr);
    CHECK(lr->n_surveys == 1 && !*lr->next_page_token, "second page: %zu", lr->n_surveys);
    CHECK(strcmp(lr->surveys[0]->survey_id, "zeta") == 0, "second page's survey");
    s = survey("support", CSAT);
    s->active = false;
    upsert(ch, s);
    Cxm__V1__ListSurveysRequest act = CXM__V1__LIST_SURVEYS_REQUEST__INIT;
    act.active_only = true;
    CALL_OK(ch, ListSurveys, act, cxm__v1__list_surveys_response, lr);
    CHECK(lr->n_surveys == 2 && strcmp(lr->surveys[1]->survey_id, "zeta") == 0, "%zu active",
          lr->n_surveys);
    act.page_token = l.page_token; /* issued for other filters */
    expect(fails(ch, "ListSurveys", &act.base, &cxm__v1__list_surveys_response__descriptor, d), d,
           GRPC_STATUS_INVALID_ARGUMENT, "page_token");

    s = survey("Bad Id", NPS);
    bad_survey(ch, s, "survey.survey_id");
    s = survey("ok", 0);
    bad_survey(ch, s, "survey.kind");
    s = survey("ok", NPS);
    s->questions[2]->n_options = 1;
    bad_survey(ch, s, "survey.questions[2].options");
    s = survey("ok", NPS);
    s->questions[1]->kind = Q_SCORE;
    bad_survey(ch, s, "survey.questions");
    s = survey("ok", NPS);
    s->questions[3]->question_id = "score";
    bad_survey(ch, s, "survey.questions[3]");
    s = survey("ok", NPS);
    Cxm__V1__RecontactPolicy rp = CXM__V1__RECONTACT_POLICY__INIT;
    rp.sampling_rate = 1.5;
    s->recontact = &rp;
    bad_survey(ch, s, "survey.recontact.sampling_rate");
    s = survey("ok", NPS);
    s->follow_up_threshold = 11;
    bad_survey(ch, s, "survey.follow_up_threshold");
}

/* A response end to end, its replay, answers keeping their version, and
 * a kind change refused once there are responses. */
static void case_submit(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    upsert(ch, survey("s1", NPS));
    Cxm__V1__SubmitResponseRequest *r = response("r1", "s1", "ann@example.com", 3);
    r->text = "The delivery was late and the staff were rude. Terrible service.";
    add_rating(r, "delivery", 6, 2);
    add_answer(r, "pick", "b");
    Cxm__V1__SubmitResponseResponse *a = submit_ok(ch, r);
    CHECK(*a->customer_id && !a->duplicate, "customer %s", a->customer_id);
    CHECK(a->nps_category == CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR, "category %d",
          a->nps_category);
    CHECK(a->sentiment && strcmp(a->sentiment->language, "en") == 0, "sentiment of the text");
    CHECK(*a->follow_up_id, "a score of 3 opens a follow-up");
    CHECK(a->survey_version == 1, "version %u", a->survey_version);

    Cxm__V1__SubmitResponseResponse *b = submit_ok(ch, r);
    CHECK(b->duplicate && strcmp(b->follow_up_id, a->follow_up_id) == 0 &&
              strcmp(b->customer_id, a->customer_id) == 0,
          "replay: duplicate %d, follow-up %s", b->duplicate, b->follow_up_id);

    Cxm__V1__Survey *s = survey("s1", NPS);
    s->title = "version two";
    upsert(ch, s);
    Cxm__V1__SubmitResponseResponse *c = submit_ok(ch, response("r2", "s1", "bob@example.com", 10));
    CHECK(c->survey_version == 2 && !*c->follow_up_id, "version %u", c->survey_version);
    CHECK(c->nps_category == CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PROMOTER, "promoter");
    b = submit_ok(ch, r);
    CHECK(b->survey_version == 1, "the first answer keeps its version: %u", b->survey_version);

    s = survey("s1", CSAT);
    Cxm__V1__UpsertSurveyRequest req = CXM__V1__UPSERT_SURVEY_REQUEST__INIT;
    req.survey = s;
    char d[512];
    expect(fails(ch, "UpsertSurvey", &req.base, &cxm__v1__upsert_survey_response__descriptor, d), d,
           GRPC_STATUS_FAILED_PRECONDITION, "survey.kind");

    Cxm__V1__ListFollowUpsRequest lf = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    lf.customer_id = a->customer_id;
    Cxm__V1__ListFollowUpsResponse *fl;
    CALL_OK(ch, ListFollowUps, lf, cxm__v1__list_follow_ups_response, fl);
    CHECK(fl->n_follow_ups == 1 && strcmp(fl->follow_ups[0]->follow_up_id, a->follow_up_id) == 0,
          "%zu follow-ups", fl->n_follow_ups);
    CHECK(nps_responses(ch) == 2, "GetScores counts %" PRIu64, nps_responses(ch));

    Cxm__V1__UpdateFollowUpRequest uf = CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    uf.follow_up_id = a->follow_up_id;
    uf.state = CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_IN_PROGRESS;
    Cxm__V1__UpdateFollowUpResponse *ur;
    CALL_OK(ch, UpdateFollowUp, uf, cxm__v1__update_follow_up_response, ur);
    CHECK(ur->follow_up->state == CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_IN_PROGRESS, "state");
    Cxm__V1__FollowUpPolicy pol = CXM__V1__FOLLOW_UP_POLICY__INIT;
    pol.ignore_text = true;
    Cxm__V1__SetFollowUpPolicyRequest sp = CXM__V1__SET_FOLLOW_UP_POLICY_REQUEST__INIT;
    sp.policy = &pol;
    Cxm__V1__SetFollowUpPolicyResponse *spr;
    CALL_OK(ch, SetFollowUpPolicy, sp, cxm__v1__set_follow_up_policy_response, spr);
    Cxm__V1__GetFollowUpPolicyRequest gp = CXM__V1__GET_FOLLOW_UP_POLICY_REQUEST__INIT;
    Cxm__V1__GetFollowUpPolicyResponse *gpr;
    CALL_OK(ch, GetFollowUpPolicy, gp, cxm__v1__get_follow_up_policy_response, gpr);
    CHECK(gpr->policy && gpr->policy->ignore_text, "policy kept");

    Cxm__V1__GapAnalysisRequest gq = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
    gq.min_responses = 1;
    Cxm__V1__GapAnalysisResponse *gr;
    CALL_OK(ch, GapAnalysis, gq, cxm__v1__gap_analysis_response, gr);
    CHECK(gr->n_gaps == 1 && strcmp(gr->gaps[0]->touchpoint, "delivery") == 0 &&
              gr->gaps[0]->gap == 4,
          "%zu gaps", gr->n_gaps);
}

/* Every rule of a response against its survey, each naming its field. */
static void case_validation(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__Survey *s = survey("v", NPS);
    s->questions[2]->required = true;
    upsert(ch, s);
    Cxm__V1__SubmitResponseRequest *r = response("x", "v", "val@example.com", 11);
    add_answer(r, "pick", "a");
    bad_response(ch, r, "score");
    r->score = 7.5;
    bad_response(ch, r, "score");
    r->score = 7;
    add_rating(r, "delivery", 3, 8);
    bad_response(ch, r, "ratings[0].experience");
    r->ratings[0]->experience = 3;
    r->ratings[0]->touchpoint = "lobby";
    bad_response(ch, r, "ratings[0].touchpoint");
    r->n_ratings = 0;
    r->answers[0]->value = "c";
    bad_response(ch, r, "answers[0]");
    r->answers[0]->key = "nope";
    bad_response(ch, r, "answers[0]");
    r->n_answers = 0;
    bad_response(ch, r, "answers");
    add_answer(r, "pick", "a");
    r->language = "fr";
    bad_response(ch, r, "language");
    r->language = "";
    r->response_id = "";
    bad_response(ch, r, "response_id");
    r->response_id = "x";
    r->submitted_at_unix_ms = wall_ms() + HOUR_MS;
    bad_response(ch, r, "submitted_at_unix_ms");
    r->submitted_at_unix_ms = 0;
    r->text = "\xff\xfe";
    bad_response(ch, r, "text");
    r->text = "";
    r->survey_id = "nope";
    Cxm__V1__SubmitResponseResponse *out;
    char d[512];
    expect(submit(ch, r, &out, d), d, GRPC_STATUS_NOT_FOUND, "survey_id");
    r->survey_id = "v";
    submit_ok(ch, r);

    Cxm__V1__AnalyzeTextRequest at = CXM__V1__ANALYZE_TEXT_REQUEST__INIT;
    at.text = "배송이 너무 늦었어요. 실망입니다.";
    at.include_aspects = true;
    Cxm__V1__AnalyzeTextResponse *ar;
    CALL_OK(ch, AnalyzeText, at, cxm__v1__analyze_text_response, ar);
    CHECK(strcmp(ar->sentiment->language, "ko") == 0, "language %s", ar->sentiment->language);
    at.language = "de";
    expect(fails(ch, "AnalyzeText", &at.base, &cxm__v1__analyze_text_response__descriptor, d), d,
           GRPC_STATUS_INVALID_ARGUMENT, "language");
    at.language = "";
    at.text = "";
    expect(fails(ch, "AnalyzeText", &at.base, &cxm__v1__analyze_text_response__descriptor, d), d,
           GRPC_STATUS_INVALID_ARGUMENT, "text");
}

static void refused(cxm_channel *ch, Cxm__V1__SubmitResponseRequest *r, const char *gate)
{
    Cxm__V1__SubmitResponseResponse *out;
    char d[512];
    expect(submit(ch, r, &out, d), d, GRPC_STATUS_FAILED_PRECONDITION, gate);
}

/* inactive, targeting, cooldown, frequency, sampling: each through
 * CheckEligibility and SubmitResponse, which agree. */
static void case_gates(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__Survey *s = survey("off", NPS);
    s->active = false;
    upsert(ch, s);
    Cxm__V1__CheckEligibilityResponse *e = eligibility(ch, "off", "g@example.com", 0);
    CHECK(!e->eligible && strcmp(e->gate, "inactive") == 0, "gate %s", e->gate);
    refused(ch, response("g0", "off", "g@example.com", 5), "inactive");

    s = survey("web-only", NPS);
    Cxm__V1__SurveyTargeting tg = CXM__V1__SURVEY_TARGETING__INIT;
    Cxm__V1__Channel web[] = {WEB};
    tg.channels = web;
    tg.n_channels = 1;
    s->targeting = &tg;
    upsert(ch, s);
    e = eligibility(ch, "web-only", "g@example.com", APP);
    CHECK(!e->eligible && strcmp(e->gate, "targeting") == 0, "gate %s", e->gate);
    e = eligibility(ch, "web-only", "g@example.com", 0); /* the survey's own channel */
    CHECK(e->eligible, "web: %s", e->reason);
    Cxm__V1__SubmitResponseRequest *r = response("g1", "web-only", "g@example.com", 5);
    r->channel = APP;
    refused(ch, r, "targeting");

    s = survey("cool", NPS);
    Cxm__V1__RecontactPolicy rp = CXM__V1__RECONTACT_POLICY__INIT;
    rp.cooldown_hours = 24;
    s->recontact = &rp;
    upsert(ch, s);
    submit_ok(ch, response("g2", "cool", "c@example.com", 9));
    e = eligibility(ch, "cool", "c@example.com", 0);
    CHECK(!e->eligible && strcmp(e->gate, "cooldown") == 0, "gate %s", e->gate);
    CHECK(e->retry_after_unix_ms > wall_ms() + 23 * HOUR_MS, "retry after");
    refused(ch, response("g3", "cool", "c@example.com", 9), "cooldown");
    CHECK(eligibility(ch, "cool", "other@example.com", 0)->eligible, "another customer");

    s = survey("freq", NPS);
    Cxm__V1__RecontactPolicy fp = CXM__V1__RECONTACT_POLICY__INIT;
    fp.max_responses_per_period = 2;
    fp.period_days = 7;
    s->recontact = &fp;
    upsert(ch, s);
    submit_ok(ch, response("g4", "freq", "f@example.com", 9));
    CHECK(eligibility(ch, "freq", "f@example.com", 0)->eligible, "one of two");
    submit_ok(ch, response("g5", "freq", "f@example.com", 8));
    e = eligibility(ch, "freq", "f@example.com", 0);
    CHECK(!e->eligible && strcmp(e->gate, "frequency") == 0, "gate %s", e->gate);
    /* The first of the two leaves the 7-day window then. */
    CHECK(e->retry_after_unix_ms > wall_ms() + 7 * 24 * HOUR_MS - 60000 &&
              e->retry_after_unix_ms <= wall_ms() + 7 * 24 * HOUR_MS,
          "retry after %" PRId64, e->retry_after_unix_ms);
    refused(ch, response("g6", "freq", "f@example.com", 9), "frequency");

    s = survey("half", NPS);
    Cxm__V1__RecontactPolicy sp = CXM__V1__RECONTACT_POLICY__INIT;
    sp.sampling_rate = 0.5;
    s->recontact = &sp;
    upsert(ch, s);
    upsert(ch, survey("warm", NPS));
    int in = 0, out = 0;
    for (int i = 0; i < 24; i++) {
        const char *who = fmt("s%d@example.com", i);
        submit_ok(ch, response(fmt("w%d", i), "warm", who, 9)); /* the customer exists */
        e = eligibility(ch, "half", who, 0);
        CHECK(e->eligible || strcmp(e->gate, "sampling") == 0, "gate %s", e->gate);
        if (e->eligible) {
            submit_ok(ch, response(fmt("h%d", i), "half", who, 9));
            in++;
        } else {
            refused(ch, response(fmt("h%d", i), "half", who, 9), "sampling");
            out++;
        }
    }
    CHECK(in > 0 && out > 0, "%d sampled in, %d out", in, out);

    /* Customers no profile knows yet: the check samples by the identity,
     * and the response that creates the profile agrees with it. */
    in = out = 0;
    for (int i = 0; i < 24; i++) {
        const char *who = fmt("new%d@example.com", i);
        e = eligibility(ch, "half", who, 0);
        CHECK(e->eligible || strcmp(e->gate, "sampling") == 0, "gate %s", e->gate);
        if (e->eligible) {
            submit_ok(ch, response(fmt("n%d", i), "half", who, 9));
            in++;
        } else {
            refused(ch, response(fmt("n%d", i), "half", who, 9), "sampling");
            out++;
        }
    }
    CHECK(in > 0 && out > 0, "new customers: %d sampled in, %d out", in, out);
}

/* Stage UNSPECIFIED on the response and the survey: the customer's stage
 * as journey last published it (StageChanged over the bus). */
static void case_stage(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__TouchpointEvent ev = CXM__V1__TOUCHPOINT_EVENT__INIT;
    ev.event_id = "st-1";
    ev.customer = by_email("stage@example.com");
    ev.touchpoint = "checkout";
    ev.channel = WEB;
    ev.event_type = "purchase";
    ev.occurred_at_unix_ms = wall_ms() - 60000;
    Cxm__V1__TouchpointEvent *evs[] = {&ev};
    Cxm__V1__TrackRequest tr = CXM__V1__TRACK_REQUEST__INIT;
    tr.events = evs;
    tr.n_events = 1;
    Cxm__V1__TrackResponse *trr;
    char d[512];
    CHECK(harness_call(ch, JOURNEY, "Track", &tr.base, &cxm__v1__track_response__descriptor, &arena,
                       &trr, d) == GRPC_STATUS_OK &&
              trr->accepted == 1,
          "Track: %s", d);
    /* Targeting USE only: refused once feedback knows the customer buys. */
    Cxm__V1__Survey *s = survey("use-only", NPS);
    Cxm__V1__SurveyTargeting tg = CXM__V1__SURVEY_TARGETING__INIT;
    Cxm__V1__JourneyStage use[] = {CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE};
    tg.stages = use;
    tg.n_stages = 1;
    s->targeting = &tg;
    upsert(ch, s);
    for (double end = test_now_ms() + 15000;;) {
        Cxm__V1__CheckEligibilityResponse *e = eligibility(ch, "use-only", "stage@example.com", 0);
        if (!e->eligible) {
            CHECK(strcmp(e->gate, "targeting") == 0, "gate %s", e->gate);
            break;
        }
        CHECK(test_now_ms() < end, "the customer's stage did not reach feedback in 15 s");
        usleep(50000);
    }
    upsert(ch, survey("any", NPS));
    submit_ok(ch, response("st-r", "any", "stage@example.com", 10));
    Cxm__V1__GetScoresRequest q = CXM__V1__GET_SCORES_REQUEST__INIT;
    q.kind = NPS;
    q.group_by = CXM__V1__SCORE_GROUPING__SCORE_GROUPING_STAGE;
    Cxm__V1__GetScoresResponse *r;
    CALL_OK(ch, GetScores, q, cxm__v1__get_scores_response, r);
    CHECK(r->n_groups == 1 && r->groups[0]->stage == CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE,
          "%zu groups, stage %d", r->n_groups, r->n_groups ? (int)r->groups[0]->stage : -1);

    /* FeedbackReceived reached journey: the touchpoint's NPS. */
    Cxm__V1__TouchpointStatsRequest ts = CXM__V1__TOUCHPOINT_STATS_REQUEST__INIT;
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = wall_ms() - 24 * HOUR_MS;
    range.to_unix_ms = wall_ms() + HOUR_MS;
    ts.range = &range;
    char *tps[] = {"checkout"};
    ts.touchpoints = tps;
    ts.n_touchpoints = 1;
    for (double end = test_now_ms() + 15000;;) {
        Cxm__V1__TouchpointStatsResponse *tsr;
        CHECK(harness_call(ch, JOURNEY, "TouchpointStats", &ts.base,
                           &cxm__v1__touchpoint_stats_response__descriptor, &arena, &tsr,
                           d) == GRPC_STATUS_OK,
              "TouchpointStats: %s", d);
        const Cxm__V1__TouchpointFeedback *f = tsr->n_stats ? tsr->stats[0]->feedback : NULL;
        if (f && f->nps_responses == 1) {
            CHECK(f->nps == 100, "journey's NPS of checkout: %g", f->nps);
            break;
        }
        CHECK(test_now_ms() < end, "FeedbackReceived did not reach journey in 15 s");
        usleep(50000);
    }
}

/* DeleteProfile erases the customer's responses, records and follow-ups
 * here, and the receipt counts them. */
static void case_erasure(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    upsert(ch, survey("e", NPS));
    Cxm__V1__SubmitResponseResponse *a = submit_ok(ch, response("e1", "e", "er@example.com", 2));
    submit_ok(ch, response("e2", "e", "er@example.com", 9));
    submit_ok(ch, response("e3", "e", "keep@example.com", 9));
    CHECK(*a->follow_up_id && nps_responses(ch) == 3, "set up");
    const Cxm__V1__ServiceErasure *f = harness_erase(ch, &arena, a->customer_id, "feedback");
    CHECK(f->records_erased >= 3, "feedback erased %" PRIu64, f->records_erased);
    CHECK(nps_responses(ch) == 1, "%" PRIu64 " responses left", nps_responses(ch));
    Cxm__V1__ListFollowUpsRequest lf = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    lf.customer_id = a->customer_id;
    Cxm__V1__ListFollowUpsResponse *fl;
    CALL_OK(ch, ListFollowUps, lf, cxm__v1__list_follow_ups_response, fl);
    CHECK(fl->n_follow_ups == 0, "%zu follow-ups left", fl->n_follow_ups);
}

/* profile merges B into A: B's answers count for A's recontact gates, and
 * erasing A erases B's responses and follow-ups too. */
static void case_merge(cxm_channel *ch, test_server *srv)
{
    (void)srv;
    Cxm__V1__Survey *s = survey("m-cool", NPS);
    Cxm__V1__RecontactPolicy rp = CXM__V1__RECONTACT_POLICY__INIT;
    rp.cooldown_hours = 24;
    s->recontact = &rp;
    upsert(ch, s);
    /* A has a profile and has never answered; B answered. */
    Cxm__V1__UpsertProfileRequest up = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    Cxm__V1__Identity *ids[] = {by_email("ma@example.com")->identity};
    up.identities = ids;
    up.n_identities = 1;
    Cxm__V1__UpsertProfileResponse *a;
    char d[512];
    CHECK(pcall(ch, "UpsertProfile", &up.base, &cxm__v1__upsert_profile_response__descriptor, &a,
                d) == GRPC_STATUS_OK,
          "UpsertProfile: %s", d);
    Cxm__V1__SubmitResponseResponse *b =
        submit_ok(ch, response("m2", "m-cool", "mb@example.com", 1));
    CHECK(*b->follow_up_id, "B's low score opens a follow-up");
    CHECK(eligibility(ch, "m-cool", "ma@example.com", 0)->eligible, "A never answered");

    Cxm__V1__MergeProfilesRequest m = CXM__V1__MERGE_PROFILES_REQUEST__INIT;
    m.target_customer_id = a->profile->customer_id;
    m.source_customer_id = b->customer_id;
    m.reason = "test merge";
    Cxm__V1__MergeProfilesResponse *mr;
    CHECK(pcall(ch, "MergeProfiles", &m.base, &cxm__v1__merge_profiles_response__descriptor, &mr,
                d) == GRPC_STATUS_OK,
          "MergeProfiles: %s", d);
    for (double end = test_now_ms() + 15000;;) {
        Cxm__V1__CheckEligibilityResponse *e = eligibility(ch, "m-cool", "ma@example.com", 0);
        if (!e->eligible) {
            CHECK(strcmp(e->gate, "cooldown") == 0, "gate %s", e->gate);
            break;
        }
        CHECK(test_now_ms() < end, "the merge did not reach feedback in 15 s");
        usleep(50000);
    }

    /* B's email answers again once the merge is here: the response, its
     * follow-up and its events are the live customer's (A's), whatever the
     * resolver remembered of B's email from before the merge. */
    upsert(ch, survey("m-open", NPS));
    Cxm__V1__SubmitResponseResponse *b2 =
        submit_ok(ch, response("m3", "m-open", "mb@example.com", 1));
    CHECK(strcmp(b2->customer_id, a->profile->customer_id) == 0, "answered as %s, not the live %s",
          b2->customer_id, a->profile->customer_id);
    Cxm__V1__ListFollowUpsRequest la = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    la.customer_id = a->profile->customer_id;
    Cxm__V1__ListFollowUpsResponse *fa;
    CALL_OK(ch, ListFollowUps, la, cxm__v1__list_follow_ups_response, fa);
    CHECK(fa->n_follow_ups == 2, "A has %zu follow-ups, not B's moved one and the new one",
          fa->n_follow_ups);

    harness_erase(ch, &arena, a->profile->customer_id, "feedback");
    CHECK(nps_responses(ch) == 0, "%" PRIu64 " responses left", nps_responses(ch));
    Cxm__V1__ListFollowUpsRequest lf = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    Cxm__V1__ListFollowUpsResponse *fl;
    CALL_OK(ch, ListFollowUps, lf, cxm__v1__list_follow_ups_response, fl);
    CHECK(fl->n_follow_ups == 0, "%zu follow-ups left", fl->n_follow_ups);
}

/* kill -9 right after responses were acknowledged: every one of them is
 * there after the restart (its replay is a duplicate; scores count it). */
static void case_kill9(cxm_channel *first, test_server *srv)
{
    upsert(first, survey("k", NPS));
    enum { N = 40 };
    double t = test_now_ms();
    for (int i = 0; i < N; i++)
        submit_ok(first, response(fmt("k%d", i), "k", fmt("k%d@example.com", i % 7), i % 11));
    printf("kill9: %d responses acknowledged one after another in %.0f ms\n", N, test_now_ms() - t);
    CHECK(harness_stop(srv, SIGKILL, 5000) == 128 + SIGKILL, "kill -9");
    harness_restart(srv);
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv->target, NULL, &ch) == 0, "channel");
    CHECK(nps_responses(ch) == N, "%" PRIu64 " of %d responses", nps_responses(ch), N);
    for (int i = 0; i < N; i++) {
        Cxm__V1__SubmitResponseResponse *r =
            submit_ok(ch, response(fmt("k%d", i), "k", fmt("k%d@example.com", i % 7), i % 11));
        CHECK(r->duplicate, "k%d is not there", i);
    }
    cxm_channel_close(ch);
}

/* Many clients at once: every response stored exactly once (the resolver
 * thread batches their customers, the group commit their writes). */
enum { CC_THREADS = 8, CC_EACH = 50 };

typedef struct cc_arg {
    const char *target;
    int thread, failures;
} cc_arg;

static void *cc_main(void *p)
{
    cc_arg *c = p;
    cxm_channel *ch;
    if (cxm_channel_open(c->target, NULL, &ch) != 0) {
        c->failures = CC_EACH;
        return NULL;
    }
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    for (int i = 0; i < CC_EACH; i++) {
        char rid[32], email[48];
        snprintf(rid, sizeof rid, "cc-%d-%d", c->thread, i);
        snprintf(email, sizeof email, "cc%d@example.com", (c->thread * CC_EACH + i) % 37);
        Cxm__V1__Identity id = CXM__V1__IDENTITY__INIT;
        id.type = EMAIL;
        id.value = email;
        Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
        ref.key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
        ref.identity = &id;
        Cxm__V1__SubmitResponseRequest r = CXM__V1__SUBMIT_RESPONSE_REQUEST__INIT;
        r.response_id = rid;
        r.survey_id = "cc";
        r.customer = &ref;
        r.score = i % 11;
        void *out;
        char d[512];
        if (harness_call(ch, SVC, "SubmitResponse", &r.base,
                         &cxm__v1__submit_response_response__descriptor, &a, &out,
                         d) != GRPC_STATUS_OK)
            c->failures++;
        cxm_arena_reset(&a);
    }
    cxm_arena_dispose(&a);
    cxm_channel_close(ch);
    return NULL;
}

static void case_concurrent(cxm_channel *ch, test_server *srv)
{
    upsert(ch, survey("cc", NPS));
    pthread_t th[CC_THREADS];
    cc_arg args[CC_THREADS];
    double t = test_now_ms();
    for (int i = 0; i < CC_THREADS; i++) {
        args[i] = (cc_arg){srv->target, i, 0};
        pthread_create(&th[i], NULL, cc_main, &args[i]);
    }
    for (int i = 0; i < CC_THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].failures == 0, "thread %d: %d failed", i, args[i].failures);
    }
    t = test_now_ms() - t;
    printf("concurrent: %d responses from %d clients in %.0f ms (%.0f/s)\n", CC_THREADS * CC_EACH,
           CC_THREADS, t, CC_THREADS * CC_EACH / (t / 1000));
    CHECK(nps_responses(ch) == CC_THREADS * CC_EACH, "%" PRIu64 " responses stored",
          nps_responses(ch));
}

/* cxm-feedback with its profile service down: UNAVAILABLE naming it, and
 * nothing written; once profile is back the same response goes through. */
static void case_profile_down(cxm_channel *unused, test_server *srv)
{
    (void)unused;
    test_server prof, fb;
    const char *profile_addr = harness_profile_stopped(&arena, srv, &prof);
    const char *fb_args[] = {"--profile-addr", profile_addr, NULL};
    harness_start(&fb, harness_sibling(&arena, srv, "cxm-feedback"), fb_args);
    cxm_channel *ch;
    CHECK(cxm_channel_open(fb.target, NULL, &ch) == 0, "channel");
    upsert(ch, survey("pd", NPS));
    Cxm__V1__SubmitResponseRequest *r = response("pd1", "pd", "pd@example.com", 1);
    Cxm__V1__SubmitResponseResponse *out;
    char d[512];
    expect(submit(ch, r, &out, d), d, GRPC_STATUS_UNAVAILABLE, "profile");
    CHECK(nps_responses(ch) == 0, "a response was written with profile down");
    Cxm__V1__ListFollowUpsRequest lf = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    Cxm__V1__ListFollowUpsResponse *fl;
    CALL_OK(ch, ListFollowUps, lf, cxm__v1__list_follow_ups_response, fl);
    CHECK(fl->n_follow_ups == 0, "a follow-up was written with profile down");

    harness_restart(&prof);
    for (double end = test_now_ms() + 15000;;) {
        grpc_status_code st = submit(ch, r, &out, d);
        if (st == GRPC_STATUS_OK)
            break;
        CHECK(st == GRPC_STATUS_UNAVAILABLE && test_now_ms() < end, "after restart: %d %s", st, d);
        usleep(100000);
    }
    CHECK(!out->duplicate && *out->follow_up_id && nps_responses(ch) == 1, "stored once");
    cxm_channel_close(ch);
    CHECK(harness_stop(&fb, SIGTERM, 10000) == 0, "feedback drained");
    CHECK(harness_stop(&prof, SIGTERM, 10000) == 0, "profile drained");
    harness_cleanup(&fb);
    harness_cleanup(&prof);
}

static const harness_case cases[] = {
    {"surveys", case_surveys},       {"submit", case_submit},
    {"validation", case_validation}, {"gates", case_gates},
    {"stage", case_stage},           {"erasure", case_erasure},
    {"merge", case_merge},           {"kill9", case_kill9},
    {"concurrent", case_concurrent}, {"profile_down", case_profile_down},
};

int main(int argc, char **argv)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    int rc = harness_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
    cxm_arena_dispose(&arena);
    return rc;
}
