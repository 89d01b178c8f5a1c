/*
 * bus_producer.c - the producing process of integration.bus.nats_kill9:
 * emits events 1..COUNT (customer id "n<number>") through the bus into NATS,
 * ten per durable write job, resuming after a kill from the progress stored
 * in the same transactions, and exits 0 once its outbox is empty.
 *
 *   bus_producer DATA_DIR NATS_URL PRODUCER COUNT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"

#define PER_JOB 10

typedef struct job {
    cxm_bus_producer *p;
    MDB_dbi progress;
    long count;
    long done; /* numbers emitted, as committed */
} job;

static int emit_fn(cxm_txn *txn, void *user)
{
    job *j = user;
    const void *v;
    size_t vlen;
    long done = 0;
    if (cxm_txn_get_ref(txn, j->progress, "done", 4, &v, &vlen) == 0)
        memcpy(&done, v, sizeof done);
    int rc = 0;
    long n = done;
    for (; rc == 0 && n < j->count && n < done + PER_JOB; n++) {
        char cid[32];
        snprintf(cid, sizeof cid, "n%ld", n + 1);
        Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
        ev.customer_id = cid;
        ev.type = "Numbered";
        rc = cxm_bus_emit(j->p, txn, &ev);
    }
    if (rc == 0)
        rc = cxm_txn_put(txn, j->progress, "done", 4, &n, sizeof n, 0);
    if (rc == 0)
        j->done = n;
    return rc;
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

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bus_producer DATA_DIR NATS_URL PRODUCER COUNT\n");
        return 2;
    }
    cxm_log_configure(false, CXM_LOG_WARN);
    cxm_store *st;
    cxm_bus *bus;
    job j = {.count = atol(argv[4])};
    if (cxm_store_open(argv[1], NULL, &st) != 0 ||
        cxm_store_dbi(st, "test.progress", 0, &j.progress) != 0)
        return 1;
    cxm_bus_opts o = {.nats_url = argv[2], .batch_max = 256};
    if (cxm_bus_create(st, &o, &bus) != 0) {
        fprintf(stderr, "bus_producer: %s\n", cxm_bus_last_error());
        return 1; /* NATS is down: the test starts us again */
    }
    int rc = cxm_bus_producer_open(bus, argv[3], &j.p);
    if (rc == 0)
        rc = cxm_bus_start(bus);
    while (rc == 0 && j.done < j.count)
        rc = cxm_store_write(st, emit_fn, &j);
    while (rc == 0 && outbox_backlog(bus) != 0)
        usleep(20000);
    cxm_bus_destroy(bus);
    cxm_store_close(st);
    return rc == 0 ? 0 : 1;
}
