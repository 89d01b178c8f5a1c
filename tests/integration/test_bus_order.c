/*
 * test_bus_order.c - integration.bus.nats_order: a stream whose order is not
 * the producers' sequence order (what a publish batch that failed part-way
 * and was published again leaves behind) is applied in sequence order,
 * exactly once, without waiting for redeliveries: the subscriber keeps the
 * early events and applies them when their predecessors arrive.
 *
 *   test_bus_order   (exits NF_SKIP without nats-server)
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "bus_table.h"
#include "cxm/nats.h"
#include "nats_fixture.h"

/* Stream order of sequences 1..10: 1 first (a stream's first message starts
 * a subscriber that applied nothing), then two runs out of order. */
static const uint64_t stream_order[] = {1, 4, 5, 2, 3, 7, 6, 8, 10, 9};
#define COUNT (sizeof stream_order / sizeof stream_order[0])

static nf_server srv;
static char root[] = "/tmp/cxm-test-busorder-XXXXXX";

static void publish_out_of_order(void)
{
    cxm_nats *n;
    cxm_nats_opts o = {.url = srv.url};
    CHECK(cxm_nats_open(&o, &n) == 0, "%s", cxm_nats_last_error());
    CHECK(cxm_nats_stream(n, "ord") == 0, "%s", cxm_nats_last_error());
    for (size_t i = 0; i < COUNT; i++) {
        char cid[16], subject[64], id[32];
        snprintf(cid, sizeof cid, "n%llu", (unsigned long long)stream_order[i]);
        snprintf(subject, sizeof subject, "cxm.ord.Numbered.%u", cxm_bus_shard(cid));
        snprintf(id, sizeof id, "ord:%llu", (unsigned long long)stream_order[i]);
        Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
        ev.producer = "ord";
        ev.sequence = stream_order[i];
        ev.type = "Numbered";
        ev.customer_id = cid;
        uint8_t buf[256];
        size_t len = cxm__v1__event__pack(&ev, buf);
        cxm_nats_msg m = {subject, id, buf, len};
        CHECK(cxm_nats_publish(n, &m, 1, 2000) == 0, "%s", cxm_nats_last_error());
    }
    cxm_nats_close(n);
}

static int read_last(cxm_txn *txn, void *user)
{
    MDB_dbi *dbi = user;
    return (int)bus_table_last(txn, *dbi);
}

/* A failed check exits: leave no nats-server behind. */
static void stop_server(void)
{
    if (srv.pid > 0)
        nf_stop(&srv);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    int rc = nf_start(&srv);
    if (rc == -1)
        return NF_SKIP;
    CHECK(rc == 0, "nats-server did not start");
    atexit(stop_server);
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    publish_out_of_order();

    cxm_store *st;
    cxm_bus *bus;
    MDB_dbi dbi;
    CHECK(cxm_store_open(root, NULL, &st) == 0 && cxm_store_dbi(st, BUS_TABLE, 0, &dbi) == 0,
          "open the store");
    /* An ack wait far beyond the deadline: no redelivery can rescue a
     * subscriber that waits for the stream to come back in order. */
    cxm_bus_opts o = {.nats_url = srv.url, .nats_ack_wait_ms = 60000};
    CHECK(cxm_bus_create(st, &o, &bus) == 0, "%s", cxm_bus_last_error());
    CHECK(cxm_bus_subscribe(bus, "checker", "ord", NULL, 0, bus_table_apply, &dbi) == 0, "%s",
          cxm_bus_last_error());
    CHECK(cxm_bus_start(bus) == 0, "%s", cxm_bus_last_error());
    int last = 0;
    for (int i = 0; i < 250 && last < (int)COUNT; i++) {
        usleep(20000);
        last = cxm_store_read(st, read_last, &dbi);
    }
    cxm_bus_destroy(bus);
    cxm_store_close(st);
    CHECK(last == (int)COUNT, "applied up to %d of %zu within 5 s", last, COUNT);
    bus_verdict v;
    CHECK(bus_table_verdict(root, &v) == 0, "read the table");
    CHECK(v.rows == (long)COUNT && v.last == (long)COUNT && v.bad == 0,
          "%ld rows, last %ld, %ld out of order or repeated", v.rows, v.last, v.bad);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    printf("bus order: %zu events published out of sequence order, applied in order once\n", COUNT);
    return 0;
}
