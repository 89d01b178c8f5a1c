/*
 * auth.c - bearer tokens, scopes and per-subject rate limits (see auth.h).
 *
 * The loaded credentials (HMAC secret or public key, token-file hashes) form
 * one immutable "keyring"; a reload builds a new one and swaps it in under
 * the write side of a rwlock, so a check never sees half a reload.
 */
#include "cxm/auth.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/log.h"

#define FILE_MAX (1u << 20) /* key and token files: read at most 1 MiB */
#define JSON_MAX_DEPTH 16
#define RATE_PROBE 8

typedef enum jwt_alg { ALG_NONE = 0, ALG_HS256, ALG_RS256, ALG_ES256 } jwt_alg;

typedef struct static_token {
    unsigned char hash[SHA256_DIGEST_LENGTH];
    char subject[CXM_AUTH_SUBJECT_MAX];
    uint32_t scopes;
} static_token;

/* A JWT whose signature and claims held, by the SHA-256 of the token: a
 * client sends the same token on every call, and an ES256 verification
 * costs far more than the call itself. Only the time claims are checked
 * again on a hit. */
typedef struct jwt_cached {
    unsigned char hash[SHA256_DIGEST_LENGTH];
    bool used, has_nbf;
    double exp, nbf;
    cxm_principal p;
} jwt_cached;

typedef struct keyring {
    unsigned char *secret; /* HS256 */
    size_t secret_len;
    EVP_PKEY *pkey; /* RS256, ES256 */
    static_token *tokens;
    size_t ntokens;
    /* Verified JWTs under these keys: a reload starts a new, empty cache. */
    pthread_mutex_t cache_mu;
    jwt_cached *cache;
    size_t ncache;
} keyring;

typedef struct file_stamp {
    struct timespec mtime;
    off_t size;
} file_stamp;

typedef struct rate_slot {
    uint64_t key; /* hash of the subject; 0 = free */
    double tokens;
    int64_t last_ms;
} rate_slot;

struct cxm_auth {
    char *tokens_file, *key_file, *issuer, *audience;
    jwt_alg alg;
    int64_t skew_s;
    size_t cache_entries;
    pthread_rwlock_t lock;
    keyring *keys;
    file_stamp tokens_stamp, key_stamp;
    atomic_int_least64_t last_reload_check;
    double rate_rps, rate_burst;
    rate_slot *slots;
    size_t nslots;
    pthread_mutex_t rate_mu;
};

static int failf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int failf(char *err, size_t len, const char *fmt, ...)
{
    if (err && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
    }
    return CXM_EINVAL;
}

/* Subjects go into audit lines: nothing that could forge a field or line. */
static bool subject_ok(const char *s)
{
    for (; *s; s++)
        if (*s <= ' ' || *s >= 0x7f || *s == '"')
            return false;
    return true;
}

/* ---- scopes and access levels ---- */

static const struct {
    const char *name;
    uint32_t bit;
} scope_names[] = {
    {"profile:read", CXM_SCOPE_PROFILE_READ},
    {"profile:write", CXM_SCOPE_PROFILE_WRITE},
    {"journey:read", CXM_SCOPE_JOURNEY_READ},
    {"journey:write", CXM_SCOPE_JOURNEY_WRITE},
    {"feedback:read", CXM_SCOPE_FEEDBACK_READ},
    {"feedback:write", CXM_SCOPE_FEEDBACK_WRITE},
    {"reco:read", CXM_SCOPE_RECO_READ},
    {"reco:write", CXM_SCOPE_RECO_WRITE},
    {"admin", CXM_SCOPE_ADMIN},
    {"internal", CXM_SCOPE_INTERNAL},
};

uint32_t cxm_scope_parse(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof scope_names / sizeof scope_names[0]; i++)
        if (strlen(scope_names[i].name) == len && memcmp(scope_names[i].name, name, len) == 0)
            return scope_names[i].bit;
    return 0;
}

const char *cxm_access_scope(cxm_access level, const char *area, char *buf, size_t len)
{
    switch (level) {
    case CXM_ACCESS_READ:
    case CXM_ACCESS_WRITE:
        snprintf(buf, len, "%s:%s", area ? area : "?", level == CXM_ACCESS_READ ? "read" : "write");
        return buf;
    case CXM_ACCESS_ADMIN_READ:
    case CXM_ACCESS_ADMIN:
        return "admin";
    case CXM_ACCESS_INTERNAL:
        return "internal";
    default:
        return NULL;
    }
}

int cxm_auth_allow(const cxm_principal *p, cxm_access level, const char *area, char *why,
                   size_t whylen)
{
    if (level == CXM_ACCESS_UNSET) {
        snprintf(why, whylen, "this method has no access level configured; refused");
        return CXM_EPERM;
    }
    if (level == CXM_ACCESS_PUBLIC || level == CXM_ACCESS_ANY || (p->scopes & CXM_SCOPE_ADMIN))
        return 0;
    char buf[64];
    const char *need = cxm_access_scope(level, area, buf, sizeof buf);
    uint32_t bit = need ? cxm_scope_parse(need, strlen(need)) : 0;
    if (bit && (p->scopes & bit))
        return 0;
    snprintf(why, whylen, "requires scope %s", need ? need : "(unknown area)");
    return CXM_EPERM;
}

bool cxm_access_audited(cxm_access level)
{
    return level == CXM_ACCESS_WRITE || level == CXM_ACCESS_ADMIN || level == CXM_ACCESS_INTERNAL;
}

/* ---- files ---- */

static int read_file(const char *path, char **data, size_t *len, file_stamp *stamp, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return failf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size > (off_t)FILE_MAX) {
        fclose(f);
        return failf(err, errlen, "%s is larger than %u bytes or cannot be read", path, FILE_MAX);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        return failf(err, errlen, "cannot read %s", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    stamp->mtime = st.st_mtim;
    stamp->size = st.st_size;
    return 0;
}

/* One token-file line: "<token> <subject> <scope,scope,...>". */
static int parse_token_line(char *line, static_token *t, const char *path, int lineno, char *err,
                            size_t errlen)
{
    char *save = NULL;
    char *tok = strtok_r(line, " \t", &save);
    char *sub = strtok_r(NULL, " \t", &save);
    char *scopes = strtok_r(NULL, " \t", &save);
    if (!tok || !sub || !scopes || strtok_r(NULL, " \t", &save))
        return failf(err, errlen,
                     "%s line %d: expected \"<token> <subject> <scope,scope,...>\" (3 fields)",
                     path, lineno);
    if (strlen(tok) < 16 || strlen(tok) > CXM_AUTH_TOKEN_MAX)
        return failf(err, errlen, "%s line %d: the token must be 16 to %d characters long", path,
                     lineno, CXM_AUTH_TOKEN_MAX);
    if (!subject_ok(sub))
        return failf(err, errlen,
                     "%s line %d: the subject holds characters outside printable "
                     "ASCII",
                     path, lineno);
    if (strlen(sub) >= CXM_AUTH_SUBJECT_MAX)
        return failf(err, errlen, "%s line %d: the subject is longer than %d characters", path,
                     lineno, CXM_AUTH_SUBJECT_MAX - 1);
    SHA256((const unsigned char *)tok, strlen(tok), t->hash);
    OPENSSL_cleanse(tok, strlen(tok));
    snprintf(t->subject, sizeof t->subject, "%s", sub);
    t->scopes = 0;
    for (char *s = scopes, *end; *s; s = *end ? end + 1 : end) {
        end = strchr(s, ',');
        if (!end)
            end = s + strlen(s);
        uint32_t bit = cxm_scope_parse(s, (size_t)(end - s));
        if (!bit)
            return failf(err, errlen,
                         "%s line %d: unknown scope \"%.*s\" (known: profile:read, profile:write, "
                         "journey:..., feedback:..., reco:..., admin, internal)",
                         path, lineno, (int)(end - s), s);
        t->scopes |= bit;
    }
    return 0;
}

static int load_tokens(const char *path, keyring *k, file_stamp *stamp, char *err, size_t errlen)
{
    char *data;
    size_t len;
    int rc = read_file(path, &data, &len, stamp, err, errlen);
    if (rc != 0)
        return rc;
    size_t cap = 1;
    for (size_t i = 0; i < len; i++)
        cap += data[i] == '\n';
    k->tokens = calloc(cap, sizeof *k->tokens);
    if (!k->tokens)
        rc = failf(err, errlen, "out of memory loading %s", path);
    int lineno = 0;
    for (char *line = data, *next; rc == 0 && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        size_t l = strlen(line);
        while (l && isspace((unsigned char)line[l - 1]))
            line[--l] = '\0';
        while (isspace((unsigned char)*line))
            line++;
        if (!*line || *line == '#')
            continue;
        rc = parse_token_line(line, &k->tokens[k->ntokens], path, lineno, err, errlen);
        if (rc == 0)
            k->ntokens++;
    }
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

static int load_key(const char *path, jwt_alg alg, keyring *k, file_stamp *stamp, char *err,
                    size_t errlen)
{
    char *data;
    size_t len;
    int rc = read_file(path, &data, &len, stamp, err, errlen);
    if (rc != 0)
        return rc;
    if (alg == ALG_HS256) {
        while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
            len--;
        if (len < 32) {
            rc = failf(err, errlen, "%s: an HS256 secret needs at least 32 bytes (has %zu)", path,
                       len);
        } else {
            k->secret = (unsigned char *)data;
            k->secret_len = len;
            return 0;
        }
    } else {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        k->pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        const char *want = alg == ALG_RS256 ? "RSA" : "EC";
        if (!k->pkey)
            rc =
                failf(err, errlen, "%s is not a PEM public key (-----BEGIN PUBLIC KEY-----)", path);
        else if (!EVP_PKEY_is_a(k->pkey, want))
            rc =
                failf(err, errlen, "%s holds a %s key; %s needs an %s key", path,
                      EVP_PKEY_get0_type_name(k->pkey), alg == ALG_RS256 ? "RS256" : "ES256", want);
        else if (alg == ALG_ES256 && EVP_PKEY_get_bits(k->pkey) != 256)
            rc = failf(err, errlen, "%s: ES256 needs a P-256 key (this one has %d bits)", path,
                       EVP_PKEY_get_bits(k->pkey));
    }
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

static void keyring_free(keyring *k)
{
    if (!k)
        return;
    if (k->secret) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        free(k->secret);
    }
    EVP_PKEY_free(k->pkey);
    free(k->tokens);
    if (k->cache) {
        OPENSSL_cleanse(k->cache, k->ncache * sizeof *k->cache);
        free(k->cache);
    }
    pthread_mutex_destroy(&k->cache_mu);
    free(k);
}

static int keyring_load(const cxm_auth *a, keyring **out, file_stamp *ts, file_stamp *ks, char *err,
                        size_t errlen)
{
    keyring *k = calloc(1, sizeof *k);
    if (!k)
        return failf(err, errlen, "out of memory");
    pthread_mutex_init(&k->cache_mu, NULL);
    int rc = 0;
    if (a->key_file && a->cache_entries > 0) {
        k->ncache = a->cache_entries;
        if (!(k->cache = calloc(k->ncache, sizeof *k->cache)))
            rc = failf(err, errlen, "out of memory");
    }
    if (rc == 0 && a->tokens_file)
        rc = load_tokens(a->tokens_file, k, ts, err, errlen);
    if (rc == 0 && a->key_file)
        rc = load_key(a->key_file, a->alg, k, ks, err, errlen);
    if (rc != 0) {
        keyring_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

static bool stamp_changed(const char *path, const file_stamp *old)
{
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return false; /* gone for a moment (an editor's rename): keep the old */
    return st.st_size != old->size || st.st_mtim.tv_sec != old->mtime.tv_sec ||
           st.st_mtim.tv_nsec != old->mtime.tv_nsec;
}

/* At most once a second: reload what changed on disk. */
static void maybe_reload(cxm_auth *a, int64_t now_s)
{
    int_least64_t last = atomic_load_explicit(&a->last_reload_check, memory_order_relaxed);
    if (now_s <= last ||
        !atomic_compare_exchange_strong(&a->last_reload_check, &last, (int_least64_t)now_s))
        return;
    if (!stamp_changed(a->tokens_file, &a->tokens_stamp) &&
        !stamp_changed(a->key_file, &a->key_stamp))
        return;
    keyring *k = NULL;
    file_stamp ts = a->tokens_stamp, ks = a->key_stamp;
    char err[512];
    if (keyring_load(a, &k, &ts, &ks, err, sizeof err) != 0) {
        cxm_log_warn("auth.reload_failed", "credentials not reloaded, the previous ones stay: %s",
                     err);
        /* Do not retry a broken file every second until it changes again. */
        a->tokens_stamp = ts;
        a->key_stamp = ks;
        return;
    }
    pthread_rwlock_wrlock(&a->lock);
    keyring *old = a->keys;
    a->keys = k;
    a->tokens_stamp = ts;
    a->key_stamp = ks;
    pthread_rwlock_unlock(&a->lock);
    keyring_free(old);
    cxm_log_info("auth.reloaded", "credentials reloaded (%zu static tokens)", k->ntokens);
}

/* ---- lifecycle ---- */

static int parse_alg(const char *s, jwt_alg *out)
{
    if (strcmp(s, "HS256") == 0)
        *out = ALG_HS256;
    else if (strcmp(s, "RS256") == 0)
        *out = ALG_RS256;
    else if (strcmp(s, "ES256") == 0)
        *out = ALG_ES256;
    else
        return CXM_EINVAL;
    return 0;
}

static char *dup_opt(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static int check_opts(const cxm_auth_opts *o, jwt_alg *alg, char *err, size_t errlen)
{
    bool key = o->jwt_key_file && *o->jwt_key_file;
    bool has_alg = o->jwt_alg && *o->jwt_alg;
    if (!key && !(o->tokens_file && *o->tokens_file))
        return failf(err, errlen,
                     "auth is on but no credentials are configured: give "
                     "--auth-tokens FILE and/or --auth-jwt-key FILE");
    if (key && !has_alg)
        return failf(err, errlen, "--auth-jwt-key needs --auth-jwt-alg HS256, RS256 or ES256");
    if (!key &&
        (has_alg || (o->jwt_issuer && *o->jwt_issuer) || (o->jwt_audience && *o->jwt_audience)))
        return failf(err, errlen,
                     "--auth-jwt-alg, --auth-jwt-issuer and --auth-jwt-audience need "
                     "--auth-jwt-key FILE");
    if (has_alg && parse_alg(o->jwt_alg, alg) != 0)
        return failf(err, errlen, "--auth-jwt-alg \"%s\" is not HS256, RS256 or ES256", o->jwt_alg);
    if (o->rate_rps < 0 || o->rate_burst < 0 || !isfinite(o->rate_rps))
        return failf(err, errlen, "--rate-limit-rps and --rate-limit-burst cannot be negative");
    if (o->rate_burst > 0 && o->rate_rps == 0)
        return failf(err, errlen, "--rate-limit-burst needs --rate-limit-rps");
    return 0;
}

int cxm_auth_create(const cxm_auth_opts *o, cxm_auth **out, char *err, size_t errlen)
{
    jwt_alg alg = ALG_NONE;
    int rc = check_opts(o, &alg, err, errlen);
    if (rc != 0)
        return rc;
    cxm_auth *a = calloc(1, sizeof *a);
    if (!a)
        return failf(err, errlen, "out of memory");
    a->tokens_file = dup_opt(o->tokens_file);
    a->key_file = dup_opt(o->jwt_key_file);
    a->issuer = dup_opt(o->jwt_issuer);
    a->audience = dup_opt(o->jwt_audience);
    a->alg = alg;
    a->skew_s = o->clock_skew_s < 0 ? 60 : o->clock_skew_s;
    a->cache_entries = o->jwt_cache < 0 ? 0 : o->jwt_cache == 0 ? 1024 : (size_t)o->jwt_cache;
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->rate_mu, NULL);
    atomic_init(&a->last_reload_check, (int_least64_t)time(NULL));
    a->rate_rps = o->rate_rps;
    a->rate_burst = o->rate_burst > 0 ? (double)o->rate_burst : fmax(1.0, ceil(o->rate_rps));
    if (a->rate_rps > 0) {
        a->nslots = o->rate_subjects ? o->rate_subjects : 4096;
        if (a->nslots < RATE_PROBE)
            a->nslots = RATE_PROBE;
        a->slots = calloc(a->nslots, sizeof *a->slots);
        if (!a->slots) {
            cxm_auth_destroy(a);
            return failf(err, errlen, "out of memory");
        }
    }
    rc = keyring_load(a, &a->keys, &a->tokens_stamp, &a->key_stamp, err, errlen);
    if (rc != 0) {
        cxm_auth_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

void cxm_auth_destroy(cxm_auth *a)
{
    if (!a)
        return;
    keyring_free(a->keys);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->rate_mu);
    free(a->slots);
    free(a->tokens_file);
    free(a->key_file);
    free(a->issuer);
    free(a->audience);
    free(a);
}

/* ---- base64url and a small JSON reader for JWT headers and claims ---- */

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Unpadded base64url into out (room for len*3/4+1 bytes). Returns the
 * decoded length, or -1 for a character outside the alphabet or a length
 * no encoding produces. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)n;
}

typedef struct jcur {
    const char *p, *end;
} jcur;

static void jws(jcur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool jeat(jcur *c, char ch)
{
    jws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static int jescape(char e)
{
    switch (e) {
    case '"':
    case '\\':
    case '/':
        return e;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

/* \uXXXX: ASCII as is, anything else '?' (the claims compared are ASCII). */
static int junicode(jcur *c)
{
    if (c->end - c->p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = (unsigned char)c->p[i];
        if (!isxdigit(h))
            return -1;
        v = v * 16 + (unsigned)(isdigit(h) ? h - '0' : tolower(h) - 'a' + 10);
    }
    c->p += 4;
    return v < 0x80 ? (int)v : '?';
}

/* A JSON string into out (NUL-terminated, cap bytes; longer is an error),
 * or skipped when out is NULL. */
static bool jstring(jcur *c, char *out, size_t cap)
{
    jws(c);
    if (c->p >= c->end || *c->p != '"')
        return false;
    c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != '"') {
        int ch = (unsigned char)*c->p++;
        if (ch < 0x20)
            return false;
        if (ch == '\\') {
            if (c->p >= c->end)
                return false;
            char e = *c->p++;
            ch = e == 'u' ? junicode(c) : jescape(e);
            if (ch < 0)
                return false;
        }
        if (!out)
            continue;
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)ch;
    }
    if (c->p >= c->end)
        return false;
    c->p++;
    if (out)
        out[n] = '\0';
    return true;
}

static bool jnumber(jcur *c, double *out)
{
    jws(c);
    char buf[64];
    size_t n = 0;
    while (c->p < c->end && n + 1 < sizeof buf && strchr("+-0123456789.eE", *c->p))
        buf[n++] = *c->p++;
    buf[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (n == 0 || *end || errno || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool jskip(jcur *c, int depth);

static bool jskip_container(jcur *c, char close, bool object, int depth)
{
    if (jeat(c, close))
        return true;
    do {
        if (object && (!jstring(c, NULL, 0) || !jeat(c, ':')))
            return false;
        if (!jskip(c, depth + 1))
            return false;
    } while (jeat(c, ','));
    return jeat(c, close);
}

static bool jskip(jcur *c, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        return false;
    jws(c);
    if (c->p >= c->end)
        return false;
    char ch = *c->p;
    double d;
    if (ch == '"')
        return jstring(c, NULL, 0);
    if (ch == '{' || ch == '[') {
        c->p++;
        return jskip_container(c, ch == '{' ? '}' : ']', ch == '{', depth);
    }
    for (const char *lit = "true\0false\0null\0"; *lit; lit += strlen(lit) + 1)
        if ((size_t)(c->end - c->p) >= strlen(lit) && memcmp(c->p, lit, strlen(lit)) == 0) {
            c->p += strlen(lit);
            return true;
        }
    return jnumber(c, &d);
}

/* ---- JWT ---- */

typedef struct claims {
    char alg[16];
    char sub[CXM_AUTH_SUBJECT_MAX];
    char iss[256];
    bool has_sub, has_iss, has_exp, has_nbf, has_aud, aud_ok;
    double exp, nbf;
    uint32_t scopes;
} claims;

static void add_scopes(claims *cl, const char *list)
{
    for (const char *s = list; *s;) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        cl->scopes |= cxm_scope_parse(s, n);
        s += n;
    }
}

/* aud or scp: a string or an array of strings. */
static bool jstrings(jcur *c, claims *cl, const char *want, bool scopes)
{
    char v[1024];
    jws(c);
    bool array = jeat(c, '[');
    if (array && jeat(c, ']'))
        return true;
    do {
        if (!jstring(c, v, sizeof v))
            return false;
        if (scopes)
            cl->scopes |= cxm_scope_parse(v, strlen(v));
        else if (want && strcmp(v, want) == 0)
            cl->aud_ok = true;
    } while (array && jeat(c, ','));
    return !array || jeat(c, ']');
}

static bool jclaim(jcur *c, const char *key, claims *cl, const char *audience)
{
    if (strcmp(key, "alg") == 0)
        return jstring(c, cl->alg, sizeof cl->alg);
    if (strcmp(key, "sub") == 0)
        return cl->has_sub = jstring(c, cl->sub, sizeof cl->sub);
    if (strcmp(key, "iss") == 0)
        return cl->has_iss = jstring(c, cl->iss, sizeof cl->iss);
    if (strcmp(key, "exp") == 0)
        return cl->has_exp = jnumber(c, &cl->exp);
    if (strcmp(key, "nbf") == 0)
        return cl->has_nbf = jnumber(c, &cl->nbf);
    if (strcmp(key, "aud") == 0)
        return cl->has_aud = jstrings(c, cl, audience, false);
    if (strcmp(key, "scp") == 0)
        return jstrings(c, cl, NULL, true);
    if (strcmp(key, "scope") == 0) {
        char v[2048];
        if (!jstring(c, v, sizeof v))
            return false;
        add_scopes(cl, v);
        return true;
    }
    return jskip(c, 1);
}

/* A JSON object of claims (header or payload) into cl. */
static bool parse_claims(const unsigned char *json, size_t len, claims *cl, const char *audience)
{
    jcur c = {(const char *)json, (const char *)json + len};
    if (!jeat(&c, '{'))
        return false;
    if (!jeat(&c, '}')) {
        do {
            char key[64];
            if (!jstring(&c, key, sizeof key) || !jeat(&c, ':') || !jclaim(&c, key, cl, audience))
                return false;
        } while (jeat(&c, ','));
        if (!jeat(&c, '}'))
            return false;
    }
    jws(&c);
    return c.p == c.end;
}

/* ES256 signatures are r||s (32 bytes each); EVP wants DER. */
static int es256_der(const unsigned char *sig, size_t len, unsigned char **der)
{
    if (len != 64)
        return -1;
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
    if (!s || !r || !ss || !ECDSA_SIG_set0(s, r, ss)) {
        BN_free(r);
        BN_free(ss);
        ECDSA_SIG_free(s);
        return -1;
    }
    *der = NULL;
    int n = i2d_ECDSA_SIG(s, der);
    ECDSA_SIG_free(s);
    return n;
}

static bool verify_signature(const keyring *k, jwt_alg alg, const char *signed_part,
                             size_t signed_len, const unsigned char *sig, size_t sig_len)
{
    if (alg == ALG_HS256) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        if (!k->secret || !HMAC(EVP_sha256(), k->secret, (int)k->secret_len,
                                (const unsigned char *)signed_part, signed_len, mac, &mac_len))
            return false;
        return sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0;
    }
    if (!k->pkey)
        return false;
    unsigned char *der = NULL;
    const unsigned char *use = sig;
    size_t use_len = sig_len;
    if (alg == ALG_ES256) {
        int n = es256_der(sig, sig_len, &der);
        if (n <= 0)
            return false;
        use = der;
        use_len = (size_t)n;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok =
        ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
        EVP_DigestVerify(ctx, use, use_len, (const unsigned char *)signed_part, signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

static const char *alg_name(jwt_alg a)
{
    return a == ALG_HS256 ? "HS256" : a == ALG_RS256 ? "RS256" : "ES256";
}

/* A refused credential: the sentence in why, CXM_EAUTH. */
#define why_fail(...) (failf(__VA_ARGS__), CXM_EAUTH)

static int check_times(const cxm_auth *a, double exp, bool has_nbf, double nbf, int64_t now,
                       char *why, size_t len)
{
    if ((double)now > exp + (double)a->skew_s)
        return why_fail(why, len, "the token expired %.0f s ago", (double)now - exp);
    if (has_nbf && (double)now + (double)a->skew_s < nbf)
        return why_fail(why, len, "the token is not valid yet (nbf is %.0f s ahead)",
                        nbf - (double)now);
    return 0;
}

/* The time claims and iss/aud, once the signature holds. */
static int check_claims(const cxm_auth *a, const claims *cl, int64_t now, char *why, size_t len)
{
    if (!cl->has_exp)
        return why_fail(why, len, "the token has no exp claim; tokens must expire");
    int rc = check_times(a, cl->exp, cl->has_nbf, cl->nbf, now, why, len);
    if (rc != 0)
        return rc;
    if (a->issuer && (!cl->has_iss || strcmp(cl->iss, a->issuer) != 0))
        return why_fail(why, len, "the token's issuer is not the one this server trusts");
    if (a->audience && !cl->aud_ok)
        return why_fail(why, len,
                        "the token is not meant for this audience (aud does not "
                        "include the configured audience)");
    if (!cl->has_sub || !cl->sub[0])
        return why_fail(why, len, "the token has no sub claim");
    if (!subject_ok(cl->sub))
        return why_fail(why, len,
                        "the token's sub holds spaces or characters outside printable "
                        "ASCII");
    return 0;
}

static jwt_cached *cache_slot(keyring *k, const unsigned char *h)
{
    uint64_t x;
    memcpy(&x, h, sizeof x);
    return &k->cache[x % k->ncache];
}

/* A verified token seen before: 1 with *out filled, 0 when not cached, or
 * CXM_EAUTH when it has expired since. */
static int cache_get(const cxm_auth *a, keyring *k, const unsigned char *h, int64_t now,
                     cxm_principal *out, char *why, size_t whylen)
{
    if (!k->ncache)
        return 0;
    pthread_mutex_lock(&k->cache_mu);
    jwt_cached e = *cache_slot(k, h);
    pthread_mutex_unlock(&k->cache_mu);
    if (!e.used || CRYPTO_memcmp(e.hash, h, sizeof e.hash) != 0)
        return 0;
    int rc = check_times(a, e.exp, e.has_nbf, e.nbf, now, why, whylen);
    if (rc != 0)
        return rc;
    *out = e.p;
    return 1;
}

static void cache_put(keyring *k, const unsigned char *h, const claims *cl, const cxm_principal *p)
{
    if (!k->ncache)
        return;
    jwt_cached e = {.used = true, .has_nbf = cl->has_nbf, .exp = cl->exp, .nbf = cl->nbf, .p = *p};
    memcpy(e.hash, h, sizeof e.hash);
    pthread_mutex_lock(&k->cache_mu);
    *cache_slot(k, h) = e;
    pthread_mutex_unlock(&k->cache_mu);
}

static int check_jwt(cxm_auth *a, keyring *k, const unsigned char *hash, const char *tok,
                     size_t len, int64_t now, cxm_principal *out, char *why, size_t whylen)
{
    int hit = cache_get(a, k, hash, now, out, why, whylen);
    if (hit != 0)
        return hit > 0 ? 0 : hit;
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return why_fail(why, whylen, "malformed token (a JWT has three dot-separated parts)");
    size_t hl = (size_t)(d1 - tok), pl = (size_t)(d2 - d1 - 1), sl = len - (size_t)(d2 + 1 - tok);
    unsigned char hdr[CXM_AUTH_TOKEN_MAX], body[CXM_AUTH_TOKEN_MAX], sig[CXM_AUTH_TOKEN_MAX];
    long hn = b64url_decode(tok, hl, hdr), pn = b64url_decode(d1 + 1, pl, body),
         sn = b64url_decode(d2 + 1, sl, sig);
    if (hn < 0 || pn < 0 || sn < 0)
        return why_fail(why, whylen, "malformed token (a part is not base64url)");
    claims h = {0}, cl = {0};
    if (!parse_claims(hdr, (size_t)hn, &h, NULL))
        return why_fail(why, whylen, "malformed token (the header is not a JSON object)");
    if (strcmp(h.alg, "none") == 0 || !h.alg[0])
        return why_fail(why, whylen, "unsigned tokens (alg none) are refused");
    if (a->alg == ALG_NONE || strcmp(h.alg, alg_name(a->alg)) != 0)
        return why_fail(why, whylen, "the token is signed with %.15s; this server accepts only %s",
                        h.alg, a->alg == ALG_NONE ? "static tokens" : alg_name(a->alg));
    if (!verify_signature(k, a->alg, tok, (size_t)(d2 - tok), sig, (size_t)sn))
        return why_fail(why, whylen, "the token's signature does not verify");
    if (!parse_claims(body, (size_t)pn, &cl, a->audience))
        return why_fail(why, whylen, "malformed token (the claims are not a JSON object)");
    int rc = check_claims(a, &cl, now, why, whylen);
    if (rc != 0)
        return rc;
    snprintf(out->subject, sizeof out->subject, "%s", cl.sub);
    out->scopes = cl.scopes;
    cache_put(k, hash, &cl, out);
    return 0;
}

/* Every line is compared, so the time taken does not tell which matched. */
static bool check_static(const keyring *k, const unsigned char *h, cxm_principal *out)
{
    const static_token *hit = NULL;
    for (size_t i = 0; i < k->ntokens; i++)
        if (CRYPTO_memcmp(h, k->tokens[i].hash, SHA256_DIGEST_LENGTH) == 0)
            hit = &k->tokens[i];
    if (!hit)
        return false;
    snprintf(out->subject, sizeof out->subject, "%s", hit->subject);
    out->scopes = hit->scopes;
    return true;
}

int cxm_auth_check_token(cxm_auth *a, const char *tok, size_t len, int64_t now_s,
                         cxm_principal *out, char *why, size_t whylen)
{
    if (len == 0)
        return why_fail(why, whylen, "the bearer token is empty");
    if (len > CXM_AUTH_TOKEN_MAX)
        return why_fail(why, whylen, "the bearer token is longer than %d bytes",
                        CXM_AUTH_TOKEN_MAX);
    maybe_reload(a, now_s);
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)tok, len, h);
    pthread_rwlock_rdlock(&a->lock);
    int rc;
    cxm_principal p = {0};
    if (check_static(a->keys, h, &p))
        rc = 0;
    else if (a->key_file && memchr(tok, '.', len))
        rc = check_jwt(a, a->keys, h, tok, len, now_s, &p, why, whylen);
    else
        rc = why_fail(why, whylen, "the bearer token is not valid");
    pthread_rwlock_unlock(&a->lock);
    if (rc == 0)
        *out = p;
    return rc;
}

int cxm_auth_check(cxm_auth *a, const char *value, size_t len, int64_t now_s, cxm_principal *out,
                   char *why, size_t whylen)
{
    if (!value || len == 0)
        return why_fail(why, whylen,
                        "missing credentials: send \"authorization: Bearer <token>\" metadata");
    if (len < 7 || strncasecmp(value, "Bearer ", 7) != 0)
        return why_fail(why, whylen,
                        "malformed authorization metadata: expected \"Bearer <token>\"");
    value += 7;
    len -= 7;
    while (len && *value == ' ') {
        value++;
        len--;
    }
    return cxm_auth_check_token(a, value, len, now_s, out, why, whylen);
}

/* ---- rate limits ---- */

static rate_slot *rate_find(cxm_auth *a, uint64_t key, int64_t now_ms)
{
    size_t base = (size_t)(key % a->nslots);
    rate_slot *victim = NULL;
    for (size_t i = 0; i < RATE_PROBE; i++) {
        rate_slot *s = &a->slots[(base + i) % a->nslots];
        if (s->key == key)
            return s;
        bool better = !victim || (s->key == 0 && victim->key != 0) ||
                      (victim->key != 0 && s->last_ms < victim->last_ms);
        if (better)
            victim = s;
    }
    /* A new subject takes a free slot or the least recently seen one of
     * its probe window: the table never grows. */
    victim->key = key;
    victim->tokens = a->rate_burst;
    victim->last_ms = now_ms;
    return victim;
}

int cxm_auth_rate(cxm_auth *a, const char *subject, int64_t now_ms, int64_t *retry_ms)
{
    if (!a || a->rate_rps <= 0)
        return 0;
    uint64_t key = cxm_hash(CXM_HASH_INIT, subject, strlen(subject));
    key = key ? key : 1;
    pthread_mutex_lock(&a->rate_mu);
    rate_slot *s = rate_find(a, key, now_ms);
    if (now_ms > s->last_ms) {
        s->tokens =
            fmin(a->rate_burst, s->tokens + (double)(now_ms - s->last_ms) * a->rate_rps / 1000.0);
        s->last_ms = now_ms;
    }
    int rc = 0;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
    } else {
        *retry_ms = (int64_t)ceil((1.0 - s->tokens) * 1000.0 / a->rate_rps);
        rc = CXM_ELIMIT;
    }
    pthread_mutex_unlock(&a->rate_mu);
    return rc;
}
