/*
 * prof_check.c - validation of ProfileService requests (see prof_check.h).
 */
#include "prof_check.h"

#include <stdio.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/svc.h"
#include "model.h"
#include "pdb.h"

#define FUTURE_SLACK_MS (5 * 60 * 1000)

static const char *s_or_empty(const char *s)
{
    return s ? s : "";
}

/* A timestamp a client reports: not negative, not in the future. */
static int check_past(int64_t t, int64_t now_ms, const char *field, char *err)
{
    if (t < 0 || t > now_ms + FUTURE_SLACK_MS)
        return cxm_svc_errf(err, CXM_EINVAL, field, "must not be negative or in the future");
    return 0;
}

/* ---- ResolveIdentity ---- */

int prof_check_resolve(const cxm_ident_config *cfg, cxm_arena *a,
                       Cxm__V1__ResolveIdentityRequest *req, char *err)
{
    int rc = cxm_ident_check(cfg, a, req->identity, "identity", err);
    if (rc == 0 && req->create_if_missing &&
        req->identity->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID)
        rc = cxm_svc_errf(err, CXM_EINVAL, "identity.type",
                          "CUSTOMER_ID ids are assigned by cxm and cannot be created through "
                          "create_if_missing");
    return rc;
}

/* ---- ResolveIdentities ---- */

int prof_check_resolve_batch(const Cxm__V1__ResolveIdentitiesRequest *req, char *err)
{
    if (req->n_items == 0 || req->n_items > PROF_MAX_RESOLVE)
        return cxm_svc_errf(err, CXM_EINVAL, "items", "1 to %d items are required (got %zu)",
                            PROF_MAX_RESOLVE, req->n_items);
    return cxm_svc_check_text(req->source, 0, 128, "source", err);
}

int prof_check_resolve_item(const cxm_ident_config *cfg, cxm_arena *a,
                            Cxm__V1__ResolveIdentitiesItem *it, size_t i, char *err)
{
    cxm_svc_path item, f, link, type;
    cxm_svc_index(&item, "items", i);
    int rc = cxm_ident_check_ref(cfg, a, it->customer, cxm_svc_member(&f, item.s, "customer"), err);
    if (rc != 0)
        return rc;
    Cxm__V1__CustomerRef *ref = it->customer;
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY &&
        ref->identity->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID) {
        ref->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
        ref->customer_id = ref->identity->value;
    }
    cxm_svc_member(&f, item.s, "link_identities");
    if (it->n_link_identities > PROF_MAX_RESOLVE_LINKS)
        return cxm_svc_errf(err, CXM_EINVAL, f.s, "too many (%zu; at most %d)",
                            it->n_link_identities, PROF_MAX_RESOLVE_LINKS);
    for (size_t k = 0; k < it->n_link_identities && rc == 0; k++) {
        Cxm__V1__Identity *id = it->link_identities[k];
        cxm_svc_index(&link, f.s, k);
        rc = cxm_ident_check(cfg, a, id, link.s, err);
        if (rc == 0 && id->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID)
            rc = cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&type, link.s, "type"),
                              "CUSTOMER_ID ids are assigned by cxm and cannot be linked; link "
                              "the customer's other identities");
    }
    return rc;
}

/* ---- UpsertProfile ---- */

static int check_attribute_update(const Cxm__V1__AttributeUpdate *u, const char *field, int64_t now,
                                  char *err)
{
    cxm_svc_path f;
    if (!prof_name_valid(u->name))
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "name"),
                            "must be [A-Za-z0-9_.-], 1 to 128 bytes");
    if ((unsigned)u->strategy > CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD)
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "strategy"),
                            "unknown strategy %d", u->strategy);
    int rc = check_past(u->observed_at_unix_ms, now,
                        cxm_svc_member(&f, field, "observed_at_unix_ms"), err);
    if (rc != 0)
        return rc;
    cxm_svc_member(&f, field, "value");
    if (u->unset)
        return u->value && u->value->kind_case
                   ? cxm_svc_errf(err, CXM_EINVAL, f.s, "must be empty when unset is true")
                   : 0;
    return prof_value_check(u->value, f.s, err, CXM_SVC_ERR_MAX);
}

static int check_attributes(const Cxm__V1__UpsertProfileRequest *req, int64_t now, char *err)
{
    int rc = 0;
    cxm_svc_path f, name;
    for (size_t i = 0; i < req->n_attributes && rc == 0; i++) {
        cxm_svc_index(&f, "attributes", i);
        rc = check_attribute_update(req->attributes[i], f.s, now, err);
        for (size_t j = 0; j < i && rc == 0; j++)
            if (strcmp(req->attributes[j]->name, req->attributes[i]->name) == 0)
                rc = cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&name, f.s, "name"),
                                  "\"%s\" appears twice", req->attributes[i]->name);
    }
    return rc;
}

int prof_check_upsert(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__UpsertProfileRequest *req,
                      int64_t now_ms, char *err)
{
    int rc = 0;
    bool has_id = *s_or_empty(req->customer_id);
    if (!has_id && req->n_identities == 0)
        return cxm_svc_errf(err, CXM_EINVAL, "customer_id",
                            "a customer_id or at least one identity is required");
    if (has_id && (rc = cxm_ident_check_customer_id(req->customer_id, "customer_id", err)) != 0)
        return rc;
    if (req->n_identities > PROF_MAX_LINK)
        return cxm_svc_errf(err, CXM_EINVAL, "identities", "too many (at most %d)", PROF_MAX_LINK);
    if (req->n_attributes > PROF_MAX_ATTRIBUTES)
        return cxm_svc_errf(err, CXM_EINVAL, "attributes", "too many (at most %d)",
                            PROF_MAX_ATTRIBUTES);
    cxm_svc_path f;
    for (size_t i = 0; i < req->n_identities && rc == 0; i++)
        rc = cxm_ident_check(cfg, a, req->identities[i], cxm_svc_index(&f, "identities", i), err);
    if (rc == 0)
        rc = check_attributes(req, now_ms, err);
    if (rc == 0 && (unsigned)req->link_policy > CXM__V1__LINK_POLICY__LINK_POLICY_SKIP)
        rc = cxm_svc_errf(err, CXM_EINVAL, "link_policy", "unknown policy %d", req->link_policy);
    if (rc == 0)
        rc = cxm_svc_check_text(req->source, 0, 128, "source", err);
    if (rc == 0)
        rc = cxm_svc_check_text(req->request_id, 0, 128, "request_id", err);
    return rc;
}

/* ---- MergeProfiles / UnmergeProfile ---- */

int prof_check_merge(const Cxm__V1__MergeProfilesRequest *req, char *err)
{
    int rc = cxm_ident_check_customer_id(req->target_customer_id, "target_customer_id", err);
    if (rc == 0)
        rc = cxm_ident_check_customer_id(req->source_customer_id, "source_customer_id", err);
    if (rc == 0)
        rc = cxm_svc_check_text(req->reason, 0, 1024, "reason", err);
    if (rc == 0 && strcmp(req->target_customer_id, req->source_customer_id) == 0)
        rc = cxm_svc_errf(err, CXM_EINVAL, "source_customer_id",
                          "a profile cannot be merged into itself");
    return rc;
}

int prof_check_unmerge(const Cxm__V1__UnmergeProfileRequest *req, char *err)
{
    int rc = cxm_svc_check_text(req->merge_id, 1, 64, "merge_id", err);
    return rc ? rc : cxm_svc_check_text(req->reason, 0, 1024, "reason", err);
}

/* ---- SetConsent / DeleteProfile ---- */

int prof_check_consent(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__SetConsentRequest *req,
                       int64_t now_ms, char *err)
{
    int rc = cxm_ident_check_ref(cfg, a, req->customer, "customer", err);
    if (rc == 0)
        rc = cxm_svc_check_slug(req->scope, "scope", err);
    if (rc == 0 && (req->state < CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED ||
                    req->state > CXM__V1__CONSENT_STATE__CONSENT_STATE_REVOKED))
        rc = cxm_svc_errf(err, CXM_EINVAL, "state", "GRANTED, DENIED or REVOKED is required");
    if (rc == 0)
        rc = check_past(req->decided_at_unix_ms, now_ms, "decided_at_unix_ms", err);
    if (rc == 0)
        rc = cxm_svc_check_text(req->source, 1, 128, "source", err);
    if (rc == 0)
        rc = cxm_svc_check_text(req->policy_version, 0, 64, "policy_version", err);
    return rc;
}

int prof_check_delete(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__DeleteProfileRequest *req,
                      char *err)
{
    int rc = cxm_ident_check_ref(cfg, a, req->customer, "customer", err);
    return rc ? rc : cxm_svc_check_text(req->reason, 1, 1024, "reason", err);
}

/* ---- GetDeletionReceipt ---- */

/* "r" and 16 lower-case hex digits, as pdb_new_id makes them. */
static bool receipt_id_valid(const char *s)
{
    return s && s[0] == 'r' && strlen(s) == PDB_ID_LEN - 1 &&
           strspn(s + 1, "0123456789abcdef") == PDB_ID_LEN - 2;
}

int prof_check_get_receipt(const Cxm__V1__GetDeletionReceiptRequest *req, char *err)
{
    switch (req->key_case) {
    case CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_RECEIPT_ID:
        if (!receipt_id_valid(req->receipt_id))
            return cxm_svc_errf(err, CXM_EINVAL, "receipt_id",
                                "\"%.64s\" is not a receipt id: \"r\" and 16 hex digits, as "
                                "DeleteProfile returned it",
                                s_or_empty(req->receipt_id));
        return 0;
    case CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_CUSTOMER_ID:
        return cxm_ident_check_customer_id(req->customer_id, "customer_id", err);
    default:
        return cxm_svc_errf(err, CXM_EINVAL, NULL, "a receipt_id or a customer_id is required");
    }
}

/* ---- SearchProfiles / UpsertSegment ---- */

int prof_check_search(const Cxm__V1__SearchProfilesRequest *req, char *err)
{
    if (req->n_conditions == 0 || req->n_conditions > PROF_MAX_CONDITIONS)
        return cxm_svc_errf(err, CXM_EINVAL, "conditions", "1 to %d conditions are required",
                            PROF_MAX_CONDITIONS);
    int rc = 0;
    cxm_svc_path f;
    for (size_t i = 0; i < req->n_conditions && rc == 0; i++)
        rc = prof_field_check(req->conditions[i], cxm_svc_index(&f, "conditions", i), err,
                              CXM_SVC_ERR_MAX);
    return rc;
}

int prof_check_segment(const Cxm__V1__UpsertSegmentRequest *req, char *err)
{
    const Cxm__V1__Segment *s = req->segment;
    if (!s)
        return cxm_svc_errf(err, CXM_EINVAL, "segment", "required");
    int rc = cxm_svc_check_slug(s->segment_id, "segment.segment_id", err);
    if (rc == 0)
        rc = cxm_svc_check_text(s->display_name, 0, 256, "segment.display_name", err);
    if (rc == 0)
        rc = cxm_svc_check_text(s->description, 0, 4096, "segment.description", err);
    if (rc == 0)
        rc = prof_condition_check(s->condition, err, CXM_SVC_ERR_MAX);
    return rc;
}

/* ---- WriteTraits ---- */

/* Which service owns each well-known trait. */
static const char *standard_owner(const Cxm__V1__StandardTraitsUpdate *u)
{
    bool journey = u->journey_stage || u->first_seen_unix_ms || u->last_seen_unix_ms ||
                   u->lifetime_value_update_case || u->n_channel_mix;
    bool feedback = u->last_nps_update_case || u->open_follow_ups_update_case ||
                    u->last_nps_category || u->last_csat_update_case || u->last_ces_update_case;
    return journey && feedback ? "mixed" : journey ? "journey" : feedback ? "feedback" : NULL;
}

static int check_standard(const Cxm__V1__StandardTraitsUpdate *u, const char *source, char *err)
{
    const char *owner = standard_owner(u);
    if (owner && strcmp(owner, source) != 0)
        return cxm_svc_errf(err, CXM_EPERM, "standard",
                            "these well-known traits are owned by %s, not %s",
                            strcmp(owner, "mixed") == 0 ? "journey and feedback" : owner, source);
    if (u->last_nps_update_case && (u->last_nps < 0 || u->last_nps > 10))
        return cxm_svc_errf(err, CXM_EINVAL, "standard.last_nps", "0 to 10 (got %d)", u->last_nps);
    if (u->last_csat_update_case && (u->last_csat < 1 || u->last_csat > 5))
        return cxm_svc_errf(err, CXM_EINVAL, "standard.last_csat", "1 to 5 (got %d)", u->last_csat);
    if (u->last_ces_update_case && (u->last_ces < 1 || u->last_ces > 7))
        return cxm_svc_errf(err, CXM_EINVAL, "standard.last_ces", "1 to 7 (got %d)", u->last_ces);
    if ((unsigned)u->last_nps_category > CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PROMOTER)
        return cxm_svc_errf(err, CXM_EINVAL, "standard.last_nps_category", "unknown category %d",
                            u->last_nps_category);
    if (u->lifetime_value_update_case && !(u->lifetime_value >= 0 && u->lifetime_value < 1e300))
        return cxm_svc_errf(err, CXM_EINVAL, "standard.lifetime_value", "a finite amount >= 0");
    if ((unsigned)u->journey_stage > CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_ADVOCACY)
        return cxm_svc_errf(err, CXM_EINVAL, "standard.journey_stage", "unknown stage %d",
                            u->journey_stage);
    return 0;
}

/* The traits map: names, values, and no name both set and unset. */
static int check_trait_entries(const Cxm__V1__WriteTraitsRequest *req, char *err)
{
    int rc = 0;
    for (size_t i = 0; i < req->n_traits && rc == 0; i++) {
        const char *key = s_or_empty(req->traits[i]->key);
        char field[CXM_SVC_PATH_MAX];
        snprintf(field, sizeof field, "traits[%.128s]", key); /* a map: keyed by name */
        if (!prof_name_valid(key))
            return cxm_svc_errf(err, CXM_EINVAL, field,
                                "trait names are [A-Za-z0-9_.-], 1 to 128 bytes");
        rc = prof_value_check(req->traits[i]->value, field, err, CXM_SVC_ERR_MAX);
        for (size_t j = 0; j < req->n_unset_traits && rc == 0; j++)
            if (strcmp(req->unset_traits[j], key) == 0) {
                cxm_svc_path f;
                rc = cxm_svc_errf(err, CXM_EINVAL, cxm_svc_index(&f, "unset_traits", j),
                                  "\"%s\" is also set", key);
            }
    }
    return rc;
}

int prof_check_traits(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__WriteTraitsRequest *req,
                      char *err)
{
    int rc = cxm_ident_check_ref(cfg, a, req->customer, "customer", err);
    if (rc != 0)
        return rc;
    const char *source = s_or_empty(req->source);
    if (strcmp(source, "journey") != 0 && strcmp(source, "feedback") != 0 &&
        strcmp(source, "personalisation") != 0)
        return cxm_svc_errf(err, CXM_EINVAL, "source",
                            "must be journey, feedback or personalisation");
    if (req->n_traits > PROF_MAX_TRAITS)
        return cxm_svc_errf(err, CXM_EINVAL, "traits", "at most %d per request", PROF_MAX_TRAITS);
    if ((rc = check_trait_entries(req, err)) != 0)
        return rc;
    if (req->standard && (rc = check_standard(req->standard, source, err)) != 0)
        return rc;
    if (req->observed_at_unix_ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "observed_at_unix_ms", "must not be negative");
    return 0;
}
