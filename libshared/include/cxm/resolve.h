/*
 * resolve.h - identities to customer ids through the profile service, for
 * the services that take events about customers (journey, feedback).
 *
 * Why a module: every event names its customer by some identity (a cookie,
 * an email, a customer id), and the profile service alone decides which
 * customer that is (creating one for a new identity, as Segment's identify
 * does, and merging profiles when an event links identities). Asking once
 * per event would make ingest as slow as the profile service; so answers
 * are cached, and what is not cached goes in one batched RPC
 * (ProfileService/ResolveIdentities) per call here.
 *
 * The caller never loses an event to an absent profile service: a failed
 * call returns CXM_EUNAVAIL and the caller keeps its events (journey keeps
 * them in its pending queue) and tries again later, in order.
 *
 * Threading: one resolver may be used by one thread at a time for
 * cxm_resolver_resolve; cxm_resolver_invalidate is thread-safe (bus apply
 * threads call it).
 */
#ifndef CXM_RESOLVE_H
#define CXM_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include "cxm/arena.h"
#include "cxm/server.h"
#include "cxm/v1/common.pb-c.h"

typedef struct cxm_resolver cxm_resolver;

typedef struct cxm_resolver_opts {
    /* "host:port" of the profile service; required. A function may supply it
     * instead (addr_fn, called on each connect) when the address is known
     * only once the server started, as in cxmd where profile is the
     * process itself. */
    const char *profile_addr;
    const char *(*addr_fn)(void *ctx);
    void *addr_ctx;
    /* Who resolves ("journey", "feedback"): the profile service stores it as
     * the source of the identities it links. NULL = "resolve". */
    const char *source;
    size_t cache_entries; /* identities remembered; 0 = 1,000,000 */
    int64_t timeout_ms;   /* per batch RPC; 0 = 5000 */
} cxm_resolver_opts;

int cxm_resolver_open(const cxm_resolver_opts *opts, cxm_resolver **out);
void cxm_resolver_close(cxm_resolver *r);

/* One customer reference to resolve, with the identities seen together
 * with it (a login event carries the anonymous id and the email). */
typedef struct cxm_resolve_item {
    /* in: validated and normalised (cxm/ident.h) */
    const Cxm__V1__CustomerRef *customer;
    Cxm__V1__Identity *const *links;
    size_t nlinks;
    /* in: resolve without creating or linking anything (reads, such as
     * journey's GetTimeline by identity): an unknown identity is
     * CXM_ENOTFOUND. links must be empty then. */
    bool no_create;
    /* out */
    const char *customer_id; /* in the caller's arena; NULL when rc != 0 */
    int rc;                  /* 0, CXM_ENOTFOUND (unknown customer id), CXM_EINVAL
                                (the profile service, or the resolver for an item
                                that is not validated, refused the item: why) */
    const char *why;         /* a sentence, in the arena, when rc != 0 */
} cxm_resolve_item;

/* Resolve every item: unknown identities get a new profile (unless
 * no_create), links are
 * linked (which may merge profiles: the profile service publishes that on
 * the bus). Items answered by the cache need no RPC; the others go in
 * batches of at most 1000. Returns 0 when every item has its answer (rc per
 * item), CXM_EUNAVAIL when the profile service could not be reached or
 * failed as a whole (the sentence in cxm_resolver_last_error(); nothing is
 * half done from the caller's view: retry the same items later), CXM_ENOMEM
 * when the arena refused. Only answers the profile service gave are
 * cached: a customer id per identity (of the customer and of the links it
 * linked), never a NOT_FOUND. A link that the profile service left out
 * (suppressed, a unique type) does not fail the item. */
int cxm_resolver_resolve(cxm_resolver *r, cxm_resolve_item *items, size_t n, cxm_arena *a);

/* Forget every cached answer: after an unmerge or an erasure, an identity
 * may resolve elsewhere (after a merge the old answers still name the
 * merged-away id, which the profile service redirects; invalidate then too
 * when the live id matters). An RPC in flight while this runs caches
 * nothing. */
void cxm_resolver_invalidate(cxm_resolver *r);

/* Counters for status and benchmarks. */
typedef struct cxm_resolver_stats {
    uint64_t hits, misses, rpcs, failures;
} cxm_resolver_stats;
void cxm_resolver_stats_get(cxm_resolver *r, cxm_resolver_stats *out);

/* A sentence about this thread's latest failure ("" if none). */
const char *cxm_resolver_last_error(void);

/* ---- the resolver thread: calls waiting for their customer ---- */

/* Why a thread: a blocking call to profile on a server worker could wait
 * for itself in cxmd (profile's call may be queued on that very worker).
 * A queue owns one thread that takes every waiting call at once, resolves
 * them in one cxm_resolver_resolve batch, and hands each call on to its
 * `done` function on that thread (which queues the write job or answers).
 * The resolver is used under `lock` (NULL: the queue's own), so other
 * threads of the service may share it. */
typedef struct cxm_resolve_queue cxm_resolve_queue;

/* One call's answer: rc is the batch's result (0, CXM_EUNAVAIL: profile
 * could not be reached, CXM_ENOMEM), it the call's item (rc and
 * customer_id per item, customer_id in the call's arena) when rc == 0. */
typedef void (*cxm_resolve_done_fn)(cxm_call *call, void *in, const cxm_resolve_item *it, int rc,
                                    void *user);

/* Start the thread on r (which must outlive the queue). */
int cxm_resolve_queue_start(cxm_resolver *r, pthread_mutex_t *lock, cxm_resolve_queue **out);

/* Queue call: ref (validated) is resolved (no_create as in
 * cxm_resolve_item), then done(call, in, item, rc, user) runs on the
 * queue's thread. The waiting record lives in the call's arena. 0, or
 * (nothing queued: answer the call yourself) CXM_ENOMEM, CXM_EINVAL (no
 * call, ref or done) or CXM_EUNAVAIL (the queue is stopping). */
int cxm_resolve_queue_push(cxm_resolve_queue *q, cxm_call *call, const Cxm__V1__CustomerRef *ref,
                           bool no_create, void *in, cxm_resolve_done_fn done, void *user);

/* Several refs of one call (RecordInteractions): items[0..n) (customer,
 * links, no_create set; in the call's arena, alive until done runs) go into
 * the same resolve batch as every other waiting call's, then
 * done(call, in, items, n, rc, user) runs on the queue's thread with each
 * item's rc, customer_id and why filled in (in the call's arena) when
 * rc == 0. 0, or as cxm_resolve_queue_push (CXM_EINVAL also for items
 * NULL while n > 0). */
typedef void (*cxm_resolve_many_fn)(cxm_call *call, void *in, cxm_resolve_item *items, size_t n,
                                    int rc, void *user);
int cxm_resolve_queue_push_many(cxm_resolve_queue *q, cxm_call *call, cxm_resolve_item *items,
                                size_t n, void *in, cxm_resolve_many_fn done, void *user);

/* Stop: calls still waiting are resolved and handed on first, then the
 * thread ends and q is freed. A push while it stops is refused
 * (CXM_EUNAVAIL); none may come after it returned (stop the server's
 * calls first). NULL is a no-op. */
void cxm_resolve_queue_stop(cxm_resolve_queue *q);

#endif
