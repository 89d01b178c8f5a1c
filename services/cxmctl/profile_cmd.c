/*
 * profile_cmd.c - `cxmctl profile ...`: one command per cxm.v1.ProfileService
 * RPC a person runs by hand (UpsertProfile, GetProfile, ResolveIdentity,
 * MergeProfiles, UnmergeProfile, SetConsent, DeleteProfile,
 * GetDeletionReceipt, SearchProfiles).
 *
 * Each command turns its arguments into the request and leaves every rule of
 * the contract (limits, normalisation, which fields combine) to the server,
 * whose INVALID_ARGUMENT names the field; checking here only what the
 * command line's own syntax needs keeps the two from disagreeing.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/v1/profile.pb-c.h"
#include "cxmctl.h"

#define PROFILE_SERVICE (&cxm__v1__profile_service__descriptor)

/* --- profile upsert --- */

/* NAME=TEXT, NAME:=LITERAL or NAME@=TIME into u. */
static int parse_set(ctl *c, const char *arg, Cxm__V1__AttributeUpdate *u)
{
    size_t len = strspn(arg, cxmctl_name_chars);
    const char *op = arg + len;
    const char *s = op[0] == '=' ? op + 1 : op[0] && op[1] == '=' ? op + 2 : NULL;
    u->name = cxm_arena_strndup(&c->arena, arg, len);
    u->value = cxmctl_new_message(c, &cxm__v1__value__descriptor);
    int bad = len == 0 || !s;
    if (!bad && op[0] == '=')
        cxmctl_string_value(c, s, strlen(s), u->value);
    else if (!bad && op[0] == ':')
        bad = cxmctl_parse_literal(s, u->value);
    else if (!bad && op[0] == '@')
        bad = cxmctl_parse_timestamp_value(s, u->value);
    else
        bad = 1;
    return bad ? cxmctl_usage_error(c,
                                    "--set \"%s\": expected NAME=TEXT, NAME:=NUMBER, "
                                    "NAME:=true|false or NAME@=TIME",
                                    arg)
               : 0;
}

/* --strategy NAME=STRATEGY: the strategy of the --set of that name. */
static int apply_strategy(ctl *c, const char *arg, Cxm__V1__AttributeUpdate **u, size_t nset)
{
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : 0;
    for (size_t i = 0; eq && i < nset; i++) {
        if (strlen(u[i]->name) != len || strncmp(u[i]->name, arg, len) != 0)
            continue;
        int v;
        int rc = cxmctl_parse_enum(c, &cxm__v1__merge_strategy__descriptor, "strategy", eq + 1, &v);
        u[i]->strategy = (Cxm__V1__MergeStrategy)v;
        return rc;
    }
    return cxmctl_usage_error(c, "--strategy \"%s\": expected NAME=STRATEGY for a --set NAME", arg);
}

static int build_attributes(ctl *c, const cxmctl_flag *set, const cxmctl_flag *unset,
                            const cxmctl_flag *strategy, Cxm__V1__UpsertProfileRequest *req)
{
    req->n_attributes = set->n + unset->n;
    req->attributes = cxmctl_new_array(c, req->n_attributes, sizeof *req->attributes);
    int rc = 0;
    for (size_t i = 0; i < req->n_attributes && rc == 0; i++) {
        Cxm__V1__AttributeUpdate *u = cxmctl_new_message(c, &cxm__v1__attribute_update__descriptor);
        req->attributes[i] = u;
        if (i < set->n) {
            rc = parse_set(c, set->v[i], u);
        } else {
            u->name = (char *)unset->v[i - set->n];
            u->unset = 1;
        }
    }
    for (size_t i = 0; i < strategy->n && rc == 0; i++)
        rc = apply_strategy(c, strategy->v[i], req->attributes, set->n);
    return rc;
}

static int build_identities(ctl *c, const cxmctl_flag *identity, Cxm__V1__Identity ***out,
                            size_t *n)
{
    *n = identity->n;
    *out = cxmctl_new_array(c, identity->n, sizeof **out);
    int rc = 0;
    for (size_t i = 0; i < identity->n && rc == 0; i++)
        (*out)[i] = cxmctl_new_identity(c, identity->v[i], &rc);
    return rc;
}

static int cmd_upsert(ctl *c, int argc, char **argv)
{
    cxmctl_flag customer = {"customer", "ID"}, identity = {"identity", "TYPE:VALUE", true},
                set = {"set", "NAME=VALUE", true}, unset = {"unset", "NAME", true},
                strategy = {"strategy", "NAME=STRATEGY", true}, version = {"expected-version", "N"},
                policy = {"link-policy", "POLICY"}, source = {"source", "S"},
                request_id = {"request-id", "R"};
    cxmctl_flag *const flags[] = {&customer, &identity, &set,    &unset,     &strategy,
                                  &version,  &policy,   &source, &request_id};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    req.customer_id = customer.n ? (char *)customer.v[0] : "";
    req.source = source.n ? (char *)source.v[0] : "";
    req.request_id = request_id.n ? (char *)request_id.v[0] : "";
    int lp = 0;
    if ((rc = build_identities(c, &identity, &req.identities, &req.n_identities)) != 0 ||
        (rc = build_attributes(c, &set, &unset, &strategy, &req)) != 0 ||
        (version.n && (rc = cxmctl_parse_uint(c, "--expected-version", version.v[0], UINT64_MAX,
                                              &req.expected_version)) != 0) ||
        (policy.n && (rc = cxmctl_parse_enum(c, &cxm__v1__link_policy__descriptor, "--link-policy",
                                             policy.v[0], &lp)) != 0))
        return rc;
    req.link_policy = (Cxm__V1__LinkPolicy)lp;
    return cxmctl_call_print(c, PROFILE_SERVICE, "UpsertProfile", &req.base);
}

/* --- the other commands --- */

static int cmd_get(ctl *c, int argc, char **argv)
{
    cxmctl_flag identity = {"identity", "TYPE:VALUE"};
    cxmctl_flag *const flags[] = {&identity};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 1, 0, 1, &pos, &npos);
    Cxm__V1__GetProfileRequest req = CXM__V1__GET_PROFILE_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE ||
        (rc = cxmctl_customer_ref(c, &identity, &pos, &npos, 0, &req.customer)))
        return rc;
    return cxmctl_call_print(c, PROFILE_SERVICE, "GetProfile", &req.base);
}

static int cmd_resolve(ctl *c, int argc, char **argv)
{
    cxmctl_flag create = {"create"};
    cxmctl_flag *const flags[] = {&create};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 1, 1, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__ResolveIdentityRequest req = CXM__V1__RESOLVE_IDENTITY_REQUEST__INIT;
    req.identity = cxmctl_new_identity(c, pos[0], &rc);
    req.create_if_missing = create.n > 0;
    return rc ? rc : cxmctl_call_print(c, PROFILE_SERVICE, "ResolveIdentity", &req.base);
}

static int cmd_merge(ctl *c, int argc, char **argv)
{
    cxmctl_flag reason = {"reason", "R"}, version = {"expected-version", "N"},
                dry_run = {"dry-run"};
    cxmctl_flag *const flags[] = {&reason, &version, &dry_run};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 3, 2, 2, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__MergeProfilesRequest req = CXM__V1__MERGE_PROFILES_REQUEST__INIT;
    req.target_customer_id = pos[0];
    req.source_customer_id = pos[1];
    req.reason = reason.n ? (char *)reason.v[0] : "";
    req.dry_run = dry_run.n > 0;
    if (version.n && (rc = cxmctl_parse_uint(c, "--expected-version", version.v[0], UINT64_MAX,
                                             &req.expected_target_version)) != 0)
        return rc;
    return cxmctl_call_print(c, PROFILE_SERVICE, "MergeProfiles", &req.base);
}

static int cmd_unmerge(ctl *c, int argc, char **argv)
{
    cxmctl_flag reason = {"reason", "R"};
    cxmctl_flag *const flags[] = {&reason};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 1, 1, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__UnmergeProfileRequest req = CXM__V1__UNMERGE_PROFILE_REQUEST__INIT;
    req.merge_id = pos[0];
    req.reason = reason.n ? (char *)reason.v[0] : "";
    return cxmctl_call_print(c, PROFILE_SERVICE, "UnmergeProfile", &req.base);
}

static int cmd_consent(ctl *c, int argc, char **argv)
{
    cxmctl_flag identity = {"identity", "TYPE:VALUE"}, source = {"source", "S"},
                policy = {"policy-version", "V"}, decided = {"decided-at", "TIME"};
    cxmctl_flag *const flags[] = {&identity, &source, &policy, &decided};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 4, 2, 3, &pos, &npos);
    Cxm__V1__SetConsentRequest req = CXM__V1__SET_CONSENT_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_require(c, &source)) != 0 ||
        (rc = cxmctl_customer_ref(c, &identity, &pos, &npos, 2, &req.customer)) != 0)
        return rc;
    if (npos != 2)
        return cxmctl_usage_error(c, "expects SCOPE and STATE after the customer");
    int state;
    if ((rc = cxmctl_parse_enum(c, &cxm__v1__consent_state__descriptor, "state", pos[1], &state)) !=
        0)
        return rc;
    if (decided.n && cxmctl_parse_time(decided.v[0], &req.decided_at_unix_ms) != 0)
        return cxmctl_usage_error(c, "--decided-at \"%s\" is not a time", decided.v[0]);
    req.scope = pos[0];
    req.state = (Cxm__V1__ConsentState)state;
    req.source = (char *)source.v[0];
    req.policy_version = policy.n ? (char *)policy.v[0] : "";
    return cxmctl_call_print(c, PROFILE_SERVICE, "SetConsent", &req.base);
}

static int cmd_delete(ctl *c, int argc, char **argv)
{
    cxmctl_flag identity = {"identity", "TYPE:VALUE"}, reason = {"reason", "R"},
                suppress = {"suppress-identities"};
    cxmctl_flag *const flags[] = {&identity, &reason, &suppress};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 3, 0, 1, &pos, &npos);
    Cxm__V1__DeleteProfileRequest req = CXM__V1__DELETE_PROFILE_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_require(c, &reason)) != 0 ||
        (rc = cxmctl_customer_ref(c, &identity, &pos, &npos, 0, &req.customer)) != 0)
        return rc;
    req.reason = (char *)reason.v[0];
    req.suppress_identities = suppress.n > 0;
    return cxmctl_call_print(c, PROFILE_SERVICE, "DeleteProfile", &req.base);
}

/* ID is the receipt's id ("r...") or the erased customer's ("c..."): the
 * letter every cxm id starts with says which field it goes in. */
static int cmd_receipt(ctl *c, int argc, char **argv)
{
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, NULL, 0, 1, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__GetDeletionReceiptRequest req = CXM__V1__GET_DELETION_RECEIPT_REQUEST__INIT;
    if (pos[0][0] == 'r') {
        req.key_case = CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_RECEIPT_ID;
        req.receipt_id = pos[0];
    } else if (pos[0][0] == 'c') {
        req.key_case = CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_CUSTOMER_ID;
        req.customer_id = pos[0];
    } else {
        return cxmctl_usage_error(
            c, "\"%s\" is neither a receipt id (r...) nor a customer id (c...)", pos[0]);
    }
    return cxmctl_call_print(c, PROFILE_SERVICE, "GetDeletionReceipt", &req.base);
}

/* Longer operators first, so that "<=" is not read as "<" and "=...". */
static const struct {
    const char *text;
    Cxm__V1__CompareOp op;
} compare_ops[] = {
    {"!=", CXM__V1__COMPARE_OP__COMPARE_OP_NE},
    {"<=", CXM__V1__COMPARE_OP__COMPARE_OP_LE},
    {">=", CXM__V1__COMPARE_OP__COMPARE_OP_GE},
    {"^=", CXM__V1__COMPARE_OP__COMPARE_OP_PREFIX},
    {"~=", CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS},
    {"=", CXM__V1__COMPARE_OP__COMPARE_OP_EQ},
    {"<", CXM__V1__COMPARE_OP__COMPARE_OP_LT},
    {">", CXM__V1__COMPARE_OP__COMPARE_OP_GT},
};

/* attr.NAME OP VALUE, trait.NAME OP VALUE, or attr.NAME? / trait.NAME?. */
static int parse_condition(ctl *c, const char *s, Cxm__V1__FieldCondition *fc)
{
    static const char attr[] = "attr.", trait[] = "trait.";
    const char *p = s;
    if (strncmp(p, attr, sizeof attr - 1) == 0)
        fc->kind = CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE, p += sizeof attr - 1;
    else if (strncmp(p, trait, sizeof trait - 1) == 0)
        fc->kind = CXM__V1__FIELD_KIND__FIELD_KIND_TRAIT, p += sizeof trait - 1;
    size_t len = strspn(p, cxmctl_name_chars);
    fc->name = cxm_arena_strndup(&c->arena, p, len);
    p += len;
    bool ok = fc->kind && len > 0;
    if (ok && strcmp(p, "?") == 0) {
        fc->op = CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS;
        return 0;
    }
    for (size_t i = 0; ok && i < sizeof compare_ops / sizeof compare_ops[0]; i++) {
        size_t oplen = strlen(compare_ops[i].text);
        if (strncmp(p, compare_ops[i].text, oplen) != 0)
            continue;
        fc->op = compare_ops[i].op;
        fc->value = cxmctl_new_message(c, &cxm__v1__value__descriptor);
        if (cxmctl_typed_value(c, p + oplen, fc->value) == 0)
            return 0;
        break;
    }
    return cxmctl_usage_error(c,
                              "condition \"%s\": expected attr.NAME or trait.NAME, then ? or "
                              "one of = != < <= > >= ^= ~= and a value",
                              s);
}

static int cmd_search(ctl *c, int argc, char **argv)
{
    cxmctl_flag page_size = {"page-size", "N"}, page_token = {"page-token", "T"};
    cxmctl_flag *const flags[] = {&page_size, &page_token};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 2, 1, (size_t)argc, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__SearchProfilesRequest req = CXM__V1__SEARCH_PROFILES_REQUEST__INIT;
    req.n_conditions = npos;
    req.conditions = cxmctl_new_array(c, npos, sizeof *req.conditions);
    for (size_t i = 0; i < npos; i++) {
        req.conditions[i] = cxmctl_new_message(c, &cxm__v1__field_condition__descriptor);
        if (parse_condition(c, pos[i], req.conditions[i]) != 0)
            return CXMCTL_USAGE;
    }
    uint64_t size = 0;
    if (page_size.n &&
        (rc = cxmctl_parse_uint(c, "--page-size", page_size.v[0], INT32_MAX, &size)) != 0)
        return rc;
    req.page_size = (int32_t)size;
    req.page_token = page_token.n ? (char *)page_token.v[0] : "";
    return cxmctl_call_print(c, PROFILE_SERVICE, "SearchProfiles", &req.base);
}

const cxmctl_command cxmctl_profile_commands[] = {
    {"profile upsert",
     "[--customer ID] [--identity TYPE:VALUE]... [--set NAME=VALUE]... [--unset NAME]...\n"
     "      [--strategy NAME=overwrite|keep-first|keep-latest|max|add]... [--expected-version N]\n"
     "      [--link-policy merge|fail|skip] [--source S] [--request-id R]",
     "create or update a profile: link identities, set and unset attributes",
     "--identity email:ann@example.com --set tier=gold --set visits:=1 --strategy visits=add "
     "--set birthday@=1990-04-01 --source signup_form",
     cmd_upsert},
    {"profile get", "(ID | --identity TYPE:VALUE)", "show one profile",
     "--identity phone:+4915112345678", cmd_get},
    {"profile resolve", "TYPE:VALUE [--create]",
     "the customer id behind an identity, optionally creating a profile", "crm:C-1001 --create",
     cmd_resolve},
    {"profile merge", "TARGET_ID SOURCE_ID [--reason R] [--expected-version N] [--dry-run]",
     "merge SOURCE into TARGET (reversible with unmerge)",
     "c4f1e2a9b07d3c586 c90b3d5e17a2f4c68 --reason \"same person, verified by agent\"", cmd_merge},
    {"profile unmerge", "MERGE_ID [--reason R]", "undo a merge", "m2d7a91c4e0f5b36a", cmd_unmerge},
    {"profile consent",
     "(ID | --identity TYPE:VALUE) SCOPE granted|denied|revoked --source S\n"
     "      [--policy-version V] [--decided-at TIME]",
     "record a consent decision", "c4f1e2a9b07d3c586 marketing_email granted --source web_banner",
     cmd_consent},
    {"profile delete", "(ID | --identity TYPE:VALUE) --reason R [--suppress-identities]",
     "erase a customer everywhere (right to be forgotten)",
     "c4f1e2a9b07d3c586 --reason \"GDPR art. 17 request #123\"", cmd_delete},
    {"profile receipt", "ID",
     "an erasure's receipt by receipt or customer id: which services have confirmed it",
     "r3c1d5a7e9b2f4068", cmd_receipt},
    {"profile search", "COND... [--page-size N] [--page-token T]",
     "profiles matching every condition, in customer id order",
     "attr.tier=gold 'trait.lifetime_value>=100' 'attr.visits<3' attr.birthday?", cmd_search},
};
const size_t cxmctl_profile_ncommands =
    sizeof cxmctl_profile_commands / sizeof cxmctl_profile_commands[0];
