/*
 * fuzz_feedback_req.c - every FeedbackService request, decoded as the
 * server decodes it and run through the checks its handler runs before any
 * work: the first byte picks the method, the rest is the request.
 * GetScores and GapAnalysis validate inside the analytics, so those run
 * over an empty store; AnalyzeText's text goes through the sentiment model.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "feedback/fan.h"
#include "feedback/fb_check.h"
#include "feedback/fb_rpc.h"
#include "feedback/ffu.h"
#include "feedback/senti/fsent.h"
#include "fuzz.h"

/* The survey a SubmitResponse is checked against in the second step (the
 * handler loads it from the store): an NPS survey with a question of every
 * kind, so that answers of each kind meet their rules. */
static char *options[] = {"yes", "no"};
static Cxm__V1__SurveyQuestion q_score = {
    PROTOBUF_C_MESSAGE_INIT(&cxm__v1__survey_question__descriptor), .question_id = "score",
    .kind = CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE, .text = "How likely?", .required = 1};
static Cxm__V1__SurveyQuestion q_text = {
    PROTOBUF_C_MESSAGE_INIT(&cxm__v1__survey_question__descriptor), .question_id = "why",
    .kind = CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT, .text = "Why?"};
static Cxm__V1__SurveyQuestion q_choice = {
    PROTOBUF_C_MESSAGE_INIT(&cxm__v1__survey_question__descriptor),
    .question_id = "again",
    .kind = CXM__V1__QUESTION_KIND__QUESTION_KIND_SINGLE_CHOICE,
    .text = "Again?",
    .n_options = 2,
    .options = options};
static Cxm__V1__SurveyQuestion q_gap = {
    PROTOBUF_C_MESSAGE_INIT(&cxm__v1__survey_question__descriptor), .question_id = "delivery",
    .kind = CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP, .text = "Delivery?",
    .touchpoint = "delivery"};
static Cxm__V1__SurveyQuestion *questions[] = {&q_score, &q_text, &q_choice, &q_gap};
static Cxm__V1__Survey survey = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__survey__descriptor),
                                 .survey_id = "nps-web",
                                 .kind = CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS,
                                 .touchpoint = "checkout",
                                 .version = 1,
                                 .n_questions = 4,
                                 .questions = questions};

/* An empty store for the analytics: no records, no names. */
static int no_records(void *src, int64_t from_ms, int64_t to_ms, fan_rec_fn fn, void *user)
{
    return 0;
}

static const char *no_name(void *src, uint32_t id)
{
    return NULL;
}

static uint32_t no_id(void *src, const char *name)
{
    return 0;
}

static const fan_src empty = {.scan = no_records, .name = no_name, .id = no_id};

static int upsert(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return fb_check_survey(((Cxm__V1__UpsertSurveyRequest *)m)->survey, err);
}

/* On its own, then against the survey, as submit_precheck and the job do. */
static int submit(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__SubmitResponseRequest *req = (Cxm__V1__SubmitResponseRequest *)m;
    int rc = fb_check_submit(a, req, FUZZ_NOW_MS, err);
    return rc ? rc : fb_check_submit_survey(req, &survey, err);
}

static int scores(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__GetScoresResponse *out;
    return fan_scores(&empty, (Cxm__V1__GetScoresRequest *)m, a, &out, err);
}

static int gaps(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__GapAnalysisResponse *out;
    return fan_gaps(&empty, (Cxm__V1__GapAnalysisRequest *)m, a, &out, err);
}

static int list_follow_ups(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return ffu_check_list((Cxm__V1__ListFollowUpsRequest *)m, FUZZ_NOW_MS, err);
}

static int update_follow_up(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return ffu_check_update((Cxm__V1__UpdateFollowUpRequest *)m, err);
}

static int analyze(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__AnalyzeTextRequest *req = (Cxm__V1__AnalyzeTextRequest *)m;
    int rc = fb_check_analyze(req, err);
    fsent_result r;
    if (rc == 0 && fsent_analyze(fsent_builtin(), req->text, strlen(req->text), FSENT_LANG_DETECT,
                                 req->include_aspects, &r) != 0)
        abort(); /* a text the check let through must be one the model takes */
    return rc;
}

static int get_survey(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return fb_check_get_survey((Cxm__V1__GetSurveyRequest *)m, err);
}

static int list_surveys(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__ListSurveysRequest *req = (Cxm__V1__ListSurveysRequest *)m;
    return fuzz_paging(req->page_size, req->page_token, 50, 1000, err);
}

static int eligibility(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return fb_check_eligibility(a, (Cxm__V1__CheckEligibilityRequest *)m, err);
}

static int no_fields(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return 0; /* GetFollowUpPolicy: an empty request, only the decoding counts */
}

static int set_policy(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return ffu_check_policy(((Cxm__V1__SetFollowUpPolicyRequest *)m)->policy, err);
}

static const fuzz_check checks[] = {
    {"UpsertSurvey", upsert},
    {"SubmitResponse", submit},
    {"GetScores", scores},
    {"GapAnalysis", gaps},
    {"ListFollowUps", list_follow_ups},
    {"UpdateFollowUp", update_follow_up},
    {"AnalyzeText", analyze},
    {"GetSurvey", get_survey},
    {"ListSurveys", list_surveys},
    {"CheckEligibility", eligibility},
    {"GetFollowUpPolicy", no_fields},
    {"SetFollowUpPolicy", set_policy},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_service(fb_methods, fb_nmethods, checks, sizeof checks / sizeof checks[0], data, size);
    return 0;
}
