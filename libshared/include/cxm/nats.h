/*
 * nats.h - the NATS JetStream transport of the event bus, on the official
 * NATS C client (libnats 3.4).
 *
 * Each producing service owns one stream, "CXM_<PRODUCER>", holding the
 * subjects "cxm.<producer>.>" in file storage. Producers publish batches with
 * a Nats-Msg-Id per message, so a batch that failed half way can be published
 * again with the same ids: JetStream stores each id once within the duplicate
 * window. Consumers are durable pull consumers with cumulative acks
 * (JetStream's AckAll policy: acking a message acks every one before it in
 * the stream): a message fetched but not acked within the ack wait is
 * delivered again, so the bus is at-least-once and appliers must be
 * idempotent by msg_id. Acking cumulatively presumes that a consumer has
 * dealt with every message before the one it acks, i.e. applies in stream
 * order, as the bus does.
 *
 * Errors: every function returns 0 or a negative CXM_E* code (err.h), and on
 * failure leaves a sentence in cxm_nats_last_error() naming the URL, stream
 * or consumer and what to do. CXM_EUNAVAIL: the server is down or JetStream
 * is not ready; CXM_EDEADLINE: no answer in time (retry with the same ids);
 * CXM_ENOTFOUND: no such stream or consumer; CXM_EINVAL: a bad argument.
 *
 * Threading: a cxm_nats may be shared by threads; cxm_nats_publish calls on
 * one connection run one batch at a time (a mutex), because the
 * acknowledgements of a batch are awaited on the connection as a whole. A
 * cxm_nats_sub and its batches are used by one thread at a time. The
 * connection must outlive its subscriptions.
 *
 * Reconnection: after a successful open, libnats reconnects for ever (every
 * 250 ms) and buffers publishes meanwhile; disconnects and reconnects are
 * logged (events nats.disconnected, nats.reconnected).
 */
#ifndef CXM_NATS_H
#define CXM_NATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cxm_nats cxm_nats;

typedef struct cxm_nats_opts {
    const char *url; /* "nats://127.0.0.1:4222"; a comma list is allowed */
    /* Authentication, at most one kind (NULL: none). Secrets are used, never
     * logged or copied into error texts. */
    const char *creds_file;              /* user JWT + NKey seed, from nsc */
    const char *nkey_seed_file;          /* a user NKey seed ("SU..."), from nk */
    const char *user, *password, *token; /* password: with user */
    /* TLS, on when any is set: tls_ca verifies the server (NULL: the
     * system's trust store); tls_cert and tls_key, both or neither, are the
     * client's certificate chain and key for servers that verify clients. */
    const char *tls_ca, *tls_cert, *tls_key;
    int timeout_ms;    /* connect and request timeout; 0 = 2000 */
    int dup_window_ms; /* streams' duplicate window; 0 = 120000 (2 min) */
    int ack_wait_ms;   /* consumers' redelivery delay after a fetch
                          without an ack; 0 = 30000 */
} cxm_nats_opts;

/* Connect. CXM_EUNAVAIL when no server can be reached now, CXM_EPERM when
 * the credentials are refused (the server's "Authorization Violation"),
 * CXM_EUNAVAIL too when TLS fails (handshake, verification, or TLS on one
 * side only: the sentence says "TLS"), CXM_EINVAL for bad options
 * (unreadable key files included).
 * *out is closed with cxm_nats_close. */
int cxm_nats_open(const cxm_nats_opts *opts, cxm_nats **out);
void cxm_nats_close(cxm_nats *n);

/* A new user NKey: its seed ("SU...", secret: for a file given as
 * opts.nkey_seed_file) and public key ("U...", for the server's
 * authorization), as the nk tool makes them. */
#define CXM_NATS_NKEY_SEED_LEN 58
#define CXM_NATS_NKEY_PUBLIC_LEN 56
int cxm_nats_nkey_new(char seed[CXM_NATS_NKEY_SEED_LEN + 1],
                      char pub[CXM_NATS_NKEY_PUBLIC_LEN + 1]);

/* A sentence about this thread's latest failure in this module ("" if none);
 * valid until the thread's next cxm_nats_* call. */
const char *cxm_nats_last_error(void);

/* Create the stream of one producing service, or update it to the settings
 * above if it exists (idempotent). producer: 1-64 characters of [a-z0-9_-]. */
int cxm_nats_stream(cxm_nats *n, const char *producer);

/* One message to publish. subject must fall in the producer's stream
 * ("cxm.profile.CustomerDeleted.17"); msg_id is the non-empty Nats-Msg-Id
 * ("profile:42"). The data are copied. */
typedef struct cxm_nats_msg {
    const char *subject;
    const char *msg_id;
    const void *data;
    size_t len;
} cxm_nats_msg;

/* Publish count messages and return when every one has its PubAck (a
 * duplicate within the window counts as success); the batch costs about one
 * round trip. On failure (CXM_EDEADLINE after timeout_ms, CXM_EUNAVAIL with
 * no JetStream, CXM_EPERM when the server denied these credentials the
 * subject, or the server's refusal) some messages may have been stored:
 * publish the same ids again. timeout_ms must be > 0. */
int cxm_nats_publish(cxm_nats *n, const cxm_nats_msg *msgs, size_t count, int timeout_ms);

/* A durable pull consumer on a producer's stream: created if missing
 * (AckAll, deliver all, ack wait from the options, up to 65536 messages
 * awaiting ack), bound to if it exists; one with other settings (an earlier
 * version's explicit acks) is created again from its ack floor. durable:
 * 1-64 characters of [A-Za-z0-9_-]. filter_subject NULL means the whole
 * stream, "cxm.<producer>.>", served without a filter (much cheaper for the
 * server than the same as a filter). */
typedef struct cxm_nats_sub cxm_nats_sub;
int cxm_nats_subscribe(cxm_nats *n, const char *producer, const char *durable,
                       const char *filter_subject, cxm_nats_sub **out);
/* Free the subscription; the durable consumer and its position stay on the
 * server for the next cxm_nats_subscribe with the same name. */
void cxm_nats_unsubscribe(cxm_nats_sub *s);

/* A fetched batch. Message i is data[i]/len[i], its Nats-Msg-Id msg_id[i]
 * ("" if it had none) and its stream sequence stream_seq[i]. The pointers
 * stay valid until cxm_nats_batch_free. */
typedef struct cxm_nats_batch {
    size_t count;
    const void **data;
    size_t *len;
    const char **msg_id;
    uint64_t *stream_seq;
    void *priv_;
} cxm_nats_batch;

/* Fetch up to max (1..1000000) messages in stream order (redeliveries
 * first). Returns as soon as any are there, with all that are there then,
 * up to max; waits at most timeout_ms (> 0) for the first one. Returns 0
 * with b->count == 0 when none came. Always free b with
 * cxm_nats_batch_free, after a failure too. */
int cxm_nats_fetch(cxm_nats_sub *s, size_t max, int timeout_ms, cxm_nats_batch *b);

/* Ack messages 0..n-1 of the batch (n <= b->count), after the caller
 * committed their effects and those of every message before them in the
 * stream: one ack of message n-1, which the AckAll policy extends to all
 * before it, and wait for the server's confirmation. Messages n.. stay
 * unacked and come again after the ack wait. n == 0 does nothing;
 * CXM_EINVAL if n > b->count. */
int cxm_nats_ack_upto(cxm_nats_batch *b, size_t n);
/* cxm_nats_ack_upto(b, b->count). */
int cxm_nats_ack(cxm_nats_batch *b);
void cxm_nats_batch_free(cxm_nats_batch *b);

/* Messages the server still holds for this consumer: not yet delivered plus
 * delivered but not acked, for lag reporting. */
int cxm_nats_pending(cxm_nats_sub *s, uint64_t *pending);

#endif
