/*
 * test_nats.c - the JetStream transport (cxm/nats.h) against a real
 * nats-server on loopback. One case per run: test_nats CASE. Exits NF_SKIP
 * when nats-server is not installed.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/nats.h"
#include "nats_fixture.h"

#define PRODUCER "test"
#define MSG_LEN 200

static nf_server srv;

static cxm_nats *open_nats(int ack_wait_ms)
{
    cxm_nats_opts o = {.url = srv.url, .ack_wait_ms = ack_wait_ms};
    cxm_nats *n = NULL;
    int rc = cxm_nats_open(&o, &n);
    CHECK(rc == 0, "open %s: %d", srv.url, rc);
    rc = cxm_nats_stream(n, PRODUCER);
    CHECK(rc == 0, "stream: %d", rc);
    return n;
}

/* Messages from..to-1: subject cxm.<producer>.Event.<i>, id <producer>:<i>, 200 bytes
 * starting with "<i>". Strings live in the caller's arrays. */
typedef struct batch_buf {
    cxm_nats_msg msgs[1024];
    char subj[1024][48], id[1024][32], data[1024][MSG_LEN];
} batch_buf;

static size_t fill(batch_buf *bb, const char *producer, int from, int to)
{
    size_t k = 0;
    for (int i = from; i < to; i++, k++) {
        snprintf(bb->subj[k], sizeof bb->subj[k], "cxm.%s.Event.%d", producer, i);
        snprintf(bb->id[k], sizeof bb->id[k], "%s:%d", producer, i);
        memset(bb->data[k], 'x', MSG_LEN);
        snprintf(bb->data[k], MSG_LEN, "%d", i);
        bb->msgs[k] = (cxm_nats_msg){bb->subj[k], bb->id[k], bb->data[k], MSG_LEN};
    }
    return k;
}

static int publish_range(cxm_nats *n, int from, int to, int per_batch)
{
    static batch_buf bb;
    for (int i = from; i < to; i += per_batch) {
        int end = i + per_batch < to ? i + per_batch : to;
        int rc = cxm_nats_publish(n, bb.msgs, fill(&bb, PRODUCER, i, end), 5000);
        if (rc)
            return rc;
    }
    return 0;
}

static int msg_index(const cxm_nats_batch *b, size_t k)
{
    int i = atoi(b->data[k]);
    char id[32];
    snprintf(id, sizeof id, "%s:%d", PRODUCER, i);
    CHECK(b->len[k] == MSG_LEN && strcmp(b->msg_id[k], id) == 0, "message %zu: id %s len %zu", k,
          b->msg_id[k], b->len[k]);
    return i;
}

/* Fetch (and ack if asked) until count messages came; they must be
 * from, from+1, ... in order. */
static void take_range(cxm_nats_sub *s, int from, int count, int ack)
{
    int next = from;
    while (next < from + count) {
        cxm_nats_batch b;
        int rc = cxm_nats_fetch(s, (size_t)(from + count - next), 2000, &b);
        CHECK(rc == 0 && b.count > 0, "fetch after %d of %d: rc %d", next - from, count, rc);
        for (size_t k = 0; k < b.count; k++, next++)
            CHECK(msg_index(&b, k) == next, "got %d, expected %d", msg_index(&b, k), next);
        if (ack)
            CHECK(cxm_nats_ack(&b) == 0, "ack");
        cxm_nats_batch_free(&b);
    }
}

static void expect_empty(cxm_nats_sub *s)
{
    cxm_nats_batch b;
    CHECK(cxm_nats_fetch(s, 100, 200, &b) == 0 && b.count == 0, "extra %zu messages", b.count);
    cxm_nats_batch_free(&b);
}

static void expect_range(cxm_nats_sub *s, int from, int count, int ack)
{
    take_range(s, from, count, ack);
    expect_empty(s);
}

static uint64_t pending(cxm_nats_sub *s)
{
    uint64_t p = 0;
    CHECK(cxm_nats_pending(s, &p) == 0, "pending");
    return p;
}

static cxm_nats_sub *subscribe(cxm_nats *n, const char *durable)
{
    cxm_nats_sub *s = NULL;
    int rc = cxm_nats_subscribe(n, PRODUCER, durable, NULL, &s);
    CHECK(rc == 0, "subscribe %s: %d", durable, rc);
    return s;
}

/* Creating twice and with other settings succeeds; bad names and missing
 * streams fail with the right code and a sentence naming the field. */
static void case_stream(void)
{
    cxm_nats *n = open_nats(0);
    CHECK(cxm_nats_stream(n, PRODUCER) == 0, "second create");
    cxm_nats_opts o = {.url = srv.url, .dup_window_ms = 60000};
    cxm_nats *n2 = NULL;
    CHECK(cxm_nats_open(&o, &n2) == 0, "open");
    CHECK(cxm_nats_stream(n2, PRODUCER) == 0, "update with another duplicate window");
    cxm_nats_close(n2);
    CHECK(cxm_nats_stream(n, "Bad.Name") == CXM_EINVAL, "bad producer accepted");
    CHECK(strstr(cxm_nats_last_error(), "producer"), "error names the field");
    cxm_nats_sub *s = NULL;
    CHECK(cxm_nats_subscribe(n, "nostream", "d", NULL, &s) == CXM_ENOTFOUND, "missing stream");
    CHECK(strstr(cxm_nats_last_error(), "CXM_NOSTREAM"), "error names the stream");
    cxm_nats_msg bad = {"cxm.test.x", "", "x", 1};
    CHECK(cxm_nats_publish(n, &bad, 1, 1000) == CXM_EINVAL, "empty msg id accepted");
    cxm_nats_msg stray = {"elsewhere.x", "id1", "x", 1};
    CHECK(cxm_nats_publish(n, &stray, 1, 1000) == CXM_EUNAVAIL, "subject outside any stream");
    cxm_nats_close(n);
    o = (cxm_nats_opts){.url = "nats://127.0.0.1:1", .timeout_ms = 500};
    CHECK(cxm_nats_open(&o, &n2) == CXM_EUNAVAIL, "open of a closed port");
    CHECK(strstr(cxm_nats_last_error(), "127.0.0.1:1"), "error names the url");
}

/* One batch of 1,000 comes back whole and in order. */
static void case_batch(void)
{
    cxm_nats *n = open_nats(0);
    static batch_buf bb;
    CHECK(cxm_nats_publish(n, bb.msgs, fill(&bb, PRODUCER, 0, 1000), 5000) == 0, "publish 1000");
    cxm_nats_sub *s = subscribe(n, "batch");
    expect_range(s, 0, 1000, 1);
    cxm_nats_unsubscribe(s);
    cxm_nats_close(n);
}

/* The same ids again store nothing new. */
static void case_dedup(void)
{
    cxm_nats *n = open_nats(0);
    CHECK(publish_range(n, 0, 1000, 256) == 0, "publish");
    CHECK(publish_range(n, 0, 1000, 256) == 0, "republish is a success");
    CHECK(publish_range(n, 500, 1000, 100) == 0, "republish in other batches");
    cxm_nats_sub *s = subscribe(n, "dedup");
    CHECK(pending(s) == 1000, "stream holds %" PRIu64, pending(s));
    expect_range(s, 0, 1000, 1);
    cxm_nats_unsubscribe(s);
    cxm_nats_close(n);
}

/* Fetched without an ack: delivered again after the ack wait, also to a new
 * subscription on the same durable. */
static void case_redeliver(void)
{
    cxm_nats *n = open_nats(1000);
    CHECK(publish_range(n, 0, 10, 10) == 0, "publish");
    cxm_nats_sub *s = subscribe(n, "redeliver");
    cxm_nats_batch b;
    CHECK(cxm_nats_fetch(s, 100, 1000, &b) == 0 && b.count == 10, "first delivery");
    cxm_nats_batch_free(&b); /* no ack */
    CHECK(cxm_nats_fetch(s, 100, 100, &b) == 0 && b.count == 0, "nothing within the ack wait");
    cxm_nats_batch_free(&b);
    CHECK(pending(s) == 10, "10 awaiting ack");
    usleep(1100 * 1000);
    expect_range(s, 0, 10, 0); /* again, still not acked */
    cxm_nats_unsubscribe(s);
    usleep(1100 * 1000);
    s = subscribe(n, "redeliver");
    expect_range(s, 0, 10, 1);
    cxm_nats_unsubscribe(s);
    cxm_nats_close(n);
}

/* Acked messages stay acked for a new subscription and connection. */
static void case_acked(void)
{
    cxm_nats *n = open_nats(500);
    CHECK(publish_range(n, 0, 100, 100) == 0, "publish");
    cxm_nats_sub *s = subscribe(n, "acked");
    cxm_nats_batch b;
    CHECK(cxm_nats_fetch(s, 60, 1000, &b) == 0 && b.count == 60, "fetch 60");
    CHECK(cxm_nats_ack(&b) == 0, "ack");
    cxm_nats_batch_free(&b);
    cxm_nats_unsubscribe(s);
    cxm_nats_close(n);
    n = open_nats(500);
    s = subscribe(n, "acked");
    CHECK(pending(s) == 40, "pending %" PRIu64, pending(s));
    expect_range(s, 60, 40, 1);
    usleep(600 * 1000); /* past the ack wait: nothing comes back */
    CHECK(cxm_nats_fetch(s, 100, 200, &b) == 0 && b.count == 0, "redelivered after ack");
    cxm_nats_batch_free(&b);
    cxm_nats_unsubscribe(s);
    cxm_nats_close(n);
}

/* Acking a prefix: the rest of the batch comes again after the ack wait,
 * alone; an n past the batch is refused. */
static void case_ack_upto(void)
{
    cxm_nats *n = open_nats(500);
    CHECK(publish_range(n, 0, 10, 10) == 0, "publish");
    cxm_nats_sub *s = subscribe(n, "upto");
    cxm_nats_batch b;
    CHECK(cxm_nats_fetch(s, 100, 1000, &b) == 0 && b.count == 10, "fetch 10");
    CHECK(cxm_nats_ack_upto(&b, 11) == CXM_EINVAL, "ack of 11 in a batch of 10");
    CHECK(cxm_nats_ack_upto(&b, 6) == 0, "ack 6");
    cxm_nats_batch_free(&b);
    CHECK(pending(s) == 4, "pending %" PRIu64 ", expected 4", pending(s));
    usleep(600 * 1000);
    expect_range(s, 6, 4, 1);
    CHECK(pending(s) == 0, "pending %" PRIu64 " after acking all", pending(s));
    cxm_nats_unsubscribe(s);
    cxm_nats_close(n);
}

/* A durable as earlier versions made it (explicit acks, the whole stream as
 * its filter), 4 of 10 messages acked: subscribing replaces it with an
 * AckAll consumer without a filter that goes on from message 4. */
static void case_upgrade(void)
{
    cxm_nats *n = open_nats(500);
    CHECK(publish_range(n, 0, 10, 10) == 0, "publish");
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    CHECK(natsConnection_ConnectTo(&nc, srv.url) == NATS_OK, "connect");
    CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK, "jetstream");
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = "old";
    cc.AckPolicy = js_AckExplicit;
    cc.FilterSubject = "cxm." PRODUCER ".>";
    CHECK(js_AddConsumer(NULL, js, "CXM_TEST", &cc, NULL, NULL) == NATS_OK, "old consumer");
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "CXM_TEST";
    so.Consumer = "old";
    CHECK(js_PullSubscribe(&sub, js, cc.FilterSubject, "old", NULL, &so, NULL) == NATS_OK, "bind");
    natsMsgList list = {0};
    CHECK(natsSubscription_Fetch(&list, sub, 4, 2000, NULL) == NATS_OK && list.Count == 4, "old 4");
    for (int i = 0; i < list.Count; i++)
        CHECK(natsMsg_AckSync(list.Msgs[i], NULL, NULL) == NATS_OK, "old ack %d", i);
    natsMsgList_Destroy(&list);
    natsSubscription_Destroy(sub);

    cxm_nats_sub *s = subscribe(n, "old");
    jsConsumerInfo *ci = NULL;
    CHECK(js_GetConsumerInfo(&ci, js, "CXM_TEST", "old", NULL, NULL) == NATS_OK, "info");
    CHECK(ci->Config->AckPolicy == js_AckAll && !ci->Config->FilterSubject, "new settings");
    jsConsumerInfo_Destroy(ci);
    expect_range(s, 4, 6, 1);
    cxm_nats_unsubscribe(s);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    cxm_nats_close(n);
}

static void *restart_later(void *arg)
{
    (void)arg;
    usleep(300 * 1000);
    CHECK(nf_restart(&srv) == 0, "restart");
    return NULL;
}

/* Retry like the bus relay does: same ids until every PubAck came. */
static int publish_until_acked(cxm_nats *n, int from, int to, double deadline_ms)
{
    int tries = 1;
    while (publish_range(n, from, to, 256) != 0) {
        CHECK(test_now_ms() < deadline_ms, "publish never succeeded after the restart");
        usleep(100 * 1000);
        tries++;
    }
    return tries;
}

/* kill -9 right after PubAcks: every PubAcked message survives, the client
 * reconnects and publishing resumes. The consumer is at-least-once across a
 * crash: nats-server 2.9 writes acks to its consumer store a moment later,
 * so some acked messages may come again (counted), none may be missing. */
static void case_kill9(void)
{
    cxm_nats *n = open_nats(0);
    CHECK(publish_range(n, 0, 500, 256) == 0, "publish");
    cxm_nats_sub *s = subscribe(n, "kill9");
    take_range(s, 0, 200, 1);
    CHECK(publish_range(n, 500, 700, 256) == 0, "publish");
    CHECK(nf_kill9(&srv) == 0, "kill");
    /* Publish while the server is down; it comes back 300 ms later. */
    pthread_t th;
    pthread_create(&th, NULL, restart_later, NULL);
    double t0 = test_now_ms();
    int tries = publish_until_acked(n, 700, 1000, test_now_ms() + 15000);
    double resumed_ms = test_now_ms() - t0;
    pthread_join(th, NULL);
    static char seen[1000];
    int distinct = 0, again = 0;
    for (double end = test_now_ms() + 15000; distinct < 800;) {
        CHECK(test_now_ms() < end, "only %d of 800 unacked messages after the restart", distinct);
        cxm_nats_batch b;
        if (cxm_nats_fetch(s, 1000, 1000, &b) == 0) {
            for (size_t k = 0; k < b.count; k++) {
                int i = msg_index(&b, k);
                if (i < 200 || seen[i])
                    again++;
                else
                    distinct++;
                seen[i] = 1;
            }
            cxm_nats_ack(&b);
        }
        cxm_nats_batch_free(&b);
    }
    cxm_nats_sub *fresh = subscribe(n, "kill9fresh");
    CHECK(pending(fresh) == 1000, "stream holds %" PRIu64 " of 1000", pending(fresh));
    expect_range(fresh, 0, 1000, 1);
    printf("kill9: a publish begun with the server down succeeded after %.0f ms (try %d); %d "
           "acked or seen messages delivered again\n",
           resumed_ms, tries, again);
    cxm_nats_unsubscribe(fresh);
    cxm_nats_unsubscribe(s);
    cxm_nats_close(n);
}

static void case_pending(void)
{
    cxm_nats *n = open_nats(0);
    CHECK(publish_range(n, 0, 300, 256) == 0, "publish");
    cxm_nats_sub *s = subscribe(n, "pending");
    CHECK(pending(s) == 300, "before fetch %" PRIu64, pending(s));
    cxm_nats_batch b;
    CHECK(cxm_nats_fetch(s, 100, 1000, &b) == 0 && b.count == 100, "fetch");
    CHECK(pending(s) == 300, "100 unacked + 200 new: %" PRIu64, pending(s));
    CHECK(cxm_nats_ack(&b) == 0, "ack");
    cxm_nats_batch_free(&b);
    CHECK(pending(s) == 200, "after ack %" PRIu64, pending(s));
    expect_range(s, 100, 200, 1);
    CHECK(pending(s) == 0, "at the end %" PRIu64, pending(s));
    cxm_nats_unsubscribe(s);
    cxm_nats_close(n);
}

/* Throughput and latency on loopback, printed (asserts only correctness).
 * Messages carry their publish time (CLOCK_MONOTONIC ms, same process). */
typedef struct pipe_state {
    cxm_nats_sub *s;
    int total, got;
    double *lat;
} pipe_state;

static void *consume(void *arg)
{
    pipe_state *p = arg;
    while (p->got < p->total) {
        cxm_nats_batch b;
        CHECK(cxm_nats_fetch(p->s, 1000, 2000, &b) == 0 && b.count > 0, "fetch at %d", p->got);
        CHECK(cxm_nats_ack(&b) == 0, "ack");
        double now = test_now_ms();
        for (size_t k = 0; k < b.count; k++) {
            double sent;
            memcpy(&sent, b.data[k], sizeof sent);
            p->lat[p->got++] = now - sent;
        }
        cxm_nats_batch_free(&b);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Publish total messages on producer's own stream in batches of
 * per_batch, at most rate messages/s (0: as fast as possible), while a
 * consumer thread fetches and acks; latency is publish call to
 * fetched-and-acked. */
static void pipeline(cxm_nats *n, const char *producer, int total, int per_batch, double rate)
{
    static batch_buf bb;
    cxm_nats_sub *s = NULL;
    cxm_nats *cn = open_nats(0); /* the consumer's own connection, as in another process */
    CHECK(cxm_nats_stream(n, producer) == 0, "stream %s", producer);
    CHECK(cxm_nats_subscribe(cn, producer, "pipe", NULL, &s) == 0, "subscribe %s", producer);
    pipe_state p = {s, total, 0, calloc((size_t)total, sizeof(double))};
    pthread_t th;
    pthread_create(&th, NULL, consume, &p);
    double t0 = test_now_ms();
    for (int i = 0; i < total; i += per_batch) {
        if (rate > 0) /* on schedule, not sleeping a fixed time after each batch */
            while (test_now_ms() < t0 + i * 1e3 / rate)
                usleep(100);
        int end = i + per_batch < total ? i + per_batch : total;
        size_t count = fill(&bb, producer, i, end);
        double sent = test_now_ms();
        for (size_t k = 0; k < count; k++)
            memcpy(bb.data[k], &sent, sizeof sent);
        CHECK(cxm_nats_publish(n, bb.msgs, count, 5000) == 0, "publish");
    }
    pthread_join(th, NULL);
    double secs = (test_now_ms() - t0) / 1e3;
    qsort(p.lat, (size_t)total, sizeof(double), cmp_double);
    printf("  end to end, batches of %4d, offered %6.0f/s: %8.0f msg/s, publish-to-acked p50 "
           "%.2f ms, p99 %.2f ms\n",
           per_batch, rate, total / secs, p.lat[total / 2], p.lat[total * 99 / 100]);
    free(p.lat);
    cxm_nats_unsubscribe(s);
    cxm_nats_close(cn);
}

static void case_throughput(void)
{
    cxm_nats *n = open_nats(0);
    static batch_buf bb;
    int next = 0;
    printf("nats transport on loopback, %d-byte messages:\n", MSG_LEN);
    static const int sizes[] = {1, 16, 64, 256, 1024};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int sent = 0;
        double t0 = test_now_ms();
        while (test_now_ms() - t0 < 500 || sent < 1000) { /* about half a second per size */
            size_t count = fill(&bb, PRODUCER, next, next + sizes[i]);
            CHECK(cxm_nats_publish(n, bb.msgs, count, 5000) == 0, "publish");
            next += sizes[i];
            sent += sizes[i];
        }
        printf("  publish, batches of %4d: %8.0f msg/s\n", sizes[i],
               sent / ((test_now_ms() - t0) / 1e3));
    }
    static const int fetches[] = {64, 256, 1000};
    for (size_t i = 0; i < sizeof fetches / sizeof fetches[0]; i++) {
        char durable[32];
        snprintf(durable, sizeof durable, "fetch%d", fetches[i]);
        cxm_nats_sub *s = subscribe(n, durable);
        int got = 0, want = next < 50000 ? next : 50000;
        double t0 = test_now_ms();
        while (got < want) {
            cxm_nats_batch b;
            CHECK(cxm_nats_fetch(s, (size_t)fetches[i], 2000, &b) == 0 && b.count, "fetch");
            CHECK(cxm_nats_ack(&b) == 0, "ack");
            got += (int)b.count;
            cxm_nats_batch_free(&b);
        }
        printf("  fetch+ack, batches of %4d: %8.0f msg/s (%d messages)\n", fetches[i],
               got / ((test_now_ms() - t0) / 1e3), got);
        cxm_nats_unsubscribe(s);
    }
    pipeline(n, "max256", 25000, 256, 0);
    pipeline(n, "rate256", 25000, 256, 50000);
    pipeline(n, "rate128", 25000, 128, 50000);
    pipeline(n, "rate64", 25000, 64, 50000);
    pipeline(n, "rate16", 5000, 16, 5000);
    pipeline(n, "rate1", 1000, 1, 1000);
    cxm_nats_close(n);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"stream", case_stream},     {"batch", case_batch},
                 {"dedup", case_dedup},       {"redeliver", case_redeliver},
                 {"acked", case_acked},       {"kill9", case_kill9},
                 {"pending", case_pending},   {"throughput", case_throughput},
                 {"ack_upto", case_ack_upto}, {"upgrade", case_upgrade}};
    if (argc != 2) {
        fprintf(stderr, "usage: test_nats CASE\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name) != 0)
            continue;
        int rc = nf_start(&srv);
        if (rc == -1)
            return NF_SKIP;
        CHECK(rc == 0, "nats-server did not start");
        cases[i].fn();
        nf_stop(&srv);
        return 0;
    }
    fprintf(stderr, "test_nats: unknown case %s\n", argv[1]);
    return 2;
}
