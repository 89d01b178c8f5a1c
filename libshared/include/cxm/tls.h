/*
 * tls.h - TLS certificates for the server runtime and the clients: loading
 * and checking PEM files, and a server certificate that is reloaded without
 * a restart.
 *
 * A server's certificate (and, for mutual TLS, the CA its clients'
 * certificates must chain to) is read and checked with OpenSSL before gRPC
 * sees it, so that a missing file, an unreadable one or a key that does not
 * match the certificate is reported by name instead of as a handshake that
 * fails later. gRPC core asks for the certificate through a fetcher on every
 * new connection; cxm_tls_server_reload() replaces what the fetcher hands
 * out. Connections already open keep the certificate they were made with. A
 * reload that fails (a file half written, a key not matching) keeps the
 * certificate in use and logs why ("tls.reload_failed"), once per change of
 * the files.
 *
 * Threading: cxm_tls_server_reload may run on any thread while gRPC's
 * threads fetch; everything else is start-up and shut-down.
 */
#ifndef CXM_TLS_H
#define CXM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <grpc/grpc_security.h>

/* Read a whole PEM file (at most 1 MiB) into a NUL-terminated malloc'ed
 * string (*out; free() it). what names the file in the error ("--tls-cert
 * /etc/cxm/server.pem"). Returns 0, CXM_ENOTFOUND (missing), CXM_EPERM
 * (unreadable), CXM_ETOOBIG or CXM_EIO, with a sentence in err. */
int cxm_tls_read_pem(const char *what, const char *path, char **out, char *err, size_t errlen);

/* Check that cert_pem holds a certificate and key_pem the private key of
 * that certificate (unencrypted). cert_what/key_what name them in err.
 * Returns 0 or CXM_EINVAL. */
int cxm_tls_check_pair(const char *cert_pem, const char *key_pem, const char *cert_what,
                       const char *key_what, char *err, size_t errlen);

/* Check that pem holds at least one certificate (a CA file). Returns 0 or
 * CXM_EINVAL with a sentence naming what. */
int cxm_tls_check_ca(const char *pem, const char *what, char *err, size_t errlen);

typedef struct cxm_tls_server cxm_tls_server;

typedef struct cxm_tls_server_opts {
    const char *cert;      /* PEM certificate chain, leaf first; required */
    const char *key;       /* PEM private key of the leaf; required */
    const char *client_ca; /* PEM CA(s): when set, clients must present a
                              certificate signed by one of them (mTLS) */
} cxm_tls_server_opts;

/* Load and check the files. Returns 0, or a CXM_E* code with a sentence in
 * err naming the flag and file (see cxm_tls_read_pem, cxm_tls_check_pair).
 * An expired certificate is accepted but logged ("tls.cert_expired"). */
int cxm_tls_server_open(const cxm_tls_server_opts *opts, cxm_tls_server **out, char *err,
                        size_t errlen);

/* gRPC server credentials that fetch the current certificate on every new
 * connection. The caller releases them (grpc_server_credentials_release);
 * the cxm_tls_server must outlive the grpc_server they are added to. */
grpc_server_credentials *cxm_tls_server_credentials(cxm_tls_server *t);

/* Read the files again and, when they load and check, hand the new
 * certificate to new connections. With force false (a periodic poll) the
 * files are read only when one of them changed (mtime, size or inode) since
 * the last attempt; force (SIGHUP) reads them regardless. Returns 1 when a
 * new certificate was installed, 0 when nothing changed, or a CXM_E* code
 * after logging why the old certificate stays. */
int cxm_tls_server_reload(cxm_tls_server *t, bool force);

/* After the grpc_server that used the credentials was destroyed. */
void cxm_tls_server_close(cxm_tls_server *t);

#endif
