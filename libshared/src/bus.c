/*
 * bus.c - the transactional outbox, the relay and the subscribers' exactly-
 * once application (see bus.h for the contract).
 *
 * Tables, in the store's environment:
 *   bus.outbox   str(producer) u64(sequence) -> packed cxm.v1.Event
 *   bus.sequence str(producer)                -> u64 last sequence emitted
 *   bus.applied  str(subscriber) str(producer) -> u64 last sequence applied
 * Keys are keyenc.h keys and the u64 values big-endian, so an outbox prefix
 * scan walks one producer's events in sequence order.
 *
 * Waking the relay: cxm_bus_emit marks the calling thread (the thread that
 * runs the write job also commits it); the store's post-commit hook, on that
 * same thread, sees the mark and signals the relay. A mark left by a job
 * that did not commit causes one spurious wake-up later, which is harmless;
 * a process-wide flag instead could be cleared by another transaction's
 * commit before the emitting one committed, and lose the wake-up.
 */
#include "cxm/bus.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/nats.h"

#define DEFAULT_BATCH 512
#define DEFAULT_REPORT_MS 10000
#define TICK_MS 250 /* relay wake-up without commits: retries, reports */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 10000
#define NAME_MAX_LEN 32
#define CUSTOMER_ID_MAX 256
#define TYPE_MAX 64
#define ERR_LEN 256
#define CLEANUP_MAX 4096 /* outbox deletions per transaction, and the largest batch */
#define PUBLISH_TIMEOUT_MS 2000
#define FETCH_WAIT_MS 250 /* also bounds how long stopping waits for a fetch */
#define PENDING_EVERY_MS 1000
#define DEFAULT_ACK_WAIT_MS 5000
#define TRIM_EVERY_MS 100 /* NATS: published outbox entries are deleted this often */

struct cxm_bus_producer {
    cxm_bus *bus;
    char name[NAME_MAX_LEN + 1];
    bool stream_ready; /* NATS: its stream exists */
    int64_t retry_at;  /* NATS: monotonic ms before which publishing waits */
    int backoff_ms;
    /* NATS: the last sequence JetStream acknowledged in this run (0: none
     * yet, start from the oldest entry) and the last one deleted. Deleting
     * is deferred (see maybe_trim); a crash before it only republishes. */
    _Atomic uint64_t published;
    uint64_t trimmed;
    int64_t trim_at;
    cxm_bus_producer *next;
};

/* One subscription. The relay-state fields are the relay's (or the
 * subscription's fetch thread's); last_error is read under bus->mu. */
typedef struct sub {
    cxm_bus *bus;
    char name[NAME_MAX_LEN + 1];
    char producer[NAME_MAX_LEN + 1];
    const char *const *types;
    size_t ntypes;
    cxm_bus_apply_fn apply;
    void *user;
    uint64_t mark;     /* last sequence applied, as committed */
    int64_t retry_at;  /* monotonic ms before which it is not retried */
    int backoff_ms;    /* next retry delay after a failure */
    uint64_t reported; /* backlog at the previous report */
    char last_error[ERR_LEN];
    uint64_t pending; /* NATS: held by the server for us (under bus->mu) */
    cxm_nats_sub *ns; /* NATS: the durable consumer, once attached */
    pthread_t thread; /* NATS: the fetching thread */
    bool thread_started;
    struct sub *next;
} sub;

struct cxm_bus {
    cxm_store *store;
    cxm_bus *next; /* registry link */
    MDB_dbi outbox, seqs, applied, early;
    size_t batch_max;
    int report_ms;
    cxm_bus_producer *producers;
    sub *subs;

    pthread_mutex_t mu; /* wake, stopping, last_error strings */
    pthread_cond_t cv;
    bool wake, stopping, started;
    pthread_t relay;
    cxm_nats *nats; /* NULL: in-process delivery */

    cxm_method method;
    cxm_service svc;
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static cxm_bus *registry;

static _Thread_local char tls_err[ERR_LEN];
/* The bus whose outbox this thread wrote in its current write txn. */
static _Thread_local cxm_bus *tls_emitted;

__attribute__((format(printf, 2, 3))) static int fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_err, sizeof tls_err, fmt, ap);
    va_end(ap);
    return rc;
}

const char *cxm_bus_last_error(void)
{
    return tls_err;
}

static int64_t clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Now + ms on the clock pthread_cond_timedwait uses. */
static struct timespec deadline_in(int64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000;
    t.tv_sec += t.tv_nsec / 1000000000;
    t.tv_nsec %= 1000000000;
    return t;
}

unsigned cxm_bus_shard(const char *customer_id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)customer_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % CXM_BUS_SHARDS;
}

/* ---- names, keys and counters ----------------------------------------- */

/* [a-z0-9_-] for producers (they become NATS subject tokens and stream
 * names), plus upper case for subscribers (durable consumer names). */
static int check_name(const char *field, const char *name, bool upper_ok)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > NAME_MAX_LEN)
        return fail(CXM_EINVAL, "%s: must be 1 to %d characters, got %zu", field, NAME_MAX_LEN, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!(islower(ch) || isdigit(ch) || ch == '_' || ch == '-' || (upper_ok && isupper(ch))))
            return fail(CXM_EINVAL, "%s: \"%s\" may only hold %s, digits, '_' and '-'", field, name,
                        upper_ok ? "letters" : "lower-case letters");
    }
    return 0;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Keys are built from validated names, so they always fit. */
static size_t outbox_key(uint8_t *buf, const char *producer, uint64_t seq)
{
    cxm_key k;
    size_t len = 0;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, producer);
    cxm_key_u64(&k, seq);
    cxm_key_finish(&k, &len);
    return len;
}

static size_t name_key(uint8_t *buf, const char *a, const char *b)
{
    cxm_key k;
    size_t len = 0;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, a);
    if (b)
        cxm_key_str(&k, b);
    cxm_key_finish(&k, &len);
    return len;
}

/* The u64 under key, 0 when absent. */
static int get_u64(cxm_txn *txn, MDB_dbi dbi, const uint8_t *key, size_t klen, uint64_t *out)
{
    const void *v;
    size_t vlen;
    int rc = cxm_txn_get_ref(txn, dbi, key, klen, &v, &vlen);
    if (rc == CXM_ENOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc == 0 && vlen != 8)
        return fail(CXM_ECORRUPT, "a bus counter of %zu bytes (expected 8)", vlen);
    if (rc == 0)
        *out = get_be64(v);
    return rc;
}

static int put_u64(cxm_txn *txn, MDB_dbi dbi, const uint8_t *key, size_t klen, uint64_t v)
{
    uint8_t buf[8];
    put_be64(buf, v);
    return cxm_txn_put(txn, dbi, key, klen, buf, sizeof buf, 0);
}

static int last_sequence(cxm_bus *bus, cxm_txn *txn, const char *producer, uint64_t *out)
{
    uint8_t key[CXM_KEY_MAX];
    return get_u64(txn, bus->seqs, key, name_key(key, producer, NULL), out);
}

static int applied_mark(cxm_bus *bus, cxm_txn *txn, const sub *s, uint64_t *out)
{
    uint8_t key[CXM_KEY_MAX];
    return get_u64(txn, bus->applied, key, name_key(key, s->name, s->producer), out);
}

/* A walk over producer's outbox from sequence `from` on, in order; the
 * struct keeps the bounds alive while it.key/val are read. Close with
 * cxm_iter_close(&w->it). */
typedef struct outbox_walk {
    cxm_iter it;
    uint8_t start[CXM_KEY_MAX], end[CXM_KEY_MAX];
} outbox_walk;

static int outbox_walk_begin(cxm_bus *bus, cxm_txn *txn, const char *producer, uint64_t from,
                             outbox_walk *w)
{
    size_t elen = 0, plen = name_key(w->end, producer, NULL);
    cxm_key_successor(w->end, plen, w->end, &elen);
    size_t slen = outbox_key(w->start, producer, from);
    return cxm_iter_range(txn, bus->outbox, w->start, slen, w->end, elen, false, &w->it);
}

/* The next event of the walk, unpacked with allocator a (NULL: malloc). */
static int outbox_walk_next(outbox_walk *w, ProtobufCAllocator *a, Cxm__V1__Event **ev)
{
    int rc = cxm_iter_next(&w->it);
    if (rc == 0 && !(*ev = cxm__v1__event__unpack(a, w->it.vlen, w->it.val)))
        rc = fail(CXM_ECORRUPT, "an outbox entry is not an Event");
    return rc;
}

/* The first outbox entry of producer at or after `from`: its sequence (0
 * when none) and, when recorded is given, its recorded time. */
static int outbox_first(cxm_bus *bus, cxm_txn *txn, const char *producer, uint64_t from,
                        uint64_t *seq, int64_t *recorded)
{
    outbox_walk w;
    Cxm__V1__Event *ev = NULL;
    int rc = outbox_walk_begin(bus, txn, producer, from, &w);
    if (rc == 0)
        rc = outbox_walk_next(&w, NULL, &ev);
    cxm_iter_close(&w.it);
    *seq = ev ? ev->sequence : 0;
    if (recorded)
        *recorded = ev ? ev->recorded_at_unix_ms : 0;
    if (ev)
        cxm__v1__event__free_unpacked(ev, NULL);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* ---- emitting --------------------------------------------------------- */

static int check_type(const Cxm__V1__Event *ev, const char **type)
{
    const char *from_payload = NULL;
    if (ev->payload_case != CXM__V1__EVENT__PAYLOAD__NOT_SET) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(&cxm__v1__event__descriptor, ev->payload_case);
        from_payload = ((const ProtobufCMessageDescriptor *)f->descriptor)->short_name;
    }
    const char *t = ev->type && *ev->type ? ev->type : from_payload;
    if (!t)
        return fail(CXM_EINVAL, "event.type: required when no payload is set");
    if (from_payload && strcmp(t, from_payload) != 0)
        return fail(CXM_EINVAL, "event.type: \"%.64s\" does not match the payload %s", t,
                    from_payload);
    size_t n = strlen(t);
    for (size_t i = 0; i < n && n <= TYPE_MAX; i++)
        if (!isalnum((unsigned char)t[i]))
            n = 0;
    if (n == 0 || n > TYPE_MAX)
        return fail(CXM_EINVAL, "event.type: \"%.64s\" must be 1 to %d letters or digits", t,
                    TYPE_MAX);
    *type = t;
    return 0;
}

static int check_event(const Cxm__V1__Event *ev, const char **type)
{
    size_t n = ev->customer_id ? strlen(ev->customer_id) : 0;
    if (n == 0 || n > CUSTOMER_ID_MAX)
        return fail(CXM_EINVAL, "event.customer_id: must be 1 to %d bytes, got %zu",
                    CUSTOMER_ID_MAX, n);
    if (ev->occurred_at_unix_ms < 0)
        return fail(CXM_EINVAL, "event.occurred_at_unix_ms: must not be negative");
    return check_type(ev, type);
}

static int put_event(cxm_bus_producer *p, cxm_txn *txn, const Cxm__V1__Event *ev)
{
    uint8_t key[CXM_KEY_MAX], small[1024];
    size_t len = cxm__v1__event__get_packed_size(ev);
    uint8_t *buf = len <= sizeof small ? small : malloc(len);
    if (!buf)
        return fail(CXM_ENOMEM, "out of memory packing an event of %zu bytes", len);
    cxm__v1__event__pack(ev, buf);
    int rc =
        cxm_txn_put(txn, p->bus->outbox, key, outbox_key(key, p->name, ev->sequence), buf, len, 0);
    if (buf != small)
        free(buf);
    return rc;
}

int cxm_bus_emit(cxm_bus_producer *p, cxm_txn *txn, Cxm__V1__Event *ev)
{
    const char *type = NULL;
    int rc = check_event(ev, &type);
    uint8_t key[CXM_KEY_MAX];
    size_t klen = name_key(key, p->name, NULL);
    uint64_t seq = 0;
    if (rc == 0)
        rc = get_u64(txn, p->bus->seqs, key, klen, &seq);
    if (rc != 0)
        return rc;
    int64_t now = clock_ms(CLOCK_REALTIME);
    ev->producer = p->name;
    ev->sequence = seq + 1;
    ev->type = (char *)type;
    ev->recorded_at_unix_ms = now;
    if (ev->occurred_at_unix_ms == 0)
        ev->occurred_at_unix_ms = now;
    rc = put_u64(txn, p->bus->seqs, key, klen, seq + 1);
    if (rc == 0)
        rc = put_event(p, txn, ev);
    if (rc == 0)
        tls_emitted = p->bus;
    return rc;
}

static void wake(cxm_bus *bus)
{
    pthread_mutex_lock(&bus->mu);
    bus->wake = true;
    pthread_cond_signal(&bus->cv);
    pthread_mutex_unlock(&bus->mu);
}

static void on_commit(void *user)
{
    cxm_bus *bus = user;
    if (tls_emitted != bus)
        return;
    tls_emitted = NULL;
    wake(bus);
}

/* ---- applying --------------------------------------------------------- */

static bool wanted(const sub *s, const char *type)
{
    if (s->ntypes == 0)
        return true;
    for (size_t i = 0; i < s->ntypes; i++)
        if (strcmp(s->types[i], type) == 0)
            return true;
    return false;
}

/* Apply one event unless it was applied already: the dedup rule shared by
 * both delivery modes. *mark advances to the event's sequence. */
static int apply_one(sub *s, cxm_txn *txn, const Cxm__V1__Event *ev, uint64_t *mark)
{
    if (ev->sequence <= *mark)
        return 0;
    int rc = wanted(s, ev->type) ? s->apply(txn, ev, s->user) : 0;
    if (rc == 0)
        *mark = ev->sequence;
    return rc;
}

static int save_mark(cxm_bus *bus, cxm_txn *txn, const sub *s, uint64_t mark)
{
    uint8_t key[CXM_KEY_MAX];
    return put_u64(txn, bus->applied, key, name_key(key, s->name, s->producer), mark);
}

/* Delete producer's outbox entries up to and including `upto` (at most
 * CLEANUP_MAX of them); *through (may be NULL) is the last sequence covered. */
static int outbox_trim(cxm_bus *bus, cxm_txn *txn, const char *producer, uint64_t upto,
                       uint64_t *through)
{
    uint64_t first;
    int rc = outbox_first(bus, txn, producer, 0, &first, NULL);
    bool some = rc == 0 && first && first <= upto;
    uint64_t end = some && upto - first >= CLEANUP_MAX ? first + CLEANUP_MAX - 1 : upto;
    if (through)
        *through = end;
    for (uint64_t seq = first; some && rc == 0 && seq <= end; seq++) {
        uint8_t key[CXM_KEY_MAX];
        rc = cxm_txn_del(txn, bus->outbox, key, outbox_key(key, producer, seq));
        if (rc == CXM_ENOTFOUND)
            rc = 0;
    }
    return rc;
}

/* The lowest mark among the in-process subscribers of producer, `mine` for
 * `self`; UINT64_MAX when it has none. */
static int lowest_mark(cxm_bus *bus, cxm_txn *txn, const char *producer, const sub *self,
                       uint64_t mine, uint64_t *out)
{
    *out = UINT64_MAX;
    for (const sub *s = bus->subs; s; s = s->next) {
        if (strcmp(s->producer, producer) != 0)
            continue;
        uint64_t m = mine;
        int rc = s == self ? 0 : applied_mark(bus, txn, s, &m);
        if (rc != 0)
            return rc;
        if (m < *out)
            *out = m;
    }
    return 0;
}

typedef struct relay_batch {
    cxm_bus *bus;
    sub *s;
    cxm_arena arena;
    size_t applied; /* events passed (applied or skipped) by the commit */
    uint64_t mark;
} relay_batch;

/* Read up to batch_max events after `after` into the arena. */
static int read_events(relay_batch *b, cxm_txn *txn, uint64_t after, Cxm__V1__Event ***out,
                       size_t *n)
{
    Cxm__V1__Event **evs = cxm_arena_alloc(&b->arena, b->bus->batch_max * sizeof *evs);
    if (!evs)
        return fail(CXM_ENOMEM, "out of memory for a batch of events");
    outbox_walk w;
    int rc = outbox_walk_begin(b->bus, txn, b->s->producer, after + 1, &w);
    *n = 0;
    while (rc == 0 && *n < b->bus->batch_max &&
           (rc = outbox_walk_next(&w, cxm_arena_protobuf(&b->arena), &evs[*n])) == 0)
        (*n)++;
    cxm_iter_close(&w.it);
    *out = evs;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* The write job of one in-process batch: read, apply, record, trim. */
static int relay_apply_fn(cxm_txn *txn, void *user)
{
    relay_batch *b = user;
    cxm_arena_reset(&b->arena);
    b->applied = 0;
    uint64_t mark, low;
    Cxm__V1__Event **evs;
    size_t n = 0;
    int rc = applied_mark(b->bus, txn, b->s, &mark);
    if (rc == 0)
        rc = read_events(b, txn, mark, &evs, &n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_one(b->s, txn, evs[i], &mark);
    if (rc != 0 || n == 0)
        return rc;
    rc = save_mark(b->bus, txn, b->s, mark);
    if (rc == 0)
        rc = lowest_mark(b->bus, txn, b->s->producer, b->s, mark, &low);
    if (rc == 0)
        rc = outbox_trim(b->bus, txn, b->s->producer, low, NULL);
    b->applied = n;
    b->mark = mark;
    return rc;
}

static void set_error(cxm_bus *bus, sub *s, const char *msg)
{
    pthread_mutex_lock(&bus->mu);
    snprintf(s->last_error, sizeof s->last_error, "%s", msg);
    pthread_mutex_unlock(&bus->mu);
}

/* A failed batch: back off and say why (each failure, since the backoff
 * bounds the rate to one line per 10 s at worst). */
static void batch_failed(cxm_bus *bus, sub *s, int rc, const char *detail)
{
    char msg[ERR_LEN];
    snprintf(msg, sizeof msg, "%s%s%.200s", cxm_strerror(rc), *detail ? ": " : "", detail);
    set_error(bus, s, msg);
    s->retry_at = clock_ms(CLOCK_MONOTONIC) + s->backoff_ms;
    cxm_log_warn("bus.apply_failed",
                 "subscriber %s could not apply events of %s after sequence %" PRIu64
                 " (%s); retrying in %d ms",
                 s->name, s->producer, s->mark, msg, s->backoff_ms);
    s->backoff_ms = s->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->backoff_ms * 2;
}

static void batch_done(cxm_bus *bus, sub *s, uint64_t mark)
{
    s->mark = mark;
    if (s->backoff_ms != RETRY_MIN_MS) {
        s->backoff_ms = RETRY_MIN_MS;
        set_error(bus, s, "");
        cxm_log_info("bus.apply_resumed", "subscriber %s applies events of %s again", s->name,
                     s->producer);
    }
}

/* One batch for s; returns the number of events passed, or < 0. */
static int relay_sub(cxm_bus *bus, sub *s, relay_batch *b)
{
    b->s = s;
    tls_err[0] = '\0';
    int rc = cxm_store_write_flags(bus->store, CXM_WRITE_NOMETASYNC, relay_apply_fn, b);
    if (rc != 0) {
        /* apply's own errors leave their sentence where apply put it; ours
         * are in tls_err or the store's. */
        const char *detail = *tls_err ? tls_err : cxm_store_last_error();
        batch_failed(bus, s, rc, detail);
        return rc;
    }
    if (b->applied)
        batch_done(bus, s, b->mark);
    return (int)b->applied;
}

/* Outbox entries of a producer nobody in this process subscribes to. */
typedef struct trim_job {
    cxm_bus *bus;
    const char *producer;
} trim_job;

static int trim_fn(cxm_txn *txn, void *user)
{
    trim_job *j = user;
    return outbox_trim(j->bus, txn, j->producer, UINT64_MAX, NULL);
}

static bool has_subs(const cxm_bus *bus, const char *producer)
{
    for (const sub *s = bus->subs; s; s = s->next)
        if (strcmp(s->producer, producer) == 0)
            return true;
    return false;
}

/* Whether s has events to apply, from a read transaction: an idle relay
 * then takes no write lock. */
static bool behind(cxm_bus *bus, cxm_txn *rd, const sub *s)
{
    uint64_t last = 0;
    return last_sequence(bus, rd, s->producer, &last) != 0 || last > s->mark;
}

/* One pass over every subscriber; true when anything moved. */
static bool relay_pass(cxm_bus *bus, relay_batch *b)
{
    bool moved = false;
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    for (sub *s = bus->subs; s; s = s->next) {
        cxm_txn *rd = NULL;
        if (s->retry_at > now || cxm_store_read_begin(bus->store, &rd) != 0)
            continue;
        bool go = behind(bus, rd, s);
        cxm_store_read_end(rd);
        if (go && relay_sub(bus, s, b) > 0)
            moved = true;
    }
    for (cxm_bus_producer *p = bus->producers; p; p = p->next) {
        trim_job j = {bus, p->name};
        if (!has_subs(bus, p->name))
            cxm_store_write_flags(bus->store, CXM_WRITE_NOMETASYNC, trim_fn, &j);
    }
    return moved;
}

/* ---- delivery through NATS JetStream ------------------------------------ */

static bool is_stopping(cxm_bus *bus)
{
    pthread_mutex_lock(&bus->mu);
    bool v = bus->stopping;
    pthread_mutex_unlock(&bus->mu);
    return v;
}

/* Sleep up to ms, less if the bus stops. */
static void nap(cxm_bus *bus, int64_t ms)
{
    struct timespec until = deadline_in(ms);
    pthread_mutex_lock(&bus->mu);
    while (!bus->stopping)
        if (pthread_cond_timedwait(&bus->cv, &bus->mu, &until) != 0)
            break;
    pthread_mutex_unlock(&bus->mu);
}

__attribute__((format(printf, 2, 3))) static char *arena_printf(cxm_arena *a, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= sizeof buf ? NULL : cxm_arena_strndup(a, buf, (size_t)n);
}

/* One publish batch: the oldest outbox entries of a producer, copied out of
 * the read transaction. */
typedef struct pub_batch {
    cxm_bus *bus;
    cxm_bus_producer *p;
    cxm_arena arena;
    cxm_nats_msg *msgs;
    size_t n;
    uint64_t last;
    uint64_t through; /* trimmed through, from pub_trim_fn */
} pub_batch;

static int pub_add(pub_batch *pb, const cxm_iter *it, const Cxm__V1__Event *ev)
{
    cxm_arena *a = &pb->arena;
    cxm_nats_msg *m = &pb->msgs[pb->n];
    void *data = cxm_arena_alloc(a, it->vlen ? it->vlen : 1);
    m->subject =
        arena_printf(a, "cxm.%s.%s.%u", pb->p->name, ev->type, cxm_bus_shard(ev->customer_id));
    m->msg_id = arena_printf(a, "%s:%" PRIu64, pb->p->name, ev->sequence);
    if (!data || !m->subject || !m->msg_id)
        return fail(CXM_ENOMEM, "out of memory for a publish batch");
    memcpy(data, it->val, it->vlen);
    m->data = data;
    m->len = it->vlen;
    pb->last = ev->sequence;
    pb->n++;
    return 0;
}

static int pub_read_fn(cxm_txn *txn, void *user)
{
    pub_batch *pb = user;
    pb->n = 0;
    pb->msgs = cxm_arena_calloc(&pb->arena, pb->bus->batch_max, sizeof *pb->msgs);
    if (!pb->msgs)
        return fail(CXM_ENOMEM, "out of memory for a publish batch");
    outbox_walk w;
    Cxm__V1__Event *ev;
    uint64_t from = atomic_load(&pb->p->published) + 1;
    int rc = outbox_walk_begin(pb->bus, txn, pb->p->name, from, &w);
    while (rc == 0 && pb->n < pb->bus->batch_max &&
           (rc = outbox_walk_next(&w, cxm_arena_protobuf(&pb->arena), &ev)) == 0)
        rc = pub_add(pb, &w.it, ev);
    cxm_iter_close(&w.it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static int pub_trim_fn(cxm_txn *txn, void *user)
{
    pub_batch *pb = user;
    return outbox_trim(pb->bus, txn, pb->p->name, atomic_load(&pb->p->published), &pb->through);
}

/* Delete what JetStream acknowledged, at most every TRIM_EVERY_MS or when
 * much is waiting: a write transaction per published batch would hold
 * LMDB's writer lock through an fdatasync each time and halve the
 * producer's own write rate. A lost deletion only republishes: JetStream
 * drops the repeat within its duplicate window and subscribers skip it. */
static int maybe_trim(pub_batch *pb, const char **why)
{
    cxm_bus_producer *p = pb->p;
    uint64_t published = atomic_load(&p->published);
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    if (published <= p->trimmed ||
        (now - p->trim_at < TRIM_EVERY_MS && published - p->trimmed < CLEANUP_MAX / 2))
        return 0;
    int rc = cxm_store_write_flags(pb->bus->store, CXM_WRITE_NOMETASYNC, pub_trim_fn, pb);
    if (rc != 0)
        return (*why = cxm_store_last_error(), rc);
    p->trimmed = pb->through;
    p->trim_at = now;
    return 0;
}

/* Publish the next batch of p's outbox; deletion follows (maybe_trim).
 * Returns the number published, or < 0 with the reason in *why. */
static int publish_once(pub_batch *pb, const char **why)
{
    cxm_bus *bus = pb->bus;
    cxm_arena_reset(&pb->arena);
    int rc = 0;
    if (!pb->p->stream_ready && (rc = cxm_nats_stream(bus->nats, pb->p->name)) != 0)
        return (*why = cxm_nats_last_error(), rc);
    pb->p->stream_ready = true;
    if ((rc = cxm_store_read(bus->store, pub_read_fn, pb)) != 0)
        return (*why = *tls_err ? tls_err : cxm_store_last_error(), rc);
    if (pb->n > 0 && (rc = cxm_nats_publish(bus->nats, pb->msgs, pb->n, PUBLISH_TIMEOUT_MS)) != 0)
        return (*why = cxm_nats_last_error(), rc);
    if (pb->n > 0)
        atomic_store(&pb->p->published, pb->last);
    rc = maybe_trim(pb, why);
    return rc != 0 ? rc : (int)pb->n;
}

/* Publish p's outbox until it is empty or publishing fails. */
static bool publish_producer(pub_batch *pb)
{
    cxm_bus_producer *p = pb->p;
    const char *why = "";
    int n, total = 0;
    while ((n = publish_once(pb, &why)) > 0) {
        total += n;
        if ((size_t)n < pb->bus->batch_max)
            break;
    }
    if (n < 0) {
        cxm_log_warn("bus.publish_failed",
                     "producer %s: cannot hand events to NATS (%s: %s); retrying in %d ms", p->name,
                     cxm_strerror(n), why, p->backoff_ms);
        p->retry_at = clock_ms(CLOCK_MONOTONIC) + p->backoff_ms;
        p->backoff_ms = p->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : p->backoff_ms * 2;
    } else if (p->backoff_ms != RETRY_MIN_MS) {
        p->backoff_ms = RETRY_MIN_MS;
        cxm_log_info("bus.publish_resumed", "producer %s hands events to NATS again", p->name);
    }
    return total > 0;
}

static bool publish_pass(cxm_bus *bus, pub_batch *pb)
{
    bool moved = false;
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    for (cxm_bus_producer *p = bus->producers; p; p = p->next) {
        pb->p = p;
        if (p->retry_at <= now && publish_producer(pb))
            moved = true;
    }
    return moved;
}

/* One fetched batch applied in one durable transaction. done counts the
 * messages to acknowledge: applied or already applied, up to the first gap. */
typedef struct fetch_batch {
    sub *s;
    cxm_nats_batch b;
    cxm_arena arena;
    size_t done;
    uint64_t mark;
} fetch_batch;

/* Whether ev comes next: the one after the mark, or the first message of a
 * stream when nothing was applied yet (the stream may begin after 1). */
static bool in_order(const Cxm__V1__Event *ev, uint64_t mark, uint64_t stream_seq)
{
    return ev->sequence <= mark + 1 || (mark == 0 && stream_seq == 1);
}

/* The key of an event that came before its predecessors, kept in bus.early
 * until they are applied. */
static size_t early_key(uint8_t *buf, const sub *s, uint64_t seq)
{
    cxm_key k;
    size_t len = 0;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, s->name);
    cxm_key_str(&k, s->producer);
    cxm_key_u64(&k, seq);
    cxm_key_finish(&k, &len);
    return len;
}

/* Apply the kept early events that the mark has now reached, in order,
 * deleting each as it is applied. */
static int apply_early(fetch_batch *f, cxm_txn *txn, uint64_t *mark)
{
    sub *s = f->s;
    for (;;) {
        uint8_t key[CXM_KEY_MAX];
        size_t klen = early_key(key, s, *mark + 1);
        const void *v;
        size_t vlen;
        int rc = cxm_txn_get_ref(txn, s->bus->early, key, klen, &v, &vlen);
        if (rc == CXM_ENOTFOUND)
            return 0;
        Cxm__V1__Event *ev =
            rc ? NULL : cxm__v1__event__unpack(cxm_arena_protobuf(&f->arena), vlen, v);
        if (rc == 0 && !ev)
            rc = fail(CXM_ECORRUPT, "a kept early event of %s is not an event", s->producer);
        if (rc == 0)
            rc = apply_one(s, txn, ev, mark);
        if (rc == 0)
            rc = cxm_txn_del(txn, s->bus->early, key, klen);
        if (rc != 0)
            return rc;
    }
}

/* Apply the fetched messages in sequence order: the next one is applied
 * (with any kept early events it unblocks), a repeat is skipped, and one that
 * came before its predecessors is kept in bus.early in this same transaction.
 * The stream's order can differ from the sequence order (a publish batch
 * that failed part-way is published again after later events were stored),
 * so stopping at the first early event and waiting for it to be delivered
 * again in the same order could wait forever.
 *
 * f->done is the prefix of the batch that may be acknowledged: the consumer
 * acknowledges cumulatively (AckAll), which also acknowledges every earlier
 * message of the stream, including predecessors the server delivered to a
 * run that was killed before applying them. So only a prefix whose events
 * are all applied (at or below the new mark) is acknowledged; kept early
 * events come again after the ack wait, together with their predecessors,
 * and are then repeats. */
static int fetch_apply_fn(cxm_txn *txn, void *user)
{
    fetch_batch *f = user;
    sub *s = f->s;
    cxm_arena_reset(&f->arena);
    f->done = 0;
    uint64_t mark = 0, start; /* start = mark runs even when seq failed */
    uint64_t *seq = cxm_arena_calloc(&f->arena, f->b.count, sizeof *seq); /* 0: not an event */
    int rc = seq ? applied_mark(s->bus, txn, s, &mark) : CXM_ENOMEM;
    start = mark;
    for (size_t i = 0; rc == 0 && i < f->b.count; i++) {
        Cxm__V1__Event *ev =
            cxm__v1__event__unpack(cxm_arena_protobuf(&f->arena), f->b.len[i], f->b.data[i]);
        if (ev)
            seq[i] = ev->sequence;
        if (!ev || strcmp(ev->producer, s->producer) != 0) {
            seq[i] = 0;
            cxm_log_error("bus.bad_message",
                          "subscriber %s: message %s on %s's stream is not "
                          "an event of %s; skipped",
                          s->name, f->b.msg_id[i], s->producer, s->producer);
        } else if (!in_order(ev, mark, f->b.stream_seq[i])) {
            uint8_t key[CXM_KEY_MAX];
            cxm_log_debug("bus.early",
                          "subscriber %s: %s sequence %" PRIu64 " came after %" PRIu64
                          "; kept until the ones between arrive",
                          s->name, s->producer, ev->sequence, mark);
            rc = cxm_txn_put(txn, s->bus->early, key, early_key(key, s, ev->sequence), f->b.data[i],
                             f->b.len[i], 0);
        } else if ((rc = apply_one(s, txn, ev, &mark)) == 0) {
            rc = apply_early(f, txn, &mark);
        }
    }
    while (rc == 0 && f->done < f->b.count && seq[f->done] <= mark)
        f->done++;
    if (rc == 0 && mark != start)
        rc = save_mark(s->bus, txn, s, mark);
    f->mark = mark;
    return rc;
}

static void refresh_pending(sub *s, int64_t *next)
{
    uint64_t pending;
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    if (now < *next || cxm_nats_pending(s->ns, &pending) != 0)
        return;
    *next = now + PENDING_EVERY_MS;
    pthread_mutex_lock(&s->bus->mu);
    s->pending = pending;
    pthread_mutex_unlock(&s->bus->mu);
}

/* Fetch, apply durably, then acknowledge. */
static void fetch_round(sub *s, fetch_batch *f)
{
    cxm_bus *bus = s->bus;
    int rc = cxm_nats_fetch(s->ns, bus->batch_max, FETCH_WAIT_MS, &f->b);
    if (rc != 0) {
        batch_failed(bus, s, rc, cxm_nats_last_error());
    } else if (f->b.count > 0) {
        tls_err[0] = '\0';
        rc = cxm_store_write(bus->store, fetch_apply_fn, f);
        if (rc != 0)
            batch_failed(bus, s, rc, *tls_err ? tls_err : cxm_store_last_error());
    }
    if (rc == 0 && f->b.count > 0) {
        if (cxm_nats_ack_upto(&f->b, f->done) != 0) /* the applied prefix */
            cxm_log_warn("bus.ack_failed", "subscriber %s: %s", s->name, cxm_nats_last_error());
        batch_done(bus, s, f->mark);
    }
    cxm_nats_batch_free(&f->b);
}

static int attach(sub *s)
{
    int rc = cxm_nats_stream(s->bus->nats, s->producer);
    if (rc == 0)
        rc = cxm_nats_subscribe(s->bus->nats, s->producer, s->name, NULL, &s->ns);
    if (rc != 0)
        batch_failed(s->bus, s, rc, cxm_nats_last_error());
    return rc;
}

static void *fetch_main(void *arg)
{
    sub *s = arg;
    fetch_batch f = {.s = s};
    cxm_arena_init(&f.arena, NULL, 0, 0);
    int64_t next_pending = 0;
    while (!is_stopping(s->bus)) {
        int64_t wait = s->retry_at - clock_ms(CLOCK_MONOTONIC);
        if (wait > 0) {
            nap(s->bus, wait);
            continue;
        }
        if (!s->ns && attach(s) != 0)
            continue;
        fetch_round(s, &f);
        refresh_pending(s, &next_pending);
    }
    cxm_nats_unsubscribe(s->ns);
    s->ns = NULL;
    cxm_arena_dispose(&f.arena);
    return NULL;
}

static int nats_connect(cxm_bus *bus, const cxm_bus_opts *o)
{
    cxm_nats_opts no = {0};
    if (o->nats_security)
        no = *o->nats_security;
    no.url = o->nats_url;
    if (!no.creds_file)
        no.creds_file = o->nats_creds;
    no.timeout_ms = no.dup_window_ms = 0;
    no.ack_wait_ms = o->nats_ack_wait_ms ? o->nats_ack_wait_ms : DEFAULT_ACK_WAIT_MS;
    int rc = cxm_nats_open(&no, &bus->nats);
    if (rc != 0)
        fail(rc, "%s", cxm_nats_last_error());
    return rc;
}

static int start_fetchers(cxm_bus *bus)
{
    for (sub *s = bus->subs; s; s = s->next) {
        if (pthread_create(&s->thread, NULL, fetch_main, s) != 0)
            return fail(CXM_EBUSY, "cannot start the fetching thread of subscriber %s", s->name);
        s->thread_started = true;
    }
    return 0;
}

static void join_fetchers(cxm_bus *bus)
{
    for (sub *s = bus->subs; s; s = s->next)
        if (s->thread_started) {
            pthread_join(s->thread, NULL);
            s->thread_started = false;
        }
}

static void report(cxm_bus *bus);

static bool wait_wake(cxm_bus *bus, int ms)
{
    struct timespec until = deadline_in(ms);
    pthread_mutex_lock(&bus->mu);
    while (!bus->wake && !bus->stopping)
        if (pthread_cond_timedwait(&bus->cv, &bus->mu, &until) != 0)
            break;
    bus->wake = false;
    bool stop = bus->stopping;
    pthread_mutex_unlock(&bus->mu);
    return !stop;
}

static void *relay_main(void *arg)
{
    cxm_bus *bus = arg;
    relay_batch b = {.bus = bus};
    pub_batch pb = {.bus = bus};
    cxm_arena_init(&b.arena, NULL, 0, 0);
    cxm_arena_init(&pb.arena, NULL, 0, 0);
    int64_t next_report = clock_ms(CLOCK_MONOTONIC) + bus->report_ms;
    bool go = true;
    while (go) {
        /* Keep going while batches move; sleep only when a pass was idle. */
        bool moved = bus->nats ? publish_pass(bus, &pb) : relay_pass(bus, &b);
        go = wait_wake(bus, moved ? 0 : TICK_MS);
        if (clock_ms(CLOCK_MONOTONIC) >= next_report) {
            report(bus);
            next_report = clock_ms(CLOCK_MONOTONIC) + bus->report_ms;
        }
    }
    cxm_arena_dispose(&b.arena);
    cxm_arena_dispose(&pb.arena);
    return NULL;
}

/* ---- status and lag reports ------------------------------------------- */

typedef struct status_ctx {
    cxm_bus *bus;
    cxm_arena *a;
    Cxm__V1__GetBusStatusResponse *resp;
} status_ctx;

/* Every producer this process emits for or subscribes to, once each. */
static size_t producer_names(cxm_bus *bus, cxm_arena *a, const char ***out)
{
    size_t cap = 0, n = 0;
    for (cxm_bus_producer *p = bus->producers; p; p = p->next)
        cap++;
    for (sub *s = bus->subs; s; s = s->next)
        cap++;
    const char **names = cxm_arena_calloc(a, cap ? cap : 1, sizeof *names);
    if (!names)
        return 0;
    for (cxm_bus_producer *p = bus->producers; p; p = p->next)
        names[n++] = p->name;
    for (sub *s = bus->nats ? NULL : bus->subs; s; s = s->next) {
        size_t i = 0;
        while (i < n && strcmp(names[i], s->producer) != 0)
            i++;
        if (i == n)
            names[n++] = s->producer;
    }
    *out = names;
    return n;
}

static int producer_status(status_ctx *c, cxm_txn *txn, const char *name, int64_t now,
                           Cxm__V1__BusProducerStatus *ps)
{
    uint64_t first = 0;
    int64_t recorded = 0;
    cxm__v1__bus_producer_status__init(ps);
    ps->producer = (char *)name;
    int rc = last_sequence(c->bus, txn, name, &ps->last_sequence);
    if (rc == 0)
        rc = outbox_first(c->bus, txn, name, 0, &first, &recorded);
    uint64_t published = 0;
    for (cxm_bus_producer *p = c->bus->nats ? c->bus->producers : NULL; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            published = atomic_load(&p->published);
    if (rc == 0 && first && published >= first) /* the rest awaits deletion only */
        rc = outbox_first(c->bus, txn, name, published + 1, &first, &recorded);
    if (rc == 0 && first) {
        ps->outbox_backlog = ps->last_sequence - first + 1;
        ps->oldest_outbox_age_ms = now > recorded ? now - recorded : 0;
    }
    return rc;
}

static int sub_status(status_ctx *c, cxm_txn *txn, sub *s, int64_t now,
                      Cxm__V1__BusSubscriberStatus *ss)
{
    uint64_t last = 0, next = 0;
    int64_t recorded = 0;
    cxm__v1__bus_subscriber_status__init(ss);
    ss->subscriber = s->name;
    ss->producer = s->producer;
    int rc = applied_mark(c->bus, txn, s, &ss->applied_sequence);
    if (rc == 0 && !c->bus->nats)
        rc = last_sequence(c->bus, txn, s->producer, &last);
    if (rc == 0 && last > ss->applied_sequence) {
        ss->backlog = last - ss->applied_sequence;
        rc = outbox_first(c->bus, txn, s->producer, ss->applied_sequence + 1, &next, &recorded);
        if (rc == 0 && next)
            ss->oldest_unapplied_age_ms = now > recorded ? now - recorded : 0;
    }
    pthread_mutex_lock(&c->bus->mu);
    if (c->bus->nats)
        ss->backlog = s->pending;
    ss->last_error = cxm_arena_strndup(c->a, s->last_error, strlen(s->last_error));
    pthread_mutex_unlock(&c->bus->mu);
    return rc == 0 && !ss->last_error ? CXM_ENOMEM : rc;
}

static int status_fn(cxm_txn *txn, void *user)
{
    status_ctx *c = user;
    Cxm__V1__GetBusStatusResponse *r = c->resp;
    int64_t now = clock_ms(CLOCK_REALTIME);
    const char **names = NULL;
    size_t np = producer_names(c->bus, c->a, &names), ns = 0;
    for (sub *s = c->bus->subs; s; s = s->next)
        ns++;
    r->producers = cxm_arena_calloc(c->a, np + 1, sizeof *r->producers);
    r->subscribers = cxm_arena_calloc(c->a, ns + 1, sizeof *r->subscribers);
    Cxm__V1__BusProducerStatus *ps = cxm_arena_calloc(c->a, np + 1, sizeof *ps);
    Cxm__V1__BusSubscriberStatus *ss = cxm_arena_calloc(c->a, ns + 1, sizeof *ss);
    if (!r->producers || !r->subscribers || !ps || !ss ||
        (np == 0 && (c->bus->producers || c->bus->subs)))
        return fail(CXM_ENOMEM, "out of memory for the bus status");
    int rc = 0;
    for (; rc == 0 && r->n_producers < np; r->n_producers++) {
        r->producers[r->n_producers] = &ps[r->n_producers];
        rc = producer_status(c, txn, names[r->n_producers], now, &ps[r->n_producers]);
    }
    for (sub *s = c->bus->subs; rc == 0 && s; s = s->next, r->n_subscribers++) {
        r->subscribers[r->n_subscribers] = &ss[r->n_subscribers];
        rc = sub_status(c, txn, s, now, &ss[r->n_subscribers]);
    }
    return rc;
}

int cxm_bus_status(cxm_bus *bus, cxm_arena *a, Cxm__V1__GetBusStatusResponse **out)
{
    Cxm__V1__GetBusStatusResponse *r = cxm_arena_alloc(a, sizeof *r);
    if (!r)
        return fail(CXM_ENOMEM, "out of memory for the bus status");
    cxm__v1__get_bus_status_response__init(r);
    r->mode = bus->nats ? CXM__V1__BUS_MODE__BUS_MODE_NATS : CXM__V1__BUS_MODE__BUS_MODE_IN_PROCESS;
    status_ctx c = {bus, a, r};
    int rc = cxm_store_read(bus->store, status_fn, &c);
    if (rc == 0)
        *out = r;
    return rc;
}

/* Lines only when something is behind: info each period, warn when a
 * subscriber's backlog grew since the previous report. */
static void report(cxm_bus *bus)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__GetBusStatusResponse *r;
    if (cxm_bus_status(bus, &a, &r) == 0) {
        for (size_t i = 0; i < r->n_producers; i++) {
            const Cxm__V1__BusProducerStatus *p = r->producers[i];
            if (p->outbox_backlog)
                cxm_log_info("bus.outbox",
                             "producer %s: %" PRIu64 " events in the outbox, oldest %" PRId64 " ms",
                             p->producer, p->outbox_backlog, p->oldest_outbox_age_ms);
        }
        sub *s = bus->subs;
        for (size_t i = 0; i < r->n_subscribers && s; i++, s = s->next) {
            const Cxm__V1__BusSubscriberStatus *st = r->subscribers[i];
            if (st->backlog)
                cxm_log(st->backlog > s->reported ? CXM_LOG_WARN : CXM_LOG_INFO, "bus.lag",
                        "subscriber %s on %s: %" PRIu64 " events behind (applied %" PRIu64
                        "), oldest %" PRId64 " ms%s%s",
                        st->subscriber, st->producer, st->backlog, st->applied_sequence,
                        st->oldest_unapplied_age_ms, *st->last_error ? "; last error: " : "",
                        st->last_error);
            s->reported = st->backlog;
        }
    }
    cxm_arena_dispose(&a);
}

static void get_status(cxm_call *call, const ProtobufCMessage *req)
{
    cxm_bus *bus = cxm_call_service_ctx(call);
    Cxm__V1__GetBusStatusResponse *r;
    int rc = cxm_bus_status(bus, cxm_call_arena(call), &r);
    if (rc != 0) {
        cxm_call_finish(call, rc, "cannot read the bus status: %s", tls_err);
        return;
    }
    cxm_call_reply(call, &r->base);
}

/* Operators' view of every producer and subscriber. */
static const cxm_method_access bus_access = {"GetBusStatus", CXM_ACCESS_ADMIN_READ};

const cxm_service *cxm_bus_service(cxm_bus *bus)
{
    return &bus->svc;
}

/* ---- lifecycle -------------------------------------------------------- */

cxm_bus *cxm_bus_of(cxm_store *store)
{
    pthread_mutex_lock(&registry_mu);
    cxm_bus *b = registry;
    while (b && b->store != store)
        b = b->next;
    pthread_mutex_unlock(&registry_mu);
    return b;
}

cxm_store *cxm_bus_store(cxm_bus *bus)
{
    return bus->store;
}

static int register_bus(cxm_bus *bus)
{
    pthread_mutex_lock(&registry_mu);
    cxm_bus *b = registry;
    while (b && b->store != bus->store)
        b = b->next;
    if (!b) {
        bus->next = registry;
        registry = bus;
    }
    pthread_mutex_unlock(&registry_mu);
    return b ? fail(CXM_EEXIST, "%s already has a bus", cxm_store_path(bus->store)) : 0;
}

static void unregister_bus(cxm_bus *bus)
{
    pthread_mutex_lock(&registry_mu);
    for (cxm_bus **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == bus) {
            *pp = bus->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
}

static int open_tables(cxm_bus *bus)
{
    int rc = cxm_store_dbi(bus->store, "bus.outbox", 0, &bus->outbox);
    if (rc == 0)
        rc = cxm_store_dbi(bus->store, "bus.sequence", 0, &bus->seqs);
    if (rc == 0)
        rc = cxm_store_dbi(bus->store, "bus.applied", 0, &bus->applied);
    if (rc == 0)
        rc = cxm_store_dbi(bus->store, "bus.early", 0, &bus->early);
    if (rc != 0)
        fail(rc, "cannot open the bus tables: %s", cxm_store_last_error());
    return rc;
}

static void init_service(cxm_bus *bus)
{
    bus->method = (cxm_method){.name = "GetBusStatus",
                               .kind = CXM_UNARY,
                               .request = &cxm__v1__get_bus_status_request__descriptor,
                               .on_message = get_status};
    bus->svc = (cxm_service){.name = "cxm.v1.BusService",
                             .methods = &bus->method,
                             .nmethods = 1,
                             .access = &bus_access,
                             .naccess = 1,
                             .contract = &cxm__v1__bus_service__descriptor,
                             .ctx = bus};
}

int cxm_bus_create(cxm_store *store, const cxm_bus_opts *opts, cxm_bus **out)
{
    cxm_bus_opts none = {0};
    const cxm_bus_opts *o = opts ? opts : &none;
    cxm_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return fail(CXM_ENOMEM, "out of memory creating the bus");
    bus->store = store;
    bus->batch_max = o->batch_max ? o->batch_max : DEFAULT_BATCH;
    if (bus->batch_max > CLEANUP_MAX)
        bus->batch_max = CLEANUP_MAX;
    bus->report_ms = o->report_ms ? o->report_ms : DEFAULT_REPORT_MS;
    pthread_mutex_init(&bus->mu, NULL);
    pthread_cond_init(&bus->cv, NULL);
    init_service(bus);
    int rc = open_tables(bus);
    if (rc == 0 && o->nats_url && *o->nats_url)
        rc = nats_connect(bus, o);
    if (rc == 0)
        rc = register_bus(bus);
    if (rc != 0) {
        cxm_nats_close(bus->nats);
        pthread_mutex_destroy(&bus->mu);
        pthread_cond_destroy(&bus->cv);
        free(bus);
        return rc;
    }
    cxm_store_on_commit(store, on_commit, bus);
    *out = bus;
    return 0;
}

void cxm_bus_destroy(cxm_bus *bus)
{
    if (!bus)
        return;
    cxm_bus_stop(bus);
    cxm_store_on_commit(bus->store, NULL, NULL);
    unregister_bus(bus);
    cxm_nats_close(bus->nats);
    while (bus->producers) {
        cxm_bus_producer *p = bus->producers;
        bus->producers = p->next;
        free(p);
    }
    while (bus->subs) {
        sub *s = bus->subs;
        bus->subs = s->next;
        free(s);
    }
    pthread_mutex_destroy(&bus->mu);
    pthread_cond_destroy(&bus->cv);
    free(bus);
}

int cxm_bus_producer_open(cxm_bus *bus, const char *name, cxm_bus_producer **out)
{
    int rc = check_name("producer", name, false);
    if (rc != 0)
        return rc;
    cxm_bus_producer *p = bus->producers;
    while (p && strcmp(p->name, name) != 0)
        p = p->next;
    if (!p && bus->started)
        return fail(CXM_EINVAL, "producer %s: open producers before the bus starts", name);
    if (!p && !(p = calloc(1, sizeof *p)))
        return fail(CXM_ENOMEM, "out of memory opening producer %s", name);
    if (!p->bus) {
        p->bus = bus;
        snprintf(p->name, sizeof p->name, "%s", name);
        p->backoff_ms = RETRY_MIN_MS;
        p->next = bus->producers;
        bus->producers = p;
    }
    *out = p;
    return 0;
}

static int check_subscription(cxm_bus *bus, const char *subscriber, const char *producer,
                              const char *const *types, size_t ntypes, cxm_bus_apply_fn apply)
{
    int rc = check_name("subscriber", subscriber, true);
    if (rc == 0)
        rc = check_name("producer", producer, false);
    if (rc != 0)
        return rc;
    if (!apply)
        return fail(CXM_EINVAL, "subscriber %s: apply is NULL", subscriber);
    if (bus->started)
        return fail(CXM_EINVAL, "subscriber %s: subscribe before the bus starts", subscriber);
    for (size_t i = 0; i < ntypes; i++)
        if (!types || !types[i] || !*types[i])
            return fail(CXM_EINVAL, "subscriber %s: types[%zu] is empty", subscriber, i);
    for (sub *s = bus->subs; s; s = s->next)
        if (strcmp(s->name, subscriber) == 0 && strcmp(s->producer, producer) == 0)
            return fail(CXM_EEXIST, "subscriber %s already subscribes to %s", subscriber, producer);
    return 0;
}

int cxm_bus_subscribe(cxm_bus *bus, const char *subscriber, const char *producer,
                      const char *const *types, size_t ntypes, cxm_bus_apply_fn apply, void *user)
{
    int rc = check_subscription(bus, subscriber, producer, types, ntypes, apply);
    if (rc != 0)
        return rc;
    sub *s = calloc(1, sizeof *s);
    if (!s)
        return fail(CXM_ENOMEM, "out of memory subscribing %s", subscriber);
    s->bus = bus;
    snprintf(s->name, sizeof s->name, "%s", subscriber);
    snprintf(s->producer, sizeof s->producer, "%s", producer);
    s->types = types;
    s->ntypes = ntypes;
    s->apply = apply;
    s->user = user;
    s->backoff_ms = RETRY_MIN_MS;
    /* Appended, so that subscribers are served and listed in their order. */
    sub **pp = &bus->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    return 0;
}

static int load_marks(cxm_txn *txn, void *user)
{
    cxm_bus *bus = user;
    int rc = 0;
    for (sub *s = bus->subs; rc == 0 && s; s = s->next)
        rc = applied_mark(bus, txn, s, &s->mark);
    return rc;
}

int cxm_bus_start(cxm_bus *bus)
{
    if (bus->started)
        return 0;
    int rc = cxm_store_read(bus->store, load_marks, bus);
    if (rc != 0)
        return fail(rc, "cannot read the subscribers' progress: %s", cxm_store_last_error());
    bus->stopping = false;
    bus->wake = true; /* deliver what the outbox kept from the last run */
    if (pthread_create(&bus->relay, NULL, relay_main, bus) != 0)
        return fail(CXM_EBUSY, "cannot start the bus relay thread");
    bus->started = true;
    if (bus->nats && (rc = start_fetchers(bus)) != 0)
        cxm_bus_stop(bus);
    return rc;
}

void cxm_bus_stop(cxm_bus *bus)
{
    if (!bus || !bus->started)
        return;
    pthread_mutex_lock(&bus->mu);
    bus->stopping = true;
    pthread_cond_broadcast(&bus->cv);
    pthread_mutex_unlock(&bus->mu);
    pthread_join(bus->relay, NULL);
    join_fetchers(bus);
    bus->started = false;
}
