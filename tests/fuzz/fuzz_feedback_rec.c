/*
 * fuzz_feedback_rec.c - the feedback store's records as its readers decode
 * them (fdb.c): the first byte picks the record, the rest is its stored
 * value, put in place in a transaction rolled back afterwards.
 *   0  a fixed-size response record (frec.h), read by GetScores and
 *      GapAnalysis through the store's analytics source
 *   1  a stored response: a length-prefixed request, then its outcome
 *   2  a survey version
 * A damaged record must come back as CXM_ECORRUPT (or be skipped), never
 * be read past its end.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cxm/keyenc.h"
#include "feedback/fan.h"
#include "feedback/fdb.h"
#include "fuzz.h"

static fdb *db;

static size_t key_of(uint8_t *buf, size_t cap, int64_t at, const char *s, uint32_t version)
{
    cxm_key k;
    size_t len = 0;
    cxm_key_init(&k, buf, cap);
    if (at)
        cxm_key_i64(&k, at);
    cxm_key_str(&k, s);
    if (version)
        cxm_key_u32(&k, version);
    cxm_key_finish(&k, &len);
    return len;
}

/* Both analytics over the one record, as their RPCs run them. */
static void analytics(cxm_txn *t, cxm_arena *a)
{
    fan_src src;
    char err[CXM_SVC_ERR_MAX];
    if (fdb_src(t, db, a, NULL, &src) != 0)
        return;
    Cxm__V1__GetScoresRequest sq = CXM__V1__GET_SCORES_REQUEST__INIT;
    sq.kind = CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS;
    Cxm__V1__GetScoresResponse *scores;
    fan_scores(&src, &sq, a, &scores, err);
    Cxm__V1__GapAnalysisRequest gq = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
    gq.min_responses = 1;
    Cxm__V1__GapAnalysisResponse *gaps;
    fan_gaps(&src, &gq, a, &gaps, err);
}

static int read_back(cxm_txn *t, void *user)
{
    const fuzz_record *in = user;
    uint8_t key[CXM_KEY_MAX];
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, FUZZ_ARENA_LIMIT);
    if (in->kind == 0) {
        fuzz_put(t, "fb_frec", key, key_of(key, sizeof key, FUZZ_NOW_MS - 60000, "r1", 0), in->data,
                 in->size);
        analytics(t, &a);
    } else if (in->kind == 1) {
        Cxm__V1__SubmitResponseRequest *req;
        Cxm__V1__SubmitResponseResponse *resp;
        fuzz_put(t, "fb_responses", "r1", 2, in->data, in->size);
        fdb_response_get(t, db, &a, "r1", &req, &resp);
    } else {
        Cxm__V1__Survey *s;
        fuzz_put(t, "fb_survey_ver", key, key_of(key, sizeof key, 0, "s1", 1), in->data, in->size);
        fdb_survey_get(t, db, &a, "s1", 1, &s);
    }
    cxm_arena_dispose(&a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db && fdb_open(fuzz_store(), NULL, &db) != 0) {
        fprintf(stderr, "fuzz_feedback_rec: cannot open the feedback tables\n");
        abort();
    }
    fuzz_records(data, size, 3, read_back);
    return 0;
}
