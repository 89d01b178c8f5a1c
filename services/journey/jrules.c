/*
 * jrules.c - journey stage rules (see jrules.h).
 *
 * A compiled set is the rules sorted into match order, each with the
 * FNV hashes of its event_type and touchpoint, so matching an event costs
 * two hashes of the event and a few integer compares per rule; strings are
 * compared only when the hashes agree. Everything a set needs lives in one
 * arena it owns, freed at once by jrules_free.
 */
#include "jrules.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/arena.h"
#include "cxm/hash.h"

typedef Cxm__V1__PropertyCondition jr_cond;
typedef Cxm__V1__TouchpointEvent__PropertiesEntry jr_prop;

/* One rule in match order. NULL event_type / touchpoint match anything. */
typedef struct jr_rule {
    const char *rule_id;
    const char *event_type;
    const char *touchpoint;
    uint64_t event_hash, touch_hash;
    int channel; /* 0 = any */
    jr_cond **conds;
    size_t nconds;
    int stage;
    int32_t priority;
    bool regress;
} jr_rule;

struct jrules {
    cxm_arena arena; /* every string and condition of the set */
    jr_rule *rules;
    size_t n;
    uint64_t version;
};

/* ---- the shipped defaults -------------------------------------------- */

#define AW CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_AWARENESS
#define CO CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION
#define PU CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE
#define US CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE
#define RE CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_RETENTION
#define AD CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_ADVOCACY

/* A default rule. Priorities: rules narrowed by a touchpoint or a
 * condition (100) come before the plain event-type rules they refine, and
 * cancellations (90) before the rest; plain rules take ten times their
 * stage, later stages first, as cxm-gen's own stage_rules.pb orders them.
 * Plain rules name distinct event types, so their order only matters for
 * determinism. */
#define RULE(id, et, tp, nc, cs, st, prio, back, desc)                                             \
    {                                                                                              \
        .base = PROTOBUF_C_MESSAGE_INIT(&cxm__v1__stage_rule__descriptor), .rule_id = (char *)id,  \
        .event_type = (char *)et, .touchpoint = (char *)tp,                                        \
        .channel = CXM__V1__CHANNEL__CHANNEL_UNSPECIFIED, .n_conditions = nc, .conditions = cs,    \
        .stage = st, .priority = prio, .allow_regression = back, .description = (char *)desc       \
    }
#define PLAIN(id, et, st, desc) RULE(id, et, "", 0, NULL, st, (int32_t)(st)*10, 0, desc)
#define AT(id, et, tp, st, desc) RULE(id, et, tp, 0, NULL, st, 100, 0, desc)

/* "repeat": true marks an order after the customer's first (collectors
 * that know it set it; cxm-gen does not, and its repeat purchases stay
 * PURCHASE, as its stage column says). */
static Cxm__V1__Value repeat_true = {
    .base = PROTOBUF_C_MESSAGE_INIT(&cxm__v1__value__descriptor),
    .kind_case = CXM__V1__VALUE__KIND_BOOL_VALUE,
    .bool_value = 1,
};
static Cxm__V1__PropertyCondition repeat_cond = {
    .base = PROTOBUF_C_MESSAGE_INIT(&cxm__v1__property_condition__descriptor),
    .name = (char *)"repeat",
    .op = CXM__V1__COMPARE_OP__COMPARE_OP_EQ,
    .value = &repeat_true,
};
static Cxm__V1__PropertyCondition *repeat_conds[] = {&repeat_cond};

static Cxm__V1__StageRule default_rules[] = {
    /* Refinements of the plain rules below. */
    RULE("retention.repeat-purchase", "purchase", "", 1, repeat_conds, RE, 100, 0,
         "A purchase flagged repeat=true is a customer buying again."),
    AT("retention.renewal-offer", "email_click", "renewal_offer", RE,
       "Clicking a renewal or win-back offer."),
    AT("consideration.presales-call", "call_ended", "presales_call", CO,
       "A sales call before buying is evaluation, not support."),
    AT("use.help-article", "article_view", "help_center", US,
       "Reading the help centre means using the product."),
    /* Cancellations take the customer back to evaluating. */
    RULE("consideration.order-cancelled", "order_cancelled", "", 0, NULL, CO, 90, 1,
         "A cancelled order goes back to consideration."),
    RULE("consideration.subscription-cancelled", "subscription_cancelled", "", 0, NULL, CO, 90, 1,
         "A cancelled subscription goes back to consideration."),
    /* Plain event types, latest stage first. */
    PLAIN("advocacy.review", "review_posted", AD, "Posting a review."),
    PLAIN("advocacy.referral", "referral_shared", AD, "Referring someone."),
    PLAIN("advocacy.social-share", "social_share", AD, "Sharing the brand on social networks."),
    PLAIN("retention.reward", "reward_redeemed", RE, "Redeeming loyalty rewards."),
    PLAIN("retention.loyalty-join", "loyalty_joined", RE, "Joining the loyalty programme."),
    PLAIN("retention.renewal", "subscription_renewed", RE, "Renewing a subscription."),
    PLAIN("use.onboarding", "onboarding_step", US, "Setting up the product."),
    PLAIN("use.delivery", "delivery_update", US, "Receiving an order."),
    PLAIN("use.support-call", "call_ended", US, "A call with support."),
    PLAIN("use.support-ticket", "ticket_created", US, "Asking support for help."),
    PLAIN("use.chat", "chat_ended", US, "A support chat."),
    PLAIN("purchase.purchase", "purchase", PU, "Buying."),
    PLAIN("purchase.order", "order_completed", PU, "Completing an order."),
    PLAIN("purchase.subscription", "subscription_started", PU, "Subscribing."),
    PLAIN("consideration.product-view", "product_view", CO, "Looking at a product."),
    PLAIN("consideration.compare", "compare", CO, "Comparing products."),
    PLAIN("consideration.add-to-cart", "add_to_cart", CO, "Putting a product in the cart."),
    PLAIN("consideration.wishlist", "wishlist_add", CO, "Saving a product for later."),
    PLAIN("consideration.search", "search", CO, "Searching the catalogue."),
    PLAIN("consideration.sign-up", "sign_up", CO, "Creating an account."),
    PLAIN("consideration.login", "login", CO, "Signing in."),
    PLAIN("consideration.store-visit", "store_visit", CO, "Visiting a store."),
    PLAIN("consideration.checkout-started", "checkout_started", CO, "Starting a checkout."),
    PLAIN("awareness.page-view", "page_view", AW, "Landing on the site."),
    PLAIN("awareness.ad-click", "ad_click", AW, "Clicking an ad."),
    PLAIN("awareness.ad-impression", "ad_impression", AW, "Seeing an ad."),
    PLAIN("awareness.app-install", "app_install", AW, "Installing the app."),
    PLAIN("awareness.email-open", "email_open", AW, "Opening a marketing email."),
    PLAIN("awareness.email-click", "email_click", AW, "Clicking a marketing email."),
    PLAIN("awareness.article-view", "article_view", AW, "Reading content."),
};

#define NDEFAULTS (sizeof default_rules / sizeof default_rules[0])

static Cxm__V1__StageRule *default_ptrs[NDEFAULTS];
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
    for (size_t i = 0; i < NDEFAULTS; i++)
        default_ptrs[i] = &default_rules[i];
}

Cxm__V1__StageRule *const *jrules_defaults(size_t *n)
{
    pthread_once(&default_once, default_init);
    *n = NDEFAULTS;
    return default_ptrs;
}

/* ---- compiling -------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    return cxm_hash(CXM_HASH_INIT, s, strlen(s));
}

/* A copy of s in the set's arena, or NULL for an empty (match-all) one.
 * *ok turns false when out of memory. */
static const char *copy_matcher(cxm_arena *a, const char *s, bool *ok)
{
    if (!s || !*s)
        return NULL;
    char *c = cxm_arena_strndup(a, s, strlen(s));
    if (!c)
        *ok = false;
    return c;
}

static jr_cond *copy_cond(cxm_arena *a, const jr_cond *src)
{
    jr_cond *c = cxm_arena_alloc(a, sizeof *c);
    if (!c)
        return NULL;
    *c = *src;
    c->name = cxm_arena_strndup(a, src->name ? src->name : "", strlen(src->name ? src->name : ""));
    c->value = NULL;
    if (!c->name)
        return NULL;
    if (!src->value)
        return c;
    Cxm__V1__Value *v = cxm_arena_alloc(a, sizeof *v);
    if (!v)
        return NULL;
    *v = *src->value;
    if (v->kind_case == CXM__V1__VALUE__KIND_STRING_VALUE) {
        const char *s = v->string_value ? v->string_value : "";
        if (!(v->string_value = cxm_arena_strndup(a, s, strlen(s))))
            return NULL;
    }
    c->value = v;
    return c;
}

static bool compile_one(cxm_arena *a, const Cxm__V1__StageRule *src, jr_rule *r)
{
    bool ok = true;
    const char *id = src->rule_id ? src->rule_id : "";
    r->rule_id = cxm_arena_strndup(a, id, strlen(id));
    r->event_type = copy_matcher(a, src->event_type, &ok);
    r->touchpoint = copy_matcher(a, src->touchpoint, &ok);
    if (!ok || !r->rule_id)
        return false;
    r->event_hash = r->event_type ? hash_str(r->event_type) : 0;
    r->touch_hash = r->touchpoint ? hash_str(r->touchpoint) : 0;
    r->channel = (int)src->channel;
    r->stage = (int)src->stage;
    r->priority = src->priority;
    r->regress = src->allow_regression;
    r->nconds = src->n_conditions;
    r->conds = src->n_conditions ? cxm_arena_alloc(a, src->n_conditions * sizeof *r->conds) : NULL;
    if (src->n_conditions && !r->conds)
        return false;
    for (size_t i = 0; i < src->n_conditions; i++)
        if (!(r->conds[i] = copy_cond(a, src->conditions[i])))
            return false;
    return true;
}

/* Match order: priority descending, then rule_id in byte order. */
static int rule_order(const void *pa, const void *pb)
{
    const jr_rule *a = pa, *b = pb;
    if (a->priority != b->priority)
        return a->priority > b->priority ? -1 : 1;
    return strcmp(a->rule_id, b->rule_id);
}

jrules *jrules_compile(Cxm__V1__StageRule *const *rules, size_t n, uint64_t version)
{
    jrules *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    cxm_arena_init(&r->arena, NULL, 0, 0);
    r->version = version;
    r->rules = n ? cxm_arena_calloc(&r->arena, n, sizeof *r->rules) : NULL;
    if (n && !r->rules)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (!compile_one(&r->arena, rules[i], &r->rules[i]))
            goto fail;
    r->n = n;
    if (n > 1)
        qsort(r->rules, n, sizeof *r->rules, rule_order);
    return r;
fail:
    jrules_free(r);
    return NULL;
}

void jrules_free(jrules *r)
{
    if (!r)
        return;
    cxm_arena_dispose(&r->arena);
    free(r);
}

uint64_t jrules_version(const jrules *r)
{
    return r->version;
}

/* ---- matching --------------------------------------------------------- */

/* The event's matcher keys, hashed once per event. */
typedef struct ev_keys {
    const char *event_type, *touchpoint;
    uint64_t event_hash, touch_hash;
} ev_keys;

static bool rule_matches(const jr_rule *r, const Cxm__V1__TouchpointEvent *ev, const ev_keys *k)
{
    if (r->event_type &&
        (r->event_hash != k->event_hash || strcmp(r->event_type, k->event_type) != 0))
        return false;
    if (r->touchpoint &&
        (r->touch_hash != k->touch_hash || strcmp(r->touchpoint, k->touchpoint) != 0))
        return false;
    if (r->channel && r->channel != (int)ev->channel)
        return false;
    return jrules_conditions_hold(r->conds, r->nconds, ev->properties, ev->n_properties);
}

jrules_step jrules_apply(const jrules *r, const Cxm__V1__TouchpointEvent *ev, int current)
{
    jrules_step out = {.stage = current, .changed = false, .rule_id = NULL};
    ev_keys k = {ev->event_type ? ev->event_type : "", ev->touchpoint ? ev->touchpoint : "", 0, 0};
    k.event_hash = hash_str(k.event_type);
    k.touch_hash = hash_str(k.touchpoint);
    for (size_t i = 0; i < r->n; i++) {
        const jr_rule *rule = &r->rules[i];
        if (!rule_matches(rule, ev, &k))
            continue;
        /* The first match decides, even when it decides to change nothing
         * (same stage, or a regression the rule does not allow). */
        if (rule->stage != current && (rule->stage > current || rule->regress)) {
            out.stage = rule->stage;
            out.changed = true;
            out.rule_id = rule->rule_id;
        }
        break;
    }
    return out;
}

/* ---- property conditions --------------------------------------------- */

static const Cxm__V1__Value *find_prop(const char *name, jr_prop *const *props, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (props[i] && props[i]->key && strcmp(props[i]->key, name) == 0)
            return props[i]->value;
    return NULL;
}

static int lower(char c)
{
    return tolower((unsigned char)c);
}

/* Knuth-Morris-Pratt's table of the needle (case folded): f[i] is the
 * length of the longest proper border of needle[0..i]. */
static void kmp_table(const char *needle, size_t nl, size_t *f)
{
    f[0] = 0;
    for (size_t i = 1, k = 0; i < nl; i++) {
        while (k && lower(needle[i]) != lower(needle[k]))
            k = f[k - 1];
        k += lower(needle[i]) == lower(needle[k]);
        f[i] = k;
    }
}

static bool kmp_find(const char *hay, size_t hl, const char *needle, size_t nl, const size_t *f)
{
    for (size_t i = 0, k = 0; i < hl; i++) {
        while (k && lower(hay[i]) != lower(needle[k]))
            k = f[k - 1];
        if (lower(hay[i]) == lower(needle[k]) && ++k == nl)
            return true;
    }
    return false;
}

/* The plain scan, for a needle whose table did not fit in memory. */
static bool scan_ci(const char *hay, size_t hl, const char *needle, size_t nl)
{
    for (size_t at = 0; at + nl <= hl; at++) {
        size_t i = 0;
        while (i < nl && lower(hay[at + i]) == lower(needle[i]))
            i++;
        if (i == nl)
            return true;
    }
    return false;
}

#define KMP_STACK 256 /* needles up to this long keep their table on the stack */

/* ASCII case-insensitive substring search; an empty needle is found.
 * Linear in both lengths: the plain scan costs their product, and both are
 * the caller's (8 KiB values in a stage rule run on every tracked event, or
 * in every funnel step). */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t hl = strlen(hay), nl = strlen(needle);
    if (nl == 0)
        return true;
    if (nl > hl)
        return false;
    size_t small[KMP_STACK];
    size_t *f = nl <= KMP_STACK ? small : malloc(nl * sizeof *f);
    if (!f)
        return scan_ci(hay, hl, needle, nl);
    kmp_table(needle, nl, f);
    bool found = kmp_find(hay, hl, needle, nl, f);
    if (f != small)
        free(f);
    return found;
}

/* -1, 0 or 1 comparing two values of one kind; 2 when they do not order
 * (booleans, NaN). */
static int compare_values(const Cxm__V1__Value *p, const Cxm__V1__Value *c)
{
    switch (p->kind_case) {
    case CXM__V1__VALUE__KIND_NUMBER_VALUE:
        if (isnan(p->number_value) || isnan(c->number_value))
            return 2;
        return (p->number_value > c->number_value) - (p->number_value < c->number_value);
    case CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS:
        return (p->timestamp_unix_ms > c->timestamp_unix_ms) -
               (p->timestamp_unix_ms < c->timestamp_unix_ms);
    case CXM__V1__VALUE__KIND_STRING_VALUE: {
        int d = strcmp(p->string_value ? p->string_value : "",
                       c->string_value ? c->string_value : ""); /* unsigned bytes, per C */
        return (d > 0) - (d < 0);
    }
    default:
        return 2;
    }
}

static bool bool_equal(const Cxm__V1__Value *p, const Cxm__V1__Value *c)
{
    return !p->bool_value == !c->bool_value;
}

/* A comparing op on a present value of the condition's kind. */
static bool compare_op(Cxm__V1__CompareOp op, const Cxm__V1__Value *p, const Cxm__V1__Value *c)
{
    bool is_bool = p->kind_case == CXM__V1__VALUE__KIND_BOOL_VALUE;
    bool is_str = p->kind_case == CXM__V1__VALUE__KIND_STRING_VALUE;
    int d = is_bool ? (bool_equal(p, c) ? 0 : 2) : compare_values(p, c);
    switch (op) {
    case CXM__V1__COMPARE_OP__COMPARE_OP_EQ:
        return d == 0;
    case CXM__V1__COMPARE_OP__COMPARE_OP_NE:
        return d == 1 || d == -1 || (is_bool && d == 2);
    case CXM__V1__COMPARE_OP__COMPARE_OP_LT:
        return !is_bool && d == -1;
    case CXM__V1__COMPARE_OP__COMPARE_OP_LE:
        return !is_bool && (d == -1 || d == 0);
    case CXM__V1__COMPARE_OP__COMPARE_OP_GT:
        return !is_bool && d == 1;
    case CXM__V1__COMPARE_OP__COMPARE_OP_GE:
        return !is_bool && (d == 1 || d == 0);
    case CXM__V1__COMPARE_OP__COMPARE_OP_PREFIX: {
        if (!is_str)
            return false;
        const char *s = p->string_value ? p->string_value : "";
        const char *pre = c->string_value ? c->string_value : "";
        return strncmp(s, pre, strlen(pre)) == 0;
    }
    case CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS:
        return is_str && contains_ci(p->string_value ? p->string_value : "",
                                     c->string_value ? c->string_value : "");
    default:
        return false;
    }
}

static bool value_set(const Cxm__V1__Value *v)
{
    return v && v->kind_case != CXM__V1__VALUE__KIND__NOT_SET;
}

static bool condition_holds(const jr_cond *c, jr_prop *const *props, size_t nprops)
{
    const Cxm__V1__Value *p = find_prop(c->name ? c->name : "", props, nprops);
    if (c->op == CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS)
        return value_set(p);
    if (c->op == CXM__V1__COMPARE_OP__COMPARE_OP_NOT_EXISTS)
        return !value_set(p);
    /* A missing property, or one of another type than the condition's
     * value, never matches, NE included (as SQL's NULL never does). */
    if (!value_set(p) || !value_set(c->value) || p->kind_case != c->value->kind_case)
        return false;
    return compare_op(c->op, p, c->value);
}

bool jrules_conditions_hold(Cxm__V1__PropertyCondition *const *conds, size_t n,
                            Cxm__V1__TouchpointEvent__PropertiesEntry *const *props, size_t nprops)
{
    for (size_t i = 0; i < n; i++)
        if (!conds[i] || !condition_holds(conds[i], props, nprops))
            return false;
    return true;
}

/* ---- interaction strength --------------------------------------------- */

/* Words looked for in the event type, case-insensitive, first hit wins:
 * negative signals first, so "order_returned" and "order_cancelled" are
 * not read as orders. */
static const struct {
    const char *word;
    double strength;
} strength_words[] = {
    {"dismiss", -1}, {"return", -1}, {"cancel", -1},     {"refund", -1},
    {"purchase", 5}, {"order", 5},   {"add_to_cart", 3}, {"wishlist", 3},
    {"compare", 2},  {"click", 2},   {"view", 1},
};

double jrules_strength(const char *event_type)
{
    if (!event_type)
        return 1;
    for (size_t i = 0; i < sizeof strength_words / sizeof strength_words[0]; i++)
        if (contains_ci(event_type, strength_words[i].word))
            return strength_words[i].strength;
    return 1;
}
