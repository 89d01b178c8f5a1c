/*
 * test_fan.c - feedback analytics (fan.h) over the incremental aggregates
 * (fagg.h): hand-computed scores, groupings, buckets in time zones, filters,
 * gaps and validation messages, each asked of both paths (records only, and
 * cells of a real LMDB store with the partial hours from the records); then
 * random worlds where the two paths must agree to 1e-9, before and after
 * erasing a third of the responses.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cxm/err.h"
#include "feedback/fan.h"

#define H 3600000LL
#define D (24 * H)
#define T0 1741564800000LL /* 2025-03-10T00:00Z, a Monday */
#define NPS CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS
#define CSAT CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT
#define CES CXM__V1__SURVEY_KIND__SURVEY_KIND_CES
#define WEB CXM__V1__CHANNEL__CHANNEL_WEB
#define APP CXM__V1__CHANNEL__CHANNEL_APP
#define STORE CXM__V1__CHANNEL__CHANNEL_STORE
#define PURCHASE CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE
#define USE CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE
#define BY(g) CXM__V1__SCORE_GROUPING__SCORE_GROUPING_##g
#define BUCKET(b) CXM__V1__TIME_BUCKET__TIME_BUCKET_##b

/* ---- the world: records in memory, cells in a real store --------------- */

static const char *dict[32] = {
    [1] = "nps-main", [2] = "csat", [3] = "ces",    [10] = "checkout", [11] = "delivery",
    [12] = "support", [13] = "app", [14] = "store", [15] = "web"};

typedef struct world {
    frec **r;
    size_t n, cap;
    size_t visited; /* records the scans handed out */
} world;

static world W;
static cxm_store *store;
static fagg *agg;

static frec *rec(int64_t at, int kind, uint32_t survey, uint32_t tp, int ch, int st, int score,
                 uint64_t customer)
{
    frec *r = calloc(1, frec_size(FREC_MAX_RATINGS));
    r->at_ms = at, r->kind = (uint8_t)kind, r->survey = survey, r->touchpoint = tp;
    r->channel = (uint8_t)ch, r->stage = (uint8_t)st, r->score = (uint8_t)score;
    r->customer = customer;
    if (W.n == W.cap) {
        W.cap = W.cap ? W.cap * 2 : 64;
        W.r = realloc(W.r, W.cap * sizeof *W.r);
    }
    return W.r[W.n++] = r;
}

static void rate(frec *r, uint32_t tp, double expectation, double experience)
{
    r->ratings[r->nratings++] =
        (frec_rating){.touchpoint = tp, .expectation = expectation, .experience = experience};
}

static int rec_cmp(const void *x, const void *y)
{
    const frec *a = *(frec *const *)x, *b = *(frec *const *)y;
    return a->at_ms < b->at_ms ? -1 : a->at_ms > b->at_ms;
}

typedef struct apply_job {
    frec **r;
    size_t n;
    int sign;
} apply_job;

static int apply_fn(cxm_txn *txn, void *user)
{
    apply_job *j = user;
    for (size_t i = 0; i < j->n; i++) {
        int rc = fagg_apply(txn, agg, j->r[i], j->sign);
        if (rc)
            return rc;
    }
    return 0;
}

static void apply(frec **r, size_t n, int sign)
{
    apply_job j = {r, n, sign};
    CHECK_EQ_INT(cxm_store_write(store, apply_fn, &j), 0);
}

/* Records sorted by time into memory, and their cells into the store. */
static void load(void)
{
    qsort(W.r, W.n, sizeof *W.r, rec_cmp);
    apply(W.r, W.n, 1);
}

static int first_fn(cxm_txn *txn, void *user)
{
    return fagg_first_hour(txn, agg, user);
}

/* Erases every record: the cells must be gone too. */
static void unload(void)
{
    apply(W.r, W.n, -1);
    int64_t h;
    CHECK_EQ_INT(cxm_store_read(store, first_fn, &h), CXM_ENOTFOUND);
    for (size_t i = 0; i < W.n; i++)
        free(W.r[i]);
    W.n = 0;
}

static int mem_scan(void *src, int64_t from, int64_t to, fan_rec_fn fn, void *user)
{
    world *w = src;
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->r[mid]->at_ms < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < w->n && w->r[i]->at_ms < to; i++) {
        w->visited++;
        int rc = fn(w->r[i], user);
        if (rc)
            return rc;
    }
    return 0;
}

static const char *mem_name(void *src, uint32_t id)
{
    (void)src;
    return id < 32 ? dict[id] : NULL;
}

static uint32_t mem_id(void *src, const char *name)
{
    (void)src;
    for (uint32_t i = 1; i < 32; i++)
        if (dict[i] && strcmp(dict[i], name) == 0)
            return i;
    return 0;
}

static bool odd_customer(void *src, uint64_t customer)
{
    (void)src;
    return customer & 1;
}

static fan_src source(cxm_txn *txn)
{
    return (fan_src){.scan = mem_scan,
                     .name = mem_name,
                     .id = mem_id,
                     .in_segment = odd_customer,
                     .src = &W,
                     .agg = txn ? agg : NULL,
                     .txn = txn};
}

/* ---- both paths, compared ---------------------------------------------- */

static bool near(double a, double b)
{
    return fabs(a - b) <= 1e-9 * fmax(1, fmax(fabs(a), fabs(b)));
}

static bool same_bucket(const Cxm__V1__ScoreBucket *a, const Cxm__V1__ScoreBucket *b)
{
    return a->start_unix_ms == b->start_unix_ms && a->responses == b->responses &&
           a->promoters == b->promoters && a->passives == b->passives &&
           a->detractors == b->detractors && near(a->score, b->score) && near(a->mean, b->mean) &&
           near(a->margin_of_error, b->margin_of_error);
}

static bool same_scores(const Cxm__V1__GetScoresResponse *a, const Cxm__V1__GetScoresResponse *b)
{
    if (a->n_groups != b->n_groups)
        return false;
    for (size_t i = 0; i < a->n_groups; i++) {
        const Cxm__V1__ScoreGroup *x = a->groups[i], *y = b->groups[i];
        if (strcmp(x->key, y->key) || x->channel != y->channel || x->stage != y->stage ||
            x->n_buckets != y->n_buckets || !same_bucket(x->total, y->total))
            return false;
        for (size_t k = 0; k < x->n_buckets; k++)
            if (!same_bucket(x->buckets[k], y->buckets[k]))
                return false;
    }
    return true;
}

static bool same_gaps(const Cxm__V1__GapAnalysisResponse *a, const Cxm__V1__GapAnalysisResponse *b)
{
    if (a->n_gaps != b->n_gaps)
        return false;
    for (size_t i = 0; i < a->n_gaps; i++) {
        const Cxm__V1__TouchpointGap *x = a->gaps[i], *y = b->gaps[i];
        if (strcmp(x->touchpoint, y->touchpoint) || x->responses != y->responses ||
            !near(x->mean_expectation, y->mean_expectation) ||
            !near(x->mean_experience, y->mean_experience) || !near(x->gap, y->gap) ||
            !near(x->volume_share, y->volume_share) || !near(x->impact, y->impact) ||
            !near(x->priority, y->priority) || !near(x->disappointed_share, y->disappointed_share))
            return false;
    }
    return true;
}

static cxm_arena A;
static char err[CXM_SVC_ERR_MAX];
static size_t visited_scan, visited_cells;
static int answered, fewer; /* answers both paths gave; of them, cells read fewer records */

/* The scan path's answer, after checking the cell path gives the same (or
 * the same error); NULL on error (err holds the scan path's message). */
static Cxm__V1__GetScoresResponse *scores(const Cxm__V1__GetScoresRequest *req)
{
    Cxm__V1__GetScoresResponse *s = NULL, *c = NULL;
    fan_src plain = source(NULL);
    W.visited = 0;
    int rc = fan_scores(&plain, req, &A, &s, err);
    visited_scan = W.visited;
    char err2[CXM_SVC_ERR_MAX];
    cxm_txn *txn;
    CHECK_EQ_INT(cxm_store_read_begin(store, &txn), 0);
    fan_src cells = source(txn);
    W.visited = 0;
    int rc2 = fan_scores(&cells, req, &A, &c, err2);
    visited_cells = W.visited;
    cxm_store_read_end(txn);
    CHECK_EQ_INT(rc, rc2);
    if (rc || rc2) {
        CHECK_EQ_STR(err, err2);
        return NULL;
    }
    CHECK(same_scores(s, c));
    answered++, fewer += visited_cells < visited_scan;
    return s;
}

static Cxm__V1__GapAnalysisResponse *gaps(const Cxm__V1__GapAnalysisRequest *req)
{
    Cxm__V1__GapAnalysisResponse *s = NULL, *c = NULL;
    fan_src plain = source(NULL);
    int rc = fan_gaps(&plain, req, &A, &s, err);
    char err2[CXM_SVC_ERR_MAX];
    cxm_txn *txn;
    CHECK_EQ_INT(cxm_store_read_begin(store, &txn), 0);
    fan_src cells = source(txn);
    int rc2 = fan_gaps(&cells, req, &A, &c, err2);
    cxm_store_read_end(txn);
    CHECK_EQ_INT(rc, rc2);
    if (rc || rc2) {
        CHECK_EQ_STR(err, err2);
        return NULL;
    }
    CHECK(same_gaps(s, c));
    return s;
}

#define CHECK_NEAR(a, b)                                                                           \
    do {                                                                                           \
        double check_x_ = (a), check_y_ = (b);                                                     \
        check_count++;                                                                             \
        if (!near(check_x_, check_y_)) {                                                           \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s == %s failed: %.12g != %.12g\n", __FILE__, __LINE__, #a,    \
                    #b, check_x_, check_y_);                                                       \
        }                                                                                          \
    } while (0)

/* ---- the hand world ---------------------------------------------------- */

static void hand_world(void)
{
    frec *r;
    r = rec(T0 + 1 * H, NPS, 1, 10, WEB, PURCHASE, 10, 1);
    rate(r, 10, 6, 4), rate(r, 11, 4, 5);
    r = rec(T0 + 2 * H, NPS, 1, 10, APP, PURCHASE, 9, 2);
    rate(r, 10, 5, 5);
    rec(T0 + 14 * H + H / 2, NPS, 1, 11, WEB, USE, 8, 3); /* Seoul: 23:30 on the 10th */
    rec(T0 + 15 * H + H / 2, NPS, 1, 11, WEB, USE, 7, 4); /* Seoul: 00:30 on the 11th */
    rec(T0 + 2 * D + 5 * H, NPS, 1, 0, STORE, USE, 6, 5);
    rec(T0 + 2 * D + 6 * H, NPS, 1, 10, WEB, PURCHASE, 0, 6);
    r = rec(T0 + 1 * H, CSAT, 2, 10, WEB, USE, 5, 7);
    rate(r, 10, 7, 3), rate(r, 11, 4, 6);
    rec(T0 + 3 * H, CSAT, 2, 11, WEB, USE, 4, 8);
    rec(T0 + 4 * H, CSAT, 2, 11, WEB, USE, 3, 9);
    rec(T0 + 5 * H, CSAT, 2, 10, WEB, USE, 1, 10);
    rec(T0 + 6 * H, CES, 3, 12, APP, USE, 7, 11);
    rec(T0 + 7 * H, CES, 3, 12, APP, USE, 5, 12);
    rec(T0 + 8 * H, CES, 3, 12, APP, USE, 3, 13);
    load();
}

static Cxm__V1__TimeRange three_days = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__time_range__descriptor),
                                        T0, T0 + 3 * D};

static Cxm__V1__GetScoresRequest sreq(int kind, int by, int bucket, const char *zone)
{
    Cxm__V1__GetScoresRequest q = CXM__V1__GET_SCORES_REQUEST__INIT;
    q.kind = kind, q.group_by = by, q.bucket = bucket, q.time_zone = (char *)zone;
    q.range = &three_days;
    return q;
}

static void test_numbers(void)
{
    Cxm__V1__GetScoresRequest q = sreq(NPS, BY(NONE), 0, "");
    Cxm__V1__GetScoresResponse *o = scores(&q);
    CHECK(o && o->n_groups == 1);
    if (!o || o->n_groups != 1)
        return;
    const Cxm__V1__ScoreBucket *t = o->groups[0]->total;
    CHECK_EQ_STR(o->groups[0]->key, "all");
    CHECK_EQ_INT(o->groups[0]->n_buckets, 0);
    CHECK_EQ_INT(t->responses, 6);
    CHECK_EQ_INT(t->promoters, 2);
    CHECK_EQ_INT(t->passives, 2);
    CHECK_EQ_INT(t->detractors, 2);
    CHECK_NEAR(t->score, 0);
    CHECK_NEAR(t->mean, 40.0 / 6);
    CHECK_NEAR(t->margin_of_error, 196.0 / 3); /* 196 sqrt((1/3 + 1/3 - 0) / 6) */
    q.kind = CSAT;
    if ((o = scores(&q))) {
        t = o->groups[0]->total;
        CHECK_EQ_INT(t->responses, 4);
        CHECK_EQ_INT(t->promoters, 2);
        CHECK_EQ_INT(t->passives, 1);
        CHECK_EQ_INT(t->detractors, 1);
        CHECK_NEAR(t->score, 50);
        CHECK_NEAR(t->mean, 3.25);
        CHECK_NEAR(t->margin_of_error, 49); /* 196 sqrt(0.25 / 4) */
    }
    q.kind = CES;
    if ((o = scores(&q))) {
        t = o->groups[0]->total;
        CHECK_EQ_INT(t->responses, 3);
        CHECK_EQ_INT(t->promoters, 2);
        CHECK_EQ_INT(t->passives, 0);
        CHECK_EQ_INT(t->detractors, 1);
        CHECK_NEAR(t->score, 5);
        CHECK_NEAR(t->margin_of_error, 1.96 * 2 / sqrt(3)); /* sd of 7, 5, 3 is 2 */
    }
    /* Off the hours: [01:30, 14:45) holds r2 and the 14:30 one. */
    Cxm__V1__TimeRange odd = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__time_range__descriptor),
                              T0 + H + H / 2, T0 + 14 * H + 3 * H / 4};
    q = sreq(NPS, BY(NONE), 0, "");
    q.range = &odd;
    if ((o = scores(&q)))
        CHECK_EQ_INT(o->groups[0]->total->responses, 2);
}

static void test_groups(void)
{
    Cxm__V1__GetScoresRequest q = sreq(NPS, BY(TOUCHPOINT), 0, "");
    Cxm__V1__GetScoresResponse *o = scores(&q);
    CHECK(o && o->n_groups == 3);
    if (o && o->n_groups == 3) {
        CHECK_EQ_STR(o->groups[0]->key, "checkout");
        CHECK_EQ_STR(o->groups[1]->key, "delivery");
        CHECK_EQ_STR(o->groups[2]->key, ""); /* no touchpoint */
        CHECK_NEAR(o->groups[0]->total->score, 100.0 / 3);
        CHECK_NEAR(o->groups[1]->total->score, 0);
        CHECK_NEAR(o->groups[2]->total->score, -100);
    }
    q.group_by = BY(CHANNEL);
    o = scores(&q);
    CHECK(o && o->n_groups == 3);
    if (o && o->n_groups == 3) {
        CHECK_EQ_STR(o->groups[0]->key, "CHANNEL_WEB");
        CHECK_EQ_INT(o->groups[0]->channel, WEB);
        CHECK_EQ_INT(o->groups[0]->total->responses, 4);
        CHECK_EQ_STR(o->groups[1]->key, "CHANNEL_APP"); /* ties: key ascending */
        CHECK_EQ_STR(o->groups[2]->key, "CHANNEL_STORE");
    }
    q.group_by = BY(STAGE);
    o = scores(&q);
    CHECK(o && o->n_groups == 2);
    if (o && o->n_groups == 2) {
        CHECK_EQ_STR(o->groups[0]->key, "JOURNEY_STAGE_PURCHASE");
        CHECK_EQ_INT(o->groups[0]->stage, PURCHASE);
        CHECK_EQ_INT(o->groups[1]->total->responses, 3);
    }
    q.group_by = BY(SURVEY), q.kind = CSAT;
    o = scores(&q);
    CHECK(o && o->n_groups == 1 && strcmp(o->groups[0]->key, "csat") == 0);
}

static void check_series(const Cxm__V1__GetScoresResponse *o, const int64_t *starts,
                         const int *counts, size_t n)
{
    CHECK(o && o->n_groups == 1 && o->groups[0]->n_buckets == n);
    if (!o || o->n_groups != 1 || o->groups[0]->n_buckets != n)
        return;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(o->groups[0]->buckets[i]->start_unix_ms, starts[i]);
        CHECK_EQ_INT(o->groups[0]->buckets[i]->responses, counts[i]);
    }
}

static void test_buckets(void)
{
    Cxm__V1__GetScoresRequest q = sreq(NPS, BY(NONE), BUCKET(DAY), "");
    check_series(scores(&q), (int64_t[]){T0, T0 + D, T0 + 2 * D}, (int[]){4, 0, 2}, 3);
    CHECK(visited_cells < visited_scan); /* the whole hours came from cells */
    q.time_zone = "Asia/Seoul";          /* 14:30Z is the 10th, 15:30Z the 11th */
    int64_t s0 = T0 - 9 * H;
    check_series(scores(&q), (int64_t[]){s0, s0 + D, s0 + 2 * D, s0 + 3 * D}, (int[]){3, 1, 2, 0},
                 4);
    q.time_zone = "Asia/Kolkata"; /* half-hour offset: from the records */
    int64_t k0 = T0 - 5 * H - H / 2;
    check_series(scores(&q), (int64_t[]){k0, k0 + D, k0 + 2 * D, k0 + 3 * D}, (int[]){4, 0, 2, 0},
                 4);
    q.time_zone = "", q.bucket = BUCKET(WEEK);
    check_series(scores(&q), (int64_t[]){T0}, (int[]){6}, 1);
    q.bucket = BUCKET(MONTH);
    check_series(scores(&q), (int64_t[]){1740787200000}, (int[]){6}, 1); /* 2025-03-01 */
    Cxm__V1__TimeRange hours = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__time_range__descriptor), T0,
                                T0 + 3 * H};
    q.range = &hours, q.bucket = BUCKET(HOUR), q.time_zone = "Asia/Kolkata";
    check_series(scores(&q), (int64_t[]){T0, T0 + H, T0 + 2 * H}, (int[]){0, 1, 1}, 3);
    /* Open ends: bounded by the first and last response (any kind). */
    q.range = NULL, q.bucket = BUCKET(DAY), q.time_zone = "";
    check_series(scores(&q), (int64_t[]){T0, T0 + D, T0 + 2 * D}, (int[]){4, 0, 2}, 3);
    Cxm__V1__TimeRange from = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__time_range__descriptor),
                               T0 + D + 1, 0};
    q.range = &from;
    check_series(scores(&q), (int64_t[]){T0 + D, T0 + 2 * D}, (int[]){0, 2}, 2);
}

static void test_filters(void)
{
    Cxm__V1__GetScoresRequest q = sreq(NPS, BY(NONE), 0, "");
    char *csat[] = {"csat"}, *nope[] = {"nope"}, *tps[] = {"delivery", ""};
    Cxm__V1__Channel app[] = {APP};
    Cxm__V1__GetScoresResponse *o;
    q.survey_ids = csat, q.n_survey_ids = 1; /* a CSAT survey holds no NPS responses */
    o = scores(&q);
    CHECK(o && o->n_groups == 1 && o->groups[0]->total->responses == 0);
    q.survey_ids = nope;
    o = scores(&q);
    CHECK(o && o->n_groups == 1 && o->groups[0]->total->responses == 0);
    q.n_survey_ids = 0, q.touchpoints = tps, q.n_touchpoints = 2;
    o = scores(&q);
    CHECK(o && o->groups[0]->total->responses == 3);
    q.n_touchpoints = 0, q.channels = app, q.n_channels = 1;
    o = scores(&q);
    CHECK(o && o->groups[0]->total->responses == 1);
    q.n_channels = 0, q.segment_id = "odd"; /* customers 1, 3, 5: scores 10, 8, 6 */
    o = scores(&q);
    CHECK(o && o->groups[0]->total->responses == 3 && o->groups[0]->total->promoters == 1 &&
          o->groups[0]->total->detractors == 1);
}

static void expect_err(int rc, const char *msg)
{
    CHECK_EQ_INT(rc, CXM_EINVAL);
    CHECK(strstr(err, msg) != NULL);
    if (!strstr(err, msg))
        fprintf(stderr, "  got \"%s\", want \"%s\"\n", err, msg);
}

static void test_validation(void)
{
    fan_src s = source(NULL);
    Cxm__V1__GetScoresResponse *o;
    Cxm__V1__GetScoresRequest q = sreq(0, BY(NONE), 0, "");
    expect_err(fan_scores(&s, &q, &A, &o, err), "kind: required");
    q.kind = 9;
    expect_err(fan_scores(&s, &q, &A, &o, err), "kind: unknown value 9");
    q.kind = NPS, q.bucket = 9;
    expect_err(fan_scores(&s, &q, &A, &o, err), "bucket: unknown value 9");
    q.bucket = 0, q.group_by = 7;
    expect_err(fan_scores(&s, &q, &A, &o, err), "group_by: unknown value 7");
    Cxm__V1__Channel ch[] = {WEB, 99};
    q.group_by = 0, q.channels = ch, q.n_channels = 2;
    expect_err(fan_scores(&s, &q, &A, &o, err), "channels[1]: unknown value 99");
    char *ids[] = {"csat", ""};
    q.n_channels = 0, q.survey_ids = ids, q.n_survey_ids = 2;
    expect_err(fan_scores(&s, &q, &A, &o, err), "survey_ids[1]: ");
    q.n_survey_ids = 0, q.time_zone = "Mars/Olympus_Mons";
    expect_err(fan_scores(&s, &q, &A, &o, err),
               "time_zone: unknown time zone \"Mars/Olympus_Mons\"");
    q.time_zone = "../../etc/passwd";
    expect_err(fan_scores(&s, &q, &A, &o, err), "time_zone: ");
    q.time_zone = "";
    Cxm__V1__TimeRange back = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__time_range__descriptor), T0, T0};
    q.range = &back;
    expect_err(fan_scores(&s, &q, &A, &o, err), "range: from_unix_ms");
    back.from_unix_ms = -5;
    expect_err(fan_scores(&s, &q, &A, &o, err), "range.from_unix_ms: must not be negative");
    Cxm__V1__TimeRange long_range = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__time_range__descriptor), T0,
                                     T0 + 1000 * H};
    q.range = &long_range, q.bucket = BUCKET(HOUR);
    CHECK_EQ_INT(fan_scores(&s, &q, &A, &o, err), 0); /* exactly 1000 */
    long_range.to_unix_ms++;
    expect_err(fan_scores(&s, &q, &A, &o, err), "range: holds more than 1000 TIME_BUCKET_HOUR");

    Cxm__V1__GapAnalysisResponse *g;
    Cxm__V1__GapAnalysisRequest r = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
    r.limit = 1001;
    expect_err(fan_gaps(&s, &r, &A, &g, err), "limit: must be 1 to 1000");
    Cxm__V1__JourneyStage st[] = {42};
    r.limit = 0, r.stages = st, r.n_stages = 1;
    expect_err(fan_gaps(&s, &r, &A, &g, err), "stages[0]: unknown value 42");
}

/* Ranges at the far end of int64: both paths (cells and records) answer
 * the same, and bucket edges never overflow; sides past year 9999 are
 * refused by name. */
static void test_huge_range(void)
{
    Cxm__V1__TimeRange far = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__time_range__descriptor),
                              INT64_MAX - 10, 0};
    Cxm__V1__GetScoresRequest q = sreq(NPS, BY(NONE), 0, "");
    q.range = &far;
    Cxm__V1__GetScoresResponse *o = scores(&q);
    CHECK(o == NULL || (o->n_groups == 1 && o->groups[0]->total->responses == 0));
    CHECK(o == NULL && strstr(err, "range.from_unix_ms: ") != NULL);
    Cxm__V1__GapAnalysisRequest g = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
    g.range = &far, g.min_responses = 1;
    Cxm__V1__GapAnalysisResponse *p = gaps(&g);
    CHECK(p == NULL || p->n_gaps == 0);
    CHECK(p == NULL && strstr(err, "range.from_unix_ms: ") != NULL);
    far.from_unix_ms = INT64_MAX - 3 * D, far.to_unix_ms = INT64_MAX - 1;
    q.bucket = BUCKET(DAY), q.time_zone = "Europe/Berlin";
    fan_src s = source(NULL);
    expect_err(fan_scores(&s, &q, &A, &o, err), "range.from_unix_ms: ");
    far.from_unix_ms = T0;
    expect_err(fan_scores(&s, &q, &A, &o, err), "range.to_unix_ms: ");
    far.to_unix_ms = 253402300800000LL; /* 10000-01-01: the first instant refused */
    expect_err(fan_scores(&s, &q, &A, &o, err), "range.to_unix_ms: ");
    far.to_unix_ms--, q.bucket = 0;
    CHECK(scores(&q) != NULL);
}

/* An arena too small for the answer: CXM_ENOMEM, nothing leaked (the
 * sanitizer build checks), until the limit is enough. */
static void test_arena_limit(void)
{
    Cxm__V1__GetScoresRequest q = sreq(NPS, BY(TOUCHPOINT), BUCKET(DAY), "Asia/Seoul");
    Cxm__V1__GapAnalysisRequest g = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
    g.min_responses = 1;
    int rs = CXM_ENOMEM, rg = CXM_ENOMEM, tries = 0;
    for (size_t limit = 16; (rs || rg) && limit < ((size_t)1 << 24); limit *= 2, tries++) {
        cxm_arena small;
        cxm_arena_init(&small, NULL, 0, limit);
        fan_src s = source(NULL);
        Cxm__V1__GetScoresResponse *o;
        Cxm__V1__GapAnalysisResponse *p;
        rs = fan_scores(&s, &q, &small, &o, err);
        CHECK(rs == 0 || rs == CXM_ENOMEM);
        rg = fan_gaps(&s, &g, &small, &p, err);
        CHECK(rg == 0 || rg == CXM_ENOMEM);
        cxm_arena_dispose(&small);
    }
    CHECK(rs == 0 && rg == 0 && tries > 1);
}

static void test_gaps_hand(void)
{
    Cxm__V1__GapAnalysisRequest r = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
    r.range = &three_days, r.min_responses = 1;
    Cxm__V1__GapAnalysisResponse *o = gaps(&r);
    CHECK(o && o->n_gaps == 2);
    if (o && o->n_gaps == 2) {
        const Cxm__V1__TouchpointGap *a = o->gaps[0], *b = o->gaps[1];
        CHECK_EQ_STR(a->touchpoint, "checkout"); /* (6,4) (5,5) (7,3) */
        CHECK_EQ_INT(a->responses, 3);
        CHECK_NEAR(a->mean_expectation, 6);
        CHECK_NEAR(a->mean_experience, 4);
        CHECK_NEAR(a->gap, 2);
        CHECK_NEAR(a->volume_share, 0.6);
        CHECK_NEAR(a->impact, 1); /* fewer than 30 NPS ratings */
        CHECK_NEAR(a->priority, 1.2);
        CHECK_NEAR(a->disappointed_share, 2.0 / 3);
        CHECK_EQ_STR(b->touchpoint, "delivery"); /* (4,5) (4,6) */
        CHECK_NEAR(b->gap, -1.5);
        CHECK_NEAR(b->priority, 0);
        CHECK_NEAR(b->disappointed_share, 0);
    }
    r.min_responses = 0; /* = 30: nobody */
    o = gaps(&r);
    CHECK(o && o->n_gaps == 0);
    r.min_responses = 3;
    o = gaps(&r);
    CHECK(o && o->n_gaps == 1 && near(o->gaps[0]->volume_share, 1) &&
          near(o->gaps[0]->priority, 2));
    r.min_responses = 1, r.limit = 1;
    o = gaps(&r);
    CHECK(o && o->n_gaps == 1 && strcmp(o->gaps[0]->touchpoint, "checkout") == 0);
    Cxm__V1__JourneyStage use[] = {USE};
    r.limit = 0, r.stages = use, r.n_stages = 1; /* only the CSAT response's ratings */
    o = gaps(&r);
    CHECK(o && o->n_gaps == 2 && near(o->gaps[0]->gap, 4) && near(o->gaps[1]->gap, -2));
    Cxm__V1__Channel app[] = {APP};
    r.n_stages = 0, r.channels = app, r.n_channels = 1;
    o = gaps(&r);
    CHECK(o && o->n_gaps == 1 && near(o->gaps[0]->gap, 0));
}

/* Pearson's r, two-pass, as a check independent of fan.c's sums. */
static double pearson(const double *x, const double *y, int n)
{
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++)
        mx += x[i] / n, my += y[i] / n;
    for (int i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx), syy += (y[i] - my) * (y[i] - my);
    }
    return sxy / sqrt(sxx * syy);
}

/* 40 NPS responses: "app" tracks the score (r = 1), "store" runs against
 * it (clamped to 0), "web" never varies (0), "support" a partial r, and
 * "delivery" has 29 NPS ratings (1) plus CSAT ones that do not count. */
static void test_impact(void)
{
    double xs[40], ys[40];
    for (int i = 0; i < 40; i++) {
        int y = i % 7 + 3;
        frec *r = rec(T0 + i * H, NPS, 1, 10, WEB, USE, y, (uint64_t)i);
        rate(r, 13, 7, y - 2), rate(r, 14, 7, 10 - y), rate(r, 15, 7, 4);
        xs[i] = (i * 5) % 7 + 1 + 0.25 * (i % 3), ys[i] = y;
        rate(r, 12, 7, xs[i]);
        if (i < 29)
            rate(r, 11, 5, (i * 3) % 7 + 1);
        r = rec(T0 + i * H + 1, CSAT, 2, 10, WEB, USE, 1, (uint64_t)i);
        rate(r, 11, 5, i % 2 ? 7 : 1);
    }
    load();
    Cxm__V1__GapAnalysisRequest r = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
    Cxm__V1__GapAnalysisResponse *o = gaps(&r);
    CHECK(o && o->n_gaps == 5);
    for (size_t i = 0; o && i < o->n_gaps; i++) {
        const Cxm__V1__TouchpointGap *g = o->gaps[i];
        if (!strcmp(g->touchpoint, "app"))
            CHECK_NEAR(g->impact, 1);
        else if (!strcmp(g->touchpoint, "store") || !strcmp(g->touchpoint, "web"))
            CHECK_NEAR(g->impact, 0);
        else if (!strcmp(g->touchpoint, "support"))
            CHECK_NEAR(g->impact, fmax(0, pearson(xs, ys, 40)));
        else
            CHECK_NEAR(g->impact, 1);
        if (!strcmp(g->touchpoint, "delivery"))
            CHECK_EQ_INT(g->responses, 69);
    }
    unload();
}

/* No responses: an open bucketed series has no buckets; grouped by
 * nothing, the one group is still there. */
static void test_empty(void)
{
    Cxm__V1__GetScoresRequest q = sreq(NPS, BY(NONE), BUCKET(DAY), "Europe/Berlin");
    q.range = NULL;
    Cxm__V1__GetScoresResponse *o = scores(&q);
    CHECK(o && o->n_groups == 1 && o->groups[0]->n_buckets == 0 &&
          o->groups[0]->total->responses == 0 && strcmp(o->groups[0]->key, "all") == 0);
    q.group_by = BY(TOUCHPOINT);
    o = scores(&q);
    CHECK(o && o->n_groups == 0);
}

/* ---- random worlds: cells == records ----------------------------------- */

static uint64_t rng = 88172645463325252ull;

static uint64_t next_u(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static int pick(int n)
{
    return (int)(next_u() % (uint64_t)n);
}

static double rating(void)
{
    return pick(3) ? 1 + pick(7) : 1 + 6 * (double)(next_u() >> 11) / 9007199254740992.0;
}

static void random_world(int n)
{
    static const int top[4] = {0, 10, 5, 7};
    for (int i = 0; i < n; i++) {
        int kind = 1 + pick(3);
        int64_t at = T0 - 3 * D + (int64_t)(next_u() % (uint64_t)(20 * D));
        int tp = pick(4) ? 10 + pick(6) : 0;
        int lo = kind == NPS ? 0 : 1;
        frec *r = rec(at, kind, (uint32_t)kind, (uint32_t)tp, 1 + pick(6), 1 + pick(6),
                      lo + pick(top[kind] - lo + 1), (uint64_t)pick(100));
        for (int k = pick(5); k > 0; k--)
            rate(r, (uint32_t)(10 + pick(6)), rating(), rating());
    }
    load();
}

static int64_t random_edge(void)
{
    int64_t t = T0 - 4 * D + (int64_t)(next_u() % (uint64_t)(22 * D));
    return pick(3) ? t - t % H : t;
}

static void random_range(Cxm__V1__TimeRange *r)
{
    cxm__v1__time_range__init(r);
    int64_t a = random_edge(), b = random_edge();
    if (a > b) {
        int64_t t = a;
        a = b, b = t;
    }
    r->from_unix_ms = pick(5) ? a : 0;
    r->to_unix_ms = pick(5) ? b + 1 : 0;
}

static void random_queries(int n)
{
    static const char *zones[] = {
        "", "UTC", "Asia/Seoul", "Europe/Berlin", "America/New_York", "Asia/Kolkata"};
    static char *surveys[] = {"nps-main", "csat", "ces"}, *tps[] = {"checkout", "", "web"};
    static Cxm__V1__Channel chans[] = {WEB, STORE};
    static Cxm__V1__JourneyStage stages[] = {USE, PURCHASE};
    for (int i = 0; i < n; i++) {
        cxm_arena_reset(&A);
        Cxm__V1__TimeRange range;
        random_range(&range);
        Cxm__V1__GetScoresRequest q = CXM__V1__GET_SCORES_REQUEST__INIT;
        q.kind = 1 + pick(3), q.group_by = pick(6), q.bucket = pick(5);
        q.time_zone = (char *)zones[pick(6)], q.range = pick(8) ? &range : NULL;
        if (q.bucket == BUCKET(HOUR) && (!q.range || !range.from_unix_ms || !range.to_unix_ms))
            q.bucket = BUCKET(DAY);
        if (!pick(4))
            q.survey_ids = surveys, q.n_survey_ids = 1 + (size_t)pick(3);
        if (!pick(4))
            q.touchpoints = tps, q.n_touchpoints = 1 + (size_t)pick(3);
        if (!pick(4))
            q.channels = chans, q.n_channels = 1 + (size_t)pick(2);
        if (!pick(8))
            q.segment_id = "odd";
        scores(&q);
        Cxm__V1__GapAnalysisRequest g = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
        g.range = pick(8) ? &range : NULL, g.min_responses = (uint32_t)pick(40);
        g.limit = (uint32_t)pick(8);
        if (!pick(4))
            g.survey_ids = surveys, g.n_survey_ids = 1 + (size_t)pick(3);
        if (!pick(4))
            g.channels = chans, g.n_channels = 1 + (size_t)pick(2);
        if (!pick(4))
            g.stages = stages, g.n_stages = 1 + (size_t)pick(2);
        gaps(&g);
    }
}

static void test_random(void)
{
    random_world(3000);
    answered = fewer = 0;
    random_queries(300);
    /* Most random requests are valid, and most of those read cells. */
    CHECK(answered > 250);
    CHECK(fewer > answered / 2);
    fprintf(stderr, "random: %d of 300 answered, %d read fewer records with cells\n", answered,
            fewer);
    /* Erase every third response (as CustomerDeleted would) and compare again. */
    size_t kept = 0;
    for (size_t i = 0; i < W.n; i++) {
        if (i % 3 == 0) {
            apply(&W.r[i], 1, -1);
            free(W.r[i]);
        } else {
            W.r[kept++] = W.r[i];
        }
    }
    W.n = kept;
    random_queries(300);
    unload();
}

int main(void)
{
    char dir[] = "/tmp/test_fan.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cxm_store_opts opts = {.nosync = true};
    CHECK_EQ_INT(cxm_store_open(dir, &opts, &store), 0);
    CHECK_EQ_INT(fagg_open(store, &agg), 0);
    cxm_arena_init(&A, NULL, 0, 0);
    hand_world();
    test_numbers();
    test_groups();
    test_buckets();
    test_filters();
    test_validation();
    test_huge_range();
    test_gaps_hand();
    test_arena_limit();
    unload();
    test_empty();
    test_impact();
    test_random();
    cxm_arena_dispose(&A);
    fagg_close(agg);
    cxm_store_close(store);
    free(W.r);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    return check_report();
}
