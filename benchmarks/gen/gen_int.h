/*
 * gen_int.h - what the world model (gen.c) hands to the writers (gen_out.c):
 * the fixed tables of the world, the records of one customer, and the
 * generator's random numbers. Internal to cxm-gen; gen.h is the contract.
 *
 * Every record is a plain struct the simulation fills and a writer turns
 * into protobuf and CSV; strings point into the record or into static
 * tables and live until the writer returns.
 */
#ifndef CXM_GEN_INT_H
#define CXM_GEN_INT_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "cxm/hash.h"
#include "cxm/v1/common.pb-c.h"
#include "cxm/v1/feedback.pb-c.h"
#include "gen.h"

/* ---- random numbers: xoshiro256** seeded through splitmix64 ---- */

typedef struct gen__rng {
    uint64_t s[4];
} gen__rng;

/* One stream per (seed, stream number): customers draw from their own, so
 * a customer's records do not depend on the customers before them. */
static inline void gen__rng_init(gen__rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xD1342543DE82EF95ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = cxm_splitmix64(&x);
}

static inline uint64_t gen__rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t gen__next(gen__rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = gen__rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = gen__rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static inline double gen__unit(gen__rng *r)
{
    return (double)(gen__next(r) >> 11) * 0x1p-53;
}

/* Uniform in [0, n), n > 0 (multiply-shift; the bias is below 2^-32). */
static inline uint32_t gen__below(gen__rng *r, uint32_t n)
{
    return (uint32_t)(((gen__next(r) >> 32) * (uint64_t)n) >> 32);
}

static inline bool gen__chance(gen__rng *r, double p)
{
    return gen__unit(r) < p;
}

/* Standard normal (Box-Muller, one of the pair). */
static inline double gen__normal(gen__rng *r)
{
    double u = 1.0 - gen__unit(r), v = gen__unit(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Exponential with the given mean. */
static inline double gen__expo(gen__rng *r, double mean)
{
    return -mean * log(1.0 - gen__unit(r));
}

/* ---- the fixed world ---- */

#define GEN_DAY_MS 86400000LL
#define GEN_NTP 19     /* touchpoints */
#define GEN_NSURVEY 3  /* surveys */
#define GEN_MAX_IDS 10 /* identities of one customer */
#define GEN_MAX_PROPS 8
#define GEN_MAX_RATED 4 /* touchpoints rated in one NPS response */

typedef struct gen__touchpoint {
    const char *name;
    Cxm__V1__JourneyStage stage;
    Cxm__V1__Channel channel, app_channel; /* app_channel: for app users, or 0 */
    const char *event_type;
    bool item;          /* carries an item id (feeds the interaction log) */
    bool rated;         /* has an expectation-gap question */
    const char *ko;     /* subject in Korean, with its particle ("배송이") */
    const char *en;     /* noun in English ("delivery") */
    const char *reason; /* the NPS "reason" answer it suggests */
    double gap;         /* planted mean expectation - experience */
    double slope;       /* NPS points per point of experience - expectation */
} gen__touchpoint;

extern const gen__touchpoint gen__tps[GEN_NTP];
extern const char *const gen__nps_reasons[5];

/* Slope of every rated touchpoint without a planted gap. */
#define GEN_BASE_SLOPE 0.15

enum { GEN_SURVEY_NPS, GEN_SURVEY_CSAT, GEN_SURVEY_CES };
typedef struct gen__survey {
    const char *id;
    Cxm__V1__SurveyKind kind;
    int lo, hi;        /* score scale */
    int follow_up_max; /* default follow-up threshold: at or under opens one */
    int tp;            /* the touchpoint it asks about, or -1 */
} gen__survey;
extern const gen__survey gen__surveys[GEN_NSURVEY];

/* Lower-case names as used in CSV and truth.json. */
const char *gen__channel_name(Cxm__V1__Channel c);
const char *gen__stage_name(Cxm__V1__JourneyStage s);
const char *gen__identity_name(Cxm__V1__IdentityType t);

/* The name of taste cluster c into buf ("outdoor", ..., "cluster_17"). */
void gen__cluster_name(unsigned c, char *buf, size_t len);
/* Item k: its cluster, its id ("item-000042") and its price in KRW. */
static inline unsigned gen__item_cluster(uint32_t k, unsigned clusters)
{
    return k % clusters;
}
void gen__item_id(uint32_t k, char *buf, size_t len);
double gen__item_price(uint64_t seed, uint32_t k);

/* Survey free text into buf: Korean or English, sentiment 0 negative, 1
 * neutral, 2 positive, about touchpoint tp (or the service, tp < 0). */
void gen__text(gen__rng *r, bool korean, int sentiment, int tp, char *buf, size_t len);

/* ---- records of one customer ---- */

typedef struct gen__ident {
    Cxm__V1__IdentityType type;
    const char *value;
} gen__ident;

/* An identity as it first appeared, for identities.csv. */
typedef struct gen__seen_ident {
    gen__ident id;
    int64_t at;
    Cxm__V1__Channel channel;
} gen__seen_ident;

typedef struct gen__customer {
    uint32_t n;
    char id[16], crm[16], email[64], phone[20], name[48];
    char anon[4][24], device[24];
    int nanon;
    const char *locale, *city;
    int birth_year;
    unsigned cluster;
    bool app_user, marketing, signed_up, churned;
    Cxm__V1__Channel signup_channel;
    int64_t signup_at, first_seen, last_seen;
    Cxm__V1__JourneyStage stage; /* furthest reached */
    unsigned reached;            /* bit per stage reached */
    int purchases;
    double lifetime_value;
    gen__seen_ident seen[GEN_MAX_IDS];
    int nseen;
} gen__customer;

typedef struct gen__prop {
    const char *name;
    char kind; /* 's' string, 'n' number, 'b' bool, 't' timestamp */
    const char *s;
    double n;
    int64_t t;
} gen__prop;

typedef struct gen__event {
    char id[24], session[24], item[16], category[24];
    gen__ident who;
    gen__ident link[GEN_MAX_IDS];
    int nlink;
    int tp;
    Cxm__V1__Channel channel;
    const char *event_type;
    int64_t at;
    double value; /* KRW; 0 = none */
    gen__prop props[GEN_MAX_PROPS];
    int nprops;
} gen__event;

typedef struct gen__rating {
    int tp;
    int expectation, experience; /* 1 to 7 */
} gen__rating;

typedef struct gen__response {
    char id[24], trigger[24];
    int survey;
    gen__ident who;
    int score;
    char text[384];
    const char *language;
    const char *reason; /* NPS "reason" answer, or NULL */
    gen__rating ratings[GEN_MAX_RATED];
    int nratings;
    Cxm__V1__Channel channel;
    Cxm__V1__JourneyStage stage;
    int64_t at;
} gen__response;

typedef struct gen__interaction {
    char id[28];
    gen__ident who;
    const char *item;
    const char *type;
    double weight;
    int64_t at;
} gen__interaction;

/* ---- what truth.json reports, accumulated during the run ---- */

typedef struct gen__tp_stats {
    uint64_t ratings;
    double sum_expectation, sum_experience;
    /* NPS responses that rated the touchpoint: x = experience - expectation,
     * y = the NPS score, for the regression slope of y on x. */
    uint64_t nps_n;
    double sx, sy, sxx, sxy;
} gen__tp_stats;

typedef struct gen__truth {
    gen__tp_stats tp[GEN_NTP];
    uint64_t nps_n, nps_sum, promoters, detractors_responses;
    uint64_t responses[GEN_NSURVEY], follow_ups[GEN_NSURVEY];
    uint64_t stage_customers[7]; /* customers who reached each stage */
    uint64_t churned, repeat_buyers;
    uint64_t *cluster_customers; /* per cluster */
    uint32_t *detractors;        /* customer numbers, ascending */
    size_t ndetractors, cap_detractors;
    bool oom; /* the detractor list could not grow */
    uint64_t profiles, track_messages, interaction_messages;
} gen__truth;

/* ---- the writers ---- */

typedef struct gen__out gen__out;

/* Create the files of p->formats in p->out. 0 or CXM_EIO/CXM_ENOMEM. */
int gen__out_open(const cxm_gen_params *p, gen__out **out, char *err, size_t errlen);
/* The catalogue, surveys and stage rules (world tables, no customers). */
void gen__out_static(gen__out *o, const cxm_gen_params *p);
void gen__out_event(gen__out *o, const gen__customer *c, const gen__event *e);
void gen__out_interaction(gen__out *o, const gen__customer *c, const gen__interaction *it);
void gen__out_response(gen__out *o, const gen__customer *c, const gen__response *r);
/* The customer's profile request (when signed up) and CSV rows, once the
 * journey is over. */
void gen__out_customer(gen__out *o, const gen__customer *c);
/* Flush, close and free; 0 or the first error any write met (with err). */
int gen__out_close(gen__out *o, gen__truth *t, char *err, size_t errlen);

/* Write truth.json. 0 or CXM_EIO. */
int gen__truth_write(const cxm_gen_params *p, const gen__truth *t, const cxm_gen_counts *k,
                     char *err, size_t errlen);

#endif
