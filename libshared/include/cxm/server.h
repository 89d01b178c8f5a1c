/*
 * server.h - a gRPC server on gRPC core with a method table, per-call arenas,
 * health, reflection and a graceful drain.
 *
 * Shape: one completion queue and one thread per worker (default: one per
 * core). Every registered method keeps several requests posted on every
 * queue, so a call is matched without waiting; each call's events all land on
 * the queue that matched it. Unknown methods are answered UNIMPLEMENTED at
 * once (naming the method, and saying "not implemented yet" for a method the
 * service's contract declares but this build does not serve).
 *
 * Handlers run on a worker thread and must not block it: anything slow goes
 * to another thread, which answers later with cxm_call_reply/cxm_call_finish
 * (both thread-safe).
 *
 * The call contract: a handler receives the decoded request (allocated in
 * the call's arena; do not free it) and must end the call exactly once with
 * cxm_call_reply (unary success) or cxm_call_finish (any status, streams),
 * even when the call was cancelled meanwhile (then the status is dropped).
 * The call stays valid until then; after it, the call pointer is gone.
 *
 * Health (grpc.health.v1.Health: Check, List, Watch) and server reflection
 * (grpc.reflection.v1 and v1alpha) are registered by the runtime.
 */
#ifndef CXM_SERVER_H
#define CXM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cxm/arena.h"
#include "cxm/auth.h"

typedef struct cxm_server cxm_server;
typedef struct cxm_call cxm_call;

typedef enum cxm_method_kind {
    CXM_UNARY = 0,
    CXM_SERVER_STREAMING,
    CXM_CLIENT_STREAMING,
    CXM_BIDI_STREAMING,
} cxm_method_kind;

typedef struct cxm_method {
    const char *name; /* "Check"; the path is "/" service "/" name */
    cxm_method_kind kind;
    const ProtobufCMessageDescriptor *request;
    /* One request message: once for unary and server-streaming methods, for
     * each message of a client- or bidi-stream. */
    void (*on_message)(cxm_call *call, const ProtobufCMessage *request);
    /* Client- and bidi-streaming: the client sent its last message. */
    void (*on_half_close)(cxm_call *call);
    /* Optional: the call ended early (cancelled, deadline, connection lost).
     * Runs on the call's worker thread; stop work and finish the call. */
    void (*on_cancel)(cxm_call *call);
    /* Optional, client- and bidi-streams: the allocator to decode the next
     * message with (an arena of the work the message starts, say). The
     * handler then owns the decoded message and the runtime frees nothing
     * of it: what must outlive on_message needs no copy. Without it each
     * message is decoded on the heap and freed after on_message. */
    ProtobufCAllocator *(*stream_allocator)(cxm_call *call);
    /* Optional, client- and bidi-streams: a message did not decode. The
     * runtime reads no further message and leaves ending the call to the
     * handler (which may have work in flight that still answers), why
     * being the sentence to end it INVALID_ARGUMENT with. Without it the
     * runtime ends the call itself. */
    void (*on_bad_message)(cxm_call *call, const char *why);
    /* A stream that stays open by design (Health/Watch): exempt from the
     * default deadline. It still ends at drain, when the client goes, when
     * keepalive finds the peer dead, or at the connection's maximum age. */
    bool open_ended;
} cxm_method;

/* A unary method's table entry: CXM_UNARY_METHOD("GetProfile",
 * cxm__v1__get_profile_request, on_get). */
#define CXM_UNARY_METHOD(name, req, fn)                                                            \
    {                                                                                              \
        name, CXM_UNARY, &req##__descriptor, fn, NULL, NULL                                        \
    }

typedef struct cxm_service {
    const char *name; /* fully qualified: "cxm.v1.ProfileService" */
    const cxm_method *methods;
    size_t nmethods;
    /* Optional: the service's full contract, used to tell "not implemented
     * yet" from "no such method". */
    const ProtobufCServiceDescriptor *contract;
    void *ctx; /* handed to handlers through cxm_call_service_ctx() */
    /* Optional: the server started draining; end open-ended streams. */
    void (*on_drain)(void *ctx);
    /* Who may call what when auth is on (auth.h): the access level of each
     * method by name, and the area of its read/write scopes ("profile").
     * A method missing from the table is refused (fails closed). */
    const char *scope_area;
    const cxm_method_access *access;
    size_t naccess;
} cxm_service;

typedef struct cxm_server_opts {
    const char *listen;       /* "HOST:PORT"; port 0 picks a free one */
    int workers;              /* completion queues/threads; <= 0: one per core */
    int requests_per_method;  /* posted per method per queue; <= 0: 16 */
    size_t max_message_bytes; /* receive and send limit; 0: 4 MiB */
    int64_t grace_ms;         /* drain time before in-flight calls are cancelled */
    size_t call_arena_limit;  /* heap bytes one call's arena may hold; 0: 64 MiB */
    /* Credentials checked on every call but health, before its request is
     * read (UNAUTHENTICATED, PERMISSION_DENIED naming the scope, or
     * RESOURCE_EXHAUSTED with trailing metadata retry-after-ms), and an
     * "audit" log line for every write; NULL: auth off. Not owned; must
     * outlive the server. */
    cxm_auth *auth;
    /* TLS (cxm/tls.h): with tls_cert and tls_key the port speaks TLS only;
     * tls_client_ca also requires client certificates signed by it (mTLS).
     * The files are read again on SIGHUP and when they change (checked
     * every second); without them the port is plaintext. */
    const char *tls_cert, *tls_key, *tls_client_ca;

    /* Limits, so one client cannot hurt the others; 0 picks the default in
     * brackets (CXM_LIMIT_* below).
     *
     * max_streams [100] is HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: a client
     * opening more waits for one to end, so 10,000 header-only streams need
     * 100 connections, each counted against max_connections.
     *
     * Keepalive: the server pings a connection silent for keepalive_ms [60 s]
     * and closes it when no answer comes within keepalive_timeout_ms [20 s]
     * (a peer that vanished without a FIN). Clients may ping too, with or
     * without calls, but not more often than every CXM_LIMIT_MIN_CLIENT_PING_MS
     * (10 s) or they get GOAWAY "too_many_pings" after CXM_LIMIT_PING_STRIKES
     * (2) strikes; our own clients send no keepalive pings, and a client of
     * another stack must set its keepalive time to 10 s or more.
     *
     * idle_timeout_ms [5 min]: a connection without a call for that long is
     * sent GOAWAY (a well-behaved client reconnects when it next calls).
     * A TCP connection that never completes the HTTP/2 (or TLS) handshake is
     * closed after CXM_LIMIT_HANDSHAKE_MS (10 s) whatever this says.
     *
     * max_connection_age_ms [1 h] + max_connection_age_grace_ms [5 min]: a
     * connection is sent GOAWAY at its age (jittered by gRPC), and closed,
     * calls and all, after the grace. This is what ends header-only calls to
     * unary methods: gRPC core holds them until their message comes and never
     * shows them to the runtime, so no deadline of ours can reach them.
     *
     * memory_quota [1 GiB, or a quarter of physical memory if less]: the
     * gRPC resource quota for buffers and call arenas of every connection;
     * under pressure gRPC shrinks buffers, then cancels streams and refuses
     * new connections instead of growing.
     *
     * default_deadline_ms [60 s] bounds a unary call that came without a
     * deadline, stream_deadline_ms [1 h] a client or bidi stream (TrackStream,
     * reflection) without one: when it passes the call is cancelled with
     * DEADLINE_EXCEEDED and the method's on_cancel runs, as for a client's
     * own deadline. cxm_call_remaining_ms reports the bound. Methods marked
     * open_ended are exempt.
     *
     * max_connections [the file-descriptor limit minus CXM_LIMIT_FD_HEADROOM,
     * see below]: gRPC core 1.51 has no connection cap (the channel arg
     * grpc.max_allowed_incoming_connections came later) and stops accepting
     * for good when accept(2) fails with EMFILE, which is how 1,000 idle
     * sockets used to lock every new client out. So a guard thread of the
     * runtime counts the process's connections to the listening port every
     * CXM_LIMIT_TICK_MS and, above the cap, shuts down (shutdown(2), so gRPC
     * closes them itself) the ones that have been silent longest by the
     * kernel's TCP_INFO: idle sockets and stalled calls go first, a client
     * that is talking stays. The headroom must absorb a burst arriving
     * within one tick, hence the default of an eighth of the fd limit (at
     * least 256) below it: a burst larger than that within 100 ms still
     * meets EMFILE and, in gRPC 1.51, a listener that logs "Failed accept4:
     * Too many open files" and accepts no more (a restart is the cure). With
     * systemd's usual hard limit of 524,288 that is some 65,000 connections
     * in 100 ms. Later gRPC releases retry on EMFILE and have a real cap. */
    int max_streams;
    int64_t keepalive_ms;
    int64_t keepalive_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t max_connection_age_ms;
    int64_t max_connection_age_grace_ms;
    size_t memory_quota;
    int64_t default_deadline_ms;
    int64_t stream_deadline_ms;
    int max_connections;
} cxm_server_opts;

#define CXM_LIMIT_MAX_STREAMS 100
#define CXM_LIMIT_KEEPALIVE_MS 60000
#define CXM_LIMIT_KEEPALIVE_TIMEOUT_MS 20000
#define CXM_LIMIT_MIN_CLIENT_PING_MS 10000
#define CXM_LIMIT_PING_STRIKES 2
#define CXM_LIMIT_IDLE_MS (5 * 60000)
#define CXM_LIMIT_HANDSHAKE_MS 10000
#define CXM_LIMIT_AGE_MS (60 * 60000)
#define CXM_LIMIT_AGE_GRACE_MS (5 * 60000)
#define CXM_LIMIT_MEMORY_QUOTA ((size_t)1 << 30)
#define CXM_LIMIT_DEADLINE_MS 60000
#define CXM_LIMIT_STREAM_DEADLINE_MS (60 * 60000)
#define CXM_LIMIT_FD_HEADROOM_MIN 256
#define CXM_LIMIT_TICK_MS 100

/* Under abuse (integration.limits.abuse: 2,000 idle TCP connections, then
 * 10,000 header-only streams over 100 connections, against cxmd with the
 * defaults above but --max-connections 1000 and a 4,096 fd limit) the
 * server's peak resident memory stays under this (measured: 180-195 MiB,
 * ~16 KiB per held stream; benchmarks/README.md "Limits under abuse"), and a
 * well-behaved client's Health/Check keeps answering. Beyond the test, the
 * memory quota is what bounds held streams: past it gRPC refuses them. */
#define CXM_LIMIT_ABUSE_RSS_BOUND ((size_t)512 << 20)

/* The connection cap max_connections = 0 resolves to for a process whose
 * soft RLIMIT_NOFILE is nofile: nofile minus an eighth (at least
 * CXM_LIMIT_FD_HEADROOM_MIN), never below 16. */
int cxm_server_default_max_connections(long nofile);

/* Raise the soft RLIMIT_NOFILE to the hard limit. Returns the soft limit
 * now in force; *before is the one found, *hard the hard limit (infinite
 * ones reported as 2^30). Call before opening anything, and before
 * cxm_server_create, whose default max_connections follows the limit. */
long cxm_server_raise_fd_limit(long *before, long *hard);

/* Create a server; services are added before cxm_server_start. */
int cxm_server_create(const cxm_server_opts *opts, cxm_server **out);

/* Register a service. The service struct and its method table must outlive
 * the server. Returns CXM_EEXIST for a duplicate name, CXM_EINVAL after start. */
int cxm_server_add_service(cxm_server *s, const cxm_service *svc);

/* Bind, start the workers and mark every service SERVING. Returns
 * CXM_EINVAL for an address cxm_server_check_listen refuses or a host that
 * does not resolve, CXM_EIO when the address cannot be bound; either is
 * logged as one line ("server.bind_failed") saying why: port in use, not an
 * address of this machine, permission. TLS files that do not load (missing,
 * unreadable, a key not matching the certificate) are logged as
 * "server.tls_failed" naming the flag and file, returning that CXM_E* code. */
int cxm_server_start(cxm_server *s);

/* Check the grammar of a listening address: HOST:PORT with a host name, an
 * IPv4 address or a bracketed IPv6 address, and a decimal port from 0 to
 * 65535 (gRPC itself would silently take port 99999 modulo 65536). Returns 0,
 * or CXM_EINVAL with a sentence in err saying what is wrong. */
int cxm_server_check_listen(const char *addr, char *err, size_t errlen);

/* Whether every address the host of addr ("HOST:PORT") stands for is a
 * loopback one: 127.0.0.0/8, ::1, or a name resolving only to those
 * (localhost). A wildcard (0.0.0.0, [::]), a malformed address or a name
 * that does not resolve is not. */
bool cxm_server_listen_is_loopback(const char *addr);

/* The port actually bound (useful with port 0). */
int cxm_server_port(const cxm_server *s);

/* The connection cap in force (max_connections, or its default). */
int cxm_server_max_connections(const cxm_server *s);

/* Block until SIGTERM or SIGINT (or cxm_server_stop), then drain: health
 * turns NOT_SERVING, services get on_drain, new calls are refused, in-flight
 * calls may finish within grace_ms, the rest are cancelled. Returns 0 once
 * everything is stopped. The calling thread must be the one that created the
 * server (the signals are blocked process-wide by cxm_server_create).
 * Meanwhile SIGHUP, and a change of the TLS files, reload the certificate
 * (a plaintext server logs SIGHUP and carries on). */
int cxm_server_run(cxm_server *s);

/* Ask a running server to drain, from any thread. */
void cxm_server_stop(cxm_server *s);

/* Health answers NOT_SERVING for every name while degraded (the store
 * cannot write, say), and the names' own status again once not; any
 * thread. The caller logs why. */
void cxm_server_set_degraded(cxm_server *s, bool degraded);

/* Release everything. After cxm_server_run returned, or if never started. */
void cxm_server_destroy(cxm_server *s);

/* --- inside a handler --- */

void *cxm_call_service_ctx(const cxm_call *call);

/* Scratch memory released when the call is over. */
cxm_arena *cxm_call_arena(cxm_call *call);

/* Per-call state of a streaming handler. */
void *cxm_call_user(const cxm_call *call);
void cxm_call_set_user(cxm_call *call, void *user);

/* "/cxm.v1.ProfileService/GetProfile" */
const char *cxm_call_path(const cxm_call *call);

/* Milliseconds until the client's deadline (INT64_MAX when it set none);
 * <= 0 means expired: give up and finish with CXM_EDEADLINE. */
int64_t cxm_call_remaining_ms(const cxm_call *call);

/* The server's message limit (--max-message-bytes): a response packed
 * larger than this cannot be sent. */
size_t cxm_call_max_message_bytes(const cxm_call *call);

/* True once the call was cancelled or its deadline passed. */
bool cxm_call_cancelled(cxm_call *call);

/* Unary: send resp and status OK, ending the call. A response over
 * max_message_bytes is answered RESOURCE_EXHAUSTED instead, naming its size
 * and the limit (the client can ask for less; nothing is INTERNAL). */
void cxm_call_reply(cxm_call *call, const ProtobufCMessage *resp);

/* Unary: like cxm_call_reply with a response already serialized (e.g.
 * stored bytes spliced into the response), skipping a decode and re-encode.
 * The bytes are copied. */
void cxm_call_reply_bytes(cxm_call *call, const void *data, size_t len);

/* Client- and bidi-streams, flow control: after the current on_message
 * returns, read no further message until cxm_call_resume_recv, so a
 * handler whose work on earlier messages is still queued (a write not yet
 * committed) makes the client wait instead of piling messages up in
 * memory. Call from on_message. */
void cxm_call_hold_recv(cxm_call *call);

/* Read on after cxm_call_hold_recv; any thread; a no-op when not held or
 * once the call ended. The call must still be live (not finished). */
void cxm_call_resume_recv(cxm_call *call);

/* Streams: queue one response message (sent in order, one at a time). A
 * message sent after the call ended is dropped. Returns 0, or CXM_ENOMEM or
 * CXM_ETOOBIG (over max_message_bytes) without ending the call. */
int cxm_call_send(cxm_call *call, const ProtobufCMessage *msg);

/* End the call with err mapped through cxm_err_status() (0 = OK) and a
 * message that names the problem (printf format; may be NULL when err is 0).
 * Queued messages are sent first. */
void cxm_call_finish(cxm_call *call, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
