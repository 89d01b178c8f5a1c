/*
 * client.h - gRPC client on gRPC core: channels, unary and streaming calls
 * with deadlines, and an asynchronous loop for load generators.
 *
 * Used by service-to-service calls, cxmctl, the integration tests and
 * cxm-bench. Messages travel as raw bytes; cxm_client_unary_pb() adds the
 * protobuf-c packing for the common case.
 *
 * Threading: a channel may be shared by any number of threads. A stream and a
 * loop belong to one thread at a time. Every call needs a deadline: a
 * timeout_ms <= 0 means "no deadline", allowed only for streams that a test
 * deliberately leaves open.
 *
 * Errors: functions return 0 when the RPC ran to a status (OK or not; read
 * the status in the result), or a negative CXM_E* code when the call could not
 * be started at all (bad target, out of memory).
 */
#ifndef CXM_CLIENT_H
#define CXM_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "cxm/arena.h"

typedef struct cxm_channel cxm_channel;

typedef struct cxm_channel_opts {
    size_t max_message_bytes;      /* receive limit; 0 = gRPC default (4 MiB) */
    int use_local_subchannel_pool; /* 1 = a separate TCP connection per channel
                                      (cxm-bench needs this for N connections) */
    /* Bearer token sent as "authorization: Bearer <token>" on every call;
     * NULL = none. Copied by cxm_channel_open. */
    const char *token;
    /* TLS: with tls_ca (PEM file of the CA(s) the server's certificate must
     * chain to) the channel speaks TLS and verifies the server against the
     * target's host (or tls_server_name when set: a certificate issued for
     * a name while connecting by address). tls_cert and tls_key (PEM files,
     * both or neither) present a client certificate, for servers that
     * require one (mTLS). All NULL: plaintext. */
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
} cxm_channel_opts;

/* Longest token a token file may hold. */
#define CXM_CLIENT_TOKEN_MAX 8192

/* Read a token file (one token, an ending newline allowed) into a malloc'ed
 * string (*token; free it). Returns 0, or CXM_EINVAL with a sentence in err
 * (a missing, empty or multi-line file); the token is never in err. */
int cxm_client_token_file(const char *path, char **token, char *err, size_t errlen);

/* The --token and --token-file rows of a client program's option table
 * (opts.h; so also CXM_TOKEN and CXM_TOKEN_FILE); targets: const char **. */
#define CXM_CLIENT_TOKEN_OPTS(token, file)                                                         \
    {"token", CXM_OPT_STR,                                                                         \
     token,   0,                                                                                   \
     0,       "bearer token sent with every call (visible in ps: prefer --token-file)"},           \
    {                                                                                              \
        "token-file", CXM_OPT_STR, file, 0, 0, "file holding the bearer token"                     \
    }

/* The token of a --token / --token-file pair (either may be NULL or
 * empty): a malloc'ed copy of token, the token read from file, or NULL
 * when neither is given (*out; free it). Both given is CXM_EINVAL. */
int cxm_client_token_pick(const char *token, const char *file, char **out, char *err,
                          size_t errlen);

/* The cxm_opt table entries (cxm/opts.h) of the TLS fields of a
 * cxm_channel_opts, for a tool's flags: --tls-ca, --tls-cert, --tls-key and
 * --tls-server-name, each also a CXM_TLS_* variable. */
/* clang-format off */
#define CXM_CHANNEL_TLS_OPTS(chan)                                                           \
    {"tls-ca", CXM_OPT_STR, &(chan).tls_ca, 0, 0,                                            \
     "speak TLS, verifying the server with this PEM CA file"},                               \
    {"tls-cert", CXM_OPT_STR, &(chan).tls_cert, 0, 0,                                        \
     "client certificate (PEM) for servers requiring mutual TLS"},                           \
    {"tls-key", CXM_OPT_STR, &(chan).tls_key, 0, 0, "PEM private key of --tls-cert"},        \
    {"tls-server-name", CXM_OPT_STR, &(chan).tls_server_name, 0, 0,                          \
     "name the server's certificate must carry, when not the target's host"}
/* clang-format on */

/* Fill o from the environment: the token from CXM_TOKEN, or read from the
 * file CXM_TOKEN_FILE (kept for the life of the process), and the TLS
 * fields from CXM_TLS_CA, CXM_TLS_CERT, CXM_TLS_KEY and CXM_TLS_SERVER_NAME
 * (pointers into environ). Fields whose variables are unset or empty are
 * left alone, so flags parsed afterwards can override them. Returns 0, or
 * CXM_EINVAL with a sentence in err. Not thread-safe: call during start-up. */
int cxm_channel_opts_from_env(cxm_channel_opts *o, char *err, size_t errlen);

/* Open a channel to "host:port" (or any gRPC target string): plaintext, or
 * TLS as opts says. Calls grpc_init() itself; the matching grpc_shutdown()
 * happens in cxm_channel_close(). opts may be NULL. Returns 0, or a CXM_E*
 * code when the TLS files cannot be used (cxm_channel_last_error says which
 * file and why) or memory ran out. A server that cannot be reached or
 * verified is not an error here: calls then fail UNAVAILABLE. */
int cxm_channel_open(const char *target, const cxm_channel_opts *opts, cxm_channel **out);

/* Why the last cxm_channel_open of this thread failed ("" if it did not). */
const char *cxm_channel_last_error(void);
void cxm_channel_close(cxm_channel *ch);

/* The underlying channel, for code that drives gRPC core itself. */
grpc_channel *cxm_channel_raw(cxm_channel *ch);

/* A method path ("/pkg.Service/Method") registered on the channel once and
 * remembered, so later calls skip the path lookup. Thread-safe. Returns NULL
 * only when out of memory. Valid until the channel is closed. */
void *cxm_channel_method(cxm_channel *ch, const char *path);

/* The outcome of one RPC. Heap-owned; release with cxm_client_result_dispose. */
typedef struct cxm_client_result {
    grpc_status_code status;
    char *details;     /* NUL-terminated status message, never NULL after a call */
    uint8_t *response; /* response bytes (unary), NULL when none arrived */
    size_t response_len;
} cxm_client_result;

void cxm_client_result_dispose(cxm_client_result *r);

/* Blocking unary call with raw request bytes (which need not be a valid
 * message: tests send garbage on purpose). */
int cxm_client_unary(cxm_channel *ch, const char *path, const void *req, size_t req_len,
                     int64_t timeout_ms, cxm_client_result *out);

/* Blocking unary call that packs req and, on status OK, unpacks the response
 * with resp_desc into arena (*resp set, NULL otherwise). A response that does
 * not decode gives status INTERNAL with a message saying so. */
int cxm_client_unary_pb(cxm_channel *ch, const char *path, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, cxm_arena *arena,
                        int64_t timeout_ms, ProtobufCMessage **resp, cxm_client_result *out);

/* A streaming call (client-, server- or bidi-streaming), driven blocking. */
typedef struct cxm_client_stream cxm_client_stream;

int cxm_client_stream_open(cxm_channel *ch, const char *path, int64_t timeout_ms,
                           cxm_client_stream **out);

/* Send one message. Returns 0, or CXM_EUNAVAIL when the call is already over
 * (read the status with cxm_client_stream_finish). */
int cxm_client_stream_send(cxm_client_stream *s, const void *msg, size_t len);

/* Half-close: no more messages from the client. */
int cxm_client_stream_close_send(cxm_client_stream *s);

/* Receive one message into a malloc'ed buffer (*msg, *len; free() it).
 * Returns 1 when a message arrived, 0 at the end of the stream, or a
 * negative CXM_E* code. */
int cxm_client_stream_recv(cxm_client_stream *s, uint8_t **msg, size_t *len);

/* Cancel the call; cxm_client_stream_finish must still be called. */
void cxm_client_stream_cancel(cxm_client_stream *s);

/* Wait for the final status (response fields of out stay NULL), release the
 * stream. Always call exactly once per opened stream. */
int cxm_client_stream_finish(cxm_client_stream *s, cxm_client_result *out);

/* Asynchronous unary calls for load generators: one loop per thread, many
 * calls in flight, a callback per completion run on the loop's thread. */
typedef struct cxm_client_loop cxm_client_loop;

typedef void (*cxm_client_done_fn)(void *user, grpc_status_code status,
                                   grpc_byte_buffer *response /* NULL if none; do not keep */);

int cxm_client_loop_create(cxm_client_loop **out);
void cxm_client_loop_destroy(cxm_client_loop *loop); /* after every call completed */

/* Start a unary call on method (from cxm_channel_method). request is not
 * consumed: the caller may reuse one byte buffer for every call. */
int cxm_client_loop_unary(cxm_client_loop *loop, cxm_channel *ch, void *method,
                          grpc_byte_buffer *request, int64_t timeout_ms, cxm_client_done_fn done,
                          void *user);

/* Run callbacks for completions until timeout_ms passes with none pending,
 * or until at least one completion was handled and none is immediately
 * ready. Returns the number of callbacks run. */
int cxm_client_loop_run(cxm_client_loop *loop, int64_t timeout_ms);

#endif
