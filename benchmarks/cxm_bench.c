/*
 * cxm_bench.c - cxm-bench, a closed-loop gRPC load generator.
 *
 * Each connection is its own channel with a local subchannel pool, so N
 * connections really are N TCP connections. Every connection keeps --inflight
 * unary calls outstanding: a completion immediately starts the next call on
 * the same slot (closed loop: the offered load adapts to the server, and
 * latency is the server's plus the client's, never queueing in the
 * generator). Threads each own a cxm_client_loop and a share of the
 * connections, and keep their own histogram and counters, merged at the end,
 * so the hot path takes no locks.
 *
 * Only calls that complete inside the measurement window (after --warmup,
 * for --duration) are counted. Latencies go into a log-linear histogram with
 * under 0.8% bucket width from 1 ns to 60 s.
 *
 * Requests come from a generator (--generator, see cxm_bench_gens) that
 * builds a fresh request per call, and may pick a different method for each
 * (profile-mixed), from --request-file (the same raw bytes every call), or
 * from --requests (a recorded stream, each record once in file order, or
 * round and round with --loop; see bench_replay.h).
 *
 * A run has up to two phases on the same connections and threads: with
 * --seed-customers, every synthetic customer is upserted once, as fast as the
 * closed loop goes, so that reads find profiles; then the measured run.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/opts.h"
#include "grpc/health/v1/health.pb-c.h"

#include "bench_fbreq.h"
#include "bench_journey.h"
#include "bench_profile.h"
#include "bench_replay.h"

#define CXM_BENCH_DEFAULT_METHOD "/grpc.health.v1.Health/Check"

/* ---- configuration ---- */

typedef struct cxm_bench_cfg {
    const char *target;
    cxm_channel_opts chan; /* TLS flags */
    const char *method;
    const char *request_file;
    const char *generator;
    int64_t connections, inflight, threads;
    int64_t duration_ms, warmup_ms, timeout_ms;
    bool json;
    int64_t customers;               /* synthetic customers of profile workloads */
    const char *zipf_arg, *read_arg; /* as given; parsed into the two below */
    double zipf_s, read_ratio;       /* 0 = uniform keys; share of reads in mixed */
    bool seed;                       /* --seed-customers */
    const char *requests;            /* --requests FILE, or NULL */
    bool loop;                       /* --loop: replay the records round and round */
    int64_t batch;                   /* events per Track call of track-batch */
    int64_t from_ms, to_ms;          /* the analytics' range; 0 = the last 30 days */
    const char *token, *token_file;  /* --token, --token-file (CXM_TOKEN[_FILE]) */
    char *bearer;                    /* the token sent, from either */
} cxm_bench_cfg;

/* ---- request generators ----
 *
 * A workload is a row: a name, the methods it may call, and a function that
 * builds the request for one call and says which of those methods it goes
 * to. make() runs on the loop thread for every call, so it can vary the
 * request (keys, payload sizes) and the method from the per-thread context
 * without locks. Connections register every method of the workload up front
 * (cxm_bench_bind), so choosing one per call costs an index, not a lookup. */

#define CXM_BENCH_MAX_METHODS 2

/* make() has nothing more to send: the slot retires without an error. */
#define CXM_BENCH_EXHAUSTED 1

typedef struct cxm_bench_gen_ctx {
    unsigned thread;                /* index of the loop thread */
    uint64_t seq;                   /* calls made by this thread so far */
    uint64_t rng;                   /* per-thread xorshift state; see cxm_bench_rand */
    grpc_byte_buffer *raw;          /* --request-file payload, or NULL */
    const cxm_bench_keys *keys;     /* which customer a profile call is about */
    double read_ratio;              /* --read-ratio */
    atomic_uint_fast64_t *next;     /* the next customer to seed or record to replay, shared */
    uint64_t customers;             /* seeding: where it ends */
    const cxm_bench_replay *replay; /* --requests records, or NULL */
    bool loop;                      /* --loop */
    cxm_bench_events events;        /* this thread's new touchpoint events */
    size_t batch;                   /* --batch */
    int64_t from_ms, to_ms;         /* the analytics' range */
} cxm_bench_gen_ctx;

typedef struct cxm_bench_gen {
    const char *name;
    /* The methods make() chooses from by index; methods[0] is the default
     * and the only one --method may replace. */
    const char *methods[CXM_BENCH_MAX_METHODS];
    const char *help;
    /* A new request for one call in *out (the caller destroys it) and its
     * method index in *method (preset to 0); or CXM_BENCH_EXHAUSTED, or a
     * negative CXM_E* code. */
    int (*make)(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method);
} cxm_bench_gen;

static inline uint64_t cxm_bench_rand(cxm_bench_gen_ctx *ctx)
{
    return cxm_bench_xorshift(&ctx->rng);
}

static uint64_t cxm_bench_customer(cxm_bench_gen_ctx *ctx)
{
    return cxm_bench_keys_pick(ctx->keys, &ctx->rng);
}

static int cxm_bench_make_health(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    return cxm_bench_pack(&req.base, out);
}

/* --request-file: the same bytes each call; a copy only takes a reference. */
static int cxm_bench_make_raw(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    *out = grpc_byte_buffer_copy(ctx->raw);
    return *out ? 0 : CXM_ENOMEM;
}

static int cxm_bench_make_upsert(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    uint64_t i = cxm_bench_customer(ctx);
    return cxm_bench_profile_upsert(i, cxm_bench_rand(ctx), out);
}

static int cxm_bench_make_get(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    return cxm_bench_profile_get(cxm_bench_customer(ctx), out);
}

static int cxm_bench_make_resolve(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    return cxm_bench_profile_resolve(cxm_bench_customer(ctx), out);
}

/* profile-mixed: methods[0] GetProfile, methods[1] UpsertProfile. */
static int cxm_bench_make_mixed(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    if (cxm_bench_unit(&ctx->rng) < ctx->read_ratio)
        return cxm_bench_make_get(ctx, out, method);
    *method = 1;
    return cxm_bench_make_upsert(ctx, out, method);
}

/* --seed-customers: each customer once, in order, across all threads. */
static int cxm_bench_make_seed(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    uint64_t i = atomic_fetch_add_explicit(ctx->next, 1, memory_order_relaxed);
    if (i >= ctx->customers)
        return CXM_BENCH_EXHAUSTED;
    return cxm_bench_profile_upsert(i, cxm_bench_rand(ctx), out);
}

/* --requests: the records in file order across all threads, each once, or
 * round again with --loop. */
static int cxm_bench_make_replay(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    uint64_t i = atomic_fetch_add_explicit(ctx->next, 1, memory_order_relaxed);
    if (i >= ctx->replay->n) {
        if (!ctx->loop)
            return CXM_BENCH_EXHAUSTED;
        i %= ctx->replay->n;
    }
    *out = grpc_byte_buffer_copy(ctx->replay->records[i]);
    return *out ? 0 : CXM_ENOMEM;
}

static int cxm_bench_make_track_one(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out,
                                    unsigned *method)
{
    return cxm_bench_track(&ctx->events, 1, out);
}

static int cxm_bench_make_track_batch(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out,
                                      unsigned *method)
{
    return cxm_bench_track(&ctx->events, ctx->batch, out);
}

static int cxm_bench_make_funnel(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    return cxm_bench_funnel(ctx->from_ms, ctx->to_ms, out);
}

static int cxm_bench_make_paths(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    return cxm_bench_paths(ctx->from_ms, ctx->to_ms, out);
}

static int cxm_bench_make_touchpoints(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out,
                                      unsigned *method)
{
    return cxm_bench_touchpoints(ctx->from_ms, ctx->to_ms, out);
}

static int cxm_bench_make_submit(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    uint64_t i = cxm_bench_customer(ctx);
    return cxm_bench_feedback_submit(ctx->events.nonce, ctx->thread, ctx->seq, i, &ctx->rng, out);
}

static int cxm_bench_make_analyze(cxm_bench_gen_ctx *ctx, grpc_byte_buffer **out, unsigned *method)
{
    return cxm_bench_feedback_text(ctx->seq, out);
}

static const cxm_bench_gen cxm_bench_gens[] = {
    {"health",
     {CXM_BENCH_DEFAULT_METHOD},
     "empty grpc.health.v1.HealthCheckRequest",
     cxm_bench_make_health},
    {"profile-upsert",
     {CXM_BENCH_METHOD_UPSERT},
     "UpsertProfile of a random customer: email, phone and CRM id, 3 to 5 attributes",
     cxm_bench_make_upsert},
    {"profile-get",
     {CXM_BENCH_METHOD_GET},
     "GetProfile of a random customer by email",
     cxm_bench_make_get},
    {"profile-resolve",
     {CXM_BENCH_METHOD_RESOLVE},
     "ResolveIdentity of a random customer's email, never creating one",
     cxm_bench_make_resolve},
    {"profile-mixed",
     {CXM_BENCH_METHOD_GET, CXM_BENCH_METHOD_UPSERT},
     "profile-get with probability --read-ratio, else profile-upsert",
     cxm_bench_make_mixed},
    {"track-one",
     {CXM_BENCH_METHOD_TRACK},
     "Track of one new event of a random customer (cxm-gen's touchpoints, ~250 bytes)",
     cxm_bench_make_track_one},
    {"track-batch",
     {CXM_BENCH_METHOD_TRACK},
     "Track of --batch new events of random customers",
     cxm_bench_make_track_batch},
    {"feedback-submit",
     {CXM_BENCH_METHOD_SUBMIT},
     "SubmitResponse of a new response of a random customer to the survey " CXM_BENCH_SURVEY
     " (score, a rating, a comment on one call in four)",
     cxm_bench_make_submit},
    {"analyze-text",
     {CXM_BENCH_METHOD_ANALYZE},
     "AnalyzeText of a ~100-character Korean or English customer comment",
     cxm_bench_make_analyze},
    {"journey-funnel",
     {CXM_BENCH_METHOD_FUNNEL},
     "Funnel page_view > product_view > add_to_cart > purchase, 7-day window, over "
     "--from-ms .. --to-ms",
     cxm_bench_make_funnel},
    {"journey-paths",
     {CXM_BENCH_METHOD_PATHS},
     "Paths of up to 5 touchpoints from product_page, top 20, over the same range",
     cxm_bench_make_paths},
    {"journey-touchpoints",
     {CXM_BENCH_METHOD_TOUCHPOINTS},
     "TouchpointStats of every touchpoint, day buckets, goal purchase within 7 days, over the same "
     "range",
     cxm_bench_make_touchpoints},
};
#define CXM_BENCH_NGENS (sizeof cxm_bench_gens / sizeof cxm_bench_gens[0])

static const cxm_bench_gen cxm_bench_gen_raw = {
    "file", {NULL}, "--request-file bytes", cxm_bench_make_raw};

static const cxm_bench_gen cxm_bench_gen_replay = {
    "replay", {NULL}, "--requests records", cxm_bench_make_replay};

static const cxm_bench_gen cxm_bench_gen_seed = {
    "seed", {CXM_BENCH_METHOD_UPSERT}, "every customer once", cxm_bench_make_seed};

static const cxm_bench_gen *cxm_bench_gen_find(const char *name)
{
    for (size_t i = 0; i < CXM_BENCH_NGENS; i++)
        if (strcmp(cxm_bench_gens[i].name, name) == 0)
            return &cxm_bench_gens[i];
    return NULL;
}

static size_t cxm_bench_gen_nmethods(const cxm_bench_gen *gen)
{
    size_t n = 0;
    while (n < CXM_BENCH_MAX_METHODS && gen->methods[n])
        n++;
    return n;
}

static void cxm_bench_gens_usage(FILE *out)
{
    fprintf(out, "\ngenerators (--generator NAME; the methods they call in brackets):\n");
    for (size_t i = 0; i < CXM_BENCH_NGENS; i++) {
        const cxm_bench_gen *g = &cxm_bench_gens[i];
        fprintf(out, "  %-16s %s\n  %-16s [%s", g->name, g->help, "", g->methods[0]);
        for (size_t m = 1; m < cxm_bench_gen_nmethods(g); m++)
            fprintf(out, ", %s", g->methods[m]);
        fputs("]\n", out);
    }
    fprintf(out, "\nProfile workloads pick customer i of --customers uniformly (or Zipf with "
                 "--zipf S),\nidentified as user<i>@example.com, +8210<i as 8 digits>, crm-<i>. "
                 "Reads of customers\nthat do not exist count as NOT_FOUND errors: "
                 "--seed-customers creates them first.\n"
                 "Track workloads send new event ids on every run (b<start time>-<thread>-<n>),\n"
                 "so every event is stored; a customer unknown to the service is created.\n"
                 "TrackStream is measured by cxm-bench-track.\n");
}

/* ---- log-linear latency histogram (nanoseconds) ----
 *
 * HdrHistogram's layout: values below 256 have a bucket each; above, every
 * power of two is split into 128 equal buckets, so a bucket is at most 1/128
 * (0.78%) of its value wide. Up to 2^36 ns (68 s) that is 3840 counters. */

#define CXM_HIST_SUB_BITS 8
#define CXM_HIST_LINEAR (1u << CXM_HIST_SUB_BITS) /* 256 */
#define CXM_HIST_HALF (CXM_HIST_LINEAR / 2)       /* 128 */
#define CXM_HIST_MAX_BITS 36
#define CXM_HIST_BUCKETS (CXM_HIST_LINEAR + (CXM_HIST_MAX_BITS - CXM_HIST_SUB_BITS) * CXM_HIST_HALF)
#define CXM_HIST_MAX_NS (60ULL * 1000 * 1000 * 1000)

typedef struct cxm_hist {
    uint64_t counts[CXM_HIST_BUCKETS];
    uint64_t total, min, max;
    double sum;
} cxm_hist;

static void cxm_hist_init(cxm_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static size_t cxm_hist_index(uint64_t v)
{
    if (v < CXM_HIST_LINEAR)
        return (size_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - (CXM_HIST_SUB_BITS - 1);
    return CXM_HIST_LINEAR + (msb - CXM_HIST_SUB_BITS) * CXM_HIST_HALF +
           (size_t)((v >> shift) - CXM_HIST_HALF);
}

/* The middle of a bucket: within 0.4% of any value recorded in it. */
static double cxm_hist_value(size_t idx)
{
    if (idx < CXM_HIST_LINEAR)
        return (double)idx;
    size_t k = idx - CXM_HIST_LINEAR;
    unsigned shift = (unsigned)(k / CXM_HIST_HALF) + 1;
    uint64_t lower = (uint64_t)(CXM_HIST_HALF + k % CXM_HIST_HALF) << shift;
    return (double)lower + (double)(1ULL << shift) / 2.0;
}

static void cxm_hist_record(cxm_hist *h, uint64_t ns)
{
    if (ns > CXM_HIST_MAX_NS)
        ns = CXM_HIST_MAX_NS;
    h->counts[cxm_hist_index(ns)]++;
    h->total++;
    h->sum += (double)ns;
    if (ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
}

static void cxm_hist_merge(cxm_hist *into, const cxm_hist *from)
{
    for (size_t i = 0; i < CXM_HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->total += from->total;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

/* The value at quantile q (0..1] in nanoseconds, 0 when empty. */
static double cxm_hist_quantile(const cxm_hist *h, double q)
{
    if (!h->total)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < CXM_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            double v = cxm_hist_value(i);
            /* Never report outside what was actually seen. */
            if (v > (double)h->max)
                v = (double)h->max;
            if (v < (double)h->min)
                v = (double)h->min;
            return v;
        }
    }
    return (double)h->max;
}

/* ---- run state ---- */

#define CXM_BENCH_NSTATUS 17 /* gRPC status codes 0..16 */

/* Outcomes of calls inside the measurement window. */
typedef struct cxm_bench_stats {
    cxm_hist hist; /* latency of every counted call, OK or not */
    uint64_t completed;
    uint64_t by_status[CXM_BENCH_NSTATUS + 1]; /* last: codes outside 0..16 */
    uint64_t start_failures;                   /* calls that could not even be started */
    uint64_t completed_by_method[CXM_BENCH_MAX_METHODS], ok_by_method[CXM_BENCH_MAX_METHODS];
} cxm_bench_stats;

typedef struct cxm_bench_conn {
    cxm_channel *ch;
    void *methods[CXM_BENCH_MAX_METHODS]; /* the phase's methods, by generator index */
} cxm_bench_conn;

typedef struct cxm_bench_thread cxm_bench_thread;

/* One outstanding-call position: the callback's user pointer. */
typedef struct cxm_bench_slot {
    cxm_bench_thread *t;
    cxm_bench_conn *conn;
    uint64_t started_ns;
    unsigned method; /* of the call outstanding */
} cxm_bench_slot;

struct cxm_bench_thread {
    pthread_t tid;
    unsigned index;
    cxm_client_loop *loop;
    cxm_bench_slot *slots;
    size_t nslots;
    size_t outstanding;
    cxm_bench_gen_ctx gen_ctx;
    cxm_bench_stats stats;
    int error; /* a CXM_E* code that stopped the thread early */
};

/* Shared by all threads; written before they start, except the atomics. */
static struct {
    const cxm_bench_cfg *cfg;
    const cxm_bench_gen *gen;                   /* of the phase running */
    const char *methods[CXM_BENCH_MAX_METHODS]; /* its method paths, --method applied */
    size_t nmethods;
    char label[256]; /* the methods joined by ",", for reports */
    cxm_bench_keys keys;
    cxm_bench_replay replay;   /* --requests */
    atomic_uint_fast64_t next; /* next customer to seed or record to replay */
    double seed_s;             /* how long seeding took; 0 = no seeding */
    uint64_t seeded;           /* customers upserted OK while seeding */
    uint64_t measure_start_ns, measure_end_ns;
    uint64_t give_up_ns;           /* no OK answer by then: the target is not serving */
    atomic_uint_fast64_t ok_total; /* OK answers in every phase */
    atomic_uint_fast64_t failed_total;
    atomic_int first_failure; /* status of the first failed call, -1 = none */
    atomic_bool stop;
    atomic_uint_fast64_t stopped_at_ns; /* when stop was first set, 0 = not set */
    uint64_t nonce;                     /* the run's start time: event ids new to the server */
} cxm_bench_run;

static uint64_t cxm_bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void cxm_bench_request_stop(void)
{
    uint_fast64_t zero = 0;
    atomic_compare_exchange_strong(&cxm_bench_run.stopped_at_ns, &zero, cxm_bench_now_ns());
    atomic_store(&cxm_bench_run.stop, true);
}

static void cxm_bench_on_signal(int sig)
{
    /* Only an async-signal-safe store; the threads notice within 100 ms. */
    atomic_store(&cxm_bench_run.stop, true);
}

/* ---- the closed loop ---- */

static void cxm_bench_done(void *user, grpc_status_code status, grpc_byte_buffer *response);

/* Start the next call on a slot; false when the slot retires. */
static bool cxm_bench_issue(cxm_bench_slot *slot)
{
    cxm_bench_thread *t = slot->t;
    grpc_byte_buffer *req = NULL;
    slot->method = 0;
    int rc = cxm_bench_run.gen->make(&t->gen_ctx, &req, &slot->method);
    if (rc == CXM_BENCH_EXHAUSTED)
        return false;
    t->gen_ctx.seq++;
    if (rc == 0) {
        slot->started_ns = cxm_bench_now_ns();
        /* The loop sends its own reference: ours can go right away. */
        rc = cxm_client_loop_unary(t->loop, slot->conn->ch, slot->conn->methods[slot->method], req,
                                   cxm_bench_run.cfg->timeout_ms, cxm_bench_done, slot);
        grpc_byte_buffer_destroy(req);
    }
    if (rc != 0) {
        t->stats.start_failures++;
        if (!t->error)
            t->error = rc;
        return false;
    }
    t->outstanding++;
    return true;
}

static void cxm_bench_count(cxm_bench_thread *t, unsigned method, grpc_status_code status,
                            uint64_t now, uint64_t latency)
{
    if (status == GRPC_STATUS_OK) {
        atomic_fetch_add_explicit(&cxm_bench_run.ok_total, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&cxm_bench_run.failed_total, 1, memory_order_relaxed);
        int none = -1;
        atomic_compare_exchange_strong(&cxm_bench_run.first_failure, &none, (int)status);
    }
    if (now < cxm_bench_run.measure_start_ns || now >= cxm_bench_run.measure_end_ns ||
        atomic_load_explicit(&cxm_bench_run.stop, memory_order_relaxed))
        return; /* warm-up, or a straggler after the window or a stop */
    unsigned code = (unsigned)status < CXM_BENCH_NSTATUS ? (unsigned)status : CXM_BENCH_NSTATUS;
    t->stats.by_status[code]++;
    t->stats.completed++;
    t->stats.completed_by_method[method]++;
    t->stats.ok_by_method[method] += status == GRPC_STATUS_OK;
    cxm_hist_record(&t->stats.hist, latency);
}

/* A target that refuses every call would otherwise be hammered in a tight
 * loop for the whole run; stop as soon as it is clear nothing answers. */
static void cxm_bench_check_give_up(uint64_t now)
{
    if (now >= cxm_bench_run.give_up_ns &&
        atomic_load_explicit(&cxm_bench_run.ok_total, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&cxm_bench_run.failed_total, memory_order_relaxed) > 0)
        cxm_bench_request_stop();
}

/* Whether a slot should start another call. Checked in the callback, not
 * only between cxm_client_loop_run() calls: when calls fail instantly
 * (connection refused) completions never stop coming and run never returns. */
static bool cxm_bench_keep_going(uint64_t now)
{
    cxm_bench_check_give_up(now);
    if (atomic_load_explicit(&cxm_bench_run.stop, memory_order_relaxed)) {
        cxm_bench_request_stop(); /* records when, if a signal set the flag */
        return false;
    }
    return now < cxm_bench_run.measure_end_ns;
}

static void cxm_bench_done(void *user, grpc_status_code status, grpc_byte_buffer *response)
{
    cxm_bench_slot *slot = user;
    cxm_bench_thread *t = slot->t;
    uint64_t now = cxm_bench_now_ns();
    t->outstanding--;
    cxm_bench_count(t, slot->method, status, now, now - slot->started_ns);
    if (cxm_bench_keep_going(now))
        cxm_bench_issue(slot);
}

static void *cxm_bench_thread_main(void *arg)
{
    cxm_bench_thread *t = arg;
    for (size_t i = 0; i < t->nslots; i++)
        if (!cxm_bench_issue(&t->slots[i]))
            break;
    while (t->outstanding > 0) {
        cxm_client_loop_run(t->loop, 100);
        uint64_t now = cxm_bench_now_ns();
        cxm_bench_keep_going(now);
        /* Stragglers past the window are not counted; cut them short
         * rather than wait out a long --timeout. */
        if (now >= cxm_bench_run.measure_end_ns + 1000000000ULL)
            break;
    }
    return NULL;
}

/* ---- setup ---- */

static int cxm_bench_read_file(const char *path, grpc_byte_buffer **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cxm-bench: cannot open --request-file %s: %s\n", path, strerror(errno));
        return CXM_EINVAL;
    }
    char *data = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            char *p = realloc(data, cap);
            if (!p) {
                rc = CXM_ENOMEM;
                break;
            }
            data = p;
        }
        size_t n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                fprintf(stderr, "cxm-bench: cannot read --request-file %s\n", path);
                rc = CXM_EIO;
            }
            break;
        }
    }
    fclose(f);
    if (rc == 0) {
        grpc_slice s = len ? grpc_slice_from_copied_buffer(data, len) : grpc_empty_slice();
        *out = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        rc = *out ? 0 : CXM_ENOMEM;
    }
    free(data);
    return rc;
}

static long cxm_bench_ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* Threads default to one per connection, up to the CPU count: one loop
 * thread drives many connections well, but on loopback the generator must
 * not be the bottleneck. */
static size_t cxm_bench_nthreads(const cxm_bench_cfg *cfg)
{
    int64_t n = cfg->threads > 0 ? cfg->threads : cxm_bench_ncpus();
    if (n > cfg->connections)
        n = cfg->connections;
    return (size_t)n;
}

static int cxm_bench_open_conns(const cxm_bench_cfg *cfg, cxm_bench_conn *conns)
{
    cxm_channel_opts copts = cfg->chan;
    copts.use_local_subchannel_pool = 1;
    copts.token = cfg->bearer;
    for (int64_t i = 0; i < cfg->connections; i++) {
        int rc = cxm_channel_open(cfg->target, &copts, &conns[i].ch);
        if (rc != 0) {
            fprintf(stderr, "cxm-bench: cannot open a channel to %s: %s\n", cfg->target,
                    cxm_channel_last_error());
            return rc;
        }
    }
    return 0;
}

/* Register the phase's methods on every connection (the channel keeps them
 * until it closes, so the seeding phase's stay valid too). */
static int cxm_bench_bind(const cxm_bench_cfg *cfg, cxm_bench_conn *conns)
{
    for (int64_t i = 0; i < cfg->connections; i++)
        for (size_t m = 0; m < cxm_bench_run.nmethods; m++) {
            conns[i].methods[m] = cxm_channel_method(conns[i].ch, cxm_bench_run.methods[m]);
            if (!conns[i].methods[m])
                return CXM_ENOMEM;
        }
    return 0;
}

/* Connections are dealt to threads round-robin; each connection brings its
 * --inflight slots. */
static int cxm_bench_setup_thread(cxm_bench_thread *t, unsigned index, size_t nthreads,
                                  const cxm_bench_cfg *cfg, cxm_bench_conn *conns,
                                  grpc_byte_buffer *raw)
{
    t->index = index;
    t->gen_ctx = (cxm_bench_gen_ctx){.thread = index,
                                     .rng = 0x9E3779B97F4A7C15ULL * (index + 1),
                                     .raw = raw,
                                     .keys = &cxm_bench_run.keys,
                                     .read_ratio = cfg->read_ratio,
                                     .next = &cxm_bench_run.next,
                                     .customers = (uint64_t)cfg->customers,
                                     .replay = &cxm_bench_run.replay,
                                     .loop = cfg->loop,
                                     .batch = (size_t)cfg->batch,
                                     .from_ms = cfg->from_ms,
                                     .to_ms = cfg->to_ms};
    int rc = cxm_bench_events_init(&t->gen_ctx.events, cxm_bench_run.nonce, index,
                                   (size_t)cfg->batch, &cxm_bench_run.keys);
    if (rc != 0)
        return rc;
    size_t nconns = 0;
    for (size_t c = index; c < (size_t)cfg->connections; c += nthreads)
        nconns++;
    t->nslots = nconns * (size_t)cfg->inflight;
    t->slots = calloc(t->nslots, sizeof *t->slots);
    if (!t->slots)
        return CXM_ENOMEM;
    size_t k = 0;
    for (size_t c = index; c < (size_t)cfg->connections; c += nthreads)
        for (int64_t j = 0; j < cfg->inflight; j++)
            t->slots[k++] = (cxm_bench_slot){.t = t, .conn = &conns[c]};
    return cxm_client_loop_create(&t->loop);
}

/* ---- report ---- */

static double cxm_bench_us(double ns)
{
    return ns / 1000.0;
}

static const char *cxm_bench_status_label(size_t code)
{
    return code < CXM_BENCH_NSTATUS ? cxm_status_name((grpc_status_code)code) : "OTHER";
}

/* One indented line per failing status, and the calls never started. */
static void cxm_bench_print_failures(FILE *out, const cxm_bench_stats *s)
{
    for (size_t i = 1; i <= CXM_BENCH_NSTATUS; i++)
        if (s->by_status[i])
            fprintf(out, "    %-20s %" PRIu64 "\n", cxm_bench_status_label(i), s->by_status[i]);
    if (s->start_failures)
        fprintf(out, "    %-20s %" PRIu64 "\n", "NOT_STARTED", s->start_failures);
}

static void cxm_bench_print_human(FILE *out, const cxm_bench_cfg *cfg, const cxm_bench_stats *s,
                                  double secs, uint64_t errors)
{
    const cxm_hist *h = &s->hist;
    fprintf(out, "cxm-bench %s %s: %" PRId64 " connections x %" PRId64 " in flight, %.2f s\n",
            cfg->target, cxm_bench_run.label, cfg->connections, cfg->inflight, secs);
    fprintf(out, "  completed  %" PRIu64 " (%" PRIu64 " OK, %" PRIu64 " errors)\n", s->completed,
            s->by_status[GRPC_STATUS_OK], errors);
    cxm_bench_print_failures(out, s);
    /* A mixed workload can fail on one method only (NOT_FOUND on reads). */
    for (size_t m = 0; cxm_bench_run.nmethods > 1 && m < cxm_bench_run.nmethods; m++)
        fprintf(out, "    %-40s %" PRIu64 " (%" PRIu64 " OK)\n", cxm_bench_run.methods[m],
                s->completed_by_method[m], s->ok_by_method[m]);
    fprintf(out, "  qps        %.1f\n", secs > 0 ? (double)s->completed / secs : 0.0);
    fprintf(out, "  latency us p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f)\n",
            cxm_bench_us(cxm_hist_quantile(h, 0.50)), cxm_bench_us(cxm_hist_quantile(h, 0.90)),
            cxm_bench_us(cxm_hist_quantile(h, 0.99)), cxm_bench_us(cxm_hist_quantile(h, 0.999)),
            cxm_bench_us(h->total ? (double)h->max : 0),
            cxm_bench_us(h->total ? h->sum / (double)h->total : 0));
}

/* JSON string contents: method paths and targets are plain ASCII, but a
 * quote or backslash must still not break the line. */
static void cxm_bench_json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void cxm_bench_print_json(FILE *out, const cxm_bench_cfg *cfg, const char *gen,
                                 size_t nthreads, const cxm_bench_stats *s, double secs,
                                 uint64_t errors)
{
    const cxm_hist *h = &s->hist;
    fputs("{\"target\":", out);
    cxm_bench_json_str(out, cfg->target);
    fputs(",\"method\":", out);
    cxm_bench_json_str(out, cxm_bench_run.label);
    fputs(",\"generator\":", out);
    cxm_bench_json_str(out, gen);
    if (!cfg->requests)
        fprintf(out, ",\"customers\":%" PRId64, cfg->customers);
    else {
        fputs(",\"requests\":", out);
        cxm_bench_json_str(out, cfg->requests);
        fprintf(out, ",\"records\":%zu,\"loop\":%s", cxm_bench_run.replay.n,
                cfg->loop ? "true" : "false");
    }
    if (cfg->seed)
        fprintf(out, ",\"seeded\":%" PRIu64 ",\"seed_s\":%.3f,\"seed_per_s\":%.1f",
                cxm_bench_run.seeded, cxm_bench_run.seed_s,
                cxm_bench_run.seed_s > 0 ? (double)cxm_bench_run.seeded / cxm_bench_run.seed_s
                                         : 0.0);
    fprintf(out,
            ",\"connections\":%" PRId64 ",\"inflight\":%" PRId64 ",\"threads\":%zu"
            ",\"duration_s\":%.3f,\"completed\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64
            ",\"errors_by_status\":{",
            cfg->connections, cfg->inflight, nthreads, secs, s->completed,
            s->by_status[GRPC_STATUS_OK], errors);
    const char *sep = "";
    for (size_t i = 1; i <= CXM_BENCH_NSTATUS; i++) {
        if (!s->by_status[i])
            continue;
        fprintf(out, "%s\"%s\":%" PRIu64, sep, cxm_bench_status_label(i), s->by_status[i]);
        sep = ",";
    }
    if (s->start_failures)
        fprintf(out, "%s\"NOT_STARTED\":%" PRIu64, sep, s->start_failures);
    fprintf(out,
            "},\"qps\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f"
            ",\"max_us\":%.1f,\"mean_us\":%.1f}\n",
            secs > 0 ? (double)s->completed / secs : 0.0, cxm_bench_us(cxm_hist_quantile(h, 0.50)),
            cxm_bench_us(cxm_hist_quantile(h, 0.90)), cxm_bench_us(cxm_hist_quantile(h, 0.99)),
            cxm_bench_us(cxm_hist_quantile(h, 0.999)), cxm_bench_us(h->total ? (double)h->max : 0),
            cxm_bench_us(h->total ? h->sum / (double)h->total : 0));
}

static void cxm_bench_merge(cxm_bench_stats *into, const cxm_bench_stats *from)
{
    cxm_hist_merge(&into->hist, &from->hist);
    into->completed += from->completed;
    for (size_t i = 0; i <= CXM_BENCH_NSTATUS; i++)
        into->by_status[i] += from->by_status[i];
    into->start_failures += from->start_failures;
    for (size_t m = 0; m < CXM_BENCH_MAX_METHODS; m++) {
        into->completed_by_method[m] += from->completed_by_method[m];
        into->ok_by_method[m] += from->ok_by_method[m];
    }
}

/* Every thread's counters of the phase just run, in one (heap: the
 * histogram is 30 KiB); NULL when out of memory. */
static cxm_bench_stats *cxm_bench_total(cxm_bench_thread *threads, size_t nthreads)
{
    cxm_bench_stats *total = calloc(1, sizeof *total);
    if (!total)
        return NULL;
    cxm_hist_init(&total->hist);
    for (size_t i = 0; i < nthreads; i++)
        cxm_bench_merge(total, &threads[i].stats);
    return total;
}

/* The length of the measurement window actually covered, in seconds. */
static double cxm_bench_window_s(void)
{
    uint64_t end = cxm_bench_run.measure_end_ns;
    uint64_t stopped = atomic_load(&cxm_bench_run.stopped_at_ns);
    if (stopped && stopped < end)
        end = stopped;
    if (end <= cxm_bench_run.measure_start_ns)
        return 0;
    return (double)(end - cxm_bench_run.measure_start_ns) / 1e9;
}

/* Why the phase just run got no OK answer, with what to do about the
 * likely causes. */
static void cxm_bench_explain_no_ok(const cxm_bench_cfg *cfg, const cxm_bench_thread *threads)
{
    int first = atomic_load(&cxm_bench_run.first_failure);
    if (first < 0) {
        fprintf(stderr, "cxm-bench: no call to %s completed (%s)\n", cfg->target,
                threads[0].error ? cxm_strerror(threads[0].error) : "stopped before any answer");
        return;
    }
    fprintf(stderr, "cxm-bench: %s never answered %s with OK; the first failure was %s.",
            cfg->target, cxm_bench_run.label,
            first < CXM_BENCH_NSTATUS ? cxm_status_name((grpc_status_code)first)
                                      : "an unknown status");
    if (first == GRPC_STATUS_UNIMPLEMENTED)
        fputs(" The server does not implement this method (yet).\n", stderr);
    else if (cfg->requests)
        fprintf(stderr, " Are the records of %s requests of this method?\n", cfg->requests);
    else if (first == GRPC_STATUS_NOT_FOUND && !cfg->seed)
        fputs(" The customers do not exist: add --seed-customers to create them first.\n", stderr);
    else
        fputs(" Is the server running, and does it serve this method?\n", stderr);
}

/* --requests: how much of the file went through. Played once, the run
 * succeeds only if every record was answered OK (a load must be complete);
 * with --loop, like any other run. 0 or the exit status 1. */
static int cxm_bench_report_replay(const cxm_bench_cfg *cfg, const cxm_bench_stats *s)
{
    FILE *out = cfg->json ? stderr : stdout;
    size_t n = cxm_bench_run.replay.n;
    if (cfg->loop) {
        fprintf(out, "  records    %zu in %s, sent round and round (--loop)\n", n, cfg->requests);
        return 0;
    }
    uint64_t ok = s->by_status[GRPC_STATUS_OK];
    fprintf(out, "  records    %zu in %s: %" PRIu64 " sent, %" PRIu64 " OK\n", n, cfg->requests,
            s->completed, ok);
    if (ok == n)
        return 0;
    fflush(out);
    fprintf(stderr, "cxm-bench: %" PRIu64 " of the %zu records of %s were not answered OK%s\n",
            (uint64_t)n - ok, n, cfg->requests,
            s->completed < n ? " (the run stopped before the end of the file)" : "");
    return 1;
}

/* Report and choose the exit status. */
static int cxm_bench_report(const cxm_bench_cfg *cfg, const char *gen, cxm_bench_thread *threads,
                            size_t nthreads)
{
    cxm_bench_stats *total = cxm_bench_total(threads, nthreads);
    if (!total)
        return 1;
    uint64_t errors = total->completed - total->by_status[GRPC_STATUS_OK];
    double secs = cxm_bench_window_s();
    cxm_bench_print_human(cfg->json ? stderr : stdout, cfg, total, secs, errors);
    if (cfg->json)
        cxm_bench_print_json(stdout, cfg, gen, nthreads, total, secs, errors);
    fflush(stdout);
    int replay_status = cfg->requests ? cxm_bench_report_replay(cfg, total) : 0;
    if (total->by_status[GRPC_STATUS_NOT_FOUND] && !cfg->seed && !cfg->requests)
        fprintf(stderr,
                "cxm-bench: %" PRIu64 " calls were NOT_FOUND; --seed-customers creates the "
                "customers before the run\n",
                total->by_status[GRPC_STATUS_NOT_FOUND]);
    free(total);

    if (atomic_load(&cxm_bench_run.ok_total) > 0)
        return replay_status;
    cxm_bench_explain_no_ok(cfg, threads);
    return 1;
}

/* After the seeding phase: how long it took and at what rate; 0 to go on
 * with the measured run, 1 when nothing was seeded or it was interrupted. */
static int cxm_bench_report_seed(const cxm_bench_cfg *cfg, cxm_bench_thread *threads,
                                 size_t nthreads, double secs)
{
    cxm_bench_stats *total = cxm_bench_total(threads, nthreads);
    if (!total)
        return 1;
    FILE *out = cfg->json ? stderr : stdout;
    cxm_bench_run.seed_s = secs;
    cxm_bench_run.seeded = total->by_status[GRPC_STATUS_OK];
    fprintf(out,
            "cxm-bench: seeded %" PRIu64 " of %" PRId64 " customers in %.2f s (%.1f upserts/s, "
            "%" PRIu64 " errors)\n",
            cxm_bench_run.seeded, cfg->customers, secs,
            secs > 0 ? (double)total->completed / secs : 0.0,
            total->completed - cxm_bench_run.seeded);
    cxm_bench_print_failures(out, total);
    fflush(out);
    free(total);
    if (cxm_bench_run.seeded == 0) {
        cxm_bench_explain_no_ok(cfg, threads);
        return 1;
    }
    if (atomic_load(&cxm_bench_run.stop)) {
        fprintf(stderr, "cxm-bench: stopped while seeding\n");
        return 1;
    }
    return 0;
}

/* ---- main ---- */

/* Effectively no end: seeding runs until every customer is done. Far enough
 * from UINT64_MAX that adding to it cannot wrap. */
#define CXM_BENCH_UNBOUNDED_NS (UINT64_MAX / 4)

/* Make gen and its method paths (with --method in place of the default) the
 * phase's, and register them on every connection. */
static int cxm_bench_use_gen(const cxm_bench_cfg *cfg, cxm_bench_conn *conns,
                             const cxm_bench_gen *gen, const char *method0)
{
    cxm_bench_run.gen = gen;
    cxm_bench_run.nmethods = cxm_bench_gen_nmethods(gen);
    if (cxm_bench_run.nmethods == 0) /* --request-file: --method or health */
        cxm_bench_run.nmethods = 1;
    memcpy(cxm_bench_run.methods, gen->methods, sizeof cxm_bench_run.methods);
    cxm_bench_run.methods[0] = method0;
    size_t len = 0;
    for (size_t m = 0; m < cxm_bench_run.nmethods && len < sizeof cxm_bench_run.label; m++)
        len += (size_t)snprintf(cxm_bench_run.label + len, sizeof cxm_bench_run.label - len, "%s%s",
                                m ? "," : "", cxm_bench_run.methods[m]);
    return cxm_bench_bind(cfg, conns);
}

/* Start every thread on the phase set up by cxm_bench_use_gen and wait for
 * them. Counters start from zero; the stop flag carries over, so a signal
 * during seeding also ends the run. */
static int cxm_bench_phase(cxm_bench_thread *threads, size_t nthreads, uint64_t warm_ns,
                           uint64_t duration_ns)
{
    atomic_store(&cxm_bench_run.ok_total, 0);
    atomic_store(&cxm_bench_run.failed_total, 0);
    atomic_store(&cxm_bench_run.first_failure, -1);
    atomic_store(&cxm_bench_run.stopped_at_ns, 0);
    for (size_t i = 0; i < nthreads; i++) {
        memset(&threads[i].stats, 0, sizeof threads[i].stats);
        cxm_hist_init(&threads[i].stats.hist);
        threads[i].outstanding = 0;
        threads[i].error = 0;
    }
    uint64_t t0 = cxm_bench_now_ns();
    cxm_bench_run.measure_start_ns = t0 + warm_ns;
    cxm_bench_run.measure_end_ns = t0 + warm_ns + duration_ns;
    cxm_bench_run.give_up_ns = t0 + (warm_ns > 1000000000ULL ? warm_ns : 1000000000ULL);
    int rc = 0;
    size_t started = 0;
    for (; started < nthreads; started++)
        if (pthread_create(&threads[started].tid, NULL, cxm_bench_thread_main, &threads[started]) !=
            0) {
            fprintf(stderr, "cxm-bench: cannot start thread %zu\n", started);
            cxm_bench_request_stop();
            rc = CXM_ENOMEM;
            break;
        }
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i].tid, NULL);
    return rc;
}

/* --seed-customers: 0 to go on with the measured run, else the exit status. */
static int cxm_bench_seed(const cxm_bench_cfg *cfg, cxm_bench_conn *conns,
                          cxm_bench_thread *threads, size_t nthreads)
{
    atomic_store(&cxm_bench_run.next, 0);
    int rc = cxm_bench_use_gen(cfg, conns, &cxm_bench_gen_seed, CXM_BENCH_METHOD_UPSERT);
    uint64_t t0 = cxm_bench_now_ns();
    if (rc == 0)
        rc = cxm_bench_phase(threads, nthreads, 0, CXM_BENCH_UNBOUNDED_NS);
    if (rc != 0) {
        fprintf(stderr, "cxm-bench: seeding failed: %s\n", cxm_strerror(rc));
        return 1;
    }
    return cxm_bench_report_seed(cfg, threads, nthreads, (double)(cxm_bench_now_ns() - t0) / 1e9);
}

static int cxm_bench_measure(const cxm_bench_cfg *cfg, const cxm_bench_gen *gen,
                             cxm_bench_conn *conns, cxm_bench_thread *threads, size_t nthreads)
{
    uint64_t warm_ns = (uint64_t)cfg->warmup_ms * 1000000ULL;
    uint64_t duration_ns = (uint64_t)cfg->duration_ms * 1000000ULL;
    /* Each record once: every call counts, and the run ends with the file. */
    if (cfg->requests && !cfg->loop)
        warm_ns = 0, duration_ns = CXM_BENCH_UNBOUNDED_NS;
    atomic_store(&cxm_bench_run.next, 0);
    int rc = cxm_bench_use_gen(cfg, conns, gen, cfg->method);
    if (rc == 0)
        rc = cxm_bench_phase(threads, nthreads, warm_ns, duration_ns);
    if (duration_ns == CXM_BENCH_UNBOUNDED_NS) /* the window ends with the last record */
        cxm_bench_run.measure_end_ns = cxm_bench_now_ns();
    if (rc != 0) {
        fprintf(stderr, "cxm-bench: %s\n", cxm_strerror(rc));
        return 1;
    }
    return cxm_bench_report(cfg, gen->name, threads, nthreads);
}

static int cxm_bench_run_all(const cxm_bench_cfg *cfg, const cxm_bench_gen *gen,
                             grpc_byte_buffer *raw)
{
    size_t nthreads = cxm_bench_nthreads(cfg);
    cxm_bench_conn *conns = calloc((size_t)cfg->connections, sizeof *conns);
    cxm_bench_thread *threads = calloc(nthreads, sizeof *threads);
    int status = 1, rc = conns && threads ? 0 : CXM_ENOMEM;
    if (rc == 0)
        rc = cxm_bench_open_conns(cfg, conns);
    for (size_t i = 0; rc == 0 && i < nthreads; i++)
        rc = cxm_bench_setup_thread(&threads[i], (unsigned)i, nthreads, cfg, conns, raw);

    if (rc != 0)
        fprintf(stderr, "cxm-bench: setup failed: %s\n", cxm_strerror(rc));
    else if (!cfg->seed || (status = cxm_bench_seed(cfg, conns, threads, nthreads)) == 0)
        status = cxm_bench_measure(cfg, gen, conns, threads, nthreads);

    for (size_t i = 0; threads && i < nthreads; i++) {
        cxm_client_loop_destroy(threads[i].loop); /* cancels any straggler */
        free(threads[i].slots);
        cxm_bench_events_dispose(&threads[i].gen_ctx.events);
    }
    for (int64_t i = 0; conns && i < cfg->connections; i++)
        cxm_channel_close(conns[i].ch);
    free(threads);
    free(conns);
    return status;
}

/* A real number flag (cxm_opts has none): 0 or CXM_EINVAL with a message. */
static int cxm_bench_parse_real(const char *flag, const char *arg, double min, double max,
                                double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "cxm-bench: --%s %s: want a number from %g to %g\n", flag, arg, min, max);
        return CXM_EINVAL;
    }
    *out = v;
    return 0;
}

/* The analytics' range: the last 30 days unless the flags say otherwise;
 * also the run's nonce. 0 or CXM_EINVAL with a message. */
static int cxm_bench_settle_range(cxm_bench_cfg *cfg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    cxm_bench_run.nonce = (uint64_t)now;
    if (!cfg->to_ms)
        cfg->to_ms = now;
    if (!cfg->from_ms)
        cfg->from_ms = cfg->to_ms > 30 * 86400000LL ? cfg->to_ms - 30 * 86400000LL : 1;
    if (cfg->from_ms < cfg->to_ms)
        return 0;
    fprintf(stderr, "cxm-bench: --from-ms %" PRId64 " must be before --to-ms %" PRId64 "\n",
            cfg->from_ms, cfg->to_ms);
    return CXM_EINVAL;
}

/* The generator the flags ask for, with cfg->method settled; NULL (after a
 * message) when they do not fit together. */
static const cxm_bench_gen *cxm_bench_choose_gen(cxm_bench_cfg *cfg)
{
    if (cfg->requests) {
        if (cfg->request_file || !cfg->method) {
            fprintf(stderr, "cxm-bench: %s\n",
                    cfg->request_file
                        ? "--requests and --request-file exclude each other: choose one"
                        : "--requests needs --method, the method its records are requests of "
                          "(e.g. " CXM_BENCH_METHOD_UPSERT " for cxm-gen's profiles.pb)");
            return NULL;
        }
        return &cxm_bench_gen_replay;
    }
    if (cfg->loop) {
        fprintf(stderr, "cxm-bench: --loop applies only to --requests\n");
        return NULL;
    }
    if (cfg->request_file) {
        if (!cfg->method)
            cfg->method = CXM_BENCH_DEFAULT_METHOD;
        return &cxm_bench_gen_raw;
    }
    const cxm_bench_gen *gen = cxm_bench_gen_find(cfg->generator);
    if (!gen) {
        fprintf(stderr, "cxm-bench: unknown --generator %s; known:", cfg->generator);
        for (size_t i = 0; i < CXM_BENCH_NGENS; i++)
            fprintf(stderr, " %s", cxm_bench_gens[i].name);
        fputc('\n', stderr);
        return NULL;
    }
    /* One --method cannot say which of several methods it replaces. */
    if (cfg->method && cxm_bench_gen_nmethods(gen) > 1) {
        fprintf(stderr,
                "cxm-bench: --method does not apply to --generator %s, which calls "
                "several methods\n",
                cfg->generator);
        return NULL;
    }
    if (!cfg->method)
        cfg->method = gen->methods[0];
    return gen;
}

int main(int argc, char **argv)
{
    cxm_bench_cfg cfg = {
        .target = "127.0.0.1:7400",
        .method = NULL,
        .request_file = NULL,
        .generator = "health",
        .connections = 2,
        .inflight = 32,
        .threads = 0,
        .duration_ms = 10000,
        .warmup_ms = 1000,
        .timeout_ms = 5000,
        .customers = 100000,
        .zipf_arg = "0",
        .read_arg = "0.9",
        .batch = 500,
    };
    const cxm_opt opts[] = {
        {"target", CXM_OPT_STR, &cfg.target, 0, 0, "server address, HOST:PORT"},
        CXM_CHANNEL_TLS_OPTS(cfg.chan),
        {"method", CXM_OPT_STR, &cfg.method, 0, 0,
         "method path to call (default: the generator's, " CXM_BENCH_DEFAULT_METHOD " for health)"},
        {"request-file", CXM_OPT_STR, &cfg.request_file, 0, 0,
         "send these raw serialized request bytes on every call (needs --method "
         "unless it is the health method)"},
        {"generator", CXM_OPT_STR, &cfg.generator, 0, 0,
         "built-in request generator (listed below)"},
        {"connections", CXM_OPT_INT, &cfg.connections, 1, 4096,
         "TCP connections, each its own channel"},
        {"inflight", CXM_OPT_INT, &cfg.inflight, 1, 100000, "calls outstanding per connection"},
        {"threads", CXM_OPT_INT, &cfg.threads, 0, 1024,
         "loop threads (0 = one per connection, at most one per CPU)"},
        {"duration", CXM_OPT_MILLIS, &cfg.duration_ms, 1, 86400000, "measured time"},
        {"warmup", CXM_OPT_MILLIS, &cfg.warmup_ms, 0, 3600000, "unmeasured time before it"},
        {"timeout", CXM_OPT_MILLIS, &cfg.timeout_ms, 1, 3600000, "deadline of each call"},
        {"json", CXM_OPT_BOOL, &cfg.json, 0, 0,
         "print one JSON line on stdout (the summary goes to stderr)"},
        {"customers", CXM_OPT_INT, &cfg.customers, 1, CXM_BENCH_MAX_CUSTOMERS,
         "synthetic customers of the profile workloads"},
        {"zipf", CXM_OPT_STR, &cfg.zipf_arg, 0, 0,
         "Zipf exponent of customer popularity, 0 = uniform (0 to 10)"},
        {"read-ratio", CXM_OPT_STR, &cfg.read_arg, 0, 0,
         "share of reads in profile-mixed (0 to 1)"},
        {"seed-customers", CXM_OPT_BOOL, &cfg.seed, 0, 0,
         "upsert every customer once before the measured run, so that reads find them"},
        {"requests", CXM_OPT_STR, &cfg.requests, 0, 0,
         "replay a stream of length-delimited requests (cxm-gen's .pb files) to --method, "
         "each once in file order (--warmup and --duration then do not apply); exits 1 "
         "unless every record is answered OK"},
        {"loop", CXM_OPT_BOOL, &cfg.loop, 0, 0,
         "with --requests: go round the file again until --duration ends"},
        {"batch", CXM_OPT_INT, &cfg.batch, 1, CXM_BENCH_MAX_BATCH,
         "events per Track call of track-batch"},
        {"from-ms", CXM_OPT_INT, &cfg.from_ms, 0, INT64_MAX,
         "start of the analytics' range, Unix ms (0 = 30 days before --to-ms)"},
        {"to-ms", CXM_OPT_INT, &cfg.to_ms, 0, INT64_MAX,
         "end of the analytics' range, Unix ms (0 = now)"},
        CXM_CLIENT_TOKEN_OPTS(&cfg.token, &cfg.token_file),
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    char err[256] = "";
    int prc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (prc == 1) {
        cxm_opts_usage(stdout, "cxm-bench", "closed-loop gRPC load generator", opts, nopts);
        cxm_bench_gens_usage(stdout);
        return 0;
    }
    if (prc != 0) {
        fprintf(stderr, "cxm-bench: %s (see --help)\n", err[0] ? err : "bad arguments");
        return 2;
    }
    if (cxm_bench_parse_real("zipf", cfg.zipf_arg, 0, 10, &cfg.zipf_s) != 0 ||
        cxm_bench_parse_real("read-ratio", cfg.read_arg, 0, 1, &cfg.read_ratio) != 0)
        return 2;
    const cxm_bench_gen *gen = cxm_bench_choose_gen(&cfg);
    if (!gen || cxm_bench_settle_range(&cfg) != 0)
        return 2;
    if (cxm_client_token_pick(cfg.token, cfg.token_file, &cfg.bearer, err, sizeof err) != 0) {
        fprintf(stderr, "cxm-bench: --token / --token-file: %s\n", err);
        return 2;
    }

    grpc_byte_buffer *raw = NULL;
    if (cfg.request_file && cxm_bench_read_file(cfg.request_file, &raw) != 0)
        return 2;
    if (cfg.requests && cxm_bench_replay_load(&cxm_bench_run.replay, cfg.requests, cfg.method) != 0)
        return 2;

    cxm_bench_run.cfg = &cfg;
    cxm_bench_keys_init(&cxm_bench_run.keys, (uint64_t)cfg.customers, cfg.zipf_s);
    atomic_init(&cxm_bench_run.ok_total, 0);
    atomic_init(&cxm_bench_run.failed_total, 0);
    atomic_init(&cxm_bench_run.first_failure, -1);
    atomic_init(&cxm_bench_run.stop, false);
    atomic_init(&cxm_bench_run.stopped_at_ns, 0);
    atomic_init(&cxm_bench_run.next, 0);
    struct sigaction sa = {.sa_handler = cxm_bench_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int status = cxm_bench_run_all(&cfg, gen, raw);
    if (raw)
        grpc_byte_buffer_destroy(raw);
    cxm_bench_replay_dispose(&cxm_bench_run.replay);
    free(cfg.bearer);
    return status;
}
