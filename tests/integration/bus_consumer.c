/*
 * bus_consumer.c - the subscribing process of integration.bus.nats_kill9:
 * applies PRODUCER's events through NATS to a table, counting in the same
 * transaction every event that comes out of order or twice, and exits 0
 * once number COUNT is applied.
 *
 *   bus_consumer DATA_DIR NATS_URL PRODUCER SUBSCRIBER COUNT
 *
 * The table and its checks: bus_table.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "bus_table.h"

typedef struct last_ctx {
    MDB_dbi dbi;
    long last;
} last_ctx;

static int read_last(cxm_txn *txn, void *user)
{
    last_ctx *c = user;
    c->last = bus_table_last(txn, c->dbi);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bus_consumer DATA_DIR NATS_URL PRODUCER SUBSCRIBER COUNT\n");
        return 2;
    }
    cxm_log_configure(false, CXM_LOG_WARN);
    cxm_store *st;
    cxm_bus *bus;
    last_ctx c = {0};
    if (cxm_store_open(argv[1], NULL, &st) != 0 || cxm_store_dbi(st, BUS_TABLE, 0, &c.dbi) != 0)
        return 1;
    /* A short ack wait: events fetched by a killed run come back quickly. */
    cxm_bus_opts o = {.nats_url = argv[2], .batch_max = 256, .nats_ack_wait_ms = 1000};
    if (cxm_bus_create(st, &o, &bus) != 0) {
        fprintf(stderr, "bus_consumer: %s\n", cxm_bus_last_error());
        return 1;
    }
    int rc = cxm_bus_subscribe(bus, argv[4], argv[3], NULL, 0, bus_table_apply, &c.dbi);
    if (rc == 0)
        rc = cxm_bus_start(bus);
    long count = atol(argv[5]);
    while (rc == 0 && (rc = cxm_store_read(st, read_last, &c)) == 0 && c.last < count)
        usleep(20000);
    cxm_bus_destroy(bus);
    cxm_store_close(st);
    return rc == 0 ? 0 : 1;
}
