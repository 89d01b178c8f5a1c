/*
 * tz.c - IANA time zones from TZif files (RFC 8536): transitions, the POSIX
 * TZ footer, local-midnight bucket arithmetic, and the process-wide cache.
 */
#include "cxm/tz.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"

#define TZ_DIR "/usr/share/zoneinfo/"
#define TZ_NAME_MAX 128
#define TZ_FILE_MAX (1 << 20)
#define DAY_S 86400

/* A date of a POSIX TZ rule: Jn (kind 'J', n 1-365, no Feb 29), n (kind
 * 'n', 0-365) or Mm.w.d (kind 'M'); secs is the local time of day. */
typedef struct tz_date {
    char kind;
    int n, m, w, d;
    int32_t secs;
} tz_date;

/* The POSIX TZ footer: the rule after the last transition. */
typedef struct tz_rule {
    bool present, has_dst;
    int32_t std_off, dst_off; /* seconds east of UTC */
    tz_date start, end;
} tz_rule;

struct cxm_tz {
    char *name;
    size_t ntrans;
    int64_t *trans; /* transition instants, seconds, ascending */
    uint8_t *idx;   /* the type in effect from trans[i] */
    int32_t *off;   /* per type: seconds east of UTC */
    size_t ntypes;
    tz_rule rule;
    struct cxm_tz *next; /* cache list */
};

static cxm_tz tz_utc_zone = {.name = (char *)"", .ntypes = 0};
static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;
static cxm_tz *tz_cache;

/* ---- calendar (proleptic Gregorian, days since 1970-01-01) ------------ */

int64_t cxm_tz_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t cxm_tz_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = cxm_tz_floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void cxm_tz_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = cxm_tz_floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    static const int n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return n[m - 1] + (m == 2 && is_leap(y));
}

/* ---- the POSIX TZ footer ----------------------------------------------- */

/* Day (since 1970) of a rule date in year y. */
static int64_t rule_day(const tz_date *dt, int64_t y)
{
    int64_t jan1 = cxm_tz_days_from_civil(y, 1, 1);
    if (dt->kind == 'J')
        return jan1 + dt->n - 1 + (is_leap(y) && dt->n >= 60);
    if (dt->kind == 'n')
        return jan1 + dt->n;
    int64_t first = cxm_tz_days_from_civil(y, dt->m, 1);
    int wd = (int)((first + 4) % 7 + 7) % 7; /* 1970-01-01 was a Thursday (4) */
    int64_t day = first + (dt->d - wd + 7) % 7 + (int64_t)(dt->w - 1) * 7;
    while (day >= first + month_days(y, dt->m))
        day -= 7;
    return day;
}

static int32_t rule_offset(const tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return r->std_off;
    int64_t y;
    int m, d;
    cxm_tz_civil_from_days(cxm_tz_floor_div(t + r->std_off, DAY_S), &y, &m, &d);
    int64_t s = rule_day(&r->start, y) * DAY_S + r->start.secs - r->std_off;
    int64_t e = rule_day(&r->end, y) * DAY_S + r->end.secs - r->dst_off;
    bool dst = s < e ? (t >= s && t < e) : !(t >= e && t < s);
    return dst ? r->dst_off : r->std_off;
}

static const char *parse_abbr(const char *p)
{
    if (*p == '<') {
        const char *q = strchr(p, '>');
        return q ? q + 1 : NULL;
    }
    const char *q = p;
    while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z'))
        q++;
    return q - p >= 3 ? q : NULL;
}

/* [+-]hh[:mm[:ss]] into seconds; hours up to 167 (RFC 8536 extension). */
static const char *parse_hms(const char *p, int32_t *out)
{
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    int v[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (i && *p != ':')
            break;
        if (i)
            p++;
        if (*p < '0' || *p > '9')
            return NULL;
        while (*p >= '0' && *p <= '9' && v[i] < 1000)
            v[i] = v[i] * 10 + (*p++ - '0');
    }
    if (v[0] > 167 || v[1] > 59 || v[2] > 59)
        return NULL;
    *out = sign * (v[0] * 3600 + v[1] * 60 + v[2]);
    return p;
}

static const char *parse_num(const char *p, int *out)
{
    if (*p < '0' || *p > '9')
        return NULL;
    int v = 0;
    while (*p >= '0' && *p <= '9' && v < 1000)
        v = v * 10 + (*p++ - '0');
    *out = v;
    return p;
}

static const char *parse_date(const char *p, tz_date *dt)
{
    dt->secs = 7200;
    if (*p == 'M') {
        dt->kind = 'M';
        if (!(p = parse_num(p + 1, &dt->m)) || *p++ != '.' || !(p = parse_num(p, &dt->w)) ||
            *p++ != '.' || !(p = parse_num(p, &dt->d)))
            return NULL;
        if (dt->m < 1 || dt->m > 12 || dt->w < 1 || dt->w > 5 || dt->d > 6)
            return NULL;
    } else {
        dt->kind = *p == 'J' ? 'J' : 'n';
        if (!(p = parse_num(p + (*p == 'J'), &dt->n)) || dt->n > 365 ||
            (dt->kind == 'J' && dt->n < 1))
            return NULL;
    }
    if (*p == '/' && !(p = parse_hms(p + 1, &dt->secs)))
        return NULL;
    return p;
}

/* "CET-1CEST,M3.5.0,M10.5.0/3": POSIX offsets count west, hence the signs. */
static bool parse_rule(const char *p, tz_rule *r)
{
    int32_t v;
    if (!(p = parse_abbr(p)) || !(p = parse_hms(p, &v)))
        return false;
    r->std_off = -v;
    r->dst_off = r->std_off + 3600;
    r->present = true;
    if (!*p)
        return true;
    if (!(p = parse_abbr(p)))
        return false;
    r->has_dst = true;
    if (*p && *p != ',') {
        if (!(p = parse_hms(p, &v)))
            return false;
        r->dst_off = -v;
    }
    if (!*p) { /* no rule given: POSIX's default, the US rule */
        r->start = (tz_date){.kind = 'M', .m = 3, .w = 2, .d = 0, .secs = 7200};
        r->end = (tz_date){.kind = 'M', .m = 11, .w = 1, .d = 0, .secs = 7200};
        return true;
    }
    if (*p++ != ',' || !(p = parse_date(p, &r->start)) || *p++ != ',' ||
        !(p = parse_date(p, &r->end)))
        return false;
    return *p == 0;
}

/* ---- TZif -------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct tzif_hdr {
    uint32_t isut, isstd, leap, time, type, chars;
} tzif_hdr;

static bool tzif_header(const unsigned char *p, size_t n, tzif_hdr *h)
{
    if (n < 44 || memcmp(p, "TZif", 4) != 0)
        return false;
    h->isut = be32(p + 20), h->isstd = be32(p + 24), h->leap = be32(p + 28);
    h->time = be32(p + 32), h->type = be32(p + 36), h->chars = be32(p + 40);
    return h->type >= 1 && h->type <= 256 && h->time < 1000000 && h->chars < 100000 &&
           h->leap < 100000 && h->isut <= h->type && h->isstd <= h->type;
}

static size_t tzif_block(const tzif_hdr *h, int tsize)
{
    return (size_t)h->time * (tsize + 1) + (size_t)h->type * 6 + h->chars +
           (size_t)h->leap * (tsize + 4) + h->isstd + h->isut;
}

/* Fills z's tables from the TZif bytes p[0..n); false if malformed. */
static bool tzif_parse(cxm_tz *z, const unsigned char *p, size_t n)
{
    tzif_hdr h;
    if (!tzif_header(p, n, &h))
        return false;
    int tsize = 4;
    size_t at = 44;    /* version 1: the 32-bit block is the only one */
    if (p[4] >= '2') { /* skip the 32-bit block for the 64-bit one */
        at += tzif_block(&h, 4);
        if (at > n || !tzif_header(p + at, n - at, &h))
            return false;
        at += 44;
        tsize = 8;
    }
    if (at + tzif_block(&h, tsize) > n)
        return false;
    z->ntrans = h.time, z->ntypes = h.type;
    z->trans = calloc(h.time + 1, sizeof *z->trans);
    z->idx = calloc(h.time + 1, 1);
    z->off = calloc(h.type, sizeof *z->off);
    if (!z->trans || !z->idx || !z->off)
        return false;
    const unsigned char *q = p + at;
    for (size_t i = 0; i < h.time; i++, q += tsize)
        z->trans[i] = tsize == 8 ? be64(q) : (int32_t)be32(q);
    for (size_t i = 0; i < h.time; i++, q++)
        if ((z->idx[i] = *q) >= h.type)
            return false;
    for (size_t i = 0; i < h.type; i++, q += 6)
        z->off[i] = (int32_t)be32(q);
    at += tzif_block(&h, tsize);
    if (tsize == 8 && at < n && p[at] == '\n') { /* the footer */
        const unsigned char *e = memchr(p + at + 1, '\n', n - at - 1);
        char tzs[128];
        size_t len = e ? (size_t)(e - p - at - 1) : 0;
        if (e && len > 0 && len < sizeof tzs) {
            memcpy(tzs, p + at + 1, len);
            tzs[len] = 0;
            if (!parse_rule(tzs, &z->rule))
                z->rule.present = false;
        }
    }
    return true;
}

static void tz_free(cxm_tz *z)
{
    if (!z)
        return;
    free(z->name);
    free(z->trans);
    free(z->idx);
    free(z->off);
    free(z);
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= TZ_NAME_MAX || name[0] == '/' || name[n - 1] == '/' || strstr(name, "..") ||
        strstr(name, "//"))
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '+' || *p == '-' || *p == '/'))
            return false;
    return true;
}

static int tz_load(const char *name, cxm_tz **out)
{
    char path[sizeof TZ_DIR + TZ_NAME_MAX];
    snprintf(path, sizeof path, "%s%s", TZ_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOMEM ? CXM_ENOMEM : CXM_ENOTFOUND;
    unsigned char *buf = malloc(TZ_FILE_MAX);
    cxm_tz *z = calloc(1, sizeof *z);
    int rc = CXM_ENOMEM;
    if (!buf || !z || !(z->name = strdup(name)))
        goto done;
    size_t n = fread(buf, 1, TZ_FILE_MAX, f);
    rc = CXM_ENOTFOUND; /* a directory or a file that is not TZif */
    if (n == 0 || n == TZ_FILE_MAX || !tzif_parse(z, buf, n))
        goto done;
    *out = z, z = NULL, rc = 0;
done:
    fclose(f);
    free(buf);
    tz_free(z);
    return rc;
}

int cxm_tz_get(const char *name, const cxm_tz **out)
{
    if (!name[0] || strcmp(name, "UTC") == 0) {
        *out = &tz_utc_zone;
        return 0;
    }
    if (!name_ok(name))
        return CXM_EINVAL;
    pthread_mutex_lock(&tz_lock);
    cxm_tz *z = tz_cache;
    while (z && strcmp(z->name, name) != 0)
        z = z->next;
    int rc = 0;
    if (!z && (rc = tz_load(name, &z)) == 0) {
        z->next = tz_cache;
        tz_cache = z;
    }
    pthread_mutex_unlock(&tz_lock);
    if (rc == 0)
        *out = z;
    return rc;
}

const cxm_tz *cxm_tz_utc(void)
{
    return &tz_utc_zone;
}

const char *cxm_tz_name(const cxm_tz *z)
{
    return z->name;
}

/* ---- offsets and buckets ----------------------------------------------- */

/* Index of the last transition at or before t, or -1. */
static ptrdiff_t trans_at(const cxm_tz *z, int64_t t)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)z->ntrans;
    while (lo < hi) {
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

static int32_t offset_s(const cxm_tz *z, int64_t t)
{
    if (z->ntypes == 0)
        return 0;
    ptrdiff_t i = trans_at(z, t);
    if (z->rule.present && (z->ntrans == 0 || i == (ptrdiff_t)z->ntrans - 1))
        return rule_offset(&z->rule, t);
    return i < 0 ? z->off[0] : z->off[z->idx[i]];
}

int32_t cxm_tz_offset(const cxm_tz *z, int64_t utc_ms)
{
    return offset_s(z, cxm_tz_floor_div(utc_ms, 1000));
}

static int64_t local_s(const cxm_tz *z, int64_t t)
{
    return t + offset_s(z, t);
}

/* Seconds: the first instant whose local time is >= l. Zones change offset
 * at most once in two days, so the offsets a day either side are the only
 * candidates; in a gap neither fits and the answer is the transition,
 * found by bisection (local time is increasing there). */
static int64_t to_utc_s(const cxm_tz *z, int64_t l)
{
    int64_t a = l - offset_s(z, l - 2 * DAY_S), b = l - offset_s(z, l + 2 * DAY_S);
    int64_t lo = a < b ? a : b, hi = a < b ? b : a;
    if (local_s(z, lo) == l)
        return lo;
    if (local_s(z, hi) == l)
        return hi;
    while (lo < hi) { /* smallest u in [lo, hi] with local(u) >= l */
        int64_t mid = lo + (hi - lo) / 2;
        if (local_s(z, mid) >= l)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

int64_t cxm_tz_to_utc(const cxm_tz *z, int64_t local_ms)
{
    int64_t s = cxm_tz_floor_div(local_ms, 1000), ms = local_ms - s * 1000;
    int64_t u = to_utc_s(z, s);
    return u * 1000 + (local_s(z, u) == s ? ms : 0);
}

/* The local day (since 1970) starting the unit's bucket that holds local
 * day d, and the day starting the next one. */
static int64_t unit_day(enum cxm_tz_unit unit, int64_t d, bool next)
{
    if (unit == CXM_TZ_WEEK) {
        int64_t monday = d - (((d + 3) % 7) + 7) % 7; /* day 0 was a Thursday */
        return monday + (next ? 7 : 0);
    }
    if (unit == CXM_TZ_MONTH) {
        int64_t y;
        int m, dd;
        cxm_tz_civil_from_days(d, &y, &m, &dd);
        if (next && ++m > 12)
            m = 1, y++;
        return cxm_tz_days_from_civil(y, m, 1);
    }
    return d + (next ? 1 : 0);
}

static int64_t bucket_s(const cxm_tz *z, enum cxm_tz_unit unit, int64_t t, bool next)
{
    if (unit == CXM_TZ_HOUR)
        return (cxm_tz_floor_div(t, 3600) + (next ? 1 : 0)) * 3600;
    int64_t d = cxm_tz_floor_div(local_s(z, t), DAY_S), b = unit_day(unit, d, next);
    int64_t s = to_utc_s(z, b * DAY_S);
    /* A fall-back across midnight can put t before its local day's start,
     * and so the next start at or before t. */
    if (!next && s > t)
        s = to_utc_s(z, unit_day(unit, d - 1, false) * DAY_S);
    while (next && s <= t)
        s = to_utc_s(z, (b = unit_day(unit, b, true)) * DAY_S);
    return s;
}

int64_t cxm_tz_floor(const cxm_tz *z, enum cxm_tz_unit unit, int64_t utc_ms)
{
    return bucket_s(z, unit, cxm_tz_floor_div(utc_ms, 1000), false) * 1000;
}

int64_t cxm_tz_next(const cxm_tz *z, enum cxm_tz_unit unit, int64_t utc_ms)
{
    return bucket_s(z, unit, cxm_tz_floor_div(utc_ms, 1000), true) * 1000;
}

bool cxm_tz_whole_hours(const cxm_tz *z, int64_t from_ms, int64_t to_ms)
{
    int64_t from = cxm_tz_floor_div(from_ms, 1000), to = cxm_tz_floor_div(to_ms, 1000);
    if (offset_s(z, from) % 3600)
        return false;
    ptrdiff_t i = trans_at(z, from) + 1;
    for (; i < (ptrdiff_t)z->ntrans && z->trans[i] < to; i++)
        if (z->off[z->idx[i]] % 3600)
            return false;
    bool rule_in_range = z->ntrans == 0 || z->trans[z->ntrans - 1] < to;
    if (z->rule.present && rule_in_range)
        return z->rule.std_off % 3600 == 0 && (!z->rule.has_dst || z->rule.dst_off % 3600 == 0);
    return true;
}
