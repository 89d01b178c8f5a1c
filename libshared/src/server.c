/*
 * server.c - the gRPC core server runtime described in cxm/server.h.
 *
 * Every call is a small state machine driven by the completion queue of the
 * worker that matched it. Up to four tags can be outstanding per call:
 *   matched  the posted request was matched (or failed at shutdown);
 *   closed   RECV_CLOSE_ON_SERVER: the RPC is over, cancelled or not;
 *   recv     one RECV_MESSAGE of a client- or bidi-stream;
 *   send     one send batch (message, or initial metadata + status).
 * The call is freed when its reference count drops to zero: one reference
 * per outstanding tag plus one held by the handler until it finishes the call.
 * The mutex orders handler actions (possibly from other threads) against
 * completions; it is never held while calling into a handler.
 */
#include "cxm/server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/tls.h"
#include "cxm/wire.h"
#include "server_internal.h"

#define CALL_ARENA_INITIAL 2048
#define MAX_SERVICES 32
#define MAX_METHODS 256
#define DETAILS_MAX 512
/* A bidi stream stops reading while this much of its output is queued, so a
 * client that sends without reading cannot grow our memory. */
#define SEND_QUEUE_HIGH_WATER (4u << 20)
#define DRAIN_TICK_MS 100

enum tag_kind {
    TAG_MATCHED,
    TAG_CLOSED,
    TAG_RECV,
    TAG_SEND,
    TAG_UNKNOWN,
    TAG_UNKNOWN_DONE,
    TAG_SHUTDOWN
};

typedef struct tag {
    enum tag_kind kind;
    void *owner;
} tag;

typedef struct reg_method {
    const cxm_service *svc;
    const cxm_method *m;
    char path[256];
    void *handle;
    cxm_access access; /* from the service's access table; UNSET fails closed */
    /* Where the audit line finds the customer: a top-level customer_id
     * string, or customer_id inside a top-level CustomerRef customer. */
    const ProtobufCFieldDescriptor *customer_id, *customer_ref, *ref_customer_id;
} reg_method;

typedef struct worker {
    cxm_server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    int started;
} worker;

typedef struct out_msg {
    struct out_msg *next;
    grpc_byte_buffer *bb;
    size_t len;
} out_msg;

struct cxm_call {
    tag t_matched, t_closed, t_recv, t_send;
    worker *w;
    const reg_method *rm;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload; /* matched request, or the last received message */
    grpc_byte_buffer *sending; /* message of the send batch in flight */
    atomic_int refs;
    atomic_bool closed;
    pthread_mutex_t mu;
    out_msg *queue_head, *queue_tail;
    size_t queued_bytes;
    int close_cancelled;
    bool initial_md_sent, send_in_flight, finished, recv_deferred, recv_held, status_pending;
    /* RECV_CLOSE_ON_SERVER was started, in its own batch or (close_in_send)
     * folded into the final send batch: a unary handler that answers at once
     * costs one batch and one completion less. */
    bool close_started, close_in_send;
    grpc_status_code status_code;
    grpc_slice status_details;
    /* Trailing metadata: retry-after-ms of a rate-limited call. */
    grpc_metadata trailer;
    size_t ntrailers;
    char retry_after[24];
    /* Auth on: who called (for the audit line) and, for audited methods,
     * which customer the request names. */
    char subject[CXM_AUTH_SUBJECT_MAX];
    char customer[128];
    /* In the server's list of calls under a deadline of its own (the client
     * set none); the list holds a reference. */
    struct cxm_call *dl_prev, *dl_next;
    bool dl_linked;
    void *user;
    cxm_arena arena;
    _Alignas(max_align_t) char arena_initial[CALL_ARENA_INITIAL];
};

/* A call to a method nobody registered: answered UNIMPLEMENTED at once. */
typedef struct unknown_call {
    tag t_matched, t_done;
    worker *w;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_slice status_details;
    int close_cancelled;
} unknown_call;

struct cxm_server {
    cxm_server_opts opts;
    grpc_server *server;
    worker *workers;
    int nworkers;
    const cxm_service *services[MAX_SERVICES];
    size_t nservices;
    reg_method methods[MAX_METHODS];
    size_t nmethods;
    cxm__health *health;
    cxm__reflection *reflection;
    tag t_shutdown;
    /* Calls allocated and not yet freed: posted requests and running RPCs.
     * Once draining, posted ones are failed by gRPC, so zero means every
     * RPC is over. */
    atomic_int live_calls;
    int port;
    cxm_tls_server *tls; /* NULL: plaintext */
    atomic_bool started, draining, stop_requested;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool shutdown_done;
    /* Calls running under the server's default deadline (dl_mu), and the
     * guard thread that expires them and enforces the connection cap. */
    pthread_mutex_t dl_mu;
    cxm_call *dl_head;
    pthread_t guard;
    bool guard_started;
    atomic_bool guard_stop;
    int64_t shed_total, shed_logged_at;
};

static void post_call(worker *w, const reg_method *rm);
static void post_unknown(worker *w);
static void unknown_free(unknown_call *u);
static void start_recv(cxm_call *c);

/* ---- time ---- */

static gpr_timespec monotonic_deadline(gpr_timespec t)
{
    return gpr_convert_clock_type(t, GPR_CLOCK_MONOTONIC);
}

int64_t cxm_call_remaining_ms(const cxm_call *c)
{
    gpr_timespec d = monotonic_deadline(c->deadline);
    if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
        return INT64_MAX;
    return gpr_time_to_millis(gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC)));
}

/* ---- call lifetime ---- */

/* A call (registered or unknown) was freed, maybe on a service's thread.
 * While draining the count drops under the mutex, so the drain, which reads
 * it under the mutex, cannot go on to free the server before this is done
 * with it. A drop that raced with the start of the drain may miss the
 * wake-up; the drain re-checks every DRAIN_TICK_MS. */
static void live_call_gone(cxm_server *s)
{
    if (!atomic_load(&s->draining)) {
        atomic_fetch_sub(&s->live_calls, 1);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (atomic_fetch_sub(&s->live_calls, 1) == 1)
        pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void call_free(cxm_call *c)
{
    cxm_server *s = c->w->srv;
    for (out_msg *m = c->queue_head, *next; m; m = next) {
        next = m->next;
        grpc_byte_buffer_destroy(m->bb);
        free(m);
    }
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->sending)
        grpc_byte_buffer_destroy(c->sending);
    grpc_slice_unref(c->status_details);
    grpc_metadata_array_destroy(&c->md);
    if (c->call)
        grpc_call_unref(c->call);
    cxm_arena_dispose(&c->arena);
    pthread_mutex_destroy(&c->mu);
    free(c);
    live_call_gone(s);
}

static void call_unref(cxm_call *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        call_free(c);
}

/* ---- default deadlines ---- */

/* A call that came without a deadline gets the server's (unary or stream),
 * unless its method is open-ended. The guard thread cancels it when that
 * passes; gRPC then completes RECV_CLOSE_ON_SERVER as cancelled and the
 * method's on_cancel runs, exactly as for a client's deadline. */
static void impose_deadline(cxm_call *c)
{
    const cxm_method *m = c->rm->m;
    if (m->open_ended || cxm_call_remaining_ms(c) != INT64_MAX)
        return;
    cxm_server *s = c->w->srv;
    int64_t ms = m->kind == CXM_UNARY ? s->opts.default_deadline_ms : s->opts.stream_deadline_ms;
    c->deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->dl_mu);
    c->dl_linked = true;
    c->dl_prev = NULL;
    c->dl_next = s->dl_head;
    if (s->dl_head)
        s->dl_head->dl_prev = c;
    s->dl_head = c;
    pthread_mutex_unlock(&s->dl_mu);
}

static void dl_unlink_locked(cxm_server *s, cxm_call *c)
{
    if (c->dl_prev)
        c->dl_prev->dl_next = c->dl_next;
    else
        s->dl_head = c->dl_next;
    if (c->dl_next)
        c->dl_next->dl_prev = c->dl_prev;
    c->dl_prev = c->dl_next = NULL;
    c->dl_linked = false;
}

/* The RPC is over: the guard has nothing left to cancel. */
static void forget_deadline(cxm_call *c)
{
    cxm_server *s = c->w->srv;
    pthread_mutex_lock(&s->dl_mu);
    bool linked = c->dl_linked;
    if (linked)
        dl_unlink_locked(s, c);
    pthread_mutex_unlock(&s->dl_mu);
    if (linked)
        call_unref(c);
}

/* Cancel the calls whose imposed deadline passed. They leave the list
 * under the mutex; gRPC is called, and the references dropped, outside. */
static void expire_calls(cxm_server *s)
{
    cxm_call *expired = NULL;
    pthread_mutex_lock(&s->dl_mu);
    for (cxm_call *c = s->dl_head, *next; c; c = next) {
        next = c->dl_next;
        if (cxm_call_remaining_ms(c) > 0)
            continue;
        dl_unlink_locked(s, c);
        c->dl_next = expired;
        expired = c;
    }
    pthread_mutex_unlock(&s->dl_mu);
    for (cxm_call *c = expired, *next; c; c = next) {
        next = c->dl_next;
        bool unary = c->rm->m->kind == CXM_UNARY;
        grpc_call_cancel_with_status(
            c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
            unary ? "the call came without a deadline and outlived the server's default "
                    "(--default-deadline); set a deadline"
                  : "the stream came without a deadline and outlived the server's default "
                    "(--stream-deadline); set a deadline",
            NULL);
        cxm_log_debug("server.deadline_imposed", "%s: cancelled at the server's default deadline",
                      c->rm->path);
        call_unref(c);
    }
}

/* Start a batch owning one reference; on failure the reference is dropped
 * by the caller's unref, since no tag will ever come back. */
static bool start_batch(cxm_call *c, const grpc_op *ops, size_t n, tag *t)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
    if (e == GRPC_CALL_OK)
        return true;
    cxm_log_error("server.batch_failed", "%s: grpc_call_start_batch failed: %s", c->rm->path,
                  grpc_call_error_to_string(e));
    atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
    return false;
}

/* ---- encoding ---- */

static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg, size_t limit, size_t *len,
                                      int *err)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    *len = n; /* also when too big: the caller names the size */
    if (n > limit) {
        *err = CXM_ETOOBIG;
        return NULL;
    }
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Decode bb with the given allocator. The bytes are walked first with
 * cxm_wire_check, because protobuf-c recurses without limit and a deeply
 * nested request would overflow the worker's stack. Returns 0, CXM_ETOOBIG
 * when the message nests deeper than CXM_WIRE_MAX_DEPTH, or CXM_EINVAL when
 * the bytes are not a valid message of that type (or do not fit the
 * allocator's limit). */
static int unpack_message(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
                          ProtobufCAllocator *alloc, ProtobufCMessage **out)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return CXM_EINVAL; /* e.g. a compressed message that does not decompress */
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    const uint8_t *data = GRPC_SLICE_START_PTR(s);
    size_t len = GRPC_SLICE_LENGTH(s);
    int rc = cxm_wire_check(d, data, len, CXM_WIRE_MAX_DEPTH);
    if (rc == 0) {
        *out = protobuf_c_message_unpack(d, alloc, len, data);
        rc = *out ? 0 : CXM_EINVAL;
    }
    grpc_slice_unref(s);
    return rc;
}

/* ---- sending (call mutex held) ---- */

static void fill_status_ops(cxm_call *c, grpc_op *ops, size_t *n)
{
    if (!c->initial_md_sent) {
        ops[*n].op = GRPC_OP_SEND_INITIAL_METADATA;
        (*n)++;
        c->initial_md_sent = true;
    }
    ops[*n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[*n].data.send_status_from_server.status = c->status_code;
    ops[*n].data.send_status_from_server.trailing_metadata_count = c->ntrailers;
    ops[*n].data.send_status_from_server.trailing_metadata = c->ntrailers ? &c->trailer : NULL;
    ops[*n].data.send_status_from_server.status_details =
        GRPC_SLICE_LENGTH(c->status_details) ? &c->status_details : NULL;
    (*n)++;
    if (!c->close_started) {
        ops[*n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[*n].data.recv_close_on_server.cancelled = &c->close_cancelled;
        (*n)++;
        c->close_started = c->close_in_send = true;
    }
}

/* Start the next send batch, if none is in flight: a queued message, else
 * the pending status, else resume a read deferred by back-pressure. */
static void pump_locked(cxm_call *c)
{
    if (c->send_in_flight || atomic_load(&c->closed))
        return;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    out_msg *m = c->queue_head;
    if (m) {
        c->queue_head = m->next;
        if (!c->queue_head)
            c->queue_tail = NULL;
        c->queued_bytes -= m->len;
        c->sending = m->bb;
        free(m);
        if (!c->initial_md_sent) {
            ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
            c->initial_md_sent = true;
        }
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->sending;
        /* The last message and the status travel in one batch. */
        if (!c->queue_head && c->status_pending) {
            c->status_pending = false;
            fill_status_ops(c, ops, &n);
        }
    } else if (c->status_pending) {
        c->status_pending = false;
        fill_status_ops(c, ops, &n);
    } else {
        if (c->recv_deferred && !c->recv_held && !c->finished) {
            c->recv_deferred = false;
            start_recv(c);
        }
        return;
    }
    c->send_in_flight = start_batch(c, ops, n, &c->t_send);
    if (!c->send_in_flight && c->close_in_send)
        c->close_started = c->close_in_send = false;
}

static void enqueue_locked(cxm_call *c, grpc_byte_buffer *bb, size_t len)
{
    out_msg *m = malloc(sizeof *m);
    if (!m) {
        grpc_byte_buffer_destroy(bb);
        return;
    }
    m->next = NULL;
    m->bb = bb;
    m->len = len;
    if (c->queue_tail)
        c->queue_tail->next = m;
    else
        c->queue_head = m;
    c->queue_tail = m;
    c->queued_bytes += len;
}

/* ---- handler API ---- */

void *cxm_call_service_ctx(const cxm_call *c)
{
    return c->rm->svc->ctx;
}

size_t cxm_call_max_message_bytes(const cxm_call *c)
{
    return c->w->srv->opts.max_message_bytes;
}

cxm_arena *cxm_call_arena(cxm_call *c)
{
    return &c->arena;
}

void *cxm_call_user(const cxm_call *c)
{
    return c->user;
}

void cxm_call_set_user(cxm_call *c, void *user)
{
    c->user = user;
}

const char *cxm_call_path(const cxm_call *c)
{
    return c->rm->path;
}

bool cxm_call_cancelled(cxm_call *c)
{
    if (atomic_load(&c->closed)) {
        pthread_mutex_lock(&c->mu);
        bool finished = c->finished;
        pthread_mutex_unlock(&c->mu);
        if (!finished)
            return true;
    }
    return cxm_call_remaining_ms(c) <= 0;
}

int cxm_call_send(cxm_call *c, const ProtobufCMessage *msg)
{
    size_t len;
    int err = 0;
    grpc_byte_buffer *bb = pack_message(msg, c->w->srv->opts.max_message_bytes, &len, &err);
    if (!bb)
        return err;
    pthread_mutex_lock(&c->mu);
    if (c->finished || atomic_load(&c->closed)) {
        pthread_mutex_unlock(&c->mu);
        grpc_byte_buffer_destroy(bb);
        return 0;
    }
    enqueue_locked(c, bb, len);
    pump_locked(c);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* One line per audited call (writes, erasures, internal calls) with auth
 * on, whatever its outcome: who, what, which customer. */
static void audit(const cxm_call *c, grpc_status_code code)
{
    if (!c->w->srv->opts.auth || !cxm_access_audited(c->rm->access))
        return;
    cxm_log_info("audit", "sub=%s method=%s customer=%s outcome=%s",
                 c->subject[0] ? c->subject : "-", c->rm->path, c->customer[0] ? c->customer : "-",
                 cxm_status_name(code));
}

/* End the call: the status goes out after whatever is queued. */
static void finish_with(cxm_call *c, grpc_status_code code, const char *details,
                        grpc_byte_buffer *last, size_t last_len)
{
    pthread_mutex_lock(&c->mu);
    if (c->finished) {
        pthread_mutex_unlock(&c->mu);
        cxm_log_error("server.double_finish", "%s: a handler ended the call twice; ignored",
                      c->rm->path);
        if (last)
            grpc_byte_buffer_destroy(last);
        return;
    }
    c->finished = true;
    audit(c, atomic_load(&c->closed) ? GRPC_STATUS_CANCELLED : code);
    if (atomic_load(&c->closed)) {
        if (last)
            grpc_byte_buffer_destroy(last);
    } else {
        if (last)
            enqueue_locked(c, last, last_len);
        c->status_code = code;
        if (details && *details)
            c->status_details = grpc_slice_from_copied_string(details);
        c->status_pending = true;
        pump_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    call_unref(c); /* the handler's reference */
}

/* Not INTERNAL: the client can ask for less, or the operator raise the
 * limit; the status says so. */
static void reply_too_big(cxm_call *c, size_t size)
{
    cxm_call_finish(c, CXM_ENOMEM,
                    "%s: the reply would take %zu bytes, over this server's message limit of %zu "
                    "bytes; ask for less (a smaller page) or raise --max-message-bytes",
                    c->rm->path + 1, size, c->w->srv->opts.max_message_bytes);
}

void cxm_call_reply(cxm_call *c, const ProtobufCMessage *resp)
{
    size_t len;
    int err = 0;
    grpc_byte_buffer *bb = pack_message(resp, c->w->srv->opts.max_message_bytes, &len, &err);
    if (!bb)
        return reply_too_big(c, len);
    finish_with(c, GRPC_STATUS_OK, NULL, bb, len);
}

void cxm_call_reply_bytes(cxm_call *c, const void *data, size_t len)
{
    if (len > c->w->srv->opts.max_message_bytes)
        return reply_too_big(c, len);
    grpc_slice s = grpc_slice_from_copied_buffer(data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    finish_with(c, GRPC_STATUS_OK, NULL, bb, len);
}

void cxm_call_finish(cxm_call *c, int err, const char *fmt, ...)
{
    char details[DETAILS_MAX] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(details, sizeof details, fmt, ap);
        va_end(ap);
    } else if (err) {
        snprintf(details, sizeof details, "%s", cxm_strerror(err));
    }
    finish_with(c, cxm_err_status(err), details, NULL, 0);
}

/* ---- receiving ---- */

void cxm_call_hold_recv(cxm_call *c)
{
    pthread_mutex_lock(&c->mu);
    c->recv_held = true;
    pthread_mutex_unlock(&c->mu);
}

void cxm_call_resume_recv(cxm_call *c)
{
    pthread_mutex_lock(&c->mu);
    c->recv_held = false;
    /* Still deferred by a full send queue: on_send_done reads on. */
    if (c->recv_deferred && !c->send_in_flight && !c->finished && !atomic_load(&c->closed)) {
        c->recv_deferred = false;
        start_recv(c);
    }
    pthread_mutex_unlock(&c->mu);
}

static void start_recv(cxm_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->payload;
    start_batch(c, &op, 1, &c->t_recv);
}

/* Decode a request message, or write into why (DETAILS_MAX bytes) why it
 * cannot be decoded. what: "the request" or "a stream message". */
static ProtobufCMessage *decode_request(cxm_call *c, grpc_byte_buffer *bb,
                                        ProtobufCAllocator *alloc, const char *what, char *why)
{
    ProtobufCMessage *req = NULL;
    int rc = unpack_message(bb, c->rm->m->request, alloc, &req);
    if (rc == CXM_ETOOBIG)
        snprintf(why, DETAILS_MAX, "%s: %s nests messages deeper than %d levels", c->rm->path, what,
                 CXM_WIRE_MAX_DEPTH);
    else if (rc != 0)
        snprintf(why, DETAILS_MAX, "%s: %s is not a valid message (expected a serialized %s)",
                 c->rm->path, what, c->rm->m->request->name);
    return req;
}

static const char *string_field(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    if (!m || !f)
        return NULL;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
        return NULL;
    return *(const char *const *)((const char *)m + f->offset);
}

/* The customer an audited unary or server-streaming request names,
 * remembered for the audit line (the request may be gone by the time the
 * call ends). Identities are not written: they are personal data. Stream
 * messages (TrackStream) name many customers: their lines say "-". */
static void note_customer(cxm_call *c, const ProtobufCMessage *req)
{
    const reg_method *rm = c->rm;
    if (!c->w->srv->opts.auth || !cxm_access_audited(rm->access) || c->customer[0])
        return;
    const char *id = string_field(req, rm->customer_id);
    if ((!id || !*id) && rm->customer_ref) {
        const ProtobufCMessage *ref =
            *(const ProtobufCMessage *const *)((const char *)req + rm->customer_ref->offset);
        id = string_field(ref, rm->ref_customer_id);
    }
    if (!id || !*id)
        return;
    /* Whatever the client sent: no byte of it may forge another field or
     * line of the audit log. */
    size_t n = 0;
    for (; id[n] && n + 1 < sizeof c->customer; n++)
        c->customer[n] = id[n] > ' ' && id[n] < 0x7f && id[n] != '"' ? id[n] : '?';
    c->customer[n] = '\0';
}

/* Unary and server-streaming: the request came with the match. The decoded
 * request lives in the call's arena, valid until the call ends. */
static void dispatch_initial(cxm_call *c)
{
    if (!c->payload) {
        cxm_call_finish(c, CXM_EINVAL,
                        "%s: the request carried no message (expected a serialized %s)",
                        c->rm->path, c->rm->m->request->name);
        return;
    }
    char why[DETAILS_MAX];
    ProtobufCMessage *req =
        decode_request(c, c->payload, cxm_arena_protobuf(&c->arena), "the request", why);
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    note_customer(c, req);
    if (req)
        c->rm->m->on_message(c, req);
    else
        cxm_call_finish(c, CXM_EINVAL, "%s", why);
}

/* One message of a client- or bidi-stream. It is decoded on the heap and
 * freed after the handler returns, so a long stream does not grow the arena
 * (or with the method's stream_allocator, for the handler to keep). */
static void on_recv(cxm_call *c, bool ok)
{
    grpc_byte_buffer *bb = c->payload;
    c->payload = NULL;
    pthread_mutex_lock(&c->mu);
    bool finished = c->finished; /* ended meanwhile from another thread */
    pthread_mutex_unlock(&c->mu);
    if (!ok || finished) {
        if (bb)
            grpc_byte_buffer_destroy(bb);
        /* The call is failing; the close tag will report it. */
    } else if (!bb) {
        if (c->rm->m->on_half_close)
            c->rm->m->on_half_close(c);
        else
            cxm_call_finish(c, 0, NULL);
    } else {
        const cxm_method *m = c->rm->m;
        ProtobufCAllocator *alloc = m->stream_allocator ? m->stream_allocator(c) : NULL;
        char why[DETAILS_MAX];
        ProtobufCMessage *req = m->stream_allocator && !alloc
                                    ? NULL
                                    : decode_request(c, bb, alloc, "a stream message", why);
        if (m->stream_allocator && !alloc)
            snprintf(why, sizeof why, "%s: out of memory for a stream message", c->rm->path);
        grpc_byte_buffer_destroy(bb);
        if (!req) {
            if (m->on_bad_message)
                m->on_bad_message(c, why);
            else
                cxm_call_finish(c, CXM_EINVAL, "%s", why);
        } else {
            m->on_message(c, req);
            if (!alloc)
                protobuf_c_message_free_unpacked(req, NULL);
            pthread_mutex_lock(&c->mu);
            if (!c->finished && !atomic_load(&c->closed)) {
                if (c->recv_held || (c->send_in_flight && c->queued_bytes >= SEND_QUEUE_HIGH_WATER))
                    c->recv_deferred = true;
                else
                    start_recv(c);
            }
            pthread_mutex_unlock(&c->mu);
        }
    }
    call_unref(c);
}

/* RECV_CLOSE_ON_SERVER in its own batch: tells when the RPC is over,
 * cancelled or not (call mutex held). */
static void start_close(cxm_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    c->close_started = start_batch(c, &op, 1, &c->t_closed);
}

/* The value of the call's authorization metadata, or NULL. */
/* The credentials of a call with auth on: 0, or a CXM_E* code with why. */
static int check_credentials(cxm_auth *auth, const grpc_metadata_array *md, cxm_principal *p,
                             char *why, size_t whylen)
{
    const grpc_slice *v = NULL;
    for (size_t i = 0; i < md->count && !v; i++)
        if (grpc_slice_str_cmp(md->metadata[i].key, "authorization") == 0)
            v = &md->metadata[i].value;
    return cxm_auth_check(auth, v ? (const char *)GRPC_SLICE_START_PTR(*v) : NULL,
                          v ? GRPC_SLICE_LENGTH(*v) : 0, (int64_t)time(NULL), p, why, whylen);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* With auth on: credentials, scope and rate limit, before the request is
 * read. Returns false after ending the call. The status message says what
 * is wrong and never holds the token. */
static bool authorize(cxm_call *c)
{
    cxm_auth *auth = c->w->srv->opts.auth;
    const reg_method *rm = c->rm;
    if (!auth || rm->access == CXM_ACCESS_PUBLIC)
        return true;
    cxm_principal p;
    char why[300];
    int rc = check_credentials(auth, &c->md, &p, why, sizeof why);
    if (rc == 0) {
        snprintf(c->subject, sizeof c->subject, "%s", p.subject);
        rc = cxm_auth_allow(&p, rm->access, rm->svc->scope_area, why, sizeof why);
    }
    int64_t retry_ms = 0;
    if (rc == 0 && (rc = cxm_auth_rate(auth, p.subject, now_ms(), &retry_ms)) != 0) {
        snprintf(c->retry_after, sizeof c->retry_after, "%lld", (long long)retry_ms);
        c->trailer.key = grpc_slice_from_static_string("retry-after-ms");
        c->trailer.value = grpc_slice_from_static_string(c->retry_after);
        c->ntrailers = 1;
        snprintf(why, sizeof why,
                 "rate limit of this subject exceeded; retry after %lld ms (see retry-after-ms)",
                 (long long)retry_ms);
    }
    if (rc == 0)
        return true;
    cxm_call_finish(c, rc, "%s: %s", rm->path + 1, why);
    return false;
}

static void on_matched(cxm_call *c, bool ok)
{
    worker *w = c->w;
    if (!ok) { /* the server is shutting down */
        call_free(c);
        return;
    }
    if (!atomic_load(&w->srv->draining))
        post_call(w, c->rm);

    /* The matched tag's reference becomes the handler's reference; one more
     * keeps the call alive until this function is done with it. */
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    impose_deadline(c);
    if (cxm_call_remaining_ms(c) <= 0) {
        cxm_call_finish(c, CXM_EDEADLINE, "%s: the deadline passed before the call started",
                        c->rm->path);
    } else if (!authorize(c)) {
        /* ended, request unread */
    } else if (c->rm->m->kind == CXM_UNARY || c->rm->m->kind == CXM_SERVER_STREAMING) {
        dispatch_initial(c);
    }
    pthread_mutex_lock(&c->mu);
    if (!c->close_started) /* the handler answers later, or reads a stream */
        start_close(c);
    if (c->rm->m->kind == CXM_CLIENT_STREAMING || c->rm->m->kind == CXM_BIDI_STREAMING)
        if (!c->finished)
            start_recv(c);
    pthread_mutex_unlock(&c->mu);
    call_unref(c);
}

static void on_send_done(cxm_call *c, bool ok)
{
    pthread_mutex_lock(&c->mu);
    if (c->sending) {
        grpc_byte_buffer_destroy(c->sending);
        c->sending = NULL;
    }
    c->send_in_flight = false;
    bool closed_too = c->close_in_send;
    if (closed_too)
        atomic_store(&c->closed, true); /* the status went out: the RPC is over */
    else if (ok)
        pump_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (closed_too)
        forget_deadline(c);
    call_unref(c);
}

static void on_closed(cxm_call *c)
{
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->closed, true);
    bool cancelled = !c->finished;
    pthread_mutex_unlock(&c->mu);
    forget_deadline(c);
    if (cancelled && c->rm->m->on_cancel)
        c->rm->m->on_cancel(c);
    call_unref(c);
}

/* ---- posting requests ---- */

static void post_call(worker *w, const reg_method *rm)
{
    cxm_call *c = calloc(1, sizeof *c);
    if (!c) {
        cxm_log_error("server.out_of_memory", "%s: cannot post a request", rm->path);
        return;
    }
    c->t_matched = (tag){TAG_MATCHED, c};
    c->t_closed = (tag){TAG_CLOSED, c};
    c->t_recv = (tag){TAG_RECV, c};
    c->t_send = (tag){TAG_SEND, c};
    atomic_fetch_add(&w->srv->live_calls, 1);
    c->w = w;
    c->rm = rm;
    c->status_details = grpc_empty_slice();
    atomic_init(&c->refs, 1);
    atomic_init(&c->closed, false);
    pthread_mutex_init(&c->mu, NULL);
    grpc_metadata_array_init(&c->md);
    cxm_arena_init(&c->arena, c->arena_initial, sizeof c->arena_initial,
                   w->srv->opts.call_arena_limit);
    bool with_payload = rm->m->kind == CXM_UNARY || rm->m->kind == CXM_SERVER_STREAMING;
    grpc_call_error e = grpc_server_request_registered_call(
        w->srv->server, rm->handle, &c->call, &c->deadline, &c->md,
        with_payload ? &c->payload : NULL, w->cq, w->cq, &c->t_matched);
    if (e != GRPC_CALL_OK) {
        if (!atomic_load(&w->srv->draining))
            cxm_log_error("server.post_failed", "%s: cannot post a request: %s", rm->path,
                          grpc_call_error_to_string(e));
        call_free(c);
    }
}

/* The message for a path no registered method matched. */
static void describe_unknown(const cxm_server *s, const char *path, char *buf, size_t len)
{
    const char *slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;
    if (!slash) {
        snprintf(buf, len, "malformed method path \"%s\"; expected /package.Service/Method", path);
        return;
    }
    size_t svc_len = (size_t)(slash - path - 1);
    const char *method = slash + 1;
    for (size_t i = 0; i < s->nservices; i++) {
        const cxm_service *svc = s->services[i];
        if (strlen(svc->name) != svc_len || memcmp(svc->name, path + 1, svc_len) != 0)
            continue;
        const ProtobufCServiceDescriptor *d = svc->contract;
        for (unsigned j = 0; d && j < d->n_methods; j++)
            if (strcmp(d->methods[j].name, method) == 0) {
                snprintf(buf, len, "%s/%s is not implemented yet by this server", svc->name,
                         method);
                return;
            }
        snprintf(buf, len, "service %s has no method \"%s\"", svc->name, method);
        return;
    }
    snprintf(buf, len,
             "unknown service \"%.*s\"; list the services this server offers with server "
             "reflection",
             (int)svc_len, path + 1);
}

static void post_unknown(worker *w)
{
    unknown_call *u = calloc(1, sizeof *u);
    if (!u)
        return;
    u->t_matched = (tag){TAG_UNKNOWN, u};
    u->t_done = (tag){TAG_UNKNOWN_DONE, u};
    atomic_fetch_add(&w->srv->live_calls, 1);
    u->w = w;
    u->status_details = grpc_empty_slice();
    grpc_call_details_init(&u->details);
    grpc_metadata_array_init(&u->md);
    if (grpc_server_request_call(w->srv->server, &u->call, &u->details, &u->md, w->cq, w->cq,
                                 &u->t_matched) != GRPC_CALL_OK)
        unknown_free(u);
}

static void unknown_free(unknown_call *u)
{
    cxm_server *s = u->w->srv;
    grpc_slice_unref(u->status_details);
    grpc_call_details_destroy(&u->details);
    grpc_metadata_array_destroy(&u->md);
    if (u->call)
        grpc_call_unref(u->call);
    free(u);
    live_call_gone(s);
}

static void on_unknown(unknown_call *u, bool ok)
{
    if (!ok) {
        unknown_free(u);
        return;
    }
    if (!atomic_load(&u->w->srv->draining))
        post_unknown(u->w);
    char path[300], msg[DETAILS_MAX];
    size_t plen = GRPC_SLICE_LENGTH(u->details.method);
    if (plen >= sizeof path)
        plen = sizeof path - 1;
    memcpy(path, GRPC_SLICE_START_PTR(u->details.method), plen);
    path[plen] = '\0';
    /* With auth on, even the list of what is not served is for callers
     * with credentials: an unknown method answers as a known one would. */
    grpc_status_code code = GRPC_STATUS_UNIMPLEMENTED;
    cxm_auth *auth = u->w->srv->opts.auth;
    cxm_principal p;
    char why[300];
    if (auth && check_credentials(auth, &u->md, &p, why, sizeof why) != 0) {
        code = GRPC_STATUS_UNAUTHENTICATED;
        snprintf(msg, sizeof msg, "%s: %s", path + (path[0] == '/'), why);
    } else {
        describe_unknown(u->w->srv, path, msg, sizeof msg);
    }
    u->status_details = grpc_slice_from_copied_string(msg);

    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = code;
    ops[1].data.send_status_from_server.status_details = &u->status_details;
    ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[2].data.recv_close_on_server.cancelled = &u->close_cancelled;
    if (grpc_call_start_batch(u->call, ops, 3, &u->t_done, NULL) != GRPC_CALL_OK)
        unknown_free(u);
}

/* ---- workers ---- */

static void signal_shutdown_done(cxm_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->shutdown_done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void handle_event(grpc_event ev)
{
    if (ev.type != GRPC_OP_COMPLETE)
        return;
    tag *t = ev.tag;
    bool ok = ev.success != 0;
    switch (t->kind) {
    case TAG_MATCHED:
        on_matched(t->owner, ok);
        break;
    case TAG_CLOSED:
        on_closed(t->owner);
        break;
    case TAG_RECV:
        on_recv(t->owner, ok);
        break;
    case TAG_SEND:
        on_send_done(t->owner, ok);
        break;
    case TAG_UNKNOWN:
        on_unknown(t->owner, ok);
        break;
    case TAG_UNKNOWN_DONE:
        unknown_free(t->owner);
        break;
    case TAG_SHUTDOWN:
        signal_shutdown_done(t->owner);
        break;
    }
}

/* Handle events until the queue is shut down and empty. */
static void run_queue(grpc_completion_queue *cq)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return;
        handle_event(ev);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    run_queue(w->cq);
    return NULL;
}

/* ---- lifecycle ---- */

/* A SIGTERM/SIGINT (or SIGHUP) that reached a thread not blocking it. */
static volatile sig_atomic_t noted_signal, noted_hup;

static void note_signal(int sig)
{
    if (sig == SIGHUP)
        noted_hup = 1;
    else
        noted_signal = sig;
}

static void default_ms(int64_t *v, int64_t def)
{
    if (*v <= 0)
        *v = def;
}

/* The CXM_LIMIT_* defaults for what opts left at 0 (see cxm/server.h). */
static void default_limits(cxm_server_opts *o)
{
    if (o->max_streams <= 0)
        o->max_streams = CXM_LIMIT_MAX_STREAMS;
    default_ms(&o->keepalive_ms, CXM_LIMIT_KEEPALIVE_MS);
    default_ms(&o->keepalive_timeout_ms, CXM_LIMIT_KEEPALIVE_TIMEOUT_MS);
    default_ms(&o->idle_timeout_ms, CXM_LIMIT_IDLE_MS);
    default_ms(&o->max_connection_age_ms, CXM_LIMIT_AGE_MS);
    default_ms(&o->max_connection_age_grace_ms, CXM_LIMIT_AGE_GRACE_MS);
    default_ms(&o->default_deadline_ms, CXM_LIMIT_DEADLINE_MS);
    default_ms(&o->stream_deadline_ms, CXM_LIMIT_STREAM_DEADLINE_MS);
    if (o->memory_quota == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        size_t quarter = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 4 : 0;
        o->memory_quota =
            quarter && quarter < CXM_LIMIT_MEMORY_QUOTA ? quarter : CXM_LIMIT_MEMORY_QUOTA;
    }
    if (o->max_connections <= 0) {
        struct rlimit rl;
        long nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                          ? (long)rl.rlim_cur
                          : 1 << 20;
        o->max_connections = cxm_server_default_max_connections(nofile);
    }
}

int cxm_server_create(const cxm_server_opts *opts, cxm_server **out)
{
    cxm_server *s = calloc(1, sizeof *s);
    if (!s)
        return CXM_ENOMEM;
    s->opts = *opts;
    if (s->opts.workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->opts.workers = n > 0 ? (int)n : 1;
    }
    if (s->opts.requests_per_method <= 0)
        s->opts.requests_per_method = 16;
    if (s->opts.max_message_bytes == 0)
        s->opts.max_message_bytes = 4u << 20;
    if (s->opts.call_arena_limit == 0)
        s->opts.call_arena_limit = 64u << 20;
    default_limits(&s->opts);
    s->t_shutdown = (tag){TAG_SHUTDOWN, s};
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->dl_mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    /* Signals are taken synchronously by cxm_server_run; block them before
     * gRPC starts its own threads so that they inherit the mask. Threads
     * that started earlier (a BLAS library's pool starts before main) do
     * not block them, so a handler also catches the signal there: it only
     * records it, for cxm_server_run to see. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = note_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    grpc_init();
    *out = s;
    return 0;
}

int cxm_server_add_service(cxm_server *s, const cxm_service *svc)
{
    if (atomic_load(&s->started) || s->nservices == MAX_SERVICES)
        return CXM_EINVAL;
    for (size_t i = 0; i < s->nservices; i++)
        if (strcmp(s->services[i]->name, svc->name) == 0)
            return CXM_EEXIST;
    s->services[s->nservices++] = svc;
    return 0;
}

/* The access level of a method in its service's table. */
static cxm_access access_of(const cxm_service *svc, const char *method)
{
    for (size_t i = 0; i < svc->naccess; i++)
        if (strcmp(svc->access[i].method, method) == 0)
            return svc->access[i].access;
    return CXM_ACCESS_UNSET;
}

static void describe_access(cxm_server *s, reg_method *rm)
{
    rm->access = access_of(rm->svc, rm->m->name);
    if (s->opts.auth && rm->access == CXM_ACCESS_UNSET)
        cxm_log_warn("auth.no_access_level",
                     "%s has no access level in its service's table: every call is refused",
                     rm->path);
    const ProtobufCMessageDescriptor *d = rm->m->request;
    rm->customer_id = protobuf_c_message_descriptor_get_field_by_name(d, "customer_id");
    if (rm->customer_id && (rm->customer_id->type != PROTOBUF_C_TYPE_STRING ||
                            rm->customer_id->label == PROTOBUF_C_LABEL_REPEATED))
        rm->customer_id = NULL;
    const ProtobufCFieldDescriptor *ref =
        protobuf_c_message_descriptor_get_field_by_name(d, "customer");
    if (ref && ref->type == PROTOBUF_C_TYPE_MESSAGE && ref->label != PROTOBUF_C_LABEL_REPEATED &&
        !(ref->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
        const ProtobufCFieldDescriptor *id = protobuf_c_message_descriptor_get_field_by_name(
            (const ProtobufCMessageDescriptor *)ref->descriptor, "customer_id");
        if (id && id->type == PROTOBUF_C_TYPE_STRING && id->label != PROTOBUF_C_LABEL_REPEATED) {
            rm->customer_ref = ref;
            rm->ref_customer_id = id;
        }
    }
}

static int register_methods(cxm_server *s)
{
    for (size_t i = 0; i < s->nservices; i++) {
        const cxm_service *svc = s->services[i];
        for (size_t j = 0; j < svc->nmethods; j++) {
            if (s->nmethods == MAX_METHODS)
                return CXM_ETOOBIG;
            reg_method *rm = &s->methods[s->nmethods++];
            rm->svc = svc;
            rm->m = &svc->methods[j];
            snprintf(rm->path, sizeof rm->path, "/%s/%s", svc->name, rm->m->name);
            describe_access(s, rm);
            bool with_payload = rm->m->kind == CXM_UNARY || rm->m->kind == CXM_SERVER_STREAMING;
            rm->handle = grpc_server_register_method(
                s->server, rm->path, NULL,
                with_payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE,
                0);
            if (!rm->handle)
                return CXM_EEXIST;
        }
    }
    return 0;
}

/* Health and reflection describe every hosted service, themselves included. */
static int add_builtin_services(cxm_server *s)
{
    const char *names[MAX_SERVICES + 3];
    size_t n = 0;
    for (size_t i = 0; i < s->nservices; i++)
        names[n++] = s->services[i]->name;
    names[n++] = "grpc.health.v1.Health";
    names[n++] = "grpc.reflection.v1.ServerReflection";
    names[n++] = "grpc.reflection.v1alpha.ServerReflection";
    int rc = cxm__health_create(names, n, &s->health);
    if (rc == 0)
        rc = cxm__reflection_create(names, n, &s->reflection);
    if (rc == 0)
        rc = cxm_server_add_service(s, cxm__health_service(s->health));
    if (rc == 0)
        rc = cxm_server_add_service(s, cxm__reflection_service_v1(s->reflection));
    if (rc == 0)
        rc = cxm_server_add_service(s, cxm__reflection_service_v1alpha(s->reflection));
    return rc;
}

static grpc_arg int_arg(const char *key, int64_t v)
{
    return (grpc_arg){
        GRPC_ARG_INTEGER, (char *)key, {.integer = v > INT32_MAX ? INT32_MAX : (int)v}};
}

/* The channel args of every connection: message sizes and the limits of
 * cxm/server.h (stream cap, keepalive and its enforcement, idle and age
 * bounds, the handshake timeout, the memory quota). */
static grpc_server *new_grpc_server(const cxm_server_opts *o)
{
    grpc_resource_quota *quota = grpc_resource_quota_create("cxm-server");
    grpc_resource_quota_resize(quota, o->memory_quota);
    grpc_arg args[] = {
        int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int64_t)o->max_message_bytes),
        int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int64_t)o->max_message_bytes),
        /* Without this a second server silently shares the port. */
        int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0),
        int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS, o->max_streams),
        int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, o->keepalive_ms),
        int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, o->keepalive_timeout_ms),
        /* Clients may ping an idle connection (their keepalive), at most
         * every CXM_LIMIT_MIN_CLIENT_PING_MS; more often is a strike. */
        int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
        int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                CXM_LIMIT_MIN_CLIENT_PING_MS),
        int_arg(GRPC_ARG_HTTP2_MAX_PING_STRIKES, CXM_LIMIT_PING_STRIKES),
        /* The server's own pings are not limited by data in flight. */
        int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
        int_arg(GRPC_ARG_MAX_CONNECTION_IDLE_MS, o->idle_timeout_ms),
        int_arg(GRPC_ARG_MAX_CONNECTION_AGE_MS, o->max_connection_age_ms),
        int_arg(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, o->max_connection_age_grace_ms),
        int_arg(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, CXM_LIMIT_HANDSHAKE_MS),
        {GRPC_ARG_POINTER,
         GRPC_ARG_RESOURCE_QUOTA,
         {.pointer = {quota, grpc_resource_quota_arg_vtable()}}},
    };
    grpc_channel_args ca = {sizeof args / sizeof args[0], args};
    grpc_server *srv = grpc_server_create(&ca, NULL);
    grpc_resource_quota_unref(quota); /* the server holds its own reference */
    return srv;
}

/* ---- the guard thread: imposed deadlines and the connection cap ---- */

/* Above the cap, shut the longest-silent connections down; one warn line
 * per 10 s at most says how many. The fd count is the cheap test: every
 * connection holds one, so below the cap in fds means below it in
 * connections. */
static void enforce_connection_cap(cxm_server *s)
{
    int fds = cxm__count_fds();
    if (fds <= s->opts.max_connections)
        return;
    int count = 0;
    int shed = cxm__shed_connections(s->port, s->opts.max_connections, &count);
    s->shed_total += shed;
    int64_t now = now_ms();
    if (shed > 0 && now - s->shed_logged_at >= 10000) {
        s->shed_logged_at = now;
        cxm_log_warn("server.connections_shed",
                     "%d connections over the cap of %d (--max-connections): shut down the %d "
                     "silent longest (%lld since start)",
                     count, s->opts.max_connections, shed, (long long)s->shed_total);
    }
}

static void *guard_main(void *arg)
{
    cxm_server *s = arg;
    struct timespec tick = {0, CXM_LIMIT_TICK_MS * 1000000L};
    while (!atomic_load(&s->guard_stop)) {
        nanosleep(&tick, NULL);
        expire_calls(s);
        enforce_connection_cap(s);
    }
    return NULL;
}

static void stop_guard(cxm_server *s)
{
    if (!s->guard_started)
        return;
    atomic_store(&s->guard_stop, true);
    pthread_join(s->guard, NULL);
    s->guard_started = false;
}

static int start_workers(cxm_server *s)
{
    for (int i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        for (size_t m = 0; m < s->nmethods; m++)
            for (int k = 0; k < s->opts.requests_per_method; k++)
                post_call(w, &s->methods[m]);
        post_unknown(w);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return cxm_err_from_errno(errno);
        w->started = 1;
    }
    return 0;
}

/* ---- the listening address ---- */

/* Split "HOST:PORT" or "[V6]:PORT" into host (brackets removed) and port
 * digits; the grammar only, no lookup. */
static int split_listen(const char *addr, char *host, size_t hlen, char *port, size_t plen,
                        char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr) {
        snprintf(err, errlen, "expected HOST:PORT, e.g. 127.0.0.1:7400");
        return CXM_EINVAL;
    }
    const char *h = addr, *hend = colon;
    if (*h == '[') {
        if (hend[-1] != ']') {
            snprintf(err, errlen, "an IPv6 address in brackets ends with ']' before the port");
            return CXM_EINVAL;
        }
        h++, hend--;
    }
    size_t n = (size_t)(hend - h), pn = strlen(colon + 1);
    if (n == 0 || n >= hlen || pn == 0 || pn >= plen) {
        snprintf(err, errlen,
                 n == 0 ? "the host is missing; 0.0.0.0 listens on every interface"
                        : "expected HOST:PORT, e.g. 127.0.0.1:7400");
        return CXM_EINVAL;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    memcpy(port, colon + 1, pn + 1);
    return 0;
}

/* A host name (letters, digits, '-' and '.'), an IPv4 address, or an IPv6
 * address that came in brackets. */
static bool host_valid(const char *host, bool bracketed)
{
    struct in6_addr a6;
    if (bracketed)
        return inet_pton(AF_INET6, host, &a6) == 1;
    for (const char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return false;
    return host[0] != '-' && host[0] != '.';
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

bool cxm_server_listen_is_loopback(const char *addr)
{
    char host[256], port[16], err[160];
    if (split_listen(addr, host, sizeof host, port, sizeof port, err, sizeof err) != 0)
        return false;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    bool loop = true;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        loop = loop && addr_is_loopback(ai->ai_addr);
    freeaddrinfo(res);
    return loop;
}

int cxm_server_check_listen(const char *addr, char *err, size_t errlen)
{
    char host[256], port[16];
    int rc = split_listen(addr, host, sizeof host, port, sizeof port, err, errlen);
    if (rc != 0)
        return rc;
    if (!host_valid(host, addr[0] == '[')) {
        snprintf(err, errlen,
                 strchr(host, ':') && addr[0] != '['
                     ? "put an IPv6 address in brackets, e.g. [::1]:7400"
                     : "\"%s\" is not a host name or an IP address",
                 host);
        return CXM_EINVAL;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (!isdigit((unsigned char)port[0]) || *end || errno || p > 65535) {
        snprintf(err, errlen, "port \"%s\" is not a number from 0 to 65535", port);
        return CXM_EINVAL;
    }
    return 0;
}

/* Why bind(2) refused host:port, in words a person can act on. */
static void describe_bind_error(int e, const char *host, const char *port, char *err, size_t errlen)
{
    char buf[128];
    if (e == EADDRINUSE)
        snprintf(err, errlen,
                 "port %s is already in use on %s; stop the other process or pick another port",
                 port, host);
    else if (e == EADDRNOTAVAIL)
        snprintf(err, errlen,
                 "%s is not an address of this machine; use one of its own, 127.0.0.1 or "
                 "0.0.0.0",
                 host);
    else if (e == EACCES || e == EPERM)
        snprintf(err, errlen,
                 "permission denied: port %s needs privileges (CAP_NET_BIND_SERVICE); pick a "
                 "port from 1024 up",
                 port);
    else
        snprintf(err, errlen, "bind: %s", strerror_r(e, buf, sizeof buf));
}

/* Bind each address host resolves to, as gRPC will (SO_REUSEADDR, success
 * when any binds), and close it again: gRPC core reports a failed bind only
 * as a multi-line dump on stderr, so the reason is found here first. */
static int probe_listen(const char *addr, char *err, size_t errlen)
{
    char host[256], port[16];
    if (split_listen(addr, host, sizeof host, port, sizeof port, err, errlen) != 0)
        return CXM_EINVAL;
    struct addrinfo hints = {.ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM}, *res;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(g));
        return CXM_EINVAL;
    }
    int first = 0;
    bool bound = false;
    for (struct addrinfo *ai = res; ai && !bound; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        int one = 1;
        if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            bound = true;
        else if (!first)
            first = errno;
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(res);
    if (bound)
        return 0;
    describe_bind_error(first, host, port, err, errlen);
    return CXM_EIO;
}

/* gRPC core's own report of a failed bind: replaced by ours. */
static void drop_grpc_log(gpr_log_func_args *args)
{
    (void)args;
}

/* TLS when a certificate was given, else plaintext; NULL after logging
 * why the certificate did not load. */
static grpc_server_credentials *server_credentials(cxm_server *s, int *rc)
{
    const cxm_server_opts *o = &s->opts;
    if (!(o->tls_cert && *o->tls_cert) && !(o->tls_key && *o->tls_key))
        return grpc_insecure_server_credentials_create();
    char why[DETAILS_MAX];
    cxm_tls_server_opts to = {
        .cert = o->tls_cert, .key = o->tls_key, .client_ca = o->tls_client_ca};
    if (!(o->tls_cert && *o->tls_cert) || !(o->tls_key && *o->tls_key)) {
        snprintf(why, sizeof why, "--tls-cert and --tls-key go together; give both");
        *rc = CXM_EINVAL;
    } else {
        *rc = cxm_tls_server_open(&to, &s->tls, why, sizeof why);
    }
    if (*rc != 0) {
        cxm_log_error("server.tls_failed", "cannot serve TLS: %s", why);
        return NULL;
    }
    return cxm_tls_server_credentials(s->tls);
}

static int listen_on(cxm_server *s)
{
    char why[DETAILS_MAX];
    int rc = cxm_server_check_listen(s->opts.listen, why, sizeof why);
    if (rc == 0)
        rc = probe_listen(s->opts.listen, why, sizeof why);
    if (rc == 0) {
        grpc_server_credentials *creds = server_credentials(s, &rc);
        if (!creds)
            return rc ? rc : CXM_ENOMEM;
        gpr_set_log_function(drop_grpc_log);
        s->port = grpc_server_add_http2_port(s->server, s->opts.listen, creds);
        gpr_set_log_function(NULL);
        grpc_server_credentials_release(creds);
        snprintf(why, sizeof why, "gRPC could not bind it (was the port taken just now?)");
        rc = s->port > 0 ? 0 : CXM_EIO;
    }
    if (rc != 0)
        cxm_log_error("server.bind_failed", "cannot listen on %s: %s", s->opts.listen, why);
    return rc;
}

int cxm_server_start(cxm_server *s)
{
    int rc = add_builtin_services(s);
    if (rc != 0)
        return rc;
    s->server = new_grpc_server(&s->opts);
    s->nworkers = s->opts.workers;
    s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
    if (!s->workers)
        return CXM_ENOMEM;
    for (int i = 0; i < s->nworkers; i++) {
        s->workers[i].srv = s;
        s->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->workers[i].cq, NULL);
    }
    rc = register_methods(s);
    if (rc != 0) {
        cxm_log_error("server.methods_failed", "cannot register the method table: %s",
                      cxm_strerror(rc));
        return rc;
    }
    rc = listen_on(s);
    if (rc != 0)
        return rc;
    grpc_server_start(s->server);
    atomic_store(&s->started, true);
    rc = start_workers(s);
    if (rc != 0)
        return rc;
    if (pthread_create(&s->guard, NULL, guard_main, s) != 0)
        return cxm_err_from_errno(errno);
    s->guard_started = true;
    cxm_log_info("server.limits",
                 "limits: %d streams per connection, %d connections, memory quota %zu MiB, "
                 "default deadline %lld ms (streams %lld ms), idle %lld ms, age %lld ms + %lld ms "
                 "grace, keepalive %lld ms",
                 s->opts.max_streams, s->opts.max_connections, s->opts.memory_quota >> 20,
                 (long long)s->opts.default_deadline_ms, (long long)s->opts.stream_deadline_ms,
                 (long long)s->opts.idle_timeout_ms, (long long)s->opts.max_connection_age_ms,
                 (long long)s->opts.max_connection_age_grace_ms, (long long)s->opts.keepalive_ms);
    cxm__health_set_all(s->health, 1);
    return 0;
}

void cxm_server_set_degraded(cxm_server *s, bool degraded)
{
    cxm__health_set_degraded(s->health, degraded);
}

int cxm_server_port(const cxm_server *s)
{
    return s->port;
}

int cxm_server_max_connections(const cxm_server *s)
{
    return s->opts.max_connections;
}

void cxm_server_stop(cxm_server *s)
{
    atomic_store(&s->stop_requested, true);
}

static void on_sighup(cxm_server *s)
{
    if (s->tls)
        cxm_tls_server_reload(s->tls, true);
    else
        cxm_log_info("server.signal", "received SIGHUP; no TLS certificate to reload");
}

static void wait_for_signal(cxm_server *s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    struct timespec poll = {0, 100 * 1000 * 1000};
    for (unsigned tick = 1; !atomic_load(&s->stop_requested); tick++) {
        int sig = sigtimedwait(&set, NULL, &poll);
        if (sig == SIGHUP || noted_hup) {
            noted_hup = 0;
            on_sighup(s);
            continue;
        }
        /* A certificate renewed in place (certbot, cert-manager) is picked
         * up within a second without anyone sending a signal. */
        if (tick % 10 == 0)
            cxm_tls_server_reload(s->tls, false);
        if (sig <= 0 && noted_signal)
            sig = noted_signal;
        if (sig == SIGTERM || sig == SIGINT) {
            cxm_log_info("server.signal", "received %s; draining (grace %lld ms)",
                         sig == SIGTERM ? "SIGTERM" : "SIGINT", (long long)s->opts.grace_ms);
            return;
        }
    }
}

/* CLOCK_REALTIME (what pthread_cond_timedwait uses) ms from now. */
static struct timespec realtime_in(int64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Wait until the shutdown tag came or, with calls_only, until no call is
 * left either; false when deadline (NULL: none) passed first. */
static bool wait_drained(cxm_server *s, const struct timespec *deadline, bool calls_only)
{
    pthread_mutex_lock(&s->mu);
    bool done;
    while (!(done = s->shutdown_done || (calls_only && atomic_load(&s->live_calls) == 0))) {
        if (!deadline) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        struct timespec tick = realtime_in(DRAIN_TICK_MS);
        bool last = !before(&tick, deadline);
        if (pthread_cond_timedwait(&s->cv, &s->mu, last ? deadline : &tick) == ETIMEDOUT && last)
            break;
    }
    pthread_mutex_unlock(&s->mu);
    return done;
}

/* Shutdown sends every connection a GOAWAY and fails the posted requests;
 * the shutdown tag then waits for the connections to close. A client that
 * holds an idle channel may never read the GOAWAY (gRPC core reads a client
 * connection only while some thread polls it), so waiting for the tag would
 * hold the exit to the full grace period. The drain therefore waits for the
 * calls, not the connections: once the last RPC is over (or the grace period
 * ends) grpc_server_cancel_all_calls closes whatever connections remain. */
static void drain(cxm_server *s)
{
    atomic_store(&s->draining, true);
    for (size_t i = 0; i < s->nservices; i++)
        if (s->services[i]->on_drain)
            s->services[i]->on_drain(s->services[i]->ctx);
    grpc_server_shutdown_and_notify(s->server, s->workers[0].cq, &s->t_shutdown);

    struct timespec deadline = realtime_in(s->opts.grace_ms);
    if (!wait_drained(s, &deadline, true))
        cxm_log_warn("server.grace_expired",
                     "calls still running after the %lld ms grace period are being cancelled",
                     (long long)s->opts.grace_ms);
    grpc_server_cancel_all_calls(s->server);
    wait_drained(s, NULL, false);
}

/* After the shutdown tag: destroy the server, then stop every queue. A queue
 * whose thread never started is drained here so its posted calls are freed. */
static void stop_workers(cxm_server *s)
{
    grpc_server_destroy(s->server);
    s->server = NULL;
    for (int i = 0; i < s->nworkers; i++)
        grpc_completion_queue_shutdown(s->workers[i].cq);
    for (int i = 0; i < s->nworkers; i++) {
        if (s->workers[i].started)
            pthread_join(s->workers[i].thread, NULL);
        else
            run_queue(s->workers[i].cq);
        s->workers[i].started = 0;
    }
}

int cxm_server_run(cxm_server *s)
{
    wait_for_signal(s);
    drain(s);
    stop_guard(s);
    stop_workers(s);
    cxm_log_info("server.stopped", "all calls drained; server stopped");
    return 0;
}

/* Stop a server that started (at least in part) but never ran. */
static void abandon(cxm_server *s)
{
    if (atomic_load(&s->started)) {
        atomic_store(&s->draining, true);
        grpc_server_shutdown_and_notify(s->server, s->workers[0].cq, &s->t_shutdown);
        grpc_server_cancel_all_calls(s->server);
        if (s->workers[0].started)
            wait_drained(s, NULL, false);
        else
            while (!s->shutdown_done)
                handle_event(grpc_completion_queue_next(s->workers[0].cq,
                                                        gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL));
    }
    stop_workers(s);
}

void cxm_server_destroy(cxm_server *s)
{
    if (!s)
        return;
    stop_guard(s);
    if (s->server)
        abandon(s);
    cxm_tls_server_close(s->tls); /* its fetcher served the grpc_server */
    for (int i = 0; i < s->nworkers; i++)
        grpc_completion_queue_destroy(s->workers[i].cq);
    free(s->workers);
    if (s->health)
        cxm__health_destroy(s->health);
    if (s->reflection)
        cxm__reflection_destroy(s->reflection);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->dl_mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    grpc_shutdown();
}
