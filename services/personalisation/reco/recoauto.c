/*
 * recoauto.c - reco_train_auto (reco.h): choose EASE alone, or its blend
 * with the transition model and positional recency, on validation carved
 * from the training data only, then train the choice on all of it.
 *
 * The split asks the question the model will answer: TEMPORAL holds out
 * each customer's latest AUTO_HOLD of interactions, RANDOM a random share.
 * One EASE model and one transition model per seq_lambda (from one
 * accumulation of S^T S and S^T T) are trained on the rest; every
 * validated customer's EASE scores (per hist_half) and transition scores
 * (per seq_lambda) are computed once, and every blend weight is ranked
 * from them as serving would (z-scaled, history excluded, popularity
 * filling a short list). EASE alone is one of the candidates, and a
 * simpler configuration is kept unless a richer one beats it clearly
 * (auto_best), so the choice does not chase validation noise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "personalisation/reco/reco.h"
#include "personalisation/reco/reco_impl.h"

#define AUTO_HOLD 0.2        /* share of each validated customer held out */
#define AUTO_MIN_HISTORY 5   /* customers with fewer are not validated */
#define AUTO_MIN_CUSTOMERS 5 /* fewer validated customers: EASE, no choice */
#define AUTO_K 10

/* The grid. hist_half 0 is EASE's weights as they are; blend 0 (with
 * hist_half 0) is EASE alone. */
static const double auto_lambdas[] = {1, 4};
static const double auto_hist_halves[] = {0, 8, 32};
#define AUTO_BLENDS 11 /* 0, 0.1, ..., 1 */
#define AUTO_NL (sizeof auto_lambdas / sizeof auto_lambdas[0])
#define AUTO_NH (sizeof auto_hist_halves / sizeof auto_hist_halves[0])
#define AUTO_CONFIGS (AUTO_NL * AUTO_NH * AUTO_BLENDS)

typedef struct auto_split {
    reco_matrix train; /* x without the held-out interactions */
    uint32_t *users;   /* validated customers */
    size_t nusers;
    uint64_t *held_row; /* nusers + 1 offsets into held */
    uint32_t *held;
} auto_split;

static double auto_clock(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Mark which of u's positions are held out (hold[position - row[u]]). */
static uint64_t auto_hold(const reco_matrix *x, uint32_t u, reco_validate v, uint64_t *pos,
                          uint8_t *hold, uint64_t *rng)
{
    uint64_t n = reco__newest_first(x, u, pos), nheld = (uint64_t)llround(AUTO_HOLD * (double)n);
    nheld = nheld ? nheld : 1;
    memset(hold, 0, n);
    if (v == RECO_VALIDATE_RANDOM) /* a partial Fisher-Yates draw */
        for (uint64_t i = 0; i < nheld; i++) {
            uint64_t j = i + cxm_splitmix64(rng) % (n - i), t = pos[i];
            pos[i] = pos[j];
            pos[j] = t;
        }
    for (uint64_t i = 0; i < nheld; i++) /* newest first: the latest nheld */
        hold[pos[i] - x->row[u]] = 1;
    return nheld;
}

static void auto_split_free(auto_split *s)
{
    free(s->train.row);
    free(s->train.items);
    free(s->train.weights);
    free(s->train.ts);
    free(s->users);
    free(s->held_row);
    free(s->held);
    *s = (auto_split){0};
}

static int auto_carve(const reco_matrix *x, reco_validate v, uint64_t seed, auto_split *s)
{
    uint64_t nnz = x->row[x->nusers], longest = reco__longest_row(x), rng = seed;
    reco_matrix *t = &s->train;
    *t = (reco_matrix){.nusers = x->nusers, .nitems = x->nitems};
    t->row = calloc((size_t)x->nusers + 1, sizeof *t->row);
    t->items = malloc((nnz + 1) * sizeof *t->items);
    t->weights = malloc((nnz + 1) * sizeof *t->weights);
    t->ts = x->ts ? malloc((nnz + 1) * sizeof *t->ts) : NULL;
    s->users = malloc(((size_t)x->nusers + 1) * sizeof *s->users);
    s->held_row = calloc((size_t)x->nusers + 2, sizeof *s->held_row);
    s->held = malloc((nnz + 1) * sizeof *s->held);
    uint64_t *pos = malloc((longest + 1) * sizeof *pos);
    uint8_t *hold = malloc(longest + 1);
    int rc = t->row && t->items && t->weights && (t->ts || !x->ts) && s->users && s->held_row &&
                     s->held && pos && hold
                 ? 0
                 : CXM_ENOMEM;
    uint64_t nt = 0, nh = 0;
    for (uint32_t u = 0; rc == 0 && u < x->nusers; u++) {
        uint64_t n = x->row[u + 1] - x->row[u];
        bool validated = n >= AUTO_MIN_HISTORY;
        if (validated)
            auto_hold(x, u, v, pos, hold, &rng);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t q = x->row[u] + i;
            if (validated && hold[i]) {
                s->held[nh++] = x->items[q];
                continue;
            }
            t->items[nt] = x->items[q];
            t->weights[nt] = x->weights[q];
            if (t->ts)
                t->ts[nt] = x->ts[q];
            nt++;
        }
        t->row[u + 1] = nt;
        if (validated) {
            s->users[s->nusers++] = u;
            s->held_row[s->nusers] = nh;
        }
    }
    free(pos);
    free(hold);
    return rc;
}

/* ---- ranking one validated customer under every configuration ---- */

typedef struct auto_eval {
    const reco_model *ease;
    const reco_model *next[AUTO_NL];
    const auto_split *split;
    double seq_half;
    float *e[AUTO_NH], *t[AUTO_NL]; /* score vectors, nitems each */
    uint8_t *mark;                  /* 1 history, 2 held out */
    uint64_t *pos;
    uint32_t *hist;
    float *w;
    double ndcg[AUTO_CONFIGS]; /* sums over the validated customers */
    float *per;                /* AUTO_CONFIGS x customers: each one's */
} auto_eval;

/* NDCG@AUTO_K of the top of fe * e + ft * t (positive scores, then
 * popularity), binary relevance: the held-out items (mark 2). */
static double auto_ndcg(const auto_eval *a, const float *e, float fe, const float *t, float ft,
                        size_t nheld)
{
    const reco_model *m = a->ease;
    uint32_t top[AUTO_K];
    float best[AUTO_K];
    size_t n = 0;
    for (uint32_t j = 0; j < m->nitems; j++) {
        float sc = fe * e[j] + ft * t[j];
        if (!(sc > 0) || a->mark[j] == 1 || (n == AUTO_K && sc <= best[n - 1]))
            continue;
        size_t at = n < AUTO_K ? n++ : AUTO_K - 1;
        for (; at > 0 && best[at - 1] < sc; at--) {
            best[at] = best[at - 1];
            top[at] = top[at - 1];
        }
        best[at] = sc;
        top[at] = j;
    }
    for (uint32_t r = 0; n < AUTO_K && r < m->nitems; r++) {
        uint32_t j = m->popular[r];
        bool taken = a->mark[j] == 1;
        for (size_t i = 0; i < n && !taken; i++)
            taken = top[i] == j;
        if (!taken)
            top[n++] = j;
    }
    double dcg = 0, ideal = 0;
    for (size_t i = 0; i < n; i++)
        dcg += a->mark[top[i]] == 2 ? 1 / log2((double)i + 2) : 0;
    for (size_t i = 0; i < AUTO_K && i < nheld; i++)
        ideal += 1 / log2((double)i + 2);
    return ideal > 0 ? dcg / ideal : 0;
}

static void auto_eval_user(auto_eval *a, size_t k)
{
    const auto_split *s = a->split;
    const reco_matrix *x = &s->train;
    uint32_t u = s->users[k], nitems = a->ease->nitems;
    uint64_t n = reco__newest_first(x, u, a->pos);
    for (uint64_t i = 0; i < n; i++) {
        a->hist[i] = x->items[a->pos[i]];
        a->w[i] = x->weights[a->pos[i]];
        a->mark[a->hist[i]] = 1;
    }
    size_t nheld = (size_t)(s->held_row[k + 1] - s->held_row[k]);
    for (uint64_t i = s->held_row[k]; i < s->held_row[k + 1]; i++)
        a->mark[s->held[i]] = 2;
    float sde[AUTO_NH], sdt[AUTO_NL];
    for (size_t h = 0; h < AUTO_NH; h++) {
        memset(a->e[h], 0, nitems * sizeof(float));
        reco__add_rows(a->ease, a->hist, a->w, n, auto_hist_halves[h], a->e[h]);
        sde[h] = (float)reco__sd(a->e[h], a->mark, 1, nitems);
    }
    for (size_t l = 0; l < AUTO_NL; l++) {
        memset(a->t[l], 0, nitems * sizeof(float));
        reco__add_rows(a->next[l], a->hist, NULL, n, a->seq_half, a->t[l]);
        sdt[l] = (float)reco__sd(a->t[l], a->mark, 1, nitems);
    }
    size_t c = 0;
    for (size_t l = 0; l < AUTO_NL; l++)
        for (size_t h = 0; h < AUTO_NH; h++)
            for (int b = 0; b < AUTO_BLENDS; b++, c++) {
                float blend = (float)b / (AUTO_BLENDS - 1);
                float fe = sde[h] > 0 ? (1 - blend) / sde[h] : 0;
                float ft = sdt[l] > 0 ? blend / sdt[l] : 0;
                double v = auto_ndcg(a, a->e[h], fe, a->t[l], ft, nheld);
                a->ndcg[c] += v;
                a->per[c * s->nusers + k] = (float)v;
            }
    for (uint64_t i = 0; i < n; i++)
        a->mark[a->hist[i]] = 0;
    for (uint64_t i = s->held_row[k]; i < s->held_row[k + 1]; i++)
        a->mark[s->held[i]] = 0;
}

static void auto_eval_free(auto_eval *a)
{
    for (size_t h = 0; h < AUTO_NH; h++)
        free(a->e[h]);
    for (size_t l = 0; l < AUTO_NL; l++)
        free(a->t[l]);
    free(a->per);
    free(a->mark);
    free(a->pos);
    free(a->hist);
    free(a->w);
}

static int auto_eval_all(auto_eval *a)
{
    uint32_t nitems = a->ease->nitems;
    const reco_matrix *x = &a->split->train;
    uint64_t longest = reco__longest_row(x);
    bool ok = (a->per = malloc((AUTO_CONFIGS * a->split->nusers + 1) * sizeof *a->per)) &&
              (a->mark = calloc((size_t)nitems + 1, 1)) && (a->pos = malloc((longest + 1) * 8)) &&
              (a->hist = malloc((longest + 1) * sizeof *a->hist)) &&
              (a->w = malloc((longest + 1) * sizeof *a->w));
    for (size_t h = 0; ok && h < AUTO_NH; h++)
        ok = (a->e[h] = malloc(((size_t)nitems + 1) * sizeof(float))) != NULL;
    for (size_t l = 0; ok && l < AUTO_NL; l++)
        ok = (a->t[l] = malloc(((size_t)nitems + 1) * sizeof(float))) != NULL;
    for (size_t k = 0; ok && k < a->split->nusers; k++)
        auto_eval_user(a, k);
    return ok ? 0 : CXM_ENOMEM;
}

/* ---- the choice ---- */

/* Train the validation models: EASE, and a transition model per lambda. */
static int auto_models(const auto_split *s, const reco_params *p, reco_model **ease,
                       reco_model **next, char *err, size_t errlen)
{
    int rc = reco_train(RECO_EASE, p, &s->train, ease, err, errlen);
    return rc ? rc
              : reco__seq_train_lambdas(&s->train, p, auto_lambdas, AUTO_NL, next, err, errlen);
}

/* How far above the noise a configuration must beat a simpler one to be
 * chosen over it: z standard errors of the customers' paired differences.
 * On MovieLens-small (temporal) the dozen best configurations lie within
 * 0.3% of each other while the sequence model beats EASE by 40%; on 240
 * customers whose order means nothing, positional weights "won" by 1.3%,
 * about one standard error. */
#define AUTO_Z 2.0

/* What a configuration adds to EASE alone: the transition model,
 * positional weights, both. */
static int auto_complexity(size_t config)
{
    size_t h = config / AUTO_BLENDS % AUTO_NH, b = config % AUTO_BLENDS;
    return (b > 0) + (auto_hist_halves[h] > 0);
}

/* Whether config top beats config c by more than AUTO_Z standard errors
 * of the mean of their per-customer differences. */
static bool auto_beats(const auto_eval *a, size_t top, size_t c)
{
    size_t n = a->split->nusers;
    const float *x = a->per + top * n, *y = a->per + c * n;
    double s = 0, q = 0;
    for (size_t k = 0; k < n; k++) {
        double d = (double)x[k] - y[k];
        s += d;
        q += d * d;
    }
    double mean = s / (double)n, var = n > 1 ? (q - s * mean) / (double)(n - 1) : 0;
    return mean > AUTO_Z * sqrt((var > 0 ? var : 0) / (double)n);
}

/* The best configuration on validation, unless a simpler one is as good
 * within the noise: then the best of the simplest such. */
static size_t auto_best(const auto_eval *a)
{
    size_t top = 0;
    for (size_t i = 1; i < AUTO_CONFIGS; i++)
        if (a->ndcg[i] > a->ndcg[top] + 1e-9)
            top = i;
    for (int level = 0; level < auto_complexity(top); level++) {
        size_t best = AUTO_CONFIGS;
        for (size_t i = 0; i < AUTO_CONFIGS; i++)
            if (auto_complexity(i) == level && (best == AUTO_CONFIGS || a->ndcg[i] > a->ndcg[best]))
                best = i;
        if (best < AUTO_CONFIGS && !auto_beats(a, top, best))
            return best;
    }
    return top;
}

static void auto_pick(const auto_eval *a, size_t nusers, reco_params *p, reco_choice *c)
{
    size_t best = auto_best(a);
    size_t l = best / (AUTO_NH * AUTO_BLENDS), h = best / AUTO_BLENDS % AUTO_NH;
    int b = (int)(best % AUTO_BLENDS);
    c->val_ndcg = a->ndcg[best] / (double)nusers;
    c->ease_ndcg = a->ndcg[0] / (double)nusers;
    /* Positional weights without the blend are a RECO_SEQ too (serving
     * skips its transition rows); EASE alone is plain EASE. */
    c->algo = b == 0 && auto_hist_halves[h] == 0 ? RECO_EASE : RECO_SEQ;
    p->seq_lambda = auto_lambdas[l];
    p->hist_half = auto_hist_halves[h];
    p->blend = (double)b / (AUTO_BLENDS - 1);
}

static int auto_choose(const reco_matrix *x, reco_validate v, uint64_t seed, reco_params *p,
                       reco_choice *c, char *err, size_t errlen)
{
    auto_split s = {0};
    reco_model *m = NULL, *next[AUTO_NL] = {0};
    auto_eval a = {0};
    int rc = auto_carve(x, v, seed, &s);
    c->val_customers = (uint32_t)s.nusers;
    if (rc == 0 && s.nusers < AUTO_MIN_CUSTOMERS) {
        snprintf(c->note, sizeof c->note,
                 "%zu customers with %d or more interactions to validate on (%d needed): EASE "
                 "without a choice",
                 s.nusers, AUTO_MIN_HISTORY, AUTO_MIN_CUSTOMERS);
        c->algo = RECO_EASE;
        auto_split_free(&s);
        return 0;
    }
    if (rc == 0)
        rc = auto_models(&s, p, &m, next, err, errlen);
    if (rc == 0) {
        a = (auto_eval){.ease = m, .split = &s, .seq_half = p->seq_half};
        for (size_t l = 0; l < AUTO_NL; l++)
            a.next[l] = next[l];
        rc = auto_eval_all(&a);
    }
    if (rc == 0)
        auto_pick(&a, s.nusers, p, c);
    auto_eval_free(&a);
    for (size_t l = 0; l < AUTO_NL; l++)
        reco_model_free(next[l]);
    reco_model_free(m);
    auto_split_free(&s);
    return rc;
}

int reco_train_auto(const reco_matrix *x, reco_validate v, uint64_t seed, const reco_params *base,
                    reco_model **out, reco_choice *c, char *err, size_t errlen)
{
    double t0 = auto_clock();
    reco_params p;
    if (base)
        p = *base;
    else
        reco_params_default(RECO_SEQ, &p);
    *c = (reco_choice){.algo = RECO_EASE, .validate = v};
    if (v != RECO_VALIDATE_TEMPORAL && v != RECO_VALIDATE_RANDOM) {
        snprintf(err, errlen, "validation must be temporal or random");
        return CXM_EINVAL;
    }
    int rc = 0;
    if (reco_ease_bytes(x) == 0) {
        snprintf(c->note, sizeof c->note,
                 "no item has 5 or more customers: popularity, no collaborative model");
        c->algo = RECO_POP;
    } else if (!reco__has_order(x)) {
        snprintf(c->note, sizeof c->note,
                 "the interactions carry no times (or all the same one): no order to learn "
                 "from, EASE without a choice");
    } else {
        rc = auto_choose(x, v, seed, &p, c, err, errlen);
    }
    if (rc == 0) {
        p.blend = c->algo == RECO_SEQ ? p.blend : 0;
        p.hist_half = c->algo == RECO_SEQ ? p.hist_half : 0;
        p.seq_lambda = p.seq_lambda > 0 ? p.seq_lambda : 1;
        c->params = p;
        rc = reco_train(c->algo, &p, x, out, err, errlen);
    }
    c->seconds = auto_clock() - t0;
    return rc;
}
