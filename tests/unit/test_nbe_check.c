/*
 * test_nbe_check.c - the PersonalisationService's request validation: a
 * valid request of each kind passes, and each bad field fails with
 * CXM_EINVAL and a message starting with its path.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cxm/err.h"
#include "personalisation/nbe_check.h"

static cxm_arena arena;
static char err[CXM_SVC_ERR_MAX];

/* rc is CXM_EINVAL and err starts with field. */
static void fails_at(int rc, const char *field)
{
    CHECK_EQ_INT(rc, CXM_EINVAL);
    if (strncmp(err, field, strlen(field)) != 0)
        fprintf(stderr, "error \"%s\" does not start with \"%s\"\n", err, field);
    CHECK(strncmp(err, field, strlen(field)) == 0);
}

static Cxm__V1__Experience *good_experience(void)
{
    static Cxm__V1__Experience e;
    static Cxm__V1__Eligibility el;
    static Cxm__V1__ContactCap cap;
    static Cxm__V1__ContactCap *caps[] = {&cap};
    static Cxm__V1__JourneyStage stages[1];
    static Cxm__V1__Channel channels[2];
    static char *names[] = {"home_banner", "vip"};
    /* Tests break fields in place: every call starts from a valid one. */
    stages[0] = CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE;
    channels[0] = CXM__V1__CHANNEL__CHANNEL_WEB;
    channels[1] = CXM__V1__CHANNEL__CHANNEL_APP;
    cxm__v1__experience__init(&e);
    cxm__v1__eligibility__init(&el);
    cxm__v1__contact_cap__init(&cap);
    cap.max_contacts = 3;
    cap.period_ms = 86400000;
    el.stages = stages;
    el.n_stages = 1;
    el.channels = channels;
    el.n_channels = 2;
    el.placements = names;
    el.n_placements = 1;
    el.segment_ids = names + 1;
    el.n_segment_ids = 1;
    e.experience_id = "premium_upgrade-2.0";
    e.kind = CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_OFFER;
    e.title = "Premium";
    e.eligibility = &el;
    e.value = 12;
    e.weight = 3;
    e.valid_from_unix_ms = 1000;
    e.valid_until_unix_ms = 2000;
    e.contact_caps = caps;
    e.n_contact_caps = 1;
    return &e;
}

static void test_ids(void)
{
    CHECK(nbe_id_valid("a"));
    CHECK(nbe_id_valid("A-z_0.9"));
    CHECK(!nbe_id_valid(""));
    CHECK(!nbe_id_valid(NULL));
    CHECK(!nbe_id_valid("a b"));
    CHECK(!nbe_id_valid("é"));
    char id[130];
    memset(id, 'x', sizeof id);
    id[128] = 0;
    CHECK(nbe_id_valid(id));
    id[128] = 'x';
    id[129] = 0;
    CHECK(!nbe_id_valid(id));
    CHECK_EQ_INT(nbe_k(0), 10);
    CHECK_EQ_INT(nbe_k(7), 7);
}

static void test_experience(void)
{
    Cxm__V1__Experience *e = good_experience();
    CHECK_EQ_INT(nbe_check_experience(e, err), 0);
    fails_at(nbe_check_experience(NULL, err), "experience");
    e->experience_id = "no spaces";
    fails_at(nbe_check_experience(e, err), "experience.experience_id");
    e = good_experience();
    e->kind = 0;
    fails_at(nbe_check_experience(e, err), "experience.kind");
    e->kind = 4;
    fails_at(nbe_check_experience(e, err), "experience.kind");
    e = good_experience();
    e->eligibility->channels[1] = 42;
    fails_at(nbe_check_experience(e, err), "experience.eligibility.channels[1]");
    CHECK(strcmp(err, "experience.eligibility.channels[1]: unknown channel 42") == 0);
    e = good_experience();
    e->eligibility->stages[0] = 0;
    fails_at(nbe_check_experience(e, err), "experience.eligibility.stages[0]");
    e = good_experience();
    e->eligibility->n_segment_ids = 65;
    fails_at(nbe_check_experience(e, err), "experience.eligibility.segment_ids");
    e = good_experience();
    e->weight = 100.5;
    fails_at(nbe_check_experience(e, err), "experience.weight");
    e->weight = INFINITY;
    fails_at(nbe_check_experience(e, err), "experience.weight");
    e = good_experience();
    e->valid_until_unix_ms = 1000;
    fails_at(nbe_check_experience(e, err), "experience.valid_until_unix_ms");
    e->valid_until_unix_ms = 0; /* open end */
    CHECK_EQ_INT(nbe_check_experience(e, err), 0);
    e = good_experience();
    e->contact_caps[0]->period_ms = 59999;
    fails_at(nbe_check_experience(e, err), "experience.contact_caps[0].period_ms");
    e->contact_caps[0]->period_ms = 366LL * 86400000 + 1;
    fails_at(nbe_check_experience(e, err), "experience.contact_caps[0].period_ms");
    e = good_experience();
    e->pause_after_accept_ms = -1;
    fails_at(nbe_check_experience(e, err), "experience.pause_after_accept_ms");
    e = good_experience();
    Cxm__V1__Experience__MetadataEntry m = CXM__V1__EXPERIENCE__METADATA_ENTRY__INIT, *ms[] = {&m};
    m.key = "";
    m.value = "v";
    e->metadata = ms;
    e->n_metadata = 1;
    fails_at(nbe_check_experience(e, err), "experience.metadata[0].key");
}

static void test_recommend(void)
{
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = "c1";
    Cxm__V1__RecommendContext cx = CXM__V1__RECOMMEND_CONTEXT__INIT;
    Cxm__V1__RecommendRequest r = CXM__V1__RECOMMEND_REQUEST__INIT;
    r.customer = &ref;
    r.context = &cx;
    CHECK_EQ_INT(nbe_check_recommend(&arena, &r, err), 0);
    r.k = 100;
    CHECK_EQ_INT(nbe_check_recommend(&arena, &r, err), 0);
    r.k = 101;
    fails_at(nbe_check_recommend(&arena, &r, err), "k");
    r.k = 0;
    cx.channel = 13;
    fails_at(nbe_check_recommend(&arena, &r, err), "context.channel");
    cx.channel = 0;
    char *ex[] = {"ok", "not ok"};
    r.exclude_experience_ids = ex;
    r.n_exclude_experience_ids = 2;
    fails_at(nbe_check_recommend(&arena, &r, err), "exclude_experience_ids[1]");
    r.n_exclude_experience_ids = 1001;
    fails_at(nbe_check_recommend(&arena, &r, err), "exclude_experience_ids");
    r.n_exclude_experience_ids = 0;
    Cxm__V1__ExperienceKind kinds[] = {CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_CONTENT, 0};
    r.kinds = kinds;
    r.n_kinds = 2;
    fails_at(nbe_check_recommend(&arena, &r, err), "kinds[1]");
    r.n_kinds = 1;
    CHECK_EQ_INT(nbe_check_recommend(&arena, &r, err), 0);
    r.customer = NULL;
    fails_at(nbe_check_recommend(&arena, &r, err), "customer");
}

static void test_outcome_and_interactions(void)
{
    int64_t now = 1700000000000;
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = "c1";
    Cxm__V1__RecordOutcomeRequest o = CXM__V1__RECORD_OUTCOME_REQUEST__INIT;
    o.outcome_id = "o1";
    o.customer = &ref;
    o.experience_id = "x";
    o.outcome = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_ACCEPT;
    CHECK_EQ_INT(nbe_check_outcome(&arena, &o, now, err), 0);
    o.outcome = 5;
    fails_at(nbe_check_outcome(&arena, &o, now, err), "outcome");
    o.outcome = CXM__V1__OUTCOME_KIND__OUTCOME_KIND_ACCEPT;
    o.occurred_at_unix_ms = now + 86400000 + 1;
    fails_at(nbe_check_outcome(&arena, &o, now, err), "occurred_at_unix_ms");
    o.occurred_at_unix_ms = -1;
    fails_at(nbe_check_outcome(&arena, &o, now, err), "occurred_at_unix_ms");

    Cxm__V1__Interaction it = CXM__V1__INTERACTION__INIT;
    it.interaction_id = "i1";
    it.customer = &ref;
    it.item_id = "sku-1";
    it.weight = 5;
    CHECK_EQ_INT(nbe_check_interaction(&arena, &it, now, err), 0);
    it.weight = 0;
    fails_at(nbe_check_interaction(&arena, &it, now, err), "weight");
    it.weight = 2e6;
    fails_at(nbe_check_interaction(&arena, &it, now, err), "weight");
    it.weight = NAN;
    fails_at(nbe_check_interaction(&arena, &it, now, err), "weight");
    it.weight = 1;
    it.item_id = "";
    fails_at(nbe_check_interaction(&arena, &it, now, err), "item_id");

    Cxm__V1__RecordInteractionsRequest b = CXM__V1__RECORD_INTERACTIONS_REQUEST__INIT;
    fails_at(nbe_check_interactions(&b, err), "interactions");
    b.n_interactions = 1;
    b.source = "journey";
    CHECK_EQ_INT(nbe_check_interactions(&b, err), 0);
    b.n_interactions = 1001;
    fails_at(nbe_check_interactions(&b, err), "interactions");
}

static void test_train(void)
{
    Cxm__V1__TrainModelRequest r = CXM__V1__TRAIN_MODEL_REQUEST__INIT;
    reco_algo algo = 99;
    reco_params p;
    CHECK_EQ_INT(nbe_check_train(&r, &algo, &p, err), 0);
    CHECK_EQ_INT(algo, 0);
    Cxm__V1__TrainModelRequest__ParamsEntry e = CXM__V1__TRAIN_MODEL_REQUEST__PARAMS_ENTRY__INIT;
    Cxm__V1__TrainModelRequest__ParamsEntry *es[] = {&e};
    r.params = es;
    r.n_params = 1;
    e.key = "neighbours";
    e.value = 50;
    fails_at(nbe_check_train(&r, &algo, &p, err), "params"); /* automatic takes none */
    r.algorithm = CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN;
    CHECK_EQ_INT(nbe_check_train(&r, &algo, &p, err), 0);
    CHECK_EQ_INT(algo, RECO_ITEMKNN);
    CHECK_EQ_INT(p.neighbours, 50);
    e.value = 2001;
    fails_at(nbe_check_train(&r, &algo, &p, err), "params.neighbours");
    e.value = 1.5;
    fails_at(nbe_check_train(&r, &algo, &p, err), "params.neighbours");
    e.key = "factors";
    fails_at(nbe_check_train(&r, &algo, &p, err), "params.factors");
    CHECK(strstr(err, "ALGORITHM_ITEM_KNN") != NULL);
    r.algorithm = CXM__V1__ALGORITHM__ALGORITHM_ALS;
    e.value = 64;
    CHECK_EQ_INT(nbe_check_train(&r, &algo, &p, err), 0);
    CHECK_EQ_INT(p.factors, 64);
    r.algorithm = CXM__V1__ALGORITHM__ALGORITHM_EASE;
    e.key = "lambda";
    e.value = 0;
    fails_at(nbe_check_train(&r, &algo, &p, err), "params.lambda");
    e.value = 250;
    CHECK_EQ_INT(nbe_check_train(&r, &algo, &p, err), 0);
    CHECK(p.lambda == 250);
    r.algorithm = CXM__V1__ALGORITHM__ALGORITHM_POPULARITY;
    e.key = "half_life_days";
    e.value = 2;
    CHECK_EQ_INT(nbe_check_train(&r, &algo, &p, err), 0);
    CHECK(p.half_life == 2 * 86400.0);
    r.n_params = 0;
    r.holdout_fraction = 0.51;
    fails_at(nbe_check_train(&r, &algo, &p, err), "holdout_fraction");
    r.holdout_fraction = 0;
    r.activation = 9;
    fails_at(nbe_check_train(&r, &algo, &p, err), "activation");
    r.activation = 0;
    r.since_unix_ms = -1;
    fails_at(nbe_check_train(&r, &algo, &p, err), "since_unix_ms");
}

static void test_list_and_similar(void)
{
    Cxm__V1__ListExperiencesRequest l = CXM__V1__LIST_EXPERIENCES_REQUEST__INIT;
    CHECK_EQ_INT(nbe_check_list(&l, err), 0);
    l.page_size = 1001;
    fails_at(nbe_check_list(&l, err), "page_size");
    l.page_size = 0;
    l.page_token = "bad token!";
    fails_at(nbe_check_list(&l, err), "page_token");
    Cxm__V1__SimilarExperiencesRequest s = CXM__V1__SIMILAR_EXPERIENCES_REQUEST__INIT;
    fails_at(nbe_check_similar(&s, err), "experience_id");
    s.experience_id = "x";
    CHECK_EQ_INT(nbe_check_similar(&s, err), 0);
    s.k = 101;
    fails_at(nbe_check_similar(&s, err), "k");
}

int main(void)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    test_ids();
    test_experience();
    test_recommend();
    test_outcome_and_interactions();
    test_train();
    test_list_and_similar();
    cxm_arena_dispose(&arena);
    return check_report();
}
