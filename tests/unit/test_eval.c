/*
 * test_eval.c - the offline evaluator's pieces: metrics on hand-computed
 * cases, strict CSV reading (both accepted headers) and its errors, the
 * splits and the renumbering.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cxm/err.h"
#include "personalisation/eval/evalcsv.h"
#include "personalisation/eval/evalmetrics.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

static void test_metrics_two_relevant(void)
{
    /* Relevant {5, 9}; hits at ranks 1 and 3 of k = 3. */
    const uint32_t rel[] = {5, 9}, recs[] = {9, 1, 5};
    eval_user_metrics m;
    eval_user_score(recs, 3, rel, 2, 3, &m);
    CHECK(NEAR(m.precision, 2.0 / 3));
    CHECK(NEAR(m.recall, 1.0));
    CHECK(NEAR(m.ndcg, (1 + 1 / 2.0) / (1 + 1 / log2(3))));
    CHECK(NEAR(m.ap, (1 + 2.0 / 3) / 2));
}

static void test_metrics_partial(void)
{
    /* Relevant {1, 2, 3, 4} (4 may be unseen in train), k = 2, hit at rank 2
     * only: IDCG and AP use min(4, 2) = 2; recall uses all 4. */
    const uint32_t rel[] = {1, 2, 3, 4}, recs[] = {7, 3};
    eval_user_metrics m;
    eval_user_score(recs, 2, rel, 4, 2, &m);
    CHECK(NEAR(m.precision, 0.5));
    CHECK(NEAR(m.recall, 0.25));
    CHECK(NEAR(m.ndcg, (1 / log2(3)) / (1 + 1 / log2(3))));
    CHECK(NEAR(m.ap, 0.5 / 2));
    /* A short list counts the missing ranks as misses. */
    const uint32_t one[] = {1};
    eval_user_score(one, 1, rel, 4, 10, &m);
    CHECK(NEAR(m.precision, 0.1));
    CHECK(NEAR(m.ap, 1.0 / 4));
    eval_user_score(NULL, 0, rel, 4, 10, &m);
    CHECK(m.precision == 0 && m.recall == 0 && m.ndcg == 0 && m.ap == 0);
}

static void test_accumulate_and_quantile(void)
{
    eval_acc a;
    CHECK_EQ_INT(eval_acc_init(&a, 10), 0);
    eval_user_metrics m1 = {1, 1, 1, 1}, m0 = {0};
    const uint32_t r1[] = {1, 2}, r2[] = {2, 3};
    eval_acc_add(&a, r1, 2, &m1);
    eval_acc_add(&a, r2, 2, &m0);
    eval_summary s;
    eval_acc_summary(&a, &s);
    CHECK_EQ_INT(s.users, 2);
    CHECK(NEAR(s.ndcg, 0.5));
    CHECK(NEAR(s.map, 0.5));
    CHECK(NEAR(s.coverage, 3.0 / 10));
    eval_acc_free(&a);
    double v[] = {5, 1, 4, 2, 3};
    CHECK(eval_quantile(v, 5, 0.5) == 3);
    CHECK(eval_quantile(v, 5, 0.99) == 5);
    CHECK(eval_quantile(v, 0, 0.5) == 0);
}

/* Write text to a fresh temporary file; returns its path (static buffer). */
static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/test_eval_XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Read text as a CSV; returns the code, err gets the message. */
static int read_text(const char *text, char *err, size_t errlen, recolog *log, recoids *users,
                     recoids *items)
{
    const char *path = write_tmp(text);
    err[0] = '\0';
    int rc = eval_csv_read(path, users, items, log, err, errlen);
    unlink(path);
    return rc;
}

/* The error of a bad file; also checks it names file:line when line > 0. */
static void expect_error(const char *text, int line, const char *fragment)
{
    recoids users = {0}, items = {0};
    recolog log = {0};
    char err[512];
    CHECK_EQ_INT(read_text(text, err, sizeof err, &log, &users, &items), CXM_EINVAL);
    if (!strstr(err, fragment))
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err, fragment);
    CHECK(strstr(err, fragment) != NULL);
    char where[32];
    snprintf(where, sizeof where, ":%d: ", line);
    CHECK(line == 0 || strstr(err, where) != NULL);
    CHECK(strstr(err, "/tmp/test_eval_") == err);
    recolog_free(&log);
    recoids_free(&users);
    recoids_free(&items);
}

static void test_csv_errors(void)
{
    static const struct {
        const char *text;
        int line;
        const char *fragment;
    } cases[] = {
        {"", 0, "empty file"},
        {"userId,movieId,rating,ts\n", 1, "unknown column \"ts\", missing column \"timestamp\""},
        {"user,item,rating\n", 1, "missing column \"ts\""},
        {"user,movie,rating,ts\n", 1, "or MovieLens' \"userId,movieId,rating,timestamp\""},
        {"userId,movieId,rating,timestamp\n1,31,x,964982703\n", 2, "rating \"x\" is not a number"},
        {"item,user,rating,ts\n", 1, "out of order"},
        {"user,item,rating,ts\nu1,i1,1,5\nu2,i2,x,6\n", 3, "rating \"x\" is not a number"},
        {"user,item,rating,ts\nu1,i1,0,5\n", 2, "not a finite number > 0"},
        {"user,item,rating,ts\nu1,i1,nan,5\n", 2, "not a finite number > 0"},
        {"user,item,rating,ts\nu1,i1, 1,5\n", 2, "is not a number"},
        {"user,item,rating,ts\nu1,i1,1,5.5\n", 2, "ts \"5.5\" is not an integer"},
        {"user,item,rating,ts\nu1,i1,1\n", 2, "expected 4 fields"},
        {"user,item,rating,ts\nu1,i1,1,2,3\n", 2, "found 5"},
        {"user,item,rating,ts\n\"u,1\",i1,1,2\n", 2, "quoted fields"},
        {"user,item,rating,ts\nu1,,1,2\n", 2, "item id is empty"},
        {"user,item,rating,ts\nu1,i1,1,2\n\n", 3, "expected 4 fields"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].text, cases[i].line, cases[i].fragment);
    char big[600];
    memset(big, 'a', sizeof big);
    int n = snprintf(big, sizeof big, "user,item,rating,ts\n");
    memset(big + n, 'u', 257);
    snprintf(big + n + 257, sizeof big - (size_t)n - 257, ",i,1,2\n");
    expect_error(big, 2, "longer than 256 bytes");
}

static void test_csv_read(void)
{
    recoids users = {0}, items = {0};
    recolog log = {0};
    char err[512];
    const char *text = "user,item,rating,ts\r\nalice,x,1,10\r\nbob,y,2.5,3\r\n"
                       "alice,x,4,7\r\nalice,z,1,1\r\n";
    CHECK_EQ_INT(read_text(text, err, sizeof err, &log, &users, &items), 0);
    CHECK_EQ_INT(log.n, 4);
    CHECK_EQ_INT(users.n, 2);
    CHECK_EQ_INT(items.n, 3);
    CHECK_EQ_STR(users.names[1], "bob");
    CHECK_EQ_INT(recoids_find(&items, "z"), 2);
    CHECK(log.ev[1].user == 1 && log.ev[1].item == 1 && log.ev[1].rating == 2.5f);
    CHECK_EQ_INT(log.ev[3].ts, 1);
    recolog_free(&log);
    recoids_free(&users);
    recoids_free(&items);
}

/* MovieLens' ratings.csv reads as it is: its header, seconds as ts. */
static void test_csv_movielens(void)
{
    recoids users = {0}, items = {0};
    recolog log = {0};
    char err[512];
    const char *text = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
                       "1,3,4.0,964981247\n2,318,3.5,1445714835\n";
    CHECK_EQ_INT(read_text(text, err, sizeof err, &log, &users, &items), 0);
    CHECK_EQ_INT(log.n, 3);
    CHECK_EQ_INT(users.n, 2);
    CHECK_EQ_INT(items.n, 3);
    CHECK_EQ_STR(items.names[2], "318");
    CHECK(log.ev[2].rating == 3.5f);
    CHECK_EQ_INT(log.ev[2].ts, 1445714835);
    recolog_free(&log);
    recoids_free(&users);
    recoids_free(&items);
}

/* n users, user u with u + 1 interactions (item i at ts 100 - i). */
static void make_log(recolog *log, uint32_t nusers)
{
    for (uint32_t u = 0; u < nusers; u++)
        for (uint32_t i = 0; i <= u; i++)
            recolog_push(log, &(recolog_event){u, i, 1, 100 - (int64_t)i});
}

static int same_log(const recolog *a, const recolog *b)
{
    return a->n == b->n && memcmp(a->ev, b->ev, a->n * sizeof *a->ev) == 0;
}

static size_t count_user(const recolog *log, uint32_t u)
{
    size_t n = 0;
    for (size_t i = 0; i < log->n; i++)
        n += log->ev[i].user == u;
    return n;
}

static void test_split_random(void)
{
    recolog all = {0}, tr1 = {0}, te1 = {0}, tr2 = {0}, te2 = {0}, tr3 = {0}, te3 = {0};
    make_log(&all, 20);
    CHECK_EQ_INT(eval_split(&all, EVAL_SPLIT_RANDOM, 0.2, 42, &tr1, &te1), 0);
    CHECK_EQ_INT(eval_split(&all, EVAL_SPLIT_RANDOM, 0.2, 42, &tr2, &te2), 0);
    CHECK_EQ_INT(eval_split(&all, EVAL_SPLIT_RANDOM, 0.2, 7, &tr3, &te3), 0);
    CHECK(same_log(&tr1, &tr2) && same_log(&te1, &te2));
    CHECK(!same_log(&te1, &te3));
    CHECK_EQ_INT(tr1.n + te1.n, all.n);
    /* User 0 has one interaction: train only. User 9 has 10: 2 in test. */
    CHECK_EQ_INT(count_user(&tr1, 0), 1);
    CHECK_EQ_INT(count_user(&te1, 0), 0);
    CHECK_EQ_INT(count_user(&te1, 9), 2);
    /* frac 1: everything but one per user in test. */
    recolog tr4 = {0}, te4 = {0};
    CHECK_EQ_INT(eval_split(&all, EVAL_SPLIT_RANDOM, 1.0, 1, &tr4, &te4), 0);
    CHECK_EQ_INT(tr4.n, 20);
    CHECK_EQ_INT(eval_split(&all, EVAL_SPLIT_RANDOM, 1.5, 1, &tr4, &te4), CXM_EINVAL);
    recolog *logs[] = {&all, &tr1, &te1, &tr2, &te2, &tr3, &te3, &tr4, &te4};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++)
        recolog_free(logs[i]);
}

static void test_split_temporal(void)
{
    recolog all = {0}, tr = {0}, te = {0};
    make_log(&all, 10);
    CHECK_EQ_INT(eval_split(&all, EVAL_SPLIT_TEMPORAL, 0.3, 0, &tr, &te), 0);
    /* User 9: 10 interactions, the latest 3 (ts 100..98 = items 0..2) in test. */
    int ok = 1;
    for (size_t i = 0; i < te.n; i++)
        if (te.ev[i].user == 9)
            ok &= te.ev[i].item <= 2;
    CHECK(ok);
    CHECK_EQ_INT(count_user(&te, 9), 3);
    CHECK_EQ_INT(count_user(&te, 0), 0);
    /* User 1: round(0.3 * 2) = 1 in test, one left in train. */
    CHECK_EQ_INT(count_user(&te, 1), 1);
    CHECK_EQ_INT(count_user(&tr, 1), 1);
    recolog_free(&all);
    recolog_free(&tr);
    recolog_free(&te);
}

static void test_reindex(void)
{
    /* Item "b" appears only in test: it must get the index after the train
     * catalogue, and user indices follow train too. */
    recoids users = {0}, items = {0};
    recolog train = {0}, test = {0};
    uint32_t u0, u1, ia, ib, ic;
    recoids_intern(&users, "u0", 2, &u0);
    recoids_intern(&users, "u1", 2, &u1);
    recoids_intern(&items, "a", 1, &ia);
    recoids_intern(&items, "b", 1, &ib);
    recoids_intern(&items, "c", 1, &ic);
    recolog_push(&train, &(recolog_event){u1, ic, 1, 0});
    recolog_push(&train, &(recolog_event){u0, ia, 1, 0});
    recolog_push(&test, &(recolog_event){u0, ib, 1, 0});
    uint32_t nu, ni;
    CHECK_EQ_INT(eval_reindex(&users, &items, &train, &test, &nu, &ni), 0);
    CHECK_EQ_INT(nu, 2);
    CHECK_EQ_INT(ni, 2);
    CHECK_EQ_STR(items.names[0], "a"); /* train's, by name */
    CHECK_EQ_STR(items.names[1], "c");
    CHECK_EQ_STR(items.names[2], "b");
    CHECK_EQ_INT(recoids_find(&items, "b"), 2);
    CHECK_EQ_INT(test.ev[0].item, 2);
    CHECK_EQ_STR(users.names[train.ev[0].user], "u1");
    recolog_free(&train);
    recolog_free(&test);
    recoids_free(&users);
    recoids_free(&items);
}

int main(void)
{
    test_metrics_two_relevant();
    test_metrics_partial();
    test_accumulate_and_quantile();
    test_csv_errors();
    test_csv_read();
    test_csv_movielens();
    test_split_random();
    test_split_temporal();
    test_reindex();
    return check_report();
}
