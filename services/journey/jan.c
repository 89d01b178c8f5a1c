/*
 * jan.c - journey analytics over compact timelines (see jan.h). Every rule
 * here is a sentence of the Analytics section of proto/cxm/v1/journey.proto;
 * where the code decides a corner, the proto says so too.
 *
 * Shape of every query: one walk over the source's customers. Per customer,
 * a view of its records after the channels filter (pointers into the
 * source's array, so props_match sees the source's own record), scratch
 * buffers reused from customer to customer (grown by doubling, never per
 * event), and aggregates keyed by what the answer reports, in open-addressing
 * tables in the arena. Per-customer distinctness (unique customers of a
 * touchpoint or a path) is a stamp: the serial number of the customer that
 * last counted, so no set is ever cleared.
 */
#include "jan.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/tz.h"

#define HOUR_MS (3600 * 1000LL)
#define DAY_MS (24 * HOUR_MS)
#define JAN_MAX_STEPS 32     /* a step mask is a uint32_t (the proto allows 20) */
#define JAN_MAX_PATH 10      /* elements per path */
#define JAN_MAX_BUCKETS 1000 /* the proto's limit; bounds memory per touchpoint */
#define JAN_MAX_TOUCHPOINTS 1000
#define JAN_NCHAN 16 /* channel numbers kept in mixes (Channel ends at 12) */
#define JAN_NSTAGE 8 /* stage numbers kept in mixes (JourneyStage ends at 6) */

/* ---- small helpers ---- */

/* a + b for b >= 0, stopping at INT64_MAX instead of overflowing. */
static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* Grow an arena array to hold need elements, keeping its contents; the old
 * block stays in the arena (doubling bounds the waste to the final size). */
static int vec_grow(cxm_arena *a, void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem)
            return CXM_ENOMEM;
        nc *= 2;
    }
    void *q = cxm_arena_alloc(a, nc * elem);
    if (!q)
        return CXM_ENOMEM;
    if (*cap)
        memcpy(q, *p, *cap * elem);
    *p = q;
    *cap = nc;
    return 0;
}
#define VEC_GROW(a, p, cap, need) vec_grow((a), (void **)&(p), &(cap), (need), sizeof *(p))

static char *dup_str(cxm_arena *a, const char *s)
{
    return s ? cxm_arena_strndup(a, s, strlen(s)) : cxm_arena_strndup(a, "", 0);
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* The channels filter as a bit set; every channel when none is listed. */
static uint32_t chan_mask(const Cxm__V1__Channel *ch, size_t n)
{
    if (n == 0)
        return UINT32_MAX;
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ch[i] > 0 && ch[i] < 32)
            m |= 1u << ch[i];
    return m;
}

static bool chan_keep(uint32_t mask, const jrec *r)
{
    return mask == UINT32_MAX || (r->channel < 32 && (mask >> r->channel & 1));
}

/* [from, to) with an unset side open (the checks require both sides; this
 * only keeps an unchecked request from meaning something absurd). */
static void range_get(const Cxm__V1__TimeRange *r, int64_t *from, int64_t *to)
{
    *from = r && r->from_unix_ms ? r->from_unix_ms : INT64_MIN;
    *to = r && r->to_unix_ms ? r->to_unix_ms : INT64_MAX;
    if (*to <= *from) { /* an empty range, with to - 1 representable */
        *from = *from == INT64_MAX ? INT64_MAX : *from + 1;
        *to = *from;
    }
}

/* The first record at or after t (records are in time order). */
static size_t lower_at(const jrec *r, size_t n, int64_t t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].at_ms < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The string of a dictionary id, or "" (an id the dictionary lost). */
static const char *dict_name(const jdict *d, uint32_t id)
{
    return str_or_empty(id ? d->name(d->ctx, id) : NULL);
}

/* The id of a request string; 0 for the empty string or one never seen. */
static uint32_t dict_id(const jdict *d, const char *s)
{
    return s && *s ? d->id(d->ctx, s) : 0;
}

/* "web", "contact_centre": the enum's name without its prefix, lower case. */
static char *channel_name(cxm_arena *a, int ch)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cxm__v1__channel__descriptor, ch);
    if (!v)
        return dup_str(a, "unspecified");
    const char *s = v->name;
    if (strncmp(s, "CHANNEL_", 8) == 0)
        s += 8;
    char *out = dup_str(a, s);
    for (char *p = out; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return out;
}

/* ---- a u32 -> index table (open addressing, linear probing) ---- */

typedef struct u32map {
    uint32_t *keys;
    uint32_t *vals; /* UINT32_MAX: empty slot */
    size_t cap, n;
} u32map;

static size_t u32_slot(uint32_t key, size_t cap)
{
    return (size_t)(key * 2654435761u) & (cap - 1);
}

static int u32map_rehash(cxm_arena *a, u32map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint32_t *keys = cxm_arena_alloc(a, cap * sizeof *keys);
    uint32_t *vals = cxm_arena_alloc(a, cap * sizeof *vals);
    if (!keys || !vals)
        return CXM_ENOMEM;
    memset(vals, 0xff, cap * sizeof *vals);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->vals[i] == UINT32_MAX)
            continue;
        size_t s = u32_slot(m->keys[i], cap);
        while (vals[s] != UINT32_MAX)
            s = (s + 1) & (cap - 1);
        keys[s] = m->keys[i];
        vals[s] = m->vals[i];
    }
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

/* The value of key, or UINT32_MAX when absent. */
static uint32_t u32map_get(const u32map *m, uint32_t key)
{
    if (!m->cap)
        return UINT32_MAX;
    size_t s = u32_slot(key, m->cap);
    while (m->vals[s] != UINT32_MAX && m->keys[s] != key)
        s = (s + 1) & (m->cap - 1);
    return m->vals[s];
}

/* Insert key (absent) with value val. */
static int u32map_put(cxm_arena *a, u32map *m, uint32_t key, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        int rc = u32map_rehash(a, m);
        if (rc)
            return rc;
    }
    size_t s = u32_slot(key, m->cap);
    while (m->vals[s] != UINT32_MAX)
        s = (s + 1) & (m->cap - 1);
    m->keys[s] = key;
    m->vals[s] = val;
    m->n++;
    return 0;
}

/* ---- quantiles ---- */

/* The k-th smallest of v[0..n) (k < n), reordering v: quickselect with a
 * median-of-three pivot and a three-way partition (many equal times). */
static int64_t select_kth(int64_t *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* the answer's index is in [lo, hi) */
    while (hi - lo > 1) {
        int64_t x = v[lo], y = v[lo + (hi - lo) / 2], z = v[hi - 1];
        int64_t p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (v[i] < p) {
                int64_t t = v[i];
                v[i++] = v[lt];
                v[lt++] = t;
            } else if (v[i] > p) {
                int64_t t = v[i];
                v[i] = v[--gt];
                v[gt] = t;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return p;
    }
    return v[lo];
}

/* Nearest rank: v[ceil(num/den * n) - 1] of the sorted values; 0 for none.
 * Integer arithmetic, so 0.9 * 10 is exactly 9. */
static int64_t quantile(int64_t *v, size_t n, uint64_t num, uint64_t den)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)((num * n + den - 1) / den);
    return select_kth(v, n, rank ? rank - 1 : 0);
}

/* ---- sessions of one customer ---- */

/* The sessions of a view of one customer's records: records sharing a
 * session id, and session-less records cut by the 30-minute gap. order
 * lists the view's indices session by session, each session in time order;
 * session j is order[off[j] .. off[j + 1]). */
typedef struct jan_cut {
    uint32_t *sid, *off, *order;
    size_t cap_sid, cap_order, cap_off, nsess;
    /* session id hash -> session number, valid for slots stamped with the
     * current customer */
    uint64_t *hkey;
    uint32_t *hval, *hstamp;
    size_t hcap;
    uint32_t stamp;
} jan_cut;

static int cut_table(cxm_arena *a, jan_cut *s, size_t n)
{
    if (++s->stamp == 0) { /* wrapped: old stamps could match again */
        memset(s->hstamp, 0, s->hcap * sizeof *s->hstamp);
        s->stamp = 1;
    }
    if (n * 2 <= s->hcap)
        return 0;
    size_t cap = 64;
    while (cap < n * 2)
        cap *= 2;
    s->hkey = cxm_arena_alloc(a, cap * sizeof *s->hkey);
    s->hval = cxm_arena_alloc(a, cap * sizeof *s->hval);
    s->hstamp = cxm_arena_calloc(a, cap, sizeof *s->hstamp);
    if (!s->hkey || !s->hval || !s->hstamp)
        return CXM_ENOMEM;
    s->hcap = cap;
    return 0;
}

/* The session number of a session id hash, a new one when first seen. */
static uint32_t cut_named(jan_cut *s, uint64_t key)
{
    size_t i = (size_t)(key ^ key >> 29) & (s->hcap - 1);
    while (s->hstamp[i] == s->stamp && s->hkey[i] != key)
        i = (i + 1) & (s->hcap - 1);
    if (s->hstamp[i] != s->stamp) {
        s->hstamp[i] = s->stamp;
        s->hkey[i] = key;
        s->hval[i] = (uint32_t)s->nsess++;
    }
    return s->hval[i];
}

static int cut_sessions(cxm_arena *a, jan_cut *s, const jrec *const *v, size_t n)
{
    int rc;
    if ((rc = VEC_GROW(a, s->sid, s->cap_sid, n)) ||
        (rc = VEC_GROW(a, s->order, s->cap_order, n)) || (rc = cut_table(a, s, n)))
        return rc;
    s->nsess = 0;
    uint32_t gap_sess = UINT32_MAX;
    int64_t gap_last = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i]->session != JREC_NO_SESSION) {
            s->sid[i] = cut_named(s, v[i]->session);
            continue;
        }
        if (gap_sess == UINT32_MAX || v[i]->at_ms - gap_last > JREC_SESSION_GAP_MS)
            gap_sess = (uint32_t)s->nsess++;
        gap_last = v[i]->at_ms;
        s->sid[i] = gap_sess;
    }
    /* counting sort by session, stable: time order within a session */
    if ((rc = VEC_GROW(a, s->off, s->cap_off, s->nsess + 1)))
        return rc;
    memset(s->off, 0, (s->nsess + 1) * sizeof *s->off);
    for (size_t i = 0; i < n; i++)
        s->off[s->sid[i] + 1]++;
    for (size_t j = 0; j < s->nsess; j++)
        s->off[j + 1] += s->off[j];
    for (size_t i = 0; i < n; i++)
        s->order[s->off[s->sid[i]]++] = (uint32_t)i;
    for (size_t j = s->nsess; j > 0; j--) /* the fill moved each start to the next */
        s->off[j] = s->off[j - 1];
    s->off[0] = 0;
    return 0;
}

/* ==== Funnel ============================================================ */

/* A step's matcher with its strings interned. */
typedef struct fstep {
    uint32_t type, tp; /* 0 = any */
    uint8_t chan;      /* 0 = any */
    bool never;        /* names a string no event has: matches nothing */
    Cxm__V1__PropertyCondition *const *conds;
    size_t nconds;
} fstep;

/* The counts of one funnel: the totals or one breakdown group. */
typedef struct fagg {
    uint32_t key;     /* channel or touchpoint id */
    const char *name; /* its value, for ordering and the answer */
    uint64_t cust[JAN_MAX_STEPS];
    int64_t *dt[JAN_MAX_STEPS]; /* step k's times from step k-1 */
    size_t ndt[JAN_MAX_STEPS], capdt[JAN_MAX_STEPS];
} fagg;

typedef struct fun {
    fstep st[JAN_MAX_STEPS];
    size_t m;
    int order, breakdown;
    int64_t win, from, to;
    uint32_t cmask;
    /* one customer: the view (records in [from, to - 1 + win] after the
     * channels filter), each record's step mask, and scratch */
    const jrec **v;
    int64_t *at; /* v[i]->at_ms, packed: the walks touch nothing else */
    uint32_t *mask, *gmask;
    size_t capv, capa, capm, capg;
    bool types_only; /* every step matches on event_type alone */
    size_t ptr[JAN_MAX_STEPS];
    /* the customer's attempt: depth, step times, first-step record */
    size_t depth;
    int64_t t[JAN_MAX_STEPS];
    const jrec *start;
    /* the answer */
    fagg total;
    fagg **groups;
    size_t ngroups, capgroups;
    u32map gmap;
    uint64_t considered;
} fun;

static int fun_init(fun *f, const Cxm__V1__FunnelRequest *req, const jdict *dict)
{
    if (req->n_steps < 1 || req->n_steps > JAN_MAX_STEPS)
        return CXM_EINVAL;
    f->m = req->n_steps;
    for (size_t k = 0; k < f->m; k++) {
        const Cxm__V1__FunnelStep *s = req->steps[k];
        fstep *o = &f->st[k];
        o->type = dict_id(dict, s->event_type);
        o->tp = dict_id(dict, s->touchpoint);
        o->never = (s->event_type && *s->event_type && !o->type) ||
                   (s->touchpoint && *s->touchpoint && !o->tp);
        o->chan = (uint8_t)(s->channel > 0 && s->channel < 256 ? s->channel : 0);
        o->conds = s->conditions;
        o->nconds = s->n_conditions;
    }
    f->types_only = true;
    for (size_t k = 0; k < f->m; k++)
        f->types_only &=
            f->st[k].type && !f->st[k].never && !f->st[k].tp && !f->st[k].chan && !f->st[k].nconds;
    f->order = req->order ? (int)req->order : CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_ORDERED;
    f->breakdown = (int)req->breakdown;
    f->win = req->window_ms > 0 ? req->window_ms : 14 * DAY_MS;
    range_get(req->range, &f->from, &f->to);
    f->cmask = chan_mask(req->channels, req->n_channels);
    return 0;
}

/* Which steps record r matches; property conditions only for records that
 * match a step's other fields (they need a lookup). */
static int fun_mask(const fun *f, const jsource *src, const jcust *c, const jrec *r, uint32_t *out)
{
    uint32_t mask = 0;
    for (size_t k = 0; k < f->m; k++) {
        const fstep *s = &f->st[k];
        if (s->never || (s->type && s->type != r->type) || (s->tp && s->tp != r->touchpoint) ||
            (s->chan && s->chan != r->channel))
            continue;
        if (s->nconds) {
            bool ok = false;
            int rc = src->props_match(src->ctx, c, r, s->conds, s->nconds, &ok);
            if (rc)
                return rc;
            if (!ok)
                continue;
        }
        mask |= 1u << k;
    }
    *out = mask;
    return 0;
}

/* fun_mask for steps on event_type alone, the common funnel: no branches. */
static uint32_t fun_mask_types(const fun *f, const jrec *r)
{
    uint32_t mask = 0;
    for (size_t k = 0; k < f->m; k++)
        mask |= (uint32_t)(f->st[k].type == r->type) << k;
    return mask;
}

/* Fill the view of c: records from range.from up to the last time a step
 * can count, after the channels filter, with their step masks. Sets *starts
 * when some record could start an attempt. */
static int fun_view(fun *f, cxm_arena *a, const jsource *src, const jcust *c, size_t *nv,
                    bool *starts)
{
    size_t lo = lower_at(c->recs, c->n, f->from), n = 0;
    int64_t last = add_sat(f->to - 1, f->win);
    bool in_range = false;
    int rc;
    if ((rc = VEC_GROW(a, f->v, f->capv, c->n - lo)) ||
        (rc = VEC_GROW(a, f->at, f->capa, c->n - lo)) ||
        (rc = VEC_GROW(a, f->mask, f->capm, c->n - lo)) ||
        (rc = VEC_GROW(a, f->gmask, f->capg, c->n - lo)))
        return rc;
    *starts = false;
    for (size_t i = lo; i < c->n && c->recs[i].at_ms <= last; i++) {
        const jrec *r = &c->recs[i];
        if (!chan_keep(f->cmask, r))
            continue;
        f->v[n] = r;
        f->at[n] = r->at_ms;
        if (f->types_only)
            f->mask[n] = fun_mask_types(f, r);
        else if ((rc = fun_mask(f, src, c, r, &f->mask[n])))
            return rc;
        if (r->at_ms < f->to) {
            in_range = true;
            *starts |= f->mask[n] & 1;
        }
        n++;
    }
    f->considered += in_range;
    *nv = n;
    return 0;
}

/* Keep the attempt of depth d with step times t when it is deeper than the
 * best so far (starts come in time order, so the earliest wins ties). */
static bool fun_keep(fun *f, const int64_t *t, size_t d, const jrec *start)
{
    if (d > f->depth) {
        f->depth = d;
        memcpy(f->t, t, d * sizeof *t);
        f->start = start;
    }
    return f->depth == f->m; /* nothing can be deeper */
}

/* One order's attempt from a start at t0: fills the step times t and
 * returns the depth reached. Each order keeps one pointer per step in
 * f->ptr that only moves forward from start to start. */
typedef size_t (*fun_attempt)(fun *f, size_t n, int64_t t0, int64_t *t);

/* Every start in range, in time order, until an attempt completes the
 * funnel; a start at the same millisecond as the last one tried has the
 * same steps and is skipped. */
static inline void fun_walk(fun *f, size_t n, fun_attempt attempt)
{
    int64_t t[JAN_MAX_STEPS], prev = 0;
    bool tried = false;
    for (size_t k = 0; k < f->m; k++)
        f->ptr[k] = 0;
    for (size_t s = 0; s < n && f->at[s] < f->to; s++) {
        if (!(f->mask[s] & 1) || (tried && f->at[s] == prev))
            continue;
        tried = true;
        prev = f->at[s];
        if (fun_keep(f, t, attempt(f, n, prev, t), f->v[s]))
            return;
    }
}

/*
 * ORDERED. Greedy step times are monotone in the start time: a later start
 * has each step at the same event or a later one. So one pointer per step
 * only moves forward over the view, and the deepest attempt over every start
 * costs O(n * steps), not O(n^2). A pointer stops at the first record past
 * the current window; the records it passed are either not after the
 * previous step (still true for any later start, whose previous step is no
 * earlier) or do not match the step.
 */
static size_t fun_ordered(fun *f, size_t n, int64_t t0, int64_t *t)
{
    int64_t end = add_sat(t0, f->win);
    size_t d = 1;
    t[0] = t0;
    for (size_t k = 1; k < f->m; k++) {
        size_t i = f->ptr[k];
        while (i < n && f->at[i] <= end && (f->at[i] <= t[k - 1] || !(f->mask[i] >> k & 1)))
            i++;
        f->ptr[k] = i;
        if (i == n || f->at[i] > end)
            break;
        t[d++] = f->at[i];
    }
    return d;
}

/* STRICT works on milliseconds: events at the same millisecond are neither
 * before nor after each other, so step k is matched when any event at the
 * customer's next millisecond after step k-1's matches it. gmask holds the
 * union of the step masks of each record's millisecond (fun_strict_masks). */
static size_t fun_strict(fun *f, size_t n, int64_t t0, int64_t *t)
{
    int64_t end = add_sat(t0, f->win);
    size_t d = 1;
    t[0] = t0;
    for (size_t k = 1; k < f->m; k++) {
        size_t i = f->ptr[k]; /* monotone like ORDERED's */
        while (i < n && f->at[i] <= t[k - 1])
            i++;
        f->ptr[k] = i;
        if (i == n || f->at[i] > end || !(f->gmask[i] >> k & 1))
            break;
        t[d++] = f->at[i];
    }
    return d;
}

static void fun_strict_masks(fun *f, size_t n)
{
    for (size_t i = 0, j; i < n; i = j) {
        uint32_t g = 0;
        for (j = i; j < n && f->at[j] == f->at[i]; j++)
            g |= f->mask[j];
        for (size_t k = i; k < j; k++)
            f->gmask[k] = g;
    }
}

/* ANY: per step a pointer to its first match at or after the start's
 * millisecond (monotone in the start); the attempt's step times are the
 * sorted first-match times inside the window. */
static size_t fun_any(fun *f, size_t n, int64_t t0, int64_t *t)
{
    int64_t end = add_sat(t0, f->win);
    size_t d = 0;
    for (size_t k = 0; k < f->m; k++) {
        size_t i = f->ptr[k];
        while (i < n && f->at[i] <= end && (f->at[i] < t0 || !(f->mask[i] >> k & 1)))
            i++;
        f->ptr[k] = i;
        if (i == n || f->at[i] > end)
            continue;
        size_t p = d++; /* insertion sort: at most 32 times */
        for (; p > 0 && t[p - 1] > f->at[i]; p--)
            t[p] = t[p - 1];
        t[p] = f->at[i];
    }
    return d;
}

static int fagg_push(cxm_arena *a, fagg *g, size_t k, int64_t dt)
{
    int rc = VEC_GROW(a, g->dt[k], g->capdt[k], g->ndt[k] + 1);
    if (rc)
        return rc;
    g->dt[k][g->ndt[k]++] = dt;
    return 0;
}

static int fagg_add(cxm_arena *a, fagg *g, const fun *f)
{
    for (size_t k = 0; k < f->depth; k++) {
        g->cust[k]++;
        int rc = k ? fagg_push(a, g, k, f->t[k] - f->t[k - 1]) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* The breakdown value of the customer's attempt. */
static uint32_t fun_group_key(const fun *f, const jcust *c)
{
    if (f->breakdown == CXM__V1__FUNNEL_BREAKDOWN__FUNNEL_BREAKDOWN_CHANNEL)
        return f->start->channel;
    for (size_t i = 0; i < c->n; i++) /* the first touch, after the filter */
        if (chan_keep(f->cmask, &c->recs[i]))
            return c->recs[i].touchpoint;
    return 0; /* unreachable: the attempt's own record passed the filter */
}

static int fun_group(fun *f, cxm_arena *a, const jdict *dict, uint32_t key, fagg **out)
{
    uint32_t gi = u32map_get(&f->gmap, key);
    if (gi == UINT32_MAX) {
        int rc;
        fagg *g = cxm_arena_calloc(a, 1, sizeof *g);
        if (!g || (rc = VEC_GROW(a, f->groups, f->capgroups, f->ngroups + 1)))
            return CXM_ENOMEM;
        g->key = key;
        g->name = f->breakdown == CXM__V1__FUNNEL_BREAKDOWN__FUNNEL_BREAKDOWN_CHANNEL
                      ? channel_name(a, (int)key)
                      : dup_str(a, dict_name(dict, key));
        if (!g->name)
            return CXM_ENOMEM;
        gi = (uint32_t)f->ngroups;
        f->groups[f->ngroups++] = g;
        if ((rc = u32map_put(a, &f->gmap, key, gi)))
            return rc;
    }
    *out = f->groups[gi];
    return 0;
}

static int fun_customer(fun *f, cxm_arena *a, const jdict *dict, const jsource *src, const jcust *c)
{
    size_t n;
    bool starts;
    int rc = fun_view(f, a, src, c, &n, &starts);
    if (rc || !starts)
        return rc;
    f->depth = 0;
    if (f->order == CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_STRICT) {
        fun_strict_masks(f, n);
        fun_walk(f, n, fun_strict);
    } else if (f->order == CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_ANY) {
        fun_walk(f, n, fun_any);
    } else {
        fun_walk(f, n, fun_ordered);
    }
    if ((rc = fagg_add(a, &f->total, f)) || !f->breakdown)
        return rc;
    fagg *g;
    if ((rc = fun_group(f, a, dict, fun_group_key(f, c), &g)))
        return rc;
    return fagg_add(a, g, f);
}

static double ratio(uint64_t num, uint64_t den)
{
    return den ? (double)num / (double)den : 0.0;
}

/* The per-step results of one aggregate. */
static int fagg_results(cxm_arena *a, fagg *g, const Cxm__V1__FunnelRequest *req,
                        Cxm__V1__FunnelStepResult ***out, size_t *nout)
{
    size_t m = req->n_steps;
    Cxm__V1__FunnelStepResult **rs = cxm_arena_alloc(a, m * sizeof *rs);
    if (!rs)
        return CXM_ENOMEM;
    for (size_t k = 0; k < m; k++) {
        Cxm__V1__FunnelStepResult *r = cxm_arena_alloc(a, sizeof *r);
        if (!r)
            return CXM_ENOMEM;
        cxm__v1__funnel_step_result__init(r);
        r->name = req->steps[k]->name;
        r->customers = g->cust[k];
        uint64_t prev = k ? g->cust[k - 1] : g->cust[0];
        r->conversion = k ? ratio(g->cust[k], prev) : (g->cust[0] ? 1.0 : 0.0);
        r->overall_conversion = ratio(g->cust[k], g->cust[0]);
        r->dropped = k ? prev - g->cust[k] : 0;
        r->drop_off = k ? ratio(r->dropped, prev) : 0.0;
        r->median_from_previous_ms = quantile(g->dt[k], g->ndt[k], 1, 2);
        r->p90_from_previous_ms = quantile(g->dt[k], g->ndt[k], 9, 10);
        rs[k] = r;
    }
    *out = rs;
    *nout = m;
    return 0;
}

/* Most customers at step 1 first, ties by value. */
static int fagg_cmp(const void *x, const void *y)
{
    const fagg *a = *(const fagg *const *)x, *b = *(const fagg *const *)y;
    if (a->cust[0] != b->cust[0])
        return a->cust[0] > b->cust[0] ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int fun_answer(fun *f, cxm_arena *a, const Cxm__V1__FunnelRequest *req,
                      Cxm__V1__FunnelResponse **out)
{
    Cxm__V1__FunnelResponse *r = cxm_arena_alloc(a, sizeof *r);
    if (!r)
        return CXM_ENOMEM;
    cxm__v1__funnel_response__init(r);
    r->customers_considered = f->considered;
    int rc = fagg_results(a, &f->total, req, &r->steps, &r->n_steps);
    if (rc)
        return rc;
    if (f->ngroups) {
        qsort(f->groups, f->ngroups, sizeof *f->groups, fagg_cmp);
        size_t lim = req->breakdown_limit ? req->breakdown_limit : 20;
        size_t n = f->ngroups < lim ? f->ngroups : lim;
        if (!(r->groups = cxm_arena_alloc(a, n * sizeof *r->groups)))
            return CXM_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            Cxm__V1__FunnelGroup *g = cxm_arena_alloc(a, sizeof *g);
            if (!g)
                return CXM_ENOMEM;
            cxm__v1__funnel_group__init(g);
            g->value = (char *)f->groups[i]->name;
            if ((rc = fagg_results(a, f->groups[i], req, &g->steps, &g->n_steps)))
                return rc;
            r->groups[r->n_groups++] = g;
        }
    }
    *out = r;
    return 0;
}

int jan_funnel(const Cxm__V1__FunnelRequest *req, const jdict *dict, const jsource *src,
               cxm_arena *a, Cxm__V1__FunnelResponse **out)
{
    fun *f = cxm_arena_calloc(a, 1, sizeof *f);
    if (!f)
        return CXM_ENOMEM;
    int rc = fun_init(f, req, dict);
    if (rc)
        return rc;
    jcust c;
    while ((rc = src->next(src->ctx, &c)) > 0)
        if ((rc = fun_customer(f, a, dict, src, &c)))
            return rc;
    if (rc < 0)
        return rc;
    return fun_answer(f, a, req, out);
}

/* ==== Paths ============================================================= */

typedef struct pent {
    uint32_t el[JAN_MAX_PATH];
    uint32_t len;
    uint32_t cust; /* serial of the last customer counted */
    uint64_t sessions, customers;
} pent;

typedef struct pth {
    uint32_t anchor;
    bool to_dir, by_type, keep;
    size_t maxlen;
    int64_t from, to;
    uint32_t cmask;
    /* one customer */
    const jrec **v;
    size_t capv;
    uint32_t *seq;
    size_t capseq;
    jan_cut cut;
    uint32_t serial;
    /* the answer: paths in a table of entry numbers + 1 (0 = empty) */
    pent *ents;
    size_t nents, capents;
    uint32_t *tab;
    size_t tabcap;
    uint64_t considered;
} pth;

static uint32_t pth_elem(const pth *p, const jrec *r)
{
    return p->by_type ? r->type : r->touchpoint;
}

static size_t pth_slot(const uint32_t *el, uint32_t len, size_t cap)
{
    return (size_t)cxm_hash(CXM_HASH_INIT ^ len, el, len * sizeof *el) & (cap - 1);
}

static int pth_rehash(pth *p, cxm_arena *a)
{
    size_t cap = p->tabcap ? p->tabcap * 2 : 256;
    uint32_t *tab = cxm_arena_calloc(a, cap, sizeof *tab);
    if (!tab)
        return CXM_ENOMEM;
    for (size_t e = 0; e < p->nents; e++) {
        size_t s = pth_slot(p->ents[e].el, p->ents[e].len, cap);
        while (tab[s])
            s = (s + 1) & (cap - 1);
        tab[s] = (uint32_t)e + 1;
    }
    p->tab = tab;
    p->tabcap = cap;
    return 0;
}

/* Count one session's path. */
static int pth_count(pth *p, cxm_arena *a, const uint32_t *el, uint32_t len)
{
    int rc;
    if ((p->nents + 1) * 2 > p->tabcap && (rc = pth_rehash(p, a)))
        return rc;
    size_t s = pth_slot(el, len, p->tabcap);
    while (p->tab[s]) {
        pent *e = &p->ents[p->tab[s] - 1];
        if (e->len == len && memcmp(e->el, el, len * sizeof *el) == 0)
            break;
        s = (s + 1) & (p->tabcap - 1);
    }
    if (!p->tab[s]) {
        if ((rc = VEC_GROW(a, p->ents, p->capents, p->nents + 1)))
            return rc;
        pent *e = &p->ents[p->nents];
        memset(e, 0, sizeof *e);
        memcpy(e->el, el, len * sizeof *el);
        e->len = len;
        p->tab[s] = (uint32_t)++p->nents;
    }
    pent *e = &p->ents[p->tab[s] - 1];
    e->sessions++;
    if (e->cust != p->serial) {
        e->cust = p->serial;
        e->customers++;
    }
    return 0;
}

/* One session (records order[b..e) of the view): counted when it has an
 * anchor in range; its path runs from (or to) the sequence's first anchor. */
static int pth_session(pth *p, cxm_arena *a, const uint32_t *order, size_t b, size_t e)
{
    bool hit = false;
    size_t len = 0, first = SIZE_MAX;
    for (size_t i = b; i < e; i++) {
        const jrec *r = p->v[order[i]];
        uint32_t x = pth_elem(p, r);
        if (x == p->anchor && r->at_ms >= p->from && r->at_ms < p->to)
            hit = true;
        if (!p->keep && len && p->seq[len - 1] == x)
            continue;
        if (x == p->anchor && first == SIZE_MAX)
            first = len;
        p->seq[len++] = x;
    }
    if (!hit)
        return 0;
    p->considered++;
    size_t lo = p->to_dir ? (first + 1 > p->maxlen ? first + 1 - p->maxlen : 0) : first;
    size_t hi = p->to_dir ? first + 1 : (len - first > p->maxlen ? first + p->maxlen : len);
    return pth_count(p, a, p->seq + lo, (uint32_t)(hi - lo));
}

static int pth_customer(pth *p, cxm_arena *a, const jcust *c)
{
    /* most customers have no anchor in range: find out before any work */
    bool any = false;
    for (size_t i = lower_at(c->recs, c->n, p->from); i < c->n && c->recs[i].at_ms < p->to; i++)
        if (pth_elem(p, &c->recs[i]) == p->anchor && chan_keep(p->cmask, &c->recs[i])) {
            any = true;
            break;
        }
    if (!any)
        return 0;
    int rc;
    if ((rc = VEC_GROW(a, p->v, p->capv, c->n)) || (rc = VEC_GROW(a, p->seq, p->capseq, c->n)))
        return rc;
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        if (chan_keep(p->cmask, &c->recs[i]))
            p->v[n++] = &c->recs[i];
    if ((rc = cut_sessions(a, &p->cut, p->v, n)))
        return rc;
    p->serial++;
    for (size_t j = 0; j < p->cut.nsess; j++)
        if ((rc = pth_session(p, a, p->cut.order, p->cut.off[j], p->cut.off[j + 1])))
            return rc;
    return 0;
}

/* Most sessions first, ties by the elements' strings, element by element,
 * a prefix first. */
static int pent_cmp(const pent *x, const pent *y, const jdict *dict)
{
    if (x->sessions != y->sessions)
        return x->sessions > y->sessions ? -1 : 1;
    for (uint32_t i = 0; i < x->len && i < y->len; i++) {
        if (x->el[i] == y->el[i])
            continue;
        int c = strcmp(dict_name(dict, x->el[i]), dict_name(dict, y->el[i]));
        if (c)
            return c;
    }
    return x->len < y->len ? -1 : x->len > y->len;
}

/* The best `limit` entries, in order, by insertion into a short sorted list
 * (an entry that does not beat the last kept one costs one comparison). */
static size_t pth_top(const pth *p, const jdict *dict, const pent **top, size_t limit)
{
    size_t n = 0;
    for (size_t e = 0; e < p->nents; e++) {
        const pent *x = &p->ents[e];
        if (n == limit && pent_cmp(x, top[n - 1], dict) >= 0)
            continue;
        size_t i = n < limit ? n++ : n - 1;
        for (; i > 0 && pent_cmp(x, top[i - 1], dict) < 0; i--)
            top[i] = top[i - 1];
        top[i] = x;
    }
    return n;
}

static int pth_answer(pth *p, cxm_arena *a, const jdict *dict, size_t limit,
                      Cxm__V1__PathsResponse **out)
{
    Cxm__V1__PathsResponse *r = cxm_arena_alloc(a, sizeof *r);
    const pent **top = cxm_arena_alloc(a, limit * sizeof *top);
    if (!r || !top)
        return CXM_ENOMEM;
    cxm__v1__paths_response__init(r);
    r->sessions_considered = p->considered;
    r->distinct_paths = p->nents;
    size_t n = pth_top(p, dict, top, limit);
    if (!(r->paths = cxm_arena_alloc(a, (n ? n : 1) * sizeof *r->paths)))
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Cxm__V1__Path *q = cxm_arena_alloc(a, sizeof *q);
        if (!q)
            return CXM_ENOMEM;
        cxm__v1__path__init(q);
        q->elements = cxm_arena_alloc(a, top[i]->len * sizeof *q->elements);
        if (!q->elements)
            return CXM_ENOMEM;
        for (uint32_t k = 0; k < top[i]->len; k++)
            if (!(q->elements[q->n_elements++] = dup_str(a, dict_name(dict, top[i]->el[k]))))
                return CXM_ENOMEM;
        q->sessions = top[i]->sessions;
        q->customers = top[i]->customers;
        q->share = ratio(q->sessions, p->considered);
        r->paths[r->n_paths++] = q;
    }
    *out = r;
    return 0;
}

int jan_paths(const Cxm__V1__PathsRequest *req, const jdict *dict, const jsource *src, cxm_arena *a,
              Cxm__V1__PathsResponse **out)
{
    pth *p = cxm_arena_calloc(a, 1, sizeof *p);
    if (!p)
        return CXM_ENOMEM;
    if (req->max_length == 1 || req->max_length > JAN_MAX_PATH || req->limit > 1000)
        return CXM_EINVAL;
    p->by_type = req->element == CXM__V1__PATH_ELEMENT__PATH_ELEMENT_EVENT_TYPE;
    p->to_dir = req->direction == CXM__V1__PATH_DIRECTION__PATH_DIRECTION_TO;
    p->keep = req->keep_repeats;
    p->maxlen = req->max_length ? req->max_length : 5;
    range_get(req->range, &p->from, &p->to);
    p->cmask = chan_mask(req->channels, req->n_channels);
    p->anchor = dict_id(dict, req->anchor);
    size_t limit = req->limit ? req->limit : 20;
    int rc = 0;
    jcust c;
    /* an anchor no event has: every count is 0, no need to read anything */
    while (p->anchor && (rc = src->next(src->ctx, &c)) > 0)
        if ((rc = pth_customer(p, a, &c)))
            return rc;
    if (rc < 0)
        return rc;
    return pth_answer(p, a, dict, limit, out);
}

/* ==== TouchpointStats =================================================== */

/* Time buckets, UTC: an absolute bucket number per time (hours, days,
 * weeks from the Monday 1970-01-05, or months from 1970-01), and back;
 * the calendar is libshared's (tz.h). */
#define MONDAY_MS (4 * DAY_MS) /* 1970-01-05 */

static int64_t bucket_of(int kind, int64_t t)
{
    switch (kind) {
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_HOUR:
        return cxm_tz_floor_div(t, HOUR_MS);
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_DAY:
        return cxm_tz_floor_div(t, DAY_MS);
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_WEEK:
        return cxm_tz_floor_div(t - MONDAY_MS, 7 * DAY_MS);
    default: {
        int64_t y;
        int m, d;
        cxm_tz_civil_from_days(cxm_tz_floor_div(t, DAY_MS), &y, &m, &d);
        return (y - 1970) * 12 + (m - 1);
    }
    }
}

static int64_t bucket_start(int kind, int64_t b)
{
    switch (kind) {
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_HOUR:
        return b * HOUR_MS;
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_DAY:
        return b * DAY_MS;
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_WEEK:
        return b * 7 * DAY_MS + MONDAY_MS;
    default:
        return cxm_tz_days_from_civil(1970 + cxm_tz_floor_div(b, 12),
                                      (int)(b - cxm_tz_floor_div(b, 12) * 12 + 1), 1) *
               DAY_MS;
    }
}

typedef struct tstat {
    uint32_t id;
    const char *name;
    uint64_t events, uniq, sessions, exits, goal;
    uint64_t chan[JAN_NCHAN], stage[JAN_NSTAGE];
    double value;
    uint32_t cust_stamp, sess_stamp;
    int64_t first_at; /* the current customer's first event here */
    uint64_t *bev, *buq;
    uint32_t *bstamp;
} tstat;

typedef struct tps {
    int64_t from, to, goal_win;
    uint32_t cmask, goal;
    bool has_goal, listed;
    int bucket;
    int64_t b0;
    size_t nb;
    /* one customer */
    const jrec **v;
    size_t capv;
    int64_t *gt; /* goal times */
    size_t capgt;
    uint32_t *touched;
    size_t ntouched, captouched;
    jan_cut cut;
    uint32_t serial, sess_serial;
    /* the answer */
    tstat *st;
    size_t nst, capst;
    u32map map;
    uint64_t active;
} tps;

static int tps_new(tps *t, cxm_arena *a, uint32_t id, const char *name)
{
    int rc = VEC_GROW(a, t->st, t->capst, t->nst + 1);
    if (rc)
        return rc;
    tstat *s = &t->st[t->nst];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->name = name;
    if (t->nb && (!(s->bev = cxm_arena_calloc(a, t->nb, sizeof *s->bev)) ||
                  !(s->buq = cxm_arena_calloc(a, t->nb, sizeof *s->buq)) ||
                  !(s->bstamp = cxm_arena_calloc(a, t->nb, sizeof *s->bstamp))))
        return CXM_ENOMEM;
    t->nst++;
    return id ? u32map_put(a, &t->map, id, (uint32_t)(t->nst - 1)) : 0;
}

static int tps_init(tps *t, cxm_arena *a, const Cxm__V1__TouchpointStatsRequest *req,
                    const jdict *dict)
{
    range_get(req->range, &t->from, &t->to);
    t->cmask = chan_mask(req->channels, req->n_channels);
    t->has_goal = req->goal_event_type && *req->goal_event_type;
    t->goal = dict_id(dict, req->goal_event_type);
    t->goal_win = req->goal_window_ms > 0 ? req->goal_window_ms : 7 * DAY_MS;
    t->bucket = (int)req->bucket;
    if (t->bucket) {
        if (t->bucket > CXM__V1__TIME_BUCKET__TIME_BUCKET_MONTH || t->from == INT64_MIN ||
            t->to == INT64_MAX)
            return CXM_EINVAL;
        t->b0 = bucket_of(t->bucket, t->from);
        int64_t nb = bucket_of(t->bucket, t->to - 1) - t->b0 + 1;
        if (nb > JAN_MAX_BUCKETS)
            return CXM_EINVAL;
        t->nb = nb > 0 ? (size_t)nb : 0;
    }
    t->listed = req->n_touchpoints > 0;
    for (size_t i = 0; i < req->n_touchpoints; i++) {
        uint32_t id = dict_id(dict, req->touchpoints[i]);
        if (id && u32map_get(&t->map, id) != UINT32_MAX)
            continue; /* listed twice */
        int rc = tps_new(t, a, id, req->touchpoints[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* The stat of a touchpoint, NULL when it is not asked for. */
static int tps_stat(tps *t, cxm_arena *a, const jdict *dict, uint32_t id, tstat **out)
{
    uint32_t i = u32map_get(&t->map, id);
    if (i == UINT32_MAX && !t->listed) {
        int rc = tps_new(t, a, id, dict_name(dict, id));
        if (rc)
            return rc;
        i = (uint32_t)(t->nst - 1);
    }
    *out = i == UINT32_MAX ? NULL : &t->st[i];
    return 0;
}

/* Count one in-range event r of the current customer at stat s. */
static int tps_event(tps *t, cxm_arena *a, tstat *s, const jrec *r)
{
    s->events++;
    if (r->channel < JAN_NCHAN)
        s->chan[r->channel]++;
    if (r->stage < JAN_NSTAGE)
        s->stage[r->stage]++;
    if (r->flags & JREC_BASE_CURRENCY)
        s->value += r->value;
    if (s->sess_stamp != t->sess_serial) {
        s->sess_stamp = t->sess_serial;
        s->sessions++;
    }
    if (s->cust_stamp != t->serial) {
        int rc = VEC_GROW(a, t->touched, t->captouched, t->ntouched + 1);
        if (rc)
            return rc;
        t->touched[t->ntouched++] = (uint32_t)(s - t->st);
        s->cust_stamp = t->serial;
        s->uniq++;
        s->first_at = r->at_ms;
    } else if (r->at_ms < s->first_at) {
        s->first_at = r->at_ms; /* sessions interleave: not in time order */
    }
    if (t->nb) {
        size_t b = (size_t)(bucket_of(t->bucket, r->at_ms) - t->b0);
        s->bev[b]++;
        if (s->bstamp[b] != t->serial) {
            s->bstamp[b] = t->serial;
            s->buq[b]++;
        }
    }
    return 0;
}

/* Goal conversion of the current customer at every touchpoint it touched:
 * a goal event in (first, first + window] after the channels filter. */
static int tps_goal(tps *t, cxm_arena *a, const jcust *c, size_t lo)
{
    size_t ng = 0;
    int64_t last = add_sat(t->to - 1, t->goal_win);
    for (size_t i = lo; i < c->n && c->recs[i].at_ms <= last; i++) {
        const jrec *r = &c->recs[i];
        if (r->type != t->goal || !chan_keep(t->cmask, r))
            continue;
        int rc = VEC_GROW(a, t->gt, t->capgt, ng + 1);
        if (rc)
            return rc;
        t->gt[ng++] = r->at_ms;
    }
    for (size_t k = 0; k < t->ntouched && ng; k++) {
        tstat *s = &t->st[t->touched[k]];
        size_t l = 0, h = ng; /* the first goal strictly after first_at */
        while (l < h) {
            size_t mid = l + (h - l) / 2;
            if (t->gt[mid] <= s->first_at)
                l = mid + 1;
            else
                h = mid;
        }
        s->goal += l < ng && t->gt[l] <= add_sat(s->first_at, t->goal_win);
    }
    return 0;
}

static int tps_customer(tps *t, cxm_arena *a, const jdict *dict, const jcust *c)
{
    size_t lo = lower_at(c->recs, c->n, t->from), n = 0;
    int rc = VEC_GROW(a, t->v, t->capv, c->n - lo);
    if (rc)
        return rc;
    for (size_t i = lo; i < c->n && c->recs[i].at_ms < t->to; i++)
        if (chan_keep(t->cmask, &c->recs[i]))
            t->v[n++] = &c->recs[i];
    if (n == 0)
        return 0;
    t->active++;
    t->serial++;
    t->ntouched = 0;
    if ((rc = cut_sessions(a, &t->cut, t->v, n)))
        return rc;
    for (size_t j = 0; j < t->cut.nsess; j++) {
        t->sess_serial++;
        tstat *s = NULL;
        for (size_t i = t->cut.off[j]; i < t->cut.off[j + 1]; i++) {
            const jrec *r = t->v[t->cut.order[i]];
            if ((rc = tps_stat(t, a, dict, r->touchpoint, &s)) ||
                (s && (rc = tps_event(t, a, s, r))))
                return rc;
        }
        if (s) /* s is the stat of the session's last event */
            s->exits++;
    }
    return t->goal ? tps_goal(t, a, c, lo) : 0;
}

static int tstat_cmp(const void *x, const void *y)
{
    const tstat *a = *(const tstat *const *)x, *b = *(const tstat *const *)y;
    if (a->events != b->events)
        return a->events > b->events ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int chan_cmp(const void *x, const void *y)
{
    const Cxm__V1__ChannelShare *a = *(Cxm__V1__ChannelShare *const *)x;
    const Cxm__V1__ChannelShare *b = *(Cxm__V1__ChannelShare *const *)y;
    if (a->events != b->events)
        return a->events > b->events ? -1 : 1;
    return (a->channel > b->channel) - (a->channel < b->channel);
}

static int tstat_mixes(cxm_arena *a, const tstat *s, Cxm__V1__TouchpointStat *o)
{
    o->channels = cxm_arena_alloc(a, JAN_NCHAN * sizeof *o->channels);
    o->stages = cxm_arena_alloc(a, JAN_NSTAGE * sizeof *o->stages);
    if (!o->channels || !o->stages)
        return CXM_ENOMEM;
    for (int ch = 0; ch < JAN_NCHAN; ch++) {
        Cxm__V1__ChannelShare *c;
        if (!s->chan[ch])
            continue;
        if (!(c = cxm_arena_alloc(a, sizeof *c)))
            return CXM_ENOMEM;
        cxm__v1__channel_share__init(c);
        c->channel = (Cxm__V1__Channel)ch;
        c->events = s->chan[ch];
        c->share = ratio(s->chan[ch], s->events);
        o->channels[o->n_channels++] = c;
    }
    qsort(o->channels, o->n_channels, sizeof *o->channels, chan_cmp);
    for (int st = 0; st < JAN_NSTAGE; st++) {
        Cxm__V1__StageShare *g;
        if (!s->stage[st])
            continue;
        if (!(g = cxm_arena_alloc(a, sizeof *g)))
            return CXM_ENOMEM;
        cxm__v1__stage_share__init(g);
        g->stage = (Cxm__V1__JourneyStage)st;
        g->events = s->stage[st];
        g->share = ratio(s->stage[st], s->events);
        o->stages[o->n_stages++] = g;
    }
    return 0;
}

static int tstat_buckets(cxm_arena *a, const tps *t, const tstat *s, Cxm__V1__TouchpointStat *o)
{
    if (!t->nb)
        return 0;
    if (!(o->buckets = cxm_arena_alloc(a, t->nb * sizeof *o->buckets)))
        return CXM_ENOMEM;
    for (size_t b = 0; b < t->nb; b++) {
        Cxm__V1__TouchpointBucket *k = cxm_arena_alloc(a, sizeof *k);
        if (!k)
            return CXM_ENOMEM;
        cxm__v1__touchpoint_bucket__init(k);
        k->start_unix_ms = bucket_start(t->bucket, t->b0 + (int64_t)b);
        k->events = s->bev[b];
        k->unique_customers = s->buq[b];
        o->buckets[o->n_buckets++] = k;
    }
    return 0;
}

static int tstat_answer(cxm_arena *a, const tps *t, const tstat *s, jan_feedback_fn fb,
                        void *fb_ctx, Cxm__V1__TouchpointStat **out)
{
    Cxm__V1__TouchpointStat *o = cxm_arena_alloc(a, sizeof *o);
    Cxm__V1__TouchpointFeedback *f = cxm_arena_alloc(a, sizeof *f);
    if (!o || !f)
        return CXM_ENOMEM;
    cxm__v1__touchpoint_stat__init(o);
    cxm__v1__touchpoint_feedback__init(f);
    if (!(o->touchpoint = dup_str(a, s->name)))
        return CXM_ENOMEM;
    o->events = s->events;
    o->unique_customers = s->uniq;
    o->exit_rate = ratio(s->exits, s->sessions);
    o->total_value = s->value;
    o->customer_share = ratio(s->uniq, t->active);
    o->goal_customers = s->goal;
    o->goal_conversion = ratio(s->goal, s->uniq);
    o->feedback = f;
    int rc;
    if ((rc = tstat_mixes(a, s, o)) || (rc = tstat_buckets(a, t, s, o)))
        return rc;
    if (fb && s->id && (rc = fb(fb_ctx, s->id, f)))
        return rc;
    *out = o;
    return 0;
}

static int tps_answer(tps *t, cxm_arena *a, jan_feedback_fn fb, void *fb_ctx,
                      Cxm__V1__TouchpointStatsResponse **out)
{
    Cxm__V1__TouchpointStatsResponse *r = cxm_arena_alloc(a, sizeof *r);
    const tstat **order = cxm_arena_alloc(a, (t->nst ? t->nst : 1) * sizeof *order);
    if (!r || !order)
        return CXM_ENOMEM;
    cxm__v1__touchpoint_stats_response__init(r);
    r->customers_active = t->active;
    for (size_t i = 0; i < t->nst; i++)
        order[i] = &t->st[i];
    qsort(order, t->nst, sizeof *order, tstat_cmp);
    size_t n = t->listed || t->nst < JAN_MAX_TOUCHPOINTS ? t->nst : JAN_MAX_TOUCHPOINTS;
    if (!(r->stats = cxm_arena_alloc(a, (n ? n : 1) * sizeof *r->stats)))
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = tstat_answer(a, t, order[i], fb, fb_ctx, &r->stats[i]);
        if (rc)
            return rc;
        r->n_stats++;
    }
    *out = r;
    return 0;
}

int jan_touchpoints(const Cxm__V1__TouchpointStatsRequest *req, const jdict *dict,
                    const jsource *src, jan_feedback_fn fb, void *fb_ctx, cxm_arena *a,
                    Cxm__V1__TouchpointStatsResponse **out)
{
    tps *t = cxm_arena_calloc(a, 1, sizeof *t);
    if (!t)
        return CXM_ENOMEM;
    int rc = tps_init(t, a, req, dict);
    if (rc)
        return rc;
    jcust c;
    while ((rc = src->next(src->ctx, &c)) > 0)
        if ((rc = tps_customer(t, a, dict, &c)))
            return rc;
    if (rc < 0)
        return rc;
    return tps_answer(t, a, fb, fb_ctx, out);
}
