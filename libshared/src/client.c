/*
 * client.c - gRPC client on gRPC core (see cxm/client.h).
 *
 * Blocking calls (unary and streams) each own a private pluck completion
 * queue for the life of the call. A per-thread cached queue would save an
 * allocation per call, but it would outlive grpc_shutdown() when the last
 * channel closes and, on the main thread, never be released at all (TLS
 * destructors do not run at exit), which the sanitizer runs report as leaks.
 * The cost of one queue is small next to a network round trip; cxm-bench uses
 * the asynchronous loop, not these.
 *
 * The asynchronous loop owns one "next" queue; each call's tag is a small heap
 * struct freed when the call completes. The loop keeps its calls on a list so
 * that destroying it early can cancel and reclaim them instead of leaking.
 */
#include "cxm/client.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "cxm/err.h"
#include "cxm/tls.h"

/* ---- helpers ---- */

static gpr_timespec cxm__deadline_after(int64_t timeout_ms)
{
    if (timeout_ms <= 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* Shut a queue down, drain it and destroy it. Every batch started on it must
 * already have completed. */
static void cxm__cq_dispose(grpc_completion_queue *cq, bool pluck)
{
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        gpr_timespec inf = gpr_inf_future(GPR_CLOCK_REALTIME);
        grpc_event ev = pluck ? grpc_completion_queue_pluck(cq, NULL, inf, NULL)
                              : grpc_completion_queue_next(cq, inf, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(cq);
}

static grpc_byte_buffer *cxm__buffer_from(const void *data, size_t len)
{
    /* An empty slice avoids handing memcpy a NULL pointer for "". */
    grpc_slice s = len ? grpc_slice_from_copied_buffer(data, len) : grpc_empty_slice();
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1); /* takes its own ref */
    grpc_slice_unref(s);
    return bb;
}

/* Copy a received buffer into malloc'ed memory. At least one byte is
 * allocated so that an empty message (a valid, common protobuf) is a non-NULL
 * pointer, distinct from "no message". readall also undoes compression. */
static int cxm__buffer_to_heap(grpc_byte_buffer *bb, uint8_t **out, size_t *len)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return CXM_ECORRUPT; /* undecompressable payload */
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    size_t n = GRPC_SLICE_LENGTH(s);
    uint8_t *p = malloc(n ? n : 1);
    if (p && n)
        memcpy(p, GRPC_SLICE_START_PTR(s), n);
    grpc_slice_unref(s);
    if (!p)
        return CXM_ENOMEM;
    *out = p;
    *len = n;
    return 0;
}

static char *cxm__slice_to_string(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, GRPC_SLICE_START_PTR(s), n);
        p[n] = '\0';
    }
    return p;
}

/* RECV_STATUS_ON_CLIENT always fills the status; gRPC reports a batch that
 * carries it as successful. Should that ever not hold, do not let a failed
 * batch pass for OK. */
static grpc_status_code cxm__checked_status(bool batch_ok, grpc_status_code status)
{
    return !batch_ok && status == GRPC_STATUS_OK ? GRPC_STATUS_UNKNOWN : status;
}

/* ---- channels ---- */

typedef struct cxm__method {
    char *path;
    void *handle;
} cxm__method;

struct cxm_channel {
    grpc_channel *ch;
    pthread_mutex_t mu; /* guards methods: any thread may register a path */
    cxm__method *methods;
    size_t nmethods, cap;
    /* "authorization: Bearer <token>" sent with every call; nmd 0 = none. */
    grpc_metadata md;
    size_t nmd;
};

static __thread char last_error[700];

const char *cxm_channel_last_error(void)
{
    return last_error;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

static bool set(const char *s)
{
    return s && *s;
}

/* The PEM files of a TLS channel, checked, into pem[0..2] (CA, cert, key;
 * the last two NULL without a client certificate). */
static int read_tls_files(const cxm_channel_opts *o, char *pem[3])
{
    char *err = last_error;
    size_t errlen = sizeof last_error;
    if (set(o->tls_cert) != set(o->tls_key)) {
        snprintf(err, errlen, "a TLS client certificate needs both its certificate and its key");
        return CXM_EINVAL;
    }
    const char *paths[3] = {o->tls_ca, o->tls_cert, o->tls_key};
    const char *kinds[3] = {"TLS CA file", "TLS client certificate", "TLS client key"};
    char what[3][600];
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        snprintf(what[i], sizeof what[i], "%s %s", kinds[i], paths[i] ? paths[i] : "");
        if (set(paths[i]))
            rc = cxm_tls_read_pem(what[i], paths[i], &pem[i], err, errlen);
    }
    if (rc == 0)
        rc = cxm_tls_check_ca(pem[0], what[0], err, errlen);
    if (rc == 0 && pem[1])
        rc = cxm_tls_check_pair(pem[1], pem[2], what[1], what[2], err, errlen);
    return rc;
}

/* Plaintext credentials, or TLS ones when opts names a CA. */
static int channel_credentials(const cxm_channel_opts *o, grpc_channel_credentials **out)
{
    if (!o || !set(o->tls_ca)) {
        if (o && (set(o->tls_cert) || set(o->tls_key))) {
            snprintf(last_error, sizeof last_error,
                     "a TLS client certificate needs the CA of the server too (CXM_TLS_CA)");
            return CXM_EINVAL;
        }
        *out = grpc_insecure_credentials_create();
        return *out ? 0 : CXM_ENOMEM;
    }
    char *pem[3] = {NULL, NULL, NULL};
    int rc = read_tls_files(o, pem);
    if (rc == 0) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = pem[2], .cert_chain = pem[1]};
        *out = grpc_ssl_credentials_create(pem[0], pem[1] ? &pair : NULL, NULL, NULL);
        rc = *out ? 0 : CXM_ENOMEM;
    }
    for (int i = 0; i < 3; i++)
        free(pem[i]);
    return rc;
}

/* The channel's metadata for a SEND_INITIAL_METADATA op. */
static void cxm__add_md(const cxm_channel *c, grpc_op *op)
{
    op->data.send_initial_metadata.count = c->nmd;
    op->data.send_initial_metadata.metadata = c->nmd ? (grpc_metadata *)&c->md : NULL;
}

int cxm_channel_open(const char *target, const cxm_channel_opts *opts, cxm_channel **out)
{
    last_error[0] = '\0';
    if (!target || !*target) {
        snprintf(last_error, sizeof last_error, "no target address");
        return CXM_EINVAL;
    }
    cxm_channel *c = calloc(1, sizeof *c);
    if (!c)
        return CXM_ENOMEM;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return CXM_ENOMEM;
    }
    grpc_arg args[3];
    size_t n = 0;
    if (opts && opts->max_message_bytes) {
        size_t max = opts->max_message_bytes > INT_MAX ? INT_MAX : opts->max_message_bytes;
        args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                               .value.integer = (int)max};
    }
    /* Channels share subchannels (and so TCP connections) process-wide by
     * default; a local pool gives this channel a connection of its own. */
    if (opts && opts->use_local_subchannel_pool)
        args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
                               .value.integer = 1};
    if (opts && set(opts->tls_ca) && set(opts->tls_server_name))
        args[n++] = (grpc_arg){.type = GRPC_ARG_STRING,
                               .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                               .value.string = (char *)opts->tls_server_name};
    grpc_channel_args ca = {.num_args = n, .args = args};

    grpc_init();
    grpc_channel_credentials *creds = NULL;
    int rc = channel_credentials(opts, &creds);
    /* A bad target still yields a (lame) channel whose calls fail with a
     * status, so the only other failure is NULL from an exhausted process. */
    c->ch = creds ? grpc_channel_create(target, creds, &ca) : NULL;
    if (creds)
        grpc_channel_credentials_release(creds);
    if (!c->ch) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        grpc_shutdown();
        return rc ? rc : CXM_ENOMEM;
    }
    if (opts && opts->token && *opts->token) {
        size_t tlen = strlen(opts->token);
        grpc_slice v = grpc_slice_malloc(tlen + 7);
        memcpy(GRPC_SLICE_START_PTR(v), "Bearer ", 7);
        memcpy(GRPC_SLICE_START_PTR(v) + 7, opts->token, tlen);
        c->md.key = grpc_slice_from_static_string("authorization");
        c->md.value = v;
        c->nmd = 1;
    }
    *out = c;
    return 0;
}

void cxm_channel_close(cxm_channel *c)
{
    if (!c)
        return;
    grpc_channel_destroy(c->ch); /* also frees the registered-call handles */
    if (c->nmd)
        grpc_slice_unref(c->md.value);
    for (size_t i = 0; i < c->nmethods; i++)
        free(c->methods[i].path);
    free(c->methods);
    pthread_mutex_destroy(&c->mu);
    free(c);
    grpc_shutdown();
}

grpc_channel *cxm_channel_raw(cxm_channel *c)
{
    return c->ch;
}

static void *cxm__method_find(const cxm_channel *c, const char *path)
{
    for (size_t i = 0; i < c->nmethods; i++)
        if (strcmp(c->methods[i].path, path) == 0)
            return c->methods[i].handle;
    return NULL;
}

static void *cxm__method_add(cxm_channel *c, const char *path)
{
    if (c->nmethods == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        cxm__method *m = realloc(c->methods, cap * sizeof *m);
        if (!m)
            return NULL;
        c->methods = m;
        c->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    void *handle = grpc_channel_register_call(c->ch, copy, NULL, NULL);
    if (!handle) {
        free(copy);
        return NULL;
    }
    c->methods[c->nmethods++] = (cxm__method){copy, handle};
    return handle;
}

/* A linear scan is fine: a process talks to a handful of methods, and the
 * hot path (cxm-bench) looks its method up once. */
void *cxm_channel_method(cxm_channel *c, const char *path)
{
    pthread_mutex_lock(&c->mu);
    void *handle = cxm__method_find(c, path);
    if (!handle)
        handle = cxm__method_add(c, path);
    pthread_mutex_unlock(&c->mu);
    return handle;
}

static grpc_call *cxm__new_call(cxm_channel *c, const char *path, grpc_completion_queue *cq,
                                int64_t timeout_ms)
{
    if (!path)
        return NULL;
    void *handle = cxm_channel_method(c, path);
    if (!handle)
        return NULL;
    return grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, handle,
                                               cxm__deadline_after(timeout_ms), NULL);
}

void cxm_client_result_dispose(cxm_client_result *r)
{
    if (!r)
        return;
    free(r->details);
    free(r->response);
    memset(r, 0, sizeof *r);
}

/* ---- blocking unary ---- */

/* Everything one unary batch writes into; shared by the blocking call and the
 * asynchronous loop. */
typedef struct cxm__unary_io {
    grpc_metadata_array initial_md, trailing_md;
    grpc_byte_buffer *response;
    grpc_status_code status;
    grpc_slice details;
} cxm__unary_io;

static void cxm__unary_io_init(cxm__unary_io *io)
{
    memset(io, 0, sizeof *io);
    grpc_metadata_array_init(&io->initial_md);
    grpc_metadata_array_init(&io->trailing_md);
    io->status = GRPC_STATUS_UNKNOWN;
    io->details = grpc_empty_slice();
}

static void cxm__unary_io_dispose(cxm__unary_io *io)
{
    if (io->response)
        grpc_byte_buffer_destroy(io->response);
    io->response = NULL;
    grpc_metadata_array_destroy(&io->initial_md);
    grpc_metadata_array_destroy(&io->trailing_md);
    grpc_slice_unref(io->details);
}

/* The whole unary exchange in one batch: fewer round trips through the
 * completion queue than one op at a time. */
static grpc_call_error cxm__start_unary(const cxm_channel *c, grpc_call *call,
                                        grpc_byte_buffer *request, cxm__unary_io *io, void *tag)
{
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    cxm__add_md(c, &ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &io->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &io->response;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &io->trailing_md;
    ops[5].data.recv_status_on_client.status = &io->status;
    ops[5].data.recv_status_on_client.status_details = &io->details;
    return grpc_call_start_batch(call, ops, 6, tag, NULL);
}

/* Start ops on call and wait for them. No timeout here: the call's deadline
 * makes gRPC complete the batch when it passes. Returns the batch's success,
 * or false (with *started = false) when it could not be started. */
static bool cxm__run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n,
                           bool *started)
{
    char tag; /* any unique address */
    bool ok = grpc_call_start_batch(call, ops, n, &tag, NULL) == GRPC_CALL_OK;
    if (started)
        *started = ok;
    if (!ok)
        return false;
    grpc_event ev = grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static int cxm__unary_result(cxm__unary_io *io, bool batch_ok, cxm_client_result *out)
{
    out->status = cxm__checked_status(batch_ok, io->status);
    out->details = cxm__slice_to_string(io->details);
    if (!out->details)
        return CXM_ENOMEM;
    if (io->response) {
        int rc = cxm__buffer_to_heap(io->response, &out->response, &out->response_len);
        if (rc == CXM_ENOMEM) {
            cxm_client_result_dispose(out);
            return rc;
        }
        /* An undecodable (compressed) payload reads as no response: the
         * caller sees OK with response NULL and treats it as bad data. */
    }
    return 0;
}

int cxm_client_unary(cxm_channel *c, const char *path, const void *req, size_t req_len,
                     int64_t timeout_ms, cxm_client_result *out)
{
    memset(out, 0, sizeof *out);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    if (!cq)
        return CXM_ENOMEM;
    int rc = CXM_EINVAL;
    grpc_call *call = cxm__new_call(c, path, cq, timeout_ms);
    grpc_byte_buffer *request = call ? cxm__buffer_from(req, req_len) : NULL;
    if (request) {
        cxm__unary_io io;
        cxm__unary_io_init(&io);
        char tag;
        if (cxm__start_unary(c, call, request, &io, &tag) == GRPC_CALL_OK) {
            grpc_event ev =
                grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            rc = cxm__unary_result(&io, ev.type == GRPC_OP_COMPLETE && ev.success, out);
        } else {
            rc = CXM_EINTERNAL;
        }
        cxm__unary_io_dispose(&io);
        grpc_byte_buffer_destroy(request);
    }
    if (call)
        grpc_call_unref(call);
    cxm__cq_dispose(cq, true);
    return rc;
}

static int cxm__set_details(cxm_client_result *out, grpc_status_code status, const char *msg)
{
    char *copy = strdup(msg);
    if (!copy)
        return CXM_ENOMEM;
    free(out->details);
    out->details = copy;
    out->status = status;
    return 0;
}

int cxm_client_unary_pb(cxm_channel *c, const char *path, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, cxm_arena *arena,
                        int64_t timeout_ms, ProtobufCMessage **resp, cxm_client_result *out)
{
    *resp = NULL;
    memset(out, 0, sizeof *out);
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return CXM_ENOMEM;
    protobuf_c_message_pack(req, buf);
    int rc = cxm_client_unary(c, path, buf, len, timeout_ms, out);
    free(buf);
    if (rc != 0 || out->status != GRPC_STATUS_OK)
        return rc;
    /* An empty response is a valid message with every field at its default. */
    static const uint8_t empty[1];
    const uint8_t *data = out->response ? out->response : empty;
    *resp =
        protobuf_c_message_unpack(resp_desc, cxm_arena_protobuf(arena), out->response_len, data);
    if (!*resp) {
        rc = cxm__set_details(out, GRPC_STATUS_INTERNAL,
                              out->response ? "the response does not decode as the expected message"
                                            : "the response could not be read");
        if (rc != 0)
            cxm_client_result_dispose(out);
    }
    return rc;
}

/* ---- streams ---- */

struct cxm_client_stream {
    grpc_call *call; /* NULL when it could not be created: finish says so */
    grpc_completion_queue *cq;
    bool broken;      /* a send failed or never started: the call is over */
    bool closed_send; /* half-closed: sending again is a caller error */
    bool got_initial_md;
    bool recv_ended; /* the end of the server's messages was seen */
};

int cxm_client_stream_open(cxm_channel *c, const char *path, int64_t timeout_ms,
                           cxm_client_stream **out)
{
    cxm_client_stream *s = calloc(1, sizeof *s);
    if (!s)
        return CXM_ENOMEM;
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    if (!s->cq) {
        free(s);
        return CXM_ENOMEM;
    }
    s->call = cxm__new_call(c, path, s->cq, timeout_ms);
    if (!s->call) {
        cxm__cq_dispose(s->cq, true);
        free(s);
        return path ? CXM_ENOMEM : CXM_EINVAL;
    }
    /* Send the headers now so that a server-streaming call gets going even
     * if the client sends nothing. A failure here (no connection) leaves the
     * real reason in the status that finish reports. */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    cxm__add_md(c, &op);
    if (!cxm__run_batch(s->call, s->cq, &op, 1, NULL))
        s->broken = true;
    *out = s;
    return 0;
}

int cxm_client_stream_send(cxm_client_stream *s, const void *msg, size_t len)
{
    if (s->broken || s->closed_send)
        return CXM_EUNAVAIL;
    grpc_byte_buffer *bb = cxm__buffer_from(msg, len);
    if (!bb)
        return CXM_ENOMEM;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    /* Waiting for the send is the flow control: the batch completes once
     * the transport has taken the message. */
    bool ok = cxm__run_batch(s->call, s->cq, &op, 1, NULL);
    grpc_byte_buffer_destroy(bb);
    if (!ok)
        s->broken = true;
    return ok ? 0 : CXM_EUNAVAIL;
}

int cxm_client_stream_close_send(cxm_client_stream *s)
{
    if (s->broken)
        return CXM_EUNAVAIL;
    if (s->closed_send)
        return 0;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    bool ok = cxm__run_batch(s->call, s->cq, &op, 1, NULL);
    s->closed_send = true;
    if (!ok)
        s->broken = true;
    return ok ? 0 : CXM_EUNAVAIL;
}

int cxm_client_stream_recv(cxm_client_stream *s, uint8_t **msg, size_t *len)
{
    if (s->recv_ended)
        return 0;
    grpc_metadata_array md;
    grpc_metadata_array_init(&md);
    grpc_byte_buffer *bb = NULL;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->got_initial_md) { /* must be received once, before or with the first message */
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &bb;
    bool started;
    bool ok = cxm__run_batch(s->call, s->cq, ops, n, &started);
    if (started)
        s->got_initial_md = true;
    grpc_metadata_array_destroy(&md);
    if (!ok || !bb) {
        /* End of stream, or the call failed: finish tells which. */
        if (bb)
            grpc_byte_buffer_destroy(bb);
        s->recv_ended = true;
        return 0;
    }
    int rc = cxm__buffer_to_heap(bb, msg, len);
    grpc_byte_buffer_destroy(bb);
    return rc == 0 ? 1 : rc;
}

void cxm_client_stream_cancel(cxm_client_stream *s)
{
    grpc_call_cancel(s->call, NULL); /* thread-safe: may interrupt a blocked recv */
}

int cxm_client_stream_finish(cxm_client_stream *s, cxm_client_result *out)
{
    memset(out, 0, sizeof *out);
    cxm__unary_io io; /* only the status fields are used */
    cxm__unary_io_init(&io);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &io.trailing_md;
    op.data.recv_status_on_client.status = &io.status;
    op.data.recv_status_on_client.status_details = &io.details;
    bool started;
    bool ok = cxm__run_batch(s->call, s->cq, &op, 1, &started);
    int rc = CXM_EINTERNAL; /* status already requested: a caller bug */
    if (started) {
        out->status = cxm__checked_status(ok, io.status);
        out->details = cxm__slice_to_string(io.details);
        rc = out->details ? 0 : CXM_ENOMEM;
    }
    cxm__unary_io_dispose(&io);
    grpc_call_unref(s->call);
    cxm__cq_dispose(s->cq, true);
    free(s);
    return rc;
}

/* ---- asynchronous loop ---- */

typedef struct cxm__async_call {
    struct cxm__async_call *prev, *next; /* the loop's in-flight list */
    grpc_call *call;
    grpc_byte_buffer *request; /* this call's reference to the caller's payload */
    cxm__unary_io io;
    cxm_client_done_fn done;
    void *user;
} cxm__async_call;

struct cxm_client_loop {
    grpc_completion_queue *cq;
    cxm__async_call *inflight;
    size_t pending;
};

int cxm_client_loop_create(cxm_client_loop **out)
{
    cxm_client_loop *l = calloc(1, sizeof *l);
    if (!l)
        return CXM_ENOMEM;
    /* Its own reference: a loop may outlive the channels it called through. */
    grpc_init();
    l->cq = grpc_completion_queue_create_for_next(NULL);
    if (!l->cq) {
        free(l);
        grpc_shutdown();
        return CXM_ENOMEM;
    }
    *out = l;
    return 0;
}

static void cxm__async_link(cxm_client_loop *l, cxm__async_call *a)
{
    a->prev = NULL;
    a->next = l->inflight;
    if (l->inflight)
        l->inflight->prev = a;
    l->inflight = a;
    l->pending++;
}

static void cxm__async_unlink(cxm_client_loop *l, cxm__async_call *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        l->inflight = a->next;
    if (a->next)
        a->next->prev = a->prev;
    l->pending--;
}

static void cxm__async_free(cxm__async_call *a)
{
    cxm__unary_io_dispose(&a->io);
    if (a->request)
        grpc_byte_buffer_destroy(a->request);
    grpc_call_unref(a->call);
    free(a);
}

void cxm_client_loop_destroy(cxm_client_loop *l)
{
    if (!l)
        return;
    /* Calls still in flight are a caller bug, but cancelling them beats
     * waiting out their deadlines or leaking them. Their callbacks do not run:
     * the caller has stopped caring. */
    for (cxm__async_call *a = l->inflight; a; a = a->next)
        grpc_call_cancel(a->call, NULL);
    while (l->pending) {
        grpc_event ev = grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        cxm__async_unlink(l, ev.tag);
        cxm__async_free(ev.tag);
    }
    cxm__cq_dispose(l->cq, false);
    free(l);
    grpc_shutdown();
}

int cxm_client_loop_unary(cxm_client_loop *l, cxm_channel *c, void *method,
                          grpc_byte_buffer *request, int64_t timeout_ms, cxm_client_done_fn done,
                          void *user)
{
    if (!method || !request || !done)
        return CXM_EINVAL;
    cxm__async_call *a = calloc(1, sizeof *a);
    if (!a)
        return CXM_ENOMEM;
    a->call = grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, l->cq,
                                                  method, cxm__deadline_after(timeout_ms), NULL);
    if (!a->call) {
        free(a);
        return CXM_ENOMEM;
    }
    a->done = done;
    a->user = user;
    cxm__unary_io_init(&a->io);
    /* SEND_MESSAGE takes ownership of the buffer's slices (grpc_types.h) and
     * leaves it empty, so every call sends a copy; copying only takes slice
     * references, the bytes are shared. That keeps request reusable. */
    a->request = grpc_byte_buffer_copy(request);
    if (!a->request) {
        cxm__async_free(a);
        return CXM_ENOMEM;
    }
    if (cxm__start_unary(c, a->call, a->request, &a->io, a) != GRPC_CALL_OK) {
        cxm__async_free(a);
        return CXM_EINTERNAL;
    }
    cxm__async_link(l, a);
    return 0;
}

static void cxm__async_complete(cxm_client_loop *l, grpc_event ev)
{
    cxm__async_call *a = ev.tag;
    cxm__async_unlink(l, a); /* before the callback, which may start calls */
    a->done(a->user, cxm__checked_status(ev.success, a->io.status), a->io.response);
    cxm__async_free(a);
}

/* timeout_ms <= 0 polls: it runs whatever is ready and returns. */
int cxm_client_loop_run(cxm_client_loop *l, int64_t timeout_ms)
{
    int handled = 0;
    gpr_timespec deadline =
        timeout_ms > 0 ? cxm__deadline_after(timeout_ms) : gpr_inf_past(GPR_CLOCK_MONOTONIC);
    for (;;) {
        gpr_timespec wait = handled ? gpr_inf_past(GPR_CLOCK_MONOTONIC) : deadline;
        grpc_event ev = grpc_completion_queue_next(l->cq, wait, NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            return handled;
        cxm__async_complete(l, ev);
        handled++;
    }
}

/* ---- tokens ---- */

int cxm_client_token_file(const char *path, char **token, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open the token file %s: %s", path, strerror(errno));
        return CXM_EINVAL;
    }
    char *buf = malloc(CXM_CLIENT_TOKEN_MAX + 2);
    size_t n = buf ? fread(buf, 1, CXM_CLIENT_TOKEN_MAX + 1, f) : 0;
    fclose(f);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return CXM_ENOMEM;
    }
    /* One line; the trailing newline editors add is not part of it. */
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    const char *why = n == 0                     ? "is empty"
                      : n > CXM_CLIENT_TOKEN_MAX ? "holds more than one token's worth of bytes"
                      : strpbrk(buf, " \t\r\n")  ? "holds more than one line or word"
                                                 : NULL;
    if (why) {
        snprintf(err, errlen, "the token file %s %s", path, why);
        free(buf);
        return CXM_EINVAL;
    }
    *token = buf;
    return 0;
}

int cxm_client_token_pick(const char *token, const char *file, char **out, char *err, size_t errlen)
{
    bool has_token = token && *token, has_file = file && *file;
    if (has_token && has_file) {
        snprintf(err, errlen, "give a token or a token file, not both");
        return CXM_EINVAL;
    }
    if (has_file)
        return cxm_client_token_file(file, out, err, errlen);
    char *copy = NULL;
    if (has_token && !(copy = strdup(token))) {
        snprintf(err, errlen, "out of memory");
        return CXM_ENOMEM;
    }
    *out = copy;
    return 0;
}

int cxm_channel_opts_from_env(cxm_channel_opts *o, char *err, size_t errlen)
{
    static char *token; /* kept for the process: o->token points at it */
    o->tls_ca = env_or("CXM_TLS_CA", o->tls_ca);
    o->tls_cert = env_or("CXM_TLS_CERT", o->tls_cert);
    o->tls_key = env_or("CXM_TLS_KEY", o->tls_key);
    o->tls_server_name = env_or("CXM_TLS_SERVER_NAME", o->tls_server_name);
    char *t = NULL;
    int rc = cxm_client_token_pick(getenv("CXM_TOKEN"), getenv("CXM_TOKEN_FILE"), &t, err, errlen);
    if (rc != 0 || !t)
        return rc;
    free(token);
    o->token = token = t;
    return 0;
}
