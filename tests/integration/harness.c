#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char *read_log(const test_server *s)
{
    FILE *f = fopen(s->log_path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    if (buf)
        fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    return buf;
}

bool harness_log_contains(const test_server *s, const char *needle)
{
    char *log = read_log(s);
    bool found = log && strstr(log, needle);
    free(log);
    return found;
}

static int wait_for_port(test_server *s)
{
    for (double end = test_now_ms() + 10000; test_now_ms() < end;) {
        char *log = read_log(s);
        const char *p = log ? strstr(log, "listening on 127.0.0.1:") : NULL;
        int port = p ? atoi(p + strlen("listening on 127.0.0.1:")) : 0;
        free(log);
        if (port > 0)
            return port;
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
            return -1;
        usleep(5000);
    }
    return 0;
}

void harness_start(test_server *s, const char *binary, const char *const *extra_args)
{
    memset(s, 0, sizeof *s);
    s->binary = binary;
    s->extra_args = extra_args;
    snprintf(s->data_dir, sizeof s->data_dir, "/tmp/cxm-test-XXXXXX");
    CHECK(mkdtemp(s->data_dir) != NULL, "mkdtemp: %s", strerror(errno));
    harness_restart(s);
}

void harness_restart(test_server *s)
{
    const char *binary = s->binary;
    const char *const *extra_args = s->extra_args;
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->data_dir);

    const char *argv[32] = {binary, "--listen", "127.0.0.1:0", "--data", s->data_dir};
    int argc = 5;
    for (int i = 0; extra_args && extra_args[i] && argc < 31; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&s->pid, binary, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    CHECK(rc == 0, "cannot start %s: %s", binary, strerror(rc));

    s->port = wait_for_port(s);
    if (s->port <= 0) {
        char *log = read_log(s);
        fprintf(stderr, "server log:\n%s\n", log ? log : "(none)");
        free(log);
        CHECK(s->port > 0, "%s did not report its port", binary);
    }
    snprintf(s->target, sizeof s->target, "127.0.0.1:%d", s->port);
}

int harness_stop(test_server *s, int sig, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    for (double end = test_now_ms() + timeout_ms; test_now_ms() < end;) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(2000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

void harness_cleanup(test_server *s)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->data_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", s->data_dir);
}

int harness_main(int argc, char **argv, const harness_case *cases, size_t ncases)
{
    CHECK(argc == 3, "usage: %s SERVER_BINARY CASE", argv[0]);
    static const char *const args[] = {"--grace", "3s", "--workers", "2", NULL};
    for (size_t i = 0; i < ncases; i++) {
        if (strcmp(cases[i].name, argv[2]) != 0)
            continue;
        test_server srv;
        harness_start(&srv, argv[1], args);
        /* CXM_TOKEN or CXM_TOKEN_FILE: the same cases against a server with
         * auth on. */
        cxm_channel_opts co = {0};
        char err[512];
        CHECK(cxm_channel_opts_from_env(&co, err, sizeof err) == 0, "%s", err);
        cxm_channel *ch;
        CHECK(cxm_channel_open(srv.target, &co, &ch) == 0, "channel to %s", srv.target);
        cases[i].run(ch, &srv);
        /* The server's drain does not wait for idle connections (see
         * integration.drain_idle); closing first just ends the test tidily. */
        cxm_channel_close(ch);
        if (srv.pid > 0) {
            int code = harness_stop(&srv, SIGTERM, 10000);
            CHECK(code == 0, "exit status %d after SIGTERM", code);
        }
        harness_cleanup(&srv);
        printf("%s: ok\n", cases[i].name);
        return 0;
    }
    CHECK(0, "unknown case %s", argv[2]);
    return 1;
}

grpc_status_code harness_call(cxm_channel *ch, const char *service_path, const char *method,
                              const void *req, const ProtobufCMessageDescriptor *resp_desc,
                              cxm_arena *arena, void *resp, char *details)
{
    char path[160];
    snprintf(path, sizeof path, "%s%s", service_path, method);
    ProtobufCMessage *out = NULL;
    cxm_client_result r = {0};
    CHECK(cxm_client_unary_pb(ch, path, req, resp_desc, arena, 10000, &out, &r) == 0,
          "%s could not start", path);
    grpc_status_code st = r.status;
    if (details)
        snprintf(details, 512, "%s", r.details ? r.details : "");
    if (resp)
        *(ProtobufCMessage **)resp = out;
    cxm_client_result_dispose(&r);
    return st;
}

/* ---- request building ---- */

int64_t harness_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *harness_fmt(cxm_arena *a, const char *f, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return cxm_arena_strndup(a, buf, strlen(buf));
}

Cxm__V1__CustomerRef *harness_ref_id(cxm_arena *a, const char *customer_id)
{
    Cxm__V1__CustomerRef *r = cxm_arena_alloc(a, sizeof *r);
    cxm__v1__customer_ref__init(r);
    r->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    r->customer_id = (char *)customer_id;
    return r;
}

Cxm__V1__CustomerRef *harness_ref_identity(cxm_arena *a, Cxm__V1__IdentityType type,
                                           const char *value)
{
    Cxm__V1__CustomerRef *r = cxm_arena_alloc(a, sizeof *r);
    Cxm__V1__Identity *id = cxm_arena_alloc(a, sizeof *id);
    cxm__v1__customer_ref__init(r);
    cxm__v1__identity__init(id);
    id->type = type;
    id->value = (char *)value;
    r->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    r->identity = id;
    return r;
}

const Cxm__V1__ServiceErasure *harness_receipt_line(cxm_channel *ch, cxm_arena *arena,
                                                    const char *receipt_id, const char *service)
{
    Cxm__V1__GetDeletionReceiptRequest g = CXM__V1__GET_DELETION_RECEIPT_REQUEST__INIT;
    g.key_case = CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_RECEIPT_ID;
    g.receipt_id = (char *)receipt_id;
    Cxm__V1__GetDeletionReceiptResponse *gr;
    char d[512];
    CHECK(harness_call(ch, "/cxm.v1.ProfileService/", "GetDeletionReceipt", &g.base,
                       &cxm__v1__get_deletion_receipt_response__descriptor, arena, &gr,
                       d) == GRPC_STATUS_OK,
          "receipt %s: %s", receipt_id, d);
    for (size_t i = 0; i < gr->receipt->n_services; i++)
        if (strcmp(gr->receipt->services[i]->service, service) == 0)
            return gr->receipt->services[i];
    CHECK(false, "%s is not on receipt %s", service, receipt_id);
    return NULL;
}

void harness_identity_segment(cxm_channel *ch, cxm_arena *arena, const char *segment_id,
                              Cxm__V1__IdentityType type)
{
    Cxm__V1__SegmentCondition__HasIdentity has = CXM__V1__SEGMENT_CONDITION__HAS_IDENTITY__INIT;
    has.type = type;
    Cxm__V1__SegmentCondition cond = CXM__V1__SEGMENT_CONDITION__INIT;
    cond.node_case = CXM__V1__SEGMENT_CONDITION__NODE_HAS_IDENTITY;
    cond.has_identity = &has;
    Cxm__V1__Segment seg = CXM__V1__SEGMENT__INIT;
    seg.segment_id = (char *)segment_id;
    seg.condition = &cond;
    Cxm__V1__UpsertSegmentRequest us = CXM__V1__UPSERT_SEGMENT_REQUEST__INIT;
    us.segment = &seg;
    Cxm__V1__UpsertSegmentResponse *ur;
    char d[512];
    CHECK(harness_call(ch, "/cxm.v1.ProfileService/", "UpsertSegment", &us.base,
                       &cxm__v1__upsert_segment_response__descriptor, arena, &ur,
                       d) == GRPC_STATUS_OK,
          "UpsertSegment %s: %s", segment_id, d);
}

const Cxm__V1__ServiceErasure *harness_erase(cxm_channel *ch, cxm_arena *arena,
                                             const char *customer_id, const char *service)
{
    Cxm__V1__DeleteProfileRequest del = CXM__V1__DELETE_PROFILE_REQUEST__INIT;
    del.customer = harness_ref_id(arena, customer_id);
    del.reason = "test erasure";
    Cxm__V1__DeleteProfileResponse *dr;
    char d[512];
    CHECK(harness_call(ch, "/cxm.v1.ProfileService/", "DeleteProfile", &del.base,
                       &cxm__v1__delete_profile_response__descriptor, arena, &dr,
                       d) == GRPC_STATUS_OK,
          "DeleteProfile %s: %s", customer_id, d);
    for (double end = test_now_ms() + 10000;; usleep(20000)) {
        const Cxm__V1__ServiceErasure *line =
            harness_receipt_line(ch, arena, dr->receipt->receipt_id, service);
        if (line->state == CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE)
            return line;
        CHECK(test_now_ms() < end, "%s erasure not confirmed in 10 s", service);
    }
}

const char *harness_sibling(cxm_arena *a, const test_server *srv, const char *name)
{
    const char *slash = strrchr(srv->binary, '/');
    int dir = slash ? (int)(slash - srv->binary) + 1 : 0;
    return harness_fmt(a, "%.*s%s", dir, srv->binary, name);
}

const char *harness_profile_stopped(cxm_arena *a, const test_server *srv, test_server *prof)
{
    harness_start(prof, harness_sibling(a, srv, "cxm-profile"), NULL);
    const char *addr = harness_fmt(a, "127.0.0.1:%d", prof->port);
    CHECK(harness_stop(prof, SIGTERM, 5000) == 0, "profile stopped");
    const char **args = cxm_arena_calloc(a, 3, sizeof *args);
    args[0] = "--listen";
    args[1] = addr;
    prof->extra_args = args;
    return addr;
}
