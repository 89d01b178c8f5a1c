/* bus_table.c - see bus_table.h. */
#include "bus_table.h"

#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"

static long get_long(cxm_txn *txn, MDB_dbi dbi, const char *key)
{
    const void *v;
    size_t vlen;
    long n = 0;
    if (cxm_txn_get_ref(txn, dbi, key, strlen(key), &v, &vlen) == 0 && vlen == sizeof n)
        memcpy(&n, v, sizeof n);
    return n;
}

static int put_long(cxm_txn *txn, MDB_dbi dbi, const char *key, long n)
{
    return cxm_txn_put(txn, dbi, key, strlen(key), &n, sizeof n, 0);
}

long bus_table_last(cxm_txn *txn, MDB_dbi dbi)
{
    return get_long(txn, dbi, "last");
}

int bus_table_apply(cxm_txn *txn, const Cxm__V1__Event *ev, void *user)
{
    MDB_dbi dbi = *(MDB_dbi *)user;
    long n = atol(ev->customer_id + 1), last = get_long(txn, dbi, "last");
    long bad = get_long(txn, dbi, "bad") + (n != last + 1 || (long)ev->sequence != n);
    int rc =
        cxm_txn_put(txn, dbi, ev->customer_id, strlen(ev->customer_id), "", 0, CXM_PUT_NOOVERWRITE);
    if (rc == CXM_EEXIST) {
        bad++;
        rc = 0;
    }
    if (rc == 0)
        rc = put_long(txn, dbi, "last", n);
    if (rc == 0)
        rc = put_long(txn, dbi, "bad", bad);
    return rc;
}

typedef struct verdict_ctx {
    MDB_dbi dbi;
    bus_verdict *v;
} verdict_ctx;

static int count_row(const void *k, size_t kl, const void *v, size_t vl, void *user)
{
    bus_verdict *r = ((verdict_ctx *)user)->v;
    if (kl > 1 && ((const char *)k)[0] == 'n')
        r->rows++;
    else if (kl == 4 && memcmp(k, "last", 4) == 0 && vl == sizeof r->last)
        memcpy(&r->last, v, sizeof r->last);
    else if (kl == 3 && memcmp(k, "bad", 3) == 0 && vl == sizeof r->bad)
        memcpy(&r->bad, v, sizeof r->bad);
    return 0;
}

static int verdict_fn(cxm_txn *txn, void *user)
{
    verdict_ctx *c = user;
    return cxm_txn_scan_prefix(txn, c->dbi, NULL, 0, false, count_row, c);
}

int bus_table_verdict(const char *dir, bus_verdict *out)
{
    cxm_store *st;
    verdict_ctx c = {.v = out};
    memset(out, 0, sizeof *out);
    int rc = cxm_store_open(dir, NULL, &st);
    if (rc != 0)
        return rc;
    rc = cxm_store_dbi(st, BUS_TABLE, 0, &c.dbi);
    if (rc == 0)
        rc = cxm_store_read(st, verdict_fn, &c);
    cxm_store_close(st);
    return rc;
}
