/*
 * cxm-eval: offline evaluation of the recommendation core (reco.h).
 *
 *   cxm-eval --train TRAIN.csv --test TEST.csv --algo ease|itemknn|als|pop
 *            [--k 10] [--recs-out RECS.csv] [--json]
 *   cxm-eval --ratings R.csv --split random|temporal --test-frac 0.2
 *            --seed 42 --algo ... [--k 10]
 *   [--half-life 31536000 --max-history 200]: rank as recodb serves (the
 *            latest 200 interactions, decayed from the newest, the older
 *            ones excluded), so the number equals the Recommend RPC's.
 *
 * Trains one model on the training interactions, asks it for the top k of
 * every user with at least one training and one test interaction (their
 * training history excluded), and reports ranking metrics (evalmetrics.h),
 * catalogue coverage, training time and per-user serving latency.
 * Exit status: 0, 1 for data errors (a message naming file:line) and for a
 * failed training or a model that breaks the reco.h contract, 2 for usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/opts.h"
#include "personalisation/eval/evalcsv.h"
#include "personalisation/eval/evalmetrics.h"
#include "personalisation/reco/reco.h"
#include "personalisation/reco/recomatrix.h"

#define EVAL_EXIT_DATA 1
#define EVAL_EXIT_USAGE 2

typedef struct eval_cfg {
    const char *train, *test, *ratings, *split, *test_frac, *algo, *recs_out;
    const char *lambda, *shrink, *alpha, *half_life; /* floats: opts.h has no float type */
    const char *seq_lambda, *seq_half, *hist_half, *blend, *validate;
    int64_t k, seed, neighbours, factors, iterations, max_history;
    bool json, bm25, full_precision;
} eval_cfg;

/* Everything parsed and derived from the command line. */
typedef struct eval_plan {
    reco_algo algo; /* 0: auto (reco_train_auto) */
    reco_validate validate;
    reco_params params;
    double half_life; /* recency decay of history weights, in ts units; 0 = none */
    eval_split_kind split;
    double test_frac;
} eval_plan;

typedef struct eval_data {
    recoids users, items;
    recolog train, test;
    uint32_t nusers_train, nitems_train; /* the model's users and catalogue */
    reco_matrix trainm, testm;           /* testm spans every user and item */
} eval_data;

typedef struct eval_result {
    eval_summary sum;
    double train_seconds, p50_us, p99_us;
    reco_choice choice; /* --algo auto */
} eval_result;

static const struct {
    const char *name;
    reco_algo algo;
} eval_algos[] = {{"pop", RECO_POP}, {"itemknn", RECO_ITEMKNN}, {"ease", RECO_EASE},
                  {"als", RECO_ALS}, {"seq", RECO_SEQ},         {"auto", 0}};

static double eval_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- command line -------------------------------------------------------- */

/* A float flag given as a string; min is inclusive. */
static int eval_parse_float(const char *flag, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "cxm-eval: --%s: \"%s\" is not a number in [%g, %g]\n", flag, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int eval_parse_algo(const char *name, reco_algo *out)
{
    for (size_t i = 0; i < sizeof eval_algos / sizeof eval_algos[0]; i++) {
        if (strcmp(name, eval_algos[i].name) == 0) {
            *out = eval_algos[i].algo;
            return 0;
        }
    }
    fprintf(stderr, "cxm-eval: --algo: \"%s\" is not one of ease, itemknn, als, pop, seq, auto\n",
            name);
    return -1;
}

static const char *eval_algo_name(reco_algo algo)
{
    for (size_t i = 0; i < sizeof eval_algos / sizeof eval_algos[0]; i++)
        if (eval_algos[i].algo == algo)
            return eval_algos[i].name;
    return "?";
}

/* reco_params_default, then whatever flags were given. */
static int eval_params(const eval_cfg *c, eval_plan *plan)
{
    reco_params *p = &plan->params;
    reco_params_default(plan->algo ? plan->algo : RECO_SEQ, p);
    if ((c->lambda && eval_parse_float("lambda", c->lambda, 0, 1e12, &p->lambda)) ||
        (c->shrink && eval_parse_float("shrink", c->shrink, 0, 1e12, &p->shrink)) ||
        (c->alpha && eval_parse_float("alpha", c->alpha, 0, 1e12, &p->alpha)) ||
        (c->half_life && eval_parse_float("half-life", c->half_life, 0, 1e18, &plan->half_life)) ||
        (c->seq_lambda &&
         eval_parse_float("seq-lambda", c->seq_lambda, 1e-9, 1e12, &p->seq_lambda)) ||
        (c->seq_half && eval_parse_float("seq-half", c->seq_half, 1e-3, 1e6, &p->seq_half)) ||
        (c->hist_half && eval_parse_float("hist-half", c->hist_half, 0, 1e6, &p->hist_half)) ||
        (c->blend && eval_parse_float("blend", c->blend, 0, 1, &p->blend)))
        return -1;
    /* 0 means "not given": the opts range check keeps given values >= 1. */
    if (c->neighbours)
        p->neighbours = (uint32_t)c->neighbours;
    if (c->bm25)
        p->knn_weighting = RECO_KNN_BM25;
    p->full_precision = c->full_precision;
    if (c->factors)
        p->factors = (uint32_t)c->factors;
    if (c->iterations)
        p->iterations = (uint32_t)c->iterations;
    return 0;
}

static int eval_usage_error(const char *msg)
{
    fprintf(stderr, "cxm-eval: %s (see --help)\n", msg);
    return -1;
}

/* Check the combination of flags and parse the rest into plan. */
static int eval_plan_make(const eval_cfg *c, eval_plan *plan)
{
    bool files = c->train || c->test;
    if (!c->algo)
        return eval_usage_error("--algo is required");
    if (files && c->ratings)
        return eval_usage_error("give either --train and --test, or --ratings, not both");
    if (files && !(c->train && c->test))
        return eval_usage_error("--train and --test go together");
    if (!files && !c->ratings)
        return eval_usage_error("give --train and --test, or --ratings");
    if (eval_parse_algo(c->algo, &plan->algo))
        return -1;
    if (strcmp(c->split, "random") == 0)
        plan->split = EVAL_SPLIT_RANDOM;
    else if (strcmp(c->split, "temporal") == 0)
        plan->split = EVAL_SPLIT_TEMPORAL;
    else
        return eval_usage_error("--split must be random or temporal");
    if (eval_parse_float("test-frac", c->test_frac, 0, 1, &plan->test_frac))
        return -1;
    /* Validation asks what the test asks: the split's kind, and the
     * future when the test comes as a file. */
    const char *v = c->validate ? c->validate : files ? "temporal" : c->split;
    if (strcmp(v, "random") == 0)
        plan->validate = RECO_VALIDATE_RANDOM;
    else if (strcmp(v, "temporal") == 0)
        plan->validate = RECO_VALIDATE_TEMPORAL;
    else
        return eval_usage_error("--validate must be random or temporal");
    return eval_params(c, plan);
}

/* ---- data ---------------------------------------------------------------- */

static int eval_read(const char *path, eval_data *d, recolog *out)
{
    char err[512];
    if (eval_csv_read(path, &d->users, &d->items, out, err, sizeof err) == 0)
        return 0;
    fprintf(stderr, "cxm-eval: %s\n", err);
    return -1;
}

static int eval_load(const eval_cfg *c, const eval_plan *plan, eval_data *d)
{
    if (c->ratings) {
        recolog all = {0};
        if (eval_read(c->ratings, d, &all)) {
            recolog_free(&all);
            return -1;
        }
        recolog_dedupe(&all);
        int rc =
            eval_split(&all, plan->split, plan->test_frac, (uint64_t)c->seed, &d->train, &d->test);
        recolog_free(&all);
        if (rc)
            fprintf(stderr, "cxm-eval: splitting %s: %s\n", c->ratings, cxm_strerror(rc));
        return rc ? -1 : 0;
    }
    /* Train first, so that its ids take the low indices. */
    if (eval_read(c->train, d, &d->train) || eval_read(c->test, d, &d->test))
        return -1;
    recolog_dedupe(&d->train);
    recolog_dedupe(&d->test);
    return 0;
}

static int eval_prepare(eval_data *d, const eval_cfg *c)
{
    const char *src = c->ratings ? c->ratings : c->train;
    if (eval_reindex(&d->users, &d->items, &d->train, &d->test, &d->nusers_train,
                     &d->nitems_train) ||
        recomatrix_build(&d->train, d->nusers_train, d->nitems_train, &d->trainm) ||
        recomatrix_build(&d->test, d->users.n, d->items.n, &d->testm)) {
        fprintf(stderr, "cxm-eval: out of memory building the matrices\n");
        return -1;
    }
    if (d->train.n == 0) {
        fprintf(stderr, "cxm-eval: %s: no training interactions\n", src);
        return -1;
    }
    return 0;
}

static void eval_data_free(eval_data *d)
{
    recoids_free(&d->users);
    recoids_free(&d->items);
    recolog_free(&d->train);
    recolog_free(&d->test);
    recomatrix_free(&d->trainm);
    recomatrix_free(&d->testm);
}

/* ---- serving ------------------------------------------------------------- */

static int eval_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The reco.h promises the evaluator relies on: no more than k items, all in
 * the catalogue, none from the history. A broken model fails the run rather
 * than producing flattering numbers. */
static int eval_check_recs(const eval_data *d, uint32_t u, const uint32_t *recs, size_t n, size_t k)
{
    const reco_matrix *t = &d->trainm;
    const uint32_t *hist = t->items + t->row[u];
    size_t nhist = (size_t)(t->row[u + 1] - t->row[u]);
    for (size_t i = 0; i < n && n <= k; i++) {
        if (recs[i] >= d->nitems_train ||
            bsearch(&recs[i], hist, nhist, sizeof *hist, eval_cmp_u32)) {
            fprintf(stderr,
                    "cxm-eval: the model broke its contract: user %s got item index %" PRIu32
                    " (%s)\n",
                    d->users.names[u], recs[i],
                    recs[i] >= d->nitems_train ? "outside the catalogue" : "already consumed");
            return -1;
        }
    }
    if (n > k) {
        fprintf(stderr, "cxm-eval: the model returned %zu items for k = %zu\n", n, k);
        return -1;
    }
    return 0;
}

/* Write errors are picked up once, by eval_close_recs. */
static void eval_write_recs(FILE *f, const eval_data *d, uint32_t u, const uint32_t *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s,%s,%zu\n", d->users.names[u], d->items.names[recs[i]], i + 1);
}

/* Buffers of one serving pass. */
typedef struct eval_serve_ctx {
    const reco_model *model;
    double half_life;
    size_t max_history; /* 0 = the whole history */
    uint64_t *ihash;    /* per item: FNV-1a of its id, recodb's tie-break */
    uint64_t *order;    /* one user's history positions, newest first */
    uint32_t *hist, *excl;
    const reco_matrix *model_data; /* the training matrix, for the sort */
    float *w;                      /* decayed history weights, one per training item */
    reco_scratch *scratch;
    uint32_t *recs;
    float *scores;
    double *micros; /* one latency per evaluated user */
    eval_acc acc;
} eval_serve_ctx;

/* User u's history weights: the ratings, each halved for every half_life
 * it is older than u's latest training interaction (the user's "now"), as
 * a serving layer decays by age. Part of the timed serving work. */
static const float *eval_history_weights(eval_serve_ctx *s, const reco_matrix *t, uint32_t u)
{
    const float *rating = t->weights + t->row[u];
    if (!(s->half_life > 0))
        return rating;
    const int64_t *ts = t->ts + t->row[u];
    size_t n = (size_t)(t->row[u + 1] - t->row[u]);
    int64_t latest = INT64_MIN;
    for (size_t i = 0; i < n; i++)
        latest = ts[i] > latest ? ts[i] : latest;
    for (size_t i = 0; i < n; i++)
        s->w[i] = rating[i] * (float)exp2(-(double)(latest - ts[i]) / s->half_life);
    return s->w;
}

/* recodb's order of a customer's events: newest first, then the larger
 * FNV-1a hash of the item id first (its log's key order, walked back). */
static int eval_by_serving_order(const void *a, const void *b, void *ctx)
{
    const eval_serve_ctx *s = ctx;
    const reco_matrix *t = s->model_data;
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    if (t->ts[x] != t->ts[y])
        return t->ts[x] < t->ts[y] ? 1 : -1;
    uint64_t hx = s->ihash[t->items[x]], hy = s->ihash[t->items[y]];
    return hx < hy ? 1 : hx > hy ? -1 : 0;
}

/* As recodb serves (--max-history): the latest max_history items weighted
 * (and decayed from the newest), every older one excluded. */
static size_t eval_capped_history(eval_serve_ctx *s, const reco_matrix *t, uint32_t u,
                                  size_t *nexcl)
{
    size_t n = (size_t)(t->row[u + 1] - t->row[u]), nhist = 0;
    for (size_t i = 0; i < n; i++)
        s->order[i] = t->row[u] + i;
    s->model_data = t;
    qsort_r(s->order, n, sizeof *s->order, eval_by_serving_order, s);
    *nexcl = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t e = s->order[i];
        if (i >= s->max_history) {
            s->excl[(*nexcl)++] = t->items[e];
            continue;
        }
        double age = (double)(t->ts[s->order[0]] - t->ts[e]);
        s->hist[nhist] = t->items[e];
        s->w[nhist++] =
            s->half_life > 0 ? t->weights[e] * (float)exp2(-age / s->half_life) : t->weights[e];
    }
    return nhist;
}

/* Recommend for user u, time it and score it. */
static int eval_serve_user(eval_serve_ctx *s, const eval_data *d, uint32_t u, size_t k, FILE *out)
{
    const reco_matrix *t = &d->trainm, *q = &d->testm;
    const uint32_t *hist = t->items + t->row[u];
    size_t nhist = (size_t)(t->row[u + 1] - t->row[u]), nexcl = 0;
    size_t nrel = (size_t)(q->row[u + 1] - q->row[u]);
    double t0 = eval_now();
    const float *w;
    if (s->max_history) {
        nhist = eval_capped_history(s, t, u, &nexcl);
        hist = s->hist;
        w = s->w;
    } else
        w = eval_history_weights(s, t, u);
    size_t n =
        reco_recommend(s->model, s->scratch, hist, w, nhist, s->excl, nexcl, k, s->recs, s->scores);
    s->micros[s->acc.users] = (eval_now() - t0) * 1e6;
    if (eval_check_recs(d, u, s->recs, n, k))
        return -1;
    eval_user_metrics m;
    eval_user_score(s->recs, n, q->items + q->row[u], nrel, k, &m);
    eval_acc_add(&s->acc, s->recs, n, &m);
    if (out)
        eval_write_recs(out, d, u, s->recs, n);
    return 0;
}

static int eval_serve_all(eval_serve_ctx *s, const eval_data *d, size_t k, FILE *out)
{
    for (uint32_t u = 0; u < d->nusers_train; u++) {
        bool in_train = d->trainm.row[u + 1] > d->trainm.row[u];
        bool in_test = d->testm.row[u + 1] > d->testm.row[u];
        if (in_train && in_test && eval_serve_user(s, d, u, k, out))
            return -1;
    }
    return 0;
}

static FILE *eval_open_recs(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs("user,item,rank\n", f) < 0) {
        fprintf(stderr, "cxm-eval: %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return NULL;
    }
    return f;
}

static int eval_close_recs(FILE *f, const char *path, int rc)
{
    if (!f)
        return rc;
    int failed = ferror(f) | fclose(f);
    if (failed && rc == 0) {
        fprintf(stderr, "cxm-eval: %s: write failed\n", path);
        return -1;
    }
    return rc;
}

static int eval_serve(const eval_cfg *c, const eval_plan *plan, const eval_data *d,
                      const reco_model *model, eval_result *res)
{
    size_t k = (size_t)c->k;
    eval_serve_ctx s = {
        .model = model, .half_life = plan->half_life, .max_history = (size_t)c->max_history};
    /* A sequence model reads the history newest first, as recodb gives it. */
    if (!s.max_history && (reco_model_algo(model) == RECO_SEQ || plan->algo == 0))
        s.max_history = SIZE_MAX;
    s.w = malloc(((size_t)d->nitems_train + 1) * sizeof *s.w);
    s.hist = malloc(((size_t)d->nitems_train + 1) * sizeof *s.hist);
    s.excl = malloc(((size_t)d->nitems_train + 1) * sizeof *s.excl);
    s.order = malloc(((size_t)d->nitems_train + 1) * sizeof *s.order);
    s.ihash = malloc(((size_t)d->nitems_train + 1) * sizeof *s.ihash);
    for (uint32_t i = 0; s.ihash && i < d->nitems_train; i++)
        s.ihash[i] = cxm_hash(CXM_HASH_INIT, d->items.names[i], strlen(d->items.names[i]));
    s.recs = malloc(k * sizeof *s.recs);
    s.scores = malloc(k * sizeof *s.scores);
    s.micros = malloc(((size_t)d->nusers_train + 1) * sizeof *s.micros);
    int rc = !s.w || !s.hist || !s.excl || !s.order || !s.ihash || !s.recs || !s.scores ||
                     !s.micros || eval_acc_init(&s.acc, d->nitems_train) ||
                     reco_scratch_create(model, &s.scratch)
                 ? -1
                 : 0;
    FILE *out = NULL;
    if (rc)
        fprintf(stderr, "cxm-eval: out of memory for serving\n");
    else if (c->recs_out && !(out = eval_open_recs(c->recs_out)))
        rc = -1;
    if (rc == 0)
        rc = eval_serve_all(&s, d, k, out);
    rc = eval_close_recs(out, c->recs_out, rc);
    eval_acc_summary(&s.acc, &res->sum);
    res->p50_us = eval_quantile(s.micros, s.acc.users, 0.50);
    res->p99_us = eval_quantile(s.micros, s.acc.users, 0.99);
    reco_scratch_free(s.scratch);
    eval_acc_free(&s.acc);
    free(s.w);
    free(s.hist);
    free(s.excl);
    free(s.order);
    free(s.ihash);
    free(s.recs);
    free(s.scores);
    free(s.micros);
    return rc;
}

/* ---- report -------------------------------------------------------------- */

static const char *eval_weighting_name(const reco_params *p)
{
    return p->knn_weighting == RECO_KNN_BM25 ? "bm25" : "cosine";
}

static void eval_report_text(const eval_cfg *c, const eval_plan *plan, const eval_data *d,
                             const eval_result *r)
{
    const reco_params *p = &plan->params;
    int k = (int)c->k;
    printf("%-20s %s\n", "algorithm", eval_algo_name(plan->algo));
    printf("%-20s lambda=%g shrink=%g weighting=%s neighbours=%" PRIu32 " factors=%" PRIu32
           " iterations=%" PRIu32 " alpha=%g\n",
           "params", p->lambda, p->shrink, eval_weighting_name(p), p->neighbours, p->factors,
           p->iterations, p->alpha);
    if (plan->algo == 0) {
        const reco_choice *ch = &r->choice;
        printf("%-20s %s (validation %s, %" PRIu32 " users: ndcg@10 %.6f, ease alone %.6f)\n",
               "chose", eval_algo_name(ch->algo),
               ch->validate == RECO_VALIDATE_RANDOM ? "random" : "temporal", ch->val_customers,
               ch->val_ndcg, ch->ease_ndcg);
        printf("%-20s seq_lambda=%g seq_half=%g hist_half=%g blend=%g\n", "chosen params",
               ch->params.seq_lambda, ch->params.seq_half, ch->params.hist_half, ch->params.blend);
        if (ch->note[0])
            printf("%-20s %s\n", "note", ch->note);
    }
    printf("%-20s %" PRIu64 "\n", "users evaluated", r->sum.users);
    printf("%-20s %" PRIu32 "\n", "items", d->nitems_train);
    printf("%-20s %zu\n", "train interactions", d->train.n);
    printf("%-20s %zu\n", "test interactions", d->test.n);
    printf("precision@%-10d %.6f\n", k, r->sum.precision);
    printf("recall@%-13d %.6f\n", k, r->sum.recall);
    printf("ndcg@%-15d %.6f\n", k, r->sum.ndcg);
    printf("map@%-16d %.6f\n", k, r->sum.map);
    printf("%-20s %.6f\n", "coverage", r->sum.coverage);
    printf("%-20s %.3f\n", "training seconds", r->train_seconds);
    printf("%-20s %.1f\n", "serve p50 us", r->p50_us);
    printf("%-20s %.1f\n", "serve p99 us", r->p99_us);
}

/* --algo auto: ,"choice":{...} (the notes are cxm's own sentences, without
 * quotes or backslashes). */
static void eval_choice_json(const reco_choice *ch)
{
    printf(",\"choice\":{\"algo\":\"%s\",\"validate\":\"%s\",\"customers\":%" PRIu32
           ",\"ndcg\":%.6f,\"ease_ndcg\":%.6f,\"note\":\"%s\"}",
           eval_algo_name(ch->algo), ch->validate == RECO_VALIDATE_RANDOM ? "random" : "temporal",
           ch->val_customers, ch->val_ndcg, ch->ease_ndcg, ch->note);
}

static void eval_report_json(const eval_cfg *c, const eval_plan *plan, const eval_data *d,
                             const eval_result *r)
{
    const reco_params *p = plan->algo ? &plan->params : &r->choice.params;
    printf("{\"algo\":\"%s\",\"k\":%" PRId64 ",\"users\":%" PRIu64 ",\"items\":%" PRIu32
           ",\"train_interactions\":%zu,\"test_interactions\":%zu,\"precision\":%.6f,"
           "\"recall\":%.6f,\"ndcg\":%.6f,\"map\":%.6f,\"coverage\":%.6f,"
           "\"train_seconds\":%.6f,\"serve_p50_us\":%.3f,\"serve_p99_us\":%.3f,"
           "\"params\":{\"lambda\":%.17g,\"shrink\":%.17g,\"weighting\":\"%s\","
           "\"neighbours\":%" PRIu32 ",\"factors\":%" PRIu32 ",\"iterations\":%" PRIu32
           ",\"alpha\":%.17g,\"seq_lambda\":%.17g,\"seq_half\":%.17g,\"hist_half\":%.17g,"
           "\"blend\":%.17g}",
           eval_algo_name(plan->algo), c->k, r->sum.users, d->nitems_train, d->train.n, d->test.n,
           r->sum.precision, r->sum.recall, r->sum.ndcg, r->sum.map, r->sum.coverage,
           r->train_seconds, r->p50_us, r->p99_us, p->lambda, p->shrink, eval_weighting_name(p),
           p->neighbours, p->factors, p->iterations, p->alpha, p->seq_lambda, p->seq_half,
           p->hist_half, p->blend);
    if (plan->algo == 0)
        eval_choice_json(&r->choice);
    printf("}\n");
}

/* ---- main ---------------------------------------------------------------- */

static int eval_train_and_serve(const eval_cfg *c, const eval_plan *plan, const eval_data *d)
{
    char err[512] = "";
    reco_model *model = NULL;
    eval_result res = {0};
    double t0 = eval_now();
    int rc = plan->algo ? reco_train(plan->algo, &plan->params, &d->trainm, &model, err, sizeof err)
                        : reco_train_auto(&d->trainm, plan->validate, (uint64_t)c->seed,
                                          &plan->params, &model, &res.choice, err, sizeof err);
    res.train_seconds = eval_now() - t0;
    if (rc) {
        fprintf(stderr, "cxm-eval: training %s failed: %s\n", eval_algo_name(plan->algo),
                err[0] ? err : cxm_strerror(rc));
        return EVAL_EXIT_DATA;
    }
    rc = eval_serve(c, plan, d, model, &res);
    reco_model_free(model);
    if (rc)
        return EVAL_EXIT_DATA;
    if (c->json)
        eval_report_json(c, plan, d, &res);
    else
        eval_report_text(c, plan, d, &res);
    return fflush(stdout) == 0 ? 0 : EVAL_EXIT_DATA;
}

static const char eval_summary_text[] =
    "cxm-eval: offline evaluation of the recommendation core. Either --train and --test "
    "files, or --ratings with a per-user --split; CSV header user,item,rating,ts "
    "(or MovieLens' userId,movieId,rating,timestamp). "
    "Metrics at k, binary relevance, over users with training and test interactions.";

int main(int argc, char **argv)
{
    eval_cfg c = {.split = "random", .test_frac = "0.2", .k = 10, .seed = 42};
    const cxm_opt opts[] = {
        {"train", CXM_OPT_STR, &c.train, 0, 0, "training interactions (CSV)"},
        {"test", CXM_OPT_STR, &c.test, 0, 0, "test interactions (CSV)"},
        {"ratings", CXM_OPT_STR, &c.ratings, 0, 0, "all interactions (CSV), split per user"},
        {"split", CXM_OPT_STR, &c.split, 0, 0, "with --ratings: random or temporal"},
        {"test-frac", CXM_OPT_STR, &c.test_frac, 0, 0,
         "with --ratings: share of each user in test"},
        {"seed", CXM_OPT_INT, &c.seed, 0, 0, "seed of the random split"},
        {"algo", CXM_OPT_STR, &c.algo, 0, 0,
         "ease, itemknn, als, pop, seq, or auto (chosen on validation carved from training)"},
        {"k", CXM_OPT_INT, &c.k, 1, 100000, "length of each recommendation list"},
        {"recs-out", CXM_OPT_STR, &c.recs_out, 0, 0, "write user,item,rank CSV here"},
        {"json", CXM_OPT_BOOL, &c.json, 0, 0, "report as one JSON line"},
        {"lambda", CXM_OPT_STR, &c.lambda, 0, 0, "EASE/ALS regularisation (default: algo's)"},
        {"shrink", CXM_OPT_STR, &c.shrink, 0, 0, "item-kNN shrinkage (default: algo's)"},
        {"bm25", CXM_OPT_BOOL, &c.bm25, 0, 0, "item-kNN: BM25-weighted instead of cosine"},
        {"alpha", CXM_OPT_STR, &c.alpha, 0, 0, "ALS confidence scale (default: algo's)"},
        {"half-life", CXM_OPT_STR, &c.half_life, 0, 0,
         "decay history weights by age, halving every this many ts units (default: none)"},
        {"neighbours", CXM_OPT_INT, &c.neighbours, 1, UINT32_MAX,
         "neighbours per item (unset: the algorithm's)"},
        {"factors", CXM_OPT_INT, &c.factors, 1, 100000, "ALS factors (unset: the algorithm's)"},
        {"iterations", CXM_OPT_INT, &c.iterations, 1, 100000,
         "ALS iterations (unset: the algorithm's)"},
        {"full-precision", CXM_OPT_BOOL, &c.full_precision, 0, 0,
         "item-kNN / EASE: serve from 32-bit rows, not the 16-bit copy"},
        {"seq-lambda", CXM_OPT_STR, &c.seq_lambda, 0, 0,
         "seq: transition model ridge, x the mean diagonal (default: 4)"},
        {"seq-half", CXM_OPT_STR, &c.seq_half, 0, 0,
         "seq: half-life of the prefix weights, in positions (default: 8)"},
        {"hist-half", CXM_OPT_STR, &c.hist_half, 0, 0,
         "seq: half-life of EASE's history weights, in positions (default: 0 = none)"},
        {"blend", CXM_OPT_STR, &c.blend, 0, 0,
         "seq: the transition model's share, 0..1 (default: 0.6)"},
        {"validate", CXM_OPT_STR, &c.validate, 0, 0,
         "auto: validation carved from training, temporal or random (default: the --split's "
         "kind; temporal with --train/--test)"},
        {"max-history", CXM_OPT_INT, &c.max_history, 1, UINT32_MAX,
         "score only each user's latest N training interactions, the rest excluded, as "
         "recodb serves (unset: all)"},
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    char err[512];
    int rc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == 1) {
        cxm_opts_usage(stdout, "cxm-eval", eval_summary_text, opts, nopts);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "cxm-eval: %s\n", err);
        return EVAL_EXIT_USAGE;
    }
    eval_plan plan = {0};
    if (eval_plan_make(&c, &plan))
        return EVAL_EXIT_USAGE;
    eval_data d = {0};
    rc = eval_load(&c, &plan, &d) || eval_prepare(&d, &c) ? EVAL_EXIT_DATA
                                                          : eval_train_and_serve(&c, &plan, &d);
    eval_data_free(&d);
    return rc;
}
