/*
 * test_fdb.c - the feedback store on its own, on real LMDB files (and the
 * real aggregates): survey versions, responses with their idempotency
 * record, records in answer-time order whatever the order of writes, the
 * dictionary, the recontact history over a merge group, replicas, and an
 * erasure removing everything of a customer and of the ids merged into it
 * while another customer's rows stay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/hash.h"
#include "feedback/fagg.h"
#include "feedback/fdb.h"

static cxm_store *store;
static fagg *agg;
static fdb *db;

typedef int (*step_fn)(cxm_txn *t, void *user);

static int write(step_fn fn, void *user)
{
    return cxm_store_write(store, fn, user);
}

static int read(step_fn fn, void *user)
{
    return cxm_store_read(store, fn, user);
}

/* ---- surveys ---- */

static Cxm__V1__Survey *survey(cxm_arena *a, const char *id, uint32_t version, const char *title)
{
    Cxm__V1__Survey *s = cxm_arena_calloc(a, 1, sizeof *s);
    cxm__v1__survey__init(s);
    s->survey_id = (char *)id;
    s->kind = CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS;
    s->title = (char *)title;
    s->version = version;
    s->active = true;
    return s;
}

static int put_surveys(cxm_txn *t, void *user)
{
    cxm_arena *a = user;
    int rc = fdb_survey_put(t, db, a, survey(a, "b", 1, "b one"));
    if (rc == 0)
        rc = fdb_survey_put(t, db, a, survey(a, "a", 1, "a one"));
    if (rc == 0)
        rc = fdb_survey_put(t, db, a, survey(a, "a", 2, "a two"));
    return rc;
}

typedef struct list_out {
    const char *ids[8];
    size_t n;
} list_out;

static int list_one(const Cxm__V1__Survey *s, void *user)
{
    list_out *l = user;
    l->ids[l->n++] = s->survey_id;
    return 0;
}

static int read_surveys(cxm_txn *t, void *user)
{
    cxm_arena *a = user;
    Cxm__V1__Survey *s;
    CHECK_EQ_INT(fdb_survey_get(t, db, a, "a", 0, &s), 0);
    CHECK(s->version == 2 && strcmp(s->title, "a two") == 0);
    CHECK_EQ_INT(fdb_survey_get(t, db, a, "a", 1, &s), 0);
    CHECK(s->version == 1 && strcmp(s->title, "a one") == 0);
    CHECK_EQ_INT(fdb_survey_get(t, db, a, "a", 3, &s), CXM_ENOTFOUND);
    CHECK_EQ_INT(fdb_survey_get(t, db, a, "c", 0, &s), CXM_ENOTFOUND);
    uint32_t v;
    uint64_t n;
    CHECK_EQ_INT(fdb_survey_head(t, db, "a", &v, &n), 0);
    CHECK(v == 2 && n == 0);
    list_out l = {0};
    CHECK_EQ_INT(fdb_survey_list(t, db, a, "", list_one, &l), 0);
    CHECK(l.n == 2 && strcmp(l.ids[0], "a") == 0 && strcmp(l.ids[1], "b") == 0);
    l.n = 0;
    CHECK_EQ_INT(fdb_survey_list(t, db, a, "a", list_one, &l), 0);
    CHECK(l.n == 1 && strcmp(l.ids[0], "b") == 0);
    return 0;
}

static void test_surveys(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    CHECK_EQ_INT(write(put_surveys, &a), 0);
    CHECK_EQ_INT(read(read_surveys, &a), 0);
    cxm_arena_dispose(&a);
}

/* ---- responses ---- */

typedef struct resp_in {
    const char *rid, *customer, *touchpoint;
    int64_t at;
    int score;
    cxm_arena *a;
} resp_in;

static int put_response(cxm_txn *t, void *user)
{
    resp_in *in = user;
    cxm_arena *a = in->a;
    Cxm__V1__CustomerRef *c = cxm_arena_calloc(a, 1, sizeof *c);
    Cxm__V1__SubmitResponseRequest *q = cxm_arena_calloc(a, 1, sizeof *q);
    Cxm__V1__SubmitResponseResponse *o = cxm_arena_calloc(a, 1, sizeof *o);
    cxm__v1__customer_ref__init(c);
    cxm__v1__submit_response_request__init(q);
    cxm__v1__submit_response_response__init(o);
    c->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    c->customer_id = (char *)in->customer;
    q->response_id = (char *)in->rid;
    q->survey_id = "a";
    q->customer = c;
    q->score = in->score;
    q->submitted_at_unix_ms = in->at;
    q->touchpoint = (char *)in->touchpoint;
    o->response_id = (char *)in->rid;
    o->customer_id = (char *)in->customer;
    o->follow_up_id = "fu-1";
    o->survey_version = 2;
    frec *r = cxm_arena_calloc(a, 1, frec_size(1));
    r->at_ms = in->at;
    r->customer = cxm_hash(0, in->customer, strlen(in->customer));
    r->kind = CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS;
    r->score = (uint8_t)in->score;
    r->nratings = 1;
    r->ratings[0].expectation = 5;
    r->ratings[0].experience = 3;
    int rc = fdb_intern(t, db, "a", &r->survey);
    if (rc == 0)
        rc = fdb_intern(t, db, in->touchpoint, &r->touchpoint);
    if (rc == 0)
        rc = fdb_intern(t, db, "delivery", &r->ratings[0].touchpoint);
    return rc ? rc : fdb_response_put(t, db, a, q, o, r);
}

static void respond(const char *rid, const char *customer, int64_t at, int score)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    resp_in in = {rid, customer, "checkout", at, score, &a};
    CHECK_EQ_INT(write(put_response, &in), 0);
    cxm_arena_dispose(&a);
}

typedef struct scan_out {
    int64_t at[64];
    int score[64];
    size_t n;
} scan_out;

static int scan_one(const frec *r, void *user)
{
    scan_out *o = user;
    o->at[o->n] = r->at_ms;
    o->score[o->n++] = r->score;
    return 0;
}

typedef struct scan_in {
    int64_t from, to;
    scan_out out;
} scan_in;

static int scan_fn(cxm_txn *t, void *user)
{
    scan_in *s = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    fan_src src;
    int rc = fdb_src(t, db, &a, NULL, &src);
    s->out.n = 0;
    if (rc == 0)
        rc = src.scan(src.src, s->from, s->to, scan_one, &s->out);
    cxm_arena_dispose(&a);
    return rc;
}

static size_t records(int64_t from, int64_t to, scan_out *out)
{
    scan_in s = {.from = from, .to = to};
    CHECK_EQ_INT(read(scan_fn, &s), 0);
    if (out)
        *out = s.out;
    return s.out.n;
}

static int read_response(cxm_txn *t, void *user)
{
    cxm_arena *a = user;
    Cxm__V1__SubmitResponseRequest *q;
    Cxm__V1__SubmitResponseResponse *o;
    CHECK_EQ_INT(fdb_response_get(t, db, a, "r2", &q, &o), 0);
    CHECK(strcmp(q->customer->customer_id, "ann") == 0 && q->submitted_at_unix_ms == 1000);
    CHECK(strcmp(o->follow_up_id, "fu-1") == 0 && o->survey_version == 2);
    CHECK_EQ_INT(fdb_response_get(t, db, a, "nope", &q, &o), CXM_ENOTFOUND);
    uint32_t v;
    uint64_t n;
    CHECK_EQ_INT(fdb_survey_head(t, db, "a", &v, &n), 0);
    CHECK_EQ_INT(n, 4);
    uint32_t id;
    const char *name;
    CHECK_EQ_INT(fdb_dict_id(t, db, "a", &id), 0);
    CHECK_EQ_INT(id, 1);
    CHECK_EQ_INT(fdb_dict_id(t, db, "checkout", &id), 0);
    CHECK_EQ_INT(id, 2);
    CHECK_EQ_INT(fdb_dict_name(t, db, a, 3, &name), 0);
    CHECK_EQ_STR(name, "delivery");
    CHECK_EQ_INT(fdb_dict_id(t, db, "never", &id), CXM_ENOTFOUND);
    CHECK_EQ_INT(fdb_dict_name(t, db, a, 99, &name), CXM_ENOTFOUND);
    return 0;
}

static void test_responses(void)
{
    /* Written out of time order: the records come back in time order. */
    respond("r3", "bob", 3000, 9);
    respond("r1", "ann", 500, 1);
    respond("r2", "ann", 1000, 7);
    respond("r0", "bob", 200, 10);
    scan_out o;
    CHECK_EQ_INT(records(INT64_MIN, INT64_MAX, &o), 4);
    CHECK(o.at[0] == 200 && o.at[1] == 500 && o.at[2] == 1000 && o.at[3] == 3000);
    CHECK(o.score[0] == 10 && o.score[3] == 9);
    CHECK_EQ_INT(records(500, 3000, &o), 2); /* [from, to) */
    CHECK(o.at[0] == 500 && o.at[1] == 1000);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    CHECK_EQ_INT(read(read_response, &a), 0);
    cxm_arena_dispose(&a);
}

/* ---- merges, history, replicas ---- */

typedef struct merge_in {
    const char *source, *target;
    bool undo;
} merge_in;

static int merge_fn(cxm_txn *t, void *user)
{
    merge_in *m = user;
    return m->undo ? fdb_merge_clear(t, db, m->source, m->target)
                   : fdb_merge_set(t, db, m->source, m->target);
}

typedef struct hist_in {
    const char *customer;
    int64_t at, window;
    fdb_history h;
    size_t group;
    int64_t times[8]; /* h.window_ms, copied out of the arena */
} hist_in;

static int hist_fn(cxm_txn *t, void *user)
{
    hist_in *h = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    const char *root, **ids;
    int rc = fdb_history_get(t, db, &a, h->customer, h->at, h->window, &h->h);
    for (size_t i = 0; rc == 0 && i < h->h.in_window && i < 8; i++)
        h->times[i] = h->h.window_ms[i];
    if (rc == 0)
        rc = fdb_root(t, db, &a, h->customer, &root);
    if (rc == 0)
        rc = fdb_group(t, db, &a, root, &ids, &h->group);
    cxm_arena_dispose(&a);
    return rc;
}

static hist_in history(const char *customer, int64_t at, int64_t window)
{
    hist_in h = {customer, at, window, {0}, 0, {0}};
    CHECK_EQ_INT(read(hist_fn, &h), 0);
    return h;
}

static void test_history(void)
{
    hist_in h = history("ann", 2000, 1500); /* (500, 2000]: 500 is out */
    CHECK(h.h.last_ms == 1000 && h.h.in_window == 1 && h.times[0] == 1000);
    h = history("ann", 700, 0); /* answers after `at` do not count */
    CHECK(h.h.last_ms == 500 && h.h.in_window == 0);
    h = history("carl", 2000, 1000);
    CHECK(h.h.last_ms == INT64_MIN && h.group == 1);

    merge_in m = {"bob", "ann", false};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    h = history("ann", 5000, 4900); /* bob's answers are ann's now */
    CHECK(h.h.last_ms == 3000 && h.h.in_window == 4);
    CHECK(h.times[0] == 200 && h.times[1] == 500 && h.times[2] == 1000 && h.times[3] == 3000);
    CHECK_EQ_INT(h.group, 2);
    h = history("bob", 5000, 4900); /* bob leads to ann */
    CHECK_EQ_INT(h.h.in_window, 4);
    m.undo = true;
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    h = history("ann", 5000, 4900);
    CHECK(h.h.in_window == 2 && h.group == 1);
}

typedef struct rep_in {
    int stage;
    bool in_seg, in_other;
} rep_in;

static int replicas_put(cxm_txn *t, void *user)
{
    (void)user;
    int rc = fdb_stage_set(t, db, "ann", CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE);
    if (rc == 0)
        rc = fdb_segment_set(t, db, "vip", "ann", true);
    if (rc == 0)
        rc = fdb_segment_set(t, db, "vip", "bob", true);
    if (rc == 0)
        rc = fdb_segment_set(t, db, "old", "ann", true);
    if (rc == 0)
        rc = fdb_segment_set(t, db, "old", "ann", false);
    return rc;
}

static int replicas_get(cxm_txn *t, void *user)
{
    rep_in *r = user;
    int rc = fdb_stage_get(t, db, "ann", &r->stage);
    if (rc == 0)
        rc = fdb_in_segment(t, db, "vip", cxm_hash(0, "ann", 3), &r->in_seg);
    if (rc == 0)
        rc = fdb_in_segment(t, db, "old", cxm_hash(0, "ann", 3), &r->in_other);
    return rc;
}

static void test_replicas(void)
{
    CHECK_EQ_INT(write(replicas_put, NULL), 0);
    rep_in r;
    CHECK_EQ_INT(read(replicas_get, &r), 0);
    CHECK(r.stage == CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE && r.in_seg && !r.in_other);
}

/* The segment filter follows a record's customer to its merge target. */
typedef struct seg_in {
    const char *customer;
    bool in;
} seg_in;

static int gold_put(cxm_txn *t, void *user)
{
    (void)user;
    return fdb_segment_set(t, db, "gold", "ann", true);
}

static int seg_fn(cxm_txn *t, void *user)
{
    seg_in *q = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    fan_src src;
    int rc = fdb_src(t, db, &a, "gold", &src);
    if (rc == 0)
        q->in = src.in_segment(src.src, cxm_hash(0, q->customer, strlen(q->customer)));
    cxm_arena_dispose(&a);
    return rc;
}

static bool in_gold(const char *customer)
{
    seg_in q = {customer, false};
    CHECK_EQ_INT(read(seg_fn, &q), 0);
    return q.in;
}

static void test_segment_merge(void)
{
    CHECK_EQ_INT(write(gold_put, NULL), 0);
    CHECK(in_gold("ann") && !in_gold("bob"));
    merge_in m = {"bob", "ann", false};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    CHECK(in_gold("bob")); /* bob's records are ann's now */
    m.undo = true;
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    CHECK(!in_gold("bob"));
}

/* ---- erasure ---- */

typedef struct erase_in {
    const char *id;
    char *merged[2];
    size_t n;
    uint64_t count;
} erase_in;

static int erase_fn(cxm_txn *t, void *user)
{
    erase_in *e = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    e->count = 0;
    int rc = fdb_erase(t, db, &a, e->id, e->merged, e->n, &e->count);
    cxm_arena_dispose(&a);
    return rc;
}

static int erased_fn(cxm_txn *t, void *user)
{
    cxm_arena *a = user;
    Cxm__V1__SubmitResponseRequest *q;
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(
            fdb_response_get(t, db, a, (const char *[]){"r0", "r1", "r2", "r3"}[i], &q, NULL),
            CXM_ENOTFOUND);
    CHECK_EQ_INT(fdb_response_get(t, db, a, "r9", &q, NULL), 0);
    uint32_t v;
    uint64_t n;
    CHECK_EQ_INT(fdb_survey_head(t, db, "a", &v, &n), 0);
    CHECK_EQ_INT(n, 1);
    int stage;
    bool in;
    CHECK_EQ_INT(fdb_stage_get(t, db, "ann", &stage), 0);
    CHECK_EQ_INT(stage, 0);
    CHECK_EQ_INT(fdb_in_segment(t, db, "vip", cxm_hash(0, "ann", 3), &in), 0);
    CHECK(!in);
    CHECK_EQ_INT(fdb_in_segment(t, db, "vip", cxm_hash(0, "bob", 3), &in), 0);
    CHECK(!in);
    return 0;
}

static void test_erase(void)
{
    respond("r9", "carl", 1500, 8);
    merge_in m = {"bob", "ann", false};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    erase_in e = {"ann", {"bob"}, 1, 0};
    CHECK_EQ_INT(write(erase_fn, &e), 0);
    /* 4 responses, ann's stage, ann's vip and gold rows, bob's vip row. */
    CHECK_EQ_INT(e.count, 8);
    scan_out o;
    CHECK_EQ_INT(records(INT64_MIN, INT64_MAX, &o), 1);
    CHECK(o.at[0] == 1500);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    CHECK_EQ_INT(read(erased_fn, &a), 0);
    cxm_arena_dispose(&a);
    hist_in h = history("bob", 5000, 4900);
    CHECK(h.group == 1 && h.h.in_window == 0); /* the merge went with them */
    CHECK_EQ_INT(write(erase_fn, &e), 0);      /* again: nothing left */
    CHECK_EQ_INT(e.count, 0);
}

int main(void)
{
    char dir[] = "/tmp/test_fdb.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &store), 0);
    CHECK_EQ_INT(fagg_open(store, &agg), 0);
    CHECK_EQ_INT(fdb_open(store, agg, &db), 0);
    test_surveys();
    test_responses();
    test_history();
    test_replicas();
    test_segment_merge();
    test_erase();
    fdb_close(db);
    fagg_close(agg);
    cxm_store_close(store);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_report();
}
