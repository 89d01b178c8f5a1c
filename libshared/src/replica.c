/*
 * replica.c - a service's copy of other services' facts about a customer
 * (see cxm/replica.h).
 *
 * Record layout (the value of <prefix>.rcust, keyed by the raw customer id):
 *   u8  version (1)
 *   u8  stage
 *   i64 stage_since, big-endian
 *   u16 nsegments, u16 nconsents, big-endian
 *   then nsegments + nconsents strings, each u16 length, the bytes and a NUL
 * Segments and consents are kept sorted (bytewise) and unique, so a reader
 * binary-searches and the NULs let it point into the map without copying.
 *
 * Keys: rcust and ralias use the raw id (ids never contain NUL), rgroup the
 * keyenc tuple (surviving id, merged id), so a prefix scan lists a group.
 */
#include "cxm/replica.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/keyenc.h"
#include "cxm/log.h"

#define REC_VERSION 1
#define REC_HEADER 14
/* A segment id or consent scope longer than this is not one profile makes:
 * it is dropped rather than stored. */
#define NAME_MAX_LEN 1024
/* Alias chains are one hop when profile merges into a survivor; the bound
 * only keeps a corrupt cycle from hanging a call. */
#define ROOT_HOPS_MAX 64
#define PREFIX_MAX 32

struct cxm_replica {
    cxm_store *store;
    MDB_dbi cust, alias, group;
    atomic_bool warned; /* the limits warning is logged once */
};

/* A record being read or rebuilt; strings point into the map, the event or
 * the arena. */
typedef struct rec {
    int stage;
    int64_t since;
    const char **seg;
    size_t nseg, segcap;
    const char **cons;
    size_t ncons, conscap;
} rec;

int cxm_replica_open(cxm_store *store, const char *prefix, cxm_replica **out)
{
    if (!store || !prefix || !*prefix || strlen(prefix) > PREFIX_MAX || !out)
        return CXM_EINVAL;
    cxm_replica *r = calloc(1, sizeof *r);
    if (!r)
        return CXM_ENOMEM;
    r->store = store;
    char names[3][PREFIX_MAX + 8];
    snprintf(names[0], sizeof names[0], "%s.rcust", prefix);
    snprintf(names[1], sizeof names[1], "%s.ralias", prefix);
    snprintf(names[2], sizeof names[2], "%s.rgroup", prefix);
    const cxm_store_table tables[] = {
        {names[0], &r->cust}, {names[1], &r->alias}, {names[2], &r->group}};
    int rc = cxm_store_dbis(store, tables, sizeof tables / sizeof tables[0]);
    if (rc != 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void cxm_replica_close(cxm_replica *r)
{
    free(r);
}

/* ---- the packed record ---- */

static void put_u16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static size_t get_u16(const uint8_t *p)
{
    return (size_t)p[0] << 8 | p[1];
}

/* Read n strings at *pos into arr (allocated in a, room for cap). */
static int decode_names(const uint8_t *v, size_t vl, size_t *pos, size_t n, size_t cap,
                        cxm_arena *a, const char ***arr)
{
    *arr = cap ? cxm_arena_alloc(a, cap * sizeof(char *)) : NULL;
    if (cap && !*arr)
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (vl - *pos < 2)
            return CXM_ECORRUPT;
        size_t len = get_u16(v + *pos);
        if (vl - *pos - 2 < len + 1 || v[*pos + 2 + len] != 0)
            return CXM_ECORRUPT;
        (*arr)[i] = (const char *)v + *pos + 2;
        *pos += 3 + len;
    }
    return 0;
}

/* Parse a record; each array gets `extra` free slots for a rebuild. */
static int decode(const void *val, size_t vl, cxm_arena *a, size_t extra, rec *out)
{
    const uint8_t *v = val;
    if (vl < REC_HEADER || v[0] != REC_VERSION)
        return CXM_ECORRUPT;
    uint64_t since = 0;
    for (int i = 0; i < 8; i++)
        since = since << 8 | v[2 + i];
    *out = (rec){.stage = v[1], .since = (int64_t)since};
    out->nseg = get_u16(v + 10);
    out->ncons = get_u16(v + 12);
    out->segcap = out->nseg + extra;
    out->conscap = out->ncons + extra;
    size_t pos = REC_HEADER;
    int rc = decode_names(v, vl, &pos, out->nseg, out->segcap, a, &out->seg);
    if (rc == 0)
        rc = decode_names(v, vl, &pos, out->ncons, out->conscap, a, &out->cons);
    return rc == 0 && pos != vl ? CXM_ECORRUPT : rc;
}

static size_t names_size(const char *const *arr, size_t n)
{
    size_t size = 0;
    for (size_t i = 0; i < n; i++)
        size += 3 + strlen(arr[i]);
    return size;
}

static uint8_t *encode_names(uint8_t *p, const char *const *arr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(arr[i]);
        put_u16(p, len);
        memcpy(p + 2, arr[i], len + 1);
        p += 3 + len;
    }
    return p;
}

/* Pack rec into the arena (before any write that could move its strings). */
static int encode(const rec *c, cxm_arena *a, uint8_t **out, size_t *len)
{
    size_t size = REC_HEADER + names_size(c->seg, c->nseg) + names_size(c->cons, c->ncons);
    uint8_t *v = cxm_arena_alloc(a, size);
    if (!v)
        return CXM_ENOMEM;
    v[0] = REC_VERSION;
    v[1] = (uint8_t)c->stage;
    uint64_t since = (uint64_t)c->since;
    for (int i = 7; i >= 0; i--, since >>= 8)
        v[2 + i] = (uint8_t)since;
    put_u16(v + 10, c->nseg);
    put_u16(v + 12, c->ncons);
    encode_names(encode_names(v + REC_HEADER, c->seg, c->nseg), c->cons, c->ncons);
    *out = v;
    *len = size;
    return 0;
}

/* Load id's record with `extra` free slots per list; an absent one is
 * empty (*found false). */
static int load(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id, size_t extra, rec *out,
                bool *found)
{
    const void *v;
    size_t vl;
    int rc = cxm_txn_get_ref(t, r->cust, id, strlen(id), &v, &vl);
    *found = rc == 0;
    if (rc == CXM_ENOTFOUND) {
        *out = (rec){.segcap = extra, .conscap = extra};
        out->seg = extra ? cxm_arena_alloc(a, extra * sizeof(char *)) : NULL;
        out->cons = extra ? cxm_arena_alloc(a, extra * sizeof(char *)) : NULL;
        return extra && (!out->seg || !out->cons) ? CXM_ENOMEM : 0;
    }
    return rc ? rc : decode(v, vl, a, extra, out);
}

static int store_rec(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id, const rec *c)
{
    uint8_t *v;
    size_t vl;
    int rc = encode(c, a, &v, &vl);
    return rc ? rc : cxm_txn_put(t, r->cust, id, strlen(id), v, vl, 0);
}

/* ---- sorted name lists ---- */

/* Index of s in arr, or of where it belongs (*found false). */
static size_t find_name(const char *const *arr, size_t n, const char *s, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(arr[mid], s);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static bool valid_name(const char *s)
{
    return s && *s && strlen(s) <= NAME_MAX_LEN;
}

/* Insert s keeping the list sorted and unique. A list at max (or at its
 * capacity) keeps what it has: *over is set. */
static void list_add(const char **arr, size_t *n, size_t cap, size_t max, const char *s, bool *over)
{
    bool found;
    if (!valid_name(s))
        return;
    size_t at = find_name(arr, *n, s, &found);
    if (found)
        return;
    if (*n >= max || *n >= cap) {
        *over = true;
        return;
    }
    memmove(arr + at + 1, arr + at, (*n - at) * sizeof *arr);
    arr[at] = s;
    (*n)++;
}

static void list_remove(const char **arr, size_t *n, const char *s)
{
    bool found;
    if (!s)
        return;
    size_t at = find_name(arr, *n, s, &found);
    if (!found)
        return;
    memmove(arr + at, arr + at + 1, (*n - at - 1) * sizeof *arr);
    (*n)--;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static void warn_limits(cxm_replica *r, const char *id)
{
    bool expected = false;
    if (atomic_compare_exchange_strong(&r->warned, &expected, true))
        cxm_log_warn("replica.limit",
                     "customer %s has more than %d segments or %d granted consents: the first "
                     "ones are kept, the rest ignored (further cases are not logged)",
                     id, CXM_REPLICA_SEGMENTS_MAX, CXM_REPLICA_CONSENTS_MAX);
}

/* ---- applying events ---- */

static int apply_segments(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id,
                          const Cxm__V1__SegmentMembershipChanged *m)
{
    rec c;
    bool found, over = false;
    size_t extra = min_size(m->n_entered_segment_ids, CXM_REPLICA_SEGMENTS_MAX);
    int rc = load(t, r, a, id, extra, &c, &found);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < m->n_left_segment_ids; i++)
        list_remove(c.seg, &c.nseg, m->left_segment_ids[i]);
    for (size_t i = 0; i < m->n_entered_segment_ids; i++)
        list_add(c.seg, &c.nseg, c.segcap, CXM_REPLICA_SEGMENTS_MAX, m->entered_segment_ids[i],
                 &over);
    if (over)
        warn_limits(r, id);
    return store_rec(t, r, a, id, &c);
}

static int apply_consent(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id,
                         const Cxm__V1__ConsentChanged *m)
{
    const Cxm__V1__Consent *k = m->consent;
    if (!k || !valid_name(k->scope))
        return 0; /* nothing to apply: not an error the bus could fix */
    rec c;
    bool found, over = false;
    int rc = load(t, r, a, id, 1, &c, &found);
    if (rc != 0)
        return rc;
    if (k->state == CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED)
        list_add(c.cons, &c.ncons, c.conscap, CXM_REPLICA_CONSENTS_MAX, k->scope, &over);
    else
        list_remove(c.cons, &c.ncons, k->scope);
    if (over)
        warn_limits(r, id);
    return store_rec(t, r, a, id, &c);
}

static int apply_stage(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id,
                       const Cxm__V1__StageChanged *m, int64_t occurred)
{
    int stage = m->to_stage;
    if (stage < CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_AWARENESS ||
        stage > CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_ADVOCACY)
        return 0; /* unknown stage: ignored, not stored as garbage */
    int64_t since = m->since_unix_ms ? m->since_unix_ms : occurred;
    rec c;
    bool found;
    int rc = load(t, r, a, id, 0, &c, &found);
    if (rc != 0 || (c.stage && since < c.since))
        return rc; /* an older change arriving late does not undo a newer one */
    c.stage = stage;
    c.since = since;
    return store_rec(t, r, a, id, &c);
}

static int group_key(uint8_t *buf, const char *target, const char *source, size_t *len)
{
    cxm_key k;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, target);
    if (source)
        cxm_key_str(&k, source);
    return cxm_key_finish(&k, len);
}

static int del_absent_ok(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, uint64_t *count)
{
    int rc = cxm_txn_del(t, dbi, key, klen);
    if (rc == 0 && count)
        (*count)++;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* The target's record gains the source's facts: lists united, the stage
 * entered later kept (the newer fact about the same person). */
static int merge_records(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *source,
                         const char *target)
{
    rec s, c;
    bool sfound, tfound, over = false;
    int rc = load(t, r, a, source, 0, &s, &sfound);
    if (rc == 0 && sfound)
        rc = load(t, r, a, target, s.nseg + s.ncons, &c, &tfound);
    if (rc != 0 || !sfound)
        return rc;
    for (size_t i = 0; i < s.nseg; i++)
        list_add(c.seg, &c.nseg, c.segcap, CXM_REPLICA_SEGMENTS_MAX, s.seg[i], &over);
    for (size_t i = 0; i < s.ncons; i++)
        list_add(c.cons, &c.ncons, c.conscap, CXM_REPLICA_CONSENTS_MAX, s.cons[i], &over);
    if (s.stage && (!c.stage || s.since > c.since)) {
        c.stage = s.stage;
        c.since = s.since;
    }
    if (over)
        warn_limits(r, target);
    uint8_t *v;
    size_t vl;
    if ((rc = encode(&c, a, &v, &vl)) != 0) /* before the del moves the map */
        return rc;
    rc = del_absent_ok(t, r->cust, source, strlen(source), NULL);
    return rc ? rc : cxm_txn_put(t, r->cust, target, strlen(target), v, vl, 0);
}

static int apply_merge(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *source,
                       const char *target)
{
    if (!*source || !*target || strcmp(source, target) == 0)
        return 0;
    uint8_t k[CXM_KEY_MAX];
    size_t kl;
    int rc = group_key(k, target, source, &kl);
    if (rc == 0)
        rc = merge_records(t, r, a, source, target);
    if (rc == 0)
        rc = cxm_txn_put(t, r->alias, source, strlen(source), target, strlen(target), 0);
    return rc ? rc : cxm_txn_put(t, r->group, k, kl, "", 0, 0);
}

/* The source is a customer of its own again, with no facts until profile
 * re-announces them. */
static int apply_unmerge(cxm_txn *t, cxm_replica *r, const char *source, const char *target)
{
    if (!*source || !*target)
        return 0;
    uint8_t k[CXM_KEY_MAX];
    size_t kl;
    int rc = group_key(k, target, source, &kl);
    if (rc == 0)
        rc = del_absent_ok(t, r->group, k, kl, NULL);
    if (rc == 0)
        rc = del_absent_ok(t, r->alias, source, strlen(source), NULL);
    return rc ? rc : del_absent_ok(t, r->cust, source, strlen(source), NULL);
}

static const char *s0(const char *s)
{
    return s ? s : "";
}

static int apply_fact(cxm_txn *t, cxm_replica *r, cxm_arena *a, const Cxm__V1__Event *ev)
{
    const char *id;
    if (!*s0(ev->customer_id))
        return 0;
    /* Events about a merged-away id land on its survivor, where reads look. */
    int rc = cxm_replica_root(t, r, a, ev->customer_id, &id);
    if (rc != 0)
        return rc;
    switch (ev->payload_case) {
    case CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED:
        return apply_segments(t, r, a, id, ev->segment_membership_changed);
    case CXM__V1__EVENT__PAYLOAD_CONSENT_CHANGED:
        return apply_consent(t, r, a, id, ev->consent_changed);
    default:
        return apply_stage(t, r, a, id, ev->stage_changed, ev->occurred_at_unix_ms);
    }
}

/* The payload pointer of a case this module applies (NULL for others and
 * for a hand-built event that names a case without its message). */
static const void *payload_of(const Cxm__V1__Event *ev)
{
    switch (ev->payload_case) {
    case CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED:
        return ev->segment_membership_changed;
    case CXM__V1__EVENT__PAYLOAD_CONSENT_CHANGED:
        return ev->consent_changed;
    case CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED:
        return ev->stage_changed;
    case CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED:
        return ev->customer_merged;
    case CXM__V1__EVENT__PAYLOAD_CUSTOMER_UNMERGED:
        return ev->customer_unmerged;
    default:
        return NULL;
    }
}

static int apply_event(cxm_txn *t, cxm_replica *r, cxm_arena *a, const Cxm__V1__Event *ev)
{
    if (!payload_of(ev))
        return 0;
    switch (ev->payload_case) {
    case CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED:
    case CXM__V1__EVENT__PAYLOAD_CONSENT_CHANGED:
    case CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED:
        return apply_fact(t, r, a, ev);
    case CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED:
        return apply_merge(t, r, a, s0(ev->customer_merged->source_customer_id),
                           s0(ev->customer_merged->target_customer_id));
    case CXM__V1__EVENT__PAYLOAD_CUSTOMER_UNMERGED:
        return apply_unmerge(t, r, s0(ev->customer_unmerged->source_customer_id),
                             s0(ev->customer_unmerged->target_customer_id));
    default:
        return 0;
    }
}

int cxm_replica_apply(cxm_txn *t, cxm_replica *r, const Cxm__V1__Event *ev)
{
    if (!t || !r || !ev)
        return CXM_EINVAL;
    uint8_t stack[4096];
    cxm_arena a;
    cxm_arena_init(&a, stack, sizeof stack, 0);
    int rc = apply_event(t, r, &a, ev);
    cxm_arena_dispose(&a);
    if (rc == CXM_ETOOBIG || rc == CXM_ECORRUPT) {
        /* An id over the key limit cannot be ours, a damaged record cannot be
         * repaired by a retry: skip the event rather than block the bus. */
        cxm_log_warn("replica.event_skipped", "event %" PRIu64 " (%s of %s) ignored: %s",
                     ev->sequence, s0(ev->type), s0(ev->customer_id), cxm_strerror(rc));
        return 0;
    }
    return rc;
}

/* ---- reading ---- */

int cxm_replica_root(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id, const char **root)
{
    if (!t || !r || !a || !id || !root)
        return CXM_EINVAL;
    const char *cur = id;
    for (int hops = 0; hops < ROOT_HOPS_MAX && *cur; hops++) {
        void *v;
        size_t vl;
        int rc = cxm_txn_get(t, r->alias, cur, strlen(cur), a, &v, &vl);
        if (rc == CXM_ENOTFOUND || rc == CXM_ETOOBIG) /* too long for a key: never merged */
            break;
        if (rc != 0)
            return rc;
        cur = v;
    }
    *root = cur;
    return 0;
}

int cxm_replica_get(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *customer_id,
                    cxm_replica_customer *out)
{
    if (!t || !r || !a || !customer_id || !out)
        return CXM_EINVAL;
    rec c;
    bool found = false;
    int rc = *customer_id ? load(t, r, a, customer_id, 0, &c, &found) : 0;
    if (rc == CXM_ETOOBIG) /* an id over the key limit has no record */
        rc = 0, found = false;
    if (rc != 0)
        return rc;
    if (!found) {
        *out = (cxm_replica_customer){.known = false};
        return 0;
    }
    *out = (cxm_replica_customer){.known = true,
                                  .stage = c.stage,
                                  .stage_since = c.since,
                                  .segments = c.seg,
                                  .nsegments = c.nseg,
                                  .consents = c.cons,
                                  .nconsents = c.ncons};
    return 0;
}

bool cxm_replica_in_segment(const cxm_replica_customer *c, const char *segment_id)
{
    bool found = false;
    if (c && segment_id)
        find_name(c->segments, c->nsegments, segment_id, &found);
    return found;
}

bool cxm_replica_granted(const cxm_replica_customer *c, const char *scope)
{
    bool found = false;
    if (c && scope)
        find_name(c->consents, c->nconsents, scope, &found);
    return found;
}

/* ---- erasure ---- */

typedef struct members {
    cxm_arena *a;
    char **ids;
    size_t n, cap;
} members;

static int member_one(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    (void)val;
    (void)vlen;
    members *m = user;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 16;
        char **ids = cxm_arena_alloc(m->a, cap * sizeof *ids);
        if (!ids)
            return CXM_ENOMEM;
        if (m->n)
            memcpy(ids, m->ids, m->n * sizeof *ids);
        m->ids = ids;
        m->cap = cap;
    }
    cxm_keyreader kr;
    cxm_keyreader_init(&kr, key, klen);
    cxm_keyread_skip_bytes(&kr);
    return cxm_keyread_bytes_arena(&kr, m->a, &m->ids[m->n++], NULL);
}

/* The group rows of id as a survivor: each member's alias and row go. */
static int erase_members(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id, uint64_t *count)
{
    uint8_t prefix[CXM_KEY_MAX];
    size_t pl;
    members m = {a, NULL, 0, 0};
    int rc = group_key(prefix, id, NULL, &pl);
    if (rc == 0)
        rc = cxm_txn_scan_prefix(t, r->group, prefix, pl, false, member_one, &m);
    for (size_t i = 0; rc == 0 && i < m.n; i++) {
        uint8_t k[CXM_KEY_MAX];
        size_t kl;
        rc = group_key(k, id, m.ids[i], &kl);
        if (rc == 0)
            rc = del_absent_ok(t, r->group, k, kl, count);
        if (rc == 0)
            rc = del_absent_ok(t, r->alias, m.ids[i], strlen(m.ids[i]), count);
    }
    return rc;
}

/* id's own alias (when it was merged away) and its row in the survivor's
 * group. */
static int erase_own_alias(cxm_txn *t, cxm_replica *r, cxm_arena *a, const char *id,
                           uint64_t *count)
{
    void *target;
    size_t tl;
    int rc = cxm_txn_get(t, r->alias, id, strlen(id), a, &target, &tl);
    if (rc == CXM_ENOTFOUND)
        return 0;
    uint8_t k[CXM_KEY_MAX];
    size_t kl;
    if (rc == 0)
        rc = group_key(k, target, id, &kl);
    if (rc == 0)
        rc = del_absent_ok(t, r->group, k, kl, count);
    return rc ? rc : del_absent_ok(t, r->alias, id, strlen(id), count);
}

int cxm_replica_erase(cxm_txn *t, cxm_replica *r, const char *customer_id, uint64_t *records)
{
    if (!t || !r || !customer_id)
        return CXM_EINVAL;
    if (!*customer_id || strlen(customer_id) > CXM_KEY_MAX) {
        if (records)
            *records = 0; /* no row can have such a key */
        return 0;
    }
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    uint64_t n = 0;
    int rc = del_absent_ok(t, r->cust, customer_id, strlen(customer_id), &n);
    if (rc == 0)
        rc = erase_members(t, r, &a, customer_id, &n);
    if (rc == 0)
        rc = erase_own_alias(t, r, &a, customer_id, &n);
    if (rc == CXM_ETOOBIG)
        rc = 0; /* a group key too long to build: merges never stored one */
    cxm_arena_dispose(&a);
    if (rc == 0 && records)
        *records = n;
    return rc;
}
