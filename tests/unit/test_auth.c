/*
 * test_auth.c - auth.h: JWTs (HS256, RS256, ES256) made here with OpenSSL,
 * every way one can be wrong, the token file, scopes and the rate limit.
 */
#include "cxm/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cxm/err.h"
#include "jwt_mint.h"

#define SECRET "0123456789abcdef0123456789abcdef-test-secret"
#define NOW 1800000000LL

static char dir[] = "/tmp/cxm-test-auth-XXXXXX";

static char *path_of(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static cxm_auth *make(const cxm_auth_opts *o)
{
    cxm_auth *a = NULL;
    char err[512] = "";
    int rc = cxm_auth_create(o, &a, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "cxm_auth_create: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    return a;
}

/* Check a bare token; returns the code, why in why (may be NULL). */
static int check_tok(cxm_auth *a, const char *tok, int64_t now, cxm_principal *p, char *why)
{
    char buf[512] = "";
    cxm_principal dummy;
    int rc = cxm_auth_check_token(a, tok, strlen(tok), now, p ? p : &dummy, buf, sizeof buf);
    if (why)
        snprintf(why, 512, "%s", buf);
    /* Whatever went wrong, the message never echoes the token. */
    CHECK(strlen(tok) < 8 || strstr(buf, tok) == NULL);
    return rc;
}

static char *claims(const char *extra, int64_t exp)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "{\"sub\":\"svc-a\",\"exp\":%lld%s}", (long long)exp, extra);
    return buf;
}

static void test_hs256(void)
{
    write_text(path_of("hs.key"), SECRET "\n");
    cxm_auth_opts o = {.jwt_key_file = path_of("hs.key"),
                       .jwt_alg = "HS256",
                       .jwt_issuer = "https://idp.example",
                       .jwt_audience = "cxm",
                       .clock_skew_s = -1};
    cxm_auth *a = make(&o);
    if (!a)
        return;
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *good = jwt_mint("HS256", hdr,
                          claims(",\"iss\":\"https://idp.example\",\"aud\":[\"x\",\"cxm\"],"
                                 "\"scope\":\"profile:read journey:write other:thing\","
                                 "\"nested\":{\"a\":[1,2,{\"b\":null}]},\"ok\":true",
                                 NOW + 3600),
                          SECRET, strlen(SECRET), NULL);
    cxm_principal p;
    char why[512];
    CHECK_EQ_INT(check_tok(a, good, NOW, &p, why), 0);
    CHECK_EQ_STR(p.subject, "svc-a");
    CHECK_EQ_INT(p.scopes, CXM_SCOPE_PROFILE_READ | CXM_SCOPE_JOURNEY_WRITE);

    /* Through the header, as the server sees it. */
    char hv[4096];
    snprintf(hv, sizeof hv, "Bearer %s", good);
    CHECK_EQ_INT(cxm_auth_check(a, hv, strlen(hv), NOW, &p, why, sizeof why), 0);
    CHECK_EQ_INT(cxm_auth_check(a, NULL, 0, NOW, &p, why, sizeof why), CXM_EAUTH);
    CHECK(strstr(why, "missing credentials") != NULL);
    snprintf(hv, sizeof hv, "Basic %s", good);
    CHECK_EQ_INT(cxm_auth_check(a, hv, strlen(hv), NOW, &p, why, sizeof why), CXM_EAUTH);
    CHECK(strstr(why, "Bearer") != NULL && strstr(why, good) == NULL);

    /* Time: expired beyond the skew, within it, not yet valid. */
    const char *iss_aud = ",\"iss\":\"https://idp.example\",\"aud\":\"cxm\"";
    char *old = jwt_mint("HS256", hdr, claims(iss_aud, NOW - 61), SECRET, strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, old, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "expired") != NULL);
    char *skew = jwt_mint("HS256", hdr, claims(iss_aud, NOW - 30), SECRET, strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, skew, NOW, NULL, why), 0);
    char nbf_claims[256];
    snprintf(nbf_claims, sizeof nbf_claims, "%s,\"nbf\":%lld", iss_aud, NOW + 600);
    char *early =
        jwt_mint("HS256", hdr, claims(nbf_claims, NOW + 3600), SECRET, strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, early, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "not valid yet") != NULL);
    char *noexp = jwt_mint("HS256", hdr, "{\"sub\":\"x\",\"iss\":\"https://idp.example\"}", SECRET,
                           strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, noexp, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "exp") != NULL);

    /* Issuer and audience. */
    char *wrong_iss = jwt_mint("HS256", hdr, claims(",\"iss\":\"evil\",\"aud\":\"cxm\"", NOW + 60),
                               SECRET, strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, wrong_iss, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "issuer") != NULL);
    char *wrong_aud = jwt_mint(
        "HS256", hdr, claims(",\"iss\":\"https://idp.example\",\"aud\":[\"other\"]", NOW + 60),
        SECRET, strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, wrong_aud, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "audience") != NULL);

    /* Signatures: another secret, a changed payload. */
    const char *other = "another-secret-of-more-than-32-bytes!!";
    char *forged = jwt_mint("HS256", hdr, claims(iss_aud, NOW + 60), other, strlen(other), NULL);
    CHECK_EQ_INT(check_tok(a, forged, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "signature") != NULL);
    char *tampered = strdup(good);
    char *dot = strchr(tampered, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(check_tok(a, tampered, NOW, NULL, why), CXM_EAUTH);

    /* alg none, and an alg other than the configured one. */
    char *none = jwt_mint("none", "{\"alg\":\"none\"}", claims(iss_aud, NOW + 60), NULL, 0, NULL);
    CHECK_EQ_INT(check_tok(a, none, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "alg none") != NULL);
    char *rs_hdr = jwt_mint("HS256", "{\"alg\":\"RS256\"}", claims(iss_aud, NOW + 60), SECRET,
                            strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, rs_hdr, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "accepts only HS256") != NULL);

    /* Malformed: base64, JSON, parts, size. */
    CHECK_EQ_INT(check_tok(a, "abc.d*f.ghi", NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "base64url") != NULL);
    CHECK_EQ_INT(check_tok(a, "a.b", NOW, NULL, why), CXM_EAUTH);
    CHECK_EQ_INT(check_tok(a, "a.b.c.d", NOW, NULL, why), CXM_EAUTH);
    char *bad_json =
        jwt_mint("HS256", "{\"alg\":\"HS256\"", claims("", NOW + 60), SECRET, strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, bad_json, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "header") != NULL);
    char *bad_body =
        jwt_mint("HS256", hdr, "{\"sub\":\"x\",\"exp\":1e99999}", SECRET, strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, bad_body, NOW, NULL, why), CXM_EAUTH);
    char deep[200];
    memset(deep, '[', 100);
    snprintf(deep + 100, sizeof deep - 100, "%s", "]}");
    char deep_json[300];
    snprintf(deep_json, sizeof deep_json, "{\"sub\":\"x\",\"exp\":%lld,\"d\":%s", NOW + 60, deep);
    char *deep_tok = jwt_mint("HS256", hdr, deep_json, SECRET, strlen(SECRET), NULL);
    CHECK_EQ_INT(check_tok(a, deep_tok, NOW, NULL, why), CXM_EAUTH);
    size_t huge_len = CXM_AUTH_TOKEN_MAX * 4;
    char *huge = malloc(huge_len + 1);
    memset(huge, 'A', huge_len);
    huge[huge_len] = '\0';
    huge[100] = huge[200] = '.';
    CHECK_EQ_INT(check_tok(a, huge, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "longer than") != NULL);
    CHECK_EQ_INT(check_tok(a, "", NOW, NULL, why), CXM_EAUTH);

    /* A rotated key: the token verified (and cached) under the old one is
     * refused from the reload on. */
    CHECK_EQ_INT(check_tok(a, good, NOW + 1, &p, why), 0);
    write_text(path_of("hs.key"), "a-completely-different-secret-of-48-bytes-length\n");
    CHECK_EQ_INT(check_tok(a, good, NOW + 5, &p, why), CXM_EAUTH);
    CHECK(strstr(why, "signature") != NULL);
    write_text(path_of("hs.key"), SECRET "\n");

    char *all[] = {good,     old,  skew,   early,    noexp,    wrong_iss, wrong_aud, forged,
                   tampered, none, rs_hdr, bad_json, bad_body, deep_tok,  huge};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    cxm_auth_destroy(a);
}

/* RS256 and ES256 with public keys made here; an HS256 token signed with
 * the public key as its secret (the classic key confusion) is refused. */
static void test_asymmetric(const char *alg)
{
    EVP_PKEY *key = jwt_mint_keypair(alg);
    CHECK(key != NULL);
    char name[32];
    snprintf(name, sizeof name, "%s.pub", alg);
    CHECK_EQ_INT(jwt_mint_write_public(key, path_of(name)), 0);
    cxm_auth_opts o = {.jwt_key_file = path_of(name), .jwt_alg = alg, .clock_skew_s = 0};
    cxm_auth *a = make(&o);
    if (!a)
        return;
    char hdr[64];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"k1\"}", alg);
    char *good =
        jwt_mint(alg, hdr, claims(",\"scp\":[\"reco:read\",\"admin\"]", NOW + 10), NULL, 0, key);
    cxm_principal p;
    char why[512];
    CHECK_EQ_INT(check_tok(a, good, NOW, &p, why), 0);
    CHECK_EQ_INT(p.scopes, CXM_SCOPE_RECO_READ | CXM_SCOPE_ADMIN);
    /* No skew configured: one second late is late. */
    CHECK_EQ_INT(check_tok(a, good, NOW + 11, &p, why), CXM_EAUTH);

    EVP_PKEY *other = jwt_mint_keypair(alg);
    char *forged = jwt_mint(alg, hdr, claims("", NOW + 10), NULL, 0, other);
    CHECK_EQ_INT(check_tok(a, forged, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "signature") != NULL);

    FILE *f = fopen(path_of(name), "r");
    char pem[4096] = "";
    size_t n = f ? fread(pem, 1, sizeof pem - 1, f) : 0;
    pem[n] = '\0';
    if (f)
        fclose(f);
    char *confused =
        jwt_mint("HS256", "{\"alg\":\"HS256\"}", claims("", NOW + 10), pem, strlen(pem), NULL);
    CHECK_EQ_INT(check_tok(a, confused, NOW, NULL, why), CXM_EAUTH);
    CHECK(strstr(why, "accepts only") != NULL);

    /* The other asymmetric alg's key type is refused at start. */
    cxm_auth_opts wrong = o;
    wrong.jwt_alg = strcmp(alg, "RS256") == 0 ? "ES256" : "RS256";
    cxm_auth *w = NULL;
    CHECK_EQ_INT(cxm_auth_create(&wrong, &w, why, sizeof why), CXM_EINVAL);
    CHECK(strstr(why, "key") != NULL);

    free(good);
    free(forged);
    free(confused);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    cxm_auth_destroy(a);
}

static void test_token_file(void)
{
    write_text(path_of("tokens"), "# who may call\n"
                                  "\n"
                                  "tok-frontend-0123456789 frontend profile:read,profile:write\n"
                                  "  tok-journey-0123456789   journey-svc internal  \n"
                                  "tok-ops-0123456789abcdef ops admin\n");
    cxm_auth_opts o = {.tokens_file = path_of("tokens")};
    cxm_auth *a = make(&o);
    if (!a)
        return;
    cxm_principal p;
    char why[512];
    CHECK_EQ_INT(check_tok(a, "tok-frontend-0123456789", NOW, &p, why), 0);
    CHECK_EQ_STR(p.subject, "frontend");
    CHECK_EQ_INT(p.scopes, CXM_SCOPE_PROFILE_READ | CXM_SCOPE_PROFILE_WRITE);
    CHECK_EQ_INT(check_tok(a, "tok-journey-0123456789", NOW, &p, why), 0);
    CHECK_EQ_STR(p.subject, "journey-svc");
    CHECK_EQ_INT(check_tok(a, "tok-frontend-012345678", NOW, &p, why), CXM_EAUTH);
    CHECK_EQ_INT(check_tok(a, "tok-frontend-0123456789x", NOW, &p, why), CXM_EAUTH);
    /* No JWT key: a dotted token is just not valid. */
    CHECK_EQ_INT(check_tok(a, "a.b.c", NOW, &p, why), CXM_EAUTH);

    /* A changed file is picked up (checked at most once a second). */
    write_text(path_of("tokens"), "tok-new-0123456789abcdef newcomer journey:read\n");
    CHECK_EQ_INT(check_tok(a, "tok-new-0123456789abcdef", NOW + 5, &p, why), 0);
    CHECK_EQ_STR(p.subject, "newcomer");
    CHECK_EQ_INT(check_tok(a, "tok-frontend-0123456789", NOW + 5, &p, why), CXM_EAUTH);
    /* A broken rewrite keeps the previous tokens. */
    write_text(path_of("tokens"), "tok-new-0123456789abcdef newcomer journey:raed,x\n");
    CHECK_EQ_INT(check_tok(a, "tok-new-0123456789abcdef", NOW + 10, &p, why), 0);
    cxm_auth_destroy(a);

    const char *bad[] = {"tok-0123456789abcdef onlytwo\n", "short sub admin\n",
                         "tok-0123456789abcdef sub profile:reed\n",
                         "tok-0123456789abcdef sub admin extra\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path_of("bad-tokens"), bad[i]);
        cxm_auth_opts b = {.tokens_file = path_of("bad-tokens")};
        cxm_auth *x = NULL;
        CHECK_EQ_INT(cxm_auth_create(&b, &x, why, sizeof why), CXM_EINVAL);
        CHECK(strstr(why, "line 1") != NULL);
    }
}

static void test_config_errors(void)
{
    char why[512];
    cxm_auth *a = NULL;
    cxm_auth_opts none = {0};
    CHECK_EQ_INT(cxm_auth_create(&none, &a, why, sizeof why), CXM_EINVAL);
    CHECK(strstr(why, "no credentials") != NULL);
    cxm_auth_opts no_alg = {.jwt_key_file = path_of("hs.key")};
    CHECK_EQ_INT(cxm_auth_create(&no_alg, &a, why, sizeof why), CXM_EINVAL);
    CHECK(strstr(why, "--auth-jwt-alg") != NULL);
    cxm_auth_opts bad_alg = {.jwt_key_file = path_of("hs.key"), .jwt_alg = "none"};
    CHECK_EQ_INT(cxm_auth_create(&bad_alg, &a, why, sizeof why), CXM_EINVAL);
    write_text(path_of("short.key"), "too-short\n");
    cxm_auth_opts short_key = {.jwt_key_file = path_of("short.key"), .jwt_alg = "HS256"};
    CHECK_EQ_INT(cxm_auth_create(&short_key, &a, why, sizeof why), CXM_EINVAL);
    CHECK(strstr(why, "32 bytes") != NULL);
    cxm_auth_opts missing = {.tokens_file = path_of("no-such-file")};
    CHECK_EQ_INT(cxm_auth_create(&missing, &a, why, sizeof why), CXM_EINVAL);
    cxm_auth_opts iss_only = {.tokens_file = path_of("tokens"), .jwt_issuer = "x"};
    CHECK_EQ_INT(cxm_auth_create(&iss_only, &a, why, sizeof why), CXM_EINVAL);
}

static void test_access(void)
{
    cxm_principal reader = {"r", CXM_SCOPE_PROFILE_READ};
    cxm_principal internal = {"i", CXM_SCOPE_INTERNAL};
    cxm_principal admin = {"a", CXM_SCOPE_ADMIN};
    char why[256];
    CHECK_EQ_INT(cxm_auth_allow(&reader, CXM_ACCESS_READ, "profile", why, sizeof why), 0);
    CHECK_EQ_INT(cxm_auth_allow(&reader, CXM_ACCESS_WRITE, "profile", why, sizeof why), CXM_EPERM);
    CHECK_EQ_STR(why, "requires scope profile:write");
    CHECK_EQ_INT(cxm_auth_allow(&reader, CXM_ACCESS_READ, "journey", why, sizeof why), CXM_EPERM);
    CHECK_EQ_INT(cxm_auth_allow(&reader, CXM_ACCESS_ANY, "journey", why, sizeof why), 0);
    CHECK_EQ_INT(cxm_auth_allow(&reader, CXM_ACCESS_INTERNAL, "profile", why, sizeof why),
                 CXM_EPERM);
    CHECK_EQ_STR(why, "requires scope internal");
    CHECK_EQ_INT(cxm_auth_allow(&internal, CXM_ACCESS_INTERNAL, "profile", why, sizeof why), 0);
    CHECK_EQ_INT(cxm_auth_allow(&internal, CXM_ACCESS_WRITE, "profile", why, sizeof why),
                 CXM_EPERM);
    CHECK_EQ_INT(cxm_auth_allow(&admin, CXM_ACCESS_INTERNAL, "reco", why, sizeof why), 0);
    CHECK_EQ_INT(cxm_auth_allow(&admin, CXM_ACCESS_ADMIN, "reco", why, sizeof why), 0);
    /* A method nobody classified is refused even to admin. */
    CHECK_EQ_INT(cxm_auth_allow(&admin, CXM_ACCESS_UNSET, "reco", why, sizeof why), CXM_EPERM);
    CHECK(cxm_access_audited(CXM_ACCESS_WRITE) && cxm_access_audited(CXM_ACCESS_ADMIN) &&
          cxm_access_audited(CXM_ACCESS_INTERNAL));
    CHECK(!cxm_access_audited(CXM_ACCESS_READ) && !cxm_access_audited(CXM_ACCESS_ADMIN_READ));
    CHECK_EQ_INT(cxm_scope_parse("reco:write", 10), CXM_SCOPE_RECO_WRITE);
    CHECK_EQ_INT(cxm_scope_parse("reco:writer", 11), 0);
}

static void test_rate(void)
{
    write_text(path_of("rate-tokens"), "tok-rate-0123456789abcdef rate reco:read\n");
    cxm_auth_opts o = {.tokens_file = path_of("rate-tokens"),
                       .rate_rps = 10,
                       .rate_burst = 2,
                       .rate_subjects = 16};
    cxm_auth *a = make(&o);
    if (!a)
        return;
    int64_t retry = 0;
    CHECK_EQ_INT(cxm_auth_rate(a, "s", 1000, &retry), 0);
    CHECK_EQ_INT(cxm_auth_rate(a, "s", 1000, &retry), 0);
    CHECK_EQ_INT(cxm_auth_rate(a, "s", 1000, &retry), CXM_ELIMIT);
    CHECK(retry > 0 && retry <= 100);
    CHECK_EQ_INT(cxm_auth_rate(a, "other", 1000, &retry), 0); /* buckets are per subject */
    CHECK_EQ_INT(cxm_auth_rate(a, "s", 1000 + 100, &retry), 0);
    CHECK_EQ_INT(cxm_auth_rate(a, "s", 1000 + 100, &retry), CXM_ELIMIT);
    /* Many subjects: the table stays at its size, new ones still served. */
    char sub[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(sub, sizeof sub, "subject-%d", i);
        CHECK_EQ_INT(cxm_auth_rate(a, sub, 2000 + i, &retry), 0);
    }
    cxm_auth_destroy(a);

    cxm_auth_opts off = {.tokens_file = path_of("rate-tokens")};
    a = make(&off);
    for (int i = 0; a && i < 1000; i++)
        CHECK_EQ_INT(cxm_auth_rate(a, "s", 1000, &retry), 0);
    cxm_auth_destroy(a);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_hs256();
    test_asymmetric("RS256");
    test_asymmetric("ES256");
    test_token_file();
    test_config_errors();
    test_access();
    test_rate();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_report();
}
