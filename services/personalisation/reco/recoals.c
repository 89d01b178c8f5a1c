/*
 * recoals.c - implicit ALS for the recommendation core (see reco_impl.h).
 *
 * Hu, Koren and Volinsky's implicit-feedback model: every (customer, item)
 * pair has a preference (1 if they interacted, else 0) held with confidence
 * 1 + alpha * weight (1 for the pairs without interaction). Customer and
 * item factors alternate; each row update solves
 *     (Y^T Y + Y^T (C_u - I) Y + lambda I) x_u = Y^T C_u p_u
 * with a few conjugate-gradient steps warm-started from the previous x_u
 * (Takács, Pilászy and Tikk 2011), never forming the per-row matrix: Y^T Y
 * is shared, and the correction only touches the row's interactions.
 * Serving folds a history in the same way, exactly (LAPACK Cholesky on the
 * small system), and scores every item.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "personalisation/reco/reco_impl.h"

/* BLAS and LAPACK (OpenBLAS), column-major. */
extern void ssyr_(const char *uplo, const int *n, const float *alpha, const float *x,
                  const int *incx, float *a, const int *lda);
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
extern void spotrs_(const char *uplo, const int *n, const int *nrhs, const float *a, const int *lda,
                    float *b, const int *ldb, int *info);
extern void sgemv_(const char *trans, const int *m, const int *n, const float *alpha,
                   const float *a, const int *lda, const float *x, const int *incx,
                   const float *beta, float *y, const int *incy);

#define ALS_CG_STEPS 3
#define ALS_MAX_FACTORS 1024
#define ALS_MAX_ITERATIONS 1000

/* One side of the factorisation being updated: rows of `self` from the
 * interactions in a CSR (offsets, other-side indices, weights) against the
 * fixed factors `other`. */
typedef struct als_side {
    uint32_t nrows;
    const uint64_t *off;
    const uint32_t *idx;
    const float *weight;
    float *self;        /* nrows x f */
    const float *other; /* the other side's factors */
} als_side;

typedef struct als_work {
    uint32_t f;
    float lambda, alpha;
    float *gram;       /* f x f: other^T other */
    float *r, *p, *ap; /* f each */
} als_work;

static float dot(const float *a, const float *b, uint32_t f)
{
    float s = 0;
    for (uint32_t k = 0; k < f; k++)
        s += a[k] * b[k];
    return s;
}

static void axpy(float a, const float *x, float *y, uint32_t f)
{
    for (uint32_t k = 0; k < f; k++)
        y[k] += a * x[k];
}

/* gram = V^T V for n rows of f factors. */
static void gram_of(const float *v, uint32_t n, uint32_t f, float *gram)
{
    memset(gram, 0, (size_t)f * f * sizeof *gram);
    for (uint32_t i = 0; i < n; i++) {
        const float *vi = v + (size_t)i * f;
        for (uint32_t a = 0; a < f; a++)
            axpy(vi[a], vi, gram + (size_t)a * f, f);
    }
}

/* out = (gram + lambda I) v: the part of A shared by every row. */
static void shared_times(const als_work *w, const float *v, float *out)
{
    for (uint32_t a = 0; a < w->f; a++)
        out[a] = dot(w->gram + (size_t)a * w->f, v, w->f) + w->lambda * v[a];
}

/* out = A v for row u: the shared part plus sum (c - 1) (y . v) y. */
static void row_times(const als_work *w, const als_side *s, uint32_t u, const float *v, float *out)
{
    shared_times(w, v, out);
    for (uint64_t q = s->off[u]; q < s->off[u + 1]; q++) {
        const float *y = s->other + (size_t)s->idx[q] * w->f;
        axpy(w->alpha * s->weight[q] * dot(y, v, w->f), y, out, w->f);
    }
}

/* A few CG steps on row u's system, from its current factors. */
static void update_row(als_work *w, const als_side *s, uint32_t u)
{
    uint32_t f = w->f;
    float *x = s->self + (size_t)u * f;
    row_times(w, s, u, x, w->ap);
    for (uint32_t k = 0; k < f; k++) /* r = b - A x, b = sum c y */
        w->r[k] = -w->ap[k];
    for (uint64_t q = s->off[u]; q < s->off[u + 1]; q++)
        axpy(1 + w->alpha * s->weight[q], s->other + (size_t)s->idx[q] * f, w->r, f);
    memcpy(w->p, w->r, f * sizeof *w->p);
    float rs = dot(w->r, w->r, f);
    for (int step = 0; step < ALS_CG_STEPS && rs > 1e-12f; step++) {
        row_times(w, s, u, w->p, w->ap);
        float pap = dot(w->p, w->ap, f);
        if (!(pap > 0))
            break;
        float a = rs / pap;
        axpy(a, w->p, x, f);
        axpy(-a, w->ap, w->r, f);
        float next = dot(w->r, w->r, f);
        for (uint32_t k = 0; k < f; k++)
            w->p[k] = w->r[k] + next / rs * w->p[k];
        rs = next;
    }
}

static void update_side(als_work *w, const als_side *s, uint32_t nother)
{
    gram_of(s->other, nother, w->f, w->gram);
    for (uint32_t u = 0; u < s->nrows; u++)
        update_row(w, s, u);
}

/* Deterministic small starting values (splitmix64), so runs repeat. */
static void init_factors(float *v, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t z = cxm_splitmix64(&seed);
        v[i] = ((float)(z >> 40) / (float)(1 << 24) - 0.5f) * 0.02f;
    }
}

static int als_check(const reco_params *p, const reco_matrix *x, char *err, size_t errlen)
{
    const char *why = NULL;
    if (p->factors == 0 || p->factors > ALS_MAX_FACTORS)
        why = "ALS factors must be 1..1024";
    else if (p->iterations == 0 || p->iterations > ALS_MAX_ITERATIONS)
        why = "ALS iterations must be 1..1000";
    else if (!(p->lambda > 0) || !isfinite(p->lambda))
        why = "ALS lambda must be a finite number > 0";
    else if (!(p->alpha >= 0) || !isfinite(p->alpha))
        why = "ALS alpha must be a finite number >= 0";
    else if ((size_t)x->nitems > SIZE_MAX / sizeof(float) / p->factors ||
             (size_t)x->nusers > SIZE_MAX / sizeof(float) / p->factors)
        why = "ALS factors do not fit in memory for this catalogue";
    if (why)
        snprintf(err, errlen, "%s", why);
    return why ? CXM_EINVAL : 0;
}

int reco_als_train(reco_model *m, const reco_matrix *x, const reco_params *p, char *err,
                   size_t errlen)
{
    int rc = als_check(p, x, err, errlen);
    if (rc != 0)
        return rc;
    uint32_t f = p->factors;
    als_work w = {.f = f, .lambda = (float)p->lambda, .alpha = (float)p->alpha};
    float *users = malloc(((size_t)x->nusers * f + 1) * sizeof *users);
    float *items = malloc(((size_t)x->nitems * f + 1) * sizeof *items);
    float *buf = malloc(((size_t)f * f + 3 * (size_t)f) * sizeof *buf);
    uint64_t *ioff = NULL;
    uint32_t *iidx = NULL;
    float *iw = NULL;
    rc = users && items && buf ? reco_transpose(x, &ioff, &iidx, &iw) : CXM_ENOMEM;
    if (rc == 0) {
        w.gram = buf;
        w.r = buf + (size_t)f * f;
        w.p = w.r + f;
        w.ap = w.p + f;
        init_factors(users, (size_t)x->nusers * f, 1);
        init_factors(items, (size_t)x->nitems * f, 2);
        als_side us = {x->nusers, x->row, x->items, x->weights, users, items};
        als_side is = {x->nitems, ioff, iidx, iw, items, users};
        for (uint32_t it = 0; it < p->iterations; it++) {
            update_side(&w, &us, x->nitems);
            update_side(&w, &is, x->nusers);
        }
        gram_of(items, x->nitems, f, buf); /* what serving folds in against */
        m->factors = f;
        m->lambda = w.lambda;
        m->alpha = w.alpha;
        m->item_factors = items;
        m->gram = buf;
        items = buf = NULL;
    }
    free(users);
    free(items);
    free(buf);
    free(ioff);
    free(iidx);
    free(iw);
    return rc;
}

bool reco_als_score(const reco_model *m, reco_scratch *s, const uint32_t *hist, const float *w,
                    size_t n)
{
    int f = (int)m->factors, one = 1, info = 0;
    float *a = s->work, *b = s->work + (size_t)f * f;
    memset(b, 0, (size_t)f * sizeof *b);
    memcpy(a, m->gram, (size_t)f * f * sizeof *a); /* A = gram + lambda I + history */
    for (int i = 0; i < f; i++)
        a[(size_t)i * f + i] += m->lambda;
    size_t used = 0;
    for (size_t h = 0; h < n; h++) {
        if (hist[h] >= m->nitems)
            continue;
        const float *y = m->item_factors + (size_t)hist[h] * f;
        float c = 1 + m->alpha * (w ? w[h] : 1.0f), extra = c - 1;
        ssyr_("U", &f, &extra, y, &one, a, &f); /* the upper triangle is all spotrf reads */
        axpy(c, y, b, (uint32_t)f);
        used++;
    }
    if (used == 0)
        return false;
    spotrf_("U", &f, a, &f, &info);
    if (info == 0)
        spotrs_("U", &f, &one, a, &f, b, &f, &info);
    if (info != 0)
        return false;
    /* scores = Y b: Y is row-major nitems x f, i.e. column-major f x nitems. */
    int cols = (int)m->nitems;
    float unit = 1, zero = 0;
    sgemv_("T", &f, &cols, &unit, m->item_factors, &f, b, &one, &zero, s->score, &one);
    return true;
}
