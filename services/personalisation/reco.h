/*
 * reco.h - the recommendation core: collaborative filtering over an
 * interaction matrix, ranking next-best-experience candidates.
 *
 * Training turns interactions (customer x item, with a weight) into a model;
 * serving scores one customer's history against it and returns the top k
 * items not yet consumed and not excluded. Algorithms:
 *   RECO_POP      popularity (the cold-start fallback), optionally time-decayed;
 *   RECO_ITEMKNN  item-item cosine with shrinkage, top-N neighbours per item;
 *   RECO_EASE     closed-form EASE (Cholesky of the regularised Gram matrix,
 *                 LAPACK), kept as top-N neighbours per item;
 *   RECO_ALS      implicit ALS with conjugate-gradient updates.
 * Items and users are dense indices 0..n-1; mapping external ids is the
 * caller's business.
 *
 * Threading: a model is immutable after training and may be shared; a
 * scratch belongs to one thread. reco_recommend allocates nothing.
 * Errors: 0 or a negative CXM_E* code, with a sentence in err.
 */
#ifndef CXM_RECO_H
#define CXM_RECO_H

#include <stddef.h>
#include <stdint.h>

/* Interactions as compressed rows: user u's items are
 * items[row[u] .. row[u + 1]), sorted ascending and unique, with weights. */
typedef struct reco_matrix {
    uint32_t nusers, nitems;
    uint64_t *row; /* nusers + 1 offsets */
    uint32_t *items;
    float *weights; /* > 0 */
    int64_t *ts;    /* interaction times (any unit, larger = later), or NULL */
} reco_matrix;

typedef enum reco_algo {
    RECO_POP = 1,
    RECO_ITEMKNN,
    RECO_EASE,
    RECO_ALS,
} reco_algo;

typedef struct reco_params {
    double lambda;       /* EASE/ALS regularisation */
    double shrink;       /* item-kNN similarity shrinkage */
    uint32_t neighbours; /* item-kNN / EASE: neighbours kept per item */
    uint32_t factors;    /* ALS */
    uint32_t iterations; /* ALS */
    double alpha;        /* ALS confidence scale */
} reco_params;

/* Defaults that work for the algorithm. */
void reco_params_default(reco_algo algo, reco_params *p);

typedef struct reco_model reco_model;

int reco_train(reco_algo algo, const reco_params *p, const reco_matrix *train, reco_model **out,
               char *err, size_t errlen);
void reco_model_free(reco_model *m);

/* Per-thread working memory for one catalogue size. */
typedef struct reco_scratch reco_scratch;
int reco_scratch_create(uint32_t nitems, reco_scratch **out);
void reco_scratch_free(reco_scratch *s);

/* Score a history (items hist[0..n) with weights w, NULL = all 1) and write
 * the best k items, best first, into out_items/out_scores (k entries each);
 * returns how many were written. Items in the history and in exclude
 * (any order) are never returned. */
size_t reco_recommend(const reco_model *m, reco_scratch *s, const uint32_t *hist, const float *w,
                      size_t n, const uint32_t *exclude, size_t nexclude, size_t k,
                      uint32_t *out_items, float *out_scores);

#endif
