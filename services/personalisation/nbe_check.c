/*
 * nbe_check.c - validation of the PersonalisationService requests
 * (nbe_check.h).
 */
#include "nbe_check.h"

#include <math.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/ident.h"

#define TITLE_MAX 256
#define DESCRIPTION_MAX 4096
#define LIST_MAX 64   /* entries of an eligibility list */
#define NAME_MAX_ 128 /* bytes of a placement, segment or consent scope */
#define WEIGHT_MAX 100.0
#define PERIOD_MIN_MS 60000LL
#define PERIOD_MAX_MS (366LL * 86400000LL)
#define METADATA_MAX 32
#define METADATA_KEY_MAX 128
#define METADATA_VALUE_MAX 4096
#define PROPERTIES_MAX 32
#define TYPE_MAX 64
#define SOURCE_MAX 64
#define INTERACTION_WEIGHT_MAX 1e6
#define HOLDOUT_MAX 0.5

static const char *s0(const char *s)
{
    return s ? s : "";
}

bool nbe_id_valid(const char *s)
{
    size_t n = strlen(s0(s));
    if (n == 0 || n > NBE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

uint32_t nbe_k(uint32_t k)
{
    return k ? k : NBE_K_DEFAULT;
}

static int check_id(const char *s, const char *field, char *err)
{
    if (nbe_id_valid(s))
        return 0;
    return cxm_svc_errf(err, CXM_EINVAL, field, "%s: an id is [A-Za-z0-9_.-], 1 to 128 bytes",
                        *s0(s) ? "not a valid id" : "required");
}

/* A value of enum d named noun ("channel"); UNSPECIFIED (0) allowed or
 * not. */
static int check_enum(const ProtobufCEnumDescriptor *d, int v, bool zero_ok, const char *noun,
                      const char *field, char *err)
{
    if (v == 0 && zero_ok)
        return 0;
    if (v != 0 && protobuf_c_enum_descriptor_get_value(d, v))
        return 0;
    if (v == 0)
        return cxm_svc_errf(err, CXM_EINVAL, field, "required: a %s other than UNSPECIFIED", noun);
    return cxm_svc_errf(err, CXM_EINVAL, field, "unknown %s %d", noun, v);
}

static int check_enum_list(const ProtobufCEnumDescriptor *d, const int *v, size_t n,
                           const char *noun, const char *base, const char *field, char *err)
{
    cxm_svc_path p, f;
    const char *path = cxm_svc_member(&p, base, field);
    if (n > LIST_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, path, "at most %d entries, got %zu", LIST_MAX, n);
    for (size_t i = 0; i < n; i++) {
        int rc = check_enum(d, v[i], false, noun, cxm_svc_index(&f, path, i), err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_names(char *const *v, size_t n, const char *base, const char *field, char *err)
{
    cxm_svc_path p, f;
    const char *path = cxm_svc_member(&p, base, field);
    if (n > LIST_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, path, "at most %d entries, got %zu", LIST_MAX, n);
    for (size_t i = 0; i < n; i++) {
        int rc = cxm_svc_check_text(v[i], 1, NAME_MAX_, cxm_svc_index(&f, path, i), err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_eligibility(const Cxm__V1__Eligibility *el, char *err)
{
    if (!el)
        return 0;
    const char *b = "experience.eligibility";
    int rc = check_enum_list(&cxm__v1__journey_stage__descriptor, (const int *)el->stages,
                             el->n_stages, "journey stage", b, "stages", err);
    if (rc == 0)
        rc = check_enum_list(&cxm__v1__channel__descriptor, (const int *)el->channels,
                             el->n_channels, "channel", b, "channels", err);
    if (rc == 0)
        rc = check_names(el->placements, el->n_placements, b, "placements", err);
    if (rc == 0)
        rc = check_names(el->segment_ids, el->n_segment_ids, b, "segment_ids", err);
    if (rc == 0)
        rc = check_names(el->excluded_segment_ids, el->n_excluded_segment_ids, b,
                         "excluded_segment_ids", err);
    if (rc == 0)
        rc = check_names(el->required_consents, el->n_required_consents, b, "required_consents",
                         err);
    return rc;
}

static int check_caps(const Cxm__V1__Experience *e, char *err)
{
    if (e->n_contact_caps > 4)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.contact_caps", "at most 4 caps, got %zu",
                            e->n_contact_caps);
    cxm_svc_path p, f;
    for (size_t i = 0; i < e->n_contact_caps; i++) {
        const Cxm__V1__ContactCap *c = e->contact_caps[i];
        const char *base = cxm_svc_index(&p, "experience.contact_caps", i);
        if (c->max_contacts < 1)
            return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, base, "max_contacts"),
                                "must be at least 1");
        if (c->period_ms < PERIOD_MIN_MS || c->period_ms > PERIOD_MAX_MS)
            return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, base, "period_ms"),
                                "must be 60000 (1 minute) to %lld (366 days), got %lld",
                                (long long)PERIOD_MAX_MS, (long long)c->period_ms);
    }
    if (e->pause_after_accept_ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.pause_after_accept_ms",
                            "must not be negative (0 = no pause)");
    if (e->pause_after_dismiss_ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.pause_after_dismiss_ms",
                            "must not be negative (0 = no pause)");
    return 0;
}

static int check_metadata(const Cxm__V1__Experience *e, char *err)
{
    if (e->n_metadata > METADATA_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.metadata", "at most %d entries, got %zu",
                            METADATA_MAX, e->n_metadata);
    cxm_svc_path p, f;
    for (size_t i = 0; i < e->n_metadata; i++) {
        const char *base = cxm_svc_index(&p, "experience.metadata", i);
        int rc = cxm_svc_check_text(e->metadata[i]->key, 1, METADATA_KEY_MAX,
                                    cxm_svc_member(&f, base, "key"), err);
        if (rc == 0)
            rc = cxm_svc_check_text(e->metadata[i]->value, 0, METADATA_VALUE_MAX,
                                    cxm_svc_member(&f, base, "value"), err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_numbers(const Cxm__V1__Experience *e, char *err)
{
    if (!isfinite(e->value) || e->value < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.value",
                            "must be a finite number >= 0, got %g", e->value);
    if (!isfinite(e->weight) || e->weight < 0 || e->weight > WEIGHT_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.weight",
                            "must be 0 to 100 (0 is treated as 1), got %g", e->weight);
    if (e->valid_from_unix_ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.valid_from_unix_ms",
                            "must not be negative (0 = open)");
    if (e->valid_until_unix_ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.valid_until_unix_ms",
                            "must not be negative (0 = open)");
    if (e->valid_from_unix_ms && e->valid_until_unix_ms &&
        e->valid_from_unix_ms >= e->valid_until_unix_ms)
        return cxm_svc_errf(err, CXM_EINVAL, "experience.valid_until_unix_ms",
                            "must be after valid_from_unix_ms");
    return 0;
}

int nbe_check_experience(const Cxm__V1__Experience *e, char err[CXM_SVC_ERR_MAX])
{
    if (!e)
        return cxm_svc_errf(err, CXM_EINVAL, "experience", "required");
    int rc = check_id(e->experience_id, "experience.experience_id", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__experience_kind__descriptor, e->kind, false, "experience kind",
                        "experience.kind", err);
    if (rc == 0)
        rc = cxm_svc_check_text(e->title, 0, TITLE_MAX, "experience.title", err);
    if (rc == 0)
        rc = cxm_svc_check_text(e->description, 0, DESCRIPTION_MAX, "experience.description", err);
    if (rc == 0)
        rc = check_eligibility(e->eligibility, err);
    if (rc == 0)
        rc = check_numbers(e, err);
    if (rc == 0)
        rc = check_caps(e, err);
    if (rc == 0)
        rc = check_metadata(e, err);
    return rc;
}

static int check_customer(cxm_arena *a, Cxm__V1__CustomerRef *ref, char *err)
{
    if (!ref)
        return cxm_svc_errf(err, CXM_EINVAL, "customer", "required: a customer_id or an identity");
    return cxm_ident_check_ref(NULL, a, ref, "customer", err);
}

static int check_context(const Cxm__V1__RecommendContext *c, char *err)
{
    if (!c)
        return 0;
    int rc = check_enum(&cxm__v1__channel__descriptor, c->channel, true, "channel",
                        "context.channel", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__journey_stage__descriptor, c->stage, true, "journey stage",
                        "context.stage", err);
    if (rc == 0)
        rc = cxm_svc_check_text(c->placement, 0, NAME_MAX_, "context.placement", err);
    if (rc == 0 && c->n_properties > PROPERTIES_MAX)
        rc = cxm_svc_errf(err, CXM_EINVAL, "context.properties", "at most %d entries, got %zu",
                          PROPERTIES_MAX, c->n_properties);
    cxm_svc_path p;
    for (size_t i = 0; rc == 0 && i < c->n_properties; i++)
        rc = cxm_svc_check_text(c->properties[i]->key, 1, METADATA_KEY_MAX,
                                cxm_svc_index(&p, "context.properties", i), err);
    return rc;
}

int nbe_check_recommend(cxm_arena *a, Cxm__V1__RecommendRequest *req, char err[CXM_SVC_ERR_MAX])
{
    int rc = check_customer(a, req->customer, err);
    if (rc == 0)
        rc = check_context(req->context, err);
    if (rc == 0 && req->k > NBE_K_MAX)
        rc = cxm_svc_errf(err, CXM_EINVAL, "k", "at most %d (0 = %d), got %u", NBE_K_MAX,
                          NBE_K_DEFAULT, req->k);
    if (rc == 0 && req->n_exclude_experience_ids > NBE_EXCLUDE_MAX)
        rc = cxm_svc_errf(err, CXM_EINVAL, "exclude_experience_ids", "at most %d ids, got %zu",
                          NBE_EXCLUDE_MAX, req->n_exclude_experience_ids);
    cxm_svc_path p;
    for (size_t i = 0; rc == 0 && i < req->n_exclude_experience_ids; i++)
        rc = check_id(req->exclude_experience_ids[i],
                      cxm_svc_index(&p, "exclude_experience_ids", i), err);
    if (rc == 0 && req->n_kinds > LIST_MAX)
        rc = cxm_svc_errf(err, CXM_EINVAL, "kinds", "at most %d entries, got %zu", LIST_MAX,
                          req->n_kinds);
    for (size_t i = 0; rc == 0 && i < req->n_kinds; i++)
        rc = check_enum(&cxm__v1__experience_kind__descriptor, req->kinds[i], false,
                        "experience kind", cxm_svc_index(&p, "kinds", i), err);
    return rc;
}

static int check_time(int64_t ms, int64_t now_ms, const char *field, char *err)
{
    if (ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, field, "must not be negative (0 = now)");
    if (ms > now_ms + NBE_FUTURE_MS)
        return cxm_svc_errf(err, CXM_EINVAL, field, "more than a day ahead of the server's clock");
    return 0;
}

int nbe_check_outcome(cxm_arena *a, Cxm__V1__RecordOutcomeRequest *req, int64_t now_ms,
                      char err[CXM_SVC_ERR_MAX])
{
    int rc = cxm_svc_check_text(req->outcome_id, 1, NBE_ID_MAX, "outcome_id", err);
    if (rc == 0)
        rc = check_customer(a, req->customer, err);
    if (rc == 0)
        rc = check_id(req->experience_id, "experience_id", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__outcome_kind__descriptor, req->outcome, false, "outcome kind",
                        "outcome", err);
    if (rc == 0)
        rc = cxm_svc_check_text(req->recommendation_id, 0, NBE_ID_MAX, "recommendation_id", err);
    if (rc == 0)
        rc = check_context(req->context, err);
    if (rc == 0)
        rc = check_time(req->occurred_at_unix_ms, now_ms, "occurred_at_unix_ms", err);
    return rc;
}

int nbe_check_interactions(const Cxm__V1__RecordInteractionsRequest *req, char err[CXM_SVC_ERR_MAX])
{
    if (req->n_interactions == 0)
        return cxm_svc_errf(err, CXM_EINVAL, "interactions", "required: 1 to %d interactions",
                            NBE_BATCH_MAX);
    if (req->n_interactions > NBE_BATCH_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "interactions",
                            "at most %d per call, got %zu: split the batch", NBE_BATCH_MAX,
                            req->n_interactions);
    return cxm_svc_check_text(req->source, 0, SOURCE_MAX, "source", err);
}

int nbe_check_interaction(cxm_arena *a, Cxm__V1__Interaction *it, int64_t now_ms,
                          char why[CXM_SVC_ERR_MAX])
{
    int rc = cxm_svc_check_text(it->interaction_id, 1, NBE_ID_MAX, "interaction_id", why);
    if (rc == 0)
        rc = check_customer(a, it->customer, why);
    if (rc == 0)
        rc = check_id(it->item_id, "item_id", why);
    if (rc == 0 &&
        !(isfinite(it->weight) && it->weight > 0 && it->weight <= INTERACTION_WEIGHT_MAX))
        rc = cxm_svc_errf(why, CXM_EINVAL, "weight", "must be > 0 and at most 1e6, got %g",
                          it->weight);
    if (rc == 0)
        rc = cxm_svc_check_text(it->interaction_type, 0, TYPE_MAX, "interaction_type", why);
    if (rc == 0)
        rc = check_time(it->occurred_at_unix_ms, now_ms, "occurred_at_unix_ms", why);
    return rc;
}

int nbe_check_similar(const Cxm__V1__SimilarExperiencesRequest *req, char err[CXM_SVC_ERR_MAX])
{
    int rc = check_id(req->experience_id, "experience_id", err);
    if (rc == 0 && req->k > NBE_K_MAX)
        rc = cxm_svc_errf(err, CXM_EINVAL, "k", "at most %d (0 = %d), got %u", NBE_K_MAX,
                          NBE_K_DEFAULT, req->k);
    return rc;
}

int nbe_check_list(const Cxm__V1__ListExperiencesRequest *req, char err[CXM_SVC_ERR_MAX])
{
    if (req->page_size > NBE_PAGE_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "page_size", "1 to %d (0 = %d), got %u", NBE_PAGE_MAX,
                            NBE_PAGE_DEFAULT, req->page_size);
    if (*s0(req->page_token) && !nbe_id_valid(req->page_token))
        return cxm_svc_errf(err, CXM_EINVAL, "page_token",
                            "not a token of ListExperiences: pass next_page_token as returned");
    return 0;
}

/* ---- TrainModel parameters ---- */

typedef struct param_rule {
    reco_algo algo;
    const char *name;
    double lo, hi;
    bool lo_open, integer;
} param_rule;

static const param_rule param_rules[] = {
    {RECO_EASE, "lambda", 0, INFINITY, true, false},
    {RECO_ITEMKNN, "neighbours", 1, 2000, false, true},
    {RECO_ITEMKNN, "shrinkage", 0, INFINITY, false, false},
    {RECO_ALS, "factors", 1, 512, false, true},
    {RECO_ALS, "regularisation", 0, INFINITY, false, false},
    {RECO_ALS, "alpha", 0, INFINITY, true, false},
    {RECO_ALS, "iterations", 1, 100, false, true},
    {RECO_POP, "half_life_days", 0, INFINITY, true, false},
    {RECO_SEQ, "lambda", 0, INFINITY, true, false},
    {RECO_SEQ, "seq_lambda", 0, INFINITY, true, false},
    {RECO_SEQ, "seq_half", 0, 1e6, true, false},
    {RECO_SEQ, "hist_half", 0, 1e6, false, false},
    {RECO_SEQ, "blend", 0, 1, false, false},
};

static void param_set(reco_params *p, const char *name, double v)
{
    if (strcmp(name, "lambda") == 0 || strcmp(name, "regularisation") == 0)
        p->lambda = v;
    else if (strcmp(name, "neighbours") == 0)
        p->neighbours = (uint32_t)v;
    else if (strcmp(name, "shrinkage") == 0)
        p->shrink = v;
    else if (strcmp(name, "factors") == 0)
        p->factors = (uint32_t)v;
    else if (strcmp(name, "alpha") == 0)
        p->alpha = v;
    else if (strcmp(name, "iterations") == 0)
        p->iterations = (uint32_t)v;
    else if (strcmp(name, "half_life_days") == 0)
        p->half_life = v * 86400.0; /* the log's timestamps are seconds */
    else if (strcmp(name, "seq_lambda") == 0)
        p->seq_lambda = v;
    else if (strcmp(name, "seq_half") == 0)
        p->seq_half = v;
    else if (strcmp(name, "hist_half") == 0)
        p->hist_half = v;
    else if (strcmp(name, "blend") == 0)
        p->blend = v;
}

static const param_rule *param_find(reco_algo algo, const char *name)
{
    for (size_t i = 0; i < sizeof param_rules / sizeof param_rules[0]; i++)
        if (param_rules[i].algo == algo && strcmp(param_rules[i].name, name) == 0)
            return &param_rules[i];
    return NULL;
}

static int check_param(reco_algo algo, const char *algo_name,
                       const Cxm__V1__TrainModelRequest__ParamsEntry *e, reco_params *p, char *err)
{
    cxm_svc_path f;
    const char *field = cxm_svc_member(&f, "params", s0(e->key));
    const param_rule *r = param_find(algo, s0(e->key));
    if (!r)
        return cxm_svc_errf(err, CXM_EINVAL, field, "unknown parameter \"%s\" of %s", s0(e->key),
                            algo_name);
    double v = e->value;
    bool ok = isfinite(v) && (r->lo_open ? v > r->lo : v >= r->lo) && v <= r->hi &&
              (!r->integer || v == floor(v));
    if (!ok)
        return cxm_svc_errf(err, CXM_EINVAL, field, "%g is out of range (%s%g%s%s)", v,
                            r->lo_open ? "> " : "", r->lo, isinf(r->hi) ? "" : " to ",
                            r->integer ? ", a whole number" : "");
    param_set(p, r->name, v);
    return 0;
}

/* The proto's Algorithm as reco_algo (0 = automatic). */
static reco_algo algo_of(Cxm__V1__Algorithm a)
{
    switch (a) {
    case CXM__V1__ALGORITHM__ALGORITHM_EASE:
        return RECO_EASE;
    case CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN:
        return RECO_ITEMKNN;
    case CXM__V1__ALGORITHM__ALGORITHM_ALS:
        return RECO_ALS;
    case CXM__V1__ALGORITHM__ALGORITHM_POPULARITY:
        return RECO_POP;
    case CXM__V1__ALGORITHM__ALGORITHM_SEQUENCE:
        return RECO_SEQ;
    default:
        return 0;
    }
}

int nbe_check_train(const Cxm__V1__TrainModelRequest *req, reco_algo *algo, reco_params *p,
                    char err[CXM_SVC_ERR_MAX])
{
    int rc = check_enum(&cxm__v1__algorithm__descriptor, req->algorithm, true, "algorithm",
                        "algorithm", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__activation__descriptor, req->activation, true, "activation",
                        "activation", err);
    if (rc == 0 && req->since_unix_ms < 0)
        rc = cxm_svc_errf(err, CXM_EINVAL, "since_unix_ms", "must not be negative (0 = all)");
    if (rc == 0 && !(isfinite(req->holdout_fraction) && req->holdout_fraction >= 0 &&
                     req->holdout_fraction <= HOLDOUT_MAX))
        rc = cxm_svc_errf(err, CXM_EINVAL, "holdout_fraction", "must be 0 to 0.5 (0 = 0.1)");
    if (rc != 0)
        return rc;
    *algo = algo_of(req->algorithm);
    if (*algo == 0 && req->n_params)
        return cxm_svc_errf(err, CXM_EINVAL, "params",
                            "the automatic choice takes no parameters: name the algorithm "
                            "(EASE, ITEM_KNN, ALS, POPULARITY) to set them");
    if (*algo)
        reco_params_default(*algo, p);
    for (size_t i = 0; rc == 0 && i < req->n_params; i++)
        rc = check_param(
            *algo,
            protobuf_c_enum_descriptor_get_value(&cxm__v1__algorithm__descriptor, req->algorithm)
                ->name,
            req->params[i], p, err);
    return rc;
}
