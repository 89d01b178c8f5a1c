/*
 * evalmetrics.h - ranking metrics at k for the offline evaluator (cxm-eval),
 * with binary relevance.
 *
 * A user's relevant set is all of their test interactions, including items
 * the model has never seen (those count in the denominators and simply cannot
 * be hit, so a catalogue gap shows up as lower recall instead of vanishing).
 * For a ranked list r_1..r_k, hit_i = 1 when r_i is relevant, R = |relevant|:
 *   precision@k = hits / k             (k, not the list length: a model that
 *                                       returns fewer items is not rewarded)
 *   recall@k    = hits / R             (denominator |relevant|, not min(R, k),
 *                                       so recall@k < 1 whenever R > k)
 *   NDCG@k      = DCG / IDCG, DCG = sum hit_i / log2(i + 1),
 *                 IDCG = sum_{i=1..min(R,k)} 1 / log2(i + 1)
 *   AP@k        = sum_i hit_i * precision@i / min(R, k); MAP@k its mean
 * Means are taken over the users passed to eval_acc_add (the caller passes
 * those with at least one training and one test interaction).
 */
#ifndef CXM_EVALMETRICS_H
#define CXM_EVALMETRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct eval_user_metrics {
    double precision, recall, ndcg, ap;
} eval_user_metrics;

/* Score one ranked list recs[0..nrecs) (nrecs <= k; fewer counts as misses)
 * against relevant[0..nrel), sorted ascending and unique, nrel >= 1. */
void eval_user_score(const uint32_t *recs, size_t nrecs, const uint32_t *relevant, size_t nrel,
                     size_t k, eval_user_metrics *out);

/* Running sums over users, and the distinct items recommended. */
typedef struct eval_acc {
    double precision, recall, ndcg, ap;
    uint64_t users;
    uint8_t *seen;   /* one flag per catalogue item */
    uint32_t nitems; /* catalogue (training) items */
    uint32_t nseen;  /* distinct items recommended */
} eval_acc;

/* Returns 0 or CXM_ENOMEM. */
int eval_acc_init(eval_acc *a, uint32_t nitems);
/* Add one user's list and its metrics; recommended items >= nitems are
 * ignored for coverage (the caller checks the model's contract). */
void eval_acc_add(eval_acc *a, const uint32_t *recs, size_t nrecs, const eval_user_metrics *m);
void eval_acc_free(eval_acc *a);

typedef struct eval_summary {
    double precision, recall, ndcg, map;
    double coverage; /* distinct recommended items / training items */
    uint64_t users;
} eval_summary;

/* The means (all 0 when no user was added). */
void eval_acc_summary(const eval_acc *a, eval_summary *out);

/* The q-quantile (0..1) of v[0..n), nearest rank; sorts v. 0 when n is 0. */
double eval_quantile(double *v, size_t n, double q);

#endif
