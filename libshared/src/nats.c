/*
 * nats.c - the JetStream transport on libnats (see cxm/nats.h).
 *
 * libnats statuses and JetStream error codes become CXM_E* codes in one
 * place, err_from_nats(); every failure path goes through fail() or
 * fail_nats(), which write the thread's sentence.
 */
#include "cxm/nats.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cxm/err.h"
#include "cxm/log.h"

#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_DUP_WINDOW_MS 120000
#define DEFAULT_ACK_WAIT_MS 30000
#define RECONNECT_WAIT_MS 250
#define MAX_ACK_PENDING 65536
#define MAX_FETCH 1000000
#define NAME_MAX_LEN 64
#define MS_TO_NS 1000000LL

struct cxm_nats {
    natsConnection *nc;
    jsCtx *js;
    char *url;
    int timeout_ms, dup_window_ms, ack_wait_ms;
    pthread_mutex_t pub_mu; /* one publish batch at a time */
    /* The first PubAck error of the running batch, written by libnats'
     * callback thread; the batch's count of failures is pub_failed. */
    pthread_mutex_t err_mu;
    size_t pub_failed;
    int pub_err;
    char pub_text[256];
    /* The server's latest "Permissions Violation" on this connection (a
     * publish it refused arrives as an asynchronous -ERR, not as a PubAck),
     * counted so that a batch can tell whether one came while it ran. */
    size_t denials;
    char denied_text[256];
};

struct cxm_nats_sub {
    cxm_nats *n;
    natsSubscription *sub;
    char stream[NAME_MAX_LEN + 8];
    char durable[NAME_MAX_LEN + 1];
};

/* The batch's messages; the arrays cxm_nats_batch points into follow it in
 * the same allocation. */
typedef struct batch_priv {
    cxm_nats_sub *s;
    size_t count, cap;
    natsMsg **msgs;
} batch_priv;

static _Thread_local char last_error[512];

const char *cxm_nats_last_error(void)
{
    return last_error;
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

static int err_from_js(jsErrCode j)
{
    switch (j) {
    case JSStreamNotFoundErr:
    case JSConsumerNotFoundErr:
    case JSNoMessageFoundErr:
        return CXM_ENOTFOUND;
    case JSStreamNameExistErr:
    case JSConsumerNameExistErr:
        return CXM_EEXIST;
    case JSStorageResourcesExceededErr:
    case JSMemoryResourcesExceededErr:
    case JSAccountResourcesExceededErr:
    case JSInsufficientResourcesErr:
    case JSMaximumStreamsLimitErr:
    case JSMaximumConsumersLimitErr:
    case JSStreamLimitsErr:
        return CXM_EFULL;
    case JSStreamMessageExceedsMaximumErr:
        return CXM_ETOOBIG;
    case JSNotEnabledErr:
    case JSNotEnabledForAccountErr:
    case JSClusterNotAvailErr:
    case JSClusterNoPeersErr:
    case JSClusterNotLeaderErr:
        return CXM_EUNAVAIL;
    case JSBadRequestErr:
    case JSStreamSubjectOverlapErr:
    case JSStreamMismatchErr:
        return CXM_EINVAL;
    default:
        return CXM_EIO;
    }
}

/* The one translation of libnats results into CXM_E* codes. */
static int err_from_nats(natsStatus s, jsErrCode j)
{
    switch (s) {
    case NATS_OK:
        return 0;
    case NATS_ERR:
        return j ? err_from_js(j) : CXM_EIO;
    case NATS_TIMEOUT:
        return CXM_EDEADLINE;
    case NATS_NO_MEMORY:
        return CXM_ENOMEM;
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
    case NATS_ADDRESS_MISSING:
    case NATS_INVALID_TIMEOUT:
        return CXM_EINVAL;
    case NATS_NOT_FOUND:
        return CXM_ENOTFOUND;
    case NATS_NOT_PERMITTED:
    case NATS_CONNECTION_AUTH_FAILED:
        return CXM_EPERM;
    case NATS_MAX_PAYLOAD:
        return CXM_ETOOBIG;
    case NATS_SLOW_CONSUMER:
    case NATS_INSUFFICIENT_BUFFER: /* the reconnect buffer is full */
        return CXM_EBUSY;
    case NATS_NO_SERVER:
    case NATS_SECURE_CONNECTION_WANTED:
    case NATS_SECURE_CONNECTION_REQUIRED:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_NO_RESPONDERS:
    case NATS_NOT_YET_CONNECTED:
    case NATS_IO_ERROR:
    case NATS_SSL_ERROR:
    case NATS_DRAINING:
        return CXM_EUNAVAIL;
    default:
        return CXM_EIO;
    }
}

/* Fail with libnats' own text for s appended to what the caller was doing
 * (what), and advice fitting the mapped code. */
static int fail_nats(natsStatus s, jsErrCode j, const char *what)
{
    int code = err_from_nats(s, j);
    natsStatus last = NATS_OK;
    const char *detail = nats_GetLastError(&last);
    if (last != s) /* libnats does not set a text for every status */
        detail = natsStatus_GetText(s);
    bool tls = s == NATS_SSL_ERROR || s == NATS_SECURE_CONNECTION_WANTED ||
               s == NATS_SECURE_CONNECTION_REQUIRED;
    const char *advice = tls ? "TLS failed: check that the server has TLS on, that --nats-tls-ca "
                               "signed its certificate and the URL's host is in it, and the "
                               "client certificate if the server verifies clients"
                         : code == CXM_EUNAVAIL  ? "check that nats-server runs with -js and is "
                                                   "reachable; the client keeps reconnecting"
                         : code == CXM_EDEADLINE ? "the server did not answer in time; retry (with "
                                                   "the same msg ids when publishing)"
                         : code == CXM_EPERM     ? "the server refused the credentials or denied "
                                                   "them this action: check --nats-creds, "
                                                   "--nats-nkey-seed, --nats-user/--nats-password-"
                                                   "file or --nats-token-file and the server's "
                                                   "authorization (permissions on cxm.>, $JS.API.>, "
                                                   "$JS.ACK.> and _INBOX.>)"
                         : code == CXM_EFULL     ? "JetStream storage or limits are exhausted; "
                                                   "free space or raise the server's limits"
                                                 : "see the server log";
    char jerr[40] = "";
    if (j)
        snprintf(jerr, sizeof jerr, " (jetstream error %d)", (int)j);
    return fail(code, "%s: %s%s: %s", what, detail, jerr, advice);
}

/* 1-64 characters, each allowed by ok_char. */
static int check_name(const char *field, const char *v, int (*ok_char)(int))
{
    if (!v || !*v || strlen(v) > NAME_MAX_LEN)
        return fail(CXM_EINVAL, "%s must be 1-%d characters", field, NAME_MAX_LEN);
    for (const char *p = v; *p; p++)
        if (!ok_char((unsigned char)*p))
            return fail(CXM_EINVAL,
                        "%s \"%s\" has the character '%c'; use [a-z0-9_-] (durable "
                        "names also A-Z)",
                        field, v, *p);
    return 0;
}

static int producer_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int durable_char(int c)
{
    return producer_char(c) || (c >= 'A' && c <= 'Z');
}

/* "profile" -> "CXM_PROFILE"; the producer was checked. */
static void stream_name(const char *producer, char *out, size_t cap)
{
    size_t i = (size_t)snprintf(out, cap, "CXM_");
    for (const char *p = producer; *p && i + 1 < cap; p++)
        out[i++] = (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
    out[i] = '\0';
}

/* The URL for messages and logs: credentials in it ("nats://user:pw@host",
 * "nats://token@host", in each of a comma list) become "***". */
static char *redacted_url(const char *url)
{
    /* each item may grow by the 3 characters of "***" */
    char *out = malloc(4 * strlen(url) + 4);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = url; *p;) {
        const char *end = p + strcspn(p, ",");
        const char *scheme = strstr(p, "://");
        const char *host = scheme && scheme < end ? scheme + 3 : p;
        const char *at = memchr(host, '@', (size_t)(end - host));
        if (at) {
            o += sprintf(o, "%.*s***", (int)(host - p), p);
            p = at;
        }
        o += sprintf(o, "%.*s", (int)(end - p), p);
        p = end;
        if (*p)
            *o++ = *p++;
    }
    *o = '\0';
    return out;
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    cxm_nats *n = closure;
    if (natsConnection_IsClosed(nc)) /* cxm_nats_close, not a failure */
        return;
    cxm_log_warn("nats.disconnected",
                 "lost the connection to NATS at %s; reconnecting every %d ms, publishes are "
                 "buffered meanwhile",
                 n->url, RECONNECT_WAIT_MS);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    char url[256] = "";
    (void)closure;
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    char *shown = redacted_url(url);
    cxm_log_info("nats.reconnected", "reconnected to NATS at %s", shown ? shown : "?");
    free(shown);
}

/* libnats' asynchronous errors. A publish the server's authorization
 * denies comes back only this way ("Permissions Violation for Publish to
 * ..."); it is remembered for the batch that waits for its PubAck, and
 * logged, since an operator must fix the server's configuration. */
static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)sub;
    cxm_nats *n = closure;
    const char *text = NULL;
    natsConnection_GetLastError(nc, &text);
    if (err != NATS_NOT_PERMITTED) {
        cxm_log_warn("nats.async_error", "NATS at %s: %s", n->url,
                     text ? text : natsStatus_GetText(err));
        return;
    }
    pthread_mutex_lock(&n->err_mu);
    n->denials++;
    snprintf(n->denied_text, sizeof n->denied_text, "%s", text ? text : "permission denied");
    pthread_mutex_unlock(&n->err_mu);
    cxm_log_error("nats.permission_denied",
                  "NATS at %s denied these credentials an action: %s; grant them cxm.>, "
                  "$JS.API.>, $JS.ACK.> and _INBOX.> in the server's authorization",
                  n->url, text ? text : "permission denied");
}

/* Runs on libnats' reply thread for each message of a batch the server
 * refused (or answered with no responders); the batch reads it after
 * js_PublishAsyncComplete, which returns only after these callbacks. */
static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    cxm_nats *n = closure;
    pthread_mutex_lock(&n->err_mu);
    if (n->pub_failed++ == 0) {
        n->pub_err = err_from_nats(pae->Err, pae->ErrCode);
        snprintf(n->pub_text, sizeof n->pub_text, "%s: %s (jetstream error %d)",
                 natsMsg_GetSubject(pae->Msg), pae->ErrText ? pae->ErrText : "", (int)pae->ErrCode);
    }
    pthread_mutex_unlock(&n->err_mu);
}

static natsStatus set_options(natsOptions *o, const cxm_nats_opts *opts, cxm_nats *n)
{
    natsStatus s = natsOptions_SetURL(o, opts->url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, n->timeout_ms);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, RECONNECT_WAIT_MS);
    /* Write each message at once: libnats' flusher otherwise waits 1 ms to
     * coalesce, which costs every small batch and every pull request a
     * millisecond (measured: batches of 16 at 5,000/s, p50 1.3 -> 0.8 ms;
     * batches of 256 lose ~15% publish rate). */
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, n);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_reconnected, n);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, on_async_error, n);
    if (s == NATS_OK && opts->creds_file)
        s = natsOptions_SetUserCredentialsFromFiles(o, opts->creds_file, NULL);
    if (s == NATS_OK && opts->user)
        s = natsOptions_SetUserInfo(o, opts->user, opts->password);
    if (s == NATS_OK && opts->token)
        s = natsOptions_SetToken(o, opts->token);
    return s;
}

/* ---- NKeys: a user's seed "SU..." is the base32 (RFC 4648, unpadded) of
 * two prefix bytes, the 32-byte Ed25519 seed and a CRC-16/XMODEM (little
 * endian); its public key "U..." likewise of one prefix byte, the 32-byte
 * Ed25519 public key and the CRC. libnats signs with the seed but wants the
 * public key too, which it cannot derive, so OpenSSL does. */

#define NKEY_PREFIX_SEED (18 << 3)
#define NKEY_PREFIX_USER (20 << 3)
#define NKEY_RAW 32
#define NKEY_SEED_CHARS 58 /* base32 of 2 + 32 + 2 bytes */

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t crc16_xmodem(const uint8_t *p, size_t n)
{
    uint16_t crc = 0;
    while (n--) {
        crc ^= (uint16_t)(*p++ << 8);
        for (int i = 0; i < 8; i++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

static void b32_encode(const uint8_t *in, size_t n, char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        for (bits += 8; bits >= 5; bits -= 5)
            *out++ = b32_alphabet[(acc >> (bits - 5)) & 31];
    }
    if (bits > 0)
        *out++ = b32_alphabet[(acc << (5 - bits)) & 31];
    *out = '\0';
}

/* Decodes n characters; returns the byte count, or -1 on a bad character. */
static int b32_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c = strchr(b32_alphabet, in[i]);
        if (!c || !in[i])
            return -1;
        acc = (acc << 5) | (uint32_t)(c - b32_alphabet);
        if ((bits += 5) >= 8) {
            if (len == cap)
                return -1;
            out[len++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    return (int)len;
}

/* The 32-byte Ed25519 seed of a user seed's text, checked. */
static int nkey_seed_raw(const char *seed, uint8_t raw[NKEY_RAW])
{
    uint8_t b[2 + NKEY_RAW + 2];
    if (strlen(seed) < NKEY_SEED_CHARS ||
        b32_decode(seed, NKEY_SEED_CHARS, b, sizeof b) != (int)sizeof b)
        return -1;
    int prefix = ((b[0] & 7) << 5) | (b[1] >> 3);
    uint16_t crc = (uint16_t)(b[34] | b[35] << 8);
    if ((b[0] & 0xf8) != NKEY_PREFIX_SEED || prefix != NKEY_PREFIX_USER ||
        crc != crc16_xmodem(b, 34))
        return -1;
    memcpy(raw, b + 2, NKEY_RAW);
    return 0;
}

static int nkey_public_of(const uint8_t raw[NKEY_RAW], char pub[CXM_NATS_NKEY_PUBLIC_LEN + 1])
{
    uint8_t b[1 + NKEY_RAW + 2];
    size_t len = NKEY_RAW;
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, NKEY_RAW);
    int ok = k && EVP_PKEY_get_raw_public_key(k, b + 1, &len) == 1 && len == NKEY_RAW;
    EVP_PKEY_free(k);
    if (!ok)
        return -1;
    b[0] = NKEY_PREFIX_USER;
    uint16_t crc = crc16_xmodem(b, 1 + NKEY_RAW);
    b[33] = (uint8_t)crc;
    b[34] = (uint8_t)(crc >> 8);
    b32_encode(b, sizeof b, pub);
    return 0;
}

int cxm_nats_nkey_new(char seed[CXM_NATS_NKEY_SEED_LEN + 1], char pub[CXM_NATS_NKEY_PUBLIC_LEN + 1])
{
    uint8_t b[2 + NKEY_RAW + 2];
    if (RAND_bytes(b + 2, NKEY_RAW) != 1)
        return fail(CXM_EIO, "cannot draw random bytes for an NKey (OpenSSL RAND_bytes)");
    b[0] = NKEY_PREFIX_SEED | (NKEY_PREFIX_USER >> 5);
    b[1] = (NKEY_PREFIX_USER & 31) << 3;
    uint16_t crc = crc16_xmodem(b, 34);
    b[34] = (uint8_t)crc;
    b[35] = (uint8_t)(crc >> 8);
    b32_encode(b, sizeof b, seed);
    int rc = nkey_public_of(b + 2, pub);
    OPENSSL_cleanse(b, sizeof b);
    return rc ? fail(CXM_EIO, "cannot derive an Ed25519 public key (OpenSSL)") : 0;
}

/* The public key of the user seed in a file (the first "SU..." in it). */
static int nkey_public_from_file(const char *path, char pub[CXM_NATS_NKEY_PUBLIC_LEN + 1])
{
    char text[4096];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *seed = strstr(text, "SU");
    uint8_t raw[NKEY_RAW];
    int rc = seed ? nkey_seed_raw(seed, raw) : -1;
    if (rc == 0)
        rc = nkey_public_of(raw, pub);
    OPENSSL_cleanse(text, sizeof text);
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}

static natsStatus set_nkey(natsOptions *o, const cxm_nats_opts *opts, const char **what)
{
    if (!opts->nkey_seed_file)
        return NATS_OK;
    char pub[CXM_NATS_NKEY_PUBLIC_LEN + 1];
    *what = "cannot read a user NKey seed (a line \"SU...\", as `nk -gen user` writes) from "
            "--nats-nkey-seed";
    if (nkey_public_from_file(opts->nkey_seed_file, pub) != 0)
        return NATS_INVALID_ARG;
    return natsOptions_SetNKeyFromSeed(o, pub, opts->nkey_seed_file);
}

/* TLS when any of its options is given; the server is always verified. */
static natsStatus set_tls(natsOptions *o, const cxm_nats_opts *opts, const char **what)
{
    natsStatus s = NATS_OK;
    if (!opts->tls_ca && !opts->tls_cert && !opts->tls_key)
        return s;
    *what = "cannot turn TLS on (libnats built without TLS?)";
    s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && opts->tls_ca) {
        *what = "cannot load the CA certificates of --nats-tls-ca (a PEM file)";
        s = natsOptions_LoadCATrustedCertificates(o, opts->tls_ca);
    }
    if (s == NATS_OK && opts->tls_cert) {
        *what = "cannot load --nats-tls-cert and --nats-tls-key (PEM files; the key must "
                "match the certificate)";
        s = natsOptions_LoadCertificatesChain(o, opts->tls_cert, opts->tls_key);
    }
    return s;
}

static int check_opts(const cxm_nats_opts *opts)
{
    if (!opts || !opts->url || !*opts->url)
        return fail(CXM_EINVAL, "opts.url is required, e.g. \"nats://127.0.0.1:4222\"");
    if (opts->timeout_ms < 0 || opts->dup_window_ms < 0 || opts->ack_wait_ms < 0)
        return fail(CXM_EINVAL, "opts.timeout_ms, dup_window_ms and ack_wait_ms must be >= 0 "
                                "(0 = default)");
    int kinds = !!opts->creds_file + !!opts->nkey_seed_file + !!opts->user + !!opts->token;
    if (kinds > 1)
        return fail(CXM_EINVAL, "give one kind of NATS authentication: a credentials file, an "
                                "NKey seed, a user and password, or a token");
    if (opts->password && !opts->user)
        return fail(CXM_EINVAL, "a NATS password needs its user name (--nats-user)");
    if (!opts->tls_cert != !opts->tls_key)
        return fail(CXM_EINVAL, "--nats-tls-cert and --nats-tls-key go together; give both");
    return 0;
}

static int connect_js(cxm_nats *n, const cxm_nats_opts *opts)
{
    natsOptions *o = NULL;
    const char *what = "cannot set the NATS connection options (opts.url, credentials)";
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = set_options(o, opts, n);
    if (s == NATS_OK)
        s = set_tls(o, opts, &what);
    if (s == NATS_OK)
        s = set_nkey(o, opts, &what);
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        /* A file that cannot be read or parsed is a bad option, whatever
         * status libnats gives it. */
        natsStatus last = NATS_OK;
        const char *detail = nats_GetLastError(&last);
        return fail(CXM_EINVAL, "%s: %s", what, last == s ? detail : natsStatus_GetText(s));
    }
    s = natsConnection_Connect(&n->nc, o);
    /* libnats 3.4.1 (Debian 12) leaves the signature out of CONNECT when its
     * first byte is zero, so about 1 NKey or .creds connection in 256 is
     * refused (seen in the server's trace; 12 of 3,000 in a loop). The next
     * attempt signs a new nonce; a real refusal fails every attempt. */
    bool signs = opts->nkey_seed_file || opts->creds_file;
    for (int retry = 0; signs && s == NATS_CONNECTION_AUTH_FAILED && retry < 3; retry++)
        s = natsConnection_Connect(&n->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        char where[400];
        bool tls = opts->tls_ca || opts->tls_cert;
        /* A server that verifies clients drops one without an acceptable
         * certificate after the handshake: libnats sees only an I/O error. */
        snprintf(where, sizeof where, "cannot connect to NATS at %s%s", n->url,
                 tls && s != NATS_CONNECTION_AUTH_FAILED
                     ? " over TLS (if the server verifies clients, check --nats-tls-cert)"
                     : "");
        return fail_nats(s, 0, where);
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = n->timeout_ms;
    jo.PublishAsync.ErrHandler = on_pub_error;
    jo.PublishAsync.ErrHandlerClosure = n;
    s = natsConnection_JetStream(&n->js, n->nc, &jo);
    if (s != NATS_OK)
        return fail_nats(s, 0, "cannot create the JetStream context");
    return 0;
}

int cxm_nats_open(const cxm_nats_opts *opts, cxm_nats **out)
{
    int rc = check_opts(opts);
    if (rc)
        return rc;
    cxm_nats *n = calloc(1, sizeof *n);
    if (!n || !(n->url = redacted_url(opts->url))) {
        free(n);
        return fail(CXM_ENOMEM, "out of memory opening the NATS connection");
    }
    n->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    n->dup_window_ms = opts->dup_window_ms ? opts->dup_window_ms : DEFAULT_DUP_WINDOW_MS;
    n->ack_wait_ms = opts->ack_wait_ms ? opts->ack_wait_ms : DEFAULT_ACK_WAIT_MS;
    pthread_mutex_init(&n->pub_mu, NULL);
    pthread_mutex_init(&n->err_mu, NULL);
    rc = connect_js(n, opts);
    if (rc) {
        cxm_nats_close(n);
        return rc;
    }
    *out = n;
    return 0;
}

void cxm_nats_close(cxm_nats *n)
{
    if (!n)
        return;
    jsCtx_Destroy(n->js);
    if (n->nc) {
        natsConnection_Close(n->nc);
        natsConnection_Destroy(n->nc);
    }
    pthread_mutex_destroy(&n->pub_mu);
    pthread_mutex_destroy(&n->err_mu);
    free(n->url);
    free(n);
}

int cxm_nats_stream(cxm_nats *n, const char *producer)
{
    int rc = check_name("producer", producer, producer_char);
    if (rc)
        return rc;
    char name[NAME_MAX_LEN + 8], subject[NAME_MAX_LEN + 8];
    stream_name(producer, name, sizeof name);
    snprintf(subject, sizeof subject, "cxm.%s.>", producer);
    const char *subjects[] = {subject};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.Duplicates = (int64_t)n->dup_window_ms * MS_TO_NS;

    jsStreamInfo *si = NULL;
    jsErrCode j = 0;
    natsStatus s = js_AddStream(&si, n->js, &cfg, NULL, &j);
    if (s == NATS_ERR && j == JSStreamNameExistErr) /* exists with other settings */
        s = js_UpdateStream(&si, n->js, &cfg, NULL, &j);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        char what[200];
        snprintf(what, sizeof what, "cannot create or update stream %s on %s", name, n->url);
        return fail_nats(s, j, what);
    }
    return 0;
}

static int check_msgs(const cxm_nats_msg *msgs, size_t count)
{
    if (count && !msgs)
        return fail(CXM_EINVAL, "msgs is NULL with count %zu", count);
    for (size_t i = 0; i < count; i++) {
        const cxm_nats_msg *m = &msgs[i];
        if (!m->subject || !*m->subject)
            return fail(CXM_EINVAL, "msgs[%zu].subject is empty; give \"cxm.<producer>....\"", i);
        if (!m->msg_id || !*m->msg_id)
            return fail(CXM_EINVAL,
                        "msgs[%zu].msg_id is empty; every message needs a unique "
                        "id for deduplication",
                        i);
        if (m->len > INT_MAX || (m->len && !m->data))
            return fail(CXM_EINVAL, "msgs[%zu].data: len %zu with data %p", i, m->len, m->data);
    }
    return 0;
}

/* Take back the messages still awaiting a PubAck, so that late acks of a
 * failed batch are dropped instead of counted in the next one. */
static void drop_pending(cxm_nats *n)
{
    natsMsgList pending;
    if (js_PublishAsyncGetPendingList(&pending, n->js) == NATS_OK)
        natsMsgList_Destroy(&pending);
}

static natsStatus publish_one(cxm_nats *n, const cxm_nats_msg *m)
{
    natsMsg *msg = NULL;
    natsStatus s = natsMsg_Create(&msg, m->subject, NULL, m->data, (int)m->len);
    if (s == NATS_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = m->msg_id;
        s = js_PublishMsgAsync(n->js, &msg, &po);
    }
    natsMsg_Destroy(msg); /* NULL when libnats took it */
    return s;
}

/* CXM_EPERM with the server's words when it denied a publish since
 * denials_before (the batch's PubAcks then never come), else 0. */
static int denied_since(cxm_nats *n, size_t denials_before)
{
    pthread_mutex_lock(&n->err_mu);
    int rc = n->denials == denials_before
                 ? 0
                 : fail(CXM_EPERM,
                        "NATS at %s refused to publish: %s; these credentials lack publish "
                        "permission on cxm's subjects (cxm.<producer>.>)",
                        n->url, n->denied_text);
    pthread_mutex_unlock(&n->err_mu);
    return rc;
}

static int publish_batch(cxm_nats *n, const cxm_nats_msg *msgs, size_t count, int timeout_ms)
{
    char what[400];
    pthread_mutex_lock(&n->err_mu);
    size_t denials = n->denials;
    pthread_mutex_unlock(&n->err_mu);
    for (size_t i = 0; i < count; i++) {
        natsStatus s = publish_one(n, &msgs[i]);
        if (s != NATS_OK) {
            snprintf(what, sizeof what, "cannot publish msgs[%zu] (%s) to %s", i, msgs[i].subject,
                     n->url);
            return fail_nats(s, 0, what);
        }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;
    natsStatus s = js_PublishAsyncComplete(n->js, &po);
    if (s != NATS_OK && denied_since(n, denials) != 0)
        return CXM_EPERM;
    if (s != NATS_OK) {
        snprintf(what, sizeof what, "%zu messages to %s: not every PubAck came in %d ms", count,
                 n->url, timeout_ms);
        return fail_nats(s, 0, what);
    }
    pthread_mutex_lock(&n->err_mu);
    int rc = 0;
    if (n->pub_failed)
        rc = fail(n->pub_err ? n->pub_err : CXM_EIO,
                  "JetStream at %s refused %zu of %zu messages, first %s; check that the "
                  "subjects belong to a stream (cxm_nats_stream) and publish the same ids again",
                  n->url, n->pub_failed, count, n->pub_text);
    pthread_mutex_unlock(&n->err_mu);
    return rc;
}

int cxm_nats_publish(cxm_nats *n, const cxm_nats_msg *msgs, size_t count, int timeout_ms)
{
    if (timeout_ms <= 0)
        return fail(CXM_EINVAL, "timeout_ms is %d; give the wait for the PubAcks, > 0", timeout_ms);
    int rc = check_msgs(msgs, count);
    if (rc || count == 0)
        return rc;
    pthread_mutex_lock(&n->pub_mu);
    pthread_mutex_lock(&n->err_mu);
    n->pub_failed = 0;
    pthread_mutex_unlock(&n->err_mu);
    rc = publish_batch(n, msgs, count, timeout_ms);
    if (rc)
        drop_pending(n);
    pthread_mutex_unlock(&n->pub_mu);
    return rc;
}

static void consumer_config(cxm_nats_sub *s, const char *filter, jsConsumerConfig *cc)
{
    jsConsumerConfig_Init(cc);
    cc->Durable = s->durable;
    cc->AckPolicy = js_AckAll;
    cc->DeliverPolicy = js_DeliverAll;
    cc->AckWait = (int64_t)s->n->ack_wait_ms * MS_TO_NS;
    cc->MaxAckPending = MAX_ACK_PENDING;
    cc->FilterSubject = filter;
}

/* nats-server 2.9 refuses to change a consumer's ack policy or filter in
 * place (consumers of earlier versions of this module ack explicitly and
 * filter on the whole stream): delete it and create it again from the first
 * message it had not seen acknowledged. What the subscriber applied past that
 * comes again and is skipped by sequence. */
static natsStatus recreate_consumer(cxm_nats_sub *s, const char *filter, jsErrCode *j)
{
    jsConsumerInfo *ci = NULL;
    natsStatus st = js_GetConsumerInfo(&ci, s->n->js, s->stream, s->durable, NULL, j);
    if (st != NATS_OK)
        return st;
    uint64_t floor = ci->AckFloor.Stream;
    jsConsumerInfo_Destroy(ci);
    st = js_DeleteConsumer(s->n->js, s->stream, s->durable, NULL, j);
    if (st != NATS_OK)
        return st;
    jsConsumerConfig cc;
    consumer_config(s, filter, &cc);
    if (floor > 0) {
        cc.DeliverPolicy = js_DeliverByStartSequence;
        cc.OptStartSeq = floor + 1;
    }
    cxm_log_info("nats.consumer_recreated",
                 "consumer %s of stream %s had other settings; created again from stream "
                 "sequence %" PRIu64,
                 s->durable, s->stream, floor + 1);
    st = js_AddConsumer(&ci, s->n->js, s->stream, &cc, NULL, j);
    jsConsumerInfo_Destroy(ci);
    return st;
}

/* Create the durable if missing; with other settings, update it. */
static int add_consumer(cxm_nats_sub *s, const char *filter)
{
    jsConsumerConfig cc;
    consumer_config(s, filter, &cc);
    jsConsumerInfo *ci = NULL;
    jsErrCode j = 0;
    natsStatus st = js_AddConsumer(&ci, s->n->js, s->stream, &cc, NULL, &j);
    if (st == NATS_ERR && j == JSConsumerNameExistErr)
        st = js_UpdateConsumer(&ci, s->n->js, s->stream, &cc, NULL, &j);
    /* 10012 is also the code of "ack policy can not be updated", which
     * 2.9 answers to creating an existing durable with another policy. */
    if (st == NATS_ERR && j == JSConsumerCreateErr)
        st = recreate_consumer(s, filter, &j);
    jsConsumerInfo_Destroy(ci);
    if (st != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what,
                 "cannot create consumer %s on stream %s at %s (create the stream first with "
                 "cxm_nats_stream)",
                 s->durable, s->stream, s->n->url);
        return fail_nats(st, j, what);
    }
    return 0;
}

static int bind_consumer(cxm_nats_sub *s, const char *filter)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = s->stream;
    so.Consumer = s->durable;
    jsErrCode j = 0;
    natsStatus st = js_PullSubscribe(&s->sub, s->n->js, filter, s->durable, NULL, &so, &j);
    if (st != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "cannot subscribe to consumer %s of stream %s at %s",
                 s->durable, s->stream, s->n->url);
        return fail_nats(st, j, what);
    }
    return 0;
}

int cxm_nats_subscribe(cxm_nats *n, const char *producer, const char *durable,
                       const char *filter_subject, cxm_nats_sub **out)
{
    int rc = check_name("producer", producer, producer_char);
    if (!rc)
        rc = check_name("durable", durable, durable_char);
    if (rc)
        return rc;
    if (filter_subject && !*filter_subject)
        return fail(CXM_EINVAL, "filter_subject is empty; give NULL for the whole stream");
    cxm_nats_sub *s = calloc(1, sizeof *s);
    if (!s)
        return fail(CXM_ENOMEM, "out of memory subscribing %s", durable);
    s->n = n;
    stream_name(producer, s->stream, sizeof s->stream);
    snprintf(s->durable, sizeof s->durable, "%s", durable);
    char all[NAME_MAX_LEN + 8];
    snprintf(all, sizeof all, "cxm.%s.>", producer);
    /* Created here rather than by js_PullSubscribe, because libnats deletes
     * a consumer it created itself when the subscription is unsubscribed.
     * The whole stream goes without a filter: nats-server 2.9 serves a
     * filtered consumer through its per-subject state, which measured
     * twice the server CPU per message of reading by sequence
     * (benchmarks/README.md, "Event bus"). */
    rc = add_consumer(s, filter_subject);
    if (!rc)
        rc = bind_consumer(s, filter_subject ? filter_subject : all);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cxm_nats_unsubscribe(cxm_nats_sub *s)
{
    if (!s)
        return;
    /* Destroy without Unsubscribe: since libnats 3.4 this keeps the
     * consumer, and the consumer was not created by libnats anyway. */
    natsSubscription_Destroy(s->sub);
    free(s);
}

/* Point b's arrays at p's messages; the arrays live after the message
 * pointers, after p. */
static int batch_fill(cxm_nats_batch *b, batch_priv *p)
{
    size_t cap = p->cap;
    char *mem = (char *)(p->msgs + cap);
    b->data = (const void **)mem;
    b->msg_id = (const char **)(mem + cap * sizeof(void *));
    b->len = (size_t *)(mem + 2 * cap * sizeof(void *));
    b->stream_seq = (uint64_t *)(mem + 2 * cap * sizeof(void *) + cap * sizeof(size_t));
    for (size_t i = 0; i < p->count; i++) {
        natsMsg *m = p->msgs[i];
        jsMsgMetaData *meta = NULL;
        natsStatus s = natsMsg_GetMetaData(&meta, m);
        if (s != NATS_OK)
            return fail_nats(s, 0, "a fetched message has no JetStream metadata");
        b->stream_seq[i] = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
        b->data[i] = natsMsg_GetData(m);
        b->len[i] = (size_t)natsMsg_GetDataLength(m);
        const char *id = NULL;
        b->msg_id[i] = natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id ? id : "";
    }
    b->count = p->count;
    return 0;
}

/* One pull request, as nats-server 2.9 reads {batch, no_wait, expires}:
 * deliver what is there now, up to the batch, and end the request; if
 * nothing is, wait up to expires and deliver as soon as something comes.
 * (libnats' natsSubscription_Fetch instead waits for the whole batch once
 * the stream is drained, holding a lone event for the full timeout.)
 *
 * Messages a timed-out request delivered late wait in the subscription;
 * libnats 3.4.1 miscounts a request that starts with such leftovers (it
 * can read past its batch), so when there are any, take just them. */
static natsStatus pull(batch_priv *p, int timeout_ms)
{
    int queued = 0;
    natsSubscription_GetPending(p->s->sub, &queued, NULL);
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = queued > 0 && (size_t)queued < p->cap ? queued : (int)p->cap;
    req.NoWait = true;
    req.Expires = (int64_t)timeout_ms * MS_TO_NS;
    natsMsgList list = {0};
    natsStatus s = natsSubscription_FetchRequest(&list, p->s->sub, &req);
    for (int i = 0; i < list.Count && p->count < p->cap; i++) {
        p->msgs[p->count++] = list.Msgs[i];
        list.Msgs[i] = NULL; /* kept: natsMsgList_Destroy skips NULLs */
    }
    natsMsgList_Destroy(&list);
    if (p->count > 0)
        return NATS_OK;
    return s == NATS_TIMEOUT || s == NATS_NOT_FOUND ? NATS_OK : s;
}

int cxm_nats_fetch(cxm_nats_sub *s, size_t max, int timeout_ms, cxm_nats_batch *b)
{
    memset(b, 0, sizeof *b);
    if (max == 0 || max > MAX_FETCH || timeout_ms <= 0)
        return fail(CXM_EINVAL,
                    "fetch of %zu messages in %d ms: max must be 1-%d and "
                    "timeout_ms > 0",
                    max, timeout_ms, MAX_FETCH);
    size_t per = 3 * sizeof(void *) + sizeof(size_t) + sizeof(uint64_t);
    batch_priv *p = calloc(1, sizeof *p + max * per);
    if (!p)
        return fail(CXM_ENOMEM, "out of memory for a batch of %zu messages", max);
    p->s = s;
    p->cap = max;
    p->msgs = (natsMsg **)(p + 1);
    b->priv_ = p;
    natsStatus st = pull(p, timeout_ms);
    if (st != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "cannot fetch from consumer %s of stream %s at %s", s->durable,
                 s->stream, s->n->url);
        return fail_nats(st, 0, what);
    }
    return batch_fill(b, p);
}

int cxm_nats_ack_upto(cxm_nats_batch *b, size_t n)
{
    batch_priv *p = b->priv_;
    if (n > b->count)
        return fail(CXM_EINVAL, "ack of %zu messages in a batch of %zu", n, b->count);
    if (!p || n == 0)
        return 0;
    /* One ack: the consumer's AckAll policy extends it to every message
     * before it, and AckSync waits for the server's confirmation. */
    jsErrCode j = 0;
    natsStatus st = natsMsg_AckSync(p->msgs[n - 1], NULL, &j);
    if (st != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what,
                 "cannot ack %zu messages to consumer %s of stream %s; the unacked ones come "
                 "again after the ack wait",
                 n, p->s->durable, p->s->stream);
        return fail_nats(st, j, what);
    }
    return 0;
}

int cxm_nats_ack(cxm_nats_batch *b)
{
    return cxm_nats_ack_upto(b, b->count);
}

void cxm_nats_batch_free(cxm_nats_batch *b)
{
    batch_priv *p = b->priv_;
    if (p) {
        for (size_t i = 0; i < p->count; i++)
            natsMsg_Destroy(p->msgs[i]);
        free(p);
    }
    memset(b, 0, sizeof *b);
}

int cxm_nats_pending(cxm_nats_sub *s, uint64_t *pending)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode j = 0;
    natsStatus st = js_GetConsumerInfo(&ci, s->n->js, s->stream, s->durable, NULL, &j);
    if (st != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "cannot read consumer %s of stream %s at %s", s->durable,
                 s->stream, s->n->url);
        return fail_nats(st, j, what);
    }
    *pending = ci->NumPending + (uint64_t)ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    return 0;
}
