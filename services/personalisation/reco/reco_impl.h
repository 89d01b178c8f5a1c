/*
 * reco_impl.h - private to the recommendation core (reco.c, recoals.c):
 * the model layout and the scratch, shared by the algorithm files. Nothing
 * outside services/personalisation/reco/reco*.c includes this.
 */
#ifndef CXM_RECO_IMPL_H
#define CXM_RECO_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "personalisation/reco/reco.h"

typedef struct reco_neighbour {
    uint32_t item;
    float w;
} reco_neighbour;

/* The serving copy of a neighbour entry when the catalogue fits 16 bits:
 * half the bytes of reco_neighbour, so the scattered adds of serving read
 * half the memory. The weight is quantised per row: w = cscale[row] * q. */
typedef struct reco_cnb {
    uint16_t item;
    int16_t q;
} reco_cnb;

/* A model either owns its arrays (trained here, freed by reco_model_free)
 * or views a packed blob (reco_model_view; nothing to free). */
struct reco_model {
    reco_algo algo;
    uint32_t nitems;
    uint32_t factors;          /* ALS: factors per item, else 0 */
    float lambda, alpha;       /* ALS: fold-in regularisation, confidence */
    const uint64_t *nrow;      /* nitems + 1 offsets into nb */
    const reco_neighbour *nb;  /* neighbour rows, each by ascending item */
    const reco_cnb *cnb;       /* nb compacted (nitems <= 65536), or NULL */
    const float *cscale;       /* per row: the weight of q = 1 */
    const uint32_t *popular;   /* nitems, by descending pop_score */
    const float *pop_score;    /* nitems */
    const float *item_factors; /* ALS: nitems x factors, row-major */
    const float *gram;         /* ALS: Y^T Y, factors x factors */
    bool owned;
};

struct reco_scratch {
    uint32_t nitems, factors; /* the largest model fitted so far */
    float *score;
    uint8_t *mark; /* 1 = reached by the rows, 2 = consumed or excluded */
    uint32_t *touched;
    reco_neighbour *heap;
    float *work; /* ALS fold-in: factors * factors + 2 * factors floats */
};

/* ALS (recoals.c). reco_als_train sets m->factors, lambda, alpha and owned
 * item_factors and gram; popularity is already trained. */
int reco_als_train(reco_model *m, const reco_matrix *x, const reco_params *p, char *err,
                   size_t errlen);
/* Fold the history into a user vector and score every item into s->score;
 * false, with nothing written, when the history reaches no modelled item.
 * Allocates nothing: s->work holds the fold-in system. */
bool reco_als_score(const reco_model *m, reco_scratch *s, const uint32_t *hist, const float *w,
                    size_t n);

/* Items -> users (the transpose of x): col[i] .. col[i + 1] index item i's
 * users, in ascending order, and (when weights is not NULL) their weights.
 * col has nitems + 2 entries. On failure the caller frees what is set. */
int reco_transpose(const reco_matrix *x, uint64_t **col, uint32_t **users, float **weights);

#endif
