/*
 * evalmetrics.c - ranking metrics at k (see evalmetrics.h).
 */
#include "personalisation/eval/evalmetrics.h"

#include <math.h>
#include <stdlib.h>

#include "cxm/err.h"

static int eval_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int eval_is_relevant(uint32_t item, const uint32_t *relevant, size_t nrel)
{
    return bsearch(&item, relevant, nrel, sizeof *relevant, eval_cmp_u32) != NULL;
}

/* Ideal DCG: every one of the first min(R, k) ranks is a hit. */
static double eval_idcg(size_t nrel, size_t k)
{
    double idcg = 0;
    for (size_t i = 0; i < nrel && i < k; i++)
        idcg += 1.0 / log2((double)i + 2);
    return idcg;
}

void eval_user_score(const uint32_t *recs, size_t nrecs, const uint32_t *relevant, size_t nrel,
                     size_t k, eval_user_metrics *out)
{
    *out = (eval_user_metrics){0};
    if (nrel == 0 || k == 0)
        return;
    size_t hits = 0;
    double dcg = 0, ap = 0;
    for (size_t i = 0; i < nrecs && i < k; i++) {
        if (!eval_is_relevant(recs[i], relevant, nrel))
            continue;
        hits++;
        dcg += 1.0 / log2((double)i + 2); /* rank i + 1 */
        ap += (double)hits / (double)(i + 1);
    }
    size_t denom = nrel < k ? nrel : k;
    out->precision = (double)hits / (double)k;
    out->recall = (double)hits / (double)nrel;
    out->ndcg = dcg / eval_idcg(nrel, k);
    out->ap = ap / (double)denom;
}

int eval_acc_init(eval_acc *a, uint32_t nitems)
{
    *a = (eval_acc){.nitems = nitems};
    a->seen = calloc(nitems ? nitems : 1, 1);
    return a->seen ? 0 : CXM_ENOMEM;
}

void eval_acc_add(eval_acc *a, const uint32_t *recs, size_t nrecs, const eval_user_metrics *m)
{
    a->precision += m->precision;
    a->recall += m->recall;
    a->ndcg += m->ndcg;
    a->ap += m->ap;
    a->users++;
    for (size_t i = 0; i < nrecs; i++) {
        if (recs[i] < a->nitems && !a->seen[recs[i]]) {
            a->seen[recs[i]] = 1;
            a->nseen++;
        }
    }
}

void eval_acc_free(eval_acc *a)
{
    free(a->seen);
    *a = (eval_acc){0};
}

void eval_acc_summary(const eval_acc *a, eval_summary *out)
{
    *out = (eval_summary){.users = a->users};
    if (a->nitems)
        out->coverage = (double)a->nseen / (double)a->nitems;
    if (a->users == 0)
        return;
    double n = (double)a->users;
    out->precision = a->precision / n;
    out->recall = a->recall / n;
    out->ndcg = a->ndcg / n;
    out->map = a->ap / n;
}

static int eval_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double eval_quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, eval_cmp_double);
    size_t rank = (size_t)ceil(q * (double)n); /* nearest rank, 1-based */
    return v[rank == 0 ? 0 : (rank > n ? n - 1 : rank - 1)];
}
