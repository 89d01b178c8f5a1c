/*
 * recoseq.c - RECO_SEQ (reco.h): what comes next in a customer's sequence.
 *
 * The transition model, in the spirit of SLIST (Choi et al., "Session-aware
 * Linear Item-Item Models for Session-based Recommendation", WWW 2021):
 * each customer's history in time order is cut at every position; each
 * cut gives a row "recency-weighted prefix -> the items that came after it",
 * S (prefixes) and T (suffixes), and B = (S^T S + lambda I)^-1 S^T T is
 * solved in closed form (Cholesky, LAPACK), then pruned to sparse rows
 * like EASE's. Serving adds the rows of the latest items weighted by
 * position, z-scales that and EASE's scores per customer and blends them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "personalisation/reco/reco.h"
#include "personalisation/reco/reco_impl.h"

extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
extern void spotrs_(const char *uplo, const int *n, const int *nrhs, const float *a, const int *lda,
                    float *b, const int *ldb, int *info);

/* Every position of a history is a cut (temporal split, NDCG@10: at most
 * 64 cuts per customer, spread evenly, gave 0.171 where every position
 * gives 0.179). The suffix weights halve every SEQ_SUFFIX_HALF positions
 * (1: 0.1781, 3: 0.1790, 10: 0.1793; a flat suffix lost 0.015): what
 * comes next matters more than what comes much later, and 3 keeps the
 * suffix window short. */
#define SEQ_SUFFIX_HALF 3.0
/* Prefix and suffix lengths: SEQ_WINDOW half-lives (weights down to 1/64;
 * 10 half-lives gave the same NDCG, 4 lost
 * 0.001), at most SEQ_WINDOW_MAX positions. */
#define SEQ_WINDOW 6
/* The transition rows keep 30% of the neighbours EASE's do: only the
 * latest few dozen items' rows are read, and pruning them harder costs
 * little (temporal NDCG@10 at EASE's 1000: 1000 0.1783, 300 0.1786, 100
 * 0.1709, 30 0.1604). */
#define SEQ_NEIGHBOURS_PERMILLE 300
#define SEQ_WINDOW_MAX 100

typedef struct seq_ctx {
    const reco_matrix *x;
    reco_dense *e;
    float *gram;     /* S^T S, lower triangle (column-major) */
    float *rhs;      /* S^T T, column-major: (prefix item, target item) */
    uint32_t *order; /* one customer's modelled items, oldest first */
    uint64_t *pos;   /* their positions in x, newest first */
    double prefix_half, suffix_half;
    size_t pw, sw;                                                /* window lengths */
    float pdecay[2 * SEQ_WINDOW_MAX], sdecay[2 * SEQ_WINDOW_MAX]; /* 2^(-t / half) */
    float geo[SEQ_WINDOW_MAX];                                    /* seq_user's sums */
    float pair[2 * SEQ_WINDOW_MAX];
} seq_ctx;

static int newest_first(const void *a, const void *b, void *ctx)
{
    const reco_matrix *x = ctx;
    uint64_t p = *(const uint64_t *)a, q = *(const uint64_t *)b;
    int64_t tp = x->ts ? x->ts[p] : 0, tq = x->ts ? x->ts[q] : 0;
    if (tp != tq)
        return tp > tq ? -1 : 1;
    return (x->items[p] < x->items[q]) - (x->items[p] > x->items[q]);
}

uint64_t reco__newest_first(const reco_matrix *x, uint32_t u, uint64_t *pos)
{
    uint64_t n = x->row[u + 1] - x->row[u];
    for (uint64_t i = 0; i < n; i++)
        pos[i] = x->row[u] + i;
    qsort_r(pos, n, sizeof *pos, newest_first, (void *)x);
    return n;
}

/* Customer u's modelled items, oldest first (ties: the smaller item
 * first); their count. */
static uint32_t seq_of(seq_ctx *c, uint32_t u)
{
    const reco_matrix *x = c->x;
    uint64_t n = reco__newest_first(x, u, c->pos);
    uint32_t len = 0;
    for (uint64_t i = n; i-- > 0;) {
        int32_t d = c->e->dense_of[x->items[c->pos[i]]];
        if (d >= 0)
            c->order[len++] = (uint32_t)d;
    }
    return len;
}

static size_t window(double half)
{
    double w = ceil(SEQ_WINDOW * half);
    return w > SEQ_WINDOW_MAX ? SEQ_WINDOW_MAX : (size_t)w;
}

/* Every cut of seq[0..len) at once. Cut c's prefix row weighs position
 * a < c by d^(c-1-a) within pw positions, its suffix row position b >= c
 * by f^(b-c) within sw (d, f the two decays). Summed over the cuts, a pair
 * of positions a <= b adds to S^T S
 *   d^(b-a) * sum_{k=0..K} d^(2k),  K = min(pw-1-(b-a), len-2-b),
 * and a pair a < b to S^T T (prefix a, suffix b) a weight of b - a alone:
 *   sum over j = c - a in [max(1, b-a-sw+1), min(b-a, pw)] of
 *   d^(j-1) f^(b-a-j).
 * So one pass over pairs within reach gives what one pass per cut did,
 * the same sums, in O(len * window) instead of O(len * window^2). */
static void seq_user(seq_ctx *c, const uint32_t *seq, size_t len)
{
    size_t n = c->e->n, pw = c->pw, reach = c->pw + c->sw - 1;
    for (size_t b = 0; b < len; b++) {
        size_t j = seq[b];
        for (size_t a = b + 1 > pw ? b + 1 - pw : 0; b + 2 <= len && a <= b; a++) {
            size_t delta = b - a, k = pw - 1 - delta < len - 2 - b ? pw - 1 - delta : len - 2 - b;
            size_t i = seq[a], lo = i < j ? i : j, hi = i < j ? j : i;
            c->gram[lo * n + hi] += c->pdecay[delta] * c->geo[k];
        }
        for (size_t a = b > reach ? b - reach : 0; a < b; a++)
            c->rhs[j * n + seq[a]] += c->pair[b - a];
    }
}

/* The weight tables of seq_user. */
static void seq_tables(seq_ctx *c)
{
    c->pw = window(c->prefix_half);
    c->sw = window(c->suffix_half);
    for (size_t t = 0; t < 2 * SEQ_WINDOW_MAX; t++) {
        c->pdecay[t] = (float)exp2(-(double)t / c->prefix_half);
        c->sdecay[t] = (float)exp2(-(double)t / c->suffix_half);
    }
    double geo = 0;
    for (size_t k = 0; k < SEQ_WINDOW_MAX; k++) {
        geo += exp2(-2.0 * (double)k / c->prefix_half);
        c->geo[k] = (float)geo;
    }
    for (size_t delta = 1; delta < 2 * SEQ_WINDOW_MAX; delta++) {
        double w = 0;
        size_t lo = delta + 1 > c->sw ? delta + 1 - c->sw : 1, hi = delta < c->pw ? delta : c->pw;
        for (size_t t = lo; t <= hi; t++)
            w += (double)c->pdecay[t - 1] * c->sdecay[delta - t];
        c->pair[delta] = (float)w;
    }
}

static void seq_accumulate(seq_ctx *c)
{
    for (uint32_t u = 0; u < c->x->nusers; u++) {
        uint32_t len = seq_of(c, u);
        if (len >= 2)
            seq_user(c, c->order, len);
    }
}

/* B = (G + lambda mean(diag G) I)^-1 R into b, G = S^T S (lower triangle)
 * and R = S^T T left as they are (one accumulation serves every lambda). */
static int seq_solve(const seq_ctx *c, double lambda, float *g, float *b, char *err, size_t errlen)
{
    size_t n = c->e->n;
    memcpy(g, c->gram, n * n * sizeof *g);
    memcpy(b, c->rhs, n * n * sizeof *b);
    double diag = 0;
    for (size_t i = 0; i < n; i++)
        diag += g[i * n + i];
    float ridge = (float)(lambda * (diag > 0 ? diag / (double)n : 1));
    for (size_t i = 0; i < n; i++)
        g[i * n + i] += ridge;
    int nn = (int)n, info = 0;
    spotrf_("L", &nn, g, &nn, &info);
    if (info == 0)
        spotrs_("L", &nn, &nn, g, &nn, b, &nn, &info);
    if (info != 0) {
        snprintf(err, errlen,
                 "transition model: S^T S + lambda I is not positive definite; "
                 "raise seq_lambda");
        return CXM_EINTERNAL;
    }
    return 0;
}

/* S^T S and S^T T of x's histories into c (its e initialised). */
static int seq_build(seq_ctx *c, const reco_matrix *x)
{
    size_t n = c->e->n;
    if (n == 0) /* nothing modelled, or no order: nothing to learn */
        return 0;
    uint64_t longest = reco__longest_row(x);
    c->gram = calloc(n * n + 1, sizeof *c->gram);
    c->rhs = calloc(n * n + 1, sizeof *c->rhs);
    c->order = malloc((longest + 1) * sizeof *c->order);
    c->pos = malloc((longest + 1) * sizeof *c->pos);
    if (!c->gram || !c->rhs || !c->order || !c->pos)
        return CXM_ENOMEM;
    seq_tables(c);
    seq_accumulate(c);
    return 0;
}

bool reco__has_order(const reco_matrix *x)
{
    uint64_t nnz = x->row[x->nusers];
    for (uint64_t i = 1; x->ts && i < nnz; i++)
        if (x->ts[i] != x->ts[0])
            return true;
    return false;
}

/* One transition model per lambda: rows-only models in next[0..nl). Data
 * without an order gives empty ones (a "sequence" would be the order of
 * item ids): the blend is then EASE's alone. */
int reco__seq_train_lambdas(const reco_matrix *x, const reco_params *p, const double *lambdas,
                            size_t nl, reco_model **next, char *err, size_t errlen)
{
    reco_dense e;
    seq_ctx c = {.x = x, .e = &e, .prefix_half = p->seq_half, .suffix_half = SEQ_SUFFIX_HALF};
    int rc = reco__dense_init(&e, x);
    if (rc == 0 && !reco__has_order(x))
        e.n = 0;
    if (rc == 0)
        rc = seq_build(&c, x);
    /* e.g (EASE's Gram matrix, unused here) holds each lambda's B. */
    float *g = rc == 0 ? malloc(((size_t)e.n * e.n + 1) * sizeof *g) : NULL;
    if (rc == 0 && !g)
        rc = CXM_ENOMEM;
    e.direct = true;
    uint32_t keep = (uint32_t)((uint64_t)p->neighbours * SEQ_NEIGHBOURS_PERMILLE / 1000);
    for (size_t l = 0; l < nl; l++)
        next[l] = NULL;
    for (size_t l = 0; rc == 0 && l < nl; l++) {
        if (e.n > 0)
            rc = seq_solve(&c, lambdas[l], g, e.g, err, errlen);
        next[l] = rc == 0 ? calloc(1, sizeof **next) : NULL;
        if (rc == 0 && !next[l])
            rc = CXM_ENOMEM;
        if (rc == 0) {
            *next[l] = (reco_model){.algo = RECO_EASE, .nitems = x->nitems, .owned = true};
            rc = reco__dense_rows(&e, keep ? keep : 1, p, next[l]);
        }
    }
    free(g);
    free(c.gram);
    free(c.rhs);
    free(c.order);
    free(c.pos);
    reco__dense_free(&e);
    return rc;
}

int reco_seq_train(reco_model *m, const reco_matrix *x, const reco_params *p, char *err,
                   size_t errlen)
{
    reco_model *next = NULL;
    int rc = reco__seq_train_lambdas(x, p, &p->seq_lambda, 1, &next, err, errlen);
    m->next = next;
    m->blend = (float)p->blend;
    m->hist_half = (float)p->hist_half;
    m->seq_half = (float)p->seq_half;
    return rc;
}

uint64_t reco__longest_row(const reco_matrix *x)
{
    uint64_t longest = 0;
    for (uint32_t u = 0; u < x->nusers; u++)
        longest = x->row[u + 1] - x->row[u] > longest ? x->row[u + 1] - x->row[u] : longest;
    return longest;
}

double reco__sd(const float *v, const uint8_t *mark, uint8_t skip, uint32_t n)
{
    double count = 0, s = 0, q = 0;
    for (uint32_t j = 0; j < n; j++)
        if (mark[j] != skip) {
            count++;
            s += v[j];
            q += (double)v[j] * v[j];
        }
    double var = count > 0 ? q / count - (s / count) * (s / count) : 0;
    return var > 0 ? sqrt(var) : 0;
}

void reco_seq_blend(const reco_scratch *s, uint32_t nitems, float blend)
{
    double sd1 = reco__sd(s->score, s->mark, 2, nitems),
           sd2 = reco__sd(s->score2, s->mark, 2, nitems);
    /* A model that reached nothing adds nothing. */
    float f1 = sd1 > 0 ? (float)((1 - blend) / sd1) : 0;
    float f2 = sd2 > 0 ? (float)(blend / sd2) : 0;
    for (uint32_t j = 0; j < nitems; j++) {
        s->score[j] = f1 * s->score[j] + f2 * s->score2[j];
        s->score2[j] = 0;
    }
}
