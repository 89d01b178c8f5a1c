/*
 * test_limits.c - one client cannot hurt the others: the server's limits
 * (cxm_server_opts in cxm/server.h) against abusive clients, on the real
 * cxmd.
 *
 *   test_limits PATH_TO_CXMD CASE
 *
 * abuse: cxmd starts with a soft fd limit of 1,024 and a hard one of 4,096
 *   (it raises the soft one itself: 1,024 is where 1,000 idle sockets used
 *   to lock every client out) and --max-connections 1000. 2,000 idle TCP
 *   connections, then 10,000 header-only streams over 100 connections (a
 *   slowloris: initial metadata, never a message nor a half-close): the cap
 *   sheds the connections silent longest, a new well-behaved client's
 *   Health/Check all succeed with a p99 within max(10 ms, 5x the p99
 *   measured before the abuse), and the server's peak RSS stays under
 *   CXM_LIMIT_ABUSE_RSS_BOUND (under ASan: 2,500 streams, both bounds 4x).
 * deadline: a stream opened without a deadline is cancelled with
 *   DEADLINE_EXCEEDED at --stream-deadline; Health/Watch, open-ended by
 *   design, is not.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "cxm/client.h"
#include "cxm/server.h"
#include "grpc/health/v1/health.pb-c.h"
#include "harness.h"

#define CHECK_PATH "/grpc.health.v1.Health/Check"
#define WATCH_PATH "/grpc.health.v1.Health/Watch"
#define ABUSE_HARD_NOFILE 4096
#define ABUSE_CAP 1000
#define IDLE_CONNECTIONS 2000
#define PROBES 500

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif
/* The slowloris. Under ASan the server is several times slower and shares
 * the 2 cores with it, and what that build checks is memory errors, not
 * latency: a quarter of the streams. */
#define SLOW_CONNECTIONS (SANITIZED ? 25 : 100)
#define SLOW_STREAMS_EACH 100

/* ---- helpers ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* An empty grpc.health.v1.HealthCheckRequest (the whole server) in buf
 * (16 bytes); returns its length. */
static size_t health_request(uint8_t *buf)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    return grpc__health__v1__health_check_request__pack(&req, buf);
}

/* n Health/Check calls on ch, one at a time; every one must succeed.
 * Returns the p99 latency in ms (*p50 the median). */
static double probe_health(cxm_channel *ch, int n, double *p50)
{
    uint8_t buf[16];
    size_t len = health_request(buf);
    double *lat = calloc((size_t)n, sizeof *lat);
    CHECK(lat != NULL, "calloc");
    for (int i = 0; i < n; i++) {
        cxm_client_result r = {0};
        double t0 = test_now_ms();
        CHECK(cxm_client_unary(ch, CHECK_PATH, buf, len, 10000, &r) == 0, "call could not start");
        lat[i] = test_now_ms() - t0;
        CHECK(r.status == GRPC_STATUS_OK, "Health/Check %d of %d: status %d: %s", i + 1, n,
              r.status, r.details);
        cxm_client_result_dispose(&r);
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    *p50 = lat[n / 2];
    double p99 = lat[(n * 99) / 100];
    free(lat);
    return p99;
}

static long status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "%s: %s", path, strerror(errno));
    long kb = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            kb = atol(line + klen + 1);
    fclose(f);
    return kb;
}

static int count_fds(pid_t pid)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "ls /proc/%d/fd | wc -l", (int)pid);
    FILE *p = popen(cmd, "r");
    int n = -1;
    CHECK(p && fscanf(p, "%d", &n) == 1, "%s", cmd);
    pclose(p);
    return n;
}

/* A TCP connection that says nothing at all. */
static int idle_connection(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0, "socket: %s (raise ulimit -n)", strerror(errno));
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    return fd;
}

/* The slowloris: calls that send their initial metadata and nothing more,
 * SLOW_STREAMS_EACH on each of SLOW_CONNECTIONS connections of their own. */
typedef struct slowloris {
    grpc_completion_queue *cq;
    grpc_channel *ch[SLOW_CONNECTIONS];
    grpc_call *calls[SLOW_CONNECTIONS * SLOW_STREAMS_EACH];
    int ncalls, sent;
} slowloris;

static void slowloris_start(slowloris *sl, const char *target)
{
    grpc_init();
    memset(sl, 0, sizeof *sl);
    sl->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_arg arg = {GRPC_ARG_INTEGER, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}};
    grpc_channel_args ca = {1, &arg};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_slice method = grpc_slice_from_static_string(CHECK_PATH);
    for (int i = 0; i < SLOW_CONNECTIONS; i++) {
        sl->ch[i] = grpc_channel_create(target, creds, &ca);
        for (int j = 0; j < SLOW_STREAMS_EACH; j++) {
            grpc_call *c =
                grpc_channel_create_call(sl->ch[i], NULL, GRPC_PROPAGATE_DEFAULTS, sl->cq, method,
                                         NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            grpc_op op;
            memset(&op, 0, sizeof op);
            op.op = GRPC_OP_SEND_INITIAL_METADATA;
            CHECK(grpc_call_start_batch(c, &op, 1, c, NULL) == GRPC_CALL_OK, "start_batch");
            sl->calls[sl->ncalls++] = c;
        }
    }
    grpc_channel_credentials_release(creds);
    /* Each batch completes once its headers are on the wire. */
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(30000, GPR_TIMESPAN));
    while (sl->sent < sl->ncalls) {
        grpc_event ev = grpc_completion_queue_next(sl->cq, until, NULL);
        CHECK(ev.type == GRPC_OP_COMPLETE, "only %d of %d header-only streams were sent", sl->sent,
              sl->ncalls);
        sl->sent++;
    }
}

static void slowloris_stop(slowloris *sl)
{
    for (int i = 0; i < sl->ncalls; i++) {
        grpc_call_cancel(sl->calls[i], NULL);
        grpc_call_unref(sl->calls[i]);
    }
    for (int i = 0; i < SLOW_CONNECTIONS; i++)
        grpc_channel_destroy(sl->ch[i]);
    grpc_completion_queue_shutdown(sl->cq);
    while (grpc_completion_queue_next(sl->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(sl->cq);
    grpc_shutdown();
}

/* cxmd under a wrapper that lowers its fd limits first (its own raise then
 * stops at ABUSE_HARD_NOFILE). */
static const char *limited_wrapper(const char *cxmd, char *path, size_t len)
{
    snprintf(path, len, "/tmp/cxm-test-limited-%d.sh", (int)getpid());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "%s: %s", path, strerror(errno));
    fprintf(f, "#!/bin/sh\nulimit -Sn 1024 && ulimit -Hn %d && exec '%s' \"$@\"\n",
            ABUSE_HARD_NOFILE, cxmd);
    fclose(f);
    CHECK(chmod(path, 0755) == 0, "chmod");
    return path;
}

static void raise_own_fd_limit(void)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    CHECK(rl.rlim_cur >= IDLE_CONNECTIONS + SLOW_CONNECTIONS + 200,
          "this test needs %d file descriptors; the hard limit is %llu",
          IDLE_CONNECTIONS + SLOW_CONNECTIONS + 200, (unsigned long long)rl.rlim_cur);
}

/* ---- cases ---- */

static void case_abuse(const char *cxmd)
{
    raise_own_fd_limit();
    char wrapper[96];
    static const char *const args[] = {"--workers",         "2",    "--grace", "3s",
                                       "--max-connections", "1000", NULL};
    test_server srv;
    harness_start(&srv, limited_wrapper(cxmd, wrapper, sizeof wrapper), args);
    CHECK(harness_log_contains(&srv, "raised from 1024 to 4096"), "no fd_limit line in the log");
    int cap = ABUSE_CAP;

    cxm_channel *before;
    CHECK(cxm_channel_open(srv.target, NULL, &before) == 0, "channel");
    double b50, w50;
    probe_health(before, 50, &b50); /* warm-up */
    double base99 = probe_health(before, PROBES, &b50);
    long rss_base = status_kb(srv.pid, "VmRSS");

    double t0 = test_now_ms();
    int *idle = calloc(IDLE_CONNECTIONS, sizeof *idle);
    CHECK(idle != NULL, "calloc");
    for (int i = 0; i < IDLE_CONNECTIONS; i++)
        idle[i] = idle_connection(srv.port);
    double ti = test_now_ms();
    int fds_idle = count_fds(srv.pid);
    static slowloris sl;
    slowloris_start(&sl, srv.target);
    double t1 = test_now_ms();
    printf("abuse: idle connections opened in %.0f ms (server fds then %d), streams in %.0f ms "
           "(server fds then %d)\n",
           ti - t0, fds_idle, t1 - ti, count_fds(srv.pid));
    fflush(stdout);

    /* A client that arrives after the abuse, on a connection of its own. */
    cxm_channel *after;
    cxm_channel_opts own = {.use_local_subchannel_pool = 1};
    CHECK(cxm_channel_open(srv.target, &own, &after) == 0, "channel");
    /* Its connection queues behind the idle ones gRPC has not accepted yet
     * (gRPC accepts in order: well under a second here, some 10 s under
     * ASan); the first call waits for that, the measured ones come after. */
    uint8_t hbuf[16];
    size_t hlen = health_request(hbuf);
    cxm_client_result first = {0};
    double tc = test_now_ms();
    CHECK(cxm_client_unary(after, CHECK_PATH, hbuf, hlen, 60000, &first) == 0 &&
              first.status == GRPC_STATUS_OK,
          "a new client's first Health/Check: status %d: %s", first.status, first.details);
    cxm_client_result_dispose(&first);
    printf("abuse: a new client's first Health/Check took %.0f ms\n", test_now_ms() - tc);
    double abuse99 = probe_health(after, PROBES, &w50);
    double old99 = probe_health(before, PROBES / 5, &w50);
    long rss = status_kb(srv.pid, "VmRSS"), hwm = status_kb(srv.pid, "VmHWM");
    int fds = count_fds(srv.pid);
    /* The 10 ms, or 5x the same client's p99 before the abuse on a
     * noisy machine; 4x both under ASan, like the memory bound. */
    double floor99 = SANITIZED ? 40 : 10, bound99 = base99 * 5 > floor99 ? base99 * 5 : floor99;
    size_t rss_bound = CXM_LIMIT_ABUSE_RSS_BOUND * (SANITIZED ? 4 : 1);
    printf("abuse: %d idle connections and %d header-only streams opened in %.0f ms\n",
           IDLE_CONNECTIONS, sl.sent, t1 - t0);
    printf("abuse: Health/Check p99 %.2f ms before, %.2f ms after (a new client; p50 %.2f ms), "
           "%.2f ms on the old channel; bound %.2f ms\n",
           base99, abuse99, w50, old99, bound99);
    printf("abuse: server RSS %ld KiB before, %ld KiB after (peak %ld KiB), bound %zu KiB; "
           "%d fds (limit %d, cap %d)\n",
           rss_base, rss, hwm, rss_bound >> 10, fds, ABUSE_HARD_NOFILE, cap);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "grep -v 'info server.listening' '%s' | cut -c1-400 | head -20",
             srv.log_path);
    CHECK(system(cmd) == 0, "%s", cmd);
    CHECK(abuse99 <= bound99, "p99 %.2f ms under abuse, over %.2f ms", abuse99, bound99);
    CHECK(old99 <= bound99 * 2, "p99 %.2f ms on the old channel", old99);
    CHECK((size_t)hwm << 10 <= rss_bound, "peak RSS %ld KiB over the bound", hwm);
    /* Every connection holds an fd; LMDB, the log and gRPC's own take ~20. */
    CHECK(fds < cap + 50, "%d fds open: over the cap of %d connections", fds, cap);
    CHECK(harness_log_contains(&srv, "server.connections_shed"), "no connection was shed");

    slowloris_stop(&sl);
    for (int i = 0; i < IDLE_CONNECTIONS; i++)
        close(idle[i]);
    free(idle);
    cxm_channel_close(after);
    cxm_channel_close(before);
    int code = harness_stop(&srv, SIGTERM, 15000);
    CHECK(code == 0, "exit status %d after SIGTERM", code);
    harness_cleanup(&srv);
    unlink(wrapper);
}

/* Open path without a deadline and wait for its end; returns the status
 * (details into r). */
static void wait_stream_end(cxm_channel *ch, const char *path, const void *first, size_t len,
                            cxm_client_result *r)
{
    cxm_client_stream *s;
    CHECK(cxm_client_stream_open(ch, path, 0, &s) == 0, "open %s", path);
    if (first)
        CHECK(cxm_client_stream_send(s, first, len) == 0, "send");
    uint8_t *msg;
    size_t mlen;
    while (cxm_client_stream_recv(s, &msg, &mlen) == 1)
        free(msg);
    cxm_client_stream_finish(s, r);
}

static void case_deadline(const char *cxmd)
{
    static const char *const args[] = {"--workers", "2",  "--stream-deadline",  "1s",
                                       "--grace",   "3s", "--default-deadline", "1s",
                                       NULL};
    test_server srv;
    harness_start(&srv, cxmd, args);
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv.target, NULL, &ch) == 0, "channel");

    /* A reflection stream that never sends: cancelled at 1 s. */
    double t0 = test_now_ms();
    cxm_client_result r = {0};
    wait_stream_end(ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", NULL, 0, &r);
    double took = test_now_ms() - t0;
    CHECK(r.status == GRPC_STATUS_DEADLINE_EXCEEDED && strstr(r.details, "--stream-deadline"),
          "status %d (%s), want DEADLINE_EXCEEDED naming --stream-deadline", r.status, r.details);
    CHECK(took >= 900 && took < 10000, "ended after %.0f ms (stream deadline 1 s)", took);
    cxm_client_result_dispose(&r);

    /* Watch without a deadline is still open after 2.5 s. */
    uint8_t buf[16];
    size_t len = health_request(buf);
    cxm_client_stream *w;
    CHECK(cxm_client_stream_open(ch, WATCH_PATH, 0, &w) == 0, "open Watch");
    CHECK(cxm_client_stream_send(w, buf, len) == 0 && cxm_client_stream_close_send(w) == 0, "send");
    uint8_t *msg;
    size_t mlen;
    CHECK(cxm_client_stream_recv(w, &msg, &mlen) == 1, "no first Watch answer");
    free(msg);
    usleep(2500 * 1000);
    cxm_client_stream_cancel(w);
    cxm_client_stream_finish(w, &r);
    CHECK(r.status == GRPC_STATUS_CANCELLED, "Watch ended with %d (%s), want our own CANCELLED",
          r.status, r.details);
    cxm_client_result_dispose(&r);

    cxm_channel_close(ch);
    int code = harness_stop(&srv, SIGTERM, 10000);
    CHECK(code == 0, "exit status %d after SIGTERM", code);
    harness_cleanup(&srv);
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: %s CXMD abuse|deadline", argv[0]);
    if (strcmp(argv[2], "abuse") == 0)
        case_abuse(argv[1]);
    else if (strcmp(argv[2], "deadline") == 0)
        case_deadline(argv[1]);
    else
        CHECK(0, "unknown case %s", argv[2]);
    printf("%s: ok\n", argv[2]);
    return 0;
}
