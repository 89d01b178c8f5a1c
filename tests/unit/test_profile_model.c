/*
 * test_profile_model.c - attribute strategies, merge and unmerge, segment
 * conditions, the trait and segment changes profile's events report, and
 * the standard traits feedback owns (newer answers win, scales checked),
 * without a server. (Identity normalisation: test_ident.c.)
 */
#include "check.h"
#include "cxm/err.h"
#include "profile/model.h"
#include "profile/prof_check.h"

#include <string.h>

#include "cxm/svc.h"

static cxm_arena arena;

/* ---- attributes ---- */

static prof_value *num(double d)
{
    prof_value *v = cxm_arena_alloc(&arena, sizeof *v);
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    v->number_value = d;
    return v;
}

static prof_value *str(const char *s)
{
    prof_value *v = cxm_arena_alloc(&arena, sizeof *v);
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static char last_err[256]; /* the message of the latest apply() */

static int apply(prof_profile *p, const char *name, prof_value *v, Cxm__V1__MergeStrategy s,
                 int64_t observed)
{
    Cxm__V1__AttributeUpdate u = CXM__V1__ATTRIBUTE_UPDATE__INIT;
    u.name = (char *)name;
    u.value = v;
    u.strategy = s;
    u.observed_at_unix_ms = observed;
    bool changed;
    return prof_attr_apply(&arena, p, &u, "attributes[0]", "test", 1000, &changed, last_err,
                           sizeof last_err);
}

static double num_of(const prof_profile *p, const char *name)
{
    const Cxm__V1__Attribute *a = prof_attr_find(p, name);
    return a ? a->value->number_value : -1;
}

static void test_strategies(void)
{
    prof_profile *p = prof_new(&arena, "c1", 1);
    CHECK_EQ_INT(apply(p, "visits", num(1), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD, 0), 0);
    CHECK_EQ_INT(apply(p, "visits", num(2), 0, 0), 0); /* remembered: ADD */
    CHECK(num_of(p, "visits") == 3);
    CHECK_EQ_INT(apply(p, "best", num(5), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_MAX, 0), 0);
    CHECK_EQ_INT(apply(p, "best", num(4), 0, 0), 0);
    CHECK(num_of(p, "best") == 5);
    CHECK_EQ_INT(apply(p, "first", num(1), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_FIRST, 500),
                 0);
    CHECK_EQ_INT(apply(p, "first", num(2), 0, 900), 0);
    CHECK(num_of(p, "first") == 1);
    CHECK_EQ_INT(
        apply(p, "latest", num(1), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_LATEST, 900), 0);
    CHECK_EQ_INT(apply(p, "latest", num(2), 0, 500), 0); /* older: ignored */
    CHECK(num_of(p, "latest") == 1);
    CHECK_EQ_INT(apply(p, "name", str("x"), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD, 0),
                 CXM_EINVAL);
    /* Errors name the update by its index in the request, like every other error. */
    CHECK_EQ_STR(last_err, "attributes[0].strategy: ADD needs a number");
    /* Sorted by name, so equal content packs to equal bytes. */
    for (size_t i = 1; i < p->n_attributes; i++)
        CHECK(strcmp(p->attributes[i - 1]->name, p->attributes[i]->name) < 0);
    /* The 201st attribute is refused. */
    for (int i = 0; p->n_attributes < PROF_MAX_ATTRIBUTES; i++) {
        char *name = cxm_arena_alloc(&arena, 16);
        snprintf(name, 16, "n%03d", i);
        apply(p, name, num(i), 0, 0);
    }
    CHECK_EQ_INT(apply(p, "one_more", num(1), 0, 0), CXM_ESTALE);
    CHECK(strncmp(last_err, "attributes[0]: the profile already holds", 40) == 0);
}

/* ---- merge and unmerge ---- */

static void add_id(prof_profile *p, Cxm__V1__IdentityType t, const char *v)
{
    Cxm__V1__Identity id = CXM__V1__IDENTITY__INIT;
    id.type = t;
    id.custom_type = "";
    id.value = (char *)v;
    CHECK_EQ_INT(prof_identity_add(&arena, p, &id, "test", "", 1), 0);
}

static size_t packed(const prof_profile *p, uint8_t *buf)
{
    return cxm__v1__profile__pack(p, buf);
}

static void test_merge_unmerge(void)
{
    prof_profile *t = prof_new(&arena, "target", 1), *s = prof_new(&arena, "source", 1);
    add_id(t, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, "a@x.com");
    add_id(t, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID, "crm-1");
    add_id(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE, "+447700900123");
    apply(t, "tier", str("gold"), 0, 100);
    apply(t, "visits", num(3), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD, 100);
    apply(s, "visits", num(4), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD, 100);
    apply(s, "tier", str("silver"), 0, 200);
    apply(s, "city", str("Leeds"), 0, 100);

    prof_unique_types unique = {{CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID}, 1};
    char err[256] = "";
    CHECK_EQ_INT(prof_merge_check(t, s, &unique, err, sizeof err), 0);
    prof_profile *before = prof_copy(&arena, t);
    CHECK_EQ_INT(prof_merge(&arena, t, s, "m1", 5, err, sizeof err), 0);
    CHECK(num_of(t, "visits") == 7);
    CHECK_EQ_STR(prof_attr_find(t, "tier")->value->string_value, "gold"); /* OVERWRITE: target */
    CHECK_EQ_STR(prof_attr_find(t, "city")->value->string_value, "Leeds");
    CHECK_EQ_INT(t->n_identities, 3);
    prof_profile *after = prof_copy(&arena, t);

    /* Nothing changed since: the target comes back byte for byte. */
    prof_profile *undone = prof_unmerge(&arena, t, before, after, "m1");
    uint8_t b1[2048], b2[2048];
    size_t n1 = packed(before, b1), n2 = packed(undone, b2);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);

    /* A change after the merge survives the unmerge; untouched merged-in
     * values leave. */
    apply(t, "tier", str("platinum"), 0, 300);
    apply(t, "segment_hint", str("vip"), 0, 300);
    undone = prof_unmerge(&arena, t, before, after, "m1");
    CHECK_EQ_STR(prof_attr_find(undone, "tier")->value->string_value, "platinum");
    CHECK(prof_attr_find(undone, "segment_hint") != NULL);
    CHECK(prof_attr_find(undone, "city") == NULL);
    CHECK(num_of(undone, "visits") == 3);
    CHECK_EQ_INT(undone->n_identities, 2);

    /* Unique types refuse two CRM ids. */
    prof_profile *other = prof_new(&arena, "other", 1);
    add_id(other, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID, "crm-2");
    CHECK_EQ_INT(prof_merge_check(before, other, &unique, err, sizeof err), CXM_ESTALE);
    CHECK(strstr(err, "crm-1") && strstr(err, "crm-2") && strstr(err, "unique"));
}

/* ---- conditions ---- */

static Cxm__V1__SegmentCondition *leaf(const char *name, Cxm__V1__CompareOp op, prof_value *v)
{
    Cxm__V1__FieldCondition *f = cxm_arena_alloc(&arena, sizeof *f);
    cxm__v1__field_condition__init(f);
    f->kind = CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE;
    f->name = (char *)name;
    f->op = op;
    f->value = v;
    Cxm__V1__SegmentCondition *c = cxm_arena_alloc(&arena, sizeof *c);
    cxm__v1__segment_condition__init(c);
    c->node_case = CXM__V1__SEGMENT_CONDITION__NODE_FIELD;
    c->field = f;
    return c;
}

static Cxm__V1__SegmentCondition *node_list(Cxm__V1__SegmentCondition__NodeCase kind,
                                            Cxm__V1__SegmentCondition **kids, size_t n)
{
    Cxm__V1__SegmentCondition__And *l = cxm_arena_alloc(&arena, sizeof *l);
    cxm__v1__segment_condition__and__init(l);
    l->conditions = kids;
    l->n_conditions = n;
    Cxm__V1__SegmentCondition *c = cxm_arena_alloc(&arena, sizeof *c);
    cxm__v1__segment_condition__init(c);
    c->node_case = kind;
    c->all = l;
    return c;
}

static void test_conditions(void)
{
    prof_profile *p = prof_new(&arena, "c", 1);
    apply(p, "tier", str("gold"), 0, 1);
    apply(p, "age", num(41), 0, 1);
    Cxm__V1__Consent c = CXM__V1__CONSENT__INIT;
    c.scope = "marketing_email";
    c.state = CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED;
    bool applied;
    prof_consent_set(&arena, p, &c, &applied);

    Cxm__V1__SegmentCondition *kids[3] = {
        leaf("tier", CXM__V1__COMPARE_OP__COMPARE_OP_EQ, str("gold")),
        leaf("age", CXM__V1__COMPARE_OP__COMPARE_OP_GE, num(40)),
        leaf("city", CXM__V1__COMPARE_OP__COMPARE_OP_NOT_EXISTS, NULL)};
    Cxm__V1__SegmentCondition *all = node_list(CXM__V1__SEGMENT_CONDITION__NODE_ALL, kids, 3);
    char err[256];
    CHECK_EQ_INT(prof_condition_check(all, err, sizeof err), 0);
    CHECK(prof_condition_eval(all, p));
    kids[1] = leaf("age", CXM__V1__COMPARE_OP__COMPARE_OP_GT, num(41));
    CHECK(!prof_condition_eval(all, p));
    Cxm__V1__SegmentCondition *any = node_list(CXM__V1__SEGMENT_CONDITION__NODE_ANY, kids, 3);
    CHECK(prof_condition_eval(any, p));
    /* A string never equals a number; NE holds across types. */
    CHECK(!prof_condition_eval(leaf("age", CXM__V1__COMPARE_OP__COMPARE_OP_EQ, str("41")), p));
    CHECK(prof_condition_eval(leaf("age", CXM__V1__COMPARE_OP__COMPARE_OP_NE, str("41")), p));
    CHECK(
        prof_condition_eval(leaf("tier", CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS, str("OL")), p));

    Cxm__V1__SegmentCondition__ConsentIs ci = CXM__V1__SEGMENT_CONDITION__CONSENT_IS__INIT;
    Cxm__V1__ConsentState granted = CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED;
    ci.scope = "marketing_email";
    ci.states = &granted;
    ci.n_states = 1;
    Cxm__V1__SegmentCondition cons = CXM__V1__SEGMENT_CONDITION__INIT;
    cons.node_case = CXM__V1__SEGMENT_CONDITION__NODE_CONSENT;
    cons.consent = &ci;
    CHECK(prof_condition_eval(&cons, p));
    Cxm__V1__SegmentCondition neg = CXM__V1__SEGMENT_CONDITION__INIT;
    neg.node_case = CXM__V1__SEGMENT_CONDITION__NODE_NEGATE;
    neg.negate = &cons;
    CHECK(!prof_condition_eval(&neg, p));

    /* Well-known traits by field name. */
    p->standard_traits->lifetime_value = 250;
    Cxm__V1__SegmentCondition *ltv =
        leaf("lifetime_value", CXM__V1__COMPARE_OP__COMPARE_OP_GE, num(100));
    ltv->field->kind = CXM__V1__FIELD_KIND__FIELD_KIND_TRAIT;
    CHECK(prof_condition_eval(ltv, p));

    /* Validation: empty nodes, too deep. */
    Cxm__V1__SegmentCondition empty = CXM__V1__SEGMENT_CONDITION__INIT;
    CHECK_EQ_INT(prof_condition_check(&empty, err, sizeof err), CXM_EINVAL);
    Cxm__V1__SegmentCondition chain[10];
    for (int i = 0; i < 10; i++) {
        cxm__v1__segment_condition__init(&chain[i]);
        chain[i].node_case = CXM__V1__SEGMENT_CONDITION__NODE_NEGATE;
        chain[i].negate = i < 9 ? &chain[i + 1] : &cons;
    }
    CHECK_EQ_INT(prof_condition_check(&chain[0], err, sizeof err), CXM_EINVAL);
    CHECK(strstr(err, "8 deep") != NULL);
}

/* ---- what a change did ---- */

static void set_trait(prof_profile *p, const char *name, Cxm__V1__Value *v, int64_t at)
{
    bool applied;
    CHECK_EQ_INT(prof_trait_set(&arena, p, name, v, "test", at, at, &applied), 0);
    CHECK(applied);
}

static void test_traits_diff(void)
{
    prof_profile *p = prof_new(&arena, "c1", 1);
    set_trait(p, "b", num(1), 1);
    set_trait(p, "c", str("x"), 1);
    set_trait(p, "d", num(4), 1);
    size_t n;
    Cxm__V1__Trait **before = prof_traits_keep(&arena, p, &n);
    CHECK(before && n == 3);
    Cxm__V1__TraitsChanged c = CXM__V1__TRAITS_CHANGED__INIT;
    CHECK_EQ_INT(prof_traits_diff(&arena, before, n, p, &c), 0);
    CHECK(c.n_traits == 0 && c.n_removed_trait_names == 0); /* nothing changed */
    /* a new, b the same value again (a newer observation), c changed, d gone. */
    set_trait(p, "a", num(0), 2);
    set_trait(p, "b", num(1), 2);
    set_trait(p, "c", str("y"), 2);
    CHECK(prof_trait_unset(p, "d"));
    CHECK_EQ_INT(prof_traits_diff(&arena, before, n, p, &c), 0);
    CHECK_EQ_INT(c.n_traits, 2);
    CHECK_EQ_STR(c.traits[0]->name, "a");
    CHECK_EQ_STR(c.traits[1]->name, "c");
    CHECK_EQ_STR(c.traits[1]->value->string_value, "y");
    CHECK_EQ_INT(c.n_removed_trait_names, 1);
    CHECK_EQ_STR(c.removed_trait_names[0], "d");
    /* The kept copy still holds the old value. */
    CHECK_EQ_STR(before[1]->value->string_value, "x");
    /* From no traits at all: every trait is new. */
    CHECK_EQ_INT(prof_traits_diff(&arena, NULL, 0, p, &c), 0);
    CHECK(c.n_traits == 3 && c.n_removed_trait_names == 0);
}

static void test_segments_diff(void)
{
    prof_profile *p = prof_new(&arena, "c1", 1);
    char *before[] = {"a", "c", "e"}, *after[] = {"b", "c", "d", "f"};
    p->segment_ids = after;
    p->n_segment_ids = 4;
    Cxm__V1__SegmentMembershipChanged c = CXM__V1__SEGMENT_MEMBERSHIP_CHANGED__INIT;
    CHECK_EQ_INT(prof_segments_diff(&arena, before, 3, p, &c), 0);
    CHECK_EQ_INT(c.n_entered_segment_ids, 3);
    CHECK_EQ_STR(c.entered_segment_ids[0], "b");
    CHECK_EQ_STR(c.entered_segment_ids[1], "d");
    CHECK_EQ_STR(c.entered_segment_ids[2], "f");
    CHECK_EQ_INT(c.n_left_segment_ids, 2);
    CHECK_EQ_STR(c.left_segment_ids[0], "a");
    CHECK_EQ_STR(c.left_segment_ids[1], "e");
    p->n_segment_ids = 0; /* left everything */
    CHECK_EQ_INT(prof_segments_diff(&arena, before, 3, p, &c), 0);
    CHECK(c.n_entered_segment_ids == 0 && c.n_left_segment_ids == 3);
    CHECK_EQ_INT(prof_segments_diff(&arena, NULL, 0, p, &c), 0);
    CHECK(c.n_entered_segment_ids == 0 && c.n_left_segment_ids == 0);
}

/* ---- standard traits owned by feedback ---- */

static Cxm__V1__StandardTraitsUpdate nps_update(int score)
{
    Cxm__V1__StandardTraitsUpdate u = CXM__V1__STANDARD_TRAITS_UPDATE__INIT;
    u.last_nps_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_NPS_UPDATE_LAST_NPS;
    u.last_nps = score;
    return u;
}

static void test_feedback_traits(void)
{
    prof_profile *p = prof_new(&arena, "c1", 1);
    Cxm__V1__StandardTraits *st = p->standard_traits;
    Cxm__V1__StandardTraitsUpdate u = nps_update(3);
    prof_standard_apply(&arena, p, &u, 2000);
    CHECK(st->last_nps == 3 && st->last_nps_at_unix_ms == 2000);
    CHECK_EQ_INT(st->last_nps_category, CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR);
    u = nps_update(10); /* answered earlier, delivered later: not applied */
    prof_standard_apply(&arena, p, &u, 1500);
    CHECK(st->last_nps == 3 && st->last_nps_at_unix_ms == 2000);
    u = nps_update(8);
    prof_standard_apply(&arena, p, &u, 2500);
    CHECK(st->last_nps == 8 && st->last_nps_at_unix_ms == 2500);
    CHECK_EQ_INT(st->last_nps_category, CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PASSIVE);

    Cxm__V1__StandardTraitsUpdate c = CXM__V1__STANDARD_TRAITS_UPDATE__INIT;
    c.last_csat_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_CSAT_UPDATE_LAST_CSAT;
    c.last_csat = 2;
    c.last_ces_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_CES_UPDATE_LAST_CES;
    c.last_ces = 6;
    prof_standard_apply(&arena, p, &c, 3000);
    CHECK(st->last_csat == 2 && st->last_csat_at_unix_ms == 3000);
    CHECK(st->last_ces == 6 && st->last_ces_at_unix_ms == 3000);
    CHECK(st->last_nps == 8); /* untouched by the CSAT/CES update */
    c.last_csat = 5, c.last_ces = 1;
    prof_standard_apply(&arena, p, &c, 2999);
    CHECK(st->last_csat == 2 && st->last_ces == 6);
    c.last_ces_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_CES_UPDATE__NOT_SET;
    prof_standard_apply(&arena, p, &c, 3001);
    CHECK(st->last_csat == 5 && st->last_ces == 6);

    /* A merge keeps the later answer of each kind. */
    prof_profile *q = prof_new(&arena, "c2", 1);
    u = nps_update(10);
    prof_standard_apply(&arena, q, &u, 9000);
    c.last_csat = 4;
    prof_standard_apply(&arena, q, &c, 100);
    char err[256];
    CHECK_EQ_INT(prof_merge(&arena, p, q, "m1", 10000, err, sizeof err), 0);
    CHECK(p->standard_traits->last_nps == 10 && p->standard_traits->last_csat == 5);
}

static int check_standard_of(Cxm__V1__StandardTraitsUpdate *u, const char *source, char *err)
{
    static const cxm_ident_config cfg = {0};
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = "c1";
    Cxm__V1__WriteTraitsRequest req = CXM__V1__WRITE_TRAITS_REQUEST__INIT;
    req.customer = &ref;
    req.source = (char *)source;
    req.standard = u;
    return prof_check_traits(&cfg, &arena, &req, err);
}

static void test_feedback_traits_check(void)
{
    char err[CXM_SVC_ERR_MAX];
    Cxm__V1__StandardTraitsUpdate u = CXM__V1__STANDARD_TRAITS_UPDATE__INIT;
    u.last_csat_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_CSAT_UPDATE_LAST_CSAT;
    u.last_csat = 5;
    CHECK_EQ_INT(check_standard_of(&u, "feedback", err), 0);
    CHECK_EQ_INT(check_standard_of(&u, "journey", err), CXM_EPERM);
    u.last_csat = 6;
    CHECK_EQ_INT(check_standard_of(&u, "feedback", err), CXM_EINVAL);
    CHECK(strstr(err, "standard.last_csat") != NULL);
    u.last_csat = 0;
    CHECK_EQ_INT(check_standard_of(&u, "feedback", err), CXM_EINVAL);
    u = (Cxm__V1__StandardTraitsUpdate)CXM__V1__STANDARD_TRAITS_UPDATE__INIT;
    u.last_ces_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_CES_UPDATE_LAST_CES;
    u.last_ces = 7;
    CHECK_EQ_INT(check_standard_of(&u, "feedback", err), 0);
    CHECK_EQ_INT(check_standard_of(&u, "journey", err), CXM_EPERM);
    u.last_ces = 8;
    CHECK_EQ_INT(check_standard_of(&u, "feedback", err), CXM_EINVAL);
    CHECK(strstr(err, "standard.last_ces") != NULL);
}

int main(void)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    test_strategies();
    test_merge_unmerge();
    test_conditions();
    test_traits_diff();
    test_segments_diff();
    test_feedback_traits();
    test_feedback_traits_check();
    cxm_arena_dispose(&arena);
    return check_report();
}
