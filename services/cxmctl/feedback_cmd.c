/*
 * feedback_cmd.c - `cxmctl feedback ...`: the cxm.v1.FeedbackService RPCs a
 * person runs by hand: surveys (UpsertSurvey from flags or from cxm-gen's
 * surveys.pb, GetSurvey, ListSurveys), SubmitResponse (one from flags, or a
 * file of cxm-gen's SubmitResponseRequest records with many calls in
 * flight), GetScores as a table with a trend column, GapAnalysis as the
 * prioritised gap table, ListFollowUps and UpdateFollowUp, and AnalyzeText.
 *
 * As in journey_cmd.c, the server owns every rule of the contract and its
 * INVALID_ARGUMENT names the field; this file checks only the command line's
 * own syntax (ratings, answers, numbers).
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/v1/feedback.pb-c.h"
#include "cxmctl.h"
#include "delim.h"

#define FEEDBACK_SERVICE (&cxm__v1__feedback_service__descriptor)
#define SUBMIT_PATH "/cxm.v1.FeedbackService/SubmitResponse"

/* SubmitResponse calls a file import keeps in flight: what one durable
 * commit batches on the server (the bench measures at the same depth). */
#define FEEDBACK_WINDOW 32
/* Failed statuses an import summary names; the count says the rest. */
#define FEEDBACK_SHOWN_FAILURES 5

static const char *const nothing = "";

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *flag_or(const cxmctl_flag *f, const char *dflt)
{
    return f->n ? f->v[0] : dflt;
}

static int number_flag(const ctl *c, const cxmctl_flag *f, double *out)
{
    if (!f->n || cxmctl_parse_number(f->v[0], out) == 0)
        return 0;
    return cxmctl_usage_error(c, "--%s \"%s\": give a number", f->name, f->v[0]);
}

static void print_enum(FILE *out, const ProtobufCEnumDescriptor *e, int v)
{
    if (v)
        cxmctl_enum_short(out, e, v);
    else
        fputc('-', out);
}

/* --- feedback survey upsert --- */

typedef struct survey_flags {
    cxmctl_flag file, id, kind, title, touchpoint, channel, stage, language, gap, comment,
        threshold, due, inactive, cooldown, max_per_period, period, sampling;
} survey_flags;

static Cxm__V1__SurveyQuestion *new_question(ctl *c, const char *id, Cxm__V1__QuestionKind kind,
                                             const char *text, const char *touchpoint)
{
    Cxm__V1__SurveyQuestion *q = cxmctl_new_message(c, &cxm__v1__survey_question__descriptor);
    q->question_id = (char *)id;
    q->kind = kind;
    q->text = (char *)text;
    q->touchpoint = (char *)touchpoint;
    q->required = kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE;
    return q;
}

/* The questions a survey from flags asks: its score, an expectation-gap
 * rating per --gap touchpoint, and a free-text comment with --comment. */
static void survey_questions(ctl *c, const survey_flags *f, Cxm__V1__Survey *s)
{
    size_t n = 1 + f->gap.n + (f->comment.n > 0);
    s->questions = cxmctl_new_array(c, n, sizeof *s->questions);
    s->questions[s->n_questions++] =
        new_question(c, "score", CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE,
                     flag_or(&f->title, "score"), nothing);
    for (size_t i = 0; i < f->gap.n; i++) {
        size_t len = strlen(f->gap.v[i]) + 5;
        char *id = cxmctl_new_array(c, len, 1);
        snprintf(id, len, "gap_%s", f->gap.v[i]);
        for (char *p = id; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        s->questions[s->n_questions++] =
            new_question(c, id, CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP,
                         "What did you expect, and what did you get?", f->gap.v[i]);
    }
    if (f->comment.n)
        s->questions[s->n_questions++] =
            new_question(c, "comment", CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT,
                         f->comment.v[0], nothing);
}

static int survey_recontact(ctl *c, const survey_flags *f, Cxm__V1__Survey *s)
{
    uint64_t cool = 0, max = 0, period = 0;
    double rate = 0;
    int rc;
    if ((rc = cxmctl_uint_flag(c, &f->cooldown, UINT32_MAX, &cool)) ||
        (rc = cxmctl_uint_flag(c, &f->max_per_period, UINT32_MAX, &max)) ||
        (rc = cxmctl_uint_flag(c, &f->period, UINT32_MAX, &period)) ||
        (rc = number_flag(c, &f->sampling, &rate)))
        return rc;
    if (!cool && !max && !period && !rate)
        return 0;
    s->recontact = cxmctl_new_message(c, &cxm__v1__recontact_policy__descriptor);
    s->recontact->cooldown_hours = (uint32_t)cool;
    s->recontact->max_responses_per_period = (uint32_t)max;
    s->recontact->period_days = (uint32_t)period;
    s->recontact->sampling_rate = rate;
    return 0;
}

static int survey_from_flags(ctl *c, const survey_flags *f, Cxm__V1__Survey *s)
{
    int kind = 0, stage = 0, rc;
    uint64_t due = 0;
    if ((rc = cxmctl_require(c, &f->id)) || (rc = cxmctl_require(c, &f->kind)) ||
        (rc = cxmctl_enum_flag(c, &f->kind, &cxm__v1__survey_kind__descriptor, &kind)) ||
        (rc = cxmctl_enum_flag(c, &f->stage, &cxm__v1__journey_stage__descriptor, &stage)) ||
        (rc = number_flag(c, &f->threshold, &s->follow_up_threshold)) ||
        (rc = cxmctl_uint_flag(c, &f->due, UINT32_MAX, &due)) ||
        (f->channel.n &&
         (rc = cxmctl_channel_word(c, "--channel", f->channel.v[0], &s->channel))) ||
        (rc = survey_recontact(c, f, s)))
        return rc;
    s->survey_id = (char *)f->id.v[0];
    s->kind = (Cxm__V1__SurveyKind)kind;
    s->stage = (Cxm__V1__JourneyStage)stage;
    s->title = (char *)flag_or(&f->title, nothing);
    s->touchpoint = (char *)flag_or(&f->touchpoint, nothing);
    s->language = (char *)flag_or(&f->language, nothing);
    s->follow_up_due_hours = (uint32_t)due;
    s->active = f->inactive.n == 0;
    survey_questions(c, f, s);
    return 0;
}

static void print_upserted(const ctl *c, const Cxm__V1__UpsertSurveyResponse *r)
{
    if (c->json) {
        cxmctl_print_json(stdout, &r->base);
        return;
    }
    const Cxm__V1__Survey *s = r->survey;
    printf("%s %s version %u\n", r->created ? "created" : "updated", s ? s->survey_id : "?",
           s ? s->version : 0);
}

/* Every UpsertSurveyRequest record of a length-delimited file (cxm-gen's
 * surveys.pb), upserted in order. */
static int upsert_file(ctl *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cxmctl_usage_error(c, "cannot open --file %s", path);
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    int got, rc = 0;
    size_t n = 0;
    while (rc == 0 && (got = cxm_delim_read(f, &buf, &cap, &len)) == 1) {
        Cxm__V1__UpsertSurveyRequest *req =
            cxm__v1__upsert_survey_request__unpack(cxm_arena_protobuf(&c->arena), len, buf);
        ProtobufCMessage *resp;
        if (!req)
            rc = cxmctl_usage_error(c, "--file %s: record %zu is not an UpsertSurveyRequest", path,
                                    n + 1);
        else if ((rc = cxmctl_call(c, FEEDBACK_SERVICE, "UpsertSurvey", &req->base, &resp)) == 0)
            print_upserted(c, (const void *)resp);
        n++;
    }
    fclose(f);
    free(buf);
    if (rc == 0 && got < 0)
        rc = cxmctl_usage_error(c, "--file %s: damaged after %zu records", path, n);
    return rc;
}

/* A survey written by hand as JSON (a Survey message in the proto3 JSON
 * mapping, as `cxmctl --json feedback survey get` prints one). */
static int upsert_json(ctl *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cxmctl_usage_error(c, "cannot open --file %s", path);
    size_t cap = 1 << 16, len = 0, got;
    char *text = cxmctl_new_array(c, cap, 1);
    while ((got = fread(text + len, 1, cap - len, f)) > 0 && (len += got) == cap) {
        char *grown = cxmctl_new_array(c, cap * 2, 1);
        memcpy(grown, text, len);
        text = grown, cap *= 2;
    }
    fclose(f);
    /* {"survey": {...}} as `--json survey get` prints, or the Survey alone. */
    Cxm__V1__UpsertSurveyRequest req = CXM__V1__UPSERT_SURVEY_REQUEST__INIT, *wrapped;
    char err[512];
    if (cxmctl_json_message(c, text, len, &cxm__v1__upsert_survey_request__descriptor,
                            (ProtobufCMessage **)&wrapped, err, sizeof err) == 0 &&
        wrapped->survey)
        req.survey = wrapped->survey;
    else if (cxmctl_json_message(c, text, len, &cxm__v1__survey__descriptor,
                                 (ProtobufCMessage **)&req.survey, err, sizeof err) != 0)
        return cxmctl_usage_error(c, "--file %s: %s", path, err);
    ProtobufCMessage *resp;
    int rc = cxmctl_call(c, FEEDBACK_SERVICE, "UpsertSurvey", &req.base, &resp);
    if (rc == 0)
        print_upserted(c, (const void *)resp);
    return rc;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static int cmd_survey_upsert(ctl *c, int argc, char **argv)
{
    survey_flags f = {
        {"file", "FILE.json|FILE.pb"},
        {"id", "ID"},
        {"kind", "nps|csat|ces"},
        {"title", "TEXT"},
        {"touchpoint", "T"},
        {"channel", "CHANNEL"},
        {"stage", "STAGE"},
        {"language", "LANG"},
        {"gap", "TOUCHPOINT", true},
        {"comment", "QUESTION"},
        {"threshold", "SCORE"},
        {"due-hours", "N"},
        {"inactive", NULL},
        {"cooldown-hours", "N"},
        {"max-per-period", "N"},
        {"period-days", "N"},
        {"sampling", "RATE"},
    };
    cxmctl_flag *const flags[] = {&f.file,       &f.id,       &f.kind,           &f.title,
                                  &f.touchpoint, &f.channel,  &f.stage,          &f.language,
                                  &f.gap,        &f.comment,  &f.threshold,      &f.due,
                                  &f.inactive,   &f.cooldown, &f.max_per_period, &f.period,
                                  &f.sampling};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    if (f.file.n)
        return f.id.n
                   ? cxmctl_usage_error(c, "give --file or --id with the survey's flags, not both")
               : ends_with(f.file.v[0], ".json") ? upsert_json(c, f.file.v[0])
                                                 : upsert_file(c, f.file.v[0]);
    Cxm__V1__UpsertSurveyRequest req = CXM__V1__UPSERT_SURVEY_REQUEST__INIT;
    req.survey = cxmctl_new_message(c, &cxm__v1__survey__descriptor);
    ProtobufCMessage *resp;
    if ((rc = survey_from_flags(c, &f, req.survey)) ||
        (rc = cxmctl_call(c, FEEDBACK_SERVICE, "UpsertSurvey", &req.base, &resp)))
        return rc;
    print_upserted(c, (const void *)resp);
    return 0;
}

/* --- feedback survey get / list --- */

static int cmd_survey_get(ctl *c, int argc, char **argv)
{
    cxmctl_flag version = {"version", "N"};
    cxmctl_flag *const flags[] = {&version};
    char **pos;
    size_t npos;
    uint64_t v = 0;
    int rc = cxmctl_parse(c, argc, argv, flags, 1, 1, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_uint_flag(c, &version, UINT32_MAX, &v)))
        return rc;
    Cxm__V1__GetSurveyRequest req = CXM__V1__GET_SURVEY_REQUEST__INIT;
    req.survey_id = pos[0];
    req.version = (uint32_t)v;
    return cxmctl_call_print(c, FEEDBACK_SERVICE, "GetSurvey", &req.base);
}

static void print_survey_row(const Cxm__V1__Survey *s)
{
    printf("%-24s ", s->survey_id);
    print_enum(stdout, &cxm__v1__survey_kind__descriptor, s->kind);
    printf("\t%7u %-6s %-22s %s\n", s->version, s->active ? "yes" : "no",
           *s->touchpoint ? s->touchpoint : "-", s->title);
}

static int cmd_survey_list(ctl *c, int argc, char **argv)
{
    cxmctl_flag active = {"active", NULL}, token = {"page-token", "T"};
    cxmctl_flag *const flags[] = {&active, &token};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 2, 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__ListSurveysRequest req = CXM__V1__LIST_SURVEYS_REQUEST__INIT;
    req.active_only = active.n > 0;
    req.page_size = 1000;
    req.page_token = (char *)flag_or(&token, nothing);
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, FEEDBACK_SERVICE, "ListSurveys", &req.base, &resp)) != 0 || c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__ListSurveysResponse *r = (const void *)resp;
    printf("%-24s %s\t%7s %-6s %-22s %s\n", "SURVEY", "KIND", "VERSION", "ACTIVE", "TOUCHPOINT",
           "TITLE");
    for (size_t i = 0; i < r->n_surveys; i++)
        print_survey_row(r->surveys[i]);
    if (*r->next_page_token)
        printf("next page: --page-token %s\n", r->next_page_token);
    return 0;
}

/* --- feedback submit: one response from flags --- */

typedef struct submit_flags {
    cxmctl_flag file, window, survey, customer_id, identity, score, text, language, rating,
        touchpoint, channel, stage, at, response_id, answer, trigger;
} submit_flags;

/* TOUCHPOINT=EXPECTATION:EXPERIENCE ("checkout_page=6:3"). */
static int parse_rating(ctl *c, const char *s, Cxm__V1__ExpectationRating *r)
{
    const char *eq = strchr(s, '='), *colon = eq ? strchr(eq, ':') : NULL;
    char num[64];
    if (!eq || !colon || eq == s || (size_t)(colon - eq - 1) >= sizeof num)
        return cxmctl_usage_error(c, "--rating \"%s\": give TOUCHPOINT=EXPECTATION:EXPERIENCE", s);
    r->touchpoint = cxm_arena_strndup(&c->arena, s, (size_t)(eq - s));
    snprintf(num, sizeof num, "%.*s", (int)(colon - eq - 1), eq + 1);
    if (cxmctl_parse_number(num, &r->expectation) != 0 ||
        cxmctl_parse_number(colon + 1, &r->experience) != 0)
        return cxmctl_usage_error(c, "--rating \"%s\": expectation and experience are numbers", s);
    return 0;
}

static int submit_ratings(ctl *c, const cxmctl_flag *f, Cxm__V1__SubmitResponseRequest *req)
{
    req->ratings = cxmctl_new_array(c, f->n, sizeof *req->ratings);
    int rc = 0;
    for (size_t i = 0; i < f->n && rc == 0; i++) {
        req->ratings[i] = cxmctl_new_message(c, &cxm__v1__expectation_rating__descriptor);
        rc = parse_rating(c, f->v[i], req->ratings[i]);
        req->n_ratings = i + 1;
    }
    return rc;
}

/* QUESTION_ID=ANSWER. */
static int submit_answers(ctl *c, const cxmctl_flag *f, Cxm__V1__SubmitResponseRequest *req)
{
    req->answers = cxmctl_new_array(c, f->n, sizeof *req->answers);
    for (size_t i = 0; i < f->n; i++) {
        const char *eq = strchr(f->v[i], '=');
        if (!eq || eq == f->v[i])
            return cxmctl_usage_error(c, "--answer \"%s\": give QUESTION_ID=ANSWER", f->v[i]);
        Cxm__V1__SubmitResponseRequest__AnswersEntry *e =
            cxmctl_new_message(c, &cxm__v1__submit_response_request__answers_entry__descriptor);
        e->key = cxm_arena_strndup(&c->arena, f->v[i], (size_t)(eq - f->v[i]));
        e->value = (char *)eq + 1;
        req->answers[req->n_answers++] = e;
    }
    return 0;
}

static int submit_customer(ctl *c, const submit_flags *f, Cxm__V1__SubmitResponseRequest *req)
{
    if ((f->customer_id.n > 0) == (f->identity.n > 0))
        return cxmctl_usage_error(c, "name the customer by --customer-id or by --identity, not %s",
                                  f->customer_id.n ? "both" : "neither");
    Cxm__V1__CustomerRef *ref = cxmctl_new_message(c, &cxm__v1__customer_ref__descriptor);
    int rc = 0;
    if (f->customer_id.n) {
        ref->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
        ref->customer_id = (char *)f->customer_id.v[0];
    } else {
        ref->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
        ref->identity = cxmctl_new_identity(c, f->identity.v[0], &rc);
    }
    req->customer = ref;
    return rc;
}

/* A fresh response id: the time and the process, enough to tell two
 * manual submissions apart; --response-id is what makes a resend safe. */
static const char *new_response_id(ctl *c)
{
    char buf[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, sizeof buf, "ctl-%" PRId64 "-%09ld", (int64_t)ts.tv_sec, ts.tv_nsec);
    return cxm_arena_strndup(&c->arena, buf, strlen(buf));
}

static int submit_one(ctl *c, submit_flags *f)
{
    Cxm__V1__SubmitResponseRequest req = CXM__V1__SUBMIT_RESPONSE_REQUEST__INIT;
    int stage = 0, rc;
    if ((rc = cxmctl_require(c, &f->survey)) || (rc = cxmctl_require(c, &f->score)) ||
        (rc = submit_customer(c, f, &req)) || (rc = number_flag(c, &f->score, &req.score)) ||
        (rc = submit_ratings(c, &f->rating, &req)) || (rc = submit_answers(c, &f->answer, &req)) ||
        (rc = cxmctl_enum_flag(c, &f->stage, &cxm__v1__journey_stage__descriptor, &stage)) ||
        (rc = cxmctl_time_flag(c, &f->at, true, &req.submitted_at_unix_ms)) ||
        (f->channel.n && (rc = cxmctl_channel_word(c, "--channel", f->channel.v[0], &req.channel))))
        return rc;
    req.response_id = (char *)(f->response_id.n ? f->response_id.v[0] : new_response_id(c));
    req.survey_id = (char *)f->survey.v[0];
    req.text = (char *)flag_or(&f->text, nothing);
    req.language = (char *)flag_or(&f->language, nothing);
    req.touchpoint = (char *)flag_or(&f->touchpoint, nothing);
    req.trigger_event_id = (char *)flag_or(&f->trigger, nothing);
    req.stage = (Cxm__V1__JourneyStage)stage;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, FEEDBACK_SERVICE, "SubmitResponse", &req.base, &resp)) != 0)
        return rc;
    const Cxm__V1__SubmitResponseResponse *r = (const void *)resp;
    if (c->json)
        return cxmctl_print_json(stdout, resp), 0;
    printf("%s %s customer %s", r->duplicate ? "duplicate" : "recorded", r->response_id,
           r->customer_id);
    if (r->nps_category)
        fputs(" ", stdout), print_enum(stdout, &cxm__v1__nps_category__descriptor, r->nps_category);
    if (r->sentiment)
        printf(" sentiment "),
            print_enum(stdout, &cxm__v1__sentiment_label__descriptor, r->sentiment->label);
    if (*r->follow_up_id)
        printf(" follow-up %s", r->follow_up_id);
    putchar('\n');
    return 0;
}

/* --- feedback submit --file: many SubmitResponse calls in flight --- */

typedef struct submit_import {
    ctl *c;
    FILE *f;
    const char *path;
    uint8_t *buf;
    size_t cap;
    void *method;
    cxm_client_loop *loop;
    uint64_t sent, done, ok, failed, in_flight;
    uint64_t by_status[GRPC_STATUS_UNAUTHENTICATED + 1];
    bool damaged;
} submit_import;

static void submit_done(void *user, grpc_status_code status, grpc_byte_buffer *response)
{
    (void)response;
    submit_import *im = user;
    im->done++, im->in_flight--;
    if (status == GRPC_STATUS_OK)
        im->ok++;
    else
        im->failed++;
    if ((unsigned)status <= GRPC_STATUS_UNAUTHENTICATED)
        im->by_status[status]++;
}

/* Start the next record's call; 0 at the end of the file. */
static int submit_next(submit_import *im)
{
    size_t len;
    int got = cxm_delim_read(im->f, &im->buf, &im->cap, &len);
    if (got != 1) {
        im->damaged = got < 0;
        return 0;
    }
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)im->buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    int rc = cxm_client_loop_unary(im->loop, im->c->ch, im->method, bb, im->c->timeout_ms,
                                   submit_done, im);
    grpc_byte_buffer_destroy(bb);
    if (rc != 0)
        return rc;
    im->sent++, im->in_flight++;
    return 1;
}

static void submit_summary(const ctl *c, const submit_import *im, double secs)
{
    double rate = secs > 0 ? (double)im->ok / secs : 0;
    if (c->json) {
        printf("{\"sent\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"failed\":%" PRIu64
               ",\"seconds\":%.3f,\"responses_per_s\":%.1f}\n",
               im->sent, im->ok, im->failed, secs, rate);
        return;
    }
    printf("%" PRIu64 " sent, %" PRIu64 " OK, %" PRIu64 " failed in %.2f s, %.0f responses/s\n",
           im->sent, im->ok, im->failed, secs, rate);
    for (int st = 1; st <= GRPC_STATUS_UNAUTHENTICATED; st++)
        if (im->by_status[st])
            printf("  %s: %" PRIu64 "\n", cxm_status_name((grpc_status_code)st), im->by_status[st]);
}

static int submit_file(ctl *c, submit_flags *f)
{
    uint64_t window = FEEDBACK_WINDOW;
    int rc = cxmctl_uint_flag(c, &f->window, 100000, &window);
    if (rc)
        return rc;
    if (!window)
        return cxmctl_usage_error(c, "--window: at least 1");
    submit_import im = {.c = c, .path = f->file.v[0]};
    if (!(im.f = fopen(im.path, "rb")))
        return cxmctl_usage_error(c, "cannot open --file %s", im.path);
    if (!c->ch && cxm_channel_open(c->target, &c->chan, &c->ch) != 0)
        return (fclose(im.f), fprintf(stderr, "cxmctl: cannot open a channel to %s\n", c->target),
                CXMCTL_FAILED);
    if (!(im.method = cxm_channel_method(c->ch, SUBMIT_PATH)) ||
        cxm_client_loop_create(&im.loop) != 0)
        return (fclose(im.f), fprintf(stderr, "cxmctl: out of memory\n"), CXMCTL_FAILED);
    double t0 = mono_s();
    /* A call that cannot start stops the sending, not the waiting: the
     * loop is destroyed only once every call started has completed. */
    bool more = true;
    while (more || im.in_flight) {
        while (more && im.in_flight < window && (rc = submit_next(&im)) == 1)
            ;
        more = more && rc == 1;
        if (im.in_flight)
            cxm_client_loop_run(im.loop, c->timeout_ms);
    }
    cxm_client_loop_destroy(im.loop);
    fclose(im.f);
    free(im.buf);
    submit_summary(c, &im, mono_s() - t0);
    if (im.damaged)
        fprintf(stderr, "cxmctl: --file %s: damaged after %" PRIu64 " records\n", im.path, im.sent);
    if (rc < 0)
        fprintf(stderr, "cxmctl: a SubmitResponse call could not start: %s\n", cxm_strerror(rc));
    return rc < 0 || im.damaged || im.failed ? CXMCTL_FAILED : 0;
}

static int cmd_submit(ctl *c, int argc, char **argv)
{
    submit_flags f = {
        {"file", "FILE.pb"},
        {"window", "N"},
        {"survey", "ID"},
        {"customer-id", "ID"},
        {"identity", "TYPE:VALUE"},
        {"score", "X"},
        {"text", "TEXT"},
        {"language", "LANG"},
        {"rating", "T=EXP:EXPERIENCE", true},
        {"touchpoint", "T"},
        {"channel", "CHANNEL"},
        {"stage", "STAGE"},
        {"at", "TIME|AGO"},
        {"response-id", "ID"},
        {"answer", "Q=ANSWER", true},
        {"trigger", "EVENT_ID"},
    };
    cxmctl_flag *const flags[] = {&f.file,     &f.window,      &f.survey,  &f.customer_id,
                                  &f.identity, &f.score,       &f.text,    &f.language,
                                  &f.rating,   &f.touchpoint,  &f.channel, &f.stage,
                                  &f.at,       &f.response_id, &f.answer,  &f.trigger};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    if (f.file.n && (f.survey.n || f.score.n))
        return cxmctl_usage_error(c, "give --file or one response's flags, not both");
    if (!f.file.n && f.window.n)
        return cxmctl_usage_error(c, "--window goes with --file");
    return f.file.n ? submit_file(c, &f) : submit_one(c, &f);
}

/* --- feedback scores --- */

/* The last bucket with responses against the one before it: ▲, ▼ or =
 * (a change under 0.05, which prints as 0.0); "-" with fewer than two such
 * buckets. */
static const char *trend_of(const Cxm__V1__ScoreGroup *g, double *delta)
{
    const Cxm__V1__ScoreBucket *last = NULL, *prev = NULL;
    for (size_t i = g->n_buckets; i-- > 0 && !prev;) {
        if (!g->buckets[i]->responses)
            continue;
        if (!last)
            last = g->buckets[i];
        else
            prev = g->buckets[i];
    }
    if (!prev)
        return "-";
    *delta = last->score - prev->score;
    return fabs(*delta) < 0.05 ? "=" : *delta > 0 ? "\u25b2" : "\u25bc";
}

/* A group's key as the command line writes it: a channel or stage in its
 * short form ("email", "purchase"), a touchpoint or survey id as it is. */
static void print_group_key(const Cxm__V1__ScoreGroup *g)
{
    char buf[64] = "";
    FILE *f = g->channel || g->stage ? fmemopen(buf, sizeof buf, "w") : NULL;
    if (f && g->channel)
        cxmctl_enum_short(f, &cxm__v1__channel__descriptor, g->channel);
    else if (f)
        cxmctl_enum_short(f, &cxm__v1__journey_stage__descriptor, g->stage);
    if (f)
        fclose(f);
    printf("%-24s ", buf[0] ? buf : *g->key ? g->key : "(none)");
}

static void print_score_group(const Cxm__V1__ScoreGroup *g)
{
    const Cxm__V1__ScoreBucket *t = g->total;
    print_group_key(g);
    printf("%9" PRIu64 " %8.1f \u00b1 %-6.1f", t ? t->responses : 0, t ? t->score : 0,
           t ? t->margin_of_error : 0);
    double delta = 0;
    const char *trend = trend_of(g, &delta);
    if (strcmp(trend, "-") == 0)
        printf("  -\n");
    else
        printf("  %s %+.1f\n", trend, delta);
}

/* --bucket: week unless given (the trend needs buckets), "none" for the
 * totals alone. */
static int bucket_flag(const ctl *c, const cxmctl_flag *f, int *bucket)
{
    *bucket = CXM__V1__TIME_BUCKET__TIME_BUCKET_WEEK;
    if (f->n && strcmp(f->v[0], "none") == 0) {
        *bucket = 0;
        return 0;
    }
    return cxmctl_enum_flag(c, f, &cxm__v1__time_bucket__descriptor, bucket);
}

static int scores_request(ctl *c, cxmctl_flag *const *fl, Cxm__V1__GetScoresRequest *req)
{
    int kind = 0, by = 0, bucket = 0;
    int rc;
    if ((rc = cxmctl_require(c, fl[0])) ||
        (rc = cxmctl_enum_flag(c, fl[0], &cxm__v1__survey_kind__descriptor, &kind)) ||
        (rc = cxmctl_enum_flag(c, fl[1], &cxm__v1__score_grouping__descriptor, &by)) ||
        (rc = bucket_flag(c, fl[2], &bucket)) ||
        (rc = cxmctl_range_flags(c, fl[3], fl[4], false, &req->range)) ||
        (rc = cxmctl_channels_flag(c, fl[8], &req->channels, &req->n_channels)))
        return rc;
    req->kind = (Cxm__V1__SurveyKind)kind;
    req->group_by =
        by ? (Cxm__V1__ScoreGrouping)by : CXM__V1__SCORE_GROUPING__SCORE_GROUPING_TOUCHPOINT;
    req->bucket = (Cxm__V1__TimeBucket)bucket;
    req->time_zone = (char *)flag_or(fl[5], nothing);
    req->survey_ids = cxmctl_strings_flag(fl[6]), req->n_survey_ids = fl[6]->n;
    req->touchpoints = cxmctl_strings_flag(fl[7]), req->n_touchpoints = fl[7]->n;
    req->segment_id = (char *)flag_or(fl[9], nothing);
    return 0;
}

static int cmd_scores(ctl *c, int argc, char **argv)
{
    cxmctl_flag kind = {"kind", "nps|csat|ces"},
                by = {"by", "touchpoint|channel|stage|survey|none"},
                bucket = {"bucket", "day|week|month|none"}, from = {"from", "TIME"},
                to = {"to", "TIME"}, tz = {"tz", "ZONE"}, survey = {"survey", "ID", true},
                tp = {"touchpoint", "T", true}, channel = {"channel", "CHANNEL", true},
                segment = {"segment", "S"};
    cxmctl_flag *const flags[] = {&kind, &by,     &bucket, &from,    &to,
                                  &tz,   &survey, &tp,     &channel, &segment};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    Cxm__V1__GetScoresRequest req = CXM__V1__GET_SCORES_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = scores_request(c, flags, &req)))
        return rc;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, FEEDBACK_SERVICE, "GetScores", &req.base, &resp)) != 0 || c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__GetScoresResponse *r = (const void *)resp;
    printf("%-24s %9s %8s   %-6s  %s\n", "KEY", "RESPONSES", "SCORE", "\u00b1", "TREND");
    for (size_t i = 0; i < r->n_groups; i++)
        print_score_group(r->groups[i]);
    return 0;
}

/* --- feedback gaps --- */

static void print_gap(const Cxm__V1__TouchpointGap *g)
{
    printf("%-22s %6.2f %6.2f %+6.2f %9" PRIu64 " %6.1f%% %6.2f %8.4f %6.1f%%\n", g->touchpoint,
           g->mean_expectation, g->mean_experience, g->gap, g->responses, g->volume_share * 100,
           g->impact, g->priority, g->disappointed_share * 100);
}

static int cmd_gaps(ctl *c, int argc, char **argv)
{
    cxmctl_flag from = {"from", "TIME"}, to = {"to", "TIME"}, min = {"min-responses", "N"},
                limit = {"limit", "N"}, survey = {"survey", "ID", true},
                channel = {"channel", "CHANNEL", true}, stage = {"stage", "STAGE", true};
    cxmctl_flag *const flags[] = {&from, &to, &min, &limit, &survey, &channel, &stage};
    char **pos;
    size_t npos;
    uint64_t nmin = 0, nlimit = 0;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    Cxm__V1__GapAnalysisRequest req = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_range_flags(c, &from, &to, false, &req.range)) ||
        (rc = cxmctl_uint_flag(c, &min, UINT32_MAX, &nmin)) ||
        (rc = cxmctl_uint_flag(c, &limit, 1000, &nlimit)) ||
        (rc = cxmctl_channels_flag(c, &channel, &req.channels, &req.n_channels)))
        return rc;
    req.stages = cxmctl_new_array(c, stage.n, sizeof *req.stages);
    for (size_t i = 0; i < stage.n && rc == 0; i++) {
        int v = 0;
        rc = cxmctl_parse_enum(c, &cxm__v1__journey_stage__descriptor, "--stage", stage.v[i], &v);
        req.stages[req.n_stages++] = (Cxm__V1__JourneyStage)v;
    }
    if (rc)
        return rc;
    req.min_responses = (uint32_t)nmin, req.limit = (uint32_t)nlimit;
    req.survey_ids = cxmctl_strings_flag(&survey), req.n_survey_ids = survey.n;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, FEEDBACK_SERVICE, "GapAnalysis", &req.base, &resp)) != 0 || c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__GapAnalysisResponse *r = (const void *)resp;
    printf("%-22s %6s %6s %6s %9s %7s %6s %8s %7s\n", "TOUCHPOINT", "EXPECT", "GOT", "GAP",
           "RESPONSES", "SHARE", "IMPACT", "PRIORITY", "DISAPP");
    for (size_t i = 0; i < r->n_gaps; i++)
        print_gap(r->gaps[i]);
    return 0;
}

/* --- feedback followups / followup update --- */

static void print_follow_up(const Cxm__V1__FollowUp *f, int64_t now)
{
    printf("%-28s ", f->follow_up_id);
    print_enum(stdout, &cxm__v1__follow_up_state__descriptor, f->state);
    printf("\t%-16s ", *f->owner ? f->owner : "(unassigned)");
    cxmctl_print_time(stdout, f->due_at_unix_ms);
    bool open = f->state != CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CLOSED &&
                f->state != CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_DISMISSED;
    printf(" %-7s %-20s %5.0f ", open && f->due_at_unix_ms < now ? "overdue" : "",
           *f->touchpoint ? f->touchpoint : "-", f->score);
    print_enum(stdout, &cxm__v1__follow_up_reason__descriptor, f->reason);
    printf("  %s\n", f->customer_id);
}

static int followups_request(ctl *c, cxmctl_flag *const *fl, Cxm__V1__ListFollowUpsRequest *req)
{
    uint64_t limit = 50;
    int rc = cxmctl_uint_flag(c, fl[5], 1000, &limit);
    req->states = cxmctl_new_array(c, fl[1]->n, sizeof *req->states);
    for (size_t i = 0; i < fl[1]->n && rc == 0; i++) {
        int v = 0;
        rc =
            cxmctl_parse_enum(c, &cxm__v1__follow_up_state__descriptor, "--state", fl[1]->v[i], &v);
        req->states[req->n_states++] = (Cxm__V1__FollowUpState)v;
    }
    req->owner = (char *)flag_or(fl[0], nothing);
    req->overdue_only = fl[2]->n > 0;
    req->touchpoint = (char *)flag_or(fl[3], nothing);
    req->survey_id = (char *)flag_or(fl[4], nothing);
    req->page_size = (int32_t)limit;
    req->page_token = (char *)flag_or(fl[6], nothing);
    req->unassigned = fl[7]->n > 0;
    req->customer_id = (char *)flag_or(fl[8], nothing);
    return rc;
}

static int cmd_followups(ctl *c, int argc, char **argv)
{
    cxmctl_flag owner = {"owner", "O"}, state = {"state", "STATE", true},
                overdue = {"overdue", NULL}, tp = {"touchpoint", "T"}, survey = {"survey", "ID"},
                limit = {"limit", "N"}, token = {"page-token", "T"},
                unassigned = {"unassigned", NULL}, customer = {"customer-id", "ID"};
    cxmctl_flag *const flags[] = {&owner, &state, &overdue,    &tp,      &survey,
                                  &limit, &token, &unassigned, &customer};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    Cxm__V1__ListFollowUpsRequest req = CXM__V1__LIST_FOLLOW_UPS_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = followups_request(c, flags, &req)))
        return rc;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, FEEDBACK_SERVICE, "ListFollowUps", &req.base, &resp)) != 0 ||
        c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__ListFollowUpsResponse *r = (const void *)resp;
    printf("%-28s %s\t%-16s %-24s %-7s %-20s %5s %s\n", "FOLLOW-UP", "STATE", "OWNER", "DUE", "",
           "TOUCHPOINT", "SCORE", "REASON  CUSTOMER");
    int64_t now = cxmctl_wall_ms();
    for (size_t i = 0; i < r->n_follow_ups; i++)
        print_follow_up(r->follow_ups[i], now);
    if (*r->next_page_token)
        printf("next page: --page-token %s\n", r->next_page_token);
    return 0;
}

static int cmd_followup_update(ctl *c, int argc, char **argv)
{
    cxmctl_flag state = {"state", "STATE"}, owner = {"owner", "O"}, unassign = {"unassign", NULL},
                note = {"note", "TEXT"}, author = {"author", "WHO"},
                version = {"expected-version", "N"};
    cxmctl_flag *const flags[] = {&state, &owner, &unassign, &note, &author, &version};
    char **pos;
    size_t npos;
    int st = 0;
    Cxm__V1__UpdateFollowUpRequest req = CXM__V1__UPDATE_FOLLOW_UP_REQUEST__INIT;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 1, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE ||
        (rc = cxmctl_enum_flag(c, &state, &cxm__v1__follow_up_state__descriptor, &st)) ||
        (rc = cxmctl_uint_flag(c, &version, UINT64_MAX, &req.expected_version)))
        return rc;
    req.follow_up_id = pos[0];
    req.state = (Cxm__V1__FollowUpState)st;
    req.owner = (char *)flag_or(&owner, nothing);
    req.unassign = unassign.n > 0;
    req.note = (char *)flag_or(&note, nothing);
    req.author = (char *)flag_or(&author, nothing);
    return cxmctl_call_print(c, FEEDBACK_SERVICE, "UpdateFollowUp", &req.base);
}

/* --- feedback sentiment --- */

static void print_sentiment(const Cxm__V1__Sentiment *s)
{
    fputs("label       ", stdout);
    print_enum(stdout, &cxm__v1__sentiment_label__descriptor, s->label);
    printf("\nscore       %+.3f\nconfidence  %.3f\nlanguage    %s\n", s->score, s->confidence,
           *s->language ? s->language : "-");
    for (size_t i = 0; i < s->n_aspects; i++) {
        const Cxm__V1__AspectSentiment *a = s->aspects[i];
        printf("  %-14s ", a->aspect);
        print_enum(stdout, &cxm__v1__sentiment_label__descriptor, a->label);
        printf("\t%+.3f  bytes %u-%u\n", a->score, a->begin_offset, a->end_offset);
    }
}

static int cmd_sentiment(ctl *c, int argc, char **argv)
{
    cxmctl_flag language = {"language", "ko|en"}, aspects = {"aspects", NULL};
    cxmctl_flag *const flags[] = {&language, &aspects};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 2, 1, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__AnalyzeTextRequest req = CXM__V1__ANALYZE_TEXT_REQUEST__INIT;
    req.text = pos[0];
    req.language = (char *)flag_or(&language, nothing);
    req.include_aspects = aspects.n > 0;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, FEEDBACK_SERVICE, "AnalyzeText", &req.base, &resp)) != 0 || c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__AnalyzeTextResponse *r = (const void *)resp;
    if (r->sentiment)
        print_sentiment(r->sentiment);
    return 0;
}

const cxmctl_command cxmctl_feedback_commands[] = {
    {"feedback survey upsert",
     "--id ID --kind nps|csat|ces [--title TEXT] [--touchpoint T] [--channel CHANNEL]\n"
     "      [--stage STAGE] [--language LANG] [--gap TOUCHPOINT]... [--comment QUESTION]\n"
     "      [--threshold SCORE] [--due-hours N] [--inactive] [--cooldown-hours N]\n"
     "      [--max-per-period N] [--period-days N] [--sampling RATE]\n"
     "    | --file SURVEY.json | --file FILE.pb",
     "create or replace a survey from flags (a score question, an expectation-gap rating per "
     "--gap, a free-text --comment), from a Survey in JSON (as --json survey get prints one), "
     "or every UpsertSurveyRequest of FILE.pb (cxm-gen's surveys.pb)",
     "--id checkout_nps --kind nps --title \"How likely are you to recommend us?\" --touchpoint "
     "checkout_page --channel web --gap checkout_page --comment \"Why?\"",
     cmd_survey_upsert},
    {"feedback survey get", "ID [--version N]", "one survey, its current or an earlier version",
     "checkout_nps --version 1", cmd_survey_get},
    {"feedback survey list", "[--active] [--page-token T]",
     "every survey's current version: kind, version, active, touchpoint, title", "--active",
     cmd_survey_list},
    {"feedback submit",
     "--survey ID (--customer-id ID | --identity TYPE:VALUE) --score X [--text TEXT]\n"
     "      [--language LANG] [--rating T=EXPECTATION:EXPERIENCE]... [--touchpoint T]\n"
     "      [--channel CHANNEL] [--stage STAGE] [--at TIME|AGO] [--response-id ID]\n"
     "      [--answer QUESTION=ANSWER]... [--trigger EVENT_ID]\n"
     "    | --file FILE.pb [--window N]",
     "record one response (a new --response-id unless given), or every SubmitResponseRequest "
     "of FILE.pb (cxm-gen's responses.pb) with N calls in flight (default 32)",
     "--survey checkout_nps --identity email:ann@example.com --score 3 --text \"delivery was "
     "late\" --rating checkout_page=6:3",
     cmd_submit},
    {"feedback scores",
     "--kind nps|csat|ces [--by touchpoint|channel|stage|survey|none]\n"
     "      [--bucket day|week|month|none] [--from TIME] [--to TIME] [--tz ZONE]\n"
     "      [--survey ID]... [--touchpoint T]... [--channel CHANNEL]... [--segment S]",
     "score, responses and 95% margin per group (default by touchpoint), with the trend of the "
     "last bucket (default week) against the one before",
     "--kind nps --by touchpoint --bucket week --tz Asia/Seoul", cmd_scores},
    {"feedback gaps",
     "[--from TIME] [--to TIME] [--min-responses N] [--limit N] [--survey ID]...\n"
     "      [--channel CHANNEL]... [--stage STAGE]...",
     "expectation against experience per touchpoint, highest priority (gap x volume x impact) "
     "first",
     "--min-responses 30 --limit 10", cmd_gaps},
    {"feedback followups",
     "[--owner O | --unassigned] [--state STATE]... [--overdue] [--touchpoint T] [--survey ID]\n"
     "      [--customer-id ID] [--limit N] [--page-token T]",
     "close-the-loop follow-ups, earliest due first", "--state open --state in-progress --overdue",
     cmd_followups},
    {"feedback followup update",
     "ID [--state STATE] [--owner O | --unassign] [--note TEXT --author WHO]\n"
     "      [--expected-version N]",
     "assign, progress, close or reopen a follow-up, or add a note",
     "fu-123 --state in-progress --owner cs-team --note \"called back\" --author kim",
     cmd_followup_update},
    {"feedback sentiment", "TEXT [--language ko|en] [--aspects]",
     "sentiment of a Korean or English text, with its aspects (delivery, staff, price, ...)",
     "\"배송은 빨랐지만 직원이 불친절했어요\" --aspects", cmd_sentiment},
};
const size_t cxmctl_feedback_ncommands =
    sizeof cxmctl_feedback_commands / sizeof cxmctl_feedback_commands[0];
