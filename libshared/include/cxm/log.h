/*
 * log.h - one line per event on stderr, as text or as JSON.
 *
 * A line names an event (a stable dotted identifier such as
 * "server.listening" that people grep and alert on) and a message a person can
 * act on: what failed, which input, what to do. Text lines look like
 *   2026-11-22T10:00:00.123Z info server.listening listening on 127.0.0.1:7400
 * and JSON lines like
 *   {"ts":"2026-11-22T10:00:00.123Z","level":"info","event":"server.listening",
 *    "msg":"listening on 127.0.0.1:7400"}
 *
 * Thread-safe: each line is formatted into a local buffer and written with a
 * single write(2), so lines from different threads never interleave. Lines
 * longer than 4 KiB are truncated.
 */
#ifndef CXM_LOG_H
#define CXM_LOG_H

#include <stdbool.h>

typedef enum cxm_log_level {
    CXM_LOG_DEBUG = 0,
    CXM_LOG_INFO,
    CXM_LOG_WARN,
    CXM_LOG_ERROR,
} cxm_log_level;

/* Choose the format and the lowest level written. Call before starting
 * threads; the defaults are text and info. */
void cxm_log_configure(bool json, cxm_log_level min_level);

/* Parse "debug", "info", "warn" or "error". Returns 0 or CXM_EINVAL. */
int cxm_log_level_parse(const char *name, cxm_log_level *out);

/* True when a line at this level would be written. */
bool cxm_log_enabled(cxm_log_level level);

void cxm_log(cxm_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define cxm_log_debug(event, ...) cxm_log(CXM_LOG_DEBUG, event, __VA_ARGS__)
#define cxm_log_info(event, ...) cxm_log(CXM_LOG_INFO, event, __VA_ARGS__)
#define cxm_log_warn(event, ...) cxm_log(CXM_LOG_WARN, event, __VA_ARGS__)
#define cxm_log_error(event, ...) cxm_log(CXM_LOG_ERROR, event, __VA_ARGS__)

#endif
