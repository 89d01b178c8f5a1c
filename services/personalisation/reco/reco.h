/*
 * reco.h - the recommendation core: collaborative filtering over an
 * interaction matrix, ranking next-best-experience candidates.
 *
 * Training turns interactions (customer x item, with a weight) into a model;
 * serving scores one customer's history against it and returns the top k
 * items not yet consumed and not excluded. Algorithms:
 *   RECO_POP      popularity (the cold-start fallback), optionally time-decayed;
 *   RECO_ITEMKNN  item-item cosine with shrinkage, or BM25-weighted
 *                 co-occurrence; top-N neighbours per item;
 *   RECO_EASE     closed-form EASE (Cholesky of the regularised Gram matrix,
 *                 LAPACK), kept as top-N neighbours per item;
 *   RECO_ALS      implicit ALS with conjugate-gradient updates;
 *   RECO_SEQ      sequence-aware: EASE blended with a prefix -> suffix
 *                 transition model (in the spirit of SLIST, Choi et al.,
 *                 WWW 2021), the history weighted by position (recoseq.c).
 * Items and users are dense indices 0..n-1; mapping external ids is the
 * caller's business.
 *
 * Threading: a model is immutable after training and may be shared; a
 * scratch belongs to one thread. reco_recommend allocates nothing.
 * Errors: 0 or a negative CXM_E* code, with a sentence in err.
 */
#ifndef CXM_RECO_H
#define CXM_RECO_H

#include <stdbool.h>
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
    RECO_SEQ,
} reco_algo;

typedef enum reco_knn_weighting {
    RECO_KNN_COSINE = 0, /* cosine with shrinkage */
    RECO_KNN_BM25,       /* BM25-weighted co-occurrence */
} reco_knn_weighting;

typedef struct reco_params {
    double lambda; /* EASE/ALS regularisation */
    double shrink; /* item-kNN cosine shrinkage */
    reco_knn_weighting knn_weighting;
    uint32_t neighbours; /* item-kNN / EASE: neighbours kept per item */
    uint32_t factors;    /* ALS */
    uint32_t iterations; /* ALS */
    double alpha;        /* ALS confidence scale */
    double half_life;    /* popularity: weight halves every half_life ts
                            units before the newest interaction; 0 = none */
    bool full_precision; /* item-kNN / EASE: serve from the 32-bit rows, not
                            the 16-bit copy (reco.c), to measure the copy */
    /* RECO_SEQ. Histories are ranked newest first (reco_recommend); a
     * position is an item's index in that order. Measured on
     * MovieLens-small with cxm-eval, NDCG@10, the others at the automatic
     * choice (seq_lambda 4, seq_half 8, hist_half 0, blend 0.6): temporal
     * split 0.1790 (EASE alone 0.1345; with a one-year age decay 0.1377);
     * random split 0.1956, where EASE alone gives 0.3817 - order is worth
     * a third on the future and costs half on a random sample, which is
     * why reco_train_auto chooses it on validation, never by default. */
    double seq_lambda; /* transition model ridge, x the mean diagonal of
                          S^T S (temporal: 1 0.1780, 4 0.1790, 16 0.1726) */
    double seq_half;   /* positions: the half-life of the prefix weights, at
                          training and at serving (temporal: 4 0.1749,
                          8 0.1790, 16 0.1767) */
    double hist_half;  /* positions: the half-life of the EASE history
                          weights at serving; 0 = none (temporal: 0 0.1790,
                          8 0.1746, 32 0.1758; random, blend 0: 0.2694
                          at 32 against 0.3817 without) */
    double blend;      /* 0..1: the transition model's share of the blend of
                          both models' per-customer z-scores; 0 = EASE alone
                          (temporal: 0 0.1345, 0.3 0.1642, 0.6 0.1790,
                          0.8 0.1735, 1 0.1674; random: 0.3 0.3408,
                          0.6 0.1956) */
} reco_params;

/* Defaults that work for the algorithm. */
void reco_params_default(reco_algo algo, reco_params *p);

typedef struct reco_model reco_model;

/* Bytes EASE's dense solve needs for this data (the Gram matrix over the
 * items it models): the trainer picks EASE when this fits its budget. */
uint64_t reco_ease_bytes(const reco_matrix *x);

int reco_train(reco_algo algo, const reco_params *p, const reco_matrix *train, reco_model **out,
               char *err, size_t errlen);
void reco_model_free(reco_model *m);

/* The automatic choice (reco_train_auto): a validation split carved from
 * the training matrix alone asks the question the model will answer.
 *   TEMPORAL  each customer's latest 20% (what a live system predicts);
 *   RANDOM    a random 20% of each customer's interactions. */
typedef enum reco_validate {
    RECO_VALIDATE_TEMPORAL = 1,
    RECO_VALIDATE_RANDOM,
} reco_validate;

typedef struct reco_choice {
    reco_algo algo;     /* RECO_SEQ, RECO_EASE or RECO_POP */
    reco_params params; /* as trained */
    reco_validate validate;
    uint32_t val_customers; /* customers in the validation split */
    double val_ndcg;        /* NDCG@10 of the choice on it */
    double ease_ndcg;       /* EASE alone (no recency) on it */
    double seconds;         /* the whole choice and the final training */
    char note[256];         /* why something was left out ("no timestamps: ..."),
                               or "" */
} reco_choice;

/* Choose among EASE alone, EASE with positional recency and its blend with
 * the transition model (lambda, blend and half-lives) on a validation split
 * of x carved as v says (seed: RANDOM's draw), then train the choice on all
 * of x. A richer configuration wins only by more than two standard errors
 * of the customers' paired NDCG differences over a simpler one, so noise
 * keeps EASE. base gives the neighbours and popularity half-life (NULL =
 * defaults). Data that cannot support the sequence model (no timestamps,
 * too few customers to validate, no item seen by 5 customers) falls back
 * to EASE or popularity, saying why in c->note. */
int reco_train_auto(const reco_matrix *x, reco_validate v, uint64_t seed, const reco_params *base,
                    reco_model **out, reco_choice *c, char *err, size_t errlen);

/* The model as one self-contained blob (native byte order), for storing.
 * *out is malloc'ed; the caller frees it. Returns 0 or CXM_ENOMEM. */
int reco_model_pack(const reco_model *m, void **out, size_t *len);

/* A model that reads a packed blob in place, without copying it (only a
 * blob that is not 8-byte aligned, such as a small LMDB value, is copied).
 * The struct and any copy come from the arena, and the view stays valid as
 * long as both the blob and the arena do; there is nothing to free. The
 * check is O(1) (header, sizes): blobs are trusted output of
 * reco_model_pack. Returns 0, CXM_EINVAL (not a model blob, with a
 * sentence in err) or CXM_ENOMEM. */
struct cxm_arena;
int reco_model_view(const void *blob, size_t len, struct cxm_arena *a, const reco_model **out,
                    char *err, size_t errlen);

uint32_t reco_model_items(const reco_model *m);
reco_algo reco_model_algo(const reco_model *m);

/* Per-thread working memory, sized for the model (and any smaller one);
 * m NULL = empty, to be fitted before use. */
typedef struct reco_scratch reco_scratch;
int reco_scratch_create(const reco_model *m, reco_scratch **out);
/* Grow s, if needed, to serve m: call when the model may have changed
 * (a new version). Returns 0 or CXM_ENOMEM (s is then unchanged). */
int reco_scratch_fit(reco_scratch *s, const reco_model *m);
void reco_scratch_free(reco_scratch *s);

/* Score a history (items hist[0..n) with weights w, NULL = all 1; newest
 * first, which RECO_SEQ weighs by position and the others ignore) and write
 * the best k items, best first, into out_items/out_scores (k entries each);
 * returns how many were written. Items in the history and in exclude
 * (any order) are never returned. */
size_t reco_recommend(const reco_model *m, reco_scratch *s, const uint32_t *hist, const float *w,
                      size_t n, const uint32_t *exclude, size_t nexclude, size_t k,
                      uint32_t *out_items, float *out_scores);

#endif
