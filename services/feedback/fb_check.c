/*
 * fb_check.c - validation of the FeedbackService requests (fb_check.h).
 */
#include "fb_check.h"

#include <math.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/ident.h"

#define TITLE_MAX 256
#define QUESTIONS_MAX 20
#define QUESTION_TEXT_MAX 1024
#define OPTIONS_MIN 2
#define OPTIONS_MAX 20
#define OPTION_MAX 256
#define TARGET_LIST_MAX 100
#define RATINGS_MAX 20
#define DUE_HOURS_MAX (24u * 365)
#define COOLDOWN_HOURS_MAX (24u * 3650)
#define PERIOD_DAYS_MAX 3650
#define TRIGGER_MAX 128

static const char *s0(const char *s)
{
    return s ? s : "";
}

bool fb_scale(int kind, int *lo, int *hi)
{
    switch (kind) {
    case CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS:
        *lo = 0, *hi = 10;
        return true;
    case CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT:
        *lo = 1, *hi = 5;
        return true;
    case CXM__V1__SURVEY_KIND__SURVEY_KIND_CES:
        *lo = 1, *hi = 7;
        return true;
    default:
        return false;
    }
}

/* ---- field rules ---- */

/* A touchpoint: [A-Za-z0-9_.-], 1 to 128 bytes, as journey names them. */
static int check_touchpoint(const char *s, bool required, const char *field, char *err)
{
    size_t n = strlen(s0(s));
    if (n == 0 && !required)
        return 0;
    bool ok = n > 0 && n <= FB_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == '-';
    }
    if (ok)
        return 0;
    return cxm_svc_errf(err, CXM_EINVAL, field,
                        "%s: a touchpoint is [A-Za-z0-9_.-], 1 to 128 bytes",
                        n ? "not a touchpoint name" : "required");
}

/* A value of enum d; UNSPECIFIED (0) allowed or not. */
static int check_enum(const ProtobufCEnumDescriptor *d, int v, bool zero_ok, const char *field,
                      char *err)
{
    if (v == 0 && zero_ok)
        return 0;
    if (v != 0 && protobuf_c_enum_descriptor_get_value(d, v))
        return 0;
    if (v == 0)
        return cxm_svc_errf(err, CXM_EINVAL, field, "required (a %s)", d->name);
    return cxm_svc_errf(err, CXM_EINVAL, field, "%d is not a value of %s", v, d->name);
}

/* "ko", "en" or empty: the languages the sentiment model reads. */
static int check_language(const char *s, const char *field, char *err)
{
    s = s0(s);
    if (!*s || strcmp(s, "ko") == 0 || strcmp(s, "en") == 0)
        return 0;
    return cxm_svc_errf(err, CXM_EINVAL, field,
                        "\"%.16s\" is not supported: use \"ko\", \"en\" or "
                        "leave it empty to detect",
                        cxm_svc_utf8_valid(s, strlen(s)) ? s : "(not UTF-8)");
}

/* A BCP 47 tag as surveys carry them: letters, digits and '-', 2 to 35
 * bytes, starting with a letter. */
static int check_bcp47(const char *s, bool required, const char *field, char *err)
{
    size_t n = strlen(s0(s));
    if (n == 0 && !required)
        return 0;
    bool ok = n >= 2 && n <= 35 && ((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z');
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        ok = ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '-';
    }
    return ok ? 0
              : cxm_svc_errf(err, CXM_EINVAL, field,
                             "not a BCP 47 language tag such as \"ko\" or \"en\"");
}

/* Where something is shown or was answered: a touchpoint, channel and
 * stage, each optional; fields named prefix + name. */
static int check_where(const char *touchpoint, int channel, int stage, const char *prefix,
                       char *err)
{
    cxm_svc_path f;
    int rc = check_touchpoint(touchpoint, false, cxm_svc_member(&f, prefix, "touchpoint"), err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__channel__descriptor, channel, true,
                        cxm_svc_member(&f, prefix, "channel"), err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__journey_stage__descriptor, stage, true,
                        cxm_svc_member(&f, prefix, "stage"), err);
    return rc;
}

/* ---- surveys ---- */

static int check_options(const Cxm__V1__SurveyQuestion *q, const char *field, char *err)
{
    cxm_svc_path f, o;
    cxm_svc_member(&f, field, "options");
    bool choice = q->kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_SINGLE_CHOICE;
    if (!choice && q->n_options)
        return cxm_svc_errf(err, CXM_EINVAL, f.s, "only SINGLE_CHOICE questions have options");
    if (choice && (q->n_options < OPTIONS_MIN || q->n_options > OPTIONS_MAX))
        return cxm_svc_errf(err, CXM_EINVAL, f.s, "a SINGLE_CHOICE question has 2 to 20 options");
    for (size_t i = 0; i < q->n_options; i++) {
        int rc = cxm_svc_check_text(q->options[i], 1, OPTION_MAX, cxm_svc_index(&o, f.s, i), err);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (strcmp(q->options[i], q->options[j]) == 0)
                rc = cxm_svc_errf(err, CXM_EINVAL, o.s, "the same option as options[%zu]", j);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_question(const Cxm__V1__SurveyQuestion *q, const char *field, char *err)
{
    cxm_svc_path f, e;
    int rc = cxm_svc_check_slug(q->question_id, cxm_svc_member(&f, field, "question_id"), err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__question_kind__descriptor, q->kind, false,
                        cxm_svc_member(&f, field, "kind"), err);
    if (rc == 0)
        rc = cxm_svc_check_text(q->text, 0, QUESTION_TEXT_MAX, cxm_svc_member(&f, field, "text"),
                                err);
    for (size_t i = 0; rc == 0 && i < q->n_translations; i++) {
        cxm_svc_index(&e, cxm_svc_member(&f, field, "translations"), i);
        rc = check_bcp47(q->translations[i]->key, true, cxm_svc_member(&f, e.s, "key"), err);
        if (rc == 0)
            rc = cxm_svc_check_text(q->translations[i]->value, 0, QUESTION_TEXT_MAX,
                                    cxm_svc_member(&f, e.s, "value"), err);
    }
    if (rc == 0)
        rc = check_options(q, field, err);
    cxm_svc_member(&f, field, "touchpoint");
    if (rc == 0 && *s0(q->touchpoint) &&
        q->kind != CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP)
        rc = cxm_svc_errf(err, CXM_EINVAL, f.s, "only EXPECTATION_GAP questions name a touchpoint");
    if (rc == 0)
        rc = check_touchpoint(q->touchpoint, false, f.s, err);
    return rc;
}

static int check_questions(const Cxm__V1__Survey *s, char *err)
{
    if (s->n_questions < 1 || s->n_questions > QUESTIONS_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "survey.questions", "a survey has 1 to 20 questions");
    size_t scores = 0;
    for (size_t i = 0; i < s->n_questions; i++) {
        cxm_svc_path p;
        cxm_svc_index(&p, "survey.questions", i);
        int rc = check_question(s->questions[i], p.s, err);
        /* A gap question rates its own touchpoint, else the survey's: with
         * neither, no rating could ever answer it. */
        if (rc == 0 &&
            s->questions[i]->kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP &&
            !*s0(s->questions[i]->touchpoint) && !*s0(s->touchpoint)) {
            cxm_svc_path f;
            rc = cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, p.s, "touchpoint"),
                              "required: the survey names no touchpoint for this question to rate");
        }
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (strcmp(s->questions[i]->question_id, s->questions[j]->question_id) == 0)
                rc = cxm_svc_errf(err, CXM_EINVAL, p.s,
                                  "question_id \"%s\" is already questions[%zu]'s",
                                  s->questions[i]->question_id, j);
        if (rc != 0)
            return rc;
        scores += s->questions[i]->kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE;
    }
    if (scores != 1)
        return cxm_svc_errf(err, CXM_EINVAL, "survey.questions",
                            "a survey has exactly one SCORE question, this one has %zu", scores);
    return 0;
}

static int check_targeting(const Cxm__V1__SurveyTargeting *t, char *err)
{
    if (!t)
        return 0;
    cxm_svc_path p;
    if (t->n_touchpoints > TARGET_LIST_MAX || t->n_channels > TARGET_LIST_MAX ||
        t->n_stages > TARGET_LIST_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "survey.targeting",
                            "at most 100 touchpoints, channels and stages each");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < t->n_touchpoints; i++)
        rc = check_touchpoint(t->touchpoints[i], true,
                              cxm_svc_index(&p, "survey.targeting.touchpoints", i), err);
    for (size_t i = 0; rc == 0 && i < t->n_channels; i++)
        rc = check_enum(&cxm__v1__channel__descriptor, t->channels[i], false,
                        cxm_svc_index(&p, "survey.targeting.channels", i), err);
    for (size_t i = 0; rc == 0 && i < t->n_stages; i++)
        rc = check_enum(&cxm__v1__journey_stage__descriptor, t->stages[i], false,
                        cxm_svc_index(&p, "survey.targeting.stages", i), err);
    return rc;
}

static int check_recontact(const Cxm__V1__RecontactPolicy *r, char *err)
{
    if (!r)
        return 0;
    if (r->cooldown_hours > COOLDOWN_HOURS_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "survey.recontact.cooldown_hours",
                            "at most %u (ten years)", COOLDOWN_HOURS_MAX);
    if (r->period_days > PERIOD_DAYS_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "survey.recontact.period_days",
                            "must be 1 to 3650, or 0 for 30");
    if (r->period_days && !r->max_responses_per_period)
        return cxm_svc_errf(err, CXM_EINVAL, "survey.recontact.period_days",
                            "only with max_responses_per_period set");
    if (!isfinite(r->sampling_rate) || r->sampling_rate < 0 || r->sampling_rate > 1)
        return cxm_svc_errf(err, CXM_EINVAL, "survey.recontact.sampling_rate",
                            "must be over 0 and at most 1, or 0 for everyone");
    return 0;
}

/* The fields of the survey itself (questions, targeting and recontact
 * aside). */
static int check_survey_fields(const Cxm__V1__Survey *s, char *err)
{
    int rc = cxm_svc_check_slug(s->survey_id, "survey.survey_id", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__survey_kind__descriptor, s->kind, false, "survey.kind", err);
    if (rc == 0)
        rc = cxm_svc_check_text(s->title, 0, TITLE_MAX, "survey.title", err);
    if (rc == 0)
        rc = check_where(s->touchpoint, s->channel, s->stage, "survey", err);
    if (rc == 0)
        rc = check_bcp47(s->language, false, "survey.language", err);
    int lo, hi;
    if (rc == 0 && fb_scale(s->kind, &lo, &hi) &&
        (!isfinite(s->follow_up_threshold) || s->follow_up_threshold > hi))
        rc = cxm_svc_errf(err, CXM_EINVAL, "survey.follow_up_threshold",
                          "must be at most %d (the top of the scale), 0 for the kind's default or "
                          "negative to disable",
                          hi);
    if (rc == 0 && s->follow_up_due_hours > DUE_HOURS_MAX)
        rc = cxm_svc_errf(err, CXM_EINVAL, "survey.follow_up_due_hours",
                          "at most %u (a year), or 0 for 48", DUE_HOURS_MAX);
    return rc;
}

int fb_check_survey(const Cxm__V1__Survey *s, char err[CXM_SVC_ERR_MAX])
{
    if (!s)
        return cxm_svc_errf(err, CXM_EINVAL, "survey", "required");
    int rc = check_survey_fields(s, err);
    if (rc == 0)
        rc = check_questions(s, err);
    if (rc == 0)
        rc = check_targeting(s->targeting, err);
    if (rc == 0)
        rc = check_recontact(s->recontact, err);
    return rc;
}

/* ---- responses ---- */

static int check_ratings(const Cxm__V1__SubmitResponseRequest *req, char *err)
{
    if (req->n_ratings > RATINGS_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "ratings", "at most 20, got %zu", req->n_ratings);
    for (size_t i = 0; i < req->n_ratings; i++) {
        const Cxm__V1__ExpectationRating *r = req->ratings[i];
        cxm_svc_path p, f;
        cxm_svc_index(&p, "ratings", i);
        int rc = check_touchpoint(r->touchpoint, false, cxm_svc_member(&f, p.s, "touchpoint"), err);
        if (rc == 0 && !(r->expectation >= 1 && r->expectation <= 7))
            rc = cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, p.s, "expectation"),
                              "must be 1 to 7");
        if (rc == 0 && !(r->experience >= 1 && r->experience <= 7))
            rc = cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, p.s, "experience"),
                              "must be 1 to 7");
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_timestamp(int64_t ms, int64_t now_ms, const char *field, char *err)
{
    if (ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, field, "must not be negative (0 = now)");
    if (ms > now_ms + FB_FUTURE_MS)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "more than 5 minutes ahead of the server's clock");
    return 0;
}

int fb_check_submit(cxm_arena *a, Cxm__V1__SubmitResponseRequest *req, int64_t now_ms,
                    char err[CXM_SVC_ERR_MAX])
{
    int rc = cxm_svc_check_text(req->response_id, 1, FB_RESPONSE_ID_MAX, "response_id", err);
    if (rc == 0)
        rc = cxm_svc_check_slug(req->survey_id, "survey_id", err);
    if (rc == 0 && !req->customer)
        rc = cxm_svc_errf(err, CXM_EINVAL, "customer", "required: a customer_id or an identity");
    if (rc == 0)
        rc = cxm_ident_check_ref(NULL, a, req->customer, "customer", err);
    if (rc == 0 && !isfinite(req->score))
        rc = cxm_svc_errf(err, CXM_EINVAL, "score", "must be a number");
    if (rc == 0)
        rc = cxm_svc_check_text(req->text, 0, FB_TEXT_MAX, "text", err);
    if (rc == 0)
        rc = check_language(req->language, "language", err);
    if (rc == 0)
        rc = check_ratings(req, err);
    if (rc == 0)
        rc = check_where(req->touchpoint, req->channel, req->stage, NULL, err);
    if (rc == 0)
        rc = check_timestamp(req->submitted_at_unix_ms, now_ms, "submitted_at_unix_ms", err);
    if (rc == 0)
        rc = cxm_svc_check_text(req->trigger_event_id, 0, TRIGGER_MAX, "trigger_event_id", err);
    return rc;
}

static const Cxm__V1__SurveyQuestion *question(const Cxm__V1__Survey *s, const char *id)
{
    for (size_t i = 0; i < s->n_questions; i++)
        if (strcmp(s->questions[i]->question_id, id) == 0)
            return s->questions[i];
    return NULL;
}

static const char *answer(const Cxm__V1__SubmitResponseRequest *req, const char *id)
{
    for (size_t i = 0; i < req->n_answers; i++)
        if (strcmp(s0(req->answers[i]->key), id) == 0)
            return s0(req->answers[i]->value);
    return NULL;
}

static int check_answer(const Cxm__V1__SubmitResponseRequest__AnswersEntry *e,
                        const Cxm__V1__Survey *s, size_t i, char *err)
{
    cxm_svc_path p;
    cxm_svc_index(&p, "answers", i);
    const Cxm__V1__SurveyQuestion *q = question(s, s0(e->key));
    if (!q)
        return cxm_svc_errf(
            err, CXM_EINVAL, p.s, "survey \"%s\" version %u has no question \"%.64s\"",
            s->survey_id, s->version, cxm_svc_slug_valid(e->key) ? e->key : "(not a question id)");
    if (q->kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT)
        return cxm_svc_check_text(e->value, 0, FB_TEXT_MAX, p.s, err);
    if (q->kind != CXM__V1__QUESTION_KIND__QUESTION_KIND_SINGLE_CHOICE)
        return cxm_svc_errf(err, CXM_EINVAL, p.s,
                            "question \"%s\" is answered in %s, not in answers", q->question_id,
                            q->kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE ? "score"
                                                                                   : "ratings");
    for (size_t j = 0; j < q->n_options; j++)
        if (strcmp(q->options[j], s0(e->value)) == 0)
            return 0;
    return cxm_svc_errf(err, CXM_EINVAL, p.s, "not one of question \"%s\"'s %zu options",
                        q->question_id, q->n_options);
}

const char *fb_rating_touchpoint(const Cxm__V1__ExpectationRating *r,
                                 const Cxm__V1__SubmitResponseRequest *req,
                                 const Cxm__V1__Survey *s)
{
    if (*s0(r->touchpoint))
        return r->touchpoint;
    return *s0(req->touchpoint) ? req->touchpoint : s0(s->touchpoint);
}

/* The touchpoint an EXPECTATION_GAP question rates. */
static const char *gap_touchpoint(const Cxm__V1__SurveyQuestion *q, const Cxm__V1__Survey *s)
{
    return *s0(q->touchpoint) ? q->touchpoint : s0(s->touchpoint);
}

static bool rated(const Cxm__V1__SubmitResponseRequest *req, const Cxm__V1__Survey *s,
                  const char *tp)
{
    for (size_t i = 0; i < req->n_ratings; i++)
        if (strcmp(fb_rating_touchpoint(req->ratings[i], req, s), tp) == 0)
            return true;
    return false;
}

static int check_rating_touchpoints(const Cxm__V1__SubmitResponseRequest *req,
                                    const Cxm__V1__Survey *s, char *err)
{
    for (size_t i = 0; i < req->n_ratings; i++) {
        const char *tp = fb_rating_touchpoint(req->ratings[i], req, s);
        cxm_svc_path p, f;
        cxm_svc_member(&f, cxm_svc_index(&p, "ratings", i), "touchpoint");
        if (!*tp)
            return cxm_svc_errf(err, CXM_EINVAL, f.s,
                                "required: neither the response nor the survey names one");
        bool asked = false;
        for (size_t j = 0; j < s->n_questions && !asked; j++)
            asked =
                s->questions[j]->kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP &&
                strcmp(gap_touchpoint(s->questions[j], s), tp) == 0;
        if (!asked)
            return cxm_svc_errf(err, CXM_EINVAL, f.s,
                                "\"%s\" is not rated by any EXPECTATION_GAP question of survey "
                                "\"%s\" version %u",
                                tp, s->survey_id, s->version);
        for (size_t j = 0; j < i; j++)
            if (strcmp(fb_rating_touchpoint(req->ratings[j], req, s), tp) == 0)
                return cxm_svc_errf(err, CXM_EINVAL, f.s, "\"%s\" is already rated in ratings[%zu]",
                                    tp, j);
    }
    return 0;
}

/* Whether required question q is answered; the first FREE_TEXT question
 * is also answered by text. */
static bool answered(const Cxm__V1__SubmitResponseRequest *req, const Cxm__V1__Survey *s,
                     const Cxm__V1__SurveyQuestion *q, bool first_text)
{
    const char *v = answer(req, q->question_id);
    switch (q->kind) {
    case CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE:
        return true;
    case CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT:
        return (v && *v) || (first_text && *s0(req->text));
    case CXM__V1__QUESTION_KIND__QUESTION_KIND_SINGLE_CHOICE:
        return v != NULL;
    default:
        return rated(req, s, gap_touchpoint(q, s));
    }
}

static int check_required(const Cxm__V1__SubmitResponseRequest *req, const Cxm__V1__Survey *s,
                          char *err)
{
    bool first_text = true;
    for (size_t i = 0; i < s->n_questions; i++) {
        const Cxm__V1__SurveyQuestion *q = s->questions[i];
        bool is_text = q->kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT;
        if (q->required && !answered(req, s, q, is_text && first_text)) {
            const char *where = is_text ? (first_text ? "text or answers" : "answers")
                                : q->kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_SINGLE_CHOICE
                                    ? "answers"
                                    : "ratings";
            return cxm_svc_errf(err, CXM_EINVAL, where, "required question \"%s\" is not answered",
                                q->question_id);
        }
        if (is_text)
            first_text = false;
    }
    return 0;
}

int fb_check_submit_survey(const Cxm__V1__SubmitResponseRequest *req, const Cxm__V1__Survey *s,
                           char err[CXM_SVC_ERR_MAX])
{
    int lo = 0, hi = 0;
    fb_scale(s->kind, &lo, &hi);
    if (req->score != floor(req->score) || req->score < lo || req->score > hi)
        return cxm_svc_errf(err, CXM_EINVAL, "score",
                            "must be an integer from %d to %d for a %s survey, got %g", lo, hi,
                            s->kind == CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS    ? "NPS"
                            : s->kind == CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT ? "CSAT"
                                                                                : "CES",
                            req->score);
    for (size_t i = 0; i < req->n_answers; i++) {
        int rc = check_answer(req->answers[i], s, i, err);
        if (rc != 0)
            return rc;
    }
    int rc = check_rating_touchpoints(req, s, err);
    return rc ? rc : check_required(req, s, err);
}

/* ---- the other requests ---- */

int fb_check_eligibility(cxm_arena *a, Cxm__V1__CheckEligibilityRequest *req,
                         char err[CXM_SVC_ERR_MAX])
{
    int rc = cxm_svc_check_slug(req->survey_id, "survey_id", err);
    if (rc == 0 && !req->customer)
        rc = cxm_svc_errf(err, CXM_EINVAL, "customer", "required: a customer_id or an identity");
    if (rc == 0)
        rc = cxm_ident_check_ref(NULL, a, req->customer, "customer", err);
    if (rc == 0)
        rc = check_where(req->touchpoint, req->channel, req->stage, NULL, err);
    return rc;
}

int fb_check_analyze(const Cxm__V1__AnalyzeTextRequest *req, char err[CXM_SVC_ERR_MAX])
{
    int rc = cxm_svc_check_text(req->text, 1, FB_TEXT_MAX, "text", err);
    return rc ? rc : check_language(req->language, "language", err);
}

int fb_check_get_survey(const Cxm__V1__GetSurveyRequest *req, char err[CXM_SVC_ERR_MAX])
{
    return cxm_svc_check_slug(req->survey_id, "survey_id", err);
}
