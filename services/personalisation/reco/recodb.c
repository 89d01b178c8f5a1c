/*
 * recodb.c - the interaction log, history stamps, erasure and merges, and
 * model versions (see recodb.h; training is recotrain.c, serving
 * recoserve.c, explanations recoexplain.c).
 *
 * Tables:
 *   reco.events  customer (str), ts (i64), FNV-1a of item (u64)
 *                -> weight (float) + item bytes
 *   reco.models  version (u64), part (u8: 0 model, 1 item table,
 *                2 calibration) -> blob
 *   reco.meta    "current" / "previous" / "last" -> version (u64, native)
 *   reco.stamps, reco.cand: see recodb_impl.h.
 * Two ids of 256 bytes would not fit one key (LMDB's limit is 511 bytes),
 * hence the item's hash in the key and the item itself in the value.
 *
 * Item table blob (one per version, native byte order, 4-byte aligned):
 *   u64 magic, u32 n, u32 nslots | u32 off[n + 1] | u32 slot[nslots] | bytes
 * Item i's id is bytes[off[i] .. off[i + 1]); slot holds index + 1 (0 =
 * empty) in an open-addressing table on the id's FNV-1a hash, so serving
 * maps an id to its index with one or two probes, reading the map in place.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "personalisation/reco/recodb_impl.h"

#define ITEMS_MAGIC UINT64_C(0x314d455449584d43) /* "CXMITEM1", little-endian */
#define CALIB_MAGIC UINT64_C(0x3142494c4158434d) /* "MCXALIB1" */
#define BATCH 256                                /* rows moved per iterator pass */

int recodb__fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* NULL when id is acceptable, else what is wrong with it. */
const char *recodb__id_problem(const char *id)
{
    if (!id || !*id)
        return "is empty";
    size_t n = strnlen(id, RECODB_ID_MAX + 1);
    if (n > RECODB_ID_MAX)
        return "is longer than 256 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return "contains a control byte";
    return NULL;
}

double recodb__clock(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- opening ---- */

static void opts_defaults(recodb_opts *o)
{
    /* History scored (MovieLens-small, EASE, random 80/20 seed 42, NDCG@10
     * by cxm-eval --max-history): 100 0.298, 200 0.337, 500 0.367, 1000
     * 0.380, 2000 0.3815, all 0.3817. Heavy customers' older items carry
     * signal, and the cost of a long history is paid off the request path
     * (the candidate cache), so the default keeps nearly all of it. */
    o->max_history = o->max_history ? o->max_history : RECODB_DEFAULT_HISTORY;
    /* Recency: on the temporal split a one-year half-life gave NDCG@10
     * +0.003, but on the random split -0.027 (0.382 -> 0.355, seeds 1 and
     * 7 alike): by default no decay; a service that knows its data is
     * time-ordered sets one. */
    o->recency_half_life = o->recency_half_life ? o->recency_half_life : -1;
    o->popularity_half_life =
        o->popularity_half_life ? o->popularity_half_life : 14 * RECODB_DAY_SECONDS;
    o->ease_budget = o->ease_budget ? o->ease_budget : UINT64_C(2) << 30;
}

int recodb_open(cxm_store *store, const recodb_opts *opts, recodb **out)
{
    recodb *db = calloc(1, sizeof *db);
    if (!db)
        return CXM_ENOMEM;
    db->store = store;
    if (opts)
        db->opts = *opts;
    opts_defaults(&db->opts);
    const cxm_store_table tables[] = {
        {"reco.events", &db->events}, {"reco.models", &db->models}, {"reco.meta", &db->meta},
        {"reco.stamps", &db->stamps}, {"reco.cand", &db->cand},
    };
    int rc = cxm_store_dbis(store, tables, sizeof tables / sizeof tables[0]);
    if (rc != 0) {
        free(db);
        return rc;
    }
    recodb__stale_init(&db->stale);
    pthread_mutex_init(&db->pop.mu, NULL);
    /* Caches written by an earlier process may be for another version:
     * let the refresh thread look at everyone once. */
    recodb__stale_sweep(db);
    *out = db;
    return 0;
}

void recodb_close(recodb *db)
{
    if (!db)
        return;
    recodb__stale_dispose(&db->stale);
    recodb__pop_dispose(&db->pop);
    pthread_mutex_destroy(&db->pop.mu);
    free(db);
}

/* ---- the log ---- */

size_t recodb__customer_prefix(uint8_t *buf, const char *customer, size_t len)
{
    cxm_key k;
    size_t out = 0;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_bytes(&k, customer, len);
    cxm_key_finish(&k, &out);
    return out;
}

static size_t event_key(uint8_t *buf, const char *customer, size_t clen, int64_t ts, uint64_t hash)
{
    cxm_key k;
    size_t len = 0;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_bytes(&k, customer, clen);
    cxm_key_i64(&k, ts);
    cxm_key_u64(&k, hash);
    cxm_key_finish(&k, &len);
    return len;
}

static int event_check(const recodb_event *e, size_t i, char *err, size_t errlen)
{
    const char *why;
    if ((why = recodb__id_problem(e->customer)))
        return recodb__fail(err, errlen, CXM_EINVAL, "event %zu: customer %s", i, why);
    if ((why = recodb__id_problem(e->item)))
        return recodb__fail(err, errlen, CXM_EINVAL, "event %zu: item %s", i, why);
    if (!(e->weight > 0) || !isfinite(e->weight))
        return recodb__fail(err, errlen, CXM_EINVAL,
                            "event %zu: weight must be a finite number > 0", i);
    if (e->ts < 0)
        return recodb__fail(err, errlen, CXM_EINVAL,
                            "event %zu: ts must be >= 0 (seconds since 1970)", i);
    return 0;
}

/* The customer's history changed: a new stamp, the cached candidates gone,
 * and the customer listed for the refresh thread. */
static int history_changed(cxm_txn *t, recodb *db, const char *customer, size_t len)
{
    const void *v;
    size_t vlen;
    uint64_t stamp = 0;
    if (cxm_txn_get_ref(t, db->stamps, customer, len, &v, &vlen) == 0 && vlen == sizeof stamp)
        memcpy(&stamp, v, sizeof stamp);
    stamp++;
    int rc = cxm_txn_put(t, db->stamps, customer, len, &stamp, sizeof stamp, 0);
    if (rc == 0 && (rc = cxm_txn_del(t, db->cand, customer, len)) == CXM_ENOTFOUND)
        rc = 0;
    if (rc == 0)
        recodb__stale_push(db, customer, len);
    return rc;
}

static int put_event(cxm_txn *t, recodb *db, const recodb_event *e)
{
    uint8_t key[CXM_KEY_MAX], val[sizeof(float) + RECODB_ID_MAX];
    size_t clen = strlen(e->customer), ilen = strlen(e->item);
    size_t klen = event_key(key, e->customer, clen, e->ts, cxm_hash(CXM_HASH_INIT, e->item, ilen));
    memcpy(val, &e->weight, sizeof e->weight);
    memcpy(val + sizeof e->weight, e->item, ilen);
    return cxm_txn_put(t, db->events, key, klen, val, sizeof e->weight + ilen, 0);
}

int recodb_append_txn(cxm_txn *t, recodb *db, const recodb_event *ev, size_t n, char *err,
                      size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int rc = event_check(&ev[i], i, err, errlen);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const char *c = ev[i].customer;
        int rc = put_event(t, db, &ev[i]);
        /* A batch is usually one customer's: one stamp bump each run. */
        bool same = i > 0 && strcmp(ev[i - 1].customer, c) == 0;
        if (rc == 0 && !same)
            rc = history_changed(t, db, c, strlen(c));
        if (rc != 0)
            return recodb__fail(err, errlen, rc, "appending event %zu: %s", i,
                                cxm_store_last_error());
    }
    atomic_fetch_add(&db->appended, n);
    return 0;
}

uint64_t recodb_appended(const recodb *db)
{
    return atomic_load(&((recodb *)db)->appended);
}

typedef struct append_job {
    recodb *db;
    const recodb_event *ev;
    size_t n;
    char *err;
    size_t errlen;
} append_job;

static int append_fn(cxm_txn *t, void *user)
{
    const append_job *j = user;
    return recodb_append_txn(t, j->db, j->ev, j->n, j->err, j->errlen);
}

int recodb_append(recodb *db, const recodb_event *ev, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int rc = event_check(&ev[i], i, err, errlen);
        if (rc != 0)
            return rc;
    }
    append_job j = {db, ev, n, err, errlen};
    int rc = n ? cxm_store_write(db->store, append_fn, &j) : 0;
    return rc ? recodb__fail(err, errlen, rc, "appending events: %s", cxm_store_last_error()) : 0;
}

/* ---- erasure and merges ---- */

/* Up to BATCH of the customer's events, copied (keys and values). */
typedef struct event_batch {
    size_t n;
    uint8_t key[BATCH][CXM_KEY_MAX];
    size_t klen[BATCH];
    uint8_t val[BATCH][sizeof(float) + RECODB_ID_MAX];
    size_t vlen[BATCH];
} event_batch;

static int first_events(cxm_txn *t, const recodb *db, const uint8_t *prefix, size_t plen,
                        event_batch *b)
{
    cxm_iter it;
    int rc = cxm_iter_prefix(t, db->events, prefix, plen, false, &it);
    b->n = 0;
    while (rc == 0 && b->n < BATCH && (rc = cxm_iter_next(&it)) == 0) {
        if (it.klen > CXM_KEY_MAX || it.vlen > sizeof b->val[0]) {
            rc = CXM_ECORRUPT;
            break;
        }
        memcpy(b->key[b->n], it.key, b->klen[b->n] = it.klen);
        memcpy(b->val[b->n], it.val, b->vlen[b->n] = it.vlen);
        b->n++;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* Delete (and, when target is set, re-key to target) every event of
 * customer; *moved counts them. */
static int move_events(cxm_txn *t, recodb *db, const char *customer, const char *target,
                       uint64_t *moved)
{
    uint8_t prefix[CXM_KEY_MAX], key[CXM_KEY_MAX];
    size_t plen = recodb__customer_prefix(prefix, customer, strlen(customer));
    event_batch *b = malloc(sizeof *b);
    int rc = b ? 0 : CXM_ENOMEM;
    while (rc == 0 && (rc = first_events(t, db, prefix, plen, b)) == 0 && b->n > 0) {
        for (size_t i = 0; rc == 0 && i < b->n; i++) {
            cxm_keyreader kr;
            int64_t ts = 0;
            uint64_t hash = 0;
            cxm_keyreader_init(&kr, b->key[i], b->klen[i]);
            cxm_keyread_skip_bytes(&kr);
            cxm_keyread_i64(&kr, &ts);
            cxm_keyread_u64(&kr, &hash);
            if (target)
                rc = cxm_txn_put(t, db->events, key,
                                 event_key(key, target, strlen(target), ts, hash), b->val[i],
                                 b->vlen[i], 0);
            if (rc == 0)
                rc = cxm_txn_del(t, db->events, b->key[i], b->klen[i]);
        }
        *moved += b->n;
    }
    free(b);
    return rc;
}

/* Drop the customer's stamp and cached candidates; counts the rows. */
static int forget_customer(cxm_txn *t, recodb *db, const char *customer, uint64_t *rows)
{
    size_t len = strlen(customer);
    MDB_dbi dbis[] = {db->stamps, db->cand};
    for (size_t i = 0; i < 2; i++) {
        int rc = cxm_txn_del(t, dbis[i], customer, len);
        if (rc == 0)
            (*rows)++;
        else if (rc != CXM_ENOTFOUND)
            return rc;
    }
    return 0;
}

int recodb_erase(cxm_txn *t, recodb *db, const char *customer, uint64_t *records)
{
    if (recodb__id_problem(customer))
        return CXM_EINVAL;
    uint64_t rows = 0;
    int rc = move_events(t, db, customer, NULL, &rows);
    if (rc == 0)
        rc = forget_customer(t, db, customer, &rows);
    if (rc == 0 && records)
        *records = rows;
    return rc;
}

int recodb_merge(cxm_txn *t, recodb *db, const char *source, const char *target)
{
    if (recodb__id_problem(source) || recodb__id_problem(target))
        return CXM_EINVAL;
    if (strcmp(source, target) == 0)
        return 0;
    uint64_t moved = 0, rows = 0;
    int rc = move_events(t, db, source, target, &moved);
    if (rc == 0)
        rc = forget_customer(t, db, source, &rows);
    if (rc == 0 && moved > 0)
        rc = history_changed(t, db, target, strlen(target));
    return rc;
}

/* ---- versions ---- */

uint64_t recodb__meta_get(cxm_txn *t, const recodb *db, const char *name)
{
    const void *v;
    size_t n;
    uint64_t version = 0;
    if (cxm_txn_get_ref(t, db->meta, name, strlen(name), &v, &n) == 0 && n == sizeof version)
        memcpy(&version, v, sizeof version);
    return version;
}

static int meta_put(cxm_txn *t, const recodb *db, const char *name, uint64_t version)
{
    if (version == 0) {
        int rc = cxm_txn_del(t, db->meta, name, strlen(name));
        return rc == CXM_ENOTFOUND ? 0 : rc;
    }
    return cxm_txn_put(t, db->meta, name, strlen(name), &version, sizeof version, 0);
}

size_t recodb__model_key(uint8_t *buf, uint64_t version, uint8_t part)
{
    cxm_key k;
    size_t len;
    cxm_key_init(&k, buf, 16);
    cxm_key_u64(&k, version);
    cxm_key_u8(&k, part);
    cxm_key_finish(&k, &len);
    return len;
}

static uint64_t key_version(const void *key, size_t klen)
{
    cxm_keyreader kr;
    uint64_t v = 0;
    cxm_keyreader_init(&kr, key, klen);
    cxm_keyread_u64(&kr, &v);
    return v;
}

/* Delete every part of every version but keep[0..3) (0 = none): the
 * serving one, the previous, and a just-written one. */
static int drop_versions_but(cxm_txn *t, const recodb *db, const uint64_t keep[3])
{
    uint8_t from[16], key[16];
    size_t fromlen = 0;
    for (;;) {
        cxm_iter it;
        size_t klen = 0;
        int rc = cxm_iter_range(t, db->models, fromlen ? from : NULL, fromlen, NULL, 0, false, &it);
        while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
            uint64_t v = key_version(it.key, it.klen);
            if (v != keep[0] && v != keep[1] && v != keep[2] && it.klen <= sizeof key) {
                memcpy(key, it.key, klen = it.klen);
                break;
            }
        }
        cxm_iter_close(&it);
        if (rc == CXM_ENOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
        if ((rc = cxm_txn_del(t, db->models, key, klen)) != 0)
            return rc;
        memcpy(from, key, fromlen = klen);
    }
}

static int put_part(cxm_txn *t, const recodb *db, uint64_t v, uint8_t part, const void *p,
                    size_t len)
{
    uint8_t key[16];
    return cxm_txn_put(t, db->models, key, recodb__model_key(key, v, part), p, len, 0);
}

typedef struct publish_job {
    recodb *db;
    recodb_publish *p;
} publish_job;

static int publish_fn(cxm_txn *t, void *user)
{
    publish_job *j = user;
    const recodb *db = j->db;
    recodb_publish *p = j->p;
    uint64_t current = recodb__meta_get(t, db, "current"), last = recodb__meta_get(t, db, "last");
    uint64_t previous = recodb__meta_get(t, db, "previous");
    uint64_t v = (last > current ? last : current) + 1;
    p->calib.magic = CALIB_MAGIC;
    int rc = put_part(t, db, v, RECODB_PART_MODEL, p->model, p->model_len);
    if (rc == 0)
        rc = put_part(t, db, v, RECODB_PART_ITEMS, p->items, p->items_len);
    if (rc == 0)
        rc = put_part(t, db, v, RECODB_PART_CALIB, &p->calib, sizeof p->calib);
    if (p->activate) { /* the version being replaced stays, for rollback */
        uint64_t keep[3] = {v, current, 0};
        if (rc == 0)
            rc = drop_versions_but(t, db, keep);
        if (rc == 0)
            rc = meta_put(t, db, "previous", current);
        if (rc == 0)
            rc = meta_put(t, db, "current", v);
    } else { /* stored, not serving: an older unactivated one goes */
        uint64_t keep[3] = {v, current, previous};
        if (rc == 0)
            rc = drop_versions_but(t, db, keep);
    }
    if (rc == 0)
        rc = meta_put(t, db, "last", v);
    p->version = v;
    if (rc == 0 && p->hook)
        rc = p->hook(t, v, p->hook_ctx);
    return rc;
}

int recodb__publish(recodb *db, recodb_publish *p)
{
    publish_job j = {db, p};
    int rc = cxm_store_write(db->store, publish_fn, &j);
    if (rc == 0 && p->activate)
        recodb__stale_sweep(db);
    return rc;
}

static int drop_version(cxm_txn *t, const recodb *db, uint64_t version)
{
    uint8_t key[16];
    for (uint8_t part = RECODB_PART_MODEL; part <= RECODB_PART_CALIB; part++) {
        int rc = cxm_txn_del(t, db->models, key, recodb__model_key(key, version, part));
        if (rc != 0 && rc != CXM_ENOTFOUND)
            return rc;
    }
    return 0;
}

static int rollback_fn(cxm_txn *t, void *user)
{
    const recodb *db = user;
    uint64_t current = recodb__meta_get(t, db, "current");
    uint64_t previous = recodb__meta_get(t, db, "previous");
    if (previous == 0)
        return CXM_ENOTFOUND;
    int rc = drop_version(t, db, current);
    if (rc == 0)
        rc = meta_put(t, db, "current", previous);
    if (rc == 0)
        rc = meta_put(t, db, "previous", 0);
    return rc;
}

int recodb_rollback(recodb *db, uint64_t *version, char *err, size_t errlen)
{
    int rc = cxm_store_write(db->store, rollback_fn, db);
    if (rc == CXM_ENOTFOUND)
        return recodb__fail(err, errlen, rc, "no previous model version to roll back to");
    if (rc != 0)
        return recodb__fail(err, errlen, rc, "rolling back: %s", cxm_store_last_error());
    recodb__stale_sweep(db);
    uint64_t previous;
    return recodb_versions(db, version, &previous);
}

typedef struct versions_job {
    const recodb *db;
    uint64_t current, previous;
} versions_job;

static int versions_fn(cxm_txn *t, void *user)
{
    versions_job *j = user;
    j->current = recodb__meta_get(t, j->db, "current");
    j->previous = recodb__meta_get(t, j->db, "previous");
    return 0;
}

int recodb_versions(recodb *db, uint64_t *current, uint64_t *previous)
{
    versions_job j = {db, 0, 0};
    int rc = cxm_store_read(db->store, versions_fn, &j);
    *current = j.current;
    *previous = j.previous;
    return rc;
}

/* ---- item tables ---- */

int recodb__pack_items(const recoids *ids, void **out, size_t *len)
{
    uint32_t n = ids->n, nslots = 16;
    while (nslots < 2 * (uint64_t)n)
        nslots *= 2;
    size_t bytes = 0;
    for (uint32_t i = 0; i < n; i++)
        bytes += strlen(ids->names[i]);
    size_t head = 16 + 4 * ((size_t)n + 1) + 4 * (size_t)nslots;
    uint8_t *b = calloc(1, head + bytes);
    if (!b)
        return CXM_ENOMEM;
    uint64_t magic = ITEMS_MAGIC;
    memcpy(b, &magic, 8);
    memcpy(b + 8, &n, 4);
    memcpy(b + 12, &nslots, 4);
    uint32_t *off = (uint32_t *)(void *)(b + 16), *slot = off + n + 1;
    char *text = (char *)(b + head);
    for (uint32_t i = 0; i < n; i++) {
        size_t l = strlen(ids->names[i]);
        memcpy(text + off[i], ids->names[i], l);
        off[i + 1] = off[i] + (uint32_t)l;
        uint32_t s = (uint32_t)cxm_hash(CXM_HASH_INIT, ids->names[i], l) & (nslots - 1);
        while (slot[s])
            s = (s + 1) & (nslots - 1);
        slot[s] = i + 1;
    }
    *out = b;
    *len = head + bytes;
    return 0;
}

static int items_view(const void *blob, size_t len, cxm_arena *a, recodb_items *t)
{
    const uint8_t *b = cxm_arena_aligned(a, blob, len, 4);
    uint64_t magic;
    if (!b)
        return CXM_ENOMEM;
    if (len < 16)
        return CXM_ECORRUPT;
    memcpy(&magic, b, 8);
    memcpy(&t->n, b + 8, 4);
    memcpy(&t->nslots, b + 12, 4);
    size_t head = 16 + 4 * ((size_t)t->n + 1) + 4 * (size_t)t->nslots;
    if (magic != ITEMS_MAGIC || head > len || t->nslots == 0 || (t->nslots & (t->nslots - 1)))
        return CXM_ECORRUPT;
    t->off = (const uint32_t *)(const void *)(b + 16);
    t->slot = t->off + t->n + 1;
    t->bytes = (const char *)(b + head);
    return t->off[t->n] == len - head ? 0 : CXM_ECORRUPT;
}

uint32_t recodb__items_find(const recodb_items *t, const char *id, size_t len)
{
    for (uint32_t s = (uint32_t)cxm_hash(CXM_HASH_INIT, id, len) & (t->nslots - 1);;
         s = (s + 1) & (t->nslots - 1)) {
        uint32_t i = t->slot[s];
        if (i == 0)
            return UINT32_MAX;
        i--;
        if (t->off[i + 1] - t->off[i] == len && memcmp(t->bytes + t->off[i], id, len) == 0)
            return i;
    }
}

const char *recodb__item_id(const recodb_items *t, uint32_t i, size_t *len)
{
    *len = t->off[i + 1] - t->off[i];
    return t->bytes + t->off[i];
}

/* A version stored before calibration existed serves with a = 1, b = 0. */
static void calib_read(cxm_txn *t, const recodb *db, uint64_t v, recodb_calib *c)
{
    uint8_t key[16];
    const void *p;
    size_t len;
    *c = (recodb_calib){.a = 1, .b = 0, .customers = 1};
    if (cxm_txn_get_ref(t, db->models, key, recodb__model_key(key, v, RECODB_PART_CALIB), &p,
                        &len) == 0 &&
        len == sizeof *c)
        memcpy(c, p, sizeof *c);
    if (c->magic != CALIB_MAGIC)
        *c = (recodb_calib){.a = 1, .b = 0, .customers = 1};
}

int recodb__load_items(const recodb *db, cxm_txn *t, cxm_arena *a, uint64_t version,
                       recodb_items *items)
{
    uint8_t key[16];
    const void *ib;
    size_t ilen;
    int rc = cxm_txn_get_ref(t, db->models, key, recodb__model_key(key, version, RECODB_PART_ITEMS),
                             &ib, &ilen);
    if (rc == 0)
        rc = items_view(ib, ilen, a, items);
    return rc == CXM_ENOTFOUND ? CXM_ECORRUPT : rc;
}

int recodb__load(const recodb *db, cxm_txn *t, cxm_arena *a, uint64_t version, recodb_served *s,
                 char *err, size_t errlen)
{
    s->version = version ? version : recodb__meta_get(t, db, "current");
    if (s->version == 0)
        return recodb__fail(err, errlen, CXM_ENOTFOUND, "no trained model yet; run training first");
    uint8_t key[16];
    const void *mb;
    size_t mlen;
    int rc = cxm_txn_get_ref(t, db->models, key,
                             recodb__model_key(key, s->version, RECODB_PART_MODEL), &mb, &mlen);
    if (rc == 0)
        rc = reco_model_view(mb, mlen, a, &s->model, err, errlen);
    if (rc == 0)
        rc = recodb__load_items(db, t, a, s->version, &s->items);
    if (rc == CXM_ENOTFOUND || rc == CXM_ECORRUPT || rc == CXM_EINVAL)
        return recodb__fail(err, errlen, CXM_ECORRUPT,
                            "model version %llu is damaged or incomplete",
                            (unsigned long long)s->version);
    if (rc == 0)
        calib_read(t, db, s->version, &s->calib);
    return rc;
}

/* Model scores through the stored Platt scaling; the popularity fill's
 * score is a rank, so its propensity is the item's share of customers who
 * took it up (decayed like the popularity itself): monotone decreasing in
 * the rank, and comparable with the model's probabilities. */
float recodb__propensity(const recodb_served *s, uint32_t item, float score, bool popular)
{
    if (popular) {
        double share = item < s->model->nitems ? s->model->pop_score[item] : 0;
        share /= s->calib.customers ? s->calib.customers : 1;
        return (float)(share < 0 ? 0 : share > 1 ? 1 : share);
    }
    double z = (double)s->calib.a * score + s->calib.b;
    return (float)(1 / (1 + exp(-z)));
}
