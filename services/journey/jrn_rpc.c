/*
 * jrn_rpc.c - the JourneyService handlers (see jrn_rpc.h) and the bus
 * subscriptions' apply functions.
 */
#include "jrn_rpc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/log.h"
#include "jan.h"
#include "jrn_pipe.h"

#define STREAM_WINDOW 8 /* TrackStream messages in flight before reading stops */

/* ---- ingest: one write job per request or stream message ---- */

typedef struct jstream jstream;

/* What a write job needs, in memory it owns: the runtime frees a decoded
 * stream message as soon as on_message returns. */
typedef struct ingest {
    cxm_write_job wj;
    jrn_ctx *ctx;
    cxm_call *call;
    jstream *stream; /* NULL for Track */
    uint32_t index;  /* the stream message's position */
    int64_t now;
    size_t n;
    const char **ids;
    uint8_t **packed;
    size_t *lens;
    Cxm__V1__EventRejection **rejected;
    size_t nrejected;
    uint32_t accepted, duplicates;
    int rc;
    cxm_arena a;
} ingest;

static void ingest_free(ingest *g)
{
    cxm_arena_dispose(&g->a);
    free(g);
}

/* Check each event; keep the valid ones packed (received_at set), the
 * others as rejections. */
static int ingest_prepare(ingest *g, Cxm__V1__TouchpointEvent *const *evs, size_t n,
                          uint32_t message_index)
{
    cxm_arena *a = &g->a;
    g->ids = cxm_arena_alloc(a, n * sizeof *g->ids);
    g->packed = cxm_arena_alloc(a, n * sizeof *g->packed);
    g->lens = cxm_arena_alloc(a, n * sizeof *g->lens);
    g->rejected = cxm_arena_alloc(a, n * sizeof *g->rejected);
    if (!g->ids || !g->packed || !g->lens || !g->rejected)
        return CXM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Cxm__V1__TouchpointEvent *ev = evs[i];
        char err[CXM_SVC_ERR_MAX] = "";
        if (jrn_check_event(&g->ctx->limits, a, ev, g->now, err) != 0) {
            Cxm__V1__EventRejection *r = cxm_arena_alloc(a, sizeof *r);
            if (!r)
                return CXM_ENOMEM;
            cxm__v1__event_rejection__init(r);
            r->message_index = message_index;
            r->index = (uint32_t)i;
            r->event_id = cxm_arena_strndup(a, ev->event_id ? ev->event_id : "",
                                            ev->event_id ? strlen(ev->event_id) : 0);
            r->reason = cxm_arena_strndup(a, err, strlen(err));
            if (!r->event_id || !r->reason)
                return CXM_ENOMEM;
            g->rejected[g->nrejected++] = r;
            continue;
        }
        ev->received_at_unix_ms = g->now;
        size_t len = protobuf_c_message_get_packed_size(&ev->base);
        uint8_t *buf = cxm_arena_alloc(a, len ? len : 1);
        const char *id = cxm_arena_strndup(a, ev->event_id, strlen(ev->event_id));
        if (!buf || !id)
            return CXM_ENOMEM;
        protobuf_c_message_pack(&ev->base, buf);
        g->ids[g->n] = id;
        g->packed[g->n] = buf;
        g->lens[g->n++] = len;
    }
    return 0;
}

/* In the group commit: dedup, then the pending queue. Reruns from scratch. */
static int ingest_txn(cxm_txn *t, void *user)
{
    ingest *g = user;
    jrn_ctx *ctx = g->ctx;
    g->accepted = g->duplicates = 0;
    for (size_t i = 0; i < g->n; i++) {
        bool dup;
        int rc = jdb_dedup(t, ctx->db, g->ids[i], g->now, ctx->dedup_window_ms, &dup);
        if (rc == 0 && !dup)
            rc = jdb_pending_append_packed(t, ctx->db, g->packed[i], g->lens[i]);
        if (rc != 0)
            return rc;
        g->accepted += !dup;
        g->duplicates += dup;
    }
    return 0;
}

static ingest *ingest_new(jrn_ctx *ctx, cxm_call *call)
{
    ingest *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->ctx = ctx;
    g->call = call;
    g->now = cxm_svc_now_ms();
    cxm_arena_init(&g->a, NULL, 0, 64u << 20);
    return g;
}

/* ---- Track ---- */

static void track_done(void *user, int rc)
{
    ingest *g = user;
    if (rc != 0) {
        cxm_svc_finish(g->call, rc, "");
    } else {
        Cxm__V1__TrackResponse resp = CXM__V1__TRACK_RESPONSE__INIT;
        resp.accepted = g->accepted;
        resp.duplicates = g->duplicates;
        resp.rejected = g->rejected;
        resp.n_rejected = g->nrejected;
        cxm_call_reply(g->call, &resp.base);
        if (g->accepted)
            jrn_pipe_wake(g->ctx->pipe);
    }
    ingest_free(g);
}

/* The batch as a whole: RESOURCE_EXHAUSTED over the limit (the whole batch
 * is refused), INVALID_ARGUMENT when empty. */
static int check_batch(size_t n, char *err)
{
    int rc = jrn_check_batch_size(n, err);
    return rc == CXM_ETOOBIG ? CXM_ENOMEM : rc;
}

static void on_track(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__TrackRequest *req = (Cxm__V1__TrackRequest *)msg;
    jrn_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = check_batch(req->n_events, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    ingest *g = ingest_new(ctx, call);
    if (!g)
        return cxm_svc_finish(call, CXM_ENOMEM, "");
    if ((rc = ingest_prepare(g, req->events, req->n_events, 0)) != 0) {
        ingest_free(g);
        return cxm_svc_finish(call, rc, "");
    }
    g->wj = (cxm_write_job){.fn = ingest_txn, .done = track_done, .user = g};
    cxm_store_submit(jdb_store(ctx->db), &g->wj);
}

/* ---- TrackStream ---- */

/* A stream's state. Acks go out in message order; the call is finished
 * exactly once, by whoever sees the last in-flight job done after the
 * client half-closed, cancelled or a message failed. */
struct jstream {
    pthread_mutex_t mu;
    cxm_call *call;
    jrn_ctx *ctx;
    uint32_t next_index, next_ack;
    ingest *done[STREAM_WINDOW]; /* completed, by index % window */
    int inflight;
    bool held, half_closed, cancelled, finished;
    int fail_rc;
    char fail_msg[CXM_SVC_ERR_MAX];
    ingest *next; /* made by stream_allocator for the message being decoded */
};

/* In the call's arena: released with the call, however it ends (the
 * runtime itself ends a stream whose message does not decode). Allocated
 * on the worker thread only. */
static jstream *stream_of(cxm_call *call)
{
    jstream *s = cxm_call_user(call);
    if (s)
        return s;
    if (!(s = cxm_arena_calloc(cxm_call_arena(call), 1, sizeof *s)))
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->call = call;
    s->ctx = cxm_call_service_ctx(call);
    cxm_call_set_user(call, s);
    return s;
}

/* The end of a stream, decided under the mutex and carried out after it is
 * released: once cxm_call_finish returns, s (in the call's arena) may be
 * gone. */
typedef struct stream_fin {
    bool go;
    cxm_call *call;
    int rc;
    char msg[CXM_SVC_ERR_MAX];
} stream_fin;

/* Decide whether the call ends now: nothing in flight and the client
 * half-closed, cancelled, or a message failed (mutex held). */
static void stream_maybe_finish(jstream *s, stream_fin *f)
{
    f->go = false;
    if (s->finished || s->inflight > 0 || !(s->half_closed || s->cancelled || s->fail_rc))
        return;
    s->finished = true;
    f->go = true;
    f->call = s->call;
    f->rc = s->fail_rc;
    snprintf(f->msg, sizeof f->msg, "%s", s->fail_msg);
}

static void stream_finish(const stream_fin *f)
{
    if (!f->go)
        return;
    if (f->rc)
        cxm_call_finish(f->call, f->rc, "%s: %s", cxm_call_path(f->call), f->msg);
    else
        cxm_call_finish(f->call, 0, NULL);
}

/* Send every ack that is next in order (mutex held). */
static void stream_flush(jstream *s)
{
    ingest *g;
    while ((g = s->done[s->next_ack % STREAM_WINDOW]) && g->index == s->next_ack) {
        s->done[s->next_ack % STREAM_WINDOW] = NULL;
        if (g->rc != 0 && !s->fail_rc) {
            s->fail_rc = g->rc;
            snprintf(s->fail_msg, sizeof s->fail_msg, "message %u could not be stored: %s (%s)",
                     g->index, cxm_strerror(g->rc), cxm_store_last_error());
        } else if (!s->fail_rc && !s->cancelled) {
            Cxm__V1__TrackStreamResponse ack = CXM__V1__TRACK_STREAM_RESPONSE__INIT;
            ack.message_index = g->index;
            ack.accepted = g->accepted;
            ack.duplicates = g->duplicates;
            ack.rejected = g->rejected;
            ack.n_rejected = g->nrejected;
            cxm_call_send(s->call, &ack.base);
        }
        s->next_ack++;
        s->inflight--;
        ingest_free(g);
    }
    if (s->held && s->inflight < STREAM_WINDOW && !s->finished && !s->fail_rc) {
        s->held = false;
        cxm_call_resume_recv(s->call);
    }
}

static void stream_done(void *user, int rc)
{
    ingest *g = user;
    jstream *s = g->stream;
    bool woke = rc == 0 && g->accepted;
    jrn_ctx *ctx = g->ctx;
    pthread_mutex_lock(&s->mu);
    g->rc = rc;
    s->done[g->index % STREAM_WINDOW] = g;
    stream_flush(s);
    stream_fin fin;
    stream_maybe_finish(s, &fin);
    pthread_mutex_unlock(&s->mu);
    stream_finish(&fin);
    if (woke)
        jrn_pipe_wake(ctx->pipe);
}

/* A message that cannot be taken ends the stream once the earlier ones are
 * acknowledged (mutex held). */
static void stream_fail(jstream *s, int rc, const char *msg)
{
    if (!s->fail_rc) {
        s->fail_rc = rc;
        size_t len = strlen(msg) < sizeof s->fail_msg - 1 ? strlen(msg) : sizeof s->fail_msg - 1;
        memcpy(s->fail_msg, msg, len); /* cut: it is only shown to people */
        s->fail_msg[len] = 0;
    }
    cxm_call_hold_recv(s->call);
    s->held = true;
}

/* The runtime decodes each stream message straight into the arena of the
 * job it starts (the method's stream_allocator): the job owns its events,
 * checks may put normalised copies beside them, and nothing is copied. */
static ProtobufCAllocator *stream_allocator(cxm_call *call)
{
    jstream *s = stream_of(call);
    if (!s)
        return NULL;
    if (!s->next && !(s->next = ingest_new(s->ctx, call)))
        return NULL;
    return cxm_arena_protobuf(&s->next->a);
}

/* A message that does not decode ends the stream once the acknowledgements
 * of the messages before it are sent (their writes may still be in flight:
 * the call must outlive them). */
static void on_stream_bad_message(cxm_call *call, const char *why)
{
    jstream *s = stream_of(call);
    if (!s)
        return cxm_call_finish(call, CXM_EINVAL, "%s", why);
    pthread_mutex_lock(&s->mu);
    if (s->next) {
        ingest_free(s->next);
        s->next = NULL;
    }
    char msg[CXM_SVC_ERR_MAX];
    snprintf(msg, sizeof msg, "message %u: %s", s->next_index, why);
    stream_fail(s, CXM_EINVAL, msg);
    stream_fin fin;
    stream_maybe_finish(s, &fin);
    pthread_mutex_unlock(&s->mu);
    stream_finish(&fin);
}

static void on_stream_message(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__TrackStreamRequest *req = (Cxm__V1__TrackStreamRequest *)msg;
    jstream *s = stream_of(call);
    if (!s)
        return cxm_call_finish(call, CXM_ENOMEM, "out of memory");
    /* req lives in g's arena (stream_allocator): g owns it from here. */
    ingest *g = s->next;
    s->next = NULL;
    pthread_mutex_lock(&s->mu);
    uint32_t index = s->next_index++;
    bool over = s->finished || s->fail_rc;
    pthread_mutex_unlock(&s->mu);
    if (over) {
        if (g)
            ingest_free(g);
        return;
    }
    char err[CXM_SVC_ERR_MAX] = "", full[CXM_SVC_ERR_MAX + 32];
    int rc = g ? check_batch(req->n_events, err) : CXM_ENOMEM;
    if (rc == 0)
        rc = ingest_prepare(g, req->events, req->n_events, index);
    if (rc != 0 && !err[0])
        snprintf(err, sizeof err, "out of memory");
    pthread_mutex_lock(&s->mu);
    if (rc != 0) {
        if (g)
            ingest_free(g);
        snprintf(full, sizeof full, "message %u: %s", index, err);
        stream_fail(s, rc, full);
        stream_fin fin;
        stream_maybe_finish(s, &fin);
        pthread_mutex_unlock(&s->mu);
        stream_finish(&fin);
        return;
    }
    g->stream = s;
    g->index = index;
    s->inflight++;
    if (s->inflight >= STREAM_WINDOW && !s->held) {
        cxm_call_hold_recv(call);
        s->held = true;
    }
    pthread_mutex_unlock(&s->mu);
    g->wj = (cxm_write_job){.fn = ingest_txn, .done = stream_done, .user = g};
    cxm_store_submit(jdb_store(s->ctx->db), &g->wj);
}

static void stream_end(cxm_call *call, bool cancelled)
{
    jstream *s = stream_of(call);
    if (!s)
        return cxm_call_finish(call, cancelled ? CXM_ECANCELLED : 0,
                               cancelled ? "cancelled" : NULL);
    pthread_mutex_lock(&s->mu);
    if (cancelled)
        s->cancelled = true;
    else
        s->half_closed = true;
    stream_fin fin;
    stream_maybe_finish(s, &fin);
    pthread_mutex_unlock(&s->mu);
    stream_finish(&fin);
}

static void on_stream_half_close(cxm_call *call)
{
    stream_end(call, false);
}

static void on_stream_cancel(cxm_call *call)
{
    stream_end(call, true);
}

/* ---- reads ---- */

/* The root customer a ref names, as far as journey knows it: a customer id
 * follows merges; an identity is looked up among the identities events
 * were resolved through here (reads never create profiles). NOT_FOUND when
 * journey has nothing of the customer. */
static int ref_root(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const Cxm__V1__CustomerRef *ref,
                    const char **root, char *err)
{
    const char *id;
    int rc = 0;
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY)
        rc = jdb_ident_get(t, ctx->db, a, ref->identity, &id);
    else
        id = ref->customer_id;
    bool known = false;
    if (rc == 0)
        rc = jdb_root(t, ctx->db, a, id, root);
    if (rc == 0)
        rc = jdb_known(t, ctx->db, *root, &known);
    if (rc == 0 && !known)
        rc = CXM_ENOTFOUND;
    if (rc == CXM_ENOTFOUND) {
        if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY)
            cxm_svc_errf(err, rc, "customer", "no events of a customer with identity \"%s\"",
                         ref->identity->value);
        else
            cxm_svc_errf(err, rc, "customer", "no events of customer \"%s\"", ref->customer_id);
    }
    return rc;
}

/* ---- GetTimeline ---- */

typedef struct tl_filter {
    int64_t from, to;
    uint32_t *tps, *types;
    size_t ntps, ntypes;
    const Cxm__V1__GetTimelineRequest *req;
} tl_filter;

static bool has_u32(const uint32_t *v, size_t n, uint32_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

static bool tl_keep(const tl_filter *f, const jrec *r)
{
    const Cxm__V1__GetTimelineRequest *q = f->req;
    if (r->at_ms < f->from || r->at_ms >= f->to)
        return false;
    if (q->n_touchpoints && !has_u32(f->tps, f->ntps, r->touchpoint))
        return false;
    if (q->n_event_types && !has_u32(f->types, f->ntypes, r->type))
        return false;
    if (q->n_channels) {
        bool in = false;
        for (size_t i = 0; i < q->n_channels && !in; i++)
            in = (int)q->channels[i] == r->channel;
        if (!in)
            return false;
    }
    return true;
}

/* Filters as dictionary ids (a name never seen matches nothing). */
static int tl_filter_make(cxm_arena *a, jdict *d, const Cxm__V1__GetTimelineRequest *req,
                          tl_filter *f)
{
    f->req = req;
    f->from = req->range && req->range->from_unix_ms ? req->range->from_unix_ms : INT64_MIN;
    f->to = req->range && req->range->to_unix_ms ? req->range->to_unix_ms : INT64_MAX;
    f->tps = cxm_arena_alloc(a, (req->n_touchpoints + 1) * sizeof *f->tps);
    f->types = cxm_arena_alloc(a, (req->n_event_types + 1) * sizeof *f->types);
    if (!f->tps || !f->types)
        return CXM_ENOMEM;
    for (size_t i = 0; i < req->n_touchpoints; i++)
        if ((f->tps[f->ntps] = d->id(d->ctx, req->touchpoints[i])))
            f->ntps++;
    for (size_t i = 0; i < req->n_event_types; i++)
        if ((f->types[f->ntypes] = d->id(d->ctx, req->event_types[i])))
            f->ntypes++;
    return 0;
}

/* A page position: the record's (at_ms, eid, home). */
typedef struct tl_pos {
    int64_t at;
    uint64_t eid;
    uint8_t home;
} tl_pos;

static int pos_cmp(const jrec *r, const tl_pos *p)
{
    if (r->at_ms != p->at)
        return r->at_ms < p->at ? -1 : 1;
    if (r->eid != p->eid)
        return r->eid < p->eid ? -1 : 1;
    return (r->home > p->home) - (r->home < p->home);
}

static uint64_t timeline_filters(cxm_arena *a, const Cxm__V1__GetTimelineRequest *req)
{
    Cxm__V1__GetTimelineRequest f = *req;
    f.page_token = "";
    f.page_size = 0;
    const ProtobufCMessage *m[] = {&f.base};
    return cxm_svc_hash_messages(a, m, 1);
}

static int timeline_page(cxm_call *call, cxm_txn *t, jrn_ctx *ctx, cxm_arena *a,
                         const Cxm__V1__GetTimelineRequest *req, int page_size,
                         Cxm__V1__GetTimelineResponse *resp, char *err)
{
    uint64_t fh = timeline_filters(a, req);
    const char *after;
    int rc = cxm_svc_token_parse(req->page_token, fh, &after, err);
    if (rc != 0)
        return rc;
    tl_pos pos;
    bool has_pos = after && *after;
    if (has_pos && sscanf(after, "%" SCNd64 ".%" SCNu64 ".%hhu", &pos.at, &pos.eid, &pos.home) != 3)
        return cxm_svc_errf(err, CXM_EINVAL, "page_token", "malformed: start from the first page");
    const char *root, **homes;
    size_t nhomes, n;
    jrec *recs;
    if ((rc = ref_root(t, ctx, a, req->customer, &root, err)) != 0 ||
        (rc = jdb_group(t, ctx->db, a, root, &homes, &nhomes)) != 0 ||
        (rc = jdb_group_recs(t, ctx->db, a, homes, nhomes, &recs, &n)) != 0)
        return rc;
    jdb_dict_ctx dc = {ctx->db, t, a};
    jdict d = jdb_dict(&dc);
    tl_filter f = {0};
    if ((rc = tl_filter_make(a, &d, req, &f)) != 0)
        return rc;
    resp->customer_id = (char *)root;
    resp->events = cxm_arena_alloc(a, (size_t)page_size * sizeof *resp->events);
    if (!resp->events)
        return CXM_ENOMEM;
    size_t budget = cxm_svc_reply_budget(call, 256 + strlen(root)), used = 0;
    bool newest = !req->oldest_first;
    for (size_t k = 0; k < n; k++) {
        const jrec *r = &recs[newest ? n - 1 - k : k];
        if (has_pos && (newest ? pos_cmp(r, &pos) >= 0 : pos_cmp(r, &pos) <= 0))
            continue;
        if (!tl_keep(&f, r))
            continue;
        if (resp->n_events == (size_t)page_size)
            break;
        Cxm__V1__TouchpointEvent *ev;
        if ((rc = jdb_tl_get(t, ctx->db, a, homes[r->home], r, &ev)) != 0)
            return rc;
        ev->stage = (Cxm__V1__JourneyStage)r->stage;
        size_t sz = cxm_svc_field_size(protobuf_c_message_get_packed_size(&ev->base));
        if (used + sz > budget) {
            if (resp->n_events == 0)
                return cxm_svc_too_big(call, sz, "one event of the timeline", err);
            break;
        }
        used += sz;
        resp->events[resp->n_events++] = ev;
        pos = (tl_pos){r->at_ms, r->eid, r->home};
        has_pos = false; /* from here on, positions are of this page */
    }
    /* More to come when a kept record follows the last one sent. */
    if (resp->n_events) {
        bool more = false;
        for (size_t k = 0; k < n && !more; k++) {
            const jrec *r = &recs[newest ? n - 1 - k : k];
            if ((newest ? pos_cmp(r, &pos) < 0 : pos_cmp(r, &pos) > 0) && tl_keep(&f, r))
                more = true;
        }
        if (more) {
            char key[96];
            int len = snprintf(key, sizeof key, "%" PRId64 ".%" PRIu64 ".%u", pos.at, pos.eid,
                               (unsigned)pos.home);
            if (!(resp->next_page_token = cxm_svc_token_make(a, fh, key, (size_t)len)))
                return CXM_ENOMEM;
        }
    }
    return 0;
}

static void on_timeline(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__GetTimelineRequest *req = (Cxm__V1__GetTimelineRequest *)msg;
    jrn_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int page_size = 0;
    int rc = jrn_check_timeline(a, req, &page_size, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(jdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    Cxm__V1__GetTimelineResponse resp = CXM__V1__GET_TIMELINE_RESPONSE__INIT;
    rc = timeline_page(call, t, ctx, a, req, page_size, &resp, err);
    if (rc == 0)
        cxm_call_reply(call, &resp.base); /* packed before the snapshot ends */
    cxm_store_read_end(t);
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

/* ---- GetJourneyState ---- */

static int state_answer(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a,
                        const Cxm__V1__GetJourneyStateRequest *req,
                        Cxm__V1__GetJourneyStateResponse **out, char *err)
{
    const char *root, **homes;
    size_t nhomes, n;
    jrec *recs;
    int rc;
    if ((rc = ref_root(t, ctx, a, req->customer, &root, err)) != 0 ||
        (rc = jdb_group(t, ctx->db, a, root, &homes, &nhomes)) != 0 ||
        (rc = jdb_group_recs(t, ctx->db, a, homes, nhomes, &recs, &n)) != 0)
        return rc;
    Cxm__V1__GetJourneyStateResponse *s = NULL;
    rc = jdb_state_get(t, ctx->db, a, root, &s);
    if (rc == CXM_ENOTFOUND) { /* known, but its events are not staged yet */
        if (!(s = cxm_arena_alloc(a, sizeof *s)))
            return CXM_ENOMEM;
        cxm__v1__get_journey_state_response__init(s);
        rc = 0;
    }
    if (rc != 0)
        return rc;
    s->customer_id = (char *)root;
    s->event_count = n;
    if (n) {
        jdb_dict_ctx dc = {ctx->db, t, a};
        jdict d = jdb_dict(&dc);
        s->first_seen_unix_ms = recs[0].at_ms;
        s->last_seen_unix_ms = recs[n - 1].at_ms;
        s->last_touchpoint = (char *)d.name(d.ctx, recs[n - 1].touchpoint);
        s->last_channel = (Cxm__V1__Channel)recs[n - 1].channel;
    }
    int64_t now = cxm_svc_now_ms();
    for (size_t i = 0; i < s->n_time_in_stage; i++) /* the current stage counts up to now */
        if (s->time_in_stage[i]->stage == s->stage && s->stage_since_unix_ms &&
            now > s->stage_since_unix_ms)
            s->time_in_stage[i]->total_ms += now - s->stage_since_unix_ms;
    uint64_t pending = 0;
    if ((rc = jdb_pending_count(t, ctx->db, root, &pending)) != 0)
        return rc;
    s->pending_events = pending;
    *out = s;
    return 0;
}

static void on_state(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__GetJourneyStateRequest *req = (Cxm__V1__GetJourneyStateRequest *)msg;
    jrn_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = jrn_check_state(a, req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(jdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    Cxm__V1__GetJourneyStateResponse *s = NULL;
    rc = state_answer(t, ctx, a, req, &s, err);
    if (rc == 0)
        cxm_call_reply(call, &s->base);
    cxm_store_read_end(t);
    if (rc != 0)
        cxm_svc_finish(call, rc, err);
}

/* ---- rules ---- */

static int upsert_rules_job(cxm_txn *t, cxm_svc_job *j)
{
    jrn_ctx *ctx = j->ctx;
    const Cxm__V1__UpsertStageRulesRequest *req = j->req;
    Cxm__V1__GetStageRulesResponse *old = NULL;
    int rc = jdb_rules_get(t, ctx->db, j->a, &old);
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    uint64_t version = old ? old->version : 0;
    if (req->expected_version && req->expected_version != version)
        return cxm_svc_errf(j->err, CXM_ESTALE, "expected_version",
                            "the rule set is at version %" PRIu64 ", not %" PRIu64
                            ": read it again (GetStageRules) and retry",
                            version, req->expected_version);
    Cxm__V1__GetStageRulesResponse now = CXM__V1__GET_STAGE_RULES_RESPONSE__INIT;
    now.rules = req->rules;
    now.n_rules = req->n_rules;
    now.version = version + 1;
    now.updated_at_unix_ms = j->now;
    uint64_t roots;
    if ((rc = jdb_rules_put(t, ctx->db, j->a, &now)) != 0 ||
        (rc = jdb_state_count(t, ctx->db, &roots)) != 0 ||
        (rc = jdb_meta_put(t, ctx->db, "rc_done", 0)) != 0 ||
        (rc = jdb_meta_put(t, ctx->db, "rc_total", roots)) != 0)
        return rc;
    Cxm__V1__UpsertStageRulesResponse *resp =
        cxm_svc_response(j, &cxm__v1__upsert_stage_rules_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    resp->rule_count = (uint32_t)req->n_rules;
    resp->version = now.version;
    return 0;
}

static void on_upsert_rules(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__UpsertStageRulesRequest *req = (Cxm__V1__UpsertStageRulesRequest *)msg;
    jrn_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = jrn_check_rules(req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, jdb_store(ctx->db), req, upsert_rules_job);
    jrn_pipe_wake(ctx->pipe); /* it also polls: a wake before the commit is not lost */
}

static int rules_answer(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a,
                        Cxm__V1__GetStageRulesResponse **out)
{
    Cxm__V1__GetStageRulesResponse *r = NULL;
    int rc = jdb_rules_get(t, ctx->db, a, &r);
    if (rc == CXM_ENOTFOUND) {
        if (!(r = cxm_arena_alloc(a, sizeof *r)))
            return CXM_ENOMEM;
        cxm__v1__get_stage_rules_response__init(r);
        r->rules = (Cxm__V1__StageRule **)jrules_defaults(&r->n_rules);
        rc = 0;
    }
    uint64_t done = 0, total = 0, version = 0;
    if (rc == 0)
        rc = jrn_recompute_progress(t, ctx, &version, &done, &total);
    if (rc != 0)
        return rc;
    if (version == r->version && done >= total)
        done = total; /* complete */
    else if (done >= total && total)
        done = total - 1; /* the last batch is not committed yet */
    r->recompute_done = done;
    r->recompute_total = total;
    *out = r;
    return 0;
}

static void on_get_rules(cxm_call *call, const ProtobufCMessage *msg)
{
    (void)msg;
    jrn_ctx *ctx = cxm_call_service_ctx(call);
    cxm_txn *t;
    int rc = cxm_store_read_begin(jdb_store(ctx->db), &t);
    if (rc != 0)
        return cxm_svc_finish(call, rc, "");
    Cxm__V1__GetStageRulesResponse *r = NULL;
    rc = rules_answer(t, ctx, cxm_call_arena(call), &r);
    if (rc == 0)
        cxm_call_reply(call, &r->base);
    cxm_store_read_end(t);
    if (rc != 0)
        cxm_svc_finish(call, rc, "");
}

/* ---- analytics ---- */

typedef struct fb_ctx {
    cxm_txn *t;
    jrn_ctx *ctx;
    jdict *d;
    int64_t from, to;
} fb_ctx;

static int feedback_of(void *user, uint32_t touchpoint, Cxm__V1__TouchpointFeedback *out)
{
    fb_ctx *f = user;
    const char *name = f->d->name(f->d->ctx, touchpoint);
    return name ? jdb_feedback_scores(f->t, f->ctx->db, name, f->from, f->to, out) : 0;
}

enum { AN_FUNNEL, AN_PATHS, AN_TOUCHPOINTS };

static void analytics(cxm_call *call, const ProtobufCMessage *msg, int kind)
{
    jrn_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int64_t now = cxm_svc_now_ms();
    const char *segment = NULL;
    int rc;
    if (kind == AN_FUNNEL) {
        rc = jrn_check_funnel((Cxm__V1__FunnelRequest *)msg, now, err);
        segment = ((const Cxm__V1__FunnelRequest *)msg)->segment_id;
    } else if (kind == AN_PATHS) {
        rc = jrn_check_paths((Cxm__V1__PathsRequest *)msg, now, err);
        segment = ((const Cxm__V1__PathsRequest *)msg)->segment_id;
    } else {
        rc = jrn_check_touchpoints((Cxm__V1__TouchpointStatsRequest *)msg, now, err);
    }
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(jdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    jdb_src *s = NULL;
    jdb_dict_ctx dc = {ctx->db, t, a};
    jdict d = jdb_dict(&dc);
    uint64_t pending = 0;
    ProtobufCMessage *resp = NULL;
    rc = jdb_pending_count(t, ctx->db, NULL, &pending);
    if (rc == 0)
        rc = jdb_src_open(t, ctx->db, NULL, segment, jrules_conditions_hold, &s);
    if (rc == 0) {
        jsource src = jdb_source(s);
        if (kind == AN_FUNNEL) {
            Cxm__V1__FunnelResponse *r = NULL;
            if ((rc = jan_funnel((const Cxm__V1__FunnelRequest *)msg, &d, &src, a, &r)) == 0) {
                r->pending_events = pending;
                resp = &r->base;
            }
        } else if (kind == AN_PATHS) {
            Cxm__V1__PathsResponse *r = NULL;
            if ((rc = jan_paths((const Cxm__V1__PathsRequest *)msg, &d, &src, a, &r)) == 0) {
                r->pending_events = pending;
                resp = &r->base;
            }
        } else {
            const Cxm__V1__TouchpointStatsRequest *q = (const Cxm__V1__TouchpointStatsRequest *)msg;
            fb_ctx fb = {t, ctx, &d, q->range->from_unix_ms, q->range->to_unix_ms};
            Cxm__V1__TouchpointStatsResponse *r = NULL;
            if ((rc = jan_touchpoints(q, &d, &src, feedback_of, &fb, a, &r)) == 0) {
                r->pending_events = pending;
                resp = &r->base;
            }
        }
    }
    jdb_src_close(s);
    if (rc == 0)
        cxm_call_reply(call, resp);
    cxm_store_read_end(t);
    if (rc != 0)
        cxm_svc_finish(call, rc, "");
}

static void on_funnel(cxm_call *call, const ProtobufCMessage *msg)
{
    analytics(call, msg, AN_FUNNEL);
}

static void on_paths(cxm_call *call, const ProtobufCMessage *msg)
{
    analytics(call, msg, AN_PATHS);
}

static void on_touchpoints(cxm_call *call, const ProtobufCMessage *msg)
{
    analytics(call, msg, AN_TOUCHPOINTS);
}

/* ---- bus subscriptions ---- */

static int recompute_root_of(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const char *id)
{
    const char *root;
    int rc = jdb_root(t, ctx->db, a, id, &root);
    return rc ? rc : jrn_recompute(t, ctx, a, root, cxm_svc_now_ms());
}

static int apply_merged(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const Cxm__V1__CustomerMerged *m)
{
    int rc = jdb_merge_set(t, ctx->db, m->source_customer_id, m->target_customer_id);
    if (rc == CXM_EINVAL || rc == CXM_ETOOBIG) { /* can never apply: skip it */
        cxm_log_warn("journey.merge_skipped", "merge %s of %s into %s ignored: %s", m->merge_id,
                     m->source_customer_id, m->target_customer_id, cxm_strerror(rc));
        return 0;
    }
    /* The source is no root any more: its state and saved group go, the
     * root's are redone. */
    if (rc == 0)
        rc = jdb_state_put(t, ctx->db, a, m->source_customer_id, NULL);
    if (rc == 0)
        rc = jdb_group_drop(t, ctx->db, m->source_customer_id);
    return rc ? rc : recompute_root_of(t, ctx, a, m->target_customer_id);
}

static int apply_unmerged(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a,
                          const Cxm__V1__CustomerUnmerged *m)
{
    int rc = jdb_merge_clear(t, ctx->db, m->source_customer_id, m->target_customer_id);
    if (rc == CXM_ENOTFOUND || rc == CXM_ETOOBIG) {
        cxm_log_warn("journey.unmerge_skipped", "unmerge %s of %s from %s ignored: not merged here",
                     m->merge_id, m->source_customer_id, m->target_customer_id);
        return 0;
    }
    jrn_pipe_invalidate(ctx->pipe);
    if (rc == 0)
        rc = recompute_root_of(t, ctx, a, m->target_customer_id);
    return rc ? rc : jrn_recompute(t, ctx, a, m->source_customer_id, cxm_svc_now_ms());
}

static int apply_segments(cxm_txn *t, jrn_ctx *ctx, const char *customer_id,
                          const Cxm__V1__SegmentMembershipChanged *c)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < c->n_entered_segment_ids; i++)
        rc = jdb_segment_set(t, ctx->db, c->entered_segment_ids[i], customer_id, true);
    for (size_t i = 0; rc == 0 && i < c->n_left_segment_ids; i++)
        rc = jdb_segment_set(t, ctx->db, c->left_segment_ids[i], customer_id, false);
    return rc == CXM_ETOOBIG ? 0 : rc;
}

int jrn_apply_profile(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    jrn_ctx *ctx = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    int rc = 0;
    /* No jdb_dict_rollback here: the staged names belong to the pipeline
     * thread, which commits them after its transaction, outside the writer
     * lock this runs under; recompute interns nothing. */
    switch (ev->payload_case) {
    case CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED:
        rc = apply_merged(t, ctx, &a, ev->customer_merged);
        break;
    case CXM__V1__EVENT__PAYLOAD_CUSTOMER_UNMERGED:
        rc = apply_unmerged(t, ctx, &a, ev->customer_unmerged);
        break;
    case CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED:
        rc = apply_segments(t, ctx, ev->customer_id, ev->segment_membership_changed);
        break;
    default:
        break;
    }
    cxm_arena_dispose(&a);
    return rc;
}

/* ---- survey responses as touchpoint events ---- */

typedef struct prop_set {
    Cxm__V1__TouchpointEvent__PropertiesEntry *e[5], entries[5];
    Cxm__V1__Value v[5];
    size_t n;
} prop_set;

static Cxm__V1__Value *prop_add(prop_set *ps, const char *key)
{
    size_t i = ps->n++;
    cxm__v1__touchpoint_event__properties_entry__init(&ps->entries[i]);
    cxm__v1__value__init(&ps->v[i]);
    ps->entries[i].key = (char *)key;
    ps->entries[i].value = &ps->v[i];
    ps->e[i] = &ps->entries[i];
    return &ps->v[i];
}

static void prop_str(prop_set *ps, const char *key, const char *s)
{
    Cxm__V1__Value *v = prop_add(ps, key);
    v->kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    v->string_value = (char *)s;
}

/* The lower-case name of enum value n after its prefix ("SURVEY_KIND_NPS"
 * -> "nps"), in a; NULL for UNSPECIFIED or a value this build does not know. */
static const char *enum_word(cxm_arena *a, const ProtobufCEnumDescriptor *d, int n,
                             const char *prefix)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, n);
    if (!v || n == 0 || strncmp(v->name, prefix, strlen(prefix)) != 0)
        return NULL;
    char *w = cxm_arena_strndup(a, v->name + strlen(prefix), strlen(v->name) - strlen(prefix));
    for (char *c = w; c && *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    return w;
}

/* The properties a survey_response event carries: kind, score, and the NPS
 * category and sentiment of the text when there are. */
static void survey_props(cxm_arena *a, const Cxm__V1__FeedbackReceived *f, prop_set *ps)
{
    const char *kind = enum_word(a, &cxm__v1__survey_kind__descriptor, f->kind, "SURVEY_KIND_");
    const char *cat =
        enum_word(a, &cxm__v1__nps_category__descriptor, f->nps_category, "NPS_CATEGORY_");
    const char *sent =
        enum_word(a, &cxm__v1__sentiment_label__descriptor, f->sentiment, "SENTIMENT_LABEL_");
    if (kind)
        prop_str(ps, "kind", kind);
    Cxm__V1__Value *score = prop_add(ps, "score");
    score->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    score->number_value = f->score;
    if (cat)
        prop_str(ps, "nps_category", cat);
    if (sent)
        prop_str(ps, "sentiment", sent);
    if (f->survey_id && *f->survey_id)
        prop_str(ps, "survey_id", f->survey_id);
}

/* The response becomes an event of the customer's journey at the survey's
 * touchpoint, through the pending queue like a tracked event: the pipeline
 * thread resolves its customer id (following merges), stores it in the
 * timeline, recomputes the stage and interns its names (the dictionary's
 * staged names belong to that thread, so this bus apply must not store it
 * itself). Its event id is "fb:" + the response id and its time the answer's,
 * so a redelivered response lands on the same (at_ms, eid) and replaces
 * itself; erasure takes it with the customer's other events. */
static int queue_survey_event(cxm_txn *t, jrn_ctx *ctx, const Cxm__V1__Event *ev)
{
    const Cxm__V1__FeedbackReceived *f = ev->feedback_received;
    if (!ev->customer_id || !*ev->customer_id || f->channel == 0)
        return 0; /* no one, or nowhere, to put it */
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = ev->customer_id;
    Cxm__V1__TouchpointEvent te = CXM__V1__TOUCHPOINT_EVENT__INIT;
    size_t idlen = strlen(f->response_id) + 4;
    if ((te.event_id = cxm_arena_alloc(&a, idlen)) != NULL)
        snprintf(te.event_id, idlen, "fb:%s", f->response_id);
    te.customer = &ref;
    te.touchpoint = f->touchpoint;
    te.channel = f->channel;
    te.event_type = "survey_response";
    te.occurred_at_unix_ms =
        f->answered_at_unix_ms ? f->answered_at_unix_ms : ev->occurred_at_unix_ms;
    te.received_at_unix_ms = cxm_svc_now_ms();
    prop_set ps = {.n = 0};
    survey_props(&a, f, &ps);
    te.properties = ps.e;
    te.n_properties = ps.n;
    int rc = te.event_id ? jdb_pending_append(t, ctx->db, &a, &te) : CXM_ENOMEM;
    cxm_arena_dispose(&a);
    if (rc == 0)
        jrn_pipe_wake(ctx->pipe);
    return rc;
}

int jrn_apply_feedback(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    jrn_ctx *ctx = user;
    if (ev->payload_case != CXM__V1__EVENT__PAYLOAD_FEEDBACK_RECEIVED)
        return 0;
    const Cxm__V1__FeedbackReceived *f = ev->feedback_received;
    if (!f->touchpoint || !*f->touchpoint || !f->response_id || !*f->response_id)
        return 0; /* not about a touchpoint: nothing to count */
    int rc = jdb_feedback_put(t, ctx->db, f->touchpoint, f->answered_at_unix_ms, f->response_id,
                              f->kind, f->score);
    if (rc == CXM_ETOOBIG)
        return 0;
    return rc ? rc : queue_survey_event(t, ctx, ev);
}

int jrn_erase(cxm_txn *t, const char *customer_id, char *const *merged, size_t nmerged,
              uint64_t *records, void *user)
{
    jrn_ctx *ctx = user;
    jrn_pipe_invalidate(ctx->pipe);
    return jdb_erase(t, ctx->db, customer_id, merged, nmerged, records);
}

/* ---- the method table ---- */

const cxm_method jrn_methods[] = {
    {"Track", CXM_UNARY, &cxm__v1__track_request__descriptor, on_track, NULL, NULL},
    {"TrackStream", CXM_BIDI_STREAMING, &cxm__v1__track_stream_request__descriptor,
     on_stream_message, on_stream_half_close, on_stream_cancel, stream_allocator,
     on_stream_bad_message},
    {"GetTimeline", CXM_UNARY, &cxm__v1__get_timeline_request__descriptor, on_timeline, NULL, NULL},
    {"GetJourneyState", CXM_UNARY, &cxm__v1__get_journey_state_request__descriptor, on_state, NULL,
     NULL},
    {"UpsertStageRules", CXM_UNARY, &cxm__v1__upsert_stage_rules_request__descriptor,
     on_upsert_rules, NULL, NULL},
    {"GetStageRules", CXM_UNARY, &cxm__v1__get_stage_rules_request__descriptor, on_get_rules, NULL,
     NULL},
    {"Funnel", CXM_UNARY, &cxm__v1__funnel_request__descriptor, on_funnel, NULL, NULL},
    {"Paths", CXM_UNARY, &cxm__v1__paths_request__descriptor, on_paths, NULL, NULL},
    {"TouchpointStats", CXM_UNARY, &cxm__v1__touchpoint_stats_request__descriptor, on_touchpoints,
     NULL, NULL},
};
const size_t jrn_nmethods = sizeof jrn_methods / sizeof jrn_methods[0];

/* Who may call each method with auth on (auth.h has the whole table and the
 * reasoning); keep in step with the method table above. */
const cxm_method_access jrn_access[] = {
    {"Track", CXM_ACCESS_WRITE},
    {"TrackStream", CXM_ACCESS_WRITE},
    {"GetTimeline", CXM_ACCESS_READ},
    {"GetJourneyState", CXM_ACCESS_READ},
    {"UpsertStageRules", CXM_ACCESS_WRITE},
    {"GetStageRules", CXM_ACCESS_READ},
    {"Funnel", CXM_ACCESS_READ},
    {"Paths", CXM_ACCESS_READ},
    {"TouchpointStats", CXM_ACCESS_READ},
};
const size_t jrn_naccess = sizeof jrn_access / sizeof jrn_access[0];
