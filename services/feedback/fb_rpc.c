/*
 * fb_rpc.c - the FeedbackService handlers (see fb_rpc.h).
 */
#include "fb_rpc.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/log.h"
#include "cxm/svc.h"
#include "fan.h"
#include "fb_check.h"
#include "fdb.h"
#include "ffu.h"

#define HOUR_MS ((int64_t)3600 * 1000)
#define DAY_MS (24 * HOUR_MS)
#define DEFAULT_PERIOD_DAYS 30
#define DEFAULT_DUE_HOURS 48
#define SURVEYS_PAGE_DEFAULT 50
#define SURVEYS_PAGE_MAX 1000

static const char *s0(const char *s)
{
    return s ? s : "";
}

/* "2026-12-02T01:30:00Z" into buf (32 bytes). */
static const char *iso_time(int64_t ms, char *buf)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* ---- customers, through profile: the resolver thread ---- */

static void submit_resolved(fb_ctx *ctx, cxm_call *call, void *in, const char *customer_id);
static void eligibility_resolved(fb_ctx *ctx, cxm_call *call, void *in, const char *customer_id);

/* A call's resolved item as its customer id, or the call answered with why
 * not (false). An unknown identity of an eligibility check is no error:
 * *id NULL, no profile yet, so never answered. */
static bool resolved_id(cxm_call *call, const cxm_resolve_item *it, int rc, bool no_create,
                        const char **id)
{
    char err[CXM_SVC_ERR_MAX] = "";
    *id = NULL;
    if (rc == CXM_EUNAVAIL)
        cxm_svc_errf(err, rc, "customer",
                     "the profile service cannot resolve the customer now (%s): nothing was "
                     "stored, retry later",
                     cxm_resolver_last_error());
    else if (rc == 0 && it->rc == CXM_ENOTFOUND && no_create)
        return true;
    else if (rc == 0 && it->rc != 0)
        rc = cxm_svc_errf(err, it->rc, "customer", "%s", s0(it->why));
    else if (rc == 0)
        *id = it->customer_id; /* already in the call's arena */
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
    return rc == 0;
}

static void submit_waited(cxm_call *call, void *in, const cxm_resolve_item *it, int rc, void *user)
{
    const char *id;
    if (resolved_id(call, it, rc, false, &id))
        submit_resolved(user, call, in, id);
}

static void eligibility_waited(cxm_call *call, void *in, const cxm_resolve_item *it, int rc,
                               void *user)
{
    const char *id;
    if (resolved_id(call, it, rc, true, &id))
        eligibility_resolved(user, call, in, id);
}

/* ---- sentiment ---- */

static fsent_lang lang_of(const char *s)
{
    s = s0(s);
    return strcmp(s, "ko") == 0   ? FSENT_LANG_KO
           : strcmp(s, "en") == 0 ? FSENT_LANG_EN
                                  : FSENT_LANG_DETECT;
}

static Cxm__V1__Sentiment *sentiment_msg(cxm_arena *a, const fsent_result *r)
{
    Cxm__V1__Sentiment *m = cxm_arena_alloc(a, sizeof *m);
    Cxm__V1__AspectSentiment **as = cxm_arena_alloc(a, (r->naspects + 1) * sizeof *as);
    if (!m || !as)
        return NULL;
    cxm__v1__sentiment__init(m);
    m->label = (Cxm__V1__SentimentLabel)r->label;
    m->score = r->score;
    m->confidence = r->confidence;
    m->language = (char *)s0(r->language);
    for (size_t i = 0; i < r->naspects; i++) {
        if (!(as[i] = cxm_arena_alloc(a, sizeof *as[i])))
            return NULL;
        cxm__v1__aspect_sentiment__init(as[i]);
        as[i]->aspect = (char *)s0(r->aspects[i].aspect);
        as[i]->label = (Cxm__V1__SentimentLabel)r->aspects[i].label;
        as[i]->score = r->aspects[i].score;
        as[i]->begin_offset = r->aspects[i].begin;
        as[i]->end_offset = r->aspects[i].end;
    }
    m->aspects = as;
    m->n_aspects = r->naspects;
    return m;
}

/* ---- gates ---- */

typedef struct fb_gate {
    const char *gate; /* NULL: eligible */
    char reason[256];
    int64_t retry_after;
} fb_gate;

typedef struct fb_where {
    const char *touchpoint;
    int channel, stage;
} fb_where;

static bool has_str(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static bool has_int(const int *v, size_t n, int x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

static bool targeting_refuses(const Cxm__V1__SurveyTargeting *tg, const fb_where *w, fb_gate *g)
{
    if (!tg)
        return false;
    if (tg->n_touchpoints && !has_str(tg->touchpoints, tg->n_touchpoints, w->touchpoint))
        snprintf(g->reason, sizeof g->reason,
                 "touchpoint \"%s\" is not one of the %zu the survey targets", w->touchpoint,
                 tg->n_touchpoints);
    else if (tg->n_channels && !has_int((const int *)tg->channels, tg->n_channels, w->channel))
        snprintf(
            g->reason, sizeof g->reason, "channel %s is not one the survey targets",
            protobuf_c_enum_descriptor_get_value(&cxm__v1__channel__descriptor, w->channel)
                ? protobuf_c_enum_descriptor_get_value(&cxm__v1__channel__descriptor, w->channel)
                      ->name
                : "UNSPECIFIED");
    else if (tg->n_stages && w->stage && !has_int((const int *)tg->stages, tg->n_stages, w->stage))
        snprintf(g->reason, sizeof g->reason, "journey stage %d is not one the survey targets",
                 w->stage);
    else
        return false;
    g->gate = "targeting";
    return true;
}

/* The cooldown and frequency gates over the customer's answers up to at. */
static int recontact_refuses(cxm_txn *t, fdb *db, cxm_arena *a, const Cxm__V1__RecontactPolicy *rp,
                             const char *customer_id, int64_t at, fb_gate *g)
{
    if (!rp || !customer_id || (!rp->cooldown_hours && !rp->max_responses_per_period))
        return 0;
    int64_t period = (rp->period_days ? rp->period_days : DEFAULT_PERIOD_DAYS) * DAY_MS;
    fdb_history h;
    int rc =
        fdb_history_get(t, db, a, customer_id, at, rp->max_responses_per_period ? period : 0, &h);
    if (rc != 0)
        return rc;
    char when[32];
    int64_t cooldown = rp->cooldown_hours * HOUR_MS;
    if (cooldown && h.last_ms != INT64_MIN && at < h.last_ms + cooldown) {
        g->gate = "cooldown";
        g->retry_after = h.last_ms + cooldown;
        snprintf(g->reason, sizeof g->reason,
                 "the customer answered a survey less than %u hours ago: ask again after %s",
                 rp->cooldown_hours, iso_time(g->retry_after, when));
    } else if (rp->max_responses_per_period && h.in_window >= rp->max_responses_per_period) {
        g->gate = "frequency";
        /* Once this answer leaves the window, one fewer than the cap are in. */
        g->retry_after = h.window_ms[h.in_window - rp->max_responses_per_period] + period;
        snprintf(g->reason, sizeof g->reason,
                 "the customer answered %" PRIu64 " surveys in the last %" PRId64
                 " days (at most %u): ask again after %s",
                 h.in_window, period / DAY_MS, rp->max_responses_per_period,
                 iso_time(g->retry_after, when));
    }
    return 0;
}

/* The key a customer is sampled by: its id once it has answered a survey;
 * before that, the reference the request names (an identity's value), so a
 * check before a first survey agrees with the response that follows it
 * even when that response is what creates the profile. */
static int sample_key(cxm_txn *t, fdb *db, cxm_arena *a, const char *customer_id,
                      const Cxm__V1__CustomerRef *ref, const char **key)
{
    *key = ref->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY ? ref->identity->value
                                                                : ref->customer_id;
    if (!customer_id)
        return 0;
    fdb_history h;
    int rc = fdb_history_get(t, db, a, customer_id, INT64_MAX, 0, &h);
    if (rc == 0 && h.last_ms != INT64_MIN)
        *key = customer_id;
    return rc;
}

/* Which customers are asked is fixed per survey: a hash of the survey and
 * the customer's sample key, as a fraction of 2^64, under the rate. The key
 * is looked up only for a survey that samples. */
static int sampling_refuses(cxm_txn *t, fdb *db, cxm_arena *a, const Cxm__V1__Survey *s,
                            const char *customer_id, const Cxm__V1__CustomerRef *ref, fb_gate *g)
{
    double rate = s->recontact ? s->recontact->sampling_rate : 0;
    if (rate <= 0 || rate >= 1)
        return 0;
    const char *key;
    int rc = sample_key(t, db, a, customer_id, ref, &key);
    if (rc != 0)
        return rc;
    uint64_t h = cxm_hash(CXM_HASH_INIT, s->survey_id, strlen(s->survey_id) + 1);
    h = cxm_hash(h, key, strlen(key));
    if ((double)(h >> 11) * 0x1p-53 < rate)
        return 0;
    g->gate = "sampling";
    snprintf(g->reason, sizeof g->reason,
             "the customer is outside the survey's sample (sampling_rate %g)", rate);
    return 0;
}

/* Every gate in CheckEligibilityResponse.gate's order; g->gate stays NULL
 * when the customer may be asked. customer_id NULL: a customer no profile
 * has yet (never answered). */
static int gates(cxm_txn *t, fdb *db, cxm_arena *a, const Cxm__V1__Survey *s,
                 const char *customer_id, const Cxm__V1__CustomerRef *ref, const fb_where *w,
                 int64_t at, fb_gate *g)
{
    *g = (fb_gate){0};
    if (!s->active) {
        g->gate = "inactive";
        snprintf(g->reason, sizeof g->reason, "survey \"%s\" is inactive", s->survey_id);
        return 0;
    }
    if (targeting_refuses(s->targeting, w, g))
        return 0;
    int rc = recontact_refuses(t, db, a, s->recontact, customer_id, at, g);
    if (rc == 0 && !g->gate)
        rc = sampling_refuses(t, db, a, s, customer_id, ref, g);
    return rc;
}

/* ---- SubmitResponse ---- */

typedef struct submit_in {
    Cxm__V1__SubmitResponseRequest *req;
    const char *customer_id;
    bool has_text;
    fsent_result senti;
} submit_in;

/* The survey's follow-up threshold as ffu takes it: 0 is the kind's
 * default (NPS 6, CSAT 2, CES 3), negative never opens one (-1). */
static double threshold_of(const Cxm__V1__Survey *s)
{
    static const double defaults[] = {0, 6, 2, 3};
    double v = s->follow_up_threshold;
    return v == 0 ? defaults[s->kind & 3] : v < 0 ? -1 : v;
}

static Cxm__V1__NpsCategory nps_category(int kind, int score)
{
    if (kind != CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS)
        return CXM__V1__NPS_CATEGORY__NPS_CATEGORY_UNSPECIFIED;
    return score <= 6   ? CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR
           : score <= 8 ? CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PASSIVE
                        : CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PROMOTER;
}

/* The survey the job answers: current, active, and the request valid
 * against it. */
static int submit_survey(cxm_txn *t, fb_ctx *ctx, cxm_arena *a,
                         const Cxm__V1__SubmitResponseRequest *req, Cxm__V1__Survey **out,
                         char *err)
{
    Cxm__V1__Survey *s;
    int rc = fdb_survey_get(t, ctx->db, a, req->survey_id, 0, &s);
    if (rc == CXM_ENOTFOUND)
        return cxm_svc_errf(err, rc, "survey_id", "no survey \"%s\": create it with UpsertSurvey",
                            req->survey_id);
    if (rc != 0)
        return rc;
    if (!s->active)
        return cxm_svc_errf(err, CXM_ESTALE, "survey_id",
                            "gate inactive: survey \"%s\" is inactive and takes no responses; "
                            "retry once it is active again",
                            s->survey_id);
    if ((rc = fb_check_submit_survey(req, s, err)) != 0)
        return rc;
    *out = s;
    return 0;
}

/* A replay of response_id: the first outcome, marked duplicate. */
static int replay(cxm_txn *t, cxm_svc_job *j, const char *response_id, bool *found)
{
    fb_ctx *ctx = j->ctx;
    Cxm__V1__SubmitResponseResponse *first;
    int rc = fdb_response_get(t, ctx->db, j->a, response_id, NULL, &first);
    *found = rc == 0;
    if (rc != 0)
        return rc == CXM_ENOTFOUND ? 0 : rc;
    first->duplicate = true;
    j->resp = &first->base;
    return 0;
}

/* Where the response was given: its own, else the survey's; the stage
 * else the customer's replicated one. */
static int where_of(cxm_txn *t, fdb *db, const Cxm__V1__SubmitResponseRequest *req,
                    const Cxm__V1__Survey *s, const char *customer_id, fb_where *w)
{
    w->touchpoint = *s0(req->touchpoint) ? req->touchpoint : s0(s->touchpoint);
    w->channel = req->channel ? (int)req->channel : (int)s->channel;
    w->stage = req->stage ? (int)req->stage : (int)s->stage;
    return w->stage || !customer_id ? 0 : fdb_stage_get(t, db, customer_id, &w->stage);
}

static int make_frec(cxm_txn *t, fdb *db, cxm_arena *a, const submit_in *in,
                     const Cxm__V1__Survey *s, const fb_where *w, int64_t at, frec **out)
{
    const Cxm__V1__SubmitResponseRequest *req = in->req;
    frec *r = cxm_arena_calloc(a, 1, frec_size((unsigned)req->n_ratings));
    if (!r)
        return CXM_ENOMEM;
    r->at_ms = at;
    r->customer = cxm_hash(0, in->customer_id, strlen(in->customer_id));
    r->kind = (uint8_t)s->kind;
    r->channel = (uint8_t)w->channel;
    r->stage = (uint8_t)w->stage;
    r->score = (uint8_t)req->score;
    r->sentiment = in->has_text ? (uint8_t)in->senti.label : 0;
    r->sentiment_score = in->has_text ? (float)in->senti.score : 0;
    r->nratings = (uint8_t)req->n_ratings;
    int rc = fdb_intern(t, db, s->survey_id, &r->survey);
    if (rc == 0 && *w->touchpoint)
        rc = fdb_intern(t, db, w->touchpoint, &r->touchpoint);
    for (size_t i = 0; rc == 0 && i < req->n_ratings; i++) {
        r->ratings[i].expectation = req->ratings[i]->expectation;
        r->ratings[i].experience = req->ratings[i]->experience;
        rc = fdb_intern(t, db, fb_rating_touchpoint(req->ratings[i], req, s),
                        &r->ratings[i].touchpoint);
    }
    if (rc == 0)
        *out = r;
    return rc;
}

/* The follow-up the response opens, if any (ffu.h). */
static int follow_up(cxm_txn *t, fb_ctx *ctx, cxm_arena *a, const submit_in *in,
                     const Cxm__V1__Survey *s, const fb_where *w, int64_t now, const char **id)
{
    ffu_response fr = {.response_id = in->req->response_id,
                       .survey_id = s->survey_id,
                       .customer_id = in->customer_id,
                       .touchpoint = w->touchpoint,
                       .kind = s->kind,
                       .channel = (Cxm__V1__Channel)w->channel,
                       .score = in->req->score,
                       .due_hours =
                           s->follow_up_due_hours ? s->follow_up_due_hours : DEFAULT_DUE_HOURS,
                       .has_text = in->has_text,
                       .label = in->has_text ? in->senti.label : 0,
                       .sentiment_score = in->has_text ? in->senti.score : 0,
                       .threshold = threshold_of(s),
                       .now_ms = now};
    return ffu_on_response(t, ctx->fu, &fr, a, id);
}

static int emit_received(cxm_txn *t, fb_ctx *ctx, const submit_in *in, const Cxm__V1__Survey *s,
                         const fb_where *w, int64_t at, const Cxm__V1__SubmitResponseResponse *o)
{
    Cxm__V1__FeedbackReceived f = CXM__V1__FEEDBACK_RECEIVED__INIT;
    f.response_id = in->req->response_id;
    f.survey_id = s->survey_id;
    f.kind = s->kind;
    f.score = (int32_t)in->req->score;
    f.touchpoint = (char *)w->touchpoint;
    f.channel = (Cxm__V1__Channel)w->channel;
    f.answered_at_unix_ms = at;
    f.stage = (Cxm__V1__JourneyStage)w->stage;
    f.nps_category = o->nps_category;
    f.sentiment = in->has_text ? (Cxm__V1__SentimentLabel)in->senti.label : 0;
    f.sentiment_score = in->has_text ? in->senti.score : 0;
    f.strongly_negative =
        in->has_text && ffu_strongly_negative(ctx->fu, in->senti.label, in->senti.score);
    f.follow_up_id = o->follow_up_id;
    f.survey_version = s->version;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.customer_id = (char *)in->customer_id;
    ev.occurred_at_unix_ms = at;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_FEEDBACK_RECEIVED;
    ev.feedback_received = &f;
    return cxm_bus_emit(ctx->events, t, &ev);
}

/* The request as stored: its customer, time and place resolved. */
static Cxm__V1__SubmitResponseRequest *stored_request(cxm_arena *a, const submit_in *in,
                                                      const fb_where *w, int64_t at)
{
    Cxm__V1__SubmitResponseRequest *q = cxm_arena_alloc(a, sizeof *q);
    Cxm__V1__CustomerRef *c = cxm_arena_alloc(a, sizeof *c);
    if (!q || !c)
        return NULL;
    *q = *in->req;
    cxm__v1__customer_ref__init(c);
    c->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    c->customer_id = (char *)in->customer_id;
    q->customer = c;
    q->submitted_at_unix_ms = at;
    q->touchpoint = (char *)w->touchpoint;
    q->channel = (Cxm__V1__Channel)w->channel;
    q->stage = (Cxm__V1__JourneyStage)w->stage;
    return q;
}

/* Record, outcome, follow-up, event: everything of one accepted response. */
static int submit_store(cxm_txn *t, cxm_svc_job *j, const submit_in *in, const Cxm__V1__Survey *s,
                        const fb_where *w, int64_t at)
{
    fb_ctx *ctx = j->ctx;
    frec *r;
    int rc = make_frec(t, ctx->db, j->a, in, s, w, at, &r);
    if (rc != 0)
        return rc;
    Cxm__V1__SubmitResponseResponse *o =
        cxm_svc_response(j, &cxm__v1__submit_response_response__descriptor);
    if (!o)
        return CXM_ENOMEM;
    o->response_id = in->req->response_id;
    o->customer_id = (char *)in->customer_id;
    o->nps_category = nps_category(s->kind, (int)in->req->score);
    o->survey_version = s->version;
    if (in->has_text && !(o->sentiment = sentiment_msg(j->a, &in->senti)))
        return CXM_ENOMEM;
    const char *fu = NULL;
    if ((rc = follow_up(t, ctx, j->a, in, s, w, j->now, &fu)) != 0)
        return rc;
    o->follow_up_id = (char *)s0(fu);
    Cxm__V1__SubmitResponseRequest *q = stored_request(j->a, in, w, at);
    if (!q)
        return CXM_ENOMEM;
    if ((rc = fdb_response_put(t, ctx->db, j->a, q, o, r)) != 0)
        return rc;
    return emit_received(t, ctx, in, s, w, at, o);
}

static int submit_job(cxm_txn *t, cxm_svc_job *j)
{
    fb_ctx *ctx = j->ctx;
    const submit_in *in = j->req;
    bool dup;
    int rc = replay(t, j, in->req->response_id, &dup);
    if (rc != 0 || dup)
        return rc;
    Cxm__V1__Survey *s;
    if ((rc = submit_survey(t, ctx, j->a, in->req, &s, j->err)) != 0)
        return rc;
    /* The resolver may still name an id merged away since (its cache keeps
     * old answers): the response is the live customer's, as it would be
     * with a cold cache, so its follow-up, stage, sample and events are. */
    submit_in live = *in;
    if ((rc = fdb_root(t, ctx->db, j->a, in->customer_id, &live.customer_id)) != 0)
        return rc;
    in = &live;
    int64_t at = in->req->submitted_at_unix_ms ? in->req->submitted_at_unix_ms : j->now;
    fb_where w;
    fb_gate g;
    if ((rc = where_of(t, ctx->db, in->req, s, in->customer_id, &w)) != 0 ||
        (rc = gates(t, ctx->db, j->a, s, in->customer_id, in->req->customer, &w, at, &g)) != 0)
        return rc;
    if (g.gate)
        return cxm_svc_errf(j->err, CXM_ESTALE, NULL, "gate %s: %s", g.gate, g.reason);
    return submit_store(t, j, in, s, &w, at);
}

/* Before resolving (which may create a profile): a replay is answered at
 * once, and a request the survey refuses never reaches profile. */
static int submit_precheck(fb_ctx *ctx, cxm_call *call, Cxm__V1__SubmitResponseRequest *req,
                           bool *answered, char *err)
{
    cxm_arena *a = cxm_call_arena(call);
    cxm_txn *t;
    int rc = cxm_store_read_begin(fdb_store(ctx->db), &t);
    if (rc != 0)
        return rc;
    Cxm__V1__SubmitResponseResponse *first;
    rc = fdb_response_get(t, ctx->db, a, req->response_id, NULL, &first);
    if (rc == 0) {
        first->duplicate = true;
        cxm_call_reply(call, &first->base);
        *answered = true;
    } else if (rc == CXM_ENOTFOUND) {
        Cxm__V1__Survey *s;
        rc = submit_survey(t, ctx, a, req, &s, err);
    }
    cxm_store_read_end(t);
    return rc;
}

static void on_submit(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__SubmitResponseRequest *req = (Cxm__V1__SubmitResponseRequest *)msg;
    fb_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    bool answered = false;
    int rc = fb_check_submit(a, req, cxm_svc_now_ms(), err);
    if (rc == 0)
        rc = submit_precheck(ctx, call, req, &answered, err);
    if (answered)
        return;
    submit_in *in = rc == 0 ? cxm_arena_calloc(a, 1, sizeof *in) : NULL;
    if (rc == 0 && !in)
        rc = CXM_ENOMEM;
    if (rc == 0) {
        in->req = req;
        rc = cxm_resolve_queue_push(ctx->queue, call, req->customer, false, in, submit_waited, ctx);
    }
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

/* On the resolver thread: the text's sentiment, then the write. */
static void submit_resolved(fb_ctx *ctx, cxm_call *call, void *arg, const char *customer_id)
{
    submit_in *in = arg;
    const Cxm__V1__SubmitResponseRequest *req = in->req;
    in->customer_id = customer_id;
    if (*s0(req->text)) {
        in->has_text = true;
        int rc = fsent_analyze(ctx->senti, req->text, strlen(req->text), lang_of(req->language),
                               false, &in->senti);
        if (rc != 0)
            return cxm_svc_finish(call, rc, "");
    }
    cxm_svc_submit(call, fdb_store(ctx->db), in, submit_job);
}

/* ---- CheckEligibility ---- */

static int eligibility_answer(fb_ctx *ctx, cxm_arena *a,
                              const Cxm__V1__CheckEligibilityRequest *req, const char *customer_id,
                              Cxm__V1__CheckEligibilityResponse *out, char *err)
{
    cxm_txn *t;
    int rc = cxm_store_read_begin(fdb_store(ctx->db), &t);
    if (rc != 0)
        return rc;
    Cxm__V1__Survey *s;
    rc = fdb_survey_get(t, ctx->db, a, req->survey_id, 0, &s);
    if (rc == CXM_ENOTFOUND)
        cxm_svc_errf(err, rc, "survey_id", "no survey \"%s\"", req->survey_id);
    if (rc == 0 && customer_id) /* the live customer, as SubmitResponse takes it */
        rc = fdb_root(t, ctx->db, a, customer_id, &customer_id);
    Cxm__V1__SubmitResponseRequest as = CXM__V1__SUBMIT_RESPONSE_REQUEST__INIT;
    as.touchpoint = req->touchpoint;
    as.channel = req->channel;
    as.stage = req->stage;
    fb_where w;
    fb_gate g;
    if (rc == 0)
        rc = where_of(t, ctx->db, &as, s, customer_id, &w);
    if (rc == 0)
        rc = gates(t, ctx->db, a, s, customer_id, req->customer, &w, cxm_svc_now_ms(), &g);
    cxm_store_read_end(t);
    if (rc != 0)
        return rc;
    out->eligible = g.gate == NULL;
    out->gate = (char *)s0(g.gate);
    out->reason = g.gate ? cxm_arena_strndup(a, g.reason, strlen(g.reason)) : "";
    out->retry_after_unix_ms = g.retry_after;
    out->survey_version = s->version;
    return out->reason ? 0 : CXM_ENOMEM;
}

static void on_eligibility(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__CheckEligibilityRequest *req = (Cxm__V1__CheckEligibilityRequest *)msg;
    fb_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = fb_check_eligibility(cxm_call_arena(call), req, err);
    if (rc == 0)
        rc = cxm_resolve_queue_push(ctx->queue, call, req->customer, true, req, eligibility_waited,
                                    ctx);
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

/* On the resolver thread: customer_id NULL when no profile has the
 * identity yet. */
static void eligibility_resolved(fb_ctx *ctx, cxm_call *call, void *arg, const char *customer_id)
{
    const Cxm__V1__CheckEligibilityRequest *req = arg;
    char err[CXM_SVC_ERR_MAX] = "";
    Cxm__V1__CheckEligibilityResponse resp = CXM__V1__CHECK_ELIGIBILITY_RESPONSE__INIT;
    int rc = eligibility_answer(ctx, cxm_call_arena(call), req, customer_id, &resp, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_call_reply(call, &resp.base);
}

/* ---- UpsertSurvey ---- */

/* The definition alone: output-only fields cleared, packed. */
static int definition(cxm_arena *a, const Cxm__V1__Survey *s, uint8_t **buf, size_t *len)
{
    Cxm__V1__Survey d = *s;
    d.created_at_unix_ms = d.updated_at_unix_ms = 0;
    d.version = 0;
    *len = protobuf_c_message_get_packed_size(&d.base);
    if (!(*buf = cxm_arena_alloc(a, *len + 1)))
        return CXM_ENOMEM;
    protobuf_c_message_pack(&d.base, *buf);
    return 0;
}

static bool same_definition(cxm_arena *a, const Cxm__V1__Survey *x, const Cxm__V1__Survey *y)
{
    uint8_t *bx, *by;
    size_t lx, ly;
    return definition(a, x, &bx, &lx) == 0 && definition(a, y, &by, &ly) == 0 && lx == ly &&
           memcmp(bx, by, lx) == 0;
}

static int upsert_job(cxm_txn *t, cxm_svc_job *j)
{
    fb_ctx *ctx = j->ctx;
    const Cxm__V1__Survey *in = ((const Cxm__V1__UpsertSurveyRequest *)j->req)->survey;
    Cxm__V1__UpsertSurveyResponse *resp =
        cxm_svc_response(j, &cxm__v1__upsert_survey_response__descriptor);
    Cxm__V1__Survey *old = NULL, *s = cxm_arena_alloc(j->a, sizeof *s);
    if (!resp || !s)
        return CXM_ENOMEM;
    uint32_t version = 0;
    uint64_t responses = 0;
    int rc = fdb_survey_head(t, ctx->db, in->survey_id, &version, &responses);
    if (rc == 0)
        rc = fdb_survey_get(t, ctx->db, j->a, in->survey_id, version, &old);
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    if (old && same_definition(j->a, old, in)) {
        resp->survey = old;
        return 0;
    }
    if (old && old->kind != in->kind && responses)
        return cxm_svc_errf(j->err, CXM_ESTALE, "survey.kind",
                            "survey \"%s\" has %" PRIu64
                            " responses, so its kind cannot change: create a new survey",
                            in->survey_id, responses);
    *s = *in;
    s->version = version + 1;
    s->created_at_unix_ms = old ? old->created_at_unix_ms : j->now;
    s->updated_at_unix_ms = j->now;
    if ((rc = fdb_survey_put(t, ctx->db, j->a, s)) != 0)
        return rc;
    resp->survey = s;
    resp->created = old == NULL;
    return 0;
}

static void on_upsert(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__UpsertSurveyRequest *req = (Cxm__V1__UpsertSurveyRequest *)msg;
    fb_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = fb_check_survey(req->survey, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, fdb_store(ctx->db), req, upsert_job);
}

/* ---- GetSurvey, ListSurveys ---- */

static void on_get_survey(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__GetSurveyRequest *req = (Cxm__V1__GetSurveyRequest *)msg;
    fb_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = fb_check_get_survey(req, err);
    cxm_txn *t;
    if (rc != 0 || (rc = cxm_store_read_begin(fdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, err);
    Cxm__V1__GetSurveyResponse resp = CXM__V1__GET_SURVEY_RESPONSE__INIT;
    uint32_t head = 0;
    uint64_t n;
    rc = fdb_survey_head(t, ctx->db, req->survey_id, &head, &n);
    if (rc == 0)
        rc = fdb_survey_get(t, ctx->db, cxm_call_arena(call), req->survey_id, req->version,
                            &resp.survey);
    cxm_store_read_end(t);
    if (rc == CXM_ENOTFOUND && head)
        cxm_svc_errf(err, rc, "version", "survey \"%s\" has versions 1 to %u", req->survey_id,
                     head);
    else if (rc == CXM_ENOTFOUND)
        cxm_svc_errf(err, rc, "survey_id", "no survey \"%s\"", req->survey_id);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_call_reply(call, &resp.base);
}

typedef struct list_ctx {
    cxm_arena *a;
    bool active_only;
    int limit;
    size_t budget, used;
    Cxm__V1__Survey **out;
    size_t n;
    bool more;
} list_ctx;

static int list_one(const Cxm__V1__Survey *s, void *user)
{
    list_ctx *l = user;
    if (l->active_only && !s->active)
        return 0;
    size_t size = cxm_svc_field_size(protobuf_c_message_get_packed_size(&s->base));
    if (l->n == (size_t)l->limit || (l->n && l->used + size > l->budget)) {
        l->more = true;
        return 1;
    }
    l->used += size;
    l->out[l->n++] = (Cxm__V1__Survey *)s;
    return 0;
}

static void on_list_surveys(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__ListSurveysRequest *req = (Cxm__V1__ListSurveysRequest *)msg;
    fb_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    list_ctx l = {
        .a = a, .active_only = req->active_only, .budget = cxm_svc_reply_budget(call, 600)};
    Cxm__V1__ListSurveysRequest f = *req;
    f.page_size = 0;
    f.page_token = "";
    const ProtobufCMessage *m[] = {&f.base};
    uint64_t filters = cxm_svc_hash_messages(a, m, 1);
    const char *after;
    int rc =
        cxm_svc_page_size(req->page_size, SURVEYS_PAGE_DEFAULT, SURVEYS_PAGE_MAX, &l.limit, err);
    if (rc == 0)
        rc = cxm_svc_token_parse(req->page_token, filters, &after, err);
    if (rc == 0 && !(l.out = cxm_arena_alloc(a, (size_t)l.limit * sizeof *l.out)))
        rc = CXM_ENOMEM;
    cxm_txn *t;
    if (rc != 0 || (rc = cxm_store_read_begin(fdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, err);
    rc = fdb_survey_list(t, ctx->db, a, after, list_one, &l);
    cxm_store_read_end(t);
    Cxm__V1__ListSurveysResponse resp = CXM__V1__LIST_SURVEYS_RESPONSE__INIT;
    resp.surveys = l.out;
    resp.n_surveys = l.n;
    if (rc == 0 && l.more && l.n) {
        const char *last = l.out[l.n - 1]->survey_id;
        if (!(resp.next_page_token = cxm_svc_token_make(a, filters, last, strlen(last))))
            rc = CXM_ENOMEM;
    }
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_call_reply(call, &resp.base);
}

/* ---- GetScores, GapAnalysis ---- */

/* One analytic over a fan_src in a read transaction: fn runs fan_scores
 * or fan_gaps on the request and sets the response. */
typedef int (*analytic_fn)(const fan_src *src, const ProtobufCMessage *req, cxm_arena *a,
                           ProtobufCMessage **out, char *err);

static void run_analytic(cxm_call *call, const ProtobufCMessage *req, const char *segment_id,
                         analytic_fn fn)
{
    fb_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    cxm_txn *t;
    int rc = cxm_store_read_begin(fdb_store(ctx->db), &t);
    if (rc != 0)
        return cxm_svc_finish(call, rc, "");
    fan_src src;
    ProtobufCMessage *out = NULL;
    rc = fdb_src(t, ctx->db, a, segment_id, &src);
    if (rc == 0)
        rc = fn(&src, req, a, &out, err);
    if (rc == 0)
        cxm_call_reply(call, out);
    cxm_store_read_end(t);
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

static int scores_fn(const fan_src *src, const ProtobufCMessage *req, cxm_arena *a,
                     ProtobufCMessage **out, char *err)
{
    return fan_scores(src, (const Cxm__V1__GetScoresRequest *)req, a,
                      (Cxm__V1__GetScoresResponse **)out, err);
}

static int gaps_fn(const fan_src *src, const ProtobufCMessage *req, cxm_arena *a,
                   ProtobufCMessage **out, char *err)
{
    return fan_gaps(src, (const Cxm__V1__GapAnalysisRequest *)req, a,
                    (Cxm__V1__GapAnalysisResponse **)out, err);
}

static void on_scores(cxm_call *call, const ProtobufCMessage *msg)
{
    run_analytic(call, msg, ((const Cxm__V1__GetScoresRequest *)msg)->segment_id, scores_fn);
}

static void on_gaps(cxm_call *call, const ProtobufCMessage *msg)
{
    run_analytic(call, msg, NULL, gaps_fn);
}

/* ---- AnalyzeText ---- */

static void on_analyze(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__AnalyzeTextRequest *req = (const Cxm__V1__AnalyzeTextRequest *)msg;
    fb_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    fsent_result r;
    int rc = fb_check_analyze(req, err);
    if (rc == 0)
        rc = fsent_analyze(ctx->senti, req->text, strlen(req->text), lang_of(req->language),
                           req->include_aspects, &r);
    Cxm__V1__AnalyzeTextResponse resp = CXM__V1__ANALYZE_TEXT_RESPONSE__INIT;
    if (rc == 0 && !(resp.sentiment = sentiment_msg(cxm_call_arena(call), &r)))
        rc = CXM_ENOMEM;
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_call_reply(call, &resp.base);
}

/* ---- the bus ---- */

int fb_apply_journey(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    fb_ctx *ctx = user;
    if (ev->payload_case != CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED || !*s0(ev->customer_id))
        return 0;
    int rc = fdb_stage_set(t, ctx->db, ev->customer_id, ev->stage_changed->to_stage);
    return rc == CXM_ETOOBIG ? 0 : rc; /* an id over the key limit cannot be ours */
}

static int apply_segments(cxm_txn *t, fb_ctx *ctx, const char *customer_id,
                          const Cxm__V1__SegmentMembershipChanged *m)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->n_entered_segment_ids; i++)
        rc = fdb_segment_set(t, ctx->db, m->entered_segment_ids[i], customer_id, true);
    for (size_t i = 0; rc == 0 && i < m->n_left_segment_ids; i++)
        rc = fdb_segment_set(t, ctx->db, m->left_segment_ids[i], customer_id, false);
    return rc;
}

int fb_apply_profile(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    fb_ctx *ctx = user;
    int rc = 0;
    switch (ev->payload_case) {
    case CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED: {
        const Cxm__V1__CustomerMerged *m = ev->customer_merged;
        rc = fdb_merge_set(t, ctx->db, m->source_customer_id, m->target_customer_id);
        if (rc == 0)
            rc = ffu_merge(t, ctx->fu, m->source_customer_id, m->target_customer_id);
        break;
    }
    case CXM__V1__EVENT__PAYLOAD_CUSTOMER_UNMERGED: {
        const Cxm__V1__CustomerUnmerged *m = ev->customer_unmerged;
        rc = fdb_merge_clear(t, ctx->db, m->source_customer_id, m->target_customer_id);
        if (rc == 0)
            rc = ffu_unmerge(t, ctx->fu, m->source_customer_id, m->target_customer_id);
        cxm_resolver_invalidate(ctx->resolver);
        break;
    }
    case CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED:
        rc = apply_segments(t, ctx, ev->customer_id, ev->segment_membership_changed);
        break;
    default:
        break;
    }
    if (rc == CXM_EINVAL || rc == CXM_ETOOBIG) { /* can never apply: skip it, do not block */
        cxm_log_warn("feedback.event_skipped", "profile event %" PRIu64 " (%s of %s) ignored: %s",
                     ev->sequence, ev->type ? ev->type : "", ev->customer_id ? ev->customer_id : "",
                     cxm_strerror(rc));
        return 0;
    }
    return rc;
}

int fb_erase(cxm_txn *t, const char *customer_id, char *const *merged, size_t nmerged,
             uint64_t *records, void *user)
{
    fb_ctx *ctx = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    uint64_t n = 0;
    int rc = fdb_erase(t, ctx->db, &a, customer_id, merged, nmerged, &n);
    if (rc == 0)
        rc = ffu_erase(t, ctx->fu, customer_id, merged, nmerged, &n);
    cxm_arena_dispose(&a);
    if (rc == 0) {
        *records = n;
        cxm_resolver_invalidate(ctx->resolver);
    }
    return rc;
}

/* ---- the method table ---- */

const cxm_method fb_methods[] = {
    CXM_UNARY_METHOD("UpsertSurvey", cxm__v1__upsert_survey_request, on_upsert),
    CXM_UNARY_METHOD("SubmitResponse", cxm__v1__submit_response_request, on_submit),
    CXM_UNARY_METHOD("GetScores", cxm__v1__get_scores_request, on_scores),
    CXM_UNARY_METHOD("GapAnalysis", cxm__v1__gap_analysis_request, on_gaps),
    CXM_UNARY_METHOD("ListFollowUps", cxm__v1__list_follow_ups_request, ffu_on_list),
    CXM_UNARY_METHOD("UpdateFollowUp", cxm__v1__update_follow_up_request, ffu_on_update),
    CXM_UNARY_METHOD("AnalyzeText", cxm__v1__analyze_text_request, on_analyze),
    CXM_UNARY_METHOD("GetSurvey", cxm__v1__get_survey_request, on_get_survey),
    CXM_UNARY_METHOD("ListSurveys", cxm__v1__list_surveys_request, on_list_surveys),
    CXM_UNARY_METHOD("CheckEligibility", cxm__v1__check_eligibility_request, on_eligibility),
    CXM_UNARY_METHOD("GetFollowUpPolicy", cxm__v1__get_follow_up_policy_request, ffu_on_get_policy),
    CXM_UNARY_METHOD("SetFollowUpPolicy", cxm__v1__set_follow_up_policy_request, ffu_on_set_policy),
};
const size_t fb_nmethods = sizeof fb_methods / sizeof fb_methods[0];

/* Who may call each method with auth on (auth.h has the whole table and the
 * reasoning); keep in step with the method table above. */
const cxm_method_access fb_access[] = {
    {"UpsertSurvey", CXM_ACCESS_WRITE},     {"SubmitResponse", CXM_ACCESS_WRITE},
    {"GetScores", CXM_ACCESS_READ},         {"GapAnalysis", CXM_ACCESS_READ},
    {"ListFollowUps", CXM_ACCESS_READ},     {"UpdateFollowUp", CXM_ACCESS_WRITE},
    {"AnalyzeText", CXM_ACCESS_READ},       {"GetSurvey", CXM_ACCESS_READ},
    {"ListSurveys", CXM_ACCESS_READ},       {"CheckEligibility", CXM_ACCESS_READ},
    {"GetFollowUpPolicy", CXM_ACCESS_READ}, {"SetFollowUpPolicy", CXM_ACCESS_WRITE},
};
const size_t fb_naccess = sizeof fb_access / sizeof fb_access[0];
