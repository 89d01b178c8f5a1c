/*
 * test_bus.c - the event bus in process, on real LMDB files: emit in write
 * jobs (also group-committed, also rolled back), exactly-once in-order
 * application, type filters, outbox trimming, a failing subscriber that is
 * retried without leaving half a batch while the producer keeps writing,
 * restart without re-application, and input validation.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/store.h"

static char root[] = "/tmp/cxm-test-bus-XXXXXX";

/* ---- a subscriber that records what it applies ------------------------ */

/* Rows are "<producer>/<sequence>" -> customer_id; "last/<producer>" holds the
 * last sequence seen, so an out-of-order or repeated event is counted. */
typedef struct recorder {
    MDB_dbi rows;
    atomic_int fail;       /* apply fails (after writing a row) while set */
    atomic_int violations; /* order or duplicate violations, committed or not */
} recorder;

static void row_key(char *buf, size_t cap, const char *producer, uint64_t seq)
{
    snprintf(buf, cap, "%s/%020llu", producer, (unsigned long long)seq);
}

static int record_apply(cxm_txn *txn, const Cxm__V1__Event *ev, void *user)
{
    recorder *r = user;
    char key[96], last_key[64];
    snprintf(last_key, sizeof last_key, "last/%s", ev->producer);
    const void *v;
    size_t vlen;
    uint64_t last = 0;
    if (cxm_txn_get_ref(txn, r->rows, last_key, strlen(last_key), &v, &vlen) == 0)
        memcpy(&last, v, sizeof last);
    if (ev->sequence <= last)
        atomic_fetch_add(&r->violations, 1);
    row_key(key, sizeof key, ev->producer, ev->sequence);
    int rc = cxm_txn_put(txn, r->rows, key, strlen(key), ev->customer_id, strlen(ev->customer_id),
                         CXM_PUT_NOOVERWRITE);
    if (rc == 0)
        rc = cxm_txn_put(txn, r->rows, last_key, strlen(last_key), &ev->sequence,
                         sizeof ev->sequence, 0);
    if (rc == 0 && atomic_load(&r->fail))
        rc = CXM_EIO; /* after writing: the batch must roll back */
    return rc;
}

typedef struct count_ctx {
    MDB_dbi dbi;
    const char *prefix;
    size_t n;
} count_ctx;

static int count_scan(const void *k, size_t kl, const void *v, size_t vl, void *user)
{
    ((count_ctx *)user)->n++;
    return 0;
}

static int count_fn(cxm_txn *txn, void *user)
{
    count_ctx *c = user;
    return cxm_txn_scan_prefix(txn, c->dbi, c->prefix, strlen(c->prefix), false, count_scan, c);
}

static size_t count_rows(cxm_store *st, MDB_dbi dbi, const char *prefix)
{
    count_ctx c = {dbi, prefix, 0};
    CHECK_EQ_INT(cxm_store_read(st, count_fn, &c), 0);
    return c.n;
}

/* ---- producing ---------------------------------------------------------- */

typedef struct emit_job {
    cxm_bus_producer *p;
    int first, count; /* customer numbers */
    bool deleted;     /* CustomerDeleted payloads instead of TraitsChanged */
    int fail_rc;      /* returned after emitting: the job must leave no trace */
} emit_job;

static int emit_fn(cxm_txn *txn, void *user)
{
    emit_job *j = user;
    for (int i = 0; i < j->count; i++) {
        char cid[32];
        snprintf(cid, sizeof cid, "c%d", j->first + i);
        Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
        Cxm__V1__CustomerDeleted del = CXM__V1__CUSTOMER_DELETED__INIT;
        Cxm__V1__TraitsChanged tc = CXM__V1__TRAITS_CHANGED__INIT;
        ev.customer_id = cid;
        if (j->deleted) {
            del.receipt_id = "r1";
            ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_DELETED;
            ev.customer_deleted = &del;
        } else {
            ev.payload_case = CXM__V1__EVENT__PAYLOAD_TRAITS_CHANGED;
            ev.traits_changed = &tc;
        }
        int rc = cxm_bus_emit(j->p, txn, &ev);
        if (rc != 0)
            return rc;
    }
    return j->fail_rc;
}

static int emit(cxm_store *st, cxm_bus_producer *p, int first, int count, bool deleted)
{
    emit_job j = {p, first, count, deleted, 0};
    return cxm_store_write(st, emit_fn, &j);
}

/* ---- waiting ------------------------------------------------------------ */

static uint64_t applied_of(cxm_bus *bus, const char *subscriber, const char *producer,
                           char *last_error, size_t cap)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__GetBusStatusResponse *r;
    uint64_t v = 0;
    if (cxm_bus_status(bus, &a, &r) == 0)
        for (size_t i = 0; i < r->n_subscribers; i++)
            if (strcmp(r->subscribers[i]->subscriber, subscriber) == 0 &&
                strcmp(r->subscribers[i]->producer, producer) == 0) {
                v = r->subscribers[i]->applied_sequence;
                if (last_error)
                    snprintf(last_error, cap, "%s", r->subscribers[i]->last_error);
            }
    cxm_arena_dispose(&a);
    return v;
}

static bool wait_applied(cxm_bus *bus, const char *subscriber, const char *producer, uint64_t seq)
{
    for (int i = 0; i < 1000; i++) {
        if (applied_of(bus, subscriber, producer, NULL, 0) >= seq)
            return true;
        usleep(10000);
    }
    return false;
}

static Cxm__V1__BusProducerStatus producer_status(cxm_bus *bus, const char *producer)
{
    Cxm__V1__BusProducerStatus out = CXM__V1__BUS_PRODUCER_STATUS__INIT;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__GetBusStatusResponse *r;
    if (cxm_bus_status(bus, &a, &r) == 0)
        for (size_t i = 0; i < r->n_producers; i++)
            if (strcmp(r->producers[i]->producer, producer) == 0)
                out = *r->producers[i];
    out.producer = NULL; /* was in the arena */
    cxm_arena_dispose(&a);
    return out;
}

static bool wait_outbox_empty(cxm_bus *bus, const char *producer)
{
    for (int i = 0; i < 1000; i++) {
        if (producer_status(bus, producer).outbox_backlog == 0)
            return true;
        usleep(10000);
    }
    return false;
}

/* ---- tests -------------------------------------------------------------- */

static cxm_store *open_store(const char *name)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    cxm_store *st = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &st), 0);
    return st;
}

static void test_validation(void)
{
    cxm_store *st = open_store("validation");
    cxm_bus *bus = NULL, *again = NULL;
    CHECK_EQ_INT(cxm_bus_create(st, NULL, &bus), 0);
    CHECK(cxm_bus_of(st) == bus);
    CHECK_EQ_INT(cxm_bus_create(st, NULL, &again), CXM_EEXIST);
    cxm_bus_producer *p;
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "Profile", &p), CXM_EINVAL);
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "", &p), CXM_EINVAL);
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "profile", &p), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "a.b", "profile", NULL, 0, record_apply, NULL), CXM_EINVAL);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "journey", "profile", NULL, 0, NULL, NULL), CXM_EINVAL);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "journey", "profile", NULL, 0, record_apply, NULL), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "journey", "profile", NULL, 0, record_apply, NULL),
                 CXM_EEXIST);

    Cxm__V1__Event ev;
    /* No customer, no type, a type that is not the payload, a dotted type. */
    typedef struct bad {
        const char *customer, *type;
        bool payload;
        const char *field;
    } bad;
    const bad cases[] = {{"", "X", false, "customer_id"},
                         {"c1", "", false, "event.type"},
                         {"c1", "CustomerMerged", true, "does not match"},
                         {"c1", "a.b", false, "letters or digits"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Cxm__V1__CustomerDeleted del = CXM__V1__CUSTOMER_DELETED__INIT;
        ev = (Cxm__V1__Event)CXM__V1__EVENT__INIT;
        ev.customer_id = (char *)cases[i].customer;
        ev.type = (char *)cases[i].type;
        if (cases[i].payload) {
            ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_DELETED;
            ev.customer_deleted = &del;
        }
        CHECK_EQ_INT(cxm_bus_emit(p, NULL, &ev), CXM_EINVAL);
        CHECK(strstr(cxm_bus_last_error(), cases[i].field) != NULL);
    }
    CHECK_EQ_INT(cxm_bus_shard("c1"), cxm_bus_shard("c1"));
    CHECK(cxm_bus_shard("c1") < CXM_BUS_SHARDS);
    cxm_bus_destroy(bus);
    CHECK(cxm_bus_of(st) == NULL);
    cxm_store_close(st);
}

/* Two subscribers on two producers: all events once, in order, filters hold,
 * rolled-back emits consume no sequence, and the outbox drains. */
static void test_delivery(void)
{
    cxm_store *st = open_store("delivery");
    cxm_bus *bus;
    CHECK_EQ_INT(cxm_bus_create(st, &(cxm_bus_opts){.batch_max = 64}, &bus), 0);
    cxm_bus_producer *p1, *p2;
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "profile", &p1), 0);
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "journey", &p2), 0);
    recorder all = {0}, deletions = {0};
    CHECK_EQ_INT(cxm_store_dbi(st, "t.all", 0, &all.rows), 0);
    CHECK_EQ_INT(cxm_store_dbi(st, "t.del", 0, &deletions.rows), 0);
    static const char *const only_deleted[] = {"CustomerDeleted"};
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "all", "profile", NULL, 0, record_apply, &all), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "all", "journey", NULL, 0, record_apply, &all), 0);
    CHECK_EQ_INT(
        cxm_bus_subscribe(bus, "del", "profile", only_deleted, 1, record_apply, &deletions), 0);
    /* Emitted before the start: the outbox keeps them. */
    CHECK_EQ_INT(emit(st, p1, 0, 10, false), 0);
    CHECK_EQ_INT(cxm_bus_start(bus), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "late", "profile", NULL, 0, record_apply, &all),
                 CXM_EINVAL);

    /* A job that emits and then fails leaves no event and no gap. */
    emit_job failing = {p1, 100, 5, false, CXM_ESTALE};
    CHECK_EQ_INT(cxm_store_write(st, emit_fn, &failing), CXM_ESTALE);
    for (int i = 0; i < 20; i++) {
        CHECK_EQ_INT(emit(st, p1, 10 + i * 10, 10, i % 4 == 0), 0);
        CHECK_EQ_INT(emit(st, p2, i, 1, false), 0);
    }
    CHECK(wait_applied(bus, "all", "profile", 210));
    CHECK(wait_applied(bus, "del", "profile", 210));
    CHECK(wait_applied(bus, "all", "journey", 20));
    CHECK_EQ_INT(producer_status(bus, "profile").last_sequence, 210);
    CHECK_EQ_INT(count_rows(st, all.rows, "profile/"), 210);
    CHECK_EQ_INT(count_rows(st, all.rows, "journey/"), 20);
    CHECK_EQ_INT(count_rows(st, deletions.rows, "profile/"), 50); /* i = 0, 4, 8, 12, 16 */
    CHECK_EQ_INT(atomic_load(&all.violations), 0);
    CHECK_EQ_INT(atomic_load(&deletions.violations), 0);
    CHECK(wait_outbox_empty(bus, "profile"));
    CHECK(wait_outbox_empty(bus, "journey"));

    /* A restart re-applies nothing and goes on from the marks. */
    cxm_bus_destroy(bus);
    CHECK_EQ_INT(cxm_bus_create(st, NULL, &bus), 0);
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "profile", &p1), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "all", "profile", NULL, 0, record_apply, &all), 0);
    CHECK_EQ_INT(cxm_bus_start(bus), 0);
    CHECK_EQ_INT(emit(st, p1, 1000, 3, false), 0);
    CHECK(wait_applied(bus, "all", "profile", 213));
    CHECK_EQ_INT(count_rows(st, all.rows, "profile/"), 213);
    CHECK_EQ_INT(atomic_load(&all.violations), 0);
    cxm_bus_destroy(bus);
    cxm_store_close(st);
}

/* Group-committed jobs emit from several threads into one transaction. */
typedef struct submitter {
    cxm_store *st;
    cxm_bus_producer *p;
    int base;
    atomic_int *failed;
} submitter;

typedef struct pending {
    emit_job job;
    cxm_write_job w;
    atomic_int done;
    int rc;
} pending;

static void pending_done(void *user, int rc)
{
    pending *pd = user;
    pd->rc = rc;
    atomic_store(&pd->done, 1);
}

/* The job's user is the pending record; emit_fn needs the emit_job inside. */
static int pending_fn(cxm_txn *txn, void *user)
{
    return emit_fn(txn, &((pending *)user)->job);
}

static void *submit_main(void *arg)
{
    submitter *s = arg;
    enum { N = 100 };
    pending *pd = calloc(N, sizeof *pd);
    for (int i = 0; i < N; i++) {
        pd[i].job = (emit_job){s->p, s->base + i, 1, false, i % 10 == 9 ? CXM_ESTALE : 0};
        pd[i].w = (cxm_write_job){.fn = pending_fn, .done = pending_done, .user = &pd[i]};
        cxm_store_submit(s->st, &pd[i].w);
    }
    for (int i = 0; i < N; i++) {
        while (!atomic_load(&pd[i].done))
            usleep(100);
        if (pd[i].rc != (i % 10 == 9 ? CXM_ESTALE : 0))
            atomic_fetch_add(s->failed, 1);
    }
    free(pd);
    return NULL;
}

static void test_group_commit(void)
{
    cxm_store *st = open_store("group");
    cxm_bus *bus;
    CHECK_EQ_INT(cxm_bus_create(st, NULL, &bus), 0);
    cxm_bus_producer *p;
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "profile", &p), 0);
    recorder r = {0};
    CHECK_EQ_INT(cxm_store_dbi(st, "t.rows", 0, &r.rows), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "sub", "profile", NULL, 0, record_apply, &r), 0);
    CHECK_EQ_INT(cxm_bus_start(bus), 0);
    atomic_int failed = 0;
    submitter s[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (submitter){st, p, i * 1000, &failed};
        pthread_create(&th[i], NULL, submit_main, &s[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(atomic_load(&failed), 0);
    /* 4 x 90 jobs committed: sequences 1..360 without a gap. */
    CHECK_EQ_INT(producer_status(bus, "profile").last_sequence, 360);
    CHECK(wait_applied(bus, "sub", "profile", 360));
    CHECK_EQ_INT(count_rows(st, r.rows, "profile/"), 360);
    CHECK_EQ_INT(atomic_load(&r.violations), 0);
    cxm_bus_destroy(bus);
    cxm_store_close(st);
}

/* A subscriber whose apply fails after writing: nothing of its batch stays,
 * it is retried, the producer and the other subscriber go on, and once it
 * recovers every event is applied once, in order. */
static void test_failing_subscriber(void)
{
    cxm_store *st = open_store("failing");
    cxm_bus *bus;
    CHECK_EQ_INT(cxm_bus_create(st, NULL, &bus), 0);
    cxm_bus_producer *p;
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "profile", &p), 0);
    recorder bad = {0}, good = {0};
    CHECK_EQ_INT(cxm_store_dbi(st, "t.bad", 0, &bad.rows), 0);
    CHECK_EQ_INT(cxm_store_dbi(st, "t.good", 0, &good.rows), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "bad", "profile", NULL, 0, record_apply, &bad), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "good", "profile", NULL, 0, record_apply, &good), 0);
    CHECK_EQ_INT(cxm_bus_start(bus), 0);
    CHECK_EQ_INT(emit(st, p, 0, 5, false), 0);
    CHECK(wait_applied(bus, "bad", "profile", 5));

    atomic_store(&bad.fail, 1);
    for (int i = 0; i < 50; i++)
        CHECK_EQ_INT(emit(st, p, 100 + i * 2, 2, false), 0);
    CHECK(wait_applied(bus, "good", "profile", 105));
    usleep(300000); /* a few retries */
    char err[256] = "";
    CHECK_EQ_INT(applied_of(bus, "bad", "profile", err, sizeof err), 5);
    CHECK(strstr(err, "input/output error") != NULL);
    CHECK_EQ_INT(count_rows(st, bad.rows, "profile/"), 5); /* nothing half applied */
    Cxm__V1__BusProducerStatus ps = producer_status(bus, "profile");
    CHECK_EQ_INT(ps.outbox_backlog, 100); /* kept for the failing subscriber */

    atomic_store(&bad.fail, 0);
    CHECK(wait_applied(bus, "bad", "profile", 105));
    CHECK_EQ_INT(applied_of(bus, "bad", "profile", err, sizeof err), 105);
    CHECK_EQ_INT(err[0], '\0');
    CHECK_EQ_INT(count_rows(st, bad.rows, "profile/"), 105);
    CHECK_EQ_INT(count_rows(st, good.rows, "profile/"), 105);
    CHECK_EQ_INT(atomic_load(&bad.violations), 0);
    CHECK(wait_outbox_empty(bus, "profile"));
    cxm_bus_destroy(bus);
    cxm_store_close(st);
}

/* A producer without subscribers here: its outbox drains anyway. */
static void test_no_subscriber(void)
{
    cxm_store *st = open_store("alone");
    cxm_bus *bus;
    CHECK_EQ_INT(cxm_bus_create(st, NULL, &bus), 0);
    cxm_bus_producer *p;
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "feedback", &p), 0);
    CHECK_EQ_INT(cxm_bus_start(bus), 0);
    CHECK_EQ_INT(emit(st, p, 0, 7, false), 0);
    CHECK(wait_outbox_empty(bus, "feedback"));
    CHECK_EQ_INT(producer_status(bus, "feedback").last_sequence, 7);
    cxm_bus_destroy(bus);
    cxm_store_close(st);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    cxm_log_configure(false, CXM_LOG_ERROR);
    test_validation();
    test_delivery();
    test_group_commit();
    test_failing_subscriber();
    test_no_subscriber();
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return check_report();
}
