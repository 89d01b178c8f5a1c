/*
 * test_recodb.c - the interaction log, model versions and serving on a real
 * LMDB environment in a temporary directory.
 */
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/store.h"
#include "personalisation/reco/recodb.h"

#define NOW INT64_C(1800000000)
#define YEAR INT64_C(31536000)

static char root[] = "/tmp/cxm-test-recodb-XXXXXX";
static char err[256];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static cxm_store *open_store(void)
{
    cxm_store *store;
    /* Large enough never to grow: one test holds a read transaction while
     * training writes, and growth would wait for it. */
    cxm_store_opts so = {.initial_map_size = 256u << 20, .nosync = true};
    CHECK_EQ_INT(cxm_store_open(root, &so, &store), 0);
    return store;
}

static void append1(recodb *db, const char *customer, const char *item, int64_t ts)
{
    recodb_event e = {customer, item, 1.0f, ts};
    CHECK_EQ_INT(recodb_append(db, &e, 1, err, sizeof err), 0);
}

/* Customers c0-c9 like a0-a3, c10-c19 like b0-b3 (each misses one), and
 * everyone likes "hit". */
static void append_tastes(recodb *db)
{
    char customer[16], item[16];
    for (int c = 0; c < 20; c++) {
        snprintf(customer, sizeof customer, "c%d", c);
        for (int i = 0; i < 4; i++) {
            if ((c + i) % 4 == 0)
                continue;
            snprintf(item, sizeof item, "%c%d", c < 10 ? 'a' : 'b', i);
            append1(db, customer, item, NOW - YEAR + c * 100 + i);
        }
        append1(db, customer, "hit", NOW - 10);
    }
}

static size_t recommend(recodb *db, recodb_reader *r, cxm_arena *a, const recodb_query *q,
                        recodb_rec **out, uint64_t *version)
{
    size_t n = 0;
    int rc = recodb_recommend(db, r, a, q, out, &n, version, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "recommend: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    return n;
}

static bool has(const recodb_rec *recs, size_t n, const char *item)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(recs[i].item, item) == 0)
            return true;
    return false;
}

static void check_bad_events(recodb *db)
{
    char long_id[RECODB_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    struct {
        recodb_event e;
        const char *says;
    } bad[] = {
        {{"", "i", 1, 1}, "event 1: customer is empty"},
        {{"c", long_id, 1, 1}, "event 1: item is longer than 256 bytes"},
        {{"c\n", "i", 1, 1}, "event 1: customer contains a control byte"},
        {{"c", "i", 0, 1}, "event 1: weight must be"},
        {{"c", "i", NAN, 1}, "event 1: weight must be"},
        {{"c", "i", 1, -1}, "event 1: ts must be >= 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        recodb_event batch[2] = {{"good", "item", 1, 1}, bad[i].e};
        CHECK_EQ_INT(recodb_append(db, batch, 2, err, sizeof err), CXM_EINVAL);
        CHECK(strstr(err, bad[i].says) == err);
    }
    /* Nothing of the failed batches was written: the log is still empty. */
    recodb_train_report rep;
    CHECK_EQ_INT(recodb_train(db, 0, &rep, err, sizeof err), CXM_EINVAL);
    CHECK(strstr(err, "no interactions") != NULL);
}

static void check_no_model(recodb *db, recodb_reader *r, cxm_arena *a)
{
    recodb_rec *out;
    size_t n;
    recodb_query q = {.customer = "c0", .k = 3};
    CHECK_EQ_INT(recodb_recommend(db, r, a, &q, &out, &n, NULL, err, sizeof err), CXM_ENOTFOUND);
    CHECK(strstr(err, "no trained model") != NULL);
    uint64_t v;
    CHECK_EQ_INT(recodb_rollback(db, &v, err, sizeof err), CXM_ENOTFOUND);
}

static void check_bad_queries(recodb *db, recodb_reader *r, cxm_arena *a)
{
    const char *bad_excl[] = {"ok", ""};
    recodb_rec extra_nan = {"x", NAN};
    struct {
        recodb_query q;
        const char *says;
    } bad[] = {
        {{.customer = "", .k = 3}, "customer is empty"},
        {{.customer = "c0", .k = 0}, "k must be"},
        {{.customer = "c0", .k = RECODB_K_MAX + 1}, "k must be"},
        {{.customer = "c0", .k = 3, .exclude = bad_excl, .nexclude = 2}, "exclude[1] is empty"},
        {{.customer = "c0", .k = 3, .extra = &extra_nan, .nextra = 1}, "extra[0].score"},
        {{.customer = "c0", .k = 3, .nexclude = RECODB_EXCLUDE_MAX + 1}, "exclude has more"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        recodb_rec *out;
        size_t n;
        CHECK_EQ_INT(recodb_recommend(db, r, a, &bad[i].q, &out, &n, NULL, err, sizeof err),
                     CXM_EINVAL);
        CHECK(strstr(err, bad[i].says) == err);
    }
}

/* c0 misses a0 (and saw a1-a3, hit): its group's a0 comes first. */
static void check_serving(recodb *db, recodb_reader *r, cxm_arena *a)
{
    recodb_rec *out;
    uint64_t v;
    recodb_query q = {.customer = "c0", .now = NOW, .k = 3};
    size_t n = recommend(db, r, a, &q, &out, &v);
    CHECK(n == 3 && strcmp(out[0].item, "a0") == 0);
    CHECK(!has(out, n, "a1") && !has(out, n, "hit"));
    CHECK(out[0].score >= out[1].score && out[1].score >= out[2].score);
    /* Exclusions hold; an unknown id among them is ignored. */
    const char *excl[] = {"a0", "never-seen"};
    q.exclude = excl;
    q.nexclude = 2;
    n = recommend(db, r, a, &q, &out, NULL);
    CHECK(n == 3 && !has(out, n, "a0"));
    /* The business-rules hook: a new experience pinned first, a consumed
     * and an excluded one never shown. */
    recodb_rec extra[] = {{"new-exp", INFINITY}, {"a1", INFINITY}, {"a0", INFINITY}};
    q.extra = extra;
    q.nextra = 3;
    n = recommend(db, r, a, &q, &out, NULL);
    CHECK(n == 3 && strcmp(out[0].item, "new-exp") == 0 && !has(out, n, "a1") &&
          !has(out, n, "a0"));
    /* Cold start: an unknown customer gets popularity ("hit" first). */
    recodb_query cold = {.customer = "stranger", .now = NOW, .k = 2};
    n = recommend(db, r, a, &cold, &out, NULL);
    CHECK(n == 2 && strcmp(out[0].item, "hit") == 0);
}

/* A customer whose old interactions are group A and recent ones group B is
 * recommended B before A. */
static void check_recency(recodb *db, recodb_reader *r, cxm_arena *a)
{
    append1(db, "drifter", "a1", NOW - 5 * YEAR);
    append1(db, "drifter", "a2", NOW - 5 * YEAR + 1);
    append1(db, "drifter", "b1", NOW - 100);
    recodb_train_report rep;
    CHECK_EQ_INT(recodb_train(db, 0, &rep, err, sizeof err), 0);
    recodb_rec *out;
    recodb_query q = {.customer = "drifter", .now = NOW, .k = 5};
    size_t n = recommend(db, r, a, &q, &out, NULL), i = 0;
    while (i < n && out[i].item[0] != 'a' && out[i].item[0] != 'b') /* "hit" suits both */
        i++;
    CHECK(i < n && out[i].item[0] == 'b');
}

/* A read transaction begun before two trainings still reads the version it
 * began with, though that version has since been replaced twice. */
static void check_snapshot(cxm_store *store, recodb *db)
{
    MDB_dbi meta, models;
    CHECK_EQ_INT(cxm_store_dbi(store, "reco.meta", 0, &meta), 0);
    CHECK_EQ_INT(cxm_store_dbi(store, "reco.models", 0, &models), 0);
    cxm_txn *t;
    CHECK_EQ_INT(cxm_store_read_begin(store, &t), 0);
    const void *v;
    size_t n;
    uint64_t before, after;
    CHECK_EQ_INT(cxm_txn_get_ref(t, meta, "current", 7, &v, &n), 0);
    memcpy(&before, v, sizeof before);
    recodb_train_report rep;
    CHECK_EQ_INT(recodb_train(db, 0, &rep, err, sizeof err), 0);
    CHECK_EQ_INT(recodb_train(db, 0, &rep, err, sizeof err), 0);
    CHECK(rep.version == before + 2);
    CHECK_EQ_INT(cxm_txn_get_ref(t, meta, "current", 7, &v, &n), 0);
    memcpy(&after, v, sizeof after);
    CHECK(after == before);
    uint8_t key[9] = {0};
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(before >> (56 - 8 * i));
    CHECK_EQ_INT(cxm_txn_get_ref(t, models, key, sizeof key, &v, &n), 0);
    cxm_store_read_end(t);
    /* A new transaction sees the new version, and the old one is gone. */
    CHECK_EQ_INT(cxm_store_read_begin(store, &t), 0);
    CHECK_EQ_INT(cxm_txn_get_ref(t, models, key, sizeof key, &v, &n), CXM_ENOTFOUND);
    cxm_store_read_end(t);
}

static void check_rollback(recodb *db, recodb_reader *r, cxm_arena *a)
{
    uint64_t current, previous, v;
    CHECK_EQ_INT(recodb_versions(db, &current, &previous), 0);
    CHECK(previous == current - 1);
    CHECK_EQ_INT(recodb_rollback(db, &v, err, sizeof err), 0);
    CHECK(v == previous);
    recodb_rec *out;
    recodb_query q = {.customer = "c0", .now = NOW, .k = 3};
    uint64_t served;
    recommend(db, r, a, &q, &out, &served);
    CHECK(served == previous);
    CHECK_EQ_INT(recodb_rollback(db, &v, err, sizeof err), CXM_ENOTFOUND);
    CHECK(strstr(err, "no previous model version") != NULL);
    recodb_train_report rep; /* numbers are never reused */
    CHECK_EQ_INT(recodb_train(db, 0, &rep, err, sizeof err), 0);
    CHECK(rep.version == current + 1);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    cxm_store *store = open_store();
    recodb *db;
    CHECK_EQ_INT(recodb_open(store, NULL, &db), 0);
    recodb_reader *r;
    CHECK_EQ_INT(recodb_reader_create(db, &r), 0);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);

    check_bad_events(db);
    check_no_model(db, r, &a);
    append_tastes(db);
    append_tastes(db); /* a retried batch: the same events again */
    recodb_train_report rep;
    CHECK_EQ_INT(recodb_train(db, 0, &rep, err, sizeof err), 0);
    CHECK(rep.version == 1 && rep.algo == RECO_EASE && rep.customers == 20 && rep.items == 9);
    CHECK(rep.interactions == 20 * 4);
    check_bad_queries(db, r, &a);
    check_serving(db, r, &a);
    check_recency(db, r, &a);
    check_snapshot(store, db);
    check_rollback(db, r, &a);

    /* A tiny EASE budget makes the automatic choice item-kNN; fewer
     * neighbours make a smaller model. */
    recodb *small;
    recodb_opts o = {.ease_budget = 1};
    CHECK_EQ_INT(recodb_open(store, &o, &small), 0);
    CHECK_EQ_INT(recodb_train(small, 0, &rep, err, sizeof err), 0);
    CHECK_EQ_INT(rep.algo, RECO_ITEMKNN);
    uint64_t full_bytes = rep.model_bytes;
    recodb_close(small);
    o.neighbours = 1;
    CHECK_EQ_INT(recodb_open(store, &o, &small), 0);
    CHECK_EQ_INT(recodb_train(small, 0, &rep, err, sizeof err), 0);
    CHECK(rep.model_bytes > 0 && rep.model_bytes < full_bytes);
    recodb_close(small);

    /* Versions survive closing and reopening the store. */
    uint64_t current, previous;
    CHECK_EQ_INT(recodb_versions(db, &current, &previous), 0);
    recodb_reader_free(r);
    recodb_close(db);
    cxm_store_close(store);
    store = open_store();
    CHECK_EQ_INT(recodb_open(store, NULL, &db), 0);
    CHECK_EQ_INT(recodb_reader_create(db, &r), 0);
    uint64_t current2, previous2, served;
    CHECK_EQ_INT(recodb_versions(db, &current2, &previous2), 0);
    CHECK(current2 == current && previous2 == previous);
    recodb_rec *out;
    recodb_query q = {.customer = "c0", .now = NOW, .k = 3};
    recommend(db, r, &a, &q, &out, &served);
    CHECK(served == current);

    cxm_arena_dispose(&a);
    recodb_reader_free(r);
    recodb_close(db);
    cxm_store_close(store);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return check_report();
}
