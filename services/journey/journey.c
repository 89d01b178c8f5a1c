/*
 * journey.c - the journey service as a module: its flags, opening and
 * closing its state (jrn_ctx), the pipeline thread and the bus
 * subscriptions.
 *
 * Handlers are in jrn_rpc.c, the pipeline in jrn_pipe.c, the tables in
 * jdb.c, stage rules in jrules.c, checks in jrn_check.c, analytics in
 * jan.c.
 */
#include "journey.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/svc.h"
#include "cxm/v1/journey.pb-c.h"
#include "jrn_pipe.h"
#include "jrn_rpc.h"

#define DAY_MS (24LL * 3600 * 1000)

/* ---- configuration (module flags) ---- */

static int64_t cfg_dedup_window = 7 * DAY_MS;
static int64_t cfg_max_lateness = 30 * DAY_MS;
static const char *cfg_profile_addr = "";
static const char *cfg_base_currency = "";

static const cxm_opt jrn_opts[] = {
    {"journey-dedup-window", CXM_OPT_MILLIS, &cfg_dedup_window, 1, 365 * DAY_MS,
     "how long a repeated event_id counts as a duplicate, from its first copy (e.g. 7d = "
     "604800s)"},
    {"journey-max-lateness", CXM_OPT_MILLIS, &cfg_max_lateness, 1, 3650 * DAY_MS,
     "events that occurred longer ago than this are rejected"},
    {"journey-base-currency", CXM_OPT_STR, &cfg_base_currency, 0, 0,
     "ISO 4217 code (KRW, EUR, ...) whose event values count in totals along with values sent "
     "without a currency; empty: only those"},
    {"profile-addr", CXM_OPT_STR, &cfg_profile_addr, 0, 0,
     "HOST:PORT of the profile service resolving customers; empty: this process's own server "
     "(cxmd)"},
};

static const char *const profile_types[] = {"CustomerMerged", "CustomerUnmerged",
                                            "SegmentMembershipChanged"};
static const char *const feedback_types[] = {"FeedbackReceived"};

static void jrn_close(cxm_service *svc)
{
    jrn_ctx *ctx = svc->ctx;
    if (!ctx)
        return;
    cxm_svc_erasure_close(&ctx->erasure);
    jrn_pipe_stop(ctx->pipe);
    jrules_free(ctx->rules);
    pthread_rwlock_destroy(&ctx->rules_lock);
    jdb_close(ctx->db);
    free(ctx);
    svc->ctx = NULL;
}

/* The producer of journey's events, the subscriptions to profile's and
 * feedback's, and the erasure cascade. */
static int open_events(cxm_store *store, jrn_ctx *ctx)
{
    cxm_bus *bus = cxm_bus_of(store);
    if (!bus) {
        cxm_log_error("journey.bus_missing",
                      "the journey service follows profile merges and publishes stage changes on "
                      "the event bus, and its store has none (open it through cxm_host_main)");
        return CXM_EUNAVAIL;
    }
    int rc = cxm_svc_erasure_subscribe(bus, "journey", jrn_erase, ctx, &ctx->erasure);
    if (rc == 0)
        rc = cxm_bus_producer_open(bus, "journey", &ctx->events);
    /* One subscription per (subscriber, producer): the erasure cascade holds
     * "journey" on profile, so merges come to a subscriber of their own. */
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, "journey-profile", "profile", profile_types, 3,
                               jrn_apply_profile, ctx);
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, "journey", "feedback", feedback_types, 1, jrn_apply_feedback,
                               ctx);
    if (rc != 0)
        cxm_log_error("journey.bus_failed", "the journey service cannot use the event bus: %s",
                      cxm_bus_last_error());
    return rc;
}

static int jrn_open(cxm_store *store, cxm_service *svc)
{
    const unsigned char *cur = (const unsigned char *)cfg_base_currency;
    if (*cur && (strlen(cfg_base_currency) != 3 || !isupper(cur[0]) || !isupper(cur[1]) ||
                 !isupper(cur[2]))) {
        cxm_log_error("journey.bad_flag",
                      "--journey-base-currency \"%s\" is not an ISO 4217 code such as KRW or EUR",
                      cfg_base_currency);
        return CXM_EINVAL;
    }
    jrn_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return CXM_ENOMEM;
    pthread_rwlock_init(&ctx->rules_lock, NULL);
    ctx->dedup_window_ms = cfg_dedup_window;
    ctx->limits.max_lateness_ms = cfg_max_lateness;
    *svc = (cxm_service){.name = cxm__v1__journey_service__descriptor.name,
                         .methods = jrn_methods,
                         .nmethods = jrn_nmethods,
                         .scope_area = "journey",
                         .access = jrn_access,
                         .naccess = jrn_naccess,
                         .contract = &cxm__v1__journey_service__descriptor,
                         .ctx = ctx};
    size_t n = 0;
    Cxm__V1__StageRule *const *defaults = jrules_defaults(&n);
    int rc = jrn_rules_install(ctx, defaults, n, 0);
    if (rc == 0)
        rc = jdb_open(store, &ctx->db);
    if (rc == 0)
        jdb_set_base_currency(ctx->db, cfg_base_currency);
    if (rc == 0)
        rc = open_events(store, ctx);
    if (rc == 0) {
        cxm_resolver_opts ro = {0};
        if (*cfg_profile_addr)
            ro.profile_addr = cfg_profile_addr;
        else
            ro.addr_fn = cxm_host_self_addr_fn;
        rc = jrn_pipe_start(ctx, &ro, &ctx->pipe);
        if (rc != 0)
            cxm_log_error("journey.open_failed", "cannot start the journey pipeline: %s",
                          cxm_strerror(rc));
    }
    if (rc != 0)
        jrn_close(svc);
    return rc;
}

const cxm_module jrn_module = {"journey", jrn_open, jrn_close, jrn_opts,
                               sizeof jrn_opts / sizeof jrn_opts[0]};
