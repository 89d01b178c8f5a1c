/*
 * pdb.c - the profile tables in LMDB (see pdb.h).
 */
#include "pdb.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdlib.h>

#include "cxm/err.h"
#include "cxm/keyenc.h"
#include "cxm/svc.h"

struct pdb {
    cxm_store *store;
    MDB_dbi profiles, identities, redirects, merges, segments, members, requests, receipts;
    MDB_dbi receipt_ids, suppressed, meta;
    uint8_t salt[32];
};

static int salt_fn(cxm_txn *t, void *user);
static int index_receipts_fn(cxm_txn *t, void *user);
static int get_string(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a,
                      const char **out);
static int identity_key(const Cxm__V1__Identity *id, uint8_t *buf, size_t *len);
static int put_message(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a,
                       const ProtobufCMessage *m);

int pdb_open(cxm_store *store, pdb **out)
{
    pdb *db = calloc(1, sizeof *db);
    if (!db)
        return CXM_ENOMEM;
    const cxm_store_table tables[] = {
        {"profile.profiles", &db->profiles},       {"profile.identities", &db->identities},
        {"profile.redirects", &db->redirects},     {"profile.merges", &db->merges},
        {"profile.segments", &db->segments},       {"profile.members", &db->members},
        {"profile.requests", &db->requests},       {"profile.receipts", &db->receipts},
        {"profile.suppressed", &db->suppressed},   {"profile.meta", &db->meta},
        {"profile.receipt_ids", &db->receipt_ids},
    };
    db->store = store;
    int rc = cxm_store_dbis(store, tables, sizeof tables / sizeof tables[0]);
    if (rc == 0)
        rc = cxm_store_write(store, salt_fn, db);
    if (rc == 0)
        rc = cxm_store_write(store, index_receipts_fn, db);
    if (rc != 0) {
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void pdb_close(pdb *db)
{
    free(db);
}

cxm_store *pdb_store(const pdb *db)
{
    return db->store;
}

/* Load the salt, or make it: random, so hashes of erased identities cannot
 * be matched against a dictionary without the data directory. */
static int salt_fn(cxm_txn *t, void *user)
{
    pdb *db = user;
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->meta, "salt", 4, &v, &n);
    if (rc == 0 && n == sizeof db->salt) {
        memcpy(db->salt, v, n);
        return 0;
    }
    if (rc != CXM_ENOTFOUND)
        return rc == 0 ? CXM_ECORRUPT : rc;
    if (getrandom(db->salt, sizeof db->salt, 0) != (ssize_t)sizeof db->salt)
        return CXM_EIO;
    return cxm_txn_put(t, db->meta, "salt", 4, db->salt, sizeof db->salt, 0);
}

static int suppress_key(const pdb *db, const Cxm__V1__Identity *id, uint8_t *out)
{
    uint8_t key[CXM_KEY_MAX];
    size_t klen;
    unsigned int outlen = 0;
    int rc = identity_key(id, key, &klen);
    if (rc == 0 && !HMAC(EVP_sha256(), db->salt, sizeof db->salt, key, klen, out, &outlen))
        rc = CXM_EINTERNAL;
    return rc;
}

int pdb_suppress(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, const char *receipt_id)
{
    uint8_t h[32];
    int rc = suppress_key(db, id, h);
    return rc ? rc : cxm_txn_put(t, db->suppressed, h, sizeof h, receipt_id, strlen(receipt_id), 0);
}

int pdb_suppressed_by(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, cxm_arena *a,
                      const char **receipt_id)
{
    uint8_t h[32];
    int rc = suppress_key(db, id, h);
    return rc ? rc : get_string(t, db->suppressed, h, sizeof h, a, receipt_id);
}

void pdb_new_id(char prefix, char *out)
{
    uint64_t r = 0;
    /* 64 random bits: ids must not be guessable from each other. */
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r ^= (uint64_t)(uintptr_t)out * 0x9e3779b97f4a7c15ull;
    snprintf(out, PDB_ID_LEN, "%c%016llx", prefix, (unsigned long long)r);
}

static int identity_key(const Cxm__V1__Identity *id, uint8_t *buf, size_t *len)
{
    cxm_key k;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_u8(&k, (uint8_t)id->type);
    cxm_key_str(&k, id->custom_type ? id->custom_type : "");
    cxm_key_str(&k, id->value ? id->value : "");
    return cxm_key_finish(&k, len);
}

static int get_string(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a,
                      const char **out)
{
    void *v;
    size_t n;
    int rc = cxm_txn_get(t, dbi, key, klen, a, &v, &n);
    if (rc == 0)
        *out = v; /* cxm_txn_get terminates the copy */
    return rc;
}

int pdb_resolve_id(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a,
                   const char **live, bool *redirected)
{
    *redirected = false;
    const char *id = customer_id;
    /* Chains are short (a merge of a merge); the bound stops a corrupt loop. */
    for (int hops = 0; hops < 32; hops++) {
        const char *next;
        int rc = get_string(t, db->redirects, id, strlen(id), a, &next);
        if (rc == CXM_ENOTFOUND) {
            *live = id == customer_id ? cxm_arena_strndup(a, id, strlen(id)) : id;
            return *live ? 0 : CXM_ENOMEM;
        }
        if (rc != 0)
            return rc;
        id = next;
        *redirected = true;
    }
    return CXM_ECORRUPT;
}

int pdb_identity_owner(cxm_txn *t, const pdb *db, const Cxm__V1__Identity *id, cxm_arena *a,
                       const char **customer_id)
{
    uint8_t key[CXM_KEY_MAX];
    size_t klen;
    int rc = identity_key(id, key, &klen);
    if (rc != 0)
        return rc;
    return get_string(t, db->identities, key, klen, a, customer_id);
}

int pdb_load(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a, prof_profile **out)
{
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->profiles, customer_id, strlen(customer_id), &v, &n);
    if (rc != 0)
        return rc;
    prof_profile *p = prof_unpack(a, v, n);
    if (!p)
        return CXM_ECORRUPT;
    *out = p;
    return 0;
}

static int put_message(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a,
                       const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = cxm_arena_alloc(a, n ? n : 1);
    if (!buf)
        return CXM_ENOMEM;
    protobuf_c_message_pack(m, buf);
    return cxm_txn_put(t, dbi, key, klen, buf, n, 0);
}

static int member_key(const char *segment_id, const char *customer_id, uint8_t *buf, size_t *len)
{
    cxm_key k;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, segment_id);
    cxm_key_raw(&k, customer_id, strlen(customer_id));
    return cxm_key_finish(&k, len);
}

static int set_member(cxm_txn *t, const pdb *db, const char *segment_id, const char *customer_id,
                      bool member)
{
    uint8_t key[CXM_KEY_MAX];
    size_t klen;
    int rc = member_key(segment_id, customer_id, key, &klen);
    if (rc != 0)
        return rc;
    if (member)
        return cxm_txn_put(t, db->members, key, klen, "", 0, 0);
    rc = cxm_txn_del(t, db->members, key, klen);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* Recompute p's memberships against every segment. */
static int update_memberships(cxm_txn *t, const pdb *db, cxm_arena *a, prof_profile *p)
{
    Cxm__V1__Segment **segs;
    size_t n;
    int rc = pdb_segments(t, db, a, &segs, &n);
    if (rc != 0)
        return rc;
    char **ids = cxm_arena_alloc(a, (n ? n : 1) * sizeof *ids);
    if (!ids)
        return CXM_ENOMEM;
    size_t nids = 0;
    for (size_t i = 0; i < n; i++) {
        bool member = segs[i]->condition && prof_condition_eval(segs[i]->condition, p);
        if ((rc = set_member(t, db, segs[i]->segment_id, p->customer_id, member)) != 0)
            return rc;
        if (member)
            ids[nids++] = segs[i]->segment_id;
    }
    p->segment_ids = ids;
    p->n_segment_ids = nids;
    return 0;
}

/* Point every identity of p at it. A link already in place is only read:
 * rewriting it would dirty its page and cost a page write at commit. */
static int link_identities(cxm_txn *t, const pdb *db, const prof_profile *p)
{
    size_t idlen = strlen(p->customer_id);
    for (size_t i = 0; i < p->n_identities; i++) {
        uint8_t key[CXM_KEY_MAX];
        size_t klen, vlen;
        const void *v;
        int rc = identity_key(p->identities[i]->identity, key, &klen);
        if (rc != 0)
            return rc;
        rc = cxm_txn_get_ref(t, db->identities, key, klen, &v, &vlen);
        if (rc == 0 && vlen == idlen && memcmp(v, p->customer_id, idlen) == 0)
            continue;
        if (rc != 0 && rc != CXM_ENOTFOUND)
            return rc;
        if ((rc = cxm_txn_put(t, db->identities, key, klen, p->customer_id, idlen, 0)) != 0)
            return rc;
    }
    return 0;
}

int pdb_save(cxm_txn *t, const pdb *db, cxm_arena *a, prof_profile *p)
{
    int rc = update_memberships(t, db, a, p);
    if (rc == 0)
        rc = link_identities(t, db, p);
    if (rc == 0)
        rc = put_message(t, db->profiles, p->customer_id, strlen(p->customer_id), a, &p->base);
    return rc;
}

int pdb_remove(cxm_txn *t, const pdb *db, const prof_profile *p)
{
    for (size_t i = 0; i < p->n_identities; i++) {
        uint8_t key[CXM_KEY_MAX];
        size_t klen;
        int rc = identity_key(p->identities[i]->identity, key, &klen);
        if (rc == 0)
            rc = cxm_txn_del(t, db->identities, key, klen);
        if (rc != 0 && rc != CXM_ENOTFOUND)
            return rc;
    }
    for (size_t i = 0; i < p->n_segment_ids; i++) {
        int rc = set_member(t, db, p->segment_ids[i], p->customer_id, false);
        if (rc != 0)
            return rc;
    }
    int rc = cxm_txn_del(t, db->profiles, p->customer_id, strlen(p->customer_id));
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* ---- merge snapshots: four length-prefixed packed messages ---- */

static size_t frame_size(const ProtobufCMessage *m)
{
    return 4 + protobuf_c_message_get_packed_size(m);
}

static uint8_t *frame_put(uint8_t *p, const ProtobufCMessage *m)
{
    uint32_t n = (uint32_t)protobuf_c_message_get_packed_size(m);
    memcpy(p, &n, 4);
    protobuf_c_message_pack(m, p + 4);
    return p + 4 + n;
}

int pdb_put_snapshot(cxm_txn *t, const pdb *db, cxm_arena *a, const pdb_snapshot *s)
{
    const ProtobufCMessage *parts[4] = {&s->record->base, &s->target_before->base,
                                        &s->source_before->base, &s->target_after->base};
    size_t total = 0;
    for (int i = 0; i < 4; i++)
        total += frame_size(parts[i]);
    uint8_t *buf = cxm_arena_alloc(a, total), *p = buf;
    if (!buf)
        return CXM_ENOMEM;
    for (int i = 0; i < 4; i++)
        p = frame_put(p, parts[i]);
    return cxm_txn_put(t, db->merges, s->record->merge_id, strlen(s->record->merge_id), buf, total,
                       0);
}

/* The next frame's bytes; NULL when the value is cut short. */
static const uint8_t *frame_next(const uint8_t *p, const uint8_t *end, const uint8_t **data,
                                 size_t *len)
{
    uint32_t n;
    if (!p || end - p < 4)
        return NULL;
    memcpy(&n, p, 4);
    if ((size_t)(end - p - 4) < n)
        return NULL;
    *data = p + 4;
    *len = n;
    return p + 4 + n;
}

int pdb_get_snapshot(cxm_txn *t, const pdb *db, const char *merge_id, cxm_arena *a,
                     pdb_snapshot *out)
{
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->merges, merge_id, strlen(merge_id), &v, &n);
    if (rc != 0)
        return rc;
    const uint8_t *p = v, *end = p + n, *data;
    size_t len;
    prof_profile **profiles[3] = {&out->target_before, &out->source_before, &out->target_after};
    p = frame_next(p, end, &data, &len);
    out->record = p ? cxm__v1__merge_record__unpack(cxm_arena_protobuf(a), len, data) : NULL;
    for (int i = 0; i < 3 && out->record; i++) {
        p = frame_next(p, end, &data, &len);
        if (!p || !(*profiles[i] = prof_unpack(a, data, len)))
            return CXM_ECORRUPT;
    }
    return out->record ? 0 : CXM_ECORRUPT;
}

/* ---- segments ---- */

int pdb_segments(cxm_txn *t, const pdb *db, cxm_arena *a, Cxm__V1__Segment ***out, size_t *n)
{
    cxm_iter it;
    *out = NULL;
    *n = 0;
    int rc = cxm_iter_prefix(t, db->segments, NULL, 0, false, &it);
    size_t cap = 0;
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        Cxm__V1__Segment *s = cxm__v1__segment__unpack(cxm_arena_protobuf(a), it.vlen, it.val);
        if (!s) {
            rc = CXM_ECORRUPT;
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            Cxm__V1__Segment **grown = cxm_arena_alloc(a, cap * sizeof *grown);
            if (!grown) {
                rc = CXM_ENOMEM;
                break;
            }
            if (*n)
                memcpy(grown, *out, *n * sizeof *grown);
            *out = grown;
        }
        (*out)[(*n)++] = s;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static bool has_segment(const prof_profile *p, const char *segment_id)
{
    for (size_t i = 0; i < p->n_segment_ids; i++)
        if (strcmp(p->segment_ids[i], segment_id) == 0)
            return true;
    return false;
}

/* Replace id in the profile's segment list (kept sorted). */
static void set_segment_id(cxm_arena *a, prof_profile *p, char *segment_id, bool member)
{
    size_t w = 0;
    bool present = false;
    for (size_t i = 0; i < p->n_segment_ids; i++) {
        present |= strcmp(p->segment_ids[i], segment_id) == 0;
        if (member || strcmp(p->segment_ids[i], segment_id) != 0)
            p->segment_ids[w++] = p->segment_ids[i];
    }
    p->n_segment_ids = w;
    if (member && !present) {
        char **ids = cxm_arena_alloc(a, (w + 1) * sizeof *ids);
        if (!ids)
            return;
        size_t pos = 0;
        while (pos < w && strcmp(p->segment_ids[pos], segment_id) < 0)
            pos++;
        if (pos)
            memcpy(ids, p->segment_ids, pos * sizeof *ids);
        ids[pos] = segment_id;
        if (w > pos)
            memcpy(ids + pos + 1, p->segment_ids + pos, (w - pos) * sizeof *ids);
        p->segment_ids = ids;
        p->n_segment_ids = w + 1;
    }
}

int pdb_evaluate_segment(cxm_txn *t, const pdb *db, cxm_arena *a, const Cxm__V1__Segment *seg,
                         uint64_t *members, pdb_member_fn on_change, void *user)
{
    *members = 0;
    /* Collect ids first: the profiles are rewritten while we walk. */
    cxm_iter it;
    int rc = cxm_iter_prefix(t, db->profiles, NULL, 0, false, &it);
    size_t n = 0, cap = 0;
    char **ids = NULL;
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **grown = cxm_arena_alloc(a, cap * sizeof *grown);
            if (!grown) {
                rc = CXM_ENOMEM;
                break;
            }
            if (n)
                memcpy(grown, ids, n * sizeof *grown);
            ids = grown;
        }
        if (!(ids[n++] = cxm_arena_strndup(a, it.key, it.klen)))
            rc = CXM_ENOMEM;
    }
    cxm_iter_close(&it);
    if (rc != CXM_ENOTFOUND)
        return rc;
    rc = 0;
    /* One scratch arena per profile keeps memory flat however many there are. */
    cxm_arena scratch;
    cxm_arena_init(&scratch, NULL, 0, 0);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        cxm_arena_reset(&scratch);
        prof_profile *p;
        if ((rc = pdb_load(t, db, ids[i], &scratch, &p)) != 0)
            break;
        bool member = prof_condition_eval(seg->condition, p);
        *members += member;
        if (member == has_segment(p, seg->segment_id))
            continue; /* unchanged: no page to dirty */
        set_segment_id(&scratch, p, seg->segment_id, member);
        if ((rc = set_member(t, db, seg->segment_id, p->customer_id, member)) == 0)
            rc = put_message(t, db->profiles, p->customer_id, strlen(p->customer_id), &scratch,
                             &p->base);
        if (rc == 0 && on_change)
            rc = on_change(t, p->customer_id, member, user);
    }
    cxm_arena_dispose(&scratch);
    return rc;
}

/* ---- lookups the handlers need (the store is sealed) ---- */

int pdb_exists(cxm_txn *t, const pdb *db, const char *customer_id)
{
    const void *v;
    size_t n;
    return cxm_txn_get_ref(t, db->profiles, customer_id, strlen(customer_id), &v, &n);
}

int pdb_load_packed(cxm_txn *t, const pdb *db, const char *customer_id, const void **bytes,
                    size_t *len)
{
    return cxm_txn_get_ref(t, db->profiles, customer_id, strlen(customer_id), bytes, len);
}

int pdb_scan(cxm_txn *t, const pdb *db, cxm_arena *a, const char *after, pdb_profile_fn fn,
             void *user)
{
    cxm_iter it;
    size_t alen = strlen(after);
    int rc = cxm_iter_range(t, db->profiles, after, alen, NULL, 0, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        if (alen && it.klen == alen && memcmp(it.key, after, alen) == 0)
            continue;
        prof_profile *p = prof_unpack(a, it.val, it.vlen);
        rc = p ? fn(p, it.vlen, user) : CXM_ECORRUPT;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND || rc > 0 ? 0 : rc;
}

int pdb_redirect_set(cxm_txn *t, const pdb *db, const char *from, const char *to)
{
    return cxm_txn_put(t, db->redirects, from, strlen(from), to, strlen(to), 0);
}

int pdb_redirect_clear(cxm_txn *t, const pdb *db, const char *from)
{
    return cxm_txn_del(t, db->redirects, from, strlen(from));
}

int pdb_erase_snapshot(cxm_txn *t, const pdb *db, const char *merge_id)
{
    return cxm_txn_del(t, db->merges, merge_id, strlen(merge_id));
}

int pdb_latest_merge_of(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a,
                        const char **merge_id)
{
    const char *prev = customer_id, *next;
    int rc = get_string(t, db->redirects, prev, strlen(prev), a, &next);
    if (rc != 0)
        return rc;
    /* Chains are short (a merge of a merge); the bound stops a corrupt loop. */
    for (int hops = 0; rc == 0 && hops < 32; hops++) {
        const char *after;
        rc = get_string(t, db->redirects, next, strlen(next), a, &after);
        if (rc == CXM_ENOTFOUND)
            break;
        prev = next;
        next = after;
    }
    prof_profile *live;
    if (rc != CXM_ENOTFOUND)
        return rc == 0 ? CXM_ECORRUPT : rc;
    if ((rc = pdb_load(t, db, next, a, &live)) != 0)
        return rc;
    for (size_t i = 0; i < live->n_merges; i++) {
        const Cxm__V1__MergeRecord *m = live->merges[i];
        if (!m->unmerged_at_unix_ms && strcmp(m->source_customer_id, prev) == 0) {
            *merge_id = m->merge_id;
            return 0;
        }
    }
    return CXM_ECORRUPT;
}

int pdb_receipt_get(cxm_txn *t, const pdb *db, const char *customer_id, cxm_arena *a,
                    Cxm__V1__DeletionReceipt **out)
{
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->receipts, customer_id, strlen(customer_id), &v, &n);
    if (rc != 0)
        return rc;
    Cxm__V1__DeletionReceipt *r = cxm__v1__deletion_receipt__unpack(cxm_arena_protobuf(a), n, v);
    if (!r)
        return CXM_ECORRUPT;
    *out = r;
    return 0;
}

int pdb_receipt_by_id(cxm_txn *t, const pdb *db, const char *receipt_id, cxm_arena *a,
                      Cxm__V1__DeletionReceipt **out)
{
    const char *customer_id = NULL;
    int rc = get_string(t, db->receipt_ids, receipt_id, strlen(receipt_id), a, &customer_id);
    if (rc == 0)
        rc = pdb_receipt_get(t, db, customer_id, a, out);
    /* The index names a receipt that is not there: the tables disagree. */
    return rc == CXM_ENOTFOUND && customer_id ? CXM_ECORRUPT : rc;
}

static int index_receipt(cxm_txn *t, const pdb *db, const Cxm__V1__DeletionReceipt *r)
{
    return cxm_txn_put(t, db->receipt_ids, r->receipt_id, strlen(r->receipt_id), r->customer_id,
                       strlen(r->customer_id), 0);
}

int pdb_receipt_put(cxm_txn *t, const pdb *db, cxm_arena *a, const Cxm__V1__DeletionReceipt *r)
{
    int rc = put_message(t, db->receipts, r->customer_id, strlen(r->customer_id), a, &r->base);
    return rc ? rc : index_receipt(t, db, r);
}

/* Index the receipts of a store made before profile.receipt_ids existed,
 * once: the "receipt_ids" mark in profile.meta says it was done. */
static int index_receipts_fn(cxm_txn *t, void *user)
{
    const pdb *db = user;
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->meta, "receipt_ids", 11, &v, &n);
    if (rc != CXM_ENOTFOUND)
        return rc;
    cxm_iter it;
    cxm_arena scratch;
    cxm_arena_init(&scratch, NULL, 0, 0);
    rc = cxm_iter_prefix(t, db->receipts, NULL, 0, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        cxm_arena_reset(&scratch);
        Cxm__V1__DeletionReceipt *r =
            cxm__v1__deletion_receipt__unpack(cxm_arena_protobuf(&scratch), it.vlen, it.val);
        rc = r ? index_receipt(t, db, r) : CXM_ECORRUPT;
    }
    cxm_iter_close(&it);
    cxm_arena_dispose(&scratch);
    if (rc == CXM_ENOTFOUND)
        rc = cxm_txn_put(t, db->meta, "receipt_ids", 11, "1", 1, 0);
    return rc;
}

static Cxm__V1__ServiceErasure *find_service(const Cxm__V1__DeletionReceipt *r, const char *service)
{
    for (size_t i = 0; i < r->n_services; i++)
        if (strcmp(r->services[i]->service, service) == 0)
            return r->services[i];
    return NULL;
}

/* A new entry for service at the end of r's list. */
static Cxm__V1__ServiceErasure *add_service(cxm_arena *a, Cxm__V1__DeletionReceipt *r,
                                            const char *service)
{
    Cxm__V1__ServiceErasure **list = cxm_arena_alloc(a, (r->n_services + 1) * sizeof *list);
    Cxm__V1__ServiceErasure *se = cxm_arena_alloc(a, sizeof *se);
    if (!list || !se)
        return NULL;
    cxm__v1__service_erasure__init(se);
    se->service = (char *)service;
    if (r->n_services)
        memcpy(list, r->services, r->n_services * sizeof *list);
    list[r->n_services] = se;
    r->services = list;
    r->n_services++;
    return se;
}

/* Complete r when every service is DONE, at the latest of their times. */
static void complete_if_done(Cxm__V1__DeletionReceipt *r)
{
    int64_t last = r->requested_at_unix_ms;
    for (size_t i = 0; i < r->n_services; i++) {
        if (r->services[i]->state != CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE)
            return;
        if (r->services[i]->completed_at_unix_ms > last)
            last = r->services[i]->completed_at_unix_ms;
    }
    r->completed_at_unix_ms = last;
}

int pdb_receipt_confirm(cxm_txn *t, const pdb *db, const char *receipt_id, const char *service,
                        uint64_t records_erased, int64_t at_ms, const char *detail, cxm_arena *a,
                        bool *changed)
{
    detail = detail ? detail : "";
    size_t dlen = strlen(detail);
    if (!cxm_svc_slug_valid(service) || at_ms <= 0 || dlen > PDB_DETAIL_MAX ||
        !cxm_svc_utf8_valid(detail, dlen))
        return CXM_EINVAL;
    Cxm__V1__DeletionReceipt *r;
    int rc = pdb_receipt_by_id(t, db, receipt_id, a, &r);
    if (rc != 0)
        return rc;
    Cxm__V1__ServiceErasure *se = find_service(r, service);
    if (se && se->state == CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE) {
        *changed = false;
        return 0;
    }
    if (!se && !(se = add_service(a, r, service)))
        return CXM_ENOMEM;
    se->state = CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE;
    se->records_erased = records_erased;
    se->completed_at_unix_ms = at_ms;
    se->detail = (char *)detail;
    complete_if_done(r);
    rc = put_message(t, db->receipts, r->customer_id, strlen(r->customer_id), a, &r->base);
    if (rc == 0)
        *changed = true;
    return rc;
}

int pdb_request_get(cxm_txn *t, const pdb *db, const char *request_id, cxm_arena *a,
                    const char **customer_id)
{
    return get_string(t, db->requests, request_id, strlen(request_id), a, customer_id);
}

int pdb_request_put(cxm_txn *t, const pdb *db, const char *request_id, const char *customer_id)
{
    return cxm_txn_put(t, db->requests, request_id, strlen(request_id), customer_id,
                       strlen(customer_id), 0);
}

int pdb_segment_get(cxm_txn *t, const pdb *db, const char *segment_id, cxm_arena *a,
                    Cxm__V1__Segment **out)
{
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, db->segments, segment_id, strlen(segment_id), &v, &n);
    if (rc != 0)
        return rc;
    Cxm__V1__Segment *s = cxm__v1__segment__unpack(cxm_arena_protobuf(a), n, v);
    if (!s)
        return CXM_ECORRUPT;
    *out = s;
    return 0;
}

int pdb_segment_put(cxm_txn *t, const pdb *db, cxm_arena *a, const Cxm__V1__Segment *seg)
{
    return put_message(t, db->segments, seg->segment_id, strlen(seg->segment_id), a, &seg->base);
}

/* Walk the segment's member keys, counting all, keeping those after `after`. */
static int members_walk(cxm_iter *it, size_t plen, cxm_arena *a, const char *after, size_t limit,
                        pdb_members_page *out)
{
    size_t alen = strlen(after);
    int rc;
    while ((rc = cxm_iter_next(it)) == 0) {
        const char *id = (const char *)it->key + plen;
        size_t idlen = it->klen - plen;
        out->total++;
        int c = memcmp(id, after, idlen < alen ? idlen : alen);
        if (alen && (c < 0 || (c == 0 && idlen <= alen)))
            continue;
        if (out->n == limit) {
            out->more = true;
            continue; /* keep counting for the total */
        }
        if (!(out->ids[out->n++] = cxm_arena_strndup(a, id, idlen)))
            return CXM_ENOMEM;
    }
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

int pdb_members(cxm_txn *t, const pdb *db, cxm_arena *a, const char *segment_id, const char *after,
                size_t limit, pdb_members_page *out)
{
    uint8_t prefix[CXM_KEY_MAX];
    size_t plen;
    cxm_key k;
    cxm_key_init(&k, prefix, sizeof prefix);
    cxm_key_str(&k, segment_id);
    int rc = cxm_key_finish(&k, &plen);
    pdb_members_page page = {cxm_arena_alloc(a, (limit ? limit : 1) * sizeof(char *)), 0, 0, false};
    if (rc != 0 || !page.ids)
        return rc ? rc : CXM_ENOMEM;
    cxm_iter it;
    if ((rc = cxm_iter_prefix(t, db->members, prefix, plen, false, &it)) != 0)
        return rc;
    rc = members_walk(&it, plen, a, after, limit, &page);
    cxm_iter_close(&it);
    if (rc == 0)
        *out = page;
    return rc;
}
