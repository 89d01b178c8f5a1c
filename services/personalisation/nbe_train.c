/*
 * nbe_train.c - training, model infos and the keeper thread (nbe_train.h).
 */
#include "nbe_train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/svc.h"
#include "nbe_check.h"

#define STALE_BATCH 256      /* customers refreshed per pass */
#define KEEPER_IDLE_MS 20    /* how long the keeper sleeps when nothing is stale */
#define POLICY_EVERY_MS 1000 /* how often the retrain policy is checked */
#define TRIGGER_MAX 64
#define PHASE_MAX 32
#define PARAMS_MAX 5

/* What one training is asked to do. */
typedef struct train_req {
    reco_algo algo; /* 0 = automatic */
    reco_params params;
    bool has_params;
    int64_t since_ms;
    double holdout;
    recodb_activation activation;
    bool asked; /* by TrainModel ("rpc"), not by the policy */
    char trigger[TRIGGER_MAX];
} train_req;

/* A training asked for and who waits for its result. */
typedef struct train_ask {
    train_req req;
    cxm_call *call;   /* answered when it ends; NULL for run_async and the policy */
    int64_t asked_ms; /* when TrainModel (or the policy) asked */
} train_ask;

struct nbe_train {
    nbe_ctx *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t trainer, keeper;
    bool trainer_started, keeper_started, stop;
    /* Under mu. cur: the training running (busy), or about to (queued: the
     * trainer has not taken it yet). next: a TrainModel that arrived while
     * an automatic cur runs; it becomes cur, without a gap, when cur ends. */
    bool busy, queued, has_next;
    train_ask cur, next;
    int64_t started_ms;
    double progress;
    char phase[PHASE_MAX];
    /* The policy's marks: appends and time at the latest start, and the
     * latest training's end and duration (the policy pauses that long). */
    uint64_t appended_mark;
    int64_t time_mark;
    int64_t last_end_ms, last_took_ms;
    uint64_t unactivated; /* a version kept but not serving, dropped by the next training */
};

static const char *s0(const char *s)
{
    return s ? s : "";
}

/* ---- the proto's names for recodb's ---- */

static Cxm__V1__Algorithm algo_proto(reco_algo a)
{
    switch (a) {
    case RECO_EASE:
        return CXM__V1__ALGORITHM__ALGORITHM_EASE;
    case RECO_ITEMKNN:
        return CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN;
    case RECO_ALS:
        return CXM__V1__ALGORITHM__ALGORITHM_ALS;
    case RECO_POP:
        return CXM__V1__ALGORITHM__ALGORITHM_POPULARITY;
    case RECO_SEQ:
        return CXM__V1__ALGORITHM__ALGORITHM_SEQUENCE;
    default:
        return CXM__V1__ALGORITHM__ALGORITHM_AUTO;
    }
}

static recodb_activation activation_of(Cxm__V1__Activation a)
{
    return a == CXM__V1__ACTIVATION__ACTIVATION_ALWAYS  ? RECODB_ACTIVATE_ALWAYS
           : a == CXM__V1__ACTIVATION__ACTIVATION_NEVER ? RECODB_ACTIVATE_NEVER
                                                        : RECODB_ACTIVATE_IF_BETTER;
}

typedef struct param_val {
    const char *name;
    double v;
} param_val;

/* Every parameter of algo by its proto name. */
static size_t params_of(reco_algo algo, const reco_params *p, param_val *out)
{
    switch (algo) {
    case RECO_EASE:
        out[0] = (param_val){"lambda", p->lambda};
        return 1;
    case RECO_ITEMKNN:
        out[0] = (param_val){"neighbours", p->neighbours};
        out[1] = (param_val){"shrinkage", p->shrink};
        return 2;
    case RECO_ALS:
        out[0] = (param_val){"factors", p->factors};
        out[1] = (param_val){"regularisation", p->lambda};
        out[2] = (param_val){"alpha", p->alpha};
        out[3] = (param_val){"iterations", p->iterations};
        return 4;
    case RECO_POP:
        out[0] = (param_val){"half_life_days", p->half_life / 86400.0};
        return 1;
    case RECO_SEQ:
        out[0] = (param_val){"lambda", p->lambda};
        out[1] = (param_val){"seq_lambda", p->seq_lambda};
        out[2] = (param_val){"seq_half", p->seq_half};
        out[3] = (param_val){"hist_half", p->hist_half};
        out[4] = (param_val){"blend", p->blend};
        return 5;
    default:
        return 0;
    }
}

static int params_msg(cxm_arena *a, reco_algo algo, const reco_params *p, Cxm__V1__ModelInfo *m)
{
    param_val v[PARAMS_MAX];
    size_t n = params_of(algo, p, v);
    Cxm__V1__ModelInfo__ParamsEntry *e = cxm_arena_calloc(a, n + 1, sizeof *e);
    m->params = cxm_arena_alloc(a, (n + 1) * sizeof *m->params);
    if (!e || !m->params)
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        cxm__v1__model_info__params_entry__init(&e[i]);
        e[i].key = (char *)v[i].name;
        e[i].value = v[i].v;
        m->params[i] = &e[i];
    }
    m->n_params = n;
    return 0;
}

/* ---- the training in memory ---- */

/* A training not ended yet as GetModelInfo.training (and run_async's
 * answer) shows it. */
static Cxm__V1__ModelInfo *training_msg(cxm_arena *a, const train_req *rq, int64_t started_ms,
                                        double progress, const char *phase)
{
    Cxm__V1__ModelInfo *m = cxm_arena_alloc(a, sizeof *m);
    if (!m)
        return NULL;
    cxm__v1__model_info__init(m);
    m->state = CXM__V1__MODEL_STATE__MODEL_STATE_TRAINING;
    m->algorithm = algo_proto(rq->algo);
    m->started_at_unix_ms = started_ms;
    m->progress = progress;
    m->phase = cxm_arena_strndup(a, phase, strlen(phase));
    m->trigger = cxm_arena_strndup(a, rq->trigger, strlen(rq->trigger));
    if (!m->phase || !m->trigger ||
        (rq->has_params && params_msg(a, rq->algo, &rq->params, m) != 0))
        return NULL;
    return m;
}

/* The current training, under tr->mu. */
static Cxm__V1__ModelInfo *current_msg(nbe_train *tr, cxm_arena *a)
{
    return training_msg(a, &tr->cur.req, tr->started_ms, tr->progress,
                        *tr->phase ? tr->phase : "starting");
}

static void on_progress(double done, const char *phase, void *user)
{
    nbe_train *tr = user;
    pthread_mutex_lock(&tr->mu);
    tr->progress = done < 0 ? 0 : done > 1 ? 1 : done;
    snprintf(tr->phase, sizeof tr->phase, "%s", s0(phase));
    pthread_mutex_unlock(&tr->mu);
}

/* Make ask the current training and wake the trainer; under tr->mu. The
 * policy counts from here. */
static void take(nbe_train *tr, const train_ask *ask)
{
    tr->busy = tr->queued = true;
    tr->cur = *ask;
    tr->started_ms = cxm_svc_now_ms();
    tr->progress = 0;
    snprintf(tr->phase, sizeof tr->phase, "%s", "queued");
    tr->appended_mark = recodb_appended(tr->ctx->reco);
    tr->time_mark = tr->started_ms;
    pthread_cond_broadcast(&tr->cv);
}

static void utc(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%" PRId64 " ms", ms);
}

/* A TrainModel while another one runs or waits: the caller polls instead. */
static int refuse(const train_ask *other, bool waiting, char *err)
{
    char when[32];
    utc(other->asked_ms, when);
    return cxm_svc_errf(err, CXM_ESTALE, NULL,
                        "a TrainModel started at %s is running%s: poll GetModelInfo until its "
                        "training ends, then train again",
                        when, waiting ? " (waiting for the automatic training to end)" : "");
}

/* A TrainModel's ask: started now, queued behind an automatic training
 * (*waits), or refused (CXM_ESTALE) while another TrainModel's runs or
 * waits. *started_ms is when it started (0 when it waits). */
static int train_begin(nbe_train *tr, const train_ask *ask, bool *waits, int64_t *started_ms,
                       char *err)
{
    int rc = 0;
    pthread_mutex_lock(&tr->mu);
    *waits = false;
    *started_ms = 0;
    if (tr->stop)
        rc = cxm_svc_errf(err, CXM_EUNAVAIL, NULL, "the service is shutting down");
    else if (tr->has_next)
        rc = refuse(&tr->next, true, err);
    else if (tr->busy && tr->cur.req.asked)
        rc = refuse(&tr->cur, false, err);
    else if (tr->busy) {
        tr->next = *ask;
        tr->has_next = *waits = true;
    } else {
        take(tr, ask);
        *started_ms = tr->started_ms;
    }
    pthread_mutex_unlock(&tr->mu);
    return rc;
}

/* ---- the result ---- */

typedef struct train_out {
    int rc;
    char why[256];
    recodb_train_report rep;
    recodb_metrics met;
    bool activated;
    uint64_t cur0, prev0; /* serving and previous before */
    int64_t started_ms, ended_ms;
} train_out;

static Cxm__V1__ModelMetrics *metrics_msg(cxm_arena *a, const recodb_metrics *x)
{
    Cxm__V1__ModelMetrics *m = cxm_arena_alloc(a, sizeof *m);
    if (!m)
        return NULL;
    cxm__v1__model_metrics__init(m);
    m->k = x->k;
    m->precision_at_k = x->precision;
    m->recall_at_k = x->recall;
    m->ndcg_at_k = x->ndcg;
    m->coverage = x->coverage;
    m->holdout_customers = x->customers;
    return m;
}

static Cxm__V1__ModelChoice *choice_msg(cxm_arena *a, const reco_choice *c)
{
    Cxm__V1__ModelChoice *m = cxm_arena_alloc(a, sizeof *m);
    if (!m)
        return NULL;
    cxm__v1__model_choice__init(m);
    m->validation = c->validate == RECO_VALIDATE_RANDOM ? "random" : "temporal";
    m->customers = c->val_customers;
    m->ndcg_at_10 = c->val_ndcg;
    m->ease_ndcg_at_10 = c->ease_ndcg;
    m->note = cxm_arena_strndup(a, c->note, strlen(c->note));
    return m->note ? m : NULL;
}

static Cxm__V1__ModelInfo *result_msg(cxm_arena *a, const train_req *rq, const train_out *o)
{
    Cxm__V1__ModelInfo *m = cxm_arena_alloc(a, sizeof *m);
    if (!m)
        return NULL;
    cxm__v1__model_info__init(m);
    reco_algo algo = o->rc == 0 ? o->rep.algo : rq->algo;
    reco_params p = rq->params;
    if (!rq->has_params && algo)
        reco_params_default(algo, &p);
    if (o->rc == 0 && o->rep.chosen)
        p = o->rep.choice.params;
    m->version = o->rc == 0 ? o->rep.version : 0;
    m->state = o->rc != 0     ? CXM__V1__MODEL_STATE__MODEL_STATE_FAILED
               : o->activated ? CXM__V1__MODEL_STATE__MODEL_STATE_SERVING
                              : CXM__V1__MODEL_STATE__MODEL_STATE_READY;
    m->algorithm = algo_proto(algo);
    m->started_at_unix_ms = o->started_ms;
    m->trained_at_unix_ms = o->ended_ms;
    m->training_ms = o->ended_ms - o->started_ms;
    m->activated_at_unix_ms = o->activated ? o->ended_ms : 0;
    m->customers = o->rep.customers;
    m->items = o->rep.items;
    m->interactions = o->rep.interactions;
    m->error = cxm_arena_strndup(a, o->why, o->rc ? strlen(o->why) : 0);
    m->trigger = cxm_arena_strndup(a, rq->trigger, strlen(rq->trigger));
    m->progress = 1;
    m->phase = "";
    if (!m->error || !m->trigger || params_msg(a, algo, &p, m) != 0)
        return NULL;
    if (o->rc == 0 && !(m->metrics = metrics_msg(a, &o->met)))
        return NULL;
    if (o->rc == 0 && o->rep.chosen && !(m->choice = choice_msg(a, &o->rep.choice)))
        return NULL;
    return m;
}

typedef struct store_infos {
    nbe_ctx *ctx;
    cxm_arena *a;
    const Cxm__V1__ModelInfo *info;
    const train_out *o;
    uint64_t dropped; /* the unactivated version this training replaced */
} store_infos;

/* Set the stored state of version v, when it has an info. */
static int restate(cxm_txn *t, store_infos *s, uint64_t v, Cxm__V1__ModelState state)
{
    Cxm__V1__ModelInfo *m;
    if (!v)
        return 0;
    int rc = xdb_model_get(t, s->ctx->db, s->a, v, &m);
    if (rc == CXM_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    m->state = state;
    return xdb_model_put(t, s->ctx->db, s->a, m);
}

static int store_infos_fn(cxm_txn *t, void *user)
{
    store_infos *s = user;
    int rc = xdb_model_put(t, s->ctx->db, s->a, s->info);
    if (rc == 0 && s->dropped && s->dropped != s->info->version)
        rc = restate(t, s, s->dropped, CXM__V1__MODEL_STATE__MODEL_STATE_RETIRED);
    if (rc == 0 && s->o->activated && s->o->cur0)
        rc = restate(t, s, s->o->cur0, CXM__V1__MODEL_STATE__MODEL_STATE_READY);
    if (rc == 0 && s->o->activated && s->o->prev0)
        rc = restate(t, s, s->o->prev0, CXM__V1__MODEL_STATE__MODEL_STATE_RETIRED);
    return rc;
}

/* An empty log is the caller's to fix, not a bad argument. */
static int train_error(const train_out *o, char *err)
{
    if (o->rc == CXM_EINVAL && (strstr(o->why, "empty") || strstr(o->why, "no interactions")))
        return cxm_svc_errf(err, CXM_ESTALE, NULL,
                            "no interactions to train on: RecordInteractions first");
    return cxm_svc_errf(err, o->rc, NULL, "training failed: %s", o->why);
}

static void answer(cxm_call *call, const train_out *o, Cxm__V1__ModelInfo *info)
{
    char err[CXM_SVC_ERR_MAX] = "";
    if (!call)
        return;
    if (o->rc != 0)
        return cxm_svc_finish(call, train_error(o, err), err);
    if (!info)
        return cxm_svc_finish(call, CXM_ENOMEM, "");
    Cxm__V1__TrainModelResponse resp = CXM__V1__TRAIN_MODEL_RESPONSE__INIT;
    resp.model = info;
    resp.activated = o->activated;
    cxm_call_reply(call, &resp.base);
}

/* The automatic choice of a training, for the operator: what it chose,
 * against what, and why anything was left out. */
static void log_choice(const recodb_train_report *rep)
{
    const reco_choice *c = &rep->choice;
    const reco_params *p = &c->params;
    cxm_log_info("personalisation.model_chosen",
                 "model %" PRIu64 ": %s (seq_lambda %g, hist_half %g, blend %g) on %s "
                 "validation of %" PRIu32 " customers: NDCG@10 %.4f, EASE alone %.4f%s%s",
                 rep->version,
                 c->algo == RECO_SEQ   ? "sequence"
                 : c->algo == RECO_POP ? "popularity"
                                       : "EASE",
                 p->seq_lambda, p->hist_half, p->blend,
                 c->validate == RECO_VALIDATE_RANDOM ? "random" : "temporal", c->val_customers,
                 c->val_ndcg, c->ease_ndcg, c->note[0] ? "; " : "", c->note);
}

/* One training's state for recodb's callbacks. */
typedef struct train_run_ctx {
    nbe_train *tr;
    const train_req *rq;
    train_out *o;
    cxm_arena *a;
    Cxm__V1__ModelInfo *info; /* stored with the version */
} train_run_ctx;

static void run_progress(double done, const char *phase, void *user)
{
    on_progress(done, phase, ((train_run_ctx *)user)->tr);
}

/* In the transaction that stores the new version: its info and the other
 * versions' states, so GetModelInfo never sees the version without them. */
static int run_publish(cxm_txn *t, const recodb_train_report *rep, const recodb_metrics *metrics,
                       bool activated, void *user)
{
    train_run_ctx *c = user;
    train_out *o = c->o;
    o->rep = *rep;
    o->met = *metrics;
    o->activated = activated;
    o->ended_ms = cxm_svc_now_ms();
    if (!(c->info = result_msg(c->a, c->rq, o)))
        return CXM_ENOMEM;
    store_infos s = {c->tr->ctx, c->a, c->info, o, c->tr->unactivated};
    return store_infos_fn(t, &s);
}

/* Train, and store the model's info (with the version; a failure's on its
 * own); the info to answer with (in a), or NULL when out of memory. */
static Cxm__V1__ModelInfo *train_run(nbe_train *tr, const train_req *rq, train_out *out,
                                     cxm_arena *a)
{
    nbe_ctx *ctx = tr->ctx;
    train_out o = {.started_ms = cxm_svc_now_ms()};
    recodb_versions(ctx->reco, &o.cur0, &o.prev0);
    cxm_arena_init(a, NULL, 0, 0);
    train_run_ctx c = {tr, rq, &o, a, NULL};
    recodb_train_opts opts = {.algo = rq->algo,
                              .params = rq->has_params ? &rq->params : NULL,
                              .since = rq->since_ms / 1000,
                              .holdout_fraction = rq->holdout,
                              .activation = rq->activation,
                              .progress = run_progress,
                              .on_publish = run_publish,
                              .user = &c};
    o.rc = recodb_train_ex(ctx->reco, &opts, &o.rep, &o.met, &o.activated, o.why, sizeof o.why);
    Cxm__V1__ModelInfo *info = c.info;
    int rc = 0;
    if (o.rc != 0) {
        o.ended_ms = cxm_svc_now_ms();
        info = result_msg(a, rq, &o);
        store_infos s = {ctx, a, info, &o, tr->unactivated};
        rc = info ? cxm_store_write(ctx->store, store_infos_fn, &s) : CXM_ENOMEM;
    }
    if (rc != 0)
        cxm_log_error("personalisation.model_info",
                      "cannot store the info of model %" PRIu64 ": %s", o.rep.version,
                      cxm_strerror(rc));
    if (o.rc == 0)
        tr->unactivated = o.activated ? 0 : o.rep.version;
    if (o.rc == 0 && o.rep.chosen)
        log_choice(&o.rep);
    else if (o.rc != 0)
        cxm_log_warn("personalisation.train_failed", "training (%s) failed: %s", rq->trigger,
                     o.why);
    *out = o;
    return info;
}

/* cur ended (under tr->mu): the policy pauses as long as it took, and a
 * TrainModel waiting for it starts. */
static void train_ended(nbe_train *tr, int64_t began_ms)
{
    tr->last_end_ms = cxm_svc_now_ms();
    tr->last_took_ms = tr->last_end_ms - began_ms;
    tr->cur.call = NULL;
    tr->busy = false;
    if (tr->has_next) {
        tr->has_next = false;
        take(tr, &tr->next);
    }
}

static void *trainer_main(void *arg)
{
    nbe_train *tr = arg;
    pthread_mutex_lock(&tr->mu);
    for (;;) {
        while (!tr->queued && !tr->stop)
            pthread_cond_wait(&tr->cv, &tr->mu);
        if (!tr->queued)
            break;
        train_ask ask = tr->cur;
        tr->queued = false;
        pthread_mutex_unlock(&tr->mu);
        int64_t began_ms = cxm_svc_now_ms();
        train_out o;
        cxm_arena a;
        Cxm__V1__ModelInfo *info = train_run(tr, &ask.req, &o, &a);
        pthread_mutex_lock(&tr->mu);
        train_ended(tr, began_ms);
        pthread_mutex_unlock(&tr->mu);
        /* Answered once the training is over for GetModelInfo too: a client
         * asking right after its TrainModel must not see it still running. */
        answer(ask.call, &o, info);
        cxm_arena_dispose(&a);
        pthread_mutex_lock(&tr->mu);
    }
    pthread_mutex_unlock(&tr->mu);
    return NULL;
}

/* ---- the keeper: candidate caches and the retrain policy ---- */

/* One batch of stale customers, computed in one read and written in one
 * write (recodb_refresh_many). */
static size_t refresh_stale(nbe_ctx *ctx)
{
    char *ids[STALE_BATCH];
    size_t n = recodb_stale(ctx->reco, ids, STALE_BATCH);
    recodb_reader *r = nbe_reader(ctx);
    if (n && r)
        recodb_refresh_many(ctx->reco, r, ids, n);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    return n;
}

/* The policy's trigger, or "" when it does not train now; under tr->mu.
 * It yields to TrainModel (never while one runs or waits) and pauses after
 * a training as long as that training took, so a bulk load does not keep
 * the CPU training back to back. */
static void policy_due(nbe_train *tr, char *trigger)
{
    const nbe_flags *f = &tr->ctx->flags;
    int64_t now = cxm_svc_now_ms();
    *trigger = 0;
    if (tr->busy || tr->has_next || now < tr->last_end_ms + tr->last_took_ms)
        return;
    if (f->retrain_interactions &&
        recodb_appended(tr->ctx->reco) - tr->appended_mark >= f->retrain_interactions)
        snprintf(trigger, TRIGGER_MAX, "every %" PRIu64 " interactions", f->retrain_interactions);
    else if (f->retrain_minutes && now - tr->time_mark >= (int64_t)f->retrain_minutes * 60000)
        snprintf(trigger, TRIGGER_MAX, "every %u minutes", f->retrain_minutes);
}

static void policy_check(nbe_train *tr)
{
    train_ask ask = {.req = {.activation = RECODB_ACTIVATE_IF_BETTER}};
    pthread_mutex_lock(&tr->mu);
    policy_due(tr, ask.req.trigger);
    if (*ask.req.trigger && !tr->stop) {
        ask.asked_ms = cxm_svc_now_ms();
        take(tr, &ask);
    }
    pthread_mutex_unlock(&tr->mu);
}

static void wait_ms(nbe_train *tr, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&tr->mu);
    if (!tr->stop)
        pthread_cond_timedwait(&tr->cv, &tr->mu, &ts);
    pthread_mutex_unlock(&tr->mu);
}

static void *keeper_main(void *arg)
{
    nbe_train *tr = arg;
    int64_t last_policy = 0;
    for (;;) {
        pthread_mutex_lock(&tr->mu);
        bool stop = tr->stop;
        pthread_mutex_unlock(&tr->mu);
        if (stop)
            break;
        size_t n = refresh_stale(tr->ctx);
        int64_t now = cxm_svc_now_ms();
        if (now - last_policy >= POLICY_EVERY_MS) {
            policy_check(tr);
            last_policy = now;
        }
        if (n < STALE_BATCH)
            wait_ms(tr, KEEPER_IDLE_MS);
    }
    return NULL;
}

int nbe_train_start(nbe_ctx *ctx)
{
    nbe_train *tr = calloc(1, sizeof *tr);
    if (!tr)
        return CXM_ENOMEM;
    pthread_mutex_init(&tr->mu, NULL);
    pthread_cond_init(&tr->cv, NULL);
    tr->ctx = ctx;
    tr->time_mark = cxm_svc_now_ms();
    tr->appended_mark = recodb_appended(ctx->reco);
    ctx->train = tr;
    tr->trainer_started = pthread_create(&tr->trainer, NULL, trainer_main, tr) == 0;
    tr->keeper_started =
        tr->trainer_started && pthread_create(&tr->keeper, NULL, keeper_main, tr) == 0;
    if (!tr->keeper_started) {
        nbe_train_stop(ctx);
        return CXM_ENOMEM;
    }
    return 0;
}

void nbe_train_stop(nbe_ctx *ctx)
{
    nbe_train *tr = ctx->train;
    if (!tr)
        return;
    pthread_mutex_lock(&tr->mu);
    tr->stop = true;
    /* Asked for, never started. */
    cxm_call *orphans[2] = {tr->queued ? tr->cur.call : NULL, tr->has_next ? tr->next.call : NULL};
    tr->queued = tr->has_next = false;
    pthread_cond_broadcast(&tr->cv);
    pthread_mutex_unlock(&tr->mu);
    for (size_t i = 0; i < 2; i++)
        if (orphans[i])
            cxm_svc_finish(orphans[i], CXM_EUNAVAIL,
                           "the service is shutting down: train again later");
    if (tr->keeper_started)
        pthread_join(tr->keeper, NULL);
    if (tr->trainer_started)
        pthread_join(tr->trainer, NULL);
    pthread_cond_destroy(&tr->cv);
    pthread_mutex_destroy(&tr->mu);
    free(tr);
    ctx->train = NULL;
}

/* ---- the handlers ---- */

void nbe_on_train(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__TrainModelRequest *req = (const Cxm__V1__TrainModelRequest *)msg;
    nbe_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    train_ask ask = {.req = {.since_ms = req->since_unix_ms,
                             .holdout = req->holdout_fraction,
                             .activation = activation_of(req->activation),
                             .asked = true},
                     .call = req->run_async ? NULL : call,
                     .asked_ms = cxm_svc_now_ms()};
    snprintf(ask.req.trigger, sizeof ask.req.trigger, "%s", "rpc");
    bool waits;
    int64_t started_ms;
    int rc = nbe_check_train(req, &ask.req.algo, &ask.req.params, err);
    ask.req.has_params = ask.req.algo != 0;
    if (rc == 0)
        rc = train_begin(ctx->train, &ask, &waits, &started_ms, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    if (!req->run_async)
        return; /* the training thread answers */
    Cxm__V1__TrainModelResponse resp = CXM__V1__TRAIN_MODEL_RESPONSE__INIT;
    resp.model = training_msg(cxm_call_arena(call), &ask.req, started_ms, 0,
                              waits ? "waiting for the automatic training to end" : "queued");
    if (!resp.model)
        return cxm_svc_finish(call, CXM_ENOMEM, "");
    cxm_call_reply(call, &resp.base);
}

/* A stored version's info; one without (stored by an older build) gets
 * its number and state. */
static int stored_info(cxm_txn *t, nbe_ctx *ctx, cxm_arena *a, uint64_t v,
                       Cxm__V1__ModelState state, Cxm__V1__ModelInfo **out)
{
    *out = NULL;
    if (!v)
        return 0;
    int rc = xdb_model_get(t, ctx->db, a, v, out);
    if (rc == CXM_ENOTFOUND && (*out = cxm_arena_alloc(a, sizeof **out))) {
        cxm__v1__model_info__init(*out);
        (*out)->version = v;
        rc = 0;
    } else if (rc == CXM_ENOTFOUND) {
        rc = CXM_ENOMEM;
    }
    if (rc == 0)
        (*out)->state = state;
    return rc;
}

void nbe_on_model_info(cxm_call *call, const ProtobufCMessage *msg)
{
    (void)msg;
    nbe_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    Cxm__V1__GetModelInfoResponse resp = CXM__V1__GET_MODEL_INFO_RESPONSE__INIT;
    uint64_t cur = 0, prev = 0;
    cxm_txn *t;
    int rc = recodb_versions(ctx->reco, &cur, &prev);
    if (rc == CXM_ENOTFOUND) /* no model yet */
        rc = 0;
    if (rc != 0 || (rc = cxm_store_read_begin(ctx->store, &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    rc = stored_info(t, ctx, a, cur, CXM__V1__MODEL_STATE__MODEL_STATE_SERVING, &resp.serving);
    if (rc == 0)
        rc = stored_info(t, ctx, a, prev, CXM__V1__MODEL_STATE__MODEL_STATE_READY, &resp.previous);
    cxm_store_read_end(t);
    pthread_mutex_lock(&ctx->train->mu);
    if (rc == 0 && ctx->train->busy && !(resp.training = current_msg(ctx->train, a)))
        rc = CXM_ENOMEM;
    pthread_mutex_unlock(&ctx->train->mu);
    if (rc != 0)
        return cxm_svc_finish(call, rc, "");
    cxm_call_reply(call, &resp.base);
}
