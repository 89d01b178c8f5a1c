/*
 * gen.c - the world model of cxm-gen: parameters, and each customer's
 * journey, events, surveys and interactions (see gen.h). The records go to
 * gen_out.c; the fixed tables live in gen_world.c.
 */
#include "gen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cxm/err.h>

#include "gen_int.h"

/* Indexes into gen__tps (gen_world.c). */
enum {
    TP_SOCIAL_AD,
    TP_SEARCH,
    TP_APP_STORE,
    TP_PRODUCT,
    TP_COMPARE,
    TP_CART,
    TP_STORE_VISIT,
    TP_PRESALES,
    TP_ACCOUNT,
    TP_CHECKOUT,
    TP_STORE_CHECKOUT,
    TP_DELIVERY,
    TP_ONBOARDING,
    TP_SUPPORT,
    TP_HELP,
    TP_RENEWAL,
    TP_LOYALTY,
    TP_REVIEW,
    TP_REFERRAL
};

#define MIN_MS 60000LL
#define HOUR_MS 3600000LL
#define ZIPF_S 1.0       /* item popularity inside a cluster */
#define OWN_CLUSTER 0.8  /* share of item picks from the customer's cluster */
#define MAX_PURCHASES 50 /* bounds a customer's loop */

enum { NPS_NONE = -1, NPS_DETRACTOR, NPS_PASSIVE, NPS_PROMOTER };

typedef struct sim {
    const cxm_gen_params *p;
    gen__out *out;
    gen__truth *truth;
    cxm_gen_counts *counts;
    double *rank_cdf;    /* Zipf over ranks inside a cluster */
    double *cluster_cdf; /* popularity of the clusters */
    int64_t end;
    /* The customer being simulated. */
    gen__rng rng;
    gen__customer c;
    gen__event ev;
    int64_t t;
    bool over; /* the world's time ran out */
    uint32_t eseq, sseq, rseq, oseq;
    char session[24];
    uint32_t visited; /* bit per touchpoint */
    int64_t item;     /* the item in mind, -1 none */
    double mood;
    int nps; /* NPS_* of the latest NPS answer */
    bool detractor;
} sim;

/* ---------- parameters ---------- */

void cxm_gen_params_default(cxm_gen_params *p)
{
    *p = (cxm_gen_params){.seed = 1,
                          .customers = 10000,
                          .days = 90,
                          .items = 1000,
                          .clusters = 8,
                          .batch = 500,
                          .start_ms = 1735689600000LL, /* 2025-01-01T00:00:00Z */
                          .formats = CXM_GEN_FORMAT_PB | CXM_GEN_FORMAT_CSV,
                          .out = NULL};
}

int cxm_gen_parse_formats(const char *list, unsigned *formats, char *err, size_t errlen)
{
    unsigned f = 0;
    const char *s = list;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 2 && !strncmp(s, "pb", 2))
            f |= CXM_GEN_FORMAT_PB;
        else if (n == 3 && !strncmp(s, "csv", 3))
            f |= CXM_GEN_FORMAT_CSV;
        else {
            snprintf(err, errlen, "--formats: unknown format \"%.*s\"; use pb, csv or pb,csv",
                     (int)n, s);
            return CXM_EINVAL;
        }
        s += n + (s[n] == ',');
    }
    if (!f) {
        snprintf(err, errlen, "--formats: empty; use pb, csv or pb,csv");
        return CXM_EINVAL;
    }
    *formats = f;
    return 0;
}

static int range(const char *flag, int64_t v, int64_t lo, int64_t hi, char *err, size_t errlen)
{
    if (v >= lo && v <= hi)
        return 0;
    snprintf(err, errlen, "%s: %lld is out of range; use %lld to %lld", flag, (long long)v,
             (long long)lo, (long long)hi);
    return CXM_EINVAL;
}

int cxm_gen_check(const cxm_gen_params *p, char *err, size_t errlen)
{
    if (range("--customers", p->customers, 1, CXM_GEN_MAX_CUSTOMERS, err, errlen) ||
        range("--days", p->days, 1, CXM_GEN_MAX_DAYS, err, errlen) ||
        range("--items", p->items, CXM_GEN_MIN_ITEMS, CXM_GEN_MAX_ITEMS, err, errlen) ||
        range("--clusters", p->clusters, 2, CXM_GEN_MAX_CLUSTERS, err, errlen) ||
        range("--batch", p->batch, 1, CXM_GEN_MAX_BATCH, err, errlen) ||
        range("--start-ms", p->start_ms, 0, 4102444800000LL, err, errlen))
        return CXM_EINVAL;
    if (p->items < p->clusters * CXM_GEN_ITEMS_PER_CLUSTER) {
        snprintf(err, errlen,
                 "--items: %lld items cannot fill %lld taste clusters of at least %d; raise "
                 "--items or lower --clusters",
                 (long long)p->items, (long long)p->clusters, CXM_GEN_ITEMS_PER_CLUSTER);
        return CXM_EINVAL;
    }
    if (!(p->formats & (CXM_GEN_FORMAT_PB | CXM_GEN_FORMAT_CSV))) {
        snprintf(err, errlen, "--formats: none chosen; use pb, csv or pb,csv");
        return CXM_EINVAL;
    }
    if (!p->out || !p->out[0]) {
        snprintf(err, errlen, "--out is required: the directory to write the world into");
        return CXM_EINVAL;
    }
    return 0;
}

/* ---------- popularity ---------- */

static double *cdf_new(size_t n, double s)
{
    double *cdf = malloc(n * sizeof *cdf), sum = 0;
    if (!cdf)
        return NULL;
    for (size_t i = 0; i < n; i++)
        cdf[i] = sum += pow((double)(i + 1), -s);
    return cdf;
}

/* An index in [0, n) drawn from the first n entries of cdf. */
static uint32_t cdf_pick(gen__rng *r, const double *cdf, uint32_t n)
{
    double u = gen__unit(r) * cdf[n - 1];
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static uint32_t cluster_items(const sim *s, unsigned cl)
{
    return (uint32_t)((s->p->items - cl + s->p->clusters - 1) / s->p->clusters);
}

/* Item k belongs to cluster k % clusters with popularity rank k / clusters. */
static uint32_t pick_item(sim *s)
{
    unsigned cl = gen__chance(&s->rng, OWN_CLUSTER)
                      ? s->c.cluster
                      : cdf_pick(&s->rng, s->cluster_cdf, (uint32_t)s->p->clusters);
    uint32_t rank = cdf_pick(&s->rng, s->rank_cdf, cluster_items(s, cl));
    return cl + rank * (uint32_t)s->p->clusters;
}

/* ---------- identities ---------- */

static void hex_id(gen__rng *r, const char *prefix, char *buf, size_t len)
{
    snprintf(buf, len, "%s%016llx", prefix, (unsigned long long)gen__next(r));
}

static void seen(sim *s, Cxm__V1__IdentityType type, const char *value, Cxm__V1__Channel ch)
{
    gen__customer *c = &s->c;
    for (int i = 0; i < c->nseen; i++)
        if (c->seen[i].id.value == value)
            return;
    if (c->nseen < GEN_MAX_IDS)
        c->seen[c->nseen++] = (gen__seen_ident){{type, value}, s->t, ch};
}

static gen__ident ident(sim *s, Cxm__V1__IdentityType type, const char *value, Cxm__V1__Channel ch)
{
    seen(s, type, value, ch);
    return (gen__ident){type, value};
}

/* Who an event names: what the channel knows of the customer by then. */
static gen__ident who_for(sim *s, Cxm__V1__Channel ch)
{
    gen__customer *c = &s->c;
    const char *cookie = c->anon[c->nanon - 1];
    switch (ch) {
    case CXM__V1__CHANNEL__CHANNEL_APP:
        return ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_DEVICE_ID, c->device, ch);
    case CXM__V1__CHANNEL__CHANNEL_CONTACT_CENTRE:
        return ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE, c->phone, ch);
    case CXM__V1__CHANNEL__CHANNEL_STORE:
        if (c->signed_up)
            return ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID, c->crm, ch);
        return ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE, c->phone, ch);
    case CXM__V1__CHANNEL__CHANNEL_EMAIL:
        return ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, c->email, ch);
    case CXM__V1__CHANNEL__CHANNEL_WEB:
        if (c->signed_up)
            return ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, c->email, ch);
        /* Before sign-up the web only has the cookie. */
        return ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_ANONYMOUS_ID, cookie, ch);
    default:
        return ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_ANONYMOUS_ID, cookie, ch);
    }
}

/* ---------- the customer ---------- */

static const char *const ko_family[][2] = {
    {"김", "kim"},  {"이", "lee"}, {"박", "park"}, {"최", "choi"}, {"정", "jung"},
    {"강", "kang"}, {"조", "cho"}, {"윤", "yoon"}, {"장", "jang"}, {"임", "lim"}};
static const char *const ko_given[][2] = {
    {"민준", "minjun"}, {"서연", "seoyeon"}, {"도윤", "doyoon"}, {"지우", "jiwoo"},
    {"하준", "hajun"},  {"서윤", "seoyun"},  {"지호", "jiho"},   {"하은", "haeun"},
    {"예준", "yejun"},  {"수아", "sua"},     {"주원", "juwon"},  {"지민", "jimin"}};
static const char *const en_first[][2] = {
    {"Olivia", "olivia"}, {"James", "james"}, {"Amelia", "amelia"}, {"Oliver", "oliver"},
    {"Isla", "isla"},     {"Jack", "jack"},   {"Emily", "emily"},   {"Noah", "noah"},
    {"Ava", "ava"},       {"Leo", "leo"},     {"Grace", "grace"},   {"Harry", "harry"}};
static const char *const en_last[][2] = {
    {"Smith", "smith"},       {"Jones", "jones"},   {"Taylor", "taylor"},   {"Brown", "brown"},
    {"Williams", "williams"}, {"Wilson", "wilson"}, {"Johnson", "johnson"}, {"Davies", "davies"},
    {"Patel", "patel"},       {"Wright", "wright"}};
static const char *const ko_cities[] = {"Seoul",   "Busan",   "Incheon", "Daegu",
                                        "Daejeon", "Gwangju", "Suwon"};
static const char *const en_cities[] = {"London", "Manchester", "Birmingham",
                                        "Leeds",  "Glasgow",    "Bristol"};
#define PICK(r, a) (a)[gen__below((r), sizeof(a) / sizeof((a)[0]))]

/* Name, email and phone; numbers are permuted so that neighbours differ,
 * and stay unique (7919 is prime to 10^8 and 10^9). */
static void customer_names(sim *s)
{
    gen__customer *c = &s->c;
    uint32_t k = c->n + 1;
    if (!strcmp(c->locale, "ko")) {
        const char *const *f = PICK(&s->rng, ko_family), *const *g = PICK(&s->rng, ko_given);
        snprintf(c->name, sizeof c->name, "%s%s", f[0], g[0]);
        snprintf(c->email, sizeof c->email, "%s.%s%u@example.com", g[1], f[1], k);
        snprintf(c->phone, sizeof c->phone, "+8210%08llu",
                 (unsigned long long)(((uint64_t)k * 7919 + 12345) % 100000000));
        c->city = PICK(&s->rng, ko_cities);
    } else {
        const char *const *f = PICK(&s->rng, en_first), *const *l = PICK(&s->rng, en_last);
        snprintf(c->name, sizeof c->name, "%s %s", f[0], l[0]);
        snprintf(c->email, sizeof c->email, "%s.%s%u@example.com", f[1], l[1], k);
        snprintf(c->phone, sizeof c->phone, "+447%09llu",
                 (unsigned long long)(((uint64_t)k * 7919 + 54321) % 1000000000));
        c->city = PICK(&s->rng, en_cities);
    }
}

static void customer_init(sim *s, uint32_t n)
{
    gen__customer *c = &s->c;
    memset(c, 0, sizeof *c);
    gen__rng_init(&s->rng, s->p->seed, n);
    c->n = n;
    snprintf(c->id, sizeof c->id, "c%07u", n + 1);
    snprintf(c->crm, sizeof c->crm, "CRM-%08u", n + 1);
    c->locale = gen__chance(&s->rng, 0.65) ? "ko" : "en";
    customer_names(s);
    c->birth_year = 1950 + (int)gen__below(&s->rng, 56);
    c->cluster = cdf_pick(&s->rng, s->cluster_cdf, (uint32_t)s->p->clusters);
    c->app_user = gen__chance(&s->rng, 0.45);
    c->marketing = gen__chance(&s->rng, 0.55);
    hex_id(&s->rng, "anon-", c->anon[0], sizeof c->anon[0]);
    c->nanon = 1;
    hex_id(&s->rng, "dev-", c->device, sizeof c->device);
    s->mood = gen__normal(&s->rng);
    s->eseq = s->sseq = s->rseq = s->oseq = 0;
    s->visited = 0;
    s->item = -1;
    s->nps = NPS_NONE;
    s->detractor = false;
    s->over = false;
    s->t =
        s->p->start_ms + (int64_t)(gen__unit(&s->rng) * 0.95 * (double)(s->end - s->p->start_ms));
}

/* ---------- events ---------- */

/* Properties beyond GEN_MAX_PROPS are dropped (none of the events here
 * has that many). */
static void prop(gen__event *e, gen__prop p)
{
    if (e->nprops < GEN_MAX_PROPS)
        e->props[e->nprops++] = p;
}

static void prop_s(gen__event *e, const char *name, const char *v)
{
    prop(e, (gen__prop){.name = name, .kind = 's', .s = v});
}

static void prop_n(gen__event *e, const char *name, double v)
{
    prop(e, (gen__prop){.name = name, .kind = 'n', .n = v});
}

static void prop_b(gen__event *e, const char *name, bool v)
{
    prop(e, (gen__prop){.name = name, .kind = 'b', .n = v});
}

static void prop_t(gen__event *e, const char *name, int64_t v)
{
    prop(e, (gen__prop){.name = name, .kind = 't', .t = v});
}

/* Move the clock by ms; false (and the world is over) past its end. */
static bool advance(sim *s, double ms)
{
    s->t += (int64_t)ms;
    if (s->t >= s->end)
        s->over = true;
    return !s->over;
}

/* Where a session starting ms from now really starts: most that would
 * start between midnight and 7 am (KST, UTC+9) move to a time between 7 am
 * and 10 pm of that day. */
static double daytime(sim *s, double ms)
{
    int64_t hour_ms = (s->t + (int64_t)ms + 9 * HOUR_MS) % GEN_DAY_MS;
    if (hour_ms < 7 * HOUR_MS && gen__chance(&s->rng, 0.85))
        ms += (double)(7 * HOUR_MS - hour_ms) + gen__unit(&s->rng) * 15 * HOUR_MS;
    return ms;
}

static bool session(sim *s, double mean_days)
{
    if (!advance(s, daytime(s, gen__expo(&s->rng, mean_days * GEN_DAY_MS) + 5 * MIN_MS)))
        return false;
    snprintf(s->session, sizeof s->session, "s%u-%u", s->c.n + 1, ++s->sseq);
    return true;
}

static Cxm__V1__Channel channel_for(sim *s, int tp)
{
    const gen__touchpoint *t = &gen__tps[tp];
    if (t->app_channel && s->c.app_user && gen__chance(&s->rng, 0.7))
        return t->app_channel;
    return t->channel;
}

/* A new event at touchpoint tp through channel ch a little after the
 * previous one, or NULL when the world's time ran out. */
static gen__event *event_on(sim *s, int tp, Cxm__V1__Channel ch)
{
    if (!advance(s, 20000 + gen__expo(&s->rng, 90000)))
        return NULL;
    gen__event *e = &s->ev;
    e->tp = tp;
    e->channel = ch;
    e->event_type = gen__tps[tp].event_type;
    e->at = s->t;
    e->value = 0;
    e->nlink = e->nprops = 0;
    e->item[0] = 0;
    snprintf(e->id, sizeof e->id, "e%u-%u", s->c.n + 1, ++s->eseq);
    memcpy(e->session, s->session, sizeof e->session);
    e->who = who_for(s, e->channel);
    if (e->channel == CXM__V1__CHANNEL__CHANNEL_WEB)
        prop_s(e, "device", s->c.n % 3 ? "mobile" : "desktop");
    else if (e->channel == CXM__V1__CHANNEL__CHANNEL_APP)
        prop_s(e, "os", s->c.n % 2 ? "android" : "ios");
    return e;
}

static gen__event *event(sim *s, int tp)
{
    return event_on(s, tp, channel_for(s, tp));
}

static void with_item(sim *s, gen__event *e, uint32_t k)
{
    s->item = k;
    gen__item_id(k, e->item, sizeof e->item);
    gen__cluster_name(gen__item_cluster(k, (unsigned)s->p->clusters), e->category,
                      sizeof e->category);
    prop_s(e, "item_id", e->item);
    prop_s(e, "category", e->category);
    prop_n(e, "price", gen__item_price(s->p->seed, k));
}

static void interaction(sim *s, const gen__event *e, const char *type, double weight)
{
    gen__interaction it = {
        .who = e->who, .item = e->item, .type = type, .weight = weight, .at = e->at};
    snprintf(it.id, sizeof it.id, "i%s", e->id + 1);
    gen__out_interaction(s->out, &s->c, &it);
    s->counts->interactions++;
}

static void emit(sim *s, gen__event *e)
{
    gen__customer *c = &s->c;
    Cxm__V1__JourneyStage st = gen__tps[e->tp].stage;
    if (!c->first_seen)
        c->first_seen = e->at;
    c->last_seen = e->at;
    c->reached |= 1u << st;
    if (st > c->stage)
        c->stage = st;
    s->visited |= 1u << e->tp;
    gen__out_event(s->out, c, e);
    s->counts->events++;
}

/* ---------- surveys ---------- */

static int clamp_round(double v, int lo, int hi)
{
    int r = (int)floor(v + 0.5);
    return r < lo ? lo : r > hi ? hi : r;
}

/* Experience falls short of expectation by the touchpoint's planted gap,
 * plus noise. Expectations are drawn per rating, not from a level of the
 * customer's: a shared level, clipped at 7, would correlate the touchpoints
 * of one response and lend the planted touchpoints' NPS effect to the
 * others in a per-touchpoint analysis. */
static gen__rating rate(sim *s, int tp)
{
    int e = clamp_round(5.2 + 0.9 * gen__normal(&s->rng), 1, 7);
    int x = clamp_round(e - gen__tps[tp].gap + 0.9 * gen__normal(&s->rng), 1, 7);
    return (gen__rating){tp, e, x};
}

/* Up to GEN_MAX_RATED of the rated touchpoints the customer has visited. */
static void rate_visited(sim *s, gen__response *r)
{
    int pool[GEN_NTP], n = 0;
    for (int tp = 0; tp < GEN_NTP; tp++)
        if (gen__tps[tp].rated && (s->visited >> tp & 1))
            pool[n++] = tp;
    for (int i = 0; i < n && r->nratings < GEN_MAX_RATED; i++) {
        int j = i + (int)gen__below(&s->rng, (uint32_t)(n - i)), tmp = pool[i];
        pool[i] = pool[j];
        pool[j] = tmp;
        r->ratings[r->nratings++] = rate(s, pool[i]);
    }
}

/* The planted model: NPS moves with experience - expectation at each rated
 * touchpoint by the touchpoint's slope, around the customer's mood. */
static int nps_score(sim *s, const gen__response *r)
{
    double v = 8.6 + s->mood + gen__normal(&s->rng);
    for (int i = 0; i < r->nratings; i++)
        v += gen__tps[r->ratings[i].tp].slope *
             (r->ratings[i].experience - r->ratings[i].expectation);
    return clamp_round(v, 0, 10);
}

static int score(sim *s, gen__response *r)
{
    double x = r->nratings ? r->ratings[0].experience : 4;
    switch (r->survey) {
    case GEN_SURVEY_NPS:
        return nps_score(s, r);
    case GEN_SURVEY_CSAT:
        return clamp_round(1 + (x - 1) * 4 / 6 + 0.3 * s->mood + 0.5 * gen__normal(&s->rng), 1, 5);
    default:
        return clamp_round(x + 0.3 * s->mood + 0.7 * gen__normal(&s->rng), 1, 7);
    }
}

/* 0 negative, 1 neutral, 2 positive, by the scale's usual split. */
static int sentiment(const gen__response *r)
{
    static const int neg_max[GEN_NSURVEY] = {6, 2, 3}, neu_max[GEN_NSURVEY] = {8, 3, 4};
    return r->score <= neg_max[r->survey] ? 0 : r->score <= neu_max[r->survey] ? 1 : 2;
}

/* The rated touchpoint the text is about: the worst for an unhappy
 * customer, the best otherwise; -1 with no ratings. */
static int aspect(const gen__response *r, int mood)
{
    int best = -1, best_d = 0;
    for (int i = 0; i < r->nratings; i++) {
        int d = r->ratings[i].experience - r->ratings[i].expectation;
        if (best < 0 || (mood == 0 ? d < best_d : d > best_d))
            best = i, best_d = d;
    }
    return best < 0 ? -1 : r->ratings[best].tp;
}

static void truth_ratings(sim *s, const gen__response *r)
{
    for (int i = 0; i < r->nratings; i++) {
        gen__tp_stats *st = &s->truth->tp[r->ratings[i].tp];
        double x = r->ratings[i].experience - r->ratings[i].expectation, y = r->score;
        st->ratings++;
        st->sum_expectation += r->ratings[i].expectation;
        st->sum_experience += r->ratings[i].experience;
        if (r->survey != GEN_SURVEY_NPS)
            continue;
        st->nps_n++;
        st->sx += x, st->sy += y, st->sxx += x * x, st->sxy += x * y;
    }
    s->counts->ratings += (uint64_t)r->nratings;
}

static int add_detractor(gen__truth *t, uint32_t n)
{
    if (t->ndetractors == t->cap_detractors) {
        size_t cap = t->cap_detractors ? 2 * t->cap_detractors : 1024;
        uint32_t *d = realloc(t->detractors, cap * sizeof *d);
        if (!d)
            return CXM_ENOMEM;
        t->detractors = d, t->cap_detractors = cap;
    }
    t->detractors[t->ndetractors++] = n;
    return 0;
}

static void truth_response(sim *s, const gen__response *r)
{
    gen__truth *t = s->truth;
    t->responses[r->survey]++;
    if (r->score <= gen__surveys[r->survey].follow_up_max)
        t->follow_ups[r->survey]++;
    truth_ratings(s, r);
    if (r->survey != GEN_SURVEY_NPS)
        return;
    t->nps_n++, t->nps_sum += (uint64_t)r->score;
    t->promoters += r->score >= 9;
    t->detractors_responses += r->score <= 6;
    s->nps = r->score <= 6 ? NPS_DETRACTOR : r->score <= 8 ? NPS_PASSIVE : NPS_PROMOTER;
    if (s->nps == NPS_DETRACTOR && !s->detractor) {
        s->detractor = true;
        if (add_detractor(t, s->c.n) == 0)
            s->counts->detractors++;
        else
            t->oom = true; /* reported by cxm_gen_run */
    }
}

/* A survey answered some hours after the event that triggered it; none if
 * that falls after the world's end. The clock does not move: surveys are
 * answered on the side. */
static void survey(sim *s, int kind, const gen__event *trigger, Cxm__V1__JourneyStage stage)
{
    gen__response r = {.survey = kind, .stage = stage, .language = s->c.locale};
    r.at = trigger->at + 10 * MIN_MS + (int64_t)gen__expo(&s->rng, 6 * HOUR_MS);
    if (r.at >= s->end)
        return;
    snprintf(r.id, sizeof r.id, "r%u-%u", s->c.n + 1, ++s->rseq);
    memcpy(r.trigger, trigger->id, sizeof r.trigger);
    bool by_phone = kind == GEN_SURVEY_CSAT;
    r.channel =
        by_phone ? CXM__V1__CHANNEL__CHANNEL_CONTACT_CENTRE : CXM__V1__CHANNEL__CHANNEL_EMAIL;
    r.who = by_phone ? (gen__ident){CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE, s->c.phone}
                     : (gen__ident){CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, s->c.email};
    if (gen__surveys[kind].tp >= 0)
        r.ratings[r.nratings++] = rate(s, gen__surveys[kind].tp);
    else
        rate_visited(s, &r);
    r.score = score(s, &r);
    int mood = sentiment(&r), tp = aspect(&r, mood);
    if (kind == GEN_SURVEY_NPS)
        r.reason = tp >= 0 ? gen__tps[tp].reason : gen__nps_reasons[gen__below(&s->rng, 5)];
    if (gen__chance(&s->rng, 0.65))
        gen__text(&s->rng, r.language[0] == 'k', mood, tp, r.text, sizeof r.text);
    truth_response(s, &r);
    gen__out_response(s->out, &s->c, &r);
    s->counts->responses++;
}

/* ---------- the journey ---------- */

static const char *const campaigns[] = {"spring_sale", "new_arrivals", "loyalty_week",
                                        "black_friday", "chuseok_gifts"};
static const char *const networks[] = {"instagram", "facebook", "kakao", "youtube"};
static const char *const stores[] = {"gangnam_store", "hongdae_store", "busan_store",
                                     "london_store"};
static const char *const payments[] = {"card", "kakaopay", "naverpay", "bank_transfer"};
static const char *const articles[] = {"returns_policy", "delivery_times", "warranty",
                                       "change_password", "track_order"};

/* Now and then a new cookie (another browser, cleared cookies); once the
 * customer has signed up, a login event links it to the email. */
static void maybe_new_cookie(sim *s)
{
    gen__customer *c = &s->c;
    if (c->nanon == 4 || !gen__chance(&s->rng, 0.12))
        return;
    hex_id(&s->rng, "anon-", c->anon[c->nanon], sizeof c->anon[0]);
    c->nanon++;
    if (!c->signed_up)
        return;
    gen__event *e = event_on(s, TP_ACCOUNT, CXM__V1__CHANNEL__CHANNEL_WEB);
    if (!e)
        return;
    e->who = ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, c->email, e->channel);
    e->link[e->nlink++] = ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_ANONYMOUS_ID,
                                c->anon[c->nanon - 1], e->channel);
    e->event_type = "login";
    prop_s(e, "method", "password");
    emit(s, e);
}

static bool awareness(sim *s)
{
    snprintf(s->session, sizeof s->session, "s%u-%u", s->c.n + 1, ++s->sseq);
    int tp = s->c.app_user && gen__chance(&s->rng, 0.3) ? TP_APP_STORE
             : gen__chance(&s->rng, 0.5)                ? TP_SOCIAL_AD
                                                        : TP_SEARCH;
    gen__event *e = event(s, tp);
    if (!e)
        return false;
    if (tp == TP_SOCIAL_AD) {
        prop_s(e, "campaign", PICK(&s->rng, campaigns));
        prop_s(e, "network", PICK(&s->rng, networks));
    } else if (tp == TP_SEARCH) {
        prop_s(e, "utm_source", gen__chance(&s->rng, 0.6) ? "naver" : "google");
    } else {
        prop_s(e, "store", s->c.n % 2 ? "google_play" : "app_store");
    }
    emit(s, e);
    return gen__chance(&s->rng, 0.6);
}

static void browse_event(sim *s)
{
    double u = gen__unit(&s->rng);
    int tp = s->item < 0 || u < 0.6 ? TP_PRODUCT : u < 0.75 ? TP_COMPARE : TP_CART;
    gen__event *e = event(s, tp);
    if (!e)
        return;
    with_item(s, e, tp == TP_PRODUCT ? pick_item(s) : (uint32_t)s->item);
    emit(s, e);
    interaction(s, e, tp == TP_CART ? "add_to_cart" : "view", tp == TP_CART ? 2.0 : 1.0);
}

static void store_visit(sim *s)
{
    gen__event *e = event(s, TP_STORE_VISIT);
    if (!e)
        return;
    prop_s(e, "store_id", PICK(&s->rng, stores));
    prop_n(e, "dwell_min", floor(5 + gen__expo(&s->rng, 15)));
    emit(s, e);
}

static gen__event *call(sim *s, int tp)
{
    gen__event *e = event(s, tp);
    if (!e)
        return NULL;
    prop_n(e, "duration_s", floor(60 + gen__expo(&s->rng, 300)));
    prop_n(e, "queue_wait_s", floor(gen__expo(&s->rng, tp == TP_SUPPORT ? 420 : 60)));
    prop_b(e, "resolved", gen__chance(&s->rng, tp == TP_SUPPORT ? 0.55 : 0.9));
    prop_s(e, "agent_id", s->c.n % 4 ? "agent_seoul" : "agent_busan");
    emit(s, e);
    return e;
}

/* Browsing sessions, store visits and calls until the customer buys
 * (true) or drops out (false). */
static bool consideration(sim *s)
{
    for (int round = 0; round < 8; round++) {
        if (!session(s, 1.5))
            return false;
        maybe_new_cookie(s);
        double u = gen__unit(&s->rng);
        if (u < 0.15)
            store_visit(s);
        else if (u < 0.27)
            call(s, TP_PRESALES);
        else
            for (int k = 2 + (int)gen__below(&s->rng, 5); k > 0 && !s->over; k--)
                browse_event(s);
        if (s->over)
            return false;
        u = gen__unit(&s->rng);
        if (u < 0.32)
            return true;
        if (u > 0.75)
            return false;
    }
    return false;
}

/* Signing up gives the email, phone and CRM id, and links every identity
 * seen so far to the email. */
static void sign_up(sim *s)
{
    gen__customer *c = &s->c;
    gen__event *e = event(s, TP_ACCOUNT);
    if (!e)
        return;
    c->signed_up = true;
    c->signup_at = e->at;
    c->signup_channel = e->channel;
    e->who = ident(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, c->email, e->channel);
    seen(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE, c->phone, e->channel);
    seen(s, CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID, c->crm, e->channel);
    for (int i = 0; i < c->nseen; i++)
        if (c->seen[i].id.type != CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL)
            e->link[e->nlink++] = c->seen[i].id;
    prop_s(e, "method", gen__chance(&s->rng, 0.4) ? "kakao" : "email");
    prop_b(e, "marketing_opt_in", c->marketing);
    prop_t(e, "first_seen", c->first_seen);
    emit(s, e);
}

/* One order; true if it was bought online (then delivered). */
static bool purchase(sim *s)
{
    if (!session(s, 1.0))
        return false;
    if (!s->c.signed_up)
        sign_up(s);
    bool online = !gen__chance(&s->rng, 0.2);
    gen__event *e = s->over ? NULL : event(s, online ? TP_CHECKOUT : TP_STORE_CHECKOUT);
    if (!e)
        return false;
    uint32_t k = s->item >= 0 && gen__chance(&s->rng, 0.7) ? (uint32_t)s->item : pick_item(s);
    with_item(s, e, k);
    double qty = gen__chance(&s->rng, 0.2) ? 2 : 1;
    char order[24];
    snprintf(order, sizeof order, "o%u-%u", s->c.n + 1, ++s->oseq);
    prop_n(e, "quantity", qty);
    prop_s(e, "order_id", order);
    prop_s(e, "payment_method", PICK(&s->rng, payments));
    e->value = qty * gen__item_price(s->p->seed, k);
    s->c.purchases++;
    s->c.lifetime_value += e->value;
    emit(s, e);
    interaction(s, e, "purchase", 4.0);
    if (online && gen__chance(&s->rng, 0.3))
        survey(s, GEN_SURVEY_CES, e, CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE);
    return online;
}

static void delivery(sim *s)
{
    static const char *const carriers[] = {"cj_logistics", "hanjin", "royal_mail", "dpd"};
    const char *carrier = PICK(&s->rng, carriers);
    bool delayed = gen__chance(&s->rng, 0.35);
    for (int step = 0; step < 2; step++) {
        if (!session(s, step ? (delayed ? 3.0 : 1.2) : 0.8))
            return;
        gen__event *e = event(s, TP_DELIVERY);
        if (!e)
            return;
        prop_s(e, "status", step ? "delivered" : "shipped");
        prop_s(e, "carrier", carrier);
        prop_b(e, "delayed", delayed);
        emit(s, e);
    }
}

static void onboarding(sim *s)
{
    if (!session(s, 0.3))
        return;
    for (int step = 1; step <= 3 && !s->over; step++) {
        gen__event *e = event(s, TP_ONBOARDING);
        if (!e)
            return;
        prop_n(e, "step", step);
        emit(s, e);
        if (!gen__chance(&s->rng, 0.75))
            return;
    }
}

static void help_and_support(sim *s)
{
    if (gen__chance(&s->rng, 0.4) && session(s, 2.0)) {
        gen__event *e = event(s, TP_HELP);
        if (e) {
            prop_s(e, "article", PICK(&s->rng, articles));
            emit(s, e);
        }
    }
    if (!s->over && gen__chance(&s->rng, 0.3) && session(s, 2.0)) {
        gen__event *e = call(s, TP_SUPPORT);
        if (e && gen__chance(&s->rng, 0.5))
            survey(s, GEN_SURVEY_CSAT, e, CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_USE);
    }
}

/* After an order: delivery, onboarding, help and support, and sometimes
 * the relationship NPS survey, triggered by the last event. */
static void use(sim *s, bool online, bool first)
{
    if (online)
        delivery(s);
    if (first && s->c.app_user && !s->over && gen__chance(&s->rng, 0.7))
        onboarding(s);
    if (!s->over)
        help_and_support(s);
    if (!s->over && s->eseq && gen__chance(&s->rng, first ? 0.45 : 0.2))
        survey(s, GEN_SURVEY_NPS, &s->ev, s->c.stage);
}

static void retention(sim *s)
{
    for (int k = 1 + (int)gen__below(&s->rng, 3); k > 0 && session(s, 12.0); k--) {
        bool app = s->c.app_user && gen__chance(&s->rng, 0.5);
        gen__event *e = event(s, app ? TP_LOYALTY : TP_RENEWAL);
        if (!e)
            return;
        if (app)
            prop_n(e, "points", 100 * (1 + gen__below(&s->rng, 20)));
        else
            prop_s(e, "campaign", PICK(&s->rng, campaigns));
        emit(s, e);
    }
}

static void advocacy(sim *s)
{
    if (!session(s, 5.0))
        return;
    bool review = s->item >= 0 && gen__chance(&s->rng, 0.6);
    gen__event *e = event(s, review ? TP_REVIEW : TP_REFERRAL);
    if (!e)
        return;
    if (review) {
        double stars =
            s->nps == NPS_PROMOTER ? 4 + gen__below(&s->rng, 2) : 2 + gen__below(&s->rng, 3);
        with_item(s, e, (uint32_t)s->item);
        prop_n(e, "rating", stars);
        emit(s, e);
        interaction(s, e, "review", stars / 2);
    } else {
        prop_s(e, "network", PICK(&s->rng, networks));
        emit(s, e);
    }
}

/* Probability by the latest NPS answer: detractor, passive, promoter, none. */
static double by_nps(const sim *s, double det, double pas, double pro, double none)
{
    return s->nps == NPS_DETRACTOR  ? det
           : s->nps == NPS_PASSIVE  ? pas
           : s->nps == NPS_PROMOTER ? pro
                                    : none;
}

/* Orders, use, retention and advocacy until churn or the end of time;
 * unhappy customers churn sooner and come back less. */
static void customer_life(sim *s)
{
    gen__customer *c = &s->c;
    for (int cycle = 0; cycle < MAX_PURCHASES; cycle++) {
        bool online = purchase(s);
        if (s->over)
            return;
        use(s, online, cycle == 0);
        if (s->over)
            return;
        if (gen__chance(&s->rng, by_nps(s, 0.55, 0.3, 0.15, 0.3))) {
            c->churned = true;
            return;
        }
        retention(s);
        if (!s->over && gen__chance(&s->rng, by_nps(s, 0.02, 0.15, 0.5, 0.1)))
            advocacy(s);
        if (s->over)
            return;
        if (!gen__chance(&s->rng, by_nps(s, 0.3, 0.55, 0.7, 0.55))) {
            c->churned = true;
            return;
        }
        if (session(s, 3.0)) {
            maybe_new_cookie(s);
            browse_event(s);
        }
        if (s->over)
            return;
    }
}

static void customer_truth(sim *s)
{
    gen__truth *t = s->truth;
    for (int st = 1; st <= 6; st++)
        t->stage_customers[st] += s->c.reached >> st & 1;
    t->churned += s->c.churned;
    t->repeat_buyers += s->c.purchases > 1;
    t->cluster_customers[s->c.cluster]++;
    s->counts->customers++;
    s->counts->signed_up += s->c.signed_up;
    s->counts->identities += (uint64_t)s->c.nseen;
}

static void customer_run(sim *s, uint32_t n)
{
    customer_init(s, n);
    if (awareness(s) && consideration(s))
        customer_life(s);
    customer_truth(s);
    gen__out_customer(s->out, &s->c);
}

/* ---------- the run ---------- */

static int make_dir(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (mkdir(path, 0777) == 0 || (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
        return 0;
    snprintf(err, errlen, "--out: cannot create directory %s: %s", path,
             errno == EEXIST ? "a file of that name exists" : strerror(errno));
    return CXM_EIO;
}

static int sim_init(sim *s, const cxm_gen_params *p, gen__truth *t, cxm_gen_counts *k)
{
    memset(s, 0, sizeof *s);
    s->p = p, s->truth = t, s->counts = k;
    s->end = p->start_ms + p->days * GEN_DAY_MS;
    s->rank_cdf = cdf_new((size_t)cluster_items(s, 0), ZIPF_S);
    s->cluster_cdf = cdf_new((size_t)p->clusters, 0.3);
    t->cluster_customers = calloc((size_t)p->clusters, sizeof *t->cluster_customers);
    return s->rank_cdf && s->cluster_cdf && t->cluster_customers ? 0 : CXM_ENOMEM;
}

static void sim_dispose(sim *s, gen__truth *t)
{
    free(s->rank_cdf);
    free(s->cluster_cdf);
    free(t->cluster_customers);
    free(t->detractors);
}

int cxm_gen_run(const cxm_gen_params *p, cxm_gen_counts *counts, char *err, size_t errlen)
{
    gen__truth truth = {0};
    cxm_gen_counts k = {0};
    sim s;
    int rc = cxm_gen_check(p, err, errlen);
    if (rc == 0)
        rc = make_dir(p->out, err, errlen);
    if (rc)
        return rc;
    if ((rc = sim_init(&s, p, &truth, &k)) != 0) {
        snprintf(err, errlen, "out of memory for %lld items", (long long)p->items);
        goto done;
    }
    if ((rc = gen__out_open(p, &s.out, err, errlen)) != 0)
        goto done;
    gen__out_static(s.out, p);
    for (uint32_t n = 0; n < (uint32_t)p->customers; n++)
        customer_run(&s, n);
    rc = gen__out_close(s.out, &truth, err, errlen);
    if (rc == 0 && truth.oom) {
        snprintf(err, errlen, "out of memory for the detractor list");
        rc = CXM_ENOMEM;
    }
    if (rc == 0)
        rc = gen__truth_write(p, &truth, &k, err, errlen);
    if (rc == 0)
        *counts = k;
done:
    sim_dispose(&s, &truth);
    return rc;
}
