/*
 * test_server.c - the runtime as clients see it, against the real cxmd.
 *
 *   test_server PATH_TO_SERVER CASE
 *
 * Each case starts its own server on a free loopback port and stops it with
 * SIGTERM, expecting exit status 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cxm/client.h"
#include "cxm/v1/profile.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "harness.h"

extern char **environ;

#define CHECK_PATH "/grpc.health.v1.Health/Check"
#define WATCH_PATH "/grpc.health.v1.Health/Watch"

static const char *const cxm_services[] = {"cxm.v1.ProfileService", "cxm.v1.JourneyService",
                                           "cxm.v1.FeedbackService",
                                           "cxm.v1.PersonalisationService"};
#define NCXM (sizeof cxm_services / sizeof cxm_services[0])

/* ---- helpers ---- */

static grpc_status_code health_check(cxm_channel *ch, const char *service, int *serving,
                                     char *details, size_t dlen)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    ProtobufCMessage *resp = NULL;
    cxm_client_result r = {0};
    CHECK(cxm_client_unary_pb(ch, CHECK_PATH, &req.base,
                              &grpc__health__v1__health_check_response__descriptor, &a, 5000, &resp,
                              &r) == 0,
          "call could not start");
    grpc_status_code st = r.status;
    if (serving)
        *serving = resp ? (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status : -1;
    if (details)
        snprintf(details, dlen, "%s", r.details ? r.details : "");
    cxm_client_result_dispose(&r);
    cxm_arena_dispose(&a);
    return st;
}

static void expect_serving(cxm_channel *ch, const char *service)
{
    int serving = -1;
    char details[512];
    grpc_status_code st = health_check(ch, service, &serving, details, sizeof details);
    CHECK(st == GRPC_STATUS_OK, "Check(\"%s\") status %d: %s", service, st, details);
    CHECK(serving == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
          "Check(\"%s\") says %d", service, serving);
}

static void raw_call(cxm_channel *ch, const char *path, const void *req, size_t len,
                     int64_t timeout_ms, cxm_client_result *r)
{
    CHECK(cxm_client_unary(ch, path, req, len, timeout_ms, r) == 0, "call could not start");
}

static void expect_status(cxm_client_result *r, grpc_status_code want, const char *needle)
{
    CHECK(r->status == want, "status %d (%s), want %d", r->status, r->details, want);
    CHECK(!needle || strstr(r->details, needle), "details \"%s\" lack \"%s\"", r->details, needle);
    cxm_client_result_dispose(r);
}

/* One round trip on a reflection stream; returns the decoded answer. */
static Grpc__Reflection__V1__ServerReflectionResponse *
reflect(cxm_channel *ch, const char *version, Grpc__Reflection__V1__ServerReflectionRequest *req)
{
    char path[128];
    snprintf(path, sizeof path, "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo",
             version);
    uint8_t buf[1024];
    size_t len = grpc__reflection__v1__server_reflection_request__pack(req, buf);
    cxm_client_stream *s;
    CHECK(cxm_client_stream_open(ch, path, 5000, &s) == 0, "open %s", path);
    CHECK(cxm_client_stream_send(s, buf, len) == 0, "send");
    uint8_t *msg = NULL;
    size_t mlen = 0;
    CHECK(cxm_client_stream_recv(s, &msg, &mlen) == 1, "no reflection answer on %s", path);
    CHECK(cxm_client_stream_close_send(s) == 0, "close_send");
    uint8_t *extra = NULL;
    size_t elen;
    CHECK(cxm_client_stream_recv(s, &extra, &elen) == 0, "more than one answer");
    cxm_client_result r = {0};
    cxm_client_stream_finish(s, &r);
    expect_status(&r, GRPC_STATUS_OK, NULL);
    Grpc__Reflection__V1__ServerReflectionResponse *resp =
        grpc__reflection__v1__server_reflection_response__unpack(NULL, mlen, msg);
    free(msg);
    CHECK(resp != NULL, "undecodable reflection answer");
    return resp;
}

/* ---- cases ---- */

static void case_health(cxm_channel *ch, test_server *srv)
{
    expect_serving(ch, "");
    for (size_t i = 0; i < NCXM; i++)
        expect_serving(ch, cxm_services[i]);
    expect_serving(ch, "grpc.health.v1.Health");
    char details[512];
    grpc_status_code st = health_check(ch, "no.such.Service", NULL, details, sizeof details);
    CHECK(st == GRPC_STATUS_NOT_FOUND, "unknown service gave %d", st);
    CHECK(strstr(details, "no.such.Service"), "message does not name the service: %s", details);

    /* List names every hosted service. */
    Grpc__Health__V1__HealthListRequest lreq = GRPC__HEALTH__V1__HEALTH_LIST_REQUEST__INIT;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    ProtobufCMessage *resp;
    cxm_client_result r = {0};
    cxm_client_unary_pb(ch, "/grpc.health.v1.Health/List", &lreq.base,
                        &grpc__health__v1__health_list_response__descriptor, &a, 5000, &resp, &r);
    CHECK(r.status == GRPC_STATUS_OK, "List: %s", r.details);
    const Grpc__Health__V1__HealthListResponse *list = (const void *)resp;
    for (size_t i = 0; i < NCXM; i++) {
        bool found = false;
        for (size_t j = 0; j < list->n_statuses; j++)
            found |= strcmp(list->statuses[j]->key, cxm_services[i]) == 0;
        CHECK(found, "List lacks %s", cxm_services[i]);
    }
    cxm_client_result_dispose(&r);
    cxm_arena_dispose(&a);

    /* Watch answers at once with the current status. */
    Grpc__Health__V1__HealthCheckRequest wreq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = grpc__health__v1__health_check_request__pack(&wreq, buf);
    cxm_client_stream *s;
    CHECK(cxm_client_stream_open(ch, WATCH_PATH, 5000, &s) == 0, "open Watch");
    CHECK(cxm_client_stream_send(s, buf, len) == 0 && cxm_client_stream_close_send(s) == 0, "send");
    uint8_t *msg;
    size_t mlen;
    CHECK(cxm_client_stream_recv(s, &msg, &mlen) == 1, "Watch sent nothing");
    Grpc__Health__V1__HealthCheckResponse *h =
        grpc__health__v1__health_check_response__unpack(NULL, mlen, msg);
    CHECK(h && h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
          "Watch first status");
    grpc__health__v1__health_check_response__free_unpacked(h, NULL);
    free(msg);
    cxm_client_stream_cancel(s);
    cxm_client_stream_finish(s, &r);
    cxm_client_result_dispose(&r);
    expect_serving(ch, ""); /* the cancelled watcher is gone, the server fine */
}

static bool lists_service(const Grpc__Reflection__V1__ListServiceResponse *ls, const char *name)
{
    for (size_t i = 0; i < ls->n_service; i++)
        if (strcmp(ls->service[i]->name, name) == 0)
            return true;
    return false;
}

static bool has_file(const Grpc__Reflection__V1__FileDescriptorResponse *fr, const char *name)
{
    for (size_t i = 0; i < fr->n_file_descriptor_proto; i++) {
        Google__Protobuf__FileDescriptorProto *fd = google__protobuf__file_descriptor_proto__unpack(
            NULL, fr->file_descriptor_proto[i].len, fr->file_descriptor_proto[i].data);
        CHECK(fd != NULL, "reflection sent an undecodable FileDescriptorProto");
        bool match = strcmp(fd->name, name) == 0;
        google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
        if (match)
            return true;
    }
    return false;
}

static void case_reflection(cxm_channel *ch, test_server *srv)
{
    static const char *const versions[] = {"v1", "v1alpha"};
    for (size_t v = 0; v < 2; v++) {
        Grpc__Reflection__V1__ServerReflectionRequest req =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
        req.message_request_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
        req.list_services = "*";
        Grpc__Reflection__V1__ServerReflectionResponse *resp = reflect(ch, versions[v], &req);
        CHECK(
            resp->message_response_case ==
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE,
            "%s: list_services answered %d", versions[v], resp->message_response_case);
        for (size_t i = 0; i < NCXM; i++)
            CHECK(lists_service(resp->list_services_response, cxm_services[i]), "%s lacks %s",
                  versions[v], cxm_services[i]);
        CHECK(lists_service(resp->list_services_response, "grpc.health.v1.Health"), "no health");
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    }

    /* A service's file comes with its imports, as grpcurl needs. */
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = "cxm.v1.ProfileService";
    Grpc__Reflection__V1__ServerReflectionResponse *resp = reflect(ch, "v1", &req);
    CHECK(
        resp->message_response_case ==
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE,
        "file_containing_symbol answered %d", resp->message_response_case);
    CHECK(has_file(resp->file_descriptor_response, "cxm/v1/profile.proto"), "no profile.proto");
    CHECK(has_file(resp->file_descriptor_response, "cxm/v1/common.proto"), "no imports");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    req.file_by_filename = "grpc/health/v1/health.proto";
    resp = reflect(ch, "v1alpha", &req);
    CHECK(
        resp->message_response_case ==
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE &&
            has_file(resp->file_descriptor_response, "grpc/health/v1/health.proto"),
        "file_by_filename");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = "cxm.v1.NoSuchThing";
    resp = reflect(ch, "v1", &req);
    CHECK(
        resp->message_response_case ==
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE &&
            resp->error_response->error_code == GRPC_STATUS_NOT_FOUND &&
            strstr(resp->error_response->error_message, "cxm.v1.NoSuchThing"),
        "unknown symbol must give NOT_FOUND naming it");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void case_unimplemented(cxm_channel *ch, test_server *srv)
{
    cxm_client_result r = {0};
    double t0 = test_now_ms();
    /* An unknown service, and a method its contract lacks, answer at once
     * (every method of cxm's contracts is served since issue 13). */
    raw_call(ch, "/no.such.Service/Method", "", 0, 10000, &r);
    double took = test_now_ms() - t0;
    expect_status(&r, GRPC_STATUS_UNIMPLEMENTED, "unknown service \"no.such.Service\"");
    /* "At once": far inside the 10 s deadline, not at it. */
    CHECK(took < 2000, "UNIMPLEMENTED took %.0f ms", took);
    raw_call(ch, "/cxm.v1.PersonalisationService/Nope", "", 0, 10000, &r);
    expect_status(&r, GRPC_STATUS_UNIMPLEMENTED, "has no method \"Nope\"");
    raw_call(ch, "/grpc.health.v1.Health/Nope", "", 0, 10000, &r);
    expect_status(&r, GRPC_STATUS_UNIMPLEMENTED, "has no method \"Nope\"");
    expect_serving(ch, "");
}

static void case_deadline(cxm_channel *ch, test_server *srv)
{
    /* A Watch stream stays open until the client's deadline ends it. */
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = grpc__health__v1__health_check_request__pack(&req, buf);
    for (int i = 0; i < 20; i++) {
        cxm_client_stream *s;
        CHECK(cxm_client_stream_open(ch, WATCH_PATH, 200, &s) == 0, "open");
        cxm_client_stream_send(s, buf, len);
        cxm_client_stream_close_send(s);
        uint8_t *msg;
        size_t mlen;
        int got;
        while ((got = cxm_client_stream_recv(s, &msg, &mlen)) == 1)
            free(msg);
        cxm_client_result r = {0};
        cxm_client_stream_finish(s, &r);
        expect_status(&r, GRPC_STATUS_DEADLINE_EXCEEDED, NULL);
    }
    /* A deadline already past when the call is made. */
    cxm_client_result r = {0};
    raw_call(ch, CHECK_PATH, "", 0, 1, &r);
    CHECK(r.status == GRPC_STATUS_DEADLINE_EXCEEDED || r.status == GRPC_STATUS_OK,
          "1 ms deadline gave %d", r.status);
    cxm_client_result_dispose(&r);
    expect_serving(ch, "");
}

static void case_bad_input(cxm_channel *ch, test_server *srv)
{
    cxm_client_result r = {0};
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    raw_call(ch, CHECK_PATH, garbage, sizeof garbage, 5000, &r);
    expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "grpc.health.v1.HealthCheckRequest");

    /* Wrong type: field 1 as a varint where HealthCheckRequest has a string. */
    static const uint8_t wrong_type[] = {0x08, 0x96, 0x01};
    raw_call(ch, CHECK_PATH, wrong_type, sizeof wrong_type, 5000, &r);
    expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "not a valid message");

    /* Truncated: a string field that claims more bytes than follow. */
    static const uint8_t truncated[] = {0x0a, 0x7f, 'a', 'b'};
    raw_call(ch, CHECK_PATH, truncated, sizeof truncated, 5000, &r);
    expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "HealthCheckRequest");

    /* 5 MiB, over the 4 MiB limit: refused with a status naming the size. */
    size_t big = 5u << 20;
    uint8_t *huge = malloc(big);
    CHECK(huge, "malloc");
    memset(huge, 'x', big);
    huge[0] = 0x0a; /* a well-formed string field would not help either */
    raw_call(ch, CHECK_PATH, huge, big, 10000, &r);
    expect_status(&r, GRPC_STATUS_RESOURCE_EXHAUSTED, "larger than max");
    free(huge);

    /* Garbage on a stream: the reflection stream ends INVALID_ARGUMENT. */
    cxm_client_stream *s;
    CHECK(cxm_client_stream_open(ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 5000, &s) == 0,
          "open");
    cxm_client_stream_send(s, garbage, sizeof garbage);
    cxm_client_stream_close_send(s);
    uint8_t *msg;
    size_t mlen;
    while (cxm_client_stream_recv(s, &msg, &mlen) == 1)
        free(msg);
    cxm_client_stream_finish(s, &r);
    expect_status(&r, GRPC_STATUS_INVALID_ARGUMENT, "ServerReflectionRequest");

    for (int i = 0; i < 50; i++)
        expect_serving(ch, "");
}

/* Write v as a varint ending just before *at, moving *at back. */
static void prepend_varint(uint8_t **at, size_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        tmp[n++] = (uint8_t)(v | 0x80);
    tmp[n++] = (uint8_t)v;
    *at -= n;
    memcpy(*at, tmp, n);
}

/* Wrap the bytes [*at, end) as length-delimited field tag, in place. */
static void wrap_field(uint8_t **at, const uint8_t *end, uint8_t tag)
{
    prepend_varint(at, (size_t)(end - *at));
    *--*at = tag;
}

/* An UpsertSegmentRequest whose condition is `levels` SegmentConditions,
 * each the negate (field 3) of the one above it, built by hand from the
 * inside out: the request nests levels + 1 messages below itself. */
static uint8_t *deep_upsert(size_t levels, uint8_t **start, size_t *len)
{
    size_t cap = levels * 6 + 64;
    uint8_t *buf = malloc(cap);
    CHECK(buf, "malloc");
    uint8_t *end = buf + cap, *at = end;
    for (size_t i = 1; i < levels; i++)
        wrap_field(&at, end, 0x1a);                            /* SegmentCondition.negate */
    wrap_field(&at, end, 0x22);                                /* Segment.condition */
    static const uint8_t id[] = {0x0a, 4, 'd', 'e', 'e', 'p'}; /* Segment.segment_id */
    at -= sizeof id;
    memcpy(at, id, sizeof id);
    wrap_field(&at, end, 0x0a); /* UpsertSegmentRequest.segment */
    *start = at;
    *len = (size_t)(end - at);
    return buf;
}

/* No request crashes the server by nesting: too deep is INVALID_ARGUMENT
 * before anything decodes it; just inside the limit reaches the handler. */
static void case_deep_request(cxm_channel *ch, test_server *srv)
{
    static const struct {
        size_t levels;
        const char *want;
    } tries[] = {
        {100000, "nests messages deeper than 64 levels"},
        {100, "nests messages deeper than 64 levels"},
        {64, "nests messages deeper than 64 levels"},
        {63, "nested at most 8 deep"}, /* depth 64: the handler's own rule */
    };
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        uint8_t *req;
        size_t len;
        uint8_t *buf = deep_upsert(tries[i].levels, &req, &len);
        cxm_client_result r = {0};
        raw_call(ch, "/cxm.v1.ProfileService/UpsertSegment", req, len, 10000, &r);
        free(buf);
        CHECK(r.status == GRPC_STATUS_INVALID_ARGUMENT && strstr(r.details, tries[i].want),
              "%zu levels: status %d (%s), want INVALID_ARGUMENT \"%s\"", tries[i].levels, r.status,
              r.details, tries[i].want);
        cxm_client_result_dispose(&r);
    }
    expect_serving(ch, "");
}

/* SIGTERM: watchers hear NOT_SERVING and end, new calls are refused, the
 * process exits 0 well inside the grace period. */
static void case_drain(cxm_channel *ch, test_server *srv)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = grpc__health__v1__health_check_request__pack(&req, buf);
    cxm_client_stream *s;
    CHECK(cxm_client_stream_open(ch, WATCH_PATH, 20000, &s) == 0, "open");
    cxm_client_stream_send(s, buf, len);
    cxm_client_stream_close_send(s);
    uint8_t *msg;
    size_t mlen;
    CHECK(cxm_client_stream_recv(s, &msg, &mlen) == 1, "first status");
    free(msg);

    double t0 = test_now_ms();
    kill(srv->pid, SIGTERM);
    int last = -1, got;
    while ((got = cxm_client_stream_recv(s, &msg, &mlen)) == 1) {
        Grpc__Health__V1__HealthCheckResponse *h =
            grpc__health__v1__health_check_response__unpack(NULL, mlen, msg);
        CHECK(h, "undecodable status");
        last = h->status;
        grpc__health__v1__health_check_response__free_unpacked(h, NULL);
        free(msg);
    }
    cxm_client_result r = {0};
    cxm_client_stream_finish(s, &r);
    CHECK(last == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
          "watcher last heard %d, want NOT_SERVING", last);
    expect_status(&r, GRPC_STATUS_UNAVAILABLE, "shutting down");

    int code = harness_stop(srv, SIGTERM, 10000);
    double took = test_now_ms() - t0;
    CHECK(code == 0, "exit status %d after SIGTERM", code);
    CHECK(took < 4000, "drain took %.0f ms with nothing in flight", took);
    CHECK(harness_log_contains(srv, "server.stopped"), "no stop line in the log");

    /* A call after shutdown gets a proper status, not a hang. */
    raw_call(ch, CHECK_PATH, "", 0, 2000, &r);
    CHECK(r.status == GRPC_STATUS_UNAVAILABLE, "call after shutdown: %d %s", r.status, r.details);
    cxm_client_result_dispose(&r);
}

/* The process is still running (not yet reaped). */
static bool still_running(const test_server *srv)
{
    return waitpid(srv->pid, NULL, WNOHANG) == 0;
}

/* An HTTP/2 connection that says hello (preface and SETTINGS) and then
 * never reads: a client that will not acknowledge the GOAWAY. gRPC channels
 * of this process would, whenever any thread polls any of them. */
static int silent_http2_client(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s",
          strerror(errno));
    static const char hello[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                "\0\0\0\4\0\0\0\0\0"; /* empty SETTINGS frame */
    CHECK(write(fd, hello, sizeof hello - 1) == (ssize_t)(sizeof hello - 1), "write");
    return fd;
}

/* SIGTERM while clients hold idle connections, one of which never reads the
 * GOAWAY: the drain waits for the call in flight, which still completes,
 * and exits as soon as it is done instead of at the end of the grace
 * period (3 s, set by harness_main). */
static void case_drain_idle(cxm_channel *idle, test_server *srv)
{
    expect_serving(idle, ""); /* connected, then idle */
    int silent = silent_http2_client(srv->port);
    expect_serving(idle, ""); /* the silent connection is surely accepted by now */
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv->target, NULL, &ch) == 0, "second channel");
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "*";
    uint8_t buf[64];
    size_t len = grpc__reflection__v1__server_reflection_request__pack(&req, buf);
    cxm_client_stream *s;
    CHECK(cxm_client_stream_open(ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 10000, &s) == 0,
          "open");
    uint8_t *msg;
    size_t mlen;
    CHECK(cxm_client_stream_send(s, buf, len) == 0 && cxm_client_stream_recv(s, &msg, &mlen) == 1,
          "first answer");
    free(msg);

    double t0 = test_now_ms();
    kill(srv->pid, SIGTERM);
    usleep(300 * 1000);
    CHECK(still_running(srv), "the server exited with a call in flight");
    CHECK(cxm_client_stream_send(s, buf, len) == 0 && cxm_client_stream_recv(s, &msg, &mlen) == 1,
          "the call in flight got no answer after SIGTERM");
    free(msg);
    cxm_client_stream_close_send(s);
    CHECK(cxm_client_stream_recv(s, &msg, &mlen) == 0, "more than one answer");
    cxm_client_result r = {0};
    cxm_client_stream_finish(s, &r);
    expect_status(&r, GRPC_STATUS_OK, NULL);
    double t1 = test_now_ms();

    int code = harness_stop(srv, 0, 10000); /* signal 0: just wait */
    double t2 = test_now_ms();
    CHECK(code == 0, "exit status %d after SIGTERM", code);
    CHECK(t2 - t1 < 1000, "exit took %.0f ms after the last call ended (grace 3000 ms)", t2 - t1);
    CHECK(t2 - t0 < 2000, "drain took %.0f ms (grace 3000 ms)", t2 - t0);
    CHECK(!harness_log_contains(srv, "server.grace_expired"), "the grace period ran out");
    cxm_channel_close(ch);
    close(silent);
}

/* Run binary with argv to its exit (10 s at most) with stderr captured
 * into err; returns the exit status. */
static int run_to_exit(const char *const *argv, char *err, size_t cap)
{
    char path[] = "/tmp/cxm-test-stderr-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 2);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    CHECK(rc == 0, "cannot start %s: %s", argv[0], strerror(rc));
    int status = -1;
    for (double end = test_now_ms() + 10000; test_now_ms() < end; usleep(5000))
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
    if (!WIFEXITED(status)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        CHECK(0, "%s did not exit by itself", argv[0]);
    }
    ssize_t n = pread(fd, err, cap - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return WEXITSTATUS(status);
}

/* Start the server binary with --listen addr on a fresh data directory
 * open to every user and expect it to exit with status want and one line
 * on stderr containing needle. wrap: a command (setpriv ... --) to run it
 * under, or NULL. */
static void expect_listen_refused(const test_server *srv, const char *const *wrap, const char *addr,
                                  int want, const char *needle)
{
    char dir[] = "/tmp/cxm-test-XXXXXX";
    CHECK(mkdtemp(dir) && chmod(dir, 0777) == 0, "mkdtemp");
    const char *argv[16];
    int argc = 0;
    for (; wrap && wrap[argc]; argc++)
        argv[argc] = wrap[argc];
    /* --insecure: a non-loopback address must get as far as bind(2). */
    const char *tail[] = {srv->binary, "--listen", addr, "--data", dir, "--insecure", NULL};
    memcpy(argv + argc, tail, sizeof tail);
    char err[4096];
    int code = run_to_exit(argv, err, sizeof err);
    char *nl = strchr(err, '\n');
    CHECK(code == want && strstr(err, needle) && nl && nl[1] == '\0',
          "--listen %s: exit %d (want %d), stderr:\n%s(want one line with \"%s\")", addr, code,
          want, err, needle);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
}

/* Listening addresses: bad ones are refused as bad flags (exit 2), ones
 * that cannot be bound (exit 1) say why, each in one line. */
static void case_listen(cxm_channel *ch, test_server *srv)
{
    expect_listen_refused(srv, NULL, "127.0.0.1:99999", 2, "port \"99999\" is not a number");
    expect_listen_refused(srv, NULL, "127.0.0.1:-1", 2, "is not a number from 0 to 65535");
    expect_listen_refused(srv, NULL, "127.0.0.1", 2, "expected HOST:PORT");
    expect_listen_refused(srv, NULL, "no host:7000", 2, "is not a host name or an IP address");
    expect_listen_refused(srv, NULL, "::1:7000", 2, "put an IPv6 address in brackets");
    char busy[64];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", srv->port); /* the running server's */
    expect_listen_refused(srv, NULL, busy, 1, "is already in use on 127.0.0.1");
    /* 192.0.2.0/24 is reserved for documentation: never this machine's. */
    expect_listen_refused(srv, NULL, "192.0.2.1:0", 1,
                          "192.0.2.1 is not an address of this machine");
    /* Port 1 needs privileges; as root, drop them for the attempt. */
    static const char *const as_nobody[] = {
        "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", NULL};
    expect_listen_refused(srv, geteuid() == 0 ? as_nobody : NULL, "127.0.0.1:1", 1,
                          "permission denied: port 1 needs privileges");
    expect_serving(ch, "");
}

/* A second server on the same data directory is refused, naming the
 * directory and the first server's pid. */
static void case_data_in_use(cxm_channel *ch, test_server *srv)
{
    const char *argv[] = {srv->binary, "--listen", "127.0.0.1:0", "--data", srv->data_dir, NULL};
    char err[4096], pid[32];
    int code = run_to_exit(argv, err, sizeof err);
    snprintf(pid, sizeof pid, "(pid %ld)", (long)srv->pid);
    CHECK(code == 1 && strstr(err, srv->data_dir) && strstr(err, pid) && strstr(err, "in use"),
          "second server: exit %d, stderr:\n%s", code, err);
    expect_serving(ch, "");
}

/* ---- a store that cannot write ---- */

#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING

static int health_now(cxm_channel *ch, const char *service)
{
    int serving = -1;
    char details[512];
    grpc_status_code st = health_check(ch, service, &serving, details, sizeof details);
    CHECK(st == GRPC_STATUS_OK, "Check(\"%s\") status %d: %s", service, st, details);
    return serving;
}

/* Polls Check("") up to timeout_ms for want; returns whether it came. */
static bool wait_health(cxm_channel *ch, int want, int timeout_ms)
{
    for (double end = test_now_ms() + timeout_ms; test_now_ms() < end; usleep(20000))
        if (health_now(ch, "") == want)
            return true;
    return false;
}

/* UpsertProfile of customer i with nattr attributes of 8,000 bytes. */
static grpc_status_code upsert_blob(cxm_channel *ch, cxm_arena *a, int i, size_t nattr,
                                    char *details)
{
    static char blob[8001];
    memset(blob, 'x' + i % 3, sizeof blob - 1);
    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    Cxm__V1__Identity id = CXM__V1__IDENTITY__INIT;
    id.type = CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID;
    id.value = harness_fmt(a, "crm-%d", i);
    Cxm__V1__Identity *ids[] = {&id};
    req.identities = ids;
    req.n_identities = 1;
    Cxm__V1__AttributeUpdate **attrs = cxm_arena_calloc(a, nattr, sizeof *attrs);
    for (size_t k = 0; k < nattr; k++) {
        Cxm__V1__Value *v = cxm_arena_calloc(a, 1, sizeof *v);
        cxm__v1__value__init(v);
        v->kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
        v->string_value = blob;
        attrs[k] = cxm_arena_calloc(a, 1, sizeof *attrs[k]);
        cxm__v1__attribute_update__init(attrs[k]);
        attrs[k]->name = harness_fmt(a, "blob%zu", k);
        attrs[k]->value = v;
    }
    req.attributes = attrs;
    req.n_attributes = nattr;
    return harness_call(ch, "/cxm.v1.ProfileService/", "UpsertProfile", &req.base,
                        &cxm__v1__upsert_profile_response__descriptor, a, NULL, details);
}

/* Lines of the server's log holding needle. */
static int log_count(const test_server *s, const char *needle)
{
    FILE *f = fopen(s->log_path, "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* A big upsert that the full store refuses, then Check("") at once: true if
 * it said NOT_SERVING (the prober may already have found room for its own
 * small write a second later, so this is tried a few times). */
static bool refused_then_not_serving(cxm_channel *ch, cxm_arena *a, int *next)
{
    char details[512];
    for (int tries = 0; tries < 5; tries++) {
        grpc_status_code st = upsert_blob(ch, a, (*next)++, 16, details);
        CHECK(st == GRPC_STATUS_RESOURCE_EXHAUSTED && strstr(details, "full"),
              "a write to the full store: status %d: %s", st, details);
        if (health_now(ch, "") == NOT_SERVING &&
            health_now(ch, "cxm.v1.ProfileService") == NOT_SERVING)
            return true;
    }
    return false;
}

/* A store whose map reached --max-map-size: writes fail with
 * RESOURCE_EXHAUSTED, Health turns NOT_SERVING with the reason logged once
 * (however many writes fail), and SERVING again when a write commits, or,
 * with no writes at all, when the store's probe write does. */
static void case_store_full(cxm_channel *ch, test_server *srv)
{
    static const char *const args[] = {"--max-map-size", "2M", NULL};
    test_server full;
    harness_start(&full, srv->binary, args);
    cxm_channel *fch;
    CHECK(cxm_channel_open(full.target, NULL, &fch) == 0, "channel");
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char details[512];
    int next = 0;
    while (next < 1000 && upsert_blob(fch, &a, next, 16, details) == GRPC_STATUS_OK)
        next++;
    CHECK(next > 0 && next < 1000, "%d upserts of 128 KB fitted in a 2 MiB map", next);
    CHECK(refused_then_not_serving(fch, &a, &next), "Health stayed SERVING while writes failed");
    CHECK(log_count(&full, "health.not_serving") >= 1 &&
              harness_log_contains(&full, "raise --max-map-size"),
          "no health.not_serving line naming the cause; see %s", full.log_path);

    /* A write that fits (no attributes) commits: SERVING at once. */
    CHECK(upsert_blob(fch, &a, next++, 0, details) == GRPC_STATUS_OK, "a small upsert: %s",
          details);
    CHECK(health_now(fch, "") == SERVING, "a committed write did not restore SERVING");

    /* No writes after the failure: the probe restores SERVING. */
    CHECK(refused_then_not_serving(fch, &a, &next), "NOT_SERVING again after a failed write");
    CHECK(wait_health(fch, SERVING, 10000), "the probe write did not restore SERVING in 10 s");
    CHECK(log_count(&full, "health.serving") >= 2, "no health.serving lines; see %s",
          full.log_path);
    /* Several failed writes, one cause: one store.write_failed line. */
    CHECK(log_count(&full, "store.write_failed") == 1, "%d store.write_failed lines; see %s",
          log_count(&full, "store.write_failed"), full.log_path);

    cxm_arena_dispose(&a);
    cxm_channel_close(fch);
    CHECK(harness_stop(&full, SIGTERM, 10000) == 0, "drains");
    harness_cleanup(&full);
    expect_serving(ch, "");
}

static const harness_case cases[] = {
    {"store_full", case_store_full},
    {"health", case_health},
    {"reflection", case_reflection},
    {"unimplemented", case_unimplemented},
    {"deadline", case_deadline},
    {"bad_input", case_bad_input},
    {"drain", case_drain},
    {"deep_request", case_deep_request},
    {"drain_idle", case_drain_idle},
    {"listen", case_listen},
    {"data_in_use", case_data_in_use},
};

int main(int argc, char **argv)
{
    return harness_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
