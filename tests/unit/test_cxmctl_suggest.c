/*
 * test_cxmctl_suggest.c - cxmctl's "did you mean" and its durations.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "cxmctl/cxmctl.h"

static const char *suggest(const char *word, const char *const *names, size_t n)
{
    return cxmctl_suggest(word, strlen(word), names, n);
}

static void test_suggest(void)
{
    const char *const opts[] = {"target", "json", "timeout"};
    CHECK_EQ_STR(suggest("tagret", opts, 3), "target"); /* a swap is one edit */
    CHECK_EQ_STR(suggest("targt", opts, 3), "target");
    CHECK_EQ_STR(suggest("jsno", opts, 3), "json");
    CHECK_EQ_STR(suggest("timout", opts, 3), "timeout");
    CHECK_EQ_STR(suggest("target", opts, 3), "target");
    CHECK(suggest("verbose", opts, 3) == NULL); /* nothing close: no guess */
    CHECK(suggest("x", opts, 3) == NULL);
    CHECK(suggest("tagret", opts, 0) == NULL);
    /* Only the length given counts, as for "--tagret=x". */
    CHECK_EQ_STR(cxmctl_suggest("tagret=127.0.0.1:1", 6, opts, 3), "target");
    /* Candidates end at their first blank: command names stand for their
     * first word. */
    const char *const cmds[] = {"health", "services", "profile get", "profile upsert"};
    CHECK_EQ_STR(suggest("profle", cmds, 4), "profile get");
    CHECK_EQ_STR(suggest("helth", cmds, 4), "health");
    CHECK_EQ_STR(suggest("service", cmds, 4), "services");
    const char *const subs[] = {"upsert", "get", "resolve", "merge", "unmerge"};
    CHECK_EQ_STR(suggest("gte", subs, 5), "get");
    CHECK_EQ_STR(suggest("upset", subs, 5), "upsert");
    CHECK_EQ_STR(suggest("unmrge", subs, 5), "unmerge");
    char longword[200];
    memset(longword, 'a', sizeof longword - 1);
    longword[sizeof longword - 1] = '\0';
    CHECK(suggest(longword, subs, 5) == NULL);
}

static void test_duration(void)
{
    int64_t ms = -7;
    CHECK_EQ_INT(cxmctl_duration_parse("200ms", &ms), 0);
    CHECK_EQ_INT(ms, 200);
    CHECK_EQ_INT(cxmctl_duration_parse("5s", &ms), 0);
    CHECK_EQ_INT(ms, 5000);
    CHECK_EQ_INT(cxmctl_duration_parse("2m", &ms), 0);
    CHECK_EQ_INT(ms, 120000);
    CHECK_EQ_INT(cxmctl_duration_parse("1h", &ms), 0);
    CHECK_EQ_INT(ms, 3600000);
    /* A bare number is refused, as are other units, signs, blanks and
     * overflow; *ms is left alone. */
    ms = -7;
    const char *bad[] = {"5",
                         "",
                         "s",
                         "5 s",
                         " 5s",
                         "-5s",
                         "+5s",
                         "5sec",
                         "5S",
                         "1.5s",
                         "99999999999999999999ms",
                         "9223372036854775807h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(cxmctl_duration_parse(bad[i], &ms), -1);
    CHECK_EQ_INT(ms, -7);
}

int main(void)
{
    test_suggest();
    test_duration();
    return check_report();
}
