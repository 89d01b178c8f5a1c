/*
 * fuzz_profile_rec.c - the profile store's records as its readers decode
 * them (pdb.c, model.c): the first byte picks the record, the rest is its
 * stored value, put in place in a transaction rolled back afterwards.
 *   0  a profile, loaded and then evaluated against a segment, copied and
 *      diffed as the write paths do
 *   1  a merge snapshot (four length-framed messages)
 *   2  a segment definition, checked and evaluated as a re-evaluation does
 *   3  a deletion receipt, 4  a redirect chain, 5  an idempotency record
 * A damaged record must come back as an error, never crash.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "profile/model.h"
#include "profile/pdb.h"

static pdb *db;

/* all { consent email_marketing granted, attribute ltv > 10, not has email } */
static Cxm__V1__SegmentCondition *condition(cxm_arena *a)
{
    static Cxm__V1__ConsentState granted[] = {CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED};
    Cxm__V1__SegmentCondition *c = cxm_arena_calloc(a, 4, sizeof *c);
    Cxm__V1__SegmentCondition__ConsentIs *consent = cxm_arena_calloc(a, 1, sizeof *consent);
    Cxm__V1__FieldCondition *field = cxm_arena_calloc(a, 1, sizeof *field);
    Cxm__V1__Value *ten = cxm_arena_calloc(a, 1, sizeof *ten);
    Cxm__V1__SegmentCondition__HasIdentity *has = cxm_arena_calloc(a, 1, sizeof *has);
    Cxm__V1__SegmentCondition__And *all = cxm_arena_calloc(a, 1, sizeof *all);
    Cxm__V1__SegmentCondition **parts = cxm_arena_calloc(a, 3, sizeof *parts);
    if (!c || !consent || !field || !ten || !has || !all || !parts)
        return NULL;
    for (int i = 0; i < 4; i++)
        cxm__v1__segment_condition__init(&c[i]);
    cxm__v1__segment_condition__consent_is__init(consent);
    consent->scope = "email_marketing";
    consent->n_states = 1;
    consent->states = granted;
    c[0].node_case = CXM__V1__SEGMENT_CONDITION__NODE_CONSENT;
    c[0].consent = consent;
    cxm__v1__value__init(ten);
    ten->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    ten->number_value = 10;
    cxm__v1__field_condition__init(field);
    field->kind = CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE;
    field->name = "ltv";
    field->op = CXM__V1__COMPARE_OP__COMPARE_OP_GT;
    field->value = ten;
    c[1].node_case = CXM__V1__SEGMENT_CONDITION__NODE_FIELD;
    c[1].field = field;
    cxm__v1__segment_condition__has_identity__init(has);
    has->type = CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL;
    c[2].node_case = CXM__V1__SEGMENT_CONDITION__NODE_HAS_IDENTITY;
    c[2].has_identity = has;
    for (int i = 0; i < 3; i++)
        parts[i] = &c[i];
    cxm__v1__segment_condition__and__init(all);
    all->n_conditions = 3;
    all->conditions = parts;
    c[3].node_case = CXM__V1__SEGMENT_CONDITION__NODE_ALL;
    c[3].all = all;
    return &c[3];
}

/* What the write paths do with a loaded profile. */
static void use_profile(cxm_arena *a, prof_profile *p)
{
    static char *before[] = {"a", "vip"};
    Cxm__V1__SegmentCondition *c = condition(a);
    Cxm__V1__SegmentMembershipChanged diff = CXM__V1__SEGMENT_MEMBERSHIP_CHANGED__INIT;
    if (c)
        prof_condition_eval(c, p);
    prof_segments_diff(a, before, 2, p, &diff);
    prof_copy(a, p);
}

static void use_segment(cxm_arena *a, const Cxm__V1__Segment *s)
{
    char err[256];
    prof_profile *p = prof_new(a, "c1", FUZZ_NOW_MS);
    if (p && s->condition && prof_condition_check(s->condition, err, sizeof err) == 0)
        prof_condition_eval(s->condition, p);
}

static int read_back(cxm_txn *t, void *user)
{
    const fuzz_record *in = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, FUZZ_ARENA_LIMIT);
    prof_profile *p;
    pdb_snapshot snap;
    Cxm__V1__Segment *seg;
    Cxm__V1__DeletionReceipt *receipt;
    const char *id;
    bool redirected;
    static const char *const tables[] = {"profile.profiles",  "profile.merges",
                                         "profile.segments",  "profile.receipts",
                                         "profile.redirects", "profile.requests"};
    fuzz_put(t, tables[in->kind], "c1", 2, in->data, in->size);
    switch (in->kind) {
    case 0:
        if (pdb_load(t, db, "c1", &a, &p) == 0)
            use_profile(&a, p);
        break;
    case 1:
        pdb_get_snapshot(t, db, "c1", &a, &snap);
        break;
    case 2:
        if (pdb_segment_get(t, db, "c1", &a, &seg) == 0)
            use_segment(&a, seg);
        break;
    case 3:
        pdb_receipt_get(t, db, "c1", &a, &receipt);
        break;
    case 4:
        pdb_resolve_id(t, db, "c1", &a, &id, &redirected);
        break;
    default:
        pdb_request_get(t, db, "c1", &a, &id);
    }
    cxm_arena_dispose(&a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db && pdb_open(fuzz_store(), &db) != 0) {
        fprintf(stderr, "fuzz_profile_rec: cannot open the profile tables\n");
        abort();
    }
    fuzz_records(data, size, 6, read_back);
    return 0;
}
