/*
 * cxm-gen - writes a reproducible synthetic customer-experience world
 * (see gen.h for what it holds and the files it writes).
 *
 * Exit status: 0 done, 1 the world could not be written, 2 bad flags.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include <cxm/opts.h>

#include "gen.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    cxm_gen_params p;
    cxm_gen_params_default(&p);
    int64_t seed = (int64_t)p.seed;
    const char *formats = "pb,csv";
    const cxm_opt opts[] = {
        {"seed", CXM_OPT_INT, &seed, 0, INT64_MAX, "seed of the world: same seed, same files"},
        {"customers", CXM_OPT_INT, &p.customers, 1, CXM_GEN_MAX_CUSTOMERS, "customers"},
        {"days", CXM_OPT_INT, &p.days, 1, CXM_GEN_MAX_DAYS, "days of activity"},
        {"items", CXM_OPT_INT, &p.items, CXM_GEN_MIN_ITEMS, CXM_GEN_MAX_ITEMS,
         "catalogue items (products and offers)"},
        {"clusters", CXM_OPT_INT, &p.clusters, 2, CXM_GEN_MAX_CLUSTERS, "taste clusters"},
        {"batch", CXM_OPT_INT, &p.batch, 1, CXM_GEN_MAX_BATCH,
         "events per TrackRequest and interactions per RecordInteractionsRequest"},
        {"start-ms", CXM_OPT_INT, &p.start_ms, 0, 4102444800000LL,
         "start of the first day, Unix ms (default 2025-01-01T00:00Z)"},
        {"formats", CXM_OPT_STR, &formats, 0, 0, "pb, csv or pb,csv (truth.json always)"},
        {"out", CXM_OPT_STR, &p.out, 0, 0, "output directory (created if missing); required"},
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    char err[512] = "";
    int rc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == 1) {
        cxm_opts_usage(stdout, "cxm-gen", "writes a reproducible synthetic customer world", opts,
                       nopts);
        return 0;
    }
    p.seed = (uint64_t)seed;
    if (rc == 0)
        rc = cxm_gen_parse_formats(formats, &p.formats, err, sizeof err);
    if (rc == 0)
        rc = cxm_gen_check(&p, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "cxm-gen: %s (see --help)\n", err[0] ? err : "bad arguments");
        return 2;
    }
    cxm_gen_counts k;
    double t0 = now_s();
    if (cxm_gen_run(&p, &k, err, sizeof err) != 0) {
        fprintf(stderr, "cxm-gen: %s\n", err);
        return 1;
    }
    fprintf(stderr,
            "cxm-gen: %" PRIu64 " customers (%" PRIu64 " signed up), %" PRIu64
            " identities, %" PRIu64 " events, %" PRIu64 " responses, %" PRIu64
            " interactions, %" PRIu64 " detractors in %s (%.2f s)\n",
            k.customers, k.signed_up, k.identities, k.events, k.responses, k.interactions,
            k.detractors, p.out, now_s() - t0);
    return 0;
}
