/*
 * test_recodb.c - the interaction log, model versions and serving on a real
 * LMDB environment in a temporary directory.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* Before any model: an empty answer from an empty log, then the log's
 * popularity with version 0, what the customer had excluded. */
static void check_no_model(recodb *db, recodb_reader *r, cxm_arena *a, bool empty)
{
    recodb_rec *out;
    size_t n = 99;
    uint64_t version = 99;
    recodb_query q = {.customer = "c0", .k = 3};
    CHECK_EQ_INT(recodb_recommend(db, r, a, &q, &out, &n, &version, err, sizeof err), 0);
    CHECK(version == 0);
    if (empty) {
        CHECK(n == 0);
        uint64_t v;
        CHECK_EQ_INT(recodb_rollback(db, &v, err, sizeof err), CXM_ENOTFOUND);
        return;
    }
    CHECK(n == 3 && !has(out, n, "hit") && !has(out, n, "a1") && out[0].popular);
    q.customer = "stranger";
    CHECK_EQ_INT(recodb_recommend(db, r, a, &q, &out, &n, &version, err, sizeof err), 0);
    CHECK(n == 3 && strcmp(out[0].item, "hit") == 0);
    /* Everyone took "hit": its share of customers is 1. */
    CHECK(out[0].propensity > 0.99f && out[0].propensity <= 1.0f);
    CHECK(out[1].propensity > 0 && out[1].propensity <= out[0].propensity);
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

/* ---- the candidate cache, the stale list, erase and merge ---- */

static void drain_stale(recodb *db)
{
    char *ids[64];
    size_t n;
    while ((n = recodb_stale(db, ids, 64)) > 0)
        for (size_t i = 0; i < n; i++)
            free(ids[i]);
}

/* The stale list's ids (sorted, joined by commas) into buf. */
static void stale_ids(recodb *db, char *buf, size_t len)
{
    char *ids[256];
    size_t n = recodb_stale(db, ids, 256);
    for (size_t i = 1; i < n; i++) /* sort */
        for (size_t j = i; j > 0 && strcmp(ids[j], ids[j - 1]) < 0; j--) {
            char *t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", ids[i]);
        free(ids[i]);
    }
}

typedef struct append_job {
    recodb *db;
    const recodb_event *ev;
    size_t n;
} append_job;

static int append_fn(cxm_txn *t, void *user)
{
    append_job *j = user;
    return recodb_append_txn(t, j->db, j->ev, j->n, err, sizeof err);
}

static uint64_t stamp(cxm_store *store, const char *customer)
{
    MDB_dbi dbi;
    cxm_txn *t;
    const void *v;
    size_t n;
    uint64_t s = 0;
    CHECK_EQ_INT(cxm_store_dbi(store, "reco.stamps", 0, &dbi), 0);
    CHECK_EQ_INT(cxm_store_read_begin(store, &t), 0);
    if (cxm_txn_get_ref(t, dbi, customer, strlen(customer), &v, &n) == 0 && n == sizeof s)
        memcpy(&s, v, sizeof s);
    cxm_store_read_end(t);
    return s;
}

static bool cached(cxm_store *store, const char *customer)
{
    MDB_dbi dbi;
    cxm_txn *t;
    const void *v;
    size_t n;
    CHECK_EQ_INT(cxm_store_dbi(store, "reco.cand", 0, &dbi), 0);
    CHECK_EQ_INT(cxm_store_read_begin(store, &t), 0);
    bool found = cxm_txn_get_ref(t, dbi, customer, strlen(customer), &v, &n) == 0;
    cxm_store_read_end(t);
    return found;
}

/* Appends in a caller's transaction bump each customer's stamp once per
 * batch, list the customers as stale and count for the retrain policy. */
static void check_append_txn(cxm_store *store, recodb *db)
{
    drain_stale(db);
    uint64_t before = recodb_appended(db), s1 = stamp(store, "c1"), s2 = stamp(store, "c2");
    recodb_event ev[] = {
        {"c1", "b0", 1, NOW - 50}, {"c1", "b1", 1, NOW - 40}, {"c2", "a0", 2, NOW - 30}};
    append_job j = {db, ev, 3};
    CHECK_EQ_INT(cxm_store_write(store, append_fn, &j), 0);
    CHECK(recodb_appended(db) == before + 3);
    CHECK(stamp(store, "c1") == s1 + 1 && stamp(store, "c2") == s2 + 1);
    char buf[512];
    stale_ids(db, buf, sizeof buf);
    CHECK_EQ_STR(buf, "c1,c2");
    /* A bad event fails the whole batch, naming it; nothing is counted. */
    recodb_event bad[] = {{"c1", "b2", 1, NOW}, {"c1", "", 1, NOW}};
    j = (append_job){db, bad, 2};
    CHECK_EQ_INT(cxm_store_write(store, append_fn, &j), CXM_EINVAL);
    CHECK(strstr(err, "event 1: item is empty") == err);
    CHECK(recodb_appended(db) == before + 3 && stamp(store, "c1") == s1 + 1);
}

/* Many customers through the stale list's set: each taken exactly once,
 * in small batches, twice over (growth and removal). */
static void check_stale_many(cxm_store *store, recodb *db)
{
    static char names[300][8];
    recodb_event ev[300];
    for (int round = 0; round < 2; round++) {
        drain_stale(db);
        for (int i = 0; i < 300; i++) {
            snprintf(names[i], sizeof names[i], "s%d", i);
            ev[i] = (recodb_event){names[i], "a0", 1, NOW - 1000 + round};
        }
        append_job j = {db, ev, 300};
        CHECK_EQ_INT(cxm_store_write(store, append_fn, &j), 0);
        j.n = 150; /* listed customers again: no new entries */
        CHECK_EQ_INT(cxm_store_write(store, append_fn, &j), 0);
        static bool seen[300];
        memset(seen, 0, sizeof seen);
        size_t total = 0, n;
        char *ids[7];
        while ((n = recodb_stale(db, ids, 7)) > 0)
            for (size_t i = 0; i < n; i++, total++) {
                int k = atoi(ids[i] + 1);
                CHECK(ids[i][0] == 's' && k >= 0 && k < 300 && !seen[k]);
                if (k >= 0 && k < 300)
                    seen[k] = true;
                free(ids[i]);
            }
        CHECK(total == 300);
    }
}

static bool reject_a(const char *item, size_t len, void *user)
{
    (*(int *)user)++;
    return !(len > 0 && item[0] == 'a');
}

static bool reject_all(const char *item, size_t len, void *user)
{
    (void)item, (void)len, (void)user;
    return false;
}

static bool same_answer(const recodb_rec *x, size_t nx, const recodb_rec *y, size_t ny)
{
    if (nx != ny)
        return false;
    for (size_t i = 0; i < nx; i++)
        if (strcmp(x[i].item, y[i].item) != 0 || x[i].score != y[i].score ||
            x[i].propensity != y[i].propensity || x[i].popular != y[i].popular)
            return false;
    return true;
}

typedef struct plant_job {
    const char *customer;
    uint64_t version;
    MDB_dbi dbi;
    uint32_t item;
} plant_job;

/* A cache row of one item (index 0) with a score scoring never gives, to
 * see which path answers. */
static int plant_fn(cxm_txn *t, void *user)
{
    plant_job *j = user;
    uint8_t row[16 + 12] = {0};
    uint32_t n = 1, item = j->item;
    float score = 99, prop = 0.5f;
    memcpy(row, &j->version, 8);
    memcpy(row + 8, &n, 4);
    memcpy(row + 16, &item, 4);
    memcpy(row + 20, &score, 4);
    memcpy(row + 24, &prop, 4);
    return cxm_txn_put(t, j->dbi, j->customer, strlen(j->customer), row, sizeof row, 0);
}

static void plant(cxm_store *store, const char *customer, uint64_t version, uint32_t item)
{
    plant_job j = {customer, version, 0, item};
    CHECK_EQ_INT(cxm_store_dbi(store, "reco.cand", 0, &j.dbi), 0);
    CHECK_EQ_INT(cxm_store_write(store, plant_fn, &j), 0);
}

/* A refreshed customer is answered from the cache, exactly as scoring
 * answers; a new event and a model switch make the cache unused. */
static void check_cache(cxm_store *store, recodb *db, recodb_reader *r, cxm_arena *a)
{
    recodb_rec *fresh, *hit;
    recodb_query q = {.customer = "c3", .now = NOW, .k = 4};
    CHECK(!cached(store, "c3"));
    drain_stale(db);
    size_t nf = recommend(db, r, a, &q, &fresh, NULL);
    /* Scored requests list the customer as stale, once however many. */
    recodb_query q4 = {.customer = "c4", .k = 2};
    for (int i = 0; i < 3; i++) {
        recommend(db, r, a, &q4, &hit, NULL);
        recommend(db, r, a, &q, &hit, NULL);
    }
    char buf[4096];
    stale_ids(db, buf, sizeof buf);
    CHECK_EQ_STR(buf, "c3,c4");
    CHECK_EQ_INT(recodb_refresh(db, r, "c3"), 0);
    CHECK(cached(store, "c3"));
    size_t nh = recommend(db, r, a, &q, &hit, NULL);
    CHECK(nf == 4 && same_answer(fresh, nf, hit, nh));
    /* The filter's rejects do not count towards k, on both paths. */
    int calls = 0;
    q.filter = reject_a;
    q.filter_user = &calls;
    nh = recommend(db, r, a, &q, &hit, NULL);
    CHECK(calls > 0 && nh == 4); /* c3 lacks a1 and b0-b3 */
    for (size_t i = 0; i < nh; i++)
        CHECK(hit[i].item[0] != 'a');
    /* A filter rejecting everything leaves nothing, yet the query still
     * says the history predicted candidates (not a cold start). */
    bool predicted = false;
    q.filter = reject_all;
    q.predicted = &predicted;
    nh = recommend(db, r, a, &q, &hit, NULL);
    CHECK(nh == 0 && predicted);
    recodb_query qnew = {.customer = "nobody", .k = 4, .predicted = &predicted};
    predicted = false;
    recommend(db, r, a, &qnew, &hit, NULL);
    CHECK(!predicted);
    q.predicted = NULL;
    q.filter = NULL;
    /* Proof that the cache answers: a planted row of the serving version. */
    uint64_t current, previous;
    CHECK_EQ_INT(recodb_versions(db, &current, &previous), 0);
    plant(store, "c3", current, 0);
    nh = recommend(db, r, a, &q, &hit, NULL);
    CHECK(nh == 1 && hit[0].score == 99);
    /* A damaged row (an item the table lacks) is scored over instead. */
    plant(store, "c3", current, 1000000);
    nh = recommend(db, r, a, &q, &hit, NULL);
    CHECK(nh == 4 && same_answer(fresh, nf, hit, nh));
    /* A new event deletes the row; the next answer is scored again. */
    append1(db, "c3", "b3", NOW - 5);
    CHECK(!cached(store, "c3"));
    nh = recommend(db, r, a, &q, &hit, NULL);
    CHECK(nh == 4 && hit[0].score != 99 && !has(hit, nh, "b3"));
    /* A row of another version is not used; a switch lists everyone. */
    plant(store, "c3", current, 0);
    drain_stale(db);
    recodb_train_report rep;
    CHECK_EQ_INT(recodb_train(db, 0, &rep, err, sizeof err), 0);
    nh = recommend(db, r, a, &q, &hit, NULL);
    CHECK(nh == 4 && hit[0].score != 99);
    stale_ids(db, buf, sizeof buf);
    CHECK(strstr(buf, "c3") && strstr(buf, "c19") && strstr(buf, "drifter"));
    /* A batch refresh caches those with history, and nothing else. */
    char *batch[] = {"c3", "c4", "nobody"};
    CHECK_EQ_INT(recodb_refresh_many(db, r, batch, 3), 0);
    CHECK(cached(store, "c3") && cached(store, "c4") && !cached(store, "nobody"));
    char *bad[] = {"c5", ""};
    CHECK_EQ_INT(recodb_refresh_many(db, r, bad, 2), CXM_EINVAL);
    CHECK(!cached(store, "c5"));
}

/* Erasing counts the rows it deleted; a merge moves every event. */
static int erase_fn(cxm_txn *t, void *user)
{
    void **p = user;
    return recodb_erase(t, p[0], p[1], p[2]);
}

static int merge_fn(cxm_txn *t, void *user)
{
    void **p = user;
    return recodb_merge(t, p[0], p[1], p[2]);
}

static void check_erase_merge(cxm_store *store, recodb *db, recodb_reader *r, cxm_arena *a)
{
    append1(db, "m1", "a0", NOW - 3);
    append1(db, "m1", "a1", NOW - 2);
    append1(db, "m2", "a2", NOW - 1);
    void *merge[] = {db, "m1", "m2"};
    CHECK_EQ_INT(cxm_store_write(store, merge_fn, merge), 0);
    CHECK(stamp(store, "m1") == 0 && stamp(store, "m2") == 2);
    /* m2 has consumed m1's items now. */
    recodb_rec *out;
    recodb_query q = {.customer = "m2", .now = NOW, .k = 5};
    size_t n = recommend(db, r, a, &q, &out, NULL);
    CHECK(n == 5 && !has(out, n, "a0") && !has(out, n, "a1") && !has(out, n, "a2"));
    CHECK_EQ_INT(recodb_refresh(db, r, "m2"), 0);
    uint64_t rows = 0;
    void *erase[] = {db, "m2", &rows};
    CHECK_EQ_INT(cxm_store_write(store, erase_fn, erase), 0);
    CHECK(rows == 3 + 2); /* three events, the stamp and the cached row */
    CHECK(!cached(store, "m2") && stamp(store, "m2") == 0);
    void *again[] = {db, "m1", &rows};
    CHECK_EQ_INT(cxm_store_write(store, erase_fn, again), 0);
    CHECK(rows == 0);
    q.customer = "m2"; /* a stranger now: popularity, "hit" first */
    n = recommend(db, r, a, &q, &out, NULL);
    CHECK(n == 5 && strcmp(out[0].item, "hit") == 0 && out[0].popular);
}

/* c0 was recommended a0 for a1-a3: those explain it; a1's most similar
 * items are its group's. */
static void check_explain_similar(recodb *db, recodb_reader *r, cxm_arena *a)
{
    recodb_why why[8];
    size_t n = 0;
    CHECK_EQ_INT(recodb_explain(db, r, a, "c0", NOW, "a0", why, 8, &n), 0);
    CHECK(n >= 1);
    for (size_t i = 0; i < n; i++) /* c0's history: a1-a3 and hit */
        CHECK(strcmp(why[i].item, "a0") != 0 &&
              (why[i].item[0] == 'a' || !strcmp(why[i].item, "hit")));
    float sum = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(why[i].share > 0 && why[i].share <= 1);
        CHECK(i == 0 || why[i].share <= why[i - 1].share);
        sum += why[i].share;
    }
    CHECK(fabsf(sum - 1) < 1e-4f); /* every term fits in 8 */
    CHECK_EQ_INT(recodb_explain(db, r, a, "c0", NOW, "unknown", why, 8, &n), 0);
    CHECK(n == 0);
    recodb_rec *out;
    uint64_t v = 0;
    CHECK_EQ_INT(recodb_similar(db, r, a, "a1", 3, NULL, NULL, &out, &n, &v), 0);
    CHECK(n >= 2 && v > 0 && out[0].item[0] == 'a' && out[0].score == 1.0f);
    for (size_t i = 0; i < n; i++)
        CHECK(out[i].score > 0 && out[i].score <= 1 && strcmp(out[i].item, "a1") != 0);
    int calls = 0;
    CHECK_EQ_INT(recodb_similar(db, r, a, "a1", 3, reject_a, &calls, &out, &n, &v), 0);
    for (size_t i = 0; i < n; i++)
        CHECK(out[i].item[0] != 'a');
    CHECK_EQ_INT(recodb_similar(db, r, a, "unknown", 3, NULL, NULL, &out, &n, &v), 0);
    CHECK(n == 0);
}

static uint32_t read_u32(FILE *f)
{
    uint32_t v = 0;
    CHECK(fread(&v, 4, 1, f) == 1);
    return v;
}

/* The export parses back to its end: ids, rows, popularity. */
static void check_export(recodb *db)
{
    char path[256];
    snprintf(path, sizeof path, "%s/model.cxmx", root);
    CHECK_EQ_INT(recodb_export(db, path, err, sizeof err), 0);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    char magic[4];
    CHECK(fread(magic, 4, 1, f) == 1 && memcmp(magic, "CXMX", 4) == 0);
    uint64_t current, previous;
    CHECK_EQ_INT(recodb_versions(db, &current, &previous), 0);
    CHECK(read_u32(f) == current);
    uint32_t n = read_u32(f);
    bool saw_hit = false;
    for (uint32_t i = 0; i < n; i++) {
        uint16_t len = 0;
        char id[RECODB_ID_MAX + 1] = {0};
        CHECK(fread(&len, 2, 1, f) == 1 && len <= RECODB_ID_MAX);
        CHECK(fread(id, 1, len, f) == len);
        saw_hit |= strcmp(id, "hit") == 0;
    }
    CHECK(saw_hit);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t count = read_u32(f);
        for (uint32_t q = 0; q < count; q++) {
            uint32_t nb = read_u32(f);
            float w;
            CHECK(nb < n && fread(&w, 4, 1, f) == 1 && isfinite(w));
        }
    }
    CHECK(read_u32(f) == n);
    for (uint32_t i = 0; i < n; i++)
        CHECK(read_u32(f) < n);
    CHECK(fgetc(f) == EOF);
    fclose(f);
    CHECK_EQ_INT(recodb_export(db, "", err, sizeof err), CXM_EIO);
}

/* A sequence model serves through recodb like the others (its view in
 * place, histories newest first), and the export, whose format holds one
 * set of rows, refuses it rather than writing half of it. EASE serves
 * again afterwards. */
static void check_seq_served(recodb *db, recodb_reader *r, cxm_arena *a)
{
    recodb_train_report rep;
    CHECK_EQ_INT(recodb_train(db, RECO_SEQ, &rep, err, sizeof err), 0);
    CHECK_EQ_INT(rep.algo, RECO_SEQ);
    recodb_rec *out;
    size_t n = 0;
    uint64_t version = 0;
    recodb_query q = {.customer = "c0", .now = NOW, .k = 3};
    CHECK_EQ_INT(recodb_recommend(db, r, a, &q, &out, &n, &version, err, sizeof err), 0);
    CHECK(n == 3 && version == rep.version);
    char path[256];
    snprintf(path, sizeof path, "%s/seq.cxmx", root);
    CHECK_EQ_INT(recodb_export(db, path, err, sizeof err), CXM_EINVAL);
    CHECK(strstr(err, "sequence model") != NULL);
    CHECK(access(path, F_OK) != 0);
    CHECK_EQ_INT(recodb_train(db, RECO_EASE, &rep, err, sizeof err), 0);
}

/* ---- training with a holdout ---- */

/* 240 customers in 4 taste groups of 30 items, 15 interactions each, in
 * time order: what is held out is predictable from the group. */
static void append_groups(recodb *db)
{
    uint64_t seed = 7;
    char customer[16], item[16];
    for (int c = 0; c < 240; c++) {
        snprintf(customer, sizeof customer, "g%d", c);
        for (int j = 0; j < 15; j++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            snprintf(item, sizeof item, "i%d-%d", c % 4, (int)((seed >> 33) % 30));
            append1(db, customer, item, NOW - YEAR + c * 100 + j);
        }
    }
}

typedef struct progress_log {
    char phases[8][24];
    int nphases;
    double last;
    bool monotone;
} progress_log;

static void on_progress(double done, const char *phase, void *user)
{
    progress_log *p = user;
    p->monotone &= done >= p->last && done <= 1;
    p->last = done;
    if (p->nphases == 0 || strcmp(p->phases[p->nphases - 1], phase) != 0)
        if (p->nphases < 8)
            snprintf(p->phases[p->nphases++], sizeof p->phases[0], "%s", phase);
}

static void check_train_ex(cxm_store *store, recodb *db, recodb_reader *r, cxm_arena *a)
{
    (void)store;
    append_groups(db);
    progress_log pl = {.monotone = true};
    recodb_train_opts o = {.holdout_fraction = 0.5, .progress = on_progress, .user = &pl};
    recodb_train_report rep;
    recodb_metrics m;
    bool act = false;
    CHECK_EQ_INT(recodb_train_ex(db, &o, &rep, &m, &act, err, sizeof err), 0);
    CHECK(act && rep.version == 1 && rep.algo == RECO_EASE && rep.customers == 240);
    if (!(m.customers > 60 && m.customers < 180))
        fprintf(stderr, "holdout customers %llu\n", (unsigned long long)m.customers);
    CHECK(m.k == 10 && m.customers > 60 && m.customers < 180);
    CHECK(m.ndcg > 0.2 && m.ndcg <= 1 && m.precision > 0 && m.precision <= 1);
    CHECK(m.recall > 0 && m.recall <= 1 && m.coverage > 0 && m.coverage <= 1);
    /* The automatic choice comes first; the holdout measures what it chose
     * (items within a group come in no particular order: EASE). */
    CHECK(pl.monotone && pl.last == 1 && pl.nphases == 4);
    CHECK_EQ_STR(pl.phases[0], "reading the log");
    CHECK_EQ_STR(pl.phases[1], "choosing");
    CHECK_EQ_STR(pl.phases[2], "evaluating");
    CHECK_EQ_STR(pl.phases[3], "writing");
    CHECK(rep.chosen && rep.choice.algo == RECO_EASE);
    /* Popularity knows no groups: it measures worse. */
    recodb_metrics pop;
    o = (recodb_train_opts){
        .algo = RECO_POP, .holdout_fraction = 0.5, .activation = RECODB_ACTIVATE_IF_BETTER};
    CHECK_EQ_INT(recodb_train_ex(db, &o, &rep, &pop, &act, err, sizeof err), 0);
    CHECK(!act && rep.version == 2 && pop.ndcg < m.ndcg);
    uint64_t current, previous;
    CHECK_EQ_INT(recodb_versions(db, &current, &previous), 0);
    CHECK(current == 1 && previous == 0);
    o.activation = RECODB_ACTIVATE_NEVER;
    o.algo = RECO_EASE;
    CHECK_EQ_INT(recodb_train_ex(db, &o, &rep, &m, &act, err, sizeof err), 0);
    CHECK(!act && rep.version == 3);
    o.activation = RECODB_ACTIVATE_IF_BETTER; /* as good as the serving one */
    CHECK_EQ_INT(recodb_train_ex(db, &o, &rep, &m, &act, err, sizeof err), 0);
    CHECK(act && rep.version == 4);
    CHECK_EQ_INT(recodb_versions(db, &current, &previous), 0);
    CHECK(current == 4 && previous == 1);
    /* Propensities are probabilities, in the order of the scores. */
    recodb_rec *out;
    recodb_query q = {.customer = "g5", .now = NOW, .k = 40};
    size_t n = recommend(db, r, a, &q, &out, NULL);
    CHECK(n == 40 && !out[0].popular);
    for (size_t i = 0; i < n; i++) {
        CHECK(out[i].propensity >= 0 && out[i].propensity <= 1);
        if (i > 0 && out[i].popular == out[i - 1].popular)
            CHECK(out[i].propensity <= out[i - 1].propensity);
    }
    CHECK(out[0].propensity > out[n - 1].propensity || out[n - 1].popular);
    recodb_train_opts bad = {.holdout_fraction = 0.6};
    CHECK_EQ_INT(recodb_train_ex(db, &bad, &rep, &m, &act, err, sizeof err), CXM_EINVAL);
    CHECK(strstr(err, "holdout_fraction") != NULL && !act);
    recodb_train_opts none = {.holdout_fraction = -1};
    CHECK_EQ_INT(recodb_train_ex(db, &none, &rep, &m, &act, err, sizeof err), 0);
    CHECK(act && m.customers == 0 && m.ndcg == 0);
}

/* ---- appends, refreshes and requests at once ---- */

typedef struct race {
    cxm_store *store;
    recodb *db;
    atomic_bool writing;
    atomic_int failures;
} race;

static void *race_writer(void *p)
{
    race *x = p;
    char customer[16], item[16], e[256];
    for (int i = 0; i < 300; i++) {
        snprintf(customer, sizeof customer, "g%d", i % 40);
        snprintf(item, sizeof item, "i%d-%d", (i * 7) % 4, (i * 13) % 30);
        recodb_event ev = {customer, item, 1, NOW + i};
        atomic_fetch_add(&x->failures, recodb_append(x->db, &ev, 1, e, sizeof e) != 0);
    }
    atomic_store(&x->writing, false);
    return NULL;
}

static void *race_refresher(void *p)
{
    race *x = p;
    recodb_reader *r;
    atomic_fetch_add(&x->failures, recodb_reader_create(x->db, &r) != 0);
    char *ids[16];
    for (;;) {
        bool last = !atomic_load(&x->writing);
        size_t n = recodb_stale(x->db, ids, 16);
        atomic_fetch_add(&x->failures, n && recodb_refresh_many(x->db, r, ids, n) != 0);
        for (size_t i = 0; i < n; i++)
            free(ids[i]);
        if (n == 0 && last)
            break;
    }
    recodb_reader_free(r);
    return NULL;
}

static void *race_reader(void *p)
{
    race *x = p;
    recodb_reader *r;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    atomic_fetch_add(&x->failures, recodb_reader_create(x->db, &r) != 0);
    char customer[16], e[256];
    for (int i = 0; atomic_load(&x->writing); i++) {
        snprintf(customer, sizeof customer, "g%d", i % 40);
        recodb_query q = {.customer = customer, .k = 10};
        recodb_rec *out;
        size_t n;
        atomic_fetch_add(&x->failures,
                         recodb_recommend(x->db, r, &a, &q, &out, &n, NULL, e, sizeof e) != 0);
        cxm_arena_reset(&a);
    }
    recodb_reader_free(r);
    cxm_arena_dispose(&a);
    return NULL;
}

typedef struct uncache_job {
    MDB_dbi dbi;
    const char *customer;
} uncache_job;

static int uncache_fn(cxm_txn *t, void *user)
{
    const uncache_job *j = user;
    return cxm_txn_del(t, j->dbi, j->customer, strlen(j->customer));
}

/* After the race, every cached answer is the one scoring gives now. */
static void check_race(cxm_store *store, recodb *db, recodb_reader *r, cxm_arena *a)
{
    race x = {store, db, true, 0};
    pthread_t w, f, rd;
    pthread_create(&w, NULL, race_writer, &x);
    pthread_create(&f, NULL, race_refresher, &x);
    pthread_create(&rd, NULL, race_reader, &x);
    pthread_join(w, NULL);
    pthread_join(rd, NULL);
    pthread_join(f, NULL);
    CHECK_EQ_INT(atomic_load(&x.failures), 0);
    MDB_dbi cand;
    CHECK_EQ_INT(cxm_store_dbi(store, "reco.cand", 0, &cand), 0);
    int checked = 0;
    for (int c = 0; c < 40; c++) {
        char customer[16];
        snprintf(customer, sizeof customer, "g%d", c);
        if (!cached(store, customer))
            continue;
        recodb_rec *hit, *fresh;
        recodb_query q = {.customer = customer, .k = 10};
        size_t nh = recommend(db, r, a, &q, &hit, NULL);
        uncache_job j = {cand, customer};
        CHECK_EQ_INT(cxm_store_write(store, uncache_fn, &j), 0);
        size_t nf = recommend(db, r, a, &q, &fresh, NULL);
        CHECK(same_answer(hit, nh, fresh, nf));
        checked++;
    }
    CHECK(checked > 20);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    cxm_store *store = open_store();
    recodb *db;
    recodb_opts year = {.recency_half_life = YEAR};
    CHECK_EQ_INT(recodb_open(store, &year, &db), 0);
    recodb_reader *r;
    CHECK_EQ_INT(recodb_reader_create(db, &r), 0);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);

    check_bad_events(db);
    check_no_model(db, r, &a, true);
    append_tastes(db);
    append_tastes(db); /* a retried batch: the same events again */
    check_no_model(db, r, &a, false);
    recodb_train_report rep;
    CHECK_EQ_INT(recodb_train(db, 0, &rep, err, sizeof err), 0);
    CHECK(rep.version == 1 && rep.algo == RECO_EASE && rep.customers == 20 && rep.items == 9);
    CHECK(rep.interactions == 20 * 4);
    check_bad_queries(db, r, &a);
    check_serving(db, r, &a);
    check_recency(db, r, &a);
    check_snapshot(store, db);
    check_rollback(db, r, &a);
    check_append_txn(store, db);
    check_cache(store, db, r, &a);
    check_erase_merge(store, db, r, &a);
    check_explain_similar(db, r, &a);
    check_export(db);
    check_seq_served(db, r, &a);
    check_stale_many(store, db); /* last: its customers change popularity */

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

    recodb_reader_free(r);
    recodb_close(db);
    cxm_store_close(store);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);

    /* Training with a holdout, on a fresh store. */
    store = open_store();
    CHECK_EQ_INT(recodb_open(store, NULL, &db), 0);
    CHECK_EQ_INT(recodb_reader_create(db, &r), 0);
    check_train_ex(store, db, r, &a);
    check_race(store, db, r, &a);
    cxm_arena_dispose(&a);
    recodb_reader_free(r);
    recodb_close(db);
    cxm_store_close(store);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return check_report();
}
