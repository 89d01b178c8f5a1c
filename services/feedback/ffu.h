/*
 * ffu.h - close-the-loop follow-ups: opened from responses by the survey's
 * threshold and the follow-up policy, assigned by the policy's rules, worked
 * through the state machine of FollowUpState, listed earliest due first.
 *
 * ffu owns its tables in the feedback service's store (opened by ffu_open)
 * and the policy (GetFollowUpPolicy / SetFollowUpPolicy). Every change of a
 * follow-up is published as FollowUpChanged on the feedback producer in the
 * same transaction, carrying the customer's count of follow-ups not CLOSED
 * or DISMISSED (profile keeps it as the trait open_follow_ups;
 * personalisation serves before it sells while it is above 0).
 *
 * Write functions take the caller's write transaction; they may run again
 * after a rollback (svc.h), so they keep no state outside the store.
 */
#ifndef CXM_FFU_H
#define CXM_FFU_H

#include <stdbool.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/bus.h"
#include "cxm/server.h"
#include "cxm/store.h"
#include "cxm/v1/feedback.pb-c.h"
#include "fbctx.h"

/* Opens ffu's tables and loads the policy; events is the producer the
 * FollowUpChanged events go out on. */
int ffu_open(cxm_store *store, cxm_bus_producer *events, ffu **out);
void ffu_close(ffu *f);

/* What a stored response tells the follow-up rules. */
typedef struct ffu_response {
    const char *response_id, *survey_id, *customer_id, *touchpoint;
    Cxm__V1__SurveyKind kind;
    Cxm__V1__Channel channel;
    double score;
    double threshold;   /* the survey's, resolved: at or under opens; < 0 = never */
    uint32_t due_hours; /* the survey's, resolved (0 became 48) */
    bool has_text;
    int label; /* Cxm__V1__SentimentLabel of the text */
    double sentiment_score;
    int64_t now_ms; /* creation time */
} ffu_response;

/* The checks of SetFollowUpPolicy's policy (negative_text_score 0 becomes
 * the default), of an UpdateFollowUpRequest and of a ListFollowUpsRequest's
 * filters and page size at now_ms, as their handlers run them (and the fuzz
 * target): 0, or CXM_EINVAL with err (CXM_SVC_ERR_MAX bytes) naming the
 * field. */
int ffu_check_policy(Cxm__V1__FollowUpPolicy *p, char *err);
int ffu_check_update(const Cxm__V1__UpdateFollowUpRequest *req, char *err);
int ffu_check_list(const Cxm__V1__ListFollowUpsRequest *req, int64_t now_ms, char *err);

/* Is this text sentiment strongly negative by the policy in force? */
bool ffu_strongly_negative(ffu *f, int label, double sentiment_score);

/* Inside SubmitResponse's transaction: when the response opens a follow-up
 * (low score first, else negative text), store it, assign it, publish
 * FollowUpChanged, and set *follow_up_id (in a); else *follow_up_id = NULL.
 * The follow-up id is derived from the response id, so a retried
 * transaction makes the same one. */
int ffu_on_response(cxm_txn *t, ffu *f, const ffu_response *r, cxm_arena *a,
                    const char **follow_up_id);

/* The erasure cascade: delete every follow-up of customer_id and of the ids
 * merged into it, adding their number to *records. */
int ffu_erase(cxm_txn *t, ffu *f, const char *customer_id, char *const *merged, size_t nmerged,
              uint64_t *records);

/* profile merged source into target: the source's follow-ups now belong to
 * target (and come back on unmerge: ffu_unmerge). */
int ffu_merge(cxm_txn *t, ffu *f, const char *source, const char *target);
int ffu_unmerge(cxm_txn *t, ffu *f, const char *source, const char *target);

/* The handlers of ListFollowUps, UpdateFollowUp, GetFollowUpPolicy and
 * SetFollowUpPolicy, for the service's method table (fb_rpc.c); they find
 * the ffu as ((fb_ctx *)cxm_call_service_ctx(call))->fu. */
void ffu_on_list(cxm_call *call, const ProtobufCMessage *req);
void ffu_on_update(cxm_call *call, const ProtobufCMessage *req);
void ffu_on_get_policy(cxm_call *call, const ProtobufCMessage *req);
void ffu_on_set_policy(cxm_call *call, const ProtobufCMessage *req);

#endif
