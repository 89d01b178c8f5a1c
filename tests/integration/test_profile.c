/*
 * test_profile.c - every ProfileService RPC over gRPC against the real
 * cxmd, restart persistence, kill -9 during acknowledged writes,
 * --profile-erasure-services refused at start-up when it is wrong, the
 * erasure cascade through the other modules and the events each change
 * publishes (counted through cxm.v1.BusService), and erasures that complete
 * although cxmd is killed -9 amid a stream of them.
 *
 *   test_profile PATH_TO_SERVER CASE
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cxm/client.h"
#include "cxm/v1/bus.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "harness.h"

extern char **environ;

#define SVC "/cxm.v1.ProfileService/"

static cxm_arena arena; /* responses of the running case; freed at exit */

/* One ProfileService RPC (see harness_call). */
static grpc_status_code call(cxm_channel *ch, const char *method, const void *req,
                             const ProtobufCMessageDescriptor *resp_desc, void *resp, char *details)
{
    return harness_call(ch, SVC, method, req, resp_desc, &arena, resp, details);
}

static void expect_error(cxm_channel *ch, const char *method, const void *req,
                         grpc_status_code want, const char *needle)
{
    char d[512];
    grpc_status_code st =
        call(ch, method, req, &cxm__v1__get_profile_response__descriptor, NULL, d);
    CHECK(st == want, "%s: status %d (%s), want %d", method, st, d, want);
    CHECK(!needle || strstr(d, needle), "%s: message \"%s\" lacks \"%s\"", method, d, needle);
}

static Cxm__V1__Identity *ident(Cxm__V1__IdentityType type, const char *value)
{
    Cxm__V1__Identity *id = cxm_arena_alloc(&arena, sizeof *id);
    cxm__v1__identity__init(id);
    id->type = type;
    id->value = (char *)value;
    return id;
}

#define EMAIL CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL
#define PHONE CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE
#define CRM CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID

static Cxm__V1__Value *str_value(const char *s)
{
    Cxm__V1__Value *v = cxm_arena_alloc(&arena, sizeof *v);
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static Cxm__V1__Value *num_value(double d)
{
    Cxm__V1__Value *v = cxm_arena_alloc(&arena, sizeof *v);
    cxm__v1__value__init(v);
    v->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    v->number_value = d;
    return v;
}

static Cxm__V1__AttributeUpdate *attr(const char *name, Cxm__V1__Value *v, Cxm__V1__MergeStrategy s)
{
    Cxm__V1__AttributeUpdate *u = cxm_arena_alloc(&arena, sizeof *u);
    cxm__v1__attribute_update__init(u);
    u->name = (char *)name;
    u->value = v;
    u->strategy = s;
    return u;
}

/* Upsert identities and attributes; returns the profile. */
static Cxm__V1__Profile *upsert(cxm_channel *ch, const char *customer_id, Cxm__V1__Identity **ids,
                                size_t nids, Cxm__V1__AttributeUpdate **attrs, size_t nattrs)
{
    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    req.customer_id = (char *)customer_id;
    req.identities = ids;
    req.n_identities = nids;
    req.attributes = attrs;
    req.n_attributes = nattrs;
    Cxm__V1__UpsertProfileResponse *resp;
    CALL_OK(ch, UpsertProfile, req, cxm__v1__upsert_profile_response, resp);
    return resp->profile;
}

static Cxm__V1__Profile *get_by_id(cxm_channel *ch, const char *id, bool *redirected)
{
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = (char *)id;
    Cxm__V1__GetProfileRequest req = CXM__V1__GET_PROFILE_REQUEST__INIT;
    req.customer = &ref;
    Cxm__V1__GetProfileResponse *resp;
    CALL_OK(ch, GetProfile, req, cxm__v1__get_profile_response, resp);
    if (redirected)
        *redirected = resp->redirected;
    return resp->profile;
}

static const Cxm__V1__Attribute *find_attr(const Cxm__V1__Profile *p, const char *name)
{
    for (size_t i = 0; i < p->n_attributes; i++)
        if (strcmp(p->attributes[i]->name, name) == 0)
            return p->attributes[i];
    return NULL;
}

/* ---- cases ---- */

static void case_resolve(cxm_channel *ch, test_server *srv)
{
    Cxm__V1__ResolveIdentityRequest req = CXM__V1__RESOLVE_IDENTITY_REQUEST__INIT;
    req.identity = ident(EMAIL, "  Ann.Lee@Example.COM ");
    expect_error(ch, "ResolveIdentity", &req, GRPC_STATUS_NOT_FOUND, "no customer");
    req.create_if_missing = true;
    Cxm__V1__ResolveIdentityResponse *r1, *r2;
    CALL_OK(ch, ResolveIdentity, req, cxm__v1__resolve_identity_response, r1);
    CHECK(r1->created && r1->customer_id[0], "created");
    CHECK(strcmp(r1->normalized->value, "ann.lee@example.com") == 0, "normalised %s",
          r1->normalized->value);
    req.identity = ident(EMAIL, "ann.lee@example.com");
    req.create_if_missing = false;
    CALL_OK(ch, ResolveIdentity, req, cxm__v1__resolve_identity_response, r2);
    CHECK(strcmp(r1->customer_id, r2->customer_id) == 0 && !r2->created, "same customer");

    /* Phones meet across spellings. */
    req.identity = ident(PHONE, "+82 10-1234-5678");
    req.create_if_missing = true;
    CALL_OK(ch, ResolveIdentity, req, cxm__v1__resolve_identity_response, r1);
    req.identity = ident(PHONE, "0082 (10) 1234 5678");
    CALL_OK(ch, ResolveIdentity, req, cxm__v1__resolve_identity_response, r2);
    CHECK(strcmp(r1->customer_id, r2->customer_id) == 0, "phone spellings differ");

    /* Junk never becomes an identity. */
    const char *junk[] = {"null", "undefined", "anonymous", "0", "-1", "----", "0000-0000", ""};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        req.identity = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_DEVICE_ID, junk[i]);
        expect_error(ch, "ResolveIdentity", &req, GRPC_STATUS_INVALID_ARGUMENT, "identity.value");
    }
    req.identity = ident(EMAIL, "not-an-email");
    expect_error(ch, "ResolveIdentity", &req, GRPC_STATUS_INVALID_ARGUMENT, "email");
    req.identity = ident(PHONE, "010-1234-5678");
    expect_error(ch, "ResolveIdentity", &req, GRPC_STATUS_INVALID_ARGUMENT, "country prefix");
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    req.identity = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_DEVICE_ID, big);
    expect_error(ch, "ResolveIdentity", &req, GRPC_STATUS_INVALID_ARGUMENT, "256 bytes");
    req.identity = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_DEVICE_ID, "\xff\xfe");
    expect_error(ch, "ResolveIdentity", &req, GRPC_STATUS_INVALID_ARGUMENT, "UTF-8");
    req.identity = NULL;
    expect_error(ch, "ResolveIdentity", &req, GRPC_STATUS_INVALID_ARGUMENT, "identity.type");
}

static void case_upsert(cxm_channel *ch, test_server *srv)
{
    Cxm__V1__Identity *ids[] = {ident(EMAIL, "bo@example.com")};
    Cxm__V1__AttributeUpdate *a1[] = {
        attr("tier", str_value("silver"), 0),
        attr("visits", num_value(1), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD),
        attr("max_basket", num_value(30), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_MAX)};
    Cxm__V1__Profile *p = upsert(ch, NULL, ids, 1, a1, 3);
    CHECK(p->version == 1 && p->n_attributes == 3, "version %llu, %zu attributes",
          (unsigned long long)p->version, p->n_attributes);
    Cxm__V1__AttributeUpdate *a2[] = {attr("tier", str_value("gold"), 0),
                                      attr("visits", num_value(1), 0),
                                      attr("max_basket", num_value(20), 0)};
    p = upsert(ch, NULL, ids, 1, a2, 3);
    CHECK(strcmp(find_attr(p, "tier")->value->string_value, "gold") == 0, "overwrite");
    CHECK(find_attr(p, "visits")->value->number_value == 2, "ADD remembered");
    CHECK(find_attr(p, "max_basket")->value->number_value == 30, "MAX remembered");
    CHECK(p->version == 2, "version 2");

    /* Optimistic concurrency. */
    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    req.customer_id = p->customer_id;
    req.expected_version = 1;
    req.attributes = a2;
    req.n_attributes = 1;
    expect_error(ch, "UpsertProfile", &req, GRPC_STATUS_FAILED_PRECONDITION, "stale");
    req.expected_version = 2;
    Cxm__V1__UpsertProfileResponse *resp;
    CALL_OK(ch, UpsertProfile, req, cxm__v1__upsert_profile_response, resp);

    /* Idempotent by request id: ADD applied once. */
    Cxm__V1__AttributeUpdate *inc[] = {attr("visits", num_value(5), 0)};
    req.expected_version = 0;
    req.attributes = inc;
    req.request_id = "req-1";
    CALL_OK(ch, UpsertProfile, req, cxm__v1__upsert_profile_response, resp);
    CHECK(!resp->duplicate && find_attr(resp->profile, "visits")->value->number_value == 7, "add");
    CALL_OK(ch, UpsertProfile, req, cxm__v1__upsert_profile_response, resp);
    CHECK(resp->duplicate && find_attr(resp->profile, "visits")->value->number_value == 7,
          "duplicate applied again");

    /* Bad input names the field; nothing is applied. */
    req.request_id = "";
    Cxm__V1__AttributeUpdate *bad_name[] = {attr("no spaces", str_value("x"), 0)};
    req.attributes = bad_name;
    expect_error(ch, "UpsertProfile", &req, GRPC_STATUS_INVALID_ARGUMENT, "attributes[0].name");
    static char huge[9000];
    memset(huge, 'a', sizeof huge - 1);
    Cxm__V1__AttributeUpdate *big[] = {attr("note", str_value(huge), 0)};
    req.attributes = big;
    expect_error(ch, "UpsertProfile", &req, GRPC_STATUS_INVALID_ARGUMENT, "8 KiB");
    Cxm__V1__AttributeUpdate *bad_utf8[] = {attr("note", str_value("\xc3\x28"), 0)};
    req.attributes = bad_utf8;
    expect_error(ch, "UpsertProfile", &req, GRPC_STATUS_INVALID_ARGUMENT, "UTF-8");
    Cxm__V1__AttributeUpdate *bad_add[] = {
        attr("tier", str_value("x"), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD)};
    req.attributes = bad_add;
    expect_error(ch, "UpsertProfile", &req, GRPC_STATUS_INVALID_ARGUMENT,
                 "attributes[0].strategy: ADD needs a number");
    Cxm__V1__AttributeUpdate *second_bad[] = {
        attr("visits", num_value(1), 0),
        attr("tier", str_value("x"), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_MAX)};
    req.attributes = second_bad;
    req.n_attributes = 2;
    expect_error(ch, "UpsertProfile", &req, GRPC_STATUS_INVALID_ARGUMENT,
                 "attributes[1].strategy: MAX needs a number or timestamp");
    req.n_attributes = 1;
    Cxm__V1__AttributeUpdate **many = cxm_arena_alloc(&arena, 201 * sizeof *many);
    for (int i = 0; i < 201; i++) {
        char *name = cxm_arena_alloc(&arena, 16);
        snprintf(name, 16, "a%d", i);
        many[i] = attr(name, num_value(i), 0);
    }
    req.attributes = many;
    req.n_attributes = 201;
    expect_error(ch, "UpsertProfile", &req, GRPC_STATUS_INVALID_ARGUMENT, "attributes");
    req.n_attributes = 0;
    req.customer_id = "nobody";
    expect_error(ch, "UpsertProfile", &req, GRPC_STATUS_NOT_FOUND, "nobody");
    Cxm__V1__Profile *after = get_by_id(ch, p->customer_id, NULL);
    CHECK(after->version == 4, "bad requests changed the profile (version %llu)",
          (unsigned long long)after->version);

    /* A version expected of a customer not known yet: say so, name no id. */
    Cxm__V1__Identity *fresh[] = {ident(EMAIL, "new-one@example.com")};
    Cxm__V1__UpsertProfileRequest nreq = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    nreq.identities = fresh;
    nreq.n_identities = 1;
    nreq.expected_version = 3;
    expect_error(ch, "UpsertProfile", &nreq, GRPC_STATUS_FAILED_PRECONDITION, "does not exist yet");
    char d[512];
    call(ch, "UpsertProfile", &nreq.base, &cxm__v1__upsert_profile_response__descriptor, NULL, d);
    CHECK(!strstr(d, "customer c"), "the message names a customer that does not exist: %s", d);
    nreq.expected_version = 0;
    Cxm__V1__UpsertProfileResponse *nresp;
    CALL_OK(ch, UpsertProfile, nreq, cxm__v1__upsert_profile_response, nresp);
    CHECK(nresp->created, "created once expected_version is unset");
}

/* The content two profiles must share byte for byte after an unmerge:
 * everything but version, update time and the merge log. */
static size_t content(const Cxm__V1__Profile *p, uint8_t *buf)
{
    Cxm__V1__Profile c = *p;
    c.version = 0;
    c.updated_at_unix_ms = 0;
    c.n_merges = 0;
    return cxm__v1__profile__pack(&c, buf);
}

static void case_merge(cxm_channel *ch, test_server *srv)
{
    Cxm__V1__Identity *ida[] = {ident(EMAIL, "cy@example.com"), ident(CRM, "crm-1")};
    Cxm__V1__AttributeUpdate *aa[] = {
        attr("tier", str_value("gold"), 0),
        attr("visits", num_value(3), CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD)};
    Cxm__V1__Profile *a = upsert(ch, NULL, ida, 2, aa, 2);
    Cxm__V1__Identity *idb[] = {ident(PHONE, "+447700900123")};
    Cxm__V1__AttributeUpdate *ab[] = {attr("city", str_value("Leeds"), 0),
                                      attr("visits", num_value(4), 0)};
    Cxm__V1__Profile *b = upsert(ch, NULL, idb, 1, ab, 2);
    CHECK(strcmp(a->customer_id, b->customer_id) != 0, "distinct profiles");
    uint8_t before_a[4096], before_b[4096], now_a[4096], now_b[4096];
    size_t la = content(get_by_id(ch, a->customer_id, NULL), before_a);
    size_t lb = content(get_by_id(ch, b->customer_id, NULL), before_b);

    /* Linking b's phone to a merges b into a. */
    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    req.customer_id = a->customer_id;
    req.identities = idb;
    req.n_identities = 1;
    Cxm__V1__UpsertProfileResponse *ur;
    CALL_OK(ch, UpsertProfile, req, cxm__v1__upsert_profile_response, ur);
    CHECK(ur->n_merges == 1, "merge recorded");
    const Cxm__V1__Profile *m = ur->profile;
    CHECK(find_attr(m, "city") && find_attr(m, "visits")->value->number_value == 7,
          "merged attributes");
    bool redirected = false;
    Cxm__V1__Profile *via_b = get_by_id(ch, b->customer_id, &redirected);
    CHECK(redirected && strcmp(via_b->customer_id, a->customer_id) == 0, "b redirects to a");

    /* Undo: both exactly as before. */
    Cxm__V1__UnmergeProfileRequest un = CXM__V1__UNMERGE_PROFILE_REQUEST__INIT;
    un.merge_id = ur->merges[0]->merge_id;
    Cxm__V1__UnmergeProfileResponse *unr;
    CALL_OK(ch, UnmergeProfile, un, cxm__v1__unmerge_profile_response, unr);
    CHECK(unr->merge->unmerged_at_unix_ms > 0, "record shows the unmerge");
    CHECK(content(get_by_id(ch, a->customer_id, NULL), now_a) == la &&
              memcmp(now_a, before_a, la) == 0,
          "target not restored byte for byte");
    CHECK(content(get_by_id(ch, b->customer_id, &redirected), now_b) == lb &&
              memcmp(now_b, before_b, lb) == 0 && !redirected,
          "source not restored byte for byte");
    /* The merge record is listed on both profiles it involved. */
    const Cxm__V1__Profile *src = get_by_id(ch, b->customer_id, NULL);
    CHECK(src->n_merges == 1 && strcmp(src->merges[0]->merge_id, un.merge_id) == 0 &&
              src->merges[0]->unmerged_at_unix_ms > 0,
          "the restored source does not list the undone merge (%zu merges)", src->n_merges);
    CHECK(strcmp(unr->source->merges[0]->merge_id, un.merge_id) == 0, "response's source");
    const Cxm__V1__Profile *tgt = get_by_id(ch, a->customer_id, NULL);
    CHECK(tgt->n_merges == 1 && tgt->merges[0]->unmerged_at_unix_ms > 0, "target's record");
    expect_error(ch, "UnmergeProfile", &un, GRPC_STATUS_FAILED_PRECONDITION, "already undone");
    un.merge_id = "m-unknown";
    expect_error(ch, "UnmergeProfile", &un, GRPC_STATUS_NOT_FOUND, "no merge");

    /* A unique type refuses a merge that would give two CRM ids. */
    Cxm__V1__Identity *idc[] = {ident(CRM, "crm-2")};
    Cxm__V1__Profile *c = upsert(ch, NULL, idc, 1, NULL, 0);
    Cxm__V1__MergeProfilesRequest mr = CXM__V1__MERGE_PROFILES_REQUEST__INIT;
    mr.target_customer_id = a->customer_id;
    mr.source_customer_id = c->customer_id;
    expect_error(ch, "MergeProfiles", &mr, GRPC_STATUS_FAILED_PRECONDITION, "unique");
    mr.source_customer_id = a->customer_id;
    expect_error(ch, "MergeProfiles", &mr, GRPC_STATUS_INVALID_ARGUMENT, "itself");
    /* Linking a second, unowned CRM id is refused the same way. */
    Cxm__V1__Identity *idn[] = {ident(CRM, "crm-9")};
    Cxm__V1__UpsertProfileRequest link = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    link.customer_id = a->customer_id;
    link.identities = idn;
    link.n_identities = 1;
    expect_error(ch, "UpsertProfile", &link, GRPC_STATUS_FAILED_PRECONDITION, "unique");
    /* An explicit merge, changed afterwards, keeps the later change when undone. */
    mr.source_customer_id = b->customer_id;
    Cxm__V1__MergeProfilesResponse *mresp;
    CALL_OK(ch, MergeProfiles, mr, cxm__v1__merge_profiles_response, mresp);
    Cxm__V1__AttributeUpdate *later[] = {attr("tier", str_value("platinum"), 0)};
    upsert(ch, a->customer_id, NULL, 0, later, 1);
    un.merge_id = mresp->merge->merge_id;
    CALL_OK(ch, UnmergeProfile, un, cxm__v1__unmerge_profile_response, unr);
    CHECK(strcmp(find_attr(unr->target, "tier")->value->string_value, "platinum") == 0,
          "a change after the merge was lost");
    CHECK(!find_attr(unr->target, "city"), "the source's attribute stayed on the target");

    /* Out of order: x into y (m1), then y into z (m2); undoing m1 first
     * names m2, the merge to undo first. */
    Cxm__V1__Identity *ix[] = {ident(EMAIL, "x@example.com")},
                      *iy[] = {ident(EMAIL, "y@example.com")},
                      *iz[] = {ident(EMAIL, "z@example.com")};
    Cxm__V1__Profile *x = upsert(ch, NULL, ix, 1, NULL, 0), *y = upsert(ch, NULL, iy, 1, NULL, 0),
                     *z = upsert(ch, NULL, iz, 1, NULL, 0);
    Cxm__V1__MergeProfilesResponse *m1, *m2;
    mr.target_customer_id = y->customer_id;
    mr.source_customer_id = x->customer_id;
    CALL_OK(ch, MergeProfiles, mr, cxm__v1__merge_profiles_response, m1);
    mr.target_customer_id = z->customer_id;
    mr.source_customer_id = y->customer_id;
    CALL_OK(ch, MergeProfiles, mr, cxm__v1__merge_profiles_response, m2);
    un.merge_id = m1->merge->merge_id;
    char want[128];
    snprintf(want, sizeof want, "undo merge %s first", m2->merge->merge_id);
    expect_error(ch, "UnmergeProfile", &un, GRPC_STATUS_FAILED_PRECONDITION, want);
    un.merge_id = m2->merge->merge_id;
    CALL_OK(ch, UnmergeProfile, un, cxm__v1__unmerge_profile_response, unr);
    un.merge_id = m1->merge->merge_id;
    CALL_OK(ch, UnmergeProfile, un, cxm__v1__unmerge_profile_response, unr);
    CHECK(strcmp(unr->source->customer_id, x->customer_id) == 0, "x is back");
}

static void case_consent_traits(cxm_channel *ch, test_server *srv)
{
    Cxm__V1__Identity *ids[] = {ident(EMAIL, "di@example.com")};
    Cxm__V1__Profile *p = upsert(ch, NULL, ids, 1, NULL, 0);
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    ref.identity = ids[0];
    Cxm__V1__SetConsentRequest sc = CXM__V1__SET_CONSENT_REQUEST__INIT;
    sc.customer = &ref;
    sc.scope = "marketing_email";
    sc.state = CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED;
    sc.decided_at_unix_ms = 2000;
    sc.source = "web_banner";
    Cxm__V1__SetConsentResponse *cr;
    CALL_OK(ch, SetConsent, sc, cxm__v1__set_consent_response, cr);
    CHECK(cr->applied, "applied");
    sc.state = CXM__V1__CONSENT_STATE__CONSENT_STATE_REVOKED;
    sc.decided_at_unix_ms = 1000; /* older: logged only */
    CALL_OK(ch, SetConsent, sc, cxm__v1__set_consent_response, cr);
    CHECK(!cr->applied && cr->consent->state == CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED,
          "an older decision won");
    sc.state = 0;
    expect_error(ch, "SetConsent", &sc, GRPC_STATUS_INVALID_ARGUMENT, "state");
    sc.state = CXM__V1__CONSENT_STATE__CONSENT_STATE_DENIED;
    sc.scope = "Bad Scope";
    expect_error(ch, "SetConsent", &sc, GRPC_STATUS_INVALID_ARGUMENT, "scope");

    Cxm__V1__WriteTraitsRequest wt = CXM__V1__WRITE_TRAITS_REQUEST__INIT;
    wt.customer = &ref;
    wt.source = "feedback";
    Cxm__V1__StandardTraitsUpdate st = CXM__V1__STANDARD_TRAITS_UPDATE__INIT;
    st.last_nps_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_NPS_UPDATE_LAST_NPS;
    st.last_nps = 4;
    wt.standard = &st;
    Cxm__V1__WriteTraitsRequest__TraitsEntry e = CXM__V1__WRITE_TRAITS_REQUEST__TRAITS_ENTRY__INIT,
                                             *ep = &e;
    e.key = "last_complaint";
    e.value = str_value("late delivery");
    wt.traits = &ep;
    wt.n_traits = 1;
    Cxm__V1__WriteTraitsResponse *wr;
    CALL_OK(ch, WriteTraits, wt, cxm__v1__write_traits_response, wr);
    Cxm__V1__Profile *after = get_by_id(ch, p->customer_id, NULL);
    CHECK(after->standard_traits->last_nps == 4 &&
              after->standard_traits->last_nps_category ==
                  CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR,
          "nps trait");
    CHECK(after->n_traits == 1 && after->n_consents == 1, "traits and consent on the profile");
    wt.source = "journey"; /* not the owner of NPS, nor of last_complaint */
    expect_error(ch, "WriteTraits", &wt, GRPC_STATUS_PERMISSION_DENIED, "owned by");
    wt.source = "marketing";
    expect_error(ch, "WriteTraits", &wt, GRPC_STATUS_INVALID_ARGUMENT, "source");
}

static Cxm__V1__FieldCondition *field(Cxm__V1__FieldKind kind, const char *name,
                                      Cxm__V1__CompareOp op, Cxm__V1__Value *v)
{
    Cxm__V1__FieldCondition *f = cxm_arena_alloc(&arena, sizeof *f);
    cxm__v1__field_condition__init(f);
    f->kind = kind;
    f->name = (char *)name;
    f->op = op;
    f->value = v;
    return f;
}

static void case_segments(cxm_channel *ch, test_server *srv)
{
    /* 30 customers, every third gold. */
    char emails[30][32];
    for (int i = 0; i < 30; i++) {
        snprintf(emails[i], sizeof emails[i], "seg%02d@example.com", i);
        Cxm__V1__Identity *ids[] = {ident(EMAIL, emails[i])};
        Cxm__V1__AttributeUpdate *as[] = {attr("tier", str_value(i % 3 ? "silver" : "gold"), 0),
                                          attr("age", num_value(20 + i), 0)};
        upsert(ch, NULL, ids, 1, as, 2);
    }
    Cxm__V1__SegmentCondition leaf = CXM__V1__SEGMENT_CONDITION__INIT;
    leaf.node_case = CXM__V1__SEGMENT_CONDITION__NODE_FIELD;
    leaf.field = field(CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE, "tier",
                       CXM__V1__COMPARE_OP__COMPARE_OP_EQ, str_value("gold"));
    Cxm__V1__Segment seg = CXM__V1__SEGMENT__INIT;
    seg.segment_id = "gold";
    seg.condition = &leaf;
    Cxm__V1__UpsertSegmentRequest us = CXM__V1__UPSERT_SEGMENT_REQUEST__INIT;
    us.segment = &seg;
    Cxm__V1__UpsertSegmentResponse *usr;
    CALL_OK(ch, UpsertSegment, us, cxm__v1__upsert_segment_response, usr);
    CHECK(usr->created && usr->segment->member_count == 10, "members %llu",
          (unsigned long long)usr->segment->member_count);

    /* Paged listing sees all ten exactly once. */
    Cxm__V1__ListSegmentMembersRequest lm = CXM__V1__LIST_SEGMENT_MEMBERS_REQUEST__INIT;
    lm.segment_id = "gold";
    lm.page_size = 4;
    size_t seen = 0;
    for (int page = 0; page < 5; page++) {
        Cxm__V1__ListSegmentMembersResponse *lr;
        CALL_OK(ch, ListSegmentMembers, lm, cxm__v1__list_segment_members_response, lr);
        seen += lr->n_customer_ids;
        CHECK(lr->total_size == 10, "total %llu", (unsigned long long)lr->total_size);
        if (!lr->next_page_token || !*lr->next_page_token)
            break;
        lm.page_token = lr->next_page_token;
    }
    CHECK(seen == 10, "listed %zu members", seen);
    lm.segment_id = "silver";
    lm.page_token = "";
    expect_error(ch, "ListSegmentMembers", &lm, GRPC_STATUS_NOT_FOUND, "silver");

    /* Membership follows writes. */
    Cxm__V1__Identity *ids[] = {ident(EMAIL, emails[1])};
    Cxm__V1__AttributeUpdate *gold[] = {attr("tier", str_value("gold"), 0)};
    Cxm__V1__Profile *p = upsert(ch, NULL, ids, 1, gold, 1);
    CHECK(p->n_segment_ids == 1 && strcmp(p->segment_ids[0], "gold") == 0, "segment on write");

    /* Search: equality and a range, paged. */
    Cxm__V1__FieldCondition *conds[] = {field(CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE, "tier",
                                              CXM__V1__COMPARE_OP__COMPARE_OP_EQ,
                                              str_value("gold")),
                                        field(CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE, "age",
                                              CXM__V1__COMPARE_OP__COMPARE_OP_GE, num_value(30))};
    Cxm__V1__SearchProfilesRequest sr = CXM__V1__SEARCH_PROFILES_REQUEST__INIT;
    sr.conditions = conds;
    sr.n_conditions = 2;
    sr.page_size = 2;
    size_t found = 0;
    for (int page = 0; page < 10; page++) {
        Cxm__V1__SearchProfilesResponse *resp;
        CALL_OK(ch, SearchProfiles, sr, cxm__v1__search_profiles_response, resp);
        found += resp->n_profiles;
        if (!resp->next_page_token || !*resp->next_page_token)
            break;
        sr.page_token = resp->next_page_token;
    }
    CHECK(found == 6, "search found %zu, want 6 (gold and age >= 30)", found);
    sr.n_conditions = 1; /* a token from other filters */
    expect_error(ch, "SearchProfiles", &sr, GRPC_STATUS_INVALID_ARGUMENT, "page_token");
    sr.n_conditions = 0;
    sr.page_token = "";
    expect_error(ch, "SearchProfiles", &sr, GRPC_STATUS_INVALID_ARGUMENT, "conditions");
}

/* GetDeletionReceipt by receipt id (by_id) or customer id; the status. */
static grpc_status_code get_receipt(cxm_channel *ch, bool by_id, const char *id,
                                    Cxm__V1__DeletionReceipt **out, char *details)
{
    Cxm__V1__GetDeletionReceiptRequest req = CXM__V1__GET_DELETION_RECEIPT_REQUEST__INIT;
    req.key_case = by_id ? CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_RECEIPT_ID
                         : CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_CUSTOMER_ID;
    *(by_id ? &req.receipt_id : &req.customer_id) = (char *)id;
    Cxm__V1__GetDeletionReceiptResponse *resp = NULL;
    grpc_status_code st = call(ch, "GetDeletionReceipt", &req,
                               &cxm__v1__get_deletion_receipt_response__descriptor, &resp, details);
    *out = resp ? resp->receipt : NULL;
    return st;
}

/* The receipt once every service confirmed its erasure (the cascade:
 * CustomerDeleted, then each module's ErasureCompleted, each sent only after
 * the store's compaction, --erasure-compact-delay 1 s by default), polled
 * for up to 10 s; each service DONE, completed_at the latest. */
static Cxm__V1__DeletionReceipt *wait_completed(cxm_channel *ch, const char *receipt_id)
{
    double start = test_now_ms();
    Cxm__V1__DeletionReceipt *r = NULL;
    char d[512];
    for (;;) {
        CHECK(get_receipt(ch, true, receipt_id, &r, d) == GRPC_STATUS_OK, "receipt: %s", d);
        if (r->completed_at_unix_ms || test_now_ms() - start > 10000)
            break;
        usleep(5000);
    }
    CHECK(r->completed_at_unix_ms, "receipt %s still incomplete after 10 s", receipt_id);
    int64_t latest = 0;
    for (size_t i = 0; i < r->n_services; i++) {
        const Cxm__V1__ServiceErasure *se = r->services[i];
        CHECK(se->state == CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE, "%s: state %d", se->service,
              se->state);
        latest = se->completed_at_unix_ms > latest ? se->completed_at_unix_ms : latest;
    }
    CHECK(r->completed_at_unix_ms == latest, "completed at %lld, the last service at %lld",
          (long long)r->completed_at_unix_ms, (long long)latest);
    fprintf(stderr, "receipt %s complete after %.0f ms\n", receipt_id, test_now_ms() - start);
    return r;
}

/* Both ways of asking give back exactly this receipt. */
static void expect_receipt(cxm_channel *ch, const Cxm__V1__DeletionReceipt *want)
{
    uint8_t a[4096], b[4096];
    size_t n = cxm__v1__deletion_receipt__get_packed_size(want);
    CHECK(n <= sizeof a, "receipt of %zu bytes", n);
    cxm__v1__deletion_receipt__pack(want, a);
    for (int by_id = 0; by_id < 2; by_id++) {
        Cxm__V1__DeletionReceipt *got;
        char d[512];
        const char *id = by_id ? want->receipt_id : want->customer_id;
        grpc_status_code st = get_receipt(ch, by_id, id, &got, d);
        CHECK(st == GRPC_STATUS_OK, "GetDeletionReceipt %s: status %d: %s", id, st, d);
        CHECK(cxm__v1__deletion_receipt__get_packed_size(got) == n &&
                  (cxm__v1__deletion_receipt__pack(got, b), memcmp(a, b, n) == 0),
              "GetDeletionReceipt %s differs from DeleteProfile's receipt", id);
    }
}

/* GetDeletionReceipt refused with status want, the message naming needle. */
static void expect_receipt_error(cxm_channel *ch, bool by_id, const char *id, grpc_status_code want,
                                 const char *needle)
{
    Cxm__V1__DeletionReceipt *got;
    char d[512];
    grpc_status_code st = get_receipt(ch, by_id, id, &got, d);
    CHECK(st == want, "GetDeletionReceipt \"%s\": status %d (%s), want %d", id, st, d, want);
    CHECK(strstr(d, needle), "GetDeletionReceipt: message \"%s\" lacks \"%s\"", d, needle);
}

/* The receipt of an erasure under the default --profile-erasure-services,
 * as DeleteProfile answers it: profile's records counted, but every service
 * PENDING (profile's own part too, until its store is compacted),
 * incomplete. */
static void check_pending_receipt(const Cxm__V1__DeletionReceipt *r, uint64_t records)
{
    static const char *const others[] = {"journey", "feedback", "personalisation"};
    CHECK(r->n_services == 4, "%zu services on the receipt", r->n_services);
    const Cxm__V1__ServiceErasure *p = r->services[0];
    CHECK(strcmp(p->service, "profile") == 0 &&
              p->state == CXM__V1__ERASURE_STATE__ERASURE_STATE_PENDING &&
              p->records_erased == records && p->completed_at_unix_ms == 0,
          "profile's part: %s state %d, %llu records", p->service, p->state,
          (unsigned long long)p->records_erased);
    for (size_t i = 0; i < 3; i++) {
        const Cxm__V1__ServiceErasure *se = r->services[i + 1];
        CHECK(strcmp(se->service, others[i]) == 0 &&
                  se->state == CXM__V1__ERASURE_STATE__ERASURE_STATE_PENDING &&
                  se->completed_at_unix_ms == 0,
              "services[%zu]: %s state %d", i + 1, se->service, se->state);
    }
    CHECK(r->requested_at_unix_ms > 0 && r->completed_at_unix_ms == 0,
          "incomplete receipt completed at %lld", (long long)r->completed_at_unix_ms);
}

static void case_delete(cxm_channel *ch, test_server *srv)
{
    Cxm__V1__Identity *ids[] = {ident(EMAIL, "ed@example.com")};
    Cxm__V1__AttributeUpdate *as[] = {attr("tier", str_value("gold"), 0)};
    Cxm__V1__Profile *p = upsert(ch, NULL, ids, 1, as, 1);
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = p->customer_id;
    Cxm__V1__DeleteProfileRequest dr = CXM__V1__DELETE_PROFILE_REQUEST__INIT;
    dr.customer = &ref;
    expect_error(ch, "DeleteProfile", &dr, GRPC_STATUS_INVALID_ARGUMENT, "reason");
    dr.reason = "GDPR art. 17 request #1";
    Cxm__V1__DeleteProfileResponse *r1, *r2;
    CALL_OK(ch, DeleteProfile, dr, cxm__v1__delete_profile_response, r1);
    check_pending_receipt(r1->receipt, 3);
    CALL_OK(ch, DeleteProfile, dr, cxm__v1__delete_profile_response, r2);
    CHECK(strcmp(r1->receipt->receipt_id, r2->receipt->receipt_id) == 0, "same receipt");
    /* The other modules erase and confirm: the receipt completes. */
    Cxm__V1__DeletionReceipt *done = wait_completed(ch, r1->receipt->receipt_id);
    CHECK(strcmp(done->customer_id, r1->receipt->customer_id) == 0 &&
              done->requested_at_unix_ms == r1->receipt->requested_at_unix_ms &&
              done->n_services == 4 && done->services[0]->records_erased == 3,
          "the completed receipt is the one DeleteProfile gave");
    for (size_t i = 1; i < 4; i++)
        CHECK(strcmp(done->services[i]->service, r1->receipt->services[i]->service) == 0 &&
                  done->services[i]->records_erased == 0,
              "%s erased %llu records (it stores none)", done->services[i]->service,
              (unsigned long long)done->services[i]->records_erased);
    expect_receipt(ch, done);

    /* Ids that cannot be, and ids no erasure has. */
    expect_receipt_error(ch, true, "x", GRPC_STATUS_INVALID_ARGUMENT, "receipt_id: \"x\"");
    expect_receipt_error(ch, true, "R0123456789abcdef", GRPC_STATUS_INVALID_ARGUMENT,
                         "receipt_id:");
    expect_receipt_error(ch, true, "", GRPC_STATUS_INVALID_ARGUMENT, "receipt_id:");
    expect_receipt_error(ch, false, "", GRPC_STATUS_INVALID_ARGUMENT, "customer_id:");
    Cxm__V1__GetDeletionReceiptRequest none = CXM__V1__GET_DELETION_RECEIPT_REQUEST__INIT;
    expect_error(ch, "GetDeletionReceipt", &none, GRPC_STATUS_INVALID_ARGUMENT,
                 "a receipt_id or a customer_id is required");
    expect_receipt_error(ch, true, "r0123456789abcdef", GRPC_STATUS_NOT_FOUND,
                         "receipt_id: no erasure has the receipt id \"r0123456789abcdef\"");
    expect_receipt_error(ch, false, "c0123456789abcdef", GRPC_STATUS_NOT_FOUND,
                         "customer_id: customer \"c0123456789abcdef\" was never erased");
    Cxm__V1__Identity *live_ids[] = {ident(EMAIL, "alive@example.com")};
    Cxm__V1__Profile *alive = upsert(ch, NULL, live_ids, 1, NULL, 0);
    expect_receipt_error(ch, false, alive->customer_id, GRPC_STATUS_NOT_FOUND, alive->customer_id);
    Cxm__V1__GetProfileRequest g = CXM__V1__GET_PROFILE_REQUEST__INIT;
    g.customer = &ref;
    expect_error(ch, "GetProfile", &g, GRPC_STATUS_NOT_FOUND, p->customer_id);
    Cxm__V1__ResolveIdentityRequest rr = CXM__V1__RESOLVE_IDENTITY_REQUEST__INIT;
    rr.identity = ids[0];
    expect_error(ch, "ResolveIdentity", &rr, GRPC_STATUS_NOT_FOUND, "no customer");
    /* Without suppression the identity is free to come back... */
    rr.create_if_missing = true;
    Cxm__V1__ResolveIdentityResponse *again;
    CALL_OK(ch, ResolveIdentity, rr, cxm__v1__resolve_identity_response, again);
    CHECK(again->created, "recreated");

    /* ...with it, it is refused everywhere a profile could be created. */
    ref.customer_id = again->customer_id;
    dr.suppress_identities = true;
    CALL_OK(ch, DeleteProfile, dr, cxm__v1__delete_profile_response, r1);
    CHECK(r1->receipt->identities_suppressed, "receipt says suppressed");
    expect_error(ch, "ResolveIdentity", &rr, GRPC_STATUS_FAILED_PRECONDITION, "suppressed");
    Cxm__V1__Identity *other[] = {ident(EMAIL, "fresh@example.com"), ids[0]};
    Cxm__V1__UpsertProfileRequest ur = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    ur.identities = other;
    ur.n_identities = 2;
    expect_error(ch, "UpsertProfile", &ur, GRPC_STATUS_FAILED_PRECONDITION,
                 r1->receipt->receipt_id);
    rr.identity = other[0]; /* nothing of the refused upsert was stored */
    rr.create_if_missing = false;
    expect_error(ch, "ResolveIdentity", &rr, GRPC_STATUS_NOT_FOUND, "no customer");
}

/* ---- events ---- */

/* cxm.v1.BusService/GetBusStatus. */
static Cxm__V1__GetBusStatusResponse *bus_status(cxm_channel *ch)
{
    Cxm__V1__GetBusStatusRequest req = CXM__V1__GET_BUS_STATUS_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    cxm_client_result r = {0};
    CHECK(cxm_client_unary_pb(ch, "/cxm.v1.BusService/GetBusStatus", &req.base,
                              &cxm__v1__get_bus_status_response__descriptor, &arena, 10000, &out,
                              &r) == 0 &&
              r.status == GRPC_STATUS_OK,
          "GetBusStatus: %d %s", r.status, r.details ? r.details : "");
    cxm_client_result_dispose(&r);
    return (Cxm__V1__GetBusStatusResponse *)out;
}

/* The last sequence producer emitted (0: none). */
static uint64_t last_sequence(cxm_channel *ch, const char *producer)
{
    Cxm__V1__GetBusStatusResponse *st = bus_status(ch);
    for (size_t i = 0; i < st->n_producers; i++)
        if (strcmp(st->producers[i]->producer, producer) == 0)
            return st->producers[i]->last_sequence;
    return 0;
}

/* The change just made published `more` events (they commit with it, so
 * they are counted as soon as the call is answered). */
static void expect_events(cxm_channel *ch, uint64_t *seq, uint64_t more, const char *what)
{
    uint64_t now = last_sequence(ch, "profile");
    CHECK(now == *seq + more, "%s: %llu events, want %llu", what, (unsigned long long)(now - *seq),
          (unsigned long long)more);
    *seq = now;
}

static Cxm__V1__SetConsentResponse *consent(cxm_channel *ch, const char *id,
                                            Cxm__V1__ConsentState state, int64_t at)
{
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = (char *)id;
    Cxm__V1__SetConsentRequest sc = CXM__V1__SET_CONSENT_REQUEST__INIT;
    sc.customer = &ref;
    sc.scope = "marketing_email";
    sc.state = state;
    sc.decided_at_unix_ms = at;
    sc.source = "web_banner";
    Cxm__V1__SetConsentResponse *cr;
    CALL_OK(ch, SetConsent, sc, cxm__v1__set_consent_response, cr);
    return cr;
}

/* Set trait "score" (v non-NULL) or unset it, observed at `at`. */
static void score(cxm_channel *ch, const char *id, Cxm__V1__Value *v, int64_t at)
{
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = (char *)id;
    Cxm__V1__WriteTraitsRequest wt = CXM__V1__WRITE_TRAITS_REQUEST__INIT;
    wt.customer = &ref;
    wt.source = "feedback";
    wt.observed_at_unix_ms = at;
    Cxm__V1__WriteTraitsRequest__TraitsEntry e = CXM__V1__WRITE_TRAITS_REQUEST__TRAITS_ENTRY__INIT,
                                             *ep = &e;
    char *unset = "score";
    e.key = "score";
    e.value = v;
    if (v) {
        wt.traits = &ep;
        wt.n_traits = 1;
    } else {
        wt.unset_traits = &unset;
        wt.n_unset_traits = 1;
    }
    Cxm__V1__WriteTraitsResponse *wr;
    CALL_OK(ch, WriteTraits, wt, cxm__v1__write_traits_response, wr);
}

/* Each kind of change publishes its events in process, a change that
 * changes nothing and a failed write publish none, and an erasure
 * cascades through journey, feedback and personalisation. */
static void case_events(cxm_channel *ch, test_server *srv)
{
    uint64_t seq = last_sequence(ch, "profile");
    Cxm__V1__Identity *ids_a[] = {ident(EMAIL, "ev-a@example.com"), ident(CRM, "A1")};
    Cxm__V1__Identity *ids_b[] = {ident(EMAIL, "ev-b@example.com")};
    Cxm__V1__Profile *a = upsert(ch, NULL, ids_a, 2, NULL, 0);
    Cxm__V1__Profile *b = upsert(ch, NULL, ids_b, 1, NULL, 0);
    expect_events(ch, &seq, 0, "two new profiles in no segment");

    Cxm__V1__MergeProfilesRequest mr = CXM__V1__MERGE_PROFILES_REQUEST__INIT;
    mr.target_customer_id = a->customer_id;
    mr.source_customer_id = b->customer_id;
    mr.dry_run = true;
    Cxm__V1__MergeProfilesResponse *m;
    CALL_OK(ch, MergeProfiles, mr, cxm__v1__merge_profiles_response, m);
    expect_events(ch, &seq, 0, "a dry-run merge");
    mr.dry_run = false;
    CALL_OK(ch, MergeProfiles, mr, cxm__v1__merge_profiles_response, m);
    expect_events(ch, &seq, 1, "MergeProfiles (CustomerMerged)");

    consent(ch, a->customer_id, CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED, 1000);
    expect_events(ch, &seq, 1, "a first consent (ConsentChanged)");
    CHECK(consent(ch, a->customer_id, CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED, 2000)->applied,
          "a newer decision is applied");
    expect_events(ch, &seq, 0, "the same decision again");
    consent(ch, a->customer_id, CXM__V1__CONSENT_STATE__CONSENT_STATE_DENIED, 3000);
    expect_events(ch, &seq, 1, "consent denied (ConsentChanged)");

    score(ch, a->customer_id, num_value(7), 1000);
    expect_events(ch, &seq, 1, "a new trait (TraitsChanged)");
    score(ch, a->customer_id, num_value(7), 2000);
    expect_events(ch, &seq, 0, "the same trait value again");

    Cxm__V1__UpsertSegmentRequest sr = CXM__V1__UPSERT_SEGMENT_REQUEST__INIT;
    Cxm__V1__Segment seg = CXM__V1__SEGMENT__INIT;
    Cxm__V1__SegmentCondition c = CXM__V1__SEGMENT_CONDITION__INIT;
    c.node_case = CXM__V1__SEGMENT_CONDITION__NODE_FIELD;
    c.field = field(CXM__V1__FIELD_KIND__FIELD_KIND_TRAIT, "score",
                    CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS, NULL);
    seg.segment_id = "scored";
    seg.display_name = "scored";
    seg.condition = &c;
    sr.segment = &seg;
    Cxm__V1__UpsertSegmentResponse *sresp;
    CALL_OK(ch, UpsertSegment, sr, cxm__v1__upsert_segment_response, sresp);
    expect_events(ch, &seq, 1, "a new segment one customer is in (SegmentMembershipChanged)");
    score(ch, a->customer_id, NULL, 3000);
    expect_events(ch, &seq, 2, "a trait removed, and with it the segment left");

    /* An upsert that merges c into a, then fails to merge d (two crm ids):
     * rolled back, so the first merge's event is gone with it. */
    Cxm__V1__Identity *ids_c[] = {ident(EMAIL, "ev-c@example.com")};
    Cxm__V1__Identity *ids_d[] = {ident(EMAIL, "ev-d@example.com"), ident(CRM, "D1")};
    Cxm__V1__Profile *pc = upsert(ch, NULL, ids_c, 1, NULL, 0);
    upsert(ch, NULL, ids_d, 2, NULL, 0);
    expect_events(ch, &seq, 0, "two more profiles");
    Cxm__V1__Identity *both[] = {ids_c[0], ids_d[0]};
    Cxm__V1__UpsertProfileRequest ur = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    ur.customer_id = a->customer_id;
    ur.identities = both;
    ur.n_identities = 2;
    expect_error(ch, "UpsertProfile", &ur, GRPC_STATUS_FAILED_PRECONDITION, "D1");
    expect_events(ch, &seq, 0, "a failed write");
    bool redirected = true;
    get_by_id(ch, pc->customer_id, &redirected);
    CHECK(!redirected, "the failed upsert's first merge was rolled back");

    Cxm__V1__UnmergeProfileRequest un = CXM__V1__UNMERGE_PROFILE_REQUEST__INIT;
    un.merge_id = m->merge->merge_id;
    Cxm__V1__UnmergeProfileResponse *unr;
    CALL_OK(ch, UnmergeProfile, un, cxm__v1__unmerge_profile_response, unr);
    expect_events(ch, &seq, 1, "UnmergeProfile (CustomerUnmerged)");

    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = a->customer_id;
    Cxm__V1__DeleteProfileRequest dr = CXM__V1__DELETE_PROFILE_REQUEST__INIT;
    dr.customer = &ref;
    dr.reason = "events test";
    Cxm__V1__DeleteProfileResponse *del;
    CALL_OK(ch, DeleteProfile, dr, cxm__v1__delete_profile_response, del);
    expect_events(ch, &seq, 1, "DeleteProfile (CustomerDeleted)");
    wait_completed(ch, del->receipt->receipt_id);
    /* Each module answered once; profile applied each answer and every
     * module saw every profile event (the others advance its mark). */
    Cxm__V1__GetBusStatusResponse *st = bus_status(ch);
    CHECK(st->mode == CXM__V1__BUS_MODE__BUS_MODE_IN_PROCESS, "mode %d", st->mode);
    for (size_t i = 0; i < st->n_producers; i++)
        CHECK(st->producers[i]->last_sequence ==
                  (strcmp(st->producers[i]->producer, "profile") ? 1 : seq),
              "%s emitted %llu", st->producers[i]->producer,
              (unsigned long long)st->producers[i]->last_sequence);
    /* The erasure cascade of journey, feedback and personalisation, profile
     * hearing their answers, journey's own two (profile's merges and segments
     * as journey-profile, and feedback's responses), feedback's two (profile's
     * merges and segments as feedback-profile, journey's stages),
     * personalisation's three (profile's merges, segments and consents as
     * personalisation-profile, journey's stages and touchpoints, feedback's
     * responses and follow-ups) and profile's feedback traits
     * (profile-feedback). */
    CHECK(st->n_subscribers == 14, "%zu subscriptions", st->n_subscribers);
    for (size_t i = 0; i < st->n_subscribers; i++) {
        const Cxm__V1__BusSubscriberStatus *s = st->subscribers[i];
        uint64_t want = strcmp(s->producer, "profile") ? 1 : seq;
        for (double end = test_now_ms() + 2000; s->applied_sequence < want && test_now_ms() < end;
             usleep(5000))
            s = bus_status(ch)->subscribers[i];
        CHECK(s->applied_sequence == want && !*s->last_error, "%s of %s applied %llu: %s",
              s->subscriber, s->producer, (unsigned long long)s->applied_sequence, s->last_error);
    }
}

/* ---- durability ---- */

typedef struct writer {
    const char *target;
    int first, step;
    atomic_int *acked; /* acked[i] = 1 once customer i's write was acknowledged */
    atomic_bool *stop;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    cxm_channel *ch;
    CHECK(cxm_channel_open(w->target, NULL, &ch) == 0, "channel");
    for (int i = w->first; !atomic_load(w->stop); i += w->step) {
        char email[48];
        snprintf(email, sizeof email, "k%06d@example.com", i);
        Cxm__V1__Identity id = CXM__V1__IDENTITY__INIT;
        id.type = EMAIL;
        id.value = email;
        Cxm__V1__Identity *ids[] = {&id};
        Cxm__V1__Value v = CXM__V1__VALUE__INIT;
        v.kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
        v.number_value = i;
        Cxm__V1__AttributeUpdate u = CXM__V1__ATTRIBUTE_UPDATE__INIT, *us[] = {&u};
        u.name = "seq";
        u.value = &v;
        Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
        req.identities = ids;
        req.n_identities = 1;
        req.attributes = us;
        req.n_attributes = 1;
        cxm_arena a;
        cxm_arena_init(&a, NULL, 0, 0);
        ProtobufCMessage *out;
        cxm_client_result r = {0};
        int rc =
            cxm_client_unary_pb(ch, SVC "UpsertProfile", &req.base,
                                &cxm__v1__upsert_profile_response__descriptor, &a, 2000, &out, &r);
        bool ok = rc == 0 && r.status == GRPC_STATUS_OK;
        cxm_client_result_dispose(&r);
        cxm_arena_dispose(&a);
        if (!ok)
            break; /* the server died: stop writing */
        atomic_store(&w->acked[i], 1);
    }
    cxm_channel_close(ch);
    return NULL;
}

static double seq_of(cxm_channel *ch, int i)
{
    char email[48];
    snprintf(email, sizeof email, "k%06d@example.com", i);
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    ref.identity = ident(EMAIL, email);
    Cxm__V1__GetProfileRequest req = CXM__V1__GET_PROFILE_REQUEST__INIT;
    req.customer = &ref;
    Cxm__V1__GetProfileResponse *resp;
    char d[512];
    if (call(ch, "GetProfile", &req.base, &cxm__v1__get_profile_response__descriptor, &resp, d) !=
        GRPC_STATUS_OK)
        return -1;
    const Cxm__V1__Attribute *a = find_attr(resp->profile, "seq");
    return a ? a->value->number_value : -1;
}

/* Writers hammer the server, which is killed -9 mid-stream; after a restart
 * every acknowledged write must be there. Then a clean restart keeps all. */
static void case_durability(cxm_channel *unused, test_server *srv)
{
    enum { WRITERS = 8, MAX_KEYS = 1 << 20 };
    static atomic_int acked[MAX_KEYS];
    atomic_bool stop = false;
    pthread_t threads[WRITERS];
    writer w[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){srv->target, i, WRITERS, acked, &stop};
        pthread_create(&threads[i], NULL, writer_main, &w[i]);
    }
    usleep(700 * 1000);
    CHECK(harness_stop(srv, SIGKILL, 5000) == 128 + SIGKILL, "kill -9");
    atomic_store(&stop, true);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(threads[i], NULL);
    int nacked = 0;
    for (int i = 0; i < MAX_KEYS; i++)
        nacked += atomic_load(&acked[i]);
    CHECK(nacked > 20, "only %d writes were acknowledged before the kill", nacked);

    harness_restart(srv);
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv->target, NULL, &ch) == 0, "channel");
    int lost = 0;
    for (int i = 0; i < MAX_KEYS; i++)
        if (atomic_load(&acked[i]) && seq_of(ch, i) != i)
            lost++;
    CHECK(lost == 0, "%d of %d acknowledged writes lost after kill -9", lost, nacked);
    cxm_channel_close(ch);

    CHECK(harness_stop(srv, SIGTERM, 10000) == 0, "clean stop");
    harness_restart(srv);
    CHECK(cxm_channel_open(srv->target, NULL, &ch) == 0, "channel");
    for (int i = 0; i < MAX_KEYS; i++)
        if (atomic_load(&acked[i]) && seq_of(ch, i) != i)
            lost++;
    CHECK(lost == 0, "%d writes lost after a clean restart", lost);
    cxm_channel_close(ch);
    printf("durability: %d acknowledged writes, all present after kill -9 and restart\n", nacked);
}

/* Restart srv on its data with another message limit; a new channel. */
static cxm_channel *restart_with_limit(test_server *srv, const char *const *args)
{
    CHECK(harness_stop(srv, SIGTERM, 10000) == 0, "clean stop");
    srv->extra_args = args;
    harness_restart(srv);
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv->target, NULL, &ch) == 0, "channel");
    return ch;
}

/* A profile of n attributes blob0.. of 7000 bytes each, found by email. */
static Cxm__V1__Profile *big_profile(cxm_channel *ch, const char *email, int n)
{
    Cxm__V1__AttributeUpdate **attrs = cxm_arena_alloc(&arena, (size_t)n * sizeof *attrs);
    for (int i = 0; i < n; i++) {
        char *name = cxm_arena_alloc(&arena, 16), *text = cxm_arena_alloc(&arena, 7001);
        snprintf(name, 16, "blob%d", i);
        memset(text, 'a' + i % 26, 7000);
        text[7000] = '\0';
        attrs[i] = attr(name, str_value(text), 0);
    }
    Cxm__V1__Identity *ids[] = {ident(EMAIL, email)};
    return upsert(ch, NULL, ids, 1, attrs, (size_t)n);
}

/* Replies over the message limit: never INTERNAL, never after a committed
 * write. Run with a 256 KiB limit so the profiles stay small. */
static void case_limits(cxm_channel *unused, test_server *srv)
{
    (void)unused;
    static const char *const k256[] = {"--grace", "3s", "--workers", "2", "--max-message-bytes",
                                       "262144",  NULL};
    static const char *const k64[] = {"--grace", "3s", "--workers", "2", "--max-message-bytes",
                                      "65536",   NULL};
    cxm_channel *ch = restart_with_limit(srv, k256);

    /* Two ~133 KB profiles with the same attribute names: the merged one
     * fits, but an unmerge answers with both and must be refused unwritten. */
    Cxm__V1__Profile *a = big_profile(ch, "big-a@example.com", 19);
    Cxm__V1__Profile *b = big_profile(ch, "big-b@example.com", 19);
    Cxm__V1__MergeProfilesRequest mr = CXM__V1__MERGE_PROFILES_REQUEST__INIT;
    mr.target_customer_id = a->customer_id;
    mr.source_customer_id = b->customer_id;
    Cxm__V1__MergeProfilesResponse *m;
    CALL_OK(ch, MergeProfiles, mr, cxm__v1__merge_profiles_response, m);
    Cxm__V1__UnmergeProfileRequest un = CXM__V1__UNMERGE_PROFILE_REQUEST__INIT;
    un.merge_id = m->merge->merge_id;
    expect_error(ch, "UnmergeProfile", &un, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "message limit of 262144 bytes");
    expect_error(ch, "UnmergeProfile", &un, GRPC_STATUS_RESOURCE_EXHAUSTED, "nothing was written");
    bool redirected = false;
    Cxm__V1__Profile *via_b = get_by_id(ch, b->customer_id, &redirected);
    CHECK(redirected && strcmp(via_b->customer_id, a->customer_id) == 0,
          "the refused unmerge was committed anyway");
    CHECK(via_b->n_merges == 1 && via_b->merges[0]->unmerged_at_unix_ms == 0, "record changed");

    /* Search, page_size 50 over ~100 KB profiles: shorter pages, each at
     * least one profile, every profile once. */
    const char *more[] = {"big-c@example.com", "big-d@example.com", "big-e@example.com"};
    for (int i = 0; i < 3; i++)
        big_profile(ch, more[i], 14);
    Cxm__V1__FieldCondition *cond[] = {field(CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE, "blob0",
                                             CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS, NULL)};
    Cxm__V1__SearchProfilesRequest sr = CXM__V1__SEARCH_PROFILES_REQUEST__INIT;
    sr.conditions = cond;
    sr.n_conditions = 1;
    sr.page_size = 50;
    int pages = 0, found = 0;
    do {
        Cxm__V1__SearchProfilesResponse *resp;
        CALL_OK(ch, SearchProfiles, sr, cxm__v1__search_profiles_response, resp);
        CHECK(resp->n_profiles >= 1 && resp->n_profiles <= 2, "page of %zu", resp->n_profiles);
        pages++;
        found += (int)resp->n_profiles;
        sr.page_token = resp->next_page_token;
    } while (sr.page_token && *sr.page_token && pages < 10);
    CHECK(found == 4 && pages >= 2, "%d profiles in %d pages", found, pages);
    cxm_channel_close(ch);

    /* One profile alone over the limit (the limit was lowered since). */
    ch = restart_with_limit(srv, k64);
    sr.page_token = "";
    expect_error(ch, "SearchProfiles", &sr, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "message limit of 65536 bytes");
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = a->customer_id;
    Cxm__V1__GetProfileRequest gr = CXM__V1__GET_PROFILE_REQUEST__INIT;
    gr.customer = &ref;
    expect_error(ch, "GetProfile", &gr, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "message limit of 65536 bytes");
    cxm_channel_close(ch);
}

/* ---- --profile-erasure-services ---- */

/* cxmd with args (and env added to the environment, when not NULL) on a
 * fresh data directory must refuse to start: exit 2, its log saying why. */
static void expect_refused(const test_server *srv, const char *const *args, const char *env,
                           const char *needle)
{
    test_server r = {0};
    char data[300];
    snprintf(data, sizeof data, "%s/refused", srv->data_dir);
    snprintf(r.log_path, sizeof r.log_path, "%s/refused.log", srv->data_dir);
    const char *argv[16] = {srv->binary, "--listen", "127.0.0.1:0", "--data", data};
    int argc = 5;
    for (int i = 0; args[i] && argc < 15; i++)
        argv[argc++] = args[i];
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 2, sizeof *envp);
    CHECK(envp, "out of memory");
    memcpy(envp, environ, nenv * sizeof *envp);
    envp[nenv] = (char *)env; /* NULL: the environment as it is */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, r.log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&r.pid, srv->binary, &fa, NULL, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    CHECK(rc == 0, "cannot start %s: %s", srv->binary, strerror(rc));
    /* harness_stop with signal 0 only waits: a cxmd that does start is
     * killed after 10 s and reported. */
    int code = harness_stop(&r, 0, 10000);
    CHECK(code == 2, "%s %s: exit %d, want 2", args[0], args[1] ? args[1] : "", code);
    CHECK(harness_log_contains(&r, needle), "the log of a refused start lacks \"%s\"", needle);
}

static void case_receipts(cxm_channel *unused, test_server *srv)
{
    (void)unused;
    static const char *const dup[] = {"--profile-erasure-services", "journey,feedback,journey",
                                      NULL};
    static const char *const self[] = {"--profile-erasure-services", "journey,profile", NULL};
    static const char *const bad[] = {"--profile-erasure-services", "journey,Feed back", NULL};
    static const char *const none[] = {NULL};
    expect_refused(srv, dup, NULL,
                   "--profile-erasure-services (or CXM_PROFILE_ERASURE_SERVICES): "
                   "\"journey\" is listed twice");
    expect_refused(srv, self, NULL, "\"profile\" is this service");
    expect_refused(srv, bad, NULL, "\"Feed back\" is not a service name");
    expect_refused(srv, none, "CXM_PROFILE_ERASURE_SERVICES=feedback,,feedback",
                   "\"feedback\" is listed twice");

    /* An empty list: the profile service alone, complete after its own
     * compaction. */
    static const char *const alone[] = {"--grace", "3s", "--profile-erasure-services", "", NULL};
    cxm_channel *ch = restart_with_limit(srv, alone);
    Cxm__V1__Identity *ids[] = {ident(EMAIL, "solo@example.com")};
    Cxm__V1__Profile *p = upsert(ch, NULL, ids, 1, NULL, 0);
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = p->customer_id;
    Cxm__V1__DeleteProfileRequest dr = CXM__V1__DELETE_PROFILE_REQUEST__INIT;
    dr.customer = &ref;
    dr.reason = "GDPR art. 17 request #2";
    Cxm__V1__DeleteProfileResponse *solo;
    CALL_OK(ch, DeleteProfile, dr, cxm__v1__delete_profile_response, solo);
    CHECK(solo->receipt->n_services == 1 && solo->receipt->completed_at_unix_ms == 0,
          "alone: %zu services, completed at %lld", solo->receipt->n_services,
          (long long)solo->receipt->completed_at_unix_ms);
    wait_completed(ch, solo->receipt->receipt_id);
    cxm_channel_close(ch);

    /* Back to the default list: new erasures wait for the others (which
     * confirm through the bus), the one before stays complete, and both are
     * found after the restart. */
    static const char *const dflt[] = {"--grace", "3s", NULL};
    ch = restart_with_limit(srv, dflt);
    ids[0] = ident(EMAIL, "many@example.com");
    ref.customer_id = upsert(ch, NULL, ids, 1, NULL, 0)->customer_id;
    Cxm__V1__DeleteProfileResponse *many;
    CALL_OK(ch, DeleteProfile, dr, cxm__v1__delete_profile_response, many);
    check_pending_receipt(many->receipt, 2);
    Cxm__V1__DeletionReceipt *before;
    char d[512];
    CHECK(get_receipt(ch, false, solo->receipt->customer_id, &before, d) == GRPC_STATUS_OK &&
              strcmp(before->receipt_id, solo->receipt->receipt_id) == 0 &&
              before->completed_at_unix_ms &&
              before->services[0]->records_erased == solo->receipt->services[0]->records_erased,
          "the erasure made alone is still complete: %s", d);
    expect_receipt(ch, wait_completed(ch, many->receipt->receipt_id));
    cxm_channel_close(ch);
}

/* ---- erasures under kill -9 ---- */

enum { DK_CUSTOMERS = 400, DK_DELETERS = 2, DK_KILLS = 5 };

typedef struct deleter {
    const char *target;
    char **ids;      /* customer ids; ids[i] for i = first, first + step, ... */
    char **receipts; /* receipts[i] once customer i's DeleteProfile was acknowledged */
    bool *sent;      /* a DeleteProfile for customer i was sent */
    int first, step;
    atomic_int *acked; /* across deleters */
    atomic_bool *stop;
} deleter;

/* DeleteProfile for each of this deleter's customers not acknowledged yet,
 * until the server dies or stop is set. */
static void *deleter_main(void *arg)
{
    deleter *d = arg;
    cxm_channel *ch;
    CHECK(cxm_channel_open(d->target, NULL, &ch) == 0, "channel");
    for (int i = d->first; i < DK_CUSTOMERS && !atomic_load(d->stop); i += d->step) {
        if (d->receipts[i])
            continue;
        Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
        ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
        ref.customer_id = d->ids[i];
        Cxm__V1__DeleteProfileRequest req = CXM__V1__DELETE_PROFILE_REQUEST__INIT;
        req.customer = &ref;
        req.reason = "kill -9 test";
        cxm_arena a;
        cxm_arena_init(&a, NULL, 0, 0);
        ProtobufCMessage *out;
        cxm_client_result r = {0};
        d->sent[i] = true;
        int rc =
            cxm_client_unary_pb(ch, SVC "DeleteProfile", &req.base,
                                &cxm__v1__delete_profile_response__descriptor, &a, 2000, &out, &r);
        bool ok = rc == 0 && r.status == GRPC_STATUS_OK;
        if (ok)
            d->receipts[i] = strdup(((Cxm__V1__DeleteProfileResponse *)out)->receipt->receipt_id);
        cxm_client_result_dispose(&r);
        cxm_arena_dispose(&a);
        if (!ok)
            break; /* the server died */
        atomic_fetch_add(d->acked, 1);
    }
    cxm_channel_close(ch);
    return NULL;
}

/* DK_CUSTOMERS customers with a consent each; every fourth is the merge of
 * two (an upsert naming an identity of each), so profile has emitted
 * CustomerMerged and ConsentChanged events before the erasures. */
static void dk_customers(cxm_channel *ch, char **ids)
{
    for (int i = 0; i < DK_CUSTOMERS; i++) {
        char email[48], phone[24];
        snprintf(email, sizeof email, "dk%d@example.com", i);
        snprintf(phone, sizeof phone, "+4470000%05d", i);
        Cxm__V1__Identity *both[] = {ident(EMAIL, cxm_arena_strndup(&arena, email, strlen(email))),
                                     ident(PHONE, cxm_arena_strndup(&arena, phone, strlen(phone)))};
        Cxm__V1__Profile *p = upsert(ch, NULL, both, 1, NULL, 0);
        if (i % 4 == 0) {
            upsert(ch, NULL, &both[1], 1, NULL, 0);
            p = upsert(ch, NULL, both, 2, NULL, 0);
        }
        ids[i] = p->customer_id;
        consent(ch, ids[i], CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED, 1000 + i);
    }
}

/* Every subscriber caught up with its producer, none failing, every outbox
 * empty, within 5 s. */
static void expect_bus_caught_up(cxm_channel *ch)
{
    double end = test_now_ms() + 5000;
    for (;;) {
        Cxm__V1__GetBusStatusResponse *st = bus_status(ch);
        const char *behind = NULL;
        for (size_t i = 0; i < st->n_producers; i++)
            if (st->producers[i]->outbox_backlog)
                behind = st->producers[i]->producer;
        for (size_t i = 0; i < st->n_subscribers; i++) {
            const Cxm__V1__BusSubscriberStatus *s = st->subscribers[i];
            CHECK(!*s->last_error, "%s of %s: %s", s->subscriber, s->producer, s->last_error);
            if (s->applied_sequence != last_sequence(ch, s->producer) || s->backlog)
                behind = s->subscriber;
        }
        if (!behind)
            return;
        CHECK(test_now_ms() < end, "%s still behind after 5 s", behind);
        usleep(10000);
    }
}

/* A stream of DeleteProfile calls from two clients; cxmd is killed -9 in
 * its middle DK_KILLS times and restarted on the same data. Afterwards every
 * acknowledged erasure's receipt completes (each service DONE), one that was
 * in flight has either not happened or completes too, and the bus shows
 * every subscriber caught up with nothing pending. */
static void case_delete_kill9(cxm_channel *first, test_server *srv)
{
    static char *ids[DK_CUSTOMERS], *receipts[DK_CUSTOMERS];
    static bool sent[DK_CUSTOMERS];
    dk_customers(first, ids);
    atomic_int acked = 0;
    for (int k = 0; k < DK_KILLS; k++) {
        atomic_bool stop = false;
        pthread_t threads[DK_DELETERS];
        deleter d[DK_DELETERS];
        int before = atomic_load(&acked);
        for (int i = 0; i < DK_DELETERS; i++) {
            d[i] = (deleter){srv->target, ids, receipts, sent, i, DK_DELETERS, &acked, &stop};
            pthread_create(&threads[i], NULL, deleter_main, &d[i]);
        }
        for (double end = test_now_ms() + 10000; atomic_load(&acked) < before + 20; usleep(1000))
            CHECK(test_now_ms() < end, "%d erasures acknowledged in 10 s", acked - before);
        usleep((useconds_t)(rand() % 50) * 1000);
        CHECK(harness_stop(srv, SIGKILL, 5000) == 128 + SIGKILL, "kill -9");
        atomic_store(&stop, true);
        for (int i = 0; i < DK_DELETERS; i++)
            pthread_join(threads[i], NULL);
        harness_restart(srv);
    }
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv->target, NULL, &ch) == 0, "channel");
    int done = 0, in_flight = 0;
    for (int i = 0; i < DK_CUSTOMERS; i++) {
        Cxm__V1__DeletionReceipt *r = NULL;
        char d[512];
        if (receipts[i]) {
            wait_completed(ch, receipts[i]);
            done++;
        } else if (sent[i] && get_receipt(ch, false, ids[i], &r, d) == GRPC_STATUS_OK) {
            wait_completed(ch, r->receipt_id);
            in_flight++;
        }
        free(receipts[i]);
    }
    CHECK(done == atomic_load(&acked), "%d receipts for %d acknowledged erasures", done,
          atomic_load(&acked));
    expect_bus_caught_up(ch);
    cxm_channel_close(ch);
    printf("delete_kill9: %d acknowledged erasures (and %d in flight) completed after %d kills\n",
           done, in_flight, DK_KILLS);
}

static const harness_case cases[] = {
    {"resolve", case_resolve},
    {"upsert", case_upsert},
    {"merge", case_merge},
    {"consent_traits", case_consent_traits},
    {"segments", case_segments},
    {"delete", case_delete},
    {"durability", case_durability},
    {"limits", case_limits},
    {"receipts", case_receipts},
    {"events", case_events},
    {"delete_kill9", case_delete_kill9},
};

int main(int argc, char **argv)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    int rc = harness_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
    cxm_arena_dispose(&arena);
    return rc;
}
