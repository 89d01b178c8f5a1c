/*
 * fuzz_profile_req.c - every ProfileService request, decoded as the server
 * decodes it and run through the checks its handler runs before any work:
 * the first byte picks the method, the rest is the request.
 */
#include "cxm/svc.h"
#include "fuzz.h"
#include "profile/prof_check.h"
#include "profile/prof_rpc.h"

/* The identity rules as a deployment might set them: a default country and
 * a block list, so that both paths of the phone and blocklist rules run. */
static const char *const blocked[] = {"blocked@example.com", "+821000000000"};
static const cxm_ident_config ident = {"82", blocked, 2};

static int upsert(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_upsert(&ident, a, (Cxm__V1__UpsertProfileRequest *)m, FUZZ_NOW_MS, err);
}

static int get(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return cxm_ident_check_ref(&ident, a, ((Cxm__V1__GetProfileRequest *)m)->customer, "customer",
                               err);
}

static int resolve(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_resolve(&ident, a, (Cxm__V1__ResolveIdentityRequest *)m, err);
}

/* The batch, then each item on its own, as batch_check does. */
static int resolve_batch(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__ResolveIdentitiesRequest *req = (Cxm__V1__ResolveIdentitiesRequest *)m;
    int rc = prof_check_resolve_batch(req, err);
    for (size_t i = 0; rc == 0 && i < req->n_items; i++) {
        char item_err[CXM_SVC_ERR_MAX] = "";
        prof_check_resolve_item(&ident, a, req->items[i], i, item_err);
    }
    return rc;
}

static int merge(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_merge((Cxm__V1__MergeProfilesRequest *)m, err);
}

static int unmerge(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_unmerge((Cxm__V1__UnmergeProfileRequest *)m, err);
}

static int consent(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_consent(&ident, a, (Cxm__V1__SetConsentRequest *)m, FUZZ_NOW_MS, err);
}

static int delete_(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_delete(&ident, a, (Cxm__V1__DeleteProfileRequest *)m, err);
}

static int receipt(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_get_receipt((Cxm__V1__GetDeletionReceiptRequest *)m, err);
}

static int search(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__SearchProfilesRequest *req = (Cxm__V1__SearchProfilesRequest *)m;
    int rc = prof_check_search(req, err);
    return rc ? rc : fuzz_paging(req->page_size, req->page_token, 50, 1000, err);
}

static int segment(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_segment((Cxm__V1__UpsertSegmentRequest *)m, err);
}

static int members(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__ListSegmentMembersRequest *req = (Cxm__V1__ListSegmentMembersRequest *)m;
    int rc = cxm_svc_check_slug(req->segment_id, "segment_id", err);
    return rc ? rc : fuzz_paging(req->page_size, req->page_token, 1000, 1000, err);
}

static int traits(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return prof_check_traits(&ident, a, (Cxm__V1__WriteTraitsRequest *)m, err);
}

static const fuzz_check checks[] = {
    {"UpsertProfile", upsert},       {"GetProfile", get},
    {"ResolveIdentity", resolve},    {"ResolveIdentities", resolve_batch},
    {"MergeProfiles", merge},        {"UnmergeProfile", unmerge},
    {"SetConsent", consent},         {"DeleteProfile", delete_},
    {"GetDeletionReceipt", receipt}, {"SearchProfiles", search},
    {"UpsertSegment", segment},      {"ListSegmentMembers", members},
    {"WriteTraits", traits},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_service(prof_methods, prof_nmethods, checks, sizeof checks / sizeof checks[0], data, size);
    return 0;
}
