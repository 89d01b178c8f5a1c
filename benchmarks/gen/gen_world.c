/*
 * gen_world.c - the fixed tables of the synthetic world: touchpoints (with
 * the planted gaps), surveys, names, cities, clusters, items, and the
 * templates of the free text.
 */
#include <stdio.h>

#include "gen_int.h"

#define AW CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_AWARENESS
#define CO CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION
#define PU CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE
#define US CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE
#define RE CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_RETENTION
#define AD CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_ADVOCACY
#define WEB CXM__V1__CHANNEL__CHANNEL_WEB
#define APP CXM__V1__CHANNEL__CHANNEL_APP
#define CC CXM__V1__CHANNEL__CHANNEL_CONTACT_CENTRE
#define STORE CXM__V1__CHANNEL__CHANNEL_STORE
#define SOCIAL CXM__V1__CHANNEL__CHANNEL_SOCIAL
#define EMAIL CXM__V1__CHANNEL__CHANNEL_EMAIL
#define B GEN_BASE_SLOPE

/* The order is the GEN_TP_* order of gen.c. The three planted gaps:
 * checkout, delivery and the support call disappoint, and each drives NPS
 * several times as strongly as the other touchpoints. */
const gen__touchpoint gen__tps[GEN_NTP] = {
    {"social_ad", AW, SOCIAL, 0, "ad_click", false, false, NULL, NULL, NULL, 0, 0},
    {"search_landing", AW, WEB, 0, "page_view", false, false, NULL, NULL, NULL, 0, 0},
    {"app_store_page", AW, APP, 0, "app_install", false, false, NULL, NULL, NULL, 0, 0},
    {"product_page", CO, WEB, APP, "product_view", true, true, "상품 정보가", "product information",
     "quality", 0, B},
    {"compare_page", CO, WEB, 0, "compare", true, true, "비교 기능이", "comparison tool",
     "ease_of_use", 0, B},
    {"cart", CO, WEB, APP, "add_to_cart", true, true, "장바구니가", "shopping cart", "ease_of_use",
     0, B},
    {"store_visit", CO, STORE, 0, "store_visit", false, true, "매장 직원분들이", "store staff",
     "service", 0, B},
    {"presales_call", CO, CC, 0, "call_ended", false, true, "상담 전화가", "sales call", "service",
     0, B},
    {"account", CO, WEB, APP, "sign_up", false, false, NULL, NULL, NULL, 0, 0},
    {"checkout", PU, WEB, APP, "purchase", true, true, "결제 과정이", "checkout", "ease_of_use",
     1.5, 1.0},
    {"store_checkout", PU, STORE, 0, "purchase", true, true, "매장 계산이", "store checkout",
     "service", 0, B},
    {"delivery", US, EMAIL, 0, "delivery_update", false, true, "배송이", "delivery", "delivery",
     1.0, 0.7},
    {"onboarding", US, APP, 0, "onboarding_step", false, true, "앱 첫 설정이", "app setup",
     "ease_of_use", 0, B},
    {"support_call", US, CC, 0, "call_ended", false, true, "고객센터 상담이", "support call",
     "service", 2.0, 1.2},
    {"help_center", US, WEB, APP, "article_view", false, true, "도움말이", "help centre", "service",
     0, B},
    {"renewal_offer", RE, EMAIL, 0, "email_click", false, true, "재구매 혜택이", "renewal offer",
     "price", 0, B},
    {"loyalty_app", RE, APP, 0, "reward_redeemed", false, true, "포인트 적립이", "loyalty rewards",
     "price", 0, B},
    {"review_page", AD, WEB, APP, "review_posted", true, true, "리뷰 작성이", "review page",
     "quality", 0, B},
    {"referral_share", AD, SOCIAL, 0, "referral_shared", false, true, "친구 추천 이벤트가",
     "referral programme", "price", 0, B},
};

const char *const gen__nps_reasons[5] = {"price", "quality", "service", "delivery", "ease_of_use"};

/* Follow-up thresholds are the FeedbackService defaults (NPS 6, CSAT 2,
 * CES 3). */
const gen__survey gen__surveys[GEN_NSURVEY] = {
    {"nps_relationship", CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS, 0, 10, 6, -1},
    {"csat_support", CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT, 1, 5, 2, 13},
    {"ces_checkout", CXM__V1__SURVEY_KIND__SURVEY_KIND_CES, 1, 7, 3, 9},
};

const char *gen__channel_name(Cxm__V1__Channel c)
{
    switch (c) {
    case WEB:
        return "web";
    case APP:
        return "app";
    case CC:
        return "contact_centre";
    case STORE:
        return "store";
    case SOCIAL:
        return "social";
    case EMAIL:
        return "email";
    default:
        return "other";
    }
}

const char *gen__stage_name(Cxm__V1__JourneyStage s)
{
    static const char *const names[] = {"",    "awareness", "consideration", "purchase",
                                        "use", "retention", "advocacy"};
    return (unsigned)s < 7 ? names[s] : "";
}

const char *gen__identity_name(Cxm__V1__IdentityType t)
{
    static const char *const names[] = {"",          "customer_id",  "email", "phone",
                                        "device_id", "anonymous_id", "crm_id"};
    return (unsigned)t < 7 ? names[t] : "custom";
}

void gen__cluster_name(unsigned c, char *buf, size_t len)
{
    static const char *const names[] = {
        "outdoor", "beauty", "kitchen",     "gaming", "kids",   "fashion", "books",  "wellness",
        "pets",    "audio",  "home_office", "travel", "sports", "garden",  "coffee", "photography"};
    if (c < sizeof names / sizeof names[0])
        snprintf(buf, len, "%s", names[c]);
    else
        snprintf(buf, len, "cluster_%u", c);
}

void gen__item_id(uint32_t k, char *buf, size_t len)
{
    snprintf(buf, len, "item-%06u", k + 1);
}

/* A price per item that only depends on the seed and the item: 5,000 to
 * about 300,000 KRW, log-uniform, rounded to 100. */
double gen__item_price(uint64_t seed, uint32_t k)
{
    uint64_t x = seed ^ ((uint64_t)k << 32) ^ 0x5eed;
    double u = (double)(cxm_splitmix64(&x) >> 11) * 0x1p-53;
    return 100.0 * floor(50.0 * exp(u * 4.1) + 0.5);
}

/* Free-text templates by sentiment (0 negative, 1 neutral, 2 positive):
 * subject + predicate + an optional closing sentence. The Korean subjects
 * carry their particle in the touchpoint table. One English template holds
 * quotes and a comma, so that CSV quoting is exercised. */
static const char *const en_pred[3][4] = {
    {"was very disappointing", "was terrible", "was slow and frustrating",
     "fell far short of what I expected"},
    {"was okay", "was \"fine\", nothing special", "was average", "did the job"},
    {"was excellent", "exceeded my expectations", "was quick and easy", "was great, thank you"},
};
static const char *const en_close[3][3] = {
    {"Please fix this.", "I am thinking about switching.", ""},
    {"Could be better.", "", ""},
    {"I would recommend you to friends.", "Will definitely come back.", ""},
};
static const char *const ko_pred[3][4] = {
    {"너무 실망스러웠어요", "최악이었어요", "불편하고 느렸어요", "기대에 한참 못 미쳤어요"},
    {"그냥 보통이었어요", "나쁘지는 않았지만 특별하지도 않았어요", "무난했어요",
     "그럭저럭 괜찮았어요"},
    {"정말 만족스러웠어요", "기대 이상이었어요", "아주 편리하고 좋았어요", "최고였어요"},
};
static const char *const ko_close[3][3] = {
    {"빠른 개선 부탁드립니다.", "다른 곳으로 옮길까 고민 중이에요.", ""},
    {"조금만 더 개선되면 좋겠어요.", "", ""},
    {"친구에게도 추천할게요.", "다음에도 꼭 이용할게요.", ""},
};

void gen__text(gen__rng *r, bool korean, int sentiment, int tp, char *buf, size_t len)
{
    const char *pred =
        korean ? ko_pred[sentiment][gen__below(r, 4)] : en_pred[sentiment][gen__below(r, 4)];
    const char *close =
        korean ? ko_close[sentiment][gen__below(r, 3)] : en_close[sentiment][gen__below(r, 3)];
    const char *sep = close[0] ? " " : "";
    if (korean)
        snprintf(buf, len, "%s %s.%s%s", tp >= 0 ? gen__tps[tp].ko : "서비스가", pred, sep, close);
    else
        snprintf(buf, len, "The %s %s.%s%s", tp >= 0 ? gen__tps[tp].en : "service", pred, sep,
                 close);
}
