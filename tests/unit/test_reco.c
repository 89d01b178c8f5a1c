/*
 * test_reco.c - the recommendation core on small hand-made data, and the
 * ids, logs and matrices it is trained from.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cxm/arena.h"
#include "cxm/err.h"
#include "cxm/hash.h"
#include "personalisation/reco/reco.h"
#include "personalisation/reco/recoids.h"
#include "personalisation/reco/recolog.h"
#include "personalisation/reco/recomatrix.h"

/* Two taste groups: users 0-5 like items 0-3, users 6-11 like items 4-7;
 * item 8 is liked by everyone (the popular one). User 12 has only item 0. */
static reco_matrix build(void)
{
    static uint64_t row[14];
    static uint32_t items[128];
    static float weights[128];
    reco_matrix x = {13, 9, row, items, weights, NULL};
    uint64_t n = 0;
    for (uint32_t u = 0; u < 12; u++) {
        uint32_t base = u < 6 ? 0 : 4;
        for (uint32_t i = 0; i < 4; i++)
            if ((u + i) % 4 != 0) /* each user misses one of their group's items */
                items[n++] = base + i;
        items[n++] = 8;
        row[u + 1] = n;
    }
    items[n++] = 0;
    row[13] = n;
    for (uint64_t i = 0; i < n; i++)
        weights[i] = 1;
    return x;
}

static bool contains(const uint32_t *items, size_t n, uint32_t item)
{
    for (size_t i = 0; i < n; i++)
        if (items[i] == item)
            return true;
    return false;
}

static void check_algo_with(reco_algo algo, const reco_params *p, const reco_matrix *x)
{
    reco_model *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train(algo, p, x, &m, err, sizeof err), 0);
    reco_scratch *s;
    CHECK_EQ_INT(reco_scratch_create(m, &s), 0);
    uint32_t out[9];
    float score[9];
    /* User 12 saw item 0: its group's items come first, never item 0. */
    uint32_t hist[] = {0};
    size_t got = reco_recommend(m, s, hist, NULL, 1, NULL, 0, 3, out, score);
    CHECK_EQ_INT(got, 3);
    CHECK(!contains(out, got, 0));
    if (algo != RECO_POP) { /* the other taste group stays out of the top 3 */
        for (size_t i = 0; i < got; i++)
            CHECK(out[i] < 4 || out[i] > 7);
        CHECK(score[0] >= score[1] && score[1] >= score[2]);
    } else {
        CHECK_EQ_INT(out[0], 8); /* the most popular */
    }
    /* Exclusions hold, and k larger than what is left returns what is left. */
    uint32_t excl[] = {1, 2, 3, 8};
    got = reco_recommend(m, s, hist, NULL, 1, excl, 4, 9, out, NULL);
    CHECK_EQ_INT(got, 4); /* 9 items - history 1 - excluded 4 */
    for (size_t i = 0; i < got; i++)
        CHECK(!contains(excl, 4, out[i]) && out[i] != 0);
    /* An empty history (cold start) gets popularity. */
    got = reco_recommend(m, s, NULL, NULL, 0, NULL, 0, 1, out, NULL);
    CHECK(got == 1 && out[0] == 8);
    /* The scratch is left clean: the same call twice gives the same answer. */
    uint32_t again[3];
    reco_recommend(m, s, hist, NULL, 1, NULL, 0, 3, out, NULL);
    reco_recommend(m, s, hist, NULL, 1, NULL, 0, 3, again, NULL);
    CHECK(memcmp(out, again, sizeof again) == 0);
    reco_scratch_free(s);
    reco_model_free(m);
}

static void check_algo(reco_algo algo, const reco_matrix *x)
{
    check_algo_with(algo, NULL, x);
}

/* Recommendations of two models agree for every one-item history. */
static void check_same(const reco_model *a, const reco_model *b, uint32_t nitems)
{
    reco_scratch *s;
    CHECK_EQ_INT(reco_scratch_create(a, &s), 0);
    for (uint32_t i = 0; i < nitems; i++) {
        uint32_t x[9], y[9];
        float sx[9], sy[9];
        size_t nx = reco_recommend(a, s, &i, NULL, 1, NULL, 0, 9, x, sx);
        size_t ny = reco_recommend(b, s, &i, NULL, 1, NULL, 0, 9, y, sy);
        CHECK(nx == ny && memcmp(x, y, nx * sizeof *x) == 0 &&
              memcmp(sx, sy, nx * sizeof *sx) == 0);
    }
    reco_scratch_free(s);
}

/* A packed model viewed in place (aligned, and copied when misaligned)
 * serves exactly as the trained one; damaged blobs are refused. */
static void check_pack_view(reco_algo algo, const reco_matrix *x)
{
    reco_model *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train(algo, NULL, x, &m, err, sizeof err), 0);
    void *blob;
    size_t len;
    CHECK_EQ_INT(reco_model_pack(m, &blob, &len), 0);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    const reco_model *v;
    CHECK_EQ_INT(reco_model_view(blob, len, &a, &v, err, sizeof err), 0);
    CHECK_EQ_INT(reco_model_algo(v), algo);
    CHECK_EQ_INT(reco_model_items(v), x->nitems);
    check_same(m, v, x->nitems);
    char *odd = malloc(len + 2); /* LMDB gives small values 2-byte alignment */
    memcpy(odd + 2, blob, len);
    CHECK_EQ_INT(reco_model_view(odd + 2, len, &a, &v, err, sizeof err), 0);
    check_same(m, v, x->nitems);
    CHECK_EQ_INT(reco_model_view(blob, len - 1, &a, &v, err, sizeof err), CXM_EINVAL);
    /* RECO_SEQ's outer header is what no longer matches the length. */
    CHECK(strstr(err, algo == RECO_SEQ ? "match its header" : "size") != NULL);
    CHECK_EQ_INT(reco_model_view(blob, 8, &a, &v, err, sizeof err), CXM_EINVAL);
    ((char *)blob)[0] ^= 1;
    CHECK_EQ_INT(reco_model_view(blob, len, &a, &v, err, sizeof err), CXM_EINVAL);
    free(odd);
    free(blob);
    cxm_arena_dispose(&a);
    reco_model_free(m);
}

/* Training algo with p refuses, naming field. */
static void expect_bad_param(const reco_matrix *x, reco_algo algo, const reco_params *p,
                             const char *field)
{
    reco_model *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train(algo, p, x, &m, err, sizeof err), CXM_EINVAL);
    CHECK(strstr(err, field) != NULL);
}

static void check_bad_params(const reco_matrix *x)
{
    reco_params p;
    reco_params_default(RECO_EASE, &p);
    p.lambda = 0;
    expect_bad_param(x, RECO_EASE, &p, "lambda");
    reco_params_default(RECO_ITEMKNN, &p);
    p.neighbours = 0;
    expect_bad_param(x, RECO_ITEMKNN, &p, "neighbours");
    reco_params_default(RECO_ITEMKNN, &p);
    p.shrink = -1;
    expect_bad_param(x, RECO_ITEMKNN, &p, "shrink");
    expect_bad_param(x, (reco_algo)99, NULL, "algorithm");
    reco_params_default(RECO_ALS, &p);
    p.factors = 0;
    expect_bad_param(x, RECO_ALS, &p, "factors");
    reco_params_default(RECO_ALS, &p);
    p.alpha = -1;
    expect_bad_param(x, RECO_ALS, &p, "alpha");
}

/* A scratch too small for a model returns nothing until fitted. */
static void check_scratch_fit(const reco_matrix *x)
{
    reco_matrix small = *x;
    small.nusers = 1; /* user 0 and their first three items: 1, 2, 3 */
    small.nitems = 4;
    static uint64_t row[2] = {0, 3};
    small.row = row;
    reco_model *ms, *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train(RECO_POP, NULL, &small, &ms, err, sizeof err), 0);
    CHECK_EQ_INT(reco_train(RECO_POP, NULL, x, &m, err, sizeof err), 0);
    reco_scratch *s;
    CHECK_EQ_INT(reco_scratch_create(ms, &s), 0);
    uint32_t out[3];
    CHECK_EQ_INT(reco_recommend(m, s, NULL, NULL, 0, NULL, 0, 3, out, NULL), 0);
    CHECK_EQ_INT(reco_scratch_fit(s, m), 0);
    CHECK_EQ_INT(reco_recommend(m, s, NULL, NULL, 0, NULL, 0, 3, out, NULL), 3);
    CHECK_EQ_INT(out[0], 8);
    reco_scratch_free(s);
    reco_model_free(ms);
    reco_model_free(m);
}

static void check_ids(void)
{
    recoids ids = {0};
    char name[32];
    int ok = 1;
    for (uint32_t i = 0; i < 5000; i++) {
        uint32_t got;
        snprintf(name, sizeof name, "id%u", i);
        ok &= recoids_intern(&ids, name, strlen(name), &got) == 0 && got == i;
    }
    uint32_t again;
    ok &= recoids_intern(&ids, "id42 and more", 4, &again) == 0 && again == 42;
    for (uint32_t i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "id%u", i);
        ok &= recoids_find(&ids, name) == i;
    }
    CHECK(ok);
    CHECK_EQ_INT(ids.n, 5000);
    CHECK_EQ_INT(recoids_find(&ids, "id5000"), UINT32_MAX);
    /* Reverse the numbering: names and lookups follow. */
    uint32_t *map = malloc(5000 * sizeof *map);
    for (uint32_t i = 0; i < 5000; i++)
        map[i] = 4999 - i;
    CHECK_EQ_INT(recoids_permute(&ids, map), 0);
    CHECK_EQ_STR(ids.names[0], "id4999");
    CHECK_EQ_INT(recoids_find(&ids, "id0"), 4999);
    free(map);
    recoids_free(&ids);
    CHECK_EQ_INT(recoids_find(&ids, "id0"), UINT32_MAX);
}

static void check_log_matrix(void)
{
    recolog log = {0};
    const recolog_event ev[] = {{0, 0, 1, 10}, {1, 1, 2.5f, 3}, {0, 0, 4, 7}, {0, 2, 1, 1}};
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++)
        CHECK_EQ_INT(recolog_push(&log, &ev[i]), 0);
    reco_matrix m;
    /* A repeated (user, item) pair is refused before de-duplication. */
    CHECK_EQ_INT(recomatrix_build(&log, 2, 3, &m), CXM_EINVAL);
    CHECK(m.row == NULL);
    recolog_dedupe(&log);
    CHECK_EQ_INT(log.n, 3);
    /* (0, 0): the max rating (4) and the latest ts (10); sorted by user, item. */
    CHECK(log.ev[0].user == 0 && log.ev[0].item == 0 && log.ev[0].rating == 4.0f);
    CHECK_EQ_INT(log.ev[0].ts, 10);
    CHECK(log.ev[1].user == 0 && log.ev[1].item == 2 && log.ev[2].user == 1);
    CHECK_EQ_INT(recomatrix_build(&log, 2, 2, &m), CXM_EINVAL); /* item 2 out of bounds */
    CHECK_EQ_INT(recomatrix_build(&log, 3, 3, &m), 0);
    CHECK(m.nusers == 3 && m.nitems == 3);
    CHECK(m.row[1] == 2 && m.row[2] == 3 && m.row[3] == 3); /* user 2: an empty row */
    CHECK(m.items[0] == 0 && m.items[1] == 2 && m.items[2] == 1);
    CHECK(m.weights[0] == 4.0f && m.weights[2] == 2.5f);
    CHECK(m.ts[0] == 10 && m.ts[1] == 1);
    recomatrix_free(&m);
    recolog_free(&log);
    CHECK_EQ_INT(recomatrix_build(&log, 1, 1, &m), 0); /* an empty log */
    CHECK_EQ_INT(m.row[1], 0);
    recomatrix_free(&m);
}

/* ---- RECO_SEQ and the automatic choice (reco_train_auto) ---- */

/* The packed RECO_SEQ header as reco.c lays it out (reco_seq_header): the
 * corruption test edits its fields in place. */
typedef struct seq_blob_header {
    uint64_t magic;
    uint32_t algo;
    float blend, hist_half, seq_half;
    uint64_t base_len, next_len;
} seq_blob_header;

/* view refuses blob (len bytes, edited by the caller) with CXM_EINVAL. */
static void expect_refused(const void *blob, size_t len, cxm_arena *a)
{
    const reco_model *v = NULL;
    char err[128] = "";
    CHECK_EQ_INT(reco_model_view(blob, len, a, &v, err, sizeof err), CXM_EINVAL);
    CHECK(err[0] != '\0');
}

/* Damaged sequence blobs are refused, not read past their end: the view
 * trusts the header's sizes, so each one that lies must be caught. */
static void check_seq_blob_corrupt(const reco_matrix *x)
{
    reco_model *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train(RECO_SEQ, NULL, x, &m, err, sizeof err), 0);
    void *blob;
    size_t len;
    CHECK_EQ_INT(reco_model_pack(m, &blob, &len), 0);
    seq_blob_header h;
    memcpy(&h, blob, sizeof h);
    /* The layout the edits below assume: header, EASE blob, transition blob. */
    CHECK_EQ_INT(h.algo, RECO_SEQ);
    CHECK_EQ_INT(sizeof h + ((h.base_len + 7) & ~(uint64_t)7) + h.next_len, len);
    char *b = malloc(len);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    const size_t cuts[] = {1, 8, len / 2};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        expect_refused(blob, len - cuts[i], &a); /* truncated */
    expect_refused(blob, sizeof h, &a);          /* the header alone */
    const float bad_floats[][3] = {
        /* blend, hist_half, seq_half */
        {2.0f, 0, 8}, {-0.5f, 0, 8}, {NAN, 0, 8},    {0.5f, -1, 8},   {0.5f, NAN, 8},
        {0.5f, 0, 0}, {0.5f, 0, -8}, {0.5f, 0, NAN}, {0.5f, 0, 1e9f},
    };
    for (size_t i = 0; i < sizeof bad_floats / sizeof bad_floats[0]; i++) {
        seq_blob_header e = h;
        e.blend = bad_floats[i][0];
        e.hist_half = bad_floats[i][1];
        e.seq_half = bad_floats[i][2];
        memcpy(b, blob, len);
        memcpy(b, &e, sizeof e);
        expect_refused(b, len, &a);
    }
    /* Sizes: longer or shorter than the blob, wrapping, or moving the
     * boundary between the two models while keeping the total. */
    const int64_t shifts[][2] = {{8, 0}, {0, 8}, {-8, 0}, {0, -8}, {-8, 8}, {8, -8}, {-1, 1}};
    for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++) {
        seq_blob_header e = h;
        e.base_len = (uint64_t)((int64_t)h.base_len + shifts[i][0]);
        e.next_len = (uint64_t)((int64_t)h.next_len + shifts[i][1]);
        memcpy(b, blob, len);
        memcpy(b, &e, sizeof e);
        expect_refused(b, len, &a);
    }
    seq_blob_header e = h;
    e.base_len = UINT64_MAX - 6; /* align8 of it wraps to 0, and then the */
    e.next_len = len - sizeof h; /* total would match the blob's length */
    memcpy(b, blob, len);
    memcpy(b, &e, sizeof e);
    expect_refused(b, len, &a);
    e = h;
    e.algo = RECO_EASE;
    memcpy(b, &e, sizeof e);
    expect_refused(b, len, &a);
    /* The inner blobs: a damaged magic in either, and a transition model
     * that claims to be item-kNN (the algo field follows the 8-byte magic). */
    size_t next_at = sizeof h + ((h.base_len + 7) & ~(uint64_t)7);
    memcpy(b, blob, len);
    b[sizeof h] ^= 1;
    expect_refused(b, len, &a);
    memcpy(b, blob, len);
    b[next_at] ^= 1;
    expect_refused(b, len, &a);
    memcpy(b, blob, len);
    uint32_t knn = RECO_ITEMKNN;
    memcpy(b + next_at + 8, &knn, sizeof knn);
    expect_refused(b, len, &a);
    /* And the blob as packed is still accepted after all that. */
    const reco_model *v;
    CHECK_EQ_INT(reco_model_view(blob, len, &a, &v, err, sizeof err), 0);
    cxm_arena_dispose(&a);
    free(b);
    free(blob);
    reco_model_free(m);
}

/* Training RECO_SEQ with each field out of its range refuses, naming it. */
static void check_seq_bad_params(const reco_matrix *x)
{
    static const struct {
        double seq_lambda, seq_half, hist_half, blend;
        const char *field;
    } bad[] = {
        {0, 8, 0, 0.5, "seq_lambda"},   {-1, 8, 0, 0.5, "seq_lambda"},
        {NAN, 8, 0, 0.5, "seq_lambda"}, {INFINITY, 8, 0, 0.5, "seq_lambda"},
        {1, 0, 0, 0.5, "seq_half"},     {1, -8, 0, 0.5, "seq_half"},
        {1, NAN, 0, 0.5, "seq_half"},   {1, 8, -1, 0.5, "hist_half"},
        {1, 8, NAN, 0.5, "hist_half"},  {1, 8, 0, -0.1, "blend"},
        {1, 8, 0, 1.1, "blend"},        {1, 8, 0, NAN, "blend"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reco_params p;
        reco_params_default(RECO_SEQ, &p);
        p.seq_lambda = bad[i].seq_lambda;
        p.seq_half = bad[i].seq_half;
        p.hist_half = bad[i].hist_half;
        p.blend = bad[i].blend;
        expect_bad_param(x, RECO_SEQ, &p, bad[i].field);
    }
    /* The ends of the ranges are accepted: blend 0 and 1, hist_half 0. */
    reco_params p;
    reco_params_default(RECO_SEQ, &p);
    for (int end = 0; end < 2; end++) {
        reco_model *m;
        char err[128] = "";
        p.blend = end;
        p.hist_half = 0;
        CHECK_EQ_INT(reco_train(RECO_SEQ, &p, x, &m, err, sizeof err), 0);
        reco_model_free(m);
    }
    /* EASE's own lambda still applies to RECO_SEQ's EASE half. */
    p.lambda = 0;
    expect_bad_param(x, RECO_SEQ, &p, "lambda");
}

#define MAX_HIST 64

/* Customer u's items newest first (ties: the larger item first, as
 * reco_train_auto orders them), as a service passes a history; the count. */
static size_t history_of(const reco_matrix *x, uint32_t u, uint32_t *hist)
{
    int64_t when[MAX_HIST];
    size_t n = 0;
    for (uint64_t q = x->row[u]; q < x->row[u + 1] && n < MAX_HIST; q++, n++) {
        int64_t t = x->ts ? x->ts[q] : 0;
        size_t at = n;
        for (; at > 0 && (when[at - 1] < t || (when[at - 1] == t && hist[at - 1] < x->items[q]));
             at--) {
            when[at] = when[at - 1];
            hist[at] = hist[at - 1];
        }
        when[at] = t;
        hist[at] = x->items[q];
    }
    return n;
}

/* A matrix from a log (de-duplicated first); the caller frees it with
 * recomatrix_free, and the log here. */
static reco_matrix matrix_of(recolog *log, uint32_t nusers, uint32_t nitems)
{
    reco_matrix x;
    recolog_dedupe(log);
    CHECK_EQ_INT(recomatrix_build(log, nusers, nitems, &x), 0);
    recolog_free(log);
    return x;
}

static void push(recolog *log, uint32_t user, uint32_t item, int64_t ts)
{
    recolog_event e = {user, item, 1.0f, ts};
    CHECK_EQ_INT(recolog_push(log, &e), 0);
}

/* Customers walking a ring of items: customer c starts at a random item
 * and visits the next 15-25 in order, one second apart (shuffled: the
 * same items at the same seconds in a random order, so that order carries
 * nothing). Each item is seen by about 100 customers. */
#define RING_ITEMS 60
#define RING_CUSTOMERS 300

static reco_matrix ring(bool shuffled, uint64_t seed)
{
    recolog log = {0};
    uint64_t rng = seed;
    for (uint32_t c = 0; c < RING_CUSTOMERS; c++) {
        uint32_t start = (uint32_t)(cxm_splitmix64(&rng) % RING_ITEMS);
        uint32_t len = 15 + (uint32_t)(cxm_splitmix64(&rng) % 11);
        int64_t at[25];
        for (uint32_t j = 0; j < len; j++)
            at[j] = j;
        for (uint32_t j = len - 1; shuffled && j > 0; j--) {
            uint32_t k = (uint32_t)(cxm_splitmix64(&rng) % (j + 1));
            int64_t t = at[j];
            at[j] = at[k];
            at[k] = t;
        }
        for (uint32_t j = 0; j < len; j++)
            push(&log, c, (start + j) % RING_ITEMS, 1700000000 + 1000 * (int64_t)c + at[j]);
    }
    return matrix_of(&log, RING_CUSTOMERS, RING_ITEMS);
}

/* How many customers get the item after their latest one (around the
 * ring) among their top k. */
static uint32_t next_hits(const reco_model *m, const reco_matrix *x, size_t k)
{
    reco_scratch *s;
    CHECK_EQ_INT(reco_scratch_create(m, &s), 0);
    uint32_t hits = 0;
    for (uint32_t u = 0; u < x->nusers; u++) {
        uint32_t hist[MAX_HIST], out[10];
        size_t n = history_of(x, u, hist);
        size_t got = reco_recommend(m, s, hist, NULL, n, NULL, 0, k, out, NULL);
        hits += contains(out, got, (hist[0] + 1) % RING_ITEMS);
    }
    reco_scratch_free(s);
    return hits;
}

/* Two models give the same answers, scores included, to every customer's
 * whole history (check_same only tries one-item histories, where position
 * weights do nothing). */
static void check_same_histories(const reco_model *a, const reco_model *b, const reco_matrix *x)
{
    reco_scratch *s;
    CHECK_EQ_INT(reco_scratch_create(a, &s), 0);
    uint32_t differ = 0;
    for (uint32_t u = 0; u < x->nusers; u++) {
        uint32_t hist[MAX_HIST], p[10], q[10];
        float sp[10], sq[10];
        size_t n = history_of(x, u, hist);
        size_t np = reco_recommend(a, s, hist, NULL, n, NULL, 0, 10, p, sp);
        size_t nq = reco_recommend(b, s, hist, NULL, n, NULL, 0, 10, q, sq);
        differ += !(np == nq && memcmp(p, q, np * sizeof *p) == 0 &&
                    memcmp(sp, sq, np * sizeof *sp) == 0);
    }
    CHECK_EQ_INT(differ, 0);
    reco_scratch_free(s);
}

/* The model packed and viewed back serves every history as it did. */
static void check_view_serves(const reco_model *m, const reco_matrix *x)
{
    void *blob;
    size_t len;
    CHECK_EQ_INT(reco_model_pack(m, &blob, &len), 0);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    const reco_model *v;
    char err[128] = "";
    CHECK_EQ_INT(reco_model_view(blob, len, &a, &v, err, sizeof err), 0);
    CHECK_EQ_INT(reco_model_algo(v), reco_model_algo(m));
    check_same_histories(m, v, x);
    cxm_arena_dispose(&a);
    free(blob);
}

/* NDCG@10 of algo with p on the temporal validation reco_train_auto
 * describes (reco.h), redone here through the public calls: each customer
 * with 5 or more interactions holds out their latest 20% (at least one;
 * ties: the larger item is the later), the model is trained on the rest
 * and serves each such customer's remaining history, newest first
 * (weights 1, as in every matrix here). */
static double temporal_ndcg(const reco_matrix *x, reco_algo algo, const reco_params *p)
{
    recolog log = {0};
    static uint32_t held[1024][MAX_HIST];
    static size_t nheld[1024];
    CHECK(x->nusers <= 1024);
    for (uint32_t u = 0; u < x->nusers && u < 1024; u++) {
        uint32_t hist[MAX_HIST];
        size_t n = history_of(x, u, hist);
        nheld[u] = n < 5 ? 0 : (size_t)llround(0.2 * (double)n);
        nheld[u] += n >= 5 && nheld[u] == 0;
        memcpy(held[u], hist, nheld[u] * sizeof *hist);
        for (uint64_t q = x->row[u]; q < x->row[u + 1]; q++)
            if (!contains(held[u], nheld[u], x->items[q]))
                push(&log, u, x->items[q], x->ts[q]);
    }
    reco_matrix t = matrix_of(&log, x->nusers, x->nitems);
    reco_model *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train(algo, p, &t, &m, err, sizeof err), 0);
    reco_scratch *s;
    CHECK_EQ_INT(reco_scratch_create(m, &s), 0);
    double sum = 0;
    uint32_t validated = 0;
    for (uint32_t u = 0; u < x->nusers && u < 1024; u++) {
        if (nheld[u] == 0)
            continue;
        uint32_t hist[MAX_HIST], out[10];
        size_t n = history_of(&t, u, hist);
        size_t got = reco_recommend(m, s, hist, NULL, n, NULL, 0, 10, out, NULL);
        double dcg = 0, ideal = 0;
        for (size_t i = 0; i < got; i++)
            dcg += contains(held[u], nheld[u], out[i]) ? 1 / log2((double)i + 2) : 0;
        for (size_t i = 0; i < nheld[u] && i < 10; i++)
            ideal += 1 / log2((double)i + 2);
        sum += dcg / ideal;
        validated++;
    }
    reco_scratch_free(s);
    reco_model_free(m);
    recomatrix_free(&t);
    return validated ? sum / validated : 0;
}

/* What the choice reports is what its model does: the chosen algorithm
 * and params, and EASE alone, trained on the same split and served as a
 * service serves them, score the NDCGs it says. */
static void check_choice_honest(const reco_matrix *x, const reco_choice *c)
{
    double chosen = temporal_ndcg(x, c->algo, &c->params);
    CHECK(fabs(chosen - c->val_ndcg) < 1e-6);
    reco_params ease = c->params;
    ease.blend = 0;
    ease.hist_half = 0;
    double alone = temporal_ndcg(x, RECO_EASE, &ease);
    CHECK(fabs(alone - c->ease_ndcg) < 1e-6);
    if (fabs(chosen - c->val_ndcg) >= 1e-6 || fabs(alone - c->ease_ndcg) >= 1e-6)
        fprintf(stderr, "  chosen %.6f reported %.6f; EASE %.6f reported %.6f\n", chosen,
                c->val_ndcg, alone, c->ease_ndcg);
}

/* Histories are newest first: given the ends of two walks, the newest
 * one's successors come first, whichever it is. With seq_half 1 the older
 * item weighs half; at the default 8 it weighs 0.92 and the rows' own
 * differences decide. */
static void check_seq_newest_first(const reco_matrix *x)
{
    reco_params p;
    reco_params_default(RECO_SEQ, &p);
    p.seq_half = 1;
    p.seq_lambda = 1; /* not the defaults: they may change with the data */
    p.blend = 0.5;
    reco_model *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train(RECO_SEQ, &p, x, &m, err, sizeof err), 0);
    reco_scratch *s;
    CHECK_EQ_INT(reco_scratch_create(m, &s), 0);
    uint32_t wrong = 0;
    for (uint32_t i = 0; i < RING_ITEMS; i++)
        for (uint32_t d = 5; d < RING_ITEMS - 5; d++) {
            uint32_t hist[2] = {i, (i + d) % RING_ITEMS}, out[1];
            reco_recommend(m, s, hist, NULL, 2, NULL, 0, 1, out, NULL);
            uint32_t ahead = (out[0] + RING_ITEMS - i) % RING_ITEMS;
            wrong += !(ahead >= 1 && ahead <= 3);
        }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(next_hits(m, x, 1), RING_CUSTOMERS);
    reco_scratch_free(s);
    reco_model_free(m);
}

/* Where what comes next follows from what came last, validation on each
 * customer's latest interactions picks the transition model, and the
 * customer who just saw item i is offered i + 1. EASE, which sees sets,
 * cannot tell i + 1 from the item before the customer's first. */
static void check_auto_sequence(void)
{
    reco_matrix x = ring(false, 1);
    reco_model *m, *ease;
    reco_choice c;
    char err[128] = "";
    CHECK_EQ_INT(reco_train_auto(&x, RECO_VALIDATE_TEMPORAL, 1, NULL, &m, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.algo, RECO_SEQ);
    CHECK_EQ_INT(reco_model_algo(m), RECO_SEQ);
    CHECK_EQ_INT(c.validate, RECO_VALIDATE_TEMPORAL);
    CHECK_EQ_INT(c.val_customers, RING_CUSTOMERS); /* everyone has >= 15 */
    CHECK(c.params.blend > 0 && c.params.blend <= 1);
    CHECK(c.val_ndcg > c.ease_ndcg);
    CHECK(c.seconds > 0 && c.seconds < 10);
    CHECK_EQ_STR(c.note, "");
    CHECK_EQ_INT(next_hits(m, &x, 3), RING_CUSTOMERS);
    /* EASE finds i + 1 in the top 3 too (both ends of the walk are near
     * neighbours), but not first or second as often: with i + 1 and the
     * item before the walk tied, it gets each first about half the time. */
    CHECK_EQ_INT(reco_train(RECO_EASE, NULL, &x, &ease, err, sizeof err), 0);
    CHECK_EQ_INT(next_hits(m, &x, 2), RING_CUSTOMERS);
    CHECK(next_hits(ease, &x, 2) < RING_CUSTOMERS);
    CHECK(next_hits(m, &x, 1) > next_hits(ease, &x, 1) + RING_CUSTOMERS / 4);
    check_seq_newest_first(&x);
    check_choice_honest(&x, &c);
    /* The choice's params train the same model by hand. */
    reco_model *again;
    CHECK_EQ_INT(reco_train(RECO_SEQ, &c.params, &x, &again, err, sizeof err), 0);
    check_same_histories(m, again, &x);
    check_view_serves(m, &x);
    reco_model_free(again);
    reco_model_free(ease);
    reco_model_free(m);
    recomatrix_free(&x);
}

/* A choice is what it says: EASE alone with EASE's score and no
 * sequence params, or RECO_SEQ that beat it on validation. */
static void check_choice_consistent(const reco_choice *c)
{
    CHECK(c->val_ndcg >= c->ease_ndcg);
    if (c->algo == RECO_EASE) {
        CHECK(c->val_ndcg == c->ease_ndcg);
        CHECK(c->params.blend == 0 && c->params.hist_half == 0);
    } else {
        CHECK_EQ_INT(c->algo, RECO_SEQ);
        CHECK(c->val_ndcg > c->ease_ndcg && c->params.blend > 0);
    }
}

/* Where order carries nothing, the choice never loses to EASE on its
 * validation, and where EASE cannot be beaten it is what is reported. */
static void check_auto_no_order(void)
{
    reco_matrix x = ring(true, 2);
    reco_model *m;
    reco_choice c;
    char err[128] = "";
    CHECK_EQ_INT(reco_train_auto(&x, RECO_VALIDATE_RANDOM, 7, NULL, &m, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.validate, RECO_VALIDATE_RANDOM);
    CHECK_EQ_INT(c.val_customers, RING_CUSTOMERS);
    CHECK(c.ease_ndcg > 0);
    check_choice_consistent(&c);
    CHECK_EQ_INT(reco_model_algo(m), c.algo);
    reco_model_free(m);
    recomatrix_free(&x);
    /* Ten tastes of six items; every customer has all six of theirs at
     * random times. The random split holds out one: the only item of the
     * taste left, which EASE ranks first for everyone (NDCG 1). Nothing
     * does better, and of equals EASE alone is the choice. */
    recolog log = {0};
    uint64_t rng = 3;
    for (uint32_t u = 0; u < 100; u++)
        for (uint32_t i = 0; i < 6; i++)
            push(&log, u, u % 10 * 6 + i, 1700000000 + (int64_t)(cxm_splitmix64(&rng) % 100000));
    x = matrix_of(&log, 100, 60);
    CHECK_EQ_INT(reco_train_auto(&x, RECO_VALIDATE_RANDOM, 7, NULL, &m, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.algo, RECO_EASE);
    CHECK_EQ_INT(reco_model_algo(m), RECO_EASE);
    CHECK(c.ease_ndcg > 0.999 && c.val_ndcg == c.ease_ndcg);
    check_choice_consistent(&c);
    reco_model_free(m);
    recomatrix_free(&x);
}

/* Customers who move from one taste to another: what they saw last
 * (their second taste) says what they want next, so EASE with positional
 * weights wins validation, with or without the transition model. The
 * choice must serve what won: a recency-only winner was once replaced by
 * plain EASE (0.43 where the winner scored 0.59). */
static void check_auto_recency_only(void)
{
    recolog log = {0};
    uint64_t rng = 13;
    for (uint32_t u = 0; u < 200; u++) {
        uint32_t ga = (uint32_t)(cxm_splitmix64(&rng) % 10);
        uint32_t gb = (ga + 1 + (uint32_t)(cxm_splitmix64(&rng) % 9)) % 10, at = 0;
        for (uint32_t half = 0; half < 2; half++) {
            bool seen[10] = {false};
            for (uint32_t k = 0; k < 6;) {
                uint32_t i = (uint32_t)(cxm_splitmix64(&rng) % 10);
                if (seen[i])
                    continue;
                seen[i] = true;
                push(&log, u, (half ? gb : ga) * 10 + i, 1700000000 + 1000 * (int64_t)u + at++);
                k++;
            }
        }
    }
    reco_matrix x = matrix_of(&log, 200, 100);
    reco_model *m;
    reco_choice c;
    char err[128] = "";
    CHECK_EQ_INT(reco_train_auto(&x, RECO_VALIDATE_TEMPORAL, 1, NULL, &m, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.algo, RECO_SEQ);
    CHECK(c.params.hist_half > 0 || c.params.blend > 0);
    CHECK(c.val_ndcg > c.ease_ndcg + 0.1);
    if (!(c.val_ndcg > c.ease_ndcg + 0.1))
        fprintf(stderr, "  recency: chose %.4f against EASE %.4f\n", c.val_ndcg, c.ease_ndcg);
    check_choice_honest(&x, &c);
    reco_model_free(m);
    recomatrix_free(&x);
}

/* Every customer of x gets k items (k <= what they have not seen), none
 * from their history; returns how many carried a model score (> 0) for an
 * item in once[0..nonce), which must stay 0: those are popularity's. */
static uint32_t check_serves_all(const reco_model *m, const reco_matrix *x, size_t k,
                                 const uint32_t *once, size_t nonce)
{
    reco_scratch *s;
    CHECK_EQ_INT(reco_scratch_create(m, &s), 0);
    uint32_t short_lists = 0, own = 0, scored_once = 0;
    for (uint32_t u = 0; u < x->nusers; u++) {
        uint32_t hist[MAX_HIST], out[MAX_HIST + 128];
        float score[MAX_HIST + 128];
        size_t n = history_of(x, u, hist);
        size_t got = reco_recommend(m, s, hist, NULL, n, NULL, 0, k, out, score);
        short_lists += got != k;
        for (size_t i = 0; i < got; i++) {
            own += contains(hist, n, out[i]);
            scored_once += contains(once, nonce, out[i]) && score[i] > 0;
        }
    }
    CHECK_EQ_INT(short_lists, 0);
    CHECK_EQ_INT(own, 0);
    reco_scratch_free(s);
    return scored_once;
}

/* Taste groups with noise: 60 customers over 40 items in 4 groups of 10,
 * each with 8 of their group's items (every item seen by about 12), at
 * increasing times; then whatever the test appends. */
static void groups(recolog *log, uint64_t seed, bool same_second)
{
    uint64_t rng = seed;
    for (uint32_t u = 0; u < 60; u++) {
        uint32_t g = u % 4, skip = (uint32_t)(cxm_splitmix64(&rng) % 10);
        for (uint32_t i = 0, j = 0; i < 10; i++)
            if (i != skip && i != (skip + 3) % 10)
                push(log, u, g * 10 + i, 1700000000 + 100 * (int64_t)u + (same_second ? 0 : j++));
    }
}

/* Customers with one or two interactions, among normal ones, train and
 * get a full list, none of it from their history; items seen once are in
 * no model row (never a positive score) but popularity can offer them. */
static void check_auto_short_and_rare(void)
{
    recolog log = {0};
    groups(&log, 4, false);
    uint32_t once[10];
    for (uint32_t u = 60; u < 70; u++) { /* one or two interactions each */
        push(&log, u, u % 40, 1800000000 + u);
        if (u % 2)
            push(&log, u, (u + 1) % 40, 1800000001 + u);
    }
    for (uint32_t i = 0; i < 10; i++) { /* items 40-49, seen once each */
        once[i] = 40 + i;
        push(&log, i * 6, once[i], 1900000000 + i);
    }
    reco_matrix x = matrix_of(&log, 70, 50);
    for (int v = RECO_VALIDATE_TEMPORAL; v <= RECO_VALIDATE_RANDOM; v++) {
        reco_model *m;
        reco_choice c;
        char err[128] = "";
        CHECK_EQ_INT(reco_train_auto(&x, (reco_validate)v, 5, NULL, &m, &c, err, sizeof err), 0);
        CHECK_EQ_INT(c.val_customers, 60); /* the short ones are not validated */
        CHECK(c.algo == RECO_SEQ || c.algo == RECO_EASE);
        check_choice_consistent(&c);
        if (v == RECO_VALIDATE_TEMPORAL)
            check_choice_honest(&x, &c);
        CHECK_EQ_INT(check_serves_all(m, &x, 10, once, 10), 0);
        /* Asked for everything: each customer gets all they have not seen,
         * the once-seen items among it, from popularity. */
        reco_scratch *s;
        CHECK_EQ_INT(reco_scratch_create(m, &s), 0);
        uint32_t out[50], missing = 0;
        float score[50];
        size_t got = reco_recommend(m, s, NULL, NULL, 0, NULL, 0, 50, out, score);
        CHECK_EQ_INT(got, 50);
        uint32_t hist[] = {3, 1};
        got = reco_recommend(m, s, hist, NULL, 2, NULL, 0, 50, out, score);
        CHECK_EQ_INT(got, 48);
        for (size_t i = 0; i < 10; i++)
            missing += !contains(out, got, once[i]);
        CHECK_EQ_INT(missing, 0);
        /* A history of once-seen items alone reaches nothing: popularity. */
        got = reco_recommend(m, s, once, NULL, 3, NULL, 0, 5, out, score);
        CHECK_EQ_INT(got, 5);
        CHECK(score[0] < 0);
        reco_scratch_free(s);
        reco_model_free(m);
    }
    /* RECO_SEQ trained directly (blend 1: the transition model alone) on
     * the same data serves the same way. */
    reco_params p;
    reco_params_default(RECO_SEQ, &p);
    p.blend = 1;
    reco_model *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train(RECO_SEQ, &p, &x, &m, err, sizeof err), 0);
    CHECK_EQ_INT(check_serves_all(m, &x, 10, once, 10), 0);
    reco_model_free(m);
    recomatrix_free(&x);
}

/* Every customer's interactions at one second: order within a customer is
 * then the tie-break's, and two trainings must agree exactly. */
static void check_auto_same_second(void)
{
    recolog log = {0};
    groups(&log, 5, true);
    reco_matrix x = matrix_of(&log, 60, 40);
    reco_model *m[2];
    reco_choice c[2];
    char err[128] = "";
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(
            reco_train_auto(&x, RECO_VALIDATE_TEMPORAL, 9, NULL, &m[i], &c[i], err, sizeof err), 0);
        check_choice_consistent(&c[i]);
    }
    CHECK_EQ_INT(c[0].algo, c[1].algo);
    CHECK(c[0].val_ndcg == c[1].val_ndcg && c[0].params.blend == c[1].params.blend &&
          c[0].params.hist_half == c[1].params.hist_half &&
          c[0].params.seq_lambda == c[1].params.seq_lambda);
    CHECK_EQ_STR(c[0].note, c[1].note);
    check_same_histories(m[0], m[1], &x);
    CHECK_EQ_INT(check_serves_all(m[0], &x, 10, NULL, 0), 0);
    reco_model_free(m[0]);
    reco_model_free(m[1]);
    /* RECO_SEQ itself, twice. */
    for (int i = 0; i < 2; i++)
        CHECK_EQ_INT(reco_train(RECO_SEQ, NULL, &x, &m[i], err, sizeof err), 0);
    check_same_histories(m[0], m[1], &x);
    reco_model_free(m[0]);
    reco_model_free(m[1]);
    recomatrix_free(&x);
}

/* reco_train_auto on x gives want, saying why with a note holding
 * note_has; the model it returns serves a full list. */
static void expect_fallback(const reco_matrix *x, reco_algo want, const char *note_has)
{
    for (int v = RECO_VALIDATE_TEMPORAL; v <= RECO_VALIDATE_RANDOM; v++) {
        reco_model *m = NULL;
        reco_choice c;
        char err[128] = "";
        CHECK_EQ_INT(reco_train_auto(x, (reco_validate)v, 1, NULL, &m, &c, err, sizeof err), 0);
        CHECK_EQ_INT(c.algo, want);
        CHECK(strstr(c.note, note_has) != NULL);
        if (!strstr(c.note, note_has))
            fprintf(stderr, "  note: \"%s\"\n", c.note);
        CHECK(c.params.blend == 0 && c.params.hist_half == 0);
        if (m) {
            CHECK_EQ_INT(reco_model_algo(m), want);
            CHECK_EQ_INT(check_serves_all(m, x, 5, NULL, 0), 0);
        }
        reco_model_free(m);
    }
}

/* The data that cannot support a choice: each falls back and says why. */
static void check_auto_fallbacks(void)
{
    /* No times at all, then all the same time: EASE. */
    recolog log = {0};
    groups(&log, 6, false);
    reco_matrix x = matrix_of(&log, 60, 40);
    int64_t *ts = x.ts;
    x.ts = NULL;
    expect_fallback(&x, RECO_EASE, "times");
    x.ts = ts;
    for (uint64_t i = 0; i < x.row[x.nusers]; i++)
        ts[i] = 1700000000;
    expect_fallback(&x, RECO_EASE, "times");
    recomatrix_free(&x);
    /* Four customers with 5 interactions, the rest with 4 (items still
     * seen by 5 or more): too few to validate on. */
    log = (recolog){0};
    for (uint32_t u = 0; u < 40; u++)
        for (uint32_t i = 0; i < (u < 4 ? 5u : 4u); i++)
            push(&log, u, (u + i) % 10, 1700000000 + 10 * (int64_t)u + i);
    x = matrix_of(&log, 40, 10);
    expect_fallback(&x, RECO_EASE, "4 customers");
    reco_choice c;
    reco_model *m;
    char err[128] = "";
    CHECK_EQ_INT(reco_train_auto(&x, RECO_VALIDATE_TEMPORAL, 1, NULL, &m, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.val_customers, 4);
    reco_model_free(m);
    recomatrix_free(&x);
    /* Ten customers with four items of forty each: no item reaches 5
     * customers, so there is nothing for EASE to model. */
    log = (recolog){0};
    for (uint32_t u = 0; u < 10; u++)
        for (uint32_t i = 0; i < 4; i++)
            push(&log, u, u * 4 + i, 1700000000 + 10 * (int64_t)u + i);
    x = matrix_of(&log, 10, 40);
    expect_fallback(&x, RECO_POP, "5 or more customers");
    recomatrix_free(&x);
}

/* A validation that is neither temporal nor random is refused. */
static void check_auto_bad_validate(const reco_matrix *x)
{
    const int bad[] = {0, RECO_VALIDATE_RANDOM + 1, -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reco_model *m = NULL;
        reco_choice c;
        char err[128] = "";
        CHECK_EQ_INT(reco_train_auto(x, (reco_validate)bad[i], 1, NULL, &m, &c, err, sizeof err),
                     CXM_EINVAL);
        CHECK(strstr(err, "validation") != NULL);
        CHECK(m == NULL);
    }
}

int main(void)
{
    reco_matrix x = build();
    check_algo(RECO_POP, &x);
    check_algo(RECO_ITEMKNN, &x);
    check_algo(RECO_EASE, &x);
    reco_params bm25;
    reco_params_default(RECO_ITEMKNN, &bm25);
    bm25.knn_weighting = RECO_KNN_BM25;
    check_algo_with(RECO_ITEMKNN, &bm25, &x);
    check_pack_view(RECO_POP, &x);
    check_pack_view(RECO_ITEMKNN, &x);
    check_pack_view(RECO_EASE, &x);
    check_bad_params(&x);
    check_scratch_fit(&x);
    check_algo(RECO_ALS, &x);
    check_pack_view(RECO_ALS, &x);
    check_ids();
    check_log_matrix();
    check_algo(RECO_SEQ, &x);
    reco_params seq;
    reco_params_default(RECO_SEQ, &seq);
    seq.blend = 1; /* the transition model alone */
    check_algo_with(RECO_SEQ, &seq, &x);
    seq.blend = 0; /* EASE with positional weights */
    seq.hist_half = 2;
    check_algo_with(RECO_SEQ, &seq, &x);
    check_pack_view(RECO_SEQ, &x);
    check_seq_blob_corrupt(&x);
    check_seq_bad_params(&x);
    check_auto_sequence();
    check_auto_no_order();
    check_auto_recency_only();
    check_auto_short_and_rare();
    check_auto_same_second();
    check_auto_fallbacks();
    check_auto_bad_validate(&x);
    return check_report();
}
