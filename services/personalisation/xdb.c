/*
 * xdb.c - the personalisation service's tables and its in-memory catalogue
 * (see xdb.h for the layouts).
 *
 * The catalogue is an open-addressing hash of compiled entries keyed by
 * experience id. An entry is one malloc block (the xdb_exp and its id)
 * plus the experience unpacked with protobuf-c's default allocator, which
 * owns every string and array the xdb_exp points to. Entries are replaced,
 * never removed (a disabled experience stays, flagged), and only under the
 * write lock, so a reader's pointers stay valid while it holds the read lock.
 *
 * Contacts: a Recommend may check a few hundred candidates, and most
 * customers never met most experiences, so a Bloom filter of the (customer,
 * experience) pairs that ever had a contact row answers "never" without a
 * B-tree lookup. Bits are only ever set (at open from the table, then by
 * every write of a row, before its commit), so the filter can say "maybe"
 * wrongly (a lookup then finds nothing) but never "never" for a row that
 * exists.
 */

#include "xdb.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/keyenc.h"
#include "cxm/log.h"

/* The id is copied in after the entry, so a find that matches the hash
 * compares bytes already next to the fields the caller reads next. */
typedef struct cat_entry {
    xdb_exp e;
    Cxm__V1__Experience *owned; /* unpacked with the default allocator */
    char id[];
} cat_entry;

/* A slot keeps the hash beside the pointer: a probe past other entries
 * touches only the slot array. */
typedef struct cat_slot {
    uint64_t hash;
    cat_entry *c; /* NULL = empty */
} cat_slot;

struct xdb {
    cxm_store *store;
    MDB_dbi exp, expgen, meta, fb, contact, outcome, cout, inter, cinter, model;
    pthread_rwlock_t lock;
    _Atomic uint64_t gen; /* written under the write lock */
    cat_slot *slots;      /* open addressing, linear probing */
    size_t cap, n;        /* cap a power of two, n <= cap / 2 */
    const xdb_exp **all, **actions;
    size_t nall, nactions;
    _Atomic uint64_t *seen; /* the contact filter's bits (see the top) */
    uint64_t seen_mask;     /* its bit count - 1 */
};

static const char catgen_key[] = "catgen";

/* ---- small helpers ---- */

/* Fixed-width values are written with keyenc.h's builder and reader too:
 * big-endian, bounds-checked, one implementation for keys and values. */
static void u64_bytes(uint8_t out[8], uint64_t v)
{
    cxm_key b;
    cxm_key_init(&b, out, 8);
    cxm_key_u64(&b, v);
}

static int u64_read(const void *p, size_t n, uint64_t *v)
{
    cxm_keyreader r;
    cxm_keyreader_init(&r, p, n);
    cxm_keyread_u64(&r, v);
    return cxm_keyread_end(&r);
}

static int64_t max_i64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Pack a message into the arena. */
static int pack(cxm_arena *a, const ProtobufCMessage *m, uint8_t **buf, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    if (!(*buf = cxm_arena_alloc(a, *len ? *len : 1)))
        return CXM_ENOMEM;
    protobuf_c_message_pack(m, *buf);
    return 0;
}

/* A key of one or two strings. */
typedef struct xkey {
    uint8_t b[CXM_KEY_MAX];
    size_t n;
} xkey;

static int key2(xkey *k, const char *a, const char *b)
{
    cxm_key kb;
    cxm_key_init(&kb, k->b, sizeof k->b);
    cxm_key_str(&kb, a);
    if (b)
        cxm_key_str(&kb, b);
    return cxm_key_finish(&kb, &k->n);
}

/* The second string of a two-string key, as an arena copy. */
static int key2_second(const void *key, size_t klen, cxm_arena *a, char **out)
{
    cxm_keyreader r;
    cxm_keyreader_init(&r, key, klen);
    cxm_keyread_skip_bytes(&r);
    cxm_keyread_bytes_arena(&r, a, out, NULL);
    return cxm_keyread_end(&r);
}

/* Delete a key that may be absent; counts what was there. */
static int del_counted(cxm_txn *t, MDB_dbi dbi, const void *k, size_t kl, uint64_t *count)
{
    int rc = cxm_txn_del(t, dbi, k, kl);
    if (rc == 0)
        ++*count;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* ---- the contact filter ---- */

/* The pair as one hash; NUL cannot occur in either id, so it separates. */
static uint64_t pair_hash(const char *customer_id, const char *experience_id)
{
    uint64_t h = cxm_hash(CXM_HASH_INIT, customer_id, strlen(customer_id) + 1);
    h = cxm_hash(h, experience_id, strlen(experience_id));
    /* FNV's high bits are weak on short keys: a murmur finaliser spreads
     * them, and the two halves are the filter's two bit positions. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static void seen_add(xdb *db, uint64_t h)
{
    uint64_t a = h & db->seen_mask, b = (h >> 32) & db->seen_mask;
    atomic_fetch_or(&db->seen[a >> 6], 1ull << (a & 63));
    atomic_fetch_or(&db->seen[b >> 6], 1ull << (b & 63));
}

static bool seen_maybe(const xdb *db, uint64_t h)
{
    uint64_t a = h & db->seen_mask, b = (h >> 32) & db->seen_mask;
    return (atomic_load(&db->seen[a >> 6]) >> (a & 63) & 1) &&
           (atomic_load(&db->seen[b >> 6]) >> (b & 63) & 1);
}

/* One pair from a pers.contact key. */
static int seen_add_key(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    (void)val;
    (void)vlen;
    char cust[CXM_KEY_MAX + 1], exp[CXM_KEY_MAX + 1];
    cxm_keyreader r;
    cxm_keyreader_init(&r, key, klen);
    cxm_keyread_str(&r, cust, sizeof cust, NULL);
    cxm_keyread_str(&r, exp, sizeof exp, NULL);
    int rc = cxm_keyread_end(&r);
    if (rc == 0)
        seen_add(user, pair_hash(cust, exp));
    return rc;
}

/* Size the filter for 16 bits per stored row, at least 2^24 bits (2 MiB:
 * about 1% wrong "maybe" at a million rows), and fill it from the table. */
static int seen_load(cxm_txn *t, void *user)
{
    xdb *db = user;
    MDB_stat st;
    if (mdb_stat(cxm_txn_mdb(t), db->contact, &st) != 0)
        return CXM_EIO;
    uint64_t bits = 1ull << 24;
    while (bits < (uint64_t)st.ms_entries * 16 && bits < 1ull << 32)
        bits <<= 1;
    if (!(db->seen = calloc(bits / 64, sizeof *db->seen)))
        return CXM_ENOMEM;
    db->seen_mask = bits - 1;
    int rc = cxm_txn_scan_prefix(t, db->contact, NULL, 0, false, seen_add_key, db);
    if (rc != 0) {
        free(db->seen);
        db->seen = NULL;
    }
    return rc;
}

/* ---- open / close ---- */

static void entry_free(cat_entry *c)
{
    cxm__v1__experience__free_unpacked(c->owned, NULL);
    free(c);
}

static void catalog_free(xdb *db)
{
    for (size_t i = 0; i < db->cap; i++)
        if (db->slots[i].c)
            entry_free(db->slots[i].c);
    free(db->slots);
    free(db->all);
    free(db->actions);
}

/* Writers first: Recommends hold the read lock back to back under load, and
 * with glibc's default (readers first) an upsert's catch-up could wait
 * forever. Nobody takes the read lock twice, so this cannot deadlock. */
static int lock_init(pthread_rwlock_t *lock)
{
    pthread_rwlockattr_t attr;
    if (pthread_rwlockattr_init(&attr) != 0)
        return CXM_ENOMEM;
#ifdef __GLIBC__
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    int rc = pthread_rwlock_init(lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return rc == 0 ? 0 : CXM_ENOMEM;
}

static int open_load(cxm_txn *t, void *user);

int xdb_open(cxm_store *store, xdb **out)
{
    xdb *db = calloc(1, sizeof *db);
    if (!db)
        return CXM_ENOMEM;
    db->store = store;
    const cxm_store_table tables[] = {
        {"pers.exp", &db->exp},     {"pers.expgen", &db->expgen},   {"pers.meta", &db->meta},
        {"pers.fb", &db->fb},       {"pers.contact", &db->contact}, {"pers.outcome", &db->outcome},
        {"pers.cout", &db->cout},   {"pers.inter", &db->inter},     {"pers.cinter", &db->cinter},
        {"pers.model", &db->model},
    };
    int rc = cxm_store_dbis(store, tables, sizeof tables / sizeof tables[0]);
    if (rc == 0)
        rc = cxm_store_read(store, open_load, db);
    if (rc == 0)
        rc = lock_init(&db->lock);
    if (rc != 0) {
        catalog_free(db);
        free(db->seen);
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void xdb_close(xdb *db)
{
    if (!db)
        return;
    catalog_free(db);
    free(db->seen);
    pthread_rwlock_destroy(&db->lock);
    free(db);
}

/* ---- the catalogue in the store ---- */

int xdb_experience_get(cxm_txn *t, xdb *db, cxm_arena *a, const char *id, Cxm__V1__Experience **out)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, db->exp, id, strlen(id), &v, &vl);
    if (rc != 0)
        return rc;
    Cxm__V1__Experience *e = cxm__v1__experience__unpack(cxm_arena_protobuf(a), vl, v);
    if (!e)
        return CXM_ECORRUPT;
    *out = e;
    return 0;
}

/* The generation stored in pers.meta (0 before the first upsert). */
static int catgen_get(cxm_txn *t, xdb *db, uint64_t *gen)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, db->meta, catgen_key, sizeof catgen_key - 1, &v, &vl);
    if (rc == CXM_ENOTFOUND) {
        *gen = 0;
        return 0;
    }
    return rc == 0 ? u64_read(v, vl, gen) : rc;
}

/* Record that id changed: the next generation points at it. */
static int catgen_bump(cxm_txn *t, xdb *db, const char *id)
{
    uint64_t gen;
    int rc = catgen_get(t, db, &gen);
    if (rc != 0)
        return rc;
    uint8_t k[8];
    u64_bytes(k, gen + 1);
    if ((rc = cxm_txn_put(t, db->expgen, k, sizeof k, id, strlen(id), 0)) != 0)
        return rc;
    return cxm_txn_put(t, db->meta, catgen_key, sizeof catgen_key - 1, k, sizeof k, 0);
}

int xdb_experience_put(cxm_txn *t, xdb *db, cxm_arena *a, const Cxm__V1__Experience *e, int64_t now,
                       Cxm__V1__Experience **stored, bool *created)
{
    /* A stored value that does not decode is replaced whole (only its
     * created time is lost): an upsert is how an operator repairs it. */
    Cxm__V1__Experience *old = NULL;
    int rc = xdb_experience_get(t, db, a, e->experience_id, &old);
    if (rc != 0 && rc != CXM_ENOTFOUND && rc != CXM_ECORRUPT)
        return rc;
    Cxm__V1__Experience s = *e;
    s.created_at_unix_ms = old ? old->created_at_unix_ms : now;
    s.updated_at_unix_ms = now;
    uint8_t *buf;
    size_t len;
    const char *id = e->experience_id;
    if ((rc = pack(a, &s.base, &buf, &len)) != 0 ||
        (rc = cxm_txn_put(t, db->exp, id, strlen(id), buf, len, 0)) != 0 ||
        (rc = catgen_bump(t, db, id)) != 0)
        return rc;
    Cxm__V1__Experience *out = cxm__v1__experience__unpack(cxm_arena_protobuf(a), len, buf);
    if (!out)
        return CXM_ENOMEM;
    *stored = out;
    *created = old == NULL;
    return 0;
}

int xdb_experience_list(cxm_txn *t, xdb *db, cxm_arena *a, const char *after, xdb_experience_fn fn,
                        void *user)
{
    cxm_iter it;
    size_t alen = strlen(after);
    int rc = cxm_iter_range(t, db->exp, alen ? after : NULL, alen, NULL, 0, false, &it);
    if (rc != 0)
        return rc;
    while ((rc = cxm_iter_next(&it)) == 0) {
        if (it.klen == alen && memcmp(it.key, after, alen) == 0)
            continue; /* the page starts after `after` */
        Cxm__V1__Experience *e =
            cxm__v1__experience__unpack(cxm_arena_protobuf(a), it.vlen, it.val);
        if (!e) {
            rc = CXM_ECORRUPT;
            break;
        }
        if ((rc = fn(e, user)) != 0)
            break;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND || rc == 1 ? 0 : rc;
}

/* ---- the catalogue in memory ---- */

static uint32_t enum_bits(const int *v, size_t n)
{
    uint32_t bits = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] > 0 && v[i] < 32)
            bits |= 1u << v[i];
    return bits;
}

static void compile_eligibility(xdb_exp *x, const Cxm__V1__Eligibility *el)
{
    if (!el)
        return;
    x->stages = enum_bits((const int *)el->stages, el->n_stages);
    x->channels = enum_bits((const int *)el->channels, el->n_channels);
    x->placements = (const char *const *)el->placements;
    x->nplacements = el->n_placements;
    x->segments = (const char *const *)el->segment_ids;
    x->nsegments = el->n_segment_ids;
    x->excluded_segments = (const char *const *)el->excluded_segment_ids;
    x->nexcluded = el->n_excluded_segment_ids;
    x->consents = (const char *const *)el->required_consents;
    x->nconsents = el->n_required_consents;
}

/* A compiled entry owning m (freed with it). */
static cat_entry *compile(Cxm__V1__Experience *m)
{
    size_t idlen = strlen(m->experience_id);
    cat_entry *c = calloc(1, sizeof *c + idlen + 1);
    if (!c)
        return NULL;
    memcpy(c->id, m->experience_id, idlen);
    xdb_exp *x = &c->e;
    x->id = c->id;
    x->idlen = idlen;
    x->kind = (int)m->kind;
    x->disabled = m->disabled;
    x->value = m->value;
    x->weight = m->weight == 0 ? 1 : m->weight;
    x->valid_from = m->valid_from_unix_ms;
    x->valid_until = m->valid_until_unix_ms;
    compile_eligibility(x, m->eligibility);
    for (size_t i = 0; i < m->n_contact_caps && x->ncaps < XDB_CAPS_MAX; i++)
        x->caps[x->ncaps++] =
            (xdb_cap){m->contact_caps[i]->max_contacts, m->contact_caps[i]->period_ms};
    x->pause_after_accept_ms = m->pause_after_accept_ms;
    x->pause_after_dismiss_ms = m->pause_after_dismiss_ms;
    x->msg = m;
    c->owned = m;
    return c;
}

static uint64_t id_hash(const char *id, size_t idlen)
{
    return cxm_hash(CXM_HASH_INIT, id, idlen);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t slot_of(const xdb *db, uint64_t hash, const char *id, size_t idlen)
{
    size_t mask = db->cap - 1, i = (size_t)hash & mask;
    for (const cat_slot *sl; (sl = &db->slots[i])->c != NULL; i = (i + 1) & mask)
        if (sl->hash == hash && sl->c->e.idlen == idlen && memcmp(sl->c->id, id, idlen) == 0)
            break;
    return i;
}

/* Double the table (or create it) so it stays at most half full. */
static int table_grow(xdb *db)
{
    size_t cap = db->cap ? db->cap * 2 : 64, ocap = db->cap;
    cat_slot *slots = calloc(cap, sizeof *slots), *old = db->slots;
    if (!slots)
        return CXM_ENOMEM;
    db->slots = slots;
    db->cap = cap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].c)
            slots[slot_of(db, old[i].hash, old[i].c->id, old[i].c->e.idlen)] = old[i];
    free(old);
    return 0;
}

/* Put c in the table, freeing the entry it replaces. */
static int table_put(xdb *db, cat_entry *c)
{
    if ((db->n + 1) * 2 > db->cap) {
        int rc = table_grow(db);
        if (rc != 0)
            return rc;
    }
    uint64_t hash = id_hash(c->id, c->e.idlen);
    cat_slot *sl = &db->slots[slot_of(db, hash, c->id, c->e.idlen)];
    if (sl->c)
        entry_free(sl->c);
    else
        db->n++;
    *sl = (cat_slot){hash, c};
    return 0;
}

/* Compile the stored value of experience id into the table. One value
 * that does not decode must not stop every Recommend: it is left out (an
 * earlier version of it stays) and said once, at this generation. */
static int apply_value(xdb *db, const void *id, size_t idlen, const void *v, size_t vl)
{
    Cxm__V1__Experience *m = cxm__v1__experience__unpack(NULL, vl, v);
    if (!m) {
        cxm_log_error("personalisation.experience_corrupt",
                      "experience \"%.*s\" in pers.exp does not decode and is left out of the "
                      "catalogue: upsert it again to repair it",
                      (int)(idlen > 128 ? 128 : idlen), (const char *)id);
        return 0;
    }
    cat_entry *c = compile(m);
    if (!c) {
        cxm__v1__experience__free_unpacked(m, NULL);
        return CXM_ENOMEM;
    }
    int rc = table_put(db, c);
    if (rc != 0)
        entry_free(c);
    return rc;
}

/* Every stored experience: the first catch-up reads pers.exp once instead
 * of replaying every generation ever written. */
static int load_all(xdb *db, cxm_txn *t)
{
    cxm_iter it;
    int rc = cxm_iter_prefix(t, db->exp, NULL, 0, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0)
        rc = apply_value(db, it.key, it.klen, it.val, it.vlen);
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* The experiences changed after db->gen, in generation order. */
static int load_changes(xdb *db, cxm_txn *t)
{
    uint8_t from[8];
    u64_bytes(from, db->gen + 1);
    cxm_iter it;
    int rc = cxm_iter_range(t, db->expgen, from, sizeof from, NULL, 0, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        const void *v;
        size_t vl;
        rc = cxm_txn_get_ref(t, db->exp, it.val, it.vlen, &v, &vl);
        if (rc == 0)
            rc = apply_value(db, it.val, it.vlen, v, vl);
        else if (rc == CXM_ENOTFOUND)
            rc = 0; /* experiences are never deleted; tolerate it anyway */
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* Highest value x weight first, then by id: the order fills are taken in,
 * so the request path can stop at the first eligible ones. */
static int by_worth(const void *x, const void *y)
{
    const xdb_exp *a = *(const xdb_exp *const *)x, *b = *(const xdb_exp *const *)y;
    double va = a->value * a->weight, vb = b->value * b->weight;
    return va > vb ? -1 : va < vb ? 1 : strcmp(a->id, b->id);
}

/* Rebuild the arrays of xdb_catalog_all and _service_actions. */
static int index_rebuild(xdb *db)
{
    const xdb_exp **all = malloc((db->n ? db->n : 1) * sizeof *all);
    const xdb_exp **act = malloc((db->n ? db->n : 1) * sizeof *act);
    if (!all || !act) {
        free(all);
        free(act);
        return CXM_ENOMEM;
    }
    size_t n = 0, na = 0;
    for (size_t i = 0; i < db->cap; i++)
        if (db->slots[i].c)
            all[n++] = &db->slots[i].c->e;
    qsort(all, n, sizeof *all, by_worth);
    for (size_t i = 0; i < n; i++)
        if (all[i]->kind == CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_SERVICE_ACTION)
            act[na++] = all[i];
    free(db->all);
    free(db->actions);
    db->all = all;
    db->actions = act;
    db->nall = n;
    db->nactions = na;
    return 0;
}

/* Under the write lock: bring the table to gen, what t shows. A failure
 * leaves the generation where it was, so the next lock tries again (the
 * entries already replaced are the newer ones, which is harmless). The
 * arrays are rebuilt even then, since a replaced entry was freed; when even
 * that fails they are emptied rather than left pointing at freed entries. */
static int catch_up(xdb *db, cxm_txn *t, uint64_t gen)
{
    if (atomic_load(&db->gen) >= gen)
        return 0;
    int rc = db->n == 0 ? load_all(db, t) : load_changes(db, t);
    int irc = index_rebuild(db);
    if (irc != 0)
        db->nall = db->nactions = 0;
    if (rc == 0 && (rc = irc) == 0)
        atomic_store(&db->gen, gen);
    return rc;
}

/* At open, before any reader: the contact filter, and the catalogue, so
 * the first Recommend after a restart does not pay for loading it. */
static int open_load(cxm_txn *t, void *user)
{
    xdb *db = user;
    uint64_t gen;
    int rc = seen_load(t, db);
    if (rc == 0)
        rc = catgen_get(t, db, &gen);
    return rc == 0 ? catch_up(db, t, gen) : rc;
}

int xdb_catalog_lock(xdb *db, cxm_txn *t)
{
    uint64_t gen;
    int rc = catgen_get(t, db, &gen);
    if (rc != 0)
        return rc;
    for (;;) {
        pthread_rwlock_rdlock(&db->lock);
        if (atomic_load(&db->gen) >= gen)
            return 0;
        pthread_rwlock_unlock(&db->lock);
        pthread_rwlock_wrlock(&db->lock);
        rc = catch_up(db, t, gen);
        pthread_rwlock_unlock(&db->lock);
        if (rc != 0)
            return rc;
    }
}

void xdb_catalog_unlock(xdb *db)
{
    pthread_rwlock_unlock(&db->lock);
}

const xdb_exp *xdb_catalog_find(const xdb *db, const char *id, size_t idlen)
{
    if (db->cap == 0)
        return NULL;
    const cat_entry *c = db->slots[slot_of(db, id_hash(id, idlen), id, idlen)].c;
    return c ? &c->e : NULL;
}

size_t xdb_catalog_all(const xdb *db, const xdb_exp *const **out)
{
    *out = db->all;
    return db->nall;
}

size_t xdb_catalog_service_actions(const xdb *db, const xdb_exp *const **out)
{
    *out = db->actions;
    return db->nactions;
}

uint64_t xdb_catalog_gen(const xdb *db)
{
    return atomic_load(&((xdb *)db)->gen);
}

/* ---- feedback signals ---- */

#define SIGNALS_SIZE 20

int xdb_signals_get(cxm_txn *t, xdb *db, const char *customer_id, xdb_signals *out)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, db->fb, customer_id, strlen(customer_id), &v, &vl);
    if (rc == CXM_ENOTFOUND) {
        *out = (xdb_signals){0};
        return 0;
    }
    if (rc != 0)
        return rc;
    xdb_signals s;
    cxm_keyreader r;
    cxm_keyreader_init(&r, v, vl);
    cxm_keyread_i64(&r, &s.last_detractor_ms);
    cxm_keyread_i64(&r, &s.last_strong_negative_ms);
    cxm_keyread_u32(&r, &s.open_follow_ups);
    if ((rc = cxm_keyread_end(&r)) == 0)
        *out = s;
    return rc;
}

static int signals_put(cxm_txn *t, xdb *db, const char *customer_id, const xdb_signals *s)
{
    uint8_t v[SIGNALS_SIZE];
    cxm_key b;
    cxm_key_init(&b, v, sizeof v);
    cxm_key_i64(&b, s->last_detractor_ms);
    cxm_key_i64(&b, s->last_strong_negative_ms);
    cxm_key_u32(&b, s->open_follow_ups);
    return cxm_txn_put(t, db->fb, customer_id, strlen(customer_id), v, sizeof v, 0);
}

/* An NPS answer of 0 to 6. */
static bool is_detractor(const Cxm__V1__FeedbackReceived *f)
{
    if (f->nps_category == CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR)
        return true;
    return f->kind == CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS && f->score >= 0 && f->score <= 6;
}

/* A comment whose sentiment is -0.5 or below, or that feedback's own
 * policy found negative enough for a follow-up. */
static bool is_strong_negative(const Cxm__V1__FeedbackReceived *f)
{
    bool analysed = f->sentiment != CXM__V1__SENTIMENT_LABEL__SENTIMENT_LABEL_UNSPECIFIED;
    return f->strongly_negative || (analysed && f->sentiment_score <= -0.5);
}

static int apply_feedback(cxm_txn *t, xdb *db, const Cxm__V1__Event *ev)
{
    const Cxm__V1__FeedbackReceived *f = ev->feedback_received;
    bool det = is_detractor(f), neg = is_strong_negative(f);
    if (!det && !neg)
        return 0;
    int64_t at = f->answered_at_unix_ms ? f->answered_at_unix_ms : ev->occurred_at_unix_ms;
    xdb_signals s;
    int rc = xdb_signals_get(t, db, ev->customer_id, &s);
    if (rc != 0)
        return rc;
    if (det)
        s.last_detractor_ms = max_i64(s.last_detractor_ms, at);
    if (neg)
        s.last_strong_negative_ms = max_i64(s.last_strong_negative_ms, at);
    return signals_put(t, db, ev->customer_id, &s);
}

/* FollowUpChanged carries the customer's open count after the change, so it
 * replaces ours rather than being counted up and down. */
static int apply_follow_up(cxm_txn *t, xdb *db, const Cxm__V1__Event *ev)
{
    xdb_signals s;
    int rc = xdb_signals_get(t, db, ev->customer_id, &s);
    if (rc != 0)
        return rc;
    s.open_follow_ups = ev->follow_up_changed->open_follow_ups;
    return signals_put(t, db, ev->customer_id, &s);
}

int xdb_signals_apply(cxm_txn *t, xdb *db, const Cxm__V1__Event *ev)
{
    if (!ev->customer_id || !*ev->customer_id)
        return 0;
    switch (ev->payload_case) {
    case CXM__V1__EVENT__PAYLOAD_FEEDBACK_RECEIVED:
        return apply_feedback(t, db, ev);
    case CXM__V1__EVENT__PAYLOAD_FOLLOW_UP_CHANGED:
        return apply_follow_up(t, db, ev);
    default:
        return 0;
    }
}

/* ---- contact history ---- */

#define CONTACT_MAX (20 + 8 * XDB_SHOWN_MAX) /* accept, dismiss, nshown, shown_ms */

static int contact_decode(const void *v, size_t vl, xdb_contact *out)
{
    cxm_keyreader r;
    cxm_keyreader_init(&r, v, vl);
    cxm_keyread_i64(&r, &out->last_accept_ms);
    cxm_keyread_i64(&r, &out->last_dismiss_ms);
    int rc = cxm_keyread_u32(&r, &out->nshown);
    if (rc == 0 && out->nshown > XDB_SHOWN_MAX)
        return CXM_ECORRUPT;
    for (uint32_t i = 0; rc == 0 && i < out->nshown; i++)
        rc = cxm_keyread_i64(&r, &out->shown_ms[i]);
    return rc == 0 ? cxm_keyread_end(&r) : rc;
}

static int contact_put(cxm_txn *t, xdb *db, const xkey *k, const xdb_contact *c)
{
    uint8_t v[CONTACT_MAX];
    cxm_key b;
    cxm_key_init(&b, v, sizeof v);
    cxm_key_i64(&b, c->last_accept_ms);
    cxm_key_i64(&b, c->last_dismiss_ms);
    cxm_key_u32(&b, c->nshown);
    for (uint32_t i = 0; i < c->nshown; i++)
        cxm_key_i64(&b, c->shown_ms[i]);
    size_t n;
    int rc = cxm_key_finish(&b, &n);
    return rc == 0 ? cxm_txn_put(t, db->contact, k->b, k->n, v, n, 0) : rc;
}

static int contact_read(cxm_txn *t, xdb *db, const xkey *k, xdb_contact *out)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, db->contact, k->b, k->n, &v, &vl);
    if (rc == CXM_ENOTFOUND) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    return rc == 0 ? contact_decode(v, vl, out) : rc;
}

int xdb_contact_get(cxm_txn *t, xdb *db, const char *customer_id, const char *experience_id,
                    xdb_contact *out)
{
    if (!seen_maybe(db, pair_hash(customer_id, experience_id))) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    xkey k;
    int rc = key2(&k, customer_id, experience_id);
    return rc == 0 ? contact_read(t, db, &k, out) : rc;
}

/* Add an impression at its place in time order; past XDB_SHOWN_MAX the
 * oldest falls out (which may be this one, when it is older than all). */
static void shown_add(xdb_contact *c, int64_t at)
{
    uint32_t i = c->nshown;
    if (i == XDB_SHOWN_MAX) {
        if (at < c->shown_ms[0])
            return;
        memmove(c->shown_ms, c->shown_ms + 1, (XDB_SHOWN_MAX - 1) * sizeof c->shown_ms[0]);
        i = --c->nshown;
    }
    for (; i > 0 && c->shown_ms[i - 1] > at; i--)
        c->shown_ms[i] = c->shown_ms[i - 1];
    c->shown_ms[i] = at;
    c->nshown++;
}

int xdb_contact_record(cxm_txn *t, xdb *db, const char *customer_id, const char *experience_id,
                       int outcome, int64_t at)
{
    if (outcome == CXM__V1__OUTCOME_KIND__OUTCOME_KIND_CLICK)
        return 0;
    if (outcome < CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION ||
        outcome > CXM__V1__OUTCOME_KIND__OUTCOME_KIND_DISMISS)
        return CXM_EINVAL;
    xkey k;
    xdb_contact c;
    int rc = key2(&k, customer_id, experience_id);
    if (rc == 0)
        rc = contact_read(t, db, &k, &c);
    if (rc != 0)
        return rc;
    if (outcome == CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION)
        shown_add(&c, at);
    else if (outcome == CXM__V1__OUTCOME_KIND__OUTCOME_KIND_ACCEPT)
        c.last_accept_ms = max_i64(c.last_accept_ms, at);
    else
        c.last_dismiss_ms = max_i64(c.last_dismiss_ms, at);
    seen_add(db, pair_hash(customer_id, experience_id));
    return contact_put(t, db, &k, &c);
}

/* Impressions in (now - period, now]; shown_ms is in time order, so the
 * walk starts at the newest and stops at the first one out of the window. */
static uint32_t shown_within(const xdb_contact *c, int64_t period, int64_t now)
{
    uint32_t n = 0;
    for (uint32_t i = c->nshown; i > 0; i--) {
        int64_t at = c->shown_ms[i - 1];
        if (at <= now - period)
            break;
        if (at <= now)
            n++;
    }
    return n;
}

static bool paused(int64_t last, int64_t pause, int64_t now)
{
    return last != 0 && pause > 0 && now < last + pause;
}

bool xdb_contact_allows(const xdb_contact *c, const xdb_exp *e, int64_t now)
{
    if (paused(c->last_accept_ms, e->pause_after_accept_ms, now) ||
        paused(c->last_dismiss_ms, e->pause_after_dismiss_ms, now))
        return false;
    for (size_t i = 0; i < e->ncaps; i++)
        if (shown_within(c, e->caps[i].period_ms, now) >= e->caps[i].max_contacts)
            return false;
    return true;
}

/* ---- idempotency ---- */

/* id -> customer in byid, and (customer, id) in bycust for erasure. */
static int claim(cxm_txn *t, MDB_dbi byid, MDB_dbi bycust, const char *id, const char *customer_id,
                 bool *dup)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, byid, id, strlen(id), &v, &vl);
    if (rc == 0) {
        *dup = true;
        return 0;
    }
    if (rc != CXM_ENOTFOUND)
        return rc;
    xkey k;
    if ((rc = key2(&k, customer_id, id)) != 0 ||
        (rc = cxm_txn_put(t, byid, id, strlen(id), customer_id, strlen(customer_id), 0)) != 0 ||
        (rc = cxm_txn_put(t, bycust, k.b, k.n, "", 0, 0)) != 0)
        return rc;
    *dup = false;
    return 0;
}

int xdb_outcome_claim(cxm_txn *t, xdb *db, const char *outcome_id, const char *customer_id,
                      bool *dup)
{
    return claim(t, db->outcome, db->cout, outcome_id, customer_id, dup);
}

int xdb_interaction_claim(cxm_txn *t, xdb *db, const char *interaction_id, const char *customer_id,
                          bool *dup)
{
    return claim(t, db->inter, db->cinter, interaction_id, customer_id, dup);
}

/* ---- merges and erasure ---- */

/* The second strings of every key under customer_id's prefix in dbi, as
 * arena copies: collected first so the rows can then be deleted. */
typedef struct idlist {
    char **ids;
    size_t n, cap;
    cxm_arena *a;
} idlist;

static int idlist_add(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    (void)val;
    (void)vlen;
    idlist *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **ids = cxm_arena_alloc(l->a, cap * sizeof *ids);
        if (!ids)
            return CXM_ENOMEM;
        if (l->n)
            memcpy(ids, l->ids, l->n * sizeof *ids);
        l->ids = ids;
        l->cap = cap;
    }
    return key2_second(key, klen, l->a, &l->ids[l->n++]);
}

static int ids_of(cxm_txn *t, MDB_dbi dbi, const char *customer_id, idlist *l)
{
    xkey k;
    int rc = key2(&k, customer_id, NULL);
    return rc == 0 ? cxm_txn_scan_prefix(t, dbi, k.b, k.n, false, idlist_add, l) : rc;
}

static int merge_signals(cxm_txn *t, xdb *db, const char *source, const char *target)
{
    xdb_signals s, g;
    int rc = xdb_signals_get(t, db, source, &s);
    if (rc == 0)
        rc = xdb_signals_get(t, db, target, &g);
    if (rc != 0 ||
        (s.last_detractor_ms == 0 && s.last_strong_negative_ms == 0 && s.open_follow_ups == 0))
        return rc;
    g.last_detractor_ms = max_i64(g.last_detractor_ms, s.last_detractor_ms);
    g.last_strong_negative_ms = max_i64(g.last_strong_negative_ms, s.last_strong_negative_ms);
    g.open_follow_ups += s.open_follow_ups;
    if ((rc = signals_put(t, db, target, &g)) != 0)
        return rc;
    rc = cxm_txn_del(t, db->fb, source, strlen(source));
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* Both histories in one: the latest times, the impressions united. */
static void contact_unite(xdb_contact *into, const xdb_contact *from)
{
    into->last_accept_ms = max_i64(into->last_accept_ms, from->last_accept_ms);
    into->last_dismiss_ms = max_i64(into->last_dismiss_ms, from->last_dismiss_ms);
    for (uint32_t i = 0; i < from->nshown; i++)
        shown_add(into, from->shown_ms[i]);
}

static int merge_contact(cxm_txn *t, xdb *db, const char *source, const char *target,
                         const char *experience_id)
{
    xkey sk, tk;
    xdb_contact s, g;
    int rc;
    if ((rc = key2(&sk, source, experience_id)) != 0 ||
        (rc = key2(&tk, target, experience_id)) != 0 || (rc = contact_read(t, db, &sk, &s)) != 0 ||
        (rc = contact_read(t, db, &tk, &g)) != 0)
        return rc;
    contact_unite(&g, &s);
    seen_add(db, pair_hash(target, experience_id));
    if ((rc = contact_put(t, db, &tk, &g)) != 0)
        return rc;
    return cxm_txn_del(t, db->contact, sk.b, sk.n);
}

int xdb_merge(cxm_txn *t, xdb *db, const char *source, const char *target)
{
    if (strcmp(source, target) == 0)
        return 0;
    int rc = merge_signals(t, db, source, target);
    if (rc != 0)
        return rc;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    idlist l = {.a = &a};
    rc = ids_of(t, db->contact, source, &l);
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        rc = merge_contact(t, db, source, target, l.ids[i]);
    cxm_arena_dispose(&a);
    return rc;
}

/* The claims of customer_id: both rows of each, the by-id row only when it
 * still names this customer. */
static int erase_claims(cxm_txn *t, MDB_dbi byid, MDB_dbi bycust, const char *customer_id,
                        cxm_arena *a, uint64_t *count)
{
    idlist l = {.a = a};
    int rc = ids_of(t, bycust, customer_id, &l);
    size_t cl = strlen(customer_id);
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        const char *id = l.ids[i];
        const void *v;
        size_t vl;
        rc = cxm_txn_get_ref(t, byid, id, strlen(id), &v, &vl);
        if (rc == 0 && vl == cl && memcmp(v, customer_id, cl) == 0)
            rc = del_counted(t, byid, id, strlen(id), count);
        else if (rc == CXM_ENOTFOUND)
            rc = 0;
        xkey k;
        if (rc == 0 && (rc = key2(&k, customer_id, id)) == 0)
            rc = del_counted(t, bycust, k.b, k.n, count);
    }
    return rc;
}

static int erase_contacts(cxm_txn *t, xdb *db, const char *customer_id, cxm_arena *a,
                          uint64_t *count)
{
    idlist l = {.a = a};
    int rc = ids_of(t, db->contact, customer_id, &l);
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        xkey k;
        if ((rc = key2(&k, customer_id, l.ids[i])) == 0)
            rc = del_counted(t, db->contact, k.b, k.n, count);
    }
    return rc;
}

int xdb_erase(cxm_txn *t, xdb *db, const char *customer_id, uint64_t *records)
{
    uint64_t count = 0;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int rc = del_counted(t, db->fb, customer_id, strlen(customer_id), &count);
    if (rc == 0)
        rc = erase_contacts(t, db, customer_id, &a, &count);
    if (rc == 0)
        rc = erase_claims(t, db->outcome, db->cout, customer_id, &a, &count);
    if (rc == 0)
        rc = erase_claims(t, db->inter, db->cinter, customer_id, &a, &count);
    cxm_arena_dispose(&a);
    if (rc == 0)
        *records = count;
    return rc;
}

/* ---- model infos ---- */

int xdb_model_put(cxm_txn *t, xdb *db, cxm_arena *a, const Cxm__V1__ModelInfo *m)
{
    uint8_t k[8], *buf;
    size_t len;
    u64_bytes(k, m->version);
    int rc = pack(a, &m->base, &buf, &len);
    return rc == 0 ? cxm_txn_put(t, db->model, k, sizeof k, buf, len, 0) : rc;
}

int xdb_model_get(cxm_txn *t, xdb *db, cxm_arena *a, uint64_t version, Cxm__V1__ModelInfo **out)
{
    uint8_t k[8];
    u64_bytes(k, version);
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, db->model, k, sizeof k, &v, &vl);
    if (rc != 0)
        return rc;
    Cxm__V1__ModelInfo *m = cxm__v1__model_info__unpack(cxm_arena_protobuf(a), vl, v);
    if (!m)
        return CXM_ECORRUPT;
    *out = m;
    return 0;
}
