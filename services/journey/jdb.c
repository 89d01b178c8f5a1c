/*
 * jdb.c - the journey tables in LMDB (see jdb.h).
 */
#include "jdb.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/keyenc.h"
#include "cxm/log.h"

#define META_SEQ "seq"
#define META_DICT "dict"
#define META_SWEEP "sweep_pos"
#define MAX_HOPS 64 /* merge chain length: more is a cycle or corruption */

/* The dictionary cache: string -> id (open addressing) and id -> string. */
typedef struct dict_cache {
    char **names; /* by id; names[0] unused */
    size_t nnames, cap_names;
    uint32_t *slots; /* ids, 0 = empty */
    size_t nslots;   /* power of two */
} dict_cache;

typedef struct dict_staged {
    uint32_t id;
    char *name;
} dict_staged;

struct jdb {
    cxm_store *store;
    MDB_dbi dedup, pending, tl, cols, dict, merged, members, groups, state, segments, csegs,
        feedback, rules, meta, idents;
    pthread_rwlock_t lock; /* guards cache */
    dict_cache cache;
    dict_staged *staged; /* made by the writer, not yet committed */
    size_t nstaged, cap_staged;
    atomic_bool full_logged;
    char base_currency[4]; /* "" or an ISO 4217 code */
};

/* ---- small helpers ---- */

static size_t key_str(uint8_t *buf, const char *s)
{
    cxm_key k;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, s);
    size_t n = 0;
    return cxm_key_finish(&k, &n) == 0 ? n : 0;
}

static size_t key_str2(uint8_t *buf, const char *a, const char *b)
{
    cxm_key k;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, a);
    cxm_key_str(&k, b);
    size_t n = 0;
    return cxm_key_finish(&k, &n) == 0 ? n : 0;
}

static size_t key_tl(uint8_t *buf, const char *home, int64_t at, uint64_t eid)
{
    cxm_key k;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, home);
    cxm_key_i64(&k, at);
    cxm_key_u64(&k, eid);
    size_t n = 0;
    return cxm_key_finish(&k, &n) == 0 ? n : 0;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int put_msg(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a,
                   const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = cxm_arena_alloc(a, n ? n : 1);
    if (!buf)
        return CXM_ENOMEM;
    protobuf_c_message_pack(m, buf);
    return cxm_txn_put(t, dbi, key, klen, buf, n, 0);
}

static int get_msg(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a,
                   const ProtobufCMessageDescriptor *d, void **out)
{
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, dbi, key, klen, &v, &n);
    if (rc != 0)
        return rc;
    void *m = protobuf_c_message_unpack(d, cxm_arena_protobuf(a), n, v);
    if (!m)
        return CXM_ECORRUPT;
    *out = m;
    return 0;
}

/* Delete key; an absent key is no error. */
static int del_quiet(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen)
{
    int rc = cxm_txn_del(t, dbi, key, klen);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* Delete key, counting it when it was there. */
static int del_counted(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, uint64_t *count)
{
    int rc = cxm_txn_del(t, dbi, key, klen);
    if (rc == 0)
        (*count)++;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

int jdb_meta_get(cxm_txn *t, jdb *db, const char *name, uint64_t *v)
{
    const void *p;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->meta, name, strlen(name), &p, &n);
    if (rc == CXM_ENOTFOUND) {
        *v = 0;
        return 0;
    }
    if (rc == 0 && n != 8)
        rc = CXM_ECORRUPT;
    if (rc == 0)
        *v = rd64(p);
    return rc;
}

int jdb_meta_put(cxm_txn *t, jdb *db, const char *name, uint64_t v)
{
    uint8_t b[8];
    be64(b, v);
    return cxm_txn_put(t, db->meta, name, strlen(name), b, 8, 0);
}

/* ---- dictionary cache ---- */

static uint64_t str_hash(const char *s)
{
    return cxm_hash(CXM_HASH_INIT, s, strlen(s));
}

static uint32_t cache_find(const dict_cache *c, const char *s)
{
    if (!c->nslots)
        return 0;
    for (size_t i = str_hash(s) & (c->nslots - 1);; i = (i + 1) & (c->nslots - 1)) {
        uint32_t id = c->slots[i];
        if (id == 0 || strcmp(c->names[id], s) == 0)
            return id;
    }
}

static int cache_grow_slots(dict_cache *c)
{
    size_t n = c->nslots ? c->nslots * 2 : 1024;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots)
        return CXM_ENOMEM;
    for (size_t id = 1; id < c->nnames; id++) {
        if (!c->names[id])
            continue;
        size_t i = str_hash(c->names[id]) & (n - 1);
        while (slots[i])
            i = (i + 1) & (n - 1);
        slots[i] = (uint32_t)id;
    }
    free(c->slots);
    c->slots = slots;
    c->nslots = n;
    return 0;
}

/* Add (id, name) to the cache; name is taken over. */
static int cache_add(dict_cache *c, uint32_t id, char *name)
{
    if (id >= c->cap_names) {
        size_t cap = c->cap_names ? c->cap_names : 256;
        while (cap <= id)
            cap *= 2;
        char **names = realloc(c->names, cap * sizeof *names);
        if (!names)
            return CXM_ENOMEM;
        memset(names + c->cap_names, 0, (cap - c->cap_names) * sizeof *names);
        c->names = names;
        c->cap_names = cap;
    }
    if (c->names[id]) { /* already known (loaded twice): keep the first */
        free(name);
        return 0;
    }
    /* Grow before adding, so a failure leaves the cache as it was. */
    if ((c->nnames + 2) * 2 > c->nslots && cache_grow_slots(c) != 0)
        return CXM_ENOMEM;
    c->names[id] = name;
    if (id >= c->nnames)
        c->nnames = id + 1;
    size_t i = str_hash(name) & (c->nslots - 1);
    while (c->slots[i])
        i = (i + 1) & (c->nslots - 1);
    c->slots[i] = id;
    return 0;
}

static void cache_free(dict_cache *c)
{
    for (size_t i = 0; i < c->nnames; i++)
        free(c->names[i]);
    free(c->names);
    free(c->slots);
}

static int load_dict_fn(cxm_txn *t, void *user)
{
    jdb *db = user;
    cxm_iter it;
    int rc = cxm_iter_prefix(t, db->dict, "i", 1, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        if (it.klen != 5)
            continue;
        const uint8_t *k = it.key;
        uint32_t id = rd32(k + 1);
        if (id == 0 || id > JDB_DICT_MAX + 1) { /* 0 marks an empty slot; more would be huge */
            rc = CXM_ECORRUPT;
            break;
        }
        char *name = strndup(it.val, it.vlen);
        if (!name || cache_add(&db->cache, id, name) != 0) {
            free(name);
            rc = CXM_ENOMEM;
        }
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* Make sure JDB_DICT_OTHER has an id, so the cap never stores id 0. */
static int other_fn(cxm_txn *t, void *user)
{
    uint32_t id;
    jdb_dict_rollback(user);
    return jdb_dict_intern(t, user, JDB_DICT_OTHER, &id);
}

/* ---- open, close ---- */

int jdb_open(cxm_store *store, jdb **out)
{
    jdb *db = calloc(1, sizeof *db);
    if (!db)
        return CXM_ENOMEM;
    const cxm_store_table tables[] = {
        {"journey.dedup", &db->dedup},     {"journey.pending", &db->pending},
        {"journey.tl", &db->tl},           {"journey.cols", &db->cols},
        {"journey.dict", &db->dict},       {"journey.merged", &db->merged},
        {"journey.members", &db->members}, {"journey.groups", &db->groups},
        {"journey.state", &db->state},     {"journey.segments", &db->segments},
        {"journey.csegs", &db->csegs},     {"journey.feedback", &db->feedback},
        {"journey.rules", &db->rules},     {"journey.meta", &db->meta},
        {"journey.idents", &db->idents},
    };
    db->store = store;
    pthread_rwlock_init(&db->lock, NULL);
    int rc = cxm_store_dbis(store, tables, sizeof tables / sizeof tables[0]);
    if (rc == 0)
        rc = cxm_store_read(store, load_dict_fn, db);
    if (rc == 0 && !cache_find(&db->cache, JDB_DICT_OTHER)) {
        rc = cxm_store_write(store, other_fn, db);
        if (rc == 0)
            jdb_dict_commit(db);
    }
    if (rc != 0) {
        jdb_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void jdb_close(jdb *db)
{
    if (!db)
        return;
    jdb_dict_rollback(db);
    free(db->staged);
    cache_free(&db->cache);
    pthread_rwlock_destroy(&db->lock);
    free(db);
}

cxm_store *jdb_store(const jdb *db)
{
    return db->store;
}

/* ---- ingest ---- */

int jdb_dedup(cxm_txn *t, jdb *db, const char *event_id, int64_t now, int64_t window_ms, bool *dup)
{
    size_t klen = strlen(event_id);
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->dedup, event_id, klen, &v, &n);
    if (rc == 0 && n == 8 && now - (int64_t)rd64(v) < window_ms) {
        *dup = true;
        return 0;
    }
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    uint8_t b[8];
    be64(b, (uint64_t)now);
    *dup = false;
    return cxm_txn_put(t, db->dedup, event_id, klen, b, 8, 0);
}

int jdb_dedup_sweep(cxm_txn *t, jdb *db, int64_t before, size_t max, size_t *removed)
{
    uint8_t pos[CXM_KEY_MAX];
    size_t plen = 0;
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->meta, META_SWEEP, strlen(META_SWEEP), &v, &n);
    if (rc == 0 && n <= sizeof pos) {
        memcpy(pos, v, n);
        plen = n;
    } else if (rc != CXM_ENOTFOUND && rc != 0) {
        return rc;
    }
    *removed = 0;
    /* Collect first, delete after: deleting under an open cursor is not
     * something the iterator promises to survive. */
    size_t cap = max * 4, nseen = 0, ndel = 0;
    uint8_t(*dels)[CXM_KEY_MAX] = malloc((max ? max : 1) * sizeof *dels);
    size_t *dlens = malloc((max ? max : 1) * sizeof *dlens);
    if (!dels || !dlens) {
        free(dels);
        free(dlens);
        return CXM_ENOMEM;
    }
    cxm_iter it;
    rc = cxm_iter_range(t, db->dedup, plen ? pos : NULL, plen, NULL, 0, false, &it);
    bool wrapped = false;
    while (rc == 0 && nseen < cap && ndel < max) {
        rc = cxm_iter_next(&it);
        if (rc == CXM_ENOTFOUND) { /* the end: start from the first key next time */
            wrapped = true;
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        nseen++;
        if (it.klen <= CXM_KEY_MAX) {
            memcpy(pos, it.key, it.klen);
            plen = it.klen;
        }
        if (it.vlen == 8 && (int64_t)rd64(it.val) < before && it.klen <= CXM_KEY_MAX) {
            memcpy(dels[ndel], it.key, it.klen);
            dlens[ndel++] = it.klen;
        }
    }
    cxm_iter_close(&it);
    for (size_t i = 0; rc == 0 && i < ndel; i++)
        if ((rc = cxm_txn_del(t, db->dedup, dels[i], dlens[i])) == 0)
            (*removed)++;
    free(dels);
    free(dlens);
    if (rc != 0)
        return rc;
    if (wrapped)
        return del_quiet(t, db->meta, META_SWEEP, strlen(META_SWEEP));
    return cxm_txn_put(t, db->meta, META_SWEEP, strlen(META_SWEEP), pos, plen, 0);
}

int jdb_pending_append(cxm_txn *t, jdb *db, cxm_arena *a, const Cxm__V1__TouchpointEvent *ev)
{
    uint64_t seq;
    int rc = jdb_meta_get(t, db, META_SEQ, &seq);
    if (rc != 0 || (rc = jdb_meta_put(t, db, META_SEQ, seq + 1)) != 0)
        return rc;
    uint8_t k[8];
    be64(k, seq + 1);
    return put_msg(t, db->pending, k, 8, a, &ev->base);
}

int jdb_pending_append_packed(cxm_txn *t, jdb *db, const void *packed, size_t len)
{
    uint64_t seq;
    int rc = jdb_meta_get(t, db, META_SEQ, &seq);
    if (rc != 0 || (rc = jdb_meta_put(t, db, META_SEQ, seq + 1)) != 0)
        return rc;
    uint8_t k[8];
    be64(k, seq + 1);
    return cxm_txn_put(t, db->pending, k, 8, packed, len, 0);
}

int jdb_pending_oldest(cxm_txn *t, jdb *db, cxm_arena *a, size_t max, jdb_pending *out, size_t *n)
{
    cxm_iter it;
    size_t k = 0;
    int rc = cxm_iter_prefix(t, db->pending, NULL, 0, false, &it);
    while (rc == 0 && k < max && (rc = cxm_iter_next(&it)) == 0) {
        if (it.klen != 8)
            continue;
        Cxm__V1__TouchpointEvent *ev = (Cxm__V1__TouchpointEvent *)protobuf_c_message_unpack(
            &cxm__v1__touchpoint_event__descriptor, cxm_arena_protobuf(a), it.vlen, it.val);
        if (!ev) {
            rc = CXM_ECORRUPT;
            break;
        }
        out[k++] = (jdb_pending){rd64(it.key), ev};
    }
    cxm_iter_close(&it);
    if (rc == CXM_ENOTFOUND || rc == 0) {
        *n = k;
        return 0;
    }
    return rc;
}

int jdb_pending_del(cxm_txn *t, jdb *db, uint64_t seq)
{
    uint8_t k[8];
    be64(k, seq);
    return cxm_txn_del(t, db->pending, k, 8);
}

/* The customer ref (field 2, a CustomerRef) of a packed TouchpointEvent,
 * unpacked alone with malloc (the caller frees it): decoding the whole
 * event would allocate far more. NULL when absent or malformed. */
static Cxm__V1__CustomerRef *packed_ref(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint64_t tag = 0;
        int shift = 0;
        while (i < n && shift < 64) {
            tag |= (uint64_t)(p[i] & 0x7f) << shift;
            shift += 7;
            if (!(p[i++] & 0x80))
                break;
        }
        unsigned wt = tag & 7;
        uint64_t len = 0;
        if (wt == 0) {
            while (i < n && (p[i++] & 0x80))
                ;
            continue;
        }
        if (wt == 1 || wt == 5) {
            i += wt == 1 ? 8 : 4;
            continue;
        }
        if (wt != 2)
            return NULL;
        shift = 0;
        while (i < n && shift < 64) {
            len |= (uint64_t)(p[i] & 0x7f) << shift;
            shift += 7;
            if (!(p[i++] & 0x80))
                break;
        }
        if (len > n - i)
            return NULL;
        if (tag >> 3 == 2)
            return cxm__v1__customer_ref__unpack(NULL, len, p + i);
        i += len;
    }
    return NULL;
}

/* The customer id a packed TouchpointEvent's ref names, copied into buf
 * (CXM_KEY_MAX + 1 bytes); false when it names none (or one too long to be
 * stored). */
static bool packed_ref_id(const uint8_t *p, size_t n, char *buf)
{
    Cxm__V1__CustomerRef *ref = packed_ref(p, n);
    bool is = ref && ref->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID &&
              strlen(ref->customer_id) <= CXM_KEY_MAX;
    if (is)
        strcpy(buf, ref->customer_id);
    if (ref)
        cxm__v1__customer_ref__free_unpacked(ref, NULL);
    return is;
}

int jdb_pending_count(cxm_txn *t, jdb *db, const char *customer_id, uint64_t *n)
{
    if (!customer_id) {
        MDB_stat st;
        int rc = mdb_stat(cxm_txn_mdb(t), db->pending, &st);
        if (rc != 0)
            return cxm_err_from_mdb(rc);
        *n = st.ms_entries;
        return 0;
    }
    cxm_iter it;
    uint64_t k = 0;
    int rc = cxm_iter_prefix(t, db->pending, NULL, 0, false, &it);
    /* Bounded: a state read must stay cheap while a backlog of millions
     * waits for the profile service. */
    char ref[CXM_KEY_MAX + 1];
    for (size_t seen = 0; rc == 0 && seen < JDB_PENDING_SCAN_MAX && (rc = cxm_iter_next(&it)) == 0;
         seen++)
        k += packed_ref_id(it.val, it.vlen, ref) && strcmp(ref, customer_id) == 0;
    cxm_iter_close(&it);
    if (rc != CXM_ENOTFOUND && rc != 0)
        return rc;
    *n = k;
    return 0;
}

/* ---- dictionary ---- */

int jdb_dict_intern(cxm_txn *t, jdb *db, const char *s, uint32_t *id)
{
    pthread_rwlock_rdlock(&db->lock);
    uint32_t found = cache_find(&db->cache, s);
    pthread_rwlock_unlock(&db->lock);
    if (found) {
        *id = found;
        return 0;
    }
    uint8_t k[CXM_KEY_MAX + 1];
    size_t len = strlen(s);
    if (len + 1 > sizeof k)
        return CXM_ETOOBIG;
    k[0] = 's';
    memcpy(k + 1, s, len);
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->dict, k, len + 1, &v, &n);
    if (rc == 0 && n == 4) { /* made earlier in this transaction */
        *id = rd32(v);
        return 0;
    }
    if (rc != CXM_ENOTFOUND)
        return rc == 0 ? CXM_ECORRUPT : rc;
    uint64_t next;
    if ((rc = jdb_meta_get(t, db, META_DICT, &next)) != 0)
        return rc;
    if (next >= JDB_DICT_MAX && strcmp(s, JDB_DICT_OTHER) != 0) {
        if (!atomic_exchange(&db->full_logged, true))
            cxm_log_warn("journey.dict_full",
                         "%d distinct event types and touchpoints are stored: \"%.64s\" and any "
                         "further new name are stored as \"%s\"",
                         JDB_DICT_MAX, s, JDB_DICT_OTHER);
        return jdb_dict_intern(t, db, JDB_DICT_OTHER, id);
    }
    uint32_t nid = (uint32_t)next + 1;
    uint8_t b[4] = {(uint8_t)(nid >> 24), (uint8_t)(nid >> 16), (uint8_t)(nid >> 8), (uint8_t)nid};
    uint8_t ik[5] = {'i', b[0], b[1], b[2], b[3]};
    if ((rc = cxm_txn_put(t, db->dict, k, len + 1, b, 4, 0)) != 0 ||
        (rc = cxm_txn_put(t, db->dict, ik, 5, s, len, 0)) != 0 ||
        (rc = jdb_meta_put(t, db, META_DICT, nid)) != 0)
        return rc;
    if (db->nstaged == db->cap_staged) {
        size_t cap = db->cap_staged ? db->cap_staged * 2 : 16;
        dict_staged *st = realloc(db->staged, cap * sizeof *st);
        if (!st)
            return CXM_ENOMEM;
        db->staged = st;
        db->cap_staged = cap;
    }
    char *copy = strdup(s);
    if (!copy)
        return CXM_ENOMEM;
    db->staged[db->nstaged++] = (dict_staged){nid, copy};
    *id = nid;
    return 0;
}

void jdb_dict_commit(jdb *db)
{
    pthread_rwlock_wrlock(&db->lock);
    for (size_t i = 0; i < db->nstaged; i++)
        if (cache_add(&db->cache, db->staged[i].id, db->staged[i].name) != 0)
            free(db->staged[i].name); /* not cached: readers fall back on the store */
    pthread_rwlock_unlock(&db->lock);
    db->nstaged = 0;
}

void jdb_dict_rollback(jdb *db)
{
    for (size_t i = 0; i < db->nstaged; i++)
        free(db->staged[i].name);
    db->nstaged = 0;
}

static uint32_t dict_id_fn(void *ctx, const char *s)
{
    jdb_dict_ctx *c = ctx;
    pthread_rwlock_rdlock(&c->db->lock);
    uint32_t id = cache_find(&c->db->cache, s);
    pthread_rwlock_unlock(&c->db->lock);
    if (id || !c->t)
        return id;
    uint8_t k[CXM_KEY_MAX + 1];
    size_t len = strlen(s);
    const void *v;
    size_t n;
    if (len + 1 > sizeof k)
        return 0;
    k[0] = 's';
    memcpy(k + 1, s, len);
    if (cxm_txn_get_ref(c->t, c->db->dict, k, len + 1, &v, &n) != 0 || n != 4)
        return 0;
    return rd32(v);
}

static const char *dict_name_fn(void *ctx, uint32_t id)
{
    jdb_dict_ctx *c = ctx;
    const char *name = NULL;
    pthread_rwlock_rdlock(&c->db->lock);
    if (id < c->db->cache.nnames)
        name = c->db->cache.names[id]; /* never freed while the db is open */
    pthread_rwlock_unlock(&c->db->lock);
    if (name || !c->t || !c->a)
        return name;
    uint8_t k[5] = {'i', (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    const void *v;
    size_t n;
    if (cxm_txn_get_ref(c->t, c->db->dict, k, 5, &v, &n) != 0)
        return NULL;
    return cxm_arena_strndup(c->a, v, n);
}

jdict jdb_dict(jdb_dict_ctx *ctx)
{
    return (jdict){ctx, dict_id_fn, dict_name_fn};
}

/* ---- timeline ---- */

void jdb_set_base_currency(jdb *db, const char *code)
{
    snprintf(db->base_currency, sizeof db->base_currency, "%s", code ? code : "");
}

static bool base_currency(const jdb *db, const char *code)
{
    return !code || !*code || (db->base_currency[0] && strcmp(code, db->base_currency) == 0);
}

int jdb_make_rec(cxm_txn *t, jdb *db, const Cxm__V1__TouchpointEvent *ev, jrec *out)
{
    jrec r = {0};
    r.at_ms = ev->occurred_at_unix_ms;
    r.value = ev->value;
    r.session = ev->session_id && *ev->session_id ? str_hash(ev->session_id) : JREC_NO_SESSION;
    if (r.session == JREC_NO_SESSION && ev->session_id && *ev->session_id)
        r.session = 1; /* the one hash that would read as "none" */
    r.eid = str_hash(ev->event_id);
    r.channel = (uint8_t)ev->channel;
    r.flags = (uint8_t)((base_currency(db, ev->currency) ? JREC_BASE_CURRENCY : 0) |
                        (ev->n_properties ? JREC_HAS_PROPS : 0));
    int rc = jdb_dict_intern(t, db, ev->event_type, &r.type);
    if (rc == 0)
        rc = jdb_dict_intern(t, db, ev->touchpoint, &r.touchpoint);
    if (rc == 0)
        *out = r;
    return rc;
}

static int rec_cmp(const jrec *a, const jrec *b)
{
    if (a->at_ms != b->at_ms)
        return a->at_ms < b->at_ms ? -1 : 1;
    if (a->eid != b->eid)
        return a->eid < b->eid ? -1 : 1;
    return 0;
}

int jdb_tl_put(cxm_txn *t, jdb *db, cxm_arena *a, const char *home,
               const Cxm__V1__TouchpointEvent *ev, const jrec *r)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_tl(k, home, r->at_ms, r->eid);
    if (!klen)
        return CXM_ETOOBIG;
    int rc = put_msg(t, db->tl, k, klen, a, &ev->base);
    if (rc != 0)
        return rc;
    const jrec *old;
    size_t n;
    if ((rc = jdb_cols_get(t, db, a, home, &old, &n)) == CXM_ENOTFOUND) {
        n = 0;
        old = NULL;
    } else if (rc != 0) {
        return rc;
    }
    /* Binary search the place: late events are rare, so usually the end. */
    size_t lo = 0, hi = n;
    if (n && rec_cmp(&old[n - 1], r) < 0)
        lo = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rec_cmp(&old[mid], r) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    bool replace = lo < n && rec_cmp(&old[lo], r) == 0;
    size_t nn = replace ? n : n + 1;
    jrec *buf = cxm_arena_alloc(a, nn * sizeof *buf);
    if (!buf)
        return CXM_ENOMEM;
    if (lo)
        memcpy(buf, old, lo * sizeof *buf);
    buf[lo] = *r;
    buf[lo].home = 0;
    size_t rest = n - lo - (replace ? 1 : 0);
    if (rest)
        memcpy(buf + lo + 1, old + lo + (replace ? 1 : 0), rest * sizeof *buf);
    return jdb_cols_put(t, db, home, buf, nn);
}

int jdb_tl_get(cxm_txn *t, jdb *db, cxm_arena *a, const char *home, const jrec *r,
               Cxm__V1__TouchpointEvent **out)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_tl(k, home, r->at_ms, r->eid);
    if (!klen)
        return CXM_ETOOBIG;
    return get_msg(t, db->tl, k, klen, a, &cxm__v1__touchpoint_event__descriptor, (void **)out);
}

int jdb_cols_get(cxm_txn *t, jdb *db, cxm_arena *a, const char *home, const jrec **recs, size_t *n)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, home);
    if (!klen)
        return CXM_ETOOBIG;
    const void *v;
    size_t vlen;
    int rc = cxm_txn_get_ref(t, db->cols, k, klen, &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen % sizeof(jrec))
        return CXM_ECORRUPT;
    const jrec *p = vlen ? cxm_arena_aligned(a, v, vlen, _Alignof(jrec)) : NULL;
    if (vlen && !p)
        return CXM_ENOMEM;
    *recs = p;
    *n = vlen / sizeof(jrec);
    return 0;
}

int jdb_cols_put(cxm_txn *t, jdb *db, const char *home, const jrec *recs, size_t n)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, home);
    if (!klen)
        return CXM_ETOOBIG;
    if (!n)
        return del_quiet(t, db->cols, k, klen);
    return cxm_txn_put(t, db->cols, k, klen, recs, n * sizeof *recs, 0);
}

/* ---- merges ---- */

/* When source (key k) is merged into another id than target: delete that
 * id's members row of source and its saved group, which still counts it. */
static int forget_old_target(cxm_txn *t, jdb *db, const char *source, const uint8_t *k, size_t klen,
                             const char *target)
{
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->merged, k, klen, &v, &n);
    if (rc == CXM_ENOTFOUND || (rc == 0 && n == strlen(target) && memcmp(v, target, n) == 0))
        return 0;
    if (rc != 0)
        return rc;
    if (n > CXM_KEY_MAX)
        return CXM_ECORRUPT;
    char old[CXM_KEY_MAX + 1];
    memcpy(old, v, n);
    old[n] = 0;
    uint8_t mk[CXM_KEY_MAX];
    size_t mklen = key_str2(mk, old, source);
    if (!mklen)
        return CXM_ECORRUPT;
    rc = del_quiet(t, db->members, mk, mklen);
    return rc ? rc : jdb_group_drop(t, db, old);
}

int jdb_merge_set(cxm_txn *t, jdb *db, const char *source, const char *target)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, source);
    if (!klen || strcmp(source, target) == 0)
        return klen ? CXM_EINVAL : CXM_ETOOBIG;
    /* A merge that would close a cycle (target already leads to source) is
     * refused: roots must exist. */
    const char *r = target;
    for (int hop = 0; hop < MAX_HOPS; hop++) {
        if (strcmp(r, source) == 0)
            return CXM_EINVAL;
        uint8_t rk[CXM_KEY_MAX];
        size_t rklen = key_str(rk, r);
        if (!rklen)
            return CXM_ECORRUPT; /* a stored target too long to be a key */
        const void *v;
        size_t n;
        int rc = cxm_txn_get_ref(t, db->merged, rk, rklen, &v, &n);
        if (rc == CXM_ENOTFOUND)
            break;
        if (rc != 0)
            return rc;
        static _Thread_local char buf[CXM_KEY_MAX + 1];
        if (n > CXM_KEY_MAX)
            return CXM_ECORRUPT;
        memcpy(buf, v, n);
        buf[n] = 0;
        r = buf;
    }
    uint8_t mk[CXM_KEY_MAX];
    size_t mklen = key_str2(mk, target, source);
    if (!mklen)
        return CXM_ETOOBIG;
    /* Merged elsewhere before (no unmerge seen): that target's members row
     * goes, or source would count in two groups. */
    int rc = forget_old_target(t, db, source, k, klen, target);
    if (rc == 0)
        rc = cxm_txn_put(t, db->merged, k, klen, target, strlen(target), 0);
    return rc ? rc : cxm_txn_put(t, db->members, mk, mklen, "", 0, 0);
}

int jdb_merge_clear(cxm_txn *t, jdb *db, const char *source, const char *target)
{
    uint8_t k[CXM_KEY_MAX], mk[CXM_KEY_MAX];
    size_t klen = key_str(k, source), mklen = key_str2(mk, target, source);
    if (!klen || !mklen)
        return CXM_ETOOBIG;
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->merged, k, klen, &v, &n);
    if (rc != 0)
        return rc;
    if (n != strlen(target) || memcmp(v, target, n) != 0)
        return CXM_ENOTFOUND;
    if ((rc = cxm_txn_del(t, db->merged, k, klen)) != 0)
        return rc;
    return del_quiet(t, db->members, mk, mklen);
}

int jdb_root(cxm_txn *t, jdb *db, cxm_arena *a, const char *id, const char **root)
{
    const char *r = id;
    for (int hop = 0; hop < MAX_HOPS; hop++) {
        uint8_t k[CXM_KEY_MAX];
        size_t klen = key_str(k, r);
        if (!klen)
            return CXM_ETOOBIG;
        const void *v;
        size_t n;
        int rc = cxm_txn_get_ref(t, db->merged, k, klen, &v, &n);
        if (rc == CXM_ENOTFOUND) {
            *root = r == id ? cxm_arena_strndup(a, id, strlen(id)) : r;
            return *root ? 0 : CXM_ENOMEM;
        }
        if (rc != 0)
            return rc;
        if (!(r = cxm_arena_strndup(a, v, n)))
            return CXM_ENOMEM;
    }
    return CXM_ECORRUPT;
}

/* Append the direct members of target to homes (deduplicated). */
static int add_members(cxm_txn *t, jdb *db, cxm_arena *a, const char *target, const char **homes,
                       size_t *n)
{
    uint8_t p[CXM_KEY_MAX];
    size_t plen = key_str(p, target);
    if (!plen)
        return CXM_ETOOBIG;
    cxm_iter it;
    int rc = cxm_iter_prefix(t, db->members, p, plen, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        cxm_keyreader kr;
        char *src;
        cxm_keyreader_init(&kr, it.key, it.klen);
        cxm_keyread_skip_bytes(&kr);
        if ((rc = cxm_keyread_bytes_arena(&kr, a, &src, NULL)) != 0)
            break;
        bool seen = false;
        for (size_t i = 0; i < *n && !seen; i++)
            seen = strcmp(homes[i], src) == 0;
        if (seen)
            continue;
        if (*n >= JDB_MAX_HOMES) {
            rc = CXM_ETOOBIG;
            break;
        }
        homes[(*n)++] = src;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

int jdb_group(cxm_txn *t, jdb *db, cxm_arena *a, const char *root, const char ***homes, size_t *n)
{
    const char **h = cxm_arena_alloc(a, JDB_MAX_HOMES * sizeof *h);
    if (!h)
        return CXM_ENOMEM;
    size_t k = 0;
    h[k++] = root;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < k; i++) /* breadth first: k grows */
        rc = add_members(t, db, a, h[i], h, &k);
    if (rc != 0)
        return rc;
    *homes = h;
    *n = k;
    return 0;
}

static int rec_qcmp(const void *a, const void *b)
{
    int c = rec_cmp(a, b);
    if (c)
        return c;
    const jrec *x = a, *y = b;
    return (x->home > y->home) - (x->home < y->home);
}

int jdb_group_recs(cxm_txn *t, jdb *db, cxm_arena *a, const char *const *homes, size_t nhomes,
                   jrec **recs, size_t *n)
{
    const jrec *parts[JDB_MAX_HOMES];
    size_t lens[JDB_MAX_HOMES], total = 0;
    if (nhomes > JDB_MAX_HOMES)
        return CXM_ETOOBIG;
    for (size_t i = 0; i < nhomes; i++) {
        int rc = jdb_cols_get(t, db, a, homes[i], &parts[i], &lens[i]);
        if (rc == CXM_ENOTFOUND)
            lens[i] = 0;
        else if (rc != 0)
            return rc;
        total += lens[i];
    }
    jrec *out = cxm_arena_alloc(a, (total ? total : 1) * sizeof *out);
    if (!out)
        return CXM_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < nhomes; i++)
        for (size_t j = 0; j < lens[i]; j++) {
            out[k] = parts[i][j];
            out[k++].home = (uint8_t)i;
        }
    if (nhomes > 1)
        qsort(out, total, sizeof *out, rec_qcmp);
    *recs = out;
    *n = total;
    return 0;
}

#define GROUP_ALIGN 8

int jdb_group_save(cxm_txn *t, jdb *db, const char *root, const char *const *homes, size_t nhomes,
                   const jrec *recs, size_t n)
{
    if (nhomes <= 1)
        return jdb_group_drop(t, db, root);
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, root), head = 4;
    /* group_load refuses more homes (and a home must fit its u16 length). */
    if (!klen || nhomes > JDB_MAX_HOMES)
        return CXM_ETOOBIG;
    for (size_t i = 0; i < nhomes; i++) {
        size_t l = strlen(homes[i]);
        if (l > UINT16_MAX)
            return CXM_ETOOBIG;
        head += 2 + l;
    }
    head = (head + GROUP_ALIGN - 1) / GROUP_ALIGN * GROUP_ALIGN;
    size_t len = head + n * sizeof *recs;
    uint8_t *v = malloc(len);
    if (!v)
        return CXM_ENOMEM;
    memset(v, 0, head);
    v[0] = (uint8_t)(nhomes >> 24), v[1] = (uint8_t)(nhomes >> 16);
    v[2] = (uint8_t)(nhomes >> 8), v[3] = (uint8_t)nhomes;
    size_t off = 4;
    for (size_t i = 0; i < nhomes; i++) {
        size_t l = strlen(homes[i]);
        v[off] = (uint8_t)(l >> 8), v[off + 1] = (uint8_t)l;
        memcpy(v + off + 2, homes[i], l);
        off += 2 + l;
    }
    memcpy(v + head, recs, n * sizeof *recs);
    int rc = cxm_txn_put(t, db->groups, k, klen, v, len, 0);
    free(v);
    return rc;
}

int jdb_group_drop(cxm_txn *t, jdb *db, const char *id)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, id);
    if (!klen)
        return CXM_ETOOBIG;
    return del_quiet(t, db->groups, k, klen);
}

/* root's saved group, in a (CXM_ENOTFOUND when none is saved). */
static int group_load(cxm_txn *t, jdb *db, cxm_arena *a, const char *root, const char ***homes,
                      size_t *nhomes, const jrec **recs, size_t *n)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, root);
    if (!klen)
        return CXM_ETOOBIG;
    const uint8_t *v;
    size_t vlen;
    int rc = cxm_txn_get_ref(t, db->groups, k, klen, (const void **)&v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen < 4)
        return CXM_ECORRUPT;
    size_t nh = rd32(v), off = 4;
    if (nh < 2 || nh > JDB_MAX_HOMES)
        return CXM_ECORRUPT;
    const char **h = cxm_arena_alloc(a, nh * sizeof *h);
    if (!h)
        return CXM_ENOMEM;
    for (size_t i = 0; i < nh; i++) {
        if (off + 2 > vlen)
            return CXM_ECORRUPT;
        size_t l = (size_t)v[off] << 8 | v[off + 1];
        if (off + 2 + l > vlen || !(h[i] = cxm_arena_strndup(a, (const char *)v + off + 2, l)))
            return off + 2 + l > vlen ? CXM_ECORRUPT : CXM_ENOMEM;
        off += 2 + l;
    }
    off = (off + GROUP_ALIGN - 1) / GROUP_ALIGN * GROUP_ALIGN;
    if (off > vlen || (vlen - off) % sizeof(jrec))
        return CXM_ECORRUPT;
    *n = (vlen - off) / sizeof(jrec);
    *recs = *n ? cxm_arena_aligned(a, v + off, vlen - off, _Alignof(jrec)) : NULL;
    if (*n && !*recs)
        return CXM_ENOMEM;
    *homes = h;
    *nhomes = nh;
    return 0;
}

int jdb_known(cxm_txn *t, jdb *db, const char *id, bool *known)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, id);
    if (!klen)
        return CXM_ETOOBIG;
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->cols, k, klen, &v, &n);
    if (rc == CXM_ENOTFOUND)
        rc = cxm_txn_get_ref(t, db->state, k, klen, &v, &n);
    if (rc == CXM_ENOTFOUND) {
        cxm_iter it;
        rc = cxm_iter_prefix(t, db->members, k, klen, false, &it);
        if (rc == 0)
            rc = cxm_iter_next(&it);
        cxm_iter_close(&it);
    }
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    *known = rc == 0;
    return 0;
}

static size_t key_ident(uint8_t *buf, const Cxm__V1__Identity *id)
{
    cxm_key k;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_u32(&k, (uint32_t)id->type);
    cxm_key_str(&k, id->custom_type ? id->custom_type : "");
    cxm_key_str(&k, id->value ? id->value : "");
    size_t n = 0;
    return cxm_key_finish(&k, &n) == 0 ? n : 0;
}

int jdb_ident_put(cxm_txn *t, jdb *db, const Cxm__V1__Identity *id, const char *customer_id)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_ident(k, id);
    if (!klen)
        return CXM_ETOOBIG;
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->idents, k, klen, &v, &n);
    if (rc == 0 && n == strlen(customer_id) && memcmp(v, customer_id, n) == 0)
        return 0; /* the usual case: no write */
    return cxm_txn_put(t, db->idents, k, klen, customer_id, strlen(customer_id), 0);
}

int jdb_ident_get(cxm_txn *t, jdb *db, cxm_arena *a, const Cxm__V1__Identity *id,
                  const char **customer_id)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_ident(k, id);
    if (!klen)
        return CXM_ETOOBIG;
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->idents, k, klen, &v, &n);
    if (rc == 0 && !(*customer_id = cxm_arena_strndup(a, v, n)))
        rc = CXM_ENOMEM;
    return rc;
}

/* ---- state and rules ---- */

int jdb_state_get(cxm_txn *t, jdb *db, cxm_arena *a, const char *root,
                  Cxm__V1__GetJourneyStateResponse **out)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, root);
    if (!klen)
        return CXM_ETOOBIG;
    return get_msg(t, db->state, k, klen, a, &cxm__v1__get_journey_state_response__descriptor,
                   (void **)out);
}

int jdb_state_put(cxm_txn *t, jdb *db, cxm_arena *a, const char *root,
                  const Cxm__V1__GetJourneyStateResponse *s)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, root);
    if (!klen)
        return CXM_ETOOBIG;
    if (!s)
        return del_quiet(t, db->state, k, klen);
    return put_msg(t, db->state, k, klen, a, &s->base);
}

int jdb_state_count(cxm_txn *t, jdb *db, uint64_t *n)
{
    MDB_stat st;
    int rc = mdb_stat(cxm_txn_mdb(t), db->state, &st);
    if (rc != 0)
        return cxm_err_from_mdb(rc);
    *n = st.ms_entries;
    return 0;
}

int jdb_rules_get(cxm_txn *t, jdb *db, cxm_arena *a, Cxm__V1__GetStageRulesResponse **out)
{
    return get_msg(t, db->rules, "current", 7, a, &cxm__v1__get_stage_rules_response__descriptor,
                   (void **)out);
}

int jdb_rules_put(cxm_txn *t, jdb *db, cxm_arena *a, const Cxm__V1__GetStageRulesResponse *r)
{
    return put_msg(t, db->rules, "current", 7, a, &r->base);
}

/* ---- replicated from other services ---- */

int jdb_segment_set(cxm_txn *t, jdb *db, const char *segment_id, const char *customer_id, bool in)
{
    uint8_t k1[CXM_KEY_MAX], k2[CXM_KEY_MAX];
    size_t l1 = key_str2(k1, segment_id, customer_id), l2 = key_str2(k2, customer_id, segment_id);
    if (!l1 || !l2)
        return CXM_ETOOBIG;
    int rc;
    if (in) {
        rc = cxm_txn_put(t, db->segments, k1, l1, "", 0, 0);
        return rc ? rc : cxm_txn_put(t, db->csegs, k2, l2, "", 0, 0);
    }
    rc = cxm_txn_del(t, db->segments, k1, l1);
    if (rc == 0 || rc == CXM_ENOTFOUND)
        rc = cxm_txn_del(t, db->csegs, k2, l2);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

int jdb_in_segment(cxm_txn *t, jdb *db, const char *segment_id, const char *customer_id, bool *in)
{
    uint8_t k[CXM_KEY_MAX];
    size_t l = key_str2(k, segment_id, customer_id);
    if (!l)
        return CXM_ETOOBIG;
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->segments, k, l, &v, &n);
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    *in = rc == 0;
    return 0;
}

int jdb_feedback_put(cxm_txn *t, jdb *db, const char *touchpoint, int64_t answered_at,
                     const char *response_id, int kind, int32_t score)
{
    cxm_key k;
    uint8_t buf[CXM_KEY_MAX];
    size_t klen;
    cxm_key_init(&k, buf, sizeof buf);
    cxm_key_str(&k, touchpoint);
    cxm_key_i64(&k, answered_at);
    cxm_key_str(&k, response_id);
    if (cxm_key_finish(&k, &klen) != 0)
        return CXM_ETOOBIG;
    uint32_t u = (uint32_t)score;
    uint8_t v[5] = {(uint8_t)kind, (uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8),
                    (uint8_t)u};
    return cxm_txn_put(t, db->feedback, buf, klen, v, sizeof v, 0);
}

int jdb_feedback_scores(cxm_txn *t, jdb *db, const char *touchpoint, int64_t from, int64_t to,
                        Cxm__V1__TouchpointFeedback *out)
{
    uint8_t lo[CXM_KEY_MAX], hi[CXM_KEY_MAX];
    cxm_key k;
    size_t lolen, hilen;
    cxm_key_init(&k, lo, sizeof lo);
    cxm_key_str(&k, touchpoint);
    cxm_key_i64(&k, from);
    if (cxm_key_finish(&k, &lolen) != 0)
        return CXM_ETOOBIG;
    cxm_key_init(&k, hi, sizeof hi);
    cxm_key_str(&k, touchpoint);
    cxm_key_i64(&k, to);
    if (cxm_key_finish(&k, &hilen) != 0)
        return CXM_ETOOBIG;
    uint64_t nps = 0, prom = 0, det = 0, csat = 0, sat = 0;
    cxm_iter it;
    int rc = cxm_iter_range(t, db->feedback, lo, lolen, hi, hilen, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        if (it.vlen != 5)
            continue;
        const uint8_t *v = it.val;
        int32_t score = (int32_t)rd32(v + 1);
        if (v[0] == 1) { /* SURVEY_KIND_NPS */
            nps++;
            prom += score >= 9;
            det += score <= 6;
        } else if (v[0] == 2) { /* SURVEY_KIND_CSAT */
            csat++;
            sat += score >= 4;
        }
    }
    cxm_iter_close(&it);
    if (rc != CXM_ENOTFOUND && rc != 0)
        return rc;
    out->nps_responses = nps;
    out->nps = nps ? 100.0 * ((double)prom - (double)det) / (double)nps : 0;
    out->csat_responses = csat;
    out->csat = csat ? (double)sat / (double)csat : 0;
    return 0;
}

/* ---- analytics source ---- */

/* Roots come from a merge-join of three sorted key streams: cols (homes
 * with events), members (targets, whose first key field is the target) and
 * merged (sources, to skip). Every key starts with the same encoding of the
 * customer id, so byte order agrees across the three. */
struct jdb_src {
    cxm_txn *t;
    jdb *db;
    const char *segment;
    jdb_cond_fn cond;
    cxm_iter cols, members, merged;
    bool cols_ok, members_ok, merged_ok; /* the iterator holds an entry */
    size_t mprefix;                      /* encoded target length of members' entry */
    uint8_t after[CXM_KEY_MAX];
    size_t after_len;
    cxm_arena a; /* per customer: reset by next */
    const char *home0;
    const void *cval; /* the candidate's cols value (valid for the txn) */
    size_t cvlen;
};

/* Length of the first encoded string field of key (through its 0x00 0x01
 * terminator), or len when malformed. */
static size_t first_field(const uint8_t *k, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (k[i] != 0)
            continue;
        if (k[i + 1] == 1)
            return i + 2;
        i++; /* 0x00 0xFF: an escaped NUL */
    }
    return len;
}

static int bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static int step(cxm_iter *it, bool *ok)
{
    int rc = cxm_iter_next(it);
    *ok = rc == 0;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static int step_members(jdb_src *s)
{
    int rc = step(&s->members, &s->members_ok);
    if (s->members_ok)
        s->mprefix = first_field(s->members.key, s->members.klen);
    return rc;
}

int jdb_src_open(cxm_txn *t, jdb *db, const char *after, const char *segment_id, jdb_cond_fn cond,
                 jdb_src **out)
{
    jdb_src *s = calloc(1, sizeof *s);
    if (!s)
        return CXM_ENOMEM;
    s->t = t;
    s->db = db;
    s->cond = cond;
    s->segment = segment_id && *segment_id ? segment_id : NULL;
    cxm_arena_init(&s->a, NULL, 0, 0);
    if (after && *after && !(s->after_len = key_str(s->after, after))) {
        free(s);
        return CXM_ETOOBIG;
    }
    const void *from = s->after_len ? s->after : NULL;
    int rc = cxm_iter_range(t, db->cols, from, s->after_len, NULL, 0, false, &s->cols);
    if (rc == 0)
        rc = cxm_iter_range(t, db->members, from, s->after_len, NULL, 0, false, &s->members);
    if (rc == 0)
        rc = cxm_iter_range(t, db->merged, from, s->after_len, NULL, 0, false, &s->merged);
    if (rc == 0)
        rc = step(&s->cols, &s->cols_ok);
    if (rc == 0)
        rc = step_members(s);
    if (rc == 0)
        rc = step(&s->merged, &s->merged_ok);
    if (rc != 0) {
        jdb_src_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void jdb_src_close(jdb_src *s)
{
    if (!s)
        return;
    cxm_iter_close(&s->cols);
    cxm_iter_close(&s->members);
    cxm_iter_close(&s->merged);
    cxm_arena_dispose(&s->a);
    free(s);
}

/* Is the candidate key a merged-away id? Advances the merged stream. */
static int is_merged(jdb_src *s, const uint8_t *k, size_t klen, bool *merged)
{
    int rc = 0;
    while (rc == 0 && s->merged_ok && bytes_cmp(s->merged.key, s->merged.klen, k, klen) < 0)
        rc = step(&s->merged, &s->merged_ok);
    *merged = s->merged_ok && bytes_cmp(s->merged.key, s->merged.klen, k, klen) == 0;
    return rc;
}

/* The next root candidate's encoded key into k; *has_members when members
 * name it as a target. Both streams are advanced past it. 0 = none left. */
static int next_candidate(jdb_src *s, uint8_t *k, size_t *klen, bool *has_members, bool *has_cols)
{
    for (;;) {
        if (!s->cols_ok && !s->members_ok)
            return 0;
        int c;
        if (!s->cols_ok)
            c = 1;
        else if (!s->members_ok)
            c = -1;
        else
            c = bytes_cmp(s->cols.key, s->cols.klen, s->members.key, s->mprefix);
        const void *src = c <= 0 ? s->cols.key : s->members.key;
        size_t len = c <= 0 ? s->cols.klen : s->mprefix;
        if (len > CXM_KEY_MAX)
            return CXM_ECORRUPT;
        memcpy(k, src, len);
        *klen = len;
        *has_cols = c <= 0;
        *has_members = c >= 0;
        int rc = 0;
        if (c <= 0) {
            s->cval = s->cols.val; /* read-only txn: stays mapped after the step */
            s->cvlen = s->cols.vlen;
            rc = step(&s->cols, &s->cols_ok);
        }
        while (rc == 0 && c >= 0 && s->members_ok &&
               bytes_cmp(s->members.key, s->mprefix, k, len) == 0)
            rc = step_members(s);
        if (rc != 0)
            return rc;
        /* The `after` customer itself is where the previous batch ended. */
        if (s->after_len && bytes_cmp(k, len, s->after, s->after_len) == 0)
            continue;
        return 1;
    }
}

static int src_next(void *ctx, jcust *out)
{
    jdb_src *s = ctx;
    cxm_arena_reset(&s->a);
    for (;;) {
        uint8_t k[CXM_KEY_MAX];
        size_t klen;
        bool has_members, has_cols, merged;
        int rc = next_candidate(s, k, &klen, &has_members, &has_cols);
        if (rc <= 0)
            return rc;
        if ((rc = is_merged(s, k, klen, &merged)) != 0)
            return rc;
        if (merged)
            continue;
        cxm_keyreader kr;
        char *id;
        cxm_keyreader_init(&kr, k, klen);
        if ((rc = cxm_keyread_bytes_arena(&kr, &s->a, &id, NULL)) != 0)
            return rc;
        if (s->segment) {
            bool in;
            if ((rc = jdb_in_segment(s->t, s->db, s->segment, id, &in)) != 0)
                return rc;
            if (!in)
                continue;
        }
        if (!has_members) { /* the common case: the stored array as it is, no lookup */
            if (s->cvlen % sizeof(jrec))
                return CXM_ECORRUPT;
            const jrec *recs =
                s->cvlen ? cxm_arena_aligned(&s->a, s->cval, s->cvlen, _Alignof(jrec)) : NULL;
            if (s->cvlen && !recs)
                return CXM_ENOMEM;
            s->home0 = id;
            *out = (jcust){id, recs, s->cvlen / sizeof(jrec), &s->home0, 1};
            return 1;
        }
        const char **homes;
        size_t nhomes, n;
        const jrec *saved;
        rc = group_load(s->t, s->db, &s->a, id, &homes, &nhomes, &saved, &n);
        if (rc == 0) {
            *out = (jcust){id, saved, n, homes, nhomes};
            return 1;
        }
        if (rc != CXM_ENOTFOUND) /* not saved yet (data from before groups): walk the merges */
            return rc;
        jrec *recs;
        if ((rc = jdb_group(s->t, s->db, &s->a, id, &homes, &nhomes)) != 0 ||
            (rc = jdb_group_recs(s->t, s->db, &s->a, homes, nhomes, &recs, &n)) != 0)
            return rc;
        *out = (jcust){id, recs, n, homes, nhomes};
        return 1;
    }
}

static int src_props_match(void *ctx, const jcust *c, const jrec *r,
                           Cxm__V1__PropertyCondition *const *conds, size_t nconds, bool *match)
{
    jdb_src *s = ctx;
    if (!(r->flags & JREC_HAS_PROPS) || r->home >= c->nhomes) {
        *match = s->cond(conds, nconds, NULL, 0);
        return 0;
    }
    /* A scratch arena of its own: the customer's arrays live in s->a. */
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__TouchpointEvent *ev;
    int rc = jdb_tl_get(s->t, s->db, &a, c->homes[r->home], r, &ev);
    if (rc == 0)
        *match = s->cond(conds, nconds, ev->properties, ev->n_properties);
    cxm_arena_dispose(&a);
    return rc;
}

jsource jdb_source(jdb_src *s)
{
    return (jsource){s, src_next, src_props_match};
}

/* ---- erasure ---- */

/* Delete every key with prefix p in dbi, counting. */
static int del_prefix(cxm_txn *t, MDB_dbi dbi, const uint8_t *p, size_t plen, uint64_t *count)
{
    for (;;) { /* a fresh iterator per key: deleting under a cursor is not promised */
        cxm_iter it;
        uint8_t k[CXM_KEY_MAX];
        size_t klen = 0;
        int rc = cxm_iter_prefix(t, dbi, p, plen, false, &it);
        if (rc == 0 && (rc = cxm_iter_next(&it)) == 0 && it.klen <= sizeof k) {
            memcpy(k, it.key, it.klen);
            klen = it.klen;
        }
        cxm_iter_close(&it);
        if (rc == CXM_ENOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
        if (!klen)
            return CXM_ECORRUPT;
        if ((rc = cxm_txn_del(t, dbi, k, klen)) != 0)
            return rc;
        (*count)++;
    }
}

/* The second string field of the first key with prefix p in dbi (an index
 * row (id, other)), in a; CXM_ENOTFOUND when none is left. */
static int first_other(cxm_txn *t, MDB_dbi dbi, const uint8_t *p, size_t plen, cxm_arena *a,
                       char **other)
{
    cxm_iter it;
    int rc = cxm_iter_prefix(t, dbi, p, plen, false, &it);
    if (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        cxm_keyreader kr;
        cxm_keyreader_init(&kr, it.key, it.klen);
        cxm_keyread_skip_bytes(&kr);
        rc = cxm_keyread_bytes_arena(&kr, a, other, NULL);
    }
    cxm_iter_close(&it);
    return rc;
}

/* The segment rows of id, through its csegs index. */
static int erase_segments(cxm_txn *t, jdb *db, const char *id, uint64_t *count)
{
    uint8_t p[CXM_KEY_MAX];
    size_t plen = key_str(p, id);
    for (;;) {
        char *seg;
        cxm_arena a;
        cxm_arena_init(&a, NULL, 0, 0);
        int rc = first_other(t, db->csegs, p, plen, &a, &seg);
        if (rc == 0 && (rc = jdb_segment_set(t, db, seg, id, false)) == 0)
            (*count)++;
        cxm_arena_dispose(&a);
        if (rc == CXM_ENOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
    }
}

/* id (key k) merged into target: the merge goes, and so does the saved
 * group of target's root, which holds id's home and records (analytics
 * walk the merges until the root is recomputed). */
static int erase_merged_into(cxm_txn *t, jdb *db, const char *id, const char *target)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    const char *root;
    int rc = jdb_root(t, db, &a, target, &root);
    if (rc == 0)
        rc = jdb_group_drop(t, db, root);
    cxm_arena_dispose(&a);
    return rc ? rc : jdb_merge_clear(t, db, id, target);
}

/* Merge rows naming id as source or target. */
static int erase_merges(cxm_txn *t, jdb *db, const char *id, uint64_t *count)
{
    uint8_t k[CXM_KEY_MAX];
    size_t klen = key_str(k, id);
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->merged, k, klen, &v, &n);
    if (rc == 0) {
        char target[CXM_KEY_MAX + 1];
        if (n > CXM_KEY_MAX)
            return CXM_ECORRUPT;
        memcpy(target, v, n);
        target[n] = 0;
        if ((rc = erase_merged_into(t, db, id, target)) != 0)
            return rc;
        (*count)++;
    } else if (rc != CXM_ENOTFOUND) {
        return rc;
    }
    /* Ids merged into id are erased by their own turn (they are among the
     * merged ids of the erasure); their rows pointing here go now. */
    for (;;) {
        cxm_arena a;
        char *src;
        cxm_arena_init(&a, NULL, 0, 0);
        rc = first_other(t, db->members, k, klen, &a, &src);
        if (rc == 0 && (rc = jdb_merge_clear(t, db, src, id)) == CXM_ENOTFOUND) {
            uint8_t mk[CXM_KEY_MAX]; /* a members row without its merged row */
            rc = cxm_txn_del(t, db->members, mk, key_str2(mk, id, src));
        }
        if (rc == 0)
            (*count)++;
        cxm_arena_dispose(&a);
        if (rc == CXM_ENOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
    }
}

/* Pending events whose ref names one of ids. */
static int erase_pending(cxm_txn *t, jdb *db, const char *const *ids, size_t nids, uint64_t *count)
{
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    cxm_iter it;
    char ref[CXM_KEY_MAX + 1];
    int rc = cxm_iter_prefix(t, db->pending, NULL, 0, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        /* The ref is decoded once per event, not once per id. */
        if (it.klen != 8 || !packed_ref_id(it.val, it.vlen, ref))
            continue;
        bool hit = false;
        for (size_t i = 0; i < nids && !hit; i++)
            hit = strcmp(ref, ids[i]) == 0;
        if (!hit)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *s = realloc(seqs, cap * sizeof *s);
            if (!s) {
                rc = CXM_ENOMEM;
                break;
            }
            seqs = s;
        }
        seqs[n++] = rd64(it.key);
    }
    cxm_iter_close(&it);
    if (rc == CXM_ENOTFOUND)
        rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if ((rc = jdb_pending_del(t, db, seqs[i])) == 0)
            (*count)++;
    free(seqs);
    return rc;
}

/* Identity rows leading to one of ids: the identities are personal data. A
 * scan, as there is no index by customer; erasures are rare. */
static int erase_idents(cxm_txn *t, jdb *db, const char *const *ids, size_t nids, uint64_t *count)
{
    uint8_t(*keys)[CXM_KEY_MAX] = NULL;
    size_t *lens = NULL, n = 0, cap = 0;
    cxm_iter it;
    int rc = cxm_iter_prefix(t, db->idents, NULL, 0, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        bool hit = false;
        for (size_t i = 0; i < nids && !hit; i++)
            hit = it.vlen == strlen(ids[i]) && memcmp(it.val, ids[i], it.vlen) == 0;
        if (!hit || it.klen > CXM_KEY_MAX)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            void *k = realloc(keys, cap * sizeof *keys), *l = realloc(lens, cap * sizeof *lens);
            if (k)
                keys = k;
            if (l)
                lens = l;
            if (!k || !l) {
                rc = CXM_ENOMEM;
                break;
            }
        }
        memcpy(keys[n], it.key, it.klen);
        lens[n++] = it.klen;
    }
    cxm_iter_close(&it);
    if (rc == CXM_ENOTFOUND)
        rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = del_counted(t, db->idents, keys[i], lens[i], count);
    free(keys);
    free(lens);
    return rc;
}

int jdb_erase(cxm_txn *t, jdb *db, const char *id, char *const *merged, size_t n, uint64_t *count)
{
    *count = 0;
    /* Every id is erased: a long list of merged ids is no reason to keep
     * some of them. */
    if (n > SIZE_MAX / sizeof(char *) - 1)
        return CXM_ETOOBIG;
    const char **ids = malloc((n + 1) * sizeof *ids);
    if (!ids)
        return CXM_ENOMEM;
    size_t nids = 0;
    ids[nids++] = id;
    for (size_t i = 0; i < n; i++)
        ids[nids++] = merged[i];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nids; i++) {
        uint8_t k[CXM_KEY_MAX];
        size_t klen = key_str(k, ids[i]);
        uint64_t ignored = 0;
        if (!klen)
            rc = CXM_ETOOBIG;
        else if ((rc = del_prefix(t, db->tl, k, klen, count)) == 0 &&
                 (rc = del_counted(t, db->cols, k, klen, &ignored)) == 0 &&
                 (rc = del_counted(t, db->state, k, klen, count)) == 0 &&
                 (rc = jdb_group_drop(t, db, ids[i])) == 0 &&
                 (rc = erase_segments(t, db, ids[i], count)) == 0)
            rc = erase_merges(t, db, ids[i], count);
    }
    if (rc == 0)
        rc = erase_idents(t, db, ids, nids, count);
    if (rc == 0)
        rc = erase_pending(t, db, ids, nids, count);
    free(ids);
    return rc;
}
