/*
 * bench_track.c - cxm-bench-track: TrackStream ingest throughput.
 *
 *   cxm-bench-track [--target HOST:PORT] [--connections N] [--batch 500]
 *                   [--inflight 8] [--duration 10s] [--warmup 1s] [--json]
 *                   [--requests track.pb [--loop]]
 *
 * Each connection is its own channel carrying one TrackStream, driven by its
 * own thread: it keeps --inflight messages of --batch new events (see
 * bench_journey.h) unacknowledged, sending the next as each acknowledgement
 * arrives. The server acknowledges a message only once its events are
 * durable, so acknowledged events per second is the durable ingest rate,
 * and the time from sending a message to its acknowledgement is the ack
 * latency (which includes the wait behind the messages before it).
 *
 * With --requests, the records of a TrackRequest file (cxm-gen's track.pb)
 * are sent instead, each once across all streams in file order (round and
 * round with --loop); every event of the file must then be accepted or a
 * duplicate, or the exit status is 1.
 *
 * cxm-bench's closed loop of unary calls cannot hold a stream, hence a
 * program of its own; its flags mean what cxm-bench's do.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "bench_journey.h"
#include "bench_replay.h"
#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/opts.h"
#include "cxm/pipe.h"
#include "cxm/v1/journey.pb-c.h"

#define TRACK_STREAM "/cxm.v1.JourneyService/TrackStream"

typedef struct track_cfg {
    const char *target, *requests;
    int64_t connections, batch, inflight, customers;
    int64_t duration_ms, warmup_ms;
    bool json, loop;
    const char *token, *token_file; /* --token, --token-file (CXM_TOKEN[_FILE]) */
    char *bearer;                   /* the token sent, from either */
    cxm_channel_opts chan;          /* TLS flags */
} track_cfg;

/* One stream and what its thread measured. */
typedef struct track_stream {
    pthread_t tid;
    unsigned index;
    cxm_channel *ch;
    cxm_bench_events gen;
    uint8_t *buf;
    size_t cap;
    uint64_t *sent_ns;     /* ring of --inflight send times, by message index */
    uint64_t *sent_events; /* the same ring: events of each message */
    uint64_t sent, acked;
    /* Inside the measurement window: */
    uint64_t events, messages, accepted, duplicates, rejected;
    uint64_t *lat_ns; /* ack latency of each message counted */
    size_t nlat, lat_cap;
    /* Over the whole run, for --requests: */
    uint64_t all_events, all_ok;
    char error[256];
} track_stream;

static struct {
    const track_cfg *cfg;
    cxm_bench_keys keys;
    cxm_bench_replay replay;
    atomic_uint_fast64_t next; /* next record of --requests */
    uint64_t nonce, start_ns, measure_start_ns, measure_end_ns;
    atomic_bool stop;
} run;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
    atomic_store(&run.stop, true);
}

/* The events of a packed TrackRequest (decoded to count them: a record of
 * --requests, once per send). */
static uint64_t count_events(const uint8_t *p, size_t len)
{
    Cxm__V1__TrackRequest *r = cxm__v1__track_request__unpack(NULL, len, p);
    uint64_t n = r ? r->n_events : 0;
    cxm__v1__track_request__free_unpacked(r, NULL);
    return n;
}

/* The next message to send into s->buf: a generated batch, or the next
 * record of --requests. 1 when there is one, 0 when the file is done. */
static int next_message(track_stream *s, size_t *len, uint64_t *events)
{
    if (!run.replay.n) {
        *events = (uint64_t)run.cfg->batch;
        return cxm_bench_track_bytes(&s->gen, (size_t)run.cfg->batch, &s->buf, &s->cap, len) == 0
                   ? 1
                   : CXM_ENOMEM;
    }
    uint64_t i = atomic_fetch_add(&run.next, 1);
    if (i >= run.replay.n && !run.cfg->loop)
        return 0;
    grpc_byte_buffer *bb = run.replay.records[i % run.replay.n];
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return CXM_ENOMEM;
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    *len = GRPC_SLICE_LENGTH(all);
    if (*len > s->cap) {
        uint8_t *p = realloc(s->buf, *len);
        if (!p)
            return (grpc_slice_unref(all), CXM_ENOMEM);
        s->buf = p, s->cap = *len;
    }
    memcpy(s->buf, GRPC_SLICE_START_PTR(all), *len);
    grpc_slice_unref(all);
    *events = count_events(s->buf, *len);
    return 1;
}

static bool keep_sending(void)
{
    return !atomic_load(&run.stop) &&
           (run.replay.n && !run.cfg->loop ? true : now_ns() < run.measure_end_ns);
}

static int record_latency(track_stream *s, uint64_t ns)
{
    if (s->nlat == s->lat_cap) {
        size_t cap = s->lat_cap ? s->lat_cap * 2 : 4096;
        uint64_t *p = realloc(s->lat_ns, cap * sizeof *p);
        if (!p)
            return CXM_ENOMEM;
        s->lat_ns = p, s->lat_cap = cap;
    }
    s->lat_ns[s->nlat++] = ns;
    return 0;
}

/* One acknowledgement: in order, and counted when it came inside the
 * window (a load of --requests counts every one). */
static int on_ack(track_stream *s, const uint8_t *msg, size_t len)
{
    Cxm__V1__TrackStreamResponse *r = cxm__v1__track_stream_response__unpack(NULL, len, msg);
    /* An ack of a message not sent yet would read an unset send time and
     * wrap sent - acked (the send window would stall). */
    if (!r || r->message_index != s->acked || s->acked >= s->sent) {
        snprintf(s->error, sizeof s->error, "acknowledgement %" PRIu64 " %s", s->acked,
                 !r                    ? "does not decode"
                 : s->acked >= s->sent ? "of a message not sent yet"
                                       : "out of order");
        cxm__v1__track_stream_response__free_unpacked(r, NULL);
        return CXM_ECORRUPT;
    }
    size_t slot = (size_t)(s->acked % (uint64_t)run.cfg->inflight);
    uint64_t t = now_ns(), events = s->sent_events[slot];
    bool counted =
        run.replay.n && !run.cfg->loop ? true : t >= run.measure_start_ns && t < run.measure_end_ns;
    s->all_events += events;
    s->all_ok += r->accepted + r->duplicates;
    if (counted) {
        s->events += events, s->messages++;
        s->accepted += r->accepted, s->duplicates += r->duplicates;
        s->rejected += r->n_rejected;
    }
    if (r->n_rejected && !s->error[0])
        snprintf(s->error, sizeof s->error, "message %" PRIu64 " event %" PRIu32 ": %s", s->acked,
                 r->rejected[0]->index, r->rejected[0]->reason);
    cxm__v1__track_stream_response__free_unpacked(r, NULL);
    s->acked++;
    return counted ? record_latency(s, t - s->sent_ns[slot]) : 0;
}

static int send_one(track_stream *s, cxm_pipe *st, bool *done)
{
    size_t len;
    uint64_t events;
    int rc = next_message(s, &len, &events);
    if (rc <= 0) {
        *done = true;
        return rc;
    }
    size_t slot = (size_t)(s->sent % (uint64_t)run.cfg->inflight);
    s->sent_ns[slot] = now_ns();
    s->sent_events[slot] = events;
    s->sent++;
    return cxm_pipe_send(st, s->buf, len);
}

/* Keep --inflight messages unacknowledged until the window (or the file)
 * ends, then half-close and drain. */
static int pump(track_stream *s, cxm_pipe *st)
{
    bool done = false;
    int rc = 0;
    while (rc == 0 && (!done || s->acked < s->sent)) {
        while (rc == 0 && !done && s->sent - s->acked < (uint64_t)run.cfg->inflight) {
            if (!keep_sending())
                done = true;
            else
                rc = send_one(s, st, &done);
        }
        if (rc == 0 && done && (rc = cxm_pipe_close_send(st)) != 0)
            break;
        if (rc != 0 || s->acked == s->sent)
            break;
        uint8_t *msg = NULL;
        size_t len = 0;
        int got = cxm_pipe_recv(st, &msg, &len);
        rc = got == 1 ? on_ack(s, msg, len) : got == 0 ? CXM_EUNAVAIL : got;
        free(msg);
    }
    return rc;
}

static void *stream_main(void *arg)
{
    track_stream *s = arg;
    cxm_pipe *st = NULL;
    /* The deadline only guards against a server that hangs for good. */
    int64_t deadline = run.cfg->warmup_ms + run.cfg->duration_ms + 60000;
    if (run.replay.n && !run.cfg->loop)
        deadline = 24 * 3600 * 1000LL;
    int rc = cxm_pipe_open(s->ch, TRACK_STREAM, deadline, &st);
    if (rc != 0) {
        snprintf(s->error, sizeof s->error, "cannot open the stream: %s", cxm_strerror(rc));
        return NULL;
    }
    rc = pump(s, st);
    if (rc != 0 && rc != CXM_EUNAVAIL)
        cxm_pipe_cancel(st);
    cxm_client_result r = {0};
    cxm_pipe_finish(st, &r);
    if (r.status != GRPC_STATUS_OK)
        snprintf(s->error, sizeof s->error, "TrackStream: %s: %s", cxm_status_name(r.status),
                 r.details ? r.details : "");
    else if (rc != 0 && !s->error[0])
        snprintf(s->error, sizeof s->error, "TrackStream ended early: %s", cxm_strerror(rc));
    cxm_client_result_dispose(&r);
    return NULL;
}

/* ---- report ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank quantile of n sorted values, in microseconds. */
static double quantile_us(const uint64_t *v, size_t n, double q)
{
    if (!n)
        return 0;
    size_t rank = (size_t)ceil(q * (double)n);
    return (double)v[rank ? rank - 1 : 0] / 1000.0;
}

static int report(const track_cfg *cfg, track_stream *ss, size_t n, double secs)
{
    uint64_t events = 0, messages = 0, accepted = 0, dups = 0, rejected = 0, all = 0, all_ok = 0;
    size_t nlat = 0;
    for (size_t i = 0; i < n; i++) {
        events += ss[i].events, messages += ss[i].messages, accepted += ss[i].accepted;
        dups += ss[i].duplicates, rejected += ss[i].rejected, nlat += ss[i].nlat;
        all += ss[i].all_events, all_ok += ss[i].all_ok;
    }
    uint64_t *lat = calloc(nlat ? nlat : 1, sizeof *lat);
    if (!lat)
        return 1;
    for (size_t i = 0, k = 0; i < n; i++)
        for (size_t j = 0; j < ss[i].nlat; j++)
            lat[k++] = ss[i].lat_ns[j];
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    double rate = secs > 0 ? (double)events / secs : 0;
    FILE *out = cfg->json ? stderr : stdout;
    fprintf(out,
            "cxm-bench-track %s TrackStream: %" PRId64 " streams x %" PRId64
            " messages in flight x %" PRId64 " events, %.2f s\n"
            "  acknowledged %" PRIu64 " events in %" PRIu64 " messages (%" PRIu64
            " accepted, %" PRIu64 " duplicates, %" PRIu64 " rejected)\n"
            "  events/s     %.1f\n"
            "  ack latency us p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
            cfg->target, cfg->connections, cfg->inflight, run.replay.n ? (int64_t)0 : cfg->batch,
            secs, events, messages, accepted, dups, rejected, rate, quantile_us(lat, nlat, 0.5),
            quantile_us(lat, nlat, 0.9), quantile_us(lat, nlat, 0.99),
            nlat ? (double)lat[nlat - 1] / 1000.0 : 0);
    if (cfg->json)
        printf("{\"target\":\"%s\",\"streams\":%" PRId64 ",\"inflight\":%" PRId64
               ",\"batch\":%" PRId64 ",\"duration_s\":%.3f,\"events\":%" PRIu64
               ",\"messages\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"duplicates\":%" PRIu64
               ",\"rejected\":%" PRIu64 ",\"events_per_s\":%.1f,\"ack_p50_us\":%.1f"
               ",\"ack_p90_us\":%.1f,\"ack_p99_us\":%.1f}\n",
               cfg->target, cfg->connections, cfg->inflight, cfg->batch, secs, events, messages,
               accepted, dups, rejected, rate, quantile_us(lat, nlat, 0.5),
               quantile_us(lat, nlat, 0.9), quantile_us(lat, nlat, 0.99));
    free(lat);
    int status = 0;
    for (size_t i = 0; i < n; i++)
        if (ss[i].error[0]) {
            fprintf(stderr, "cxm-bench-track: stream %zu: %s\n", i, ss[i].error);
            status = 1;
        }
    if (messages == 0) {
        fprintf(stderr, "cxm-bench-track: no message was acknowledged in the window\n");
        status = 1;
    }
    if (run.replay.n && !cfg->loop && all_ok != all) {
        fprintf(stderr,
                "cxm-bench-track: %" PRIu64 " of the %" PRIu64 " events of %s were not stored\n",
                all - all_ok, all, cfg->requests);
        status = 1;
    }
    return status;
}

/* ---- main ---- */

static int setup(const track_cfg *cfg, track_stream *ss)
{
    cxm_channel_opts copts = cfg->chan;
    copts.use_local_subchannel_pool = 1;
    copts.token = cfg->bearer;
    for (int64_t i = 0; i < cfg->connections; i++) {
        track_stream *s = &ss[i];
        s->index = (unsigned)i;
        s->sent_ns = calloc((size_t)cfg->inflight, sizeof *s->sent_ns);
        s->sent_events = calloc((size_t)cfg->inflight, sizeof *s->sent_events);
        if (!s->sent_ns || !s->sent_events)
            return CXM_ENOMEM;
        int rc = cxm_channel_open(cfg->target, &copts, &s->ch);
        if (rc == 0)
            rc = cxm_bench_events_init(&s->gen, run.nonce, (uint64_t)i, (size_t)cfg->batch,
                                       &run.keys);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void teardown(const track_cfg *cfg, track_stream *ss)
{
    for (int64_t i = 0; ss && i < cfg->connections; i++) {
        if (ss[i].ch)
            cxm_channel_close(ss[i].ch);
        cxm_bench_events_dispose(&ss[i].gen);
        free(ss[i].buf);
        free(ss[i].sent_ns);
        free(ss[i].sent_events);
        free(ss[i].lat_ns);
    }
    free(ss);
}

static int run_streams(const track_cfg *cfg)
{
    track_stream *ss = calloc((size_t)cfg->connections, sizeof *ss);
    int rc = ss ? setup(cfg, ss) : CXM_ENOMEM;
    if (rc != 0) {
        fprintf(stderr, "cxm-bench-track: setup failed: %s\n",
                *cxm_channel_last_error() ? cxm_channel_last_error() : cxm_strerror(rc));
        teardown(cfg, ss);
        return 1;
    }
    run.start_ns = now_ns();
    bool once = run.replay.n && !cfg->loop;
    run.measure_start_ns = run.start_ns + (once ? 0 : (uint64_t)cfg->warmup_ms * 1000000ULL);
    run.measure_end_ns = run.measure_start_ns + (uint64_t)cfg->duration_ms * 1000000ULL;
    int64_t started = 0;
    for (; started < cfg->connections; started++)
        if (pthread_create(&ss[started].tid, NULL, stream_main, &ss[started]) != 0)
            break;
    for (int64_t i = 0; i < started; i++)
        pthread_join(ss[i].tid, NULL);
    uint64_t end = now_ns();
    if (!once && end > run.measure_end_ns)
        end = run.measure_end_ns;
    double secs = end > run.measure_start_ns ? (double)(end - run.measure_start_ns) / 1e9 : 0;
    int status = started == cfg->connections ? report(cfg, ss, (size_t)started, secs) : 1;
    teardown(cfg, ss);
    return status;
}

int main(int argc, char **argv)
{
    track_cfg cfg = {.target = "127.0.0.1:7400",
                     .connections = 1,
                     .batch = 500,
                     .inflight = 8,
                     .customers = 100000,
                     .duration_ms = 10000,
                     .warmup_ms = 1000};
    const cxm_opt opts[] = {
        {"target", CXM_OPT_STR, &cfg.target, 0, 0, "server address, HOST:PORT"},
        CXM_CHANNEL_TLS_OPTS(cfg.chan),
        {"connections", CXM_OPT_INT, &cfg.connections, 1, 256,
         "TCP connections, each with one TrackStream and its own thread"},
        {"batch", CXM_OPT_INT, &cfg.batch, 1, CXM_BENCH_MAX_BATCH, "events per message"},
        {"inflight", CXM_OPT_INT, &cfg.inflight, 1, 1024,
         "messages sent and not yet acknowledged, per stream"},
        {"customers", CXM_OPT_INT, &cfg.customers, 1, CXM_BENCH_MAX_CUSTOMERS,
         "synthetic customers the events are about (user<i>@example.com)"},
        {"duration", CXM_OPT_MILLIS, &cfg.duration_ms, 1, 86400000, "measured time"},
        {"warmup", CXM_OPT_MILLIS, &cfg.warmup_ms, 0, 3600000, "unmeasured time before it"},
        {"json", CXM_OPT_BOOL, &cfg.json, 0, 0,
         "print one JSON line on stdout (the summary goes to stderr)"},
        {"requests", CXM_OPT_STR, &cfg.requests, 0, 0,
         "send the TrackRequest records of this file (cxm-gen's track.pb) instead, each once "
         "(--warmup and --duration then do not apply); exits 1 unless every event is stored"},
        {"loop", CXM_OPT_BOOL, &cfg.loop, 0, 0,
         "with --requests: go round the file again until --duration ends"},
        CXM_CLIENT_TOKEN_OPTS(&cfg.token, &cfg.token_file),
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    char err[256] = "";
    int prc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (prc == 1) {
        cxm_opts_usage(stdout, "cxm-bench-track", "TrackStream ingest throughput and ack latency",
                       opts, nopts);
        return 0;
    }
    if (prc != 0) {
        fprintf(stderr, "cxm-bench-track: %s (see --help)\n", err[0] ? err : "bad arguments");
        return 2;
    }
    if (cfg.loop && !cfg.requests) {
        fprintf(stderr, "cxm-bench-track: --loop applies only to --requests\n");
        return 2;
    }
    if (cxm_client_token_pick(cfg.token, cfg.token_file, &cfg.bearer, err, sizeof err) != 0) {
        fprintf(stderr, "cxm-bench-track: --token / --token-file: %s\n", err);
        return 2;
    }
    if (cfg.requests &&
        cxm_bench_replay_load(&run.replay, cfg.requests, CXM_BENCH_METHOD_TRACK) != 0)
        return 2;
    if (cfg.requests && !cfg.loop)
        cfg.duration_ms = 24 * 3600 * 1000LL; /* the file decides when it ends */
    run.cfg = &cfg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    run.nonce = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    cxm_bench_keys_init(&run.keys, (uint64_t)cfg.customers, 0);
    atomic_init(&run.next, 0);
    atomic_init(&run.stop, false);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int status = run_streams(&cfg);
    cxm_bench_replay_dispose(&run.replay);
    free(cfg.bearer);
    return status;
}
