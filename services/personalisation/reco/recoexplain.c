/*
 * recoexplain.c - what the serving model says about one item: why it was
 * recommended (recodb_explain), what is like it (recodb_similar), and the
 * whole model written out for another process (recodb_export).
 *
 * Neighbour models (EASE, item-kNN) answer from the neighbour rows: history
 * item h adds w_h x B_hj to candidate j's score, so j's explanation is the
 * history items with the largest such terms, and the items most similar
 * to i are the largest entries of i's row. ALS has no per-item terms (its
 * explanation is empty: similar customers) and answers similar by the
 * cosine of the item factors; popularity knows neither.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "personalisation/reco/recodb_impl.h"

/* ---- explain ---- */

static int by_share_desc(const void *a, const void *b)
{
    const recodb_why *x = a, *y = b;
    return (x->share < y->share) - (x->share > y->share);
}

/* B_ij: j's entry in row i, found by bisection (both trainers build rows
 * in ascending item order, reco.c), 0 when absent. */
static float row_weight(const reco_model *m, uint32_t i, uint32_t j)
{
    uint64_t lo = m->nrow[i], hi = m->nrow[i + 1];
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (m->nb[mid].item < j)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->nrow[i + 1] && m->nb[lo].item == j ? m->nb[lo].w : 0;
}

/* w_h x B_hj for each history item, the positive ones into terms (in a);
 * returns how many, *total their sum. */
static size_t history_terms(const recodb_reader *r, const recodb_served *s, size_t nhist,
                            uint32_t j, recodb_why *terms, double *total)
{
    const reco_model *m = s->model;
    size_t n = 0;
    *total = 0;
    for (size_t h = 0; h < nhist; h++) {
        float c = r->w[h] * row_weight(m, r->hist[h], j);
        if (c > 0) {
            terms[n].item = (const char *)(uintptr_t)h; /* index now, id later */
            terms[n++].share = c;
            *total += c;
        }
    }
    return n;
}

static int explain_in(recodb *db, recodb_reader *r, cxm_txn *t, cxm_arena *a, const char *customer,
                      const char *item, recodb_why *out, size_t max, size_t *n)
{
    recodb_served s;
    char err[128];
    size_t nseen, nhist;
    int rc = recodb__load(db, t, a, 0, &s, err, sizeof err);
    if (rc == CXM_ENOTFOUND)
        return 0;
    uint32_t j = rc == 0 ? recodb__items_find(&s.items, item, strlen(item)) : UINT32_MAX;
    if (rc != 0 || j == UINT32_MAX || !s.model->nrow)
        return rc;
    if ((rc = recodb__history(db, r, t, &s, customer, &nseen, &nhist)) != 0)
        return rc;
    recodb_why *terms = cxm_arena_alloc(a, (nhist + 1) * sizeof *terms);
    if (!terms)
        return CXM_ENOMEM;
    double total;
    size_t nt = history_terms(r, &s, nhist, j, terms, &total);
    qsort(terms, nt, sizeof *terms, by_share_desc);
    for (size_t i = 0; i < nt && *n < max; i++) {
        size_t h = (size_t)(uintptr_t)terms[i].item;
        out[*n].item = cxm_arena_strndup(a, r->seen[h], r->seen_len[h]);
        out[*n].share = (float)(terms[i].share / total);
        if (!out[(*n)++].item)
            return CXM_ENOMEM;
    }
    return 0;
}

int recodb_explain(recodb *db, recodb_reader *r, cxm_arena *a, const char *customer, int64_t now,
                   const char *item, recodb_why *out, size_t max, size_t *n)
{
    (void)now; /* weights age from the customer's newest event, as serving */
    *n = 0;
    if (recodb__id_problem(customer) || recodb__id_problem(item))
        return CXM_EINVAL;
    cxm_txn *t;
    int rc = cxm_store_read_begin(db->store, &t);
    if (rc != 0)
        return rc;
    rc = explain_in(db, r, t, a, customer, item, out, max, n);
    cxm_store_read_end(t);
    return rc;
}

/* ---- similar ---- */

typedef struct sim {
    uint32_t item;
    float w;
} sim;

static int by_w_desc(const void *a, const void *b)
{
    const sim *x = a, *y = b;
    return x->w < y->w ? 1 : x->w > y->w ? -1 : (x->item > y->item) - (x->item < y->item);
}

/* The positive neighbours of i (rows) or cosines to i (ALS), in a. */
static size_t similar_candidates(const reco_model *m, uint32_t i, cxm_arena *a, sim **out)
{
    size_t n = 0;
    if (m->nrow) {
        *out = cxm_arena_alloc(a, (m->nrow[i + 1] - m->nrow[i] + 1) * sizeof **out);
        for (uint64_t q = m->nrow[i]; *out && q < m->nrow[i + 1]; q++)
            if (m->nb[q].w > 0 && m->nb[q].item != i)
                (*out)[n++] = (sim){m->nb[q].item, m->nb[q].w};
        return n;
    }
    if (!m->item_factors || !(*out = cxm_arena_alloc(a, (m->nitems + 1) * sizeof **out)))
        return 0;
    const float *x = m->item_factors + (size_t)i * m->factors;
    double xx = 0;
    for (uint32_t f = 0; f < m->factors; f++)
        xx += (double)x[f] * x[f];
    for (uint32_t j = 0; j < m->nitems; j++) {
        const float *y = m->item_factors + (size_t)j * m->factors;
        double xy = 0, yy = 0;
        for (uint32_t f = 0; f < m->factors; f++)
            xy += (double)x[f] * y[f], yy += (double)y[f] * y[f];
        double c = xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 0;
        if (j != i && c > 0)
            (*out)[n++] = (sim){j, (float)c};
    }
    return n;
}

static int similar_in(recodb *db, cxm_txn *t, cxm_arena *a, const char *item, size_t k,
                      recodb_filter_fn filter, void *user, recodb_rec **out, size_t *n,
                      uint64_t *version)
{
    recodb_served s;
    char err[128];
    int rc = recodb__load(db, t, a, 0, &s, err, sizeof err);
    if (rc != 0)
        return rc;
    if (version)
        *version = s.version;
    *out = cxm_arena_alloc(a, (k + 1) * sizeof **out);
    if (!*out)
        return CXM_ENOMEM;
    uint32_t i = recodb__items_find(&s.items, item, strlen(item));
    sim *c = NULL;
    size_t nc = i == UINT32_MAX ? 0 : similar_candidates(s.model, i, a, &c);
    if (nc == 0)
        return 0;
    qsort(c, nc, sizeof *c, by_w_desc);
    for (size_t q = 0; q < nc && *n < k; q++) {
        size_t len;
        const char *id = recodb__item_id(&s.items, c[q].item, &len);
        if (filter && !filter(id, len, user))
            continue;
        char *copy = cxm_arena_strndup(a, id, len);
        if (!copy)
            return CXM_ENOMEM;
        (*out)[(*n)++] = (recodb_rec){copy, c[q].w / c[0].w, 0, false};
    }
    return 0;
}

int recodb_similar(recodb *db, recodb_reader *r, cxm_arena *a, const char *item, size_t k,
                   recodb_filter_fn filter, void *filter_user, recodb_rec **out, size_t *n,
                   uint64_t *version)
{
    (void)r;
    *n = 0;
    if (recodb__id_problem(item) || k < 1 || k > RECODB_K_MAX)
        return CXM_EINVAL;
    cxm_txn *t;
    int rc = cxm_store_read_begin(db->store, &t);
    if (rc != 0)
        return rc;
    rc = similar_in(db, t, a, item, k, filter, filter_user, out, n, version);
    cxm_store_read_end(t);
    return rc;
}

/* ---- export ---- */

/* This build writes its native byte order, which is the little-endian the
 * format promises on every target cxm supports (x86-64, arm64). */
static int put(FILE *f, const void *p, size_t len)
{
    return fwrite(p, 1, len, f) == len ? 0 : -1;
}

static int write_model(FILE *f, const recodb_served *s)
{
    const reco_model *m = s->model;
    uint32_t version = (uint32_t)s->version, n = s->items.n, zero = 0;
    int bad = put(f, "CXMX", 4) | put(f, &version, 4) | put(f, &n, 4);
    for (uint32_t i = 0; i < n && !bad; i++) {
        size_t len;
        const char *id = recodb__item_id(&s->items, i, &len);
        uint16_t l16 = (uint16_t)len;
        bad |= put(f, &l16, 2) | put(f, id, len);
    }
    for (uint32_t i = 0; i < n && !bad; i++) {
        if (!m->nrow || i >= m->nitems) {
            bad |= put(f, &zero, 4);
            continue;
        }
        uint32_t count = (uint32_t)(m->nrow[i + 1] - m->nrow[i]);
        bad |= put(f, &count, 4);
        for (uint64_t q = m->nrow[i]; q < m->nrow[i + 1] && !bad; q++)
            bad |= put(f, &m->nb[q].item, 4) | put(f, &m->nb[q].w, 4);
    }
    if (!bad)
        bad |= put(f, &m->nitems, 4) | put(f, m->popular, (size_t)m->nitems * 4);
    return bad ? CXM_EIO : 0;
}

int recodb_export(recodb *db, const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    if (!path || snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return recodb__fail(err, errlen, CXM_EINVAL, "export path is empty or too long");
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    cxm_txn *t;
    recodb_served s;
    int rc = cxm_store_read_begin(db->store, &t);
    if (rc != 0) {
        cxm_arena_dispose(&a);
        return recodb__fail(err, errlen, rc, "opening a read transaction: %s",
                            cxm_store_last_error());
    }
    FILE *f = NULL;
    rc = recodb__load(db, t, &a, 0, &s, err, errlen);
    /* The format holds one set of rows: a sequence model's blend is not
     * something a reader of it could serve. */
    if (rc == 0 && reco_model_algo(s.model) == RECO_SEQ)
        rc = recodb__fail(err, errlen, CXM_EINVAL,
                          "the serving model is a sequence model, which the export format "
                          "cannot hold: train EASE or item-kNN to export");
    if (rc == 0 && !(f = fopen(tmp, "wb")))
        rc = recodb__fail(err, errlen, CXM_EIO, "%s: %s", tmp, strerror(errno));
    if (f) {
        rc = write_model(f, &s);
        if ((fclose(f) != 0 || rc != 0) && rc == 0)
            rc = CXM_EIO;
        if (rc == 0 && rename(tmp, path) != 0)
            rc = CXM_EIO;
        if (rc != 0) {
            recodb__fail(err, errlen, rc, "writing %s: %s", path, strerror(errno));
            remove(tmp);
        }
    }
    cxm_store_read_end(t);
    cxm_arena_dispose(&a);
    return rc;
}
