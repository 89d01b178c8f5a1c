/*
 * test_opts.c - flags and CXM_* environment variables.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/opts.h"

typedef struct config {
    const char *listen;
    int64_t workers;
    uint64_t max_bytes;
    int64_t grace_ms;
    bool json;
} config;

#define NOPTS 5

static void table(config *c, cxm_opt *o)
{
    cxm_opt t[NOPTS] = {
        {"listen", CXM_OPT_STR, &c->listen, 0, 0, "address"},
        {"workers", CXM_OPT_INT, &c->workers, 0, 64, "threads"},
        {"max-message-bytes", CXM_OPT_BYTES, &c->max_bytes, 1024, 1 << 26, "limit"},
        {"grace", CXM_OPT_MILLIS, &c->grace_ms, 0, 600000, "drain time"},
        {"json", CXM_OPT_BOOL, &c->json, 0, 0, "JSON output"},
    };
    memcpy(o, t, sizeof t);
}

static config defaults(void)
{
    return (config){"127.0.0.1:7400", 0, 4u << 20, 5000, false};
}

static int parse(config *c, char *err, int argc, char **argv)
{
    cxm_opt o[NOPTS];
    table(c, o);
    return cxm_opts_parse(o, NOPTS, argc, argv, NULL, NULL, err, 256);
}

static void test_every_type(void)
{
    config c = defaults();
    char err[256] = "";
    char *argv[] = {"prog", "--listen", "0.0.0.0:1", "--workers=8", "--max-message-bytes",
                    "16M",  "--grace",  "250ms",     "--json"};
    CHECK_EQ_INT(parse(&c, err, 9, argv), 0);
    CHECK_EQ_STR(c.listen, "0.0.0.0:1");
    CHECK_EQ_INT(c.workers, 8);
    CHECK_EQ_INT(c.max_bytes, 16u << 20);
    CHECK_EQ_INT(c.grace_ms, 250);
    CHECK(c.json);

    char *argv2[] = {"prog", "--grace=2m", "--json=false", "--max-message-bytes=64K"};
    CHECK_EQ_INT(parse(&c, err, 4, argv2), 0);
    CHECK_EQ_INT(c.grace_ms, 120000);
    CHECK(!c.json);
    CHECK_EQ_INT(c.max_bytes, 65536);
}

static void test_env_precedence(void)
{
    setenv("CXM_WORKERS", "3", 1);
    setenv("CXM_MAX_MESSAGE_BYTES", "1M", 1);
    config c = defaults();
    char err[256];
    char *argv[] = {"prog", "--workers", "5"};
    CHECK_EQ_INT(parse(&c, err, 3, argv), 0);
    CHECK_EQ_INT(c.workers, 5);          /* flag beats environment */
    CHECK_EQ_INT(c.max_bytes, 1u << 20); /* environment beats default */
    setenv("CXM_WORKERS", "lots", 1);
    c = defaults();
    CHECK_EQ_INT(parse(&c, err, 1, argv), CXM_EINVAL);
    CHECK(strstr(err, "CXM_WORKERS") && strstr(err, "lots"));
    unsetenv("CXM_WORKERS");
    unsetenv("CXM_MAX_MESSAGE_BYTES");

    char name[64];
    cxm_opt_env_name("max-message-bytes", name, sizeof name);
    CHECK_EQ_STR(name, "CXM_MAX_MESSAGE_BYTES");
}

static void expect_error(const char *a1, const char *a2, const char *needle)
{
    config c = defaults();
    char err[256] = "";
    char *argv[] = {"prog", (char *)a1, (char *)a2};
    int argc = a2 ? 3 : 2;
    CHECK_EQ_INT(parse(&c, err, argc, argv), CXM_EINVAL);
    CHECK(strstr(err, needle) != NULL);
    if (!strstr(err, needle))
        fprintf(stderr, "  message was: %s\n", err);
}

static void test_bad_values(void)
{
    expect_error("--workers", "65", "out of range");
    expect_error("--workers", "-1", "out of range");
    expect_error("--workers", "8x", "not an integer");
    expect_error("--workers", "99999999999999999999", "not an integer");
    expect_error("--max-message-bytes", "12Q", "--max-message-bytes");
    expect_error("--max-message-bytes", "100", "out of range");
    expect_error("--grace", "soon", "duration");
    expect_error("--json=maybe", NULL, "true or false");
    expect_error("--nope", "1", "unknown flag --nope");
    expect_error("-w", "1", "unknown flag -w");
    expect_error("--listen", NULL, "needs a value");
    expect_error("stray", NULL, "unexpected argument");
}

static void test_help_and_positional(void)
{
    config c = defaults();
    char err[256];
    char *help[] = {"prog", "--workers", "bad", "--help"};
    CHECK_EQ_INT(parse(&c, err, 4, help), 1);

    cxm_opt o[NOPTS];
    table(&c, o);
    const char *pos[2];
    size_t npos = 2;
    char *argv[] = {"prog", "health", "--json", "cxm.v1.ProfileService"};
    CHECK_EQ_INT(cxm_opts_parse(o, NOPTS, 4, argv, pos, &npos, err, sizeof err), 0);
    CHECK_EQ_INT(npos, 2);
    CHECK_EQ_STR(pos[0], "health");
    CHECK_EQ_STR(pos[1], "cxm.v1.ProfileService");
    npos = 1;
    CHECK_EQ_INT(cxm_opts_parse(o, NOPTS, 4, argv, pos, &npos, err, sizeof err), CXM_EINVAL);

    FILE *f = tmpfile();
    cxm_opts_usage(f, "prog", "summary", o, NOPTS);
    rewind(f);
    char text[2048];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    CHECK(strstr(text, "--max-message-bytes") && strstr(text, "CXM_MAX_MESSAGE_BYTES"));
    CHECK(strstr(text, "default 127.0.0.1:7400") != NULL);
}

int main(void)
{
    test_every_type();
    test_env_precedence();
    test_bad_values();
    test_help_and_positional();
    return check_report();
}
