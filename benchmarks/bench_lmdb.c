/*
 * bench_lmdb.c - cxm-bench-lmdb: the bare LMDB baseline of journey ingest.
 *
 *   cxm-bench-lmdb [--dir DIR] [--events 200000] [--batch 500] [--customers N]
 *                  [--layout customer|append] [--keep] [--json]
 *
 * Writes what the ingest writes per event, with nothing else: the packed
 * TouchpointEvent of a cxm-gen-like event (bench_journey.h) with the fields
 * the service fills in (customer_id, stage, received_at; about 200 bytes)
 * under a per-customer time-ordered key (or, --layout append, under one
 * growing sequence as journey's pending queue does), and a dedup entry under its
 * event id - two puts per event - --batch events per write transaction,
 * each committed durably (fsync), into a fresh environment opened with the
 * flags cxm's store uses (libshared/src/store.c: MDB_NOTLS, synchronous
 * commits, 64 MiB initial map; here sized up front so that growing the map
 * costs nothing). Prints events/s: the denominator of "TrackStream at least
 * 50% of a bare LMDB loop writing the same bytes".
 *
 * The events are generated and packed before the clock starts, so the rate
 * is LMDB's and the disk's alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_journey.h"
#include "cxm/opts.h"
#include "cxm/v1/journey.pb-c.h"

typedef struct lmdb_cfg {
    const char *dir;
    int64_t events, batch, customers;
    bool json, keep;
    const char *layout; /* "customer" or "append" */
} lmdb_cfg;

/* One event as the ingest stores it. */
typedef struct packed_event {
    uint8_t key[24]; /* customer hash, occurred_at, event id hash: time order per customer */
    uint8_t *value;
    size_t value_len;
    char *event_id;
} packed_event;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Split one packed TrackRequest of n events into its events, each packed
 * alone as the store keeps it. */
static int split_events(const uint8_t *req, size_t len, bool append, packed_event *out, size_t *n,
                        uint64_t *bytes)
{
    Cxm__V1__TrackRequest *r = cxm__v1__track_request__unpack(NULL, len, req);
    if (!r)
        return -1;
    for (size_t i = 0; i < r->n_events; i++) {
        Cxm__V1__TouchpointEvent *e = r->events[i];
        packed_event *p = &out[(*n)++];
        /* Stored with what the ingest fills in: the customer it resolved
         * to, the stage after it, when it was received. */
        char cid[24];
        snprintf(cid, sizeof cid, "c%016" PRIx64, fnv1a(e->customer->identity->value));
        char *unpacked_id = e->customer_id; /* free_unpacked must find its own */
        e->customer_id = cid;
        e->stage = CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION;
        e->received_at_unix_ms = e->occurred_at_unix_ms + 1;
        p->value_len = cxm__v1__touchpoint_event__get_packed_size(e);
        p->value = malloc(p->value_len);
        p->event_id = strdup(e->event_id);
        if (p->value)
            cxm__v1__touchpoint_event__pack(e, p->value);
        e->customer_id = unpacked_id;
        if (!p->value || !p->event_id)
            return (cxm__v1__track_request__free_unpacked(r, NULL), -1);
        *bytes += p->value_len;
        if (append) { /* the ingest's pending queue: one growing sequence */
            memset(p->key, 0, 16);
            put_be64(p->key + 16, (uint64_t)*n);
        } else {
            put_be64(p->key, fnv1a(cid));
            put_be64(p->key + 8, (uint64_t)e->occurred_at_unix_ms);
            put_be64(p->key + 16, fnv1a(e->event_id));
        }
    }
    cxm__v1__track_request__free_unpacked(r, NULL);
    return 0;
}

static packed_event *make_events(const lmdb_cfg *cfg, uint64_t *bytes)
{
    packed_event *ev = calloc((size_t)cfg->events, sizeof *ev);
    cxm_bench_keys keys;
    cxm_bench_keys_init(&keys, (uint64_t)cfg->customers, 0);
    cxm_bench_events gen;
    if (!ev || cxm_bench_events_init(&gen, (uint64_t)time(NULL), 0, CXM_BENCH_MAX_BATCH, &keys))
        return (free(ev), NULL);
    uint8_t *buf = NULL;
    size_t cap = 0, len, n = 0;
    int rc = 0;
    while (rc == 0 && n < (size_t)cfg->events) {
        size_t want = (size_t)cfg->events - n < CXM_BENCH_MAX_BATCH ? (size_t)cfg->events - n
                                                                    : CXM_BENCH_MAX_BATCH;
        rc = cxm_bench_track_bytes(&gen, want, &buf, &cap, &len);
        if (rc == 0)
            rc = split_events(buf, len, strcmp(cfg->layout, "append") == 0, ev, &n, bytes);
    }
    free(buf);
    cxm_bench_events_dispose(&gen);
    if (rc != 0) {
        fprintf(stderr, "cxm-bench-lmdb: out of memory making %" PRId64 " events\n", cfg->events);
        return NULL; /* the process exits: nothing to reclaim */
    }
    return ev;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "cxm-bench-lmdb: %s: %s\n", what, mdb_strerror(rc));
    return 1;
}

/* Every event, --batch per durable transaction. */
static int write_all(const lmdb_cfg *cfg, MDB_env *env, const packed_event *ev, double *secs)
{
    MDB_txn *txn;
    MDB_dbi events, dedup;
    int rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "events", MDB_CREATE, &events);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "dedup", MDB_CREATE, &dedup);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    if (rc != 0)
        return fail("cannot create the tables", rc);
    double t0 = mono_s();
    for (int64_t i = 0; i < cfg->events; i += cfg->batch) {
        if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
            return fail("cannot begin a write transaction", rc);
        int64_t end = i + cfg->batch < cfg->events ? i + cfg->batch : cfg->events;
        for (int64_t k = i; rc == 0 && k < end; k++) {
            const packed_event *e = &ev[k];
            uint64_t received = (uint64_t)time(NULL) * 1000;
            uint8_t when[8];
            put_be64(when, received);
            MDB_val dk = {strlen(e->event_id), e->event_id}, dv = {sizeof when, when};
            MDB_val ek = {sizeof e->key, (void *)e->key}, evv = {e->value_len, e->value};
            rc = mdb_put(txn, dedup, &dk, &dv, MDB_NOOVERWRITE);
            if (rc == 0)
                rc = mdb_put(txn, events, &ek, &evv, 0);
        }
        if (rc != 0)
            return (mdb_txn_abort(txn), fail("put", rc));
        if ((rc = mdb_txn_commit(txn)) != 0)
            return fail("commit", rc);
    }
    *secs = mono_s() - t0;
    return 0;
}

/* A fresh directory: the given one must not exist yet, or a new temporary. */
static int fresh_dir(const lmdb_cfg *cfg, char *path, size_t len)
{
    if (cfg->dir) {
        snprintf(path, len, "%s", cfg->dir);
        if (mkdir(path, 0750) == 0)
            return 0;
        fprintf(stderr, "cxm-bench-lmdb: --dir %s: %s (give a directory that does not exist yet)\n",
                path, strerror(errno));
        return 1;
    }
    snprintf(path, len, "/tmp/cxm-bench-lmdb-XXXXXX");
    if (mkdtemp(path))
        return 0;
    fprintf(stderr, "cxm-bench-lmdb: cannot make a temporary directory: %s\n", strerror(errno));
    return 1;
}

static void remove_env(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    unlink(p);
    rmdir(dir);
}

static int bench(const lmdb_cfg *cfg)
{
    uint64_t bytes = 0;
    packed_event *ev = make_events(cfg, &bytes);
    if (!ev)
        return 1;
    char dir[4096];
    if (fresh_dir(cfg, dir, sizeof dir) != 0)
        return 1;
    MDB_env *env = NULL;
    /* The store's flags (store.c env_open); a map big enough from the start. */
    size_t map = (size_t)64 << 20;
    while (map < 4 * (bytes + (uint64_t)cfg->events * 96))
        map *= 2;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, 64);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(env, 512);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env, map);
    if (rc == 0)
        rc = mdb_env_open(env, dir, MDB_NOTLS, 0640);
    if (rc != 0) {
        if (env)
            mdb_env_close(env);
        if (!cfg->keep)
            remove_env(dir); /* the directory made above, not left behind */
        return fail("cannot open the environment", rc);
    }
    double secs = 0;
    int status = write_all(cfg, env, ev, &secs);
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(env, &info);
    mdb_env_stat(env, &st);
    mdb_env_close(env);
    double rate = secs > 0 ? (double)cfg->events / secs : 0;
    double per_event = (double)bytes / (double)cfg->events;
    size_t on_disk = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
    if (status == 0) {
        FILE *out = cfg->json ? stderr : stdout;
        fprintf(out,
                "cxm-bench-lmdb %s: %" PRId64 " events (%.0f bytes each packed) in transactions of "
                "%" PRId64 ", durable commits\n"
                "  events/s     %.1f  (%.3f s, %.1f commits/s)\n"
                "  on disk      %zu bytes, %.0f bytes per event\n",
                dir, cfg->events, per_event, cfg->batch, rate, secs,
                secs > 0 ? (double)((cfg->events + cfg->batch - 1) / cfg->batch) / secs : 0,
                on_disk, (double)on_disk / (double)cfg->events);
        if (cfg->json)
            printf("{\"events\":%" PRId64 ",\"batch\":%" PRId64 ",\"event_bytes\":%.1f"
                   ",\"seconds\":%.3f,\"events_per_s\":%.1f,\"disk_bytes\":%zu}\n",
                   cfg->events, cfg->batch, per_event, secs, rate, on_disk);
    }
    if (!cfg->keep)
        remove_env(dir);
    for (int64_t i = 0; i < cfg->events; i++)
        free(ev[i].value), free(ev[i].event_id);
    free(ev);
    return status;
}

int main(int argc, char **argv)
{
    lmdb_cfg cfg = {.events = 200000, .batch = 500, .customers = 100000, .layout = "customer"};
    const cxm_opt opts[] = {
        {"dir", CXM_OPT_STR, &cfg.dir, 0, 0,
         "where to create the environment: a directory that does not exist yet (default: a new "
         "one under /tmp; put it on the disk the service's --data is on)"},
        {"events", CXM_OPT_INT, &cfg.events, 1, 100000000, "events to write"},
        {"batch", CXM_OPT_INT, &cfg.batch, 1, 100000, "events per durable transaction"},
        {"customers", CXM_OPT_INT, &cfg.customers, 1, CXM_BENCH_MAX_CUSTOMERS,
         "customers the events are spread over"},
        {"layout", CXM_OPT_STR, &cfg.layout, 0, 0,
         "customer: events under per-customer time-ordered keys (random places, as a store "
         "that orders by customer at ingest); append: under one growing sequence (as journey's "
         "pending queue)"},
        {"json", CXM_OPT_BOOL, &cfg.json, 0, 0,
         "print one JSON line on stdout (the summary goes to stderr)"},
        {"keep", CXM_OPT_BOOL, &cfg.keep, 0, 0, "leave the environment on disk afterwards"},
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    char err[256] = "";
    int rc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == 1) {
        cxm_opts_usage(stdout, "cxm-bench-lmdb",
                       "bare LMDB writing what journey ingest writes, durably", opts, nopts);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "cxm-bench-lmdb: %s (see --help)\n", err[0] ? err : "bad arguments");
        return 2;
    }
    if (strcmp(cfg.layout, "customer") != 0 && strcmp(cfg.layout, "append") != 0) {
        fprintf(stderr, "cxm-bench-lmdb: --layout \"%s\": use customer or append\n", cfg.layout);
        return 2;
    }
    return bench(&cfg);
}
