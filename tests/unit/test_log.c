/*
 * test_log.c - log lines as people and machines read them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/log.h"

/* Run one cxm_log call with stderr redirected to a file; return what it wrote. */
static char captured[8192];

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

static void test_text(void)
{
    cxm_log_configure(false, CXM_LOG_INFO);
    const char *line = capture(CXM_LOG_WARN, "store.map_grown", "map grown\nto 128 MiB");
    CHECK(strstr(line, " warn store.map_grown map grown to 128 MiB\n") != NULL);
    CHECK_EQ_INT(count_char(line, '\n'), 1); /* a newline in the message cannot split it */
    CHECK(line[4] == '-' && line[10] == 'T' && strchr(line, 'Z') != NULL);
    CHECK_EQ_STR(capture(CXM_LOG_DEBUG, "x.debug", "hidden"), "");
}

static void test_json(void)
{
    cxm_log_configure(true, CXM_LOG_DEBUG);
    const char *line = capture(CXM_LOG_ERROR, "server.bind_failed", "say \"hi\"\\\x01\ttab");
    CHECK(strncmp(line, "{\"ts\":\"", 7) == 0);
    CHECK(strstr(line, "\"level\":\"error\",\"event\":\"server.bind_failed\"") != NULL);
    CHECK(strstr(line, "\"msg\":\"say \\\"hi\\\"\\\\\\u0001\\ttab\"}\n") != NULL);
    cxm_log_configure(false, CXM_LOG_INFO);
}

/* A message beyond the line limit is cut, and the line stays valid JSON. */
static void test_truncation(void)
{
    cxm_log_configure(true, CXM_LOG_INFO);
    char *big = malloc(10000);
    memset(big, '"', 9999);
    big[9999] = '\0';
    const char *line = capture(CXM_LOG_INFO, "big", big);
    size_t len = strlen(line);
    CHECK(len <= 4096);
    CHECK(len > 3 && strcmp(line + len - 3, "\"}\n") == 0);
    /* No dangling backslash: every quote inside msg is escaped as a pair. */
    const char *msg = strstr(line, "\"msg\":\"") + 7;
    size_t body = (size_t)(line + len - 3 - msg);
    CHECK(body % 2 == 0);
    free(big);
    cxm_log_configure(false, CXM_LOG_INFO);
}

static void test_level_parse(void)
{
    cxm_log_level l = CXM_LOG_ERROR;
    CHECK_EQ_INT(cxm_log_level_parse("debug", &l), 0);
    CHECK_EQ_INT(l, CXM_LOG_DEBUG);
    CHECK_EQ_INT(cxm_log_level_parse("WARN", &l), 0);
    CHECK_EQ_INT(l, CXM_LOG_WARN);
    CHECK_EQ_INT(cxm_log_level_parse("verbose", &l), CXM_EINVAL);
    CHECK_EQ_INT(l, CXM_LOG_WARN);
    cxm_log_configure(false, CXM_LOG_WARN);
    CHECK(!cxm_log_enabled(CXM_LOG_INFO));
    CHECK(cxm_log_enabled(CXM_LOG_ERROR));
}

int main(void)
{
    test_text();
    test_json();
    test_truncation();
    test_level_parse();
    return check_report();
}
