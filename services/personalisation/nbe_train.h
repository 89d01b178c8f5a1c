/*
 * nbe_train.h - training and keeping the model fresh: the TrainModel and
 * GetModelInfo handlers, the training thread, and the keeper thread that
 * refreshes recodb's candidate caches and runs the retrain policy.
 *
 * One training at a time. Who may start one:
 * - TrainModel ("rpc") starts at once when nothing runs. When an automatic
 *   training runs, it waits for it (one TrainModel at most) and starts,
 *   without a gap, as soon as that one ends: so loading interactions
 *   through the RPCs and then training always trains what was loaded. A
 *   sync TrainModel is answered when its own training ends; run_async
 *   answers at once with state TRAINING, phase "waiting for the automatic
 *   training to end" (started_at 0) or "queued" (it started).
 *   GetModelInfo.training shows the training that runs: the automatic one
 *   while the TrainModel waits, then the TrainModel's (trigger "rpc").
 *   Another TrainModel while one runs or waits is FAILED_PRECONDITION ("a
 *   TrainModel started at ... is running: poll GetModelInfo ...").
 * - The policy (every --reco-retrain-interactions new interactions, or
 *   every --reco-retrain-minutes) never starts while a TrainModel's
 *   training runs or waits, and after any training it waits at least as
 *   long as that training took (the CPU trains at most half the time
 *   during a bulk load).
 * Training runs on its own thread (recodb_train_ex), never on a server
 * worker: a sync TrainModel is answered from the training thread. Progress
 * and phase live in memory (GetModelInfo.training); results are stored
 * with xdb_model_put: the new version SERVING or READY (or FAILED), the
 * one it replaced READY as `previous`, and versions that recodb dropped
 * RETIRED.
 *
 * The keeper thread drains recodb_stale() and calls recodb_refresh() for
 * each customer, so a customer's candidates are ready before their next
 * Recommend, and checks the retrain policy about once a second.
 *
 * Threading: start/stop from the module's open/close; handlers from any
 * worker.
 */
#ifndef CXM_PERSONALISATION_NBE_TRAIN_H
#define CXM_PERSONALISATION_NBE_TRAIN_H

#include "cxm/server.h"
#include "nbectx.h"

/* Start both threads (ctx->reco and ctx->db open). 0 or CXM_ENOMEM. */
int nbe_train_start(nbe_ctx *ctx);

/* Stop: a training that runs is finished and answered, ones not started
 * (a waiting TrainModel's too) are answered UNAVAILABLE; then the threads
 * end. NULL train is a no-op. */
void nbe_train_stop(nbe_ctx *ctx);

void nbe_on_train(cxm_call *call, const ProtobufCMessage *msg);
void nbe_on_model_info(cxm_call *call, const ProtobufCMessage *msg);

#endif
