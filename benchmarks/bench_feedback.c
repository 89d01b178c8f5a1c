/*
 * bench_feedback.c - cxm-bench-feedback: the feedback analytics (fan.h) over
 * cxm-gen's responses.csv and ratings.csv, for the DuckDB reference test and
 * the benchmark against DuckDB.
 *
 *   cxm-bench-feedback --responses R.csv --ratings T.csv [--zone Z]
 *                      [--from MS] [--to MS] [--repeat N] [--out DIR]
 *
 * Loads every response into a frec (frec.h), keeps them in memory in time
 * order (the record path) and applies them to the aggregates (fagg.h) of a
 * real LMDB store in a temporary directory (the cell path). Then asks the
 * questions below through both paths, and fails (exit 1) unless the two
 * answers agree to 1e-9:
 *   scores_tp_week   NPS by touchpoint, WEEK buckets in --zone
 *   scores_channel   CSAT by channel, totals only
 *   scores_stage     CES by stage, MONTH buckets in --zone
 *   gaps             GapAnalysis, min_responses 30, limit 50
 * each over [--from, --to) (0 = open). --out DIR writes each answer (the
 * cell path's) as DIR/<question>.json, shaped like the proto response (proto
 * field names, enums by their full names) for tests/reference/compare.mjs.
 * --repeat N times each question N times per path and prints one JSON line
 * per question: {"bench":"feedback.<question>","engine":"cxm","cells_ms":
 * best, "records_ms": best, ...}. Exit 2 on a usage or input error.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "feedback/fan.h"

#define BATCH 20000 /* records per write transaction while loading */

/* ---- a dictionary of names (touchpoints and survey ids) ---------------- */

typedef struct dict {
    char **names; /* by id; [0] unused */
    uint32_t n, cap;
    uint32_t *slots; /* open addressing: id, 0 = empty */
    size_t nslots;
} dict;

static dict D;

static uint32_t dict_find(const char *s, bool add)
{
    if ((D.n + 1) * 2 >= D.nslots) {
        size_t ns = D.nslots ? D.nslots * 2 : 1024;
        uint32_t *sl = calloc(ns, sizeof *sl);
        for (size_t i = 0; i < D.nslots; i++) {
            if (!D.slots[i])
                continue;
            const char *k = D.names[D.slots[i]];
            size_t j = cxm_hash(CXM_HASH_INIT, k, strlen(k)) & (ns - 1);
            while (sl[j])
                j = (j + 1) & (ns - 1);
            sl[j] = D.slots[i];
        }
        free(D.slots);
        D.slots = sl, D.nslots = ns;
    }
    size_t j = cxm_hash(CXM_HASH_INIT, s, strlen(s)) & (D.nslots - 1);
    for (; D.slots[j]; j = (j + 1) & (D.nslots - 1))
        if (strcmp(D.names[D.slots[j]], s) == 0)
            return D.slots[j];
    if (!add)
        return 0;
    if (D.n + 2 > D.cap) {
        D.cap = D.cap ? D.cap * 2 : 256;
        D.names = realloc(D.names, D.cap * sizeof *D.names);
    }
    D.names[++D.n] = strdup(s);
    return D.slots[j] = D.n;
}

/* ---- CSV (RFC 4180) ------------------------------------------------------ */

typedef struct csv {
    FILE *f;
    const char *path;
    long line;
    char *buf;
    size_t len, cap;
    size_t off[32]; /* field starts in buf */
    int nf;
} csv;

static void csv_putc(csv *c, int ch)
{
    if (c->len + 1 >= c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4096;
        c->buf = realloc(c->buf, c->cap);
    }
    c->buf[c->len++] = (char)ch;
}

/* The next record's fields, NUL-terminated in c->buf; false at the end. */
static bool csv_next(csv *c)
{
    int ch = getc(c->f);
    if (ch == EOF)
        return false;
    c->len = 0, c->nf = 0;
    bool quoted = false, start = true;
    c->line++;
    for (;; ch = getc(c->f)) {
        if (start) {
            if (c->nf < 32)
                c->off[c->nf++] = c->len;
            start = false;
            if (ch == '"') {
                quoted = true;
                continue;
            }
        }
        if (quoted) {
            if (ch == EOF)
                break;
            if (ch == '"') {
                int n = getc(c->f);
                if (n != '"') {
                    quoted = false;
                    ungetc(n, c->f);
                    continue;
                }
            }
            if (ch == '\n')
                c->line++;
            csv_putc(c, ch);
            continue;
        }
        if (ch == ',') {
            csv_putc(c, 0);
            start = true;
            continue;
        }
        if (ch == '\n' || ch == EOF)
            break;
        if (ch != '\r')
            csv_putc(c, ch);
    }
    csv_putc(c, 0);
    return true;
}

static const char *csv_field(const csv *c, int i)
{
    return i < c->nf ? c->buf + c->off[i] : "";
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cxm-bench-feedback: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static bool csv_open(csv *c, const char *path, const char *header)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    if (!(c->f = fopen(path, "r")))
        fail("%s: %s", path, strerror(errno));
    if (!csv_next(c) || strcmp(csv_field(c, 0), header) != 0)
        fail("%s: not the expected CSV (its first column is not %s)", path, header);
    return true;
}

/* An enum value by its short lower-case name ("contact_centre"). */
static int enum_by(const ProtobufCEnumDescriptor *d, const char *prefix, const char *s)
{
    size_t pl = strlen(prefix);
    for (unsigned i = 0; i < d->n_values; i++) {
        const char *n = d->values[i].name + pl;
        size_t k = 0;
        while (n[k] && s[k] && (n[k] | 0x20) == (s[k] | 0x20))
            k++;
        if (!n[k] && !s[k])
            return d->values[i].value;
    }
    return 0;
}

/* ---- the records ---------------------------------------------------------- */

typedef struct recs {
    frec **r;
    size_t n, cap;
} recs;

static recs R;

static int kind_of(const char *s)
{
    return !strcmp(s, "nps") ? 1 : !strcmp(s, "csat") ? 2 : !strcmp(s, "ces") ? 3 : 0;
}

/* responses.csv columns: response_id survey_id kind customer_id ... score(6)
 * ... channel(10) stage(11) touchpoint(12) submitted_at_unix_ms(13). */
static frec *response(const csv *c)
{
    frec *r = calloc(1, frec_size(FREC_MAX_RATINGS));
    const char *cust = csv_field(c, 3), *tp = csv_field(c, 12);
    r->at_ms = strtoll(csv_field(c, 13), NULL, 10);
    r->customer = cxm_hash(CXM_HASH_INIT, cust, strlen(cust));
    r->survey = dict_find(csv_field(c, 1), true);
    r->touchpoint = tp[0] ? dict_find(tp, true) : 0;
    r->kind = (uint8_t)kind_of(csv_field(c, 2));
    r->channel = (uint8_t)enum_by(&cxm__v1__channel__descriptor, "CHANNEL_", csv_field(c, 10));
    r->stage =
        (uint8_t)enum_by(&cxm__v1__journey_stage__descriptor, "JOURNEY_STAGE_", csv_field(c, 11));
    r->score = (uint8_t)atoi(csv_field(c, 6));
    if (!r->kind)
        fail("%s: line %ld: unknown kind", c->path, c->line);
    return r;
}

static int rec_cmp(const void *x, const void *y)
{
    const frec *a = *(frec *const *)x, *b = *(frec *const *)y;
    return a->at_ms < b->at_ms ? -1 : a->at_ms > b->at_ms;
}

/* Ratings come in the responses' order (cxm-gen writes each response's
 * ratings as it writes the response). */
static void load_csv(const char *responses, const char *ratings)
{
    csv a, b;
    csv_open(&a, responses, "response_id");
    csv_open(&b, ratings, "response_id");
    bool more = csv_next(&b);
    while (csv_next(&a)) {
        frec *r = response(&a);
        for (; more && strcmp(csv_field(&b, 0), csv_field(&a, 0)) == 0; more = csv_next(&b)) {
            if (r->nratings == FREC_MAX_RATINGS)
                fail("%s: line %ld: more than 20 ratings", ratings, b.line);
            frec_rating *t = &r->ratings[r->nratings++];
            t->touchpoint = dict_find(csv_field(&b, 4), true);
            t->expectation = strtod(csv_field(&b, 5), NULL);
            t->experience = strtod(csv_field(&b, 6), NULL);
        }
        if (R.n == R.cap) {
            R.cap = R.cap ? R.cap * 2 : 4096;
            R.r = realloc(R.r, R.cap * sizeof *R.r);
        }
        R.r[R.n++] = realloc(r, frec_size(r->nratings));
    }
    if (more)
        fail("%s: line %ld: a rating of no response before it", ratings, b.line);
    fclose(a.f), fclose(b.f);
    free(a.buf), free(b.buf);
    qsort(R.r, R.n, sizeof *R.r, rec_cmp);
}

/* ---- the store ------------------------------------------------------------- */

static cxm_store *store;
static fagg *agg;

typedef struct batch {
    size_t from, to;
} batch;

static int apply_fn(cxm_txn *txn, void *user)
{
    const batch *b = user;
    for (size_t i = b->from; i < b->to; i++) {
        int rc = fagg_apply(txn, agg, R.r[i], 1);
        if (rc)
            return rc;
    }
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- the sources -------------------------------------------------------- */

static int mem_scan(void *src, int64_t from, int64_t to, fan_rec_fn fn, void *user)
{
    (void)src;
    size_t lo = 0, hi = R.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (R.r[mid]->at_ms < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < R.n && R.r[i]->at_ms < to; i++) {
        int rc = fn(R.r[i], user);
        if (rc)
            return rc;
    }
    return 0;
}

static const char *mem_name(void *src, uint32_t id)
{
    (void)src;
    return id && id <= D.n ? D.names[id] : NULL;
}

static uint32_t mem_id(void *src, const char *name)
{
    (void)src;
    return dict_find(name, false);
}

static fan_src source(cxm_txn *txn)
{
    return (fan_src){.scan = mem_scan,
                     .name = mem_name,
                     .id = mem_id,
                     .src = NULL,
                     .agg = txn ? agg : NULL,
                     .txn = txn};
}

/* ---- JSON ------------------------------------------------------------------ */

static void json_str(FILE *f, const char *s)
{
    putc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            putc(*s, f);
    }
    putc('"', f);
}

static void json_bucket(FILE *f, const Cxm__V1__ScoreBucket *b)
{
    fprintf(f,
            "{\"start_unix_ms\":%" PRId64 ",\"responses\":%" PRIu64 ",\"score\":%.17g,"
            "\"promoters\":%" PRIu64 ",\"passives\":%" PRIu64 ",\"detractors\":%" PRIu64
            ",\"mean\":%.17g,\"margin_of_error\":%.17g}",
            b->start_unix_ms, b->responses, b->score, b->promoters, b->passives, b->detractors,
            b->mean, b->margin_of_error);
}

static void json_scores(FILE *f, const Cxm__V1__GetScoresResponse *o)
{
    fputs("{\"groups\":[", f);
    for (size_t i = 0; i < o->n_groups; i++) {
        const Cxm__V1__ScoreGroup *g = o->groups[i];
        fputs(i ? ",{\"key\":" : "{\"key\":", f);
        json_str(f, g->key);
        fprintf(
            f, ",\"channel\":\"%s\",\"stage\":\"%s\",\"buckets\":[",
            protobuf_c_enum_descriptor_get_value(&cxm__v1__channel__descriptor, g->channel)->name,
            protobuf_c_enum_descriptor_get_value(&cxm__v1__journey_stage__descriptor, g->stage)
                ->name);
        for (size_t k = 0; k < g->n_buckets; k++) {
            if (k)
                putc(',', f);
            json_bucket(f, g->buckets[k]);
        }
        fputs("],\"total\":", f);
        json_bucket(f, g->total);
        putc('}', f);
    }
    fputs("]}\n", f);
}

static void json_gaps(FILE *f, const Cxm__V1__GapAnalysisResponse *o)
{
    fputs("{\"gaps\":[", f);
    for (size_t i = 0; i < o->n_gaps; i++) {
        const Cxm__V1__TouchpointGap *g = o->gaps[i];
        fputs(i ? ",{\"touchpoint\":" : "{\"touchpoint\":", f);
        json_str(f, g->touchpoint);
        fprintf(f,
                ",\"mean_expectation\":%.17g,\"mean_experience\":%.17g,\"gap\":%.17g,"
                "\"responses\":%" PRIu64 ",\"volume_share\":%.17g,\"impact\":%.17g,"
                "\"priority\":%.17g,\"disappointed_share\":%.17g}",
                g->mean_expectation, g->mean_experience, g->gap, g->responses, g->volume_share,
                g->impact, g->priority, g->disappointed_share);
    }
    fputs("]}\n", f);
}

/* ---- the questions ------------------------------------------------------------ */

typedef struct question {
    const char *name;
    bool gaps;
    int kind, group_by, bucket;
    bool zoned;
} question;

static const question questions[] = {
    {"scores_tp_week", false, 1, CXM__V1__SCORE_GROUPING__SCORE_GROUPING_TOUCHPOINT,
     CXM__V1__TIME_BUCKET__TIME_BUCKET_WEEK, true},
    {"scores_channel", false, 2, CXM__V1__SCORE_GROUPING__SCORE_GROUPING_CHANNEL, 0, false},
    {"scores_stage", false, 3, CXM__V1__SCORE_GROUPING__SCORE_GROUPING_STAGE,
     CXM__V1__TIME_BUCKET__TIME_BUCKET_MONTH, true},
    {"gaps", true, 0, 0, 0, false},
};

typedef struct opts {
    const char *responses, *ratings, *zone, *out;
    int64_t from, to;
    int repeat;
} opts;

/* One answer on one path into *out (a JSON text in memory); the time it
 * took in *ms. Exits on an error. */
static char *ask(const question *q, const opts *o, bool cells, cxm_arena *a, double *ms)
{
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = o->from, range.to_unix_ms = o->to;
    char err[CXM_SVC_ERR_MAX], *text = NULL;
    size_t len = 0;
    cxm_txn *txn = NULL;
    if (cells && cxm_store_read_begin(store, &txn))
        fail("cannot begin a read: %s", cxm_store_last_error());
    fan_src s = source(txn);
    FILE *f = open_memstream(&text, &len);
    double t0 = now_ms();
    int rc;
    if (q->gaps) {
        Cxm__V1__GapAnalysisRequest req = CXM__V1__GAP_ANALYSIS_REQUEST__INIT;
        Cxm__V1__GapAnalysisResponse *res;
        req.range = &range;
        rc = fan_gaps(&s, &req, a, &res, err);
        *ms = now_ms() - t0;
        if (rc == 0)
            json_gaps(f, res);
    } else {
        Cxm__V1__GetScoresRequest req = CXM__V1__GET_SCORES_REQUEST__INIT;
        Cxm__V1__GetScoresResponse *res;
        req.kind = q->kind, req.group_by = q->group_by, req.bucket = q->bucket;
        req.range = &range, req.time_zone = (char *)(q->zoned ? o->zone : "");
        rc = fan_scores(&s, &req, a, &res, err);
        *ms = now_ms() - t0;
        if (rc == 0)
            json_scores(f, res);
    }
    if (txn)
        cxm_store_read_end(txn);
    fclose(f);
    if (rc)
        fail("%s: %s (%s)", q->name, err, cxm_strerror(rc));
    return text;
}

/* The two paths' JSON texts agree when every number agrees to 1e-9 and
 * everything else is identical. */
static bool agree(const char *x, const char *y)
{
    while (*x && *y) {
        bool nx = (*x >= '0' && *x <= '9') || *x == '-';
        bool ny = (*y >= '0' && *y <= '9') || *y == '-';
        if (nx && ny) {
            char *ex, *ey;
            double a = strtod(x, &ex), b = strtod(y, &ey);
            if (!(fabs(a - b) <= 1e-9 * fmax(1, fmax(fabs(a), fabs(b)))))
                return false;
            x = ex, y = ey;
            continue;
        }
        if (*x++ != *y++)
            return false;
    }
    return *x == *y;
}

static void run(const question *q, const opts *o)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    double cms, rms, best_c = INFINITY, best_r = INFINITY;
    char *c = ask(q, o, true, &a, &cms), *r = ask(q, o, false, &a, &rms);
    if (!agree(c, r)) {
        fprintf(stderr,
                "cxm-bench-feedback: %s: cells and records disagree\ncells:   %s\n"
                "records: %s\n",
                q->name, c, r);
        exit(1);
    }
    if (o->out) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.json", o->out, q->name);
        FILE *f = fopen(path, "w");
        if (!f || fputs(c, f) < 0 || fclose(f))
            fail("%s: cannot write", path);
    }
    for (int i = 0; i < o->repeat; i++) {
        cxm_arena_reset(&a);
        free(ask(q, o, true, &a, &cms));
        free(ask(q, o, false, &a, &rms));
        best_c = fmin(best_c, cms), best_r = fmin(best_r, rms);
    }
    if (o->repeat)
        printf("{\"bench\":\"feedback.%s\",\"engine\":\"cxm\",\"cells_ms\":%.3f,"
               "\"records_ms\":%.3f,\"repeat\":%d,\"responses\":%zu}\n",
               q->name, best_c, best_r, o->repeat, R.n);
    free(c), free(r);
    cxm_arena_dispose(&a);
}

static void usage(void)
{
    fputs("usage: cxm-bench-feedback --responses R.csv --ratings T.csv [--zone Z] [--from MS] "
          "[--to MS] [--repeat N] [--out DIR]\n",
          stderr);
    exit(2);
}

static opts parse(int argc, char **argv)
{
    opts o = {.zone = ""};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(k, "--responses"))
            o.responses = v;
        else if (!strcmp(k, "--ratings"))
            o.ratings = v;
        else if (!strcmp(k, "--zone"))
            o.zone = v;
        else if (!strcmp(k, "--out"))
            o.out = v;
        else if (!strcmp(k, "--from"))
            o.from = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--to"))
            o.to = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--repeat"))
            o.repeat = atoi(v);
        else
            usage();
    }
    if (!o.responses || !o.ratings || o.repeat < 0)
        usage();
    return o;
}

int main(int argc, char **argv)
{
    opts o = parse(argc, argv);
    double t0 = now_ms();
    load_csv(o.responses, o.ratings);
    double t1 = now_ms();
    char dir[] = "/tmp/cxm-bench-feedback.XXXXXX";
    cxm_store_opts so = {.nosync = true, .initial_map_size = (size_t)1 << 30};
    if (!mkdtemp(dir) || cxm_store_open(dir, &so, &store) || fagg_open(store, &agg))
        fail("%s: cannot open a store: %s", dir, cxm_store_last_error());
    for (size_t i = 0; i < R.n; i += BATCH) {
        batch b = {i, i + BATCH < R.n ? i + BATCH : R.n};
        if (cxm_store_write(store, apply_fn, &b))
            fail("loading the cells: %s", cxm_store_last_error());
    }
    double t2 = now_ms();
    if (o.repeat)
        printf("{\"bench\":\"feedback.load\",\"engine\":\"cxm\",\"responses\":%zu,"
               "\"csv_ms\":%.1f,\"cells_ms\":%.1f}\n",
               R.n, t1 - t0, t2 - t1);
    for (size_t i = 0; i < sizeof questions / sizeof questions[0]; i++)
        run(&questions[i], &o);
    fagg_close(agg);
    cxm_store_close(store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    int rc = system(cmd);
    for (size_t i = 0; i < R.n; i++)
        free(R.r[i]);
    free(R.r);
    for (uint32_t i = 1; i <= D.n; i++)
        free(D.names[i]);
    free(D.names), free(D.slots);
    return rc ? 1 : 0;
}
