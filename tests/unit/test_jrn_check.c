#define _DEFAULT_SOURCE /* timegm */
/*
 * test_jrn_check.c - validation of every JourneyService request: each
 * rejection names its field path first, defaults are filled in, limits
 * hold at their edges.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/svc.h"
#include "journey/jrn_check.h"
#include "journey/jrules.h"

#define DAY INT64_C(86400000)
#define HOUR INT64_C(3600000)
#define NOW INT64_C(1760000000000)
#define WEB CXM__V1__CHANNEL__CHANNEL_WEB

static char err[CXM_SVC_ERR_MAX];
static cxm_arena arena;

/* rc is want and, on failure, err starts with "path:". */
static void expect_at(int line, int rc, int want, const char *path)
{
    check_count++;
    size_t n = path ? strlen(path) : 0;
    bool ok = rc == want && (want == 0 || (strncmp(err, path, n) == 0 && err[n] == ':'));
    if (getenv("SHOW_ERRORS") && rc != 0) /* to read the messages: SHOW_ERRORS=1 */
        fprintf(stderr, "%d: %s\n", line, err);
    if (!ok) {
        check_failures++;
        fprintf(stderr, "%s:%d: got rc %d \"%s\", wanted rc %d at \"%s\"\n", __FILE__, line, rc,
                rc ? err : "", want, path ? path : "");
    }
    err[0] = 0;
}
#define EXPECT(call, want, path) expect_at(__LINE__, (call), (want), (path))
#define OK(call) expect_at(__LINE__, (call), 0, NULL)
#define BAD(call, path) expect_at(__LINE__, (call), CXM_EINVAL, (path))

static char *repeat(char c, size_t n)
{
    char *s = cxm_arena_alloc(&arena, n + 1);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

/* ---- events ---- */

static Cxm__V1__Identity *identity(Cxm__V1__IdentityType t, const char *v)
{
    Cxm__V1__Identity *id = cxm_arena_alloc(&arena, sizeof *id);
    cxm__v1__identity__init(id);
    id->type = t;
    id->value = (char *)v;
    return id;
}

static Cxm__V1__Value *num(double d)
{
    Cxm__V1__Value *v = cxm_arena_alloc(&arena, sizeof *v);
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    v->number_value = d;
    return v;
}

static Cxm__V1__Value *str(const char *s)
{
    Cxm__V1__Value *v = num(0);
    v->kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static void add_prop(Cxm__V1__TouchpointEvent *e, const char *k, Cxm__V1__Value *v)
{
    Cxm__V1__TouchpointEvent__PropertiesEntry **ps =
        cxm_arena_alloc(&arena, (e->n_properties + 1) * sizeof *ps);
    if (e->n_properties)
        memcpy(ps, e->properties, e->n_properties * sizeof *ps);
    ps[e->n_properties] = cxm_arena_alloc(&arena, sizeof **ps);
    cxm__v1__touchpoint_event__properties_entry__init(ps[e->n_properties]);
    ps[e->n_properties]->key = (char *)k;
    ps[e->n_properties]->value = v;
    e->properties = ps;
    e->n_properties++;
}

/* A valid event, every optional field set. */
static Cxm__V1__TouchpointEvent *event(void)
{
    Cxm__V1__TouchpointEvent *e = cxm_arena_alloc(&arena, sizeof *e);
    cxm__v1__touchpoint_event__init(e);
    e->event_id = "e-1";
    e->customer = cxm_arena_alloc(&arena, sizeof *e->customer);
    cxm__v1__customer_ref__init(e->customer);
    e->customer->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    e->customer->identity = identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_ANONYMOUS_ID, "anon-1");
    e->link_identities = cxm_arena_alloc(&arena, 2 * sizeof *e->link_identities);
    e->link_identities[0] = identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, "a@b.example");
    e->link_identities[1] = identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM, "L-77");
    e->link_identities[1]->custom_type = "loyalty_card";
    e->n_link_identities = 2;
    e->touchpoint = "checkout";
    e->channel = WEB;
    e->event_type = "purchase";
    e->occurred_at_unix_ms = NOW - HOUR;
    add_prop(e, "price", num(129.5));
    add_prop(e, "note", str("좋아요"));
    e->value = 129.5;
    e->currency = "KRW";
    e->session_id = "s-1";
    e->item_id = "item-1";
    return e;
}

static const jrn_limits limits = {.max_lateness_ms = 30 * DAY};

static int chk(Cxm__V1__TouchpointEvent *e)
{
    return jrn_check_event(&limits, &arena, e, NOW, err);
}

static void test_event_fields(void)
{
    Cxm__V1__TouchpointEvent *e = event();
    OK(chk(e));
    e = event(), e->event_id = "";
    BAD(chk(e), "event_id");
    e = event(), e->event_id = repeat('x', 129);
    BAD(chk(e), "event_id");
    e = event(), e->event_id = "\xff";
    BAD(chk(e), "event_id");
    e = event(), e->event_id = repeat('x', 128);
    OK(chk(e));

    e = event(), e->customer = NULL;
    BAD(chk(e), "customer");
    e = event(), e->customer->key_case = CXM__V1__CUSTOMER_REF__KEY__NOT_SET;
    BAD(chk(e), "customer");
    e = event(), e->customer->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    e->customer->customer_id = "";
    BAD(chk(e), "customer.customer_id");
    e->customer->customer_id = "c0000001";
    OK(chk(e));
    e = event(), e->customer->identity->type = 0;
    BAD(chk(e), "customer.identity.type");
    e = event(), e->customer->identity->type = 99; /* unknown number from the wire */
    BAD(chk(e), "customer.identity.type");
    e = event(), e->customer->identity->custom_type = "crm";
    BAD(chk(e), "customer.identity.custom_type");
    e = event(), e->customer->identity->value = "";
    BAD(chk(e), "customer.identity.value");
    e = event(), e->customer->identity->value = repeat('a', 257);
    BAD(chk(e), "customer.identity.value");
    e = event(), e->customer->identity->value = "a\xc0\xafz"; /* overlong */
    BAD(chk(e), "customer.identity.value");

    e = event(), e->link_identities[1]->custom_type = "";
    BAD(chk(e), "link_identities[1].custom_type");
    e = event(), e->link_identities[1]->custom_type = "Loyalty";
    BAD(chk(e), "link_identities[1].custom_type");
    e = event(), e->link_identities[0]->type = CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID;
    BAD(chk(e), "link_identities[0].type");
    e = event(), e->link_identities[0]->value = NULL;
    BAD(chk(e), "link_identities[0].value");
    e = event(), e->n_link_identities = 11;
    e->link_identities = cxm_arena_alloc(&arena, 11 * sizeof *e->link_identities);
    for (int i = 0; i < 11; i++)
        e->link_identities[i] = identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_DEVICE_ID, "d");
    BAD(chk(e), "link_identities");
    e->n_link_identities = 10;
    OK(chk(e));

    e = event(), e->touchpoint = "";
    BAD(chk(e), "touchpoint");
    e = event(), e->touchpoint = "bad touchpoint!";
    BAD(chk(e), "touchpoint");
    e = event(), e->touchpoint = repeat('t', 129);
    BAD(chk(e), "touchpoint");
    e = event(), e->touchpoint = "A-z_0.9";
    OK(chk(e));
    e = event(), e->channel = 0;
    BAD(chk(e), "channel");
    e = event(), e->channel = 13;
    BAD(chk(e), "channel");
    e = event(), e->channel = CXM__V1__CHANNEL__CHANNEL_OTHER;
    OK(chk(e));
    e = event(), e->event_type = NULL;
    BAD(chk(e), "event_type");
    e = event(), e->event_type = "add to cart";
    BAD(chk(e), "event_type");
}

static void test_event_time(void)
{
    Cxm__V1__TouchpointEvent *e = event();
    e->occurred_at_unix_ms = -1;
    BAD(chk(e), "occurred_at_unix_ms");
    e->occurred_at_unix_ms = 0; /* = now */
    OK(chk(e));
    CHECK(e->occurred_at_unix_ms == NOW);
    e->occurred_at_unix_ms = NOW + 5 * 60000;
    OK(chk(e));
    e->occurred_at_unix_ms = NOW + 5 * 60000 + 1;
    BAD(chk(e), "occurred_at_unix_ms");
    e->occurred_at_unix_ms = NOW * 1000; /* microseconds */
    CHECK(chk(e) == CXM_EINVAL && strstr(err, "300000 ms") && strstr(err, "future"));
    e->occurred_at_unix_ms = NOW - 30 * DAY;
    OK(chk(e));
    e->occurred_at_unix_ms = NOW - 30 * DAY - 1;
    CHECK(chk(e) == CXM_EINVAL && strncmp(err, "occurred_at_unix_ms:", 20) == 0 &&
          strstr(err, "lateness bound of 2592000000 ms") && strstr(err, "30.0 days"));
    /* No bound configured: only the future is refused. */
    jrn_limits none = {0};
    e->occurred_at_unix_ms = 1;
    OK(jrn_check_event(&none, &arena, e, NOW, err));
}

static void test_event_properties(void)
{
    Cxm__V1__TouchpointEvent *e = event();
    e->properties[0]->value->number_value = NAN;
    BAD(chk(e), "properties.price");
    e->properties[0]->value->number_value = -INFINITY;
    BAD(chk(e), "properties.price");
    e = event(), e->properties[0]->value = NULL;
    BAD(chk(e), "properties.price");
    e = event(), e->properties[0]->value->kind_case = CXM__V1__VALUE__KIND__NOT_SET;
    BAD(chk(e), "properties.price");
    e = event(), e->properties[0]->value->kind_case = CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS;
    e->properties[0]->value->timestamp_unix_ms = -5;
    BAD(chk(e), "properties.price");
    e = event(), e->properties[1]->value->string_value = repeat('n', 8193);
    BAD(chk(e), "properties.note");
    e->properties[1]->value->string_value = repeat('n', 8192);
    OK(chk(e));
    e = event(), e->properties[1]->value->string_value = "\xed\xa0\x80"; /* a surrogate */
    BAD(chk(e), "properties.note");
    e = event(), e->properties[1]->key = "";
    BAD(chk(e), "properties[1]");
    e = event(), e->properties[1]->key = "has space";
    BAD(chk(e), "properties[1]");
    e = event(), e->properties[1]->key = repeat('k', 129);
    BAD(chk(e), "properties[1]");
    e = event(), e->properties[1]->key = "price";
    CHECK(chk(e) == CXM_EINVAL && strstr(err, "properties: \"price\" appears twice"));
    e = event();
    e->n_properties = 0;
    for (int i = 0; i < 64; i++)
        add_prop(e, repeat((char)('A' + i % 26), 1 + (size_t)i / 26), num(i));
    OK(chk(e));
    add_prop(e, "one_more", num(1));
    BAD(chk(e), "properties");
}

static void test_event_details(void)
{
    Cxm__V1__TouchpointEvent *e = event();
    e->value = NAN;
    BAD(chk(e), "value");
    e->value = INFINITY;
    BAD(chk(e), "value");
    e->value = -42; /* a refund */
    OK(chk(e));
    const char *bad_currency[] = {"krw", "KR", "KRWX", "K1W", "\xff\xff\xff"};
    for (size_t i = 0; i < 5; i++) {
        e = event(), e->currency = (char *)bad_currency[i];
        BAD(chk(e), "currency");
    }
    e = event(), e->currency = "";
    OK(chk(e));
    e = event(), e->session_id = repeat('s', 129);
    BAD(chk(e), "session_id");
    e = event(), e->session_id = "";
    OK(chk(e));
    e = event(), e->item_id = repeat('i', 257);
    BAD(chk(e), "item_id");
    e = event(), e->item_id = repeat('i', 256);
    OK(chk(e));
    /* Output-only fields. */
    e = event(), e->customer_id = "c1";
    BAD(chk(e), "customer_id");
    e = event(), e->stage = CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE;
    BAD(chk(e), "stage");
    e = event(), e->received_at_unix_ms = NOW;
    BAD(chk(e), "received_at_unix_ms");
}

static void test_batch(void)
{
    BAD(jrn_check_batch_size(0, err), "events");
    OK(jrn_check_batch_size(1, err));
    OK(jrn_check_batch_size(JRN_MAX_BATCH, err));
    CHECK(jrn_check_batch_size(JRN_MAX_BATCH + 1, err) == CXM_ENOMEM &&
          strncmp(err, "events:", 7) == 0 && strstr(err, "1000"));
    CHECK(cxm_err_status(CXM_ENOMEM) == GRPC_STATUS_RESOURCE_EXHAUSTED);
}

/* ---- reads ---- */

static Cxm__V1__CustomerRef *by_id(const char *id)
{
    Cxm__V1__CustomerRef *r = cxm_arena_alloc(&arena, sizeof *r);
    cxm__v1__customer_ref__init(r);
    r->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    r->customer_id = (char *)id;
    return r;
}

static Cxm__V1__TimeRange *range(int64_t from, int64_t to)
{
    Cxm__V1__TimeRange *r = cxm_arena_alloc(&arena, sizeof *r);
    cxm__v1__time_range__init(r);
    r->from_unix_ms = from;
    r->to_unix_ms = to;
    return r;
}

static void test_timeline_and_state(void)
{
    Cxm__V1__GetTimelineRequest t = CXM__V1__GET_TIMELINE_REQUEST__INIT;
    int ps = -1;
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "customer");
    t.customer = by_id("c1");
    OK(jrn_check_timeline(&arena, &t, &ps, err));
    CHECK_EQ_INT(ps, 50);
    t.page_size = 5000;
    OK(jrn_check_timeline(&arena, &t, &ps, err));
    CHECK_EQ_INT(ps, 1000);
    t.page_size = -1;
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "page_size");
    t.page_size = 0;
    /* A range may be open on either side. */
    t.range = range(NOW, 0);
    OK(jrn_check_timeline(&arena, &t, &ps, err));
    t.range = range(0, NOW);
    OK(jrn_check_timeline(&arena, &t, &ps, err));
    t.range = range(NOW, NOW);
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "range");
    t.range = range(-1, NOW);
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "range.from_unix_ms");
    t.range = range(1, -1);
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "range.to_unix_ms");
    t.range = NULL;
    char *tps[] = {"home", "bad one"};
    t.touchpoints = tps;
    t.n_touchpoints = 2;
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "touchpoints[1]");
    t.n_touchpoints = 1;
    char **many = cxm_arena_alloc(&arena, 101 * sizeof *many);
    for (int i = 0; i < 101; i++)
        many[i] = "x";
    t.event_types = many;
    t.n_event_types = 101;
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "event_types");
    t.n_event_types = 100;
    OK(jrn_check_timeline(&arena, &t, &ps, err));
    many[7] = "";
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "event_types[7]");
    t.n_event_types = 0;
    Cxm__V1__Channel chans[] = {WEB, 13};
    t.channels = chans;
    t.n_channels = 2;
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "channels[1]");
    chans[1] = 0;
    BAD(jrn_check_timeline(&arena, &t, &ps, err), "channels[1]");

    Cxm__V1__GetJourneyStateRequest s = CXM__V1__GET_JOURNEY_STATE_REQUEST__INIT;
    BAD(jrn_check_state(&arena, &s, err), "customer");
    s.customer = by_id("");
    BAD(jrn_check_state(&arena, &s, err), "customer.customer_id");
    s.customer = by_id("c1");
    OK(jrn_check_state(&arena, &s, err));
    s.customer->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    s.customer->identity = identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE, "+821012345678");
    OK(jrn_check_state(&arena, &s, err));
}

/* ---- rules and conditions ---- */

static Cxm__V1__PropertyCondition *condition(const char *name, Cxm__V1__CompareOp op,
                                             Cxm__V1__Value *v)
{
    Cxm__V1__PropertyCondition *c = cxm_arena_alloc(&arena, sizeof *c);
    cxm__v1__property_condition__init(c);
    c->name = (char *)name;
    c->op = op;
    c->value = v;
    return c;
}

static Cxm__V1__StageRule *new_rule(const char *id)
{
    Cxm__V1__StageRule *r = cxm_arena_alloc(&arena, sizeof *r);
    cxm__v1__stage_rule__init(r);
    r->rule_id = (char *)id;
    r->event_type = "purchase";
    r->stage = CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE;
    return r;
}

/* A one-condition rule set, for condition checks. */
static int check_cond(Cxm__V1__PropertyCondition *c)
{
    Cxm__V1__StageRule *r = new_rule("r");
    r->conditions = &c;
    r->n_conditions = 1;
    Cxm__V1__UpsertStageRulesRequest q = CXM__V1__UPSERT_STAGE_RULES_REQUEST__INIT;
    q.rules = &r;
    q.n_rules = 1;
    return jrn_check_rules(&q, err);
}

static void test_conditions(void)
{
    const char *p = "rules[0].conditions[0]";
    char path[64];
    OK(check_cond(condition("price", CXM__V1__COMPARE_OP__COMPARE_OP_GE, num(10))));
    OK(check_cond(condition("price", CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS, NULL)));
    OK(check_cond(condition("price", CXM__V1__COMPARE_OP__COMPARE_OP_NOT_EXISTS, NULL)));
    OK(check_cond(condition("s", CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS, str("x"))));
    snprintf(path, sizeof path, "%s.name", p);
    BAD(check_cond(condition("", CXM__V1__COMPARE_OP__COMPARE_OP_EQ, num(1))), path);
    BAD(check_cond(condition("a b", CXM__V1__COMPARE_OP__COMPARE_OP_EQ, num(1))), path);
    snprintf(path, sizeof path, "%s.op", p);
    BAD(check_cond(condition("a", 0, num(1))), path);
    BAD(check_cond(condition("a", 11, num(1))), path);
    snprintf(path, sizeof path, "%s.value", p);
    BAD(check_cond(condition("a", CXM__V1__COMPARE_OP__COMPARE_OP_EQ, NULL)), path);
    BAD(check_cond(condition("a", CXM__V1__COMPARE_OP__COMPARE_OP_EQ, num(NAN))), path);
    BAD(check_cond(condition("a", CXM__V1__COMPARE_OP__COMPARE_OP_PREFIX, num(1))), path);
    BAD(check_cond(condition("a", CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS, num(1))), path);
    Cxm__V1__Value *b = num(0);
    b->kind_case = CXM__V1__VALUE__KIND_BOOL_VALUE;
    BAD(check_cond(condition("a", CXM__V1__COMPARE_OP__COMPARE_OP_LT, b)), path);
    OK(check_cond(condition("a", CXM__V1__COMPARE_OP__COMPARE_OP_NE, b)));
}

static int check_set(Cxm__V1__StageRule **rs, size_t n)
{
    Cxm__V1__UpsertStageRulesRequest q = CXM__V1__UPSERT_STAGE_RULES_REQUEST__INIT;
    q.rules = rs;
    q.n_rules = n;
    return jrn_check_rules(&q, err);
}

static void test_rules(void)
{
    OK(check_set(NULL, 0)); /* empty clears the set */
    Cxm__V1__StageRule *rs[2] = {new_rule("buy"), new_rule("buy.app")};
    OK(check_set(rs, 2));
    rs[1]->rule_id = "buy";
    BAD(check_set(rs, 2), "rules[1].rule_id");
    rs[1]->rule_id = "";
    BAD(check_set(rs, 2), "rules[1].rule_id");
    rs[1]->rule_id = "Buy";
    BAD(check_set(rs, 2), "rules[1].rule_id");
    rs[1]->rule_id = repeat('r', 65);
    BAD(check_set(rs, 2), "rules[1].rule_id");
    rs[1]->rule_id = "b2";
    rs[1]->stage = 0;
    BAD(check_set(rs, 2), "rules[1].stage");
    rs[1]->stage = 7;
    BAD(check_set(rs, 2), "rules[1].stage");
    rs[1]->stage = CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_ADVOCACY;
    rs[1]->channel = 13;
    BAD(check_set(rs, 2), "rules[1].channel");
    rs[1]->channel = WEB;
    rs[1]->event_type = "";
    OK(check_set(rs, 2)); /* a channel alone is a matcher */
    rs[1]->channel = 0;
    BAD(check_set(rs, 2), "rules[1]"); /* no matcher at all */
    rs[1]->touchpoint = "review_page";
    OK(check_set(rs, 2));
    rs[1]->touchpoint = "review page";
    BAD(check_set(rs, 2), "rules[1].touchpoint");
    rs[1]->touchpoint = "";
    rs[1]->event_type = "bad/type";
    BAD(check_set(rs, 2), "rules[1].event_type");
    rs[1]->event_type = "";
    Cxm__V1__PropertyCondition *cs[9];
    for (int i = 0; i < 9; i++)
        cs[i] = condition("rating", CXM__V1__COMPARE_OP__COMPARE_OP_GE, num(4));
    rs[1]->conditions = cs;
    rs[1]->n_conditions = 8;
    OK(check_set(rs, 2)); /* conditions alone are a matcher */
    rs[1]->n_conditions = 9;
    BAD(check_set(rs, 2), "rules[1].conditions");
    rs[1]->n_conditions = 1;
    rs[1]->description = repeat('d', 1025);
    BAD(check_set(rs, 2), "rules[1].description");
    rs[1]->description = repeat('d', 1024);
    OK(check_set(rs, 2));
    rs[1]->description = "\xc3";
    BAD(check_set(rs, 2), "rules[1].description");

    Cxm__V1__StageRule **many = cxm_arena_alloc(&arena, 501 * sizeof *many);
    for (int i = 0; i < 501; i++) {
        char *id = cxm_arena_alloc(&arena, 16);
        snprintf(id, 16, "r%d", i);
        many[i] = new_rule(id);
    }
    OK(check_set(many, 500));
    BAD(check_set(many, 501), "rules");
    many[499]->rule_id = "r3";
    CHECK(check_set(many, 500) == CXM_EINVAL && strncmp(err, "rules[499].rule_id:", 19) == 0 &&
          strstr(err, "rules[3]"));
}

/* ---- analytics ---- */

static Cxm__V1__FunnelStep *step(const char *type)
{
    Cxm__V1__FunnelStep *s = cxm_arena_alloc(&arena, sizeof *s);
    cxm__v1__funnel_step__init(s);
    s->event_type = (char *)type;
    return s;
}

static void test_funnel(void)
{
    Cxm__V1__FunnelRequest f = CXM__V1__FUNNEL_REQUEST__INIT;
    Cxm__V1__FunnelStep *steps[21];
    for (int i = 0; i < 21; i++)
        steps[i] = step("page_view");
    f.steps = steps;
    f.n_steps = 1;
    f.range = range(NOW - 7 * DAY, NOW);
    BAD(jrn_check_funnel(&f, NOW, err), "steps");
    f.n_steps = 21;
    BAD(jrn_check_funnel(&f, NOW, err), "steps");
    f.n_steps = 20;
    OK(jrn_check_funnel(&f, NOW, err));
    CHECK(f.window_ms == 14 * DAY && f.breakdown_limit == 20 &&
          f.order == CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_ORDERED);
    f.n_steps = 2;
    steps[1]->event_type = "";
    BAD(jrn_check_funnel(&f, NOW, err), "steps[1]");
    steps[1]->touchpoint = "cart";
    OK(jrn_check_funnel(&f, NOW, err));
    steps[1]->channel = 42;
    BAD(jrn_check_funnel(&f, NOW, err), "steps[1].channel");
    steps[1]->channel = 0;
    steps[0]->name = repeat('n', 129);
    BAD(jrn_check_funnel(&f, NOW, err), "steps[0].name");
    steps[0]->name = "Landing";
    Cxm__V1__PropertyCondition *c = condition("x", CXM__V1__COMPARE_OP__COMPARE_OP_GT, NULL);
    steps[0]->conditions = &c;
    steps[0]->n_conditions = 1;
    BAD(jrn_check_funnel(&f, NOW, err), "steps[0].conditions[0].value");
    steps[0]->n_conditions = 0;

    f.range = NULL;
    BAD(jrn_check_funnel(&f, NOW, err), "range");
    f.range = range(0, NOW);
    BAD(jrn_check_funnel(&f, NOW, err), "range.from_unix_ms");
    f.range = range(NOW - DAY, 0);
    BAD(jrn_check_funnel(&f, NOW, err), "range.to_unix_ms");
    f.range = range(NOW, NOW - DAY);
    BAD(jrn_check_funnel(&f, NOW, err), "range");
    f.range = range(NOW * 1000, NOW * 1000 + DAY); /* microseconds */
    BAD(jrn_check_funnel(&f, NOW, err), "range.from_unix_ms");
    f.range = range(NOW - DAY, NOW + DAY); /* the end may lie ahead */
    OK(jrn_check_funnel(&f, NOW, err));

    f.window_ms = -1;
    BAD(jrn_check_funnel(&f, NOW, err), "window_ms");
    f.window_ms = 365 * DAY + 1;
    BAD(jrn_check_funnel(&f, NOW, err), "window_ms");
    f.window_ms = 365 * DAY;
    OK(jrn_check_funnel(&f, NOW, err));
    f.window_ms = 1;
    OK(jrn_check_funnel(&f, NOW, err));
    CHECK(f.window_ms == 1);
    f.segment_id = "VIP!";
    BAD(jrn_check_funnel(&f, NOW, err), "segment_id");
    f.segment_id = "vip";
    OK(jrn_check_funnel(&f, NOW, err));
    Cxm__V1__Channel ch[] = {WEB, -3};
    f.channels = ch;
    f.n_channels = 2;
    BAD(jrn_check_funnel(&f, NOW, err), "channels[1]");
    f.n_channels = 1;
    f.order = 4;
    BAD(jrn_check_funnel(&f, NOW, err), "order");
    f.order = CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_ANY;
    f.breakdown = 3;
    BAD(jrn_check_funnel(&f, NOW, err), "breakdown");
    f.breakdown = CXM__V1__FUNNEL_BREAKDOWN__FUNNEL_BREAKDOWN_FIRST_TOUCHPOINT;
    f.breakdown_limit = 101;
    BAD(jrn_check_funnel(&f, NOW, err), "breakdown_limit");
    f.breakdown_limit = 100;
    OK(jrn_check_funnel(&f, NOW, err));
    CHECK(f.order == CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_ANY);
}

static void test_paths(void)
{
    Cxm__V1__PathsRequest p = CXM__V1__PATHS_REQUEST__INIT;
    p.range = range(NOW - DAY, NOW);
    p.direction = CXM__V1__PATH_DIRECTION__PATH_DIRECTION_FROM;
    BAD(jrn_check_paths(&p, NOW, err), "anchor");
    p.anchor = "checkout";
    OK(jrn_check_paths(&p, NOW, err));
    CHECK(p.max_length == 5 && p.limit == 20 &&
          p.element == CXM__V1__PATH_ELEMENT__PATH_ELEMENT_TOUCHPOINT);
    p.direction = 0;
    BAD(jrn_check_paths(&p, NOW, err), "direction");
    p.direction = 3;
    BAD(jrn_check_paths(&p, NOW, err), "direction");
    p.direction = CXM__V1__PATH_DIRECTION__PATH_DIRECTION_TO;
    p.max_length = 1;
    BAD(jrn_check_paths(&p, NOW, err), "max_length");
    p.max_length = 11;
    BAD(jrn_check_paths(&p, NOW, err), "max_length");
    p.max_length = 10;
    p.limit = 101;
    BAD(jrn_check_paths(&p, NOW, err), "limit");
    p.limit = 100;
    p.element = 3;
    BAD(jrn_check_paths(&p, NOW, err), "element");
    p.element = CXM__V1__PATH_ELEMENT__PATH_ELEMENT_EVENT_TYPE;
    p.range = range(NOW, 0);
    BAD(jrn_check_paths(&p, NOW, err), "range.to_unix_ms");
    p.range = range(NOW - DAY, NOW);
    p.segment_id = "a b";
    BAD(jrn_check_paths(&p, NOW, err), "segment_id");
    p.segment_id = "";
    Cxm__V1__Channel ch[] = {99};
    p.channels = ch;
    p.n_channels = 1;
    BAD(jrn_check_paths(&p, NOW, err), "channels[0]");
    p.n_channels = 0;
    OK(jrn_check_paths(&p, NOW, err));
    CHECK(p.max_length == 10 && p.limit == 100 &&
          p.element == CXM__V1__PATH_ELEMENT__PATH_ELEMENT_EVENT_TYPE);
}

static int64_t utc(int y, int mon, int d)
{
    struct tm t = {.tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d};
    return (int64_t)timegm(&t) * 1000;
}

static void test_touchpoints(void)
{
    Cxm__V1__TouchpointStatsRequest t = CXM__V1__TOUCHPOINT_STATS_REQUEST__INIT;
    BAD(jrn_check_touchpoints(&t, NOW, err), "range");
    t.range = range(NOW - DAY, NOW);
    OK(jrn_check_touchpoints(&t, NOW, err));
    CHECK(t.goal_window_ms == 7 * DAY);
    t.goal_window_ms = 365 * DAY + 1;
    BAD(jrn_check_touchpoints(&t, NOW, err), "goal_window_ms");
    t.goal_window_ms = -1;
    BAD(jrn_check_touchpoints(&t, NOW, err), "goal_window_ms");
    t.goal_window_ms = 0;
    t.goal_event_type = "buy now";
    BAD(jrn_check_touchpoints(&t, NOW, err), "goal_event_type");
    t.goal_event_type = "purchase";
    char **tps = cxm_arena_alloc(&arena, 1001 * sizeof *tps);
    for (int i = 0; i < 1001; i++)
        tps[i] = "checkout";
    t.touchpoints = tps;
    t.n_touchpoints = 1001;
    BAD(jrn_check_touchpoints(&t, NOW, err), "touchpoints");
    t.n_touchpoints = 1000;
    OK(jrn_check_touchpoints(&t, NOW, err));
    tps[999] = "";
    BAD(jrn_check_touchpoints(&t, NOW, err), "touchpoints[999]");
    t.n_touchpoints = 0;
    Cxm__V1__Channel ch[] = {0};
    t.channels = ch;
    t.n_channels = 1;
    BAD(jrn_check_touchpoints(&t, NOW, err), "channels[0]");
    t.n_channels = 0;
    t.bucket = 5;
    BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");

    /* 1000 buckets pass, 1001 do not, counted on aligned UTC buckets. */
    int64_t h0 = (NOW / HOUR) * HOUR;
    t.bucket = CXM__V1__TIME_BUCKET__TIME_BUCKET_HOUR;
    t.range = range(h0 - 1000 * HOUR, h0);
    OK(jrn_check_touchpoints(&t, NOW, err));
    t.range = range(h0 - 1000 * HOUR, h0 + 1);
    BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");
    t.range = range(h0 - 1000 * HOUR - 1, h0);
    BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");
    t.bucket = CXM__V1__TIME_BUCKET__TIME_BUCKET_DAY;
    int64_t d0 = utc(2025, 1, 1);
    t.range = range(d0 - 1000 * DAY, d0);
    OK(jrn_check_touchpoints(&t, NOW, err));
    t.range = range(d0 - 1000 * DAY - 1, d0);
    BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");
    /* Weeks start on Monday: 2024-12-30 was one. */
    t.bucket = CXM__V1__TIME_BUCKET__TIME_BUCKET_WEEK;
    int64_t mon = utc(2024, 12, 30);
    t.range = range(mon - 1000 * 7 * DAY, mon);
    OK(jrn_check_touchpoints(&t, NOW, err));
    t.range = range(mon - 1000 * 7 * DAY - DAY, mon); /* from a Sunday: one more week */
    BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");
    t.range = range(mon - 1000 * 7 * DAY, mon + 6 * DAY); /* to Sunday: the same weeks + 1 */
    BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");
    t.range = range(mon - 999 * 7 * DAY + DAY, mon + 6 * DAY); /* Tuesday to Sunday */
    OK(jrn_check_touchpoints(&t, NOW, err));
    /* A range to the end of time is too many buckets of any size, without
     * overflowing on the way (UBSan watches). */
    for (int b = CXM__V1__TIME_BUCKET__TIME_BUCKET_HOUR;
         b <= CXM__V1__TIME_BUCKET__TIME_BUCKET_MONTH; b++) {
        t.bucket = (Cxm__V1__TimeBucket)b;
        t.range = range(mon, INT64_MAX);
        BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");
    }
    t.bucket = CXM__V1__TIME_BUCKET__TIME_BUCKET_WEEK;
    /* Months: 1000 of them from January 1975. */
    t.bucket = CXM__V1__TIME_BUCKET__TIME_BUCKET_MONTH;
    int64_t from = utc(1975, 1, 1), to = utc(2058, 5, 1); /* 83 years and 4 months */
    t.range = range(from, to);
    OK(jrn_check_touchpoints(&t, NOW, err));
    t.range = range(from, to + 1);
    BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");
    t.range = range(from - 1, to);
    BAD(jrn_check_touchpoints(&t, NOW, err), "bucket");
    t.range = range(utc(2024, 1, 31), utc(2024, 3, 1)); /* leap February */
    OK(jrn_check_touchpoints(&t, NOW, err));
}

/* Mangled wire bytes of a valid event: whatever decodes is checked and,
 * when accepted, classified, without a crash (ASan/UBSan watch). */
static void test_mangled(void)
{
    Cxm__V1__TouchpointEvent *e = event();
    size_t len = cxm__v1__touchpoint_event__get_packed_size(e);
    uint8_t *good = cxm_arena_alloc(&arena, len), *buf = cxm_arena_alloc(&arena, len);
    cxm__v1__touchpoint_event__pack(e, good);
    size_t nd;
    Cxm__V1__StageRule *const *d = jrules_defaults(&nd);
    jrules *r = jrules_compile(d, nd, 0);
    unsigned seed = 12345, decoded = 0, accepted = 0;
    for (int i = 0; i < 20000; i++) {
        memcpy(buf, good, len);
        for (int k = 0; k < 1 + i % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % len] = (uint8_t)(seed >> 20);
        }
        /* Decoded into the arena the check may put normalised values in,
         * as the handlers do. */
        cxm_arena scratch;
        cxm_arena_init(&scratch, NULL, 0, 0);
        Cxm__V1__TouchpointEvent *m =
            cxm__v1__touchpoint_event__unpack(cxm_arena_protobuf(&scratch), len, buf);
        if (m) {
            decoded++;
            if (jrn_check_event(&limits, &scratch, m, NOW, err) == 0) {
                accepted++;
                (void)jrules_apply(r, m, 0);
            }
        }
        cxm_arena_dispose(&scratch);
    }
    CHECK(decoded > 1000 && accepted > 0 && accepted < decoded);
    jrules_free(r);
}

int main(void)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    test_event_fields();
    test_event_time();
    test_event_properties();
    test_event_details();
    test_batch();
    test_timeline_and_state();
    test_conditions();
    test_rules();
    test_funnel();
    test_paths();
    test_touchpoints();
    test_mangled();
    cxm_arena_dispose(&arena);
    return check_report();
}
