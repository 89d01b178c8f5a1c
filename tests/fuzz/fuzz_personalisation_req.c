/*
 * fuzz_personalisation_req.c - every PersonalisationService request,
 * decoded as the server decodes it and run through the checks its handler
 * runs before any work: the first byte picks the method, the rest is the
 * request.
 */
#include "cxm/svc.h"
#include "fuzz.h"
#include "personalisation/nbe_check.h"
#include "personalisation/nbe_rpc.h"

static int upsert(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return nbe_check_experience(((Cxm__V1__UpsertExperienceRequest *)m)->experience, err);
}

static int recommend(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return nbe_check_recommend(a, (Cxm__V1__RecommendRequest *)m, err);
}

static int outcome(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return nbe_check_outcome(a, (Cxm__V1__RecordOutcomeRequest *)m, FUZZ_NOW_MS, err);
}

static int similar(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return nbe_check_similar((Cxm__V1__SimilarExperiencesRequest *)m, err);
}

static int train(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    reco_algo algo;
    reco_params p;
    return nbe_check_train((Cxm__V1__TrainModelRequest *)m, &algo, &p, err);
}

static int no_fields(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    return 0; /* GetModelInfo: an empty request, only the decoding counts */
}

/* The batch, then each item on its own (a bad one is rejected alone). */
static int interactions(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__RecordInteractionsRequest *req = (Cxm__V1__RecordInteractionsRequest *)m;
    int rc = nbe_check_interactions(req, err);
    for (size_t i = 0; rc == 0 && i < req->n_interactions; i++) {
        char why[CXM_SVC_ERR_MAX] = "";
        nbe_check_interaction(a, req->interactions[i], FUZZ_NOW_MS, why);
    }
    return rc;
}

static int list(ProtobufCMessage *m, cxm_arena *a, char *err)
{
    Cxm__V1__ListExperiencesRequest *req = (Cxm__V1__ListExperiencesRequest *)m;
    int rc = nbe_check_list(req, err);
    return rc ? rc
              : fuzz_paging((int32_t)req->page_size, req->page_token, NBE_PAGE_DEFAULT,
                            NBE_PAGE_MAX, err);
}

static const fuzz_check checks[] = {
    {"UpsertExperience", upsert},         {"Recommend", recommend},  {"RecordOutcome", outcome},
    {"SimilarExperiences", similar},      {"TrainModel", train},     {"GetModelInfo", no_fields},
    {"RecordInteractions", interactions}, {"ListExperiences", list},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_service(nbe_methods, nbe_nmethods, checks, sizeof checks / sizeof checks[0], data, size);
    return 0;
}
