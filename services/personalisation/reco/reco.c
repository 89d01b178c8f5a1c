/*
 * reco.c - training and serving of the recommendation core (see reco.h).
 *
 * Every item-based model is kept in one shape: for each item, its top
 * neighbours with weights (sparse rows of an item-item matrix). Serving adds
 * up the neighbour rows of the history items into a dense score array,
 * touching only what the history reaches, and selects the top k with a
 * small heap. Popularity ranks every model's leftovers, so a customer whose
 * history reaches fewer than k items still gets k.
 */
#include "personalisation/reco/reco.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/arena.h"
#include "cxm/err.h"
#include "personalisation/reco/reco_impl.h"

/* LAPACK (OpenBLAS): Cholesky factorisation and inverse from it. */
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
extern void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info);

typedef reco_neighbour neighbour;

void reco_params_default(reco_algo algo, reco_params *p)
{
    memset(p, 0, sizeof *p);
    /* EASE: a multiple of the Gram matrix's mean diagonal (best 10-20 on
     * MovieLens-small; absolute values do not carry across data sizes). */
    p->lambda = algo == RECO_ALS ? 50.0 : 14.0;
    /* Item-kNN (MovieLens-small NDCG@10, cosine): shrink 10 / 100
     * neighbours 0.335; 50 or 200 neighbours 0.331 / 0.323; shrink 50
     * 0.321 (at 200). BM25 with the same neighbours: 0.312. */
    p->shrink = 10.0;
    /* EASE: entries kept per modelled item on average. MovieLens-small
     * NDCG@10: 0.382 at 1000, 0.378 at 200, 0.376 at 100; serving cost
     * grows with it (see benchmarks/README.md). */
    p->neighbours = algo == RECO_EASE || algo == RECO_SEQ ? 1000 : 100;
    /* RECO_SEQ: the automatic choice on MovieLens-small (reco.h). */
    p->seq_lambda = 4.0;
    p->seq_half = 8;
    p->hist_half = 0;
    p->blend = 0.6;
    /* ALS (MovieLens-small NDCG@10, confidence 1 + alpha * rating): alpha
     * 2 / lambda 50 0.357; alpha 1 or 3: 0.346; lambda 30 or 70: 0.340 /
     * 0.350; alpha 10 / lambda 10: 0.262. 128 factors or 20 iterations
     * add nothing and cost 2-4x the 1 s of training. */
    p->factors = 64;
    p->iterations = 10;
    p->alpha = 2.0;
}

static int fail(char *err, size_t errlen, int rc, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return rc;
}

/* Models made of neighbour rows (the others: popularity, ALS). */
static bool has_rows(reco_algo algo)
{
    return algo == RECO_ITEMKNN || algo == RECO_EASE || algo == RECO_SEQ;
}

/* ---- popularity ---- */

static int by_score_desc(const void *a, const void *b, void *ctx)
{
    const float *s = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (s[y] > s[x]) - (s[y] < s[x]);
}

static void sort_items(uint32_t *items, uint32_t n, const float *score)
{
    qsort_r(items, n, sizeof *items, by_score_desc, (void *)score);
}

/* How many customers interacted with each item, each counting
 * 2^(-age / half_life) when the interactions carry times, so that what is
 * popular now outranks what was popular once. */
static void count_popularity(const reco_matrix *x, double half_life, float *score)
{
    uint64_t nnz = x->row[x->nusers];
    int64_t newest = INT64_MIN;
    for (uint64_t i = 0; x->ts && i < nnz; i++)
        newest = x->ts[i] > newest ? x->ts[i] : newest;
    for (uint64_t i = 0; i < nnz; i++) {
        double age = x->ts && half_life > 0 ? (double)(newest - x->ts[i]) : 0;
        score[x->items[i]] += (float)exp2(-age / (half_life > 0 ? half_life : 1));
    }
}

static int train_popularity(reco_model *m, const reco_matrix *x, const reco_params *p)
{
    float *score = calloc(x->nitems ? x->nitems : 1, sizeof *score);
    uint32_t *popular = malloc((x->nitems ? x->nitems : 1) * sizeof *popular);
    m->pop_score = score;
    m->popular = popular;
    if (!score || !popular)
        return CXM_ENOMEM;
    count_popularity(x, p->half_life, score);
    for (uint32_t i = 0; i < x->nitems; i++)
        popular[i] = i;
    sort_items(popular, x->nitems, score);
    return 0;
}

/* ---- neighbour rows ---- */

/* Neighbour rows being built, one item at a time in item order. */
typedef struct row_builder {
    neighbour *all;
    uint64_t n, cap;
    uint64_t *nrow;
} row_builder;

/* Append item's row. */
static int push_row(row_builder *rb, uint32_t item, const neighbour *cand, uint32_t ncand)
{
    if (rb->n + ncand > rb->cap) {
        uint64_t cap = (rb->cap ? rb->cap * 2 : 1 << 16) + ncand;
        neighbour *grown = realloc(rb->all, cap * sizeof *grown);
        if (!grown)
            return CXM_ENOMEM;
        rb->all = grown;
        rb->cap = cap;
    }
    if (ncand) /* rb->all is still NULL while every row so far was empty */
        memcpy(rb->all + rb->n, cand, ncand * sizeof *cand);
    rb->n += ncand;
    rb->nrow[item + 1] = rb->n;
    return 0;
}

int reco_transpose(const reco_matrix *x, uint64_t **col, uint32_t **users, float **weights)
{
    uint64_t nnz = x->row[x->nusers];
    *col = calloc((size_t)x->nitems + 2, sizeof **col);
    *users = malloc((nnz + 1) * sizeof **users);
    if (weights)
        *weights = malloc((nnz + 1) * sizeof **weights);
    if (!*col || !*users || (weights && !*weights))
        return CXM_ENOMEM;
    for (uint64_t q = 0; q < nnz; q++)
        (*col)[x->items[q] + 2]++;
    for (uint32_t i = 0; i < x->nitems; i++)
        (*col)[i + 2] += (*col)[i + 1];
    for (uint32_t u = 0; u < x->nusers; u++) /* col[i + 1] is i's fill point */
        for (uint64_t q = x->row[u]; q < x->row[u + 1]; q++) {
            uint64_t at = (*col)[x->items[q] + 1]++;
            (*users)[at] = u;
            if (weights)
                (*weights)[at] = x->weights[q];
        }
    return 0;
}

/* Move the `keep` largest |w| of cand[0..n) to its front (quickselect;
 * the order within is unspecified). Linear on average, where sorting every
 * item's candidates dominated item-kNN training. */
static void select_largest(neighbour *cand, uint32_t n, uint32_t keep)
{
    uint32_t lo = 0, hi = n; /* the keep-th largest lies in [lo, hi) */
    while (keep > lo && keep < hi && hi - lo > 1) {
        float pivot = fabsf(cand[lo + (hi - lo) / 2].w);
        uint32_t a = lo, b = hi;
        for (uint32_t q = lo; q < b;) { /* > pivot | == pivot | < pivot */
            float v = fabsf(cand[q].w);
            neighbour t = cand[q];
            if (v > pivot) {
                cand[q++] = cand[a];
                cand[a++] = t;
            } else if (v < pivot) {
                cand[q] = cand[--b];
                cand[b] = t;
            } else {
                q++;
            }
        }
        if (keep <= a)
            hi = a;
        else if (keep >= b)
            lo = b;
        else
            return; /* the boundary falls among equals */
    }
}

/* Item-kNN similarity of item i to each item j it co-occurs with:
 *   cosine: |U_i ∩ U_j| / (sqrt(|U_i| |U_j|) + shrink);
 *   BM25:   idf_i idf_j Σ_{u ∈ U_i ∩ U_j} L(u)^2, with idf = log(N / |U|)
 *           and L(u) = (K1 + 1) / (K1 (1 - B + B |u| / avg|u|) + 1), the
 *           BM25 term weight of one interaction in a history of |u| items. */
#define BM25_K1 1.2
#define BM25_B 0.75

typedef struct knn_ctx {
    const reco_matrix *x;
    const reco_params *p;
    uint64_t *col; /* items -> users offsets (transpose) */
    uint32_t *users;
    float *uw;  /* per user: what one co-occurrence adds (1, or L(u)^2) */
    float *dot; /* per item, zero between items */
    uint32_t *touched;
    neighbour *cand;
} knn_ctx;

static float knn_user_weight(const knn_ctx *k, uint32_t u)
{
    if (k->p->knn_weighting != RECO_KNN_BM25)
        return 1;
    const reco_matrix *x = k->x;
    double avg = (double)x->row[x->nusers] / (x->nusers ? x->nusers : 1);
    double len = (double)(x->row[u + 1] - x->row[u]);
    double l = (BM25_K1 + 1) / (BM25_K1 * (1 - BM25_B + BM25_B * len / avg) + 1);
    return (float)(l * l);
}

static double knn_similarity(const knn_ctx *k, uint32_t i, uint32_t j)
{
    double ni = (double)(k->col[i + 1] - k->col[i]), nj = (double)(k->col[j + 1] - k->col[j]);
    if (k->p->knn_weighting == RECO_KNN_BM25) {
        double n = k->x->nusers;
        return k->dot[j] * log(n / ni) * log(n / nj);
    }
    return k->dot[j] / (sqrt(ni * nj) + k->p->shrink);
}

/* i's candidates (items it co-occurs with, with similarities); returns how
 * many. */
static uint32_t knn_candidates(knn_ctx *k, uint32_t i)
{
    const reco_matrix *x = k->x;
    uint32_t nt = 0;
    for (uint64_t a = k->col[i]; a < k->col[i + 1]; a++) {
        uint32_t u = k->users[a];
        for (uint64_t q = x->row[u]; q < x->row[u + 1]; q++) {
            uint32_t j = x->items[q];
            if (j != i && k->dot[j] == 0)
                k->touched[nt++] = j;
            if (j != i)
                k->dot[j] += k->uw[u];
        }
    }
    for (uint32_t t = 0; t < nt; t++) {
        uint32_t j = k->touched[t];
        k->cand[t] = (neighbour){j, (float)knn_similarity(k, i, j)};
        k->dot[j] = 0;
    }
    return nt;
}

/* Each item's `neighbours` most similar items, stored the other way round:
 * row j lists the items i that have j among their nearest, so that a
 * candidate is scored only from its own nearest neighbours in the history
 * (MovieLens-small NDCG@10: 0.335 against 0.275 for rows of each history
 * item's nearest, at 100 neighbours and shrink 10). */
static int knn_rows(knn_ctx *k, row_builder *rb, uint32_t nitems, uint32_t keep)
{
    uint32_t *len = calloc((size_t)nitems + 1, sizeof *len);
    neighbour *top = malloc(((size_t)nitems * keep + 1) * sizeof *top);
    if (!len || !top) {
        free(len);
        free(top);
        return CXM_ENOMEM;
    }
    for (uint32_t i = 0; i < nitems; i++) {
        uint32_t nc = knn_candidates(k, i);
        select_largest(k->cand, nc, keep);
        len[i] = nc < keep ? nc : keep;
        memcpy(top + (size_t)i * keep, k->cand, len[i] * sizeof *top);
    }
    for (uint32_t i = 0; i < nitems; i++) /* row lengths of the transpose */
        for (uint32_t t = 0; t < len[i]; t++)
            rb->nrow[top[(size_t)i * keep + t].item + 1]++;
    for (uint32_t j = 0; j < nitems; j++)
        rb->nrow[j + 1] += rb->nrow[j];
    rb->n = rb->cap = rb->nrow[nitems];
    rb->all = malloc((rb->n ? rb->n : 1) * sizeof *rb->all);
    uint64_t *fill = malloc(((size_t)nitems + 1) * sizeof *fill);
    int rc = rb->all && fill ? 0 : CXM_ENOMEM;
    if (rc == 0) {
        memcpy(fill, rb->nrow, ((size_t)nitems + 1) * sizeof *fill);
        for (uint32_t i = 0; i < nitems; i++)
            for (uint32_t t = 0; t < len[i]; t++) {
                neighbour nb = top[(size_t)i * keep + t];
                rb->all[fill[nb.item]++] = (neighbour){i, nb.w};
            }
    }
    free(fill);
    free(len);
    free(top);
    return rc;
}

static int train_itemknn(row_builder *rb, const reco_matrix *x, const reco_params *p)
{
    knn_ctx k = {.x = x, .p = p};
    k.uw = malloc(((size_t)x->nusers + 1) * sizeof *k.uw);
    k.dot = calloc((size_t)x->nitems + 1, sizeof *k.dot);
    k.touched = malloc(((size_t)x->nitems + 1) * sizeof *k.touched);
    k.cand = malloc(((size_t)x->nitems + 1) * sizeof *k.cand);
    int rc = k.uw && k.dot && k.touched && k.cand ? reco_transpose(x, &k.col, &k.users, NULL)
                                                  : CXM_ENOMEM;
    for (uint32_t u = 0; rc == 0 && u < x->nusers; u++)
        k.uw[u] = knn_user_weight(&k, u);
    if (rc == 0)
        rc = knn_rows(&k, rb, x->nitems, p->neighbours);
    free(k.col);
    free(k.users);
    free(k.uw);
    free(k.dot);
    free(k.touched);
    free(k.cand);
    return rc;
}

/* ---- EASE ---- */

/* Tuned on MovieLens-small (random 80/20 per user, seed 42, NDCG@10), and
 * checked on two other seeds, where each change moved NDCG the same way:
 *  - items seen by fewer than EASE_MIN_USERS training customers are not
 *    modelled (popularity still ranks them): they enlarge the O(n^3) solve
 *    and add noise (1 -> 5 users: 17 s -> 1.6 s of training, +0.002);
 *  - each customer's co-occurrences weigh |u|^-EASE_USER_POWER, so that a
 *    few customers with thousands of interactions do not dominate the Gram
 *    matrix (+0.006 at the best lambda);
 *  - weights into candidate j are scaled by (n_j + 1)^-EASE_CANDIDATE_POWER,
 *    where n_j counts j's training customers: EASE over-ranks the most
 *    popular items (+0.007), and the scaled weights also sparsify better;
 *  - the kept entries are the largest |B_ij| over the whole matrix, not per
 *    row: popular items' rows carry most of the signal (at 200 entries per
 *    item on average, 0.3795 against 0.372 for a top 200 per row). */
#define EASE_MIN_USERS 5
#define EASE_USER_POWER 0.25
#define EASE_CANDIDATE_POWER 0.15

/* Pick the modelled items and their candidate scales. */
static void ease_items(reco_dense *e, const reco_matrix *x)
{
    memset(e->dense_of, 0, x->nitems * sizeof *e->dense_of); /* first a count */
    for (uint64_t i = 0; i < x->row[x->nusers]; i++)
        e->dense_of[x->items[i]]++;
    e->n = 0;
    for (uint32_t i = 0; i < x->nitems; i++) {
        int32_t count = e->dense_of[i];
        e->dense_of[i] = count >= EASE_MIN_USERS ? (int32_t)e->n : -1;
        if (count >= EASE_MIN_USERS) {
            e->scale[e->n] = (float)pow(count + 1.0, -EASE_CANDIDATE_POWER);
            e->item_of[e->n++] = i;
        }
    }
}

int reco__dense_init(reco_dense *e, const reco_matrix *x)
{
    *e = (reco_dense){0};
    e->dense_of = malloc((x->nitems + 1) * sizeof *e->dense_of);
    e->item_of = malloc((x->nitems + 1) * sizeof *e->item_of);
    e->scale = malloc((x->nitems + 1) * sizeof *e->scale);
    if (!e->dense_of || !e->item_of || !e->scale)
        return CXM_ENOMEM;
    ease_items(e, x);
    e->g = calloc((size_t)e->n * e->n + 1, sizeof *e->g);
    return e->g ? 0 : CXM_ENOMEM;
}

void reco__dense_free(reco_dense *e)
{
    free(e->g);
    free(e->dense_of);
    free(e->item_of);
    free(e->scale);
    *e = (reco_dense){0};
}

/* G = X^T W X + lambda * mean(diag) * I over the modelled items (lower
 * triangle, column-major), W weighting customers by |u|^-EASE_USER_POWER.
 * lambda is relative to the mean diagonal, so the same default holds as
 * the data grows. */
static void ease_gram(const reco_dense *e, const reco_matrix *x, double lambda)
{
    size_t n = e->n;
    for (uint32_t u = 0; u < x->nusers; u++) {
        float wu = (float)pow((double)(x->row[u + 1] - x->row[u]), -EASE_USER_POWER);
        for (uint64_t a = x->row[u]; a < x->row[u + 1]; a++) {
            int32_t i = e->dense_of[x->items[a]];
            for (uint64_t b = x->row[u]; i >= 0 && b <= a; b++) {
                int32_t j = e->dense_of[x->items[b]];
                if (j >= 0) /* row max(i,j), column min(i,j) */
                    e->g[(size_t)(i > j ? j : i) * n + (size_t)(i > j ? i : j)] += wu;
            }
        }
    }
    double diag = 0;
    for (size_t i = 0; i < n; i++)
        diag += e->g[i * n + i];
    for (size_t i = 0; i < n; i++)
        e->g[i * n + i] += (float)(lambda * diag / (double)n);
}

/* What history item i adds to candidate j's score, scaled for j. EASE:
 * B_ij = -P_ij / P_jj, P the lower triangle of G^-1; transition: B_ij. */
static float dense_weight(const reco_dense *e, uint32_t i, uint32_t j)
{
    size_t n = e->n, lo = i < j ? i : j, hi = i < j ? j : i;
    if (e->direct)
        return e->g[(size_t)j * n + i] * e->scale[j];
    return -e->g[lo * n + hi] / e->g[(size_t)j * n + j] * e->scale[j];
}

/* The k-th smallest of v[0..n) (k < n), v reordered (quickselect: the
 * threshold needs one quantile, and sorting the sample was a tenth of a
 * training). */
static float kth_smallest(float *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j] = t;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* The |B_ij| above which entries are kept so that about `per_item` remain
 * per modelled item: a quantile of a regular sample of at most ~1M
 * entries (exact enough, and deterministic). */
static int dense_threshold(const reco_dense *e, uint32_t per_item, float *tau)
{
    uint64_t total = (uint64_t)e->n * e->n, stride = total / (1u << 20) + 1;
    if (e->n < 2 || per_item >= e->n - 1) {
        *tau = 0;
        return 0;
    }
    float *sample = malloc((total / stride + 1) * sizeof *sample);
    if (!sample)
        return CXM_ENOMEM;
    size_t ns = 0;
    for (uint64_t q = 0; q < total; q += stride)
        if (q / e->n != q % e->n)
            sample[ns++] = fabsf(dense_weight(e, (uint32_t)(q / e->n), (uint32_t)(q % e->n)));
    double keep = (double)per_item / (double)(e->n - 1);
    *tau = ns ? kth_smallest(sample, ns, (size_t)((1 - keep) * (double)(ns - 1))) : 0;
    free(sample);
    return 0;
}

/* Every item's row: the entries of B at or above the threshold. */
static int dense_rows(const reco_dense *e, row_builder *rb, uint32_t nitems, float tau)
{
    neighbour *cand = malloc((e->n ? e->n : 1) * sizeof *cand);
    if (!cand)
        return CXM_ENOMEM;
    int rc = 0;
    for (uint32_t item = 0; rc == 0 && item < nitems; item++) {
        uint32_t nc = 0;
        int32_t i = e->dense_of[item];
        for (uint32_t j = 0; i >= 0 && j < e->n; j++) {
            float b = j == (uint32_t)i ? 0 : dense_weight(e, (uint32_t)i, j);
            if (b != 0 && fabsf(b) >= tau)
                cand[nc++] = (neighbour){e->item_of[j], b};
        }
        rc = push_row(rb, item, cand, nc);
    }
    free(cand);
    return rc;
}

uint64_t reco_ease_bytes(const reco_matrix *x)
{
    uint32_t *count = calloc((size_t)x->nitems + 1, sizeof *count);
    if (!count)
        return UINT64_MAX;
    for (uint64_t i = 0; i < x->row[x->nusers]; i++)
        count[x->items[i]]++;
    uint64_t n = 0;
    for (uint32_t i = 0; i < x->nitems; i++)
        n += count[i] >= EASE_MIN_USERS;
    free(count);
    return n * n * sizeof(float);
}

static int train_ease(reco_model *m, const reco_matrix *x, const reco_params *p, char *err,
                      size_t errlen)
{
    reco_dense e;
    int rc = reco__dense_init(&e, x);
    if (rc == 0 && e.n > 0) {
        int info = 0, nn = (int)e.n;
        ease_gram(&e, x, p->lambda);
        spotrf_("L", &nn, e.g, &nn, &info);
        if (info == 0)
            spotri_("L", &nn, e.g, &nn, &info);
        if (info != 0)
            rc = fail(err, errlen, CXM_EINTERNAL,
                      "EASE: the regularised Gram matrix is not positive definite; raise lambda");
    }
    if (rc == 0)
        rc = reco__dense_rows(&e, p->neighbours, p, m);
    reco__dense_free(&e);
    return rc;
}

/* ---- training ---- */

/* The serving copy of the rows: 16-bit items, weights quantised to 16
 * bits against each row's largest |w| (a relative error under 2^-15 of
 * it). MovieLens-small, EASE: NDCG@10 0.381615 with and without; the
 * scoring of a 200-item history p50 476 against 515 us, p99 3.7 against
 * 4.4 ms on a loaded 2-core VM (cxm-bench-reco's reco and reco32 rows;
 * reco_params.full_precision turns it off). Half the bytes of rows read,
 * but the adds scatter over a score array that fits in cache either way:
 * the request path's answer is the candidate cache (recoserve.c). */
#define COMPACT_MAX_ITEMS 65536

static int by_item(const void *a, const void *b)
{
    const neighbour *x = a, *y = b;
    return (x->item > y->item) - (x->item < y->item);
}

/* Rows in ascending item order, which explanations bisect. Both trainers
 * build them so; this keeps the promise if one ever does not. */
static void sort_rows(reco_model *m)
{
    neighbour *nb = (neighbour *)m->nb;
    for (uint32_t i = 0; i < m->nitems; i++)
        for (uint64_t q = m->nrow[i] + 1; q < m->nrow[i + 1]; q++)
            if (nb[q - 1].item > nb[q].item) {
                qsort(nb + m->nrow[i], m->nrow[i + 1] - m->nrow[i], sizeof *nb, by_item);
                break;
            }
}

static int compact_rows(reco_model *m, const reco_params *p)
{
    uint64_t nnz = m->nrow[m->nitems];
    if (m->nitems > COMPACT_MAX_ITEMS || p->full_precision)
        return 0;
    reco_cnb *c = malloc((nnz + 1) * sizeof *c);
    float *scale = malloc(((size_t)m->nitems + 1) * sizeof *scale);
    if (!c || !scale) {
        free(c);
        free(scale);
        return CXM_ENOMEM;
    }
    for (uint32_t i = 0; i < m->nitems; i++) {
        float top = 0;
        for (uint64_t q = m->nrow[i]; q < m->nrow[i + 1]; q++)
            top = fabsf(m->nb[q].w) > top ? fabsf(m->nb[q].w) : top;
        scale[i] = top > 0 ? top / 32767.0f : 1.0f;
        for (uint64_t q = m->nrow[i]; q < m->nrow[i + 1]; q++)
            c[q] = (reco_cnb){(uint16_t)m->nb[q].item, (int16_t)lrintf(m->nb[q].w / scale[i])};
    }
    m->cnb = c;
    m->cscale = scale;
    return 0;
}

/* m takes rb's rows (after rc, the building's outcome), sorted and
 * compacted; on failure it holds what was built, for reco_model_free. */
static int take_rows(reco_model *m, row_builder *rb, int rc, const reco_params *p)
{
    m->nrow = rb->nrow;
    m->nb = rb->all;
    if (rc == 0)
        sort_rows(m);
    return rc == 0 ? compact_rows(m, p) : rc;
}

int reco__dense_rows(const reco_dense *e, uint32_t per_item, const reco_params *p, reco_model *m)
{
    row_builder rb = {.nrow = calloc((size_t)m->nitems + 1, sizeof *rb.nrow)};
    float tau = 0;
    int rc = rb.nrow ? dense_threshold(e, per_item, &tau) : CXM_ENOMEM;
    if (rc == 0)
        rc = dense_rows(e, &rb, m->nitems, tau);
    return take_rows(m, &rb, rc, p);
}

static int train_model(reco_model *m, const reco_matrix *x, const reco_params *p, char *err,
                       size_t errlen)
{
    int rc = train_popularity(m, x, p);
    if (rc != 0 || m->algo == RECO_POP)
        return rc;
    if (m->algo == RECO_ALS)
        return reco_als_train(m, x, p, err, errlen);
    if (m->algo == RECO_EASE || m->algo == RECO_SEQ) {
        rc = train_ease(m, x, p, err, errlen);
        return rc == 0 && m->algo == RECO_SEQ ? reco_seq_train(m, x, p, err, errlen) : rc;
    }
    row_builder rb = {.nrow = calloc((size_t)x->nitems + 1, sizeof *rb.nrow)};
    if (!rb.nrow)
        return CXM_ENOMEM;
    return take_rows(m, &rb, train_itemknn(&rb, x, p), p);
}

int reco_train(reco_algo algo, const reco_params *p, const reco_matrix *x, reco_model **out,
               char *err, size_t errlen)
{
    reco_params defaults;
    if (!p) {
        reco_params_default(algo, &defaults);
        p = &defaults;
    }
    if (algo < RECO_POP || algo > RECO_SEQ)
        return fail(err, errlen, CXM_EINVAL, "unknown algorithm");
    if (has_rows(algo) && p->neighbours == 0)
        return fail(err, errlen, CXM_EINVAL, "neighbours must be at least 1");
    bool ease = algo == RECO_EASE || algo == RECO_SEQ;
    if (ease && !(p->lambda > 0 && isfinite(p->lambda)))
        return fail(err, errlen, CXM_EINVAL, "EASE lambda must be a finite number > 0");
    if (algo == RECO_SEQ && !(p->seq_lambda > 0 && p->seq_lambda <= 1e6))
        return fail(err, errlen, CXM_EINVAL, "seq_lambda must be in (0, 1e6]");
    if (algo == RECO_SEQ && !(p->seq_half > 0 && p->seq_half <= 1e6))
        return fail(err, errlen, CXM_EINVAL, "seq_half must be in (0, 1e6] positions");
    if (algo == RECO_SEQ && !(p->hist_half >= 0 && p->hist_half <= 1e6))
        return fail(err, errlen, CXM_EINVAL, "hist_half must be in [0, 1e6] positions (0 = none)");
    if (algo == RECO_SEQ && !(p->blend >= 0 && p->blend <= 1))
        return fail(err, errlen, CXM_EINVAL, "blend must be in [0, 1]");
    if (algo == RECO_ITEMKNN && !(p->shrink >= 0 && isfinite(p->shrink)))
        return fail(err, errlen, CXM_EINVAL, "item-kNN shrink must be a finite number >= 0");
    reco_model *m = calloc(1, sizeof *m);
    if (!m)
        return CXM_ENOMEM;
    *m = (reco_model){.algo = algo, .nitems = x->nitems, .owned = true};
    int rc = train_model(m, x, p, err, errlen);
    if (rc != 0) {
        if (rc == CXM_ENOMEM)
            fail(err, errlen, rc, "out of memory while training");
        reco_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void reco_model_free(reco_model *m)
{
    if (!m || !m->owned)
        return;
    free((void *)m->nrow);
    free((void *)m->nb);
    free((void *)m->cnb);
    free((void *)m->cscale);
    free((void *)m->popular);
    free((void *)m->pop_score);
    free((void *)m->item_factors);
    free((void *)m->gram);
    reco_model_free((reco_model *)m->next);
    free(m);
}

uint32_t reco_model_items(const reco_model *m)
{
    return m->nitems;
}

reco_algo reco_model_algo(const reco_model *m)
{
    return m->algo;
}

/* ---- the packed form ---- */

/* Header, then each array in a fixed order, each starting 8-byte aligned. */
#define RECO_MAGIC UINT64_C(0x314f434552584d43) /* "CXMRECO1", little-endian */

typedef struct reco_blob_header {
    uint64_t magic;
    uint32_t algo, nitems, factors, pad;
    uint64_t nnz;
    float lambda, alpha;
} reco_blob_header;

typedef struct reco_layout {
    size_t nrow, nb, cnb, cscale, popular, pop_score, item_factors, gram, total;
} reco_layout;

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Offsets of every array; 0 for the ALS arrays of other models and the
 * neighbour arrays of ALS and popularity. */
static reco_layout layout_of(uint32_t nitems, uint64_t nnz, uint32_t factors, bool rows,
                             bool compact)
{
    reco_layout l = {0};
    size_t at = align8(sizeof(reco_blob_header));
    if (rows) {
        l.nrow = at;
        at += align8(((size_t)nitems + 1) * sizeof(uint64_t));
        l.nb = at;
        at += align8((size_t)nnz * sizeof(neighbour));
    }
    if (rows && compact) {
        l.cnb = at;
        at += align8((size_t)nnz * sizeof(reco_cnb));
        l.cscale = at;
        at += align8((size_t)nitems * sizeof(float));
    }
    l.popular = at;
    at += align8((size_t)nitems * sizeof(uint32_t));
    l.pop_score = at;
    at += align8((size_t)nitems * sizeof(float));
    if (factors) {
        l.item_factors = at;
        at += align8((size_t)nitems * factors * sizeof(float));
        l.gram = at;
        at += align8((size_t)factors * factors * sizeof(float));
    }
    l.total = at;
    return l;
}

static uint64_t model_nnz(const reco_model *m)
{
    return m->nrow ? m->nrow[m->nitems] : 0;
}

/* RECO_SEQ: this header, then its EASE model and its transition model,
 * each a blob of the form above at an 8-byte aligned offset. */
#define RECO_SEQ_MAGIC UINT64_C(0x324f434552584d43) /* "CXMRECO2" */

typedef struct reco_seq_header {
    uint64_t magic;
    uint32_t algo;
    float blend, hist_half, seq_half;
    uint64_t base_len, next_len;
} reco_seq_header;

static int pack_one(const reco_model *m, void **out, size_t *len);

static int pack_seq(const reco_model *m, void **out, size_t *len)
{
    reco_model base = *m, next = *m->next;
    base.algo = next.algo = RECO_EASE;
    base.next = NULL;
    next.popular = m->popular; /* every blob has popularity; one is read */
    next.pop_score = m->pop_score;
    void *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0, at = align8(sizeof(reco_seq_header));
    int rc = pack_one(&base, &b1, &l1);
    if (rc == 0)
        rc = pack_one(&next, &b2, &l2);
    char *b = rc == 0 ? calloc(1, at + align8(l1) + l2) : NULL;
    if (b) {
        reco_seq_header h = {RECO_SEQ_MAGIC, RECO_SEQ, m->blend, m->hist_half, m->seq_half, l1, l2};
        memcpy(b, &h, sizeof h);
        memcpy(b + at, b1, l1);
        memcpy(b + at + align8(l1), b2, l2);
        *out = b;
        *len = at + align8(l1) + l2;
    }
    free(b1);
    free(b2);
    return b ? 0 : CXM_ENOMEM;
}

int reco_model_pack(const reco_model *m, void **out, size_t *len)
{
    return m->next ? pack_seq(m, out, len) : pack_one(m, out, len);
}

static int pack_one(const reco_model *m, void **out, size_t *len)
{
    uint64_t nnz = model_nnz(m);
    reco_layout l = layout_of(m->nitems, nnz, m->factors, m->nrow != NULL, m->cnb != NULL);
    char *b = calloc(1, l.total);
    if (!b)
        return CXM_ENOMEM;
    reco_blob_header h = {RECO_MAGIC, (uint32_t)m->algo, m->nitems, m->factors, m->cnb != NULL,
                          nnz,        m->lambda,         m->alpha};
    memcpy(b, &h, sizeof h);
    if (m->nrow) {
        memcpy(b + l.nrow, m->nrow, ((size_t)m->nitems + 1) * sizeof *m->nrow);
        if (nnz) /* a model without neighbours has no row storage */
            memcpy(b + l.nb, m->nb, (size_t)nnz * sizeof *m->nb);
    }
    if (m->cnb) {
        memcpy(b + l.cnb, m->cnb, (size_t)nnz * sizeof *m->cnb);
        memcpy(b + l.cscale, m->cscale, (size_t)m->nitems * sizeof *m->cscale);
    }
    memcpy(b + l.popular, m->popular, (size_t)m->nitems * sizeof *m->popular);
    memcpy(b + l.pop_score, m->pop_score, (size_t)m->nitems * sizeof *m->pop_score);
    if (m->factors) {
        memcpy(b + l.item_factors, m->item_factors,
               (size_t)m->nitems * m->factors * sizeof *m->item_factors);
        memcpy(b + l.gram, m->gram, (size_t)m->factors * m->factors * sizeof *m->gram);
    }
    *out = b;
    *len = l.total;
    return 0;
}

static int view_one(const void *blob, size_t len, cxm_arena *a, const reco_model **out, char *err,
                    size_t errlen);

static int view_seq(const char *b, size_t len, cxm_arena *a, const reco_model **out, char *err,
                    size_t errlen)
{
    reco_seq_header h;
    memcpy(&h, b, sizeof h);
    size_t at = align8(sizeof h);
    if (h.algo != RECO_SEQ || h.base_len > len || h.next_len > len ||
        at + align8(h.base_len) + h.next_len != len || !(h.blend >= 0 && h.blend <= 1) ||
        !(h.hist_half >= 0 && h.hist_half <= 1e6) || !(h.seq_half > 0 && h.seq_half <= 1e6))
        return fail(err, errlen, CXM_EINVAL, "sequence model blob does not match its header");
    const reco_model *base, *next;
    int rc = view_one(b + at, h.base_len, a, &base, err, errlen);
    if (rc == 0)
        rc = view_one(b + at + align8(h.base_len), h.next_len, a, &next, err, errlen);
    if (rc != 0)
        return rc;
    if (base->algo != RECO_EASE || next->algo != RECO_EASE || next->nitems != base->nitems)
        return fail(err, errlen, CXM_EINVAL, "sequence model blob holds other models");
    reco_model *m = cxm_arena_alloc(a, sizeof *m);
    if (!m)
        return fail(err, errlen, CXM_ENOMEM, "out of memory for a model view");
    *m = *base;
    m->algo = RECO_SEQ;
    m->next = next;
    m->blend = h.blend;
    m->hist_half = h.hist_half;
    m->seq_half = h.seq_half;
    *out = m;
    return 0;
}

int reco_model_view(const void *blob, size_t len, cxm_arena *a, const reco_model **out, char *err,
                    size_t errlen)
{
    uint64_t magic;
    if (len < sizeof(reco_seq_header))
        return view_one(blob, len, a, out, err, errlen);
    const char *b = cxm_arena_aligned(a, blob, len, 8);
    if (!b)
        return fail(err, errlen, CXM_ENOMEM, "out of memory for a model view");
    memcpy(&magic, b, sizeof magic);
    return magic == RECO_SEQ_MAGIC ? view_seq(b, len, a, out, err, errlen)
                                   : view_one(b, len, a, out, err, errlen);
}

static int view_one(const void *blob, size_t len, cxm_arena *a, const reco_model **out, char *err,
                    size_t errlen)
{
    reco_blob_header h;
    if (len < sizeof h)
        return fail(err, errlen, CXM_EINVAL, "model blob shorter than its header");
    memcpy(&h, blob, sizeof h);
    bool known = h.algo >= RECO_POP && h.algo <= RECO_ALS;
    if (h.magic != RECO_MAGIC || !known || (h.factors != 0) != (h.algo == RECO_ALS) ||
        (h.nnz != 0 && !has_rows((reco_algo)h.algo)) || h.factors > 4096)
        return fail(err, errlen, CXM_EINVAL, "not a model blob of this version");
    bool rows = has_rows((reco_algo)h.algo), compact = h.pad == 1; /* pad: the compact flag */
    if (h.pad > 1 || (compact && (!rows || h.nitems > COMPACT_MAX_ITEMS)))
        return fail(err, errlen, CXM_EINVAL, "not a model blob of this version");
    /* nnz comes from the blob: bounded by the blob first, or its row sizes
     * could wrap around and a short blob match a huge header. */
    reco_layout l = layout_of(h.nitems, h.nnz, h.factors, rows, compact);
    if (h.nnz > len / sizeof(reco_neighbour) || l.total != len)
        return fail(err, errlen, CXM_EINVAL, "model blob size does not match its header");
    reco_model *m = cxm_arena_alloc(a, sizeof *m);
    const char *b = cxm_arena_aligned(a, blob, len, 8);
    if (!m || !b)
        return fail(err, errlen, CXM_ENOMEM, "out of memory for a model view");
    *m = (reco_model){.algo = (reco_algo)h.algo,
                      .nitems = h.nitems,
                      .factors = h.factors,
                      .lambda = h.lambda,
                      .alpha = h.alpha};
    if (l.nrow) {
        m->nrow = (const uint64_t *)(const void *)(b + l.nrow);
        m->nb = (const neighbour *)(const void *)(b + l.nb);
        if (m->nrow[h.nitems] != h.nnz)
            return fail(err, errlen, CXM_EINVAL, "model blob rows do not match its header");
    }
    if (l.cnb) {
        m->cnb = (const reco_cnb *)(const void *)(b + l.cnb);
        m->cscale = (const float *)(const void *)(b + l.cscale);
    }
    m->popular = (const uint32_t *)(const void *)(b + l.popular);
    m->pop_score = (const float *)(const void *)(b + l.pop_score);
    if (l.item_factors) {
        m->item_factors = (const float *)(const void *)(b + l.item_factors);
        m->gram = (const float *)(const void *)(b + l.gram);
    }
    *out = m;
    return 0;
}

/* ---- serving ---- */

static size_t work_floats(uint32_t factors)
{
    return (size_t)factors * factors + 2 * (size_t)factors;
}

int reco_scratch_fit(reco_scratch *s, const reco_model *m)
{
    if (m->nitems > s->nitems) {
        size_t n = m->nitems;
        float *score = calloc(n, sizeof *score), *score2 = calloc(n, sizeof *score2);
        uint8_t *mark = calloc(n, 1);
        uint32_t *touched = malloc((n + 1) * sizeof *touched); /* add_row writes one past */
        neighbour *heap = malloc(n * sizeof *heap);
        if (!score || !score2 || !mark || !touched || !heap) {
            free(score);
            free(score2);
            free(mark);
            free(touched);
            free(heap);
            return CXM_ENOMEM;
        }
        free(s->score);
        free(s->score2);
        free(s->mark);
        free(s->touched);
        free(s->heap);
        *s = (reco_scratch){m->nitems, s->factors, score, mark, touched, heap, s->work, score2};
    }
    if (m->factors > s->factors) {
        float *work = malloc(work_floats(m->factors) * sizeof *work);
        if (!work)
            return CXM_ENOMEM;
        free(s->work);
        s->work = work;
        s->factors = m->factors;
    }
    return 0;
}

int reco_scratch_create(const reco_model *m, reco_scratch **out)
{
    reco_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return CXM_ENOMEM;
    if (m && reco_scratch_fit(s, m) != 0) {
        reco_scratch_free(s);
        return CXM_ENOMEM;
    }
    *out = s;
    return 0;
}

void reco_scratch_free(reco_scratch *s)
{
    if (!s)
        return;
    free(s->score);
    free(s->score2);
    free(s->mark);
    free(s->touched);
    free(s->heap);
    free(s->work);
    free(s);
}

/* A min-heap of the best k so far, by score (ties: lower item first wins). */
static bool worse(neighbour a, neighbour b)
{
    return a.w < b.w || (a.w == b.w && a.item > b.item);
}

static void sift_down(neighbour *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(h[l], h[m]))
            m = l;
        if (r < n && worse(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        neighbour t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_offer(neighbour *h, size_t *n, size_t k, neighbour c)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = c;
        while (i > 0 && worse(h[i], h[(i - 1) / 2])) {
            neighbour t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (worse(h[0], c)) {
        h[0] = c;
        sift_down(h, *n, 0);
    }
}

/* score += wi * row, listing each item the first time it is reached.
 * Branch-free: whether an item was reached before is unpredictable, and a
 * mispredicted branch per neighbour cost more than the arithmetic. One
 * body for both row layouts; weight reads an entry's weight. */
#define ADD_ROW_BODY(weight)                                                                       \
    size_t n = *nt;                                                                                \
    for (; q < end; q++) {                                                                         \
        uint32_t j = q->item;                                                                      \
        touched[n] = j;                                                                            \
        n += mark[j] == 0;                                                                         \
        mark[j] = 1;                                                                               \
        score[j] += wi * (weight);                                                                 \
    }                                                                                              \
    *nt = n

static void add_row(const neighbour *q, const neighbour *end, float wi, float *restrict score,
                    uint8_t *restrict mark, uint32_t *restrict touched, size_t *nt)
{
    ADD_ROW_BODY(q->w);
}

/* How many neighbour entries the history's rows hold. */
static uint64_t row_entries(const reco_model *m, const uint32_t *hist, size_t n)
{
    uint64_t e = 0;
    for (size_t h = 0; h < n; h++)
        if (hist[h] < m->nitems)
            e += m->nrow[hist[h] + 1] - m->nrow[hist[h]];
    return e;
}

/* Dense: score += the history's rows, nothing else. The caller then scans
 * the whole catalogue, which costs less than tracking what was reached
 * when the rows reach a good part of it anyway. */
static void add_rows_dense(const reco_model *m, float *restrict score, const uint32_t *hist,
                           const float *w, size_t n)
{
    for (size_t h = 0; h < n; h++) {
        uint32_t i = hist[h];
        if (i >= m->nitems)
            continue;
        float wi = w ? w[h] : 1.0f;
        if (m->cnb) {
            const reco_cnb *q = m->cnb + m->nrow[i], *end = m->cnb + m->nrow[i + 1];
            for (wi *= m->cscale[i]; q < end; q++)
                score[q->item] += wi * (float)q->q;
            continue;
        }
        for (const neighbour *q = m->nb + m->nrow[i], *end = m->nb + m->nrow[i + 1]; q < end; q++)
            score[q->item] += wi * q->w;
    }
}

void reco__add_rows(const reco_model *m, const uint32_t *hist, const float *w, size_t n,
                    double half, float *restrict score)
{
    /* Positions past 6 half-lives weigh under 1/64: as in training
     * (recoseq.c), they are left out. */
    if (half > 0 && (double)n > 6 * half)
        n = (size_t)ceil(6 * half);
    for (size_t h = 0; h < n; h++) {
        float wi = (w ? w[h] : 1.0f) * (half > 0 ? (float)exp2(-(double)h / half) : 1.0f);
        add_rows_dense(m, score, hist + h, &wi, 1);
    }
}

/* add_row over a compact row (wi already times the row's scale). */
static void add_crow(const reco_cnb *q, const reco_cnb *end, float wi, float *restrict score,
                     uint8_t *restrict mark, uint32_t *restrict touched, size_t *nt)
{
    ADD_ROW_BODY((float)q->q);
}

/* Sparse: also list each item reached (mark 1) in s->touched. */
static size_t add_rows_sparse(const reco_model *m, reco_scratch *s, const uint32_t *hist,
                              const float *w, size_t n)
{
    size_t nt = 0;
    for (size_t h = 0; h < n; h++) {
        uint32_t i = hist[h];
        if (i >= m->nitems)
            continue;
        float wi = w ? w[h] : 1.0f;
        if (m->cnb)
            add_crow(m->cnb + m->nrow[i], m->cnb + m->nrow[i + 1], wi * m->cscale[i], s->score,
                     s->mark, s->touched, &nt);
        else
            add_row(m->nb + m->nrow[i], m->nb + m->nrow[i + 1], wi, s->score, s->mark, s->touched,
                    &nt);
    }
    return nt;
}

static void mark_items(reco_scratch *s, const uint32_t *items, size_t n, uint8_t mark)
{
    for (size_t i = 0; i < n; i++)
        if (items[i] < s->nitems)
            s->mark[items[i]] = mark;
}

/* Offer every listed (or, when list is NULL, every) item that is neither
 * consumed nor excluded. Neighbour models offer only positive scores: a
 * score <= 0 is evidence against, ranked below popularity. ALS scores
 * every item and ranks them all. */
static void offer_scored(const reco_model *m, reco_scratch *s, const uint32_t *list, size_t n,
                         size_t k, size_t *nh)
{
    /* Below the heap's worst, nothing gets in: most items stop at that
     * one comparison. */
    float floor = m->algo == RECO_ALS ? -INFINITY : FLT_MIN;
    for (size_t t = 0; t < n; t++) {
        uint32_t j = list ? list[t] : (uint32_t)t;
        float sc = s->score[j];
        if (sc >= floor && s->mark[j] != 2) {
            heap_offer(s->heap, nh, k, (neighbour){j, sc});
            if (*nh == k && s->heap[0].w > floor)
                floor = s->heap[0].w;
        }
    }
}

/* Fill from popularity (cold start, short histories), below every model
 * score: items not excluded and not already offered. */
static void offer_popular(const reco_model *m, reco_scratch *s, size_t k, size_t *nh)
{
    for (uint32_t r = 0; *nh < k && r < m->nitems; r++) {
        uint32_t j = m->popular[r];
        if (s->mark[j] != 2 && !(s->score[j] > 0))
            heap_offer(s->heap, nh, k, (neighbour){j, -(float)r - 1});
    }
}

/* The best nh, best first (the heap pops worst first: fill from the back). */
static size_t drain_heap(reco_scratch *s, size_t nh, uint32_t *out_items, float *out_scores)
{
    size_t out = nh;
    while (nh > 0) {
        out_items[nh - 1] = s->heap[0].item;
        if (out_scores)
            out_scores[nh - 1] = s->heap[0].w;
        s->heap[0] = s->heap[--nh];
        sift_down(s->heap, nh, 0);
    }
    return out;
}

/* Scan the whole catalogue once the rows hold at least half as many
 * entries as it has items: below that, listing what was reached is cheaper
 * (9.7k items, one history item: EASE 3.9 us at ratio 2 against 6.8 us at
 * 16; from 5 history items on, the ratio makes no difference). */
#define RECO_DENSE_RATIO 2

size_t reco_recommend(const reco_model *m, reco_scratch *s, const uint32_t *hist, const float *w,
                      size_t n, const uint32_t *exclude, size_t nexclude, size_t k,
                      uint32_t *out_items, float *out_scores)
{
    if (s->nitems < m->nitems || s->factors < m->factors)
        return 0;
    if (k > m->nitems)
        k = m->nitems;
    size_t nh = 0, nt = 0;
    bool als = m->algo == RECO_ALS, rows = m->nrow != NULL;
    bool dense = rows && (m->next || RECO_DENSE_RATIO * row_entries(m, hist, n) >= m->nitems);
    if (m->next) {
        /* Without a blend, EASE's rows with positional weights alone. */
        reco__add_rows(m, hist, w, n, m->hist_half, s->score);
        if (m->blend > 0)
            reco__add_rows(m->next, hist, NULL, n, m->seq_half, s->score2);
        mark_items(s, hist, n, 2);
        mark_items(s, exclude, nexclude, 2);
        if (m->blend > 0)
            reco_seq_blend(s, m->nitems, m->blend);
    } else if (dense)
        add_rows_dense(m, s->score, hist, w, n);
    else if (rows)
        nt = add_rows_sparse(m, s, hist, w, n);
    else if (als)
        dense = reco_als_score(m, s, hist, w, n); /* every item, or none */
    mark_items(s, hist, n, 2);
    mark_items(s, exclude, nexclude, 2);
    offer_scored(m, s, dense ? NULL : s->touched, dense ? m->nitems : nt, k, &nh);
    if (!(als && dense)) /* ALS offered every item it scored */
        offer_popular(m, s, k, &nh);
    /* Leave the scratch clean for the next call. */
    if (dense)
        memset(s->score, 0, m->nitems * sizeof *s->score);
    for (size_t t = 0; t < nt; t++) {
        s->score[s->touched[t]] = 0;
        s->mark[s->touched[t]] = 0;
    }
    mark_items(s, hist, n, 0);
    mark_items(s, exclude, nexclude, 0);
    return drain_heap(s, nh, out_items, out_scores);
}
