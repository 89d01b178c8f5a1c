/*
 * bus.h - the event bus between cxm services: a transactional outbox,
 * exactly-once application by subscribers, delivery in process or through
 * NATS JetStream.
 *
 * Why: a change in one service must reach the others (a touchpoint event the
 * profile and the recommender, an erasure every service) without a
 * distributed transaction and without losing or doubling anything on a
 * crash.
 *
 * Producing. A service opens its producer once (cxm_bus_producer_open at
 * module open) and, inside the write job that changes its state, calls
 * cxm_bus_emit(p, txn, &event). The event is written to the producer's
 * outbox in that same LMDB transaction, with the next per-producer sequence
 * number read from a counter in that transaction: if the job reruns (map
 * growth, a failed neighbour in a group commit, see store.h) the emit reruns
 * with it and nothing is duplicated or skipped. An event exists exactly when
 * the change that caused it committed.
 *
 * Subscribing. cxm_bus_subscribe(bus, "personalisation", "profile", types,
 * ntypes, apply, user) before cxm_bus_start. apply(txn, event, user) runs in
 * a write transaction of the SUBSCRIBER's store, together with the bus's
 * record of the last (producer, sequence) applied by that subscriber: events
 * at or below the record are skipped, so an event delivered twice is applied
 * once. Events of one producer are applied in sequence order (hence in order
 * per customer); many events share one transaction. Events of other types
 * than `types` advance the record without a call. apply returns 0, or a
 * negative CXM_E* code: the whole batch is rolled back (nothing half
 * applied) and retried with backoff (0.1 s doubling to 10 s), logged as
 * bus.apply_failed; other subscribers and the producer go on. A poison event
 * therefore stops its subscriber until the code or data is fixed; lag
 * reporting makes that visible. apply must not keep pointers into the event
 * after it returns and, like any write job, must build its effects through
 * the txn only (it reruns after a map growth).
 *
 * Delivery in process (no NATS URL). A relay thread, woken by the store's
 * post-commit hook after each commit that emitted (and every 250 ms to
 * retry), applies outbox entries to each subscriber of the same process in
 * that subscriber's own write transaction, and deletes outbox entries once
 * every subscriber of their producer applied them (in the same transaction
 * as the last apply). A producer without subscribers in this process has its
 * entries deleted as delivered. The producer's write path never waits for
 * the relay: it only writes its outbox entry. Subscribers share LMDB's one
 * writer lock with producers, held for one batch (at most batch_max events).
 *
 * Durability of in-process applies: apply transactions commit with
 * CXM_WRITE_NOMETASYNC (data flushed, meta page not): one fdatasync instead
 * of two per batch. Subscriber state and the outbox live in the same LMDB
 * environment, and LMDB recovers to a prefix of its commits, so an OS crash
 * that loses an apply commit loses the outbox deletion with it (same or
 * later commit) while the producer's event (an earlier commit) survives: the
 * event is delivered again and applied once. MDB_NOSYNC would save the last
 * fdatasync too but can corrupt the environment on an OS crash when the
 * file system reorders writes, so it is not used. The event's own commit
 * stays fully durable (the producer's write job).
 *
 * Delivery through NATS (opts.nats_url). Every emitted event goes to
 * JetStream, in-process subscribers included (same handler code, same
 * guarantees). The relay publishes each producer's outbox to its stream
 * CXM_<PRODUCER> on subject cxm.<producer>.<type>.<shard>, shard =
 * cxm_bus_shard(customer_id), message id "<producer>:<sequence>"
 * (JetStream drops a repeat within its duplicate window), and deletes
 * entries only after JetStream acknowledged them, every 100 ms rather than
 * per batch (a write per batch costs the producer half its write rate); a
 * crash before the deletion republishes, which the duplicate window and the
 * subscribers' records absorb. Each subscription has a durable pull consumer
 * named after the subscriber on the producer's stream; a batch is applied in
 * one transaction committed durably (the outbox is elsewhere, so nothing
 * could replay a lost apply) and acknowledged only after that commit. An
 * event beyond the next expected sequence (its predecessors await
 * redelivery after a crashed run, or come later in the stream because a
 * publish batch failed part-way and was published again) is kept in the
 * subscriber's bus.early table in that transaction and applied as soon as
 * the gap fills; only the prefix of a batch whose events are all applied is
 * acknowledged (the ack is cumulative), so the rest comes back after the ack
 * wait (opts.nats_ack_wait_ms) and is then a repeat. A subscriber that applied nothing yet also
 * accepts the first message of a stream as its start, so a stream that begins after sequence 1 (the
 * producer ran in process before) is not a gap.
 *
 * Using it from a service (profile's delete, for instance):
 *
 *   at module open:   cxm_bus_producer_open(cxm_bus_of(store), "profile", &p);
 *   in the write job: Cxm__V1__CustomerDeleted d = CXM__V1__CUSTOMER_DELETED__INIT;
 *                     Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
 *                     d.receipt_id = receipt_id;
 *                     ev.customer_id = customer_id;
 *                     ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_DELETED;
 *                     ev.customer_deleted = &d;
 *                     rc = cxm_bus_emit(p, txn, &ev);   (return rc on failure)
 *   a subscriber:     static const char *const types[] = {"CustomerDeleted"};
 *                     cxm_bus_subscribe(bus, "journey", "profile", types, 1,
 *                                       journey_apply, journey_state);
 *
 * Threading: create, producer_open, subscribe, start, stop and destroy are
 * for the host's start-up and shut-down thread. cxm_bus_emit is called from
 * write jobs on any thread; cxm_bus_status from any thread.
 *
 * Errors: 0 or a negative CXM_E* code; invalid input is CXM_EINVAL with a
 * sentence naming the field in cxm_bus_last_error().
 */
#ifndef CXM_BUS_H
#define CXM_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/server.h"
#include "cxm/store.h"
#include "cxm/v1/bus.pb-c.h"
#include "cxm/v1/events.pb-c.h"

typedef struct cxm_bus cxm_bus;
typedef struct cxm_bus_producer cxm_bus_producer;

#define CXM_BUS_SHARDS 64

typedef struct cxm_bus_opts {
    const char *nats_url;   /* NULL or "": deliver in process */
    const char *nats_creds; /* NULL: none */
    /* NULL: none. Its authentication and TLS fields are used (creds_file
     * there replaces nats_creds); the URL and timeouts are the bus's. */
    const struct cxm_nats_opts *nats_security;
    size_t batch_max;     /* events per apply or publish batch; 0 = 512 */
    int report_ms;        /* lag log period; 0 = 10000 */
    int nats_ack_wait_ms; /* redelivery of unacked events; 0 = 5000 */
} cxm_bus_opts;

/* Create the bus of store (one per store; CXM_EEXIST for a second) and
 * install the store's post-commit hook. Nothing is delivered before
 * cxm_bus_start. With a NATS URL, connects now: CXM_EUNAVAIL if the server
 * cannot be reached. */
int cxm_bus_create(cxm_store *store, const cxm_bus_opts *opts, cxm_bus **out);

/* Stop delivery if running, remove the hook, free everything (producers
 * included). NULL is ignored. Call before the store's last close. */
void cxm_bus_destroy(cxm_bus *bus);

/* The bus created for store, or NULL: how a module's open(store, svc) finds
 * it. */
cxm_bus *cxm_bus_of(cxm_store *store);

/* The store the bus was created for. */
cxm_store *cxm_bus_store(cxm_bus *bus);

/* The producer named name ([a-z0-9_-], 1 to 32 bytes: a service name),
 * created on first call; owned by the bus, valid until cxm_bus_destroy. */
int cxm_bus_producer_open(cxm_bus *bus, const char *name, cxm_bus_producer **out);

/* Record event in p's outbox as part of txn (a write transaction of the
 * bus's store). Sets event->producer, sequence, recorded_at_unix_ms, type
 * (from the payload when empty) and occurred_at_unix_ms (now when 0); the
 * strings it sets are owned by the bus. customer_id is required (1 to 256
 * bytes); type, when no payload is set, is [A-Za-z0-9], 1 to 64 bytes, and
 * must match the payload when one is. CXM_EINVAL names the field; other
 * errors come from the store (return them from the job as they are). */
int cxm_bus_emit(cxm_bus_producer *p, cxm_txn *txn, Cxm__V1__Event *event);

/* Called once per event, in order, inside the subscriber's write txn. */
typedef int (*cxm_bus_apply_fn)(cxm_txn *txn, const Cxm__V1__Event *event, void *user);

/* Subscribe subscriber ([A-Za-z0-9_-], 1 to 32 bytes) to producer's events
 * of the given types (message names such as "CustomerDeleted"; ntypes 0 =
 * all). Before cxm_bus_start only; one subscription per (subscriber,
 * producer). The type strings must outlive the bus. */
int cxm_bus_subscribe(cxm_bus *bus, const char *subscriber, const char *producer,
                      const char *const *types, size_t ntypes, cxm_bus_apply_fn apply, void *user);

/* Start delivery (the relay thread; with NATS also the streams, consumers
 * and one fetching thread per subscription). After every module opened. */
int cxm_bus_start(cxm_bus *bus);

/* Stop delivery and wait for the threads; what is not delivered stays in the
 * outbox or on the server. Idempotent. */
void cxm_bus_stop(cxm_bus *bus);

/* Producers, subscribers and lag as of now, allocated in a. */
int cxm_bus_status(cxm_bus *bus, cxm_arena *a, Cxm__V1__GetBusStatusResponse **out);

/* The cxm.v1.BusService answering GetBusStatus for this bus; valid until
 * cxm_bus_destroy. */
const cxm_service *cxm_bus_service(cxm_bus *bus);

/* FNV-1a of customer_id modulo CXM_BUS_SHARDS: the <shard> of a subject. */
unsigned cxm_bus_shard(const char *customer_id);

/* A sentence about this thread's latest failure ("" if none). */
const char *cxm_bus_last_error(void);

#endif
