/*
 * cxm-bench-reco: in-process serving time of the recommendation core.
 *
 *   cxm-bench-reco [--ratings PATH] [--algo auto|ease|itemknn|als|pop|seq]
 *                  [--history 200] [--calls 20000] [--k 10] [--neighbours N]
 *                  [--max-history N] [--quality [--seed 42]]
 *   cxm-bench-reco --export-from DIR --export FILE
 *
 * Loads interactions (a CSV with the header user,item,rating,ts or
 * MovieLens' userId,movieId,rating,timestamp, read as cxm-eval reads it,
 * or, without --ratings, a seeded synthetic set of the
 * same shape: 610 customers, 9.7k items, ~100k interactions), appends them
 * to a fresh LMDB log, trains, and then asks for the top k of customers
 * with at least --history interactions, round-robin:
 *   scored   recodb_recommend end to end on a customer whose candidates
 *            are not cached: read transaction, model view, the history
 *            (--max-history scored, the rest excluded), scoring, ids out;
 *   cached   the same after the stale list is drained (recodb_stale,
 *            recodb_refresh_many) as a service's refresh thread does: a
 *            read transaction, the cache row, ids out (what Recommend pays
 *            between two interactions of a customer);
 *   reco     reco_recommend alone on the same histories (their latest
 *            --history items), already indexed, from the 16-bit rows;
 *   reco32   the same from the model's 32-bit rows (full_precision);
 *            for a sequence model, "ease" instead: plain EASE with the
 *            same lambda and neighbours on the same histories, in the same
 *            rounds (the sequence model's cost as a ratio to EASE's);
 *   floor    a fixed busy loop as long as the recodb median, timed in the
 *            same rounds: what this machine's scheduling alone does to a
 *            call of that length (these VMs are shared and noisy).
 * --quality instead measures what serving returns, not how fast: the
 * ratings split per user at random 80/20 (--seed, as cxm-eval --ratings),
 * the training part appended and trained with recodb_train_ex, then NDCG@k
 * etc. of recodb_recommend (through the cache) for every user, which must
 * equal cxm-eval --max-history N on the same split.
 * Last, one second of reading the clock in a loop counts how often and for
 * how long the CPU was taken away (gaps over 5 us): a call of length d is
 * hit with probability about rate * d, which sets the p99 a call of that
 * length can reach on this machine at all.
 * --export-from DIR --export FILE does nothing of the above: it opens the
 * data directory DIR of a cxmd that has stopped (the directory has one
 * owner at a time) and writes its serving model to FILE with recodb_export
 * ("CXMX", recodb.h), for benchmarks/reco_peer.py.
 */
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/opts.h"
#include "cxm/store.h"
#include "personalisation/eval/evalcsv.h"
#include "personalisation/eval/evalmetrics.h"
#include "personalisation/reco/reco.h"
#include "personalisation/reco/recodb.h"
#include "personalisation/reco/recomatrix.h"

typedef struct bench_cfg {
    const char *ratings, *algo, *export_from, *export_to;
    int64_t history, calls, k, neighbours, max_history, seed;
    bool quality;
} bench_cfg;

typedef struct bench_data {
    recoids customers, items;
    recolog log;
} bench_data;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

/* ---- data ---- */

static int add_event(bench_data *d, const char *customer, size_t clen, const char *item,
                     size_t ilen, float weight, int64_t ts)
{
    recolog_event e = {.rating = weight, .ts = ts};
    int rc = recoids_intern(&d->customers, customer, clen, &e.user);
    if (rc == 0)
        rc = recoids_intern(&d->items, item, ilen, &e.item);
    return rc ? rc : recolog_push(&d->log, &e);
}

/* A CSV in cxm-eval's strict format (evalcsv.h), e.g. MovieLens' ratings.csv. */
static int load_csv(const char *path, bench_data *d)
{
    char err[512];
    if (eval_csv_read(path, &d->customers, &d->items, &d->log, err, sizeof err) == 0)
        return 0;
    fprintf(stderr, "cxm-bench-reco: %s\n", err);
    return -1;
}

/* 610 customers in 20 taste groups over 9,700 items with a popularity skew;
 * one in six has 300 interactions, the rest 20-200. */
static int synthesise(bench_data *d)
{
    uint64_t seed = 42;
    for (int c = 0; c < 610; c++) {
        char customer[16], item[16];
        int n = c % 6 == 0 ? 300 : 20 + (int)(cxm_splitmix64(&seed) % 181), group = c % 20;
        snprintf(customer, sizeof customer, "c%d", c);
        for (int j = 0; j < n; j++) {
            double u = (double)(cxm_splitmix64(&seed) >> 11) / 9007199254740992.0;
            int it = cxm_splitmix64(&seed) % 10 < 7 ? group * 485 + (int)(485 * u * u)
                                                    : (int)(9700 * u * u);
            snprintf(item, sizeof item, "i%d", it);
            int rc = add_event(d, customer, strlen(customer), item, strlen(item), 1.0f,
                               1600000000 + c * 1000 + j);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* ---- the three measurements ---- */

static int append_all(recodb *db, const bench_data *d)
{
    char err[256];
    recodb_event batch[1000];
    size_t n = 0;
    for (size_t i = 0; i < d->log.n; i++) {
        const recolog_event *e = &d->log.ev[i];
        batch[n++] =
            (recodb_event){d->customers.names[e->user], d->items.names[e->item], e->rating, e->ts};
        if (n == 1000 || i + 1 == d->log.n) {
            if (recodb_append(db, batch, n, err, sizeof err)) {
                fprintf(stderr, "cxm-bench-reco: append: %s\n", err);
                return -1;
            }
            n = 0;
        }
    }
    return 0;
}

/* Customers with at least h interactions. */
static size_t heavy_customers(const reco_matrix *x, uint32_t h, uint32_t *out)
{
    size_t n = 0;
    for (uint32_t u = 0; u < x->nusers; u++)
        if (x->row[u + 1] - x->row[u] >= h)
            out[n++] = u;
    return n;
}

/* A customer's latest h items, by ts. */
static void latest(const reco_matrix *x, uint32_t u, uint32_t h, uint32_t *items)
{
    uint64_t a = x->row[u], n = x->row[u + 1] - a;
    uint64_t *order = malloc(n * sizeof *order);
    for (uint64_t i = 0; i < n; i++)
        order[i] = i;
    for (uint64_t i = 1; i < n; i++) /* insertion sort by ts, newest first */
        for (uint64_t j = i; j > 0 && x->ts[a + order[j]] > x->ts[a + order[j - 1]]; j--) {
            uint64_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (uint32_t i = 0; i < h; i++)
        items[i] = x->items[a + order[i]];
    free(order);
}

static volatile double sink;

static void busy(long iterations)
{
    double x = 0;
    for (long i = 0; i < iterations; i++)
        x += (double)i * 0.5;
    sink = x;
}

/* Iterations of busy() that take about us microseconds. */
static long calibrate(double us)
{
    long it = 1000;
    for (;;) {
        double t0 = now_us();
        busy(it);
        double took = now_us() - t0;
        if (took > 200)
            return (long)((double)it * us / took);
        it *= 2;
    }
}

/* Read the clock for one second; gaps over 5 us are times the CPU was
 * taken away from this thread (interrupts, other tenants of the host). */
static void report_steal(void)
{
    double start = now_us(), prev = start, stolen = 0;
    long gaps = 0;
    while (prev - start < 1e6) {
        double t = now_us();
        if (t - prev > 5) {
            gaps++;
            stolen += t - prev;
        }
        prev = t;
    }
    printf("\nthis machine: CPU taken away %ld times in 1 s (gaps > 5 us), mean %.1f us\n", gaps,
           gaps ? stolen / (double)gaps : 0.0);
}

static void report(const char *name, double *v, size_t n)
{
    double p50 = eval_quantile(v, n, 0.50), p90 = eval_quantile(v, n, 0.90),
           p99 = eval_quantile(v, n, 0.99);
    printf("%-8s %10.1f %10.1f %10.1f %10.1f\n", name, p50, p90, p99, v[n - 1]);
}

typedef struct bench_run {
    recodb *db;
    recodb_reader *reader;
    const reco_model *model, *model32; /* model32: the second reco row */
    const char *second;                /* its name: "reco32" or "ease" */
    reco_scratch *scratch;
    const uint32_t *who;  /* customers served */
    const uint32_t *hist; /* their latest h items, h per customer */
    size_t nwho;
} bench_run;

/* One pass of recodb_recommend over the served customers, timed. */
static int time_recodb(const bench_cfg *c, const bench_run *b, const bench_data *d, double *t)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char err[256];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < (size_t)c->calls; i++) {
        recodb_query q = {.customer = d->customers.names[b->who[i % b->nwho]], .k = (size_t)c->k};
        recodb_rec *recs;
        size_t n;
        double t0 = now_us();
        rc = recodb_recommend(b->db, b->reader, &a, &q, &recs, &n, NULL, err, sizeof err);
        t[i] = now_us() - t0;
        cxm_arena_reset(&a);
    }
    if (rc != 0)
        fprintf(stderr, "cxm-bench-reco: recommend: %s\n", err);
    cxm_arena_dispose(&a);
    return rc;
}

/* reco_recommend alone, and the floor loop as long as the scored median. */
static void time_reco(const bench_cfg *c, const bench_run *b, double scored_p50, double *t_reco,
                      double *t_reco32, double *t_floor)
{
    size_t h = (size_t)c->history, k = (size_t)c->k;
    uint32_t out[1000];
    long floor_it = calibrate(scored_p50);
    for (size_t i = 0; i < (size_t)c->calls; i++) {
        const uint32_t *hist = b->hist + (i % b->nwho) * h;
        double t0 = now_us();
        reco_recommend(b->model, b->scratch, hist, NULL, h, NULL, 0, k, out, NULL);
        double t1 = now_us();
        reco_recommend(b->model32, b->scratch, hist, NULL, h, NULL, 0, k, out, NULL);
        double t2 = now_us();
        busy(floor_it);
        t_reco[i] = t1 - t0;
        t_reco32[i] = t2 - t1;
        t_floor[i] = now_us() - t2;
    }
}

/* What a service's refresh thread does: drain the stale list (after a
 * training, every customer) in batches. */
static int refresh_stale(recodb *db, recodb_reader *r)
{
    char *ids[64];
    size_t n, total = 0;
    int rc = 0;
    double t0 = now_us();
    while (rc == 0 && (n = recodb_stale(db, ids, 64)) > 0) {
        rc = recodb_refresh_many(db, r, ids, n);
        for (size_t i = 0; i < n; i++)
            free(ids[i]);
        total += n;
    }
    if (rc != 0)
        fprintf(stderr, "cxm-bench-reco: refresh: %s\n", cxm_strerror(rc));
    else
        printf("refreshed %zu customers' candidates in %.1f ms (%.1f us each)\n", total,
               (now_us() - t0) / 1e3, (now_us() - t0) / (double)(total ? total : 1));
    return rc;
}

static int serve_rounds(const bench_cfg *c, const bench_run *b, const bench_data *d)
{
    size_t calls = (size_t)c->calls;
    double *t_scored = malloc(calls * sizeof *t_scored),
           *t_cached = malloc(calls * sizeof *t_cached);
    double *t_reco = malloc(calls * sizeof *t_reco), *t_floor = malloc(calls * sizeof *t_floor);
    double *t_reco32 = malloc(calls * sizeof *t_reco32);
    int rc = t_scored && t_cached && t_reco && t_reco32 && t_floor ? 0 : -1;
    if (rc == 0)
        rc = time_recodb(c, b, d, t_scored);
    if (rc == 0) {
        double *tmp = memcpy(t_floor, t_scored, calls * sizeof *t_scored);
        time_reco(c, b, eval_quantile(tmp, calls, 0.5), t_reco, t_reco32, t_floor);
    }
    if (rc == 0)
        rc = refresh_stale(b->db, b->reader);
    if (rc == 0)
        rc = time_recodb(c, b, d, t_cached);
    if (rc == 0) {
        printf("\n%zu calls, %zu customers with >= %" PRId64 " interactions, top %" PRId64 "\n",
               calls, b->nwho, c->history, c->k);
        printf("%-8s %10s %10s %10s %10s   (microseconds)\n", "", "p50", "p90", "p99", "max");
        report("scored", t_scored, calls);
        report("cached", t_cached, calls);
        report("reco", t_reco, calls);
        report(b->second, t_reco32, calls);
        report("floor", t_floor, calls);
        report_steal();
    }
    free(t_scored);
    free(t_cached);
    free(t_reco);
    free(t_reco32);
    free(t_floor);
    return rc;
}

/* ---- --quality ---- */

static int append_log(recodb *db, const bench_data *d, const recolog *log)
{
    bench_data view = *d;
    view.log = *log;
    return append_all(db, &view);
}

/* NDCG etc. of recodb_recommend for every user with training and test
 * interactions, as cxm-eval scores reco_recommend. */
static int score_users(const bench_cfg *c, recodb *db, recodb_reader *r, const bench_data *d,
                       const reco_matrix *train, const reco_matrix *test, eval_summary *sum,
                       double *mean_propensity)
{
    double props = 0, *explain_us = malloc((d->customers.n + 1) * sizeof *explain_us);
    uint64_t nprops = 0;
    size_t nexplained = 0;
    eval_acc acc;
    cxm_arena a;
    char err[256];
    uint32_t recs[1000];
    int rc = eval_acc_init(&acc, d->items.n);
    cxm_arena_init(&a, NULL, 0, 0);
    for (uint32_t u = 0; rc == 0 && u < d->customers.n; u++) {
        if (train->row[u + 1] == train->row[u] || test->row[u + 1] == test->row[u])
            continue;
        recodb_query q = {.customer = d->customers.names[u], .k = (size_t)c->k};
        recodb_rec *out;
        size_t n;
        if ((rc = recodb_recommend(db, r, &a, &q, &out, &n, NULL, err, sizeof err)) != 0)
            fprintf(stderr, "cxm-bench-reco: recommend: %s\n", err);
        for (size_t i = 0; i < n; i++) {
            recs[i] = recoids_find(&d->items, out[i].item);
            props += out[i].propensity;
            nprops++;
        }
        recodb_why why[8];
        size_t nwhy;
        double t0 = now_us();
        if (n > 0 && explain_us &&
            recodb_explain(db, r, &a, q.customer, 0, out[0].item, why, 8, &nwhy) == 0)
            explain_us[nexplained++] = now_us() - t0;
        eval_user_metrics m;
        eval_user_score(recs, n, test->items + test->row[u], test->row[u + 1] - test->row[u],
                        (size_t)c->k, &m);
        eval_acc_add(&acc, recs, n, &m);
        cxm_arena_reset(&a);
    }
    eval_acc_summary(&acc, sum);
    *mean_propensity = nprops ? props / (double)nprops : 0;
    if (nexplained)
        printf("recodb_explain of each user's first item: p50 %.1f us, p99 %.1f us\n",
               eval_quantile(explain_us, nexplained, 0.5),
               eval_quantile(explain_us, nexplained, 0.99));
    free(explain_us);
    eval_acc_free(&acc);
    cxm_arena_dispose(&a);
    return rc;
}

static int run_quality(const bench_cfg *c, reco_algo algo, bench_data *d, recodb *db,
                       recodb_reader *r)
{
    recolog train = {0}, test = {0};
    reco_matrix trainm = {0}, testm = {0};
    char err[256];
    recolog_dedupe(&d->log);
    int rc = eval_split(&d->log, EVAL_SPLIT_RANDOM, 0.2, (uint64_t)c->seed, &train, &test);
    if (rc == 0)
        rc = append_log(db, d, &train);
    recodb_train_opts o = {.algo = algo};
    recodb_train_report rep;
    recodb_metrics hm;
    bool act;
    if (rc == 0 && (rc = recodb_train_ex(db, &o, &rep, &hm, &act, err, sizeof err)) != 0)
        fprintf(stderr, "cxm-bench-reco: train: %s\n", err);
    if (rc == 0) {
        printf("trained version %" PRIu64 " (algorithm %d) in %.2f s; holdout of %" PRIu64
               " customers: ndcg@10 %.4f precision %.4f recall %.4f coverage %.4f\n",
               rep.version, (int)rep.algo, rep.seconds, hm.customers, hm.ndcg, hm.precision,
               hm.recall, hm.coverage);
        recolog_dedupe(&train);
        recolog_dedupe(&test);
        rc = recomatrix_build(&train, d->customers.n, d->items.n, &trainm) ||
             recomatrix_build(&test, d->customers.n, d->items.n, &testm) || refresh_stale(db, r);
    }
    eval_summary sum;
    double prop = 0;
    if (rc == 0 && (rc = score_users(c, db, r, d, &trainm, &testm, &sum, &prop)) == 0)
        printf("recodb_recommend, random 80/20 seed %" PRId64 ", %" PRIu64 " users: ndcg@%" PRId64
               " %.6f precision %.6f recall %.6f; mean propensity of "
               "what was recommended %.4f (calibrated on the latest 20%%, a harder task)\n",
               c->seed, sum.users, c->k, sum.ndcg, sum.precision, sum.recall, prop);
    recomatrix_free(&trainm);
    recomatrix_free(&testm);
    recolog_free(&train);
    recolog_free(&test);
    return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static reco_algo parse_algo(const char *name)
{
    static const char *names[] = {"auto", "pop", "itemknn", "ease", "als", "seq"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return (reco_algo)i;
    return (reco_algo)-1;
}

/* Train the same algorithm in process (for the reco row) and pick the
 * customers and their latest histories. */
static int prepare_reco(const bench_cfg *c, reco_algo algo, const reco_params *p, bench_data *d,
                        reco_matrix *x, reco_model **model, uint32_t **who, uint32_t **hist,
                        size_t *nwho)
{
    char err[256];
    recolog_dedupe(&d->log);
    if (recomatrix_build(&d->log, d->customers.n, d->items.n, x) ||
        reco_train(algo, p, x, model, err, sizeof err)) {
        fprintf(stderr, "cxm-bench-reco: training in process failed\n");
        return -1;
    }
    *who = malloc(((size_t)x->nusers + 1) * sizeof **who);
    *nwho = heavy_customers(x, (uint32_t)c->history, *who);
    *hist = malloc((*nwho * (size_t)c->history + 1) * sizeof **hist);
    if (*nwho == 0) {
        fprintf(stderr, "cxm-bench-reco: no customer has %" PRId64 " interactions\n", c->history);
        return -1;
    }
    for (size_t i = 0; i < *nwho; i++)
        latest(x, (*who)[i], (uint32_t)c->history, *hist + i * (size_t)c->history);
    return 0;
}

static int run(const bench_cfg *c, reco_algo algo, bench_data *d, const char *dir)
{
    cxm_store *store;
    cxm_store_opts so = {.nosync = true};
    recodb_opts ro = {.neighbours = (uint32_t)c->neighbours,
                      .max_history = (uint32_t)c->max_history};
    recodb *db = NULL;
    recodb_reader *reader = NULL;
    if (cxm_store_open(dir, &so, &store) || recodb_open(store, &ro, &db) ||
        recodb_reader_create(db, &reader))
        return -1;
    if (c->quality) {
        int rc = run_quality(c, algo, d, db, reader);
        recodb_reader_free(reader);
        recodb_close(db);
        cxm_store_close(store);
        return rc;
    }
    if (append_all(db, d))
        return -1;
    char err[256];
    recodb_train_report rep;
    if (recodb_train(db, algo, &rep, err, sizeof err)) {
        fprintf(stderr, "cxm-bench-reco: train: %s\n", err);
        return -1;
    }
    printf("trained version %" PRIu64 ": algorithm %d (1 pop, 2 itemknn, 3 ease, 4 als, 5 seq), "
           "%" PRIu32 " customers, %" PRIu32 " items, %" PRIu64 " interactions, %.1f MiB, %.2f s\n",
           rep.version, (int)rep.algo, rep.customers, rep.items, rep.interactions,
           (double)rep.model_bytes / (1 << 20), rep.seconds);
    if (rep.chosen)
        printf("chosen on temporal validation: blend %g, hist_half %g, seq_lambda %g (ndcg@10 "
               "%.4f, EASE alone %.4f)%s%s\n",
               rep.choice.params.blend, rep.choice.params.hist_half, rep.choice.params.seq_lambda,
               rep.choice.val_ndcg, rep.choice.ease_ndcg, rep.choice.note[0] ? ": " : "",
               rep.choice.note);
    reco_matrix x = {0};
    reco_model *model = NULL;
    uint32_t *who = NULL, *hist = NULL;
    size_t nwho = 0;
    reco_params p;
    reco_params_default(rep.algo, &p);
    if (rep.chosen)
        p = rep.choice.params;
    if (c->neighbours)
        p.neighbours = (uint32_t)c->neighbours;
    int rc = prepare_reco(c, rep.algo, &p, d, &x, &model, &who, &hist, &nwho);
    reco_model *model32 = NULL;
    char err2[256];
    bool seq = rep.algo == RECO_SEQ;
    p.full_precision = !seq;
    if (rc == 0 && reco_train(seq ? RECO_EASE : rep.algo, &p, &x, &model32, err2, sizeof err2) != 0)
        rc = -1;
    bench_run b = {db, reader, model, model32, seq ? "ease" : "reco32", NULL, who, hist, nwho};
    if (rc == 0 && reco_scratch_create(model, &b.scratch) == 0)
        rc = serve_rounds(c, &b, d);
    reco_scratch_free(b.scratch);
    reco_model_free(model);
    reco_model_free(model32);
    recomatrix_free(&x);
    free(who);
    free(hist);
    recodb_reader_free(reader);
    recodb_close(db);
    cxm_store_close(store);
    return rc;
}

/* --export-from DIR --export FILE: DIR's serving model to FILE. */
static int export_model(const char *dir, const char *path)
{
    cxm_store *store;
    recodb *db = NULL;
    char err[512] = "";
    struct stat st;
    /* cxm_store_open would create a missing directory: an empty store has
     * no model, and the message would not say the path was wrong. */
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "cxm-bench-reco: --export-from %s: not a directory; give cxmd's --data\n",
                dir);
        return 1;
    }
    int rc = cxm_store_open(dir, NULL, &store);
    if (rc != 0) {
        fprintf(stderr,
                "cxm-bench-reco: --export-from %s: %s (if a cxmd runs on it, stop it first)\n", dir,
                cxm_store_last_error());
        return 1;
    }
    if ((rc = recodb_open(store, NULL, &db)) != 0)
        snprintf(err, sizeof err, "opening the recommendation tables: %s", cxm_strerror(rc));
    else
        rc = recodb_export(db, path, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "cxm-bench-reco: --export %s: %s\n", path, err);
    else
        printf("the serving model of %s written to %s\n", dir, path);
    recodb_close(db);
    cxm_store_close(store);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    bench_cfg c = {.algo = "auto", .history = 200, .calls = 20000, .k = 10, .seed = 42};
    cxm_opt opts[] = {
        {"ratings", CXM_OPT_STR, &c.ratings, 0, 0, "user,item,rating,ts or MovieLens ratings CSV"},
        {"algo", CXM_OPT_STR, &c.algo, 0, 0, "auto, ease, itemknn, als, pop or seq"},
        {"history", CXM_OPT_INT, &c.history, 1, 10000, "interactions per served customer"},
        {"calls", CXM_OPT_INT, &c.calls, 10, 100000000, "recommendations to time"},
        {"k", CXM_OPT_INT, &c.k, 1, 1000, "length of each list"},
        {"neighbours", CXM_OPT_INT, &c.neighbours, 0, 100000,
         "item-kNN / EASE neighbours per item (0: the algorithm's default)"},
        {"max-history", CXM_OPT_INT, &c.max_history, 0, 1000000,
         "interactions scored per customer (0: recodb's default)"},
        {"quality", CXM_OPT_BOOL, &c.quality, 0, 0,
         "measure NDCG of recodb_recommend on a random 80/20 split instead of time"},
        {"seed", CXM_OPT_INT, &c.seed, 0, INT64_MAX, "seed of the --quality split"},
        {"export-from", CXM_OPT_STR, &c.export_from, 0, 0,
         "a stopped cxmd's data directory: write its serving model to --export, nothing else"},
        {"export", CXM_OPT_STR, &c.export_to, 0, 0, "with --export-from: the CXMX file to write"},
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    char err[512];
    int rc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == 1) {
        cxm_opts_usage(stdout, "cxm-bench-reco",
                       "in-process serving time of the recommendation core", opts, nopts);
        return 0;
    }
    reco_algo algo = parse_algo(c.algo);
    if (rc || (int)algo < 0) {
        fprintf(stderr, "cxm-bench-reco: %s\n",
                rc ? err : "--algo: not auto, ease, itemknn, als, pop or seq");
        return 2;
    }
    if (!c.export_from != !c.export_to) {
        fprintf(stderr, "cxm-bench-reco: --export-from and --export go together\n");
        return 2;
    }
    if (c.export_from)
        return export_model(c.export_from, c.export_to);
    bench_data d = {0};
    if (c.ratings ? load_csv(c.ratings, &d) : synthesise(&d))
        return 1;
    printf("%zu interactions from %s\n", d.log.n, c.ratings ? c.ratings : "the synthetic set");
    char dir[] = "/tmp/cxm-bench-reco-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("cxm-bench-reco: mkdtemp");
        return 1;
    }
    rc = run(&c, algo, &d, dir);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    recoids_free(&d.customers);
    recoids_free(&d.items);
    recolog_free(&d.log);
    return rc ? 1 : 0;
}
