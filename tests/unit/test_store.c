/*
 * test_store.c - the LMDB helpers on real files in a temporary directory:
 * put/get/del, copy-out, iteration order, map growth across reopen, sharing
 * one environment per directory, and open errors.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/keyenc.h"
#include "cxm/store.h"

static char root[] = "/tmp/cxm-test-store-XXXXXX";

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", root, name);
}

/* ---- small txn bodies ------------------------------------------------- */

typedef struct kv {
    MDB_dbi dbi;
    const char *key;
    const char *val;
    unsigned flags;
} kv;

static int put_fn(cxm_txn *t, void *user)
{
    kv *p = user;
    return cxm_txn_put(t, p->dbi, p->key, strlen(p->key), p->val, strlen(p->val), p->flags);
}

static int del_fn(cxm_txn *t, void *user)
{
    kv *p = user;
    return cxm_txn_del(t, p->dbi, p->key, strlen(p->key));
}

static int put_then_fail_fn(cxm_txn *t, void *user)
{
    int rc = put_fn(t, user);
    return rc ? rc : CXM_ESTALE;
}

static int put(cxm_store *s, MDB_dbi dbi, const char *key, const char *val)
{
    kv p = {dbi, key, val, 0};
    return cxm_store_write(s, put_fn, &p);
}

/* Value of key as an arena copy, or NULL. */
static char *get(cxm_store *s, MDB_dbi dbi, const char *key, cxm_arena *a)
{
    cxm_txn *t;
    void *v = NULL;
    size_t n;
    if (cxm_store_read_begin(s, &t) != 0)
        return NULL;
    if (cxm_txn_get(t, dbi, key, strlen(key), a, &v, &n) != 0)
        v = NULL;
    cxm_store_read_end(t);
    return v;
}

/* ---- tests ------------------------------------------------------------ */

static void test_basic(void)
{
    char dir[256];
    path_in(dir, sizeof dir, "basic/nested");
    cxm_store *s = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &s), 0);
    if (!s)
        return;
    CHECK_EQ_INT(cxm_store_map_size(s), 64 << 20);
    CHECK_EQ_INT(cxm_store_max_key(s), 511);

    MDB_dbi dbi = 0, again = 0, other = 0;
    CHECK_EQ_INT(cxm_store_dbi(s, "test.kv", 0, &dbi), 0);
    CHECK_EQ_INT(cxm_store_dbi(s, "test.kv", 0, &again), 0);
    CHECK_EQ_INT(cxm_store_dbi(s, "test.other", 0, &other), 0);
    CHECK_EQ_INT(dbi, again);
    CHECK(dbi != other);

    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    CHECK_EQ_INT(put(s, dbi, "k1", "v1"), 0);
    CHECK_EQ_STR(get(s, dbi, "k1", &a), "v1");
    CHECK(get(s, other, "k1", &a) == NULL); /* databases are separate */

    kv no = {dbi, "k1", "other", CXM_PUT_NOOVERWRITE};
    CHECK_EQ_INT(cxm_store_write(s, put_fn, &no), CXM_EEXIST);
    CHECK_EQ_STR(get(s, dbi, "k1", &a), "v1");

    /* fn's error aborts: nothing it wrote is visible. */
    kv doomed = {dbi, "k2", "v2", 0};
    CHECK_EQ_INT(cxm_store_write(s, put_then_fail_fn, &doomed), CXM_ESTALE);
    CHECK(get(s, dbi, "k2", &a) == NULL);

    /* Copy-out survives the txn and later writes; the ref is the map's. */
    cxm_txn *t;
    void *copy = NULL;
    const void *ref = NULL;
    size_t n = 0, rn = 0;
    CHECK_EQ_INT(cxm_store_read_begin(s, &t), 0);
    CHECK_EQ_INT(cxm_txn_get(t, dbi, "k1", 2, &a, &copy, &n), 0);
    CHECK_EQ_INT(cxm_txn_get_ref(t, dbi, "k1", 2, &ref, &rn), 0);
    CHECK(rn == 2 && memcmp(ref, "v1", 2) == 0);
    CHECK_EQ_INT(cxm_txn_get(t, dbi, "nope", 4, &a, &copy, &n), CXM_ENOTFOUND);
    CHECK_EQ_INT(cxm_txn_put(t, dbi, "k", 1, "v", 1, 0), CXM_EINVAL); /* read-only */
    cxm_store_read_end(t);
    CHECK_EQ_INT(put(s, dbi, "k1", "overwritten"), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(copy, "v1");
    CHECK_EQ_STR(get(s, dbi, "k1", &a), "overwritten");

    /* Key length limits. */
    char big[600];
    memset(big, 'k', sizeof big);
    big[512] = '\0';
    CHECK_EQ_INT(put(s, dbi, big, "v"), CXM_ETOOBIG);
    CHECK(strstr(cxm_store_last_error(), "512") != NULL);
    big[511] = '\0';
    CHECK_EQ_INT(put(s, dbi, big, "v"), 0);
    CHECK_EQ_INT(put(s, dbi, "", "v"), CXM_ETOOBIG);

    kv d = {dbi, "k1", NULL, 0};
    CHECK_EQ_INT(cxm_store_write(s, del_fn, &d), 0);
    CHECK(get(s, dbi, "k1", &a) == NULL);
    CHECK_EQ_INT(cxm_store_write(s, del_fn, &d), CXM_ENOTFOUND);

    /* Ended read txns are pooled and renewed: many rounds, no leak. */
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(cxm_store_read_begin(s, &t) == 0 ? (cxm_store_read_end(t), 0) : -1, 0);

    cxm_arena_dispose(&a);
    cxm_store_close(s);
}

/* Keys (user, ts) to check iteration order across a string and an i64. */
typedef struct row {
    const char *user;
    size_t ulen;
    int64_t ts;
} row;

static const row rows[] = {
    {"b", 1, 5},   {"a", 1, 3}, {"ab", 2, 1},  {"a", 1, -7}, {"a\0", 2, 0},
    {"a", 1, 100}, {"", 0, 1},  {"a\1", 2, 2}, {"b", 1, -1}, {"a", 1, 0},
};
#define NROWS (sizeof rows / sizeof rows[0])

static size_t row_key(const row *r, uint8_t *buf)
{
    cxm_key k;
    size_t len = 0;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_bytes(&k, r->user, r->ulen);
    cxm_key_i64(&k, r->ts);
    cxm_key_finish(&k, &len);
    return len;
}

typedef struct rows_ctx {
    MDB_dbi dbi;
} rows_ctx;

static int put_rows_fn(cxm_txn *t, void *user)
{
    rows_ctx *c = user;
    for (size_t i = 0; i < NROWS; i++) {
        uint8_t key[CXM_KEY_MAX];
        size_t len = row_key(&rows[i], key);
        int rc = cxm_txn_put(t, c->dbi, key, len, &i, sizeof i, 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Walk an iterator; write "user:ts," per row into out, control bytes as \N. */
static void walk(cxm_iter *it, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    while (cxm_iter_next(it) == 0) {
        size_t i;
        memcpy(&i, it->val, sizeof i);
        for (size_t j = 0; j < rows[i].ulen; j++) {
            char ch = rows[i].user[j];
            len += (size_t)snprintf(out + len, cap - len, ch < ' ' ? "\\%d" : "%c", ch);
        }
        len += (size_t)snprintf(out + len, cap - len, ":%lld,", (long long)rows[i].ts);
    }
    cxm_iter_close(it);
}

typedef struct scan_ctx {
    int seen;
    int stop_after;
} scan_ctx;

static int scan_cb(const void *key, size_t klen, const void *val, size_t vlen, void *user)
{
    scan_ctx *c = user;
    c->seen++;
    return c->seen >= c->stop_after ? 1 : 0;
}

static void test_iteration(void)
{
    char dir[256];
    path_in(dir, sizeof dir, "iter");
    cxm_store *s = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &s), 0);
    if (!s)
        return;
    rows_ctx c = {0};
    CHECK_EQ_INT(cxm_store_dbi(s, "test.rows", 0, &c.dbi), 0);
    CHECK_EQ_INT(cxm_store_write(s, put_rows_fn, &c), 0);

    cxm_txn *t;
    CHECK_EQ_INT(cxm_store_read_begin(s, &t), 0);
    char out[256];
    cxm_iter it;
    uint8_t pre[CXM_KEY_MAX], pre2[CXM_KEY_MAX];
    cxm_key k;
    size_t plen = 0, plen2 = 0;

    CHECK_EQ_INT(cxm_iter_prefix(t, c.dbi, NULL, 0, false, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, ":1,a:-7,a:0,a:3,a:100,a\\0:0,a\\1:2,ab:1,b:-1,b:5,");

    /* Exactly user "a": embedded-NUL and longer users are excluded. */
    cxm_key_init(&k, pre, sizeof pre);
    cxm_key_str(&k, "a");
    cxm_key_finish(&k, &plen);
    CHECK_EQ_INT(cxm_iter_prefix(t, c.dbi, pre, plen, false, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "a:-7,a:0,a:3,a:100,");
    CHECK_EQ_INT(cxm_iter_prefix(t, c.dbi, pre, plen, true, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "a:100,a:3,a:0,a:-7,");

    /* Users that start with "a". */
    cxm_key_init(&k, pre, sizeof pre);
    cxm_key_bytes_prefix(&k, "a", 1);
    cxm_key_finish(&k, &plen);
    CHECK_EQ_INT(cxm_iter_prefix(t, c.dbi, pre, plen, true, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "ab:1,a\\1:2,a\\0:0,a:100,a:3,a:0,a:-7,");

    /* [("a", 0), ("b", 0)) both ways. */
    cxm_key_init(&k, pre, sizeof pre);
    cxm_key_str(&k, "a");
    cxm_key_i64(&k, 0);
    cxm_key_finish(&k, &plen);
    cxm_key_init(&k, pre2, sizeof pre2);
    cxm_key_str(&k, "b");
    cxm_key_i64(&k, 0);
    cxm_key_finish(&k, &plen2);
    CHECK_EQ_INT(cxm_iter_range(t, c.dbi, pre, plen, pre2, plen2, false, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "a:0,a:3,a:100,a\\0:0,a\\1:2,ab:1,b:-1,");
    CHECK_EQ_INT(cxm_iter_range(t, c.dbi, pre, plen, pre2, plen2, true, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "b:-1,ab:1,a\\1:2,a\\0:0,a:100,a:3,a:0,");
    /* Open-ended: everything from ("b", 0); everything below ("a", 0), backwards. */
    CHECK_EQ_INT(cxm_iter_range(t, c.dbi, pre2, plen2, NULL, 0, false, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "b:5,");
    CHECK_EQ_INT(cxm_iter_range(t, c.dbi, NULL, 0, pre, plen, true, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "a:-7,:1,");

    /* A prefix nothing has, and one above every key (no successor). */
    CHECK_EQ_INT(cxm_iter_prefix(t, c.dbi, "zz", 2, false, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(cxm_iter_prefix(t, c.dbi, "\xff\xff", 2, true, &it), 0);
    walk(&it, out, sizeof out);
    CHECK_EQ_STR(out, "");

    scan_ctx sc = {0, 3};
    CHECK_EQ_INT(cxm_txn_scan_prefix(t, c.dbi, NULL, 0, false, scan_cb, &sc), 0);
    CHECK_EQ_INT(sc.seen, 3);
    sc = (scan_ctx){0, 1000};
    CHECK_EQ_INT(cxm_txn_scan_prefix(t, c.dbi, NULL, 0, true, scan_cb, &sc), 0);
    CHECK_EQ_INT(sc.seen, NROWS);
    cxm_store_read_end(t);
    cxm_store_close(s);
}

/* ---- map growth --------------------------------------------------------- */

#define VAL_BYTES (64 << 10)

typedef struct fill_ctx {
    MDB_dbi dbi;
    uint32_t first, count; /* values [first, first+count) */
    int calls;             /* fn runs, retries included */
} fill_ctx;

static void fill_value(uint32_t i, uint8_t *v)
{
    for (size_t j = 0; j < VAL_BYTES; j += 4)
        memcpy(v + j, &(uint32_t){i * 2654435761u + (uint32_t)j}, 4);
}

static int fill_fn(cxm_txn *t, void *user)
{
    fill_ctx *c = user;
    static uint8_t v[VAL_BYTES];
    c->calls++;
    for (uint32_t i = c->first; i < c->first + c->count; i++) {
        uint8_t key[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        fill_value(i, v);
        int rc = cxm_txn_put(t, c->dbi, key, sizeof key, v, sizeof v, 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int verify(cxm_store *s, MDB_dbi dbi, uint32_t n)
{
    static uint8_t want[VAL_BYTES];
    cxm_txn *t;
    cxm_iter it;
    uint32_t i = 0;
    int bad = 0;
    if (cxm_store_read_begin(s, &t) != 0)
        return -1;
    cxm_iter_prefix(t, dbi, NULL, 0, false, &it);
    while (cxm_iter_next(&it) == 0) {
        fill_value(i, want);
        if (it.vlen != VAL_BYTES || memcmp(it.val, want, VAL_BYTES) != 0)
            bad++;
        i++;
    }
    cxm_iter_close(&it);
    cxm_store_read_end(t);
    return i == n ? bad : -2;
}

typedef struct reader_ctx {
    cxm_store *s;
    MDB_dbi dbi;
    volatile int stop;
    int errors, reads;
} reader_ctx;

/* Reads concurrently with growth: growth must wait for these and not starve. */
static void *reader_main(void *arg)
{
    reader_ctx *r = arg;
    while (!r->stop) {
        cxm_txn *t;
        const void *v;
        size_t n;
        if (cxm_store_read_begin(r->s, &t) != 0) {
            r->errors++;
            continue;
        }
        int rc = cxm_txn_get_ref(t, r->dbi, "\0\0\0\0", 4, &v, &n);
        if (rc != 0 && rc != CXM_ENOTFOUND)
            r->errors++;
        r->reads++;
        cxm_store_read_end(t);
    }
    return NULL;
}

static void test_growth(void)
{
    char dir[256];
    path_in(dir, sizeof dir, "grow");
    cxm_store_opts o = {.initial_map_size = 1 << 20, .max_map_size = (size_t)256 << 20};
    cxm_store *s = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, &o, &s), 0);
    if (!s)
        return;
    CHECK_EQ_INT(cxm_store_map_size(s), 1 << 20);
    fill_ctx c = {0};
    CHECK_EQ_INT(cxm_store_dbi(s, "test.big", 0, &c.dbi), 0);

    reader_ctx rc = {s, c.dbi, 0, 0, 0};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, reader_main, &rc);

    /* 20 MiB: one 4 MiB txn (bigger than the whole initial map), then 256 KiB
     * txns. */
    uint32_t total = 0;
    int txns = 0;
    c.first = 0;
    c.count = 64;
    CHECK_EQ_INT(cxm_store_write(s, fill_fn, &c), 0);
    total = 64;
    txns++;
    while (total < 320) {
        c.first = total;
        c.count = 4;
        int r = cxm_store_write(s, fill_fn, &c);
        CHECK_EQ_INT(r, 0);
        if (r != 0)
            break;
        total += 4;
        txns++;
    }
    rc.stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(rc.errors, 0);
    CHECK(rc.reads > 0);
    CHECK(c.calls > txns); /* some txns ran again after a growth */
    CHECK(cxm_store_map_size(s) >= (size_t)20 << 20);
    CHECK_EQ_INT(verify(s, c.dbi, total), 0);
    cxm_store_close(s);

    /* Reopen with the same tiny initial size: the data file's size wins. */
    CHECK_EQ_INT(cxm_store_open(dir, &o, &s), 0);
    if (!s)
        return;
    CHECK(cxm_store_map_size(s) >= (size_t)20 << 20);
    CHECK_EQ_INT(cxm_store_dbi(s, "test.big", 0, &c.dbi), 0);
    CHECK_EQ_INT(verify(s, c.dbi, 320), 0);
    cxm_store_close(s);

    /* At the cap the write fails cleanly, and the store stays usable. */
    path_in(dir, sizeof dir, "capped");
    cxm_store_opts small = {.initial_map_size = 1 << 20, .max_map_size = 2 << 20};
    CHECK_EQ_INT(cxm_store_open(dir, &small, &s), 0);
    if (!s)
        return;
    CHECK_EQ_INT(cxm_store_dbi(s, "test.big", 0, &c.dbi), 0);
    c.first = 0;
    c.count = 64;
    CHECK_EQ_INT(cxm_store_write(s, fill_fn, &c), CXM_EFULL);
    CHECK(strstr(cxm_store_last_error(), "cap") != NULL);
    c.count = 2;
    CHECK_EQ_INT(cxm_store_write(s, fill_fn, &c), 0);
    CHECK_EQ_INT(verify(s, c.dbi, 2), 0);
    cxm_store_close(s);
}

/* ---- sharing and errors ---------------------------------------------------- */

static void *end_elsewhere(void *arg)
{
    cxm_store_read_end(arg);
    return NULL;
}

static void test_sharing(void)
{
    char dir[256], alias[300];
    path_in(dir, sizeof dir, "shared");
    snprintf(alias, sizeof alias, "%s/./../shared/", dir);
    cxm_store *a = NULL, *b = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &a), 0);
    CHECK_EQ_INT(cxm_store_open(alias, NULL, &b), 0);
    CHECK(a != NULL && a == b);
    if (!a || !b)
        return;
    CHECK(cxm_store_env(a) == cxm_store_env(b));
    MDB_dbi dbi;
    CHECK_EQ_INT(cxm_store_dbi(a, "x", 0, &dbi), 0);
    CHECK_EQ_INT(put(a, dbi, "k", "v"), 0);
    cxm_store_close(a);

    /* Still open through b; a read txn may end on another thread (MDB_NOTLS). */
    cxm_arena ar;
    cxm_arena_init(&ar, NULL, 0, 0);
    CHECK_EQ_STR(get(b, dbi, "k", &ar), "v");
    cxm_txn *t;
    CHECK_EQ_INT(cxm_store_read_begin(b, &t), 0);
    pthread_t th;
    pthread_create(&th, NULL, end_elsewhere, t);
    pthread_join(th, NULL);
    CHECK_EQ_INT(put(b, dbi, "k", "v2"), 0);
    CHECK_EQ_STR(get(b, dbi, "k", &ar), "v2");
    cxm_arena_dispose(&ar);
    cxm_store_close(b);
}

/* A read txn begun here and ended on another thread no longer counts as
 * held by this thread, so this thread's next write may still grow the map. */
static void test_read_ended_elsewhere(void)
{
    char dir[256];
    path_in(dir, sizeof dir, "elsewhere");
    cxm_store_opts o = {.initial_map_size = 64 << 10, .max_map_size = 8 << 20};
    cxm_store *s = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, &o, &s), 0);
    if (!s)
        return;
    MDB_dbi dbi;
    CHECK_EQ_INT(cxm_store_dbi(s, "x", 0, &dbi), 0);
    cxm_txn *t;
    CHECK_EQ_INT(cxm_store_read_begin(s, &t), 0);
    pthread_t th;
    pthread_create(&th, NULL, end_elsewhere, t);
    pthread_join(th, NULL);
    static char big[200 << 10];
    memset(big, 'x', sizeof big - 1);
    CHECK_EQ_INT(put(s, dbi, "big", big), 0);
    CHECK(cxm_store_map_size(s) > (size_t)(64 << 10));
    cxm_store_close(s);
}

static void test_open_errors(void)
{
    char file[256], dir[300];
    path_in(file, sizeof file, "plain-file");
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    snprintf(dir, sizeof dir, "%s/data", file);
    cxm_store *s = NULL;
    int rc = cxm_store_open(dir, NULL, &s);
    CHECK(rc < 0);
    CHECK(s == NULL);
    CHECK(strstr(cxm_store_last_error(), dir) != NULL);
    fprintf(stderr, "(expected) %s\n", cxm_store_last_error());

    CHECK(cxm_store_open("", NULL, &s) < 0);

    if (geteuid() != 0) { /* root ignores permissions */
        char ro[256], sub[300];
        path_in(ro, sizeof ro, "read-only");
        mkdir(ro, 0500);
        snprintf(sub, sizeof sub, "%s/data", ro);
        CHECK(cxm_store_open(sub, NULL, &s) < 0);
        CHECK(strstr(cxm_store_last_error(), sub) != NULL);
        CHECK(cxm_store_open(ro, NULL, &s) < 0); /* exists, but LMDB cannot create its files */
        CHECK(strstr(cxm_store_last_error(), ro) != NULL);
        chmod(ro, 0700);
    }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* ---- group commit ------------------------------------------------------ */

#define SUBMITTERS 4
#define JOBS_PER_SUBMITTER 500

typedef struct group_job {
    cxm_write_job job;
    MDB_dbi dbi;
    char key[32];
    char val[600]; /* big enough that the 1 MiB map must grow mid-batch */
    bool fail;     /* writes, then fails: its writes must roll back alone */
    atomic_int *done_count;
    int rc;
    int calls;
} group_job;

static int group_fn(cxm_txn *t, void *user)
{
    group_job *g = user;
    int rc = cxm_txn_put(t, g->dbi, g->key, strlen(g->key), g->val, sizeof g->val, 0);
    return rc ? rc : g->fail ? CXM_ESTALE : 0;
}

static void group_done(void *user, int rc)
{
    group_job *g = user;
    g->rc = rc;
    g->calls++;
    atomic_fetch_add(g->done_count, 1);
}

typedef struct submitter {
    cxm_store *s;
    group_job *jobs;
} submitter;

static void *submit_main(void *arg)
{
    submitter *sub = arg;
    for (int i = 0; i < JOBS_PER_SUBMITTER; i++)
        cxm_store_submit(sub->s, &sub->jobs[i].job);
    return NULL;
}

static void test_group_commit(void)
{
    char dir[256];
    path_in(dir, sizeof dir, "group");
    cxm_store_opts o = {.initial_map_size = 1 << 20};
    cxm_store *s;
    CHECK_EQ_INT(cxm_store_open(dir, &o, &s), 0);
    MDB_dbi dbi;
    CHECK_EQ_INT(cxm_store_dbi(s, "group", 0, &dbi), 0);

    static group_job jobs[SUBMITTERS][JOBS_PER_SUBMITTER];
    atomic_int done_count = 0;
    pthread_t threads[SUBMITTERS];
    submitter subs[SUBMITTERS];
    for (int t = 0; t < SUBMITTERS; t++) {
        for (int i = 0; i < JOBS_PER_SUBMITTER; i++) {
            group_job *g = &jobs[t][i];
            g->job = (cxm_write_job){.fn = group_fn, .done = group_done, .user = g};
            g->dbi = dbi;
            snprintf(g->key, sizeof g->key, "k%d-%04d", t, i);
            memset(g->val, 'a' + t, sizeof g->val);
            g->fail = i % 7 == 3;
            g->done_count = &done_count;
        }
        subs[t] = (submitter){s, jobs[t]};
        pthread_create(&threads[t], NULL, submit_main, &subs[t]);
    }
    for (int t = 0; t < SUBMITTERS; t++)
        pthread_join(threads[t], NULL);
    for (int spins = 0; atomic_load(&done_count) < SUBMITTERS * JOBS_PER_SUBMITTER && spins < 3000;
         spins++)
        usleep(10000);
    CHECK_EQ_INT(atomic_load(&done_count), SUBMITTERS * JOBS_PER_SUBMITTER);
    CHECK(cxm_store_map_size(s) > (1u << 20)); /* it grew under the batches */

    /* Each job finished once, with its own result; failed jobs left nothing. */
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int wrong = 0;
    for (int t = 0; t < SUBMITTERS; t++) {
        for (int i = 0; i < JOBS_PER_SUBMITTER; i++) {
            group_job *g = &jobs[t][i];
            char *v = get(s, dbi, g->key, &a);
            bool ok = g->calls == 1 && g->rc == (g->fail ? CXM_ESTALE : 0) &&
                      (g->fail ? v == NULL : v != NULL && v[0] == 'a' + t);
            wrong += !ok;
        }
        cxm_arena_reset(&a);
    }
    CHECK_EQ_INT(wrong, 0);
    cxm_arena_dispose(&a);
    cxm_store_close(s); /* joins the writer thread */
}

/* Another process holds the directory: the open is refused, naming the
 * directory and that process's pid; once it exits, the directory is free. */
static void test_one_owner(void)
{
    char dir[256];
    path_in(dir, sizeof dir, "owned");
    int ready[2], hold[2];
    CHECK(pipe(ready) == 0 && pipe(hold) == 0);
    pid_t child = fork();
    if (child == 0) {
        close(hold[1]);
        cxm_store *s = NULL;
        char ok = cxm_store_open(dir, NULL, &s) == 0 ? 'y' : 'n';
        (void)!write(ready[1], &ok, 1);
        char c;
        (void)!read(hold[0], &c, 1); /* until the parent closes its end */
        cxm_store_close(s);
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    char ok = 0;
    CHECK(read(ready[0], &ok, 1) == 1 && ok == 'y');

    cxm_store *s = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &s), CXM_EBUSY);
    char want[64], *real = realpath(dir, NULL);
    snprintf(want, sizeof want, "(pid %ld)", (long)child);
    CHECK(real && strstr(cxm_store_last_error(), real));
    CHECK(strstr(cxm_store_last_error(), want));
    free(real);

    close(hold[1]);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &s), 0);
    cxm_store_close(s);
}

/* Run n writes of 16 KiB each with stderr captured into log; returns how
 * many failed because the map was full. */
static int full_writes(cxm_store *s, MDB_dbi dbi, int n, char *log, size_t cap)
{
    static char big[16 << 10];
    memset(big, 'x', sizeof big - 1);
    fflush(stderr);
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(f), STDERR_FILENO);
    int full = 0;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        full += put(s, dbi, key, big) == CXM_EFULL;
    }
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    size_t len = fread(log, 1, cap - 1, f);
    log[len] = '\0';
    fclose(f);
    return full;
}

static int count_lines_with(const char *log, const char *needle)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* A store that cannot take a write says so in the log, once per cause, not
 * once per failed request. */
static void test_write_failure_logged(void)
{
    char dir[256];
    path_in(dir, sizeof dir, "full");
    cxm_store_opts o = {.initial_map_size = 64 << 10, .max_map_size = 64 << 10};
    cxm_store *s = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, &o, &s), 0);
    if (!s)
        return;
    MDB_dbi dbi;
    CHECK_EQ_INT(cxm_store_dbi(s, "x", 0, &dbi), 0);
    static char log[16384];
    int failed = full_writes(s, dbi, 30, log, sizeof log);
    CHECK(failed >= 20);
    CHECK_EQ_INT(count_lines_with(log, "store.write_failed"), 1);
    CHECK(strstr(log, "full at its cap") != NULL);
    CHECK(strstr(log, cxm_store_path(s)) != NULL);
    cxm_store_close(s);
}

/* ---- compaction --------------------------------------------------------- */

/* How many times needle occurs in the file at path. */
static int count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    int count = 0;
    size_t nl = strlen(needle);
    for (const char *p = buf; p && (p = memmem(p, got - (size_t)(p - buf), needle, nl)); p++)
        count++;
    free(buf);
    return count;
}

typedef struct secret_ctx {
    MDB_dbi dbi;
    int first, count;
    bool erase;
} secret_ctx;

/* Keys and values both carry the secret, so separators would show too. */
static int secret_fn(cxm_txn *t, void *user)
{
    secret_ctx *c = user;
    for (int i = c->first; i < c->first + c->count; i++) {
        char k[64], v[256];
        int kl = snprintf(k, sizeof k, "k%05d-%s", i, i % 10 == 3 ? "SECRET-ERASE-ME" : "kept");
        int vl = snprintf(v, sizeof v, "%0200d %s", i, i % 10 == 3 ? "SECRET-ERASE-ME" : "kept");
        int rc = c->erase ? (i % 10 == 3 ? cxm_txn_del(t, c->dbi, k, (size_t)kl) : 0)
                          : cxm_txn_put(t, c->dbi, k, (size_t)kl, v, (size_t)vl, 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

typedef struct compact_writer {
    cxm_store *s;
    MDB_dbi dbi;
    atomic_int stop, written, errors;
} compact_writer;

static void *compact_writer_main(void *arg)
{
    compact_writer *w = arg;
    char key[32];
    while (!atomic_load(&w->stop)) {
        snprintf(key, sizeof key, "w%06d", atomic_load(&w->written));
        kv p = {w->dbi, key, "during", 0};
        if (cxm_store_write(w->s, put_fn, &p) == 0)
            atomic_fetch_add(&w->written, 1);
        else
            atomic_fetch_add(&w->errors, 1);
    }
    return NULL;
}

static atomic_int hook_calls;

static void count_hook(cxm_store *s, void *user)
{
    (void)s;
    atomic_fetch_add((atomic_int *)user, 1);
}

static void test_compaction(void)
{
    char dir[256], data[300];
    path_in(dir, sizeof dir, "compact");
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    cxm_store *s = NULL;
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &s), 0);
    if (!s)
        return;
    MDB_dbi a, b, w;
    CHECK_EQ_INT(cxm_store_dbi(s, "test.a", 0, &a), 0);
    CHECK_EQ_INT(cxm_store_dbi(s, "test.b", 0, &b), 0);
    CHECK_EQ_INT(cxm_store_dbi(s, "test.w", 0, &w), 0);
    /* Rewritten several times, so old page versions pile up in free pages. */
    for (int round = 0; round < 3; round++)
        for (int first = 0; first < 3000; first += 100) {
            secret_ctx c = {round == 1 ? b : a, first, 100, false};
            CHECK_EQ_INT(cxm_store_write(s, secret_fn, &c), 0);
        }
    for (int first = 0; first < 3000; first += 500) {
        secret_ctx ea = {a, first, 500, true}, eb = {b, first, 500, true};
        CHECK_EQ_INT(cxm_store_write(s, secret_fn, &ea), 0);
        CHECK_EQ_INT(cxm_store_write(s, secret_fn, &eb), 0);
    }
    int before = count_in_file(data, "SECRET-ERASE-ME");
    printf("compaction: %d copies of the erased secret in data.mdb before\n", before);
    CHECK(before > 0); /* the leak this fixes */

    /* Not from a thread holding a transaction: the swap would wait for it. */
    cxm_txn *t;
    CHECK_EQ_INT(cxm_store_read_begin(s, &t), 0);
    CHECK_EQ_INT(cxm_store_compact(s), CXM_EBUSY);
    cxm_store_read_end(t);

    compact_writer cw = {.s = s, .dbi = w};
    pthread_t th;
    pthread_create(&th, NULL, compact_writer_main, &cw);
    usleep(20000);
    CHECK_EQ_INT(cxm_store_compact(s), 0);
    usleep(20000);
    atomic_store(&cw.stop, 1);
    pthread_join(th, NULL);
    CHECK_EQ_INT(atomic_load(&cw.errors), 0);
    CHECK_EQ_INT(cxm_store_compactions(s), 1);
    CHECK_EQ_INT(count_in_file(data, "SECRET-ERASE-ME"), 0);

    /* The same handles serve everything kept, and no write was lost. */
    cxm_arena ar;
    cxm_arena_init(&ar, NULL, 0, 0);
    char *v = get(s, a, "k00004-kept", &ar);
    CHECK(v && strstr(v, " kept"));
    CHECK(get(s, b, "k02999-kept", &ar) != NULL);
    CHECK(get(s, a, "k00003-SECRET-ERASE-ME", &ar) == NULL);
    int written = atomic_load(&cw.written);
    CHECK(written > 0);
    char key[32];
    snprintf(key, sizeof key, "w%06d", written - 1);
    CHECK(get(s, w, key, &ar) != NULL);
    snprintf(key, sizeof key, "w%06d", 0);
    CHECK(get(s, w, key, &ar) != NULL);
    MDB_dbi c2;
    CHECK_EQ_INT(cxm_store_dbi(s, "test.after", 0, &c2), 0);
    CHECK_EQ_INT(put(s, c2, "x", "y"), 0);
    cxm_arena_dispose(&ar);

    /* Requested: runs after the delay, then the hooks. */
    CHECK_EQ_INT(cxm_store_on_compacted(s, count_hook, &hook_calls), 0);
    cxm_store_set_compact_delay(s, 50);
    cxm_store_compact_request(s);
    cxm_store_compact_request(s); /* the same one */
    for (int i = 0; i < 500 && atomic_load(&hook_calls) == 0; i++)
        usleep(10000);
    CHECK_EQ_INT(atomic_load(&hook_calls), 1);
    CHECK_EQ_INT(cxm_store_compactions(s), 2);
    cxm_store_on_compacted_remove(s, count_hook, &hook_calls);
    cxm_store_close(s);

    /* The compacted file opens as any other. */
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &s), 0);
    if (!s)
        return;
    CHECK_EQ_INT(cxm_store_dbi(s, "test.a", 0, &a), 0);
    cxm_arena_init(&ar, NULL, 0, 0);
    CHECK(get(s, a, "k02994-kept", &ar) != NULL);
    cxm_arena_dispose(&ar);
    cxm_store_close(s);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_basic();
    test_iteration();
    test_growth();
    test_sharing();
    test_read_ended_elsewhere();
    test_write_failure_logged();
    test_open_errors();
    test_one_owner();
    test_group_commit();
    test_compaction();
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return check_report();
}
