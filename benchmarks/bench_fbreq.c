/*
 * bench_fbreq.c - the feedback workloads' requests (bench_fbreq.h).
 */
#include "bench_fbreq.h"

#include <inttypes.h>
#include <stdio.h>

#include "bench_profile.h"
#include "cxm/v1/feedback.pb-c.h"

/* Customer comments of about 100 characters, the length AnalyzeText is
 * measured at: Korean and English alternating, positive, negative and
 * mixed, about the aspects operators track. */
static const char *const comments[] = {
    "배송이 예상보다 이틀이나 늦었고 상자도 찌그러져 왔어요. 고객센터에 전화했는데 대기 시간이 "
    "너무 길어서 결국 끊었습니다. 다음에는 다른 곳에서 살 것 같아요.",
    "The delivery was two days late and the box arrived crushed. I called support but the wait was "
    "so long that I hung up.",
    "매장 직원분이 정말 친절하게 설명해 주셔서 좋았어요. 가격도 온라인이랑 같고 포장도 꼼꼼하게 해 "
    "주셔서 만족합니다. 다음에도 여기서 살게요.",
    "Staff at the store were really helpful and the price matched the website. Checkout was quick "
    "and the packaging was neat.",
    "앱은 편한데 결제 단계에서 자꾸 오류가 나서 세 번이나 다시 시도했어요. 환불은 빨리 처리됐지만 "
    "처음부터 잘 됐으면 좋겠네요.",
    "The app is easy to use, but payment failed three times at checkout. The refund came quickly, "
    "though I wish it had just worked.",
};
#define NCOMMENTS (sizeof comments / sizeof comments[0])

int cxm_bench_feedback_submit(uint64_t nonce, unsigned thread, uint64_t seq, uint64_t i,
                              uint64_t *rng, grpc_byte_buffer **out)
{
    char id[64], email[40];
    snprintf(id, sizeof id, "b%" PRIu64 "-%u-%" PRIu64, nonce, thread, seq);
    Cxm__V1__Identity ident = cxm_bench_email_identity(i, email, sizeof email);
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    ref.identity = &ident;
    uint64_t r = cxm_bench_xorshift(rng);
    Cxm__V1__ExpectationRating rating = CXM__V1__EXPECTATION_RATING__INIT, *ratings = &rating;
    rating.touchpoint = CXM_BENCH_SURVEY_TOUCHPOINT;
    rating.expectation = (double)(4 + (r >> 8) % 4);
    rating.experience = (double)(1 + (r >> 16) % 7);
    Cxm__V1__SubmitResponseRequest req = CXM__V1__SUBMIT_RESPONSE_REQUEST__INIT;
    req.response_id = id;
    req.survey_id = CXM_BENCH_SURVEY;
    req.customer = &ref;
    req.score = (double)(r % 11);
    req.ratings = &ratings;
    req.n_ratings = 1;
    if ((r >> 24) % 4 == 0)
        req.text = (char *)comments[(r >> 32) % NCOMMENTS];
    return cxm_bench_pack(&req.base, out);
}

int cxm_bench_feedback_text(uint64_t k, grpc_byte_buffer **out)
{
    Cxm__V1__AnalyzeTextRequest req = CXM__V1__ANALYZE_TEXT_REQUEST__INIT;
    req.text = (char *)comments[k % NCOMMENTS];
    return cxm_bench_pack(&req.base, out);
}
