/*
 * recoserve.c - serving (recodb_recommend), the per-customer candidate
 * cache, its refresh and the stale list, and popularity before any model.
 *
 * The cache: reco.cand holds, per customer, the best RECODB_CAND_MAX items
 * of the serving model for the whole history (nothing excluded but what
 * the customer consumed, no filter), with scores and propensities:
 *   u64 version | u32 n | u32 0 | n x (u32 item index in the version's
 *   item table, the top bit set for popularity fill; f32 score;
 *   f32 propensity)
 * 12 bytes an entry whatever the ids' length (3 KiB a customer). A request
 * whose row is for the serving version walks it in order, skipping
 * excluded ids and what the filter rejects, until it has k: a read
 * transaction, three gets (version, row, item table, all in place) and the
 * filter calls. Every change to the
 * history deletes the row (recodb.c), and a model switch makes every row's
 * version old, so a row of the serving version is current. The order is
 * exactly the scoring's, whose top k is the prefix of its top K (reco.c's
 * heap orders by score, then item index).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "personalisation/reco/recodb_impl.h"

#define ENTRY_SIZE 12
#define ROW_HEAD 16
#define POPULAR_BIT 0x80000000u
/* The popularity before any model is retaken when the log grew, at most
 * once a second unless the log is small enough to scan for free. */
#define POP_REFRESH_SECONDS 1.0
#define POP_SMALL_LOG 10000

/* ---- readers ---- */

static int grow_u32(uint32_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    uint32_t *g = realloc(*p, c * sizeof *g);
    if (!g)
        return CXM_ENOMEM;
    *p = g;
    *cap = c;
    return 0;
}

static int grow_recs(recodb_reader *r, size_t need)
{
    if (need <= r->recs_cap)
        return 0;
    size_t c = r->recs_cap;
    if (grow_u32(&r->recs, &c, need) != 0)
        return CXM_ENOMEM;
    float *s = realloc(r->scores, c * sizeof *s);
    if (!s)
        return CXM_ENOMEM;
    r->scores = s;
    r->recs_cap = c;
    return 0;
}

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
    if (!r->hist || !r->w || !r->seen || !r->seen_len || grow_recs(r, RECODB_CAND_MAX) ||
        reco_scratch_create(NULL, &r->scratch)) {
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
    free(r->older);
    free(r->recs);
    free(r->scores);
    free(r);
}

/* ---- history and scoring ---- */

/* One event of the backward walk, newest first. */
static int history_event(recodb_reader *r, const recodb_served *s, const cxm_iter *it,
                         int64_t *newest, double half, size_t *nseen, size_t *nhist)
{
    cxm_keyreader kr;
    int64_t ts = 0;
    cxm_keyreader_init(&kr, it->key, it->klen);
    cxm_keyread_skip_bytes(&kr);
    cxm_keyread_i64(&kr, &ts);
    if (it->vlen <= sizeof(float))
        return CXM_ECORRUPT;
    float weight;
    memcpy(&weight, it->val, sizeof weight);
    const char *id = (const char *)it->val + sizeof weight;
    size_t idlen = it->vlen - sizeof weight;
    uint32_t i = recodb__items_find(&s->items, id, idlen);
    if (*nseen >= r->cap) { /* older than the scored history: excluded */
        if (i != UINT32_MAX && grow_u32(&r->older, &r->older_cap, r->nolder + 1) == 0)
            r->older[r->nolder++] = i;
        return 0;
    }
    if (*nseen == 0)
        *newest = ts;
    r->seen[*nseen] = id;
    r->seen_len[(*nseen)++] = idlen;
    if (i == UINT32_MAX) /* newer than the model */
        return 0;
    double age = (double)(*newest - ts);
    r->hist[*nhist] = i;
    r->w[(*nhist)++] = half > 0 ? weight * (float)exp2(-age / half) : weight;
    return 0;
}

int recodb__history(const recodb *db, recodb_reader *r, cxm_txn *t, const recodb_served *s,
                    const char *customer, size_t *nseen, size_t *nhist)
{
    uint8_t prefix[CXM_KEY_MAX];
    size_t plen = recodb__customer_prefix(prefix, customer, strlen(customer));
    cxm_iter it;
    int64_t newest = 0;
    int rc = cxm_iter_prefix(t, db->events, prefix, plen, true, &it);
    *nseen = *nhist = 0;
    r->nolder = 0;
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0)
        rc = history_event(r, s, &it, &newest, db->opts.recency_half_life, nseen, nhist);
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

int recodb__score(recodb_reader *r, const recodb_served *s, size_t nhist, const uint32_t *excl,
                  size_t nexcl, size_t k, size_t *n)
{
    int rc = reco_scratch_fit(r->scratch, s->model);
    if (rc == 0)
        rc = grow_recs(r, k);
    if (rc != 0)
        return rc;
    *n = reco_recommend(s->model, r->scratch, r->hist, r->w, nhist, excl, nexcl, k, r->recs,
                        r->scores);
    return 0;
}

/* Whether the i-th scored item is popularity fill: neighbour models score
 * what the history predicts > 0 and the fill < 0; ALS scores every item
 * once the history reaches one. */
static bool is_popular(const recodb_served *s, float score, size_t nhist)
{
    return s->model->algo == RECO_ALS ? nhist == 0 : !(score > 0);
}

/* ---- the query ---- */

static int query_check(const recodb_query *q, char *err, size_t errlen)
{
    const char *why;
    if ((why = recodb__id_problem(q->customer)))
        return recodb__fail(err, errlen, CXM_EINVAL, "customer %s", why);
    if (q->k < 1 || q->k > RECODB_K_MAX)
        return recodb__fail(err, errlen, CXM_EINVAL, "k must be 1..%d", RECODB_K_MAX);
    if (q->nexclude > RECODB_EXCLUDE_MAX)
        return recodb__fail(err, errlen, CXM_EINVAL, "exclude has more than %d ids",
                            RECODB_EXCLUDE_MAX);
    if (q->nextra > RECODB_EXTRA_MAX)
        return recodb__fail(err, errlen, CXM_EINVAL, "extra has more than %d items",
                            RECODB_EXTRA_MAX);
    for (size_t i = 0; i < q->nexclude; i++)
        if ((why = recodb__id_problem(q->exclude[i])))
            return recodb__fail(err, errlen, CXM_EINVAL, "exclude[%zu] %s", i, why);
    for (size_t i = 0; i < q->nextra; i++) {
        if ((why = recodb__id_problem(q->extra[i].item)))
            return recodb__fail(err, errlen, CXM_EINVAL, "extra[%zu].item %s", i, why);
        if (isnan(q->extra[i].score))
            return recodb__fail(err, errlen, CXM_EINVAL, "extra[%zu].score is not a number", i);
    }
    return 0;
}

static bool listed(const char *const *ids, size_t n, const char *id, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(ids[i], id, len) == 0 && ids[i][len] == 0)
            return true;
    return false;
}

/* An answer being built: at most k, in arena memory. */
typedef struct answer {
    const recodb_query *q;
    cxm_arena *a;
    recodb_rec *recs;
    size_t n;
} answer;

/* Offer one candidate, best first; false when out of memory. */
static bool answer_offer(answer *ans, const char *id, size_t len, float score, float prop,
                         bool popular)
{
    const recodb_query *q = ans->q;
    if (!popular && q->predicted)
        *q->predicted = true;
    if (ans->n >= q->k || listed(q->exclude, q->nexclude, id, len) ||
        (q->filter && !q->filter(id, len, q->filter_user)))
        return true;
    char *copy = cxm_arena_strndup(ans->a, id, len);
    if (!copy)
        return false;
    ans->recs[ans->n++] = (recodb_rec){copy, score, prop, popular};
    return true;
}

static bool seen_by(const recodb_reader *r, size_t nseen, const char *id)
{
    size_t len = strlen(id);
    for (size_t i = 0; i < nseen; i++)
        if (r->seen_len[i] == len && memcmp(r->seen[i], id, len) == 0)
            return true;
    return false;
}

/* Merge the business-rules candidates into the answer (room for k +
 * nextra), keep the best k, best first. */
static void merge_extra(const recodb_reader *r, size_t nseen, answer *ans)
{
    const recodb_query *q = ans->q;
    size_t n = ans->n;
    for (size_t e = 0; e < q->nextra; e++) {
        const recodb_rec *x = &q->extra[e];
        if (seen_by(r, nseen, x->item) || listed(q->exclude, q->nexclude, x->item, strlen(x->item)))
            continue;
        size_t at = 0;
        while (at < n && strcmp(ans->recs[at].item, x->item) != 0)
            at++;
        if (at == n)
            ans->recs[n++] = *x;
        else if (x->score > ans->recs[at].score)
            ans->recs[at].score = x->score;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a few hundred at most */
        for (size_t j = i; j > 0 && ans->recs[j].score > ans->recs[j - 1].score; j--) {
            recodb_rec tmp = ans->recs[j];
            ans->recs[j] = ans->recs[j - 1];
            ans->recs[j - 1] = tmp;
        }
    ans->n = n < q->k ? n : q->k;
}

/* ---- the cached path ---- */

/* Walk a cache row into ans. Returns 1 when the answer is complete (k
 * found, or the row lists every candidate there is), 0 when the filter
 * left too few and scoring must go deeper, < 0 on a damaged row. */
static int serve_row(const uint8_t *row, size_t len, const recodb_items *items, answer *ans)
{
    uint32_t n;
    memcpy(&n, row + 8, sizeof n);
    if (len != ROW_HEAD + (size_t)n * ENTRY_SIZE)
        return CXM_ECORRUPT;
    for (const uint8_t *e = row + ROW_HEAD; n > 0 && ans->n < ans->q->k; n--, e += ENTRY_SIZE) {
        uint32_t item;
        float score, prop;
        size_t idlen;
        memcpy(&item, e, 4);
        memcpy(&score, e + 4, 4);
        memcpy(&prop, e + 8, 4);
        if ((item & ~POPULAR_BIT) >= items->n)
            return CXM_ECORRUPT;
        const char *id = recodb__item_id(items, item & ~POPULAR_BIT, &idlen);
        if (!answer_offer(ans, id, idlen, score, prop, item & POPULAR_BIT))
            return CXM_ENOMEM;
    }
    memcpy(&n, row + 8, sizeof n);
    return ans->n >= ans->q->k || n < RECODB_CAND_MAX;
}

/* 1 when the customer's row is for version and answered, 0 to score. */
static int serve_cached(const recodb *db, cxm_txn *t, uint64_t version, answer *ans)
{
    const void *v;
    size_t len;
    const char *c = ans->q->customer;
    if (ans->q->nextra > 0 || cxm_txn_get_ref(t, db->cand, c, strlen(c), &v, &len) != 0 ||
        len < ROW_HEAD)
        return 0;
    uint64_t rowv;
    memcpy(&rowv, v, sizeof rowv);
    if (rowv != version)
        return 0;
    recodb_items items;
    int rc = recodb__load_items(db, t, ans->a, version, &items);
    if (rc == 0)
        rc = serve_row(v, len, &items, ans);
    if (rc == CXM_ECORRUPT) /* derived data: score, and the refresh rewrites it */
        rc = 0;
    if (rc == 0)
        ans->n = 0; /* scoring starts over, deeper */
    return rc;
}

/* ---- the scoring path ---- */

static int answer_from_scores(const recodb_reader *r, const recodb_served *s, size_t n,
                              size_t nhist, answer *ans)
{
    ans->n = 0;
    for (size_t i = 0; i < n && ans->n < ans->q->k; i++) {
        size_t len;
        const char *id = recodb__item_id(&s->items, r->recs[i], &len);
        bool pop = is_popular(s, r->scores[i], nhist);
        float prop = recodb__propensity(s, r->recs[i], r->scores[i], pop);
        if (!answer_offer(ans, id, len, r->scores[i], prop, pop))
            return CXM_ENOMEM;
    }
    return 0;
}

/* The excluded model indices: older consumed items and the query's. */
static int exclusions(const recodb_reader *r, const recodb_served *s, const recodb_query *q,
                      cxm_arena *a, uint32_t **out, size_t *n)
{
    uint32_t *x = cxm_arena_alloc(a, (r->nolder + q->nexclude + 1) * sizeof *x);
    if (!x)
        return CXM_ENOMEM;
    if (r->nolder > 0) /* older is NULL until first needed */
        memcpy(x, r->older, r->nolder * sizeof *x);
    *n = r->nolder;
    for (size_t i = 0; i < q->nexclude; i++) {
        uint32_t j = recodb__items_find(&s->items, q->exclude[i], strlen(q->exclude[i]));
        if (j != UINT32_MAX)
            x[(*n)++] = j;
    }
    *out = x;
    return 0;
}

/* Score deeper and deeper until the filter leaves k, or nothing is left. */
static int serve_scored(recodb *db, recodb_reader *r, cxm_txn *t, const recodb_served *s,
                        answer *ans)
{
    size_t nseen, nhist, nexcl, n;
    uint32_t *excl;
    const recodb_query *q = ans->q;
    int rc = recodb__history(db, r, t, s, q->customer, &nseen, &nhist);
    if (rc == 0)
        rc = exclusions(r, s, q, ans->a, &excl, &nexcl);
    size_t want = q->k > RECODB_CAND_MAX / 2 ? 2 * q->k : RECODB_CAND_MAX;
    for (;;) {
        if (rc == 0)
            rc = recodb__score(r, s, nhist, excl, nexcl, want, &n);
        if (rc == 0)
            rc = answer_from_scores(r, s, n, nhist, ans);
        if (rc != 0 || ans->n >= q->k || n < want || want >= s->model->nitems)
            break;
        want *= 4;
    }
    if (rc == 0)
        merge_extra(r, nseen, ans);
    if (rc == 0 && nseen > 0) /* have the refresh thread cache it */
        recodb__stale_push(db, q->customer, strlen(q->customer));
    return rc;
}

/* ---- before any model: the log's popularity ---- */

typedef struct pop_scan {
    recoids items;
    float *count;
    uint32_t cap;
    uint32_t customers;
    uint64_t events;
    char last[RECODB_ID_MAX];
    size_t last_len;
    int64_t newest;
    double half;
} pop_scan;

static int pop_event(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    pop_scan *p = user;
    char customer[RECODB_ID_MAX + 1];
    size_t clen = 0;
    int64_t ts = 0;
    cxm_keyreader kr;
    cxm_keyreader_init(&kr, key, klen);
    cxm_keyread_bytes(&kr, customer, sizeof customer, &clen);
    cxm_keyread_i64(&kr, &ts);
    if (vlen <= sizeof(float) || clen > RECODB_ID_MAX)
        return CXM_ECORRUPT;
    p->events++;
    if (clen != p->last_len || memcmp(customer, p->last, clen) != 0) {
        p->customers++;
        memcpy(p->last, customer, p->last_len = clen);
    }
    uint32_t i;
    int rc = recoids_intern(&p->items, (const char *)val + 4, vlen - 4, &i);
    if (rc == 0 && i >= p->cap) {
        uint32_t cap = p->cap ? 2 * p->cap : 1024;
        float *g = realloc(p->count, cap * sizeof *g);
        if (!g)
            return CXM_ENOMEM;
        memset(g + p->cap, 0, (cap - p->cap) * sizeof *g);
        p->count = g;
        p->cap = cap;
    }
    /* Each interaction counts 2^(-age / h), age from the log's newest. */
    if (rc == 0)
        p->count[i] += p->half > 0 ? (float)exp2((double)(ts - p->newest) / p->half) : 1.0f;
    return rc;
}

static int newest_event(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    (void)val, (void)vlen;
    cxm_keyreader kr;
    int64_t ts = 0;
    cxm_keyreader_init(&kr, key, klen);
    cxm_keyread_skip_bytes(&kr);
    cxm_keyread_i64(&kr, &ts);
    int64_t *newest = user;
    *newest = ts > *newest ? ts : *newest;
    return 0;
}

static int by_count(const void *a, const void *b, void *ctx)
{
    const float *c = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return c[x] < c[y] ? 1 : c[x] > c[y] ? -1 : (x > y) - (x < y);
}

/* Keep the best RECODB_CAND_MAX of the scan in the snapshot. */
static int pop_keep(recodb_popsnap *snap, pop_scan *p)
{
    uint32_t n = p->items.n, *order = malloc(((size_t)n + 1) * sizeof *order);
    if (!order)
        return CXM_ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof *order, by_count, p->count);
    size_t keep = n < RECODB_CAND_MAX ? n : RECODB_CAND_MAX;
    recodb__pop_dispose(snap);
    snap->items = calloc(keep + 1, sizeof *snap->items);
    snap->count = malloc((keep + 1) * sizeof *snap->count);
    int rc = snap->items && snap->count ? 0 : CXM_ENOMEM;
    for (size_t i = 0; rc == 0 && i < keep; i++) {
        snap->count[i] = p->count[order[i]];
        if (!(snap->items[i] = strdup(p->items.names[order[i]])))
            rc = CXM_ENOMEM;
        snap->n = i + 1;
    }
    snap->customers = p->customers;
    snap->events = p->events;
    free(order);
    return rc;
}

static int pop_take(const recodb *db, cxm_txn *t, recodb_popsnap *snap)
{
    pop_scan p = {.half = db->opts.popularity_half_life, .newest = INT64_MIN};
    int rc = cxm_txn_scan_prefix(t, db->events, NULL, 0, false, newest_event, &p.newest);
    if (rc == 0)
        rc = cxm_txn_scan_prefix(t, db->events, NULL, 0, false, pop_event, &p);
    if (rc == 0)
        rc = pop_keep(snap, &p);
    recoids_free(&p.items);
    free(p.count);
    snap->valid = rc == 0;
    return rc;
}

/* The customer's own items (for exclusion), in a. */
static int own_items(const recodb *db, cxm_txn *t, cxm_arena *a, const char *customer,
                     recodb_reader *r, size_t *n)
{
    uint8_t prefix[CXM_KEY_MAX];
    size_t plen = recodb__customer_prefix(prefix, customer, strlen(customer));
    cxm_iter it;
    int rc = cxm_iter_prefix(t, db->events, prefix, plen, true, &it);
    *n = 0;
    while (rc == 0 && *n < r->cap && (rc = cxm_iter_next(&it)) == 0) {
        r->seen_len[*n] = it.vlen - sizeof(float);
        r->seen[*n] = cxm_arena_strndup(a, (const char *)it.val + 4, r->seen_len[*n]);
        if (!r->seen[(*n)++])
            rc = CXM_ENOMEM;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static int serve_popular(recodb *db, recodb_reader *r, cxm_txn *t, answer *ans)
{
    recodb_popsnap *snap = &db->pop;
    size_t nseen = 0;
    int rc = own_items(db, t, ans->a, ans->q->customer, r, &nseen);
    pthread_mutex_lock(&snap->mu);
    uint64_t appended = recodb_appended(db);
    double now = recodb__clock();
    bool cheap = snap->events < POP_SMALL_LOG || now - snap->taken > POP_REFRESH_SECONDS;
    if (rc == 0 && (!snap->valid || (appended != snap->appended && cheap))) {
        rc = pop_take(db, t, snap);
        snap->appended = appended;
        snap->taken = now;
    }
    for (size_t i = 0; rc == 0 && i < snap->n; i++) {
        if (seen_by(r, nseen, snap->items[i]))
            continue;
        float prop = snap->count[i] / (float)(snap->customers ? snap->customers : 1);
        if (!answer_offer(ans, snap->items[i], strlen(snap->items[i]), -(float)i - 1,
                          prop > 1 ? 1 : prop, true))
            rc = CXM_ENOMEM;
    }
    pthread_mutex_unlock(&snap->mu);
    if (rc == 0)
        merge_extra(r, nseen, ans);
    return rc;
}

void recodb__pop_dispose(recodb_popsnap *p)
{
    for (size_t i = 0; p->items && i < p->n; i++)
        free(p->items[i]);
    free(p->items);
    free(p->count);
    p->items = NULL;
    p->count = NULL;
    p->n = 0;
    p->valid = false;
}

/* ---- recommend ---- */

static int serve(recodb *db, recodb_reader *r, cxm_txn *t, answer *ans, uint64_t *version,
                 char *err, size_t errlen)
{
    uint64_t v = recodb__meta_get(t, db, "current");
    *version = v;
    if (v == 0) {
        int rc = serve_popular(db, r, t, ans);
        return rc ? recodb__fail(err, errlen, rc, "reading the popularity of the log: %s",
                                 cxm_strerror(rc))
                  : 0;
    }
    int rc = serve_cached(db, t, v, ans);
    if (rc > 0)
        return 0;
    recodb_served s;
    if (rc == 0 && (rc = recodb__load(db, t, ans->a, v, &s, err, errlen)) != 0)
        return rc;
    if (rc == 0)
        rc = serve_scored(db, r, t, &s, ans);
    return rc ? recodb__fail(err, errlen, rc, "recommending for %s: %s", ans->q->customer,
                             cxm_strerror(rc))
              : 0;
}

int recodb_recommend(recodb *db, recodb_reader *r, cxm_arena *a, const recodb_query *q,
                     recodb_rec **out, size_t *nout, uint64_t *version, char *err, size_t errlen)
{
    int rc = query_check(q, err, errlen);
    if (rc != 0)
        return rc;
    answer ans = {q, a, cxm_arena_alloc(a, (q->k + q->nextra) * sizeof *ans.recs), 0};
    if (!ans.recs)
        return recodb__fail(err, errlen, CXM_ENOMEM, "out of memory for the answer");
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(db->store, &t)) != 0)
        return recodb__fail(err, errlen, rc, "opening a read transaction: %s",
                            cxm_store_last_error());
    uint64_t v = 0;
    rc = serve(db, r, t, &ans, &v, err, errlen);
    cxm_store_read_end(t);
    if (rc != 0)
        return rc;
    *out = ans.recs;
    *nout = ans.n;
    if (version)
        *version = v;
    return 0;
}

/* ---- the refresh ---- */

/* The row of the top n, malloc'ed. */
static int build_row(const recodb_reader *r, const recodb_served *s, size_t n, size_t nhist,
                     uint8_t **out, size_t *len)
{
    uint8_t *row = malloc(ROW_HEAD + n * ENTRY_SIZE);
    if (!row)
        return CXM_ENOMEM;
    uint32_t n32 = (uint32_t)n, zero = 0;
    memcpy(row, &s->version, 8);
    memcpy(row + 8, &n32, 4);
    memcpy(row + 12, &zero, 4);
    uint8_t *e = row + ROW_HEAD;
    for (size_t i = 0; i < n; i++, e += ENTRY_SIZE) {
        bool pop = is_popular(s, r->scores[i], nhist);
        float prop = recodb__propensity(s, r->recs[i], r->scores[i], pop);
        uint32_t item = r->recs[i] | (pop ? POPULAR_BIT : 0);
        memcpy(e, &item, 4);
        memcpy(e + 4, &r->scores[i], 4);
        memcpy(e + 8, &prop, 4);
    }
    *out = row;
    *len = ROW_HEAD + n * ENTRY_SIZE;
    return 0;
}

typedef struct refresh_job {
    recodb *db;
    const char *customer;
    uint64_t version, stamp;
    uint8_t *row;
    size_t len;
    bool written;
} refresh_job;

static uint64_t stamp_of(cxm_txn *t, const recodb *db, const char *customer)
{
    const void *v;
    size_t len;
    uint64_t stamp = 0;
    if (cxm_txn_get_ref(t, db->stamps, customer, strlen(customer), &v, &len) == 0 &&
        len == sizeof stamp)
        memcpy(&stamp, v, sizeof stamp);
    return stamp;
}

typedef struct refresh_batch {
    refresh_job *jobs;
    size_t n;
} refresh_batch;

/* Write each row only if neither the history nor the model changed since
 * it was computed. */
static int refresh_fn(cxm_txn *t, void *user)
{
    refresh_batch *b = user;
    for (size_t i = 0; i < b->n; i++) {
        refresh_job *j = &b->jobs[i];
        j->written = false;
        if (!j->row || stamp_of(t, j->db, j->customer) != j->stamp ||
            recodb__meta_get(t, j->db, "current") != j->version)
            continue;
        j->written = true;
        int rc = cxm_txn_put(t, j->db->cand, j->customer, strlen(j->customer), j->row, j->len, 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* In one read transaction: nothing to do (j->row NULL), or the new row. */
static int refresh_compute(recodb *db, recodb_reader *r, cxm_txn *t, cxm_arena *a, refresh_job *j)
{
    const void *v;
    size_t len, nseen, nhist, n;
    recodb_served s;
    char err[128];
    j->version = recodb__meta_get(t, db, "current");
    j->stamp = stamp_of(t, db, j->customer);
    if (j->version == 0 || j->stamp == 0)
        return 0; /* no model, or no history */
    if (cxm_txn_get_ref(t, db->cand, j->customer, strlen(j->customer), &v, &len) == 0 && len >= 8 &&
        memcmp(v, &j->version, 8) == 0)
        return 0; /* current */
    int rc = recodb__load(db, t, a, j->version, &s, err, sizeof err);
    if (rc == 0)
        rc = recodb__history(db, r, t, &s, j->customer, &nseen, &nhist);
    if (rc == 0 && nseen == 0)
        return 0;
    if (rc == 0)
        rc = recodb__score(r, &s, nhist, r->older, r->nolder, RECODB_CAND_MAX, &n);
    if (rc == 0)
        rc = build_row(r, &s, n, nhist, &j->row, &j->len);
    return rc;
}

/* Compute every row in one read transaction. */
static int refresh_compute_all(recodb *db, recodb_reader *r, refresh_batch *b)
{
    cxm_txn *t;
    int rc = cxm_store_read_begin(db->store, &t);
    if (rc != 0)
        return rc;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        rc = refresh_compute(db, r, t, &a, &b->jobs[i]);
        cxm_arena_reset(&a);
    }
    cxm_store_read_end(t);
    cxm_arena_dispose(&a);
    return rc;
}

int recodb_refresh_many(recodb *db, recodb_reader *r, char *const *customers, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (recodb__id_problem(customers[i]))
            return CXM_EINVAL;
    refresh_batch b = {calloc(n + 1, sizeof *b.jobs), n};
    if (!b.jobs)
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        b.jobs[i] = (refresh_job){.db = db, .customer = customers[i]};
    int rc = refresh_compute_all(db, r, &b);
    bool any = false;
    for (size_t i = 0; i < n; i++)
        any |= b.jobs[i].row != NULL;
    /* Derived data: an OS crash may lose it, never corrupt it. */
    if (rc == 0 && any)
        rc = cxm_store_write_flags(db->store, CXM_WRITE_NOMETASYNC, refresh_fn, &b);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && b.jobs[i].row && !b.jobs[i].written) /* changed meanwhile */
            recodb__stale_push(db, customers[i], strlen(customers[i]));
        free(b.jobs[i].row);
    }
    free(b.jobs);
    return rc;
}

int recodb_refresh(recodb *db, recodb_reader *r, const char *customer)
{
    char *one = (char *)customer;
    return recodb_refresh_many(db, r, &one, 1);
}
