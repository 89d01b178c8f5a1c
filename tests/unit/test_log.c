/*
 * test_log.c - log lines as people and machines read them.
 *
 * JSON lines are checked with a small strict parser rather than substring
 * matches, so an escaping or truncation bug that yields an unparseable line
 * fails the test even when the expected text is present.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/log.h"

/* Run one cxm_log call with stderr redirected to a file; return what it wrote. */
static char captured[16384];

static const char *capture(cxm_log_level level, const char *event, const char *msg)
{
    fflush(stderr);
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(f), STDERR_FILENO);
    cxm_log(level, event, "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    size_t n = fread(captured, 1, sizeof captured - 1, f);
    captured[n] = '\0';
    fclose(f);
    return captured;
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* One decoded JSON line: the four string fields cxm_log writes. */
typedef struct json_line {
    char ts[64], level[16], event[4096], msg[8192];
} json_line;

static void put_utf8(char **out, const char *end, unsigned cp)
{
    unsigned char b[4];
    size_t n;
    if (cp < 0x80)
        b[0] = (unsigned char)cp, n = 1;
    else if (cp < 0x800)
        b[0] = (unsigned char)(0xc0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 0x3f)), n = 2;
    else
        b[0] = (unsigned char)(0xe0 | cp >> 12), b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f)),
        b[2] = (unsigned char)(0x80 | (cp & 0x3f)), n = 3;
    for (size_t i = 0; i < n && *out < end; i++)
        *(*out)++ = (char)b[i];
}

/* A JSON string at *p (after its opening quote), decoded into out. Strict:
 * raw control characters, unknown escapes and an unterminated string fail. */
static bool parse_string(const char **p, char *out, size_t len)
{
    const char *s = *p;
    char *o = out, *end = out + len - 1;
    for (;;) {
        unsigned char c = (unsigned char)*s++;
        if (c == '"')
            break;
        if (c < 0x20)
            return false; /* includes the terminating NUL */
        if (c != '\\') {
            if (o < end)
                *o++ = (char)c;
            continue;
        }
        const char *simple = strchr("\"\\/bfnrt", *s);
        if (*s && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            if (o < end)
                *o++ = decoded[simple - "\"\\/bfnrt"];
            s++;
        } else if (*s == 'u') {
            unsigned cp = 0;
            for (int i = 1; i <= 4; i++) {
                if (!isxdigit((unsigned char)s[i]))
                    return false;
                cp = cp * 16 + (unsigned)(isdigit((unsigned char)s[i]) ? s[i] - '0'
                                                                       : (s[i] | 0x20) - 'a' + 10);
            }
            put_utf8(&o, end, cp);
            s += 5;
        } else {
            return false;
        }
    }
    *o = '\0';
    *p = s;
    return true;
}

/* Exactly {"ts":"..","level":"..","event":"..","msg":".."}\n, nothing else. */
static bool parse_line(const char *line, json_line *out)
{
    static const char *const keys[] = {"ts", "level", "event", "msg"};
    char *const values[] = {out->ts, out->level, out->event, out->msg};
    const size_t sizes[] = {sizeof out->ts, sizeof out->level, sizeof out->event, sizeof out->msg};
    const char *p = line;
    if (*p++ != '{')
        return false;
    for (int i = 0; i < 4; i++) {
        char key[16];
        if ((i > 0 && *p++ != ',') || *p++ != '"' || !parse_string(&p, key, sizeof key) ||
            strcmp(key, keys[i]) != 0 || *p++ != ':' || *p++ != '"' ||
            !parse_string(&p, values[i], sizes[i]))
            return false;
    }
    return strcmp(p, "}\n") == 0;
}

/* Whether s is well-formed UTF-8 (what a JSON reader requires). */
static bool valid_utf8(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        int n = *s < 0x80             ? 0
                : (*s & 0xe0) == 0xc0 ? 1
                : (*s & 0xf0) == 0xe0 ? 2
                : (*s & 0xf8) == 0xf0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *s < 0xc2))
            return false;
        s++;
        for (int i = 0; i < n; i++, s++)
            if ((*s & 0xc0) != 0x80)
                return false;
    }
    return true;
}

/* 2026-11-22T10:00:00.123Z */
static bool is_timestamp(const char *ts)
{
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (strlen(ts) != strlen(shape))
        return false;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)ts[i]) : ts[i] != shape[i])
            return false;
    return true;
}

static void test_text(void)
{
    cxm_log_configure(false, CXM_LOG_INFO);
    const char *line = capture(CXM_LOG_WARN, "store.map_grown", "map grown\nto 128 MiB\r");
    CHECK(strstr(line, " warn store.map_grown map grown to 128 MiB \n") != NULL);
    CHECK_EQ_INT(count_char(line, '\n'), 1); /* a newline in the message cannot split it */
    char ts[32] = "";
    sscanf(line, "%31s", ts);
    CHECK(is_timestamp(ts));
    CHECK_EQ_STR(capture(CXM_LOG_DEBUG, "x.debug", "hidden"), "");
    CHECK(strstr(capture(CXM_LOG_ERROR, "x.error", "shown"), " error x.error shown\n") != NULL);
}

static void test_json(void)
{
    cxm_log_configure(true, CXM_LOG_DEBUG);
    const char *msg = "say \"hi\"\\\x01\ttab\r\n\x1f\x7f/end";
    const char *line = capture(CXM_LOG_ERROR, "server.bind_failed", msg);
    CHECK(strstr(line, "\\\"hi\\\"\\\\\\u0001\\ttab\\r\\n\\u001f") != NULL);
    json_line j;
    CHECK(parse_line(line, &j));
    CHECK(is_timestamp(j.ts));
    CHECK_EQ_STR(j.level, "error");
    CHECK_EQ_STR(j.event, "server.bind_failed");
    CHECK_EQ_STR(j.msg, msg); /* escaping round-trips */

    /* The event is escaped too. */
    line = capture(CXM_LOG_DEBUG, "odd\"event\\\n", "m");
    CHECK(parse_line(line, &j));
    CHECK_EQ_STR(j.level, "debug");
    CHECK_EQ_STR(j.event, "odd\"event\\\n");

    /* Valid UTF-8 passes through; invalid bytes become U+FFFD. */
    line = capture(CXM_LOG_INFO, "e", "caf\xc3\xa9 \xff\xc3 \xed\xa0\x80 \xe2\x82\xac");
    CHECK(valid_utf8(line));
    CHECK(parse_line(line, &j));
    CHECK_EQ_STR(j.msg, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                        "\xe2\x82\xac");
    cxm_log_configure(false, CXM_LOG_INFO);
}

/* A message beyond the line limit is cut, marked, and still valid JSON. */
static void check_truncated(const char *fill, size_t fill_len, const char *event)
{
    size_t total = 10000;
    char *big = malloc(total + 1);
    for (size_t i = 0; i < total; i++)
        big[i] = fill[i % fill_len];
    big[total] = '\0';
    const char *line = capture(CXM_LOG_INFO, event, big);
    size_t len = strlen(line);
    CHECK(len <= 4096);
    CHECK(len > 3 && strcmp(line + len - 3, "\"}\n") == 0);
    CHECK_EQ_INT(count_char(line, '\n'), 1);
    CHECK(valid_utf8(line));
    json_line *j = malloc(sizeof *j);
    CHECK(parse_line(line, j));
    size_t mlen = strlen(j->msg);
    /* Most of the room is used, and the message is a prefix of the original,
     * cut at a whole character, followed by the marker. */
    CHECK(len > 4000);
    CHECK(mlen > 3 && strcmp(j->msg + mlen - 3, "...") == 0);
    CHECK(mlen > 3 && mlen - 3 <= total && memcmp(j->msg, big, mlen - 3) == 0);
    CHECK((mlen - 3) % fill_len == 0);
    free(j);
    free(big);
}

static void test_truncation(void)
{
    cxm_log_configure(true, CXM_LOG_INFO);
    check_truncated("\"", 1, "big");           /* every byte needs a 2-byte escape */
    check_truncated("\x01", 1, "big");         /* 6-byte escapes */
    check_truncated("\xe2\x82\xac", 3, "big"); /* multi-byte characters */
    check_truncated("x", 1, "big");
    /* An absurdly long event cannot push the msg key out of the line. */
    char event[6000];
    memset(event, 'e', sizeof event - 1);
    event[sizeof event - 1] = '\0';
    check_truncated("y", 1, event);

    /* Text lines are cut too and still end in exactly one newline. */
    cxm_log_configure(false, CXM_LOG_INFO);
    char *big = malloc(10000);
    memset(big, 'z', 9999);
    big[9999] = '\0';
    const char *line = capture(CXM_LOG_INFO, "big", big);
    size_t len = strlen(line);
    CHECK(len <= 4096 && len > 4000);
    CHECK(len > 4 && strcmp(line + len - 4, "...\n") == 0);
    CHECK_EQ_INT(count_char(line, '\n'), 1);
    free(big);
}

/* An exact-fit message is not marked as cut. */
static void test_no_false_truncation(void)
{
    cxm_log_configure(true, CXM_LOG_INFO);
    json_line j;
    CHECK(parse_line(capture(CXM_LOG_INFO, "e", "short"), &j));
    CHECK_EQ_STR(j.msg, "short");
    CHECK(parse_line(capture(CXM_LOG_INFO, "e", ""), &j));
    CHECK_EQ_STR(j.msg, "");
    cxm_log_configure(false, CXM_LOG_INFO);
}

static void test_errno_preserved(void)
{
    cxm_log_configure(false, CXM_LOG_INFO);
    errno = ENOSPC;
    capture(CXM_LOG_ERROR, "x", "disk full");
    CHECK_EQ_INT(errno, ENOSPC);
}

static void test_level_parse(void)
{
    cxm_log_level l = CXM_LOG_ERROR;
    CHECK_EQ_INT(cxm_log_level_parse("debug", &l), 0);
    CHECK_EQ_INT(l, CXM_LOG_DEBUG);
    CHECK_EQ_INT(cxm_log_level_parse("info", &l), 0);
    CHECK_EQ_INT(l, CXM_LOG_INFO);
    CHECK_EQ_INT(cxm_log_level_parse("WARN", &l), 0);
    CHECK_EQ_INT(l, CXM_LOG_WARN);
    CHECK_EQ_INT(cxm_log_level_parse("error", &l), 0);
    CHECK_EQ_INT(l, CXM_LOG_ERROR);
    CHECK_EQ_INT(cxm_log_level_parse("verbose", &l), CXM_EINVAL);
    CHECK_EQ_INT(cxm_log_level_parse("", &l), CXM_EINVAL);
    CHECK_EQ_INT(l, CXM_LOG_ERROR); /* untouched on failure */
    cxm_log_configure(false, CXM_LOG_WARN);
    CHECK(!cxm_log_enabled(CXM_LOG_INFO));
    CHECK(cxm_log_enabled(CXM_LOG_WARN));
    CHECK(cxm_log_enabled(CXM_LOG_ERROR));
    cxm_log_configure(false, CXM_LOG_INFO);
}

int main(void)
{
    test_text();
    test_json();
    test_truncation();
    test_no_false_truncation();
    test_errno_preserved();
    test_level_parse();
    return check_report();
}
