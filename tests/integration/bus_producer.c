/*
 * bus_producer.c - the producing process of integration.bus.nats_kill9 and
 * integration.bus.inproc_kill9: emits events 1..COUNT (customer id
 * "n<number>") through the bus, ten per durable write job (in process from
 * WRITERS threads whose jobs the store group-commits), resuming after a kill
 * from the progress stored in the same transactions, and exits 0 once every
 * event is emitted and its outbox is empty.
 *
 *   bus_producer DATA_DIR NATS_URL|inproc PRODUCER COUNT
 *
 * With "inproc" there is no NATS: subscriber "checker" applies the events in
 * this process to the table of bus_table.h, and stdout says what the test may
 * hold us to, one line each, written before anything that follows it:
 * "start D A" (D events were emitted durably before this run, A of them
 * applied) and "acked N" (a write job was acknowledged, so events 1..N are
 * durable).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus_table.h"
#include "cxm/err.h"
#include "cxm/log.h"

#define PER_JOB 10
#define WRITERS 4

typedef struct producer {
    cxm_store *st;
    cxm_bus_producer *p;
    MDB_dbi progress;
    long count;
    bool inproc; /* no NATS: subscribe "checker" here, print start and acked lines */
    pthread_mutex_t mu;
    pthread_cond_t answered;
} producer;

typedef struct writer {
    producer *pr;
    cxm_write_job job;
    bool answered;
    int rc;
    long done; /* numbers emitted, as of this writer's latest job */
} writer;

static long emitted(cxm_txn *txn, const producer *pr)
{
    const void *v;
    size_t vlen;
    long done = 0;
    if (cxm_txn_get_ref(txn, pr->progress, "done", 4, &v, &vlen) == 0 && vlen == sizeof done)
        memcpy(&done, v, sizeof done);
    return done;
}

/* A write job: the next PER_JOB numbers and the progress, in one txn. It may
 * run again (see cxm_store_submit), so it starts from the txn every time. */
static int emit_fn(cxm_txn *txn, void *user)
{
    writer *w = user;
    long done = emitted(txn, w->pr), n = done;
    int rc = 0;
    for (; rc == 0 && n < w->pr->count && n < done + PER_JOB; n++) {
        char cid[32];
        snprintf(cid, sizeof cid, "n%ld", n + 1);
        Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
        ev.customer_id = cid;
        ev.type = "Numbered";
        rc = cxm_bus_emit(w->pr->p, txn, &ev);
    }
    if (rc == 0)
        rc = cxm_txn_put(txn, w->pr->progress, "done", 4, &n, sizeof n, 0);
    if (rc == 0)
        w->done = n;
    return rc;
}

static void job_done(void *user, int rc)
{
    writer *w = user;
    pthread_mutex_lock(&w->pr->mu);
    w->rc = rc;
    w->answered = true;
    pthread_cond_broadcast(&w->pr->answered);
    pthread_mutex_unlock(&w->pr->mu);
}

/* Submit jobs one at a time, each acknowledged before the next, until
 * every number is emitted. */
static void *writer_main(void *arg)
{
    writer *w = arg;
    producer *pr = w->pr;
    do {
        w->job = (cxm_write_job){.fn = emit_fn, .done = job_done, .user = w};
        w->answered = false;
        cxm_store_submit(pr->st, &w->job);
        pthread_mutex_lock(&pr->mu);
        while (!w->answered)
            pthread_cond_wait(&pr->answered, &pr->mu);
        if (w->rc == 0 && pr->inproc) {
            printf("acked %ld\n", w->done);
            fflush(stdout);
        }
        pthread_mutex_unlock(&pr->mu);
    } while (w->rc == 0 && w->done < pr->count);
    return NULL;
}

typedef struct resume {
    const producer *pr;
    MDB_dbi table;
    long done, applied;
} resume;

static int read_resume(cxm_txn *txn, void *user)
{
    resume *r = user;
    r->done = emitted(txn, r->pr);
    r->applied = bus_table_last(txn, r->table);
    return 0;
}

static uint64_t outbox_backlog(cxm_bus *bus)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__GetBusStatusResponse *r;
    uint64_t n = UINT64_MAX;
    if (cxm_bus_status(bus, &a, &r) == 0 && r->n_producers == 1)
        n = r->producers[0]->outbox_backlog;
    cxm_arena_dispose(&a);
    return n;
}

/* Emit the rest from WRITERS threads (one through NATS, as
 * integration.bus.nats_kill9 always ran); 0 once all are acknowledged. */
static int emit_all(producer *pr)
{
    writer w[WRITERS];
    pthread_t threads[WRITERS];
    int rc = 0, n = pr->inproc ? WRITERS : 1;
    for (int i = 0; i < n; i++) {
        w[i] = (writer){.pr = pr};
        pthread_create(&threads[i], NULL, writer_main, &w[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(threads[i], NULL);
        rc = rc ? rc : w[i].rc;
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bus_producer DATA_DIR NATS_URL|inproc PRODUCER COUNT\n");
        return 2;
    }
    cxm_log_configure(false, CXM_LOG_WARN);
    producer pr = {.count = atol(argv[4]), .inproc = strcmp(argv[2], "inproc") == 0};
    pthread_mutex_init(&pr.mu, NULL);
    pthread_cond_init(&pr.answered, NULL);
    cxm_bus *bus;
    resume r = {.pr = &pr};
    if (cxm_store_open(argv[1], NULL, &pr.st) != 0 ||
        cxm_store_dbi(pr.st, "test.progress", 0, &pr.progress) != 0 ||
        cxm_store_dbi(pr.st, BUS_TABLE, 0, &r.table) != 0)
        return 1;
    cxm_bus_opts o = {.nats_url = pr.inproc ? NULL : argv[2], .batch_max = 256};
    if (cxm_bus_create(pr.st, &o, &bus) != 0) {
        fprintf(stderr, "bus_producer: %s\n", cxm_bus_last_error());
        return 1; /* NATS is down: the test starts us again */
    }
    int rc = cxm_bus_producer_open(bus, argv[3], &pr.p);
    if (rc == 0 && pr.inproc)
        rc = cxm_bus_subscribe(bus, "checker", argv[3], NULL, 0, bus_table_apply, &r.table);
    if (rc == 0 && pr.inproc && (rc = cxm_store_read(pr.st, read_resume, &r)) == 0) {
        printf("start %ld %ld\n", r.done, r.applied);
        fflush(stdout);
    }
    if (rc == 0)
        rc = cxm_bus_start(bus);
    if (rc == 0)
        rc = emit_all(&pr);
    while (rc == 0 && outbox_backlog(bus) != 0)
        usleep(20000);
    cxm_bus_destroy(bus);
    cxm_store_close(pr.st);
    return rc == 0 ? 0 : 1;
}
