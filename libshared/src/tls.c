/*
 * tls.c - TLS certificate loading, checking and reloading (see cxm/tls.h).
 *
 * gRPC core copies the PEM strings of every config the fetcher returns and
 * owns that config, so the fetcher builds a fresh one whenever the
 * generation it last handed out is older than the loaded one; between
 * reloads it answers UNCHANGED, which costs a mutex per handshake.
 */
#include "cxm/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cxm/err.h"
#include "cxm/log.h"

#define PEM_MAX (1u << 20)

int cxm_tls_read_pem(const char *what, const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot open: %s", what, strerror(e));
        return e == ENOENT ? CXM_ENOTFOUND : e == EACCES ? CXM_EPERM : CXM_EIO;
    }
    char *buf = malloc(PEM_MAX + 1);
    size_t n = buf ? fread(buf, 1, PEM_MAX + 1, f) : 0;
    int rc = 0;
    if (!buf)
        rc = CXM_ENOMEM;
    else if (ferror(f))
        rc = CXM_EIO;
    else if (n > PEM_MAX)
        rc = CXM_ETOOBIG;
    else if (n == 0)
        rc = CXM_EINVAL;
    fclose(f);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", what,
                 rc == CXM_ETOOBIG  ? "larger than 1 MiB, not a PEM file"
                 : rc == CXM_EINVAL ? "the file is empty"
                                    : cxm_strerror(rc));
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

/* OpenSSL's reason for the last failure, or a fallback; clears its queue so
 * that a later, unrelated failure does not report this one. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : fallback;
}

/* Never prompt for a passphrase: an encrypted key is refused instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static X509 *parse_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    return x;
}

int cxm_tls_check_pair(const char *cert_pem, const char *key_pem, const char *cert_what,
                       const char *key_what, char *err, size_t errlen)
{
    X509 *x = parse_cert(cert_pem);
    if (!x) {
        snprintf(err, errlen, "%s: no PEM certificate in it (%s)", cert_what,
                 ssl_reason("unreadable"));
        return CXM_EINVAL;
    }
    BIO *b = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    int rc = 0;
    if (!k) {
        snprintf(err, errlen, "%s: no unencrypted PEM private key in it (%s)", key_what,
                 ssl_reason("unreadable"));
        rc = CXM_EINVAL;
    } else if (X509_check_private_key(x, k) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "%s does not match the certificate in %s", key_what, cert_what);
        rc = CXM_EINVAL;
    }
    EVP_PKEY_free(k);
    X509_free(x);
    return rc;
}

int cxm_tls_check_ca(const char *pem, const char *what, char *err, size_t errlen)
{
    X509 *ca = parse_cert(pem);
    if (!ca) {
        snprintf(err, errlen, "%s: no PEM certificate in it (%s)", what, ssl_reason("unreadable"));
        return CXM_EINVAL;
    }
    X509_free(ca);
    return 0;
}

/* ---- the reloading server certificate ---- */

/* What a file looked like at the last load attempt. */
typedef struct file_stamp {
    struct timespec mtime;
    off_t size;
    ino_t ino;
    bool present;
} file_stamp;

enum { F_CERT, F_KEY, F_CA, NFILES };

static const char *const flag_names[NFILES] = {"--tls-cert", "--tls-key", "--tls-client-ca"};

struct cxm_tls_server {
    char *path[NFILES]; /* F_CA NULL without mTLS */
    file_stamp stamp[NFILES];
    pthread_mutex_t mu; /* guards pem, generation, served */
    char *pem[NFILES];
    unsigned generation, served;
};

static file_stamp stamp_of(const char *path)
{
    struct stat st;
    file_stamp s = {0};
    if (path && stat(path, &st) == 0)
        s = (file_stamp){st.st_mtim, st.st_size, st.st_ino, true};
    return s;
}

static bool stamp_equal(const file_stamp *a, const file_stamp *b)
{
    return a->present == b->present && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec && a->size == b->size && a->ino == b->ino;
}

static void free_pems(char **pem)
{
    for (int i = 0; i < NFILES; i++)
        free(pem[i]);
}

static void warn_if_expired(const char *cert_pem, const char *path)
{
    X509 *x = parse_cert(cert_pem);
    if (x && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        cxm_log_warn("tls.cert_expired",
                     "the certificate in --tls-cert %s has expired: clients will refuse it", path);
    X509_free(x);
}

/* Read and check the files into pem[]; nothing is kept on failure. */
static int load(const cxm_tls_server *t, char **pem, char *err, size_t errlen)
{
    char what[NFILES][600];
    int rc = 0;
    memset(pem, 0, NFILES * sizeof *pem);
    for (int i = 0; i < NFILES && rc == 0; i++) {
        if (!t->path[i])
            continue;
        snprintf(what[i], sizeof what[i], "%s %s", flag_names[i], t->path[i]);
        rc = cxm_tls_read_pem(what[i], t->path[i], &pem[i], err, errlen);
    }
    if (rc == 0)
        rc = cxm_tls_check_pair(pem[F_CERT], pem[F_KEY], what[F_CERT], what[F_KEY], err, errlen);
    if (rc == 0 && pem[F_CA])
        rc = cxm_tls_check_ca(pem[F_CA], what[F_CA], err, errlen);
    if (rc != 0)
        free_pems(pem);
    else
        warn_if_expired(pem[F_CERT], t->path[F_CERT]);
    return rc;
}

int cxm_tls_server_open(const cxm_tls_server_opts *opts, cxm_tls_server **out, char *err,
                        size_t errlen)
{
    cxm_tls_server *t = calloc(1, sizeof *t);
    if (!t)
        return CXM_ENOMEM;
    const char *paths[NFILES] = {opts->cert, opts->key, opts->client_ca};
    for (int i = 0; i < NFILES; i++) {
        t->path[i] = paths[i] && *paths[i] ? strdup(paths[i]) : NULL;
        t->stamp[i] = stamp_of(t->path[i]);
    }
    int rc = load(t, t->pem, err, errlen);
    if (rc != 0) {
        for (int i = 0; i < NFILES; i++)
            free(t->path[i]);
        free(t);
        return rc;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->generation = 1;
    *out = t;
    return 0;
}

/* Called by gRPC on every new connection (and once when the port is added,
 * which must yield a config). */
static grpc_ssl_certificate_config_reload_status fetch(void *user,
                                                       grpc_ssl_server_certificate_config **cfg)
{
    cxm_tls_server *t = user;
    grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&t->mu);
    if (t->served != t->generation) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = t->pem[F_KEY],
                                           .cert_chain = t->pem[F_CERT]};
        /* gRPC asserts that the client CA list is set even when it asks
         * clients for no certificate; the server's own chain stands in
         * then, never used to verify anything. */
        const char *ca = t->pem[F_CA] ? t->pem[F_CA] : t->pem[F_CERT];
        *cfg = grpc_ssl_server_certificate_config_create(ca, &pair, 1);
        st =
            *cfg ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
        if (*cfg)
            t->served = t->generation;
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

grpc_server_credentials *cxm_tls_server_credentials(cxm_tls_server *t)
{
    grpc_ssl_client_certificate_request_type req =
        t->path[F_CA] ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, t);
    return o ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

int cxm_tls_server_reload(cxm_tls_server *t, bool force)
{
    if (!t)
        return 0;
    bool changed = false;
    for (int i = 0; i < NFILES; i++) {
        file_stamp now = stamp_of(t->path[i]);
        changed |= !stamp_equal(&now, &t->stamp[i]);
        t->stamp[i] = now;
    }
    if (!force && !changed)
        return 0;
    char err[700];
    char *pem[NFILES];
    int rc = load(t, pem, err, sizeof err);
    if (rc != 0) {
        cxm_log_error("tls.reload_failed", "keeping the certificate in use: %s", err);
        return rc;
    }
    pthread_mutex_lock(&t->mu);
    char *old[NFILES];
    memcpy(old, t->pem, sizeof old);
    memcpy(t->pem, pem, sizeof pem);
    t->generation++;
    pthread_mutex_unlock(&t->mu);
    free_pems(old);
    cxm_log_info("tls.reloaded", "new connections use the certificate in %s%s%s", t->path[F_CERT],
                 t->path[F_CA] ? " and client CA " : "", t->path[F_CA] ? t->path[F_CA] : "");
    return 1;
}

void cxm_tls_server_close(cxm_tls_server *t)
{
    if (!t)
        return;
    free_pems(t->pem);
    for (int i = 0; i < NFILES; i++)
        free(t->path[i]);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
