/*
 * fsent_model.c - the model file: its format, its validation, loading, and
 * the release of a loaded one. The built-in model is fsent_builtin.c.
 *
 * Format (little-endian):
 *   0  magic "CXMSENT1"        8 bytes
 *   8  version                 u32 (1)
 *  12  nsections               u32 (1 or 2: one per language)
 *  16  total size              u64 (the file's exact length)
 *  24  checksum                u64 FNV-1a (cxm_hash) of bytes [32, total)
 *  32  sections, 64 bytes each:
 *      lang u32 (1 ko, 2 en), bits u32, ngram_max u32, flags u32,
 *      scale, bias, platt_a, platt_b, neutral f32, 12 reserved bytes (0),
 *      offset u64, count u64 (2^bits int8 weights at offset)
 * Everything is checked before a byte of weights is trusted, so a
 * truncated or hostile file is refused with its reason, never read past.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "feedback/senti/fsent_impl.h"

#define ERRLEN 256

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static float rdf(const uint8_t *p)
{
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static void wrf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    wr32(p, u);
}

static int bad(char *err, const char *why, unsigned a)
{
    if (err)
        snprintf(err, ERRLEN, why, a);
    return CXM_EINVAL;
}

/* One section into t; weights must lie inside the n bytes of p. */
static int parse_section(const uint8_t *p, size_t n, const uint8_t *s, fsent_model *m, char *err)
{
    uint32_t lang = rd32(s);
    if (lang != FSENT_LANG_KO && lang != FSENT_LANG_EN)
        return bad(err, "sentiment model: unknown language %u", lang);
    fsent__table *t = &m->t[lang - 1];
    if (t->present)
        return bad(err, "sentiment model: language %u twice", lang);
    t->bits = rd32(s + 4);
    t->ngram_max = rd32(s + 8);
    t->flags = rd32(s + 12);
    if (t->bits < FSENT__MIN_BITS || t->bits > FSENT__MAX_BITS)
        return bad(err, "sentiment model: hash size 2^%u out of range", t->bits);
    if (t->ngram_max > 6 || (t->flags & ~FSENT__F_ALL))
        return bad(err, "sentiment model: unknown feature settings (%u)", t->ngram_max);
    float f[5];
    for (int i = 0; i < 5; i++) {
        f[i] = rdf(s + 16 + 4 * i);
        if (!isfinite(f[i]))
            return bad(err, "sentiment model: parameter %u is not finite", (unsigned)i);
    }
    t->scale = f[0], t->bias = f[1], t->platt_a = f[2], t->platt_b = f[3], t->neutral = f[4];
    if (t->scale < 0 || t->neutral < 0.5f || t->neutral > 1)
        return bad(err, "sentiment model: scale or neutral band out of range (lang %u)", lang);
    uint64_t off = rd64(s + 48), cnt = rd64(s + 56);
    if (cnt != (uint64_t)1 << t->bits)
        return bad(err, "sentiment model: weight count does not match 2^%u", t->bits);
    if (off < FSENT__HEADER || off > n || cnt > n - off)
        return bad(err, "sentiment model: weights of language %u outside the file", lang);
    t->w = (const int8_t *)(p + off);
    t->present = true;
    return 0;
}

int fsent__parse(const uint8_t *p, size_t n, fsent_model *m, char *err)
{
    memset(m, 0, sizeof *m);
    if (n < FSENT__HEADER || memcmp(p, FSENT__MAGIC, 8) != 0)
        return bad(err, "sentiment model: not a model file (magic, %u bytes)", (unsigned)n);
    if (rd32(p + 8) != FSENT__VERSION)
        return bad(err, "sentiment model: version %u not supported", rd32(p + 8));
    uint32_t ns = rd32(p + 12);
    if (ns < 1 || ns > 2)
        return bad(err, "sentiment model: %u sections", ns);
    if (rd64(p + 16) != n)
        return bad(err, "sentiment model: truncated or padded (%u bytes)", (unsigned)n);
    if (n < FSENT__HEADER + (size_t)ns * FSENT__SECTION)
        return bad(err, "sentiment model: truncated section table", 0);
    if (cxm_hash(CXM_HASH_INIT, p + FSENT__HEADER, n - FSENT__HEADER) != rd64(p + 24))
        return bad(err, "sentiment model: checksum mismatch", 0);
    for (uint32_t i = 0; i < ns; i++) {
        int rc = parse_section(p, n, p + FSENT__HEADER + i * FSENT__SECTION, m, err);
        if (rc)
            return rc;
    }
    return 0;
}

static size_t table_bytes(const fsent__table *t)
{
    return t->present ? (size_t)1 << t->bits : 0;
}

static void put_section(uint8_t *s, int lang, const fsent__table *t, uint64_t off)
{
    wr32(s, (uint32_t)lang);
    wr32(s + 4, t->bits);
    wr32(s + 8, t->ngram_max);
    wr32(s + 12, t->flags);
    const float f[5] = {t->scale, t->bias, t->platt_a, t->platt_b, t->neutral};
    for (int i = 0; i < 5; i++)
        wrf(s + 16 + 4 * i, f[i]);
    wr64(s + 48, off);
    wr64(s + 56, table_bytes(t));
}

int fsent__write(const char *path, const fsent__table t[2], char *err)
{
    uint32_t ns = (uint32_t)t[0].present + (uint32_t)t[1].present;
    size_t head = FSENT__HEADER + (size_t)ns * FSENT__SECTION;
    size_t n = head + table_bytes(&t[0]) + table_bytes(&t[1]);
    uint8_t *p = calloc(1, n);
    if (!p)
        return bad(err, "sentiment model: out of memory", 0);
    memcpy(p, FSENT__MAGIC, 8);
    wr32(p + 8, FSENT__VERSION);
    wr32(p + 12, ns);
    wr64(p + 16, n);
    size_t off = head, sec = FSENT__HEADER;
    for (int i = 0; i < 2; i++) {
        if (!t[i].present)
            continue;
        put_section(p + sec, i + 1, &t[i], off);
        memcpy(p + off, t[i].w, table_bytes(&t[i]));
        sec += FSENT__SECTION;
        off += table_bytes(&t[i]);
    }
    wr64(p + 24, cxm_hash(CXM_HASH_INIT, p + FSENT__HEADER, n - FSENT__HEADER));
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(p, 1, n, f) == n ? 0 : CXM_EIO;
    if (f && fclose(f) != 0)
        rc = CXM_EIO;
    if (rc && err)
        snprintf(err, ERRLEN, "%s: %s", path, strerror(errno));
    free(p);
    return rc;
}

/* Read the whole file; CXM_EINVAL with the reason when it cannot be read. */
static int slurp(const char *path, uint8_t **out, size_t *n, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return bad(err, "sentiment model: cannot open the file (errno %u)", (unsigned)errno);
    uint8_t *p = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *q = cap <= ((size_t)64 << 20) ? realloc(p, cap) : NULL;
            if (!q) {
                free(p);
                fclose(f);
                return bad(err, "sentiment model: file too large", 0);
            }
            p = q;
        }
        size_t k = fread(p + len, 1, cap - len, f);
        len += k;
        if (k == 0)
            break;
    }
    fclose(f);
    *out = p;
    *n = len;
    return 0;
}

int fsent_load(const char *path, fsent_model **out, char *err)
{
    uint8_t *p;
    size_t n;
    int rc = slurp(path, &p, &n, err);
    if (rc)
        return rc;
    fsent_model *m = malloc(sizeof *m);
    if (!m) {
        free(p);
        return bad(err, "sentiment model: out of memory", 0);
    }
    rc = fsent__parse(p, n, m, err);
    if (rc) {
        free(m);
        free(p);
        return rc;
    }
    m->owned = p;
    *out = m;
    return 0;
}

void fsent_free(fsent_model *m)
{
    if (!m)
        return;
    free(m->owned);
    free(m);
}
