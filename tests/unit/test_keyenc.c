/*
 * test_keyenc.c - memcmp order of encoded keys equals the logical order;
 * round trips; the 511-byte limit; malformed input; prefix successors.
 */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/keyenc.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static int sign(long long v)
{
    return (v > 0) - (v < 0);
}

/* LMDB's default key order. */
static int bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return sign(c);
    return (alen > blen) - (alen < blen);
}

typedef struct enc {
    uint8_t buf[CXM_KEY_MAX];
    size_t len;
} enc;

static int enc_cmp(const enc *a, const enc *b)
{
    return bytes_cmp(a->buf, a->len, b->buf, b->len);
}

static enc enc_i64(int64_t v)
{
    enc e;
    cxm_key k;
    cxm_key_init(&k, e.buf, sizeof e.buf);
    cxm_key_i64(&k, v);
    cxm_key_finish(&k, &e.len);
    return e;
}

static enc enc_u64(uint64_t v)
{
    enc e;
    cxm_key k;
    cxm_key_init(&k, e.buf, sizeof e.buf);
    cxm_key_u64(&k, v);
    cxm_key_finish(&k, &e.len);
    return e;
}

static enc enc_f64(double v)
{
    enc e;
    cxm_key k;
    cxm_key_init(&k, e.buf, sizeof e.buf);
    cxm_key_f64(&k, v);
    cxm_key_finish(&k, &e.len);
    return e;
}

/* (bytes, u32) tuple: checks that a string field never bleeds into the next. */
static enc enc_str_u32(const uint8_t *s, size_t n, uint32_t tail)
{
    enc e;
    cxm_key k;
    cxm_key_init(&k, e.buf, sizeof e.buf);
    cxm_key_bytes(&k, s, n);
    cxm_key_u32(&k, tail);
    cxm_key_finish(&k, &e.len);
    return e;
}

static int64_t rnd_i64(void)
{
    static const int64_t edges[] = {INT64_MIN, INT64_MIN + 1, -256, -1, 0, 1, 255, INT64_MAX};
    uint64_t r = rnd();
    if (r % 4 == 0)
        return edges[(r >> 8) % (sizeof edges / sizeof edges[0])];
    if (r % 4 == 1)
        return (int64_t)(rnd() % 2000) - 1000; /* many near-equal small values */
    return (int64_t)rnd();
}

static void test_int_order(void)
{
    int bad_i = 0, bad_u = 0;
    for (int i = 0; i < 100000; i++) {
        int64_t a = rnd_i64(), b = rnd_i64();
        enc ea = enc_i64(a), eb = enc_i64(b);
        if (enc_cmp(&ea, &eb) != (a > b) - (a < b))
            bad_i++;
        uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
        enc fa = enc_u64(ua), fb = enc_u64(ub);
        if (enc_cmp(&fa, &fb) != (ua > ub) - (ua < ub))
            bad_u++;
    }
    CHECK_EQ_INT(bad_i, 0);
    CHECK_EQ_INT(bad_u, 0);
}

/* The documented order: -0.0 == +0.0; NaN equals NaN and is above +inf. */
static int f64_logical_cmp(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) - isnan(b);
    return (a > b) - (a < b);
}

static double rnd_f64(void)
{
    static const double edges[] = {
        -INFINITY, -DBL_MAX, -1e300, -1.5, -1.0,  -DBL_MIN, -4.9e-324, -0.0, 0.0,
        4.9e-324,  DBL_MIN,  1.0,    1.5,  1e300, DBL_MAX,  INFINITY,  NAN,  -NAN,
    };
    uint64_t r = rnd();
    if (r % 3 == 0)
        return edges[(r >> 8) % (sizeof edges / sizeof edges[0])];
    if (r % 3 == 1)
        return (double)((int64_t)(rnd() % 200) - 100) / 8.0;
    uint64_t bits = rnd(); /* any bit pattern: includes NaNs with payloads */
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static void test_double_order(void)
{
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        double a = rnd_f64(), b = rnd_f64();
        enc ea = enc_f64(a), eb = enc_f64(b);
        if (enc_cmp(&ea, &eb) != f64_logical_cmp(a, b)) {
            if (bad++ < 5)
                fprintf(stderr, "double order: %g vs %g\n", a, b);
        }
    }
    CHECK_EQ_INT(bad, 0);
    enc nz = enc_f64(-0.0), pz = enc_f64(0.0), n1 = enc_f64(NAN), n2 = enc_f64(-NAN);
    enc inf = enc_f64(INFINITY);
    CHECK_EQ_INT(enc_cmp(&nz, &pz), 0);
    CHECK_EQ_INT(enc_cmp(&n1, &n2), 0);
    CHECK_EQ_INT(enc_cmp(&inf, &n1), -1);
}

static size_t rnd_bytes(uint8_t *out, size_t max)
{
    /* A tiny alphabet makes equal strings, prefixes and NUL runs frequent. */
    static const uint8_t alphabet[] = {0x00, 0x01, 'a', 'b', 0xFE, 0xFF};
    size_t n = rnd() % (max + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[rnd() % sizeof alphabet];
    return n;
}

static void test_string_order(void)
{
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        uint8_t a[8], b[8];
        size_t an = rnd_bytes(a, sizeof a), bn = rnd_bytes(b, sizeof b);
        uint32_t at = (uint32_t)(rnd() % 3), bt = (uint32_t)(rnd() % 3);
        enc ea = enc_str_u32(a, an, at), eb = enc_str_u32(b, bn, bt);
        int want = bytes_cmp(a, an, b, bn);
        if (want == 0)
            want = (at > bt) - (at < bt);
        if (enc_cmp(&ea, &eb) != want)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);

    /* The cases the escaping exists for. */
    enc ab = enc_str_u32((const uint8_t *)"ab", 2, 0xFFFFFFFF);
    enc ab0 = enc_str_u32((const uint8_t *)"ab\0", 3, 0);
    enc ab1 = enc_str_u32((const uint8_t *)"ab\1", 3, 0);
    enc abc = enc_str_u32((const uint8_t *)"abc", 3, 0);
    CHECK(enc_cmp(&ab, &ab0) < 0);
    CHECK(enc_cmp(&ab0, &ab1) < 0);
    CHECK(enc_cmp(&ab1, &abc) < 0);
}

static void test_round_trip(void)
{
    uint8_t buf[CXM_KEY_MAX];
    const uint8_t blob[] = {0, 0, 'x', 0, 0xFF, 0, 1};
    cxm_key k;
    cxm_key_init(&k, buf, sizeof buf);
    cxm_key_u8(&k, 7);
    cxm_key_u32(&k, 0xDEADBEEF);
    cxm_key_u64(&k, UINT64_MAX - 1);
    cxm_key_i64(&k, INT64_MIN);
    cxm_key_i64(&k, -42);
    cxm_key_f64(&k, -2.5);
    cxm_key_f64(&k, NAN);
    cxm_key_f64(&k, -0.0);
    cxm_key_str(&k, "héllo");
    cxm_key_bytes(&k, blob, sizeof blob);
    cxm_key_str(&k, "");
    cxm_key_str(&k, "skipped");
    cxm_key_str(&k, "arena");
    size_t len = 0;
    CHECK_EQ_INT(cxm_key_finish(&k, &len), 0);

    cxm_keyreader r;
    cxm_keyreader_init(&r, buf, len);
    uint8_t u8 = 0;
    uint32_t u32 = 0;
    uint64_t u64 = 0;
    int64_t i1 = 0, i2 = 0;
    double d1 = 0, d2 = 0, d3 = 1;
    char s[16];
    uint8_t b[16];
    size_t slen = 0, blen = 0, elen = 99;
    CHECK_EQ_INT(cxm_keyread_u8(&r, &u8), 0);
    CHECK_EQ_INT(cxm_keyread_u32(&r, &u32), 0);
    CHECK_EQ_INT(cxm_keyread_u64(&r, &u64), 0);
    CHECK_EQ_INT(cxm_keyread_i64(&r, &i1), 0);
    CHECK_EQ_INT(cxm_keyread_i64(&r, &i2), 0);
    CHECK_EQ_INT(cxm_keyread_f64(&r, &d1), 0);
    CHECK_EQ_INT(cxm_keyread_f64(&r, &d2), 0);
    CHECK_EQ_INT(cxm_keyread_f64(&r, &d3), 0);
    CHECK_EQ_INT(cxm_keyread_str(&r, s, sizeof s, &slen), 0);
    CHECK_EQ_INT(cxm_keyread_bytes(&r, b, sizeof b, &blen), 0);
    char empty[1];
    CHECK_EQ_INT(cxm_keyread_str(&r, empty, sizeof empty, &elen), 0);
    CHECK_EQ_INT(cxm_keyread_skip_bytes(&r), 0);
    cxm_arena arena;
    cxm_arena_init(&arena, NULL, 0, 0);
    char *as = NULL;
    CHECK_EQ_INT(cxm_keyread_bytes_arena(&r, &arena, &as, NULL), 0);
    CHECK_EQ_INT(cxm_keyread_end(&r), 0);

    CHECK_EQ_INT(u8, 7);
    CHECK(u32 == 0xDEADBEEF);
    CHECK(u64 == UINT64_MAX - 1);
    CHECK(i1 == INT64_MIN);
    CHECK_EQ_INT(i2, -42);
    CHECK(d1 == -2.5);
    CHECK(isnan(d2));
    CHECK(d3 == 0.0 && !signbit(d3)); /* -0.0 is stored as +0.0 */
    CHECK_EQ_STR(s, "héllo");
    CHECK_EQ_INT(slen, strlen("héllo"));
    CHECK_EQ_INT(blen, sizeof blob);
    CHECK(memcmp(b, blob, sizeof blob) == 0);
    CHECK_EQ_INT(elen, 0);
    CHECK_EQ_STR(empty, "");
    CHECK_EQ_STR(as, "arena");
    cxm_arena_dispose(&arena);
}

static void test_limits(void)
{
    uint8_t buf[600];
    cxm_key k;
    size_t len = 0;

    cxm_key_init(&k, buf, sizeof buf);
    for (int i = 0; i < CXM_KEY_MAX; i++)
        cxm_key_u8(&k, 1);
    CHECK_EQ_INT(cxm_key_finish(&k, &len), 0);
    CHECK_EQ_INT(len, 511);
    cxm_key_u8(&k, 1);
    CHECK_EQ_INT(cxm_key_finish(&k, &len), CXM_ETOOBIG);
    cxm_key_init(&k, buf, 4);
    cxm_key_u64(&k, 1); /* overflows the caller buffer */
    cxm_key_u8(&k, 1);  /* would fit, but the error is sticky */
    CHECK_EQ_INT(cxm_key_finish(&k, &len), CXM_ETOOBIG);

    uint8_t big[520];
    memset(big, 'x', sizeof big);
    cxm_key_init(&k, buf, sizeof buf);
    cxm_key_bytes(&k, big, 509); /* 509 + terminator = 511 */
    CHECK_EQ_INT(cxm_key_finish(&k, &len), 0);
    cxm_key_init(&k, buf, sizeof buf);
    cxm_key_bytes(&k, big, 510);
    CHECK_EQ_INT(cxm_key_finish(&k, &len), CXM_ETOOBIG);
    memset(big, 0, sizeof big); /* NULs take two bytes each */
    cxm_key_init(&k, buf, sizeof buf);
    cxm_key_bytes(&k, big, 255);
    CHECK_EQ_INT(cxm_key_finish(&k, &len), CXM_ETOOBIG);

    /* Reading into a buffer that is too small. */
    cxm_key_init(&k, buf, sizeof buf);
    cxm_key_str(&k, "hello");
    cxm_key_finish(&k, &len);
    cxm_keyreader r;
    char s[5];
    cxm_keyreader_init(&r, buf, len);
    CHECK_EQ_INT(cxm_keyread_str(&r, s, sizeof s, NULL), CXM_ETOOBIG);
    CHECK_EQ_INT(cxm_keyread_end(&r), CXM_ETOOBIG);
}

static void test_corrupt(void)
{
    cxm_keyreader r;
    uint64_t u;
    uint8_t b[8];
    size_t n;
    const uint8_t short_key[] = {1, 2, 3};
    cxm_keyreader_init(&r, short_key, sizeof short_key);
    CHECK_EQ_INT(cxm_keyread_u64(&r, &u), CXM_ECORRUPT);

    const uint8_t unterminated[] = {'a', 'b'};
    cxm_keyreader_init(&r, unterminated, sizeof unterminated);
    CHECK_EQ_INT(cxm_keyread_bytes(&r, b, sizeof b, &n), CXM_ECORRUPT);

    const uint8_t dangling[] = {'a', 0};
    cxm_keyreader_init(&r, dangling, sizeof dangling);
    CHECK_EQ_INT(cxm_keyread_bytes(&r, b, sizeof b, &n), CXM_ECORRUPT);

    const uint8_t bad_escape[] = {'a', 0, 5, 0, 1};
    cxm_keyreader_init(&r, bad_escape, sizeof bad_escape);
    CHECK_EQ_INT(cxm_keyread_bytes(&r, b, sizeof b, &n), CXM_ECORRUPT);

    const uint8_t trailing[] = {'a', 0, 1, 9};
    cxm_keyreader_init(&r, trailing, sizeof trailing);
    CHECK_EQ_INT(cxm_keyread_bytes(&r, b, sizeof b, &n), 0);
    CHECK_EQ_INT(cxm_keyread_end(&r), CXM_ECORRUPT);
}

static void test_successor(void)
{
    uint8_t out[8];
    size_t n = 99;
    CHECK_EQ_INT(cxm_key_successor("ab\xff\xff", 4, out, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK(memcmp(out, "ac", 2) == 0);
    cxm_key_successor("\xff\xff", 2, out, &n);
    CHECK_EQ_INT(n, 0);
    cxm_key_successor("", 0, out, &n);
    CHECK_EQ_INT(n, 0);

    /* Every key that starts with an encoded prefix lies in [prefix, successor);
     * keys that do not, lie outside. */
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        uint8_t p[4], s[8];
        size_t pn = rnd_bytes(p, sizeof p), sn = rnd_bytes(s, sizeof s);
        enc pre, full, succ;
        cxm_key k;
        cxm_key_init(&k, pre.buf, sizeof pre.buf);
        cxm_key_bytes_prefix(&k, p, pn);
        cxm_key_finish(&k, &pre.len);
        full = enc_str_u32(s, sn, 1);
        cxm_key_successor(pre.buf, pre.len, succ.buf, &succ.len);
        bool starts = sn >= pn && memcmp(s, p, pn) == 0;
        bool inside = enc_cmp(&full, &pre) >= 0 && (succ.len == 0 || enc_cmp(&full, &succ) < 0);
        if (starts != inside)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    test_int_order();
    test_double_order();
    test_string_order();
    test_round_trip();
    test_limits();
    test_corrupt();
    test_successor();
    return check_report();
}
