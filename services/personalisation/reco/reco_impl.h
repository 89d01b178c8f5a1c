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
    /* RECO_SEQ: the transition model's rows (a rows-only model of its
     * own) and the serving weights of reco_params. */
    const reco_model *next;
    float blend, hist_half, seq_half;
    bool owned;
};

struct reco_scratch {
    uint32_t nitems, factors; /* the largest model fitted so far */
    float *score;
    uint8_t *mark; /* 1 = reached by the rows, 2 = consumed or excluded */
    uint32_t *touched;
    reco_neighbour *heap;
    float *work;   /* ALS fold-in: factors * factors + 2 * factors floats */
    float *score2; /* RECO_SEQ: the transition model's scores */
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

/* A dense item-item solve over the modelled items (those with at least 5
 * customers), for EASE (reco.c) and the transition model (recoseq.c). */
typedef struct reco_dense {
    uint32_t n;        /* modelled items */
    int32_t *dense_of; /* item -> modelled index, or -1 */
    uint32_t *item_of; /* modelled index -> item */
    float *scale;      /* per modelled item: its candidate scale */
    float *g;          /* n x n: EASE's P = G^-1 (lower triangle), or the
                          transition weights B themselves (column-major) */
    bool direct;       /* g holds B (transition), not P (EASE) */
} reco_dense;

/* Allocate e (g n x n, zeroed) and pick the modelled items of x. */
int reco__dense_init(reco_dense *e, const reco_matrix *x);
void reco__dense_free(reco_dense *e);
/* m's neighbour rows from e, about per_item entries per modelled item (the
 * largest |w| over the whole matrix), sorted and compacted as p says. */
int reco__dense_rows(const reco_dense *e, uint32_t per_item, const reco_params *p, reco_model *m);

/* score[j] += sum over h of w_h * 2^(-h / half) * row(hist[h])[j], the
 * history newest first (half 0: no decay), stopping after 6 half-lives.
 * Dense: the caller clears score. */
void reco__add_rows(const reco_model *m, const uint32_t *hist, const float *w, size_t n,
                    double half, float *restrict score);

/* Customer u's positions in x into pos, newest first (ties: the larger
 * item first); their count. */
uint64_t reco__newest_first(const reco_matrix *x, uint32_t u, uint64_t *pos);

/* The most interactions any customer of x has. */
uint64_t reco__longest_row(const reco_matrix *x);

/* The standard deviation of v[0..n) over the items whose mark is not
 * skip (0 when they are fewer than one or all equal): how RECO_SEQ scales
 * a model's scores, at serving and in the automatic choice alike. */
double reco__sd(const float *v, const uint8_t *mark, uint8_t skip, uint32_t n);

/* Whether x's interactions carry an order: times, not all equal. */
bool reco__has_order(const reco_matrix *x);

/* RECO_SEQ (recoseq.c): the transition model's rows for m->next, and the
 * serving weights of p into m. */
int reco_seq_train(reco_model *m, const reco_matrix *x, const reco_params *p, char *err,
                   size_t errlen);
/* One transition model (rows only) per lambda, from one accumulation;
 * the caller frees next[0..nl) (some may be NULL after a failure). */
int reco__seq_train_lambdas(const reco_matrix *x, const reco_params *p, const double *lambdas,
                            size_t nl, reco_model **next, char *err, size_t errlen);
/* Scale two score vectors by their standard deviations over the items
 * not marked 2 (consumed or excluded) and blend them into s->score:
 * (1 - blend) * score / sd + blend * score2 / sd2; clears s->score2. */
void reco_seq_blend(const reco_scratch *s, uint32_t nitems, float blend);

/* Items -> users (the transpose of x): col[i] .. col[i + 1] index item i's
 * users, in ascending order, and (when weights is not NULL) their weights.
 * col has nitems + 2 entries. On failure the caller frees what is set. */
int reco_transpose(const reco_matrix *x, uint64_t **col, uint32_t **users, float **weights);

#endif
