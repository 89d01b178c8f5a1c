/*
 * cxm-bench-bus: the event bus (libshared bus.h) in process and through
 * NATS JetStream on loopback.
 *
 *   cxm-bench-bus [--mode all|inproc|nats] [--nats-url URL] [--samples 2000]
 *                 [--events 200000] [--per-job 100] [--window 64] [--duration 2s]
 *                 [--batch 512]
 *
 * Data directories are fresh, under /tmp, durable (fsync per commit) like a
 * server's. Per mode:
 *   latency     one event per write job, one at a time: from the producer's
 *               durable commit to the subscriber's apply being committed and
 *               visible to a reader (polled), p50/p99 over --samples;
 *   throughput  --events in jobs of --per-job events from one thread; events
 *               per second from the first emit until the subscriber applied
 *               the last;
 *   producer    --window write jobs kept in flight through the store's group
 *               commit, each one state row and one event (the shape of a
 *               service's write), for --duration, with no subscriber and then with
 *               one attached: writes per second and their ratio.
 * In process, producer and subscriber share one LMDB environment (as in
 * cxmd). Through NATS (needs --nats-url of a `nats-server -js`), they are two
 * environments in this process, the events travelling producer -> outbox ->
 * JetStream -> durable consumer -> subscriber; producer names are unique per
 * run so that JetStream's duplicate window does not drop a rerun's ids.
 */
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/opts.h"

typedef struct bench_cfg {
    const char *mode, *nats_url;
    int64_t samples, events, per_job, window, duration_ms, batch;
} bench_cfg;

/* --batch, for every bus of the run. */
static int64_t batch_max;

/* One side of the bench: a store, its bus, and a table for state rows. */
typedef struct side {
    char dir[128];
    cxm_store *st;
    cxm_bus *bus;
    MDB_dbi rows;
} side;

/* The producer and the subscriber (the same side in process). */
typedef struct rig {
    side prod, cons_own;
    side *cons;
    cxm_bus_producer *p;
    char producer[32];
} rig;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int die(const char *what)
{
    fprintf(stderr, "cxm-bench-bus: %s: %s %s\n", what, cxm_bus_last_error(),
            cxm_store_last_error());
    exit(1);
}

/* ---- the subscriber: one row per event, keyed by sequence ---- */

static void seq_key(uint8_t *k, uint64_t seq)
{
    for (int i = 7; i >= 0; i--, seq >>= 8)
        k[i] = (uint8_t)seq;
}

static int apply(cxm_txn *txn, const Cxm__V1__Event *ev, void *user)
{
    side *s = user;
    uint8_t k[8];
    seq_key(k, ev->sequence);
    return cxm_txn_put(txn, s->rows, k, sizeof k, ev->customer_id, strlen(ev->customer_id), 0);
}

typedef struct seen_ctx {
    MDB_dbi rows;
    uint64_t seq;
} seen_ctx;

static int seen_fn(cxm_txn *txn, void *user)
{
    seen_ctx *c = user;
    uint8_t k[8];
    const void *v;
    size_t n;
    seq_key(k, c->seq);
    return cxm_txn_get_ref(txn, c->rows, k, sizeof k, &v, &n);
}

/* Until the subscriber committed sequence seq: spinning (yielding) for the
 * latency, sleeping between looks for the throughput, where a spinning
 * poller would take one of the machine's cores from the bus. */
static void wait_applied(rig *r, uint64_t seq, bool spin)
{
    seen_ctx c = {r->cons->rows, seq};
    while (cxm_store_read(r->cons->st, seen_fn, &c) != 0)
        spin ? (void)sched_yield() : (void)usleep(1000);
}

/* ---- the producer's write jobs ---- */

typedef struct emit_job {
    rig *r;
    int64_t count;
    uint64_t last_seq;
    uint64_t state_key;
} emit_job;

static int emit_fn(cxm_txn *txn, void *user)
{
    emit_job *j = user;
    int rc = 0;
    if (j->state_key) {
        uint8_t k[8];
        seq_key(k, j->state_key);
        rc = cxm_txn_put(txn, j->r->prod.rows, k, sizeof k, "state", 5, 0);
    }
    for (int64_t i = 0; rc == 0 && i < j->count; i++) {
        Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
        Cxm__V1__TraitsChanged tc = CXM__V1__TRAITS_CHANGED__INIT;
        char cid[24];
        snprintf(cid, sizeof cid, "c%" PRId64, i);
        ev.customer_id = cid;
        ev.payload_case = CXM__V1__EVENT__PAYLOAD_TRAITS_CHANGED;
        ev.traits_changed = &tc;
        rc = cxm_bus_emit(j->r->p, txn, &ev);
        j->last_seq = ev.sequence;
    }
    return rc;
}

/* ---- set-up ---- */

static void side_open(side *s, const char *name, const char *nats_url)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/cxm-bench-bus-%d-%s", (int)getpid(), name);
    cxm_bus_opts o = {.nats_url = nats_url, .batch_max = (size_t)batch_max};
    if (cxm_store_open(s->dir, NULL, &s->st) != 0 ||
        cxm_store_dbi(s->st, "bench.rows", 0, &s->rows) != 0)
        die("store");
    if (cxm_bus_create(s->st, &o, &s->bus) != 0)
        die("bus");
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void side_close(side *s)
{
    if (!s->st)
        return;
    cxm_bus_destroy(s->bus);
    cxm_store_close(s->st);
    nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    memset(s, 0, sizeof *s);
}

/* subscribed: attach the subscriber (else the producer runs alone). */
static void rig_open(rig *r, const char *tag, const char *nats_url, bool subscribed)
{
    memset(r, 0, sizeof *r);
    snprintf(r->producer, sizeof r->producer, "b%d-%s", (int)getpid(), tag);
    side_open(&r->prod, tag, nats_url);
    r->cons = &r->prod;
    if (nats_url && subscribed) {
        char name[40];
        snprintf(name, sizeof name, "%s-sub", tag);
        side_open(&r->cons_own, name, nats_url);
        r->cons = &r->cons_own;
    }
    if (cxm_bus_producer_open(r->prod.bus, r->producer, &r->p) != 0)
        die("producer");
    if (subscribed &&
        cxm_bus_subscribe(r->cons->bus, "bench", r->producer, NULL, 0, apply, r->cons) != 0)
        die("subscribe");
    if (cxm_bus_start(r->prod.bus) != 0 || (r->cons != &r->prod && cxm_bus_start(r->cons->bus)))
        die("start");
}

static void rig_close(rig *r)
{
    side_close(&r->cons_own);
    side_close(&r->prod);
}

/* ---- measurements ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void latency(const char *mode, const char *nats_url, int64_t samples)
{
    rig r;
    rig_open(&r, "lat", nats_url, true);
    double *lat = calloc((size_t)samples, sizeof *lat);
    for (int64_t i = -samples / 10; i < samples; i++) { /* the first tenth warms up */
        emit_job j = {&r, 1, 0, 0};
        if (cxm_store_write(r.prod.st, emit_fn, &j) != 0)
            die("emit");
        double t0 = now_us();
        wait_applied(&r, j.last_seq, true);
        if (i >= 0)
            lat[i] = now_us() - t0;
    }
    qsort(lat, (size_t)samples, sizeof *lat, cmp_double);
    printf("%-8s latency     commit -> applied  p50 %.0f us  p99 %.0f us  (%" PRId64
           " events, one at a time)\n",
           mode, lat[samples / 2], lat[samples * 99 / 100], samples);
    free(lat);
    rig_close(&r);
}

static void throughput(const char *mode, const char *nats_url, int64_t events, int64_t per_job)
{
    rig r;
    rig_open(&r, "tput", nats_url, true);
    double t0 = now_us();
    emit_job j = {&r, per_job, 0, 0};
    for (int64_t n = 0; n < events; n += per_job)
        if (cxm_store_write(r.prod.st, emit_fn, &j) != 0)
            die("emit");
    double produced = now_us() - t0;
    wait_applied(&r, j.last_seq, false);
    double all = now_us() - t0;
    printf("%-8s throughput  %.0f events/s through the bus (%" PRIu64 " events, %" PRId64
           " per job; producing alone took %.0f ms of %.0f ms)\n",
           mode, (double)j.last_seq / all * 1e6, j.last_seq, per_job, produced / 1e3, all / 1e3);
    rig_close(&r);
}

/* The producer run: `window` write jobs kept in flight through the store's
 * group commit, as a service's handlers submit them. */
typedef struct prun {
    rig *r;
    atomic_bool stop;
    atomic_long writes, inflight;
} prun;

typedef struct slot {
    cxm_write_job w;
    emit_job j;
    prun *pr;
} slot;

static int slot_fn(cxm_txn *txn, void *user)
{
    return emit_fn(txn, &((slot *)user)->j);
}

static void slot_done(void *user, int rc)
{
    slot *s = user;
    if (rc != 0)
        die("write");
    atomic_fetch_add(&s->pr->writes, 1);
    if (atomic_load(&s->pr->stop)) {
        atomic_fetch_sub(&s->pr->inflight, 1);
        return;
    }
    s->j.state_key += 1u << 20; /* a new row each time */
    cxm_store_submit(s->pr->r->prod.st, &s->w);
}

static double producer_rate(const char *nats_url, bool subscribed, int64_t window,
                            int64_t duration_ms)
{
    rig r;
    rig_open(&r, subscribed ? "with" : "alone", nats_url, subscribed);
    prun pr = {.r = &r};
    slot *slots = calloc((size_t)window, sizeof *slots);
    atomic_store(&pr.inflight, window);
    double t0 = now_us();
    for (int64_t i = 0; i < window; i++) {
        slots[i] = (slot){.w = {.fn = slot_fn, .done = slot_done, .user = &slots[i]},
                          .j = {&r, 1, 0, (uint64_t)i + 1},
                          .pr = &pr};
        cxm_store_submit(r.prod.st, &slots[i].w);
    }
    usleep((useconds_t)duration_ms * 1000);
    atomic_store(&pr.stop, true);
    while (atomic_load(&pr.inflight) > 0)
        usleep(1000);
    double rate = (double)atomic_load(&pr.writes) / (now_us() - t0) * 1e6;
    free(slots);
    rig_close(&r);
    return rate;
}

static void producer(const char *mode, const char *nats_url, int64_t window, int64_t duration_ms)
{
    double alone = producer_rate(nats_url, false, window, duration_ms);
    double with = producer_rate(nats_url, true, window, duration_ms);
    printf("%-8s producer    %.0f writes/s alone, %.0f with a subscriber: %.0f%% (%" PRId64
           " writes in flight, group-committed; one state row + one event each)\n",
           mode, alone, with, with / alone * 100, window);
}

static void run(const char *mode, const char *nats_url, const bench_cfg *c)
{
    latency(mode, nats_url, c->samples);
    throughput(mode, nats_url, c->events, c->per_job);
    producer(mode, nats_url, c->window, c->duration_ms);
}

int main(int argc, char **argv)
{
    bench_cfg c = {.mode = "all",
                   .samples = 2000,
                   .events = 200000,
                   .per_job = 100,
                   .window = 64,
                   .duration_ms = 2000};
    cxm_opt opts[] = {
        {"mode", CXM_OPT_STR, &c.mode, 0, 0, "all, inproc or nats"},
        {"nats-url", CXM_OPT_STR, &c.nats_url, 0, 0, "a nats-server -js (needed for nats)"},
        {"samples", CXM_OPT_INT, &c.samples, 10, 1000000, "latency samples"},
        {"events", CXM_OPT_INT, &c.events, 1, 100000000, "events of the throughput run"},
        {"per-job", CXM_OPT_INT, &c.per_job, 1, 4096, "events per write job (throughput)"},
        {"window", CXM_OPT_INT, &c.window, 1, 4096, "writes in flight (producer run)"},
        {"duration", CXM_OPT_MILLIS, &c.duration_ms, 10, 600000, "each producer run"},
        {"batch", CXM_OPT_INT, &c.batch, 0, 4096, "bus batch_max (0: the default, 512)"},
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    char err[256];
    int rc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == 1) {
        cxm_opts_usage(stdout, argv[0], "the event bus benchmark", opts, nopts);
        return 0;
    }
    bool inproc = strcmp(c.mode, "all") == 0 || strcmp(c.mode, "inproc") == 0;
    bool nats = strcmp(c.mode, "all") == 0 || strcmp(c.mode, "nats") == 0;
    if (rc == 0 && !inproc && !nats)
        rc = (snprintf(err, sizeof err, "--mode: \"%s\" is not all, inproc or nats", c.mode), 1);
    if (rc == 0 && nats && (!c.nats_url || !*c.nats_url) && strcmp(c.mode, "nats") == 0)
        rc = (snprintf(err, sizeof err, "--mode nats needs --nats-url"), 1);
    if (rc != 0) {
        fprintf(stderr, "cxm-bench-bus: %s (see --help)\n", err);
        return 2;
    }
    cxm_log_configure(false, CXM_LOG_WARN);
    batch_max = c.batch;
    if (inproc)
        run("inproc", NULL, &c);
    if (nats && c.nats_url && *c.nats_url)
        run("nats", c.nats_url, &c);
    return 0;
}
