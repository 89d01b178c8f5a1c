/*
 * personalisation.c - the personalisation service as a module: its flags,
 * opening and closing its state (nbe_ctx, nbectx.h) and the bus
 * subscriptions.
 *
 * Handlers are in nbe_rpc.c (training in nbe_train.c), checks in
 * nbe_check.c, the service's tables in xdb.c, the interaction log and the
 * models in reco/recodb.c, the replicated customer facts in libshared's
 * replica.c.
 */
#include "personalisation.h"

#include <stdlib.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/svc.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "nbe_rpc.h"
#include "nbe_train.h"

/* ---- configuration (module flags) ---- */

static int64_t cfg_max_history = 0;
static int64_t cfg_recovery_days = 30;
static int64_t cfg_hold_offers = 1;
static int64_t cfg_retrain_interactions = 10000;
static int64_t cfg_retrain_minutes = 0;
static const char *cfg_profile_addr = "";

static const cxm_opt pers_opts[] = {
    {"reco-max-history", CXM_OPT_INT, &cfg_max_history, 0, 100000,
     "latest interactions of a customer that Recommend scores; 0 = recodb's default (2000: "
     "fewer lose quality, see benchmarks/README.md)"},
    {"reco-recovery-days", CXM_OPT_INT, &cfg_recovery_days, 0, 3650,
     "days a detractor answer or strongly negative comment keeps a customer in service recovery"},
    {"reco-hold-offers", CXM_OPT_INT, &cfg_hold_offers, 0, 1,
     "1: offers are held back in service recovery; 0: only ranked after service actions"},
    {"reco-retrain-interactions", CXM_OPT_INT, &cfg_retrain_interactions, 0, INT64_MAX,
     "train a new model after this many new interactions; 0 = off. Never while a TrainModel's "
     "training runs or waits, and after a training not before as long again as it took"},
    {"reco-retrain-minutes", CXM_OPT_INT, &cfg_retrain_minutes, 0, 525600,
     "train a new model every this many minutes; 0 = off (same yielding and pause)"},
    {"profile-addr", CXM_OPT_STR, &cfg_profile_addr, 0, 0,
     "HOST:PORT of the profile service resolving customers; empty: this process's own server "
     "(cxmd)"},
};

static const char *const profile_types[] = {"SegmentMembershipChanged", "ConsentChanged",
                                            "CustomerMerged", "CustomerUnmerged"};
static const char *const journey_types[] = {"StageChanged", "TouchpointTracked"};
static const char *const feedback_types[] = {"FeedbackReceived", "FollowUpChanged"};

static void free_reader(void *r)
{
    recodb_reader_free(r);
}

static void pers_close(cxm_service *svc)
{
    nbe_ctx *ctx = svc->ctx;
    if (!ctx)
        return;
    cxm_svc_erasure_close(&ctx->erasure);
    nbe_train_stop(ctx);
    cxm_resolve_queue_stop(ctx->queue);
    if (ctx->resolver)
        cxm_resolver_close(ctx->resolver);
    /* Readers of threads still alive (the host's workers) go with the
     * recodb; the key's destructor frees those of threads that ended. */
    if (ctx->reader_key_made) {
        recodb_reader *r = pthread_getspecific(ctx->reader_key);
        if (r)
            recodb_reader_free(r);
        pthread_key_delete(ctx->reader_key);
    }
    if (ctx->reco)
        recodb_close(ctx->reco);
    if (ctx->db)
        xdb_close(ctx->db);
    if (ctx->replica)
        cxm_replica_close(ctx->replica);
    pthread_mutex_destroy(&ctx->resolve_lock);
    free(ctx);
    svc->ctx = NULL;
}

static int open_events(cxm_store *store, nbe_ctx *ctx)
{
    cxm_bus *bus = cxm_bus_of(store);
    if (!bus) {
        cxm_log_error("personalisation.bus_missing",
                      "the personalisation service follows profile, journey and feedback on the "
                      "event bus, and its store has none (open it through cxm_host_main)");
        return CXM_EUNAVAIL;
    }
    int rc = cxm_svc_erasure_subscribe(bus, "personalisation", nbe_erase, ctx, &ctx->erasure);
    /* One subscription per (subscriber, producer): the cascade holds
     * "personalisation" on profile, so profile's facts come to their own. */
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, "personalisation-profile", "profile", profile_types, 4,
                               nbe_apply_profile, ctx);
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, "personalisation", "journey", journey_types, 2,
                               nbe_apply_journey, ctx);
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, "personalisation", "feedback", feedback_types, 2,
                               nbe_apply_feedback, ctx);
    if (rc != 0)
        cxm_log_error("personalisation.bus_failed",
                      "the personalisation service cannot use the event bus: %s",
                      cxm_bus_last_error());
    return rc;
}

static int open_resolver(nbe_ctx *ctx)
{
    cxm_resolver_opts ro = {.source = "personalisation"};
    if (*cfg_profile_addr)
        ro.profile_addr = cfg_profile_addr;
    else
        ro.addr_fn = cxm_host_self_addr_fn;
    int rc = cxm_resolver_open(&ro, &ctx->resolver);
    if (rc == 0)
        rc = cxm_resolve_queue_start(ctx->resolver, &ctx->resolve_lock, &ctx->queue);
    if (rc != 0)
        cxm_log_error("personalisation.open_failed", "cannot open the customer resolver: %s",
                      cxm_strerror(rc));
    return rc;
}

static int open_tables(cxm_store *store, nbe_ctx *ctx)
{
    recodb_opts ro = {.max_history = ctx->flags.max_history};
    int rc = cxm_replica_open(store, "pers", &ctx->replica);
    if (rc == 0)
        rc = xdb_open(store, &ctx->db);
    if (rc == 0)
        rc = recodb_open(store, &ro, &ctx->reco);
    if (rc == 0 && pthread_key_create(&ctx->reader_key, free_reader) != 0)
        rc = CXM_ENOMEM;
    ctx->reader_key_made = rc == 0;
    return rc;
}

static int pers_open(cxm_store *store, cxm_service *svc)
{
    nbe_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return CXM_ENOMEM;
    pthread_mutex_init(&ctx->resolve_lock, NULL);
    ctx->store = store;
    ctx->flags = (nbe_flags){.max_history = (uint32_t)cfg_max_history,
                             .recovery_days = (uint32_t)cfg_recovery_days,
                             .hold_offers = cfg_hold_offers != 0,
                             .retrain_interactions = (uint64_t)cfg_retrain_interactions,
                             .retrain_minutes = (uint32_t)cfg_retrain_minutes};
    *svc = (cxm_service){.name = cxm__v1__personalisation_service__descriptor.name,
                         .methods = nbe_methods,
                         .nmethods = nbe_nmethods,
                         .scope_area = "reco",
                         .access = nbe_access,
                         .naccess = nbe_naccess,
                         .contract = &cxm__v1__personalisation_service__descriptor,
                         .ctx = ctx};
    int rc = open_tables(store, ctx);
    if (rc == 0)
        rc = open_events(store, ctx);
    if (rc == 0)
        rc = open_resolver(ctx);
    if (rc == 0)
        rc = nbe_train_start(ctx);
    if (rc != 0)
        pers_close(svc);
    return rc;
}

const cxm_module pers_module = {"personalisation", pers_open, pers_close, pers_opts,
                                sizeof pers_opts / sizeof pers_opts[0]};
