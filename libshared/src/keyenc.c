/*
 * keyenc.c - order-preserving composite keys (see keyenc.h for the format).
 */
#include "cxm/keyenc.h"

#include <math.h>
#include <string.h>

#include "cxm/err.h"

#define ESC 0x00     /* a 0x00 inside a bytes field starts a two-byte sequence */
#define ESC_NUL 0xFF /* 0x00 0xFF: a literal 0x00 */
#define ESC_END 0x01 /* 0x00 0x01: end of the field; below 0xFF and every plain byte */

#define SIGN64 UINT64_C(0x8000000000000000)
#define CANONICAL_NAN UINT64_C(0x7FF8000000000000)

/* ---- writing ---------------------------------------------------------- */

void cxm_key_init(cxm_key *k, void *buf, size_t cap)
{
    k->buf = buf;
    k->cap = cap < CXM_KEY_MAX ? cap : CXM_KEY_MAX;
    k->len = 0;
    k->err = 0;
}

/* Reserve n bytes; NULL (and the sticky error) when they do not fit. */
static uint8_t *reserve(cxm_key *k, size_t n)
{
    if (k->err)
        return NULL;
    if (n > k->cap - k->len) {
        k->err = CXM_ETOOBIG;
        return NULL;
    }
    uint8_t *p = k->buf + k->len;
    k->len += n;
    return p;
}

static void put_be(cxm_key *k, uint64_t v, size_t width)
{
    uint8_t *p = reserve(k, width);
    if (!p)
        return;
    for (size_t i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

void cxm_key_u8(cxm_key *k, uint8_t v)
{
    put_be(k, v, 1);
}

void cxm_key_u32(cxm_key *k, uint32_t v)
{
    put_be(k, v, 4);
}

void cxm_key_u64(cxm_key *k, uint64_t v)
{
    put_be(k, v, 8);
}

void cxm_key_i64(cxm_key *k, int64_t v)
{
    /* Two's complement with the sign bit flipped is offset binary: INT64_MIN
     * becomes 0 and INT64_MAX becomes UINT64_MAX. */
    put_be(k, (uint64_t)v ^ SIGN64, 8);
}

static uint64_t f64_to_ordered(double v)
{
    uint64_t bits;
    if (isnan(v))
        return CANONICAL_NAN ^ SIGN64;
    if (v == 0.0)
        v = 0.0; /* folds -0.0 into +0.0 */
    memcpy(&bits, &v, sizeof bits);
    /* Positive doubles already sort like their bits; setting the sign bit lifts
     * them above the negatives. Negative doubles sort in reverse of their
     * magnitude bits, so every bit is flipped. */
    return (bits & SIGN64) ? ~bits : bits ^ SIGN64;
}

static double f64_from_ordered(uint64_t u)
{
    uint64_t bits = (u & SIGN64) ? u ^ SIGN64 : ~u;
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

void cxm_key_f64(cxm_key *k, double v)
{
    put_be(k, f64_to_ordered(v), 8);
}

static size_t count_nuls(const uint8_t *p, size_t n)
{
    size_t c = 0;
    for (const uint8_t *q = p; (q = memchr(q, 0, n - (size_t)(q - p))) != NULL; q++)
        c++;
    return c;
}

/* Escaped copy of p[0..n): reserved in one go so a field is either whole or
 * absent (the sticky error then makes the key unusable anyway). */
static void put_escaped(cxm_key *k, const void *p, size_t n, int terminate)
{
    const uint8_t *src = p;
    uint8_t *dst = reserve(k, n + count_nuls(src, n) + (terminate ? 2 : 0));
    if (!dst)
        return;
    for (size_t i = 0; i < n; i++) {
        *dst++ = src[i];
        if (src[i] == ESC)
            *dst++ = ESC_NUL;
    }
    if (terminate) {
        dst[0] = ESC;
        dst[1] = ESC_END;
    }
}

void cxm_key_bytes(cxm_key *k, const void *p, size_t n)
{
    put_escaped(k, p, n, 1);
}

void cxm_key_str(cxm_key *k, const char *s)
{
    put_escaped(k, s, strlen(s), 1);
}

void cxm_key_bytes_prefix(cxm_key *k, const void *p, size_t n)
{
    put_escaped(k, p, n, 0);
}

void cxm_key_raw(cxm_key *k, const void *p, size_t n)
{
    uint8_t *dst = reserve(k, n);
    if (dst && n)
        memcpy(dst, p, n);
}

int cxm_key_finish(const cxm_key *k, size_t *len)
{
    if (k->err)
        return k->err;
    if (len)
        *len = k->len;
    return 0;
}

int cxm_key_successor(const void *prefix, size_t len, void *out, size_t *out_len)
{
    const uint8_t *p = prefix;
    uint8_t *o = out;
    while (len > 0 && p[len - 1] == 0xFF)
        len--;
    if (len > 0) {
        memmove(o, p, len);
        o[len - 1]++;
    }
    *out_len = len;
    return 0;
}

/* ---- reading ---------------------------------------------------------- */

void cxm_keyreader_init(cxm_keyreader *r, const void *key, size_t len)
{
    r->p = key;
    r->len = len;
    r->pos = 0;
    r->err = 0;
}

static int fail(cxm_keyreader *r, int err)
{
    if (!r->err)
        r->err = err;
    return r->err;
}

static int get_be(cxm_keyreader *r, size_t width, uint64_t *out)
{
    if (r->err)
        return r->err;
    if (width > r->len - r->pos)
        return fail(r, CXM_ECORRUPT);
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | r->p[r->pos + i];
    r->pos += width;
    *out = v;
    return 0;
}

int cxm_keyread_u8(cxm_keyreader *r, uint8_t *out)
{
    uint64_t v;
    int rc = get_be(r, 1, &v);
    if (rc == 0)
        *out = (uint8_t)v;
    return rc;
}

int cxm_keyread_u32(cxm_keyreader *r, uint32_t *out)
{
    uint64_t v;
    int rc = get_be(r, 4, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int cxm_keyread_u64(cxm_keyreader *r, uint64_t *out)
{
    return get_be(r, 8, out);
}

int cxm_keyread_i64(cxm_keyreader *r, int64_t *out)
{
    uint64_t v;
    int rc = get_be(r, 8, &v);
    if (rc == 0)
        *out =
            (int64_t)(v ^ SIGN64); /* implementation-defined cast; fine on every ABI we build on */
    return rc;
}

int cxm_keyread_f64(cxm_keyreader *r, double *out)
{
    uint64_t v;
    int rc = get_be(r, 8, &v);
    if (rc == 0)
        *out = f64_from_ordered(v);
    return rc;
}

/* Walk one bytes field starting at r->pos: the decoded length goes to *len,
 * the encoded length (terminator included) to *enc. When out is not NULL the
 * decoded bytes are written there (the caller checked the size first). */
static int scan_bytes(const cxm_keyreader *r, uint8_t *out, size_t *len, size_t *enc)
{
    const uint8_t *p = r->p + r->pos;
    size_t n = r->len - r->pos, i = 0, d = 0;
    for (;;) {
        const uint8_t *z = i < n ? memchr(p + i, ESC, n - i) : NULL;
        if (!z || (size_t)(z - p) + 1 >= n)
            return CXM_ECORRUPT; /* no terminator, or a dangling escape byte */
        size_t run = (size_t)(z - p) - i;
        if (out)
            memcpy(out + d, p + i, run);
        d += run;
        i += run;
        if (p[i + 1] == ESC_END) {
            *len = d;
            *enc = i + 2;
            return 0;
        }
        if (p[i + 1] != ESC_NUL)
            return CXM_ECORRUPT;
        if (out)
            out[d] = 0;
        d++;
        i += 2;
    }
}

/* Decode into out when it holds cap bytes; *len gets the decoded length. */
static int read_bytes(cxm_keyreader *r, uint8_t *out, size_t cap, size_t *len)
{
    if (r->err)
        return r->err;
    size_t n, enc;
    int rc = scan_bytes(r, NULL, &n, &enc);
    if (rc != 0)
        return fail(r, rc);
    if (n > cap)
        return fail(r, CXM_ETOOBIG);
    scan_bytes(r, out, &n, &enc);
    r->pos += enc;
    *len = n;
    return 0;
}

int cxm_keyread_bytes(cxm_keyreader *r, void *out, size_t cap, size_t *len)
{
    return read_bytes(r, out, cap, len);
}

int cxm_keyread_str(cxm_keyreader *r, char *out, size_t cap, size_t *len)
{
    size_t n;
    int rc = read_bytes(r, (uint8_t *)out, cap ? cap - 1 : 0, &n);
    if (rc == 0 && cap == 0)
        rc = fail(r, CXM_ETOOBIG);
    if (rc != 0)
        return rc;
    out[n] = '\0';
    if (len)
        *len = n;
    return 0;
}

int cxm_keyread_bytes_arena(cxm_keyreader *r, cxm_arena *a, char **out, size_t *len)
{
    if (r->err)
        return r->err;
    size_t n, enc;
    int rc = scan_bytes(r, NULL, &n, &enc);
    if (rc != 0)
        return fail(r, rc);
    char *buf = cxm_arena_alloc(a, n + 1);
    if (!buf)
        return fail(r, CXM_ENOMEM);
    rc = cxm_keyread_str(r, buf, n + 1, len);
    if (rc == 0)
        *out = buf;
    return rc;
}

int cxm_keyread_skip_bytes(cxm_keyreader *r)
{
    if (r->err)
        return r->err;
    size_t n, enc;
    int rc = scan_bytes(r, NULL, &n, &enc);
    if (rc != 0)
        return fail(r, rc);
    r->pos += enc;
    return 0;
}

int cxm_keyread_end(const cxm_keyreader *r)
{
    if (r->err)
        return r->err;
    return r->pos == r->len ? 0 : CXM_ECORRUPT;
}
