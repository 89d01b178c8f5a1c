/*
 * feedback.c - the feedback service as a module: its flags, opening and
 * closing its state (fb_ctx, fbctx.h) and the bus subscriptions.
 *
 * Handlers are in fb_rpc.c, the tables in fdb.c, checks in fb_check.c,
 * follow-ups in ffu.c, analytics in fan.c and fagg.c, sentiment in senti/.
 */
#include "feedback.h"

#include <stdlib.h>
#include <string.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/svc.h"
#include "cxm/v1/feedback.pb-c.h"
#include "fagg.h"
#include "fb_rpc.h"
#include "fdb.h"
#include "ffu.h"

/* ---- configuration (module flags) ---- */

static const char *cfg_model = "";
static const char *cfg_profile_addr = "";

static const cxm_opt fb_opts[] = {
    {"feedback-sentiment-model", CXM_OPT_STR, &cfg_model, 0, 0,
     "sentiment model file written by cxm-senti-train; empty: the model built into the binary"},
    {"profile-addr", CXM_OPT_STR, &cfg_profile_addr, 0, 0,
     "HOST:PORT of the profile service resolving customers; empty: this process's own server "
     "(cxmd)"},
};

static const char *const profile_types[] = {"CustomerMerged", "CustomerUnmerged",
                                            "SegmentMembershipChanged"};
static const char *const journey_types[] = {"StageChanged"};

/* The module's state: the shared context first, so the call's service ctx
 * is the fb_ctx the handlers and ffu expect. */
typedef struct fb_state {
    fb_ctx ctx;
    fagg *agg;
} fb_state;

static void fb_close(cxm_service *svc)
{
    fb_state *st = svc->ctx;
    if (!st)
        return;
    fb_ctx *ctx = &st->ctx;
    cxm_svc_erasure_close(&ctx->erasure);
    cxm_resolve_queue_stop(ctx->queue);
    if (ctx->resolver)
        cxm_resolver_close(ctx->resolver);
    if (ctx->fu)
        ffu_close(ctx->fu);
    if (ctx->db)
        fdb_close(ctx->db);
    if (st->agg)
        fagg_close(st->agg);
    if (ctx->senti_owned)
        fsent_free(ctx->senti_owned);
    pthread_mutex_destroy(&ctx->resolve_lock);
    free(st);
    svc->ctx = NULL;
}

/* The producer, the subscriptions to profile's and journey's events, and
 * the erasure cascade. */
static int open_events(cxm_store *store, fb_ctx *ctx)
{
    cxm_bus *bus = cxm_bus_of(store);
    if (!bus) {
        cxm_log_error("feedback.bus_missing",
                      "the feedback service publishes responses and follows profile and journey "
                      "on the event bus, and its store has none (open it through cxm_host_main)");
        return CXM_EUNAVAIL;
    }
    int rc = cxm_svc_erasure_subscribe(bus, "feedback", fb_erase, ctx, &ctx->erasure);
    if (rc == 0)
        rc = cxm_bus_producer_open(bus, "feedback", &ctx->events);
    /* One subscription per (subscriber, producer): the cascade holds
     * "feedback" on profile, so merges and segments come to their own. */
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, "feedback-profile", "profile", profile_types, 3,
                               fb_apply_profile, ctx);
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, "feedback", "journey", journey_types, 1, fb_apply_journey, ctx);
    if (rc != 0)
        cxm_log_error("feedback.bus_failed", "the feedback service cannot use the event bus: %s",
                      cxm_bus_last_error());
    return rc;
}

static int open_model(fb_ctx *ctx)
{
    if (!*cfg_model) {
        ctx->senti = fsent_builtin();
        return 0;
    }
    char why[256] = "";
    int rc = fsent_load(cfg_model, &ctx->senti_owned, why);
    if (rc != 0) {
        cxm_log_error("feedback.bad_flag", "--feedback-sentiment-model \"%s\": %s", cfg_model, why);
        return CXM_EINVAL;
    }
    ctx->senti = ctx->senti_owned;
    return 0;
}

static int open_resolver(fb_ctx *ctx)
{
    cxm_resolver_opts ro = {.source = "feedback"};
    if (*cfg_profile_addr)
        ro.profile_addr = cfg_profile_addr;
    else
        ro.addr_fn = cxm_host_self_addr_fn;
    int rc = cxm_resolver_open(&ro, &ctx->resolver);
    if (rc != 0)
        cxm_log_error("feedback.open_failed", "cannot open the customer resolver: %s",
                      cxm_strerror(rc));
    return rc;
}

static int fb_open(cxm_store *store, cxm_service *svc)
{
    fb_state *st = calloc(1, sizeof *st);
    if (!st)
        return CXM_ENOMEM;
    fb_ctx *ctx = &st->ctx;
    pthread_mutex_init(&ctx->resolve_lock, NULL);
    ctx->store = store;
    *svc = (cxm_service){.name = cxm__v1__feedback_service__descriptor.name,
                         .methods = fb_methods,
                         .nmethods = fb_nmethods,
                         .scope_area = "feedback",
                         .access = fb_access,
                         .naccess = fb_naccess,
                         .contract = &cxm__v1__feedback_service__descriptor,
                         .ctx = st};
    int rc = open_model(ctx);
    if (rc == 0)
        rc = fagg_open(store, &st->agg);
    if (rc == 0)
        rc = fdb_open(store, st->agg, &ctx->db);
    if (rc == 0)
        rc = open_events(store, ctx);
    if (rc == 0)
        rc = ffu_open(store, ctx->events, &ctx->fu);
    if (rc == 0)
        rc = open_resolver(ctx);
    if (rc == 0)
        rc = cxm_resolve_queue_start(ctx->resolver, &ctx->resolve_lock, &ctx->queue);
    if (rc != 0)
        fb_close(svc);
    return rc;
}

const cxm_module fb_module = {"feedback", fb_open, fb_close, fb_opts,
                              sizeof fb_opts / sizeof fb_opts[0]};
