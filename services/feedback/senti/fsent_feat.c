/*
 * fsent_feat.c - normalisation, clause split and hashed features, shared by
 * the library and the trainer (fsent_impl.h).
 *
 * Everything streams over the bytes once with a few words of state, so
 * scoring needs no buffer and no allocation whatever the text's length.
 * Korean: character 1..n-grams over the normalised text with one space
 * between words (n-grams cross word boundaries, which carries the particle
 * and ending patterns), plus whole words. English: word unigrams and
 * bigrams with negation scope marked.
 */
#include <string.h>

#include "feedback/senti/fsent_impl.h"

#define PRIME 0x100000001b3ull
#define W FSENT__W

enum { TAG_CHAR = 1, TAG_KWORD = 9, TAG_UNI = 10, TAG_BI = 12 };

/* The index is the top bits, so one xor-shift and one multiply mix
 * enough: the product's high bits depend on all of k's bits. */
static inline uint64_t fmix(uint64_t k)
{
    k ^= k >> 29;
    return k * 0xbf58476d1ce4e5b9ull;
}

static inline uint64_t step(uint64_t h, uint64_t v)
{
    return (h ^ v) * PRIME;
}

static inline uint64_t seed(unsigned tag)
{
    return 0xcbf29ce484222325ull ^ ((uint64_t)tag * 0x9e3779b97f4a7c15ull);
}

static inline void emit1(fsent__sink *s, uint64_t h)
{
    uint32_t i = (uint32_t)(fmix(h) >> s->shift);
    if (s->w) {
        int v = s->w[i];
        s->sum += v;
        s->strong += v >= FSENT__STRONG || v <= -FSENT__STRONG;
        s->n++;
        return;
    }
    if (s->n < s->cap)
        s->idx[s->n] = i;
    s->n++;
}

static inline void emit(fsent__sink *s, uint64_t h)
{
    emit1(s, h);
    if (s->role)
        emit1(s, h ^ s->role);
}

/* One code point from p[*i..n); malformed bytes decode as U+FFFD, one byte
 * at a time, so a hostile text cannot make the reader overrun. */
static inline uint32_t utf8_next(const unsigned char *p, size_t n, size_t *i)
{
    uint32_t c = p[*i];
    size_t k = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    if (k == 0 || *i + k > n) {
        (*i)++;
        return 0xfffd;
    }
    if (k == 1) {
        (*i)++;
        return c;
    }
    c &= 0x3f >> (k - 1);
    for (size_t j = 1; j < k; j++) {
        if ((p[*i + j] & 0xc0) != 0x80) {
            (*i)++;
            return 0xfffd;
        }
        c = (c << 6) | (p[*i + j] & 0x3f);
    }
    *i += k;
    return c;
}

/* w[0..n) equals m, ASCII letters of w compared in lower case. */
static bool word_is(const char *w, size_t n, const fsent__word *m)
{
    if (m->n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = w[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != m->s[i])
            return false;
    }
    return true;
}

static bool in_list(const char *w, size_t n, const fsent__word *l, size_t nl)
{
    for (size_t i = 0; i < nl; i++)
        if (word_is(w, n, &l[i]))
            return true;
    return false;
}

static inline bool is_space_cp(uint32_t c)
{
    return c <= ' ' || c == 0xa0 || c == 0x3000;
}

/* ---- Korean ---------------------------------------------------------- */

typedef struct ko_state {
    const fsent__table *t;
    fsent__sink *s;
    uint32_t win[3]; /* the last three code points kept, 0 = none */
    uint32_t run;    /* how many times win[2] repeats */
    uint64_t word;
    uint32_t wlen;
} ko_state;

static inline void ko_emit(ko_state *k, uint64_t h)
{
    emit(k->s, h);
}

static inline void ko_grams(ko_state *k, uint32_t a, uint32_t b, uint32_t c, uint32_t cp)
{
    if (cp != ' ')
        ko_emit(k, step(seed(TAG_CHAR), cp));
    if (c)
        ko_emit(k, step(step(seed(TAG_CHAR + 1), c), cp));
    if (b && k->t->ngram_max >= 3)
        ko_emit(k, step(step(step(seed(TAG_CHAR + 2), b), c), cp));
    if (a && k->t->ngram_max >= 4)
        ko_emit(k, step(step(step(step(seed(TAG_CHAR + 3), a), b), c), cp));
}

/* Push one code point: spaces collapse to one, any character repeated
 * more than twice (ㅋㅋㅋㅋ, ㅠㅠㅠ, !!!!, 너무너무 stays) keeps two, so
 * emphasis is a signal but its length is not a new feature each time. */
static inline __attribute__((always_inline)) void ko_push(ko_state *k, uint32_t cp)
{
    if (is_space_cp(cp))
        cp = ' ';
    else if (cp >= 'A' && cp <= 'Z')
        cp += 'a' - 'A';
    if (cp == k->win[2]) {
        if (cp == ' ' || k->run >= 2)
            return;
        k->run++;
    } else {
        k->run = 1;
    }
    uint32_t a = k->win[0], b = k->win[1], c = k->win[2];
    k->win[0] = b;
    k->win[1] = c;
    k->win[2] = cp;
    ko_grams(k, a, b, c, cp);
    if (cp != ' ') {
        k->word = step(k->word, cp);
        k->wlen++;
    } else if (k->wlen) {
        if (k->t->flags & FSENT__F_WORDS)
            emit(k->s, k->word);
        k->word = seed(TAG_KWORD);
        k->wlen = 0;
    }
}

static void ko_features(const fsent__table *t, const char *text, size_t len, fsent__sink *s)
{
    /* A local copy of the sink: its sum stays in a register through the
     * loop (the caller's could alias the weights for all the compiler knows). */
    fsent__sink ls = *s;
    ko_state k = {.t = t, .s = &ls, .win = {0, 0, ' '}, .run = 1, .word = seed(TAG_KWORD)};
    const unsigned char *p = (const unsigned char *)text;
    for (size_t i = 0; i < len;)
        ko_push(&k, utf8_next(p, len, &i));
    ko_push(&k, ' ');
    *s = ls;
}

/* ---- English --------------------------------------------------------- */

#define EN_WORD 32 /* bytes of a word kept for contractions */

typedef struct en_state {
    const fsent__table *t;
    fsent__sink *s;
    bool neg;      /* inside a negation's scope */
    bool has_prev; /* prev is a token of the current run */
    uint64_t prev;
    char w[EN_WORD];
    size_t wlen;  /* bytes kept in w */
    uint64_t wh;  /* hash of the whole word */
    size_t wfull; /* the word's length, including what w could not keep */
} en_state;

static const fsent__word negators[] = {
    W("not"), W("no"),      W("never"),  W("nothing"), W("nobody"),  W("none"),  W("neither"),
    W("nor"), W("without"), W("hardly"), W("cannot"),  W("nowhere"), W("barely")};

static bool in_list(const char *w, size_t n, const fsent__word *l, size_t nl);

static bool en_is_negator(const char *w, size_t n)
{
    return in_list(w, n, negators, sizeof negators / sizeof negators[0]);
}

static uint64_t en_hash(const char *w, size_t n)
{
    uint64_t h = seed(0);
    for (size_t i = 0; i < n; i++)
        h = step(h, (unsigned char)w[i]);
    return h;
}

static void en_token(en_state *e, uint64_t h, const char *w, size_t n)
{
    bool negator = w && en_is_negator(w, n);
    uint64_t th = h ^ (e->neg && !negator ? 0x5bd1e995ull : 0);
    if (e->t->flags & FSENT__F_WORDS)
        emit(e->s, step(seed(TAG_UNI), th));
    if ((e->t->flags & FSENT__F_BIGRAMS) && e->has_prev)
        emit(e->s, step(step(seed(TAG_BI), e->prev), th));
    e->prev = th;
    e->has_prev = true;
    if (negator)
        e->neg = true;
}

static void en_word_token(en_state *e, const char *w, size_t n)
{
    en_token(e, en_hash(w, n), w, n);
}

/* Negated contractions written without their apostrophe. */
static const fsent__word bare_nt[] = {W("dont"),   W("cant"),    W("wont"),    W("isnt"),
                                      W("didnt"),  W("doesnt"),  W("wasnt"),   W("arent"),
                                      W("werent"), W("couldnt"), W("wouldnt"), W("shouldnt"),
                                      W("havent"), W("hasnt"),   W("hadnt"),   W("aint")};

/* Contractions become the tokens SST-2 and most tokenisers use: don't ->
 * do + not, it's -> it + 's; dont, cant, isnt ... the same without the
 * apostrophe, which customers often leave out. */
static void en_flush(en_state *e)
{
    if (!e->wfull)
        return;
    const char *w = e->w;
    size_t n = e->wlen;
    if (e->wfull > n) {
        en_token(e, e->wh, NULL, 0);
    } else if (n >= 3 && memcmp(w + n - 3, "n't", 3) == 0) {
        if (n > 3)
            en_word_token(e, w, n - 3);
        en_word_token(e, "not", 3);
    } else if (in_list(w, n, bare_nt, sizeof bare_nt / sizeof bare_nt[0])) {
        en_word_token(e, w, n - 2);
        en_word_token(e, "not", 3);
    } else {
        const char *ap = n > 1 ? memchr(w + 1, '\'', n - 1) : NULL;
        if (ap) {
            en_word_token(e, w, (size_t)(ap - w));
            en_word_token(e, ap, n - (size_t)(ap - w));
        } else {
            en_word_token(e, w, n);
        }
    }
    e->wlen = e->wfull = 0;
    e->wh = seed(0);
}

static void en_add_byte(en_state *e, char c)
{
    /* Three or more of the same letter keep two: soooo -> soo. */
    if (e->wlen >= 2 && e->w[e->wlen - 1] == c && e->w[e->wlen - 2] == c)
        return;
    if (e->wlen < EN_WORD - 2)
        e->w[e->wlen++] = c;
    e->wh = step(e->wh, (unsigned char)c);
    e->wfull++;
}

/* Emoticons kept as tokens; returns the bytes consumed, 0 if none. */
static size_t en_emoticon(en_state *e, const char *p, size_t n)
{
    static const fsent__word emo[] = {W(":-)"), W(":-("), W(":)"), W(":("), W(":d"),
                                      W(":p"),  W(";)"),  W("^^"), W("<3"), W(":/")};
    if (*p != ':' && *p != ';' && *p != '^' && *p != '<')
        return 0;
    for (size_t i = 0; i < sizeof emo / sizeof emo[0]; i++) {
        size_t k = emo[i].n;
        if (k <= n && word_is(p, k, &emo[i])) {
            en_flush(e);
            en_word_token(e, emo[i].s, k);
            return k;
        }
    }
    return 0;
}

static void en_punct(en_state *e, char c)
{
    en_flush(e);
    if (c == '!' || c == '?')
        en_word_token(e, &c, 1);
    /* Sentence punctuation ends a negation's scope and the bigram run. */
    if (c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?') {
        e->neg = false;
        e->has_prev = false;
    }
}

static void en_features(const fsent__table *t, const char *text, size_t len, fsent__sink *s)
{
    en_state e = {.t = t, .s = s, .wh = seed(0)};
    const unsigned char *p = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '\'' && e.wfull) ||
            (c == '\'' && i + 1 < len && p[i + 1] != ' ')) {
            en_add_byte(&e, (char)c);
            i++;
            continue;
        }
        size_t k = c < 0x80 ? en_emoticon(&e, text + i, len - i) : 0;
        if (k) {
            i += k;
            continue;
        }
        if (c < 0x80) {
            en_punct(&e, (char)c);
            i++;
            continue;
        }
        size_t at = i;
        uint32_t cp = utf8_next(p, len, &i);
        if (cp == 0x2019) { /* ’ is an apostrophe */
            en_add_byte(&e, '\'');
        } else if ((cp >= 0x2600 && cp < 0x2800) || (cp >= 0x1f300 && cp < 0x1fb00)) {
            en_flush(&e);
            en_token(&e, step(seed(TAG_UNI + 1), cp), NULL, 0);
        } else if (cp >= 0xc0 && cp < 0x2000) { /* accented letters stay in the word */
            for (size_t j = at; j < i; j++)
                en_add_byte(&e, (char)p[j]);
        } else {
            en_punct(&e, ' ');
        }
    }
    en_flush(&e);
}

void fsent__features(const fsent__table *t, fsent_lang lang, const char *text, size_t len, int i,
                     int nc, fsent__sink *s)
{
    s->role = (t->flags & FSENT__F_ROLES) && i < nc - 1 ? 0x9e3779b97f4a7c15ull : 0;
    if (lang == FSENT_LANG_KO)
        ko_features(t, text, len, s);
    else
        en_features(t, text, len, s);
}

/* ---- clauses --------------------------------------------------------- */

static const fsent__word ko_before[] = {W("하지만"),   W("그런데"), W("그러나"), W("근데"),
                                        W("그렇지만"), W("그치만"), W("반면"),   W("반면에")};
static const fsent__word ko_after[] = {W("는데"), W("은데"), W("지만")};
static const fsent__word en_before[] = {W("but"), W("however"), W("although"),    W("though"),
                                        W("yet"), W("whereas"), W("nevertheless")};
/* Markers that open a subordinate clause, closed by the next comma. */
static const fsent__word en_sub[] = {W("although"), W("though"), W("whereas")};

static bool ends_with_any(const char *w, size_t n, const fsent__word *l, size_t nl)
{
    for (size_t i = 0; i < nl; i++) {
        size_t k = l[i].n, j = 0;
        if (n <= k)
            continue;
        while (j < k && w[n - k + j] == l[i].s[j])
            j++;
        if (j == k)
            return true;
    }
    return false;
}

static bool is_trail_punct(char c)
{
    return c == '.' || c == ',' || c == '!' || c == '?' || c == '~' || c == ';' || c == ':' ||
           c == '"' || c == '\'' || c == ')';
}

typedef struct clause_cut {
    uint32_t *begin, *end;
    int n;
    size_t cur;
    bool content; /* a word since cur */
} clause_cut;

static void cut_at(clause_cut *c, size_t at)
{
    if (!c->content || c->n >= FSENT__MAX_CLAUSES - 1)
        return;
    c->begin[c->n] = (uint32_t)c->cur;
    c->end[c->n] = (uint32_t)at;
    c->n++;
    c->cur = at;
    c->content = false;
}

int fsent__clauses(fsent_lang lang, const char *text, size_t len, uint32_t *begin, uint32_t *end)
{
    clause_cut c = {.begin = begin, .end = end};
    size_t i = 0;
    bool sub = false; /* inside a clause opened by a subordinator */
    while (i < len) {
        while (i < len && (unsigned char)text[i] <= ' ')
            i++;
        size_t ws = i;
        while (i < len && (unsigned char)text[i] > ' ')
            i++;
        if (i == ws)
            break;
        size_t we = i;
        while (we > ws && is_trail_punct(text[we - 1]))
            we--;
        const char *w = text + ws;
        size_t n = we - ws;
        if (lang == FSENT_LANG_KO) {
            if (in_list(w, n, ko_before, sizeof ko_before / sizeof ko_before[0])) {
                cut_at(&c, ws);
            } else if (i < len && ends_with_any(w, n, ko_after, 3)) {
                c.content = true;
                cut_at(&c, i);
                continue;
            }
        } else if (in_list(w, n, en_before, sizeof en_before / sizeof en_before[0])) {
            cut_at(&c, ws);
            sub = in_list(w, n, en_sub, sizeof en_sub / sizeof en_sub[0]);
        } else if (sub && text[i - 1] == ',') {
            /* "Although A, B": the comma closes the subordinate clause. */
            c.content = true;
            cut_at(&c, i);
            sub = false;
            continue;
        }
        c.content = true;
    }
    if (len > 0) {
        begin[c.n] = (uint32_t)c.cur;
        end[c.n] = (uint32_t)len;
        c.n++;
    }
    return c.n;
}
