/*
 * nbe_train.h - training and keeping the model fresh: the TrainModel and
 * GetModelInfo handlers, the training thread, and the keeper thread that
 * refreshes recodb's candidate caches and runs the retrain policy.
 *
 * One training at a time, whoever starts it (TrainModel, or the policy:
 * every --reco-retrain-interactions new interactions, or every
 * --reco-retrain-minutes): another is FAILED_PRECONDITION while it runs.
 * Training runs on its own thread (recodb_train_ex), never on a server
 * worker: TrainModel with run_async answers at once (state TRAINING);
 * without it the call is answered from the training thread when the
 * training ends. Progress and phase live in memory (GetModelInfo.training);
 * results are stored with xdb_model_put: the new version SERVING or READY
 * (or FAILED), the one it replaced READY as `previous`, and versions that
 * recodb dropped RETIRED.
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

/* Stop: a training that runs is finished and answered, one not started is
 * answered UNAVAILABLE; then the threads end. NULL train is a no-op. */
void nbe_train_stop(nbe_ctx *ctx);

void nbe_on_train(cxm_call *call, const ProtobufCMessage *msg);
void nbe_on_model_info(cxm_call *call, const ProtobufCMessage *msg);

#endif
