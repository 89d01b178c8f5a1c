/*
 * prof_check.h - validation of every ProfileService request, done on the
 * worker thread before any work is queued.
 *
 * Each function checks one request (or part) in place: identity values are
 * replaced by their normalised copies in arena a, so later steps match on
 * the stored spelling. Each returns 0, or a CXM_E* code with a message in
 * err (CXM_SVC_ERR_MAX bytes) that starts with the field path
 * ("identities[2].value: ...") and says what to do. Pure apart from that;
 * thread-safe.
 */
#ifndef CXM_PROFILE_CHECK_H
#define CXM_PROFILE_CHECK_H

#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/v1/profile.pb-c.h"
#include "cxm/ident.h"

#define PROF_MAX_LINK 50          /* identities one UpsertProfile may link */
#define PROF_MAX_CONDITIONS 16    /* conditions of one SearchProfiles */
#define PROF_MAX_RESOLVE 1000     /* items of one ResolveIdentities */
#define PROF_MAX_RESOLVE_LINKS 10 /* link_identities of one of its items */

/* One per RPC. now_ms bounds timestamps that must not lie in the future. */
int prof_check_resolve(const cxm_ident_config *cfg, cxm_arena *a,
                       Cxm__V1__ResolveIdentityRequest *req, char *err);
/* ResolveIdentities as a whole (item count, source); the items are checked
 * one by one with prof_check_resolve_item, so that a bad one fails alone. */
int prof_check_resolve_batch(const Cxm__V1__ResolveIdentitiesRequest *req, char *err);
/* Item i of ResolveIdentities, normalised in place; err's field path starts
 * with "items[i]". An identity of type CUSTOMER_ID in customer becomes the
 * customer_id case (a customer id is never created). */
int prof_check_resolve_item(const cxm_ident_config *cfg, cxm_arena *a,
                            Cxm__V1__ResolveIdentitiesItem *it, size_t i, char *err);
int prof_check_upsert(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__UpsertProfileRequest *req,
                      int64_t now_ms, char *err);
int prof_check_merge(const Cxm__V1__MergeProfilesRequest *req, char *err);
int prof_check_unmerge(const Cxm__V1__UnmergeProfileRequest *req, char *err);
int prof_check_consent(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__SetConsentRequest *req,
                       int64_t now_ms, char *err);
int prof_check_delete(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__DeleteProfileRequest *req,
                      char *err);
int prof_check_get_receipt(const Cxm__V1__GetDeletionReceiptRequest *req, char *err);
int prof_check_search(const Cxm__V1__SearchProfilesRequest *req, char *err);
int prof_check_segment(const Cxm__V1__UpsertSegmentRequest *req, char *err);
int prof_check_traits(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__WriteTraitsRequest *req,
                      char *err);

#endif
