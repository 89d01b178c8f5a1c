/*
 * bus_table.h - the table a test subscriber applies numbered events to
 * (integration.bus.nats_kill9 and integration.bus.inproc_kill9), checking in
 * the same transaction that each event comes exactly once and in order.
 *
 * Event number n has customer id "n<n>" and producer sequence n. Table rows:
 * "n<n>" -> "" per event applied, "last" -> the latest number applied,
 * "bad" -> how many events came out of order, with a sequence other than
 * their number, or a second time.
 */
#ifndef CXM_TEST_BUS_TABLE_H
#define CXM_TEST_BUS_TABLE_H

#include "cxm/bus.h"

#define BUS_TABLE "test.applied"

/* A cxm_bus_apply_fn; user points to the table's MDB_dbi. */
int bus_table_apply(cxm_txn *txn, const Cxm__V1__Event *ev, void *user);

/* The latest number applied (0: none). */
long bus_table_last(cxm_txn *txn, MDB_dbi dbi);

typedef struct bus_verdict {
    long rows, last, bad;
} bus_verdict;

/* Count the table of the store in dir (which no process holds open). */
int bus_table_verdict(const char *dir, bus_verdict *out);

#endif
