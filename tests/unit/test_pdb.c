/*
 * test_pdb.c - the profile store on its own, on real LMDB files: profiles
 * with their identity links, redirects and the merge that made them,
 * request ids, receipts and their confirmation by the other services (and
 * the receipt id index of an older store rebuilt), segments and members,
 * scans; a group-commit batch
 * that outgrows a tiny map midway; and a batch in which one job fails after
 * writing, leaving no trace while its neighbours commit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cxm/err.h"
#include "profile/pdb.h"

static cxm_store *store;
static pdb *db;
static cxm_arena arena; /* results read back by the checks */

/* ---- jobs on the store's writer thread ---- */

typedef struct tjob tjob;
typedef int (*tjob_fn)(cxm_txn *t, tjob *j);

struct tjob {
    cxm_write_job wj;
    tjob_fn fn;
    int idx, rc;
    cxm_arena a;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ndone;

static int tjob_run(cxm_txn *t, void *user)
{
    tjob *j = user;
    cxm_arena_reset(&j->a); /* a rerun builds everything again */
    return j->fn(t, j);
}

static void tjob_done(void *user, int rc)
{
    tjob *j = user;
    pthread_mutex_lock(&mu);
    j->rc = rc;
    ndone++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void submit(tjob *j, tjob_fn fn, int idx)
{
    j->fn = fn;
    j->idx = idx;
    j->rc = 1;
    cxm_arena_init(&j->a, NULL, 0, 0);
    j->wj = (cxm_write_job){.fn = tjob_run, .done = tjob_done, .user = j};
    cxm_store_submit(store, &j->wj);
}

static void wait_for(int n)
{
    pthread_mutex_lock(&mu);
    while (ndone < n)
        pthread_cond_wait(&cv, &mu);
    ndone = 0;
    pthread_mutex_unlock(&mu);
}

/* Holds the writer thread so the jobs queued meanwhile form one batch. */
static int hold_job(cxm_txn *t, tjob *j)
{
    (void)t, (void)j;
    usleep(100 * 1000);
    return 0;
}

/* ---- profiles ---- */

static Cxm__V1__Identity *email(cxm_arena *a, int idx)
{
    Cxm__V1__Identity *id = cxm_arena_alloc(a, sizeof *id);
    char *v = cxm_arena_alloc(a, 32);
    cxm__v1__identity__init(id);
    snprintf(v, 32, "u%d@example.com", idx);
    id->type = CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL;
    id->custom_type = "";
    id->value = v;
    return id;
}

static char *cid(cxm_arena *a, int idx)
{
    char *id = cxm_arena_alloc(a, 16);
    snprintf(id, 16, "c%04d", idx);
    return id;
}

/* Profile idx with its e-mail and `bytes` of attribute text. */
static prof_profile *make(cxm_arena *a, int idx, size_t bytes)
{
    prof_profile *p = prof_new(a, cid(a, idx), 1000);
    if (!p || prof_identity_add(a, p, email(a, idx), "test", "", 1000) != 0)
        return NULL;
    for (size_t k = 0; bytes; k++) {
        size_t n = bytes < 8000 ? bytes : 8000;
        Cxm__V1__Value v = CXM__V1__VALUE__INIT;
        v.kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
        v.string_value = cxm_arena_alloc(a, n + 1);
        memset(v.string_value, 'a' + (char)(idx % 26), n);
        v.string_value[n] = '\0';
        Cxm__V1__AttributeUpdate u = CXM__V1__ATTRIBUTE_UPDATE__INIT;
        char name[16], err[256];
        snprintf(name, sizeof name, "blob%zu", k);
        u.name = name;
        u.value = &v;
        bool changed;
        if (prof_attr_apply(a, p, &u, "attributes[0]", "test", 1000, &changed, err, sizeof err))
            return NULL;
        bytes -= n;
    }
    return p;
}

static int save_job(cxm_txn *t, tjob *j)
{
    prof_profile *p = make(&j->a, j->idx, 16000);
    return p ? pdb_save(t, db, &j->a, p) : CXM_ENOMEM;
}

static int save_then_fail_job(cxm_txn *t, tjob *j)
{
    int rc = save_job(t, j);
    return rc ? rc : CXM_ESTALE;
}

/* 0 when profile idx is stored and its e-mail leads to it. */
static int present(int idx)
{
    cxm_txn *t;
    const char *owner = NULL;
    prof_profile *p = NULL;
    int rc = cxm_store_read_begin(store, &t);
    if (rc != 0)
        return rc;
    rc = pdb_identity_owner(t, db, email(&arena, idx), &arena, &owner);
    if (rc == 0 && strcmp(owner, cid(&arena, idx)) != 0)
        rc = CXM_ECORRUPT;
    if (rc == 0)
        rc = pdb_load(t, db, owner, &arena, &p);
    cxm_store_read_end(t);
    return rc;
}

/* ---- the tests ---- */

static void test_growth_mid_batch(void)
{
    size_t before = cxm_store_map_size(store);
    enum { N = 40 }; /* 40 x 16 KB: several times the tiny map */
    static tjob hold, jobs[N];
    submit(&hold, hold_job, 0);
    for (int i = 0; i < N; i++)
        submit(&jobs[i], save_job, i);
    wait_for(N + 1);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(jobs[i].rc, 0);
    CHECK(cxm_store_map_size(store) > before);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(present(i), 0);
    for (int i = 0; i < N; i++)
        cxm_arena_dispose(&jobs[i].a);
    cxm_arena_dispose(&hold.a);
}

static void test_failed_job_in_batch(void)
{
    static tjob hold, a, b, c;
    submit(&hold, hold_job, 0);
    submit(&a, save_job, 100);
    submit(&b, save_then_fail_job, 101);
    submit(&c, save_job, 102);
    wait_for(4);
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_INT(b.rc, CXM_ESTALE);
    CHECK_EQ_INT(c.rc, 0);
    CHECK_EQ_INT(present(100), 0);
    CHECK_EQ_INT(present(101), CXM_ENOTFOUND); /* neither profile nor identity link */
    CHECK_EQ_INT(present(102), 0);
    cxm_txn *t;
    CHECK_EQ_INT(cxm_store_read_begin(store, &t), 0);
    CHECK_EQ_INT(pdb_exists(t, db, "c0101"), CXM_ENOTFOUND);
    cxm_store_read_end(t);
    cxm_arena_dispose(&hold.a);
    cxm_arena_dispose(&a.a);
    cxm_arena_dispose(&b.a);
    cxm_arena_dispose(&c.a);
}

/* c0200 merged into c0201, then c0201 into c0202: redirects, snapshots and
 * the merge to undo first. */
static int merges_job(cxm_txn *t, tjob *j)
{
    cxm_arena *a = &j->a;
    prof_profile *p[3];
    for (int i = 0; i < 3; i++)
        if (!(p[i] = make(a, 200 + i, 10)))
            return CXM_ENOMEM;
    Cxm__V1__MergeRecord r1 = CXM__V1__MERGE_RECORD__INIT, r2 = r1;
    r1.merge_id = "m1", r1.source_customer_id = "c0200", r1.target_customer_id = "c0201";
    r2.merge_id = "m2", r2.source_customer_id = "c0201", r2.target_customer_id = "c0202";
    Cxm__V1__MergeRecord *log[] = {&r2};
    p[2]->merges = log;
    p[2]->n_merges = 1;
    pdb_snapshot s = {p[1], p[0], p[1], &r1};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = pdb_save(t, db, a, p[i]);
    if (rc == 0)
        rc = pdb_remove(t, db, p[0]);
    if (rc == 0)
        rc = pdb_remove(t, db, p[1]);
    if (rc == 0)
        rc = pdb_redirect_set(t, db, "c0200", "c0201");
    if (rc == 0)
        rc = pdb_redirect_set(t, db, "c0201", "c0202");
    if (rc == 0)
        rc = pdb_put_snapshot(t, db, a, &s);
    if (rc == 0)
        rc = pdb_request_put(t, db, "req-1", "c0200");
    return rc;
}

static void test_merges_and_requests(void)
{
    static tjob j;
    submit(&j, merges_job, 0);
    wait_for(1);
    CHECK_EQ_INT(j.rc, 0);
    cxm_txn *t;
    CHECK_EQ_INT(cxm_store_read_begin(store, &t), 0);
    const char *live = NULL, *merge = NULL, *cust = NULL;
    bool redirected = false;
    CHECK_EQ_INT(pdb_resolve_id(t, db, "c0200", &arena, &live, &redirected), 0);
    CHECK(redirected && strcmp(live, "c0202") == 0);
    CHECK_EQ_INT(pdb_exists(t, db, "c0200"), CXM_ENOTFOUND);
    CHECK_EQ_INT(pdb_latest_merge_of(t, db, "c0200", &arena, &merge), 0);
    CHECK_EQ_STR(merge, "m2"); /* the last hop: the one that can be undone now */
    CHECK_EQ_INT(pdb_latest_merge_of(t, db, "c0202", &arena, &merge), CXM_ENOTFOUND);
    pdb_snapshot s;
    CHECK_EQ_INT(pdb_get_snapshot(t, db, "m1", &arena, &s), 0);
    CHECK_EQ_STR(s.source_before->customer_id, "c0200");
    CHECK_EQ_STR(s.record->target_customer_id, "c0201");
    CHECK_EQ_INT(pdb_get_snapshot(t, db, "m9", &arena, &s), CXM_ENOTFOUND);
    CHECK_EQ_INT(pdb_request_get(t, db, "req-1", &arena, &cust), 0);
    CHECK_EQ_STR(cust, "c0200");
    CHECK_EQ_INT(pdb_request_get(t, db, "req-2", &arena, &cust), CXM_ENOTFOUND);
    const void *bytes;
    size_t n = 0;
    CHECK_EQ_INT(pdb_load_packed(t, db, "c0202", &bytes, &n), 0);
    prof_profile *p = prof_unpack(&arena, bytes, n);
    CHECK(p && p->n_merges == 1 && strcmp(p->merges[0]->merge_id, "m2") == 0);
    cxm_store_read_end(t);
}

/* Membership changes pdb_evaluate_segment reported in its last run. */
static size_t seg_entered, seg_left;
static char seg_first[16];

static int on_member(cxm_txn *t, const char *customer_id, bool entered, void *user)
{
    (void)t;
    (void)user;
    if (!seg_entered && !seg_left)
        snprintf(seg_first, sizeof seg_first, "%s", customer_id);
    *(entered ? &seg_entered : &seg_left) += 1;
    return 0;
}

/* A segment over the attribute blob0 existing, evaluated over every profile. */
static int segment_job(cxm_txn *t, tjob *j)
{
    seg_entered = seg_left = 0; /* the job may run again */
    static Cxm__V1__FieldCondition f = CXM__V1__FIELD_CONDITION__INIT;
    static Cxm__V1__SegmentCondition c = CXM__V1__SEGMENT_CONDITION__INIT;
    static Cxm__V1__Segment seg = CXM__V1__SEGMENT__INIT;
    f.kind = CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE;
    f.name = "blob0";
    f.op = CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS;
    c.node_case = CXM__V1__SEGMENT_CONDITION__NODE_FIELD;
    c.field = &f;
    seg.segment_id = "has-blob";
    seg.condition = &c;
    int rc = pdb_evaluate_segment(t, db, &j->a, &seg, &seg.member_count, on_member, NULL);
    return rc ? rc : pdb_segment_put(t, db, &j->a, &seg);
}

static int count_one(prof_profile *p, size_t stored_len, void *user)
{
    (void)p;
    *(size_t *)user += stored_len > 0;
    return 0;
}

static void test_segments_and_scan(void)
{
    static tjob j;
    submit(&j, segment_job, 0);
    wait_for(1);
    CHECK_EQ_INT(j.rc, 0);
    cxm_txn *t;
    CHECK_EQ_INT(cxm_store_read_begin(store, &t), 0);
    Cxm__V1__Segment *seg = NULL;
    CHECK_EQ_INT(pdb_segment_get(t, db, "has-blob", &arena, &seg), 0);
    CHECK_EQ_INT(seg->member_count, 43); /* c0000..c0039, c0100, c0102, c0202 */
    /* Every member is new to the segment: 43 entered, in id order. */
    CHECK_EQ_INT(seg_entered, 43);
    CHECK_EQ_INT(seg_left, 0);
    CHECK_EQ_STR(seg_first, "c0000");
    pdb_members_page page;
    CHECK_EQ_INT(pdb_members(t, db, &arena, "has-blob", "", 10, &page), 0);
    CHECK(page.n == 10 && page.more && page.total == 43);
    CHECK_EQ_STR(page.ids[0], "c0000");
    CHECK_EQ_INT(pdb_members(t, db, &arena, "has-blob", "c0039", 10, &page), 0);
    CHECK(page.n == 3 && !page.more);
    CHECK_EQ_STR(page.ids[0], "c0100");
    size_t n = 0;
    CHECK_EQ_INT(pdb_scan(t, db, &arena, "c0100", count_one, &n), 0);
    CHECK_EQ_INT(n, 2); /* c0102 and c0202: strictly after */
    prof_profile *p = NULL;
    CHECK_EQ_INT(pdb_load(t, db, "c0001", &arena, &p), 0);
    CHECK(p->n_segment_ids == 1 && strcmp(p->segment_ids[0], "has-blob") == 0);
    cxm_store_read_end(t);
}

/* ---- erasure receipts ---- */

static Cxm__V1__DeletionReceipt *got;        /* what the last read found */
static bool confirmed;                       /* the last confirm changed the receipt */
static const char *confirm_service = "";     /* what confirm_job confirms: */
static const char *confirm_receipt = "r900"; /* service, receipt, time (idx) */

/* Customer c0900 erased: profile done, journey and feedback pending. */
static int receipt_job(cxm_txn *t, tjob *j)
{
    static Cxm__V1__ServiceErasure se[3];
    static Cxm__V1__ServiceErasure *list[] = {&se[0], &se[1], &se[2]};
    static const char *names[] = {"profile", "journey", "feedback"};
    for (int i = 0; i < 3; i++) {
        cxm__v1__service_erasure__init(&se[i]);
        se[i].service = (char *)names[i];
        se[i].state = i ? CXM__V1__ERASURE_STATE__ERASURE_STATE_PENDING
                        : CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE;
    }
    se[0].completed_at_unix_ms = 1000;
    Cxm__V1__DeletionReceipt r = CXM__V1__DELETION_RECEIPT__INIT;
    r.receipt_id = "r900";
    r.customer_id = "c0900";
    r.requested_at_unix_ms = 1000;
    r.services = list;
    r.n_services = 3;
    return pdb_receipt_put(t, db, &j->a, &r);
}

static int confirm_job(cxm_txn *t, tjob *j)
{
    return pdb_receipt_confirm(t, db, confirm_receipt, confirm_service, 7, j->idx, "purged", &j->a,
                               &confirmed);
}

/* Confirm service at time at; the job's code. */
static int confirm(const char *service, int at)
{
    static tjob j;
    confirm_service = service;
    confirmed = false;
    submit(&j, confirm_job, at);
    wait_for(1);
    cxm_arena_dispose(&j.a);
    return j.rc;
}

/* The receipt by id into got. */
static int read_receipt(const char *receipt_id)
{
    cxm_txn *t;
    int rc = cxm_store_read_begin(store, &t);
    if (rc == 0)
        rc = pdb_receipt_by_id(t, db, receipt_id, &arena, &got);
    cxm_store_read_end(t);
    return rc;
}

static const Cxm__V1__ServiceErasure *service_of(const char *name)
{
    for (size_t i = 0; i < got->n_services; i++)
        if (strcmp(got->services[i]->service, name) == 0)
            return got->services[i];
    return NULL;
}

static void test_receipts(void)
{
    static tjob j;
    submit(&j, receipt_job, 0);
    wait_for(1);
    CHECK_EQ_INT(j.rc, 0);
    cxm_arena_dispose(&j.a);
    CHECK_EQ_INT(read_receipt("r900"), 0);
    CHECK_EQ_STR(got->customer_id, "c0900");
    CHECK_EQ_INT(read_receipt("r901"), CXM_ENOTFOUND);

    /* The first confirmation marks journey DONE; feedback still pending. */
    CHECK_EQ_INT(confirm("journey", 3000), 0);
    CHECK(confirmed);
    CHECK_EQ_INT(read_receipt("r900"), 0);
    const Cxm__V1__ServiceErasure *se = service_of("journey");
    CHECK(se && se->state == CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE);
    CHECK(se && se->records_erased == 7 && se->completed_at_unix_ms == 3000);
    CHECK_EQ_STR(se->detail, "purged");
    CHECK_EQ_INT(got->completed_at_unix_ms, 0);

    /* A redelivered confirmation changes nothing, not even the time. */
    CHECK_EQ_INT(confirm("journey", 4000), 0);
    CHECK(!confirmed);
    CHECK_EQ_INT(read_receipt("r900"), 0);
    CHECK_EQ_INT(service_of("journey")->completed_at_unix_ms, 3000);

    /* A service not listed at erasure time is added, DONE. */
    CHECK_EQ_INT(confirm("loyalty", 2500), 0);
    CHECK(confirmed);
    CHECK_EQ_INT(read_receipt("r900"), 0);
    CHECK_EQ_INT(got->n_services, 4);
    CHECK(service_of("loyalty")->state == CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE);
    CHECK_EQ_INT(got->completed_at_unix_ms, 0);

    /* The last one completes the receipt at the latest of the services'
     * times, whatever order they came in. */
    CHECK_EQ_INT(confirm("feedback", 2000), 0);
    CHECK(confirmed);
    CHECK_EQ_INT(read_receipt("r900"), 0);
    CHECK_EQ_INT(got->completed_at_unix_ms, 3000);
    CHECK_EQ_STR(got->receipt_id, "r900"); /* the rest of it is kept */
    CHECK(got->n_services == 4 && got->services[0]->records_erased == 0);

    /* Refused: bad names and times, unknown receipts; nothing written. */
    CHECK_EQ_INT(confirm("Journey", 5000), CXM_EINVAL);
    CHECK_EQ_INT(confirm("", 5000), CXM_EINVAL);
    CHECK_EQ_INT(confirm("search", 0), CXM_EINVAL);
    confirm_receipt = "r901";
    CHECK_EQ_INT(confirm("journey", 5000), CXM_ENOTFOUND);
    confirm_receipt = "r900";
    CHECK_EQ_INT(read_receipt("r900"), 0);
    CHECK_EQ_INT(got->n_services, 4);
}

static MDB_dbi ids_dbi, meta_dbi; /* pdb's own tables, opened by the test */

/* Forget the receipt id index, as in a store made before it existed. */
static int forget_index_job(cxm_txn *t, tjob *j)
{
    (void)j;
    int rc = cxm_txn_del(t, ids_dbi, "r900", 4);
    return rc ? rc : cxm_txn_del(t, meta_dbi, "receipt_ids", 11);
}

static void test_receipt_index_rebuilt(void)
{
    static tjob j;
    CHECK_EQ_INT(cxm_store_dbi(store, "profile.receipt_ids", 0, &ids_dbi), 0);
    CHECK_EQ_INT(cxm_store_dbi(store, "profile.meta", 0, &meta_dbi), 0);
    submit(&j, forget_index_job, 0);
    wait_for(1);
    CHECK_EQ_INT(j.rc, 0);
    cxm_arena_dispose(&j.a);
    CHECK_EQ_INT(read_receipt("r900"), CXM_ENOTFOUND);
    pdb_close(db);
    CHECK_EQ_INT(pdb_open(store, &db), 0);
    CHECK_EQ_INT(read_receipt("r900"), 0);
    CHECK_EQ_STR(got->customer_id, "c0900");
}

int main(void)
{
    char dir[] = "/tmp/cxm-test-pdb-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    /* A tiny map, so the batch of test_growth_mid_batch must grow it. */
    cxm_store_opts o = {.initial_map_size = 256 << 10, .nosync = true};
    CHECK_EQ_INT(cxm_store_open(dir, &o, &store), 0);
    CHECK_EQ_INT(pdb_open(store, &db), 0);
    cxm_arena_init(&arena, NULL, 0, 0);
    test_growth_mid_batch();
    test_failed_job_in_batch();
    test_merges_and_requests();
    test_segments_and_scan();
    test_receipts();
    test_receipt_index_rebuilt();
    cxm_arena_dispose(&arena);
    pdb_close(db);
    cxm_store_close(store);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    return check_report();
}
