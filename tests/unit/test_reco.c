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

/* ---- RECO_SEQ ---- */

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
    e.base_len = UINT64_MAX - 6; /* align8 of it wraps to 0: the bound must come first */
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
    return check_report();
}
