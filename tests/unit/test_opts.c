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
    char small[6];
    cxm_opt_env_name("max-message-bytes", small, sizeof small);
    CHECK_EQ_STR(small, "CXM_M"); /* truncated, still terminated */
    cxm_opt_env_name("x", small, 3);
    CHECK_EQ_STR(small, "CX");
}

/* Every type can come from the environment, and a flag still wins. */
static void test_env_every_type(void)
{
    setenv("CXM_LISTEN", "[::1]:9", 1);
    setenv("CXM_JSON", "yes", 1);
    setenv("CXM_GRACE", "5s", 1);
    setenv("CXM_MAX_MESSAGE_BYTES", "2m", 1);
    setenv("CXM_WORKERS", "+7", 1);
    config c = defaults();
    char err[256] = "";
    char *argv[] = {"prog"};
    CHECK_EQ_INT(parse(&c, err, 1, argv), 0);
    CHECK_EQ_STR(c.listen, "[::1]:9");
    CHECK(c.json);
    CHECK_EQ_INT(c.grace_ms, 5000);
    CHECK_EQ_INT(c.max_bytes, 2u << 20);
    CHECK_EQ_INT(c.workers, 7);

    c = defaults();
    char *flags[] = {"prog", "--json=off", "--grace", "1m", "--listen=x:1"};
    CHECK_EQ_INT(parse(&c, err, 5, flags), 0);
    CHECK(!c.json);
    CHECK_EQ_INT(c.grace_ms, 60000);
    CHECK_EQ_STR(c.listen, "x:1");

    /* A bad variable is reported by name, with the value and the bounds. */
    setenv("CXM_MAX_MESSAGE_BYTES", "1G", 1);
    c = defaults();
    CHECK_EQ_INT(parse(&c, err, 1, argv), CXM_EINVAL);
    CHECK(strstr(err, "CXM_MAX_MESSAGE_BYTES") && strstr(err, "1G") &&
          strstr(err, "out of range") && strstr(err, "1K to 64M"));
    unsetenv("CXM_LISTEN");
    unsetenv("CXM_JSON");
    unsetenv("CXM_GRACE");
    unsetenv("CXM_MAX_MESSAGE_BYTES");
    unsetenv("CXM_WORKERS");
}

/* Values at the edges of each accepted form. */
static void test_value_forms(void)
{
    config c = defaults();
    char err[256] = "";
    char *argv[] = {"prog", "--max-message-bytes=64M", "--grace=10m", "--workers=64", "--workers",
                    "0"};
    CHECK_EQ_INT(parse(&c, err, 6, argv), 0);
    CHECK_EQ_INT(c.max_bytes, 64u << 20); /* the bounds are inclusive */
    CHECK_EQ_INT(c.grace_ms, 600000);
    CHECK_EQ_INT(c.workers, 0); /* a repeated flag: the last one wins */
    char *argv2[] = {"prog", "--max-message-bytes=1024", "--grace=0", "--json=1"};
    CHECK_EQ_INT(parse(&c, err, 4, argv2), 0);
    CHECK_EQ_INT(c.max_bytes, 1024);
    CHECK_EQ_INT(c.grace_ms, 0);
    CHECK(c.json);
    char *argv3[] = {"prog", "--max-message-bytes=4k", "--grace=1500ms", "--json=NO"};
    CHECK_EQ_INT(parse(&c, err, 4, argv3), 0);
    CHECK_EQ_INT(c.max_bytes, 4096);
    CHECK_EQ_INT(c.grace_ms, 1500);
    CHECK(!c.json);
    /* A string may be empty, or look like a flag when given with '='. */
    char *argv4[] = {"prog", "--listen=--json"};
    CHECK_EQ_INT(parse(&c, err, 2, argv4), 0);
    CHECK_EQ_STR(c.listen, "--json");
    CHECK(!c.json);
    char *argv5[] = {"prog", "--listen", ""};
    CHECK_EQ_INT(parse(&c, err, 3, argv5), 0);
    CHECK_EQ_STR(c.listen, "");

    /* A refused value leaves its target alone. */
    c = defaults();
    char *bad[] = {"prog", "--workers", "1e3"};
    CHECK_EQ_INT(parse(&c, err, 3, bad), CXM_EINVAL);
    CHECK_EQ_INT(c.workers, 0);
    /* err may be NULL. */
    cxm_opt o[NOPTS];
    table(&c, o);
    CHECK_EQ_INT(cxm_opts_parse(o, NOPTS, 3, bad, NULL, NULL, NULL, 0), CXM_EINVAL);
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
    /* Messages name the flag, quote the value and say what is accepted. */
    expect_error("--grace", "soon",
                 "--grace: \"soon\" is not a duration such as 250ms, 5s, 2m or 7d");
    expect_error("--grace", "1h", "--grace: 1h is out of range; use 0ms to 10m");
    expect_error("--grace", "1.5s", "duration");
    expect_error("--grace", "5 s", "duration");
    expect_error("--max-message-bytes", "-1K", "is not a size");
    expect_error("--max-message-bytes", "0x10", "is not a size");
    expect_error("--max-message-bytes", "100", "use 1K to 64M");
    expect_error("--workers", "9223372036854775808", "\"9223372036854775808\" is not an integer");
    expect_error("--workers", "", "not an integer");
    expect_error("--json=", NULL, "--json: \"\" is not true or false");
    expect_error("--listen", "--json", "--listen needs a value");
    expect_error("--workers", NULL, "--workers needs a value: an integer");
    expect_error("--", "--nope", "unexpected argument \"--nope\"");
    expect_error("--=1", NULL, "unknown flag --");
}

static void test_help_and_positional(void)
{
    config c = defaults();
    char err[256];
    char *help[] = {"prog", "--workers", "bad", "--help"};
    CHECK_EQ_INT(parse(&c, err, 4, help), 1);
    CHECK_EQ_INT(c.workers, 0); /* help applies nothing */
    setenv("CXM_WORKERS", "bad", 1);
    char *h[] = {"prog", "-h"};
    CHECK_EQ_INT(parse(&c, err, 2, h), 1); /* even a bad environment */
    unsetenv("CXM_WORKERS");

    cxm_opt o[NOPTS];
    table(&c, o);
    const char *pos[2];
    size_t npos = 2;
    char *argv[] = {"prog", "health", "--json", "cxm.v1.ProfileService"};
    CHECK_EQ_INT(cxm_opts_parse(o, NOPTS, 4, argv, pos, &npos, err, sizeof err), 0);
    CHECK_EQ_INT(npos, 2);
    CHECK_EQ_STR(pos[0], "health");
    CHECK_EQ_STR(pos[1], "cxm.v1.ProfileService");
    CHECK(c.json);
    npos = 1;
    CHECK_EQ_INT(cxm_opts_parse(o, NOPTS, 4, argv, pos, &npos, err, sizeof err), CXM_EINVAL);
    CHECK(strstr(err, "cxm.v1.ProfileService") != NULL);

    /* After "--" everything is positional, even --help. */
    c.json = false;
    char *dd[] = {"prog", "--", "--json", "--help"};
    npos = 2;
    CHECK_EQ_INT(cxm_opts_parse(o, NOPTS, 4, dd, pos, &npos, err, sizeof err), 0);
    CHECK_EQ_INT(npos, 2);
    CHECK_EQ_STR(pos[0], "--json");
    CHECK_EQ_STR(pos[1], "--help");
    CHECK(!c.json);
    /* "-" (stdin, by convention) is positional; no positionals gives 0. */
    char *dash[] = {"prog", "-"};
    npos = 2;
    CHECK_EQ_INT(cxm_opts_parse(o, NOPTS, 2, dash, pos, &npos, err, sizeof err), 0);
    CHECK_EQ_INT(npos, 1);
    CHECK_EQ_STR(pos[0], "-");
    npos = 2;
    CHECK_EQ_INT(cxm_opts_parse(o, NOPTS, 1, dash, pos, &npos, err, sizeof err), 0);
    CHECK_EQ_INT(npos, 0);

    FILE *f = tmpfile();
    cxm_opts_usage(f, "prog", "summary", o, NOPTS);
    rewind(f);
    char text[2048];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    CHECK(strstr(text, "--max-message-bytes") && strstr(text, "CXM_MAX_MESSAGE_BYTES"));
    CHECK(strstr(text, "default 127.0.0.1:7400") != NULL);
    CHECK(strncmp(text, "usage: prog [options]\nsummary\n", 30) == 0);
    /* One line per option: flag, value form, help, variable, default, range. */
    CHECK(strstr(text, "--max-message-bytes SIZE") && strstr(text, "default 4M, 1K to 64M]\n"));
    CHECK(strstr(text, "--grace DURATION") && strstr(text, "drain time [CXM_GRACE, default 5s"));
    CHECK(strstr(text, "--workers N") && strstr(text, "[CXM_WORKERS, default 0, 0 to 64]\n"));
    CHECK(strstr(text, "--json ") && !strstr(text, "--json VALUE") &&
          strstr(text, "JSON output [CXM_JSON, default false]\n"));
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    CHECK_EQ_INT(lines, 4 + NOPTS);
}

/* Two modules of one host taking the same flag: it sets both, and usage
 * lists it once. */
static void test_shared_name(void)
{
    const char *a = "", *b = "";
    const cxm_opt o[] = {
        {"profile-addr", CXM_OPT_STR, &a, 0, 0, "journey's"},
        {"profile-addr", CXM_OPT_STR, &b, 0, 0, "feedback's"},
    };
    char *argv[] = {"prog", "--profile-addr", "h:1"};
    char err[256];
    CHECK_EQ_INT(cxm_opts_parse(o, 2, 3, argv, NULL, NULL, err, sizeof err), 0);
    CHECK_EQ_STR(a, "h:1");
    CHECK_EQ_STR(b, "h:1");
    char buf[1024] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    cxm_opts_usage(f, "prog", "", o, 2);
    fclose(f);
    CHECK(strstr(buf, "journey's") && !strstr(buf, "feedback's"));
}

int main(void)
{
    test_shared_name();
    test_every_type();
    test_env_precedence();
    test_env_every_type();
    test_value_forms();
    test_bad_values();
    test_help_and_positional();
    return check_report();
}
