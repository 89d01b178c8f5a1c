/*
 * suggest.c - "did you mean" for mistyped commands and options, and the
 * durations cxmctl accepts (see cxmctl.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cxmctl.h"

/* Longer words are not typos of a command or option name. */
#define WORD_MAX 64

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and swaps of two neighbours ("tagret") cost one each. Three rows suffice. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t rows[3][WORD_MAX + 1];
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t best = prev[j - 1] + cost;
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = prev2;
        prev2 = prev, prev = cur, cur = t;
    }
    return prev[lb];
}

const char *cxmctl_suggest(const char *word, size_t len, const char *const *candidates, size_t n)
{
    /* One edit in three characters still reads as the same word. */
    size_t limit = len < 3 ? 1 : len / 3, best_d = limit + 1;
    const char *best = NULL;
    for (size_t i = 0; len <= WORD_MAX && i < n; i++) {
        size_t lc = strcspn(candidates[i], " ");
        if (lc > WORD_MAX)
            continue;
        size_t d = edit_distance(word, len, candidates[i], lc);
        if (d < best_d)
            best_d = d, best = candidates[i];
    }
    return best;
}

int cxmctl_duration_parse(const char *s, int64_t *ms)
{
    static const struct {
        const char *suffix;
        int64_t mult;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    for (size_t i = 0; errno == 0 && i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0 && v <= INT64_MAX / units[i].mult) {
            *ms = (int64_t)v * units[i].mult;
            return 0;
        }
    return -1;
}
