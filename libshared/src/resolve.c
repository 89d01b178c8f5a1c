/*
 * resolve.c - identities to customer ids through the profile service (see
 * resolve.h).
 *
 * The cache is a chained hash table over a bounded array of entries, with
 * clock eviction: each hit sets an entry's reference bit, and when the
 * array is full the hand sweeps it, clearing bits, until it finds an entry
 * not used since its last pass. One mutex guards it (resolve takes it once
 * per call, not per item, so bus threads calling invalidate wait little);
 * a generation number, bumped by invalidate, keeps an RPC that was in
 * flight during an invalidation from caching its now doubtful answers.
 */
#include "cxm/resolve.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/host.h"
#include "cxm/ident.h"
#include "cxm/v1/profile.pb-c.h"

#define DEFAULT_ENTRIES 1000000
#define DEFAULT_TIMEOUT_MS 5000
#define BATCH_MAX 1000 /* items per ResolveIdentities (the service's limit) */
#define KEY_MAX (1 + CXM_IDENT_CUSTOM_TYPE_MAX + 1 + CXM_IDENT_MAX)
#define METHOD "/cxm.v1.ProfileService/ResolveIdentities"

typedef struct entry {
    uint64_t h;
    char *key; /* malloc'ed: klen key bytes, then the customer id and a NUL */
    uint32_t klen;
    uint32_t next; /* the bucket chain: index + 1, 0 = end */
    uint8_t ref;   /* clock bit: used since the hand last passed */
} entry;

struct cxm_resolver {
    char *addr;
    const char *(*addr_fn)(void *ctx);
    void *addr_ctx;
    char *source;
    int64_t timeout_ms;
    cxm_channel *ch; /* NULL until the first call, and after a failure */

    pthread_mutex_t mu; /* everything below */
    entry *e;
    size_t n, alloc, max, hand;
    uint32_t *buckets;
    size_t nbuckets; /* a power of two */
    uint64_t gen;
    cxm_resolver_stats stats;
};

static _Thread_local char last_err[256];

const char *cxm_resolver_last_error(void)
{
    return last_err;
}

__attribute__((format(printf, 2, 3))) static int fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_err, sizeof last_err, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- the cache ---- */

/* type, custom type and normalised value: the identity as profile stores it. */
static size_t key_of(char *buf, Cxm__V1__IdentityType type, const char *custom, const char *value)
{
    size_t cl = custom ? strnlen(custom, CXM_IDENT_CUSTOM_TYPE_MAX) : 0;
    size_t vl = value ? strnlen(value, CXM_IDENT_MAX) : 0;
    buf[0] = (char)type;
    memcpy(buf + 1, custom ? custom : "", cl);
    buf[1 + cl] = '\0';
    memcpy(buf + 2 + cl, value ? value : "", vl);
    return 2 + cl + vl;
}

static size_t key_of_identity(char *buf, const Cxm__V1__Identity *id)
{
    return key_of(buf, id->type, id->custom_type, id->value);
}

/* A customer id asked for is cached as its CUSTOMER_ID identity. */
static size_t key_of_ref(char *buf, const Cxm__V1__CustomerRef *ref)
{
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return key_of(buf, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID, "", ref->customer_id);
    return key_of_identity(buf, ref->identity);
}

static entry *find(cxm_resolver *r, const char *key, size_t klen, uint64_t h)
{
    for (uint32_t i = r->buckets[h & (r->nbuckets - 1)]; i; i = r->e[i - 1].next) {
        entry *e = &r->e[i - 1];
        if (e->h == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    }
    return NULL;
}

/* The cached customer id of key (marking it used), or NULL. r->mu held. */
static const char *lookup(cxm_resolver *r, const char *key, size_t klen)
{
    entry *e = find(r, key, klen, cxm_hash(CXM_HASH_INIT, key, klen));
    if (!e)
        return NULL;
    e->ref = 1;
    return e->key + e->klen;
}

static void unlink_entry(cxm_resolver *r, size_t idx)
{
    uint32_t *p = &r->buckets[r->e[idx].h & (r->nbuckets - 1)];
    while (*p != idx + 1)
        p = &r->e[*p - 1].next;
    *p = r->e[idx].next;
    free(r->e[idx].key);
    r->e[idx].key = NULL;
}

/* A free slot: a new one while below the bound, else the clock's victim. */
static int take_slot(cxm_resolver *r, size_t *idx)
{
    if (r->n < r->max) {
        if (r->n == r->alloc) {
            size_t na = r->alloc ? r->alloc * 2 : 1024;
            na = na > r->max ? r->max : na;
            entry *e = realloc(r->e, na * sizeof *e);
            if (!e)
                return CXM_ENOMEM;
            r->e = e;
            r->alloc = na;
        }
        *idx = r->n++;
        return 0;
    }
    for (;; r->hand = (r->hand + 1) % r->n) {
        entry *e = &r->e[r->hand];
        if (e->ref) {
            e->ref = 0;
            continue;
        }
        *idx = r->hand;
        r->hand = (r->hand + 1) % r->n;
        unlink_entry(r, *idx);
        return 0;
    }
}

/* Remember key -> customer_id (replacing an older answer). r->mu held. */
static int remember(cxm_resolver *r, const char *key, size_t klen, const char *customer_id)
{
    uint64_t h = cxm_hash(CXM_HASH_INIT, key, klen);
    size_t cl = strlen(customer_id);
    char *kv = malloc(klen + cl + 1);
    if (!kv)
        return CXM_ENOMEM;
    memcpy(kv, key, klen);
    memcpy(kv + klen, customer_id, cl + 1);
    entry *old = find(r, key, klen, h);
    if (old) {
        free(old->key);
        old->key = kv;
        return 0;
    }
    size_t idx;
    if (take_slot(r, &idx) != 0) {
        free(kv);
        return CXM_ENOMEM;
    }
    uint32_t *b = &r->buckets[h & (r->nbuckets - 1)];
    r->e[idx] = (entry){h, kv, (uint32_t)klen, *b, 0};
    *b = (uint32_t)idx + 1;
    return 0;
}

static void forget_all(cxm_resolver *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->e[i].key);
    r->n = 0;
    r->hand = 0;
    memset(r->buckets, 0, r->nbuckets * sizeof *r->buckets);
}

void cxm_resolver_invalidate(cxm_resolver *r)
{
    pthread_mutex_lock(&r->mu);
    forget_all(r);
    r->gen++;
    pthread_mutex_unlock(&r->mu);
}

void cxm_resolver_stats_get(cxm_resolver *r, cxm_resolver_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    pthread_mutex_unlock(&r->mu);
}

/* ---- open / close ---- */

int cxm_resolver_open(const cxm_resolver_opts *opts, cxm_resolver **out)
{
    if (!opts || (!opts->addr_fn && (!opts->profile_addr || !*opts->profile_addr)))
        return fail(CXM_EINVAL, "the profile service's address is required");
    cxm_resolver *r = calloc(1, sizeof *r);
    if (!r)
        return CXM_ENOMEM;
    pthread_mutex_init(&r->mu, NULL); /* first: close destroys it */
    r->max = opts->cache_entries ? opts->cache_entries : DEFAULT_ENTRIES;
    r->max = r->max > UINT32_MAX - 1 ? UINT32_MAX - 1 : r->max;
    for (r->nbuckets = 16; r->nbuckets < r->max; r->nbuckets *= 2)
        ;
    r->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    r->addr_fn = opts->addr_fn;
    r->addr_ctx = opts->addr_ctx;
    r->addr = opts->profile_addr ? strdup(opts->profile_addr) : NULL;
    r->source = strdup(opts->source ? opts->source : "resolve");
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if ((opts->profile_addr && !r->addr) || !r->source || !r->buckets) {
        cxm_resolver_close(r);
        return CXM_ENOMEM;
    }
    *out = r;
    return 0;
}

void cxm_resolver_close(cxm_resolver *r)
{
    if (!r)
        return;
    if (r->ch)
        cxm_channel_close(r->ch);
    if (r->buckets)
        forget_all(r);
    pthread_mutex_destroy(&r->mu);
    free(r->e);
    free(r->buckets);
    free(r->addr);
    free(r->source);
    free(r);
}

/* ---- the RPC ---- */

/* The channel, connecting first (lazily, and again after a failure). */
static int channel(cxm_resolver *r, cxm_channel **ch)
{
    if (!r->ch) {
        const char *addr = r->addr_fn ? r->addr_fn(r->addr_ctx) : r->addr;
        if (!addr || !*addr)
            return fail(CXM_EUNAVAIL, "the profile service's address is not known yet");
        /* The hosting process's --client-tls-* flags and, with auth on, the
         * "internal" token profile wants from us. */
        int rc = cxm_channel_open(addr, cxm_host_client_opts(), &r->ch);
        if (rc != 0)
            return fail(CXM_EUNAVAIL, "cannot open a channel to the profile service at %s: %s",
                        addr,
                        *cxm_channel_last_error() ? cxm_channel_last_error() : cxm_strerror(rc));
    }
    *ch = r->ch;
    return 0;
}

/* Every resolved result names its customer: an empty id would file the
 * caller's events under no one (a broken profile service, not an item's
 * fault: the caller retries the batch). */
static bool answers_named(const Cxm__V1__ResolveIdentitiesResponse *resp)
{
    for (size_t k = 0; k < resp->n_results; k++)
        if (resp->results[k]->code == 0 &&
            (!resp->results[k]->customer_id || !*resp->results[k]->customer_id))
            return false;
    return true;
}

/* One ResolveIdentities for the items at idx[0..n): the results in *resp. */
static int call_batch(cxm_resolver *r, cxm_resolve_item *items, const size_t *idx, size_t n,
                      cxm_arena *a, Cxm__V1__ResolveIdentitiesResponse **resp)
{
    Cxm__V1__ResolveIdentitiesItem *it = cxm_arena_alloc(a, n * sizeof *it);
    Cxm__V1__ResolveIdentitiesItem **ptrs = cxm_arena_alloc(a, n * sizeof *ptrs);
    if (!it || !ptrs)
        return CXM_ENOMEM;
    for (size_t k = 0; k < n; k++) {
        const cxm_resolve_item *ri = &items[idx[k]];
        cxm__v1__resolve_identities_item__init(&it[k]);
        it[k].customer = (Cxm__V1__CustomerRef *)ri->customer;
        it[k].link_identities = (Cxm__V1__Identity **)ri->links;
        it[k].n_link_identities = ri->nlinks;
        it[k].create_if_missing = !ri->no_create;
        ptrs[k] = &it[k];
    }
    Cxm__V1__ResolveIdentitiesRequest req = CXM__V1__RESOLVE_IDENTITIES_REQUEST__INIT;
    req.items = ptrs;
    req.n_items = n;
    req.source = r->source;
    cxm_channel *ch = NULL;
    int rc = channel(r, &ch);
    if (rc != 0)
        return rc;
    cxm_client_result res;
    rc = cxm_client_unary_pb(ch, METHOD, &req.base,
                             &cxm__v1__resolve_identities_response__descriptor, a, r->timeout_ms,
                             (ProtobufCMessage **)resp, &res);
    grpc_status_code st = rc == 0 ? res.status : GRPC_STATUS_UNAVAILABLE;
    if (rc != 0)
        rc = fail(CXM_EUNAVAIL, "cannot call the profile service: %s", cxm_strerror(rc));
    else if (st != GRPC_STATUS_OK)
        rc = fail(CXM_EUNAVAIL, "the profile service failed ResolveIdentities: %s: %s",
                  cxm_status_name(st), res.details);
    else if ((*resp)->n_results != n)
        rc = fail(CXM_EUNAVAIL, "the profile service answered %zu items for %zu",
                  (*resp)->n_results, n);
    else if (!answers_named(*resp))
        rc = fail(CXM_EUNAVAIL, "the profile service resolved an item to no customer id");
    /* Unreachable or too slow: connect afresh next time (a restarted
     * service, or one whose address changed). */
    if ((st == GRPC_STATUS_UNAVAILABLE || st == GRPC_STATUS_DEADLINE_EXCEEDED) && r->ch) {
        cxm_channel_close(r->ch);
        r->ch = NULL;
    }
    cxm_client_result_dispose(&res);
    return rc;
}

/* ---- resolving ---- */

/* Item i answered from the cache: its customer and every link cached, all
 * naming one customer. r->mu held. */
static bool from_cache(cxm_resolver *r, cxm_resolve_item *it, cxm_arena *a, int *rc)
{
    char key[KEY_MAX];
    const char *id = lookup(r, key, key_of_ref(key, it->customer));
    for (size_t k = 0; id && k < it->nlinks; k++) {
        const char *l = lookup(r, key, key_of_identity(key, it->links[k]));
        if (!l || strcmp(l, id) != 0)
            id = NULL;
    }
    if (!id)
        return false;
    it->customer_id = cxm_arena_strndup(a, id, strlen(id));
    *rc = it->customer_id ? 0 : CXM_ENOMEM;
    return true;
}

/* Text of 1 to max bytes: what fits a cache key whole. */
static bool text_fits(const char *s, size_t max)
{
    return s && *s && strnlen(s, max + 1) <= max;
}

/* An identity whose key is exact: a longer value or custom type would be
 * cut to fit KEY_MAX, and two identities alike up to the cut would share
 * one cached customer. */
static bool identity_fits(const Cxm__V1__Identity *id)
{
    return id && text_fits(id->value, CXM_IDENT_MAX) &&
           (!id->custom_type ||
            strnlen(id->custom_type, CXM_IDENT_CUSTOM_TYPE_MAX + 1) <= CXM_IDENT_CUSTOM_TYPE_MAX);
}

static bool ref_fits(const Cxm__V1__CustomerRef *ref)
{
    if (!ref)
        return false;
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return text_fits(ref->customer_id, CXM_IDENT_MAX);
    return ref->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY && identity_fits(ref->identity);
}

/* An item the resolver refuses itself, as the contract says: one that is
 * not validated (cxm/ident.h) as the caller promised. */
static bool refused(cxm_resolve_item *it)
{
    bool links_fit = it->nlinks == 0 || it->links;
    for (size_t k = 0; links_fit && k < it->nlinks; k++)
        links_fit = identity_fits(it->links[k]);
    if (!ref_fits(it->customer))
        it->why = "customer: a customer_id or an identity (value of 1 to 256 bytes) is required";
    else if (!links_fit)
        it->why = "links: every link must be an identity with a value of 1 to 256 bytes";
    else if (it->no_create && it->nlinks)
        it->why = "links: linking writes, so it needs a resolve that may create (no_create is set)";
    else
        return false;
    it->rc = CXM_EINVAL;
    return true;
}

/* Whether link k is among the links res says were left out (in any order:
 * the contract does not promise one, and caching a link left out would
 * answer for the wrong customer). */
static bool unlinked(const Cxm__V1__ResolveIdentitiesResult *res, size_t k)
{
    for (size_t u = 0; u < res->n_unlinked; u++)
        if (res->unlinked[u] == k)
            return true;
    return false;
}

/* Item it's answer from res, cached when it is one. r->mu held. */
static int take_answer(cxm_resolver *r, cxm_resolve_item *it,
                       const Cxm__V1__ResolveIdentitiesResult *res, bool cache)
{
    if (res->code != 0) {
        it->rc = res->code == GRPC_STATUS_NOT_FOUND ? CXM_ENOTFOUND : CXM_EINVAL;
        it->why = res->message ? res->message : "";
        return 0;
    }
    it->customer_id = res->customer_id;
    if (!cache || !res->customer_id || !*res->customer_id)
        return 0;
    char key[KEY_MAX];
    int rc = remember(r, key, key_of_ref(key, it->customer), res->customer_id);
    for (size_t k = 0; rc == 0 && k < it->nlinks; k++)
        if (!unlinked(res, k)) /* an unlinked one belongs elsewhere */
            rc = remember(r, key, key_of_identity(key, it->links[k]), res->customer_id);
    return rc;
}

/* Send the misses idx[0..n) in batches of BATCH_MAX and take the answers. */
static int resolve_misses(cxm_resolver *r, cxm_resolve_item *items, const size_t *idx, size_t n,
                          cxm_arena *a)
{
    for (size_t off = 0; off < n; off += BATCH_MAX) {
        size_t m = n - off < BATCH_MAX ? n - off : BATCH_MAX;
        pthread_mutex_lock(&r->mu);
        uint64_t gen = r->gen;
        r->stats.rpcs++;
        pthread_mutex_unlock(&r->mu);
        Cxm__V1__ResolveIdentitiesResponse *resp = NULL;
        int rc = call_batch(r, items, idx + off, m, a, &resp);
        pthread_mutex_lock(&r->mu);
        if (rc != 0)
            r->stats.failures++;
        for (size_t k = 0; rc == 0 && k < m; k++)
            rc = take_answer(r, &items[idx[off + k]], resp->results[k], gen == r->gen);
        pthread_mutex_unlock(&r->mu);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int cxm_resolver_resolve(cxm_resolver *r, cxm_resolve_item *items, size_t n, cxm_arena *a)
{
    last_err[0] = '\0';
    size_t *idx = n ? cxm_arena_alloc(a, n * sizeof *idx) : NULL, nmiss = 0, hits = 0;
    if (n && !idx)
        return CXM_ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n && rc == 0; i++) {
        items[i].customer_id = NULL;
        items[i].why = NULL;
        items[i].rc = 0;
        if (refused(&items[i]))
            continue;
        if (from_cache(r, &items[i], a, &rc))
            hits++;
        else
            idx[nmiss++] = i;
    }
    r->stats.hits += hits;
    r->stats.misses += nmiss;
    pthread_mutex_unlock(&r->mu);
    return rc ? rc : resolve_misses(r, items, idx, nmiss, a);
}
