#define _DEFAULT_SOURCE /* strdup, strsep, clock_gettime */
/*
 * test_jrules.c - journey stage rules: the defaults on cxm-gen's event
 * types, precedence, regression, every condition op and type mismatch,
 * interaction strengths.
 *
 * Also a measuring tool: `test_jrules --agreement events.csv` applies the
 * default rules to a cxm-gen world in time order per customer and prints
 * how often the rules agree with the generator's own stage column.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "journey/jrn_check.h"
#include "journey/jrules.h"

#define AW CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_AWARENESS
#define CO CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION
#define PU CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE
#define US CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE
#define RE CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_RETENTION
#define AD CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_ADVOCACY
#define WEB CXM__V1__CHANNEL__CHANNEL_WEB
#define APP CXM__V1__CHANNEL__CHANNEL_APP
#define CC CXM__V1__CHANNEL__CHANNEL_CONTACT_CENTRE
#define STORE CXM__V1__CHANNEL__CHANNEL_STORE
#define SOCIAL CXM__V1__CHANNEL__CHANNEL_SOCIAL
#define EMAIL CXM__V1__CHANNEL__CHANNEL_EMAIL

typedef Cxm__V1__TouchpointEvent__PropertiesEntry prop;

/* ---- builders (static pools: the tests are small) ---- */

static Cxm__V1__Value values[256];
static size_t nvalues;
static prop props_pool[256];
static size_t nprops_pool;

static Cxm__V1__Value *vnum(double d)
{
    Cxm__V1__Value *v = &values[nvalues++];
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    v->number_value = d;
    return v;
}

static Cxm__V1__Value *vstr(const char *s)
{
    Cxm__V1__Value *v = &values[nvalues++];
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static Cxm__V1__Value *vbool(int b)
{
    Cxm__V1__Value *v = &values[nvalues++];
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_BOOL_VALUE;
    v->bool_value = b;
    return v;
}

static Cxm__V1__Value *vts(int64_t t)
{
    Cxm__V1__Value *v = &values[nvalues++];
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS;
    v->timestamp_unix_ms = t;
    return v;
}

static prop *pr(const char *key, Cxm__V1__Value *v)
{
    prop *p = &props_pool[nprops_pool++];
    cxm__v1__touchpoint_event__properties_entry__init(p);
    p->key = (char *)key;
    p->value = v;
    return p;
}

static Cxm__V1__TouchpointEvent ev(const char *type, const char *tp, Cxm__V1__Channel ch)
{
    Cxm__V1__TouchpointEvent e = CXM__V1__TOUCHPOINT_EVENT__INIT;
    e.event_type = (char *)type;
    e.touchpoint = (char *)tp;
    e.channel = ch;
    return e;
}

static Cxm__V1__StageRule rule(const char *id, const char *type, Cxm__V1__JourneyStage st,
                               int32_t prio)
{
    Cxm__V1__StageRule r = CXM__V1__STAGE_RULE__INIT;
    r.rule_id = (char *)id;
    r.event_type = (char *)type;
    r.stage = st;
    r.priority = prio;
    return r;
}

static Cxm__V1__PropertyCondition cond(const char *name, Cxm__V1__CompareOp op, Cxm__V1__Value *v)
{
    Cxm__V1__PropertyCondition c = CXM__V1__PROPERTY_CONDITION__INIT;
    c.name = (char *)name;
    c.op = op;
    c.value = v;
    return c;
}

/* ---- the defaults on cxm-gen's world ---- */

/* Every (event type, touchpoint, channel) cxm-gen emits, with its stage
 * column (benchmarks/gen/gen_world.c). */
static const struct {
    const char *type, *tp;
    Cxm__V1__Channel ch;
    Cxm__V1__JourneyStage stage;
} gen_events[] = {
    {"ad_click", "social_ad", SOCIAL, AW},
    {"page_view", "search_landing", WEB, AW},
    {"app_install", "app_store_page", APP, AW},
    {"product_view", "product_page", WEB, CO},
    {"product_view", "product_page", APP, CO},
    {"compare", "compare_page", WEB, CO},
    {"add_to_cart", "cart", WEB, CO},
    {"add_to_cart", "cart", APP, CO},
    {"store_visit", "store_visit", STORE, CO},
    {"call_ended", "presales_call", CC, CO},
    {"sign_up", "account", WEB, CO},
    {"sign_up", "account", APP, CO},
    {"login", "account", WEB, CO},
    {"purchase", "checkout", WEB, PU},
    {"purchase", "checkout", APP, PU},
    {"purchase", "store_checkout", STORE, PU},
    {"delivery_update", "delivery", EMAIL, US},
    {"onboarding_step", "onboarding", APP, US},
    {"call_ended", "support_call", CC, US},
    {"article_view", "help_center", WEB, US},
    {"article_view", "help_center", APP, US},
    {"email_click", "renewal_offer", EMAIL, RE},
    {"reward_redeemed", "loyalty_app", APP, RE},
    {"review_posted", "review_page", WEB, AD},
    {"review_posted", "review_page", APP, AD},
    {"referral_shared", "referral_share", SOCIAL, AD},
};

static void test_defaults(void)
{
    size_t n;
    Cxm__V1__StageRule *const *d = jrules_defaults(&n);
    CHECK(n > 20 && n <= JRULES_MAX);
    /* They pass the same validation a client's rules do. */
    Cxm__V1__UpsertStageRulesRequest req = CXM__V1__UPSERT_STAGE_RULES_REQUEST__INIT;
    req.rules = (Cxm__V1__StageRule **)d;
    req.n_rules = n;
    char err[320] = "";
    CHECK_EQ_INT(jrn_check_rules(&req, err), 0);
    if (err[0])
        fprintf(stderr, "defaults rejected: %s\n", err);
    jrules *r = jrules_compile(d, n, 0);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_EQ_INT(jrules_version(r), 0);
    for (size_t i = 0; i < sizeof gen_events / sizeof gen_events[0]; i++) {
        Cxm__V1__TouchpointEvent e = ev(gen_events[i].type, gen_events[i].tp, gen_events[i].ch);
        jrules_step s = jrules_apply(r, &e, 0);
        if (s.stage != (int)gen_events[i].stage)
            fprintf(stderr, "%s at %s: stage %d, cxm-gen says %d\n", gen_events[i].type,
                    gen_events[i].tp, s.stage, gen_events[i].stage);
        CHECK_EQ_INT(s.stage, gen_events[i].stage);
        CHECK(s.changed && s.rule_id != NULL);
    }
    /* The generic meanings where cxm-gen's touchpoints do not refine them. */
    Cxm__V1__TouchpointEvent e = ev("call_ended", "hotline", CC);
    CHECK_EQ_INT(jrules_apply(r, &e, AW).stage, US);
    e = ev("article_view", "blog", WEB);
    CHECK_EQ_INT(jrules_apply(r, &e, 0).stage, AW);
    e = ev("email_click", "newsletter", EMAIL);
    CHECK_EQ_INT(jrules_apply(r, &e, 0).stage, AW);
    /* A repeat purchase flagged by the collector is retention. */
    e = ev("purchase", "checkout", WEB);
    prop *ps[] = {pr("repeat", vbool(1))};
    e.properties = ps;
    e.n_properties = 1;
    jrules_step s = jrules_apply(r, &e, PU);
    CHECK(s.changed && s.stage == RE);
    CHECK_EQ_STR(s.rule_id, "retention.repeat-purchase");
    ps[0] = pr("repeat", vbool(0));
    CHECK_EQ_INT(jrules_apply(r, &e, 0).stage, PU);
    /* Cancellation regresses; a late product view does not. */
    e = ev("subscription_cancelled", "account", WEB);
    s = jrules_apply(r, &e, RE);
    CHECK(s.changed && s.stage == CO);
    e = ev("product_view", "product_page", WEB);
    s = jrules_apply(r, &e, RE);
    CHECK(!s.changed && s.stage == RE && s.rule_id == NULL);
    /* Unknown event types change nothing. */
    e = ev("heartbeat", "app", APP);
    s = jrules_apply(r, &e, US);
    CHECK(!s.changed && s.stage == US);
    jrules_free(r);
}

/* ---- precedence and regression ---- */

static void test_precedence(void)
{
    /* Given in scrambled order: priority desc, then rule_id asc decides. */
    Cxm__V1__StageRule rs[] = {
        rule("b", "x", US, 5),
        rule("low", "x", AD, 1),
        rule("a", "x", PU, 5),
        rule("other", "y", RE, 99),
    };
    Cxm__V1__StageRule *rp[] = {&rs[0], &rs[1], &rs[2], &rs[3]};
    jrules *r = jrules_compile(rp, 4, 7);
    CHECK(r && jrules_version(r) == 7);
    if (!r)
        return;
    Cxm__V1__TouchpointEvent e = ev("x", "somewhere", WEB);
    jrules_step s = jrules_apply(r, &e, 0);
    CHECK(s.changed && s.stage == PU);
    CHECK_EQ_STR(s.rule_id, "a");
    /* Same stage: no transition. */
    s = jrules_apply(r, &e, PU);
    CHECK(!s.changed && s.stage == PU && s.rule_id == NULL);
    /* Would regress: ignored, and the lower rules ("b", "low" -> ADVOCACY)
     * are NOT tried. */
    s = jrules_apply(r, &e, RE);
    CHECK(!s.changed && s.stage == RE);
    jrules_free(r);

    /* Regression allowed: the match moves the customer back. */
    rs[2].allow_regression = 1;
    r = jrules_compile(rp, 4, 8);
    s = jrules_apply(r, &e, RE);
    CHECK(s.changed && s.stage == PU);
    CHECK_EQ_STR(s.rule_id, "a");
    jrules_free(r);

    /* A higher priority wins over the rule_id order. */
    rs[1].priority = 6;
    r = jrules_compile(rp, 4, 9);
    s = jrules_apply(r, &e, CO);
    CHECK_EQ_STR(s.rule_id, "low");
    CHECK_EQ_INT(s.stage, AD);
    jrules_free(r);

    /* An empty set matches nothing. */
    r = jrules_compile(NULL, 0, 1);
    CHECK(r != NULL);
    s = jrules_apply(r, &e, AW);
    CHECK(!s.changed && s.stage == AW);
    jrules_free(r);
    jrules_free(NULL);
}

/* Every matcher must hold: touchpoint, channel, conditions; the compiled
 * set owns copies of everything. */
static void test_matchers(void)
{
    char *id = strdup("tp-rule"), *tp = strdup("checkout"), *name = strdup("price");
    Cxm__V1__Value *v = vnum(100);
    Cxm__V1__PropertyCondition c = cond(name, CXM__V1__COMPARE_OP__COMPARE_OP_GE, v);
    Cxm__V1__PropertyCondition *cs[] = {&c};
    Cxm__V1__StageRule r1 = rule(id, "", PU, 0);
    r1.touchpoint = tp;
    r1.channel = APP;
    r1.conditions = cs;
    r1.n_conditions = 1;
    Cxm__V1__StageRule *rp[] = {&r1};
    jrules *r = jrules_compile(rp, 1, 1);
    /* The source may go away. */
    memset(id, 'z', strlen(id));
    memset(tp, 'z', strlen(tp));
    memset(name, 'z', strlen(name));
    free(id), free(tp), free(name);
    v->number_value = -1;

    Cxm__V1__TouchpointEvent e = ev("anything", "checkout", APP);
    prop *ps[] = {pr("price", vnum(150))};
    e.properties = ps;
    e.n_properties = 1;
    jrules_step s = jrules_apply(r, &e, 0);
    CHECK(s.changed && s.stage == PU);
    CHECK_EQ_STR(s.rule_id, "tp-rule");
    e.channel = WEB;
    CHECK(!jrules_apply(r, &e, 0).changed);
    e.channel = APP;
    e.touchpoint = "checkout2";
    CHECK(!jrules_apply(r, &e, 0).changed);
    e.touchpoint = "checkout";
    ps[0] = pr("price", vnum(99.5));
    CHECK(!jrules_apply(r, &e, 0).changed);
    e.n_properties = 0;
    CHECK(!jrules_apply(r, &e, 0).changed);
    jrules_free(r);
}

/* ---- conditions ---- */

static bool holds1(const char *name, Cxm__V1__CompareOp op, Cxm__V1__Value *cv, prop *const *ps,
                   size_t n)
{
    Cxm__V1__PropertyCondition c = cond(name, op, cv);
    Cxm__V1__PropertyCondition *cs[] = {&c};
    return jrules_conditions_hold(cs, 1, ps, n);
}

#define EQ CXM__V1__COMPARE_OP__COMPARE_OP_EQ
#define NE CXM__V1__COMPARE_OP__COMPARE_OP_NE
#define LT CXM__V1__COMPARE_OP__COMPARE_OP_LT
#define LE CXM__V1__COMPARE_OP__COMPARE_OP_LE
#define GT CXM__V1__COMPARE_OP__COMPARE_OP_GT
#define GE CXM__V1__COMPARE_OP__COMPARE_OP_GE
#define EXISTS CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS
#define NOT_EXISTS CXM__V1__COMPARE_OP__COMPARE_OP_NOT_EXISTS
#define PREFIX CXM__V1__COMPARE_OP__COMPARE_OP_PREFIX
#define CONTAINS CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS

/* The six ordering ops on one kind: stored `mid` against lower, equal and
 * higher condition values. */
static void check_orders(prop *const *ps, const char *name, Cxm__V1__Value *lo, Cxm__V1__Value *eq,
                         Cxm__V1__Value *hi)
{
    CHECK(holds1(name, EQ, eq, ps, 3) && !holds1(name, EQ, lo, ps, 3));
    CHECK(holds1(name, NE, lo, ps, 3) && holds1(name, NE, hi, ps, 3) &&
          !holds1(name, NE, eq, ps, 3));
    CHECK(holds1(name, LT, hi, ps, 3) && !holds1(name, LT, eq, ps, 3) &&
          !holds1(name, LT, lo, ps, 3));
    CHECK(holds1(name, LE, hi, ps, 3) && holds1(name, LE, eq, ps, 3) &&
          !holds1(name, LE, lo, ps, 3));
    CHECK(holds1(name, GT, lo, ps, 3) && !holds1(name, GT, eq, ps, 3) &&
          !holds1(name, GT, hi, ps, 3));
    CHECK(holds1(name, GE, lo, ps, 3) && holds1(name, GE, eq, ps, 3) &&
          !holds1(name, GE, hi, ps, 3));
}

static void test_conditions(void)
{
    prop *ps[] = {pr("n", vnum(10)), pr("t", vts(1700000000000)), pr("s", vstr("Mango"))};
    check_orders(ps, "n", vnum(9.5), vnum(10), vnum(10.5));
    check_orders(ps, "t", vts(1699999999999), vts(1700000000000), vts(1700000000001));
    /* Strings order by bytes: "M" (0x4d) < "a"; UTF-8 lead bytes sort high. */
    check_orders(ps, "s", vstr("Lemon"), vstr("Mango"), vstr("mango"));
    CHECK(holds1("s", LT, vstr("\xc3\xa9"), ps, 3));
    CHECK(holds1("s", GT, vstr("Mang"), ps, 3)); /* a prefix sorts first */

    /* Booleans: EQ and NE only. */
    prop *bs[] = {pr("b", vbool(1))};
    CHECK(holds1("b", EQ, vbool(1), bs, 1) && !holds1("b", EQ, vbool(0), bs, 1));
    CHECK(holds1("b", NE, vbool(0), bs, 1) && !holds1("b", NE, vbool(1), bs, 1));
    CHECK(!holds1("b", LT, vbool(1), bs, 1) && !holds1("b", GE, vbool(1), bs, 1));

    /* Another type never matches, NE included. */
    CHECK(!holds1("n", EQ, vstr("10"), ps, 3));
    CHECK(!holds1("n", NE, vstr("10"), ps, 3));
    CHECK(!holds1("n", NE, vts(10), ps, 3));
    CHECK(!holds1("t", LT, vnum(1e18), ps, 3));
    CHECK(!holds1("s", NE, vnum(1), ps, 3));
    CHECK(!holds1("s", GE, vbool(1), ps, 3));
    CHECK(!holds1("b", NE, vnum(0), bs, 1));
    CHECK(!holds1("n", PREFIX, vstr("1"), ps, 3));
    CHECK(!holds1("n", CONTAINS, vstr("1"), ps, 3));

    /* Presence. */
    CHECK(holds1("n", EXISTS, NULL, ps, 3) && !holds1("missing", EXISTS, NULL, ps, 3));
    CHECK(holds1("missing", NOT_EXISTS, NULL, ps, 3) && !holds1("s", NOT_EXISTS, vnum(1), ps, 3));
    /* A missing property matches no comparison, not even NE. */
    CHECK(!holds1("missing", NE, vnum(1), ps, 3) && !holds1("missing", EQ, vnum(1), ps, 3));

    /* PREFIX is case-sensitive, CONTAINS not (ASCII). */
    CHECK(holds1("s", PREFIX, vstr("Man"), ps, 3) && !holds1("s", PREFIX, vstr("man"), ps, 3));
    CHECK(holds1("s", PREFIX, vstr(""), ps, 3) && !holds1("s", PREFIX, vstr("Mangos"), ps, 3));
    CHECK(holds1("s", CONTAINS, vstr("ANG"), ps, 3) && holds1("s", CONTAINS, vstr("go"), ps, 3));
    CHECK(!holds1("s", CONTAINS, vstr("gox"), ps, 3) && holds1("s", CONTAINS, vstr(""), ps, 3));

    /* A value op with no value, or an unknown op, never holds. */
    CHECK(!holds1("n", EQ, NULL, ps, 3));
    CHECK(!holds1("n", (Cxm__V1__CompareOp)42, vnum(10), ps, 3));
    CHECK(!holds1("n", CXM__V1__COMPARE_OP__COMPARE_OP_UNSPECIFIED, vnum(10), ps, 3));

    /* All must hold; none is true. */
    Cxm__V1__PropertyCondition a = cond("n", GT, vnum(5)), b = cond("s", EQ, vstr("Mango"));
    Cxm__V1__PropertyCondition *cs[] = {&a, &b};
    CHECK(jrules_conditions_hold(cs, 2, ps, 3));
    b.value = vstr("Kiwi");
    CHECK(!jrules_conditions_hold(cs, 2, ps, 3));
    CHECK(jrules_conditions_hold(NULL, 0, ps, 3));
    CHECK(jrules_conditions_hold(NULL, 0, NULL, 0));
}

/* CONTAINS where a search must fall back on what it already matched
 * (overlapping prefixes), in the stack and the heap table sizes. */
static void test_contains_overlaps(void)
{
    prop *ps[] = {pr("s", vstr("aaAb abAbAC xyz")), pr("e", vstr(""))};
    CHECK(holds1("s", CONTAINS, vstr("AAB"), ps, 2));    /* restarts inside "aaA" */
    CHECK(holds1("s", CONTAINS, vstr("ababac"), ps, 2)); /* a border of "abab" */
    CHECK(holds1("s", CONTAINS, vstr("XYZ"), ps, 2) && !holds1("s", CONTAINS, vstr("xyzz"), ps, 2));
    CHECK(holds1("s", CONTAINS, vstr("abac x"), ps, 2) &&
          !holds1("s", CONTAINS, vstr("abac y"), ps, 2));
    CHECK(holds1("e", CONTAINS, vstr(""), ps, 2) && !holds1("e", CONTAINS, vstr("a"), ps, 2));
    /* Only ASCII folds: other bytes compare as they are. */
    prop *us[] = {pr("u", vstr("caf\xc3\xa9 CR\xc3\x88ME"))};
    CHECK(holds1("u", CONTAINS, vstr("CAF\xc3\xa9"), us, 1));
    CHECK(!holds1("u", CONTAINS, vstr("cr\xc3\xa8me"), us, 1));

    /* Needles over the stack table: "a" * 999 + "b" in "a" * 2000 + "b". */
    static char hay[2002], needle[1001];
    memset(hay, 'a', 2000);
    hay[2000] = 'B';
    memset(needle, 'A', 999);
    needle[999] = 'b';
    prop *ls[] = {pr("l", vstr(hay))};
    CHECK(holds1("l", CONTAINS, vstr(needle), ls, 1));
    needle[999] = 'c';
    CHECK(!holds1("l", CONTAINS, vstr(needle), ls, 1));
}

/* CONTAINS costs time linear in the strings, not their product: 8 KiB of
 * "a" searched for "a" * 4095 + "b" (the worst case of a plain scan, 17
 * million compares a search) 200 times is well under a second. */
static void test_contains_linear(void)
{
    static char hay[8193], needle[4097];
    memset(hay, 'a', 8192);
    memset(needle, 'a', 4095);
    needle[4095] = 'b';
    prop *ps[] = {pr("s", vstr(hay))};
    Cxm__V1__PropertyCondition c = cond("s", CONTAINS, vstr(needle));
    Cxm__V1__PropertyCondition *cs[] = {&c};
    struct timespec t0, t1;
    bool any = false;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 200; i++)
        any |= jrules_conditions_hold(cs, 1, ps, 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(!any);
    CHECK(s < 0.5);
    if (s >= 0.5)
        fprintf(stderr, "200 worst-case CONTAINS searches took %.3f s\n", s);
}

static void test_strength(void)
{
    CHECK(jrules_strength("purchase") == 5 && jrules_strength("order_completed") == 5);
    CHECK(jrules_strength("add_to_cart") == 3 && jrules_strength("wishlist_add") == 3);
    CHECK(jrules_strength("compare") == 2 && jrules_strength("ad_click") == 2);
    CHECK(jrules_strength("product_view") == 1 && jrules_strength("Page_View") == 1);
    CHECK(jrules_strength("offer_dismissed") == -1 && jrules_strength("item_returned") == -1);
    CHECK(jrules_strength("order_cancelled") == -1 && jrules_strength("refund_issued") == -1);
    CHECK(jrules_strength("heartbeat") == 1 && jrules_strength(NULL) == 1);
}

/* ---- the agreement measurement (a tool mode, not a test) ---- */

typedef struct gen_row {
    char customer[32], type[64], tp[64], stage[24];
    int channel;
    int64_t at;
    size_t line;
} gen_row;

static int stage_of_name(const char *s)
{
    static const char *const names[] = {"",    "awareness", "consideration", "purchase",
                                        "use", "retention", "advocacy"};
    for (int i = 1; i < 7; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return 0;
}

static int channel_of_name(const char *s)
{
    static const char *const names[] = {"",      "web",    "app",   "contact_centre",
                                        "store", "social", "email", "sms",
                                        "push",  "chat",   "field", "partner"};
    for (int i = 1; i < 12; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return 12;
}

static int row_order(const void *pa, const void *pb)
{
    const gen_row *a = pa, *b = pb;
    int d = strcmp(a->customer, b->customer);
    if (d)
        return d;
    if (a->at != b->at)
        return a->at < b->at ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

/* The first 9 columns of events.csv hold no quotes or commas. */
static bool parse_row(char *line, gen_row *r)
{
    char *f[9];
    for (int i = 0; i < 9; i++) {
        f[i] = strsep(&line, ",");
        if (!f[i])
            return false;
    }
    snprintf(r->customer, sizeof r->customer, "%s", f[1]);
    snprintf(r->tp, sizeof r->tp, "%s", f[4]);
    snprintf(r->type, sizeof r->type, "%s", f[6]);
    snprintf(r->stage, sizeof r->stage, "%s", f[7]);
    r->channel = channel_of_name(f[5]);
    r->at = strtoll(f[8], NULL, 10);
    return true;
}

static int agreement(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return 2;
    }
    size_t cap = 1 << 16, n = 0;
    gen_row *rows = malloc(cap * sizeof *rows);
    char line[8192];
    while (rows && fgets(line, sizeof line, f)) {
        if (n == cap)
            rows = realloc(rows, (cap *= 2) * sizeof *rows);
        if (rows && strncmp(line, "event_id,", 9) != 0 && parse_row(line, &rows[n]))
            rows[n].line = n, n++;
    }
    fclose(f);
    if (!rows)
        return 2;
    qsort(rows, n, sizeof *rows, row_order);
    size_t nd;
    Cxm__V1__StageRule *const *d = jrules_defaults(&nd);
    jrules *r = jrules_compile(d, nd, 0);
    /* rule: the deciding rule's stage (a per-event classification); state:
     * the customer's stage after the event (never earlier than before,
     * while cxm-gen's column is the touchpoint's stage); final: the last
     * state equals the furthest stage cxm-gen reached. */
    size_t rule_ok = 0, state_ok = 0, customers = 0, final_ok = 0;
    int cur = 0, furthest = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(rows[i].customer, rows[i - 1].customer) != 0)
            cur = 0, furthest = 0, customers++;
        Cxm__V1__TouchpointEvent e = ev(rows[i].type, rows[i].tp, rows[i].channel);
        int gen = stage_of_name(rows[i].stage);
        /* The classification alone: from nothing, every match changes. */
        rule_ok += jrules_apply(r, &e, 0).stage == gen;
        cur = jrules_apply(r, &e, cur).stage;
        state_ok += cur == gen;
        furthest = gen > furthest ? gen : furthest;
        if (i + 1 == n || strcmp(rows[i].customer, rows[i + 1].customer) != 0)
            final_ok += cur == furthest;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("events %zu, customers %zu, %.0f ns per event for two applies and the tally\n", n,
           customers, ns / (double)n);
    printf("rule stage == gen stage:        %zu (%.2f%%)\n", rule_ok, 100.0 * rule_ok / n);
    printf("stage after event == gen stage: %zu (%.2f%%)\n", state_ok, 100.0 * state_ok / n);
    printf("final stage == furthest stage:  %zu of %zu customers (%.2f%%)\n", final_ok, customers,
           100.0 * final_ok / customers);
    jrules_free(r);
    free(rows);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--agreement") == 0)
        return agreement(argv[2]);
    test_defaults();
    test_precedence();
    test_matchers();
    test_conditions();
    test_contains_overlaps();
    test_contains_linear();
    test_strength();
    return check_report();
}
