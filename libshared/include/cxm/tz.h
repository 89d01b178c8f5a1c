/*
 * tz.h - IANA time zones from the system's TZif files, for time buckets that
 * start at local midnight (a local day is 23, 24 or 25 hours long).
 *
 * A zone is loaded once from /usr/share/zoneinfo/<name> (RFC 8536: the
 * 64-bit transition table, and the POSIX TZ footer for instants after the
 * last transition) and kept in a process-wide cache until exit, so the
 * pointer cxm_tz_get hands out is valid for the life of the process.
 * Thread-safe: the cache is locked; a loaded zone is immutable.
 *
 * Times are Unix milliseconds (UTC instants); offsets are seconds east of
 * UTC. Buckets: HOUR is a whole UTC hour whatever the zone; DAY starts at
 * local midnight, WEEK at Monday's local midnight, MONTH at the first day's
 * local midnight. A local midnight that does not exist (a DST gap at
 * midnight) starts its day at the first instant after the gap; one that
 * exists twice starts at the earlier.
 */
#ifndef CXM_TZ_H
#define CXM_TZ_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cxm_tz cxm_tz;

enum cxm_tz_unit { CXM_TZ_HOUR = 1, CXM_TZ_DAY, CXM_TZ_WEEK, CXM_TZ_MONTH };

/* The zone called name ("Asia/Seoul"; "" and "UTC" are UTC). Returns 0,
 * CXM_EINVAL when the name is not a zone name (empty part, "..", a leading
 * '/', a character outside [A-Za-z0-9_+-/]), CXM_ENOTFOUND when no valid
 * TZif file has that name, CXM_ENOMEM. */
int cxm_tz_get(const char *name, const cxm_tz **out);

/* The built-in UTC zone; never NULL. */
const cxm_tz *cxm_tz_utc(void);

/* The zone's name as it was asked for ("" for UTC). */
const char *cxm_tz_name(const cxm_tz *z);

/* Seconds east of UTC in effect at instant utc_ms. */
int32_t cxm_tz_offset(const cxm_tz *z, int64_t utc_ms);

/* The first instant whose local time is at or after local_ms (local wall
 * time in ms since 1970-01-01T00:00 local): the earlier of two in an
 * overlap, the end of the gap for a local time that does not exist. */
int64_t cxm_tz_to_utc(const cxm_tz *z, int64_t local_ms);

/* Start of the unit's bucket that contains utc_ms, and the start of the
 * next one (always > utc_ms). */
int64_t cxm_tz_floor(const cxm_tz *z, enum cxm_tz_unit unit, int64_t utc_ms);
int64_t cxm_tz_next(const cxm_tz *z, enum cxm_tz_unit unit, int64_t utc_ms);

/* The proleptic Gregorian calendar (H. Hinnant's algorithms): days since
 * 1970-01-01 of a date (month 1-12, day 1-31), and back; and floor
 * division, which date arithmetic on times before 1970 needs. */
int64_t cxm_tz_days_from_civil(int64_t y, int m, int d);
void cxm_tz_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
int64_t cxm_tz_floor_div(int64_t a, int64_t b);

/* Whether every offset in effect in [from_ms, to_ms) is a whole number of
 * hours, so local bucket starts fall on UTC hour boundaries. */
bool cxm_tz_whole_hours(const cxm_tz *z, int64_t from_ms, int64_t to_ms);

#endif
