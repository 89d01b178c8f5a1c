/*
 * test_tz.c - time zones from the system's TZif files: offsets, local
 * midnight buckets across both DST switches, half-hour zones, the POSIX
 * footer past the table, the cache and bad names.
 */
#include <stdint.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/tz.h"

#define H 3600000LL
#define SKIP 77

static const cxm_tz *zone(const char *name)
{
    const cxm_tz *z = NULL;
    int rc = cxm_tz_get(name, &z);
    CHECK_EQ_INT(rc, 0);
    return rc ? cxm_tz_utc() : z;
}

static void test_seoul(void)
{
    const cxm_tz *z = zone("Asia/Seoul");
    CHECK_EQ_INT(cxm_tz_offset(z, 1741636800000), 9 * 3600);
    /* 2025-03-10T20:00Z is 05:00 on the 11th in Seoul: its day began at 15:00Z. */
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, 1741636800000), 1741618800000);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_DAY, 1741636800000), 1741618800000 + 24 * H);
    CHECK(cxm_tz_whole_hours(z, 1735689600000, 1735689600000 + 365 * 24 * H));
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_HOUR, 1741636800000 + 1234), 1741636800000);
}

static void test_berlin(void)
{
    const cxm_tz *z = zone("Europe/Berlin");
    /* Spring forward 2025-03-30 01:00Z: a 23-hour local day. */
    CHECK_EQ_INT(cxm_tz_offset(z, 1743296399000), 3600);
    CHECK_EQ_INT(cxm_tz_offset(z, 1743296400000), 7200);
    int64_t noon = 1743336000000; /* 2025-03-30T12:00Z */
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, noon), 1743289200000);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_DAY, noon), 1743372000000);
    CHECK_EQ_INT(1743372000000 - 1743289200000, 23 * H);
    /* Fall back 2025-10-26 01:00Z: a 25-hour local day. */
    int64_t fall = 1761480000000; /* 2025-10-26T12:00Z */
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, fall), 1761429600000);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_DAY, fall), 1761519600000);
    CHECK_EQ_INT(1761519600000 - 1761429600000, 25 * H);
    /* 02:30 local does not exist on 03-30 (the gap ends at 01:00Z) and
     * exists twice on 10-26 (the earlier is 00:30Z). */
    CHECK_EQ_INT(cxm_tz_to_utc(z, 1743301800000), 1743296400000);
    CHECK_EQ_INT(cxm_tz_to_utc(z, 1761445800000), 1761438600000);
    /* Weeks start on Monday: 03-30 is a Sunday, its week began 03-24. */
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_WEEK, noon), 1742770800000);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_WEEK, noon), 1743372000000); /* Mon 03-31 */
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_MONTH, noon), 1740783600000);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_MONTH, noon), 1743458400000);
    CHECK(cxm_tz_whole_hours(z, 1735689600000, 1735689600000 + 365 * 24 * H));
    /* Before 1893 Berlin kept local mean time, +0:53:28. */
    CHECK(!cxm_tz_whole_hours(z, -2524521600000, 1735689600000));
    /* 2100 is past the TZif table: the POSIX footer decides. */
    CHECK_EQ_INT(cxm_tz_offset(z, 4102444800000), 3600);
    CHECK_EQ_INT(cxm_tz_offset(z, 4118083200000), 7200);
    CHECK(cxm_tz_whole_hours(z, 4102444800000, 4118083200000));
}

static void test_new_york(void)
{
    const cxm_tz *z = zone("America/New_York");
    int64_t spring = 1741521600000, fall = 1762084800000; /* 2025-03-09, 11-02 12:00Z */
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, spring), 1741496400000);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_DAY, spring), 1741579200000);
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, fall), 1762056000000);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_DAY, fall), 1762146000000);
    CHECK_EQ_INT(cxm_tz_offset(z, spring), -4 * 3600);
    CHECK_EQ_INT(cxm_tz_offset(z, 4102444800000), -5 * 3600); /* footer, January */
    const cxm_tz *syd = zone("Australia/Sydney");             /* southern footer */
    CHECK_EQ_INT(cxm_tz_offset(syd, 4102444800000), 11 * 3600);
    CHECK_EQ_INT(cxm_tz_offset(syd, 4118083200000), 10 * 3600);
}

static void test_kolkata_utc(void)
{
    const cxm_tz *z = zone("Asia/Kolkata");
    int64_t t = 1735725600000; /* 2025-01-01T10:00Z, 15:30 local */
    CHECK_EQ_INT(cxm_tz_offset(z, t), 19800);
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, t), 1735669800000);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_DAY, t), 1735669800000 + 24 * H);
    CHECK(!cxm_tz_whole_hours(z, t, t + H));
    const cxm_tz *u = zone("UTC"), *e = zone("");
    CHECK(u == e && u == cxm_tz_utc());
    CHECK_EQ_INT(cxm_tz_floor(u, CXM_TZ_DAY, t), 1735689600000);
    CHECK_EQ_INT(cxm_tz_next(u, CXM_TZ_DAY, t), 1735776000000);
    CHECK_EQ_INT(cxm_tz_floor(u, CXM_TZ_WEEK, t), 1735516800000); /* Mon 2024-12-30 */
    CHECK_EQ_INT(cxm_tz_floor(u, CXM_TZ_MONTH, t), 1735689600000);
    CHECK_EQ_INT(cxm_tz_next(u, CXM_TZ_MONTH, t), 1735689600000 + 31 * 24 * H);
    CHECK(cxm_tz_whole_hours(u, INT64_MIN, INT64_MAX));
}

/* Beirut springs forward at midnight (2024-03-31 00:00 -> 01:00): that
 * day starts at 01:00 local, 22:00Z, and lasts 23 hours. */
static void test_midnight_gap(void)
{
    const cxm_tz *z = zone("Asia/Beirut");
    int64_t start = 1711836000000; /* 2024-03-30T22:00Z */
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, start + 5 * H), start);
    CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, start - 1), 1711749600000); /* the 30th, 24 h */
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_DAY, start - 1), start);
    CHECK_EQ_INT(cxm_tz_next(z, CXM_TZ_DAY, start), 1711918800000); /* 23 h later */
}

/* Every day of 2024-2026 in Berlin and New York: buckets chain, are 23 to
 * 25 hours long, and floor(next(t)) == next(t). */
static void test_chain(const char *name)
{
    const cxm_tz *z = zone(name);
    int64_t t = cxm_tz_floor(z, CXM_TZ_DAY, 1704067200000);
    int short_days = 0, long_days = 0;
    for (int i = 0; i < 3 * 366; i++) {
        int64_t n = cxm_tz_next(z, CXM_TZ_DAY, t);
        CHECK(n - t >= 23 * H && n - t <= 25 * H);
        short_days += n - t == 23 * H, long_days += n - t == 25 * H;
        CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, n), n);
        CHECK_EQ_INT(cxm_tz_floor(z, CXM_TZ_DAY, n - 1), t);
        t = n;
    }
    CHECK_EQ_INT(short_days, 3);
    CHECK_EQ_INT(long_days, 3);
}

static void test_names(void)
{
    const cxm_tz *z = NULL, *again = NULL;
    CHECK_EQ_INT(cxm_tz_get("../etc/passwd", &z), CXM_EINVAL);
    CHECK_EQ_INT(cxm_tz_get("Asia/../../etc/passwd", &z), CXM_EINVAL);
    CHECK_EQ_INT(cxm_tz_get("/etc/passwd", &z), CXM_EINVAL);
    CHECK_EQ_INT(cxm_tz_get("Asia/Seoul ", &z), CXM_EINVAL);
    CHECK_EQ_INT(cxm_tz_get("Europe//Berlin", &z), CXM_EINVAL);
    CHECK_EQ_INT(cxm_tz_get("Asia/", &z), CXM_EINVAL);
    CHECK_EQ_INT(cxm_tz_get("Mars/Olympus_Mons", &z), CXM_ENOTFOUND);
    CHECK_EQ_INT(cxm_tz_get("Asia", &z), CXM_ENOTFOUND); /* a directory */
    CHECK_EQ_INT(cxm_tz_get("zone.tab", &z), CXM_EINVAL);
    CHECK_EQ_INT(cxm_tz_get("Asia/Seoul", &z), 0);
    CHECK_EQ_INT(cxm_tz_get("Asia/Seoul", &again), 0);
    CHECK(z == again); /* cached */
    CHECK_EQ_STR(cxm_tz_name(z), "Asia/Seoul");
}

int main(void)
{
    const cxm_tz *z;
    if (cxm_tz_get("Europe/Berlin", &z) != 0) {
        fprintf(stderr, "test_tz: SKIP: no tzdata in /usr/share/zoneinfo\n");
        return SKIP;
    }
    test_seoul();
    test_berlin();
    test_new_york();
    test_kolkata_utc();
    test_midnight_gap();
    test_chain("Europe/Berlin");
    test_chain("America/New_York");
    test_names();
    return check_report();
}
