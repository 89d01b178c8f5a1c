/*
 * test_fb_check.c - every validation rule of the FeedbackService requests,
 * each failure naming its field path: surveys (fields, questions,
 * targeting, recontact), responses on their own and against their survey
 * (scale, integer score, answers, options, required questions, ratings and
 * their touchpoints, text, language, timestamps), CheckEligibility,
 * AnalyzeText and GetSurvey.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cxm/err.h"
#include "feedback/fb_check.h"

#define NOW 1800000000000LL

static cxm_arena arena;
static char err[CXM_SVC_ERR_MAX];

/* The check failed with CXM_EINVAL and err starts with the path. */
#define FAILS_AT(call, path)                                                                       \
    do {                                                                                           \
        err[0] = 0;                                                                                \
        int rc_ = (call);                                                                          \
        CHECK_EQ_INT(rc_, CXM_EINVAL);                                                             \
        if (strncmp(err, path ": ", strlen(path ": ")) != 0)                                       \
            fprintf(stderr, "%s:%d: want \"%s: ...\", got \"%s\"\n", __FILE__, __LINE__, path,     \
                    err);                                                                          \
        CHECK(strncmp(err, path ": ", strlen(path ": ")) == 0);                                    \
    } while (0)

static Cxm__V1__SurveyQuestion *question(const char *id, Cxm__V1__QuestionKind kind)
{
    Cxm__V1__SurveyQuestion *q = cxm_arena_calloc(&arena, 1, sizeof *q);
    cxm__v1__survey_question__init(q);
    q->question_id = (char *)id;
    q->kind = kind;
    q->text = "?";
    return q;
}

/* A valid CSAT survey: score, text, choice (x/y, required), a gap of
 * "delivery" and one of the survey's touchpoint "checkout". */
static Cxm__V1__Survey *survey(void)
{
    Cxm__V1__Survey *s = cxm_arena_calloc(&arena, 1, sizeof *s);
    cxm__v1__survey__init(s);
    s->survey_id = "csat-1";
    s->kind = CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT;
    s->touchpoint = "checkout";
    s->version = 3;
    Cxm__V1__SurveyQuestion **qs = cxm_arena_calloc(&arena, 5, sizeof *qs);
    qs[0] = question("score", CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE);
    qs[1] = question("why", CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT);
    qs[2] = question("pick", CXM__V1__QUESTION_KIND__QUESTION_KIND_SINGLE_CHOICE);
    static char *opts[] = {"x", "y"};
    qs[2]->options = opts;
    qs[2]->n_options = 2;
    qs[2]->required = true;
    qs[3] = question("gap", CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP);
    qs[3]->touchpoint = "delivery";
    qs[4] = question("gap2", CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP);
    s->questions = qs;
    s->n_questions = 5;
    return s;
}

static void test_survey(void)
{
    Cxm__V1__Survey *s = survey();
    CHECK_EQ_INT(fb_check_survey(s, err), 0);
    FAILS_AT(fb_check_survey(NULL, err), "survey");
    s->survey_id = "Upper";
    FAILS_AT(fb_check_survey(s, err), "survey.survey_id");
    s = survey();
    s->kind = 0;
    FAILS_AT(fb_check_survey(s, err), "survey.kind");
    s->kind = 9;
    FAILS_AT(fb_check_survey(s, err), "survey.kind");
    s = survey();
    char title[300];
    memset(title, 't', sizeof title - 1);
    title[sizeof title - 1] = 0;
    s->title = title;
    FAILS_AT(fb_check_survey(s, err), "survey.title");
    s = survey();
    s->touchpoint = "no spaces";
    FAILS_AT(fb_check_survey(s, err), "survey.touchpoint");
    s = survey();
    s->channel = 99;
    FAILS_AT(fb_check_survey(s, err), "survey.channel");
    s = survey();
    s->stage = 42;
    FAILS_AT(fb_check_survey(s, err), "survey.stage");
    s = survey();
    s->language = "k";
    FAILS_AT(fb_check_survey(s, err), "survey.language");
    s = survey();
    s->follow_up_threshold = 6; /* CSAT tops at 5 */
    FAILS_AT(fb_check_survey(s, err), "survey.follow_up_threshold");
    s->follow_up_threshold = NAN;
    FAILS_AT(fb_check_survey(s, err), "survey.follow_up_threshold");
    s->follow_up_threshold = -1; /* disables */
    CHECK_EQ_INT(fb_check_survey(s, err), 0);
    s->follow_up_due_hours = 100000;
    FAILS_AT(fb_check_survey(s, err), "survey.follow_up_due_hours");
}

static void test_questions(void)
{
    Cxm__V1__Survey *s = survey();
    s->n_questions = 0;
    FAILS_AT(fb_check_survey(s, err), "survey.questions");
    s = survey();
    s->questions[1]->kind = CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE;
    FAILS_AT(fb_check_survey(s, err), "survey.questions"); /* two SCORE questions */
    s = survey();
    s->questions[0]->kind = CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT;
    FAILS_AT(fb_check_survey(s, err), "survey.questions"); /* none */
    s = survey();
    s->questions[4]->question_id = "why";
    FAILS_AT(fb_check_survey(s, err), "survey.questions[4]");
    s = survey();
    s->questions[1]->question_id = "";
    FAILS_AT(fb_check_survey(s, err), "survey.questions[1].question_id");
    s = survey();
    s->questions[1]->kind = 0;
    FAILS_AT(fb_check_survey(s, err), "survey.questions[1].kind");
    s = survey();
    s->questions[2]->n_options = 1;
    FAILS_AT(fb_check_survey(s, err), "survey.questions[2].options");
    s = survey();
    static char *same[] = {"x", "x"};
    s->questions[2]->options = same;
    FAILS_AT(fb_check_survey(s, err), "survey.questions[2].options[1]");
    s = survey();
    static char *empty[] = {"x", ""};
    s->questions[2]->options = empty;
    FAILS_AT(fb_check_survey(s, err), "survey.questions[2].options[1]");
    s = survey();
    s->questions[1]->options = same;
    s->questions[1]->n_options = 2;
    FAILS_AT(fb_check_survey(s, err), "survey.questions[1].options");
    s = survey();
    s->questions[1]->touchpoint = "lobby";
    FAILS_AT(fb_check_survey(s, err), "survey.questions[1].touchpoint");
    /* A gap question rates its own touchpoint or the survey's: with
     * neither, no rating could ever answer it. */
    s = survey();
    s->touchpoint = "";
    FAILS_AT(fb_check_survey(s, err), "survey.questions[4].touchpoint");
    s->questions[4]->touchpoint = "lobby";
    CHECK_EQ_INT(fb_check_survey(s, err), 0);
    s = survey();
    Cxm__V1__SurveyQuestion__TranslationsEntry tr =
        CXM__V1__SURVEY_QUESTION__TRANSLATIONS_ENTRY__INIT;
    Cxm__V1__SurveyQuestion__TranslationsEntry *trs[] = {&tr};
    tr.key = "ko";
    tr.value = "질문";
    s->questions[1]->translations = trs;
    s->questions[1]->n_translations = 1;
    CHECK_EQ_INT(fb_check_survey(s, err), 0);
    tr.key = "?";
    FAILS_AT(fb_check_survey(s, err), "survey.questions[1].translations[0].key");
}

static void test_targeting(void)
{
    Cxm__V1__Survey *s = survey();
    Cxm__V1__SurveyTargeting t = CXM__V1__SURVEY_TARGETING__INIT;
    Cxm__V1__RecontactPolicy r = CXM__V1__RECONTACT_POLICY__INIT;
    s->targeting = &t;
    s->recontact = &r;
    char *tps[] = {"ok", "not ok"};
    t.touchpoints = tps;
    t.n_touchpoints = 2;
    FAILS_AT(fb_check_survey(s, err), "survey.targeting.touchpoints[1]");
    t.n_touchpoints = 1;
    Cxm__V1__Channel chs[] = {CXM__V1__CHANNEL__CHANNEL_WEB, 0};
    t.channels = chs;
    t.n_channels = 2;
    FAILS_AT(fb_check_survey(s, err), "survey.targeting.channels[1]");
    t.n_channels = 1;
    Cxm__V1__JourneyStage st[] = {77};
    t.stages = st;
    t.n_stages = 1;
    FAILS_AT(fb_check_survey(s, err), "survey.targeting.stages[0]");
    t.n_stages = 0;
    t.n_touchpoints = 101;
    FAILS_AT(fb_check_survey(s, err), "survey.targeting");
    t.n_touchpoints = 1;
    CHECK_EQ_INT(fb_check_survey(s, err), 0);
    r.sampling_rate = 1.01;
    FAILS_AT(fb_check_survey(s, err), "survey.recontact.sampling_rate");
    r.sampling_rate = -0.1;
    FAILS_AT(fb_check_survey(s, err), "survey.recontact.sampling_rate");
    r.sampling_rate = 0.3;
    r.period_days = 3651;
    r.max_responses_per_period = 2;
    FAILS_AT(fb_check_survey(s, err), "survey.recontact.period_days");
    r.period_days = 7;
    r.max_responses_per_period = 0;
    FAILS_AT(fb_check_survey(s, err), "survey.recontact.period_days");
    r.max_responses_per_period = 2;
    r.cooldown_hours = 24u * 3651;
    FAILS_AT(fb_check_survey(s, err), "survey.recontact.cooldown_hours");
    r.cooldown_hours = 24;
    CHECK_EQ_INT(fb_check_survey(s, err), 0);
}

/* ---- responses ---- */

static Cxm__V1__SubmitResponseRequest *response(void)
{
    Cxm__V1__SubmitResponseRequest *r = cxm_arena_calloc(&arena, 1, sizeof *r);
    Cxm__V1__CustomerRef *c = cxm_arena_calloc(&arena, 1, sizeof *c);
    cxm__v1__submit_response_request__init(r);
    cxm__v1__customer_ref__init(c);
    c->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    c->customer_id = "c-1";
    r->response_id = "resp-1";
    r->survey_id = "csat-1";
    r->customer = c;
    r->score = 4;
    static Cxm__V1__SubmitResponseRequest__AnswersEntry pick =
        CXM__V1__SUBMIT_RESPONSE_REQUEST__ANSWERS_ENTRY__INIT;
    static Cxm__V1__SubmitResponseRequest__AnswersEntry *answers[2] = {&pick};
    pick.key = "pick";
    pick.value = "y";
    r->answers = answers;
    r->n_answers = 1;
    return r;
}

static Cxm__V1__ExpectationRating *rating(const char *tp, double e, double x)
{
    Cxm__V1__ExpectationRating *r = cxm_arena_calloc(&arena, 1, sizeof *r);
    cxm__v1__expectation_rating__init(r);
    r->touchpoint = (char *)tp;
    r->expectation = e;
    r->experience = x;
    return r;
}

static void test_submit_alone(void)
{
    Cxm__V1__SubmitResponseRequest *r = response();
    CHECK_EQ_INT(fb_check_submit(&arena, r, NOW, err), 0);
    r->response_id = "";
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "response_id");
    char long_id[200];
    memset(long_id, 'r', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    r->response_id = long_id;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "response_id");
    r = response();
    r->survey_id = "";
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "survey_id");
    r = response();
    r->customer = NULL;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "customer");
    r = response();
    r->score = INFINITY;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "score");
    r = response();
    static char big[FB_TEXT_MAX + 2];
    memset(big, 'a', FB_TEXT_MAX + 1);
    r->text = big;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "text");
    r->text = "caf\xc3";
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "text");
    r->text = "fine";
    r->language = "ja";
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "language");
    r->language = "ko";
    CHECK_EQ_INT(fb_check_submit(&arena, r, NOW, err), 0);
    Cxm__V1__ExpectationRating *rs[21];
    for (int i = 0; i < 21; i++)
        rs[i] = rating("delivery", 4, 4);
    r->ratings = rs;
    r->n_ratings = 21;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "ratings");
    r->n_ratings = 3;
    rs[2] = rating("delivery", 0.5, 4);
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "ratings[2].expectation");
    rs[2] = rating("delivery", 4, 7.5);
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "ratings[2].experience");
    rs[2] = rating("del ivery", 4, 4);
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "ratings[2].touchpoint");
    r->n_ratings = 0;
    r->touchpoint = "a b";
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "touchpoint");
    r->touchpoint = "";
    r->channel = 50;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "channel");
    r->channel = 0;
    r->stage = 50;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "stage");
    r->stage = 0;
    r->submitted_at_unix_ms = NOW + 5 * 60000 + 1;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "submitted_at_unix_ms");
    r->submitted_at_unix_ms = -1;
    FAILS_AT(fb_check_submit(&arena, r, NOW, err), "submitted_at_unix_ms");
    r->submitted_at_unix_ms = NOW + 5 * 60000;
    CHECK_EQ_INT(fb_check_submit(&arena, r, NOW, err), 0);
}

static void test_submit_survey(void)
{
    Cxm__V1__Survey *s = survey();
    Cxm__V1__SubmitResponseRequest *r = response();
    CHECK_EQ_INT(fb_check_submit_survey(r, s, err), 0);
    r->score = 6;
    FAILS_AT(fb_check_submit_survey(r, s, err), "score");
    r->score = 0;
    FAILS_AT(fb_check_submit_survey(r, s, err), "score");
    r->score = 3.5;
    FAILS_AT(fb_check_submit_survey(r, s, err), "score");
    r->score = 5;
    r->answers[0]->value = "z";
    FAILS_AT(fb_check_submit_survey(r, s, err), "answers[0]");
    r->answers[0]->value = "x";
    static Cxm__V1__SubmitResponseRequest__AnswersEntry extra =
        CXM__V1__SUBMIT_RESPONSE_REQUEST__ANSWERS_ENTRY__INIT;
    extra.key = "nope";
    extra.value = "v";
    r->answers[1] = &extra;
    r->n_answers = 2;
    FAILS_AT(fb_check_submit_survey(r, s, err), "answers[1]");
    extra.key = "score";
    FAILS_AT(fb_check_submit_survey(r, s, err), "answers[1]");
    extra.key = "why"; /* FREE_TEXT answered in answers */
    CHECK_EQ_INT(fb_check_submit_survey(r, s, err), 0);
    r->n_answers = 0; /* the required choice is missing */
    FAILS_AT(fb_check_submit_survey(r, s, err), "answers");
    r->n_answers = 1;

    /* Ratings: delivery (its question's) and checkout (the survey's, the
     * touchpoint of the question with none); empty = the response's. */
    Cxm__V1__ExpectationRating *rs[] = {rating("delivery", 5, 3), rating("", 4, 4)};
    r->ratings = rs;
    r->n_ratings = 2;
    CHECK_EQ_INT(fb_check_submit_survey(r, s, err), 0);
    CHECK_EQ_STR(fb_rating_touchpoint(rs[1], r, s), "checkout");
    rs[1]->touchpoint = "lobby";
    FAILS_AT(fb_check_submit_survey(r, s, err), "ratings[1].touchpoint");
    rs[1]->touchpoint = "delivery";
    FAILS_AT(fb_check_submit_survey(r, s, err), "ratings[1].touchpoint"); /* twice */
    r->n_ratings = 1;
    s->questions[3]->required = true;
    CHECK_EQ_INT(fb_check_submit_survey(r, s, err), 0);
    r->n_ratings = 0;
    FAILS_AT(fb_check_submit_survey(r, s, err), "ratings");
    s->questions[3]->required = false;
    s->questions[1]->required = true;
    FAILS_AT(fb_check_submit_survey(r, s, err), "text or answers");
    r->text = "answered in text";
    CHECK_EQ_INT(fb_check_submit_survey(r, s, err), 0);
    s->touchpoint = "";
    r->text = "";
    r->ratings = rs;
    r->n_ratings = 1;
    rs[0]->touchpoint = "";
    s->questions[1]->required = false;
    FAILS_AT(fb_check_submit_survey(r, s, err), "ratings[0].touchpoint"); /* none anywhere */
}

static void test_others(void)
{
    Cxm__V1__CheckEligibilityRequest e = CXM__V1__CHECK_ELIGIBILITY_REQUEST__INIT;
    FAILS_AT(fb_check_eligibility(&arena, &e, err), "survey_id");
    e.survey_id = "s";
    FAILS_AT(fb_check_eligibility(&arena, &e, err), "customer");
    Cxm__V1__CustomerRef c = CXM__V1__CUSTOMER_REF__INIT;
    e.customer = &c;
    FAILS_AT(fb_check_eligibility(&arena, &e, err), "customer");
    c.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    c.customer_id = "c-1";
    CHECK_EQ_INT(fb_check_eligibility(&arena, &e, err), 0);
    e.channel = 99;
    FAILS_AT(fb_check_eligibility(&arena, &e, err), "channel");
    e.channel = 0;
    e.touchpoint = "x y";
    FAILS_AT(fb_check_eligibility(&arena, &e, err), "touchpoint");

    Cxm__V1__AnalyzeTextRequest a = CXM__V1__ANALYZE_TEXT_REQUEST__INIT;
    FAILS_AT(fb_check_analyze(&a, err), "text");
    a.text = "좋아요";
    CHECK_EQ_INT(fb_check_analyze(&a, err), 0);
    a.language = "fr";
    FAILS_AT(fb_check_analyze(&a, err), "language");

    Cxm__V1__GetSurveyRequest g = CXM__V1__GET_SURVEY_REQUEST__INIT;
    FAILS_AT(fb_check_get_survey(&g, err), "survey_id");
    int lo, hi;
    CHECK(fb_scale(CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS, &lo, &hi) && lo == 0 && hi == 10);
    CHECK(fb_scale(CXM__V1__SURVEY_KIND__SURVEY_KIND_CES, &lo, &hi) && lo == 1 && hi == 7);
    CHECK(!fb_scale(0, &lo, &hi));
}

int main(void)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    test_survey();
    test_questions();
    test_targeting();
    test_submit_alone();
    test_submit_survey();
    test_others();
    cxm_arena_dispose(&arena);
    return check_report();
}
