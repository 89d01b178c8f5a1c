/*
 * fbctx.h - the feedback service's state, shared by its modules' handlers
 * (cxm_call_service_ctx returns it).
 */
#ifndef CXM_FBCTX_H
#define CXM_FBCTX_H

#include <pthread.h>

#include "cxm/bus.h"
#include "cxm/resolve.h"
#include "cxm/store.h"
#include "cxm/svc.h"
#include "senti/fsent.h"

typedef struct fdb fdb; /* responses, surveys, replicas: fdb.h */
typedef struct ffu ffu; /* follow-ups: ffu.h */

typedef struct fb_ctx {
    cxm_store *store;
    fdb *db;
    ffu *fu;
    const fsent_model *senti; /* fsent_builtin() or --feedback-sentiment-model */
    fsent_model *senti_owned; /* the loaded file, freed on close */
    cxm_bus_producer *events; /* "feedback": FeedbackReceived, FollowUpChanged */
    /* Customers are resolved through profile (resolve.h); the resolver is
     * used by one thread at a time. */
    pthread_mutex_t resolve_lock;
    cxm_resolver *resolver;
    /* Calls waiting for their customer: a thread of the service resolves
     * them in batches, off the server's workers (resolve.h), under
     * resolve_lock. */
    cxm_resolve_queue *queue;
    cxm_svc_erasure erasure;
} fb_ctx;

#endif
