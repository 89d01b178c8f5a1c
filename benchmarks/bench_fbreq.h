/*
 * bench_fbreq.h - the feedback workloads of cxm-bench: SubmitResponse of
 * new responses to the bench survey, and AnalyzeText of short Korean and
 * English customer comments.
 *
 * Responses answer CXM_BENCH_SURVEY, an NPS survey of checkout_page (web)
 * with an expectation-gap rating of that touchpoint and a free-text
 * comment; feedback_bench.sh creates it before the run (cxmctl feedback
 * survey upsert). Customers are those of bench_profile.h
 * (user<i>@example.com); response ids "b<nonce>-<thread>-<seq>" are new to
 * the server on every run, so every call stores a response.
 */
#ifndef CXM_BENCH_FBREQ_H
#define CXM_BENCH_FBREQ_H

#include <stdint.h>

#include <grpc/byte_buffer.h>

#define CXM_BENCH_FEEDBACK_SERVICE "/cxm.v1.FeedbackService/"
#define CXM_BENCH_METHOD_SUBMIT CXM_BENCH_FEEDBACK_SERVICE "SubmitResponse"
#define CXM_BENCH_METHOD_ANALYZE CXM_BENCH_FEEDBACK_SERVICE "AnalyzeText"
#define CXM_BENCH_SURVEY "bench_nps"
#define CXM_BENCH_SURVEY_TOUCHPOINT "checkout_page"

/* SubmitResponseRequest of response seq of thread in run nonce by customer
 * i: a score 0 to 10, a rating of the survey's touchpoint, and on one call
 * in four a comment, all drawn from *rng. 0 or CXM_ENOMEM. */
int cxm_bench_feedback_submit(uint64_t nonce, unsigned thread, uint64_t seq, uint64_t i,
                              uint64_t *rng, grpc_byte_buffer **out);

/* AnalyzeTextRequest of comment k (taken modulo the list): about 100
 * characters, Korean and English alternating, without aspects. */
int cxm_bench_feedback_text(uint64_t k, grpc_byte_buffer **out);

#endif
