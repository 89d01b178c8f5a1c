/*
 * log.c - one line per event on stderr (see cxm/log.h).
 */
#include "cxm/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cxm/err.h"

#define LINE_MAX_BYTES 4096
/* Appended to a cut message so a reader knows the line is incomplete. */
#define ELLIPSIS "..."

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
    if (!name)
        return CXM_EINVAL;
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

/* A bounded line being built. The fixed parts are small; only the event and
 * message can run long, and they stop at cap, which leaves room for every
 * closing character, so a cut line is still complete (and valid JSON). */
typedef struct line {
    char buf[LINE_MAX_BYTES];
    size_t len;
    size_t cap; /* where variable-length content must stop */
    bool cut;   /* content was dropped at cap */
} line;

static void put(line *l, const char *s, size_t n)
{
    if (n > sizeof l->buf - l->len)
        n = sizeof l->buf - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_str(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Append n bytes of content unless that would pass cap; never half a unit. */
static bool put_unit(line *l, const char *s, size_t n)
{
    if (l->len + n > l->cap) {
        l->cut = true;
        return false;
    }
    put(l, s, n);
    return true;
}

/* Length of the well-formed UTF-8 sequence at s, or 0 if it is malformed
 * (bad lead byte, missing continuation, overlong form, surrogate, > U+10FFFF). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
        cp > 0x10ffff)
        return 0;
    return n;
}

/* The escape JSON needs for an ASCII byte, written to esc; returns its length. */
static size_t json_escape_ascii(unsigned char c, char esc[8])
{
    static const char short_escapes[] = "\"\"\\\\\bb\ff\nn\rr\tt";
    for (const char *p = short_escapes; *p; p += 2)
        if ((unsigned char)p[0] == c) {
            esc[0] = '\\', esc[1] = p[1];
            return 2;
        }
    if (c < 0x20 || c == 0x7f)
        return (size_t)snprintf(esc, 8, "\\u%04x", c);
    esc[0] = (char)c;
    return 1;
}

/* JSON string contents. Invalid UTF-8 (a log message may quote any client
 * input) becomes U+FFFD so that every line stays parseable. */
static void put_json(line *l, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        char esc[8];
        size_t n = utf8_len(s);
        bool ok;
        if (n == 1) {
            size_t e = json_escape_ascii(*s, esc);
            ok = put_unit(l, esc, e);
        } else if (n > 1) {
            ok = put_unit(l, (const char *)s, n);
        } else {
            n = 1;
            ok = put_unit(l, "\\ufffd", 6);
        }
        if (!ok)
            return;
        s += n;
    }
}

/* Text lines stay one line: control characters become spaces. Bytes are
 * copied as they are; a cut may split a UTF-8 sequence, which a terminal
 * shows as one replacement character. */
static void put_text(line *l, const char *s)
{
    for (; *s; s++) {
        char c = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
        if (!put_unit(l, &c, 1))
            return;
    }
}

/* "2026-11-22T10:00:00.123Z" */
static void timestamp(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm)) {
        snprintf(out, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void format_json(line *l, const char *ts, const char *lvl, const char *event,
                        const char *msg, bool msg_cut)
{
    static const char close[] = ELLIPSIS "\"}\n";
    put_str(l, "{\"ts\":\"");
    put_str(l, ts);
    put_str(l, "\",\"level\":\"");
    put_str(l, lvl);
    put_str(l, "\",\"event\":\"");
    /* An event is a short identifier; keep room for the msg key and close. */
    l->cap = sizeof l->buf / 4;
    put_json(l, event);
    l->cap = sizeof l->buf;
    put_str(l, "\",\"msg\":\"");
    l->cap = sizeof l->buf - (sizeof close - 1);
    l->cut = msg_cut;
    put_json(l, msg);
    if (l->cut)
        put_str(l, ELLIPSIS);
    put_str(l, "\"}\n");
}

static void format_text(line *l, const char *ts, const char *lvl, const char *event,
                        const char *msg, bool msg_cut)
{
    static const char close[] = ELLIPSIS "\n";
    put_str(l, ts);
    put_str(l, " ");
    put_str(l, lvl);
    put_str(l, " ");
    l->cap = sizeof l->buf / 4;
    put_text(l, event);
    l->cap = sizeof l->buf;
    put_str(l, " ");
    l->cap = sizeof l->buf - (sizeof close - 1);
    l->cut = msg_cut;
    put_text(l, msg);
    if (l->cut)
        put_str(l, ELLIPSIS);
    put_str(l, "\n");
}

/* One write(2) per line, so lines of concurrent threads never interleave;
 * retried only when a signal interrupted it before anything was written. */
static void write_line(const line *l)
{
    ssize_t rc;
    do
        rc = write(STDERR_FILENO, l->buf, l->len);
    while (rc < 0 && errno == EINTR);
}

void cxm_log(cxm_log_level level, const char *event, const char *fmt, ...)
{
    if (!cxm_log_enabled(level))
        return;
    /* Callers often log and then inspect errno; logging must not change it. */
    int saved_errno = errno;
    if ((unsigned)level > CXM_LOG_ERROR)
        level = CXM_LOG_ERROR;
    char msg[LINE_MAX_BYTES], ts[40];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(msg, sizeof msg, "(unformattable message: %s)", fmt);
    timestamp(ts, sizeof ts);

    bool msg_cut = n >= (int)sizeof msg;
    line l = {.len = 0, .cap = sizeof l.buf};
    if (log_json)
        format_json(&l, ts, level_names[level], event ? event : "", msg, msg_cut);
    else
        format_text(&l, ts, level_names[level], event ? event : "", msg, msg_cut);
    write_line(&l);
    errno = saved_errno;
}
