/*
 * recotrain.c - training a version from the log (recodb_train,
 * recodb_train_ex): a holdout evaluation that measures the model and
 * calibrates its scores into propensities, then the model kept, trained on
 * everything.
 *
 * Holdout: customers with at least HOLDOUT_MIN_EVENTS distinct items whose
 * id hashes below the fraction are evaluated; their latest 20% (in the
 * serving path's order: time, then the item's hash, newest first) are held
 * out. A model trained without those events ranks HOLDOUT_K items for each
 * evaluated customer from their remaining history exactly as serving would
 * (the latest max_history items, weighted by weight x 2^(-age /
 * recency_half_life) from the newest, all their other items excluded); the
 * top 10 give precision, recall, NDCG and coverage, and all HOLDOUT_K
 * model-scored items the (score, held out?) pairs of the Platt scaling.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "personalisation/reco/recodb_impl.h"
#include "personalisation/reco/recolog.h"
#include "personalisation/reco/recomatrix.h"

#define HOLDOUT_MIN_EVENTS 5
#define HOLDOUT_K 50
#define METRICS_K 10

typedef struct train_data {
    recoids customers, items;
    recolog log;
    int64_t since;
} train_data;

typedef struct train_run {
    recodb *db;
    const recodb_train_opts *o;
    reco_algo algo; /* 0 until reco_train_auto has chosen */
    reco_params params;
    reco_choice choice;
    train_data d;
    uint64_t *ihash; /* per item: FNV-1a of its id, the serving tie-break */
} train_run;

static void progress(const train_run *tr, double done, const char *phase)
{
    if (tr->o->progress)
        tr->o->progress(done, phase, tr->o->user);
}

/* ---- reading the log ---- */

static int scan_event(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    train_data *d = user;
    char customer[RECODB_ID_MAX + 1];
    size_t clen;
    int64_t ts;
    uint64_t hash;
    cxm_keyreader r;
    cxm_keyreader_init(&r, key, klen);
    cxm_keyread_bytes(&r, customer, sizeof customer, &clen);
    cxm_keyread_i64(&r, &ts);
    cxm_keyread_u64(&r, &hash);
    if (cxm_keyread_end(&r) != 0 || vlen <= sizeof(float) || vlen > sizeof(float) + RECODB_ID_MAX)
        return CXM_ECORRUPT;
    if (ts < d->since)
        return 0;
    recolog_event e = {.ts = ts};
    memcpy(&e.rating, val, sizeof e.rating);
    int rc = recoids_intern(&d->customers, customer, clen, &e.user);
    if (rc == 0)
        rc = recoids_intern(&d->items, (const char *)val + sizeof(float), vlen - sizeof(float),
                            &e.item);
    return rc ? rc : recolog_push(&d->log, &e);
}

typedef struct scan_job {
    const recodb *db;
    train_data *d;
} scan_job;

static int scan_fn(cxm_txn *t, void *user)
{
    scan_job *j = user;
    return cxm_txn_scan_prefix(t, j->db->events, NULL, 0, false, scan_event, j->d);
}

/* Number customers and items by their ids' bytes, not by where the log
 * first mentions them: the model then depends only on the interactions,
 * and equals cxm-eval's on the same ones (float sums and EASE's sampled
 * threshold follow the numbering). */
static int canonical_order(train_data *d)
{
    uint32_t *umap = malloc(((size_t)d->customers.n + 1) * sizeof *umap);
    uint32_t *imap = malloc(((size_t)d->items.n + 1) * sizeof *imap);
    int rc = umap && imap ? 0 : CXM_ENOMEM;
    if (rc == 0)
        rc = recoids_sorted_map(&d->customers, NULL, umap);
    if (rc == 0)
        rc = recoids_sorted_map(&d->items, NULL, imap);
    if (rc == 0)
        rc = recoids_permute(&d->customers, umap);
    if (rc == 0)
        rc = recoids_permute(&d->items, imap);
    for (size_t i = 0; rc == 0 && i < d->log.n; i++) {
        d->log.ev[i].user = umap[d->log.ev[i].user];
        d->log.ev[i].item = imap[d->log.ev[i].item];
    }
    free(umap);
    free(imap);
    return rc;
}

static int read_log(train_run *tr, char *err, size_t errlen)
{
    scan_job scan = {tr->db, &tr->d};
    int rc = cxm_store_read(tr->db->store, scan_fn, &scan);
    if (rc != 0)
        return recodb__fail(err, errlen, rc, "reading the interaction log: %s", cxm_strerror(rc));
    if (tr->d.log.n == 0)
        return recodb__fail(err, errlen, CXM_EINVAL,
                            "no interactions to train on: append (RecordInteractions) first");
    if ((rc = canonical_order(&tr->d)) != 0)
        return recodb__fail(err, errlen, rc, "out of memory reading the log");
    recolog_dedupe(&tr->d.log);
    tr->ihash = malloc(((size_t)tr->d.items.n + 1) * sizeof *tr->ihash);
    if (!tr->ihash)
        return recodb__fail(err, errlen, CXM_ENOMEM, "out of memory reading the log");
    for (uint32_t i = 0; i < tr->d.items.n; i++)
        tr->ihash[i] = cxm_hash(CXM_HASH_INIT, tr->d.items.names[i], strlen(tr->d.items.names[i]));
    return 0;
}

static void train_data_free(train_data *d)
{
    recoids_free(&d->customers);
    recoids_free(&d->items);
    recolog_free(&d->log);
}

/* The seed of the automatic choice's draw (only a random validation
 * draws; recodb validates on each customer's latest interactions). */
#define AUTO_SEED 42

static int fit_model(train_run *tr, const recolog *log, reco_matrix *x, reco_model **m, char *err,
                     size_t errlen)
{
    int rc = recomatrix_build(log, tr->d.customers.n, tr->d.items.n, x);
    if (rc != 0)
        return recodb__fail(err, errlen, rc, "building the interaction matrix: %s",
                            cxm_strerror(rc));
    if (tr->algo)
        return reco_train(tr->algo, &tr->params, x, m, err, errlen);
    /* A live system recommends the future: validate on it. */
    rc = reco_train_auto(x, RECO_VALIDATE_TEMPORAL, AUTO_SEED, &tr->params, m, &tr->choice, err,
                         errlen);
    tr->algo = tr->choice.algo;
    tr->params = tr->choice.params;
    return rc;
}

/* The algorithm and its parameters: the caller's, else the defaults with
 * the recodb options (neighbours, popularity half-life). Automatic: the
 * choice of reco_train_auto (sequence model, EASE or popularity) when the
 * transition model's solve fits the budget (four times EASE's: S^T S,
 * S^T T, the factor and the solution), item-kNN otherwise; tr->algo stays
 * 0 until fit_model has chosen. */
static void choose_algo(train_run *tr, char *err, size_t errlen)
{
    reco_matrix x = {0};
    tr->algo = tr->o->algo;
    if (!tr->algo) {
        int rc = recomatrix_build(&tr->d.log, tr->d.customers.n, tr->d.items.n, &x);
        uint64_t need = rc == 0 ? reco_ease_bytes(&x) : UINT64_MAX;
        tr->algo = need <= tr->db->opts.ease_budget / 4 ? 0 : RECO_ITEMKNN;
        recomatrix_free(&x);
    }
    if (tr->o->params) {
        tr->params = *tr->o->params;
        return;
    }
    reco_params_default(tr->algo ? tr->algo : RECO_SEQ, &tr->params);
    double h = tr->db->opts.popularity_half_life;
    tr->params.half_life = h > 0 ? h : 0;
    if (tr->db->opts.neighbours)
        tr->params.neighbours = tr->db->opts.neighbours;
    (void)err, (void)errlen;
}

/* ---- the holdout ---- */

typedef struct holdout {
    uint32_t *eval_users;
    size_t nusers;
    uint8_t *test; /* per deduplicated event: held out */
    recolog train;
    /* Platt pairs */
    float *s;
    uint8_t *y;
    size_t npairs, cap;
} holdout;

/* Serving order: newest first, then the larger item hash first (the
 * events table's key order, walked backwards). */
static int by_serving_order(const void *a, const void *b, void *ctx)
{
    const uint64_t *ihash = ctx;
    const recolog_event *x = *(recolog_event *const *)a, *y = *(recolog_event *const *)b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? 1 : -1;
    uint64_t hx = ihash[x->item], hy = ihash[y->item];
    return hx < hy ? 1 : hx > hy ? -1 : 0;
}

static void serving_order(const train_run *tr, recolog_event **ev, size_t n)
{
    qsort_r(ev, n, sizeof *ev, by_serving_order, tr->ihash);
}

static bool evaluated(const train_run *tr, uint32_t user, double fraction)
{
    const char *id = tr->d.customers.names[user];
    uint64_t h = cxm_hash(CXM_HASH_INIT, id, strlen(id));
    h ^= h >> 31; /* FNV's high bits barely move for short ids: mix */
    h *= UINT64_C(0x9e3779b97f4a7c15);
    h ^= h >> 29;
    return (double)(h >> 11) / 9007199254740992.0 < fraction;
}

/* Per-user ranges of the deduplicated log (sorted by user). */
static int user_ranges(const recolog *log, uint32_t nusers, size_t **start)
{
    *start = calloc((size_t)nusers + 1, sizeof **start);
    if (!*start)
        return CXM_ENOMEM;
    for (size_t i = 0; i < log->n; i++)
        (*start)[log->ev[i].user + 1]++;
    for (uint32_t u = 0; u < nusers; u++)
        (*start)[u + 1] += (*start)[u];
    return 0;
}

/* Mark the latest 20% of each evaluated customer's events. */
static int split_holdout(const train_run *tr, const size_t *start, holdout *h)
{
    const recolog *log = &tr->d.log;
    double fraction = tr->o->holdout_fraction > 0 ? tr->o->holdout_fraction : 0.1;
    fraction = fraction > 0.5 ? 0.5 : fraction;
    recolog_event **order = malloc((log->n + 1) * sizeof *order);
    h->test = calloc(log->n + 1, 1);
    h->eval_users = malloc(((size_t)tr->d.customers.n + 1) * sizeof *h->eval_users);
    if (!order || !h->test || !h->eval_users) {
        free(order);
        return CXM_ENOMEM;
    }
    for (uint32_t u = 0; u < tr->d.customers.n; u++) {
        size_t n = start[u + 1] - start[u];
        if (n < HOLDOUT_MIN_EVENTS || !evaluated(tr, u, fraction))
            continue;
        for (size_t i = 0; i < n; i++)
            order[i] = &log->ev[start[u] + i];
        serving_order(tr, order, n);
        for (size_t i = 0; i < n / 5; i++)
            h->test[order[i] - log->ev] = 1;
        h->eval_users[h->nusers++] = u;
    }
    free(order);
    for (size_t i = 0; i < log->n; i++)
        if (!h->test[i] && recolog_push(&h->train, &log->ev[i]) != 0)
            return CXM_ENOMEM;
    return 0;
}

/* ---- metrics ---- */

typedef struct metrics_acc {
    double precision, recall, ndcg;
    uint64_t users;
    uint8_t *recommended; /* per item */
    uint32_t distinct, nitems;
} metrics_acc;

static void metrics_add(metrics_acc *m, const uint32_t *recs, size_t n, const uint8_t *relevant,
                        size_t nrel)
{
    double dcg = 0, idcg = 0;
    size_t hits = 0;
    for (size_t i = 0; i < n && i < METRICS_K; i++) {
        if (relevant[recs[i]]) {
            hits++;
            dcg += 1 / log2((double)i + 2);
        }
        m->distinct += !m->recommended[recs[i]];
        m->recommended[recs[i]] = 1;
    }
    for (size_t i = 0; i < nrel && i < METRICS_K; i++)
        idcg += 1 / log2((double)i + 2);
    m->precision += (double)hits / METRICS_K;
    m->recall += (double)hits / (double)nrel;
    m->ndcg += idcg > 0 ? dcg / idcg : 0;
    m->users++;
}

static void metrics_out(const metrics_acc *m, recodb_metrics *out)
{
    double u = m->users ? (double)m->users : 1;
    *out = (recodb_metrics){METRICS_K,
                            m->precision / u,
                            m->recall / u,
                            m->ndcg / u,
                            m->nitems ? (double)m->distinct / m->nitems : 0,
                            m->users};
}

/* ---- Platt scaling ---- */

static int pair_push(holdout *h, float s, uint8_t y)
{
    if (h->npairs == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 4096;
        float *ns = realloc(h->s, cap * sizeof *ns);
        if (ns)
            h->s = ns;
        uint8_t *ny = ns ? realloc(h->y, cap) : NULL;
        if (!ny)
            return CXM_ENOMEM;
        h->y = ny;
        h->cap = cap;
    }
    h->s[h->npairs] = s;
    h->y[h->npairs++] = y;
    return 0;
}

/* Logistic regression of y on the standardised score by Newton steps (a
 * little ridge keeps it defined when the classes separate); a slope that
 * comes out <= 0 is replaced by a tiny positive one, so that propensity
 * always keeps the model's order. */
static void platt_fit(const holdout *h, recodb_calib *c)
{
    double mean = 0, var = 0, pos = 0;
    for (size_t i = 0; i < h->npairs; i++) {
        mean += h->s[i];
        pos += h->y[i];
    }
    if (h->npairs < 2 || pos == 0) {
        *c = (recodb_calib){.a = 1, .b = 0};
        return;
    }
    mean /= (double)h->npairs;
    for (size_t i = 0; i < h->npairs; i++)
        var += (h->s[i] - mean) * (h->s[i] - mean);
    double sd = sqrt(var / (double)h->npairs);
    sd = sd > 0 ? sd : 1;
    double al = 0, be = log((pos + 0.5) / ((double)h->npairs - pos + 0.5));
    for (int it = 0; it < 30; it++) {
        double g0 = 1e-6 * al, g1 = 0, h00 = 1e-6, h01 = 0, h11 = 1e-9;
        for (size_t i = 0; i < h->npairs; i++) {
            double x = (h->s[i] - mean) / sd, p = 1 / (1 + exp(-(al * x + be)));
            double r = p - h->y[i], w = p * (1 - p);
            g0 += r * x, g1 += r, h00 += w * x * x, h01 += w * x, h11 += w;
        }
        double det = h00 * h11 - h01 * h01;
        if (!(det > 0))
            break;
        al -= (h11 * g0 - h01 * g1) / det;
        be -= (h00 * g1 - h01 * g0) / det;
    }
    if (!(al > 0))
        al = 1e-3;
    c->a = (float)(al / sd);
    c->b = (float)(be - al * mean / sd);
}

/* ---- evaluating ---- */

typedef struct eval_buf {
    recolog_event **order;
    uint32_t *hist, *excl, *recs;
    float *w, *scores;
    uint8_t *relevant;
} eval_buf;

static int eval_buf_init(eval_buf *b, size_t nevents, uint32_t nitems)
{
    b->order = malloc((nevents + 1) * sizeof *b->order);
    b->hist = malloc((nevents + 1) * sizeof *b->hist);
    b->excl = malloc((nevents + 1) * sizeof *b->excl);
    b->w = malloc((nevents + 1) * sizeof *b->w);
    b->recs = malloc(HOLDOUT_K * sizeof *b->recs);
    b->scores = malloc(HOLDOUT_K * sizeof *b->scores);
    b->relevant = calloc((size_t)nitems + 1, 1);
    return b->order && b->hist && b->excl && b->w && b->recs && b->scores && b->relevant
               ? 0
               : CXM_ENOMEM;
}

static void eval_buf_free(eval_buf *b)
{
    free(b->order);
    free(b->hist);
    free(b->excl);
    free(b->w);
    free(b->recs);
    free(b->scores);
    free(b->relevant);
}

/* Rank for one evaluated customer as serving would, and score it. */
static int eval_user(const train_run *tr, const reco_model *m, reco_scratch *s, holdout *h,
                     const size_t *start, uint32_t u, eval_buf *b, metrics_acc *acc)
{
    const recolog *log = &tr->d.log;
    size_t n = 0, nrel = 0, nhist = 0, nexcl = 0;
    for (size_t i = start[u]; i < start[u + 1]; i++) {
        if (h->test[i]) {
            b->relevant[log->ev[i].item] = 1;
            nrel++;
        } else
            b->order[n++] = &log->ev[i];
    }
    serving_order(tr, b->order, n);
    double half = tr->db->opts.recency_half_life;
    int64_t newest = n ? b->order[0]->ts : 0;
    for (size_t i = 0; i < n; i++) {
        const recolog_event *e = b->order[i];
        if (i >= tr->db->opts.max_history) {
            b->excl[nexcl++] = e->item;
            continue;
        }
        double age = (double)(newest - e->ts);
        b->hist[nhist] = e->item;
        b->w[nhist++] = half > 0 ? e->rating * (float)exp2(-age / half) : e->rating;
    }
    size_t nr =
        reco_recommend(m, s, b->hist, b->w, nhist, b->excl, nexcl, HOLDOUT_K, b->recs, b->scores);
    metrics_add(acc, b->recs, nr, b->relevant, nrel);
    int rc = 0;
    bool als = m->algo == RECO_ALS;
    for (size_t i = 0; rc == 0 && i < nr; i++)
        if (als ? nhist > 0 : b->scores[i] > 0)
            rc = pair_push(h, b->scores[i], b->relevant[b->recs[i]]);
    for (size_t i = start[u]; i < start[u + 1]; i++)
        b->relevant[log->ev[i].item] = 0;
    return rc;
}

static int evaluate(train_run *tr, holdout *h, const size_t *start, recodb_metrics *out,
                    recodb_calib *calib, char *err, size_t errlen)
{
    reco_matrix x = {0};
    reco_model *m = NULL;
    reco_scratch *s = NULL;
    eval_buf b = {0};
    metrics_acc acc = {.nitems = tr->d.items.n};
    acc.recommended = calloc((size_t)tr->d.items.n + 1, 1);
    int rc = fit_model(tr, &h->train, &x, &m, err, errlen);
    if (rc == 0 && (!acc.recommended || reco_scratch_create(m, &s) ||
                    eval_buf_init(&b, tr->d.log.n, tr->d.items.n)))
        rc = recodb__fail(err, errlen, CXM_ENOMEM, "out of memory evaluating the model");
    for (size_t i = 0; rc == 0 && i < h->nusers; i++) {
        rc = eval_user(tr, m, s, h, start, h->eval_users[i], &b, &acc);
        if (i % 64 == 0)
            progress(tr, 0.1 + 0.4 * (double)i / (double)h->nusers, "evaluating");
    }
    if (rc == 0) {
        metrics_out(&acc, out);
        platt_fit(h, calib);
        calib->has_metrics = h->nusers > 0;
    }
    eval_buf_free(&b);
    free(acc.recommended);
    reco_scratch_free(s);
    reco_model_free(m);
    recomatrix_free(&x);
    return rc;
}

static void holdout_free(holdout *h)
{
    free(h->eval_users);
    free(h->test);
    free(h->s);
    free(h->y);
    recolog_free(&h->train);
}

static int run_holdout(train_run *tr, recodb_metrics *metrics, recodb_calib *calib, char *err,
                       size_t errlen)
{
    holdout h = {0};
    size_t *start = NULL;
    if (tr->o->holdout_fraction < 0) { /* asked for none: training time halves */
        *calib = (recodb_calib){.a = 1, .b = 0};
        return 0;
    }
    int rc = user_ranges(&tr->d.log, tr->d.customers.n, &start);
    if (rc == 0)
        rc = split_holdout(tr, start, &h);
    if (rc != 0)
        recodb__fail(err, errlen, rc, "out of memory splitting off the holdout");
    else if (h.nusers == 0) /* too little data to measure: calibrate by default */
        *calib = (recodb_calib){.a = 1, .b = 0};
    else
        rc = evaluate(tr, &h, start, metrics, calib, err, errlen);
    free(start);
    holdout_free(&h);
    return rc;
}

/* ---- the kept version ---- */

/* The serving model's holdout NDCG, or -1 when it has none. */
static double serving_ndcg(recodb *db)
{
    cxm_txn *t;
    double ndcg = -1;
    if (cxm_store_read_begin(db->store, &t) != 0)
        return -1;
    uint64_t v = recodb__meta_get(t, db, "current");
    uint8_t key[16];
    const void *p;
    size_t len;
    recodb_calib c;
    if (v &&
        cxm_txn_get_ref(t, db->models, key, recodb__model_key(key, v, RECODB_PART_CALIB), &p,
                        &len) == 0 &&
        len == sizeof c) {
        memcpy(&c, p, sizeof c);
        ndcg = c.has_metrics ? c.metrics.ndcg : -1;
    }
    cxm_store_read_end(t);
    return ndcg;
}

static bool should_activate(recodb *db, const recodb_train_opts *o, const recodb_calib *c)
{
    if (o->activation == RECODB_ACTIVATE_NEVER)
        return false;
    if (o->activation == RECODB_ACTIVATE_ALWAYS)
        return true;
    double old = serving_ndcg(db);
    return old < 0 || !c->has_metrics || c->metrics.ndcg >= old;
}

typedef struct publish_ctx {
    const recodb_train_opts *o;
    recodb_train_report *rep;
    const recodb_metrics *metrics;
    bool activate;
    size_t model_len;
} publish_ctx;

/* The caller's on_publish, inside the transaction that stores the version. */
static int publish_hook(cxm_txn *t, uint64_t version, void *ctx)
{
    publish_ctx *c = ctx;
    c->rep->version = version;
    c->rep->model_bytes = c->model_len;
    return c->o->on_publish(t, c->rep, c->metrics, c->activate, c->o->user);
}

static int write_version(train_run *tr, const reco_model *m, recodb_calib *calib,
                         recodb_train_report *rep, bool *activated, char *err, size_t errlen)
{
    recodb_publish p = {.calib = *calib, .activate = should_activate(tr->db, tr->o, calib)};
    publish_ctx pc = {tr->o, rep, &calib->metrics, p.activate};
    if (tr->o->on_publish) {
        p.hook = publish_hook;
        p.hook_ctx = &pc;
    }
    void *mblob = NULL, *iblob = NULL;
    int rc = reco_model_pack(m, &mblob, &p.model_len);
    pc.model_len = p.model_len;
    if (rc == 0)
        rc = recodb__pack_items(&tr->d.items, &iblob, &p.items_len);
    if (rc != 0)
        recodb__fail(err, errlen, rc, "out of memory packing the model");
    p.model = mblob;
    p.items = iblob;
    if (rc == 0 && (rc = recodb__publish(tr->db, &p)) != 0)
        recodb__fail(err, errlen, rc, "writing the model: %s", cxm_store_last_error());
    if (rc == 0) {
        rep->version = p.version;
        rep->model_bytes = p.model_len;
        *activated = p.activate;
    }
    free(mblob);
    free(iblob);
    return rc;
}

static int check_opts(const recodb_train_opts *o, char *err, size_t errlen)
{
    if (o->algo != 0 && (o->algo < RECO_POP || o->algo > RECO_SEQ))
        return recodb__fail(err, errlen, CXM_EINVAL, "algorithm %d is not known", (int)o->algo);
    if (!(o->holdout_fraction <= 0.5) || isnan(o->holdout_fraction))
        return recodb__fail(err, errlen, CXM_EINVAL,
                            "holdout_fraction must be at most 0.5 (0 = 0.1, < 0 = none)");
    if (o->activation > RECODB_ACTIVATE_NEVER)
        return recodb__fail(err, errlen, CXM_EINVAL, "activation %d is not known",
                            (int)o->activation);
    if (o->since < 0)
        return recodb__fail(err, errlen, CXM_EINVAL, "since must be >= 0 (seconds since 1970)");
    return 0;
}

int recodb_train_ex(recodb *db, const recodb_train_opts *o, recodb_train_report *rep,
                    recodb_metrics *metrics, bool *activated, char *err, size_t errlen)
{
    double t0 = recodb__clock();
    train_run tr = {.db = db, .o = o, .d = {.since = o->since}};
    reco_matrix x = {0};
    reco_model *m = NULL;
    recodb_metrics met = {.k = METRICS_K};
    recodb_calib calib = {0};
    bool act = false;
    *rep = (recodb_train_report){0};
    int rc = check_opts(o, err, errlen);
    progress(&tr, 0, "reading the log");
    if (rc == 0)
        rc = read_log(&tr, err, errlen);
    /* The holdout measures the model that is kept: an automatic choice is
     * made first (on its own validation, inside the training data), and the
     * holdout then trains what it chose. */
    if (rc == 0) {
        choose_algo(&tr, err, errlen);
        bool chosen = tr.algo == 0;
        progress(&tr, 0.1, chosen ? "choosing" : "evaluating");
        rc = chosen ? fit_model(&tr, &tr.d.log, &x, &m, err, errlen) : 0;
        if (rc == 0)
            rc = run_holdout(&tr, &met, &calib, err, errlen);
    }
    if (rc == 0 && !m) {
        progress(&tr, 0.6, "training");
        rc = fit_model(&tr, &tr.d.log, &x, &m, err, errlen);
    }
    if (rc == 0) {
        calib.customers = tr.d.customers.n;
        calib.metrics = met;
        *rep = (recodb_train_report){0, tr.algo, tr.d.customers.n, tr.d.items.n, tr.d.log.n};
        rep->chosen = tr.o->algo == 0 && tr.choice.validate != 0;
        rep->choice = tr.choice;
        progress(&tr, 0.9, "writing");
        rc = write_version(&tr, m, &calib, rep, &act, err, errlen);
    }
    if (rc == 0)
        progress(&tr, 1, "writing");
    rep->seconds = recodb__clock() - t0;
    if (metrics)
        *metrics = met;
    if (activated)
        *activated = rc == 0 && act;
    reco_model_free(m);
    recomatrix_free(&x);
    free(tr.ihash);
    train_data_free(&tr.d);
    return rc;
}

int recodb_train(recodb *db, reco_algo algo, recodb_train_report *rep, char *err, size_t errlen)
{
    recodb_train_opts o = {.algo = algo, .activation = RECODB_ACTIVATE_ALWAYS};
    return recodb_train_ex(db, &o, rep, NULL, NULL, err, errlen);
}
