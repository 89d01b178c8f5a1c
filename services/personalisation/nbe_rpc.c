/*
 * nbe_rpc.c - the PersonalisationService handlers (see nbe_rpc.h).
 */
#include "nbe_rpc.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/svc.h"
#include "nbe_check.h"
#include "nbe_train.h"

#define DAY_MS 86400000LL
#define CANDIDATES_MAX 300     /* k' = min(3k, this) candidates asked of recodb */
#define FILL_PROPENSITY 0.01   /* what a catalogue fill is assumed to convert at */
#define STAGE_FIT 1.25         /* context fit of an experience made for the stage */
#define EXTRA_FILL_SCORE -1e9f /* below recodb's popularity fill (-1, -2, ...) */
#define EXPLAIN_ITEMS 3        /* history items named per recommendation */
#define FILL_SLACK 8           /* fills asked beyond twice the missing ones */
#define HELD_MAX 128           /* held-back offers told apart; more are counted as seen */
#define ACCEPT_WEIGHT 3.0f
#define CLICK_WEIGHT 1.0f
/* recodb needs a customer id for a customer no profile has (an unknown
 * identity): one that profile never hands out (it is not an identity's
 * normalised form), so its history stays empty and it gets popularity. */
#define NOBODY "~nobody~"

static const char *s0(const char *s)
{
    return s ? s : "";
}

/* A printf-formatted copy (at most 511 bytes) in a; NULL when out of
 * memory. */
__attribute__((format(printf, 2, 3))) static char *afmt(cxm_arena *a, const char *f, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    return cxm_arena_strndup(a, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* ---- this thread's reader ---- */

recodb_reader *nbe_reader(nbe_ctx *ctx)
{
    recodb_reader *r = pthread_getspecific(ctx->reader_key);
    if (r)
        return r;
    if (recodb_reader_create(ctx->reco, &r) != 0)
        return NULL;
    if (pthread_setspecific(ctx->reader_key, r) != 0) {
        recodb_reader_free(r);
        return NULL;
    }
    return r;
}

/* ---- recommendation ids: 128 random bits per response ---- */

static __thread uint64_t rng[2];

static uint64_t rng_next(void)
{
    if (!rng[0] && !rng[1]) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, rng, sizeof rng) != (ssize_t)sizeof rng)
            rng[0] = (uint64_t)cxm_svc_now_ms() ^ (uint64_t)(uintptr_t)&rng;
        if (fd >= 0)
            close(fd);
        rng[1] |= 1; /* never the all-zero state */
    }
    /* xorshift128+ */
    uint64_t x = rng[0], y = rng[1];
    rng[0] = y;
    x ^= x << 23;
    rng[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return rng[1] + y;
}

static char *recommendation_id(cxm_arena *a)
{
    char *s = cxm_arena_alloc(a, 33);
    if (s)
        snprintf(s, 33, "%016" PRIx64 "%016" PRIx64, rng_next(), rng_next());
    return s;
}

/* ---- eligibility ---- */

/* One Recommend's decision state: what the filter needs, read once. */
typedef struct decision {
    nbe_ctx *ctx;
    cxm_txn *t;
    cxm_arena *a;
    const char *customer; /* the live customer id; NULL for an unknown identity */
    cxm_replica_customer cust;
    xdb_signals sig;
    int64_t now_ms;
    int stage, channel;
    const char *placement;
    uint32_t kinds; /* bit per allowed kind; 0 = any */
    char **exclude; /* sorted */
    size_t nexclude;
    bool recovery;
    const char *recovery_why;
    /* Offers held back by recovery, each counted once however often the
     * filter meets it (recodb's cache, its scoring fallback, the fill). */
    const xdb_exp *held[HELD_MAX];
    uint32_t held_back;
    bool predicted; /* the history predicted a candidate (recodb_query.predicted) */
    int rc;         /* a store error met inside the filter */
} decision;

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static bool excluded(const decision *d, const char *id)
{
    return d->nexclude && bsearch(&id, d->exclude, d->nexclude, sizeof *d->exclude, cmp_str);
}

static bool has_name(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static bool in_any_segment(const cxm_replica_customer *c, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cxm_replica_in_segment(c, v[i]))
            return true;
    return false;
}

static bool all_granted(const cxm_replica_customer *c, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!cxm_replica_granted(c, v[i]))
            return false;
    return true;
}

/* The rules that depend on the experience and the context alone. */
static bool fits_context(const decision *d, const xdb_exp *e)
{
    if (e->disabled || (e->valid_from && d->now_ms < e->valid_from) ||
        (e->valid_until && d->now_ms >= e->valid_until))
        return false;
    if (d->kinds && !(d->kinds & (1u << (e->kind & 31))))
        return false;
    if (e->stages && !(d->stage > 0 && d->stage < 32 && (e->stages & (1u << d->stage))))
        return false;
    if (e->channels && !(d->channel > 0 && d->channel < 32 && (e->channels & (1u << d->channel))))
        return false;
    if (e->nplacements && !(*d->placement && has_name(e->placements, e->nplacements, d->placement)))
        return false;
    return true;
}

/* The rules about the customer: segments, consents, caps and pauses. */
static bool fits_customer(decision *d, const xdb_exp *e)
{
    if (e->nsegments && !in_any_segment(&d->cust, e->segments, e->nsegments))
        return false;
    if (e->nexcluded && in_any_segment(&d->cust, e->excluded_segments, e->nexcluded))
        return false;
    if (e->nconsents && !all_granted(&d->cust, e->consents, e->nconsents))
        return false;
    if (!d->customer || (!e->ncaps && !e->pause_after_accept_ms && !e->pause_after_dismiss_ms))
        return true;
    xdb_contact c;
    int rc = xdb_contact_get(d->t, d->ctx->db, d->customer, e->id, &c);
    if (rc != 0) {
        d->rc = rc;
        return false;
    }
    return xdb_contact_allows(&c, e, d->now_ms);
}

static void hold(decision *d, const xdb_exp *e)
{
    uint32_t n = d->held_back < HELD_MAX ? d->held_back : HELD_MAX;
    for (uint32_t i = 0; i < n; i++)
        if (d->held[i] == e)
            return;
    if (d->held_back < HELD_MAX)
        d->held[d->held_back] = e;
    d->held_back++;
}

/* Whether e may be shown; offers held back by service recovery are
 * counted. */
static bool eligible(decision *d, const xdb_exp *e)
{
    if (!fits_context(d, e) || excluded(d, e->id) || !fits_customer(d, e))
        return false;
    if (d->recovery && d->ctx->flags.hold_offers &&
        e->kind == CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_OFFER) {
        hold(d, e);
        return false;
    }
    return true;
}

/* recodb's filter: a catalogue experience that is eligible. */
static bool filter_eligible(const char *item, size_t len, void *user)
{
    decision *d = user;
    const xdb_exp *e = xdb_catalog_find(d->ctx->db, item, len);
    return e && eligible(d, e);
}

static bool recent(int64_t at, int64_t now, int64_t window)
{
    return at > 0 && now - at <= window;
}

/* Service recovery (design step 4), with the reason a person reads. */
static void recovery_of(decision *d)
{
    int64_t window = (int64_t)d->ctx->flags.recovery_days * DAY_MS;
    if (recent(d->sig.last_detractor_ms, d->now_ms, window))
        d->recovery_why = "detractor NPS";
    else if (recent(d->sig.last_strong_negative_ms, d->now_ms, window))
        d->recovery_why = "negative comment";
    else if (d->sig.open_follow_ups > 0)
        d->recovery_why = "open follow-up";
    d->recovery = d->recovery_why != NULL;
}

/* ---- candidates and arbitration ---- */

typedef enum cand_src { SRC_MODEL, SRC_POPULAR, SRC_FILL, SRC_RECOVERY } cand_src;

typedef struct cand {
    const xdb_exp *e;
    cand_src src;
    double propensity, fit, model_score, score;
    size_t idx; /* recodb's order, which breaks ties (popularity without a model) */
} cand;

/* Eligible service actions, pinned first (recodb ranks INFINITY first). */
static size_t recovery_extras(decision *d, recodb_rec *out, size_t max)
{
    const xdb_exp *const *v;
    size_t n = xdb_catalog_service_actions(d->ctx->db, &v), m = 0;
    for (size_t i = 0; i < n && m < max; i++)
        if (eligible(d, v[i]))
            out[m++] = (recodb_rec){.item = v[i]->id, .score = INFINITY};
    return m;
}

static bool returned(const recodb_rec *r, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].item, id) == 0)
            return true;
    return false;
}

/* Other eligible catalogue experiences, highest value x weight first
 * (the catalogue's order), after what recodb returned: up to max, and no
 * more than twice what is missing (recodb drops the consumed ones), so a
 * large catalogue is not walked to its end. */
static size_t fill_extras(decision *d, const recodb_rec *got, size_t ngot, size_t missing,
                          recodb_rec *out, size_t max)
{
    const xdb_exp *const *all;
    size_t n = xdb_catalog_all(d->ctx->db, &all), m = 0;
    size_t want = 2 * missing + FILL_SLACK < max ? 2 * missing + FILL_SLACK : max;
    for (size_t i = 0; i < n && m < want; i++)
        if (!returned(got, ngot, all[i]->id) && eligible(d, all[i])) {
            out[m] = (recodb_rec){.item = all[i]->id, .score = EXTRA_FILL_SCORE * (float)(m + 1)};
            m++;
        }
    return m;
}

/* recodb's answer with the extras given. */
static int ask(decision *d, recodb_query *q, recodb_rec **recs, size_t *n, uint64_t *version,
               char *err)
{
    recodb_reader *r = nbe_reader(d->ctx);
    if (!r)
        return CXM_ENOMEM;
    char why[256] = "";
    int rc = recodb_recommend(d->ctx->reco, r, d->a, q, recs, n, version, why, sizeof why);
    if (rc == 0 && d->rc)
        rc = d->rc;
    if (rc != 0 && *why)
        cxm_svc_errf(err, rc, NULL, "recommending: %s", why);
    return rc;
}

/* Design step 6: the model's candidates under the filter, the recovery
 * service actions pinned, and a catalogue fill when fewer than k came. */
static int candidates(decision *d, const Cxm__V1__RecommendRequest *req, uint32_t k,
                      recodb_rec **recs, size_t *n, uint64_t *version, char *err)
{
    recodb_rec *extra = cxm_arena_alloc(d->a, RECODB_EXTRA_MAX * sizeof *extra);
    if (!extra)
        return CXM_ENOMEM;
    size_t kq = 3 * (size_t)k < CANDIDATES_MAX ? 3 * (size_t)k : CANDIDATES_MAX;
    recodb_query q = {.customer = d->customer ? d->customer : NOBODY,
                      .now = d->now_ms / 1000,
                      .exclude = (const char *const *)req->exclude_experience_ids,
                      .nexclude = req->n_exclude_experience_ids,
                      .extra = extra,
                      .nextra = d->recovery ? recovery_extras(d, extra, RECODB_EXTRA_MAX) : 0,
                      .k = kq,
                      .filter = filter_eligible,
                      .filter_user = d,
                      .predicted = &d->predicted};
    int rc = ask(d, &q, recs, n, version, err);
    if (rc != 0 || *n >= k)
        return rc;
    size_t nfill = fill_extras(d, *recs, *n, k - *n, extra + q.nextra, RECODB_EXTRA_MAX - q.nextra);
    if (nfill == 0)
        return 0;
    q.nextra += nfill;
    return ask(d, &q, recs, n, version, err);
}

static double context_fit(const decision *d, const xdb_exp *e)
{
    return e->stages && d->stage > 0 && d->stage < 32 && (e->stages & (1u << d->stage)) ? STAGE_FIT
                                                                                        : 1.0;
}

static bool is_service_action(const xdb_exp *e)
{
    return e->kind == CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_SERVICE_ACTION;
}

static cand_src source_of(const decision *d, const xdb_exp *e, const recodb_rec *r)
{
    if (isinf(r->score) && r->score > 0)
        return d->recovery && is_service_action(e) ? SRC_RECOVERY : SRC_FILL;
    if (r->score <= EXTRA_FILL_SCORE)
        return SRC_FILL;
    return r->popular ? SRC_POPULAR : SRC_MODEL;
}

/* Design step 7: score = propensity x context fit x (1 + value) x weight. */
static void arbitrate_one(const decision *d, const recodb_rec *r, const xdb_exp *e, cand *c)
{
    c->e = e;
    c->src = source_of(d, e, r);
    bool model = c->src == SRC_MODEL || c->src == SRC_POPULAR;
    c->propensity = model && r->propensity > 0 ? r->propensity : FILL_PROPENSITY;
    c->model_score = model ? r->score : 0;
    c->fit = context_fit(d, e);
    c->score = c->propensity * c->fit * (1 + e->value) * e->weight;
}

static int cmp_cand(const void *x, const void *y)
{
    const cand *a = x, *b = y;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Service actions first in recovery, each group by score. */
static void rank(const decision *d, cand *c, size_t n)
{
    qsort(c, n, sizeof *c, cmp_cand);
    if (!d->recovery)
        return;
    size_t w = 0;
    cand tmp;
    for (size_t i = 0; i < n; i++) /* a stable partition: insertion keeps scores ordered */
        if (is_service_action(c[i].e)) {
            tmp = c[i];
            memmove(c + w + 1, c + w, (i - w) * sizeof *c);
            c[w++] = tmp;
        }
}

/* ---- explanations (design step 8) ---- */

typedef struct term {
    int kind;
    double w;
    const char *text, *item;
} term;

#define TERMS_MAX (EXPLAIN_ITEMS + 6)

static void term_add(term *v, size_t *n, int kind, double w, const char *text, const char *item)
{
    if (!(w > 0) || !text)
        return;
    for (size_t i = 0; !item && i < *n; i++)
        if (v[i].kind == kind && !v[i].item) { /* one reason per kind, except history items */
            v[i].w += w;
            return;
        }
    if (*n < TERMS_MAX)
        v[(*n)++] = (term){kind, w, text, item};
}

/* "consideration" for JOURNEY_STAGE_CONSIDERATION, in a. */
static const char *stage_name(cxm_arena *a, int stage)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cxm__v1__journey_stage__descriptor, stage);
    const char *s = v ? v->name : "unknown";
    const char *p = strncmp(s, "JOURNEY_STAGE_", 14) == 0 ? s + 14 : s;
    char *out = cxm_arena_strndup(a, p, strlen(p));
    for (char *c = out; c && *c; c++)
        *c = *c == '_' ? ' ' : (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    return out;
}

/* The model's term, split among the reasons it stands for. */
static int model_terms(decision *d, const cand *c, term *v, size_t *n)
{
    cxm_arena *a = d->a;
    if (c->src == SRC_POPULAR) {
        term_add(v, n, CXM__V1__REASON_KIND__REASON_KIND_POPULAR, 1, "popular lately", NULL);
        return 0;
    }
    recodb_why why[EXPLAIN_ITEMS];
    size_t nw = 0;
    recodb_reader *r = nbe_reader(d->ctx);
    int rc = r ? recodb_explain(d->ctx->reco, r, a, d->customer ? d->customer : NOBODY,
                                d->now_ms / 1000, c->e->id, why, EXPLAIN_ITEMS, &nw)
               : CXM_ENOMEM;
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    double total = 0;
    for (size_t i = 0; rc == 0 && i < nw; i++)
        total += why[i].share > 0 ? why[i].share : 0;
    if (rc != 0 || !(total > 0)) {
        term_add(v, n, CXM__V1__REASON_KIND__REASON_KIND_SIMILAR_CUSTOMERS, 1,
                 "customers with a similar history chose it", NULL);
        return 0;
    }
    for (size_t i = 0; i < nw; i++)
        term_add(v, n, CXM__V1__REASON_KIND__REASON_KIND_SIMILAR_TO_HISTORY, why[i].share / total,
                 afmt(a, "similar to %s you interacted with", why[i].item), why[i].item);
    return 0;
}

/* Every term of c's score as reasons whose contributions sum to 1. */
static int explain(decision *d, const cand *c, Cxm__V1__Recommendation *out)
{
    cxm_arena *a = d->a;
    term v[TERMS_MAX];
    size_t n = 0;
    const xdb_exp *e = c->e;
    int rc = 0;
    if (c->src == SRC_FILL)
        term_add(v, &n, CXM__V1__REASON_KIND__REASON_KIND_VALUE, 1,
                 afmt(a, "valuable: business value %g", e->value), NULL);
    else if (c->src == SRC_RECOVERY)
        term_add(v, &n, CXM__V1__REASON_KIND__REASON_KIND_SERVICE_RECOVERY, 1,
                 afmt(a, "you recently had a bad experience: %s", d->recovery_why), NULL);
    else
        rc = model_terms(d, c, v, &n);
    if (rc != 0)
        return rc;
    term_add(v, &n, CXM__V1__REASON_KIND__REASON_KIND_STAGE_FIT, c->fit - 1,
             afmt(a, "fits your stage %s", s0(stage_name(a, d->stage))), NULL);
    term_add(v, &n, CXM__V1__REASON_KIND__REASON_KIND_VALUE, log1p(e->value),
             afmt(a, "valuable: business value %g", e->value), NULL);
    term_add(v, &n, CXM__V1__REASON_KIND__REASON_KIND_BOOSTED, e->weight > 1 ? log(e->weight) : 0,
             afmt(a, "boosted x%g", e->weight), NULL);
    if (d->recovery && is_service_action(e))
        term_add(v, &n, CXM__V1__REASON_KIND__REASON_KIND_SERVICE_RECOVERY, 1,
                 afmt(a, "you recently had a bad experience: %s", d->recovery_why), NULL);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i].w;
    Cxm__V1__Reason *rs = cxm_arena_calloc(a, n, sizeof *rs);
    out->reasons = cxm_arena_alloc(a, (n + 1) * sizeof *out->reasons);
    if (!rs || !out->reasons)
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        cxm__v1__reason__init(&rs[i]);
        rs[i].kind = (Cxm__V1__ReasonKind)v[i].kind;
        rs[i].text = (char *)v[i].text;
        rs[i].related_item_id = (char *)s0(v[i].item);
        rs[i].contribution = v[i].w / sum;
        out->reasons[i] = &rs[i];
    }
    out->n_reasons = n;
    return 0;
}

/* ---- the response ---- */

static int recommendation(decision *d, const cand *c, uint32_t rank, bool explain_it,
                          Cxm__V1__Recommendation **out)
{
    Cxm__V1__Recommendation *m = cxm_arena_alloc(d->a, sizeof *m);
    if (!m)
        return CXM_ENOMEM;
    cxm__v1__recommendation__init(m);
    const Cxm__V1__Experience *x = c->e->msg;
    m->experience_id = (char *)c->e->id;
    m->kind = (Cxm__V1__ExperienceKind)c->e->kind;
    m->title = x ? x->title : "";
    m->score = c->score;
    m->model_score = c->model_score;
    m->rank = rank;
    /* The two map entry types are the same message (key 1, value 2), so
     * the experience's entries pack as the recommendation's. */
    m->n_metadata = x ? x->n_metadata : 0;
    m->metadata = x ? (Cxm__V1__Recommendation__MetadataEntry **)x->metadata : NULL;
    *out = m;
    return explain_it ? explain(d, c, m) : 0;
}

/* Candidates to ranked recommendations (steps 7 and 8). */
static int arbitrate(decision *d, const Cxm__V1__RecommendRequest *req, uint32_t k,
                     const recodb_rec *recs, size_t n, Cxm__V1__RecommendResponse *resp)
{
    cand *c = cxm_arena_alloc(d->a, (n + 1) * sizeof *c);
    if (!c)
        return CXM_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const xdb_exp *e = xdb_catalog_find(d->ctx->db, recs[i].item, strlen(recs[i].item));
        if (!e)
            continue;
        arbitrate_one(d, &recs[i], e, &c[m]);
        c[m].idx = i;
        m++;
    }
    rank(d, c, m);
    if (m > k)
        m = k;
    /* Not "no result was predicted": in recovery every prediction may be
     * an offer held back, and the customer still has a history. */
    resp->cold_start = !d->predicted;
    resp->recommendations = cxm_arena_alloc(d->a, (m + 1) * sizeof *resp->recommendations);
    if (!resp->recommendations)
        return CXM_ENOMEM;
    for (size_t i = 0; i < m; i++) {
        int rc = recommendation(d, &c[i], (uint32_t)i + 1, req->explain, &resp->recommendations[i]);
        if (rc != 0)
            return rc;
    }
    resp->n_recommendations = m;
    return 0;
}

/* Steps 3 to 11 over an open decision. */
static int decide(decision *d, const Cxm__V1__RecommendRequest *req,
                  Cxm__V1__RecommendResponse *resp, char *err)
{
    uint32_t k = nbe_k(req->k);
    recodb_rec *recs = NULL;
    size_t n = 0;
    uint64_t version = 0;
    int rc = candidates(d, req, k, &recs, &n, &version, err);
    if (rc == 0)
        rc = arbitrate(d, req, k, recs, n, resp);
    if (rc != 0)
        return rc;
    resp->customer_id = (char *)s0(d->customer);
    resp->model_version = version;
    resp->service_recovery = d->recovery;
    resp->offers_held_back = d->held_back;
    resp->recommendation_id = recommendation_id(d->a);
    return resp->recommendation_id ? 0 : CXM_ENOMEM;
}

static int sorted_copy(cxm_arena *a, char *const *v, size_t n, char ***out)
{
    char **c = cxm_arena_alloc(a, (n + 1) * sizeof *c);
    if (!c)
        return CXM_ENOMEM;
    if (n) /* v is NULL for an empty list */
        memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_str);
    *out = c;
    return 0;
}

/* Step 2 and the context: one read transaction (left open in *d) and the
 * catalogue locked; on failure neither is held. */
static int decision_open(nbe_ctx *ctx, cxm_arena *a, const Cxm__V1__RecommendRequest *req,
                         const char *customer_id, decision *d)
{
    *d = (decision){.ctx = ctx, .a = a, .now_ms = cxm_svc_now_ms()};
    const Cxm__V1__RecommendContext *cx = req->context;
    d->channel = cx ? (int)cx->channel : 0;
    d->placement = cx ? s0(cx->placement) : "";
    for (size_t i = 0; i < req->n_kinds; i++)
        d->kinds |= 1u << (req->kinds[i] & 31);
    int rc =
        sorted_copy(a, req->exclude_experience_ids, req->n_exclude_experience_ids, &d->exclude);
    d->nexclude = req->n_exclude_experience_ids;
    if (rc == 0)
        rc = cxm_store_read_begin(ctx->store, &d->t);
    if (rc != 0)
        return rc;
    if (customer_id)
        rc = cxm_replica_root(d->t, ctx->replica, a, customer_id, &d->customer);
    if (rc == 0 && d->customer)
        rc = cxm_replica_get(d->t, ctx->replica, a, d->customer, &d->cust);
    if (rc == 0 && d->customer)
        rc = xdb_signals_get(d->t, ctx->db, d->customer, &d->sig);
    if (rc == 0)
        rc = xdb_catalog_lock(ctx->db, d->t);
    if (rc != 0) {
        cxm_store_read_end(d->t);
        return rc;
    }
    d->stage = cx && cx->stage ? (int)cx->stage : d->cust.stage;
    recovery_of(d);
    return 0;
}

static void decision_close(decision *d)
{
    xdb_catalog_unlock(d->ctx->db);
    cxm_store_read_end(d->t);
}

/* ---- Recommend ---- */

/* The customer of a call, resolved on the queue's thread: 0, or why not. */
static int resolved_customer(const cxm_resolve_item *it, int rc, char *err)
{
    if (rc == CXM_EUNAVAIL)
        return cxm_svc_errf(err, rc, "customer",
                            "the profile service cannot resolve the customer now (%s): retry "
                            "later (nothing was stored)",
                            cxm_resolver_last_error());
    if (rc == 0 && it->rc != 0)
        return cxm_svc_errf(err, it->rc, "customer", "%s", s0(it->why));
    return rc;
}

typedef struct impress_in {
    Cxm__V1__RecommendResponse *resp;
} impress_in;

/* Step 10: an IMPRESSION per returned experience, answered after the
 * commit. */
static int impress_job(cxm_txn *t, cxm_svc_job *j)
{
    nbe_ctx *ctx = j->ctx;
    const impress_in *in = j->req;
    const Cxm__V1__RecommendResponse *r = in->resp;
    for (size_t i = 0; i < r->n_recommendations; i++) {
        int rc =
            xdb_contact_record(t, ctx->db, r->customer_id, r->recommendations[i]->experience_id,
                               CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION, j->now);
        if (rc != 0)
            return rc;
    }
    j->resp = &in->resp->base;
    return 0;
}

/* A copy of m in a that shares nothing with the catalogue (whose memory
 * may change once its lock is released). */
static ProtobufCMessage *deep_copy(cxm_arena *a, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = cxm_arena_alloc(a, len + 1);
    if (!buf)
        return NULL;
    protobuf_c_message_pack(m, buf);
    return protobuf_c_message_unpack(m->descriptor, cxm_arena_protobuf(a), len, buf);
}

static void recommend_answer(nbe_ctx *ctx, cxm_call *call, const Cxm__V1__RecommendRequest *req,
                             const char *customer_id)
{
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    decision d;
    int rc = decision_open(ctx, a, req, customer_id, &d);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    Cxm__V1__RecommendResponse resp = CXM__V1__RECOMMEND_RESPONSE__INIT;
    rc = decide(&d, req, &resp, err);
    bool write = rc == 0 && req->record_impressions && d.customer && resp.n_recommendations;
    impress_in *in = write ? cxm_arena_alloc(a, sizeof *in) : NULL;
    if (write && (!in || !(in->resp = (Cxm__V1__RecommendResponse *)deep_copy(a, &resp.base))))
        rc = CXM_ENOMEM;
    if (rc == 0 && !write)
        cxm_call_reply(call, &resp.base); /* packed now, while the catalogue is locked */
    decision_close(&d);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    if (write)
        cxm_svc_submit(call, ctx->store, in, impress_job);
}

/* On the resolve queue's thread: an unknown identity is a cold start. */
static void recommend_resolved(cxm_call *call, void *in, const cxm_resolve_item *it, int rc,
                               void *user)
{
    char err[CXM_SVC_ERR_MAX] = "";
    bool unknown = rc == 0 && it->rc == CXM_ENOTFOUND;
    if (!unknown && (rc = resolved_customer(it, rc, err)) != 0)
        return cxm_svc_finish(call, rc, err);
    recommend_answer(user, call, in, unknown ? NULL : it->customer_id);
}

static void on_recommend(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__RecommendRequest *req = (Cxm__V1__RecommendRequest *)msg;
    nbe_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = nbe_check_recommend(cxm_call_arena(call), req, err);
    if (rc == 0 && req->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return recommend_answer(ctx, call, req, req->customer->customer_id);
    if (rc == 0)
        rc = cxm_resolve_queue_push(ctx->queue, call, req->customer, true, req, recommend_resolved,
                                    ctx);
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

/* ---- RecordOutcome ---- */

typedef struct outcome_in {
    const Cxm__V1__RecordOutcomeRequest *req;
    const char *customer_id; /* resolved */
} outcome_in;

/* An outcome's signal for the model: accept is the strong one. */
static float outcome_weight(int outcome)
{
    return outcome == CXM__V1__OUTCOME_KIND__OUTCOME_KIND_ACCEPT  ? ACCEPT_WEIGHT
           : outcome == CXM__V1__OUTCOME_KIND__OUTCOME_KIND_CLICK ? CLICK_WEIGHT
                                                                  : 0;
}

static int outcome_job(cxm_txn *t, cxm_svc_job *j)
{
    nbe_ctx *ctx = j->ctx;
    const outcome_in *in = j->req;
    const Cxm__V1__RecordOutcomeRequest *req = in->req;
    Cxm__V1__RecordOutcomeResponse *resp =
        cxm_svc_response(j, &cxm__v1__record_outcome_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    const char *who;
    bool dup;
    int rc = cxm_replica_root(t, ctx->replica, j->a, in->customer_id, &who);
    if (rc == 0)
        rc = xdb_outcome_claim(t, ctx->db, req->outcome_id, who, &dup);
    if (rc != 0)
        return rc;
    resp->customer_id = (char *)who;
    resp->duplicate = dup;
    if (dup)
        return 0;
    int64_t at = req->occurred_at_unix_ms ? req->occurred_at_unix_ms : j->now;
    if ((rc = xdb_contact_record(t, ctx->db, who, req->experience_id, req->outcome, at)) != 0)
        return rc;
    float w = outcome_weight(req->outcome);
    if (w == 0)
        return 0;
    recodb_event ev = {.customer = who, .item = req->experience_id, .weight = w, .ts = at / 1000};
    char why[256] = "";
    rc = recodb_append_txn(t, ctx->reco, &ev, 1, why, sizeof why);
    if (rc != 0 && *why)
        cxm_svc_errf(j->err, rc, NULL, "recording the interaction: %s", why);
    return rc;
}

static void outcome_submit(nbe_ctx *ctx, cxm_call *call, const Cxm__V1__RecordOutcomeRequest *req,
                           const char *customer_id)
{
    outcome_in *in = cxm_arena_alloc(cxm_call_arena(call), sizeof *in);
    if (!in)
        return cxm_svc_finish(call, CXM_ENOMEM, "");
    *in = (outcome_in){req, customer_id};
    cxm_svc_submit(call, ctx->store, in, outcome_job);
}

static void outcome_resolved(cxm_call *call, void *in, const cxm_resolve_item *it, int rc,
                             void *user)
{
    char err[CXM_SVC_ERR_MAX] = "";
    if ((rc = resolved_customer(it, rc, err)) != 0)
        return cxm_svc_finish(call, rc, err);
    outcome_submit(user, call, in, it->customer_id);
}

/* Unknown experiences are refused before a profile is created. */
static int experience_known(nbe_ctx *ctx, cxm_arena *a, const char *id, char *err)
{
    cxm_txn *t;
    int rc = cxm_store_read_begin(ctx->store, &t);
    if (rc != 0)
        return rc;
    Cxm__V1__Experience *e;
    rc = xdb_experience_get(t, ctx->db, a, id, &e);
    cxm_store_read_end(t);
    if (rc == CXM_ENOTFOUND)
        cxm_svc_errf(err, rc, "experience_id",
                     "no experience \"%s\" in the catalogue: create it with UpsertExperience", id);
    return rc;
}

static void on_outcome(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__RecordOutcomeRequest *req = (Cxm__V1__RecordOutcomeRequest *)msg;
    nbe_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = nbe_check_outcome(a, req, cxm_svc_now_ms(), err);
    if (rc == 0)
        rc = experience_known(ctx, a, req->experience_id, err);
    if (rc == 0 && req->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return outcome_submit(ctx, call, req, req->customer->customer_id);
    if (rc == 0)
        rc = cxm_resolve_queue_push(ctx->queue, call, req->customer, false, req, outcome_resolved,
                                    ctx);
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

/* ---- RecordInteractions ---- */

typedef struct inter_in {
    const Cxm__V1__RecordInteractionsRequest *req;
    const char **customer; /* per item: resolved id; NULL = rejected */
    Cxm__V1__InteractionRejection **rejected;
    size_t nrejected;
    cxm_resolve_item *items; /* the identity refs, resolved on the queue */
    size_t *item_of;         /* items[i] is interaction item_of[i] */
    size_t nitems;
} inter_in;

static int reject(cxm_arena *a, inter_in *in, size_t i, const char *why)
{
    Cxm__V1__InteractionRejection *r = cxm_arena_alloc(a, sizeof *r);
    char *w = cxm_arena_strndup(a, why, strlen(why));
    if (!r || !w)
        return CXM_ENOMEM;
    cxm__v1__interaction_rejection__init(r);
    r->index = (uint32_t)i;
    r->interaction_id = (char *)s0(in->req->interactions[i]->interaction_id);
    r->reason = w;
    in->rejected[in->nrejected++] = r;
    in->customer[i] = NULL;
    return 0;
}

/* Rejections are kept in index order for the reply. */
static int cmp_rejection(const void *x, const void *y)
{
    uint32_t a = (*(Cxm__V1__InteractionRejection *const *)x)->index;
    uint32_t b = (*(Cxm__V1__InteractionRejection *const *)y)->index;
    return a < b ? -1 : a > b;
}

static int inter_job(cxm_txn *t, cxm_svc_job *j)
{
    nbe_ctx *ctx = j->ctx;
    const inter_in *in = j->req;
    size_t n = in->req->n_interactions, nev = 0;
    Cxm__V1__RecordInteractionsResponse *resp =
        cxm_svc_response(j, &cxm__v1__record_interactions_response__descriptor);
    recodb_event *ev = cxm_arena_alloc(j->a, (n + 1) * sizeof *ev);
    if (!resp || !ev)
        return CXM_ENOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const Cxm__V1__Interaction *it = in->req->interactions[i];
        const char *who;
        bool dup = false;
        if (!in->customer[i])
            continue;
        rc = cxm_replica_root(t, ctx->replica, j->a, in->customer[i], &who);
        if (rc == 0)
            rc = xdb_interaction_claim(t, ctx->db, it->interaction_id, who, &dup);
        if (rc != 0 || (dup && ++resp->duplicates))
            continue;
        int64_t at = it->occurred_at_unix_ms ? it->occurred_at_unix_ms : j->now;
        ev[nev++] = (recodb_event){who, it->item_id, (float)it->weight, at / 1000};
    }
    char why[256] = "";
    if (rc == 0 && nev)
        rc = recodb_append_txn(t, ctx->reco, ev, nev, why, sizeof why);
    if (rc != 0 && *why)
        cxm_svc_errf(j->err, rc, NULL, "recording the interactions: %s", why);
    resp->accepted = (uint32_t)nev;
    resp->rejected = in->rejected;
    resp->n_rejected = in->nrejected;
    return rc;
}

static void inter_resolved(cxm_call *call, void *arg, cxm_resolve_item *items, size_t n, int rc,
                           void *user)
{
    inter_in *in = arg;
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    if (rc != 0) {
        resolved_customer(NULL, rc, err);
        return cxm_svc_finish(call, rc, err);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t at = in->item_of[i];
        if (items[i].rc == 0)
            in->customer[at] = items[i].customer_id;
        else
            rc = reject(a, in, at, afmt(a, "customer: %s", s0(items[i].why)));
    }
    if (rc != 0)
        return cxm_svc_finish(call, rc, "");
    qsort(in->rejected, in->nrejected, sizeof *in->rejected, cmp_rejection);
    cxm_svc_submit(call, ((nbe_ctx *)user)->store, in, inter_job);
}

/* Each item checked; customer_id refs are taken as they are, identity
 * refs listed for the queue. */
static int inter_sort(cxm_arena *a, inter_in *in, int64_t now)
{
    size_t n = in->req->n_interactions;
    in->customer = cxm_arena_calloc(a, n, sizeof *in->customer);
    in->rejected = cxm_arena_alloc(a, n * sizeof *in->rejected);
    in->items = cxm_arena_calloc(a, n, sizeof *in->items);
    in->item_of = cxm_arena_alloc(a, n * sizeof *in->item_of);
    if (!in->customer || !in->rejected || !in->items || !in->item_of)
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Cxm__V1__Interaction *it = in->req->interactions[i];
        char why[CXM_SVC_ERR_MAX] = "";
        if (nbe_check_interaction(a, it, now, why) != 0) {
            if (reject(a, in, i, why) != 0)
                return CXM_ENOMEM;
        } else if (it->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID) {
            in->customer[i] = it->customer->customer_id;
        } else {
            in->item_of[in->nitems] = i;
            in->items[in->nitems++] = (cxm_resolve_item){.customer = it->customer};
        }
    }
    return 0;
}

static void on_interactions(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__RecordInteractionsRequest *req = (Cxm__V1__RecordInteractionsRequest *)msg;
    nbe_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    inter_in *in = cxm_arena_calloc(a, 1, sizeof *in);
    int rc = in ? nbe_check_interactions(req, err) : CXM_ENOMEM;
    if (rc == 0) {
        in->req = req;
        rc = inter_sort(a, in, cxm_svc_now_ms());
    }
    if (rc == 0 && in->nitems == 0)
        return cxm_svc_submit(call, ctx->store, in, inter_job);
    if (rc == 0)
        rc = cxm_resolve_queue_push_many(ctx->queue, call, in->items, in->nitems, in,
                                         inter_resolved, ctx);
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

/* ---- SimilarExperiences ---- */

typedef struct similar_filter {
    const xdb *db;
    bool only_available;
    int64_t now_ms;
    const char *self;
} similar_filter;

static bool filter_similar(const char *item, size_t len, void *user)
{
    const similar_filter *f = user;
    const xdb_exp *e = xdb_catalog_find(f->db, item, len);
    if (!e || strcmp(e->id, f->self) == 0)
        return false;
    return !f->only_available || (!e->disabled && (!e->valid_from || f->now_ms >= e->valid_from) &&
                                  (!e->valid_until || f->now_ms < e->valid_until));
}

static int similar_answer(nbe_ctx *ctx, cxm_arena *a, const Cxm__V1__SimilarExperiencesRequest *req,
                          Cxm__V1__SimilarExperiencesResponse *resp, char *err)
{
    if (!xdb_catalog_find(ctx->db, req->experience_id, strlen(req->experience_id)))
        return cxm_svc_errf(err, CXM_ENOTFOUND, "experience_id",
                            "no experience \"%s\" in the catalogue", req->experience_id);
    similar_filter f = {ctx->db, req->only_available, cxm_svc_now_ms(), req->experience_id};
    recodb_reader *r = nbe_reader(ctx);
    recodb_rec *recs = NULL;
    size_t n = 0;
    int rc = r ? recodb_similar(ctx->reco, r, a, req->experience_id, nbe_k(req->k), filter_similar,
                                &f, &recs, &n, &resp->model_version)
               : CXM_ENOMEM;
    if (rc == CXM_ENOTFOUND) /* no model yet: nothing is similar */
        return 0;
    Cxm__V1__SimilarExperience *v = cxm_arena_calloc(a, n + 1, sizeof *v);
    resp->experiences = cxm_arena_alloc(a, (n + 1) * sizeof *resp->experiences);
    if (rc == 0 && (!v || !resp->experiences))
        rc = CXM_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        cxm__v1__similar_experience__init(&v[i]);
        v[i].experience_id = cxm_arena_strndup(a, recs[i].item, strlen(recs[i].item));
        v[i].similarity = recs[i].score;
        resp->experiences[i] = &v[i];
    }
    if (rc == 0)
        resp->n_experiences = n;
    return rc;
}

static void on_similar(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__SimilarExperiencesRequest *req = (const Cxm__V1__SimilarExperiencesRequest *)msg;
    nbe_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    cxm_txn *t;
    int rc = nbe_check_similar(req, err);
    if (rc != 0 || (rc = cxm_store_read_begin(ctx->store, &t)) != 0)
        return cxm_svc_finish(call, rc, err);
    Cxm__V1__SimilarExperiencesResponse resp = CXM__V1__SIMILAR_EXPERIENCES_RESPONSE__INIT;
    rc = xdb_catalog_lock(ctx->db, t);
    if (rc == 0) {
        rc = similar_answer(ctx, cxm_call_arena(call), req, &resp, err);
        xdb_catalog_unlock(ctx->db);
    }
    cxm_store_read_end(t);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_call_reply(call, &resp.base);
}

/* ---- UpsertExperience, ListExperiences ---- */

static int upsert_job(cxm_txn *t, cxm_svc_job *j)
{
    nbe_ctx *ctx = j->ctx;
    const Cxm__V1__UpsertExperienceRequest *req = j->req;
    Cxm__V1__UpsertExperienceResponse *resp =
        cxm_svc_response(j, &cxm__v1__upsert_experience_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    bool created = false;
    int rc =
        xdb_experience_put(t, ctx->db, j->a, req->experience, j->now, &resp->experience, &created);
    resp->created = created;
    return rc;
}

static void on_upsert(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__UpsertExperienceRequest *req = (const Cxm__V1__UpsertExperienceRequest *)msg;
    nbe_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = nbe_check_experience(req->experience, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, ctx->store, req, upsert_job);
}

typedef struct list_ctx {
    cxm_arena *a;
    int limit;
    size_t budget, used, n;
    Cxm__V1__Experience **out;
    bool more;
} list_ctx;

static int list_one(const Cxm__V1__Experience *e, void *user)
{
    list_ctx *l = user;
    size_t size = cxm_svc_field_size(protobuf_c_message_get_packed_size(&e->base));
    if (l->n == (size_t)l->limit || (l->n && l->used + size > l->budget)) {
        l->more = true;
        return 1;
    }
    l->used += size;
    l->out[l->n++] = (Cxm__V1__Experience *)e;
    return 0;
}

static void on_list(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__ListExperiencesRequest *req = (const Cxm__V1__ListExperiencesRequest *)msg;
    nbe_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    list_ctx l = {.a = a, .budget = cxm_svc_reply_budget(call, 200)};
    int rc = nbe_check_list(req, err);
    if (rc == 0)
        rc = cxm_svc_page_size((int32_t)req->page_size, NBE_PAGE_DEFAULT, NBE_PAGE_MAX, &l.limit,
                               err);
    if (rc == 0 && !(l.out = cxm_arena_alloc(a, (size_t)l.limit * sizeof *l.out)))
        rc = CXM_ENOMEM;
    cxm_txn *t;
    if (rc != 0 || (rc = cxm_store_read_begin(ctx->store, &t)) != 0)
        return cxm_svc_finish(call, rc, err);
    rc = xdb_experience_list(t, ctx->db, a, s0(req->page_token), list_one, &l);
    cxm_store_read_end(t);
    Cxm__V1__ListExperiencesResponse resp = CXM__V1__LIST_EXPERIENCES_RESPONSE__INIT;
    resp.experiences = l.out;
    resp.n_experiences = l.n;
    if (rc == 1)
        rc = 0;
    if (rc == 0 && l.more && l.n)
        resp.next_page_token = l.out[l.n - 1]->experience_id;
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_call_reply(call, &resp.base);
}

/* ---- the bus ---- */

/* An event that can never apply is skipped (logged), not retried forever. */
static int skip_bad(int rc, const Cxm__V1__Event *ev, const char *producer)
{
    if (rc != CXM_EINVAL && rc != CXM_ETOOBIG)
        return rc;
    cxm_log_warn("personalisation.event_skipped", "%s event %" PRIu64 " (%s of %s) ignored: %s",
                 producer, ev->sequence, s0(ev->type), s0(ev->customer_id), cxm_strerror(rc));
    return 0;
}

int nbe_apply_profile(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    nbe_ctx *ctx = user;
    int rc = cxm_replica_apply(t, ctx->replica, ev);
    if (rc == 0 && ev->payload_case == CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED) {
        const Cxm__V1__CustomerMerged *m = ev->customer_merged;
        rc = xdb_merge(t, ctx->db, m->source_customer_id, m->target_customer_id);
        if (rc == 0)
            rc = recodb_merge(t, ctx->reco, m->source_customer_id, m->target_customer_id);
    }
    if (rc == 0 && ev->payload_case == CXM__V1__EVENT__PAYLOAD_CUSTOMER_UNMERGED)
        cxm_resolver_invalidate(ctx->resolver);
    return skip_bad(rc, ev, "profile");
}

/* A touchpoint about an item is a signal for the model. */
static int apply_touchpoint(cxm_txn *t, nbe_ctx *ctx, const Cxm__V1__Event *ev)
{
    const Cxm__V1__TouchpointTracked *tp = ev->touchpoint_tracked;
    if (!*s0(tp->item_id) || !*s0(ev->customer_id))
        return 0;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    const char *who;
    int rc = cxm_replica_root(t, ctx->replica, &a, ev->customer_id, &who);
    double w = tp->strength > 0 && isfinite(tp->strength) ? tp->strength : 1;
    recodb_event e = {who, tp->item_id, (float)w, ev->occurred_at_unix_ms / 1000};
    char why[256] = "";
    if (rc == 0)
        rc = recodb_append_txn(t, ctx->reco, &e, 1, why, sizeof why);
    cxm_arena_dispose(&a);
    if (rc == CXM_EINVAL)
        cxm_log_warn("personalisation.touchpoint_skipped", "touchpoint %s not learned from: %s",
                     s0(tp->event_id), why);
    return rc == CXM_EINVAL ? 0 : rc;
}

int nbe_apply_journey(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    nbe_ctx *ctx = user;
    int rc = 0;
    if (ev->payload_case == CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED)
        rc = cxm_replica_apply(t, ctx->replica, ev);
    else if (ev->payload_case == CXM__V1__EVENT__PAYLOAD_TOUCHPOINT_TRACKED)
        rc = apply_touchpoint(t, ctx, ev);
    return skip_bad(rc, ev, "journey");
}

int nbe_apply_feedback(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    nbe_ctx *ctx = user;
    return skip_bad(xdb_signals_apply(t, ctx->db, ev), ev, "feedback");
}

static int erase_one(cxm_txn *t, nbe_ctx *ctx, const char *customer_id, uint64_t *records)
{
    uint64_t n = 0;
    int rc = xdb_erase(t, ctx->db, customer_id, &n);
    *records += n;
    n = 0;
    if (rc == 0)
        rc = recodb_erase(t, ctx->reco, customer_id, &n);
    *records += n;
    n = 0;
    if (rc == 0)
        rc = cxm_replica_erase(t, ctx->replica, customer_id, &n);
    *records += n;
    return rc;
}

int nbe_erase(cxm_txn *t, const char *customer_id, char *const *merged, size_t nmerged,
              uint64_t *records, void *user)
{
    nbe_ctx *ctx = user;
    uint64_t n = 0;
    int rc = erase_one(t, ctx, customer_id, &n);
    for (size_t i = 0; rc == 0 && i < nmerged; i++)
        rc = erase_one(t, ctx, merged[i], &n);
    if (rc == 0) {
        *records = n;
        cxm_resolver_invalidate(ctx->resolver);
    }
    return rc;
}

/* ---- the method table ---- */

const cxm_method nbe_methods[] = {
    CXM_UNARY_METHOD("UpsertExperience", cxm__v1__upsert_experience_request, on_upsert),
    CXM_UNARY_METHOD("Recommend", cxm__v1__recommend_request, on_recommend),
    CXM_UNARY_METHOD("RecordOutcome", cxm__v1__record_outcome_request, on_outcome),
    CXM_UNARY_METHOD("SimilarExperiences", cxm__v1__similar_experiences_request, on_similar),
    CXM_UNARY_METHOD("TrainModel", cxm__v1__train_model_request, nbe_on_train),
    CXM_UNARY_METHOD("GetModelInfo", cxm__v1__get_model_info_request, nbe_on_model_info),
    CXM_UNARY_METHOD("RecordInteractions", cxm__v1__record_interactions_request, on_interactions),
    CXM_UNARY_METHOD("ListExperiences", cxm__v1__list_experiences_request, on_list),
};
const size_t nbe_nmethods = sizeof nbe_methods / sizeof nbe_methods[0];

/* Who may call each method with auth on (auth.h has the whole table and the
 * reasoning); keep in step with the method table above. */
const cxm_method_access nbe_access[] = {
    {"UpsertExperience", CXM_ACCESS_WRITE},
    {"Recommend", CXM_ACCESS_READ},
    {"RecordOutcome", CXM_ACCESS_WRITE},
    {"SimilarExperiences", CXM_ACCESS_READ},
    {"TrainModel", CXM_ACCESS_ADMIN}, /* replaces what every customer is served */
    {"GetModelInfo", CXM_ACCESS_READ},
    {"RecordInteractions", CXM_ACCESS_INTERNAL}, /* fed by the other services */
    {"ListExperiences", CXM_ACCESS_READ},
};
const size_t nbe_naccess = sizeof nbe_access / sizeof nbe_access[0];
