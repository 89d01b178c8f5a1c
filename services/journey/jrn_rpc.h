/*
 * jrn_rpc.h - the JourneyService handlers: the method table, and the state
 * every handler, the pipeline and the bus subscriptions share.
 *
 * Ingest (Track, TrackStream) is checked on the worker thread, then one
 * write job per request or stream message records dedup entries and
 * appends the packed events to the pending queue: nothing else, so ingest
 * costs a few puts per event. The pipeline (jrn_pipe.h) resolves pending
 * events to customers and stores them in the timeline. Reads run on the
 * worker in a read transaction; the analytics hand a jsource over the store
 * to jan.h.
 */
#ifndef CXM_JOURNEY_RPC_H
#define CXM_JOURNEY_RPC_H

#include <pthread.h>
#include <stddef.h>

#include "cxm/bus.h"
#include "cxm/server.h"
#include "cxm/svc.h"
#include "jdb.h"
#include "jrn_check.h"
#include "jrules.h"

typedef struct jrn_pipe jrn_pipe;

/* The journey service's state, made by the module's open (journey.c). */
typedef struct jrn_ctx {
    jdb *db;
    jrn_limits limits;
    int64_t dedup_window_ms;
    cxm_bus_producer *events; /* "journey": TouchpointTracked, StageChanged */
    jrn_pipe *pipe;
    /* The compiled rule set in force (the pipeline replaces it when the
     * stored set changes); read under rules_lock. */
    pthread_rwlock_t rules_lock;
    jrules *rules;
    bool rules_need_props; /* some rule has property conditions */
    cxm_svc_erasure erasure;
} jrn_ctx;

/* The bus subscriptions' apply functions (user = the jrn_ctx).
 * jrn_apply_feedback counts a FeedbackReceived in its touchpoint's feedback
 * scores and queues it on the pending queue as a "survey_response" event
 * (event id "fb:" + response id, at the answer's time), which the pipeline
 * stores on the customer's timeline like a tracked event. */
int jrn_apply_profile(cxm_txn *t, const Cxm__V1__Event *ev, void *user);
int jrn_apply_feedback(cxm_txn *t, const Cxm__V1__Event *ev, void *user);
int jrn_erase(cxm_txn *t, const char *customer_id, char *const *merged, size_t nmerged,
              uint64_t *records, void *user);

extern const cxm_method jrn_methods[];
extern const size_t jrn_nmethods;
extern const cxm_method_access jrn_access[];
extern const size_t jrn_naccess;

#endif
