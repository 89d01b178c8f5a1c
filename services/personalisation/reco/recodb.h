/*
 * recodb.h - the recommendation core's LMDB side: the interaction log,
 * versioned models with an atomic switch and rollback, and serving from a
 * read transaction.
 *
 * Interaction log: (customer, item, weight, ts) events, appended online;
 * recodb_append returns only after its batch is committed. One customer's
 * events are contiguous and in time order, so serving reads the most
 * recent ones with one backward cursor walk.
 *
 * Models: recodb_train(_ex) reads the whole log in one read transaction,
 * measures the algorithm on a holdout and calibrates its scores
 * (propensity), trains on everything and writes, in ONE write
 * transaction, the packed model, the version's item table (item id <->
 * model index), its calibration and metrics, and the switch of `current`
 * to the new version, keeping the old one as `previous` and deleting
 * anything older. LMDB's transactions make the switch atomic: a reader
 * sees the old version or the new one, never a mix, and a read
 * transaction that began before the switch keeps its version to its end.
 * recodb_rollback makes `previous` current again (and drops the version it
 * replaces).
 *
 * Serving: recodb_recommend, in one read transaction. A customer whose
 * candidates are cached for the serving version (see recodb_recommend) is
 * answered from them: a few microseconds. Otherwise the current model is
 * read in place from the map (no copy), the customer's latest
 * opts.max_history interactions are weighted by weight x
 * 2^(-age / recency_half_life), the age counted from the customer's newest
 * interaction (so scores do not drift with the clock, cached candidates
 * stay valid, and cxm-eval --half-life --max-history ranks the same),
 * mapped to model indices (items newer than the model are skipped), and
 * scored; whatever the customer consumed (the whole history, not only the
 * scored part) and what the caller excludes never comes back. Nothing is
 * allocated but from the caller's arena, and the reader's buffers grow
 * only with a larger catalogue or request. LMDB readers do not block
 * writers or each other; the only lock is the stale list's, held for a
 * push.
 *
 * Cold start: a customer without history gets the model's time-decayed
 * popularity (opts.popularity_half_life). Before the first model, everyone
 * gets the log's (a snapshot retaken at most once a second when the log
 * grew), with version 0.
 *
 * Business-rules hook: items nobody has interacted with yet (a new
 * experience) are not in any model. The caller passes them, with scores, as
 * recodb_query.extra: they are merged into the top k with the model's
 * results (a consumed or excluded id never passes). Model scores are
 * positive for what the history predicts and negative for the popularity
 * fill (-1 for the most popular, -2 for the next, ...), so an extra item
 * with score 0 ranks below every prediction and above every fill, and
 * INFINITY pins it first. The Recommend RPC's business rules (a later
 * issue) build this list.
 *
 * Threading: every call is thread-safe except that a recodb_reader belongs
 * to one thread at a time. Training and appends may run while others serve.
 * Errors: 0 or a negative CXM_E* code with a sentence in err: CXM_EINVAL
 * (bad input, naming the field), CXM_ENOTFOUND (no model yet, no previous
 * version), CXM_ENOMEM, or a store error.
 */
#ifndef CXM_RECODB_H
#define CXM_RECODB_H

#include <stddef.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/store.h"
#include "personalisation/reco/reco.h"

#define RECODB_ID_MAX 256 /* longest customer or item id, in bytes */
#define RECODB_K_MAX 1000 /* longest recommendation list */
#define RECODB_EXCLUDE_MAX 1000
#define RECODB_EXTRA_MAX 100
#define RECODB_DEFAULT_HISTORY 2000 /* recodb_opts.max_history 0; recodb.c */

typedef struct recodb recodb;

typedef struct recodb_opts {
    uint32_t max_history;        /* latest interactions scored; 0 = 2000
                                    (MovieLens-small NDCG@10: 200 0.337,
                                    2000 0.3815; recodb.c) */
    double recency_half_life;    /* seconds; 0 or < 0 = no decay */
    double popularity_half_life; /* seconds; 0 = 14 days; < 0 = no decay */
    uint64_t ease_budget;        /* bytes the dense solves may use (EASE: its Gram
                                    matrix; the automatic choice: 4x that); 0 = 2 GiB */
    uint32_t neighbours;         /* item-kNN / EASE model size; 0 = the
                                    algorithm's default. Serving time grows
                                    with it (benchmarks/README.md). */
} recodb_opts;

/* Open the log and model tables in store (opts NULL = defaults). */
int recodb_open(cxm_store *store, const recodb_opts *opts, recodb **out);
void recodb_close(recodb *db);

typedef struct recodb_event {
    const char *customer; /* 1..RECODB_ID_MAX bytes, no control bytes */
    const char *item;     /* likewise */
    float weight;         /* finite, > 0 */
    int64_t ts;           /* seconds since the epoch, >= 0 */
} recodb_event;

/* Validate all n events, then commit them in one transaction; a bad event
 * fails the call with nothing written ("event 3: item is longer than 256
 * bytes"). The same (customer, item, ts) again overwrites, so a retried
 * batch does not count twice. */
int recodb_append(recodb *db, const recodb_event *ev, size_t n, char *err, size_t errlen);

/* The same inside the caller's write transaction (a service's write job),
 * validating each event first. Bumps each customer's history stamp (so
 * its cached candidates are recomputed) and counts the appends for the
 * retrain policy (recodb_appended). */
int recodb_append_txn(cxm_txn *t, recodb *db, const recodb_event *ev, size_t n, char *err,
                      size_t errlen);

/* Events appended since this recodb was opened (all threads), for an
 * automatic retrain policy. */
uint64_t recodb_appended(const recodb *db);

/* Erase every event of customer (and its cached candidates and stamp);
 * *records (may be NULL) counts the rows deleted. */
int recodb_erase(cxm_txn *t, recodb *db, const char *customer, uint64_t *records);

/* source was merged into target: source's events become target's. */
int recodb_merge(cxm_txn *t, recodb *db, const char *source, const char *target);

typedef struct recodb_train_report {
    uint64_t version;
    reco_algo algo;
    uint32_t customers, items;
    uint64_t interactions; /* distinct (customer, item) pairs */
    uint64_t model_bytes;  /* the stored model, without the item table */
    double seconds;        /* reading, training and writing */
    bool chosen;           /* algo was chosen by reco_train_auto: */
    reco_choice choice;    /* what it chose, its validation and any note */
} recodb_train_report;

/* Train on the whole log and switch to the new version. algo 0 chooses
 * with reco_train_auto (validated on each customer's latest interactions:
 * the sequence model, EASE, or popularity for data too thin for either)
 * when four times reco_ease_bytes (the transition model's solve) fits
 * opts.ease_budget, item-kNN otherwise. Repeated (customer, item) events
 * count once, with their largest weight and latest time. An empty log is
 * CXM_EINVAL; a failure writes nothing. */
int recodb_train(recodb *db, reco_algo algo, recodb_train_report *rep, char *err, size_t errlen);

typedef struct recodb_metrics {
    uint32_t k;
    double precision, recall, ndcg, coverage;
    uint64_t customers; /* evaluated */
} recodb_metrics;

/* What TrainModel asks for. */
typedef enum recodb_activation {
    RECODB_ACTIVATE_ALWAYS = 0,
    RECODB_ACTIVATE_IF_BETTER, /* holdout ndcg >= the serving model's */
    RECODB_ACTIVATE_NEVER,
} recodb_activation;

typedef struct recodb_train_opts {
    reco_algo algo;            /* 0 = automatic, as recodb_train */
    const reco_params *params; /* NULL = the algorithm's defaults */
    int64_t since;             /* seconds; events before are ignored; 0 = all */
    /* Share of customers (>= 5 interactions) evaluated: their latest 20%
     * are held out, a model is trained without them and scored on them
     * (ndcg etc. at k = 10, the serving path's weighting); then the model
     * that is kept is trained on everything. 0 = 0.1; at most 0.5; < 0 =
     * no holdout (no metrics, uncalibrated propensity: sigmoid(score);
     * half the training time). */
    double holdout_fraction;
    recodb_activation activation;
    /* Called from the training thread now and then: done 0..1 and what it
     * is doing ("reading the log", "choosing", "evaluating", "training",
     * "writing"). */
    void (*progress)(double done, const char *phase, void *user);
    /* Called inside the write transaction that stores the new version (and
     * switches to it when activated), with rep complete but for seconds:
     * what the caller writes in t about the version commits with it, so no
     * reader sees the version without it. Non-zero aborts the write. It
     * may be called again if the transaction is retried. */
    int (*on_publish)(cxm_txn *t, const recodb_train_report *rep, const recodb_metrics *metrics,
                      bool activated, void *user);
    void *user;
} recodb_train_opts;

/* recodb_train with options; rep->version is the stored version (0 when
 * nothing was kept: never for success), *metrics (may be NULL) the holdout
 * quality, *activated whether it serves now. A version that is not
 * activated is stored but does not serve (nor become `previous`); the next
 * training drops it. */
int recodb_train_ex(recodb *db, const recodb_train_opts *o, recodb_train_report *rep,
                    recodb_metrics *metrics, bool *activated, char *err, size_t errlen);

/* Make the previous version current again; its number goes to *version. */
int recodb_rollback(recodb *db, uint64_t *version, char *err, size_t errlen);

/* The current and previous versions (0 = none). */
int recodb_versions(recodb *db, uint64_t *current, uint64_t *previous);

/* Per-thread serving state. */
typedef struct recodb_reader recodb_reader;
int recodb_reader_create(const recodb *db, recodb_reader **out);
void recodb_reader_free(recodb_reader *r);

typedef struct recodb_rec {
    const char *item;
    float score;
    /* The model's calibrated probability that the customer takes the item
     * up (0..1): from the holdout at training (Platt scaling of the score),
     * or from the popularity rank for the cold-start fill. */
    float propensity;
    bool popular; /* popularity fill, not predicted from the history */
} recodb_rec;

/* Called with candidates best first; return true to keep one. Rejected
 * ones do not count towards k. */
typedef bool (*recodb_filter_fn)(const char *item, size_t len, void *user);

typedef struct recodb_query {
    const char *customer;
    int64_t now;                /* seconds since the epoch; 0 = the clock */
    const char *const *exclude; /* ids never to return */
    size_t nexclude;            /* <= RECODB_EXCLUDE_MAX */
    const recodb_rec *extra;    /* business-rules candidates (see above) */
    size_t nextra;              /* <= RECODB_EXTRA_MAX */
    size_t k;                   /* 1..RECODB_K_MAX */
    recodb_filter_fn filter;    /* NULL = keep all */
    void *filter_user;
    /* Out (may be NULL): set true when any candidate offered, kept or
     * filtered out, was predicted from the customer's history, so a caller
     * whose filter rejected every prediction still knows the customer is
     * not a cold start. */
    bool *predicted;
} recodb_query;

/* The best q->k items for q->customer, best first, in arena memory; *version
 * (may be NULL) is the model version that answered, 0 when there is no
 * model yet: then the answer is the log's most interacted items (decayed by
 * popularity_half_life), as popularity fill.
 *
 * Speed: a customer's candidates (the best RECODB_CAND_MAX unfiltered
 * items and scores) are cached in the store per (model version, history
 * stamp); a request whose cache is current reads them instead of scoring
 * and filters them; one whose filter leaves fewer than k falls back to
 * scoring, and so does one with extras. A scored request lists the
 * customer as stale; recodb_refresh fills the cache off the request path.
 * Before the first model the filter is called under a lock shared by all
 * readers: it must not call back into recodb. */
int recodb_recommend(recodb *db, recodb_reader *r, cxm_arena *a, const recodb_query *q,
                     recodb_rec **out, size_t *nout, uint64_t *version, char *err, size_t errlen);

#define RECODB_CAND_MAX 256

/* Recompute customer's cached candidates (in their own write transaction)
 * when stale. Customers whose history changed since the last call, and,
 * after a model switch, every customer, are listed by recodb_stale: a
 * service runs a thread that drains it. */
int recodb_refresh(recodb *db, recodb_reader *r, const char *customer);
/* recodb_refresh of n customers: computed in one read transaction and
 * written in one write transaction (not flushed to disk: the cache is
 * derived data), which is what a refresh thread should call with what
 * recodb_stale gave it. */
int recodb_refresh_many(recodb *db, recodb_reader *r, char *const *customers, size_t n);
/* Up to max stale customer ids (malloc'ed strings the caller frees),
 * taken off the stale list. A customer whose events commit while a
 * refresh reads may be missed by it; the next Recommend of that customer
 * then scores and lists it again. */
size_t recodb_stale(recodb *db, char **out, size_t max);

/* Why item was recommended to customer: the history items that contribute
 * most to its model score, with their share of it (0..1, largest first; the
 * shares of the top `max` need not sum to 1). 0 items when the score came
 * from popularity. Strings in a. It reads the history and looks item up
 * in each history item's row (a bisection each): tens of microseconds for
 * a long history, fine for the few items of an answer. */
typedef struct recodb_why {
    const char *item;
    float share;
} recodb_why;
int recodb_explain(recodb *db, recodb_reader *r, cxm_arena *a, const char *customer, int64_t now,
                   const char *item, recodb_why *out, size_t max, size_t *n);

/* The k items most similar to item in the serving model (similarity 0..1,
 * the neighbour weight over the row's largest), in a. *n = 0 for an item
 * the model does not know; CXM_ENOTFOUND when there is no model. */
int recodb_similar(recodb *db, recodb_reader *r, cxm_arena *a, const char *item, size_t k,
                   recodb_filter_fn filter, void *filter_user, recodb_rec **out, size_t *n,
                   uint64_t *version);

/* Write the serving model for another process (the benchmarks' Python
 * peer; a sequence model is refused with CXM_EINVAL): a little-endian file "CXMX" u32 version, u32
 * nitems, then per item its id (u16 length + bytes), then per item u32 count and count x (u32
 * neighbour, f32 weight); then popularity as u32 count x (u32 item). */
int recodb_export(recodb *db, const char *path, char *err, size_t errlen);

#endif
