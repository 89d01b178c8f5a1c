/*
 * train.c - cxm-senti-train: trains the Korean and English sentiment
 * models and writes one model file (fsent_model.c's format).
 *
 * The committed services/feedback/senti/model.bin is exactly:
 *
 *   build/bin/cxm-senti-train --select --en-long-validation --en-refit \
 *       --en-length-power 0.5 \
 *       --ko ../shared/data/sentiment/ko-nsmc-train.tsv.gz \
 *       --ko-lexicon services/feedback/senti/lexicon/ko.tsv \
 *       --en ../shared/data/sentiment/en-sst2-train.tsv.gz \
 *       --en-lexicon services/feedback/senti/lexicon/en.tsv \
 *       -o services/feedback/senti/model.bin
 *
 * (run from the repository root; deterministic: fixed seed 12, one thread,
 * the same bytes every run; about 25 s).
 *
 * Per language: a validation split (10%, seeded) is carved from the train
 * file; the lexicon's rows (lexicon/README.md: customer-experience words the
 * movie corpora lack, and neutral domain words) join the training rows,
 * each 30 times an epoch; logistic regression with AdaGrad and L2 over the
 * hashed features of fsent_feat.c (the same extractor the library scores
 * with) is fitted on the rest. With --select the feature settings and L2
 * are chosen by the validation log loss of the quantised, calibrated model
 * (test files are never read here). English validates on long rows
 * (--en-long-validation, long_split: SST-2's train file is mostly short
 * phrases, what is scored is whole comments) and --select also tries a row
 * weight of (words)^0.5 (--en-length-power) and min_df 1; with --en-refit
 * the chosen English settings are fitted again on every row, keeping the
 * split's calibration. The weights are quantised to int8 with
 * one scale per table, Platt scaling is fitted on the validation split, and
 * the NEUTRAL band is the widest confidence band whose validation examples
 * are right at most 60% of the time (barely better than a coin).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "feedback/senti/fsent_impl.h"
#include "feedback/senti/tsv.h"

typedef struct opts {
    const char *ko, *en, *out;
    size_t limit;
    uint64_t seed;
    int epochs;
    bool select;
    uint32_t ko_bits, en_bits;
    const char *config; /* "ngram_max:flags:l2:nb", one configuration to try */
    const char *ko_lex, *en_lex;
    int lex_repeat;          /* each lexicon row is trained on this many times an epoch */
    double en_len_power;     /* an English row weighs (its words)^this, mean 1 */
    bool en_long_validation; /* English validates on long rows (long_split) */
    bool en_refit;           /* after selection, refit English's chosen settings on every row */
} opts;

/* One configuration tried: the table's feature settings and the L2. */
typedef struct config {
    uint32_t ngram_max, flags;
    double l2;
    bool nb;          /* scale features by their naive Bayes log-count ratio */
    uint32_t min_df;  /* features in fewer training rows are left out (weight 0) */
    double len_power; /* a row weighs (its words)^len_power (row_weights) */
} config;

/* The features of every row, compressed-row style. */
typedef struct feats {
    size_t n;
    uint64_t *off; /* n + 1 */
    uint32_t *f;
} feats;

typedef struct split {
    uint32_t *tr, *va;
    size_t ntr, nva;
} split;

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void shuffle(uint32_t *a, size_t n, uint64_t *s)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_next(s) % i;
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* A text's features as the library sees them: clause by clause. */
static size_t doc_features(const fsent__table *t, fsent_lang lang, const char *text, size_t len,
                           uint32_t *idx, size_t cap)
{
    uint32_t b[FSENT__MAX_CLAUSES], e[FSENT__MAX_CLAUSES];
    int nc = fsent__clauses(lang, text, len, b, e);
    size_t total = 0;
    for (int i = 0; i < nc; i++) {
        size_t at = total < cap ? total : cap;
        fsent__sink s = {.shift = 64 - t->bits, .idx = idx + at, .cap = cap - at};
        fsent__features(t, lang, text + b[i], e[i] - b[i], i, nc, &s);
        total += s.n;
    }
    return total < cap ? total : cap;
}

static int extract(const fsent__table *t, fsent_lang lang, const tsv_corpus *c, feats *F)
{
    size_t cap = 1 << 24, used = 0;
    F->n = c->n;
    F->off = malloc((c->n + 1) * sizeof *F->off);
    F->f = malloc(cap * sizeof *F->f);
    if (!F->off || !F->f)
        return CXM_ENOMEM;
    for (size_t d = 0; d < c->n; d++) {
        size_t len = c->off[d + 1] - c->off[d];
        if (len > FSENT_MAX_TEXT)
            len = FSENT_MAX_TEXT;
        size_t need = 8 * len + 64;
        if (used + need > cap) {
            cap = 2 * cap + need;
            uint32_t *g = realloc(F->f, cap * sizeof *g);
            if (!g)
                return CXM_ENOMEM;
            F->f = g;
        }
        F->off[d] = used;
        used += doc_features(t, lang, c->text + c->off[d], len, F->f + used, cap - used);
    }
    F->off[c->n] = used;
    return 0;
}

static void feats_free(feats *F)
{
    free(F->off);
    free(F->f);
    memset(F, 0, sizeof *F);
}

/* Logistic regression, AdaGrad with L2 on the features a row touches. */
static void fit(const feats *F, const uint8_t *y, const float *rw, const split *sp,
                const config *cf, int epochs, uint64_t seed, const float *r, float *w, float *g2,
                size_t dim, double *bias)
{
    const double lr = 0.2;
    memset(w, 0, dim * sizeof *w);
    for (size_t i = 0; i < dim; i++)
        g2[i] = 1e-6f;
    double b = 0, gb = 1e-6;
    bool norm = cf->flags & FSENT__F_NORM;
    uint32_t *order = malloc(sp->ntr * sizeof *order);
    memcpy(order, sp->tr, sp->ntr * sizeof *order);
    for (int ep = 0; ep < epochs; ep++) {
        shuffle(order, sp->ntr, &seed);
        for (size_t k = 0; k < sp->ntr; k++) {
            uint32_t d = order[k];
            const uint32_t *f = F->f + F->off[d], *fe = F->f + F->off[d + 1];
            double z = 0, inv = norm && fe - f > 1 ? 1 / sqrt((double)(fe - f)) : 1;
            for (const uint32_t *q = f; q < fe; q++)
                z += w[*q] * r[*q];
            z = b + z * inv;
            double g = (1.0 / (1.0 + exp(-z)) - (y[d] == 2 ? 0.5 : y[d])) * rw[d];
            for (const uint32_t *q = f; q < fe; q++) {
                double gi = g * inv * r[*q] + cf->l2 * w[*q];
                g2[*q] += (float)(gi * gi);
                w[*q] -= (float)(lr * gi / sqrt(g2[*q]));
            }
            gb += g * g;
            b -= lr * g / sqrt(gb);
        }
    }
    *bias = b;
    for (size_t i = 0; i < dim; i++)
        w[i] *= r[i];
    free(order);
}

/* Features (hash buckets) in fewer than min_df training rows get ratio 0:
 * a bigram seen once or twice in movie phrases is noise elsewhere. */
static void min_df_mask(const feats *F, const split *sp, uint32_t min_df, float *r, size_t dim)
{
    uint32_t *df = calloc(dim, sizeof *df);
    for (size_t k = 0; k < sp->ntr; k++) {
        uint32_t d = sp->tr[k];
        for (uint64_t i = F->off[d]; i < F->off[d + 1]; i++)
            df[F->f[i]] += df[F->f[i]] < min_df;
    }
    for (size_t i = 0; i < dim; i++)
        if (df[i] < min_df)
            r[i] = 0;
    free(df);
}

/* NBSVM's log-count ratios over the training rows (Wang and Manning 2012):
 * a feature seen mostly in positive rows starts with a large positive
 * scale, so the regression needs smaller (more regularised) weights for it.
 * Without nb, every ratio is 1. */
static void nb_ratios(const feats *F, const uint8_t *y, const split *sp, const config *cf, float *r,
                      size_t dim)
{
    for (size_t i = 0; i < dim; i++)
        r[i] = 1;
    if (cf->min_df > 1)
        min_df_mask(F, sp, cf->min_df, r, dim);
    if (!cf->nb)
        return;
    double *pc = calloc(2 * dim, sizeof *pc), sp_ = 0, sn = 0;
    for (size_t k = 0; k < sp->ntr; k++) {
        uint32_t d = sp->tr[k];
        for (uint64_t i = F->off[d]; i < F->off[d + 1] && y[d] < 2; i++)
            pc[2 * F->f[i] + y[d]] += 1;
    }
    for (size_t i = 0; i < dim; i++) {
        pc[2 * i] += 1, pc[2 * i + 1] += 1;
        sn += pc[2 * i], sp_ += pc[2 * i + 1];
    }
    for (size_t i = 0; i < dim; i++)
        r[i] *= (float)fabs(log((pc[2 * i + 1] / sp_) / (pc[2 * i] / sn)));
    free(pc);
}

/* int8 with one scale: the largest weight maps to 127. */
static float quantize(const float *w, size_t dim, int8_t *q)
{
    float mx = 0;
    for (size_t i = 0; i < dim; i++)
        mx = fabsf(w[i]) > mx ? fabsf(w[i]) : mx;
    float scale = mx > 0 ? mx / 127 : 1;
    for (size_t i = 0; i < dim; i++)
        q[i] = (int8_t)lrintf(w[i] / scale);
    return scale;
}

static double zq(const fsent__table *t, const feats *F, size_t d)
{
    int64_t s = 0;
    for (uint64_t i = F->off[d]; i < F->off[d + 1]; i++)
        s += t->w[F->f[i]];
    return fsent__z(t, s, F->off[d + 1] - F->off[d]);
}

static double accuracy(const fsent__table *t, const feats *F, const uint8_t *y,
                       const uint32_t *rows, size_t n)
{
    size_t ok = 0;
    for (size_t k = 0; k < n; k++)
        ok += (zq(t, F, rows[k]) >= 0) == (y[rows[k]] == 1);
    return n ? (double)ok / n : 0;
}

/* Platt scaling: P(positive) = sigmoid(a z + b) by Newton's method on the
 * log loss with Platt's smoothed targets. */
static void platt(const double *z, const uint8_t *y, size_t n, float *pa, float *pb)
{
    size_t npos = 0;
    for (size_t i = 0; i < n; i++)
        npos += y[i];
    double tp = (npos + 1.0) / (npos + 2.0), tn = 1.0 / (n - npos + 2.0);
    double a = 1, b = 0;
    for (int it = 0; it < 50; it++) {
        double ga = 0, gb = 0, haa = 1e-9, hab = 0, hbb = 1e-9;
        for (size_t i = 0; i < n; i++) {
            double p = 1 / (1 + exp(-(a * z[i] + b))), t = y[i] ? tp : tn;
            double r = p - t, v = p * (1 - p);
            ga += r * z[i];
            gb += r;
            haa += v * z[i] * z[i];
            hab += v * z[i];
            hbb += v;
        }
        double det = haa * hbb - hab * hab;
        if (det <= 0)
            break;
        double da = (hbb * ga - hab * gb) / det, db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if (fabs(da) + fabs(db) < 1e-9)
            break;
    }
    *pa = (float)a;
    *pb = (float)b;
}

static int cmp_conf(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The NEUTRAL band: the widest [0.5, t) whose validation examples are
 * right at most 60% of the time. conf_ok holds (confidence, right) pairs. */
static float band(double *conf_ok, size_t n)
{
    qsort(conf_ok, n, 2 * sizeof(double), cmp_conf);
    size_t ok = 0;
    double t = 0.5;
    for (size_t i = 0; i < n; i++) {
        ok += conf_ok[2 * i + 1] > 0;
        if ((double)ok <= 0.6 * (i + 1))
            t = conf_ok[2 * i];
    }
    return (float)(t > 0.5 ? t : 0.5);
}

/* Expected calibration error over 10 confidence bins of [0.5, 1]. */
static double ece(const double *conf_ok, size_t n)
{
    double sc[10] = {0}, so[10] = {0};
    size_t cnt[10] = {0};
    for (size_t i = 0; i < n; i++) {
        int b = (int)((conf_ok[2 * i] - 0.5) * 20);
        b = b < 0 ? 0 : b > 9 ? 9 : b;
        sc[b] += conf_ok[2 * i];
        so[b] += conf_ok[2 * i + 1];
        cnt[b]++;
    }
    double e = 0;
    for (int b = 0; b < 10; b++)
        if (cnt[b])
            e += fabs(sc[b] - so[b]) / n;
    return e;
}

/* The validation log loss after Platt scaling: the selection criterion,
 * because the label, NEUTRAL band and MIXED all read the calibrated
 * probability, not just its sign. */
static double val_logloss(const fsent__table *t, const feats *F, const uint8_t *y, const split *sp)
{
    double *z = malloc(sp->nva * sizeof *z), loss = 0;
    uint8_t *yv = malloc(sp->nva);
    for (size_t k = 0; k < sp->nva; k++) {
        z[k] = zq(t, F, sp->va[k]);
        yv[k] = y[sp->va[k]];
    }
    float a, b;
    platt(z, yv, sp->nva, &a, &b);
    for (size_t k = 0; k < sp->nva; k++) {
        double p = 1 / (1 + exp(-(a * z[k] + b)));
        p = yv[k] ? p : 1 - p;
        loss -= log(p > 1e-12 ? p : 1e-12);
    }
    free(z);
    free(yv);
    return loss / (double)sp->nva;
}

static void calibrate(fsent__table *t, const feats *F, const uint8_t *y, const split *sp)
{
    double *z = malloc(sp->nva * sizeof *z), *co = malloc(2 * sp->nva * sizeof *co);
    uint8_t *yv = malloc(sp->nva);
    for (size_t k = 0; k < sp->nva; k++) {
        z[k] = zq(t, F, sp->va[k]);
        yv[k] = y[sp->va[k]];
    }
    platt(z, yv, sp->nva, &t->platt_a, &t->platt_b);
    size_t neutral = 0;
    for (size_t k = 0; k < sp->nva; k++) {
        double p = 1 / (1 + exp(-(t->platt_a * z[k] + t->platt_b)));
        co[2 * k] = p >= 0.5 ? p : 1 - p;
        co[2 * k + 1] = (p >= 0.5) == (yv[k] == 1);
    }
    double e = ece(co, sp->nva);
    t->neutral = band(co, sp->nva);
    for (size_t k = 0; k < sp->nva; k++)
        neutral += co[2 * k] < t->neutral;
    printf("  platt a=%.4f b=%.4f  validation ECE %.4f  neutral band conf < %.3f (%.1f%% of "
           "validation)\n",
           t->platt_a, t->platt_b, e, t->neutral, 100.0 * neutral / sp->nva);
    free(z);
    free(co);
    free(yv);
}

/* Validation: 10% of the corpus rows [0, n). Training: the rest, and the
 * lexicon rows [n, n + nlex), each repeat times. */
static void make_split(size_t n, size_t nlex, int repeat, uint64_t seed, split *sp)
{
    size_t extra = nlex * (size_t)repeat;
    uint32_t *all = malloc((n + extra) * sizeof *all);
    for (size_t i = 0; i < n; i++)
        all[i] = (uint32_t)i;
    shuffle(all, n, &seed);
    for (size_t i = 0; i < extra; i++)
        all[n + i] = (uint32_t)(n + i % nlex);
    sp->nva = n / 10;
    sp->ntr = n + extra - sp->nva;
    sp->va = all;
    sp->tr = all + sp->nva;
}

/* The candidates --select tries; the first is the default without it.
 * Korean: character 1-3-grams and words, with or without the length
 * normalisation, two L2 strengths. English: word uni+bigrams, alone, with
 * the normalisation, or with the contrast roles. Features in fewer than
 * three (ko) or two (en) training rows are left out throughout. */
static size_t configs(fsent_lang lang, bool select, double en_len_power, config *c)
{
    static const double l2s[] = {1e-3, 1e-2};
    static const uint32_t ko_flags[] = {FSENT__F_WORDS | FSENT__F_NORM, FSENT__F_WORDS};
    static const uint32_t en_flags[] = {FSENT__F_WORDS | FSENT__F_BIGRAMS,
                                        FSENT__F_WORDS | FSENT__F_BIGRAMS | FSENT__F_NORM,
                                        FSENT__F_WORDS | FSENT__F_BIGRAMS | FSENT__F_ROLES};
    size_t n = 0, nf = select ? (lang == FSENT_LANG_KO ? 2 : 3) : 1, nl = select ? 2 : 1;
    for (size_t f = 0; f < nf; f++)
        for (size_t i = 0; i < nl; i++) {
            if (lang == FSENT_LANG_KO)
                c[n++] = (config){3, ko_flags[f], l2s[i], false, 3};
            else
                c[n++] = (config){0, en_flags[f], l2s[i] / 10, false, 2, en_len_power};
        }
    /* English also tries the length weight on and off, and keeping the
     * features seen in a single row. */
    for (size_t k = 0, n0 = n; select && lang == FSENT_LANG_EN && k < n0; k++) {
        c[n] = c[k];
        c[n++].len_power = en_len_power > 0 ? 0 : 0.5;
    }
    for (size_t k = 0, n0 = n; select && lang == FSENT_LANG_EN && k < n0; k++) {
        c[n] = c[k];
        c[n++].min_df = 1;
    }
    return n;
}

/* ---- the English validation split of long rows ---------------------- */

static size_t trimmed(const tsv_corpus *c, size_t d)
{
    size_t n = c->off[d + 1] - c->off[d];
    while (n && c->text[c->off[d] + n - 1] == ' ')
        n--;
    return n;
}

static size_t word_count(const char *p, size_t n)
{
    size_t words = 0;
    for (size_t i = 0; i < n; i++)
        words += p[i] != ' ' && (i == 0 || p[i - 1] == ' ');
    return words;
}

/* An open-addressing set of 64-bit span hashes (0 is the empty slot). */
typedef struct span_set {
    uint64_t *h;
    size_t mask;
} span_set;

static void span_add(span_set *s, uint64_t h)
{
    size_t i = h & s->mask;
    while (s->h[i] && s->h[i] != h)
        i = (i + 1) & s->mask;
    s->h[i] = h;
}

static bool span_has(const span_set *s, uint64_t h)
{
    for (size_t i = h & s->mask; s->h[i]; i = (i + 1) & s->mask)
        if (s->h[i] == h)
            return true;
    return false;
}

/* FNV-1a, extended byte by byte; | 1 keeps it off the empty slot. */
static uint64_t span_step(uint64_t h, unsigned char c)
{
    return (h ^ c) * 1099511628211ull;
}

/* Every word-aligned span of p[0..n) into s. */
static void span_add_all(span_set *s, const char *p, size_t n)
{
    for (size_t a = 0; a < n; a++) {
        if (p[a] == ' ' || (a && p[a - 1] != ' '))
            continue;
        uint64_t h = 14695981039346656037ull;
        for (size_t b = a; b < n; b++) {
            h = span_step(h, (unsigned char)p[b]);
            if (b + 1 == n || p[b + 1] == ' ')
                span_add(s, h | 1);
        }
    }
}

static uint64_t span_hash(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = span_step(h, (unsigned char)p[i]);
    return h | 1;
}

/* SST-2's train file holds its sentences and the phrases cut from them,
 * while what is scored is whole comments. Validation: half the rows of at
 * least LONG_WORDS words (seeded); training: the other rows except those
 * that are a span of a validation row (their labels would leak into it),
 * then the lexicon rows repeat times. */
#define LONG_WORDS 20
static void long_split(const tsv_corpus *c, size_t n, size_t nlex, int repeat, uint64_t seed,
                       split *sp)
{
    size_t extra = nlex * (size_t)repeat, nva = 0, ntr = 0, spans = 0;
    uint8_t *va = calloc(n, 1);
    for (size_t d = 0; d < n; d++) {
        size_t w = word_count(c->text + c->off[d], trimmed(c, d));
        if (w >= LONG_WORDS && (rng_next(&seed) & 1)) {
            va[d] = 1;
            spans += w * (w + 1) / 2;
        }
    }
    span_set set = {.mask = 1};
    while (set.mask < 2 * spans)
        set.mask = 2 * set.mask + 1;
    set.h = calloc(set.mask + 1, sizeof *set.h);
    uint32_t *all = malloc((n + extra) * sizeof *all), *tr = malloc((n + extra) * sizeof *tr);
    for (size_t d = 0; d < n; d++)
        if (va[d]) {
            span_add_all(&set, c->text + c->off[d], trimmed(c, d));
            all[nva++] = (uint32_t)d;
        }
    for (size_t d = 0; d < n; d++)
        if (!va[d] && !span_has(&set, span_hash(c->text + c->off[d], trimmed(c, d))))
            tr[ntr++] = (uint32_t)d;
    printf("  validation: %zu rows of >= %d words; %zu phrases inside them left out of training\n",
           nva, LONG_WORDS, n - nva - ntr);
    for (size_t i = 0; i < extra; i++)
        tr[ntr++] = (uint32_t)(n + i % nlex);
    memcpy(all + nva, tr, ntr * sizeof *tr);
    sp->va = all;
    sp->nva = nva;
    sp->tr = all + nva;
    sp->ntr = ntr;
    free(tr);
    free(set.h);
    free(va);
}

/* Row weights: SST-2's train file is mostly short phrases cut from its
 * sentences, while what is scored is whole comments; weighing a row by
 * (its words)^power (mean 1 over the corpus rows; lexicon rows 1) leans
 * the fit towards sentences without dropping the phrases' evidence. */
static float *row_weights(const tsv_corpus *c, size_t ncorpus, double power)
{
    float *rw = malloc(c->n * sizeof *rw);
    double sum = 0;
    for (size_t d = 0; d < c->n; d++) {
        const char *p = c->text + c->off[d];
        size_t words = word_count(p, c->off[d + 1] - c->off[d]);
        rw[d] = d < ncorpus ? (float)pow((double)(words ? words : 1), power) : 1.0f;
        sum += d < ncorpus ? rw[d] : 0;
    }
    for (size_t d = 0; d < ncorpus && sum > 0; d++)
        rw[d] = (float)(rw[d] * (double)ncorpus / sum);
    return rw;
}

/* Every corpus row (validation included) and the lexicon rows repeat
 * times: the final fit once the settings and calibration are chosen. */
static void all_rows(size_t n, size_t nlex, int repeat, split *sp)
{
    size_t extra = nlex * (size_t)repeat;
    sp->tr = malloc((n + extra) * sizeof *sp->tr);
    for (size_t i = 0; i < n; i++)
        sp->tr[i] = (uint32_t)i;
    for (size_t i = 0; i < extra; i++)
        sp->tr[n + i] = (uint32_t)(n + i % nlex);
    sp->ntr = n + extra;
    sp->va = NULL;
    sp->nva = 0;
}

typedef struct lang_job {
    fsent_lang lang;
    const char *path, *lexicon;
    uint32_t bits;
} lang_job;

/* Append the lexicon's rows to the corpus (after its own rows). */
static int add_lexicon(tsv_corpus *c, const char *path)
{
    char err[256];
    tsv_corpus lx;
    size_t skipped;
    int rc = tsv_read(path, 0, &lx, &skipped, err);
    if (rc) {
        fprintf(stderr, "cxm-senti-train: %s\n", err);
        return rc;
    }
    size_t tl = c->off[c->n], ll = lx.off[lx.n];
    uint8_t *y = realloc(c->y, c->n + lx.n);
    if (y)
        c->y = y;
    uint64_t *off = realloc(c->off, (c->n + lx.n + 1) * sizeof *off);
    if (off)
        c->off = off;
    char *text = realloc(c->text, tl + ll + 1);
    if (text)
        c->text = text;
    if (!y || !off || !text) {
        tsv_free(&lx);
        return CXM_ENOMEM;
    }
    memcpy(c->y + c->n, lx.y, lx.n);
    for (size_t i = 0; i <= lx.n; i++)
        c->off[c->n + i] = tl + lx.off[i];
    memcpy(c->text + tl, lx.text, ll);
    c->n += lx.n;
    printf("  lexicon: %zu rows from %s\n", lx.n, path);
    tsv_free(&lx);
    return 0;
}

/* Train one language into t (its weights malloc'd into *wout). */
static int train_lang(const opts *o, const lang_job *j, fsent__table *t, int8_t **wout)
{
    char err[256];
    tsv_corpus c;
    size_t skipped;
    int rc = tsv_read(j->path, o->limit, &c, &skipped, err);
    if (rc) {
        fprintf(stderr, "cxm-senti-train: %s\n", err);
        return rc;
    }
    printf("%s: %zu rows (%zu skipped) from %s\n", j->lang == FSENT_LANG_KO ? "ko" : "en", c.n,
           skipped, j->path);
    size_t ncorpus = c.n;
    if (j->lexicon && (rc = add_lexicon(&c, j->lexicon)) != 0)
        return rc;
    size_t dim = (size_t)1 << j->bits;
    float *w = malloc(dim * sizeof *w), *g2 = malloc(dim * sizeof *g2),
          *r = malloc(dim * sizeof *r);
    int8_t *q = malloc(dim), *best = malloc(dim);
    split sp;
    if (j->lang == FSENT_LANG_EN && o->en_long_validation)
        long_split(&c, ncorpus, c.n - ncorpus, o->lex_repeat, o->seed, &sp);
    else
        make_split(ncorpus, c.n - ncorpus, o->lex_repeat, o->seed, &sp);
    float *rw = NULL;
    double rw_power = -1;
    config cf[32];
    size_t ncf = configs(j->lang, o->select, o->en_len_power, cf);
    if (o->config) {
        unsigned g, fl, nb, mdf = 1;
        double l2;
        if (sscanf(o->config, "%u:%u:%lf:%u:%u", &g, &fl, &l2, &nb, &mdf) < 4)
            return CXM_EINVAL;
        cf[0] = (config){g, fl, l2, nb != 0, mdf, j->lang == FSENT_LANG_EN ? o->en_len_power : 0};
        ncf = 1;
    }
    double best_acc = -1, best_loss = INFINITY;
    config chosen = cf[0];
    feats F = {0};
    uint32_t fkey = ~0u;
    for (size_t i = 0; i < ncf; i++) {
        fsent__table cand = {.present = true,
                             .bits = j->bits,
                             .ngram_max = cf[i].ngram_max,
                             .flags = cf[i].flags,
                             .w = q};
        if (fkey != (cf[i].ngram_max << 8 | cf[i].flags)) {
            feats_free(&F);
            if (extract(&cand, j->lang, &c, &F) != 0)
                return CXM_ENOMEM;
            fkey = cf[i].ngram_max << 8 | cf[i].flags;
        }
        double b;
        if (rw_power != cf[i].len_power) {
            free(rw);
            rw = row_weights(&c, ncorpus, cf[i].len_power);
            rw_power = cf[i].len_power;
        }
        nb_ratios(&F, c.y, &sp, &cf[i], r, dim);
        fit(&F, c.y, rw, &sp, &cf[i], o->epochs, o->seed, r, w, g2, dim, &b);
        cand.bias = (float)b;
        cand.scale = quantize(w, dim, q);
        double acc = accuracy(&cand, &F, c.y, sp.va, sp.nva);
        double loss = val_logloss(&cand, &F, c.y, &sp);
        printf("  ngram_max=%u flags=%u l2=%g nb=%d min_df=%u len_power=%g: validation accuracy "
               "%.4f, log loss %.4f (%.1f features/row)\n",
               cf[i].ngram_max, cf[i].flags, cf[i].l2, cf[i].nb, cf[i].min_df, cf[i].len_power, acc,
               loss, (double)F.off[F.n] / F.n);
        if (loss < best_loss) {
            best_loss = loss;
            best_acc = acc;
            *t = cand;
            chosen = cf[i];
            memcpy(best, q, dim);
        }
    }
    t->w = best;
    /* Calibration needs the chosen configuration's features. */
    if (fkey != (t->ngram_max << 8 | t->flags)) {
        feats_free(&F);
        if (extract(t, j->lang, &c, &F) != 0)
            return CXM_ENOMEM;
    }
    printf("  chosen: ngram_max=%u flags=%u len_power=%g, validation accuracy %.4f\n", t->ngram_max,
           t->flags, chosen.len_power, best_acc);
    calibrate(t, &F, c.y, &sp);
    if (o->en_refit && j->lang == FSENT_LANG_EN) {
        /* The calibration (Platt, NEUTRAL band) stays the split's: the
         * refit sees about a tenth more rows, so its scores are close. */
        split all;
        double b;
        all_rows(ncorpus, c.n - ncorpus, o->lex_repeat, &all);
        free(rw);
        rw = row_weights(&c, ncorpus, chosen.len_power);
        nb_ratios(&F, c.y, &all, &chosen, r, dim);
        fit(&F, c.y, rw, &all, &chosen, o->epochs, o->seed, r, w, g2, dim, &b);
        t->bias = (float)b;
        t->scale = quantize(w, dim, best);
        printf("  refit on all %zu rows\n", all.ntr);
        free(all.tr);
    }
    *wout = best;
    free(rw);
    feats_free(&F);
    free(sp.va);
    free(w);
    free(g2);
    free(r);
    free(q);
    tsv_free(&c);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: cxm-senti-train [--ko FILE.tsv.gz] [--en FILE.tsv.gz] -o MODEL\n"
                    "       [--select] [--en-long-validation] [--en-refit]\n"
                    "       [--en-length-power P]\n"
                    "       [--limit ROWS] [--epochs N] [--seed N]\n"
                    "       [--ko-bits B] [--en-bits B]\n");
    return 2;
}

static int parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){.seed = 12, .epochs = 5, .ko_bits = 20, .en_bits = 19, .lex_repeat = 30};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--select") == 0 || strcmp(a, "--en-refit") == 0 ||
            strcmp(a, "--en-long-validation") == 0) {
            o->select |= a[2] == 's';
            o->en_refit |= a[5] == 'r';
            o->en_long_validation |= a[5] == 'l';
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (strcmp(a, "--ko") == 0)
            o->ko = v;
        else if (strcmp(a, "--en") == 0)
            o->en = v;
        else if (strcmp(a, "-o") == 0)
            o->out = v;
        else if (strcmp(a, "--ko-lexicon") == 0)
            o->ko_lex = v;
        else if (strcmp(a, "--en-lexicon") == 0)
            o->en_lex = v;
        else if (strcmp(a, "--lexicon-repeat") == 0)
            o->lex_repeat = atoi(v);
        else if (strcmp(a, "--en-length-power") == 0)
            o->en_len_power = atof(v);
        else if (strcmp(a, "--config") == 0)
            o->config = v;
        else if (strcmp(a, "--limit") == 0)
            o->limit = strtoul(v, NULL, 10);
        else if (strcmp(a, "--epochs") == 0)
            o->epochs = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            o->seed = strtoull(v, NULL, 10) | 1;
        else if (strcmp(a, "--ko-bits") == 0)
            o->ko_bits = (uint32_t)atoi(v);
        else if (strcmp(a, "--en-bits") == 0)
            o->en_bits = (uint32_t)atoi(v);
        else
            return usage();
    }
    bool bits_ok = o->ko_bits >= FSENT__MIN_BITS && o->ko_bits <= FSENT__MAX_BITS &&
                   o->en_bits >= FSENT__MIN_BITS && o->en_bits <= FSENT__MAX_BITS;
    return (!o->out || (!o->ko && !o->en) || o->epochs < 1 || o->lex_repeat < 0 || !bits_ok)
               ? usage()
               : 0;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    fsent__table t[2] = {0};
    int8_t *w[2] = {NULL, NULL};
    const lang_job jobs[2] = {{FSENT_LANG_KO, o.ko, o.ko_lex, o.ko_bits},
                              {FSENT_LANG_EN, o.en, o.en_lex, o.en_bits}};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        if (jobs[i].path)
            rc = train_lang(&o, &jobs[i], &t[i], &w[i]);
    char err[256];
    if (rc == 0 && (rc = fsent__write(o.out, t, err)) != 0)
        fprintf(stderr, "cxm-senti-train: %s\n", err);
    if (rc == 0)
        printf("wrote %s\n", o.out);
    free(w[0]);
    free(w[1]);
    return rc ? 1 : 0;
}
