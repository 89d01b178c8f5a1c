/*
 * nbectx.h - the personalisation service's state, shared by its handlers
 * (nbe_rpc.c), its training and maintenance threads (nbe_train.c) and the
 * module (personalisation.c); cxm_call_service_ctx returns it.
 */
#ifndef CXM_NBECTX_H
#define CXM_NBECTX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cxm/replica.h"
#include "cxm/resolve.h"
#include "cxm/store.h"
#include "cxm/svc.h"
#include "personalisation/reco/recodb.h"
#include "personalisation/xdb.h"

typedef struct nbe_train nbe_train; /* training and maintenance threads: nbe_train.h */

/* The module's flags (personalisation.c), read once at open. */
typedef struct nbe_flags {
    uint32_t max_history;          /* --reco-max-history */
    uint32_t recovery_days;        /* --reco-recovery-days */
    bool hold_offers;              /* --reco-hold-offers */
    uint64_t retrain_interactions; /* --reco-retrain-interactions; 0 = off */
    uint32_t retrain_minutes;      /* --reco-retrain-minutes; 0 = off */
} nbe_flags;

typedef struct nbe_ctx {
    cxm_store *store;
    xdb *db;              /* catalogue, signals, contacts, idempotency, model infos */
    cxm_replica *replica; /* stage, segments, consents, merges from the bus */
    recodb *reco;         /* interaction log and models */
    nbe_flags flags;
    /* Identity refs are resolved through profile on the resolve queue's
     * thread (never on a server worker); the resolver is used under
     * resolve_lock. */
    pthread_mutex_t resolve_lock;
    cxm_resolver *resolver;
    cxm_resolve_queue *queue;
    /* One recodb_reader per thread that serves (pthread-specific, freed
     * when the thread ends): Recommend reuses it without a lock. */
    pthread_key_t reader_key;
    bool reader_key_made;
    nbe_train *train;
    cxm_svc_erasure erasure;
} nbe_ctx;

/* This thread's reader of ctx->reco, created on first use; NULL when out
 * of memory. */
recodb_reader *nbe_reader(nbe_ctx *ctx);

#endif
