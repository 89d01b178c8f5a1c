/*
 * ffu.c - close-the-loop follow-ups (see ffu.h).
 *
 * Tables (the feedback service's store):
 *   feedback.ffu_byid    id -> packed FollowUp
 *   feedback.ffu_due     due_at | id                -> summary
 *   feedback.ffu_state   state | due_at | id        -> summary
 *   feedback.ffu_owner   owner ("" = none) | due_at | id -> summary
 *   feedback.ffu_cust    customer | due_at | id     -> summary
 *   feedback.ffu_moved   source customer | id       -> "" (moved by a merge)
 *   feedback.ffu_policy  "policy"                   -> packed FollowUpPolicy
 *
 * Every index key ends in due_at | id, so each index lists "earliest due
 * first, then id" within its prefix, and a listing merges a few prefixes of
 * one index by that suffix. The summary (state, created_at and the filtered
 * strings) lets a listing test every filter on the index entry alone; only
 * the follow-ups of the page are decoded.
 */
#include "ffu.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/keyenc.h"
#include "cxm/svc.h"

#define DEFAULT_NEGATIVE_SCORE (-0.6)
#define DEFAULT_DUE_HOURS 48u
#define MAX_DUE_HOURS (24u * 366u) /* a rule's due_hours: a year at most */
#define MAX_ASSIGNMENTS 100
#define MAX_OWNER 128
#define MAX_NOTE 4096
#define MAX_FILTER_TEXT 256 /* customer, touchpoint and survey filters */
#define MAX_ID 128
#define HOUR_MS 3600000LL
#define POLICY_KEY "policy"
#define ID_PREFIX "fu-"
#define ID_LEN 19 /* "fu-" and 16 hex digits */
#define NSTATES 6 /* FollowUpState values, UNSPECIFIED included */

struct ffu {
    cxm_store *store;
    cxm_bus_producer *events;
    MDB_dbi byid, due, state, owner, cust, moved, policy;
    /* The committed policy's threshold, for ffu_strongly_negative, which
     * has no transaction to read it from; updated after SetFollowUpPolicy
     * committed. */
    pthread_mutex_t mu;
    double negative_text_score;
};

/* ---- keys ---- */

typedef struct fkey {
    uint8_t b[CXM_KEY_MAX];
    size_t n;
} fkey;

static int key_done(cxm_key *k, fkey *out)
{
    return cxm_key_finish(k, &out->n);
}

/* One string: an id, or the prefix of a customer's keys. */
static int key_str(fkey *out, const char *id)
{
    cxm_key k;
    cxm_key_init(&k, out->b, sizeof out->b);
    cxm_key_str(&k, id);
    return key_done(&k, out);
}

/* The due_at | id suffix every index key ends with. */
static void key_suffix(cxm_key *k, int64_t due, const char *id)
{
    cxm_key_i64(k, due);
    cxm_key_str(k, id);
}

enum { IX_DUE, IX_STATE, IX_OWNER, IX_CUST, NIX };

/* The prefix of index ix for a follow-up: nothing, its state, its owner or
 * its customer. */
static void key_prefix(cxm_key *k, int ix, int state, const char *s)
{
    if (ix == IX_STATE)
        cxm_key_u8(k, (uint8_t)state);
    else if (ix != IX_DUE)
        cxm_key_str(k, s ? s : "");
}

static int key_index(fkey *out, int ix, const Cxm__V1__FollowUp *fu)
{
    cxm_key k;
    cxm_key_init(&k, out->b, sizeof out->b);
    key_prefix(&k, ix, fu->state, ix == IX_OWNER ? fu->owner : fu->customer_id);
    key_suffix(&k, fu->due_at_unix_ms, fu->follow_up_id);
    return key_done(&k, out);
}

static int key_moved(fkey *out, const char *source, const char *id)
{
    cxm_key k;
    cxm_key_init(&k, out->b, sizeof out->b);
    cxm_key_str(&k, source);
    if (id)
        cxm_key_str(&k, id);
    return key_done(&k, out);
}

/* ---- summaries: what a listing filters on, stored with each index entry ---- */

enum { SUM_OWNER, SUM_CUSTOMER, SUM_TOUCHPOINT, SUM_SURVEY, NSUM };

typedef struct fsum {
    uint8_t state;
    int64_t created;
    const char *s[NSUM];
    size_t len[NSUM];
} fsum;

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* state, created (8 bytes), then each string as a 2-byte length and bytes. */
static uint8_t *sum_pack(cxm_arena *a, const Cxm__V1__FollowUp *fu, size_t *len)
{
    const char *s[NSUM] = {nz(fu->owner), nz(fu->customer_id), nz(fu->touchpoint),
                           nz(fu->survey_id)};
    size_t n = 9;
    for (int i = 0; i < NSUM; i++)
        n += 2 + strlen(s[i]);
    uint8_t *b = cxm_arena_alloc(a, n), *p = b;
    if (!b)
        return NULL;
    cxm_key k;
    *p++ = (uint8_t)fu->state;
    cxm_key_init(&k, p, 8);
    cxm_key_i64(&k, fu->created_at_unix_ms);
    p += 8;
    for (int i = 0; i < NSUM; i++) {
        size_t l = strlen(s[i]);
        *p++ = (uint8_t)(l >> 8);
        *p++ = (uint8_t)l;
        memcpy(p, s[i], l);
        p += l;
    }
    *len = n;
    return b;
}

/* Points into v (valid while the map value is). */
static int sum_read(const void *v, size_t n, fsum *out)
{
    const uint8_t *p = v, *end = p + n;
    if (n < 9)
        return CXM_ECORRUPT;
    cxm_keyreader r;
    out->state = *p++;
    cxm_keyreader_init(&r, p, 8);
    cxm_keyread_i64(&r, &out->created);
    p += 8;
    for (int i = 0; i < NSUM; i++) {
        if (end - p < 2)
            return CXM_ECORRUPT;
        size_t l = (size_t)p[0] << 8 | p[1];
        p += 2;
        if ((size_t)(end - p) < l)
            return CXM_ECORRUPT;
        out->s[i] = (const char *)p;
        out->len[i] = l;
        p += l;
    }
    return 0;
}

static bool is_open(int state)
{
    return state != CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CLOSED &&
           state != CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_DISMISSED;
}

/* ---- records ---- */

static int put_msg(cxm_txn *t, MDB_dbi dbi, const fkey *k, cxm_arena *a, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = cxm_arena_alloc(a, n ? n : 1);
    if (!buf)
        return CXM_ENOMEM;
    protobuf_c_message_pack(m, buf);
    return cxm_txn_put(t, dbi, k->b, k->n, buf, n, 0);
}

static int get_msg(cxm_txn *t, MDB_dbi dbi, const fkey *k, cxm_arena *a,
                   const ProtobufCMessageDescriptor *d, void **out)
{
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, dbi, k->b, k->n, &v, &n);
    if (rc != 0)
        return rc;
    void *m = protobuf_c_message_unpack(d, cxm_arena_protobuf(a), n, v);
    if (!m)
        return CXM_ECORRUPT;
    *out = m;
    return 0;
}

static int del_quiet(cxm_txn *t, MDB_dbi dbi, const fkey *k)
{
    int rc = cxm_txn_del(t, dbi, k->b, k->n);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static MDB_dbi index_dbi(const ffu *f, int ix)
{
    const MDB_dbi d[NIX] = {f->due, f->state, f->owner, f->cust};
    return d[ix];
}

static int fu_get(cxm_txn *t, ffu *f, cxm_arena *a, const char *id, Cxm__V1__FollowUp **out)
{
    fkey k;
    if (key_str(&k, id) != 0)
        return CXM_ENOTFOUND; /* too long to have been stored */
    return get_msg(t, f->byid, &k, a, &cxm__v1__follow_up__descriptor, (void **)out);
}

static int index_del(cxm_txn *t, ffu *f, const Cxm__V1__FollowUp *fu)
{
    for (int ix = 0; ix < NIX; ix++) {
        fkey k;
        int rc = key_index(&k, ix, fu);
        if (rc == 0)
            rc = del_quiet(t, index_dbi(f, ix), &k);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Store fu and its index entries; old (NULL for a new one) is what it
 * replaces, whose entries go first. */
static int fu_save(cxm_txn *t, ffu *f, cxm_arena *a, const Cxm__V1__FollowUp *old,
                   const Cxm__V1__FollowUp *fu)
{
    int rc = old ? index_del(t, f, old) : 0;
    size_t slen = 0;
    uint8_t *sum = sum_pack(a, fu, &slen);
    fkey k;
    if (rc == 0 && !sum)
        rc = CXM_ENOMEM;
    if (rc == 0 && (rc = key_str(&k, fu->follow_up_id)) == 0)
        rc = put_msg(t, f->byid, &k, a, &fu->base);
    for (int ix = 0; ix < NIX && rc == 0; ix++)
        if ((rc = key_index(&k, ix, fu)) == 0)
            rc = cxm_txn_put(t, index_dbi(f, ix), k.b, k.n, sum, slen, 0);
    return rc;
}

static int fu_delete(cxm_txn *t, ffu *f, const Cxm__V1__FollowUp *fu)
{
    fkey k;
    int rc = index_del(t, f, fu);
    if (rc == 0 && (rc = key_str(&k, fu->follow_up_id)) == 0)
        rc = del_quiet(t, f->byid, &k);
    return rc;
}

/* The ids of the keys under prefix (each prefix | [due_at |] id), copied into
 * a: the callers change the table while going through them. */
static int prefix_ids(cxm_txn *t, MDB_dbi dbi, const fkey *p, bool due, cxm_arena *a, char ***ids,
                      size_t *n)
{
    cxm_iter it;
    int rc = cxm_iter_prefix(t, dbi, p->b, p->n, false, &it);
    if (rc != 0)
        return rc;
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    while ((rc = cxm_iter_next(&it)) == 0) {
        if (*n == cap) {
            char **grown = cxm_arena_alloc(a, (cap = cap ? cap * 2 : 8) * sizeof *grown);
            if (!grown) {
                rc = CXM_ENOMEM;
                break;
            }
            if (*n)
                memcpy(grown, *ids, *n * sizeof *grown);
            *ids = grown;
        }
        cxm_keyreader r;
        int64_t skip;
        cxm_keyreader_init(&r, (const uint8_t *)it.key + p->n, it.klen - p->n);
        if (due)
            cxm_keyread_i64(&r, &skip);
        if ((rc = cxm_keyread_bytes_arena(&r, a, &(*ids)[*n], NULL)) != 0)
            break;
        (*n)++;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* The ids of a customer's follow-ups. */
static int cust_ids(cxm_txn *t, ffu *f, cxm_arena *a, const char *customer, char ***ids, size_t *n)
{
    fkey p;
    int rc = key_str(&p, customer);
    return rc ? rc : prefix_ids(t, f->cust, &p, true, a, ids, n);
}

/* The customer's follow-ups not CLOSED or DISMISSED, from the summaries. */
static int open_count(cxm_txn *t, ffu *f, const char *customer, uint32_t *out)
{
    fkey p;
    int rc = key_str(&p, customer);
    cxm_iter it;
    if (rc != 0 || (rc = cxm_iter_prefix(t, f->cust, p.b, p.n, false, &it)) != 0)
        return rc;
    uint32_t n = 0;
    while ((rc = cxm_iter_next(&it)) == 0)
        n += it.vlen > 0 && is_open(((const uint8_t *)it.val)[0]);
    cxm_iter_close(&it);
    if (rc != CXM_ENOTFOUND)
        return rc;
    *out = n;
    return 0;
}

/* FollowUpChanged for fu, in t, with its customer's open count after the
 * change. */
static int emit_changed(cxm_txn *t, ffu *f, const Cxm__V1__FollowUp *fu, int64_t now)
{
    if (!f->events)
        return 0;
    Cxm__V1__FollowUpChanged c = CXM__V1__FOLLOW_UP_CHANGED__INIT;
    int rc = open_count(t, f, fu->customer_id, &c.open_follow_ups);
    if (rc != 0)
        return rc;
    c.follow_up_id = fu->follow_up_id;
    c.state = fu->state;
    c.reason = fu->reason;
    c.touchpoint = fu->touchpoint;
    c.owner = fu->owner;
    c.response_id = fu->response_id;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.customer_id = fu->customer_id;
    ev.occurred_at_unix_ms = now;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_FOLLOW_UP_CHANGED;
    ev.follow_up_changed = &c;
    return cxm_bus_emit(f->events, t, &ev);
}

/* ---- the policy ---- */

static Cxm__V1__FollowUpPolicy *policy_default(cxm_arena *a)
{
    Cxm__V1__FollowUpPolicy *p = cxm_arena_alloc(a, sizeof *p);
    if (p) {
        cxm__v1__follow_up_policy__init(p);
        p->negative_text_score = DEFAULT_NEGATIVE_SCORE;
    }
    return p;
}

/* The policy in force in t (the default when none was set). */
static int policy_get(cxm_txn *t, ffu *f, cxm_arena *a, Cxm__V1__FollowUpPolicy **out)
{
    fkey k = {.n = strlen(POLICY_KEY)};
    memcpy(k.b, POLICY_KEY, k.n);
    Cxm__V1__FollowUpPolicy *p = NULL;
    int rc = get_msg(t, f->policy, &k, a, &cxm__v1__follow_up_policy__descriptor, (void **)&p);
    if (rc == CXM_ENOTFOUND) {
        if (!(p = policy_default(a)))
            return CXM_ENOMEM;
        rc = 0;
    }
    if (rc == 0)
        *out = p;
    return rc;
}

static int policy_put(cxm_txn *t, ffu *f, cxm_arena *a, const Cxm__V1__FollowUpPolicy *p)
{
    fkey k = {.n = strlen(POLICY_KEY)};
    memcpy(k.b, POLICY_KEY, k.n);
    return put_msg(t, f->policy, &k, a, &p->base);
}

static bool negative_by(double threshold, int label, double score)
{
    return label == CXM__V1__SENTIMENT_LABEL__SENTIMENT_LABEL_NEGATIVE && score <= threshold;
}

bool ffu_strongly_negative(ffu *f, int label, double sentiment_score)
{
    pthread_mutex_lock(&f->mu);
    double threshold = f->negative_text_score;
    pthread_mutex_unlock(&f->mu);
    return negative_by(threshold, label, sentiment_score);
}

static void policy_cache(ffu *f, const Cxm__V1__FollowUpPolicy *p)
{
    pthread_mutex_lock(&f->mu);
    f->negative_text_score = p->negative_text_score;
    pthread_mutex_unlock(&f->mu);
}

static int load_policy_fn(cxm_txn *t, void *user)
{
    ffu *f = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__FollowUpPolicy *p = NULL;
    int rc = policy_get(t, f, &a, &p);
    if (rc == 0)
        policy_cache(f, p);
    cxm_arena_dispose(&a);
    return rc;
}

int ffu_open(cxm_store *store, cxm_bus_producer *events, ffu **out)
{
    ffu *f = calloc(1, sizeof *f);
    if (!f)
        return CXM_ENOMEM;
    f->store = store;
    f->events = events;
    f->negative_text_score = DEFAULT_NEGATIVE_SCORE;
    pthread_mutex_init(&f->mu, NULL);
    const cxm_store_table tables[] = {
        {"feedback.ffu_byid", &f->byid},     {"feedback.ffu_due", &f->due},
        {"feedback.ffu_state", &f->state},   {"feedback.ffu_owner", &f->owner},
        {"feedback.ffu_cust", &f->cust},     {"feedback.ffu_moved", &f->moved},
        {"feedback.ffu_policy", &f->policy},
    };
    int rc = cxm_store_dbis(store, tables, sizeof tables / sizeof tables[0]);
    if (rc == 0)
        rc = cxm_store_read(store, load_policy_fn, f);
    if (rc != 0) {
        ffu_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void ffu_close(ffu *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* ---- opening follow-ups ---- */

static Cxm__V1__FollowUpReason open_reason(const Cxm__V1__FollowUpPolicy *p, const ffu_response *r)
{
    if (r->threshold >= 0 && r->score <= r->threshold)
        return CXM__V1__FOLLOW_UP_REASON__FOLLOW_UP_REASON_LOW_SCORE;
    if (r->has_text && !p->ignore_text &&
        negative_by(p->negative_text_score, r->label, r->sentiment_score))
        return CXM__V1__FOLLOW_UP_REASON__FOLLOW_UP_REASON_NEGATIVE_TEXT;
    return CXM__V1__FOLLOW_UP_REASON__FOLLOW_UP_REASON_UNSPECIFIED;
}

static bool rule_matches(const Cxm__V1__FollowUpAssignment *m, const ffu_response *r,
                         Cxm__V1__FollowUpReason reason)
{
    if (m->survey_id && *m->survey_id && strcmp(m->survey_id, nz(r->survey_id)) != 0)
        return false;
    if (m->touchpoint && *m->touchpoint && strcmp(m->touchpoint, nz(r->touchpoint)) != 0)
        return false;
    if (m->channel != CXM__V1__CHANNEL__CHANNEL_UNSPECIFIED && m->channel != r->channel)
        return false;
    return m->reason == CXM__V1__FOLLOW_UP_REASON__FOLLOW_UP_REASON_UNSPECIFIED ||
           m->reason == reason;
}

/* The first matching rule's owner and hours, else unassigned and the
 * survey's hours. */
static void assign(const Cxm__V1__FollowUpPolicy *p, const ffu_response *r,
                   Cxm__V1__FollowUpReason reason, const char **owner, uint32_t *hours)
{
    *owner = "";
    *hours = r->due_hours ? r->due_hours : DEFAULT_DUE_HOURS;
    for (size_t i = 0; i < p->n_assignments; i++) {
        const Cxm__V1__FollowUpAssignment *m = p->assignments[i];
        if (rule_matches(m, r, reason)) {
            *owner = m->owner;
            if (m->due_hours)
                *hours = m->due_hours;
            return;
        }
    }
}

/* "fu-" and 16 hex digits of a hash of the response id; salt > 0 only after
 * a collision with another response's follow-up. */
static void derive_id(const char *response_id, unsigned salt, char out[ID_LEN + 1])
{
    uint64_t h = cxm_hash(CXM_HASH_INIT, response_id, strlen(response_id));
    if (salt) {
        char s[16];
        int n = snprintf(s, sizeof s, "#%u", salt);
        h = cxm_hash(h, s, (size_t)n);
    }
    snprintf(out, ID_LEN + 1, ID_PREFIX "%016" PRIx64, h);
}

/* The id the response's follow-up has or gets; *existing tells which. */
static int pick_id(cxm_txn *t, ffu *f, cxm_arena *a, const char *response_id, char *id,
                   bool *existing)
{
    for (unsigned salt = 0; salt < 64; salt++) {
        derive_id(response_id, salt, id);
        Cxm__V1__FollowUp *fu = NULL;
        int rc = fu_get(t, f, a, id, &fu);
        if (rc == CXM_ENOTFOUND) {
            *existing = false;
            return 0;
        }
        if (rc != 0)
            return rc;
        if (strcmp(nz(fu->response_id), response_id) == 0) {
            *existing = true;
            return 0;
        }
    }
    return CXM_EINTERNAL; /* 64 collisions of a 64-bit hash: the table is corrupt */
}

/* Store and announce the new follow-up id of response r. */
static int open_new(cxm_txn *t, ffu *f, cxm_arena *a, const Cxm__V1__FollowUpPolicy *p,
                    const ffu_response *r, Cxm__V1__FollowUpReason reason, char *id)
{
    const char *owner;
    uint32_t hours;
    assign(p, r, reason, &owner, &hours);
    Cxm__V1__FollowUp fu = CXM__V1__FOLLOW_UP__INIT;
    fu.follow_up_id = id;
    fu.customer_id = (char *)r->customer_id;
    fu.response_id = (char *)r->response_id;
    fu.survey_id = (char *)nz(r->survey_id);
    fu.state = CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_OPEN;
    fu.reason = reason;
    fu.owner = (char *)owner;
    fu.score = r->score;
    fu.touchpoint = (char *)nz(r->touchpoint);
    fu.channel = r->channel;
    fu.created_at_unix_ms = fu.updated_at_unix_ms = r->now_ms;
    fu.due_at_unix_ms = r->now_ms + (int64_t)hours * HOUR_MS;
    fu.version = 1;
    int rc = fu_save(t, f, a, NULL, &fu);
    return rc ? rc : emit_changed(t, f, &fu, r->now_ms);
}

int ffu_on_response(cxm_txn *t, ffu *f, const ffu_response *r, cxm_arena *a,
                    const char **follow_up_id)
{
    if (!r->response_id || !*r->response_id || !r->customer_id || !*r->customer_id)
        return CXM_EINVAL;
    char *id = cxm_arena_alloc(a, ID_LEN + 1);
    bool existing = false;
    if (!id)
        return CXM_ENOMEM;
    int rc = pick_id(t, f, a, r->response_id, id, &existing);
    if (rc != 0)
        return rc;
    if (existing) { /* a response seen before keeps what it opened */
        *follow_up_id = id;
        return 0;
    }
    Cxm__V1__FollowUpPolicy *p = NULL;
    if ((rc = policy_get(t, f, a, &p)) != 0)
        return rc;
    Cxm__V1__FollowUpReason reason = open_reason(p, r);
    if (reason == CXM__V1__FOLLOW_UP_REASON__FOLLOW_UP_REASON_UNSPECIFIED) {
        *follow_up_id = NULL;
        return 0;
    }
    if ((rc = open_new(t, f, a, p, r, reason, id)) != 0)
        return rc;
    *follow_up_id = id;
    return 0;
}

/* ---- erasure and merges ---- */

/* The ids merges moved away from source. */
static int moved_ids(cxm_txn *t, ffu *f, cxm_arena *a, const char *source, char ***ids, size_t *n)
{
    fkey p;
    int rc = key_moved(&p, source, NULL);
    return rc ? rc : prefix_ids(t, f->moved, &p, false, a, ids, n);
}

static int erase_customer(cxm_txn *t, ffu *f, cxm_arena *a, const char *customer, uint64_t *records)
{
    char **ids;
    size_t n;
    int rc = cust_ids(t, f, a, customer, &ids, &n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        Cxm__V1__FollowUp *fu = NULL;
        rc = fu_get(t, f, a, ids[i], &fu);
        if (rc == 0 && (rc = fu_delete(t, f, fu)) == 0)
            (*records)++;
        if (rc == CXM_ENOTFOUND)
            rc = CXM_ECORRUPT; /* an index entry without its follow-up */
    }
    /* The record of what merges moved away from this customer. */
    if (rc == 0 && (rc = moved_ids(t, f, a, customer, &ids, &n)) == 0)
        for (size_t i = 0; i < n && rc == 0; i++) {
            fkey k;
            if ((rc = key_moved(&k, customer, ids[i])) == 0)
                rc = del_quiet(t, f->moved, &k);
        }
    return rc;
}

int ffu_erase(cxm_txn *t, ffu *f, const char *customer_id, char *const *merged, size_t nmerged,
              uint64_t *records)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int rc = erase_customer(t, f, &a, customer_id, records);
    for (size_t i = 0; i < nmerged && rc == 0; i++)
        rc = erase_customer(t, f, &a, merged[i], records);
    cxm_arena_dispose(&a);
    return rc;
}

/* fu now belongs to customer: re-indexed, a new version, announced. */
static int move_to(cxm_txn *t, ffu *f, cxm_arena *a, Cxm__V1__FollowUp *fu, const char *customer,
                   int64_t now)
{
    Cxm__V1__FollowUp old = *fu;
    fu->customer_id = (char *)customer;
    fu->version++;
    fu->updated_at_unix_ms = now;
    int rc = fu_save(t, f, a, &old, fu);
    return rc ? rc : emit_changed(t, f, fu, now);
}

/* Merge: a follow-up of source goes to target, and the move is recorded. */
static int merge_one(cxm_txn *t, ffu *f, cxm_arena *a, const char *id, const char *source,
                     const char *target, int64_t now)
{
    Cxm__V1__FollowUp *fu = NULL;
    fkey k;
    int rc;
    if ((rc = fu_get(t, f, a, id, &fu)) != 0 || (rc = move_to(t, f, a, fu, target, now)) != 0 ||
        (rc = key_moved(&k, source, id)) != 0)
        return rc;
    return cxm_txn_put(t, f->moved, k.b, k.n, "", 0, 0);
}

/* Unmerge: a follow-up recorded as moved from source comes back when it is
 * still target's; one a later merge moved on keeps its record for that
 * merge's unmerge, one erased meanwhile loses it. */
static int unmerge_one(cxm_txn *t, ffu *f, cxm_arena *a, const char *id, const char *source,
                       const char *target, int64_t now)
{
    Cxm__V1__FollowUp *fu = NULL;
    fkey k;
    int rc = fu_get(t, f, a, id, &fu);
    if (rc == 0 && strcmp(fu->customer_id, target) != 0)
        return 0;
    if (rc == 0)
        rc = move_to(t, f, a, fu, source, now);
    if ((rc == 0 || rc == CXM_ENOTFOUND) && (rc = key_moved(&k, source, id)) == 0)
        rc = del_quiet(t, f->moved, &k);
    return rc;
}

/* merge_one or unmerge_one over source's follow-ups or recorded moves. */
static int move_all(cxm_txn *t, ffu *f, const char *source, const char *target, bool back)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int64_t now = cxm_svc_now_ms();
    char **ids;
    size_t n;
    int rc = back ? moved_ids(t, f, &a, source, &ids, &n) : cust_ids(t, f, &a, source, &ids, &n);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = (back ? unmerge_one : merge_one)(t, f, &a, ids[i], source, target, now);
    cxm_arena_dispose(&a);
    return rc;
}

int ffu_merge(cxm_txn *t, ffu *f, const char *source, const char *target)
{
    return move_all(t, f, source, target, false);
}

int ffu_unmerge(cxm_txn *t, ffu *f, const char *source, const char *target)
{
    return move_all(t, f, source, target, true);
}

/* ---- validation ---- */

static bool enum_valid(const ProtobufCEnumDescriptor *d, int v)
{
    return protobuf_c_enum_descriptor_get_value(d, v) != NULL;
}

static int check_enum(const ProtobufCEnumDescriptor *d, int v, const char *field, char *err)
{
    if (enum_valid(d, v))
        return 0;
    return cxm_svc_errf(err, CXM_EINVAL, field, "%d is not a %s value", v, d->name);
}

/* Empty, or a slug. */
static int check_opt_slug(const char *s, const char *field, char *err)
{
    return s && *s ? cxm_svc_check_slug(s, field, err) : 0;
}

static int check_assignment(const Cxm__V1__FollowUpAssignment *m, const char *base, char *err)
{
    cxm_svc_path p;
    int rc;
    if ((rc = check_opt_slug(m->survey_id, cxm_svc_member(&p, base, "survey_id"), err)) != 0 ||
        (rc = check_opt_slug(m->touchpoint, cxm_svc_member(&p, base, "touchpoint"), err)) != 0 ||
        (rc = check_enum(&cxm__v1__channel__descriptor, m->channel,
                         cxm_svc_member(&p, base, "channel"), err)) != 0 ||
        (rc = check_enum(&cxm__v1__follow_up_reason__descriptor, m->reason,
                         cxm_svc_member(&p, base, "reason"), err)) != 0 ||
        (rc = cxm_svc_check_text(m->owner, 1, MAX_OWNER, cxm_svc_member(&p, base, "owner"), err)) !=
            0)
        return rc;
    if (m->due_hours > MAX_DUE_HOURS)
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&p, base, "due_hours"),
                            "must be at most %u (a year), got %u", MAX_DUE_HOURS, m->due_hours);
    return 0;
}

/* SetFollowUpPolicy's policy; resolves negative_text_score 0 to the default. */
int ffu_check_policy(Cxm__V1__FollowUpPolicy *p, char *err)
{
    if (!p)
        return cxm_svc_errf(err, CXM_EINVAL, "policy", "required");
    double s = p->negative_text_score;
    if (!(s >= -1 && s <= 0))
        return cxm_svc_errf(err, CXM_EINVAL, "policy.negative_text_score",
                            "must be -1 to 0 (0 = the default -0.6), got %g", s);
    if (p->n_assignments > MAX_ASSIGNMENTS)
        return cxm_svc_errf(err, CXM_EINVAL, "policy.assignments", "at most %d rules, got %zu",
                            MAX_ASSIGNMENTS, p->n_assignments);
    for (size_t i = 0; i < p->n_assignments; i++) {
        cxm_svc_path base;
        int rc =
            check_assignment(p->assignments[i], cxm_svc_index(&base, "policy.assignments", i), err);
        if (rc != 0)
            return rc;
    }
    if (s == 0)
        p->negative_text_score = DEFAULT_NEGATIVE_SCORE;
    return 0;
}

int ffu_check_update(const Cxm__V1__UpdateFollowUpRequest *req, char *err)
{
    int rc;
    if ((rc = cxm_svc_check_text(req->follow_up_id, 1, MAX_ID, "follow_up_id", err)) != 0 ||
        (rc = check_enum(&cxm__v1__follow_up_state__descriptor, req->state, "state", err)) != 0 ||
        (rc = cxm_svc_check_text(req->owner, 0, MAX_OWNER, "owner", err)) != 0 ||
        (rc = cxm_svc_check_text(req->note, 0, MAX_NOTE, "note", err)) != 0 ||
        (rc = cxm_svc_check_text(req->author, 0, MAX_OWNER, "author", err)) != 0)
        return rc;
    if (req->unassign && req->owner && *req->owner)
        return cxm_svc_errf(err, CXM_EINVAL, "unassign",
                            "cannot be set together with owner: set one of them");
    if (req->note && *req->note && !(req->author && *req->author))
        return cxm_svc_errf(err, CXM_EINVAL, "author", "required with a note");
    return 0;
}

/* ---- ListFollowUps ---- */

/* The request's filters, as tested against each index entry. */
typedef struct ffilter {
    bool state[NSTATES], any_state; /* any_state: no state filter */
    const char *owner;              /* NULL: any */
    bool unassigned;
    const char *customer, *touchpoint, *survey; /* NULL: any */
    int64_t created_from, created_to;           /* 0: unbounded */
    bool overdue;
    int64_t now;
} ffilter;

static const char *opt(const char *s)
{
    return s && *s ? s : NULL;
}

static int check_list(const Cxm__V1__ListFollowUpsRequest *req, int64_t now, ffilter *f, int *limit,
                      char *err)
{
    int rc;
    *f = (ffilter){.any_state = true, .now = now, .overdue = req->overdue_only};
    for (size_t i = 0; i < req->n_states; i++) {
        cxm_svc_path p;
        const char *field = cxm_svc_index(&p, "states", i);
        if ((rc = check_enum(&cxm__v1__follow_up_state__descriptor, req->states[i], field, err)))
            return rc;
        if (req->states[i] != CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_UNSPECIFIED) {
            f->state[req->states[i]] = true;
            f->any_state = false;
        }
    }
    if ((rc = cxm_svc_check_text(req->owner, 0, MAX_OWNER, "owner", err)) != 0 ||
        (rc = cxm_svc_check_text(req->customer_id, 0, MAX_FILTER_TEXT, "customer_id", err)) ||
        (rc = cxm_svc_check_text(req->touchpoint, 0, MAX_FILTER_TEXT, "touchpoint", err)) ||
        (rc = cxm_svc_check_text(req->survey_id, 0, MAX_FILTER_TEXT, "survey_id", err)) ||
        (rc = cxm_svc_page_size(req->page_size, 50, 1000, limit, err)) != 0)
        return rc;
    if (req->unassigned && opt(req->owner))
        return cxm_svc_errf(err, CXM_EINVAL, "unassigned",
                            "cannot be set together with owner: set one of them");
    if (req->created) {
        f->created_from = req->created->from_unix_ms;
        f->created_to = req->created->to_unix_ms;
        if (f->created_from && f->created_to && f->created_from >= f->created_to)
            return cxm_svc_errf(err, CXM_EINVAL, "created",
                                "from_unix_ms must be before to_unix_ms");
    }
    f->owner = opt(req->owner);
    f->unassigned = req->unassigned;
    f->customer = opt(req->customer_id);
    f->touchpoint = opt(req->touchpoint);
    f->survey = opt(req->survey_id);
    return 0;
}

static bool same(const char *want, const fsum *s, int i)
{
    return !want || (strlen(want) == s->len[i] && memcmp(want, s->s[i], s->len[i]) == 0);
}

static bool keep(const ffilter *f, const fsum *s, int64_t due)
{
    if ((!f->any_state && (s->state >= NSTATES || !f->state[s->state])) ||
        !same(f->owner, s, SUM_OWNER) || (f->unassigned && s->len[SUM_OWNER]) ||
        !same(f->customer, s, SUM_CUSTOMER) || !same(f->touchpoint, s, SUM_TOUCHPOINT) ||
        !same(f->survey, s, SUM_SURVEY))
        return false;
    if ((f->created_from && s->created < f->created_from) ||
        (f->created_to && s->created >= f->created_to))
        return false;
    return !f->overdue || (due < f->now && is_open(s->state));
}

/* One prefix of an index, walked in due_at | id order. */
typedef struct frange {
    cxm_iter it;
    fkey from, to;
    size_t plen; /* bytes of prefix before the due_at | id suffix */
    bool live;
} frange;

/* The index that narrows the listing most, and its prefixes. */
typedef struct fplan {
    MDB_dbi dbi;
    frange *r;
    size_t n;
} fplan;

static int plan_add(fplan *pl, int ix, int state, const char *s, const ffilter *f,
                    const fkey *after)
{
    frange *r = &pl->r[pl->n++];
    cxm_key k;
    cxm_key_init(&k, r->from.b, sizeof r->from.b);
    key_prefix(&k, ix, state, s);
    int rc = cxm_key_finish(&k, &r->plen);
    if (after->n) /* start at the last position, which range_next skips */
        cxm_key_raw(&k, after->b, after->n);
    if (rc == 0)
        rc = cxm_key_finish(&k, &r->from.n);
    cxm_key_init(&k, r->to.b, sizeof r->to.b);
    cxm_key_raw(&k, r->from.b, r->plen);
    if (f->overdue) /* due_at < now: stop before the first key at now */
        cxm_key_i64(&k, f->now);
    if (rc == 0)
        rc = cxm_key_finish(&k, &r->to.n);
    if (rc == 0 && !f->overdue) /* the end of the prefix; none for the whole index */
        cxm_key_successor(r->to.b, r->to.n, r->to.b, &r->to.n);
    return rc;
}

static int plan_make(const ffilter *f, ffu *fu, cxm_arena *a, const fkey *after, fplan *pl)
{
    if (!(pl->r = cxm_arena_calloc(a, NSTATES, sizeof *pl->r)))
        return CXM_ENOMEM;
    if (f->customer) {
        pl->dbi = fu->cust;
        return plan_add(pl, IX_CUST, 0, f->customer, f, after);
    }
    if (f->owner || f->unassigned) {
        pl->dbi = fu->owner;
        return plan_add(pl, IX_OWNER, 0, f->owner ? f->owner : "", f, after);
    }
    if (!f->any_state || f->overdue) {
        pl->dbi = fu->state;
        for (int s = 1; s < NSTATES; s++) {
            bool want = (f->any_state || f->state[s]) && (!f->overdue || is_open(s));
            int rc = want ? plan_add(pl, IX_STATE, s, NULL, f, after) : 0;
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    pl->dbi = fu->due;
    return plan_add(pl, IX_DUE, 0, NULL, f, after);
}

static int suffix_cmp(const void *a, size_t an, const void *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

/* Advance r past entries at or before `after`. */
static int range_next(frange *r, const fkey *after)
{
    int rc;
    while ((rc = cxm_iter_next(&r->it)) == 0) {
        const uint8_t *k = (const uint8_t *)r->it.key + r->plen;
        if (!after->n || suffix_cmp(k, r->it.klen - r->plen, after->b, after->n) > 0)
            return 0;
    }
    r->live = false;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static int plan_open(cxm_txn *t, fplan *pl, const fkey *after)
{
    for (size_t i = 0; i < pl->n; i++) {
        frange *r = &pl->r[i];
        int rc = cxm_iter_range(t, pl->dbi, r->from.b, r->from.n, r->to.b, r->to.n, false, &r->it);
        if (rc != 0)
            return rc;
        r->live = true;
        if ((rc = range_next(r, after)) != 0)
            return rc;
    }
    return 0;
}

static void plan_close(fplan *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        cxm_iter_close(&pl->r[i].it);
}

/* The live range whose head comes first, or NULL when all are done. */
static frange *plan_head(fplan *pl)
{
    frange *best = NULL;
    for (size_t i = 0; i < pl->n; i++) {
        frange *r = &pl->r[i];
        if (r->live &&
            (!best || suffix_cmp((const uint8_t *)r->it.key + r->plen, r->it.klen - r->plen,
                                 (const uint8_t *)best->it.key + best->plen,
                                 best->it.klen - best->plen) < 0))
            best = r;
    }
    return best;
}

typedef struct fpage {
    cxm_call *call;
    cxm_arena *a;
    ffu *f;
    const ffilter *filter;
    int limit;
    size_t budget, used;
    Cxm__V1__ListFollowUpsResponse *resp;
    fkey last; /* suffix of the last follow-up of the page */
    char *err;
} fpage;

/* Add the follow-up of index entry r to the page; *full when it is full. */
static int page_add(cxm_txn *t, fpage *pg, const frange *r, bool *full)
{
    cxm_keyreader kr;
    const uint8_t *sfx = (const uint8_t *)r->it.key + r->plen;
    size_t slen = r->it.klen - r->plen;
    int64_t due;
    char *id;
    cxm_keyreader_init(&kr, sfx, slen);
    cxm_keyread_i64(&kr, &due);
    int rc = cxm_keyread_bytes_arena(&kr, pg->a, &id, NULL);
    Cxm__V1__FollowUp *fu = NULL;
    if (rc != 0 || (rc = fu_get(t, pg->f, pg->a, id, &fu)) != 0)
        return rc == CXM_ENOTFOUND ? CXM_ECORRUPT : rc;
    size_t sz = cxm_svc_field_size(protobuf_c_message_get_packed_size(&fu->base));
    if (pg->used + sz > pg->budget) {
        if (pg->resp->n_follow_ups == 0)
            return cxm_svc_too_big(pg->call, sz, "one follow-up", pg->err);
        *full = true;
        return 0;
    }
    pg->used += sz;
    pg->resp->follow_ups[pg->resp->n_follow_ups++] = fu;
    memcpy(pg->last.b, sfx, slen);
    pg->last.n = slen;
    *full = pg->resp->n_follow_ups == (size_t)pg->limit;
    return 0;
}

/* The page token's position "<due_at>.<id>" as an index key suffix. */
static int after_parse(const char *s, fkey *out, char *err)
{
    out->n = 0;
    if (!*s)
        return 0;
    char *end;
    long long due = strtoll(s, &end, 10);
    const char *id = end + 1;
    bool ok = end != s && *end == '.' && strlen(id) == ID_LEN &&
              strncmp(id, ID_PREFIX, strlen(ID_PREFIX)) == 0 &&
              strspn(id + strlen(ID_PREFIX), "0123456789abcdef") == ID_LEN - strlen(ID_PREFIX);
    if (!ok)
        return cxm_svc_errf(err, CXM_EINVAL, "page_token", "malformed: start again without it");
    cxm_key k;
    cxm_key_init(&k, out->b, sizeof out->b);
    key_suffix(&k, (int64_t)due, id);
    return cxm_key_finish(&k, &out->n);
}

static char *after_make(cxm_arena *a, uint64_t fh, const fkey *last)
{
    cxm_keyreader r;
    int64_t due;
    char id[MAX_ID + 1], pos[MAX_ID + 32];
    cxm_keyreader_init(&r, last->b, last->n);
    cxm_keyread_i64(&r, &due);
    if (cxm_keyread_str(&r, id, sizeof id, NULL) != 0)
        return NULL;
    int n = snprintf(pos, sizeof pos, "%" PRId64 ".%s", due, id);
    return cxm_svc_token_make(a, fh, pos, (size_t)n);
}

static uint64_t list_filters(cxm_arena *a, const Cxm__V1__ListFollowUpsRequest *req)
{
    Cxm__V1__ListFollowUpsRequest f = *req;
    f.page_token = "";
    f.page_size = 0;
    const ProtobufCMessage *m[] = {&f.base};
    return cxm_svc_hash_messages(a, m, 1);
}

/* Merge the plan's ranges, keeping what the filters keep, up to a page;
 * a token when one more would follow. */
static int list_page(cxm_txn *t, fpage *pg, fplan *pl, uint64_t fh)
{
    bool full = false;
    frange *r;
    int rc = 0;
    while (rc == 0 && (r = plan_head(pl)) != NULL) {
        fsum s;
        int64_t due;
        cxm_keyreader kr;
        cxm_keyreader_init(&kr, (const uint8_t *)r->it.key + r->plen, r->it.klen - r->plen);
        if ((rc = cxm_keyread_i64(&kr, &due)) != 0 || (rc = sum_read(r->it.val, r->it.vlen, &s)))
            break;
        if (keep(pg->filter, &s, due)) {
            if (full) {
                if (!(pg->resp->next_page_token = after_make(pg->a, fh, &pg->last)))
                    rc = CXM_ENOMEM;
                break;
            }
            if ((rc = page_add(t, pg, r, &full)) != 0)
                break;
        }
        rc = range_next(r, &(fkey){0});
    }
    return rc;
}

static int list_answer(cxm_txn *t, fpage *pg, const Cxm__V1__ListFollowUpsRequest *req)
{
    uint64_t fh = list_filters(pg->a, req);
    const char *pos;
    fkey after;
    fplan pl = {0};
    int rc = cxm_svc_token_parse(req->page_token, fh, &pos, pg->err);
    if (rc == 0)
        rc = after_parse(pos, &after, pg->err);
    if (rc == 0 && !(pg->resp->follow_ups =
                         cxm_arena_alloc(pg->a, (size_t)pg->limit * sizeof *pg->resp->follow_ups)))
        rc = CXM_ENOMEM;
    if (rc == 0 && (rc = plan_make(pg->filter, pg->f, pg->a, &after, &pl)) == 0 &&
        (rc = plan_open(t, &pl, &after)) == 0)
        rc = list_page(t, pg, &pl, fh);
    plan_close(&pl);
    return rc;
}

int ffu_check_list(const Cxm__V1__ListFollowUpsRequest *req, int64_t now_ms, char *err)
{
    ffilter filter;
    int limit;
    return check_list(req, now_ms, &filter, &limit, err);
}

void ffu_on_list(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__ListFollowUpsRequest *req = (const Cxm__V1__ListFollowUpsRequest *)msg;
    ffu *f = ((fb_ctx *)cxm_call_service_ctx(call))->fu;
    char err[CXM_SVC_ERR_MAX] = "";
    ffilter filter;
    int limit = 0;
    int rc = check_list(req, cxm_svc_now_ms(), &filter, &limit, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    Cxm__V1__ListFollowUpsResponse resp = CXM__V1__LIST_FOLLOW_UPS_RESPONSE__INIT;
    fpage pg = {call,     cxm_call_arena(call),
                f,        &filter,
                limit,    cxm_svc_reply_budget(call, 128),
                0,        &resp,
                {.n = 0}, err};
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(f->store, &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    rc = list_answer(t, &pg, req);
    if (rc == 0)
        cxm_call_reply(call, &resp.base); /* packed before the snapshot ends */
    cxm_store_read_end(t);
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

/* ---- UpdateFollowUp ---- */

#define FFU_MAX_NOTES 200 /* x 4 KiB each: under 1 MiB per follow-up */

static int add_note(cxm_arena *a, Cxm__V1__FollowUp *fu, const char *text, const char *author,
                    int64_t now)
{
    Cxm__V1__FollowUpNote **notes = cxm_arena_alloc(a, (fu->n_notes + 1) * sizeof *notes);
    Cxm__V1__FollowUpNote *n = cxm_arena_alloc(a, sizeof *n);
    if (!notes || !n)
        return CXM_ENOMEM;
    cxm__v1__follow_up_note__init(n);
    n->text = (char *)text;
    n->author = (char *)author;
    n->created_at_unix_ms = now;
    if (fu->n_notes)
        memcpy(notes, fu->notes, fu->n_notes * sizeof *notes);
    notes[fu->n_notes++] = n;
    fu->notes = notes;
    return 0;
}

/* Apply the request to fu; *changed when anything differs. */
static int apply_update(cxm_arena *a, Cxm__V1__FollowUp *fu,
                        const Cxm__V1__UpdateFollowUpRequest *req, int64_t now, bool *changed)
{
    *changed = false;
    if (req->state && req->state != fu->state) {
        if (!is_open(req->state) && is_open(fu->state))
            fu->closed_at_unix_ms = now;
        else if (is_open(req->state))
            fu->closed_at_unix_ms = 0;
        fu->state = req->state;
        *changed = true;
    }
    const char *owner = req->unassign ? "" : opt(req->owner);
    if (owner && strcmp(owner, nz(fu->owner)) != 0) {
        fu->owner = (char *)owner;
        *changed = true;
    }
    if (req->note && *req->note) {
        int rc = add_note(a, fu, req->note, req->author, now);
        if (rc != 0)
            return rc;
        *changed = true;
    }
    return 0;
}

static int update_job(cxm_txn *t, cxm_svc_job *j)
{
    ffu *f = ((fb_ctx *)j->ctx)->fu;
    const Cxm__V1__UpdateFollowUpRequest *req = j->req;
    Cxm__V1__FollowUp *fu = NULL;
    int rc = fu_get(t, f, j->a, req->follow_up_id, &fu);
    if (rc == CXM_ENOTFOUND)
        return cxm_svc_errf(j->err, rc, "follow_up_id", "no follow-up \"%s\"", req->follow_up_id);
    if (rc != 0)
        return rc;
    if (req->expected_version && req->expected_version != fu->version)
        return cxm_svc_errf(j->err, CXM_ESTALE, "expected_version",
                            "the follow-up is at version %" PRIu64 ", not %" PRIu64
                            ": read it again (ListFollowUps) and retry",
                            fu->version, req->expected_version);
    Cxm__V1__FollowUp old = *fu;
    /* Capped so a follow-up always fits in a reply and can still be closed. */
    if (req->note && *req->note && fu->n_notes >= FFU_MAX_NOTES)
        return cxm_svc_errf(j->err, CXM_ESTALE, "note",
                            "the follow-up already has %d notes, the most it keeps; "
                            "change its state or owner without a note",
                            FFU_MAX_NOTES);
    bool changed;
    if ((rc = apply_update(j->a, fu, req, j->now, &changed)) != 0)
        return rc;
    if (changed) {
        fu->version++;
        fu->updated_at_unix_ms = j->now;
        if ((rc = fu_save(t, f, j->a, &old, fu)) != 0 || (rc = emit_changed(t, f, fu, j->now)))
            return rc;
    }
    Cxm__V1__UpdateFollowUpResponse *resp =
        cxm_svc_response(j, &cxm__v1__update_follow_up_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    resp->follow_up = fu;
    return 0;
}

void ffu_on_update(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__UpdateFollowUpRequest *req = (const Cxm__V1__UpdateFollowUpRequest *)msg;
    ffu *f = ((fb_ctx *)cxm_call_service_ctx(call))->fu;
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = ffu_check_update(req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, f->store, req, update_job);
}

/* ---- Get/SetFollowUpPolicy ---- */

void ffu_on_get_policy(cxm_call *call, const ProtobufCMessage *msg)
{
    (void)msg;
    ffu *f = ((fb_ctx *)cxm_call_service_ctx(call))->fu;
    cxm_txn *t;
    int rc = cxm_store_read_begin(f->store, &t);
    if (rc != 0)
        return cxm_svc_finish(call, rc, "");
    Cxm__V1__GetFollowUpPolicyResponse resp = CXM__V1__GET_FOLLOW_UP_POLICY_RESPONSE__INIT;
    rc = policy_get(t, f, cxm_call_arena(call), &resp.policy);
    if (rc == 0)
        cxm_call_reply(call, &resp.base);
    cxm_store_read_end(t);
    if (rc != 0)
        cxm_svc_finish(call, rc, "");
}

/* SetFollowUpPolicy's write: its own job rather than cxm_svc_submit, because
 * the in-memory threshold (ffu_strongly_negative) may change only once the
 * write committed. */
typedef struct set_job {
    cxm_write_job wj;
    cxm_call *call;
    ffu *f;
    cxm_arena *a;
    Cxm__V1__FollowUpPolicy *policy;
} set_job;

static int set_policy_txn(cxm_txn *t, void *user)
{
    set_job *s = user;
    return policy_put(t, s->f, s->a, s->policy);
}

static void set_policy_done(void *user, int rc)
{
    set_job *s = user;
    if (rc != 0)
        return cxm_svc_finish(s->call, rc, "");
    policy_cache(s->f, s->policy);
    Cxm__V1__SetFollowUpPolicyResponse resp = CXM__V1__SET_FOLLOW_UP_POLICY_RESPONSE__INIT;
    resp.policy = s->policy;
    cxm_call_reply(s->call, &resp.base);
}

void ffu_on_set_policy(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__SetFollowUpPolicyRequest *req = (Cxm__V1__SetFollowUpPolicyRequest *)msg;
    ffu *f = ((fb_ctx *)cxm_call_service_ctx(call))->fu;
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = ffu_check_policy(req->policy, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    set_job *s = cxm_arena_calloc(a, 1, sizeof *s);
    if (!s)
        return cxm_svc_finish(call, CXM_ENOMEM, "");
    *s = (set_job){.call = call, .f = f, .a = a, .policy = req->policy};
    s->policy->updated_at_unix_ms = cxm_svc_now_ms();
    s->wj = (cxm_write_job){.fn = set_policy_txn, .done = set_policy_done, .user = s};
    cxm_store_submit(f->store, &s->wj);
}
