/*
 * fdb.c - the feedback service's tables (see fdb.h for the layouts).
 */
#include "fdb.h"

#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"

struct fdb {
    cxm_store *store;
    const fagg *agg;
    MDB_dbi cur, ver, resp, frec, cust, hash, dict, meta, stage, seg, cseg, merged, members;
};

int fdb_open(cxm_store *store, const fagg *agg, fdb **out)
{
    fdb *db = calloc(1, sizeof *db);
    if (!db)
        return CXM_ENOMEM;
    db->store = store;
    db->agg = agg;
    const cxm_store_table tables[] = {
        {"fb_survey_cur", &db->cur}, {"fb_survey_ver", &db->ver}, {"fb_responses", &db->resp},
        {"fb_frec", &db->frec},      {"fb_cust", &db->cust},      {"fb_dict", &db->dict},
        {"fb_meta", &db->meta},      {"fb_stage", &db->stage},    {"fb_seg", &db->seg},
        {"fb_cseg", &db->cseg},      {"fb_merged", &db->merged},  {"fb_members", &db->members},
        {"fb_hash", &db->hash},
    };
    int rc = cxm_store_dbis(store, tables, sizeof tables / sizeof tables[0]);
    if (rc != 0) {
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void fdb_close(fdb *db)
{
    free(db);
}

cxm_store *fdb_store(const fdb *db)
{
    return db->store;
}

/* ---- small helpers ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v >> 32));
    put_u32(p + 4, (uint32_t)v);
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
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

/* A key of one string field and up to two more: built, checked, length set. */
typedef struct fkey {
    uint8_t b[CXM_KEY_MAX];
    size_t n;
    cxm_key k;
} fkey;

static cxm_key *fkey_start(fkey *k)
{
    cxm_key_init(&k->k, k->b, sizeof k->b);
    return &k->k;
}

static int fkey_end(fkey *k)
{
    return cxm_key_finish(&k->k, &k->n);
}

/* ---- surveys ---- */

int fdb_survey_head(cxm_txn *t, fdb *db, const char *survey_id, uint32_t *version,
                    uint64_t *responses)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, db->cur, survey_id, strlen(survey_id), &v, &vl);
    if (rc != 0)
        return rc;
    if (vl != 12)
        return CXM_ECORRUPT;
    *version = get_u32(v);
    *responses = get_u64((const uint8_t *)v + 4);
    return 0;
}

static int head_put(cxm_txn *t, fdb *db, const char *survey_id, uint32_t version,
                    uint64_t responses)
{
    uint8_t v[12];
    put_u32(v, version);
    put_u64(v + 4, responses);
    return cxm_txn_put(t, db->cur, survey_id, strlen(survey_id), v, sizeof v, 0);
}

static int ver_key(fkey *k, const char *survey_id, uint32_t version)
{
    cxm_key *b = fkey_start(k);
    cxm_key_str(b, survey_id);
    cxm_key_u32(b, version);
    return fkey_end(k);
}

int fdb_survey_get(cxm_txn *t, fdb *db, cxm_arena *a, const char *survey_id, uint32_t version,
                   Cxm__V1__Survey **survey)
{
    uint64_t responses;
    int rc = 0;
    if (version == 0)
        rc = fdb_survey_head(t, db, survey_id, &version, &responses);
    fkey k;
    if (rc == 0)
        rc = ver_key(&k, survey_id, version);
    const void *v;
    size_t vl;
    if (rc == 0)
        rc = cxm_txn_get_ref(t, db->ver, k.b, k.n, &v, &vl);
    if (rc != 0)
        return rc;
    Cxm__V1__Survey *s = cxm__v1__survey__unpack(cxm_arena_protobuf(a), vl, v);
    if (!s)
        return CXM_ECORRUPT;
    *survey = s;
    return 0;
}

int fdb_survey_put(cxm_txn *t, fdb *db, cxm_arena *a, const Cxm__V1__Survey *s)
{
    uint32_t version;
    uint64_t responses = 0;
    int rc = fdb_survey_head(t, db, s->survey_id, &version, &responses);
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    fkey k;
    uint8_t *buf;
    size_t len;
    if ((rc = ver_key(&k, s->survey_id, s->version)) != 0 ||
        (rc = pack(a, &s->base, &buf, &len)) != 0 ||
        (rc = cxm_txn_put(t, db->ver, k.b, k.n, buf, len, 0)) != 0)
        return rc;
    return head_put(t, db, s->survey_id, s->version, responses);
}

/* A change of the survey's response count by delta. */
static int survey_count(cxm_txn *t, fdb *db, const char *survey_id, int delta)
{
    uint32_t version;
    uint64_t responses;
    int rc = fdb_survey_head(t, db, survey_id, &version, &responses);
    if (rc == CXM_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    responses = delta < 0 && responses == 0 ? 0 : responses + (uint64_t)(int64_t)delta;
    return head_put(t, db, survey_id, version, responses);
}

int fdb_survey_list(cxm_txn *t, fdb *db, cxm_arena *a, const char *after, fdb_survey_fn fn,
                    void *user)
{
    cxm_iter it;
    size_t alen = strlen(after);
    int rc = cxm_iter_range(t, db->cur, alen ? after : NULL, alen, NULL, 0, false, &it);
    if (rc != 0)
        return rc;
    while ((rc = cxm_iter_next(&it)) == 0) {
        if (it.klen == alen && memcmp(it.key, after, alen) == 0)
            continue; /* the page starts after `after` */
        char *id = cxm_arena_strndup(a, it.key, it.klen);
        if (!id) {
            rc = CXM_ENOMEM;
            break;
        }
        Cxm__V1__Survey *s;
        if ((rc = fdb_survey_get(t, db, a, id, 0, &s)) != 0 || (rc = fn(s, user)) != 0)
            break;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND || rc > 0 ? 0 : rc;
}

/* ---- dictionary ---- */

int fdb_dict_id(cxm_txn *t, fdb *db, const char *name, uint32_t *id)
{
    fkey k;
    cxm_key *b = fkey_start(&k);
    cxm_key_u8(b, 's');
    cxm_key_str(b, name);
    const void *v;
    size_t vl;
    int rc = fkey_end(&k);
    if (rc == 0)
        rc = cxm_txn_get_ref(t, db->dict, k.b, k.n, &v, &vl);
    if (rc != 0)
        return rc;
    if (vl != 4)
        return CXM_ECORRUPT;
    *id = get_u32(v);
    return 0;
}

int fdb_dict_name(cxm_txn *t, fdb *db, cxm_arena *a, uint32_t id, const char **name)
{
    uint8_t k[5] = {'i'};
    put_u32(k + 1, id);
    void *v;
    size_t vl;
    int rc = cxm_txn_get(t, db->dict, k, sizeof k, a, &v, &vl);
    if (rc == 0)
        *name = v;
    return rc;
}

int fdb_intern(cxm_txn *t, fdb *db, const char *name, uint32_t *id)
{
    int rc = fdb_dict_id(t, db, name, id);
    if (rc != CXM_ENOTFOUND)
        return rc;
    const void *v;
    size_t vl;
    uint32_t next = 1;
    rc = cxm_txn_get_ref(t, db->meta, "dict", 4, &v, &vl);
    if (rc == 0 && vl == 4)
        next = get_u32(v);
    else if (rc != CXM_ENOTFOUND && rc != 0)
        return rc;
    uint8_t nv[4], ik[5] = {'i'};
    put_u32(nv, next + 1);
    put_u32(ik + 1, next);
    fkey k;
    cxm_key *b = fkey_start(&k);
    cxm_key_u8(b, 's');
    cxm_key_str(b, name);
    uint8_t idv[4];
    put_u32(idv, next);
    if ((rc = fkey_end(&k)) != 0 || (rc = cxm_txn_put(t, db->dict, k.b, k.n, idv, 4, 0)) != 0 ||
        (rc = cxm_txn_put(t, db->dict, ik, sizeof ik, name, strlen(name), 0)) != 0 ||
        (rc = cxm_txn_put(t, db->meta, "dict", 4, nv, 4, 0)) != 0)
        return rc;
    *id = next;
    return 0;
}

/* ---- responses ---- */

int fdb_response_get(cxm_txn *t, fdb *db, cxm_arena *a, const char *response_id,
                     Cxm__V1__SubmitResponseRequest **req, Cxm__V1__SubmitResponseResponse **resp)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, db->resp, response_id, strlen(response_id), &v, &vl);
    if (rc != 0)
        return rc;
    const uint8_t *p = v;
    if (vl < 4 || get_u32(p) > vl - 4)
        return CXM_ECORRUPT;
    size_t qlen = get_u32(p);
    ProtobufCAllocator *pa = cxm_arena_protobuf(a);
    Cxm__V1__SubmitResponseRequest *q = cxm__v1__submit_response_request__unpack(pa, qlen, p + 4);
    Cxm__V1__SubmitResponseResponse *r =
        cxm__v1__submit_response_response__unpack(pa, vl - 4 - qlen, p + 4 + qlen);
    if (!q || !r)
        return CXM_ECORRUPT;
    if (req)
        *req = q;
    if (resp)
        *resp = r;
    return 0;
}

static int frec_key(fkey *k, int64_t at, const char *response_id)
{
    cxm_key *b = fkey_start(k);
    cxm_key_i64(b, at);
    cxm_key_str(b, response_id);
    return fkey_end(k);
}

static int cust_key(fkey *k, const char *customer_id, int64_t at, const char *response_id)
{
    cxm_key *b = fkey_start(k);
    cxm_key_str(b, customer_id);
    cxm_key_i64(b, at);
    cxm_key_str(b, response_id);
    return fkey_end(k);
}

static void hash_key(uint8_t k[8], const char *customer_id)
{
    put_u64(k, cxm_hash(0, customer_id, strlen(customer_id)));
}

static int hash_put(cxm_txn *t, fdb *db, const char *customer_id)
{
    uint8_t k[8];
    hash_key(k, customer_id);
    return cxm_txn_put(t, db->hash, k, sizeof k, customer_id, strlen(customer_id), 0);
}

/* The answer time and (rid non-NULL) response id of a fb_cust key. */
static int cust_key_read(const void *key, size_t klen, cxm_arena *a, int64_t *at, char **rid)
{
    cxm_keyreader r;
    cxm_keyreader_init(&r, key, klen);
    cxm_keyread_skip_bytes(&r);
    int rc = cxm_keyread_i64(&r, at);
    if (rc == 0 && rid)
        rc = cxm_keyread_bytes_arena(&r, a, rid, NULL);
    return rc;
}

int fdb_response_put(cxm_txn *t, fdb *db, cxm_arena *a, const Cxm__V1__SubmitResponseRequest *req,
                     const Cxm__V1__SubmitResponseResponse *resp, const frec *r)
{
    uint8_t *q, *o;
    size_t ql, ol;
    int rc = pack(a, &req->base, &q, &ql);
    if (rc == 0)
        rc = pack(a, &resp->base, &o, &ol);
    uint8_t *v = rc == 0 ? cxm_arena_alloc(a, 4 + ql + ol) : NULL;
    if (rc != 0 || !v)
        return rc ? rc : CXM_ENOMEM;
    put_u32(v, (uint32_t)ql);
    memcpy(v + 4, q, ql);
    memcpy(v + 4 + ql, o, ol);
    const char *rid = req->response_id, *cid = req->customer->customer_id;
    int64_t at = req->submitted_at_unix_ms;
    fkey fk, ck;
    if ((rc = frec_key(&fk, at, rid)) != 0 || (rc = cust_key(&ck, cid, at, rid)) != 0)
        return rc;
    if ((rc = cxm_txn_put(t, db->resp, rid, strlen(rid), v, 4 + ql + ol, 0)) != 0 ||
        (rc = cxm_txn_put(t, db->frec, fk.b, fk.n, r, frec_size(r->nratings), 0)) != 0 ||
        (rc = cxm_txn_put(t, db->cust, ck.b, ck.n, "", 0, 0)) != 0 ||
        (rc = hash_put(t, db, cid)) != 0 || (rc = survey_count(t, db, req->survey_id, +1)) != 0)
        return rc;
    return db->agg ? fagg_apply(t, db->agg, r, +1) : 0;
}

/* Does a stored record of vl bytes hold the nratings ratings its readers
 * (the analytics, the aggregates) walk? A damaged one is CXM_ECORRUPT. */
static bool frec_whole(const frec *r, size_t vl)
{
    return vl >= sizeof(frec) && r->nratings <= FREC_MAX_RATINGS && vl == frec_size(r->nratings);
}

/* One response's rows, found through its customer index key. */
static int response_del(cxm_txn *t, fdb *db, cxm_arena *a, const char *response_id)
{
    Cxm__V1__SubmitResponseRequest *req;
    int rc = fdb_response_get(t, db, a, response_id, &req, NULL);
    if (rc != 0)
        return rc;
    fkey fk;
    if ((rc = frec_key(&fk, req->submitted_at_unix_ms, response_id)) != 0)
        return rc;
    const void *v;
    size_t vl;
    rc = cxm_txn_get_ref(t, db->frec, fk.b, fk.n, &v, &vl);
    if (rc == 0) {
        if (vl < sizeof(frec))
            return CXM_ECORRUPT;
        const frec *r = cxm_arena_aligned(a, v, vl, _Alignof(frec));
        if (!r)
            return CXM_ENOMEM;
        if (!frec_whole(r, vl))
            return CXM_ECORRUPT;
        if (db->agg && (rc = fagg_apply(t, db->agg, r, -1)) != 0)
            return rc;
        rc = cxm_txn_del(t, db->frec, fk.b, fk.n);
    }
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    if ((rc = survey_count(t, db, req->survey_id, -1)) != 0)
        return rc;
    return cxm_txn_del(t, db->resp, response_id, strlen(response_id));
}

/* ---- the recontact history ---- */

typedef struct hist_ctx {
    int64_t at, window;
    fdb_history *h;
    cxm_arena *a;
    int64_t *times;
    size_t cap;
} hist_ctx;

static int hist_keep(hist_ctx *c, int64_t at)
{
    if (c->h->in_window == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        int64_t *v = cxm_arena_alloc(c->a, cap * sizeof *v);
        if (!v)
            return CXM_ENOMEM;
        if (c->cap)
            memcpy(v, c->times, c->cap * sizeof *v);
        c->times = v, c->cap = cap;
    }
    c->times[c->h->in_window++] = at;
    return 0;
}

static int hist_one(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    (void)val;
    (void)vlen;
    hist_ctx *c = user;
    int64_t at;
    if (cust_key_read(key, klen, NULL, &at, NULL) != 0)
        return CXM_ECORRUPT;
    if (at > c->at)
        return 0;
    if (at > c->h->last_ms)
        c->h->last_ms = at;
    return c->window > 0 && at > c->at - c->window ? hist_keep(c, at) : 0;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int id_prefix(fkey *k, const char *id)
{
    cxm_key *b = fkey_start(k);
    cxm_key_str(b, id);
    return fkey_end(k);
}

int fdb_history_get(cxm_txn *t, fdb *db, cxm_arena *a, const char *customer_id, int64_t at,
                    int64_t window_ms, fdb_history *out)
{
    const char *root, **ids;
    size_t n;
    int rc = fdb_root(t, db, a, customer_id, &root);
    if (rc == 0)
        rc = fdb_group(t, db, a, root, &ids, &n);
    if (rc != 0)
        return rc;
    fdb_history h = {.last_ms = INT64_MIN};
    hist_ctx c = {.at = at, .window = window_ms, .h = &h, .a = a};
    for (size_t i = 0; i < n && rc == 0; i++) {
        fkey k;
        if ((rc = id_prefix(&k, ids[i])) == 0)
            rc = cxm_txn_scan_prefix(t, db->cust, k.b, k.n, false, hist_one, &c);
    }
    if (rc != 0)
        return rc;
    /* One id's answers come in time order, a merge group's interleave. */
    if (h.in_window > 1)
        qsort(c.times, h.in_window, sizeof *c.times, cmp_i64);
    h.window_ms = c.times;
    *out = h;
    return 0;
}

/* ---- replicas ---- */

int fdb_stage_set(cxm_txn *t, fdb *db, const char *customer_id, int stage)
{
    uint8_t v = (uint8_t)stage;
    if (stage == 0) {
        int rc = cxm_txn_del(t, db->stage, customer_id, strlen(customer_id));
        return rc == CXM_ENOTFOUND ? 0 : rc;
    }
    return cxm_txn_put(t, db->stage, customer_id, strlen(customer_id), &v, 1, 0);
}

int fdb_stage_get(cxm_txn *t, fdb *db, const char *customer_id, int *stage)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, db->stage, customer_id, strlen(customer_id), &v, &vl);
    *stage = rc == 0 && vl == 1 ? *(const uint8_t *)v : 0;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static int seg_key(fkey *k, const char *segment_id, uint64_t h)
{
    cxm_key *b = fkey_start(k);
    cxm_key_str(b, segment_id);
    cxm_key_u64(b, h);
    return fkey_end(k);
}

static int cseg_key(fkey *k, const char *customer_id, const char *segment_id)
{
    cxm_key *b = fkey_start(k);
    cxm_key_str(b, customer_id);
    cxm_key_str(b, segment_id);
    return fkey_end(k);
}

int fdb_segment_set(cxm_txn *t, fdb *db, const char *segment_id, const char *customer_id, bool in)
{
    fkey sk, ck;
    int rc = seg_key(&sk, segment_id, cxm_hash(0, customer_id, strlen(customer_id)));
    if (rc == 0)
        rc = cseg_key(&ck, customer_id, segment_id);
    if (rc != 0)
        return rc;
    if (in) {
        rc = cxm_txn_put(t, db->seg, sk.b, sk.n, "", 0, 0);
        return rc ? rc : cxm_txn_put(t, db->cseg, ck.b, ck.n, "", 0, 0);
    }
    rc = cxm_txn_del(t, db->seg, sk.b, sk.n);
    if (rc == 0 || rc == CXM_ENOTFOUND)
        rc = cxm_txn_del(t, db->cseg, ck.b, ck.n);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

int fdb_in_segment(cxm_txn *t, fdb *db, const char *segment_id, uint64_t customer_hash, bool *in)
{
    fkey k;
    const void *v;
    size_t vl;
    int rc = seg_key(&k, segment_id, customer_hash);
    if (rc == 0)
        rc = cxm_txn_get_ref(t, db->seg, k.b, k.n, &v, &vl);
    *in = rc == 0;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* ---- merges ---- */

static int member_key(fkey *k, const char *target, const char *source)
{
    cxm_key *b = fkey_start(k);
    cxm_key_str(b, target);
    cxm_key_str(b, source);
    return fkey_end(k);
}

int fdb_merge_set(cxm_txn *t, fdb *db, const char *source, const char *target)
{
    if (strcmp(source, target) == 0)
        return 0;
    fkey k;
    int rc = member_key(&k, target, source);
    if (rc == 0)
        rc = cxm_txn_put(t, db->merged, source, strlen(source), target, strlen(target), 0);
    return rc ? rc : cxm_txn_put(t, db->members, k.b, k.n, "", 0, 0);
}

int fdb_merge_clear(cxm_txn *t, fdb *db, const char *source, const char *target)
{
    fkey k;
    int rc = member_key(&k, target, source);
    if (rc == 0)
        rc = cxm_txn_del(t, db->members, k.b, k.n);
    if (rc == 0 || rc == CXM_ENOTFOUND)
        rc = cxm_txn_del(t, db->merged, source, strlen(source));
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

int fdb_root(cxm_txn *t, fdb *db, cxm_arena *a, const char *id, const char **root)
{
    const char *cur = id;
    /* Bounded: a cycle (never made by profile) must not hang a call. */
    for (int hops = 0; hops < FDB_MAX_GROUP; hops++) {
        void *v;
        size_t vl;
        int rc = cxm_txn_get(t, db->merged, cur, strlen(cur), a, &v, &vl);
        if (rc == CXM_ENOTFOUND)
            break;
        if (rc != 0)
            return rc;
        cur = v;
    }
    *root = cur;
    return 0;
}

typedef struct group_ctx {
    cxm_arena *a;
    const char **ids;
    size_t n;
} group_ctx;

static int group_one(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    (void)val;
    (void)vlen;
    group_ctx *g = user;
    if (g->n >= FDB_MAX_GROUP)
        return CXM_ETOOBIG;
    cxm_keyreader r;
    cxm_keyreader_init(&r, key, klen);
    char *source;
    cxm_keyread_skip_bytes(&r);
    int rc = cxm_keyread_bytes_arena(&r, g->a, &source, NULL);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->ids[i], source) == 0)
            return 0;
    g->ids[g->n++] = source;
    return 0;
}

int fdb_group(cxm_txn *t, fdb *db, cxm_arena *a, const char *root, const char ***ids, size_t *n)
{
    group_ctx g = {a, cxm_arena_alloc(a, FDB_MAX_GROUP * sizeof(char *)), 1};
    if (!g.ids)
        return CXM_ENOMEM;
    g.ids[0] = root;
    int rc = 0;
    for (size_t i = 0; i < g.n && rc == 0; i++) {
        fkey k;
        if ((rc = id_prefix(&k, g.ids[i])) == 0)
            rc = cxm_txn_scan_prefix(t, db->members, k.b, k.n, false, group_one, &g);
    }
    if (rc == 0) {
        *ids = g.ids;
        *n = g.n;
    }
    return rc;
}

/* ---- the analytics source ---- */

typedef struct src_state {
    cxm_txn *t;
    fdb *db;
    cxm_arena *a;
    const char *segment;
} src_state;

static int src_scan(void *src, int64_t from_ms, int64_t to_ms, fan_rec_fn fn, void *user)
{
    src_state *s = src;
    fkey fk, tk;
    cxm_key_i64(fkey_start(&fk), from_ms);
    cxm_key_i64(fkey_start(&tk), to_ms);
    fkey_end(&fk);
    fkey_end(&tk);
    cxm_iter it;
    int rc = cxm_iter_range(s->t, s->db->frec, fk.b, fk.n, to_ms == INT64_MAX ? NULL : tk.b,
                            to_ms == INT64_MAX ? 0 : tk.n, false, &it);
    if (rc != 0)
        return rc;
    /* LMDB values are only 2-byte aligned: each record is copied here. */
    union {
        frec r;
        unsigned char b[sizeof(frec) + FREC_MAX_RATINGS * sizeof(frec_rating)];
    } buf;
    while ((rc = cxm_iter_next(&it)) == 0) {
        if (it.vlen < sizeof(frec) || it.vlen > sizeof buf) {
            rc = CXM_ECORRUPT;
            break;
        }
        memcpy(buf.b, it.val, it.vlen);
        if (!frec_whole(&buf.r, it.vlen)) {
            rc = CXM_ECORRUPT;
            break;
        }
        if ((rc = fn(&buf.r, user)) != 0)
            break;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static const char *src_name(void *src, uint32_t id)
{
    src_state *s = src;
    const char *name;
    return fdb_dict_name(s->t, s->db, s->a, id, &name) == 0 ? name : NULL;
}

static uint32_t src_id(void *src, const char *name)
{
    src_state *s = src;
    uint32_t id;
    return fdb_dict_id(s->t, s->db, name, &id) == 0 ? id : 0;
}

/* The record's customer, else the root it was merged into. */
static bool src_in_segment(void *src, uint64_t customer)
{
    src_state *s = src;
    bool in = false;
    if (fdb_in_segment(s->t, s->db, s->segment, customer, &in) != 0 || in)
        return in;
    uint8_t k[8];
    put_u64(k, customer);
    const void *v;
    size_t len;
    char id[CXM_KEY_MAX + 1]; /* a copy on the stack: no arena growth per record */
    const char *root;
    if (cxm_txn_get_ref(s->t, s->db->hash, k, sizeof k, &v, &len) != 0 || len > CXM_KEY_MAX)
        return false;
    memcpy(id, v, len);
    id[len] = 0;
    /* fdb_root allocates only for a merged customer. */
    if (fdb_root(s->t, s->db, s->a, id, &root) != 0 || strcmp(root, id) == 0)
        return false;
    return fdb_in_segment(s->t, s->db, s->segment, cxm_hash(0, root, strlen(root)), &in) == 0 && in;
}

int fdb_src(cxm_txn *t, fdb *db, cxm_arena *a, const char *segment_id, fan_src *out)
{
    src_state *s = cxm_arena_alloc(a, sizeof *s);
    if (!s)
        return CXM_ENOMEM;
    *s = (src_state){t, db, a, segment_id};
    *out = (fan_src){.scan = src_scan,
                     .name = src_name,
                     .id = src_id,
                     .in_segment = segment_id && *segment_id ? src_in_segment : NULL,
                     .src = s,
                     .agg = db->agg,
                     .txn = t};
    return 0;
}

/* ---- erasure ---- */

/* Keys (or ids) copied out of a scan, to delete once the scan is over. */
typedef struct keylist {
    cxm_arena *a;
    char **v;
    size_t *len;
    size_t n, cap;
} keylist;

static int keylist_push(keylist *l, const void *p, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        char **v = cxm_arena_alloc(l->a, cap * sizeof *v);
        size_t *ln = cxm_arena_alloc(l->a, cap * sizeof *ln);
        if (!v || !ln)
            return CXM_ENOMEM;
        if (l->n) {
            memcpy(v, l->v, l->n * sizeof *v);
            memcpy(ln, l->len, l->n * sizeof *ln);
        }
        l->v = v, l->len = ln, l->cap = cap;
    }
    if (!(l->v[l->n] = cxm_arena_strndup(l->a, p, len)))
        return CXM_ENOMEM;
    l->len[l->n++] = len;
    return 0;
}

/* The response id of each fb_cust key. */
static int collect_rid(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    (void)val;
    (void)vlen;
    keylist *l = user;
    int64_t at;
    char *rid;
    int rc = cust_key_read(key, klen, l->a, &at, &rid);
    return rc ? rc : keylist_push(l, rid, strlen(rid));
}

static int collect_key(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    (void)val;
    (void)vlen;
    return keylist_push(user, key, klen);
}

/* Delete every key of dbi that starts with id's string field, counting
 * them; the deleted keys are left in *keys (may be NULL). */
static int del_prefix(cxm_txn *t, MDB_dbi dbi, cxm_arena *a, const char *id, uint64_t *count,
                      keylist *keys)
{
    keylist l = {.a = a};
    fkey k;
    int rc = id_prefix(&k, id);
    if (rc == 0)
        rc = cxm_txn_scan_prefix(t, dbi, k.b, k.n, false, collect_key, &l);
    for (size_t i = 0; i < l.n && rc == 0; i++)
        rc = cxm_txn_del(t, dbi, l.v[i], l.len[i]);
    if (rc != 0)
        return rc;
    *count += l.n;
    if (keys)
        *keys = l;
    return 0;
}

/* The segment rows of id: fb_cseg keys name the fb_seg rows to drop. */
static int erase_segments(cxm_txn *t, fdb *db, cxm_arena *a, const char *id, uint64_t *count)
{
    keylist keys;
    int rc = del_prefix(t, db->cseg, a, id, count, &keys);
    uint64_t h = cxm_hash(0, id, strlen(id));
    for (size_t i = 0; rc == 0 && i < keys.n; i++) {
        cxm_keyreader r;
        cxm_keyreader_init(&r, keys.v[i], keys.len[i]);
        char *seg;
        cxm_keyread_skip_bytes(&r);
        if ((rc = cxm_keyread_bytes_arena(&r, a, &seg, NULL)) != 0)
            break;
        fkey sk;
        if ((rc = seg_key(&sk, seg, h)) == 0)
            rc = cxm_txn_del(t, db->seg, sk.b, sk.n);
        rc = rc == CXM_ENOTFOUND ? 0 : rc;
    }
    return rc;
}

/* Every row of one id. */
static int erase_one(cxm_txn *t, fdb *db, cxm_arena *a, const char *id, uint64_t *count)
{
    keylist rids = {.a = a};
    fkey k;
    int rc = id_prefix(&k, id);
    if (rc == 0)
        rc = cxm_txn_scan_prefix(t, db->cust, k.b, k.n, false, collect_rid, &rids);
    for (size_t i = 0; i < rids.n && rc == 0; i++) {
        rc = response_del(t, db, a, rids.v[i]);
        if (rc == 0)
            ++*count;
        rc = rc == CXM_ENOTFOUND ? 0 : rc;
    }
    uint64_t index_rows = 0, replica = 0;
    if (rc == 0)
        rc = del_prefix(t, db->cust, a, id, &index_rows, NULL);
    if (rc == 0)
        rc = erase_segments(t, db, a, id, &replica);
    uint8_t hk[8];
    hash_key(hk, id);
    if (rc == 0 && (rc = cxm_txn_del(t, db->hash, hk, sizeof hk)) == CXM_ENOTFOUND)
        rc = 0;
    if (rc == 0 && (rc = cxm_txn_del(t, db->stage, id, strlen(id))) == 0)
        replica++;
    if (rc == CXM_ENOTFOUND)
        rc = 0;
    void *target;
    size_t tl;
    if (rc == 0 && cxm_txn_get(t, db->merged, id, strlen(id), a, &target, &tl) == 0)
        rc = fdb_merge_clear(t, db, id, target);
    uint64_t members = 0;
    if (rc == 0)
        rc = del_prefix(t, db->members, a, id, &members, NULL);
    *count += replica;
    return rc;
}

int fdb_erase(cxm_txn *t, fdb *db, cxm_arena *a, const char *id, char *const *merged, size_t n,
              uint64_t *count)
{
    uint64_t c = 0;
    int rc = erase_one(t, db, a, id, &c);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = erase_one(t, db, a, merged[i], &c);
    if (rc == 0)
        *count += c;
    return rc;
}
