/*
 * log.c - one line per event on stderr (see cxm/log.h).
 */
#include "cxm/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cxm/err.h"

#define LINE_MAX_BYTES 4096

static bool log_json;
static cxm_log_level log_min = CXM_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cxm_log_configure(bool json, cxm_log_level min_level)
{
    log_json = json;
    log_min = min_level;
}

int cxm_log_level_parse(const char *name, cxm_log_level *out)
{
    for (int i = CXM_LOG_DEBUG; i <= CXM_LOG_ERROR; i++)
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (cxm_log_level)i;
            return 0;
        }
    return CXM_EINVAL;
}

bool cxm_log_enabled(cxm_log_level level)
{
    return level >= log_min;
}

/* A bounded line being built; writes past the end are dropped. */
typedef struct line {
    char buf[LINE_MAX_BYTES];
    size_t len;
    size_t reserve; /* bytes kept free for the closing characters */
} line;

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof l->buf - l->reserve - l->len;
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* JSON string contents; an escape is never cut in half. */
static void put_json_escaped(line *l, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t n;
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, n = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2), n = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2), n = 2;
        } else if (c < 0x20) {
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
        } else {
            esc[0] = (char)c, n = 1;
        }
        if (l->len + n > sizeof l->buf - l->reserve)
            return;
        put(l, esc, n);
    }
}

/* Text lines stay one line: control characters become spaces. */
static void put_text(line *l, const char *s)
{
    for (; *s && l->len < sizeof l->buf - l->reserve; s++) {
        char c = (unsigned char)*s < 0x20 ? ' ' : *s;
        put(l, &c, 1);
    }
}

static void timestamp(char *out, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void cxm_log(cxm_log_level level, const char *event, const char *fmt, ...)
{
    if (!cxm_log_enabled(level))
        return;
    char msg[LINE_MAX_BYTES], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    timestamp(ts, sizeof ts);
    const char *lvl = level_names[level];

    line l = {.len = 0, .reserve = 3}; /* room for "\"}\n" */
    if (log_json) {
        puts_(&l, "{\"ts\":\"");
        puts_(&l, ts);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, lvl);
        puts_(&l, "\",\"event\":\"");
        put_json_escaped(&l, event);
        puts_(&l, "\",\"msg\":\"");
        put_json_escaped(&l, msg);
        l.reserve = 0;
        puts_(&l, "\"}\n");
    } else {
        puts_(&l, ts);
        puts_(&l, " ");
        puts_(&l, lvl);
        puts_(&l, " ");
        put_text(&l, event);
        puts_(&l, " ");
        put_text(&l, msg);
        l.reserve = 0;
        puts_(&l, "\n");
    }
    /* One write(2) per line: lines of concurrent threads never interleave. */
    ssize_t rc = write(STDERR_FILENO, l.buf, l.len);
    (void)rc;
}
