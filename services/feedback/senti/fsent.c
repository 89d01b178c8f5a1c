/*
 * fsent.c - fsent_analyze: language, clauses, scores, labels and aspects.
 *
 * A clause's z is the model's bias plus its features' weights; the text's
 * z is the bias plus all clauses' weights (the trainer sums the same way,
 * so scores at training and here agree). Calibration maps z to
 * P(positive); the text is NEUTRAL when its confidence is inside the
 * model's band, MIXED when one clause leans positive and another negative
 * (CLAUSE_LEAN). Nothing here allocates.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "cxm/err.h"
#include "feedback/senti/fsent_impl.h"

/* ---- language -------------------------------------------------------- */

static bool is_hangul(uint32_t c)
{
    return (c >= 0xac00 && c <= 0xd7a3) || (c >= 0x1100 && c <= 0x11ff) ||
           (c >= 0x3130 && c <= 0x318f);
}

/* Hangul or Latin by share of letters: a Hangul syllable carries about
 * three Latin letters' worth, so Korean with English brand names stays
 * Korean. Other scripts (kana, Han, Cyrillic, ...) dominating: neither. */
static fsent_lang detect(const char *text, size_t len)
{
    size_t hangul = 0, latin = 0, other = 0;
    const unsigned char *p = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c < 0x80) {
            latin += ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
            i++;
            continue;
        }
        size_t k = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
        uint32_t cp = k == 2 ? c & 0x1f : k == 3 ? c & 0x0f : c & 0x07;
        for (size_t j = 1; j < k && i + j < len; j++)
            cp = (cp << 6) | (p[i + j] & 0x3f);
        i += k;
        if (is_hangul(cp))
            hangul++;
        else if (cp >= 0xc0 && cp < 0x250)
            latin++;
        else if ((cp >= 0x370 && cp < 0x2000) || (cp >= 0x3040 && cp < 0xa000))
            other++;
    }
    if (hangul && hangul * 3 >= latin && hangul * 2 >= other)
        return FSENT_LANG_KO;
    if (latin >= 2 && latin > other * 2 && latin > hangul * 3)
        return FSENT_LANG_EN;
    return FSENT_LANG_DETECT;
}

/* ---- scoring --------------------------------------------------------- */

/* Strong features (FSENT__STRONG) a Korean text needs for its full
 * confidence. Korean character n-grams fire on any text, so a bland
 * statement ("카드로 결제했어요") still sums many small movie-corpus
 * leanings into a confident score; with fewer than this many clearly
 * weighted features the calibrated log-odds shrink in proportion (the sign
 * is kept), so such a text falls into the NEUTRAL band. Chosen on the odd
 * lines of tests/data/senti_cx_ko.tsv (NEUTRAL recall 0.58 -> 0.88, polar
 * lines labelled right 0.885 -> 0.865). English words are sparser and its
 * neutral rows already teach the bland words, so English has no cap (on
 * its odd lines the cap cost more polar labels than it won neutral ones). */
static const double EVIDENCE_FULL[2] = {4.0, 0.0};

/* P(positive) of a sum with its strong-feature count, capped when fewer
 * than full (0: no cap). */
static double prob_ev(const fsent__table *t, double full, double z, uint32_t strong)
{
    double l = t->platt_a * z + t->platt_b;
    if (full > 0 && strong < full)
        l *= (strong > 0 ? strong : 0.5) / full;
    return 1.0 / (1.0 + exp(-l));
}

static int label_of(const fsent__table *t, double p)
{
    double conf = p >= 0.5 ? p : 1 - p;
    if (conf < t->neutral)
        return FSENT_NEUTRAL;
    return p >= 0.5 ? FSENT_POSITIVE : FSENT_NEGATIVE;
}

typedef struct clauses {
    int n;
    uint32_t begin[FSENT__MAX_CLAUSES], end[FSENT__MAX_CLAUSES];
    double p[FSENT__MAX_CLAUSES]; /* calibrated P(positive) per clause */
} clauses;

/* Scores every clause into c and returns the whole text's P(positive). */
static double score(const fsent__table *t, fsent_lang lang, const char *text, size_t len,
                    clauses *c)
{
    c->n = fsent__clauses(lang, text, len, c->begin, c->end);
    int64_t total = 0;
    size_t nf = 0;
    uint32_t strong = 0;
    double full = EVIDENCE_FULL[lang == FSENT_LANG_KO ? 0 : 1];
    for (int i = 0; i < c->n; i++) {
        fsent__sink s = {.w = t->w, .shift = 64 - t->bits};
        fsent__features(t, lang, text + c->begin[i], c->end[i] - c->begin[i], i, c->n, &s);
        total += s.sum;
        nf += s.n;
        strong += s.strong;
        /* Clauses are not capped: a contrast marker is the writer's own
         * sign that a short clause has a side (MIXED, aspects). */
        c->p[i] = prob_ev(t, 0, fsent__z(t, s.sum, s.n), 0);
    }
    return prob_ev(t, full, fsent__z(t, total, nf), strong);
}

/* A clause leans when its calibrated confidence reaches this. Lower than
 * the text's NEUTRAL band on purpose: a contrast marker is the writer's own
 * signal that the parts differ, and a clause is short, so less evidence
 * says which way it goes. */
#define CLAUSE_LEAN 0.6

/* MIXED: one clause leans positive and another negative. */
static bool mixed(const clauses *c)
{
    bool pos = false, neg = false;
    for (int i = 0; i < c->n; i++) {
        pos |= c->p[i] >= CLAUSE_LEAN;
        neg |= c->p[i] <= 1 - CLAUSE_LEAN;
    }
    return pos && neg;
}

/* ---- aspects --------------------------------------------------------- */

typedef struct lex {
    const char *pat;
    size_t n;
    const char *aspect;
    bool ascii; /* whole word, case-insensitive, optional plural s */
} lex;

#define LEX(pat, aspect, ascii)                                                                    \
    {                                                                                              \
        pat, sizeof(pat) - 1, aspect, ascii                                                        \
    }

/* Longer patterns first where one contains another. Korean patterns match
 * inside words: particles and endings attach (배송이, 기다렸어요). */
static const lex lexicon[] = {
    LEX("배송", "delivery", 0),
    LEX("택배", "delivery", 0),
    LEX("delivery", "delivery", 1),
    LEX("deliveries", "delivery", 1),
    LEX("shipping", "delivery", 1),
    LEX("courier", "delivery", 1),
    LEX("직원", "staff", 0),
    LEX("상담원", "staff", 0),
    LEX("staff", "staff", 1),
    LEX("employee", "staff", 1),
    LEX("agent", "staff", 1),
    LEX("가격", "price", 0),
    LEX("요금", "price", 0),
    LEX("price", "price", 1),
    LEX("pricing", "price", 1),
    LEX("대기", "waiting", 0),
    LEX("기다", "waiting", 0),
    LEX("waiting", "waiting", 1),
    LEX("wait", "waiting", 1),
    LEX("waited", "waiting", 1),
    LEX("queue", "waiting", 1),
    LEX("환불", "refund", 0),
    LEX("refund", "refund", 1),
    LEX("refunded", "refund", 1),
    LEX("A/S", "after_sales", 0),
    LEX("에이에스", "after_sales", 0),
    LEX("수리", "after_sales", 0),
    LEX("repair", "after_sales", 1),
    LEX("warranty", "after_sales", 1),
    LEX("품질", "quality", 0),
    LEX("불량", "quality", 0),
    LEX("quality", "quality", 1),
    LEX("defective", "quality", 1),
    LEX("앱", "app", 0),
    LEX("어플", "app", 0),
    LEX("app", "app", 1),
    LEX("웹사이트", "website", 0),
    LEX("홈페이지", "website", 0),
    LEX("website", "website", 1),
    LEX("web site", "website", 1),
    LEX("site", "website", 1),
    LEX("매장", "store", 0),
    LEX("지점", "store", 0),
    LEX("store", "store", 1),
    LEX("shop", "store", 1),
};

/* The lexicon entries that may start at a position, by a hash of its
 * first bytes into LEX_BUCKETS: two bytes for ASCII (in every case), three
 * (the whole syllable) for Hangul, whose syllables share lead bytes in
 * runs of 64. Most positions of a text find an empty set. */
#define LEX_BUCKETS 1024
static uint64_t lex_first[LEX_BUCKETS];
static pthread_once_t lex_once = PTHREAD_ONCE_INIT;

static inline unsigned lex_bucket(const unsigned char *p, size_t avail)
{
    if (avail < 2)
        return LEX_BUCKETS; /* no entry is shorter than two bytes */
    unsigned h = (unsigned)p[0] * 131u + p[1];
    if (p[0] >= 0x80) {
        if (avail < 3)
            return LEX_BUCKETS;
        h = h * 131u + p[2];
    }
    return h & (LEX_BUCKETS - 1);
}

static unsigned char flip_case(unsigned char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? c ^ 0x20 : c;
}

static void lex_init(void)
{
    _Static_assert(sizeof lexicon / sizeof lexicon[0] <= 64, "one bit per lexicon entry");
    for (size_t j = 0; j < sizeof lexicon / sizeof lexicon[0]; j++) {
        const unsigned char *pat = (const unsigned char *)lexicon[j].pat;
        for (int v = 0; v < (lexicon[j].ascii ? 4 : 1); v++) {
            unsigned char b[3] = {v & 1 ? flip_case(pat[0]) : pat[0],
                                  v & 2 ? flip_case(pat[1]) : pat[1], pat[2]};
            lex_first[lex_bucket(b, lexicon[j].n)] |= 1ull << j;
        }
    }
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* Length of the match of e at text[i..len), 0 if none. */
static size_t match(const lex *e, const char *text, size_t len, size_t i)
{
    size_t k = e->n;
    if (k > len - i)
        return 0;
    if (!e->ascii) {
        /* Hangul shares lead bytes: the second byte rules most out. */
        if (text[i + 1] != e->pat[1])
            return 0;
        return memcmp(text + i, e->pat, k) == 0 ? k : 0;
    }
    if (i > 0 && is_alnum((unsigned char)text[i - 1]))
        return 0;
    for (size_t j = 0; j < k; j++)
        if ((text[i + j] | 0x20) != e->pat[j])
            return 0;
    if (i + k < len && (text[i + k] | 0x20) == 's')
        k++;
    return i + k < len && is_alnum((unsigned char)text[i + k]) ? 0 : k;
}

/* "AS" in capitals as a word (AS센터, AS 접수) is after-sales; "as" is not. */
static size_t match_as(const char *text, size_t len, size_t i)
{
    if (len - i < 2 || text[i] != 'A' || text[i + 1] != 'S')
        return 0;
    if ((i > 0 && is_alnum((unsigned char)text[i - 1])) ||
        (i + 2 < len && is_alnum((unsigned char)text[i + 2])))
        return 0;
    return 2;
}

static void add_aspect(const fsent__table *t, const clauses *c, fsent_result *out, const char *name,
                       size_t b, size_t e)
{
    int k = 0;
    while (k + 1 < c->n && c->end[k] <= b)
        k++;
    fsent_aspect *a = &out->aspects[out->naspects++];
    a->aspect = name;
    /* One clause: the text's label. Several: the clause's lean, the same
     * reading that makes the text MIXED. */
    double p = c->p[k];
    a->label = c->n == 1              ? label_of(t, p)
               : p >= CLAUSE_LEAN     ? FSENT_POSITIVE
               : p <= 1 - CLAUSE_LEAN ? FSENT_NEGATIVE
                                      : FSENT_NEUTRAL;
    a->score = 2 * c->p[k] - 1;
    a->begin = (uint32_t)b;
    a->end = (uint32_t)e;
}

static void aspects(const fsent__table *t, const clauses *c, const char *text, size_t len,
                    fsent_result *out)
{
    pthread_once(&lex_once, lex_init);
    for (size_t i = 0; i < len && out->naspects < FSENT_MAX_ASPECTS;) {
        size_t k = match_as(text, len, i);
        const char *name = "after_sales";
        unsigned bk = lex_bucket((const unsigned char *)text + i, len - i);
        uint64_t m = bk < LEX_BUCKETS ? lex_first[bk] : 0;
        for (; !k && m; m &= m - 1) {
            const lex *e = &lexicon[__builtin_ctzll(m)];
            k = match(e, text, len, i);
            name = e->aspect;
        }
        if (k) {
            add_aspect(t, c, out, name, i, i + k);
            i += k;
            continue;
        }
        /* Step over a whole UTF-8 character: never match mid-character. */
        i++;
        while (i < len && ((unsigned char)text[i] & 0xc0) == 0x80)
            i++;
    }
}

/* ---- the call -------------------------------------------------------- */

static bool blank(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] > ' ')
            return false;
    return true;
}

int fsent_analyze(const fsent_model *m, const char *text, size_t len, fsent_lang lang,
                  bool want_aspects, fsent_result *out)
{
    if (!m || !out || (len && !text) || len > FSENT_MAX_TEXT || lang > FSENT_LANG_EN)
        return CXM_EINVAL;
    out->label = FSENT_UNSUPPORTED;
    out->score = 0;
    out->confidence = 0;
    out->language = "";
    out->naspects = 0;
    if (len == 0 || blank(text, len))
        return 0;
    if (lang == FSENT_LANG_DETECT)
        lang = detect(text, len);
    if (lang == FSENT_LANG_DETECT || !m->t[lang - 1].present)
        return 0;
    const fsent__table *t = &m->t[lang - 1];
    clauses c;
    double p = score(t, lang, text, len, &c);
    out->language = lang == FSENT_LANG_KO ? "ko" : "en";
    out->score = 2 * p - 1;
    out->confidence = p >= 0.5 ? p : 1 - p;
    out->label = mixed(&c) ? FSENT_MIXED : label_of(t, p);
    if (want_aspects)
        aspects(t, &c, text, len, out);
    return 0;
}
