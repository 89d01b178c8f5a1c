/*
 * jwt_mint.c - JWTs and keys for tests (see jwt_mint.h).
 */
#include "jwt_mint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

EVP_PKEY *jwt_mint_keypair(const char *alg)
{
    if (strcmp(alg, "RS256") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int write_pem(EVP_PKEY *key, const char *path, int private)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = private ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_PUBKEY(f, key);
    return fclose(f) == 0 && ok ? 0 : -1;
}

int jwt_mint_write_public(EVP_PKEY *key, const char *path)
{
    return write_pem(key, path, 0);
}

int jwt_mint_write_private(EVP_PKEY *key, const char *path)
{
    return write_pem(key, path, 1);
}

EVP_PKEY *jwt_mint_read_private(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

char *jwt_mint_b64url(const void *data, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    char *out = malloc(n / 3 * 4 + 5);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = abc[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = abc[v & 63];
    }
    out[o] = '\0';
    return out;
}

/* ES256 wants r||s, 32 bytes each; OpenSSL signs DER. */
static size_t der_to_raw(const unsigned char *der, size_t len, unsigned char *raw)
{
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &der, (long)len);
    if (!s)
        return 0;
    const BIGNUM *r, *ss;
    ECDSA_SIG_get0(s, &r, &ss);
    int ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(ss, raw + 32, 32) == 32;
    ECDSA_SIG_free(s);
    return ok ? 64 : 0;
}

static size_t sign(const char *alg, const char *input, const void *secret, size_t secret_len,
                   EVP_PKEY *key, unsigned char *sig, size_t cap)
{
    if (strcmp(alg, "none") == 0)
        return 0;
    if (strcmp(alg, "HS256") == 0) {
        unsigned int n = 0;
        HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)input, strlen(input),
             sig, &n);
        return n;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t n = cap;
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSign(ctx, sig, &n, (const unsigned char *)input, strlen(input)) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return 0;
    if (strcmp(alg, "ES256") == 0) {
        unsigned char raw[64];
        n = der_to_raw(sig, n, raw);
        memcpy(sig, raw, n);
    }
    return n;
}

char *jwt_mint(const char *alg, const char *header_json, const char *payload_json,
               const void *secret, size_t secret_len, EVP_PKEY *key)
{
    char *h = jwt_mint_b64url(header_json, strlen(header_json));
    char *p = jwt_mint_b64url(payload_json, strlen(payload_json));
    size_t n = strlen(h) + strlen(p) + 2;
    char *input = malloc(n);
    snprintf(input, n, "%s.%s", h, p);
    unsigned char sig[1024];
    size_t sl = sign(alg, input, secret, secret_len, key, sig, sizeof sig);
    char *s = jwt_mint_b64url(sig, sl);
    size_t total = n + strlen(s) + 1;
    char *out = malloc(total);
    snprintf(out, total, "%s.%s", input, s);
    free(h);
    free(p);
    free(input);
    free(s);
    return out;
}
