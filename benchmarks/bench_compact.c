/*
 * bench_compact.c - cxm-bench-compact: the cost of one erasure compaction
 * (cxm_store_compact, store.h) against the size of the store, and what it
 * does to the latency of writes made meanwhile.
 *
 * Fills a fresh store in a temporary directory with --mb MiB of customer
 * records (random 200 to 1,200 byte values under 17-byte keys, spread over
 * three tables like a service's), deletes --erase-percent of them, then
 * runs a writer thread (one small durable cxm_store_write after another)
 * while the main thread compacts. Prints one JSON line: fill size, file
 * size before and after, compaction time and MiB/s of live data, and the
 * writer's p50/p99/max latency before and during the compaction.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cxm/opts.h"
#include "cxm/store.h"

#define TABLES 3
#define LAT_MAX 200000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct fill {
    MDB_dbi dbi[TABLES];
    uint64_t first, n; /* customers [first, first + n) */
    unsigned erase_pct;
    bool erase;
    size_t bytes;
} fill;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static size_t key_of(uint64_t i, char *k)
{
    return (size_t)snprintf(k, 32, "c%016llx", (unsigned long long)mix(i));
}

static int fill_fn(cxm_txn *t, void *user)
{
    fill *f = user;
    static _Thread_local unsigned char val[1200];
    for (uint64_t i = f->first; i < f->first + f->n; i++) {
        char k[32];
        size_t kl = key_of(i, k);
        MDB_dbi dbi = f->dbi[i % TABLES];
        if (f->erase) {
            if (mix(i + 7) % 100 < f->erase_pct && cxm_txn_del(t, dbi, k, kl) != 0)
                return -1;
            continue;
        }
        size_t vl = 200 + mix(i + 1) % 1000;
        for (size_t b = 0; b < vl; b += 8) {
            uint64_t r = mix(i * 131 + b);
            memcpy(val + b, &r, vl - b < 8 ? vl - b : 8);
        }
        int rc = cxm_txn_put(t, dbi, k, kl, val, vl, 0);
        if (rc != 0)
            return rc;
        f->bytes += kl + vl;
    }
    return 0;
}

typedef struct writer {
    cxm_store *store;
    MDB_dbi dbi;
    atomic_bool stop;
    atomic_int phase; /* 0 before, 1 during the compaction */
    double lat[2][LAT_MAX];
    size_t n[2];
    uint64_t seq;
} writer;

static int small_fn(cxm_txn *t, void *user)
{
    writer *w = user;
    char k[32];
    size_t kl = (size_t)snprintf(k, sizeof k, "w%016llx", (unsigned long long)w->seq);
    return cxm_txn_put(t, w->dbi, k, kl, "0123456789abcdef0123456789abcdef", 32, 0);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    while (!atomic_load(&w->stop)) {
        int p = atomic_load(&w->phase);
        double t0 = now_ms();
        w->seq++;
        if (cxm_store_write(w->store, small_fn, w) != 0) {
            fprintf(stderr, "cxm-bench-compact: write failed: %s\n", cxm_store_last_error());
            return NULL;
        }
        if (w->n[p] < LAT_MAX)
            w->lat[p][w->n[p]++] = now_ms() - t0;
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_d);
    size_t i = (size_t)(p * (double)(n - 1));
    return v[i];
}

static long long file_size(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int main(int argc, char **argv)
{
    int64_t mb = 100, erase_pct = 10, before_ms = 2000;
    const cxm_opt opts[] = {
        {"mb", CXM_OPT_INT, &mb, 1, 100000, "MiB of records to fill the store with"},
        {"erase-percent", CXM_OPT_INT, &erase_pct, 0, 100, "share of the records deleted"},
        {"before", CXM_OPT_MILLIS, &before_ms, 100, 600000,
         "how long the writer runs before the compaction (its baseline latency)"},
    };
    char err[512] = "";
    size_t nopts = sizeof opts / sizeof opts[0];
    int prc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (prc == 1) {
        cxm_opts_usage(stdout, "cxm-bench-compact", "the cost of one erasure compaction", opts,
                       nopts);
        return 0;
    }
    if (prc != 0) {
        fprintf(stderr, "cxm-bench-compact: %s (see --help)\n", err[0] ? err : "bad arguments");
        return 2;
    }
    char dir[] = "/tmp/cxm-bench-compact-XXXXXX";
    if (!mkdtemp(dir))
        return perror("mkdtemp"), 1;
    cxm_store *s;
    cxm_store_opts so = {.max_map_size = (size_t)64 << 30};
    if (cxm_store_open(dir, &so, &s) != 0)
        return 1;
    fill f = {.erase_pct = (unsigned)erase_pct};
    const char *names[TABLES] = {"bench.profiles", "bench.events", "bench.feedback"};
    for (int i = 0; i < TABLES; i++)
        if (cxm_store_dbi(s, names[i], 0, &f.dbi[i]) != 0)
            return 1;
    uint64_t total = 0;
    double t0 = now_ms();
    while (f.bytes < (size_t)mb << 20) {
        f.first = total;
        f.n = 5000;
        if (cxm_store_write(s, fill_fn, &f) != 0)
            return fprintf(stderr, "fill: %s\n", cxm_store_last_error()), 1;
        total += f.n;
    }
    double fill_ms = now_ms() - t0;
    for (uint64_t i = 0; i < total; i += 5000) {
        fill e = f;
        e.erase = true;
        e.first = i;
        e.n = total - i < 5000 ? total - i : 5000;
        if (cxm_store_write(s, fill_fn, &e) != 0)
            return fprintf(stderr, "erase: %s\n", cxm_store_last_error()), 1;
    }
    long long before = file_size(dir);

    static writer w;
    w.store = s;
    if (cxm_store_dbi(s, "bench.writes", 0, &w.dbi) != 0)
        return 1;
    pthread_t th;
    pthread_create(&th, NULL, writer_main, &w);
    usleep((useconds_t)before_ms * 1000);
    atomic_store(&w.phase, 1);
    t0 = now_ms();
    int rc = cxm_store_compact(s);
    double compact_ms = now_ms() - t0;
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);
    long long after = file_size(dir);
    double live_mb = (double)f.bytes * (100 - (double)erase_pct) / 100 / (1 << 20);
    printf("{\"bench\":\"store.compact\",\"filled_mib\":%.1f,\"records\":%llu,"
           "\"erase_percent\":%lld,\"file_before\":%lld,\"file_after\":%lld,\"ok\":%s,"
           "\"compact_ms\":%.1f,\"live_mib_per_s\":%.1f,\"fill_ms\":%.0f,"
           "\"write_before_p50_ms\":%.2f,\"write_before_p99_ms\":%.2f,"
           "\"write_during_n\":%zu,\"write_during_p50_ms\":%.2f,\"write_during_max_ms\":%.1f}\n",
           (double)f.bytes / (1 << 20), (unsigned long long)total, (long long)erase_pct, before,
           after, rc == 0 ? "true" : "false", compact_ms, live_mb / (compact_ms / 1e3), fill_ms,
           pct(w.lat[0], w.n[0], 0.5), pct(w.lat[0], w.n[0], 0.99), w.n[1],
           pct(w.lat[1], w.n[1], 0.5), pct(w.lat[1], w.n[1], 1.0));
    cxm_store_close(s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return rc == 0 ? 0 : 1;
}
