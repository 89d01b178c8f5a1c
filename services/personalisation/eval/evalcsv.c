/*
 * evalcsv.c - interaction files for cxm-eval (see evalcsv.h).
 */
#include "personalisation/eval/evalcsv.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"

/* ---- CSV ----------------------------------------------------------------- */

#define EVAL_NCOLUMNS 4

/* The accepted headers: the same four columns under two sets of names. */
static const char *const eval_headers[][EVAL_NCOLUMNS] = {
    {"user", "item", "rating", "ts"},
    {"userId", "movieId", "rating", "timestamp"}, /* MovieLens' ratings.csv */
};
#define EVAL_NHEADERS (sizeof eval_headers / sizeof eval_headers[0])
static const char *const *const eval_columns = eval_headers[0];

/* A field of a line: [p, p + len). */
typedef struct eval_field {
    const char *p;
    size_t len;
} eval_field;

static void eval_errf(char *err, size_t errlen, const char *path, size_t line, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    int n =
        line ? snprintf(err, errlen, "%s:%zu: ", path, line) : snprintf(err, errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Split line (without its newline) at commas into at most max fields;
 * returns the true field count, which may exceed max. */
static size_t eval_split_fields(const char *line, size_t len, eval_field *f, size_t max)
{
    size_t nf = 0;
    const char *start = line, *end = line + len;
    for (const char *p = line;; p++) {
        if (p == end || *p == ',') {
            if (nf < max)
                f[nf] = (eval_field){start, (size_t)(p - start)};
            nf++;
            if (p == end)
                return nf;
            start = p + 1;
        }
    }
}

static int eval_field_is(const eval_field *f, const char *s)
{
    return strlen(s) == f->len && memcmp(f->p, s, f->len) == 0;
}

/* Whether f names one of the columns of header h. */
static int eval_is_column(const eval_field *f, const char *const *h)
{
    int known = 0;
    for (size_t c = 0; c < EVAL_NCOLUMNS; c++)
        known |= eval_field_is(f, h[c]);
    return known;
}

/* The accepted header that fields f[0..n) come closest to (most known
 * columns), to explain a bad header against the form its author meant. */
static const char *const *eval_closest_header(const eval_field *f, size_t n)
{
    size_t best = 0, best_known = 0;
    for (size_t h = 0; h < EVAL_NHEADERS; h++) {
        size_t known = 0;
        for (size_t i = 0; i < n; i++)
            known += (size_t)eval_is_column(&f[i], eval_headers[h]);
        if (known > best_known) {
            best = h;
            best_known = known;
        }
    }
    return eval_headers[best];
}

/* Say which columns are unknown or missing, the usual cause of a bad header. */
static void eval_header_error(const eval_field *f, size_t nf, const char *path, char *err,
                              size_t errlen)
{
    char what[512] = "";
    size_t n = 0, shown = nf < 16 ? nf : 16;
    const char *const *h = eval_closest_header(f, shown);
    for (size_t i = 0; i < shown; i++)
        if (!eval_is_column(&f[i], h) && n < sizeof what)
            n += (size_t)snprintf(what + n, sizeof what - n, "%sunknown column \"%.*s\"",
                                  n ? ", " : "", (int)(f[i].len > 64 ? 64 : f[i].len), f[i].p);
    for (size_t c = 0; c < EVAL_NCOLUMNS; c++) {
        int present = 0;
        for (size_t i = 0; i < shown; i++)
            present |= eval_field_is(&f[i], h[c]);
        if (!present && n < sizeof what)
            n += (size_t)snprintf(what + n, sizeof what - n, "%smissing column \"%s\"",
                                  n ? ", " : "", h[c]);
    }
    eval_errf(err, errlen, path, 1,
              "header must be exactly \"user,item,rating,ts\" or MovieLens' "
              "\"userId,movieId,rating,timestamp\" (%s)",
              n ? what : "columns repeated or out of order");
}

/* Copy a numeric field into buf as a C string; NULL when it is empty, too
 * long or starts with a blank (strtod/strtoll would skip it; a strict reader
 * does not). */
static const char *eval_field_number(const eval_field *f, char *buf, size_t len)
{
    if (f->len == 0 || f->len >= len || f->p[0] == ' ' || f->p[0] == '\t')
        return NULL;
    memcpy(buf, f->p, f->len);
    buf[f->len] = '\0';
    errno = 0;
    return buf;
}

/* 0, -1 (not a number) or -2 (not a finite number > 0 that fits a float). */
static int eval_parse_rating(const eval_field *f, float *out)
{
    char buf[64], *end;
    const char *s = eval_field_number(f, buf, sizeof buf);
    double v = s ? strtod(s, &end) : 0;
    if (!s || *end || errno == ERANGE)
        return -1;
    if (!isfinite(v) || v <= 0 || v > 3.4e38)
        return -2;
    *out = (float)v;
    return 0;
}

static int eval_parse_ts(const eval_field *f, int64_t *out)
{
    char buf[32], *end;
    const char *s = eval_field_number(f, buf, sizeof buf);
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || *end || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

/* Check an id field; returns an error message or NULL. */
static const char *eval_check_id(const eval_field *f)
{
    if (f->len == 0)
        return "is empty";
    if (f->len > EVAL_ID_MAX)
        return "is longer than 256 bytes";
    return NULL;
}

/* Parse one data line into ids and an event. */
static int eval_parse_line(const char *line, size_t len, const char *path, size_t lineno,
                           recoids *users, recoids *items, recolog_event *e, char *err,
                           size_t errlen)
{
    if (memchr(line, '"', len)) {
        eval_errf(err, errlen, path, lineno, "quoted fields are not supported");
        return CXM_EINVAL;
    }
    eval_field f[EVAL_NCOLUMNS];
    size_t nf = eval_split_fields(line, len, f, EVAL_NCOLUMNS);
    if (nf != EVAL_NCOLUMNS) {
        eval_errf(err, errlen, path, lineno, "expected 4 fields (user,item,rating,ts), found %zu",
                  len ? nf : 0);
        return CXM_EINVAL;
    }
    for (int c = 0; c < 2; c++) {
        const char *why = eval_check_id(&f[c]);
        if (why) {
            eval_errf(err, errlen, path, lineno, "%s id %s", eval_columns[c], why);
            return CXM_EINVAL;
        }
    }
    int prc = eval_parse_rating(&f[2], &e->rating);
    if (prc) {
        eval_errf(err, errlen, path, lineno, "rating \"%.*s\" is %s",
                  (int)(f[2].len > 64 ? 64 : f[2].len), f[2].p,
                  prc == -1 ? "not a number" : "not a finite number > 0");
        return CXM_EINVAL;
    }
    if (eval_parse_ts(&f[3], &e->ts)) {
        eval_errf(err, errlen, path, lineno, "ts \"%.*s\" is not an integer",
                  (int)(f[3].len > 64 ? 64 : f[3].len), f[3].p);
        return CXM_EINVAL;
    }
    int rc = recoids_intern(users, f[0].p, f[0].len, &e->user);
    if (!rc)
        rc = recoids_intern(items, f[1].p, f[1].len, &e->item);
    if (rc)
        eval_errf(err, errlen, path, lineno, "cannot add id: %s", cxm_strerror(rc));
    return rc;
}

static int eval_check_header(const char *line, size_t len, const char *path, char *err,
                             size_t errlen)
{
    eval_field f[16];
    size_t nf = eval_split_fields(line, len, f, 16);
    for (size_t h = 0; nf == EVAL_NCOLUMNS && h < EVAL_NHEADERS; h++) {
        int same = 1;
        for (size_t c = 0; c < EVAL_NCOLUMNS; c++)
            same &= eval_field_is(&f[c], eval_headers[h][c]);
        if (same)
            return 0;
    }
    eval_header_error(f, nf, path, err, errlen);
    return CXM_EINVAL;
}

/* Strip the line terminator ("\n" or "\r\n"); returns the content length. */
static size_t eval_chomp(char *line, size_t len)
{
    if (len && line[len - 1] == '\n')
        len--;
    if (len && line[len - 1] == '\r')
        len--;
    line[len] = '\0';
    return len;
}

static int eval_read_lines(FILE *f, const char *path, recoids *users, recoids *items, recolog *out,
                           char *err, size_t errlen)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        size_t len = eval_chomp(line, (size_t)got);
        if (memchr(line, '\0', len)) {
            eval_errf(err, errlen, path, lineno + 1, "NUL byte in line");
            rc = CXM_EINVAL;
        } else if (++lineno == 1) {
            rc = eval_check_header(line, len, path, err, errlen);
        } else {
            recolog_event e;
            rc = eval_parse_line(line, len, path, lineno, users, items, &e, err, errlen);
            if (!rc && (rc = recolog_push(out, &e)) != 0)
                eval_errf(err, errlen, path, lineno, "out of memory");
        }
    }
    free(line);
    if (rc == 0 && ferror(f)) {
        eval_errf(err, errlen, path, 0, "read error: %s", strerror(errno));
        rc = CXM_EIO;
    } else if (rc == 0 && lineno == 0) {
        eval_errf(err, errlen, path, 0, "empty file (expected the header user,item,rating,ts)");
        rc = CXM_EINVAL;
    }
    return rc;
}

int eval_csv_read(const char *path, recoids *users, recoids *items, recolog *out, char *err,
                  size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        eval_errf(err, errlen, path, 0, "cannot open: %s", strerror(errno));
        return CXM_EIO;
    }
    int rc = eval_read_lines(f, path, users, items, out, err, errlen);
    fclose(f);
    return rc;
}

/* ---- splits -------------------------------------------------------------- */

/* Fisher-Yates; the modulo bias is below 2^-40 for any realistic history. */
static void eval_shuffle(recolog_event *ev, size_t n, uint64_t *state)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(cxm_splitmix64(state) % i);
        recolog_event t = ev[i - 1];
        ev[i - 1] = ev[j];
        ev[j] = t;
    }
}

static int eval_cmp_time(const void *a, const void *b)
{
    const recolog_event *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

/* How many of a user's n interactions go to test: round(frac * n), but one
 * always stays in train so that the user can be scored at all. */
static size_t eval_test_count(size_t n, double frac)
{
    size_t t = (size_t)llround(frac * (double)n);
    return n == 0 ? 0 : (t > n - 1 ? n - 1 : t);
}

/* Split one user's interactions (ev[0..n), reordered in place). */
static int eval_split_user(recolog_event *ev, size_t n, eval_split_kind kind, double frac,
                           uint64_t *state, recolog *train, recolog *test)
{
    size_t ntest = eval_test_count(n, frac);
    if (kind == EVAL_SPLIT_RANDOM)
        eval_shuffle(ev, n, state);
    else
        qsort(ev, n, sizeof *ev, eval_cmp_time);
    /* Random: the first ntest of the shuffle; temporal: the latest ntest. */
    size_t test_from = kind == EVAL_SPLIT_RANDOM ? 0 : n - ntest;
    for (size_t i = 0; i < n; i++) {
        int in_test = i >= test_from && i < test_from + ntest;
        int rc = recolog_push(in_test ? test : train, &ev[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int eval_split(const recolog *all, eval_split_kind kind, double frac, uint64_t seed, recolog *train,
               recolog *test)
{
    if (!(frac >= 0 && frac <= 1) || (kind != EVAL_SPLIT_RANDOM && kind != EVAL_SPLIT_TEMPORAL))
        return CXM_EINVAL;
    recolog_event *group = malloc((all->n ? all->n : 1) * sizeof *group);
    if (!group)
        return CXM_ENOMEM;
    uint64_t state = seed;
    int rc = 0;
    for (size_t i = 0, j; rc == 0 && i < all->n; i = j) {
        for (j = i + 1; j < all->n && all->ev[j].user == all->ev[i].user;)
            j++;
        memcpy(group, all->ev + i, (j - i) * sizeof *group);
        rc = eval_split_user(group, j - i, kind, frac, &state, train, test);
    }
    free(group);
    return rc;
}

/* ---- re-indexing --------------------------------------------------------- */

/* Give the next new index to every id of logs not yet numbered. */
static void eval_number(uint32_t *map, uint32_t *next, const recolog *log, int items)
{
    for (size_t i = 0; i < log->n; i++) {
        uint32_t old = items ? log->ev[i].item : log->ev[i].user;
        if (map[old] == UINT32_MAX)
            map[old] = (*next)++;
    }
}

static void eval_apply(recolog *log, const uint32_t *map, int items)
{
    for (size_t i = 0; i < log->n; i++) {
        uint32_t *v = items ? &log->ev[i].item : &log->ev[i].user;
        *v = map[*v];
    }
}

/* Renumber users (items == 0) or items so that train ids come first. */
static int eval_reindex_one(recoids *ids, recolog *train, recolog *test, int items,
                            uint32_t *ntrain)
{
    uint32_t *map = malloc((ids->n ? ids->n : 1) * sizeof *map);
    if (!map)
        return CXM_ENOMEM;
    uint8_t *group = malloc((ids->n ? ids->n : 1) * sizeof *group);
    if (!group) {
        free(map);
        return CXM_ENOMEM;
    }
    memset(map, 0xff, (size_t)ids->n * sizeof *map);
    uint32_t next = 0;
    eval_number(map, &next, train, items);
    *ntrain = next;
    eval_number(map, &next, test, items);
    /* train, test only, interned but in neither log (kept, last); each by
     * name, as recodb numbers them for training. */
    for (uint32_t k = 0; k < ids->n; k++)
        group[k] = map[k] == UINT32_MAX ? 2 : map[k] >= *ntrain;
    int rc = recoids_sorted_map(ids, group, map);
    free(group);
    if (!rc)
        rc = recoids_permute(ids, map);
    if (!rc) {
        eval_apply(train, map, items);
        eval_apply(test, map, items);
    }
    free(map);
    return rc;
}

int eval_reindex(recoids *users, recoids *items, recolog *train, recolog *test,
                 uint32_t *nusers_train, uint32_t *nitems_train)
{
    int rc = eval_reindex_one(users, train, test, 0, nusers_train);
    return rc ? rc : eval_reindex_one(items, train, test, 1, nitems_train);
}
