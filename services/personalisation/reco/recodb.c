/*
 * recodb.c - interaction log, model versions and serving (see recodb.h).
 *
 * Tables:
 *   reco.events  customer (str), ts (i64), FNV-1a of item (u64)
 *                -> weight (float) + item bytes
 *   reco.models  version (u64), part (u8: 0 model, 1 item table) -> blob
 *   reco.meta    "current" / "previous" / "last" -> version (u64, native)
 * Two ids of 256 bytes would not fit one key (LMDB's limit is 511 bytes),
 * hence the item's hash in the key and the item itself in the value.
 *
 * Item table blob (one per version, native byte order, 4-byte aligned):
 *   u64 magic, u32 n, u32 nslots | u32 off[n + 1] | u32 slot[nslots] | bytes
 * Item i's id is bytes[off[i] .. off[i + 1]); slot holds index + 1 (0 =
 * empty) in an open-addressing table on the id's FNV-1a hash, so serving
 * maps an id to its index with one or two probes, reading the map in place.
 */
#include "personalisation/reco/recodb.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "personalisation/reco/recoids.h"
#include "personalisation/reco/recolog.h"
#include "personalisation/reco/recomatrix.h"

#define DAY_SECONDS 86400.0
#define ITEMS_MAGIC UINT64_C(0x314d455449584d43) /* "CXMITEM1", little-endian */

enum { PART_MODEL = 0, PART_ITEMS = 1 };

struct recodb {
    cxm_store *store;
    MDB_dbi events, models, meta;
    recodb_opts opts;
};

struct recodb_reader {
    reco_scratch *scratch;
    uint32_t cap; /* max_history */
    uint32_t *hist;
    float *w;
    const char **seen; /* ids of the history read, for the extras */
    size_t *seen_len;
    uint32_t recs[RECODB_K_MAX];
    float scores[RECODB_K_MAX];
};

typedef struct item_table {
    uint32_t n, nslots;
    const uint32_t *off, *slot;
    const char *bytes;
} item_table;

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* NULL when id is acceptable, else what is wrong with it. */
static const char *id_problem(const char *id)
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

/* ---- opening ---- */

int recodb_open(cxm_store *store, const recodb_opts *opts, recodb **out)
{
    recodb *db = calloc(1, sizeof *db);
    if (!db)
        return CXM_ENOMEM;
    db->store = store;
    if (opts)
        db->opts = *opts;
    recodb_opts *o = &db->opts;
    o->max_history = o->max_history ? o->max_history : 200;
    /* Recency: on MovieLens-small's temporal split a one-year half-life
     * gave NDCG@10 +0.003 and 30 days -0.003 (cxm-eval --half-life). */
    o->recency_half_life = o->recency_half_life ? o->recency_half_life : 365 * DAY_SECONDS;
    o->popularity_half_life = o->popularity_half_life ? o->popularity_half_life : 14 * DAY_SECONDS;
    o->ease_budget = o->ease_budget ? o->ease_budget : UINT64_C(2) << 30;
    int rc = cxm_store_dbi(store, "reco.events", 0, &db->events);
    if (rc == 0)
        rc = cxm_store_dbi(store, "reco.models", 0, &db->models);
    if (rc == 0)
        rc = cxm_store_dbi(store, "reco.meta", 0, &db->meta);
    if (rc != 0) {
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void recodb_close(recodb *db)
{
    free(db);
}

/* ---- the log ---- */

static int event_key(uint8_t *buf, const char *customer, int64_t ts, const char *item, size_t *len)
{
    cxm_key k;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, customer);
    cxm_key_i64(&k, ts);
    cxm_key_u64(&k, cxm_hash(CXM_HASH_INIT, item, strlen(item)));
    return cxm_key_finish(&k, len);
}

static int event_check(const recodb_event *e, size_t i, char *err, size_t errlen)
{
    const char *why;
    if ((why = id_problem(e->customer)))
        return fail(err, errlen, CXM_EINVAL, "event %zu: customer %s", i, why);
    if ((why = id_problem(e->item)))
        return fail(err, errlen, CXM_EINVAL, "event %zu: item %s", i, why);
    if (!(e->weight > 0) || !isfinite(e->weight))
        return fail(err, errlen, CXM_EINVAL, "event %zu: weight must be a finite number > 0", i);
    if (e->ts < 0)
        return fail(err, errlen, CXM_EINVAL, "event %zu: ts must be >= 0 (seconds since 1970)", i);
    return 0;
}

typedef struct append_job {
    recodb *db;
    const recodb_event *ev;
    size_t n;
} append_job;

static int append_fn(cxm_txn *t, void *user)
{
    const append_job *j = user;
    for (size_t i = 0; i < j->n; i++) {
        const recodb_event *e = &j->ev[i];
        uint8_t key[CXM_KEY_MAX], val[sizeof(float) + RECODB_ID_MAX];
        size_t klen, ilen = strlen(e->item);
        int rc = event_key(key, e->customer, e->ts, e->item, &klen);
        memcpy(val, &e->weight, sizeof e->weight);
        memcpy(val + sizeof e->weight, e->item, ilen);
        if (rc == 0)
            rc = cxm_txn_put(t, j->db->events, key, klen, val, sizeof e->weight + ilen, 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int recodb_append(recodb *db, const recodb_event *ev, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int rc = event_check(&ev[i], i, err, errlen);
        if (rc != 0)
            return rc;
    }
    append_job j = {db, ev, n};
    int rc = n ? cxm_store_write(db->store, append_fn, &j) : 0;
    return rc ? fail(err, errlen, rc, "appending events: %s", cxm_store_last_error()) : 0;
}

/* ---- versions ---- */

static uint64_t meta_get(cxm_txn *t, const recodb *db, const char *name)
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

static size_t model_key(uint8_t *buf, uint64_t version, uint8_t part)
{
    cxm_key k;
    size_t len;
    cxm_key_init(&k, buf, 16);
    cxm_key_u64(&k, version);
    cxm_key_u8(&k, part);
    cxm_key_finish(&k, &len);
    return len;
}

/* Delete both parts of every version below `keep` (0 = of every version). */
static int drop_versions_below(cxm_txn *t, const recodb *db, uint64_t keep)
{
    uint8_t to[16];
    size_t tolen = model_key(to, keep, 0);
    for (;;) {
        cxm_iter it;
        uint8_t key[16];
        size_t klen = 0;
        int rc =
            cxm_iter_range(t, db->models, NULL, 0, keep ? to : NULL, keep ? tolen : 0, false, &it);
        if (rc == 0 && (rc = cxm_iter_next(&it)) == 0 && it.klen <= sizeof key)
            memcpy(key, it.key, klen = it.klen);
        cxm_iter_close(&it);
        if (rc == CXM_ENOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
        if ((rc = cxm_txn_del(t, db->models, key, klen)) != 0)
            return rc;
    }
}

static int drop_version(cxm_txn *t, const recodb *db, uint64_t version)
{
    uint8_t key[16];
    for (uint8_t part = PART_MODEL; part <= PART_ITEMS; part++) {
        int rc = cxm_txn_del(t, db->models, key, model_key(key, version, part));
        if (rc != 0 && rc != CXM_ENOTFOUND)
            return rc;
    }
    return 0;
}

typedef struct publish_job {
    recodb *db;
    const void *model, *items;
    size_t model_len, items_len;
    uint64_t version; /* out */
} publish_job;

static int publish_fn(cxm_txn *t, void *user)
{
    publish_job *j = user;
    const recodb *db = j->db;
    uint64_t current = meta_get(t, db, "current"), last = meta_get(t, db, "last");
    uint64_t v = (last > current ? last : current) + 1;
    uint8_t key[16];
    int rc =
        cxm_txn_put(t, db->models, key, model_key(key, v, PART_MODEL), j->model, j->model_len, 0);
    if (rc == 0)
        rc = cxm_txn_put(t, db->models, key, model_key(key, v, PART_ITEMS), j->items, j->items_len,
                         0);
    if (rc == 0) /* keep the version being replaced, for rollback */
        rc = drop_versions_below(t, db, current ? current : v);
    if (rc == 0)
        rc = meta_put(t, db, "previous", current);
    if (rc == 0)
        rc = meta_put(t, db, "current", v);
    if (rc == 0)
        rc = meta_put(t, db, "last", v);
    j->version = v;
    return rc;
}

static int rollback_fn(cxm_txn *t, void *user)
{
    const recodb *db = user;
    uint64_t current = meta_get(t, db, "current"), previous = meta_get(t, db, "previous");
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
        return fail(err, errlen, rc, "no previous model version to roll back to");
    if (rc != 0)
        return fail(err, errlen, rc, "rolling back: %s", cxm_store_last_error());
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
    j->current = meta_get(t, j->db, "current");
    j->previous = meta_get(t, j->db, "previous");
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

/* ---- training ---- */

typedef struct train_data {
    recoids customers, items;
    recolog log;
} train_data;

static int scan_event(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    train_data *d = user;
    char customer[RECODB_ID_MAX + 1];
    size_t clen;
    int64_t ts;
    uint64_t hash;
    cxm_keyreader r;
    cxm_keyreader_init(&r, key, klen);
    cxm_keyread_bytes(&r, customer, sizeof customer, &clen);
    cxm_keyread_i64(&r, &ts);
    cxm_keyread_u64(&r, &hash);
    if (cxm_keyread_end(&r) != 0 || vlen <= sizeof(float) || vlen > sizeof(float) + RECODB_ID_MAX)
        return CXM_ECORRUPT;
    recolog_event e = {.ts = ts};
    memcpy(&e.rating, val, sizeof e.rating);
    int rc = recoids_intern(&d->customers, customer, clen, &e.user);
    if (rc == 0)
        rc = recoids_intern(&d->items, (const char *)val + sizeof(float), vlen - sizeof(float),
                            &e.item);
    return rc ? rc : recolog_push(&d->log, &e);
}

typedef struct scan_job {
    const recodb *db;
    train_data *d;
} scan_job;

static int scan_fn(cxm_txn *t, void *user)
{
    scan_job *j = user;
    return cxm_txn_scan_prefix(t, j->db->events, NULL, 0, false, scan_event, j->d);
}

static void train_data_free(train_data *d)
{
    recoids_free(&d->customers);
    recoids_free(&d->items);
    recolog_free(&d->log);
}

/* The item table blob of ids[0..n) (see the top of this file). */
static int items_pack(const recoids *ids, void **out, size_t *len)
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

static reco_algo pick_algo(const recodb *db, reco_algo algo, const reco_matrix *x)
{
    if (algo)
        return algo;
    return reco_ease_bytes(x) <= db->opts.ease_budget ? RECO_EASE : RECO_ITEMKNN;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Read and train: everything before the write transaction. */
static int train_model(recodb *db, reco_algo algo, train_data *d, reco_matrix *x,
                       recodb_train_report *rep, reco_model **model, char *err, size_t errlen)
{
    scan_job scan = {db, d};
    int rc = cxm_store_read(db->store, scan_fn, &scan);
    if (rc != 0)
        return fail(err, errlen, rc, "reading the interaction log: %s", cxm_strerror(rc));
    if (d->log.n == 0)
        return fail(err, errlen, CXM_EINVAL, "no interactions to train on; append some first");
    recolog_dedupe(&d->log);
    if ((rc = recomatrix_build(&d->log, d->customers.n, d->items.n, x)) != 0)
        return fail(err, errlen, rc, "building the interaction matrix: %s", cxm_strerror(rc));
    reco_params p;
    rep->algo = pick_algo(db, algo, x);
    reco_params_default(rep->algo, &p);
    p.half_life = db->opts.popularity_half_life > 0 ? db->opts.popularity_half_life : 0;
    if (db->opts.neighbours)
        p.neighbours = db->opts.neighbours;
    rep->customers = d->customers.n;
    rep->items = d->items.n;
    rep->interactions = d->log.n;
    return reco_train(rep->algo, &p, x, model, err, errlen);
}

int recodb_train(recodb *db, reco_algo algo, recodb_train_report *rep, char *err, size_t errlen)
{
    double t0 = now_seconds();
    train_data d = {0};
    reco_matrix x = {0};
    reco_model *model = NULL;
    publish_job j = {.db = db};
    *rep = (recodb_train_report){0};
    int rc = train_model(db, algo, &d, &x, rep, &model, err, errlen);
    void *mblob = NULL, *iblob = NULL;
    if (rc == 0 && ((rc = reco_model_pack(model, &mblob, &j.model_len)) != 0 ||
                    (rc = items_pack(&d.items, &iblob, &j.items_len)) != 0))
        fail(err, errlen, rc, "out of memory packing the model");
    if (rc == 0) {
        j.model = mblob;
        j.items = iblob;
        rc = cxm_store_write(db->store, publish_fn, &j);
        if (rc != 0)
            fail(err, errlen, rc, "writing the model: %s", cxm_store_last_error());
    }
    rep->version = rc == 0 ? j.version : 0;
    rep->model_bytes = rc == 0 ? j.model_len : 0;
    rep->seconds = now_seconds() - t0;
    free(mblob);
    free(iblob);
    reco_model_free(model);
    recomatrix_free(&x);
    train_data_free(&d);
    return rc;
}

/* ---- serving ---- */

int recodb_reader_create(const recodb *db, recodb_reader **out)
{
    recodb_reader *r = calloc(1, sizeof *r);
    if (!r)
        return CXM_ENOMEM;
    r->cap = db->opts.max_history;
    r->hist = malloc(r->cap * sizeof *r->hist);
    r->w = malloc(r->cap * sizeof *r->w);
    r->seen = malloc(r->cap * sizeof *r->seen);
    r->seen_len = malloc(r->cap * sizeof *r->seen_len);
    if (!r->hist || !r->w || !r->seen || !r->seen_len || reco_scratch_create(NULL, &r->scratch)) {
        recodb_reader_free(r);
        return CXM_ENOMEM;
    }
    *out = r;
    return 0;
}

void recodb_reader_free(recodb_reader *r)
{
    if (!r)
        return;
    reco_scratch_free(r->scratch);
    free(r->hist);
    free(r->w);
    free(r->seen);
    free(r->seen_len);
    free(r);
}

static int query_check(const recodb_query *q, char *err, size_t errlen)
{
    const char *why;
    if ((why = id_problem(q->customer)))
        return fail(err, errlen, CXM_EINVAL, "customer %s", why);
    if (q->k < 1 || q->k > RECODB_K_MAX)
        return fail(err, errlen, CXM_EINVAL, "k must be 1..%d", RECODB_K_MAX);
    if (q->nexclude > RECODB_EXCLUDE_MAX)
        return fail(err, errlen, CXM_EINVAL, "exclude has more than %d ids", RECODB_EXCLUDE_MAX);
    if (q->nextra > RECODB_EXTRA_MAX)
        return fail(err, errlen, CXM_EINVAL, "extra has more than %d items", RECODB_EXTRA_MAX);
    for (size_t i = 0; i < q->nexclude; i++)
        if ((why = id_problem(q->exclude[i])))
            return fail(err, errlen, CXM_EINVAL, "exclude[%zu] %s", i, why);
    for (size_t i = 0; i < q->nextra; i++) {
        if ((why = id_problem(q->extra[i].item)))
            return fail(err, errlen, CXM_EINVAL, "extra[%zu].item %s", i, why);
        if (isnan(q->extra[i].score))
            return fail(err, errlen, CXM_EINVAL, "extra[%zu].score is not a number", i);
    }
    return 0;
}

static int items_view(const void *blob, size_t len, cxm_arena *a, item_table *t)
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

static uint32_t items_find(const item_table *t, const char *id, size_t len)
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

/* The model and item table of the current version, in place. */
typedef struct served {
    uint64_t version;
    const reco_model *model;
    item_table items;
} served;

static int load_current(const recodb *db, cxm_txn *t, cxm_arena *a, served *s, char *err,
                        size_t errlen)
{
    s->version = meta_get(t, db, "current");
    if (s->version == 0)
        return fail(err, errlen, CXM_ENOTFOUND, "no trained model yet; run training first");
    uint8_t key[16];
    const void *mb, *ib;
    size_t mlen, ilen;
    int rc =
        cxm_txn_get_ref(t, db->models, key, model_key(key, s->version, PART_MODEL), &mb, &mlen);
    if (rc == 0)
        rc =
            cxm_txn_get_ref(t, db->models, key, model_key(key, s->version, PART_ITEMS), &ib, &ilen);
    if (rc == 0)
        rc = reco_model_view(mb, mlen, a, &s->model, err, errlen);
    if (rc == 0)
        rc = items_view(ib, ilen, a, &s->items);
    if (rc == CXM_ENOTFOUND || rc == CXM_ECORRUPT || rc == CXM_EINVAL)
        return fail(err, errlen, CXM_ECORRUPT, "model version %llu is damaged or incomplete",
                    (unsigned long long)s->version);
    return rc;
}

/* The customer's latest interactions, newest first: model indices with
 * decayed weights into r->hist/r->w, every id into r->seen. Returns how
 * many ids were read (>= *nhist). */
static int read_history(const recodb *db, recodb_reader *r, cxm_txn *t, const served *s,
                        const recodb_query *q, size_t *nseen, size_t *nhist)
{
    uint8_t prefix[CXM_KEY_MAX];
    size_t plen;
    cxm_key k;
    cxm_key_init(&k, prefix, sizeof prefix);
    cxm_key_str(&k, q->customer);
    cxm_key_finish(&k, &plen);
    cxm_iter it;
    int rc = cxm_iter_prefix(t, db->events, prefix, plen, true, &it);
    double now = (double)(q->now ? q->now : (int64_t)time(NULL)), h = db->opts.recency_half_life;
    *nseen = *nhist = 0;
    while (rc == 0 && *nseen < r->cap && (rc = cxm_iter_next(&it)) == 0) {
        cxm_keyreader kr;
        int64_t ts = 0;
        cxm_keyreader_init(&kr, it.key, it.klen);
        cxm_keyread_skip_bytes(&kr);
        cxm_keyread_i64(&kr, &ts);
        if (it.vlen <= sizeof(float)) {
            rc = CXM_ECORRUPT;
            break;
        }
        float weight;
        memcpy(&weight, it.val, sizeof weight);
        const char *id = (const char *)it.val + sizeof weight;
        size_t idlen = it.vlen - sizeof weight;
        r->seen[*nseen] = id;
        r->seen_len[(*nseen)++] = idlen;
        uint32_t i = items_find(&s->items, id, idlen);
        if (i == UINT32_MAX) /* newer than the model */
            continue;
        double age = now - (double)ts > 0 ? now - (double)ts : 0;
        r->hist[*nhist] = i;
        r->w[(*nhist)++] = h > 0 ? weight * (float)exp2(-age / h) : weight;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static bool seen_by(const recodb_reader *r, size_t nseen, const char *id)
{
    size_t len = strlen(id);
    for (size_t i = 0; i < nseen; i++)
        if (r->seen_len[i] == len && memcmp(r->seen[i], id, len) == 0)
            return true;
    return false;
}

static bool listed(const char *const *ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return true;
    return false;
}

/* Merge the business-rules candidates into out[0..n) (room for n + nextra),
 * keep the best k, best first. */
static size_t merge_extra(const recodb_reader *r, size_t nseen, const recodb_query *q,
                          recodb_rec *out, size_t n)
{
    for (size_t e = 0; e < q->nextra; e++) {
        const recodb_rec *x = &q->extra[e];
        if (seen_by(r, nseen, x->item) || listed(q->exclude, q->nexclude, x->item))
            continue;
        size_t at = 0;
        while (at < n && strcmp(out[at].item, x->item) != 0)
            at++;
        if (at == n)
            out[n++] = *x;
        else if (x->score > out[at].score)
            out[at].score = x->score;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a few hundred at most */
        for (size_t j = i; j > 0 && out[j].score > out[j - 1].score; j--) {
            recodb_rec tmp = out[j];
            out[j] = out[j - 1];
            out[j - 1] = tmp;
        }
    return n < q->k ? n : q->k;
}

static int serve(recodb *db, recodb_reader *r, cxm_txn *t, cxm_arena *a, const recodb_query *q,
                 recodb_rec **out, size_t *nout, uint64_t *version, char *err, size_t errlen)
{
    served s;
    size_t nseen, nhist, nexcl = 0;
    int rc = load_current(db, t, a, &s, err, errlen);
    if (rc != 0)
        return rc;
    if ((rc = reco_scratch_fit(r->scratch, s.model)) != 0 ||
        (rc = read_history(db, r, t, &s, q, &nseen, &nhist)) != 0)
        return fail(err, errlen, rc, "reading the history of %s: %s", q->customer,
                    cxm_strerror(rc));
    uint32_t *excl = cxm_arena_alloc(a, (q->nexclude + 1) * sizeof *excl);
    recodb_rec *recs = cxm_arena_alloc(a, (q->k + q->nextra) * sizeof *recs);
    if (!excl || !recs)
        return fail(err, errlen, CXM_ENOMEM, "out of memory for the answer");
    for (size_t i = 0; i < q->nexclude; i++) {
        uint32_t j = items_find(&s.items, q->exclude[i], strlen(q->exclude[i]));
        if (j != UINT32_MAX)
            excl[nexcl++] = j;
    }
    size_t n = reco_recommend(s.model, r->scratch, r->hist, r->w, nhist, excl, nexcl, q->k, r->recs,
                              r->scores);
    for (size_t i = 0; i < n; i++) {
        uint32_t j = r->recs[i];
        const char *id = s.items.bytes + s.items.off[j];
        recs[i] = (recodb_rec){cxm_arena_strndup(a, id, s.items.off[j + 1] - s.items.off[j]),
                               r->scores[i]};
        if (!recs[i].item)
            return fail(err, errlen, CXM_ENOMEM, "out of memory for the answer");
    }
    *nout = merge_extra(r, nseen, q, recs, n);
    *out = recs;
    if (version)
        *version = s.version;
    return 0;
}

int recodb_recommend(recodb *db, recodb_reader *r, cxm_arena *a, const recodb_query *q,
                     recodb_rec **out, size_t *nout, uint64_t *version, char *err, size_t errlen)
{
    int rc = query_check(q, err, errlen);
    if (rc != 0)
        return rc;
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(db->store, &t)) != 0)
        return fail(err, errlen, rc, "opening a read transaction: %s", cxm_store_last_error());
    rc = serve(db, r, t, a, q, out, nout, version, err, errlen);
    cxm_store_read_end(t);
    return rc;
}
