/*
 * cxm-test-jwt - mint a JWT for tests and benchmarks, or time its check.
 *
 *   cxm-test-jwt mint ALG KEY SUB SCOPE EXP_IN_S
 *       ALG HS256 (KEY: the secret file) or RS256/ES256 (KEY: a private key
 *       PEM); prints the token.
 *   cxm-test-jwt keygen ALG PRIVATE_PEM PUBLIC_PEM
 *   cxm-test-jwt time ALG KEY_FOR_SERVER TOKEN N
 *       checks TOKEN N times with auth.h as the server would (KEY_FOR_SERVER:
 *       the secret file or the public key PEM; with ALG "static", a token
 *       file), with the verified-token cache off and on, and prints ns per
 *       check.
 *
 * Not installed: a test tool. An identity provider mints real tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/auth.h"
#include "jwt_mint.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int mint(char **argv)
{
    const char *alg = argv[2];
    char payload[1024];
    snprintf(payload, sizeof payload, "{\"sub\":\"%s\",\"scope\":\"%s\",\"exp\":%lld}", argv[4],
             argv[5], (long long)time(NULL) + atoll(argv[6]));
    char header[64];
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    char *tok = NULL;
    if (strcmp(alg, "HS256") == 0) {
        size_t n = 0;
        char *secret = slurp(argv[3], &n);
        tok = secret ? jwt_mint(alg, header, payload, secret, n, NULL) : NULL;
    } else {
        EVP_PKEY *key = jwt_mint_read_private(argv[3]);
        tok = key ? jwt_mint(alg, header, payload, NULL, 0, key) : NULL;
        EVP_PKEY_free(key);
    }
    if (!tok) {
        fprintf(stderr, "cxm-test-jwt: cannot sign with %s\n", argv[3]);
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

/* ns per check of tok, n times, with the verified-token cache off or on. */
static int time_one(char **argv, int64_t cache, const char *label)
{
    cxm_auth_opts o = {
        .jwt_key_file = argv[3], .jwt_alg = argv[2], .clock_skew_s = -1, .jwt_cache = cache};
    if (strcmp(argv[2], "static") == 0) /* KEY_FOR_SERVER is a token file */
        o = (cxm_auth_opts){.tokens_file = argv[3]};
    cxm_auth *a = NULL;
    char err[512];
    if (cxm_auth_create(&o, &a, err, sizeof err) != 0) {
        fprintf(stderr, "cxm-test-jwt: %s\n", err);
        return 1;
    }
    const char *tok = argv[4];
    long n = atol(argv[5]);
    cxm_principal p;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t now = (int64_t)time(NULL);
    int rc = 0;
    for (long i = 0; i < n && rc == 0; i++)
        rc = cxm_auth_check_token(a, tok, strlen(tok), now, &p, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cxm_auth_destroy(a);
    if (rc != 0) {
        fprintf(stderr, "cxm-test-jwt: the token does not check: %s\n", err);
        return 1;
    }
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
                (double)(n > 0 ? n : 1);
    printf("%s %s: %.0f ns per check\n", argv[2], label, ns);
    return 0;
}

static int time_checks(char **argv)
{
    if (strcmp(argv[2], "static") == 0) /* nothing to cache */
        return time_one(argv, -1, "token file");
    int rc = time_one(argv, -1, "verified every time");
    return rc ? rc : time_one(argv, 0, "cached after the first");
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "mint") == 0)
        return mint(argv);
    if (argc == 5 && strcmp(argv[1], "keygen") == 0) {
        EVP_PKEY *k = jwt_mint_keypair(argv[2]);
        int rc =
            k && jwt_mint_write_private(k, argv[3]) == 0 && jwt_mint_write_public(k, argv[4]) == 0
                ? 0
                : 1;
        EVP_PKEY_free(k);
        return rc;
    }
    if (argc == 6 && strcmp(argv[1], "time") == 0)
        return time_checks(argv);
    fprintf(stderr, "usage: cxm-test-jwt mint ALG KEY SUB SCOPE EXP_IN_S\n"
                    "       cxm-test-jwt keygen RS256|ES256 PRIVATE_PEM PUBLIC_PEM\n"
                    "       cxm-test-jwt time ALG|static SERVER_KEY TOKEN N\n");
    return 2;
}
