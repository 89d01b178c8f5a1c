/*
 * fagg.c - the incremental aggregates: score and rating cells per UTC hour
 * and per UTC day, in four LMDB tables.
 *
 * Why both: a query over weeks reads the day cells of its whole UTC days
 * (24 times fewer than hour cells) and hour cells only around them, so a
 * bucket that starts at local midnight in a whole-hour zone costs at most
 * 46 hours of hour cells. Keys start with the time, so a range is one
 * cursor walk:
 *   fagg_scores_h/_d   t kind survey touchpoint channel stage -> fagg_scores
 *   fagg_ratings_h/_d  t survey channel stage touchpoint      -> fagg_rates
 * with t the hour's (day's) start in ms, big-endian with the sign bit
 * flipped so byte order is time order. A cell whose count falls to zero
 * (erasure) is deleted, so cells exist only where responses are.
 */
#include "fagg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"

#define HOUR_MS 3600000LL
#define DAY_MS 86400000LL
#define SKEY_LEN 19
#define RKEY_LEN 18

struct fagg {
    MDB_dbi sh, sd, rh, rd;
};

int fagg_open(cxm_store *store, fagg **out)
{
    fagg *g = calloc(1, sizeof *g);
    if (!g)
        return CXM_ENOMEM;
    const cxm_store_table t[] = {{"fagg_scores_h", &g->sh},
                                 {"fagg_scores_d", &g->sd},
                                 {"fagg_ratings_h", &g->rh},
                                 {"fagg_ratings_d", &g->rd}};
    int rc = cxm_store_dbis(store, t, sizeof t / sizeof t[0]);
    if (rc) {
        free(g);
        return rc;
    }
    *out = g;
    return 0;
}

void fagg_close(fagg *g)
{
    free(g);
}

/* ---- sums -------------------------------------------------------------- */

void fagg_dd_add(fagg_dd *a, double b)
{
    double s = a->hi + b, bb = s - a->hi;
    double err = (a->hi - (s - bb)) + (b - bb); /* Knuth's TwoSum */
    double lo = a->lo + err;
    a->hi = s + lo;
    a->lo = lo - (a->hi - s);
}

void fagg_dd_add_dd(fagg_dd *a, fagg_dd b)
{
    fagg_dd_add(a, b.hi);
    fagg_dd_add(a, b.lo);
}

void fagg_dd_add_prod(fagg_dd *a, double x, double y)
{
    double p = x * y;
    fagg_dd_add(a, p);
    fagg_dd_add(a, fma(x, y, -p));
}

void fagg_rates_add(fagg_rates *t, const frec *r, const frec_rating *rt, int sign)
{
    double s = sign, x = rt->experience, y = r->score;
    t->n += (uint64_t)(int64_t)sign;
    t->disappointed += rt->experience < rt->expectation ? (uint64_t)(int64_t)sign : 0;
    fagg_dd_add(&t->se, s * rt->expectation);
    fagg_dd_add(&t->sx, s * x);
    if (r->kind != 1 /* CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS */)
        return;
    t->m += (uint64_t)(int64_t)sign;
    t->sy += (uint64_t)((int64_t)sign * r->score);
    t->syy += (uint64_t)((int64_t)sign * r->score * r->score);
    fagg_dd_add(&t->mx, s * x);
    fagg_dd_add_prod(&t->mxx, s * x, x);
    fagg_dd_add_prod(&t->mxy, s * x, y);
}

void fagg_rates_merge(fagg_rates *into, const fagg_rates *from)
{
    into->n += from->n, into->disappointed += from->disappointed;
    into->m += from->m, into->sy += from->sy, into->syy += from->syy;
    fagg_dd_add_dd(&into->se, from->se);
    fagg_dd_add_dd(&into->sx, from->sx);
    fagg_dd_add_dd(&into->mx, from->mx);
    fagg_dd_add_dd(&into->mxx, from->mxx);
    fagg_dd_add_dd(&into->mxy, from->mxy);
}

void fagg_scores_merge(fagg_scores *into, const fagg_scores *from)
{
    for (int i = 0; i < 11; i++)
        into->hist[i] += from->hist[i];
}

/* ---- keys -------------------------------------------------------------- */

static unsigned char *put_be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
    return p + bytes;
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

static unsigned char *put_time(unsigned char *p, int64_t t)
{
    return put_be(p, (uint64_t)t ^ (1ull << 63), 8);
}

static int64_t get_time(const unsigned char *p)
{
    return (int64_t)(get_be(p, 8) ^ (1ull << 63));
}

static int64_t floor_to(int64_t t, int64_t unit)
{
    int64_t q = t / unit;
    return (t % unit < 0 ? q - 1 : q) * unit;
}

static void skey(unsigned char k[SKEY_LEN], int64_t t, const frec *r)
{
    unsigned char *p = put_time(k, t);
    *p++ = r->kind;
    p = put_be(p, r->survey, 4);
    p = put_be(p, r->touchpoint, 4);
    *p++ = r->channel;
    *p = r->stage;
}

static void rkey(unsigned char k[RKEY_LEN], int64_t t, const frec *r, uint32_t touchpoint)
{
    unsigned char *p = put_time(k, t);
    p = put_be(p, r->survey, 4);
    *p++ = r->channel;
    *p++ = r->stage;
    put_be(p, touchpoint, 4);
}

/* ---- writing ----------------------------------------------------------- */

/* The cell at key k into v (zeroed when new): 0 if it existed,
 * CXM_ENOTFOUND if new, or a store error. */
static int cell_get(cxm_txn *txn, MDB_dbi dbi, const unsigned char *k, size_t klen, void *v,
                    size_t size)
{
    const void *old;
    size_t len;
    memset(v, 0, size);
    int rc = cxm_txn_get_ref(txn, dbi, k, klen, &old, &len);
    if (rc == 0 && len != size)
        return CXM_ECORRUPT;
    if (rc == 0)
        memcpy(v, old, size);
    return rc;
}

/* Writes the cell back, or deletes it once it counts nothing (existed: the
 * result of cell_get). */
static int cell_put(cxm_txn *txn, MDB_dbi dbi, const unsigned char *k, size_t klen, const void *v,
                    size_t size, bool empty, int existed)
{
    if (empty)
        return existed == 0 ? cxm_txn_del(txn, dbi, k, klen) : 0;
    return cxm_txn_put(txn, dbi, k, klen, v, size, 0);
}

static int score_cell(cxm_txn *txn, MDB_dbi dbi, int64_t t, const frec *r, int sign)
{
    unsigned char k[SKEY_LEN];
    skey(k, t, r);
    fagg_scores v;
    int rc = cell_get(txn, dbi, k, sizeof k, &v, sizeof v);
    if (rc && rc != CXM_ENOTFOUND)
        return rc;
    v.hist[r->score <= 10 ? r->score : 10] += (uint64_t)(int64_t)sign;
    uint64_t n = 0;
    for (int i = 0; i < 11; i++)
        n += v.hist[i];
    return cell_put(txn, dbi, k, sizeof k, &v, sizeof v, n == 0, rc);
}

static int rating_cell(cxm_txn *txn, MDB_dbi dbi, int64_t t, const frec *r, const frec_rating *rt,
                       int sign)
{
    unsigned char k[RKEY_LEN];
    rkey(k, t, r, rt->touchpoint);
    fagg_rates v;
    int rc = cell_get(txn, dbi, k, sizeof k, &v, sizeof v);
    if (rc && rc != CXM_ENOTFOUND)
        return rc;
    fagg_rates_add(&v, r, rt, sign);
    /* Deleting at zero drops the rounding residue of removed ratings too. */
    return cell_put(txn, dbi, k, sizeof k, &v, sizeof v, v.n == 0, rc);
}

int fagg_apply(cxm_txn *txn, const fagg *g, const frec *r, int sign)
{
    int64_t h = floor_to(r->at_ms, HOUR_MS), d = floor_to(r->at_ms, DAY_MS);
    int rc = score_cell(txn, g->sh, h, r, sign);
    if (rc == 0)
        rc = score_cell(txn, g->sd, d, r, sign);
    for (unsigned i = 0; rc == 0 && i < r->nratings; i++) {
        rc = rating_cell(txn, g->rh, h, r, &r->ratings[i], sign);
        if (rc == 0)
            rc = rating_cell(txn, g->rd, d, r, &r->ratings[i], sign);
    }
    return rc;
}

/* ---- reading ----------------------------------------------------------- */

typedef struct walk {
    bool ratings;
    fagg_scell_fn sfn;
    fagg_rcell_fn rfn;
    void *user;
} walk;

static int walk_cell(const walk *w, const unsigned char *k, size_t klen, const void *val,
                     size_t vlen)
{
    if (!w->ratings) {
        fagg_scores v;
        if (klen != SKEY_LEN || vlen != sizeof v)
            return CXM_ECORRUPT;
        memcpy(&v, val, sizeof v);
        fagg_scell c = {.kind = k[8],
                        .survey = (uint32_t)get_be(k + 9, 4),
                        .touchpoint = (uint32_t)get_be(k + 13, 4),
                        .channel = k[17],
                        .stage = k[18],
                        .v = &v};
        return w->sfn(&c, w->user);
    }
    fagg_rates v;
    if (klen != RKEY_LEN || vlen != sizeof v)
        return CXM_ECORRUPT;
    memcpy(&v, val, sizeof v);
    fagg_rcell c = {.survey = (uint32_t)get_be(k + 8, 4),
                    .channel = k[12],
                    .stage = k[13],
                    .touchpoint = (uint32_t)get_be(k + 14, 4),
                    .v = &v};
    return w->rfn(&c, w->user);
}

/* The cells of table dbi with t in [from, to); open ends unbounded. */
static int walk_range(cxm_txn *txn, MDB_dbi dbi, int64_t from, int64_t to, const walk *w)
{
    unsigned char f[8], e[8];
    put_time(f, from);
    put_time(e, to);
    if (from >= to)
        return 0;
    cxm_iter it;
    int rc = cxm_iter_range(txn, dbi, from == INT64_MIN ? NULL : f, from == INT64_MIN ? 0 : 8,
                            to == INT64_MAX ? NULL : e, to == INT64_MAX ? 0 : 8, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0)
        rc = walk_cell(w, it.key, it.klen, it.val, it.vlen);
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* Whole days [d0, d1) from the day table, the hours around from the hour
 * table. */
static int walk_cells(cxm_txn *txn, MDB_dbi hours, MDB_dbi days, int64_t from, int64_t to,
                      const walk *w)
{
    int64_t d0 = from == INT64_MIN ? from : -floor_to(-from, DAY_MS);
    int64_t d1 = to == INT64_MAX ? to : floor_to(to, DAY_MS);
    if (d0 >= d1)
        return walk_range(txn, hours, from, to, w);
    int rc = walk_range(txn, hours, from, d0, w);
    if (rc == 0)
        rc = walk_range(txn, days, d0, d1, w);
    if (rc == 0)
        rc = walk_range(txn, hours, d1, to, w);
    return rc;
}

int fagg_scores_cells(cxm_txn *txn, const fagg *g, int64_t from_ms, int64_t to_ms, fagg_scell_fn fn,
                      void *user)
{
    walk w = {.ratings = false, .sfn = fn, .user = user};
    return walk_cells(txn, g->sh, g->sd, from_ms, to_ms, &w);
}

int fagg_rating_cells(cxm_txn *txn, const fagg *g, int64_t from_ms, int64_t to_ms, fagg_rcell_fn fn,
                      void *user)
{
    walk w = {.ratings = true, .rfn = fn, .user = user};
    return walk_cells(txn, g->rh, g->rd, from_ms, to_ms, &w);
}

static int edge_hour(cxm_txn *txn, const fagg *g, bool last, int64_t *hour_ms)
{
    cxm_iter it;
    int rc = cxm_iter_range(txn, g->sh, NULL, 0, NULL, 0, last, &it);
    if (rc == 0 && (rc = cxm_iter_next(&it)) == 0)
        *hour_ms = it.klen == SKEY_LEN ? get_time(it.key) : 0;
    if (rc == 0 && it.klen != SKEY_LEN)
        rc = CXM_ECORRUPT;
    cxm_iter_close(&it);
    return rc;
}

int fagg_first_hour(cxm_txn *txn, const fagg *g, int64_t *hour_ms)
{
    return edge_hour(txn, g, false, hour_ms);
}

int fagg_last_hour(cxm_txn *txn, const fagg *g, int64_t *hour_ms)
{
    return edge_hour(txn, g, true, hour_ms);
}
