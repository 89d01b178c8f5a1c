/*
 * cxmctl - the cxm command-line client.
 *
 *   cxmctl [--target HOST:PORT] [--json] [--timeout DURATION] COMMAND [ARGS]
 *
 * Readable output by default, one JSON object per result with --json. Exits
 * 0 on success, 1 with the server's status and message on an RPC error, 2 on
 * bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/opts.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

typedef struct ctl {
    const char *target;
    bool json;
    int64_t timeout_ms;
    cxm_channel *ch;
} ctl;

typedef struct command {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(ctl *c, int argc, char **argv);
} command;

static const char *status_name(grpc_status_code code)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    return (unsigned)code < sizeof names / sizeof names[0] ? names[code] : "UNKNOWN";
}

/* Print an RPC failure the way scripts and people both can read; returns 1. */
static int rpc_failed(const ctl *c, const char *what, const cxm_client_result *r)
{
    fprintf(stderr, "cxmctl: %s on %s failed: %s: %s\n", what, c->target, status_name(r->status),
            r->details ? r->details : "");
    return 1;
}

static int cmd_health(ctl *c, int argc, char **argv)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = argc > 0 ? argv[0] : "";
    cxm_arena arena;
    cxm_arena_init(&arena, NULL, 0, 0);
    ProtobufCMessage *resp = NULL;
    cxm_client_result r = {0};
    int rc = cxm_client_unary_pb(c->ch, "/grpc.health.v1.Health/Check", &req.base,
                                 &grpc__health__v1__health_check_response__descriptor, &arena,
                                 c->timeout_ms, &resp, &r);
    int exit_code = 0;
    if (rc != 0 || r.status != GRPC_STATUS_OK) {
        exit_code = rpc_failed(c, "health check", &r);
    } else {
        const Grpc__Health__V1__HealthCheckResponse *h = (const void *)resp;
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
            &grpc__health__v1__health_check_response__serving_status__descriptor, h->status);
        const char *name = v ? v->name : "UNKNOWN";
        if (c->json)
            printf("{\"service\":\"%s\",\"status\":\"%s\"}\n", req.service, name);
        else
            printf("%s: %s\n", *req.service ? req.service : c->target, name);
        exit_code =
            h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? 0 : 1;
    }
    cxm_client_result_dispose(&r);
    cxm_arena_dispose(&arena);
    return exit_code;
}

static void print_services(const ctl *c, const Grpc__Reflection__V1__ListServiceResponse *ls)
{
    if (c->json)
        fputs("{\"services\":[", stdout);
    for (size_t i = 0; i < ls->n_service; i++) {
        if (c->json)
            printf("%s\"%s\"", i ? "," : "", ls->service[i]->name);
        else
            printf("%s\n", ls->service[i]->name);
    }
    if (c->json)
        fputs("]}\n", stdout);
}

static int cmd_services(ctl *c, int argc, char **argv)
{
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "";
    uint8_t buf[64];
    size_t len = grpc__reflection__v1__server_reflection_request__pack(&req, buf);

    cxm_client_stream *s = NULL;
    if (cxm_client_stream_open(c->ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                               c->timeout_ms, &s) != 0) {
        fprintf(stderr, "cxmctl: cannot open a reflection stream to %s\n", c->target);
        return 1;
    }
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int got = 0;
    if (cxm_client_stream_send(s, buf, len) == 0 && cxm_client_stream_close_send(s) == 0)
        got = cxm_client_stream_recv(s, &msg, &msg_len);
    cxm_client_result r = {0};
    cxm_client_stream_finish(s, &r);
    int exit_code = 0;
    Grpc__Reflection__V1__ServerReflectionResponse *resp =
        got == 1 ? grpc__reflection__v1__server_reflection_response__unpack(NULL, msg_len, msg)
                 : NULL;
    if (r.status != GRPC_STATUS_OK)
        exit_code = rpc_failed(c, "listing services", &r);
    else if (
        !resp ||
        resp->message_response_case !=
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE)
        exit_code = (fprintf(stderr, "cxmctl: %s sent no service list\n", c->target), 1);
    else
        print_services(c, resp->list_services_response);
    if (resp)
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    free(msg);
    cxm_client_result_dispose(&r);
    return exit_code;
}

static const command commands[] = {
    {"health", "[SERVICE]", "ask grpc.health.v1.Health/Check; exit 0 only when SERVING",
     cmd_health},
    {"services", "", "list the services the server offers (server reflection)", cmd_services},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out, const cxm_opt *opts, size_t nopts)
{
    cxm_opts_usage(out, "cxmctl", "cxmctl: the cxm command-line client\n\ncommands:", opts, nopts);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %-12s %s\n", commands[i].name, commands[i].args, commands[i].help);
}

int main(int argc, char **argv)
{
    ctl c = {.target = "127.0.0.1:7400", .timeout_ms = 5000};
    const cxm_opt opts[] = {
        {"target", CXM_OPT_STR, &c.target, 0, 0, "server address HOST:PORT"},
        {"json", CXM_OPT_BOOL, &c.json, 0, 0, "print results as JSON"},
        {"timeout", CXM_OPT_MILLIS, &c.timeout_ms, 1, 3600000, "deadline of each call"},
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    const char *pos[16];
    size_t npos = 16;
    char err[256];
    int rc = cxm_opts_parse(opts, nopts, argc, argv, pos, &npos, err, sizeof err);
    if (rc == 1) {
        usage(stdout, opts, nopts);
        return 0;
    }
    if (rc != 0 || npos == 0) {
        fprintf(stderr, "cxmctl: %s\n", rc != 0 ? err : "no command given");
        usage(stderr, opts, nopts);
        return 2;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(pos[0], commands[i].name) != 0)
            continue;
        if (cxm_channel_open(c.target, NULL, &c.ch) != 0) {
            fprintf(stderr, "cxmctl: cannot open a channel to %s\n", c.target);
            return 1;
        }
        rc = commands[i].run(&c, (int)npos - 1, (char **)pos + 1);
        cxm_channel_close(c.ch);
        return rc;
    }
    fprintf(stderr, "cxmctl: unknown command \"%s\"\n", pos[0]);
    usage(stderr, opts, nopts);
    return 2;
}
