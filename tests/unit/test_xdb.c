/*
 * test_xdb.c - the personalisation service's tables on real LMDB files:
 * experiences stored, listed and caught up by the in-memory catalogue (a
 * second lock after a commit sees the change, an update replaces the
 * entry, a fresh catalogue loads everything), contact caps over sliding
 * windows and pauses at explicit times, the 32 remembered impressions,
 * contact histories seen by a reopened xdb, feedback signals from built
 * events, idempotent claims, merges, erasure counts and model infos; then
 * readers locking the catalogue while a writer upserts.
 *
 *   test_xdb bench   what one Recommend asks of xdb, on 10k experiences
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "cxm/err.h"
#include "personalisation/xdb.h"

static cxm_store *store;
static xdb *db;

enum {
    OFFER = CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_OFFER,
    CONTENT = CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_CONTENT,
    ACTION = CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_SERVICE_ACTION,
    IMPRESSION = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION,
    CLICK = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_CLICK,
    ACCEPT = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_ACCEPT,
    DISMISS = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_DISMISS,
};

#define MIN_MS 60000LL
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)

/* ---- experiences ---- */

typedef struct exp_spec {
    const char *id;
    int kind;
    const char *title;
    double value, weight;
    bool disabled;
} exp_spec;

/* An experience with a full eligibility, two caps and pauses. */
static Cxm__V1__Experience *experience(cxm_arena *a, const exp_spec *s)
{
    Cxm__V1__Experience *e = cxm_arena_calloc(a, 1, sizeof *e);
    Cxm__V1__Eligibility *el = cxm_arena_calloc(a, 1, sizeof *el);
    cxm__v1__experience__init(e);
    cxm__v1__eligibility__init(el);
    static Cxm__V1__JourneyStage stages[] = {CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION,
                                             CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE};
    static Cxm__V1__Channel channels[] = {CXM__V1__CHANNEL__CHANNEL_WEB};
    static char *placements[] = {"home_banner", "checkout"};
    static char *segments[] = {"vip"}, *excluded[] = {"churned"}, *consents[] = {"marketing"};
    el->n_stages = 2, el->stages = stages;
    el->n_channels = 1, el->channels = channels;
    el->n_placements = 2, el->placements = placements;
    el->n_segment_ids = 1, el->segment_ids = segments;
    el->n_excluded_segment_ids = 1, el->excluded_segment_ids = excluded;
    el->n_required_consents = 1, el->required_consents = consents;
    static Cxm__V1__ContactCap c1 = CXM__V1__CONTACT_CAP__INIT, c2 = CXM__V1__CONTACT_CAP__INIT;
    c1.max_contacts = 2, c1.period_ms = DAY_MS;
    c2.max_contacts = 5, c2.period_ms = 7 * DAY_MS;
    static Cxm__V1__ContactCap *caps[] = {&c1, &c2};
    e->experience_id = (char *)s->id;
    e->kind = s->kind;
    e->title = (char *)s->title;
    e->eligibility = el;
    e->value = s->value;
    e->weight = s->weight;
    e->disabled = s->disabled;
    e->n_contact_caps = 2;
    e->contact_caps = caps;
    e->pause_after_accept_ms = 3 * DAY_MS;
    e->pause_after_dismiss_ms = DAY_MS;
    e->created_at_unix_ms = 1; /* output only: replaced */
    return e;
}

/* Store the experience of s inside a writer's txn. */
static int put_spec(cxm_txn *t, cxm_arena *a, const exp_spec *s, int64_t now)
{
    Cxm__V1__Experience *stored;
    bool created;
    return xdb_experience_put(t, db, a, experience(a, s), now, &stored, &created);
}

typedef struct put_in {
    exp_spec spec;
    int64_t now;
    bool created;
    int64_t created_at, updated_at;
} put_in;

static int put_fn(cxm_txn *t, void *user)
{
    put_in *in = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__Experience *stored;
    int rc =
        xdb_experience_put(t, db, &a, experience(&a, &in->spec), in->now, &stored, &in->created);
    if (rc == 0) {
        in->created_at = stored->created_at_unix_ms;
        in->updated_at = stored->updated_at_unix_ms;
        CHECK_EQ_STR(stored->experience_id, in->spec.id);
        CHECK_EQ_STR(stored->eligibility->placements[1], "checkout");
    }
    cxm_arena_dispose(&a);
    return rc;
}

static put_in put(const char *id, int kind, const char *title, double weight, bool disabled,
                  int64_t now)
{
    put_in in = {{id, kind, title, 2.5, weight, disabled}, now, false, 0, 0};
    CHECK_EQ_INT(cxm_store_write(store, put_fn, &in), 0);
    return in;
}

typedef struct list_out {
    char ids[8][16];
    char titles[8][32];
    size_t n, stop_at;
} list_out;

static int list_one(const Cxm__V1__Experience *e, void *user)
{
    list_out *l = user;
    snprintf(l->ids[l->n], sizeof l->ids[0], "%s", e->experience_id);
    snprintf(l->titles[l->n], sizeof l->titles[0], "%s", e->title);
    return ++l->n == l->stop_at;
}

typedef struct list_in {
    const char *after;
    list_out out;
} list_in;

static int list_fn(cxm_txn *t, void *user)
{
    list_in *in = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int rc = xdb_experience_list(t, db, &a, in->after, list_one, &in->out);
    Cxm__V1__Experience *e;
    CHECK_EQ_INT(xdb_experience_get(t, db, &a, "nope", &e), CXM_ENOTFOUND);
    if (xdb_experience_get(t, db, &a, "a", &e) == 0)
        CHECK(e->eligibility && e->eligibility->n_required_consents == 1);
    cxm_arena_dispose(&a);
    return rc;
}

static void test_put_get_list(void)
{
    put_in b = put("b", OFFER, "b one", 0, false, 1000);
    CHECK(b.created && b.created_at == 1000 && b.updated_at == 1000);
    put_in a = put("a", CONTENT, "a one", 3, false, 2000);
    CHECK(a.created && a.created_at == 2000);
    put_in a2 = put("a", CONTENT, "a two", 3, false, 3000);
    CHECK(!a2.created);
    CHECK_EQ_INT(a2.created_at, 2000); /* kept from the first put */
    CHECK_EQ_INT(a2.updated_at, 3000);

    list_in l = {""};
    CHECK_EQ_INT(cxm_store_read(store, list_fn, &l), 0);
    CHECK_EQ_INT(l.out.n, 2);
    CHECK_EQ_STR(l.out.ids[0], "a");
    CHECK_EQ_STR(l.out.titles[0], "a two");
    CHECK_EQ_STR(l.out.ids[1], "b");
    list_in after = {"a"};
    CHECK_EQ_INT(cxm_store_read(store, list_fn, &after), 0);
    CHECK(after.out.n == 1 && strcmp(after.out.ids[0], "b") == 0);
    list_in stop = {"", {.stop_at = 1}};
    CHECK_EQ_INT(cxm_store_read(store, list_fn, &stop), 0);
    CHECK(stop.out.n == 1 && strcmp(stop.out.ids[0], "a") == 0);
}

/* ---- the catalogue in memory ---- */

static const xdb_exp *find(const char *id)
{
    return xdb_catalog_find(db, id, strlen(id));
}

static int check_compiled(cxm_txn *t, void *user)
{
    (void)user;
    CHECK_EQ_INT(xdb_catalog_lock(db, t), 0);
    const xdb_exp *a = find("a"), *b = find("b");
    CHECK(a && b && !find("c") && !find("ab"));
    if (a && b) {
        CHECK(a->idlen == 1 && a->kind == CONTENT && !a->disabled);
        CHECK(a->value == 2.5 && a->weight == 3 && b->weight == 1); /* 0 stored as 1 */
        CHECK_EQ_STR(a->msg->title, "a two");
        CHECK_EQ_INT(a->stages, 1u << 2 | 1u << 3);
        CHECK_EQ_INT(a->channels, 1u << 1);
        CHECK(a->nplacements == 2 && strcmp(a->placements[0], "home_banner") == 0);
        CHECK(a->nsegments == 1 && strcmp(a->segments[0], "vip") == 0);
        CHECK(a->nexcluded == 1 && strcmp(a->excluded_segments[0], "churned") == 0);
        CHECK(a->nconsents == 1 && strcmp(a->consents[0], "marketing") == 0);
        CHECK(a->ncaps == 2 && a->caps[0].max_contacts == 2 && a->caps[1].period_ms == 7 * DAY_MS);
        CHECK(a->pause_after_accept_ms == 3 * DAY_MS && a->pause_after_dismiss_ms == DAY_MS);
    }
    const xdb_exp *const *all;
    CHECK_EQ_INT(xdb_catalog_all(db, &all), 2);
    CHECK_EQ_INT(xdb_catalog_service_actions(db, &all), 0);
    CHECK_EQ_INT(xdb_catalog_gen(db), 3);
    xdb_catalog_unlock(db);
    return 0;
}

/* A read txn that began before a commit keeps its view of the store; the
 * catalogue it locks is at least as new. */
typedef struct seen {
    int disabled_a, kind_c, nall, nactions;
    uint64_t gen;
} seen;

static seen look(cxm_txn *t)
{
    seen s = {-1, -1, 0, 0, 0};
    int rc = xdb_catalog_lock(db, t);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        return s;
    const xdb_exp *a = find("a"), *c = find("c");
    if (a)
        s.disabled_a = a->disabled;
    if (c)
        s.kind_c = c->kind;
    const xdb_exp *const *v;
    s.nall = (int)xdb_catalog_all(db, &v);
    size_t idbytes = 0; /* every entry readable (ASan: none freed) */
    for (int i = 0; i < s.nall; i++)
        idbytes += strlen(v[i]->id) + strlen(v[i]->msg->title);
    CHECK(idbytes >= (size_t)s.nall * 2);
    s.nactions = (int)xdb_catalog_service_actions(db, &v);
    if (s.nactions == 1)
        CHECK_EQ_STR(v[0]->id, "c");
    s.gen = xdb_catalog_gen(db);
    xdb_catalog_unlock(db);
    return s;
}

static void test_catalog(void)
{
    CHECK_EQ_INT(cxm_store_read(store, check_compiled, NULL), 0);
    cxm_txn *before;
    CHECK_EQ_INT(cxm_store_read_begin(store, &before), 0);
    put("a", CONTENT, "a three", 3, true, 4000); /* disabled: replaces the entry */
    put("c", ACTION, "call back", 1, false, 4000);
    cxm_txn *after;
    CHECK_EQ_INT(cxm_store_read_begin(store, &after), 0);
    seen s = look(after);
    CHECK(s.disabled_a == 1 && s.kind_c == ACTION && s.nall == 3 && s.nactions == 1);
    CHECK_EQ_INT(s.gen, 5);
    seen old = look(before); /* no going back */
    CHECK(old.gen == 5 && old.disabled_a == 1);
    cxm_store_read_end(before);
    cxm_store_read_end(after);

    /* c becomes content: it leaves the service actions. */
    put("c", CONTENT, "call back", 1, false, 5000);
    CHECK_EQ_INT(cxm_store_read_begin(store, &after), 0);
    s = look(after);
    CHECK(s.kind_c == CONTENT && s.nactions == 0 && s.nall == 3 && s.gen == 6);
    cxm_store_read_end(after);

    /* A fresh catalogue (a restart) loads the whole store when it opens. */
    xdb *fresh;
    CHECK_EQ_INT(xdb_open(store, &fresh), 0);
    CHECK_EQ_INT(cxm_store_read_begin(store, &after), 0);
    CHECK_EQ_INT(xdb_catalog_lock(fresh, after), 0);
    const xdb_exp *const *all;
    CHECK_EQ_INT(xdb_catalog_all(fresh, &all), 3);
    const xdb_exp *a = xdb_catalog_find(fresh, "a", 1);
    CHECK(a && a->disabled && strcmp(a->msg->title, "a three") == 0);
    CHECK_EQ_INT(xdb_catalog_gen(fresh), 6);
    xdb_catalog_unlock(fresh);
    cxm_store_read_end(after);
    xdb_close(fresh);
}

/* Enough experiences to grow the hash several times; every one found. */
static int put_many(cxm_txn *t, void *user)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int rc = 0;
    for (int i = 0; i < 300 && rc == 0; i++) {
        char id[16];
        snprintf(id, sizeof id, "m%03d", i);
        exp_spec s = {id, i % 10 == 0 ? ACTION : OFFER, "many", i, 1, false};
        rc = put_spec(t, &a, &s, 9000);
    }
    cxm_arena_dispose(&a);
    (void)user;
    return rc;
}

static int find_many(cxm_txn *t, void *user)
{
    (void)user;
    CHECK_EQ_INT(xdb_catalog_lock(db, t), 0);
    int found = 0;
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof id, "m%03d", i);
        const xdb_exp *e = find(id);
        found += e && e->value == i;
    }
    CHECK_EQ_INT(found, 300);
    const xdb_exp *const *v;
    size_t n = xdb_catalog_all(db, &v);
    CHECK_EQ_INT(n, 303);
    int sorted = 1;
    for (size_t i = 1; i < n; i++) {
        double a = v[i - 1]->value * v[i - 1]->weight, b = v[i]->value * v[i]->weight;
        sorted &= a > b || (a == b && strcmp(v[i - 1]->id, v[i]->id) < 0);
    }
    CHECK(sorted);
    CHECK_EQ_STR(v[0]->id, "m299");
    CHECK_EQ_STR(v[n - 1]->id, "m000"); /* value 0 */
    n = xdb_catalog_service_actions(db, &v);
    CHECK_EQ_INT(n, 30);
    CHECK(n == 30 && strcmp(v[0]->id, "m290") == 0 && strcmp(v[29]->id, "m000") == 0);
    xdb_catalog_unlock(db);
    return 0;
}

static void test_catalog_many(void)
{
    CHECK_EQ_INT(cxm_store_write(store, put_many, NULL), 0);
    CHECK_EQ_INT(cxm_store_read(store, find_many, NULL), 0);
}

/* A stored experience that does not decode is left out of the catalogue
 * (the rest of the catch-up goes on) until an upsert repairs it. */
static int put_corrupt(cxm_txn *t, void *user)
{
    MDB_dbi exp;
    /* bad first: the catch-up goes on past it to b. */
    int rc = put_spec(t, user, &(exp_spec){"bad", OFFER, "bad", 1, 1, false}, 9500);
    if (rc == 0)
        rc = put_spec(t, user, &(exp_spec){"b", OFFER, "b two", 0, 1, false}, 9500);
    if (rc == 0)
        rc = cxm_store_dbi(store, "pers.exp", 0, &exp);
    return rc == 0 ? cxm_txn_put(t, exp, "bad", 3, "\xff\xff\xff", 3, 0) : rc;
}

static int put_repaired(cxm_txn *t, void *user)
{
    return put_spec(t, user, &(exp_spec){"bad", OFFER, "good", 1, 1, false}, 9600);
}

static void test_catalog_corrupt(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    cxm_txn *old, *now;
    CHECK_EQ_INT(cxm_store_read_begin(store, &old), 0);
    CHECK_EQ_INT(cxm_store_write(store, put_corrupt, &a), 0);
    CHECK_EQ_INT(cxm_store_read_begin(store, &now), 0);
    seen s = look(now);
    CHECK(s.nall == 303 && s.gen == 308);
    CHECK_EQ_INT(xdb_catalog_lock(db, old), 0);
    const xdb_exp *b = find("b");
    CHECK(!find("bad") && b && strcmp(b->msg->title, "b two") == 0);
    xdb_catalog_unlock(db);
    cxm_store_read_end(now);
    CHECK_EQ_INT(cxm_store_write(store, put_repaired, &a), 0);
    CHECK_EQ_INT(cxm_store_read_begin(store, &now), 0);
    s = look(now);
    CHECK(s.nall == 304 && s.gen == 309);
    CHECK_EQ_INT(xdb_catalog_lock(db, now), 0);
    const xdb_exp *e = find("bad");
    CHECK(e && strcmp(e->msg->title, "good") == 0);
    xdb_catalog_unlock(db);
    cxm_store_read_end(now);
    cxm_store_read_end(old);
    cxm_arena_dispose(&a);
}

/* ---- contacts ---- */

typedef struct rec_in {
    const char *customer, *exp;
    int outcome;
    int64_t at;
} rec_in;

static int record_fn(cxm_txn *t, void *user)
{
    rec_in *r = user;
    return xdb_contact_record(t, db, r->customer, r->exp, r->outcome, r->at);
}

static int record(const char *customer, const char *exp, int outcome, int64_t at)
{
    rec_in r = {customer, exp, outcome, at};
    return cxm_store_write(store, record_fn, &r);
}

typedef struct get_in {
    const char *customer, *exp;
    xdb_contact c;
} get_in;

static int contact_fn(cxm_txn *t, void *user)
{
    get_in *g = user;
    return xdb_contact_get(t, db, g->customer, g->exp, &g->c);
}

static xdb_contact contact(const char *customer, const char *exp)
{
    get_in g = {customer, exp};
    CHECK_EQ_INT(cxm_store_read(store, contact_fn, &g), 0);
    return g.c;
}

/* Caps: 2 per day and 5 per week; pauses 3 days after accept, 1 after
 * dismiss (as experience() builds them). */
static xdb_exp capped(void)
{
    xdb_exp e = {.id = "x", .idlen = 1, .ncaps = 2};
    e.caps[0] = (xdb_cap){2, DAY_MS};
    e.caps[1] = (xdb_cap){5, 7 * DAY_MS};
    e.pause_after_accept_ms = 3 * DAY_MS;
    e.pause_after_dismiss_ms = DAY_MS;
    return e;
}

#define T0 (100 * DAY_MS)

static void test_caps(void)
{
    xdb_exp e = capped();
    xdb_contact c = contact("cap", "x");
    CHECK(c.nshown == 0 && c.last_accept_ms == 0 && xdb_contact_allows(&c, &e, T0));
    CHECK_EQ_INT(record("cap", "x", IMPRESSION, T0), 0);
    CHECK_EQ_INT(record("cap", "x", IMPRESSION, T0 + HOUR_MS), 0);
    c = contact("cap", "x");
    CHECK_EQ_INT(c.nshown, 2);
    CHECK(!xdb_contact_allows(&c, &e, T0 + 2 * HOUR_MS));
    /* The window is (now - 1 day, now]: the first leaves it at exactly T0 + 1 day. */
    CHECK(!xdb_contact_allows(&c, &e, T0 + DAY_MS - 1));
    CHECK(xdb_contact_allows(&c, &e, T0 + DAY_MS));
    /* An impression in the future of `now` does not count yet. */
    CHECK(xdb_contact_allows(&c, &e, T0 - 1));
    /* Five in a week: the weekly cap holds though the daily one allows. */
    for (int d = 1; d <= 3; d++)
        CHECK_EQ_INT(record("cap", "x", IMPRESSION, T0 + d * DAY_MS + 2 * HOUR_MS), 0);
    c = contact("cap", "x");
    CHECK_EQ_INT(c.nshown, 5);
    CHECK(!xdb_contact_allows(&c, &e, T0 + 5 * DAY_MS));
    CHECK(!xdb_contact_allows(&c, &e, T0 + 7 * DAY_MS - 1));
    CHECK(xdb_contact_allows(&c, &e, T0 + 7 * DAY_MS));
}

static void test_pauses(void)
{
    xdb_exp e = capped();
    /* Clicks change nothing; accept pauses 3 days, dismiss 1 day. */
    CHECK_EQ_INT(record("cap", "y", CLICK, T0), 0);
    CHECK_EQ_INT(contact("cap", "y").nshown, 0);
    CHECK_EQ_INT(record("cap", "y", 0, T0), CXM_EINVAL);
    CHECK_EQ_INT(record("cap", "y", 9, T0), CXM_EINVAL);
    CHECK_EQ_INT(record("cap", "y", ACCEPT, T0), 0);
    xdb_contact c = contact("cap", "y");
    CHECK(c.last_accept_ms == T0 && c.last_dismiss_ms == 0);
    CHECK(!xdb_contact_allows(&c, &e, T0 + 3 * DAY_MS - 1));
    CHECK(xdb_contact_allows(&c, &e, T0 + 3 * DAY_MS));
    CHECK_EQ_INT(record("cap", "y", DISMISS, T0 + 10 * DAY_MS), 0);
    CHECK_EQ_INT(record("cap", "y", ACCEPT, T0 - DAY_MS), 0); /* older: kept the latest */
    c = contact("cap", "y");
    CHECK(c.last_accept_ms == T0 && c.last_dismiss_ms == T0 + 10 * DAY_MS);
    CHECK(!xdb_contact_allows(&c, &e, T0 + 11 * DAY_MS - 1));
    CHECK(xdb_contact_allows(&c, &e, T0 + 11 * DAY_MS));
    e.pause_after_dismiss_ms = 0; /* no pause configured: allowed at once */
    CHECK(xdb_contact_allows(&c, &e, T0 + 10 * DAY_MS));
}

static void test_many_impressions(void)
{
    /* 40 impressions, the odd ones written late: the latest 32 stay, in order. */
    for (int i = 0; i < 40; i += 2)
        CHECK_EQ_INT(record("many", "x", IMPRESSION, 1000 + i), 0);
    for (int i = 1; i < 40; i += 2)
        CHECK_EQ_INT(record("many", "x", IMPRESSION, 1000 + i), 0);
    xdb_contact c = contact("many", "x");
    CHECK_EQ_INT(c.nshown, XDB_SHOWN_MAX);
    int ordered = 1;
    for (int i = 0; i < XDB_SHOWN_MAX; i++)
        ordered &= c.shown_ms[i] == 1008 + i;
    CHECK(ordered);
    /* One older than everything remembered falls out at once. */
    CHECK_EQ_INT(record("many", "x", IMPRESSION, 10), 0);
    c = contact("many", "x");
    CHECK(c.nshown == XDB_SHOWN_MAX && c.shown_ms[0] == 1008 && c.shown_ms[31] == 1039);
    xdb_exp e = {.ncaps = 1, .caps = {{32, 32}}};
    CHECK(!xdb_contact_allows(&c, &e, 1039));
    CHECK(xdb_contact_allows(&c, &e, 1040)); /* 1008 left the window */
}

typedef struct reopen_in {
    xdb *fresh;
    xdb_contact x, y, none;
} reopen_in;

static int reopen_fn(cxm_txn *t, void *user)
{
    reopen_in *r = user;
    int rc = xdb_contact_get(t, r->fresh, "cap", "x", &r->x);
    if (rc == 0)
        rc = xdb_contact_get(t, r->fresh, "cap", "y", &r->y);
    if (rc == 0)
        rc = xdb_contact_get(t, r->fresh, "cap", "z", &r->none);
    return rc;
}

/* A restarted service knows every stored history (its contact filter is
 * filled from the table at open), and still answers "never" for the rest. */
static void test_contact_reopen(void)
{
    reopen_in r;
    memset(&r.none, 0xff, sizeof r.none);
    CHECK_EQ_INT(xdb_open(store, &r.fresh), 0);
    CHECK_EQ_INT(cxm_store_read(store, reopen_fn, &r), 0);
    CHECK(r.x.nshown == 5 && r.x.shown_ms[4] == 103 * DAY_MS + 2 * HOUR_MS);
    CHECK(r.y.nshown == 0 && r.y.last_accept_ms == 100 * DAY_MS);
    CHECK(r.none.nshown == 0 && r.none.last_accept_ms == 0 && r.none.last_dismiss_ms == 0);
    xdb_close(r.fresh);
}

/* ---- signals ---- */

typedef struct fb_ev {
    const char *customer;
    int kind, score, category, label;
    double sentiment;
    bool strongly_negative;
    int64_t answered, occurred;
} fb_ev;

/* ev (its payload set) about customer, applied. */
static int apply(cxm_txn *t, Cxm__V1__Event *ev, const char *customer, int64_t occurred)
{
    ev->customer_id = (char *)customer;
    ev->occurred_at_unix_ms = occurred;
    return xdb_signals_apply(t, db, ev);
}

static int apply_feedback(cxm_txn *t, void *user)
{
    const fb_ev *f = user;
    Cxm__V1__FeedbackReceived fr = CXM__V1__FEEDBACK_RECEIVED__INIT;
    fr.kind = f->kind;
    fr.score = f->score;
    fr.nps_category = f->category;
    fr.sentiment = f->label;
    fr.sentiment_score = f->sentiment;
    fr.strongly_negative = f->strongly_negative;
    fr.answered_at_unix_ms = f->answered;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_FEEDBACK_RECEIVED;
    ev.feedback_received = &fr;
    return apply(t, &ev, f->customer, f->occurred);
}

typedef struct fu_ev {
    const char *customer;
    uint32_t open;
} fu_ev;

static int apply_follow_up(cxm_txn *t, void *user)
{
    const fu_ev *f = user;
    Cxm__V1__FollowUpChanged fu = CXM__V1__FOLLOW_UP_CHANGED__INIT;
    fu.follow_up_id = "fu1";
    fu.state = CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_OPEN;
    fu.open_follow_ups = f->open;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_FOLLOW_UP_CHANGED;
    ev.follow_up_changed = &fu;
    return apply(t, &ev, f->customer, 0);
}

/* An event of another kind changes nothing. */
static int apply_other(cxm_txn *t, void *user)
{
    Cxm__V1__StageChanged sc = CXM__V1__STAGE_CHANGED__INIT;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED;
    ev.stage_changed = &sc;
    return apply(t, &ev, user, 0);
}

typedef struct sig_in {
    const char *customer;
    xdb_signals s;
} sig_in;

static int signals_fn(cxm_txn *t, void *user)
{
    sig_in *in = user;
    return xdb_signals_get(t, db, in->customer, &in->s);
}

static xdb_signals signals(const char *customer)
{
    sig_in in = {customer};
    CHECK_EQ_INT(cxm_store_read(store, signals_fn, &in), 0);
    return in.s;
}

static void feedback(fb_ev f)
{
    CHECK_EQ_INT(cxm_store_write(store, apply_feedback, &f), 0);
}

static void follow_up(const char *customer, uint32_t open)
{
    fu_ev f = {customer, open};
    CHECK_EQ_INT(cxm_store_write(store, apply_follow_up, &f), 0);
}

enum {
    NPS = CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS,
    CSAT = CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT,
    NEG = CXM__V1__SENTIMENT_LABEL__SENTIMENT_LABEL_NEGATIVE,
    POS = CXM__V1__SENTIMENT_LABEL__SENTIMENT_LABEL_POSITIVE,
};

static void test_signals(void)
{
    xdb_signals s = signals("sig");
    CHECK(s.last_detractor_ms == 0 && s.last_strong_negative_ms == 0 && s.open_follow_ups == 0);
    feedback((fb_ev){"sig", NPS, 8, 0, POS, 0.6, false, 5000, 4000}); /* passive, happy */
    feedback((fb_ev){"sig", CSAT, 2, 0, 0, 0, false, 5000, 0});       /* not NPS */
    feedback((fb_ev){"sig", NPS, 7, 0, NEG, -0.4, false, 5000, 0});   /* mildly negative */
    CHECK_EQ_INT(cxm_store_write(store, apply_other, "sig"), 0);
    s = signals("sig");
    CHECK(s.last_detractor_ms == 0 && s.last_strong_negative_ms == 0);

    feedback((fb_ev){"sig", NPS, 6, 0, 0, 0, false, 6000, 1});       /* detractor */
    feedback((fb_ev){"sig", NPS, 9, 0, NEG, -0.5, false, 7000, 1});  /* negative comment */
    feedback((fb_ev){"sig", NPS, 0, 0, 0, 0, false, 0, 8000});       /* occurred time */
    feedback((fb_ev){"flag", CSAT, 1, 0, NEG, -0.2, true, 6500, 1}); /* policy said so */
    CHECK_EQ_INT(signals("flag").last_strong_negative_ms, 6500);
    s = signals("sig");
    CHECK_EQ_INT(s.last_detractor_ms, 8000);
    CHECK_EQ_INT(s.last_strong_negative_ms, 7000);
    feedback((fb_ev){"sig", NPS, 3, 0, 0, 0, false, 2000, 1}); /* older: the latest stays */
    CHECK_EQ_INT(signals("sig").last_detractor_ms, 8000);
    feedback((fb_ev){"cat", CSAT, 4, CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR, 0, 0, false,
                     300, 1});
    CHECK_EQ_INT(signals("cat").last_detractor_ms, 300);

    follow_up("sig", 2);
    CHECK_EQ_INT(signals("sig").open_follow_ups, 2);
    follow_up("sig", 0);
    s = signals("sig");
    CHECK(s.open_follow_ups == 0 && s.last_detractor_ms == 8000);
    follow_up("", 3); /* no customer: nothing, and no error */
}

/* ---- claims ---- */

typedef struct claim_in {
    const char *id, *customer;
    bool outcome, dup;
} claim_in;

static int claim_fn(cxm_txn *t, void *user)
{
    claim_in *c = user;
    return c->outcome ? xdb_outcome_claim(t, db, c->id, c->customer, &c->dup)
                      : xdb_interaction_claim(t, db, c->id, c->customer, &c->dup);
}

static bool claim(const char *id, const char *customer, bool outcome)
{
    claim_in c = {id, customer, outcome, true};
    CHECK_EQ_INT(cxm_store_write(store, claim_fn, &c), 0);
    return c.dup;
}

static void test_claims(void)
{
    CHECK(!claim("o1", "ann", true));
    CHECK(claim("o1", "ann", true));
    CHECK(claim("o1", "bob", true));   /* the id is taken whoever asks */
    CHECK(!claim("o1", "ann", false)); /* interactions are another space */
    CHECK(claim("o1", "ann", false));
    CHECK(!claim("o2", "ann", true));
    CHECK(!claim("i1", "bob", false));
}

/* ---- merges and erasure ---- */

typedef struct merge_in {
    const char *source, *target;
} merge_in;

static int merge_fn(cxm_txn *t, void *user)
{
    merge_in *m = user;
    return xdb_merge(t, db, m->source, m->target);
}

static void test_merge(void)
{
    feedback((fb_ev){"src", NPS, 2, 0, 0, 0, false, 9000, 1});
    follow_up("src", 1);
    feedback((fb_ev){"dst", NPS, 9, 0, NEG, -0.9, false, 8000, 1});
    feedback((fb_ev){"dst", NPS, 1, 0, 0, 0, false, 5000, 1});
    follow_up("dst", 2);
    CHECK_EQ_INT(record("src", "x", IMPRESSION, 100), 0);
    CHECK_EQ_INT(record("src", "x", IMPRESSION, 300), 0);
    CHECK_EQ_INT(record("src", "x", ACCEPT, 400), 0);
    CHECK_EQ_INT(record("dst", "x", IMPRESSION, 200), 0);
    CHECK_EQ_INT(record("dst", "x", DISMISS, 250), 0);
    CHECK_EQ_INT(record("src", "z", IMPRESSION, 50), 0);
    merge_in m = {"src", "dst"};
    CHECK_EQ_INT(cxm_store_write(store, merge_fn, &m), 0);

    xdb_signals s = signals("dst");
    CHECK(s.last_detractor_ms == 9000 && s.last_strong_negative_ms == 8000);
    CHECK_EQ_INT(s.open_follow_ups, 3);
    s = signals("src");
    CHECK(s.last_detractor_ms == 0 && s.open_follow_ups == 0);
    xdb_contact c = contact("dst", "x");
    CHECK(c.nshown == 3 && c.shown_ms[0] == 100 && c.shown_ms[1] == 200 && c.shown_ms[2] == 300);
    CHECK(c.last_accept_ms == 400 && c.last_dismiss_ms == 250);
    c = contact("dst", "z");
    CHECK(c.nshown == 1 && c.shown_ms[0] == 50);
    CHECK_EQ_INT(contact("src", "x").nshown, 0);
    CHECK_EQ_INT(contact("src", "z").nshown, 0);
    /* Merging again, or into oneself, changes nothing. */
    CHECK_EQ_INT(cxm_store_write(store, merge_fn, &m), 0);
    merge_in self = {"dst", "dst"};
    CHECK_EQ_INT(cxm_store_write(store, merge_fn, &self), 0);
    CHECK_EQ_INT(contact("dst", "x").nshown, 3);
    CHECK_EQ_INT(signals("dst").open_follow_ups, 3);
}

typedef struct erase_in {
    const char *customer;
    uint64_t records;
} erase_in;

static int erase_fn(cxm_txn *t, void *user)
{
    erase_in *e = user;
    e->records = 99;
    return xdb_erase(t, db, e->customer, &e->records);
}

static uint64_t erase(const char *customer)
{
    erase_in e = {customer, 0};
    CHECK_EQ_INT(cxm_store_write(store, erase_fn, &e), 0);
    return e.records;
}

static void test_erase(void)
{
    /* ann: two outcome claims and one interaction claim (2 rows each), no
     * signals, no contacts. */
    CHECK_EQ_INT(erase("ann"), 6);
    CHECK(!claim("o1", "carl", true)); /* the ids are free again */
    CHECK(!claim("o1", "carl", false));
    CHECK(claim("i1", "carl", false)); /* bob's stays */
    /* dst: signals 1, contacts x and z 2, one interaction claim 2. */
    CHECK(!claim("i9", "dst", false));
    CHECK_EQ_INT(erase("dst"), 5);
    CHECK_EQ_INT(signals("dst").open_follow_ups, 0);
    CHECK_EQ_INT(contact("dst", "x").nshown, 0);
    CHECK_EQ_INT(contact("dst", "x").last_accept_ms, 0);
    CHECK_EQ_INT(erase("dst"), 0);               /* nothing left */
    CHECK_EQ_INT(contact("cap", "x").nshown, 5); /* another customer's rows stay */
    CHECK_EQ_INT(signals("sig").last_detractor_ms, 8000);
}

/* ---- model infos ---- */

typedef struct model_in {
    uint64_t version;
    Cxm__V1__ModelInfo *got;
    cxm_arena *a;
} model_in;

static int model_put_fn(cxm_txn *t, void *user)
{
    model_in *in = user;
    Cxm__V1__ModelMetrics mm = CXM__V1__MODEL_METRICS__INIT;
    mm.k = 10;
    mm.ndcg_at_k = 0.41;
    Cxm__V1__ModelInfo m = CXM__V1__MODEL_INFO__INIT;
    m.version = in->version;
    m.state = CXM__V1__MODEL_STATE__MODEL_STATE_SERVING;
    m.algorithm = CXM__V1__ALGORITHM__ALGORITHM_EASE;
    m.metrics = &mm;
    m.trigger = "rpc";
    return xdb_model_put(t, db, in->a, &m);
}

static int model_get_fn(cxm_txn *t, void *user)
{
    model_in *in = user;
    return xdb_model_get(t, db, in->a, in->version, &in->got);
}

static void test_models(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    model_in in = {7, NULL, &a};
    CHECK_EQ_INT(cxm_store_read(store, model_get_fn, &in), CXM_ENOTFOUND);
    CHECK_EQ_INT(cxm_store_write(store, model_put_fn, &in), 0);
    CHECK_EQ_INT(cxm_store_read(store, model_get_fn, &in), 0);
    CHECK(in.got && in.got->version == 7 && in.got->metrics && in.got->metrics->ndcg_at_k == 0.41);
    if (in.got)
        CHECK_EQ_STR(in.got->trigger, "rpc");
    in.version = 8;
    CHECK_EQ_INT(cxm_store_read(store, model_get_fn, &in), CXM_ENOTFOUND);
    cxm_arena_dispose(&a);
}

/* ---- readers while a writer upserts ---- */

static _Atomic int writer_done;

/* What one reader saw; checked by the main thread (check.h counts are not
 * thread-safe). */
typedef struct reader_out {
    uint64_t last;
    int passes, torn, backwards, failed;
} reader_out;

/* Each lock sees a whole entry: "live" has value == weight whatever the
 * version, and the generation never goes back. */
static int reader_pass(cxm_txn *t, void *user)
{
    reader_out *o = user;
    int rc = xdb_catalog_lock(db, t);
    if (rc != 0)
        return rc;
    const xdb_exp *e = find("live");
    o->torn += e && (e->value != e->weight || e->msg->value != e->value);
    uint64_t gen = xdb_catalog_gen(db);
    o->backwards += gen < o->last;
    o->last = gen;
    xdb_catalog_unlock(db);
    return 0;
}

static void *reader(void *arg)
{
    reader_out *o = arg;
    while (!writer_done || o->passes < 100) {
        o->failed += cxm_store_read(store, reader_pass, o) != 0;
        o->passes++;
    }
    return NULL;
}

static int put_live(cxm_txn *t, void *user)
{
    int i = *(int *)user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    exp_spec s = {"live", OFFER, "live", 1 + i, 1 + i, false};
    int rc = put_spec(t, &a, &s, 10000 + i);
    cxm_arena_dispose(&a);
    return rc;
}

static int last_live(cxm_txn *t, void *user)
{
    (void)user;
    CHECK_EQ_INT(xdb_catalog_lock(db, t), 0);
    const xdb_exp *e = find("live");
    CHECK(e && e->value == 50);
    xdb_catalog_unlock(db);
    return 0;
}

static void test_concurrent(void)
{
    pthread_t th[2];
    reader_out out[2] = {{0}};
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, reader, &out[i]) == 0);
    for (int i = 0; i < 50; i++)
        CHECK_EQ_INT(cxm_store_write(store, put_live, &i), 0);
    writer_done = 1;
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(out[i].passes >= 100);
        CHECK_EQ_INT(out[i].torn + out[i].backwards + out[i].failed, 0);
    }
    CHECK_EQ_INT(cxm_store_read(store, last_live, NULL), 0);
}

/* ---- bench: what one Recommend asks of xdb ---- */

#define BENCH_ITEMS 10000
#define BENCH_FINDS 300

static int bench_put(cxm_txn *t, void *user)
{
    (void)user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int rc = 0;
    for (int i = 0; i < BENCH_ITEMS && rc == 0; i++) {
        char id[16];
        snprintf(id, sizeof id, "movie_%d", i);
        exp_spec s = {id, i % 50 == 0 ? ACTION : CONTENT, "a movie", i % 7, 1, false};
        rc = put_spec(t, &a, &s, 1000);
        cxm_arena_reset(&a);
        /* Every tenth item has a contact history with bench_cust. */
        if (rc == 0 && i % 10 == 0)
            rc = xdb_contact_record(t, db, "bench_cust", id, IMPRESSION, 500);
    }
    cxm_arena_dispose(&a);
    return rc;
}

typedef struct bench_in {
    const char *ids[BENCH_FINDS];
    int found, allowed;
    bool finds_only;
} bench_in;

/* One decision's worth: catch up and lock, find each candidate, read its
 * contact history and check its caps. */
static int bench_decide(cxm_txn *t, void *user)
{
    bench_in *b = user;
    int rc = xdb_catalog_lock(db, t);
    if (rc != 0)
        return rc;
    xdb_signals sig;
    rc = xdb_signals_get(t, db, "bench_cust", &sig);
    for (int i = 0; i < BENCH_FINDS && rc == 0; i++) {
        const xdb_exp *e = xdb_catalog_find(db, b->ids[i], strlen(b->ids[i]));
        if (!e)
            continue;
        b->found++;
        if (b->finds_only)
            continue;
        xdb_contact c;
        rc = xdb_contact_get(t, db, "bench_cust", e->id, &c);
        b->allowed += rc == 0 && xdb_contact_allows(&c, e, 2000);
    }
    xdb_catalog_unlock(db);
    return rc;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* the machine is shared */
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void bench(void)
{
    double t0 = now_us();
    CHECK_EQ_INT(cxm_store_write(store, bench_put, NULL), 0);
    printf("upsert %d experiences in one txn: %.1f ms\n", BENCH_ITEMS, (now_us() - t0) / 1e3);
    static char names[BENCH_FINDS][16];
    bench_in b = {0};
    for (int i = 0; i < BENCH_FINDS; i++) {
        snprintf(names[i], sizeof names[i], "movie_%d", (i * 7919) % BENCH_ITEMS);
        b.ids[i] = names[i];
    }
    t0 = now_us();
    CHECK_EQ_INT(cxm_store_read(store, bench_decide, &b), 0);
    printf("first lock (loads %d experiences) + %d finds: %.1f ms\n", BENCH_ITEMS, BENCH_FINDS,
           (now_us() - t0) / 1e3);
    const int rounds = 2000;
    b.found = b.allowed = 0;
    t0 = now_us();
    for (int r = 0; r < rounds; r++)
        CHECK_EQ_INT(cxm_store_read(store, bench_decide, &b), 0);
    double per = (now_us() - t0) / rounds;
    CHECK_EQ_INT(b.found, rounds * BENCH_FINDS);
    CHECK(b.allowed > 0 && b.allowed <= b.found);
    printf("decision (read txn, lock, signals, %d finds + contact gets + caps): %.2f us, "
           "%.0f ns per candidate\n",
           BENCH_FINDS, per, per * 1e3 / BENCH_FINDS);
    b.finds_only = true;
    t0 = now_us();
    for (int r = 0; r < rounds; r++)
        CHECK_EQ_INT(cxm_store_read(store, bench_decide, &b), 0);
    per = (now_us() - t0) / rounds;
    printf("the same with finds only: %.2f us, %.0f ns per find\n", per, per * 1e3 / BENCH_FINDS);
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/test_xdb.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cxm_store_opts opts = {.nosync = true};
    CHECK_EQ_INT(cxm_store_open(dir, &opts, &store), 0);
    CHECK_EQ_INT(xdb_open(store, &db), 0);
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        bench();
        xdb_close(db);
        cxm_store_close(store);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
        return check_report();
    }
    test_put_get_list();
    test_catalog();
    test_catalog_many();
    test_catalog_corrupt();
    test_caps();
    test_pauses();
    test_many_impressions();
    test_contact_reopen();
    test_signals();
    test_claims();
    test_merge();
    test_erase();
    test_models();
    test_concurrent();
    xdb_close(db);
    cxm_store_close(store);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_report();
}
