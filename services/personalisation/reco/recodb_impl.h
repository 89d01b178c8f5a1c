/*
 * recodb_impl.h - private to recodb's files (recodb.c: log and versions,
 * recotrain.c: training with a holdout, recoserve.c: serving and the
 * candidate cache, recoexplain.c: explain, similar, export). Nothing else
 * includes this.
 *
 * Tables (besides reco.events / reco.models / reco.meta, see recodb.c):
 *   reco.stamps  customer (raw bytes) -> u64 history stamp, bumped by every
 *                append, merge and erase: cached candidates computed at an
 *                older stamp are never written back.
 *   reco.cand    customer (raw bytes) -> the cached candidates (recoserve.c);
 *                deleted by every change to the customer's history, so a
 *                row whose version is the serving one is current.
 *   reco.models  version, part 2 -> recodb_calib (Platt scaling, metrics).
 */
#ifndef CXM_RECODB_IMPL_H
#define CXM_RECODB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "personalisation/reco/reco_impl.h"
#include "personalisation/reco/recodb.h"
#include "personalisation/reco/recoids.h"

#define RECODB_DAY_SECONDS 86400.0

enum { RECODB_PART_MODEL = 0, RECODB_PART_ITEMS = 1, RECODB_PART_CALIB = 2 };

/* Stored with each version: propensity = 1 / (1 + exp(-(a * score + b)))
 * for model scores; popularity fill: the item's decayed count over the
 * customers trained on. */
typedef struct recodb_calib {
    uint64_t magic;
    float a, b;
    uint32_t customers;
    uint32_t has_metrics;
    recodb_metrics metrics;
} recodb_calib;

/* Customers whose candidates must be recomputed, and, after a model
 * switch, a walk over reco.stamps listing every customer with history. */
typedef struct recodb_stalelist {
    pthread_mutex_t mu;
    char **ids; /* a stack, each customer at most once */
    size_t n, cap;
    uint64_t *set; /* the ids' hashes (0 = empty), nset a power of two */
    size_t nset;
    bool sweep;
    char *sweep_after; /* last customer listed by the walk; NULL = start */
    size_t sweep_len;
} recodb_stalelist;

/* Most interacted items of the log, for serving before any model. */
typedef struct recodb_popsnap {
    pthread_mutex_t mu;
    uint64_t appended; /* recodb_appended() when taken */
    double taken;      /* monotonic seconds */
    bool valid;
    char **items;
    float *count;
    size_t n;
    uint32_t customers;
    uint64_t events; /* scanned */
} recodb_popsnap;

struct recodb {
    cxm_store *store;
    MDB_dbi events, models, meta, stamps, cand;
    recodb_opts opts;
    _Atomic uint64_t appended;
    recodb_stalelist stale;
    recodb_popsnap pop;
};

typedef struct recodb_items {
    uint32_t n, nslots;
    const uint32_t *off, *slot;
    const char *bytes;
} recodb_items;

/* The serving version, read in place inside a transaction. */
typedef struct recodb_served {
    uint64_t version;
    const reco_model *model;
    recodb_items items;
    recodb_calib calib;
} recodb_served;

struct recodb_reader {
    reco_scratch *scratch;
    uint32_t cap; /* max_history */
    uint32_t *hist;
    float *w;
    const char **seen; /* ids of the scored history, for the extras */
    size_t *seen_len;
    uint32_t *older; /* consumed before the scored history: excluded */
    size_t nolder, older_cap;
    uint32_t *recs; /* scoring output, recs_cap entries */
    float *scores;
    size_t recs_cap;
};

int recodb__fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *recodb__id_problem(const char *id);
double recodb__clock(void);

uint64_t recodb__meta_get(cxm_txn *t, const recodb *db, const char *name);
size_t recodb__model_key(uint8_t *buf, uint64_t version, uint8_t part);
size_t recodb__customer_prefix(uint8_t *buf, const char *customer, size_t len);

/* The current version (CXM_ENOTFOUND when none), or `version` when not 0. */
int recodb__load(const recodb *db, cxm_txn *t, cxm_arena *a, uint64_t version, recodb_served *s,
                 char *err, size_t errlen);
/* Only the item table of version (CXM_ECORRUPT when missing). */
int recodb__load_items(const recodb *db, cxm_txn *t, cxm_arena *a, uint64_t version,
                       recodb_items *items);
uint32_t recodb__items_find(const recodb_items *t, const char *id, size_t len);
const char *recodb__item_id(const recodb_items *t, uint32_t i, size_t *len);
float recodb__propensity(const recodb_served *s, uint32_t item, float score, bool popular);

/* Publish a trained version in one write transaction; activate = switch
 * `current` to it. */
typedef struct recodb_publish {
    const void *model, *items;
    size_t model_len, items_len;
    recodb_calib calib;
    bool activate;
    uint64_t version; /* out */
    /* Called in the transaction, with the version, before it commits. */
    int (*hook)(cxm_txn *t, uint64_t version, void *ctx);
    void *hook_ctx;
} recodb_publish;
int recodb__publish(recodb *db, recodb_publish *p);
int recodb__pack_items(const recoids *ids, void **out, size_t *len);

/* The customer's history as serving reads it, into r: the latest
 * max_history events newest first (model indices and weights decayed from
 * the newest event), every older consumed item into r->older. */
int recodb__history(const recodb *db, recodb_reader *r, cxm_txn *t, const recodb_served *s,
                    const char *customer, size_t *nseen, size_t *nhist);
/* Score the history in r for the top k (no filter): r->recs/scores. */
int recodb__score(recodb_reader *r, const recodb_served *s, size_t nhist, const uint32_t *excl,
                  size_t nexcl, size_t k, size_t *n);

void recodb__stale_push(recodb *db, const char *customer, size_t len);
void recodb__stale_sweep(recodb *db);
void recodb__stale_init(recodb_stalelist *l);
void recodb__stale_dispose(recodb_stalelist *l);
void recodb__pop_dispose(recodb_popsnap *p);

#endif
