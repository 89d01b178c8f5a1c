/*
 * test_jdb.c - the journey store on its own, on real LMDB files: the dedup
 * window and its sweep, the pending queue's order and counts, late events
 * taking their place in a customer's records, the dictionary (and a
 * rolled-back intern leaving nothing), merges followed transitively and
 * undone, identities remembered, the analytics source handing out merged customers (and fast),
 * erasure counting what it deleted, and saved groups: read by the source,
 * dropped, refused when too big or corrupt, and gone with an erasure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/keyenc.h"
#include "journey/jdb.h"

static cxm_store *store;
static jdb *db;

typedef int (*step_fn)(cxm_txn *t, void *user);

static int write(step_fn fn, void *user)
{
    jdb_dict_rollback(db);
    int rc = cxm_store_write(store, fn, user);
    if (rc == 0)
        jdb_dict_commit(db);
    else
        jdb_dict_rollback(db);
    return rc;
}

static Cxm__V1__TouchpointEvent *event(cxm_arena *a, const char *id, const char *customer,
                                       const char *type, const char *tp, int64_t at)
{
    Cxm__V1__TouchpointEvent *ev = cxm_arena_calloc(a, 1, sizeof *ev);
    Cxm__V1__CustomerRef *ref = cxm_arena_calloc(a, 1, sizeof *ref);
    cxm__v1__touchpoint_event__init(ev);
    cxm__v1__customer_ref__init(ref);
    ref->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref->customer_id = (char *)customer;
    ev->event_id = (char *)id;
    ev->customer = ref;
    ev->event_type = (char *)type;
    ev->touchpoint = (char *)tp;
    ev->channel = CXM__V1__CHANNEL__CHANNEL_WEB;
    ev->occurred_at_unix_ms = at;
    return ev;
}

/* ---- dedup ---- */

typedef struct dedup_case {
    const char *id;
    int64_t now;
    bool dup;
    size_t removed;
} dedup_case;

static int dedup_fn(cxm_txn *t, void *user)
{
    dedup_case *c = user;
    return jdb_dedup(t, db, c->id, c->now, 1000, &c->dup);
}

static int sweep_fn(cxm_txn *t, void *user)
{
    dedup_case *c = user;
    return jdb_dedup_sweep(t, db, c->now, 100, &c->removed);
}

static void test_dedup(void)
{
    dedup_case c = {"e1", 10000, false, 0};
    CHECK_EQ_INT(write(dedup_fn, &c), 0);
    CHECK(!c.dup);
    c.now = 10999; /* within the window */
    CHECK_EQ_INT(write(dedup_fn, &c), 0);
    CHECK(c.dup);
    c.now = 11000; /* expired: stored again, as new */
    CHECK_EQ_INT(write(dedup_fn, &c), 0);
    CHECK(!c.dup);
    c.now = 11500;
    CHECK_EQ_INT(write(dedup_fn, &c), 0);
    CHECK(c.dup); /* the window now counts from the second copy */
    dedup_case d = {"e2", 20000, false, 0};
    CHECK_EQ_INT(write(dedup_fn, &d), 0);
    /* Sweep what was received before 15000: e1 goes, e2 stays. */
    dedup_case s = {NULL, 15000, false, 0};
    CHECK_EQ_INT(write(sweep_fn, &s), 0);
    CHECK_EQ_INT(s.removed, 1);
    c.now = 11600; /* e1 forgotten: new again */
    CHECK_EQ_INT(write(dedup_fn, &c), 0);
    CHECK(!c.dup);
    d.now = 20001;
    CHECK_EQ_INT(write(dedup_fn, &d), 0);
    CHECK(d.dup);
}

/* ---- pending ---- */

typedef struct pending_case {
    cxm_arena a;
    jdb_pending got[8];
    size_t n;
    uint64_t all, of_a;
} pending_case;

static int pending_fill(cxm_txn *t, void *user)
{
    pending_case *p = user;
    const char *who[] = {"ca", "cb", "ca"};
    const char *ids[] = {"p1", "p2", "p3"};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = jdb_pending_append(t, db, &p->a, event(&p->a, ids[i], who[i], "view", "home", 5 - i));
    return rc;
}

static int pending_read(cxm_txn *t, void *user)
{
    pending_case *p = user;
    int rc = jdb_pending_oldest(t, db, &p->a, 8, p->got, &p->n);
    if (rc == 0)
        rc = jdb_pending_count(t, db, NULL, &p->all);
    if (rc == 0)
        rc = jdb_pending_count(t, db, "ca", &p->of_a);
    return rc;
}

static int pending_del_first(cxm_txn *t, void *user)
{
    pending_case *p = user;
    return jdb_pending_del(t, db, p->got[0].seq);
}

static void test_pending(void)
{
    pending_case p;
    cxm_arena_init(&p.a, NULL, 0, 0);
    CHECK_EQ_INT(write(pending_fill, &p), 0);
    CHECK_EQ_INT(cxm_store_read(store, pending_read, &p), 0);
    CHECK_EQ_INT(p.n, 3);
    CHECK_EQ_STR(p.got[0].ev->event_id, "p1"); /* arrival order, not occurred_at */
    CHECK_EQ_STR(p.got[2].ev->event_id, "p3");
    CHECK(p.got[0].seq < p.got[1].seq && p.got[1].seq < p.got[2].seq);
    CHECK_EQ_INT(p.all, 3);
    CHECK_EQ_INT(p.of_a, 2);
    CHECK_EQ_INT(write(pending_del_first, &p), 0);
    CHECK_EQ_INT(cxm_store_read(store, pending_read, &p), 0);
    CHECK_EQ_INT(p.n, 2);
    CHECK_EQ_STR(p.got[0].ev->event_id, "p2");
    CHECK_EQ_INT(p.of_a, 1);
    /* Leave the queue empty for the erasure test's count. */
    CHECK_EQ_INT(write(pending_del_first, &p), 0);
    CHECK_EQ_INT(cxm_store_read(store, pending_read, &p), 0);
    CHECK_EQ_INT(write(pending_del_first, &p), 0);
    cxm_arena_dispose(&p.a);
}

/* ---- timeline and dictionary ---- */

typedef struct tl_case {
    cxm_arena a;
    const char *home;
    const char *id, *type, *tp;
    int64_t at;
    const jrec *recs;
    size_t n;
    Cxm__V1__TouchpointEvent *ev;
    bool fail_after; /* the txn fails after its writes */
} tl_case;

static int tl_put_fn(cxm_txn *t, void *user)
{
    tl_case *c = user;
    Cxm__V1__TouchpointEvent *ev = event(&c->a, c->id, c->home, c->type, c->tp, c->at);
    jrec r;
    ev->customer_id = (char *)c->home;
    int rc = jdb_make_rec(t, db, ev, &r);
    if (rc == 0)
        rc = jdb_tl_put(t, db, &c->a, c->home, ev, &r);
    return rc == 0 && c->fail_after ? CXM_EINTERNAL : rc;
}

static int tl_read_fn(cxm_txn *t, void *user)
{
    tl_case *c = user;
    int rc = jdb_cols_get(t, db, &c->a, c->home, &c->recs, &c->n);
    if (rc == 0 && c->n)
        rc = jdb_tl_get(t, db, &c->a, c->home, &c->recs[0], &c->ev);
    return rc;
}

static void put_event(const char *home, const char *id, const char *type, const char *tp,
                      int64_t at)
{
    tl_case c = {.home = home, .id = id, .type = type, .tp = tp, .at = at};
    cxm_arena_init(&c.a, NULL, 0, 0);
    CHECK_EQ_INT(write(tl_put_fn, &c), 0);
    cxm_arena_dispose(&c.a);
}

static void test_timeline(void)
{
    put_event("c1", "t1", "page_view", "home", 100);
    put_event("c1", "t3", "purchase", "checkout", 300);
    put_event("c1", "t2", "add_to_cart", "product", 200); /* late */
    put_event("c1", "t3", "purchase", "checkout", 300);   /* again: replaces */
    tl_case c = {.home = "c1"};
    cxm_arena_init(&c.a, NULL, 0, 0);
    CHECK_EQ_INT(cxm_store_read(store, tl_read_fn, &c), 0);
    CHECK_EQ_INT(c.n, 3);
    if (c.n == 3) {
        CHECK_EQ_INT(c.recs[0].at_ms, 100);
        CHECK_EQ_INT(c.recs[1].at_ms, 200);
        CHECK_EQ_INT(c.recs[2].at_ms, 300);
        CHECK_EQ_STR(c.ev->event_id, "t1");
        jdb_dict_ctx dc = {db, NULL, NULL};
        jdict d = jdb_dict(&dc);
        CHECK_EQ_INT(c.recs[1].type, d.id(d.ctx, "add_to_cart"));
        CHECK_EQ_STR(d.name(d.ctx, c.recs[2].touchpoint), "checkout");
        CHECK(c.recs[0].type != c.recs[1].type);
        CHECK(c.recs[0].flags & JREC_BASE_CURRENCY);
    }
    /* A failed transaction's new name is never seen. */
    tl_case f = {.home = "c9",
                 .id = "f1",
                 .type = "never_stored",
                 .tp = "home",
                 .at = 5,
                 .fail_after = true};
    cxm_arena_init(&f.a, NULL, 0, 0);
    CHECK_EQ_INT(write(tl_put_fn, &f), CXM_EINTERNAL);
    jdb_dict_ctx dc = {db, NULL, NULL};
    jdict d = jdb_dict(&dc);
    CHECK_EQ_INT(d.id(d.ctx, "never_stored"), 0);
    cxm_arena_dispose(&f.a);
    cxm_arena_dispose(&c.a);
}

/* ---- merges ---- */

typedef struct merge_case {
    const char *source, *target;
    bool clear;
    int rc;
} merge_case;

static int merge_fn(cxm_txn *t, void *user)
{
    merge_case *m = user;
    return m->clear ? jdb_merge_clear(t, db, m->source, m->target)
                    : jdb_merge_set(t, db, m->source, m->target);
}

typedef struct root_case {
    cxm_arena a;
    const char *id, *root;
    const char **homes;
    size_t nhomes;
    jrec *recs;
    size_t nrecs;
} root_case;

static int root_fn(cxm_txn *t, void *user)
{
    root_case *r = user;
    int rc = jdb_root(t, db, &r->a, r->id, &r->root);
    if (rc == 0)
        rc = jdb_group(t, db, &r->a, r->root, &r->homes, &r->nhomes);
    if (rc == 0)
        rc = jdb_group_recs(t, db, &r->a, r->homes, r->nhomes, &r->recs, &r->nrecs);
    return rc;
}

static void check_root(const char *id, const char *root, size_t nhomes, size_t nrecs)
{
    root_case r = {.id = id};
    cxm_arena_init(&r.a, NULL, 0, 0);
    CHECK_EQ_INT(cxm_store_read(store, root_fn, &r), 0);
    CHECK_EQ_STR(r.root, root);
    CHECK_EQ_INT(r.nhomes, nhomes);
    CHECK_EQ_INT(r.nrecs, nrecs);
    for (size_t i = 1; i < r.nrecs; i++)
        CHECK(r.recs[i - 1].at_ms <= r.recs[i].at_ms);
    cxm_arena_dispose(&r.a);
}

static void test_merges(void)
{
    put_event("m1", "ma", "page_view", "home", 50);
    put_event("m2", "mb", "page_view", "home", 150);
    put_event("m3", "mc", "page_view", "home", 250);
    merge_case m = {"m1", "m2", false, 0};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    m = (merge_case){"m2", "m3", false, 0};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    check_root("m1", "m3", 3, 3); /* transitive */
    check_root("m3", "m3", 3, 3);
    m = (merge_case){"m3", "m1", false, 0}; /* would be a cycle */
    CHECK_EQ_INT(write(merge_fn, &m), CXM_EINVAL);
    m = (merge_case){"m2", "m3", true, 0};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    check_root("m1", "m2", 2, 2);
    check_root("m3", "m3", 1, 1);
    m = (merge_case){"m2", "m3", true, 0}; /* not merged any more */
    CHECK_EQ_INT(write(merge_fn, &m), CXM_ENOTFOUND);
}

/* ---- the analytics source ---- */

typedef struct walk {
    const char *after, *segment;
    size_t customers, recs;
    char first[64];
    char ids[16][32];
    size_t homes[16];
    int stage[16]; /* of the first record: tells a saved group from a walked one */
    int rc;
} walk;

static bool no_props(Cxm__V1__PropertyCondition *const *conds, size_t n,
                     Cxm__V1__TouchpointEvent__PropertiesEntry *const *props, size_t nprops)
{
    (void)conds;
    (void)props;
    return n == 0 && nprops == 0;
}

static int walk_fn(cxm_txn *t, void *user)
{
    walk *w = user;
    jdb_src *s;
    int rc = jdb_src_open(t, db, w->after, w->segment, no_props, &s);
    if (rc != 0)
        return rc;
    jsource src = jdb_source(s);
    jcust c;
    while ((rc = src.next(src.ctx, &c)) == 1) {
        if (w->customers < 16) {
            snprintf(w->ids[w->customers], sizeof w->ids[0], "%s", c.customer_id);
            w->homes[w->customers] = c.nhomes;
            w->stage[w->customers] = c.n ? c.recs[0].stage : -1;
        }
        for (size_t i = 1; i < c.n; i++)
            if (c.recs[i - 1].at_ms > c.recs[i].at_ms)
                rc = CXM_ECORRUPT;
        w->customers++;
        w->recs += c.n;
    }
    jdb_src_close(s);
    return rc;
}

typedef struct seg_case {
    const char *seg, *cust;
    bool in;
} seg_case;

static int seg_fn(cxm_txn *t, void *user)
{
    seg_case *s = user;
    return jdb_segment_set(t, db, s->seg, s->cust, s->in);
}

static void test_source(void)
{
    /* Now: c1 (3), m2 <- m1 (2 recs, root m2), m3 (1). */
    walk w = {0};
    CHECK_EQ_INT(cxm_store_read(store, walk_fn, &w), 0);
    CHECK_EQ_INT(w.customers, 3);
    CHECK_EQ_INT(w.recs, 6);
    CHECK_EQ_STR(w.ids[0], "c1");
    CHECK_EQ_STR(w.ids[1], "m2");
    CHECK_EQ_INT(w.homes[1], 2);
    CHECK_EQ_STR(w.ids[2], "m3");
    /* A target with no events of its own still comes out (its members'). */
    merge_case m = {"m3", "g0", false, 0};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    w = (walk){0};
    CHECK_EQ_INT(cxm_store_read(store, walk_fn, &w), 0);
    CHECK_EQ_INT(w.customers, 3);
    CHECK_EQ_STR(w.ids[1], "g0");
    CHECK_EQ_INT(w.homes[1], 2);
    /* after: continue behind a customer. */
    w = (walk){.after = "g0"};
    CHECK_EQ_INT(cxm_store_read(store, walk_fn, &w), 0);
    CHECK_EQ_INT(w.customers, 1);
    CHECK_EQ_STR(w.ids[0], "m2");
    /* segment filter */
    seg_case s = {"vip", "m2", true};
    CHECK_EQ_INT(write(seg_fn, &s), 0);
    w = (walk){.segment = "vip"};
    CHECK_EQ_INT(cxm_store_read(store, walk_fn, &w), 0);
    CHECK_EQ_INT(w.customers, 1);
    CHECK_EQ_STR(w.ids[0], "m2");
}

/* A million records over 100k customers, written directly as arrays. */
typedef struct bulk {
    int from, to;
} bulk;

static int bulk_fn(cxm_txn *t, void *user)
{
    bulk *b = user;
    jrec recs[10];
    int rc = 0;
    for (int c = b->from; c < b->to && rc == 0; c++) {
        char id[32];
        snprintf(id, sizeof id, "z%07d", c);
        for (int i = 0; i < 10; i++)
            recs[i] = (jrec){.at_ms = 1000 * i, .eid = (uint64_t)i, .type = 1, .touchpoint = 1};
        rc = jdb_cols_put(t, db, id, recs, 10);
    }
    return rc;
}

static void test_source_speed(void)
{
    for (int i = 0; i < 100000; i += 20000) {
        bulk b = {i, i + 20000};
        CHECK_EQ_INT(write(bulk_fn, &b), 0);
    }
    walk w = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ_INT(cxm_store_read(store, walk_fn, &w), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK_EQ_INT(w.customers, 100002); /* c1, g0 (with m3) and the bulk */
    CHECK_EQ_INT(w.recs, 1000004);
    fprintf(stderr, "jsource walk: %zu customers, %zu records in %.1f ms\n", w.customers, w.recs,
            ms);
    CHECK(ms < 2000); /* generous for sanitizer builds; milliseconds when optimised */
}

/* ---- erasure ---- */

typedef struct erase_case {
    const char *id;
    char *merged[2];
    size_t n;
    uint64_t count;
    cxm_arena a;
} erase_case;

static int erase_fn(cxm_txn *t, void *user)
{
    erase_case *e = user;
    return jdb_erase(t, db, e->id, e->merged, e->n, &e->count);
}

static Cxm__V1__Identity email = {PROTOBUF_C_MESSAGE_INIT(&cxm__v1__identity__descriptor),
                                  CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, "", "a@example.com"};

static int pend_one(cxm_txn *t, void *user)
{
    erase_case *e = user;
    int rc = jdb_pending_append(t, db, &e->a, event(&e->a, "px", "m1", "view", "home", 1));
    return rc ? rc : jdb_ident_put(t, db, &email, "m1");
}

static int ident_fn(cxm_txn *t, void *user)
{
    erase_case *e = user;
    const char *id;
    return jdb_ident_get(t, db, &e->a, &email, &id);
}

static void test_erase(void)
{
    /* m2 <- m1: 2 events, a segment row, one merge, one pending event. */
    erase_case e = {.id = "m2", .merged = {"m1"}, .n = 1};
    cxm_arena_init(&e.a, NULL, 0, 0);
    CHECK_EQ_INT(write(pend_one, &e), 0);
    CHECK_EQ_INT(cxm_store_read(store, ident_fn, &e), 0);
    CHECK_EQ_INT(write(erase_fn, &e), 0);
    CHECK_EQ_INT(e.count, 2 + 1 + 1 + 1 + 1); /* events, segment, merge, identity, pending */
    CHECK_EQ_INT(cxm_store_read(store, ident_fn, &e), CXM_ENOTFOUND);
    check_root("m1", "m1", 1, 0);
    pending_case p;
    cxm_arena_init(&p.a, NULL, 0, 0);
    CHECK_EQ_INT(cxm_store_read(store, pending_read, &p), 0);
    CHECK_EQ_INT(p.all, 0);
    cxm_arena_dispose(&p.a);
    /* Again: nothing left. */
    CHECK_EQ_INT(write(erase_fn, &e), 0);
    CHECK_EQ_INT(e.count, 0);
    cxm_arena_dispose(&e.a);
}

/* ---- saved groups (journey.groups) ---- */

#define SAVED_STAGE 3 /* a stage no put_event writes: seen only in a saved group */

typedef struct group_case {
    const char *root;
    size_t nhomes; /* of the group as jdb_group finds it; overridden when set */
    size_t force_nhomes;
    bool drop;
} group_case;

/* Save root's group as a recomputation would, its records marked. */
static int group_save_fn(cxm_txn *t, void *user)
{
    group_case *g = user;
    if (g->drop)
        return jdb_group_drop(t, db, g->root);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    const char **homes;
    size_t nhomes, n;
    jrec *recs;
    int rc = jdb_group(t, db, &a, g->root, &homes, &nhomes);
    if (rc == 0)
        rc = jdb_group_recs(t, db, &a, homes, nhomes, &recs, &n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        recs[i].stage = SAVED_STAGE;
    if (rc == 0 && g->force_nhomes) { /* more homes than a group may have */
        const char **many = cxm_arena_alloc(&a, g->force_nhomes * sizeof *many);
        for (size_t i = 0; many && i < g->force_nhomes; i++)
            many[i] = g->root;
        homes = many;
        nhomes = g->force_nhomes;
    }
    if (rc == 0)
        rc = jdb_group_save(t, db, g->root, homes, nhomes, recs, n);
    g->nhomes = nhomes;
    cxm_arena_dispose(&a);
    return rc;
}

static int group_save(const char *root, size_t force_nhomes, bool drop)
{
    group_case g = {.root = root, .force_nhomes = force_nhomes, .drop = drop};
    return write(group_save_fn, &g);
}

/* Raw access to the table, to see rows and plant corrupt ones. */
typedef struct raw_case {
    MDB_dbi dbi;
    const char *id;
    const void *val;
    size_t vlen;
    bool put, found;
} raw_case;

static int raw_fn(cxm_txn *t, void *user)
{
    raw_case *r = user;
    uint8_t k[CXM_KEY_MAX];
    cxm_key kb;
    size_t klen = 0;
    cxm_key_init(&kb, k, sizeof k);
    cxm_key_str(&kb, r->id);
    if (cxm_key_finish(&kb, &klen) != 0)
        return CXM_ETOOBIG;
    if (r->put)
        return cxm_txn_put(t, r->dbi, k, klen, r->val, r->vlen, 0);
    const void *v;
    size_t n;
    int rc = cxm_txn_get_ref(t, r->dbi, k, klen, &v, &n);
    r->found = rc == 0;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static bool group_row(MDB_dbi dbi, const char *id)
{
    raw_case r = {.dbi = dbi, .id = id};
    CHECK_EQ_INT(cxm_store_read(store, raw_fn, &r), 0);
    return r.found;
}

/* The q* customers as the analytics source hands them out. */
static walk walk_q(void)
{
    walk w = {.after = "q"};
    w.rc = cxm_store_read(store, walk_fn, &w);
    return w;
}

static void test_groups(void)
{
    MDB_dbi groups;
    CHECK_EQ_INT(cxm_store_dbi(store, "journey.groups", 0, &groups), 0);
    put_event("q1", "qa", "page_view", "home", 10);
    put_event("q2", "qb", "page_view", "home", 20);
    put_event("q3", "qc", "page_view", "home", 30);
    merge_case m = {"q2", "q1", false, 0};
    CHECK_EQ_INT(write(merge_fn, &m), 0);

    /* Not saved yet: the source walks the merges. */
    walk w = walk_q();
    CHECK_EQ_INT(w.rc, 0);
    CHECK_EQ_STR(w.ids[0], "q1");
    CHECK_EQ_INT(w.homes[0], 2);
    CHECK_EQ_INT(w.stage[0], 0);

    /* Saved: the source reads the row, stages and homes as saved. */
    CHECK_EQ_INT(group_save("q1", 0, false), 0);
    CHECK(group_row(groups, "q1"));
    w = walk_q();
    CHECK_EQ_INT(w.rc, 0);
    CHECK_EQ_STR(w.ids[0], "q1");
    CHECK_EQ_INT(w.homes[0], 2);
    CHECK_EQ_INT(w.stage[0], SAVED_STAGE);
    CHECK_EQ_STR(w.ids[1], "q3"); /* q2 is merged away, not a root */
    CHECK_EQ_INT(w.stage[1], 0);

    /* A group too big to load again is refused, the saved row kept. */
    CHECK_EQ_INT(group_save("q1", JDB_MAX_HOMES + 1, false), CXM_ETOOBIG);
    CHECK(group_row(groups, "q1"));

    /* Dropped: walked again. A one-home save drops too. */
    CHECK_EQ_INT(group_save("q1", 0, true), 0);
    CHECK(!group_row(groups, "q1"));
    CHECK_EQ_INT(walk_q().stage[0], 0);
    CHECK_EQ_INT(group_save("q1", 0, false), 0);
    CHECK_EQ_INT(group_save("q3", 0, false), 0); /* q3 alone: nothing kept */
    CHECK(!group_row(groups, "q3"));

    /* Corrupt rows are reported, never read past their end. */
    uint8_t bad[][12] = {{0, 0, 0, 2}, {0, 0, 1, 44}, {0, 0, 0, 2, 0, 9, 'q'}};
    size_t badlen[] = {4, 4, 7};
    for (size_t i = 0; i < 3; i++) {
        raw_case r = {.dbi = groups, .id = "q1", .val = bad[i], .vlen = badlen[i], .put = true};
        CHECK_EQ_INT(write(raw_fn, &r), 0);
        CHECK_EQ_INT(walk_q().rc, CXM_ECORRUPT);
    }
    CHECK_EQ_INT(group_save("q1", 0, false), 0);

    /* Merged into q3 without an unmerge: q1's group no longer counts q2. */
    m = (merge_case){"q2", "q3", false, 0};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    CHECK(!group_row(groups, "q1"));
    check_root("q1", "q1", 1, 1);
    check_root("q2", "q3", 2, 2);
    m = (merge_case){"q2", "q1", false, 0}; /* and back */
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    check_root("q3", "q3", 1, 1);
    CHECK_EQ_INT(group_save("q1", 0, false), 0);

    /* Erasing a merged-away id alone takes its records out of the root's
     * saved group: the source walks the merges again. */
    erase_case e = {.id = "q2"};
    CHECK_EQ_INT(write(erase_fn, &e), 0);
    CHECK_EQ_INT(e.count, 1 + 1); /* its event, its merge */
    CHECK(!group_row(groups, "q1"));
    w = walk_q();
    CHECK_EQ_INT(w.rc, 0);
    CHECK_EQ_STR(w.ids[0], "q1");
    CHECK_EQ_INT(w.homes[0], 1);
    CHECK_EQ_INT(w.stage[0], 0);

    /* Erasing a root with its merged ids deletes its saved group. */
    m = (merge_case){"q3", "q1", false, 0};
    CHECK_EQ_INT(write(merge_fn, &m), 0);
    CHECK_EQ_INT(group_save("q1", 0, false), 0);
    CHECK(group_row(groups, "q1"));
    e = (erase_case){.id = "q1", .merged = {"q3"}, .n = 1};
    CHECK_EQ_INT(write(erase_fn, &e), 0);
    CHECK_EQ_INT(e.count, 2 + 1); /* events, merge */
    CHECK(!group_row(groups, "q1"));
    w = walk_q();
    CHECK_EQ_INT(w.rc, 0);
    CHECK(w.customers == 0 || strncmp(w.ids[0], "q", 1) != 0);
}

int main(void)
{
    char dir[] = "/tmp/test_jdb.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &store), 0);
    CHECK_EQ_INT(jdb_open(store, &db), 0);
    test_dedup();
    test_pending();
    test_timeline();
    test_merges();
    test_source();
    test_erase();
    test_groups();
    test_source_speed();
    jdb_close(db);
    /* Reopen: the dictionary comes back from the store. */
    CHECK_EQ_INT(jdb_open(store, &db), 0);
    jdb_dict_ctx dc = {db, NULL, NULL};
    jdict d = jdb_dict(&dc);
    CHECK(d.id(d.ctx, "add_to_cart") != 0);
    CHECK_EQ_STR(d.name(d.ctx, d.id(d.ctx, "checkout")), "checkout");
    jdb_close(db);
    cxm_store_close(store);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    return check_report();
}
