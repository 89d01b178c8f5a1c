/*
 * test_replica.c - the replica of other services' facts (cxm/replica.h) on
 * a real LMDB store: each event type applied and read back, sorted lists
 * and their searches, a revoked consent, merges and unmerges with the root
 * following them, erasure counts, the limits (with their one warning) and
 * events that are bad or not the replica's, which change nothing.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/replica.h"

static cxm_store *store;
static cxm_replica *rep;

/* ---- events ---- */

typedef struct ev_buf {
    Cxm__V1__Event ev;
    Cxm__V1__SegmentMembershipChanged seg;
    Cxm__V1__ConsentChanged cc;
    Cxm__V1__Consent consent;
    Cxm__V1__StageChanged st;
    Cxm__V1__CustomerMerged m;
    Cxm__V1__CustomerUnmerged u;
} ev_buf;

static Cxm__V1__Event *ev_init(ev_buf *b, const char *customer)
{
    static uint64_t seq;
    memset(b, 0, sizeof *b);
    cxm__v1__event__init(&b->ev);
    b->ev.customer_id = (char *)customer;
    b->ev.sequence = ++seq;
    return &b->ev;
}

static Cxm__V1__Event *ev_segments(ev_buf *b, const char *customer, char **in, size_t nin,
                                   char **out, size_t nout)
{
    Cxm__V1__Event *ev = ev_init(b, customer);
    cxm__v1__segment_membership_changed__init(&b->seg);
    b->seg.entered_segment_ids = in;
    b->seg.n_entered_segment_ids = nin;
    b->seg.left_segment_ids = out;
    b->seg.n_left_segment_ids = nout;
    ev->payload_case = CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED;
    ev->segment_membership_changed = &b->seg;
    return ev;
}

static Cxm__V1__Event *ev_consent(ev_buf *b, const char *customer, const char *scope,
                                  Cxm__V1__ConsentState state)
{
    Cxm__V1__Event *ev = ev_init(b, customer);
    cxm__v1__consent_changed__init(&b->cc);
    cxm__v1__consent__init(&b->consent);
    b->consent.scope = (char *)scope;
    b->consent.state = state;
    b->cc.consent = &b->consent;
    ev->payload_case = CXM__V1__EVENT__PAYLOAD_CONSENT_CHANGED;
    ev->consent_changed = &b->cc;
    return ev;
}

static Cxm__V1__Event *ev_stage(ev_buf *b, const char *customer, int stage, int64_t since)
{
    Cxm__V1__Event *ev = ev_init(b, customer);
    cxm__v1__stage_changed__init(&b->st);
    b->st.to_stage = stage;
    b->st.since_unix_ms = since;
    ev->payload_case = CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED;
    ev->stage_changed = &b->st;
    return ev;
}

static Cxm__V1__Event *ev_merge(ev_buf *b, const char *source, const char *target, bool undo)
{
    Cxm__V1__Event *ev = ev_init(b, target);
    if (undo) {
        cxm__v1__customer_unmerged__init(&b->u);
        b->u.source_customer_id = (char *)source;
        b->u.target_customer_id = (char *)target;
        ev->payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_UNMERGED;
        ev->customer_unmerged = &b->u;
    } else {
        cxm__v1__customer_merged__init(&b->m);
        b->m.source_customer_id = (char *)source;
        b->m.target_customer_id = (char *)target;
        ev->payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED;
        ev->customer_merged = &b->m;
    }
    return ev;
}

static int apply_fn(cxm_txn *t, void *user)
{
    return cxm_replica_apply(t, rep, user);
}

static int apply(const Cxm__V1__Event *ev)
{
    return cxm_store_write(store, apply_fn, (void *)ev);
}

#define GRANTED CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED
#define REVOKED CXM__V1__CONSENT_STATE__CONSENT_STATE_REVOKED
#define DENIED CXM__V1__CONSENT_STATE__CONSENT_STATE_DENIED
#define CONSIDERATION CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION
#define PURCHASE CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE
#define USE CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE

/* ---- reading back ---- */

/* One customer's facts as a line: "stage@since seg,seg|cons,cons", or
 * "unknown"; the root of the id in root. */
typedef struct view {
    const char *id;
    char line[2048];
    char root[128];
    int rc;
} view;

static void join(char *out, size_t cap, const char *const *arr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        strncat(out, arr[i], cap - strlen(out) - 1);
        if (i + 1 < n)
            strncat(out, ",", cap - strlen(out) - 1);
    }
}

static int view_fn(cxm_txn *t, void *user)
{
    view *v = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    const char *root;
    cxm_replica_customer c;
    int rc = cxm_replica_root(t, rep, &a, v->id, &root);
    if (rc == 0) {
        snprintf(v->root, sizeof v->root, "%s", root);
        rc = cxm_replica_get(t, rep, &a, v->id, &c);
    }
    if (rc == 0 && !c.known)
        snprintf(v->line, sizeof v->line, "unknown");
    if (rc == 0 && c.known) {
        snprintf(v->line, sizeof v->line, "%d@%lld ", c.stage, (long long)c.stage_since);
        join(v->line, sizeof v->line, c.segments, c.nsegments);
        strcat(v->line, "|");
        join(v->line, sizeof v->line, c.consents, c.nconsents);
    }
    cxm_arena_dispose(&a);
    return rc;
}

static view last; /* of the latest facts() */

static const char *facts(const char *id)
{
    memset(&last, 0, sizeof last);
    last.id = id;
    last.rc = cxm_store_read(store, view_fn, &last);
    return last.rc == 0 ? last.line : "error";
}

static const char *root_of(const char *id)
{
    facts(id);
    return last.root;
}

/* ---- the tests ---- */

static void test_facts(void)
{
    ev_buf b;
    CHECK_EQ_STR(facts("ann"), "unknown");
    CHECK_EQ_INT(apply(ev_stage(&b, "ann", CONSIDERATION, 1000)), 0);
    CHECK_EQ_STR(facts("ann"), "2@1000 |");
    CHECK_EQ_INT(apply(ev_stage(&b, "ann", USE, 500)), 0); /* older: ignored */
    CHECK_EQ_STR(facts("ann"), "2@1000 |");
    Cxm__V1__Event *ev = ev_stage(&b, "ann", PURCHASE, 0); /* since 0: the event's time */
    ev->occurred_at_unix_ms = 2000;
    CHECK_EQ_INT(apply(ev), 0);
    CHECK_EQ_STR(facts("ann"), "3@2000 |");

    char *in[] = {"vip", "gold", "a", "vip", ""};
    CHECK_EQ_INT(apply(ev_segments(&b, "ann", in, 5, NULL, 0)), 0);
    CHECK_EQ_STR(facts("ann"), "3@2000 a,gold,vip|");
    char *in2[] = {"b"}, *out2[] = {"gold", "never"};
    CHECK_EQ_INT(apply(ev_segments(&b, "ann", in2, 1, out2, 2)), 0);
    CHECK_EQ_STR(facts("ann"), "3@2000 a,b,vip|");

    CHECK_EQ_INT(apply(ev_consent(&b, "ann", "marketing_email", GRANTED)), 0);
    CHECK_EQ_INT(apply(ev_consent(&b, "ann", "analytics", GRANTED)), 0);
    CHECK_EQ_INT(apply(ev_consent(&b, "ann", "personalisation", GRANTED)), 0);
    CHECK_EQ_INT(apply(ev_consent(&b, "ann", "sms", DENIED)), 0);
    CHECK_EQ_STR(facts("ann"), "3@2000 a,b,vip|analytics,marketing_email,personalisation");
    CHECK_EQ_INT(apply(ev_consent(&b, "ann", "marketing_email", REVOKED)), 0);
    CHECK_EQ_STR(facts("ann"), "3@2000 a,b,vip|analytics,personalisation");
}

static int search_fn(cxm_txn *t, void *user)
{
    (void)user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    cxm_replica_customer c, none;
    CHECK_EQ_INT(cxm_replica_get(t, rep, &a, "ann", &c), 0);
    CHECK(cxm_replica_in_segment(&c, "a") && cxm_replica_in_segment(&c, "b"));
    CHECK(cxm_replica_in_segment(&c, "vip") && !cxm_replica_in_segment(&c, "gold"));
    CHECK(!cxm_replica_in_segment(&c, "") && !cxm_replica_in_segment(&c, "zzz"));
    CHECK(cxm_replica_granted(&c, "analytics") && cxm_replica_granted(&c, "personalisation"));
    CHECK(!cxm_replica_granted(&c, "marketing_email") && !cxm_replica_granted(&c, "sms"));
    CHECK_EQ_INT(cxm_replica_get(t, rep, &a, "nobody", &none), 0);
    CHECK(!none.known && none.nsegments == 0 && none.nconsents == 0 && none.stage == 0);
    CHECK(!cxm_replica_in_segment(&none, "vip") && !cxm_replica_granted(&none, "analytics"));
    cxm_arena_dispose(&a);
    return 0;
}

static void test_merge(void)
{
    ev_buf b;
    char *bs[] = {"x", "vip"};
    CHECK_EQ_INT(apply(ev_segments(&b, "bob", bs, 2, NULL, 0)), 0);
    CHECK_EQ_INT(apply(ev_consent(&b, "bob", "sms", GRANTED)), 0);
    CHECK_EQ_INT(apply(ev_stage(&b, "bob", USE, 3000)), 0);
    CHECK_EQ_INT(apply(ev_merge(&b, "bob", "ann", false)), 0);
    /* United lists, bob's later stage. */
    CHECK_EQ_STR(facts("ann"), "4@3000 a,b,vip,x|analytics,personalisation,sms");
    CHECK_EQ_STR(facts("bob"), "unknown");
    CHECK_EQ_STR(root_of("bob"), "ann");
    CHECK_EQ_STR(root_of("ann"), "ann");
    /* A late fact about the merged-away id lands on the survivor. */
    char *late[] = {"late"};
    CHECK_EQ_INT(apply(ev_segments(&b, "bob", late, 1, NULL, 0)), 0);
    CHECK_EQ_STR(facts("ann"), "4@3000 a,b,late,vip,x|analytics,personalisation,sms");
    /* An earlier stage does not win a merge. */
    CHECK_EQ_INT(apply(ev_stage(&b, "cy", CONSIDERATION, 10)), 0);
    CHECK_EQ_INT(apply(ev_merge(&b, "cy", "ann", false)), 0);
    CHECK_EQ_STR(facts("ann"), "4@3000 a,b,late,vip,x|analytics,personalisation,sms");
    CHECK_EQ_INT(apply(ev_merge(&b, "ann", "ann", false)), 0); /* into itself: nothing */
    CHECK_EQ_STR(root_of("ann"), "ann");

    CHECK_EQ_INT(apply(ev_merge(&b, "bob", "ann", true)), 0);
    CHECK_EQ_STR(root_of("bob"), "bob");
    CHECK_EQ_STR(facts("bob"), "unknown"); /* until profile re-announces */
    CHECK_EQ_INT(apply(ev_consent(&b, "bob", "sms", GRANTED)), 0);
    CHECK_EQ_STR(facts("bob"), "0@0 |sms");
    CHECK_EQ_STR(root_of("cy"), "ann");
}

typedef struct erase_in {
    const char *id;
    uint64_t count;
} erase_in;

static int erase_fn(cxm_txn *t, void *user)
{
    erase_in *e = user;
    return cxm_replica_erase(t, rep, e->id, &e->count);
}

static uint64_t erase(const char *id)
{
    erase_in e = {id, 99};
    CHECK_EQ_INT(cxm_store_write(store, erase_fn, &e), 0);
    return e.count;
}

static void test_erase(void)
{
    ev_buf b;
    /* ann: her record, cy's alias and group row. */
    CHECK_EQ_INT(erase("ann"), 3);
    CHECK_EQ_STR(facts("ann"), "unknown");
    CHECK_EQ_STR(root_of("cy"), "cy");
    CHECK_EQ_INT(erase("ann"), 0);
    CHECK_EQ_STR(facts("bob"), "0@0 |sms"); /* another customer stays */
    /* A merged-away id erased alone: its alias and group row. */
    CHECK_EQ_INT(apply(ev_merge(&b, "dan", "eve", false)), 0);
    CHECK_EQ_INT(apply(ev_stage(&b, "eve", USE, 5)), 0);
    CHECK_EQ_INT(erase("dan"), 2);
    CHECK_EQ_STR(root_of("dan"), "dan");
    CHECK_EQ_INT(erase("eve"), 1);
    CHECK_EQ_INT(erase(""), 0);
}

/* A survivor merged away in turn: the root follows both hops, and the
 * erasure cascade (the survivor, then each merged id) leaves nothing. */
static void test_chain(void)
{
    ev_buf b;
    char *s1[] = {"one"}, *s2[] = {"two"};
    CHECK_EQ_INT(apply(ev_segments(&b, "m1", s1, 1, NULL, 0)), 0);
    CHECK_EQ_INT(apply(ev_segments(&b, "m2", s2, 1, NULL, 0)), 0);
    CHECK_EQ_INT(apply(ev_merge(&b, "m1", "m2", false)), 0);
    CHECK_EQ_INT(apply(ev_merge(&b, "m2", "m3", false)), 0);
    CHECK_EQ_STR(root_of("m1"), "m3");
    CHECK_EQ_STR(facts("m3"), "0@0 one,two|");
    CHECK_EQ_INT(erase("m3"), 3); /* record, m2's alias and group row */
    CHECK_EQ_INT(erase("m2"), 2); /* m1's alias and group row */
    CHECK_EQ_INT(erase("m1"), 0);
    CHECK_EQ_STR(root_of("m1"), "m1");
    CHECK_EQ_STR(facts("m1"), "unknown");
}

/* Lines of fd 2 while fn runs, counted for `needle`. */
static int count_log(void (*fn)(void), const char *needle)
{
    char path[] = "/tmp/test_replica_log.XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    fflush(stderr);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[8192] = "";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    int count = 0;
    for (const char *p = buf; (p = strstr(p, needle)); p++)
        count++;
    return count;
}

static void over_limits(void)
{
    ev_buf b;
    static char names[300][8];
    static char *ids[300];
    for (int i = 0; i < 300; i++) {
        snprintf(names[i], sizeof names[i], "s%03d", i);
        ids[i] = names[i];
    }
    CHECK_EQ_INT(apply(ev_segments(&b, "fay", ids, 300, NULL, 0)), 0);
    for (int i = 0; i < 70; i++)
        CHECK_EQ_INT(apply(ev_consent(&b, "fay", names[i], GRANTED)), 0);
}

static int limits_fn(cxm_txn *t, void *user)
{
    (void)user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    cxm_replica_customer c;
    CHECK_EQ_INT(cxm_replica_get(t, rep, &a, "fay", &c), 0);
    CHECK_EQ_INT(c.nsegments, CXM_REPLICA_SEGMENTS_MAX);
    CHECK_EQ_INT(c.nconsents, CXM_REPLICA_CONSENTS_MAX);
    /* The first ones are kept. */
    CHECK(cxm_replica_in_segment(&c, "s000") && cxm_replica_in_segment(&c, "s255"));
    CHECK(!cxm_replica_in_segment(&c, "s256") && !cxm_replica_in_segment(&c, "s299"));
    CHECK(cxm_replica_granted(&c, "s063") && !cxm_replica_granted(&c, "s064"));
    for (size_t i = 1; i < c.nsegments; i++)
        CHECK(strcmp(c.segments[i - 1], c.segments[i]) < 0);
    cxm_arena_dispose(&a);
    return 0;
}

static void test_limits(void)
{
    CHECK_EQ_INT(count_log(over_limits, "replica.limit"), 1);
    CHECK_EQ_INT(cxm_store_read(store, limits_fn, NULL), 0);
}

static void bad_events(void)
{
    ev_buf b;
    CHECK_EQ_INT(apply(ev_init(&b, "gus")), 0); /* no payload */
    Cxm__V1__Event *ev = ev_init(&b, "gus");
    ev->payload_case = CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED; /* its message missing */
    CHECK_EQ_INT(apply(ev), 0);
    CHECK_EQ_INT(apply(ev_stage(&b, "gus", 99, 1)), 0);
    CHECK_EQ_INT(apply(ev_stage(&b, "", USE, 1)), 0);
    CHECK_EQ_INT(apply(ev_consent(&b, "gus", "", GRANTED)), 0);
    ev = ev_consent(&b, "gus", "x", GRANTED);
    b.cc.consent = NULL;
    CHECK_EQ_INT(apply(ev), 0);
    CHECK_EQ_INT(apply(ev_merge(&b, "", "gus", false)), 0);
    CHECK_EQ_INT(apply(ev_merge(&b, "gus", "", true)), 0);
    Cxm__V1__TraitsChanged tc = CXM__V1__TRAITS_CHANGED__INIT;
    ev = ev_init(&b, "gus");
    ev->payload_case = CXM__V1__EVENT__PAYLOAD_TRAITS_CHANGED;
    ev->traits_changed = &tc;
    CHECK_EQ_INT(apply(ev), 0);
    char long_id[600];
    memset(long_id, 'z', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    CHECK_EQ_INT(apply(ev_stage(&b, long_id, USE, 1)), 0); /* skipped, logged */
    CHECK_EQ_STR(facts(long_id), "unknown");
}

static int corrupt_fn(cxm_txn *t, void *user)
{
    MDB_dbi *dbi = user;
    return cxm_txn_put(t, *dbi, "hal", 3, "\x07junk", 5, 0);
}

static void test_bad_events(void)
{
    CHECK_EQ_INT(count_log(bad_events, "replica.event_skipped"), 1);
    CHECK_EQ_STR(facts("gus"), "unknown");
    /* A damaged record is an error to read, and skipped (not retried
     * forever) when an event would change it. */
    MDB_dbi dbi;
    CHECK_EQ_INT(cxm_store_dbi(store, "test.rcust", 0, &dbi), 0);
    CHECK_EQ_INT(cxm_store_write(store, corrupt_fn, &dbi), 0);
    CHECK_EQ_STR(facts("hal"), "error");
    ev_buf b;
    CHECK_EQ_INT(apply(ev_stage(&b, "hal", USE, 1)), 0);
}

static void test_open(void)
{
    cxm_replica *other;
    CHECK_EQ_INT(cxm_replica_open(store, "", &other), CXM_EINVAL);
    CHECK_EQ_INT(cxm_replica_open(NULL, "x", &other), CXM_EINVAL);
    /* Another prefix is another replica. */
    CHECK_EQ_INT(cxm_replica_open(store, "other", &other), 0);
    cxm_replica *saved = rep;
    rep = other;
    CHECK_EQ_STR(facts("fay"), "unknown");
    rep = saved;
    cxm_replica_close(other);
}

int main(void)
{
    char dir[] = "/tmp/test_replica.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ_INT(cxm_store_open(dir, NULL, &store), 0);
    CHECK_EQ_INT(cxm_replica_open(store, "test", &rep), 0);
    test_facts();
    CHECK_EQ_INT(cxm_store_read(store, search_fn, NULL), 0);
    test_merge();
    test_erase();
    test_chain();
    test_limits();
    test_bad_events();
    test_open();
    cxm_replica_close(rep);
    cxm_store_close(store);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_report();
}
