/*
 * eval.c - cxm-senti-eval: a sentiment model (the built-in one, or
 * --model FILE) on labelled files: binary accuracy (the sign of the score
 * decides; NEUTRAL is not a third class here), expected calibration error
 * of the confidence, the NEUTRAL and MIXED shares, and microseconds per
 * 100-character text in process.
 *
 *   cxm-senti-eval --ko ../shared/data/sentiment/ko-nsmc-test.tsv.gz \
 *                  --en ../shared/data/sentiment/en-sst2-dev.tsv.gz --bench
 *
 * --cx FILE: a three-class file of customer comments (tests/data/senti_cx_*.tsv,
 * `neg|neu|pos<TAB>text`, language detected): binary accuracy on the neg/pos
 * lines (the sign decides), NEUTRAL recall on the neu lines (label NEUTRAL,
 * or |score| < CX_NEUTRAL_SCORE), and the share of confident errors
 * (confidence >= 0.9 and the label wrong), and the share of neg/pos lines
 * labelled NEGATIVE/POSITIVE (not NEUTRAL or MIXED). --half odd|even scores only the
 * odd or even lines (1-based): decisions are made on the odd half, the even
 * half is reported. --min-cx-bin, --min-cx-neu and --max-cx-conf make the
 * exit code 1 past a bar.
 *
 * --text "..." prints one text's analysis (repeatable).
 * --min-ko / --min-en make the exit code 1 below a bar (the ctest);
 * --skip-missing exits 77 (ctest's skipped) when a file is absent.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "feedback/senti/fsent.h"
#include "feedback/senti/tsv.h"

#define SKIP 77

typedef struct eopts {
    const char *model, *ko, *en;
    double min_ko, min_en;
    bool bench, skip_missing;
    const char *cx[4]; /* --cx: three-class customer-comment files */
    int ncx, half;     /* half: 0 all lines, 1 odd, 2 even */
    double min_cx_bin, min_cx_neu, max_cx_conf;
    const char *texts[16]; /* --text: analyse and print */
    int ntexts;
} eopts;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* The bench counts this thread's CPU time: on a shared machine the wall
 * clock also counts the time other processes had the core. */
static double cpu_now(void)
{
    return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

/* The first 100 characters (code points) of the rows joined by spaces,
 * nb of them, into buf (NUL-separated). Returns how many were made. */
static size_t hundred_char_texts(const tsv_corpus *c, char *buf, size_t *start, size_t *len,
                                 size_t nb)
{
    size_t made = 0, at = 0, row = 0;
    while (made < nb && row < c->n) {
        start[made] = at;
        size_t chars = 0;
        while (chars < 100 && row < c->n) {
            const char *t = c->text + c->off[row];
            size_t n = c->off[row + 1] - c->off[row];
            for (size_t i = 0; i < n && chars < 100; i++) {
                buf[at++] = t[i];
                chars += ((unsigned char)t[i] & 0xc0) != 0x80;
                while (i + 1 < n && ((unsigned char)t[i + 1] & 0xc0) == 0x80)
                    buf[at++] = t[++i];
            }
            if (chars < 100) {
                buf[at++] = ' ';
                chars++;
            }
            row++;
        }
        len[made] = at - start[made];
        made++;
    }
    return made;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* CPU microseconds per call over rounds of the same texts: the median
 * round, and the fastest (the machine is shared; the fastest round is the
 * one other processes disturbed least, through caches and the core's
 * sibling thread). */
static void bench(const fsent_model *m, const tsv_corpus *c, double *median, double *best)
{
    enum { NB = 256, ROUNDS = 41 };
    static char buf[NB * 450];
    size_t start[NB], len[NB];
    size_t nb = hundred_char_texts(c, buf, start, len, NB);
    double us[ROUNDS], sink = 0;
    for (int k = 0; k < ROUNDS; k++) {
        fsent_result r;
        double t0 = cpu_now();
        for (int rep = 0; rep < 10; rep++)
            for (size_t i = 0; i < nb; i++) {
                fsent_analyze(m, buf + start[i], len[i], FSENT_LANG_DETECT, true, &r);
                sink += r.score;
            }
        us[k] = (cpu_now() - t0) * 1e6 / (10.0 * (double)nb);
    }
    qsort(us, ROUNDS, sizeof us[0], cmp_double);
    *median = us[ROUNDS / 2] + (sink == 12345.678);
    *best = us[0];
}

static int eval_file(const fsent_model *m, const char *path, fsent_lang lang, const eopts *o,
                     double min)
{
    char err[256];
    tsv_corpus c;
    size_t skipped;
    if (o->skip_missing && access(path, R_OK) != 0) {
        printf("%s: absent, skipped\n", path);
        return SKIP;
    }
    if (tsv_read(path, 0, &c, &skipped, err) != 0) {
        fprintf(stderr, "cxm-senti-eval: %s\n", err);
        return 1;
    }
    size_t ok = 0, neutral = 0, mix = 0, cnt[10] = {0}, detected = 0;
    double sc[10] = {0}, so[10] = {0};
    double t0 = now();
    for (size_t d = 0; d < c.n; d++) {
        size_t n = c.off[d + 1] - c.off[d];
        fsent_result r;
        if (fsent_analyze(m, c.text + c.off[d], n > FSENT_MAX_TEXT ? FSENT_MAX_TEXT : n, lang,
                          false, &r) != 0)
            continue;
        bool right = (r.score >= 0) == (c.y[d] == 1);
        ok += right;
        neutral += r.label == FSENT_NEUTRAL;
        mix += r.label == FSENT_MIXED;
        int b = (int)((r.confidence - 0.5) * 20);
        b = b < 0 ? 0 : b > 9 ? 9 : b;
        sc[b] += r.confidence;
        so[b] += right;
        cnt[b]++;
        fsent_analyze(m, c.text + c.off[d], n > FSENT_MAX_TEXT ? FSENT_MAX_TEXT : n,
                      FSENT_LANG_DETECT, false, &r);
        detected += strcmp(r.language, lang == FSENT_LANG_KO ? "ko" : "en") == 0;
    }
    double secs = now() - t0, e = 0;
    for (int b = 0; b < 10; b++)
        e += fabs(sc[b] - so[b]) / c.n;
    double acc = (double)ok / c.n;
    printf("%s: %zu rows: accuracy %.4f  ECE %.4f  NEUTRAL %.1f%%  MIXED %.1f%%  detected as %s "
           "%.1f%%  (%.1f s)\n",
           path, c.n, acc, e, 100.0 * neutral / c.n, 100.0 * mix / c.n,
           lang == FSENT_LANG_KO ? "ko" : "en", 100.0 * detected / c.n, secs);
    if (o->bench) {
        double med, best;
        bench(m, &c, &med, &best);
        printf(
            "  per 100-character text (aspects on, detection on), CPU time: median %.3f us, best "
            "round "
            "%.3f us\n",
            med, best);
    }
    tsv_free(&c);
    if (min > 0 && acc < min) {
        fprintf(stderr, "cxm-senti-eval: accuracy %.4f below %.4f\n", acc, min);
        return 1;
    }
    return 0;
}

/* A neu line scored this close to 0 counts as NEUTRAL even if labelled
 * otherwise (a MIXED text whose clauses cancel). */
#define CX_NEUTRAL_SCORE 0.2

typedef struct cx_tally {
    size_t polar, polar_ok, polar_label, neu, neu_ok, n, conf_wrong;
} cx_tally;

static void cx_count(cx_tally *t, char gold, const fsent_result *r)
{
    bool right;
    t->n++;
    if (gold == 'u') { /* neu */
        right = r->label == FSENT_NEUTRAL || fabs(r->score) < CX_NEUTRAL_SCORE;
        t->neu++;
        t->neu_ok += right;
    } else {
        bool pos = gold == 'p';
        t->polar++;
        t->polar_ok += (r->score >= 0) == pos;
        right = r->label == (pos ? FSENT_POSITIVE : FSENT_NEGATIVE);
        t->polar_label += right;
    }
    t->conf_wrong += !right && r->confidence >= 0.9;
}

/* gold: 'n' neg, 'u' neu, 'p' pos; 0 for a line that is none. */
static char cx_gold(const char *line)
{
    if (strncmp(line, "neg\t", 4) == 0)
        return 'n';
    if (strncmp(line, "neu\t", 4) == 0)
        return 'u';
    if (strncmp(line, "pos\t", 4) == 0)
        return 'p';
    return 0;
}

static int eval_cx(const fsent_model *m, const char *path, const eopts *o)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (o->skip_missing) {
            printf("%s: absent, skipped\n", path);
            return SKIP;
        }
        fprintf(stderr, "cxm-senti-eval: %s: cannot open\n", path);
        return 1;
    }
    static char line[FSENT_MAX_TEXT + 16];
    cx_tally t = {0};
    size_t lineno = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (o->half && (int)(lineno % 2) != (o->half == 1))
            continue;
        size_t n = strcspn(line, "\r\n");
        char gold = cx_gold(line);
        fsent_result r;
        if (!gold || fsent_analyze(m, line + 4, n - 4, FSENT_LANG_DETECT, false, &r) != 0) {
            bad += n > 0;
            continue;
        }
        cx_count(&t, gold, &r);
    }
    fclose(f);
    double bin = t.polar ? (double)t.polar_ok / t.polar : 0;
    double neu = t.neu ? (double)t.neu_ok / t.neu : 0;
    double cw = t.n ? (double)t.conf_wrong / t.n : 0;
    static const char *halves[] = {"all", "odd", "even"};
    printf("%s (%s lines, %zu): binary accuracy %.4f (%zu/%zu)  NEUTRAL recall %.4f (%zu/%zu)  "
           "confident errors %.4f (%zu)  neg/pos lines labelled right %.4f%s\n",
           path, halves[o->half], t.n, bin, t.polar_ok, t.polar, neu, t.neu_ok, t.neu, cw,
           t.conf_wrong, t.polar ? (double)t.polar_label / t.polar : 0,
           bad ? "  (malformed lines skipped)" : "");
    int rc = 0;
    if (o->min_cx_bin > 0 && bin < o->min_cx_bin)
        rc = (fprintf(stderr, "cxm-senti-eval: binary accuracy below %.4f\n", o->min_cx_bin), 1);
    if (o->min_cx_neu > 0 && neu < o->min_cx_neu)
        rc = (fprintf(stderr, "cxm-senti-eval: NEUTRAL recall below %.4f\n", o->min_cx_neu), 1);
    if (o->max_cx_conf > 0 && cw > o->max_cx_conf)
        rc = (fprintf(stderr, "cxm-senti-eval: confident errors above %.4f\n", o->max_cx_conf), 1);
    return rc;
}

static void show(const fsent_model *m, const char *text)
{
    static const char *labels[] = {"UNSUPPORTED", "NEGATIVE", "NEUTRAL", "POSITIVE", "MIXED"};
    fsent_result r;
    if (fsent_analyze(m, text, strlen(text), FSENT_LANG_DETECT, true, &r) != 0) {
        printf("%s: refused\n", text);
        return;
    }
    printf("%s\n  %s %s score %.3f confidence %.3f\n", text, r.language, labels[r.label], r.score,
           r.confidence);
    for (size_t i = 0; i < r.naspects; i++)
        printf("  aspect %s [%u,%u) %s %.3f\n", r.aspects[i].aspect, r.aspects[i].begin,
               r.aspects[i].end, labels[r.aspects[i].label], r.aspects[i].score);
}

static int parse(int argc, char **argv, eopts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--bench") == 0)
            o->bench = true;
        else if (strcmp(a, "--skip-missing") == 0)
            o->skip_missing = true;
        else if (v && strcmp(a, "--text") == 0 && o->ntexts < 16)
            o->texts[o->ntexts++] = argv[++i];
        else if (v && strcmp(a, "--cx") == 0 && o->ncx < 4)
            o->cx[o->ncx++] = argv[++i];
        else if (v && strcmp(a, "--half") == 0)
            o->half = strcmp(argv[++i], "odd") == 0 ? 1 : strcmp(argv[i], "even") == 0 ? 2 : -1;
        else if (v && strcmp(a, "--min-cx-bin") == 0)
            o->min_cx_bin = atof(argv[++i]);
        else if (v && strcmp(a, "--min-cx-neu") == 0)
            o->min_cx_neu = atof(argv[++i]);
        else if (v && strcmp(a, "--max-cx-conf") == 0)
            o->max_cx_conf = atof(argv[++i]);
        else if (v && strcmp(a, "--model") == 0)
            o->model = argv[++i];
        else if (v && strcmp(a, "--ko") == 0)
            o->ko = argv[++i];
        else if (v && strcmp(a, "--en") == 0)
            o->en = argv[++i];
        else if (v && strcmp(a, "--min-ko") == 0)
            o->min_ko = atof(argv[++i]);
        else if (v && strcmp(a, "--min-en") == 0)
            o->min_en = atof(argv[++i]);
        else
            return -1;
    }
    return o->half >= 0 && (o->ko || o->en || o->ncx || o->ntexts) ? 0 : -1;
}

int main(int argc, char **argv)
{
    eopts o;
    if (parse(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: cxm-senti-eval [--model FILE] [--ko FILE.tsv.gz] "
                        "[--en FILE.tsv.gz] [--min-ko ACC] [--min-en ACC] [--bench] "
                        "[--skip-missing] [--text TEXT]... [--cx FILE.tsv]... "
                        "[--half odd|even] [--min-cx-bin ACC] [--min-cx-neu RECALL] "
                        "[--max-cx-conf SHARE]\n");
        return 2;
    }
    const fsent_model *m = fsent_builtin();
    fsent_model *own = NULL;
    char err[256];
    if (o.model) {
        if (fsent_load(o.model, &own, err) != 0) {
            fprintf(stderr, "cxm-senti-eval: %s\n", err);
            return 1;
        }
        m = own;
    }
    int rc = 0, r;
    for (int i = 0; i < o.ntexts; i++)
        show(m, o.texts[i]);
    if (o.ko && (r = eval_file(m, o.ko, FSENT_LANG_KO, &o, o.min_ko)) != 0)
        rc = rc ? rc : r;
    if (o.en && (r = eval_file(m, o.en, FSENT_LANG_EN, &o, o.min_en)) != 0)
        rc = rc == 0 || rc == SKIP ? r : rc;
    for (int i = 0; i < o.ncx; i++)
        if ((r = eval_cx(m, o.cx[i], &o)) != 0)
            rc = rc == 0 || rc == SKIP ? r : rc;
    fsent_free(own);
    return rc;
}
