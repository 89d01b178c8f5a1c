/*
 * nbe_check.h - validation of the PersonalisationService requests: every
 * rule of proto/cxm/v1/personalisation.proto and design13.md, each failure
 * CXM_EINVAL with a message that starts with the field path
 * ("experience.eligibility.channels[2]: unknown channel 42").
 *
 * Pure functions: thread-safe, no allocation except through the arena
 * given (identities in customer refs are normalised in place).
 */
#ifndef CXM_PERSONALISATION_NBE_CHECK_H
#define CXM_PERSONALISATION_NBE_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/svc.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "personalisation/reco/reco.h"

#define NBE_ID_MAX 128 /* experience, item, outcome, interaction ids */
#define NBE_K_DEFAULT 10
#define NBE_K_MAX 100
#define NBE_EXCLUDE_MAX 1000
#define NBE_BATCH_MAX 1000       /* interactions per RecordInteractions */
#define NBE_FUTURE_MS 86400000LL /* how far ahead a timestamp may be: one day */
#define NBE_PAGE_DEFAULT 100
#define NBE_PAGE_MAX 1000

/* An experience or item id: [A-Za-z0-9_.-], 1 to 128 bytes. */
bool nbe_id_valid(const char *s);

/* The experience of an UpsertExperienceRequest, every field. */
int nbe_check_experience(const Cxm__V1__Experience *e, char err[CXM_SVC_ERR_MAX]);

/* A RecommendRequest; the customer identity is normalised in place. */
int nbe_check_recommend(cxm_arena *a, Cxm__V1__RecommendRequest *req, char err[CXM_SVC_ERR_MAX]);

/* A RecordOutcomeRequest at wall clock now_ms (the experience's presence
 * in the catalogue is the handler's to check). */
int nbe_check_outcome(cxm_arena *a, Cxm__V1__RecordOutcomeRequest *req, int64_t now_ms,
                      char err[CXM_SVC_ERR_MAX]);

/* The batch of a RecordInteractionsRequest (count, source), not its items. */
int nbe_check_interactions(const Cxm__V1__RecordInteractionsRequest *req,
                           char err[CXM_SVC_ERR_MAX]);

/* One interaction; why names the field within the item ("item_id: ..."). */
int nbe_check_interaction(cxm_arena *a, Cxm__V1__Interaction *it, int64_t now_ms,
                          char why[CXM_SVC_ERR_MAX]);

int nbe_check_similar(const Cxm__V1__SimilarExperiencesRequest *req, char err[CXM_SVC_ERR_MAX]);
int nbe_check_list(const Cxm__V1__ListExperiencesRequest *req, char err[CXM_SVC_ERR_MAX]);

/* A TrainModelRequest: *algo is the algorithm asked (0 = automatic) and p
 * its parameters, the algorithm's defaults with the request's overrides
 * (untouched for automatic, which takes no params). */
int nbe_check_train(const Cxm__V1__TrainModelRequest *req, reco_algo *algo, reco_params *p,
                    char err[CXM_SVC_ERR_MAX]);

/* k as asked: 0 is NBE_K_DEFAULT. */
uint32_t nbe_k(uint32_t k);

#endif
