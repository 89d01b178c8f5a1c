/*
 * jrn_pipe.h - the journey pipeline: one background thread that moves
 * pending events into customers' timelines.
 *
 * Each round: the oldest pending events (up to JRN_PIPE_BATCH) are resolved
 * to customers through the profile service (cxm/resolve.h, cached and
 * batched), then ONE write transaction stores them under their customers,
 * deletes them from the queue, recomputes the stages of every affected root
 * (jrn_recompute) and publishes TouchpointTracked for events about an item.
 * A profile service that cannot be reached keeps the events waiting, in
 * order, with backoff (0.1 s to 5 s); an event it refuses (an unknown
 * customer id) is dropped with a warning and counted. Between rounds the
 * thread sweeps expired dedup entries and advances the background
 * recomputation after a rule change.
 *
 * It is woken when ingest commits (jrn_pipe_wake), and polls every 250 ms.
 */
#ifndef CXM_JOURNEY_PIPE_H
#define CXM_JOURNEY_PIPE_H

#include "cxm/resolve.h"
#include "jrn_rpc.h"

#define JRN_PIPE_BATCH 5000

/* Start the thread. opts is copied (its strings must outlive the pipe). */
int jrn_pipe_start(jrn_ctx *ctx, const cxm_resolver_opts *opts, jrn_pipe **out);
/* Stop the thread (the round under way completes) and free everything. */
void jrn_pipe_stop(jrn_pipe *p);

/* New pending events or a new rule set: run a round now. Any thread. */
void jrn_pipe_wake(jrn_pipe *p);

/* Forget cached resolutions (after an unmerge or an erasure). Any thread. */
void jrn_pipe_invalidate(jrn_pipe *p);

/* Compile rules (version: the stored set's, 0 for the defaults) and put
 * them in force, with ctx->rules_need_props telling whether any rule looks
 * at event properties (replays then read the stored events). */
int jrn_rules_install(jrn_ctx *ctx, Cxm__V1__StageRule *const *rules, size_t n, uint64_t version);

/* The recomputation after a rule change, as stored: the rule version it
 * last completed, and roots done out of total in the walk under way. */
int jrn_recompute_progress(cxm_txn *t, jrn_ctx *ctx, uint64_t *version, uint64_t *done,
                           uint64_t *total);

/* Recompute the stage history of root (a root customer id) from its group's
 * records under the rules in force, inside t: per-record stages written back
 * where they changed, the state row rewritten, StageChanged emitted when the
 * current stage changed. A root without records loses its state row. */
int jrn_recompute(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const char *root, int64_t now);

/* Events dropped because the profile service refused them. */
uint64_t jrn_pipe_dropped(jrn_pipe *p);

#endif
