/*
 * fan.c - GetScores and GapAnalysis (fan.h).
 *
 * Both walk the range as segments (one per time bucket, clipped to the
 * range). A segment is read from the cells (fagg.h) for its whole UTC hours
 * when the plan allows it, and from the records for the rest, so every
 * response lands in exactly one segment and the two paths add the same
 * integers and the same double-double sums.
 */
#include "fan.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/tz.h"

#define HOUR_MS 3600000LL
#define FAN_MAX_BUCKETS 1000
#define FAN_GAP_LIMIT 50
#define FAN_GAP_LIMIT_MAX 1000
#define FAN_GAP_MIN 30
#define FAN_IMPACT_MIN 30 /* NPS ratings needed before the correlation counts */
#define FAN_Z 1.96
/* 10000-01-01T00:00Z: range sides from here on are refused, so hour and
 * bucket edges (ceil_hour, cxm_tz_next) stay far from INT64_MAX. */
#define FAN_TIME_END 253402300800000LL

enum { KIND_NPS = 1, KIND_CSAT = 2, KIND_CES = 3 };

/* ---- small sets and maps ---------------------------------------------- */

/* Dictionary ids a filter allows; on = the filter was given. */
typedef struct idset {
    bool on;
    size_t n;
    uint32_t *ids;
} idset;

/* ids are sorted and unique (check_names), so a long filter list costs
 * log n per record, not n. */
static bool idset_has(const idset *s, uint32_t id)
{
    if (!s->on)
        return true;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->ids[lo] == id;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* Enum values a filter allows, as bits; 0 = no filter. */
static bool mask_has(uint64_t mask, unsigned v)
{
    return mask == 0 || (v < 64 && (mask >> v & 1));
}

/* Open addressing from a uint32 key to a slot of `size` bytes, zeroed on
 * insert; grows by doubling. */
typedef struct umap {
    size_t n, cap, size;
    uint32_t *keys;
    unsigned char *vals;
    bool *used;
} umap;

static size_t umap_hash(uint32_t k, size_t cap)
{
    return (size_t)((k * 2654435761u) ^ (k >> 16)) & (cap - 1);
}

static int umap_grow(umap *m)
{
    umap g = {.n = 0, .cap = m->cap ? m->cap * 2 : 64, .size = m->size};
    g.keys = calloc(g.cap, sizeof *g.keys);
    g.vals = calloc(g.cap, g.size);
    g.used = calloc(g.cap, sizeof *g.used);
    if (!g.keys || !g.vals || !g.used) {
        free(g.keys), free(g.vals), free(g.used);
        return CXM_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->used[i])
            continue;
        size_t j = umap_hash(m->keys[i], g.cap);
        while (g.used[j])
            j = (j + 1) & (g.cap - 1);
        g.used[j] = true, g.keys[j] = m->keys[i], g.n++;
        memcpy(g.vals + j * g.size, m->vals + i * m->size, m->size);
    }
    free(m->keys), free(m->vals), free(m->used);
    *m = g;
    return 0;
}

/* The slot of key, inserted zeroed if new; NULL when out of memory. */
static void *umap_get(umap *m, uint32_t key)
{
    if (m->cap) {
        size_t j = umap_hash(key, m->cap);
        for (; m->used[j]; j = (j + 1) & (m->cap - 1))
            if (m->keys[j] == key)
                return m->vals + j * m->size;
    }
    if ((m->n + 1) * 2 > m->cap && umap_grow(m))
        return NULL;
    size_t j = umap_hash(key, m->cap);
    while (m->used[j])
        j = (j + 1) & (m->cap - 1);
    m->used[j] = true, m->keys[j] = key, m->n++;
    return m->vals + j * m->size;
}

static void umap_free(umap *m)
{
    free(m->keys), free(m->vals), free(m->used);
}

/* ---- validation -------------------------------------------------------- */

static bool enum_known(const ProtobufCEnumDescriptor *d, int v)
{
    return protobuf_c_enum_descriptor_get_value(d, v) != NULL;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *e = protobuf_c_enum_descriptor_get_value(d, v);
    return e ? e->name : "";
}

/* The range: [*from, *to) with INT64_MIN / INT64_MAX for open ends. */
static int check_range(const Cxm__V1__TimeRange *r, int64_t *from, int64_t *to, char *err)
{
    *from = INT64_MIN, *to = INT64_MAX;
    if (!r)
        return 0;
    if (r->from_unix_ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "range.from_unix_ms",
                            "must not be negative: milliseconds since 1970");
    if (r->to_unix_ms < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "range.to_unix_ms",
                            "must not be negative: milliseconds since 1970");
    if (r->from_unix_ms >= FAN_TIME_END)
        return cxm_svc_errf(err, CXM_EINVAL, "range.from_unix_ms",
                            "must be before year 10000: milliseconds since 1970");
    if (r->to_unix_ms >= FAN_TIME_END)
        return cxm_svc_errf(err, CXM_EINVAL, "range.to_unix_ms",
                            "must be before year 10000: milliseconds since 1970");
    if (r->from_unix_ms && r->to_unix_ms && r->from_unix_ms >= r->to_unix_ms)
        return cxm_svc_errf(err, CXM_EINVAL, "range",
                            "from_unix_ms %" PRId64 " must be before to_unix_ms %" PRId64,
                            r->from_unix_ms, r->to_unix_ms);
    if (r->from_unix_ms)
        *from = r->from_unix_ms;
    if (r->to_unix_ms)
        *to = r->to_unix_ms;
    return 0;
}

/* Enum filters into a bit mask, naming the first unknown value. */
static int check_enums(const ProtobufCEnumDescriptor *d, const int *v, size_t n, const char *field,
                       uint64_t *mask, char *err)
{
    cxm_svc_path p;
    *mask = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] <= 0 || v[i] >= 64 || !enum_known(d, v[i]))
            return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_index(&p, field, i), "unknown value %d",
                                v[i]);
        *mask |= 1ull << v[i];
    }
    return 0;
}

/* Name filters into dictionary ids; a name never stored matches nothing,
 * and "" stands for "no touchpoint" (id 0) where empty_ok. */
static int check_names(const fan_src *s, char **names, size_t n, const char *field, bool empty_ok,
                       cxm_arena *a, idset *out, char *err)
{
    cxm_svc_path p;
    out->on = n > 0, out->n = 0;
    if (n && !(out->ids = cxm_arena_calloc(a, n, sizeof *out->ids)))
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *f = cxm_svc_index(&p, field, i);
        int rc = cxm_svc_check_text(names[i], empty_ok ? 0 : 1, 256, f, err);
        if (rc)
            return rc;
        uint32_t id = names[i][0] ? s->id(s->src, names[i]) : 0;
        if (id || !names[i][0])
            out->ids[out->n++] = id;
    }
    if (out->n > 1)
        qsort(out->ids, out->n, sizeof *out->ids, cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < out->n; i++)
        if (u == 0 || out->ids[u - 1] != out->ids[i])
            out->ids[u++] = out->ids[i];
    out->n = u;
    return 0;
}

/* ---- GetScores: the plan ----------------------------------------------- */

typedef struct sgroup {
    uint32_t key;
    fagg_scores *b; /* nb buckets */
} sgroup;

typedef struct sq {
    const fan_src *s;
    int kind, group_by, unit;
    const cxm_tz *tz;
    idset surveys, tps;
    uint64_t channels;
    bool segment;
    int64_t from, to;
    size_t nb;       /* buckets (1 without a bucket: the total) */
    int64_t *starts; /* nb + 1 bucket edges */
    size_t cur;      /* the bucket being filled */
    umap groups;     /* group key -> sgroup */
    int64_t first, last;
    bool seen;
} sq;

static int scores_check(const fan_src *s, const Cxm__V1__GetScoresRequest *req, cxm_arena *a, sq *q,
                        char *err)
{
    if (req->kind == 0)
        return cxm_svc_errf(err, CXM_EINVAL, "kind",
                            "required: SURVEY_KIND_NPS, SURVEY_KIND_CSAT or SURVEY_KIND_CES");
    if ((int)req->kind > KIND_CES || (int)req->kind < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "kind", "unknown value %d", req->kind);
    if (req->group_by < 0 || req->group_by > CXM__V1__SCORE_GROUPING__SCORE_GROUPING_SURVEY)
        return cxm_svc_errf(err, CXM_EINVAL, "group_by", "unknown value %d", req->group_by);
    if (req->bucket < 0 || req->bucket > CXM__V1__TIME_BUCKET__TIME_BUCKET_MONTH)
        return cxm_svc_errf(err, CXM_EINVAL, "bucket", "unknown value %d", req->bucket);
    int rc = check_range(req->range, &q->from, &q->to, err);
    if (!rc)
        rc = check_enums(&cxm__v1__channel__descriptor, (const int *)req->channels, req->n_channels,
                         "channels", &q->channels, err);
    if (!rc)
        rc = check_names(s, req->survey_ids, req->n_survey_ids, "survey_ids", false, a, &q->surveys,
                         err);
    if (!rc)
        rc = check_names(s, req->touchpoints, req->n_touchpoints, "touchpoints", true, a, &q->tps,
                         err);
    if (!rc && req->segment_id && req->segment_id[0]) {
        if ((rc = cxm_svc_check_slug(req->segment_id, "segment_id", err)) == 0 && !s->in_segment)
            rc = cxm_svc_errf(err, CXM_EUNAVAIL, "segment_id", "segments are not available");
        q->segment = true;
    }
    if (rc)
        return rc;
    const char *zone = req->time_zone ? req->time_zone : "";
    rc = cxm_tz_get(zone, &q->tz);
    if (rc == CXM_EINVAL)
        return cxm_svc_errf(err, rc, "time_zone",
                            "\"%.64s\" is not an IANA time zone name (such as Asia/Seoul)", zone);
    if (rc == CXM_ENOTFOUND)
        return cxm_svc_errf(err, CXM_EINVAL, "time_zone", "unknown time zone \"%.64s\"", zone);
    q->kind = req->kind;
    q->group_by = req->group_by ? req->group_by : CXM__V1__SCORE_GROUPING__SCORE_GROUPING_NONE;
    q->unit = req->bucket;
    return rc;
}

static int first_fn(const frec *r, void *user)
{
    sq *q = user;
    q->first = r->at_ms, q->seen = true;
    return 1; /* only the first is needed */
}

static int last_fn(const frec *r, void *user)
{
    sq *q = user;
    q->last = r->at_ms, q->seen = true;
    return 0;
}

/* Open ends of a bucketed series are bounded by the data: the first and
 * the last response stored in the range (of any kind). The last one is in
 * the hour of the last cell, so with cells only that hour is scanned. */
static int scores_bound(sq *q)
{
    const fan_src *s = q->s;
    int rc = 0;
    q->first = q->from;
    if (q->from == INT64_MIN) {
        if ((rc = s->scan(s->src, INT64_MIN, q->to, first_fn, q)) < 0 || !q->seen)
            return rc < 0 ? rc : 0;
    }
    q->last = q->to - 1;
    if (q->to != INT64_MAX)
        return 0;
    int64_t from = q->first, h;
    rc = 0;
    if (s->agg && (rc = fagg_last_hour(s->txn, s->agg, &h)) == 0 && h > from)
        from = h;
    if (rc && rc != CXM_ENOTFOUND)
        return rc;
    q->seen = false;
    rc = s->scan(s->src, from, INT64_MAX, last_fn, q);
    return rc < 0 ? rc : 0;
}

static int scores_buckets(sq *q, cxm_arena *a, char *err)
{
    if (!q->unit) {
        q->nb = 1;
        if (!(q->starts = cxm_arena_alloc(a, 2 * sizeof *q->starts)))
            return CXM_ENOMEM;
        q->starts[0] = q->from, q->starts[1] = q->to;
        return 0;
    }
    q->first = q->from, q->last = q->to - 1;
    int rc = q->from == INT64_MIN || q->to == INT64_MAX ? scores_bound(q) : 0;
    if (rc)
        return rc;
    q->nb = 0;
    if ((q->from == INT64_MIN || q->to == INT64_MAX) && !q->seen)
        return 0; /* no data to bound an open series */
    int64_t from = q->first, to = q->last + 1;
    if (!(q->starts = cxm_arena_alloc(a, (FAN_MAX_BUCKETS + 1) * sizeof *q->starts)))
        return CXM_ENOMEM;
    q->starts[0] = cxm_tz_floor(q->tz, q->unit, from);
    while (q->starts[q->nb] < to) {
        if (q->nb == FAN_MAX_BUCKETS)
            return cxm_svc_errf(err, CXM_EINVAL, "range", "holds more than %d %s buckets",
                                FAN_MAX_BUCKETS,
                                enum_name(&cxm__v1__time_bucket__descriptor, q->unit));
        q->starts[q->nb + 1] = cxm_tz_next(q->tz, q->unit, q->starts[q->nb]);
        q->nb++;
    }
    q->from = from, q->to = to;
    return 0;
}

/* ---- GetScores: counting ----------------------------------------------- */

static uint32_t group_key(int group_by, uint32_t survey, uint32_t tp, uint8_t ch, uint8_t st)
{
    switch (group_by) {
    case CXM__V1__SCORE_GROUPING__SCORE_GROUPING_TOUCHPOINT:
        return tp;
    case CXM__V1__SCORE_GROUPING__SCORE_GROUPING_CHANNEL:
        return ch;
    case CXM__V1__SCORE_GROUPING__SCORE_GROUPING_STAGE:
        return st;
    case CXM__V1__SCORE_GROUPING__SCORE_GROUPING_SURVEY:
        return survey;
    default:
        return 0;
    }
}

/* The bucket being filled of key's group; NULL when out of memory. */
static fagg_scores *group_bucket(sq *q, uint32_t key)
{
    sgroup *g = umap_get(&q->groups, key);
    if (!g)
        return NULL;
    if (!g->b) {
        g->key = key;
        if (!(g->b = calloc(q->nb, sizeof *g->b)))
            return NULL;
    }
    return &g->b[q->cur];
}

static int score_rec(const frec *r, void *user)
{
    sq *q = user;
    if (r->kind != q->kind || !idset_has(&q->surveys, r->survey) ||
        !idset_has(&q->tps, r->touchpoint) || !mask_has(q->channels, r->channel))
        return 0;
    if (q->segment && !q->s->in_segment(q->s->src, r->customer))
        return 0;
    fagg_scores *b =
        group_bucket(q, group_key(q->group_by, r->survey, r->touchpoint, r->channel, r->stage));
    if (!b)
        return CXM_ENOMEM;
    b->hist[r->score <= 10 ? r->score : 10]++;
    return 0;
}

static int score_cell(const fagg_scell *c, void *user)
{
    sq *q = user;
    if (c->kind != q->kind || !idset_has(&q->surveys, c->survey) ||
        !idset_has(&q->tps, c->touchpoint) || !mask_has(q->channels, c->channel))
        return 0;
    fagg_scores *b =
        group_bucket(q, group_key(q->group_by, c->survey, c->touchpoint, c->channel, c->stage));
    if (!b)
        return CXM_ENOMEM;
    fagg_scores_merge(b, c->v);
    return 0;
}

static int64_t ceil_hour(int64_t t)
{
    if (t == INT64_MIN || t == INT64_MAX)
        return t;
    int64_t r = t % HOUR_MS;
    return r == 0 ? t : r > 0 ? t - r + HOUR_MS : t - r;
}

static int64_t floor_hour(int64_t t)
{
    if (t == INT64_MIN || t == INT64_MAX)
        return t;
    int64_t r = t % HOUR_MS;
    return r >= 0 ? t - r : t - r - HOUR_MS;
}

typedef int (*cells_fn)(const fan_src *s, int64_t from, int64_t to, void *user);

/* [a, e): the whole hours through cells (when cells is not NULL), the
 * partial hours at the edges through the records. */
static int read_segment(const fan_src *s, int64_t a, int64_t e, fan_rec_fn rec, cells_fn cells,
                        void *user)
{
    int64_t ha = ceil_hour(a), hb = floor_hour(e);
    if (!cells || ha >= hb)
        return s->scan(s->src, a, e, rec, user);
    int rc = a < ha ? s->scan(s->src, a, ha, rec, user) : 0;
    if (rc == 0)
        rc = cells(s, ha, hb, user);
    if (rc == 0 && hb < e)
        rc = s->scan(s->src, hb, e, rec, user);
    return rc;
}

static int score_cells(const fan_src *s, int64_t from, int64_t to, void *user)
{
    return fagg_scores_cells(s->txn, s->agg, from, to, score_cell, user);
}

static int scores_count(sq *q)
{
    const fan_src *s = q->s;
    if (q->nb == 0)
        return 0;
    /* Cells are per UTC hour: they serve buckets that start on UTC hours. */
    bool cells = s->agg && !q->segment &&
                 (q->unit <= CXM__V1__TIME_BUCKET__TIME_BUCKET_HOUR ||
                  cxm_tz_whole_hours(q->tz, q->starts[0], q->starts[q->nb]));
    for (q->cur = 0; q->cur < q->nb; q->cur++) {
        int64_t a = q->starts[q->cur] > q->from ? q->starts[q->cur] : q->from;
        int64_t e = q->starts[q->cur + 1] < q->to ? q->starts[q->cur + 1] : q->to;
        if (a >= e)
            continue;
        int rc = read_segment(s, a, e, score_rec, cells ? score_cells : NULL, q);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- GetScores: the answer --------------------------------------------- */

static void fill_bucket(int kind, const fagg_scores *h, int64_t start, Cxm__V1__ScoreBucket *o)
{
    uint64_t n = 0, sum = 0, sq2 = 0, pos = 0, neg = 0, mid = 0;
    for (unsigned v = 0; v <= 10; v++) {
        uint64_t c = h->hist[v];
        n += c, sum += c * v, sq2 += c * v * v;
        bool p = kind == KIND_NPS ? v >= 9 : kind == KIND_CSAT ? v >= 4 : v >= 5;
        bool m = kind == KIND_NPS ? v >= 7 && v <= 8 : kind == KIND_CSAT ? v == 3 : v == 4;
        pos += p ? c : 0, mid += m ? c : 0, neg += !p && !m ? c : 0;
    }
    cxm__v1__score_bucket__init(o);
    o->start_unix_ms = start;
    o->responses = n, o->promoters = pos, o->passives = mid, o->detractors = neg;
    if (n == 0)
        return;
    double dn = (double)n, ps = (double)pos / dn, ds = (double)neg / dn;
    o->mean = (double)sum / dn;
    if (kind == KIND_NPS) {
        o->score = 100.0 * ((double)pos - (double)neg) / dn;
        o->margin_of_error = 100.0 * FAN_Z * sqrt(fmax(0, ps + ds - (ps - ds) * (ps - ds)) / dn);
    } else if (kind == KIND_CSAT) {
        o->score = 100.0 * ps;
        o->margin_of_error = 100.0 * FAN_Z * sqrt(ps * (1 - ps) / dn);
    } else {
        o->score = o->mean;
        if (n >= 2) { /* exact: n*sum(x^2) - sum(x)^2 in integers */
            unsigned __int128 v = (unsigned __int128)n * sq2 - (unsigned __int128)sum * sum;
            double sd = sqrt((double)v / (dn * (dn - 1)));
            o->margin_of_error = FAN_Z * sd / sqrt(dn);
        }
    }
}

static const char *group_name(const sq *q, uint32_t key)
{
    const char *n;
    switch (q->group_by) {
    case CXM__V1__SCORE_GROUPING__SCORE_GROUPING_TOUCHPOINT:
    case CXM__V1__SCORE_GROUPING__SCORE_GROUPING_SURVEY:
        return key && (n = q->s->name(q->s->src, key)) ? n : "";
    case CXM__V1__SCORE_GROUPING__SCORE_GROUPING_CHANNEL:
        return enum_name(&cxm__v1__channel__descriptor, (int)key);
    case CXM__V1__SCORE_GROUPING__SCORE_GROUPING_STAGE:
        return enum_name(&cxm__v1__journey_stage__descriptor, (int)key);
    default:
        return "all";
    }
}

static Cxm__V1__ScoreGroup *make_group(const sq *q, const sgroup *g, cxm_arena *a)
{
    Cxm__V1__ScoreGroup *o = cxm_arena_alloc(a, sizeof *o);
    Cxm__V1__ScoreBucket *bs = cxm_arena_calloc(a, q->nb + 1, sizeof *bs);
    if (!o || !bs)
        return NULL;
    cxm__v1__score_group__init(o);
    const char *key = group_name(q, g->key);
    if (!(o->key = cxm_arena_strndup(a, key, strlen(key))))
        return NULL;
    if (q->group_by == CXM__V1__SCORE_GROUPING__SCORE_GROUPING_CHANNEL)
        o->channel = (Cxm__V1__Channel)g->key;
    if (q->group_by == CXM__V1__SCORE_GROUPING__SCORE_GROUPING_STAGE)
        o->stage = (Cxm__V1__JourneyStage)g->key;
    fagg_scores total = {{0}};
    for (size_t b = 0; b < q->nb && g->b; b++)
        fagg_scores_merge(&total, &g->b[b]);
    o->total = &bs[q->nb];
    fill_bucket(q->kind, &total, 0, o->total);
    if (!q->unit)
        return o;
    if (!(o->buckets = cxm_arena_calloc(a, q->nb, sizeof *o->buckets)))
        return NULL;
    for (size_t b = 0; b < q->nb; b++) {
        fill_bucket(q->kind, &g->b[b], q->starts[b], &bs[b]);
        o->buckets[o->n_buckets++] = &bs[b];
    }
    return o;
}

static int group_cmp(const void *x, const void *y)
{
    const Cxm__V1__ScoreGroup *a = *(Cxm__V1__ScoreGroup *const *)x;
    const Cxm__V1__ScoreGroup *b = *(Cxm__V1__ScoreGroup *const *)y;
    if (a->total->responses != b->total->responses)
        return a->total->responses > b->total->responses ? -1 : 1;
    return strcmp(a->key, b->key);
}

static int scores_answer(sq *q, cxm_arena *a, Cxm__V1__GetScoresResponse **out)
{
    Cxm__V1__GetScoresResponse *o = cxm_arena_alloc(a, sizeof *o);
    if (!o)
        return CXM_ENOMEM;
    cxm__v1__get_scores_response__init(o);
    /* Grouped by nothing, the one group is there even without responses. */
    if (q->group_by == CXM__V1__SCORE_GROUPING__SCORE_GROUPING_NONE && q->groups.n == 0 &&
        !(q->nb ? (void *)group_bucket(q, 0) : umap_get(&q->groups, 0)))
        return CXM_ENOMEM;
    if (q->groups.n && !(o->groups = cxm_arena_calloc(a, q->groups.n, sizeof *o->groups)))
        return CXM_ENOMEM;
    for (size_t i = 0; i < q->groups.cap; i++) {
        if (!q->groups.used[i])
            continue;
        const sgroup *g = (const sgroup *)(q->groups.vals + i * q->groups.size);
        if (!(o->groups[o->n_groups++] = make_group(q, g, a)))
            return CXM_ENOMEM;
    }
    if (o->n_groups > 1)
        qsort(o->groups, o->n_groups, sizeof *o->groups, group_cmp);
    *out = o;
    return 0;
}

static void scores_free(sq *q)
{
    for (size_t i = 0; i < q->groups.cap; i++)
        if (q->groups.used[i])
            free(((sgroup *)(q->groups.vals + i * q->groups.size))->b);
    umap_free(&q->groups);
}

int fan_scores(const fan_src *s, const Cxm__V1__GetScoresRequest *req, cxm_arena *a,
               Cxm__V1__GetScoresResponse **out, char err[CXM_SVC_ERR_MAX])
{
    sq q = {.s = s, .groups = {.size = sizeof(sgroup)}};
    err[0] = 0;
    int rc = scores_check(s, req, a, &q, err);
    if (rc == 0)
        rc = scores_buckets(&q, a, err);
    if (rc == 0)
        rc = scores_count(&q);
    if (rc == 0)
        rc = scores_answer(&q, a, out);
    scores_free(&q);
    return rc;
}

/* ---- GapAnalysis ------------------------------------------------------- */

typedef struct gq {
    const fan_src *s;
    idset surveys;
    uint64_t channels, stages;
    int64_t from, to;
    umap tps; /* rated touchpoint -> fagg_rates */
} gq;

static int gap_rec(const frec *r, void *user)
{
    gq *q = user;
    if (!idset_has(&q->surveys, r->survey) || !mask_has(q->channels, r->channel) ||
        !mask_has(q->stages, r->stage))
        return 0;
    for (unsigned i = 0; i < r->nratings; i++) {
        fagg_rates *t = umap_get(&q->tps, r->ratings[i].touchpoint);
        if (!t)
            return CXM_ENOMEM;
        fagg_rates_add(t, r, &r->ratings[i], 1);
    }
    return 0;
}

static int gap_cell(const fagg_rcell *c, void *user)
{
    gq *q = user;
    if (!idset_has(&q->surveys, c->survey) || !mask_has(q->channels, c->channel) ||
        !mask_has(q->stages, c->stage))
        return 0;
    fagg_rates *t = umap_get(&q->tps, c->touchpoint);
    if (!t)
        return CXM_ENOMEM;
    fagg_rates_merge(t, c->v);
    return 0;
}

static int gap_cells(const fan_src *s, int64_t from, int64_t to, void *user)
{
    return fagg_rating_cells(s->txn, s->agg, from, to, gap_cell, user);
}

static double dd_val(fagg_dd d)
{
    return d.hi + d.lo;
}

/* m*sxx - sx*sx in double-double, so equal values give (nearly) 0 instead
 * of the rounding noise of doubles. */
static double dd_spread(uint64_t m, fagg_dd sxx, fagg_dd sx)
{
    fagg_dd v = {0, 0};
    fagg_dd_add_prod(&v, (double)m, sxx.hi);
    fagg_dd_add_prod(&v, (double)m, sxx.lo);
    fagg_dd_add_prod(&v, -sx.hi, sx.hi);
    fagg_dd_add_prod(&v, -2 * sx.hi, sx.lo);
    return dd_val(v);
}

/* Pearson's r of experience with the NPS score, clamped to [0, 1]; 1 below
 * FAN_IMPACT_MIN NPS ratings; 0 when either side has no variance (a spread
 * under 1e-20 of its scale is the rounding of equal values). */
static double gap_impact(const fagg_rates *t)
{
    if (t->m < FAN_IMPACT_MIN)
        return 1;
    double m = (double)t->m;
    double vx = dd_spread(t->m, t->mxx, t->mx);
    double vy = (double)((unsigned __int128)t->m * t->syy - (unsigned __int128)t->sy * t->sy);
    if (vx <= 1e-20 * m * dd_val(t->mxx) || vy <= 0)
        return 0;
    fagg_dd c = {0, 0};
    fagg_dd_add_prod(&c, m, t->mxy.hi);
    fagg_dd_add_prod(&c, m, t->mxy.lo);
    fagg_dd_add_prod(&c, -(double)t->sy, t->mx.hi);
    fagg_dd_add_prod(&c, -(double)t->sy, t->mx.lo);
    double r = dd_val(c) / sqrt(vx * vy);
    return r < 0 ? 0 : r > 1 ? 1 : r;
}

static int gap_cmp(const void *x, const void *y)
{
    const Cxm__V1__TouchpointGap *a = *(Cxm__V1__TouchpointGap *const *)x;
    const Cxm__V1__TouchpointGap *b = *(Cxm__V1__TouchpointGap *const *)y;
    if (a->priority != b->priority)
        return a->priority > b->priority ? -1 : 1;
    if (a->gap != b->gap)
        return a->gap > b->gap ? -1 : 1;
    return strcmp(a->touchpoint, b->touchpoint);
}

static Cxm__V1__TouchpointGap *make_gap(const gq *q, uint32_t tp, const fagg_rates *t,
                                        uint64_t kept, cxm_arena *a)
{
    Cxm__V1__TouchpointGap *o = cxm_arena_alloc(a, sizeof *o);
    const char *name = q->s->name(q->s->src, tp);
    if (!o)
        return NULL;
    cxm__v1__touchpoint_gap__init(o);
    if (!(o->touchpoint = cxm_arena_strndup(a, name ? name : "", strlen(name ? name : ""))))
        return NULL;
    double dn = (double)t->n;
    o->responses = t->n;
    o->mean_expectation = dd_val(t->se) / dn;
    o->mean_experience = dd_val(t->sx) / dn;
    o->gap = o->mean_expectation - o->mean_experience;
    o->volume_share = dn / (double)kept;
    o->impact = gap_impact(t);
    o->priority = fmax(o->gap, 0) * o->volume_share * o->impact;
    o->disappointed_share = (double)t->disappointed / dn;
    return o;
}

static int gaps_answer(gq *q, uint32_t min, uint32_t limit, cxm_arena *a,
                       Cxm__V1__GapAnalysisResponse **out)
{
    Cxm__V1__GapAnalysisResponse *o = cxm_arena_alloc(a, sizeof *o);
    if (!o)
        return CXM_ENOMEM;
    cxm__v1__gap_analysis_response__init(o);
    uint64_t kept = 0;
    for (size_t i = 0; i < q->tps.cap; i++)
        if (q->tps.used[i] && ((fagg_rates *)(q->tps.vals + i * q->tps.size))->n >= min)
            kept += ((fagg_rates *)(q->tps.vals + i * q->tps.size))->n;
    if (q->tps.n && !(o->gaps = cxm_arena_calloc(a, q->tps.n, sizeof *o->gaps)))
        return CXM_ENOMEM;
    for (size_t i = 0; i < q->tps.cap; i++) {
        const fagg_rates *t = (const fagg_rates *)(q->tps.vals + i * q->tps.size);
        if (!q->tps.used[i] || t->n < min || t->n == 0)
            continue;
        if (!(o->gaps[o->n_gaps++] = make_gap(q, q->tps.keys[i], t, kept, a)))
            return CXM_ENOMEM;
    }
    if (o->n_gaps > 1)
        qsort(o->gaps, o->n_gaps, sizeof *o->gaps, gap_cmp);
    if (o->n_gaps > limit)
        o->n_gaps = limit;
    *out = o;
    return 0;
}

static int gaps_check(const fan_src *s, const Cxm__V1__GapAnalysisRequest *req, cxm_arena *a, gq *q,
                      char *err)
{
    if (req->limit > FAN_GAP_LIMIT_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "limit", "must be 1 to %d (0 = %d), not %" PRIu32,
                            FAN_GAP_LIMIT_MAX, FAN_GAP_LIMIT, req->limit);
    int rc = check_range(req->range, &q->from, &q->to, err);
    if (!rc)
        rc = check_enums(&cxm__v1__channel__descriptor, (const int *)req->channels, req->n_channels,
                         "channels", &q->channels, err);
    if (!rc)
        rc = check_enums(&cxm__v1__journey_stage__descriptor, (const int *)req->stages,
                         req->n_stages, "stages", &q->stages, err);
    if (!rc)
        rc = check_names(s, req->survey_ids, req->n_survey_ids, "survey_ids", false, a, &q->surveys,
                         err);
    return rc;
}

int fan_gaps(const fan_src *s, const Cxm__V1__GapAnalysisRequest *req, cxm_arena *a,
             Cxm__V1__GapAnalysisResponse **out, char err[CXM_SVC_ERR_MAX])
{
    gq q = {.s = s, .tps = {.size = sizeof(fagg_rates)}};
    uint32_t min = req->min_responses ? req->min_responses : FAN_GAP_MIN;
    err[0] = 0;
    /* No zone, no buckets, no segment: the cells serve every whole hour. */
    int rc = gaps_check(s, req, a, &q, err);
    if (rc == 0)
        rc = read_segment(s, q.from, q.to, gap_rec, s->agg ? gap_cells : NULL, &q);
    if (rc == 0)
        rc = gaps_answer(&q, min, req->limit ? req->limit : FAN_GAP_LIMIT, a, out);
    umap_free(&q.tps);
    return rc;
}
