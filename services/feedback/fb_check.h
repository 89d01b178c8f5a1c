/*
 * fb_check.h - validation of the FeedbackService requests: every rule of
 * proto/cxm/v1/feedback.proto, each failure CXM_EINVAL with a message that
 * starts with the field path ("ratings[2].experience: must be 1 to 7").
 *
 * Requests are checked in two steps where the survey matters: on their own
 * first (fb_check_submit), then against the survey version they answer
 * (fb_check_submit_survey). Pure functions: thread-safe, no allocation
 * except through the arena given (identities are normalised in place).
 */
#ifndef CXM_FEEDBACK_FB_CHECK_H
#define CXM_FEEDBACK_FB_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/svc.h"
#include "cxm/v1/feedback.pb-c.h"

#define FB_TEXT_MAX 8192         /* bytes of free text */
#define FB_RESPONSE_ID_MAX 128   /* bytes of a response_id */
#define FB_FUTURE_MS (5 * 60000) /* how far ahead a timestamp may be */
#define FB_NAME_MAX 128          /* bytes of a touchpoint */

/* The kind's score scale, [*lo, *hi]; false for UNSPECIFIED or unknown. */
bool fb_scale(int kind, int *lo, int *hi);

/* The survey of an UpsertSurveyRequest, every field. */
int fb_check_survey(const Cxm__V1__Survey *s, char err[CXM_SVC_ERR_MAX]);

/* A SubmitResponseRequest on its own (the survey aside); now_ms is the
 * wall clock. The customer identity is normalised in place. */
int fb_check_submit(cxm_arena *a, Cxm__V1__SubmitResponseRequest *req, int64_t now_ms,
                    char err[CXM_SVC_ERR_MAX]);

/* The request against the survey version it answers: the score on the
 * kind's scale, answers by question_id, required questions, ratings'
 * touchpoints among the survey's EXPECTATION_GAP questions'. */
int fb_check_submit_survey(const Cxm__V1__SubmitResponseRequest *req, const Cxm__V1__Survey *s,
                           char err[CXM_SVC_ERR_MAX]);

/* The touchpoint a rating is about: its own, else the response's, else the
 * survey's ("" when none). */
const char *fb_rating_touchpoint(const Cxm__V1__ExpectationRating *r,
                                 const Cxm__V1__SubmitResponseRequest *req,
                                 const Cxm__V1__Survey *s);

int fb_check_eligibility(cxm_arena *a, Cxm__V1__CheckEligibilityRequest *req,
                         char err[CXM_SVC_ERR_MAX]);
int fb_check_analyze(const Cxm__V1__AnalyzeTextRequest *req, char err[CXM_SVC_ERR_MAX]);
int fb_check_get_survey(const Cxm__V1__GetSurveyRequest *req, char err[CXM_SVC_ERR_MAX]);

#endif
