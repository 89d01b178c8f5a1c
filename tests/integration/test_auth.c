/*
 * test_auth.c - authentication, scopes, the audit log and the per-subject
 * rate limit on a real cxmd with auth on (auth.h): a static token file and
 * HS256 JWTs minted here.
 *
 *   test_auth PATH_TO_CXMD CASE
 *
 * Cases: config (start-up refuses half-made auth), deny (each kind of
 * refusal and what passes), audit (one line per write, none per read, no
 * token in the log), rate (RESOURCE_EXHAUSTED with retry-after-ms),
 * internal (journey's resolver reaches profile with --client-token-file).
 */
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/v1/bus.pb-c.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "harness.h"
#include "jwt_mint.h"

#define PROFILE "/cxm.v1.ProfileService/"
#define EMAIL CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL
#define ANON CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_ANONYMOUS_ID
#define SECRET "integration-test-hs256-secret-0123456789abcdef"

/* Long and distinctive, so a leak into the log would be found by grep. */
#define TOK_FRONTEND "tok-frontend-Zq81xYwVb3"
#define TOK_READER "tok-reader-Hh27PpLm90qQ"
#define TOK_INTERNAL "tok-internal-Rt55KcvA1z"
#define TOK_ADMIN "tok-admin-Nn44WweE9ss0x"

static cxm_arena arena;
static char dir[] = "/tmp/cxm-test-authi-XXXXXX";

static const char *path_in(const char *name)
{
    return harness_fmt(&arena, "%s/%s", dir, name);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* The token file, the JWT secret and the internal token's file. */
static void write_credentials(void)
{
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    write_text(path_in("tokens"),
               "# test tokens\n" TOK_FRONTEND " frontend profile:read,profile:write,journey:write,"
               "journey:read\n" TOK_READER " reader profile:read\n" TOK_INTERNAL
               " journey-svc internal\n" TOK_ADMIN " ops admin\n");
    write_text(path_in("hs.key"), SECRET "\n");
    write_text(path_in("internal.tok"), TOK_INTERNAL "\n");
}

static char *jwt(const char *claims_extra, int64_t exp_in_s)
{
    char *payload = harness_fmt(&arena, "{\"sub\":\"jwt-user\",\"aud\":\"cxm\",\"exp\":%lld%s}",
                                (long long)(time(NULL) + exp_in_s), claims_extra);
    char *t = jwt_mint("HS256", "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, SECRET,
                       strlen(SECRET), NULL);
    char *copy = harness_fmt(&arena, "%s", t);
    free(t);
    return copy;
}

static void start_auth(test_server *srv, const char *const *more)
{
    const char *args[32] = {"--grace",
                            "3s",
                            "--workers",
                            "2",
                            "--log-format",
                            "json",
                            "--auth-tokens",
                            path_in("tokens"),
                            "--auth-jwt-key",
                            path_in("hs.key"),
                            "--auth-jwt-alg",
                            "HS256",
                            "--auth-jwt-audience",
                            "cxm"};
    size_t n = 14;
    for (size_t i = 0; more && more[i] && n < 31; i++)
        args[n++] = more[i];
    args[n] = NULL;
    harness_start(srv, harness_fmt(&arena, "%s", srv->binary), args);
}

static cxm_channel *open_as(const test_server *srv, const char *token)
{
    cxm_channel_opts o = {.token = token, .use_local_subchannel_pool = 1};
    cxm_channel *ch = NULL;
    CHECK(cxm_channel_open(srv->target, &o, &ch) == 0, "channel");
    return ch;
}

static grpc_status_code pcall(cxm_channel *ch, const char *method, const void *req,
                              const ProtobufCMessageDescriptor *resp_desc, void *resp,
                              char *details)
{
    return harness_call(ch, PROFILE, method, req, resp_desc, &arena, resp, details);
}

static grpc_status_code get_profile(cxm_channel *ch, const char *id, char *details)
{
    Cxm__V1__GetProfileRequest req = CXM__V1__GET_PROFILE_REQUEST__INIT;
    req.customer = harness_ref_id(&arena, id);
    Cxm__V1__GetProfileResponse *resp;
    return pcall(ch, "GetProfile", &req, &cxm__v1__get_profile_response__descriptor, &resp,
                 details);
}

static grpc_status_code upsert(cxm_channel *ch, const char *id, const char *email, char *details,
                               char **created_id)
{
    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    req.customer_id = (char *)(id ? id : "");
    Cxm__V1__Identity ident = CXM__V1__IDENTITY__INIT;
    Cxm__V1__Identity *idents[] = {&ident};
    if (email) {
        ident.type = EMAIL;
        ident.value = (char *)email;
        req.identities = idents;
        req.n_identities = 1;
    }
    Cxm__V1__UpsertProfileResponse *resp = NULL;
    grpc_status_code s = pcall(ch, "UpsertProfile", &req,
                               &cxm__v1__upsert_profile_response__descriptor, &resp, details);
    if (s == GRPC_STATUS_OK && created_id)
        *created_id = harness_fmt(&arena, "%s", resp->profile->customer_id);
    return s;
}

/* A status with its message, checked in one line. */
#define EXPECT(status, want, details, needle)                                                      \
    CHECK((status) == (want) && strstr(details, needle) != NULL,                                   \
          "expected %s with \"%s\", got %s: %s", cxm_status_name(want), needle,                    \
          cxm_status_name(status), details)

/* ---- config: start-up refuses what cannot work (exit 2) ---- */

static int run_cxmd(const char *binary, const char *flags)
{
    char *cmd = harness_fmt(&arena, "'%s' --listen 127.0.0.1:0 --data '%s' %s 2>/dev/null", binary,
                            path_in("data"), flags);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void case_config(const char *binary)
{
    CHECK(run_cxmd(binary, "--auth on") == 2, "--auth on without credentials starts");
    CHECK(run_cxmd(binary, harness_fmt(&arena, "--auth-jwt-key '%s'", path_in("hs.key"))) == 2,
          "a JWT key without --auth-jwt-alg starts");
    CHECK(run_cxmd(binary, harness_fmt(&arena, "--auth-jwt-key '%s' --auth-jwt-alg none",
                                       path_in("hs.key"))) == 2,
          "--auth-jwt-alg none starts");
    CHECK(run_cxmd(binary, "--rate-limit-rps 5") == 2, "a rate limit without auth starts");
    CHECK(run_cxmd(binary, "--auth-tokens /nonexistent/tokens") == 2, "a missing token file");
    CHECK(run_cxmd(binary, "--auth maybe") == 2, "--auth maybe starts");
}

/* ---- deny: every kind of refusal, and what passes ---- */

static grpc_status_code reflection_list(cxm_channel *ch)
{
    cxm_client_stream *s = NULL;
    CHECK(cxm_client_stream_open(ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 10000, &s) == 0,
          "reflection stream");
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "";
    uint8_t buf[64];
    size_t n = grpc__reflection__v1__server_reflection_request__pack(&req, buf);
    cxm_client_stream_send(s, buf, n);
    cxm_client_stream_close_send(s);
    uint8_t *msg;
    size_t len;
    while (cxm_client_stream_recv(s, &msg, &len) == 1)
        free(msg);
    cxm_client_result r = {0};
    cxm_client_stream_finish(s, &r);
    grpc_status_code st = r.status;
    cxm_client_result_dispose(&r);
    return st;
}

static void case_deny(test_server *srv)
{
    char d[512];
    cxm_channel *none = open_as(srv, NULL);
    cxm_channel *bad = open_as(srv, "not-a-real-token-0123456789");
    cxm_channel *reader = open_as(srv, TOK_READER);
    cxm_channel *front = open_as(srv, TOK_FRONTEND);
    cxm_channel *admin = open_as(srv, TOK_ADMIN);

    /* Health needs nothing; everything else needs a valid token. */
    cxm_client_result r = {0};
    CHECK(cxm_client_unary(none, "/grpc.health.v1.Health/Check", "", 0, 10000, &r) == 0 &&
              r.status == GRPC_STATUS_OK,
          "Health without a token: %s", r.details);
    cxm_client_result_dispose(&r);
    EXPECT(get_profile(none, "c1", d), GRPC_STATUS_UNAUTHENTICATED, d, "missing credentials");
    EXPECT(get_profile(bad, "c1", d), GRPC_STATUS_UNAUTHENTICATED, d, "not valid");
    CHECK(strstr(d, "not-a-real-token") == NULL, "the token is echoed: %s", d);
    CHECK(reflection_list(none) == GRPC_STATUS_UNAUTHENTICATED, "reflection without a token");
    CHECK(reflection_list(reader) == GRPC_STATUS_OK, "reflection with any token");
    /* An unknown method tells what is not served only to callers with credentials. */
    static const char *unknown = "/cxm.v1.ProfileService/NoSuchMethod";
    CHECK(cxm_client_unary(none, unknown, "", 0, 10000, &r) == 0 &&
              r.status == GRPC_STATUS_UNAUTHENTICATED,
          "an unknown method without a token: %d %s", (int)r.status, r.details);
    cxm_client_result_dispose(&r);
    CHECK(cxm_client_unary(reader, unknown, "", 0, 10000, &r) == 0 &&
              r.status == GRPC_STATUS_UNIMPLEMENTED,
          "an unknown method with a token: %d %s", (int)r.status, r.details);
    cxm_client_result_dispose(&r);

    /* JWTs: good, expired, for another audience, unsigned. */
    cxm_channel *j = open_as(srv, jwt(",\"scope\":\"profile:read\"", 600));
    EXPECT(get_profile(j, "c-none", d), GRPC_STATUS_NOT_FOUND, d, "");
    cxm_channel_close(j);
    j = open_as(srv, jwt(",\"scope\":\"profile:read\"", -3600));
    EXPECT(get_profile(j, "c-none", d), GRPC_STATUS_UNAUTHENTICATED, d, "expired");
    cxm_channel_close(j);
    char *other_aud = jwt_mint("HS256", "{\"alg\":\"HS256\"}",
                               harness_fmt(&arena, "{\"sub\":\"x\",\"aud\":\"other\",\"exp\":%lld}",
                                           (long long)time(NULL) + 600),
                               SECRET, strlen(SECRET), NULL);
    j = open_as(srv, other_aud);
    EXPECT(get_profile(j, "c-none", d), GRPC_STATUS_UNAUTHENTICATED, d, "audience");
    cxm_channel_close(j);
    free(other_aud);
    char *unsigned_tok =
        jwt_mint("none", "{\"alg\":\"none\"}",
                 harness_fmt(&arena, "{\"sub\":\"x\",\"aud\":\"cxm\",\"exp\":%lld}",
                             (long long)time(NULL) + 600),
                 NULL, 0, NULL);
    j = open_as(srv, unsigned_tok);
    EXPECT(get_profile(j, "c-none", d), GRPC_STATUS_UNAUTHENTICATED, d, "alg none");
    cxm_channel_close(j);
    free(unsigned_tok);

    /* Scopes: a reader cannot write; a frontend cannot call internal RPCs
     * nor another area's; admin can do all. */
    EXPECT(upsert(reader, NULL, "reader@example.com", d, NULL), GRPC_STATUS_PERMISSION_DENIED, d,
           "requires scope profile:write");
    char *id = NULL;
    EXPECT(upsert(front, NULL, "front@example.com", d, &id), GRPC_STATUS_OK, d, "");
    Cxm__V1__WriteTraitsRequest wt = CXM__V1__WRITE_TRAITS_REQUEST__INIT;
    wt.customer = harness_ref_id(&arena, id ? id : "c1");
    Cxm__V1__WriteTraitsResponse *wtr;
    EXPECT(pcall(front, "WriteTraits", &wt, &cxm__v1__write_traits_response__descriptor, &wtr, d),
           GRPC_STATUS_PERMISSION_DENIED, d, "requires scope internal");
    Cxm__V1__ResolveIdentitiesRequest ri = CXM__V1__RESOLVE_IDENTITIES_REQUEST__INIT;
    Cxm__V1__ResolveIdentitiesResponse *rir;
    EXPECT(pcall(front, "ResolveIdentities", &ri, &cxm__v1__resolve_identities_response__descriptor,
                 &rir, d),
           GRPC_STATUS_PERMISSION_DENIED, d, "requires scope internal");
    Cxm__V1__RecommendRequest rec = CXM__V1__RECOMMEND_REQUEST__INIT;
    Cxm__V1__RecommendResponse *recr;
    EXPECT(harness_call(front, "/cxm.v1.PersonalisationService/", "Recommend", &rec,
                        &cxm__v1__recommend_response__descriptor, &arena, &recr, d),
           GRPC_STATUS_PERMISSION_DENIED, d, "requires scope reco:read");
    EXPECT(get_profile(admin, id ? id : "c1", d), GRPC_STATUS_OK, d, "");
    Cxm__V1__GetBusStatusRequest bs = CXM__V1__GET_BUS_STATUS_REQUEST__INIT;
    Cxm__V1__GetBusStatusResponse *bsr;
    EXPECT(harness_call(front, "/cxm.v1.BusService/", "GetBusStatus", &bs,
                        &cxm__v1__get_bus_status_response__descriptor, &arena, &bsr, d),
           GRPC_STATUS_PERMISSION_DENIED, d, "requires scope admin");
    EXPECT(harness_call(admin, "/cxm.v1.BusService/", "GetBusStatus", &bs,
                        &cxm__v1__get_bus_status_response__descriptor, &arena, &bsr, d),
           GRPC_STATUS_OK, d, "");

    cxm_channel *chans[] = {none, bad, reader, front, admin};
    for (size_t i = 0; i < sizeof chans / sizeof chans[0]; i++)
        cxm_channel_close(chans[i]);
}

/* ---- audit: one line per write, with who, what, which customer, outcome ---- */

static size_t count_lines(const char *log, const char *a, const char *b, const char *c)
{
    size_t n = 0;
    for (const char *line = log; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *l = harness_fmt(&arena, "%.*s", (int)(len > 500 ? 500 : len), line);
        if (strstr(l, "\"event\":\"audit\"") && (!a || strstr(l, a)) && (!b || strstr(l, b)) &&
            (!c || strstr(l, c)))
            n++;
        line = end ? end + 1 : NULL;
    }
    return n;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void case_audit(test_server *srv)
{
    char d[512];
    cxm_channel *reader = open_as(srv, TOK_READER);
    cxm_channel *front = open_as(srv, TOK_FRONTEND);
    cxm_channel *admin = open_as(srv, TOK_ADMIN);
    char *id = NULL;
    EXPECT(upsert(front, NULL, "audit@example.com", d, &id), GRPC_STATUS_OK, d, "");
    CHECK(id != NULL, "no customer id");
    EXPECT(upsert(front, id, NULL, d, NULL), GRPC_STATUS_OK, d, "");
    EXPECT(upsert(reader, id, NULL, d, NULL), GRPC_STATUS_PERMISSION_DENIED, d, "profile:write");
    for (int i = 0; i < 3; i++)
        EXPECT(get_profile(reader, id, d), GRPC_STATUS_OK, d, "");
    Cxm__V1__DeleteProfileRequest del = CXM__V1__DELETE_PROFILE_REQUEST__INIT;
    del.customer = harness_ref_id(&arena, id);
    del.reason = "auth test erasure";
    Cxm__V1__DeleteProfileResponse *delr;
    EXPECT(pcall(admin, "DeleteProfile", &del, &cxm__v1__delete_profile_response__descriptor, &delr,
                 d),
           GRPC_STATUS_OK, d, "");
    /* The lines are written before the answers go out. */
    const char *log = read_all(srv->log_path);
    CHECK(log != NULL, "no log");
    const char *up = "method=/cxm.v1.ProfileService/UpsertProfile";
    CHECK(count_lines(log, up, NULL, NULL) == 3, "UpsertProfile audit lines: %zu",
          count_lines(log, up, NULL, NULL));
    CHECK(count_lines(log, up, "sub=frontend", "customer=- outcome=OK") == 1,
          "the first upsert (no customer id yet)");
    CHECK(count_lines(log, up, "sub=frontend", harness_fmt(&arena, "customer=%s outcome=OK", id)) ==
              1,
          "the second upsert, naming the customer");
    CHECK(count_lines(log, up, "sub=reader", "outcome=PERMISSION_DENIED") == 1,
          "the refused write is audited too");
    CHECK(count_lines(log, "method=/cxm.v1.ProfileService/GetProfile", NULL, NULL) == 0,
          "reads are not audited");
    CHECK(count_lines(log, "method=/cxm.v1.ProfileService/DeleteProfile", "sub=ops",
                      harness_fmt(&arena, "customer=%s outcome=OK", id)) == 1,
          "the erasure is audited");
    const char *toks[] = {TOK_FRONTEND, TOK_READER, TOK_INTERNAL, TOK_ADMIN, "Bearer"};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++)
        CHECK(strstr(log, toks[i]) == NULL, "the log holds %s", toks[i]);
    cxm_channel_close(reader);
    cxm_channel_close(front);
    cxm_channel_close(admin);
}

/* ---- rate: RESOURCE_EXHAUSTED with a retry hint in trailing metadata ---- */

/* GetProfile by hand on gRPC core, to read the trailing metadata. Returns
 * the status; *retry_ms is retry-after-ms, or -1 when absent. */
static grpc_status_code raw_get(cxm_channel *ch, const char *token, int64_t *retry_ms)
{
    Cxm__V1__GetProfileRequest req = CXM__V1__GET_PROFILE_REQUEST__INIT;
    req.customer = harness_ref_id(&arena, "c-rate");
    uint8_t buf[128];
    size_t n = cxm__v1__get_profile_request__pack(&req, buf);
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_static_string(PROFILE "GetProfile");
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(10000, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(cxm_channel_raw(ch), NULL, GRPC_PROPAGATE_DEFAULTS,
                                               cq, method, NULL, deadline, NULL);
    grpc_metadata auth = {
        .key = grpc_slice_from_static_string("authorization"),
        .value = grpc_slice_from_copied_string(harness_fmt(&arena, "Bearer %s", token))};
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_byte_buffer *resp = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = 1;
    ops[0].data.send_initial_metadata.metadata = &auth;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    CHECK(grpc_call_start_batch(call, ops, 6, call, NULL) == GRPC_CALL_OK, "start batch");
    grpc_completion_queue_pluck(cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    *retry_ms = -1;
    for (size_t i = 0; i < trailing.count; i++)
        if (grpc_slice_str_cmp(trailing.metadata[i].key, "retry-after-ms") == 0)
            *retry_ms = atoll(
                harness_fmt(&arena, "%.*s", (int)GRPC_SLICE_LENGTH(trailing.metadata[i].value),
                            (const char *)GRPC_SLICE_START_PTR(trailing.metadata[i].value)));
    if (status == GRPC_STATUS_RESOURCE_EXHAUSTED)
        CHECK(grpc_slice_str_cmp(details, "") != 0 &&
                  strstr(harness_fmt(&arena, "%.*s", (int)GRPC_SLICE_LENGTH(details),
                                     (const char *)GRPC_SLICE_START_PTR(details)),
                         "retry after") != NULL,
              "the message says when to retry");
    grpc_slice_unref(details);
    grpc_slice_unref(auth.value);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    if (resp)
        grpc_byte_buffer_destroy(resp);
    grpc_byte_buffer_destroy(bb);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return status;
}

static void case_rate(test_server *srv)
{
    cxm_channel *ch = open_as(srv, NULL);
    int64_t retry = -1;
    /* A burst of 3 at 2 per second: the first 3 pass, then the bucket is
     * empty for about half a second, far longer than 10 calls take. */
    int limited = 0, passed = 0;
    int64_t hint = -1;
    for (int i = 0; i < 10; i++) {
        grpc_status_code st = raw_get(ch, TOK_READER, &retry);
        if (st == GRPC_STATUS_RESOURCE_EXHAUSTED) {
            limited++;
            hint = retry;
        } else {
            CHECK(st == GRPC_STATUS_NOT_FOUND, "status %s", cxm_status_name(st));
            CHECK(limited == 0, "a call passed after the bucket ran dry");
            passed++;
        }
    }
    CHECK(passed >= 3 && limited >= 1, "passed %d, limited %d", passed, limited);
    CHECK(hint > 0 && hint <= 1000, "retry-after-ms %lld", (long long)hint);
    /* Another subject has a bucket of its own. */
    CHECK(raw_get(ch, TOK_FRONTEND, &retry) == GRPC_STATUS_NOT_FOUND, "another subject limited");
    /* After the hinted wait, the subject is served again. */
    usleep((useconds_t)(hint + 100) * 1000);
    CHECK(raw_get(ch, TOK_READER, &retry) == GRPC_STATUS_NOT_FOUND, "not served after the wait");
    /* Health is never limited. */
    for (int i = 0; i < 10; i++) {
        cxm_client_result r = {0};
        cxm_client_unary(ch, "/grpc.health.v1.Health/Check", "", 0, 10000, &r);
        CHECK(r.status == GRPC_STATUS_OK, "health: %s", r.details);
        cxm_client_result_dispose(&r);
    }
    cxm_channel_close(ch);
}

/* ---- internal: journey's resolver calls profile with its own token ---- */

static void case_internal(test_server *srv)
{
    char d[512];
    cxm_channel *front = open_as(srv, TOK_FRONTEND);
    cxm_channel *admin = open_as(srv, TOK_ADMIN);
    Cxm__V1__TouchpointEvent e = CXM__V1__TOUCHPOINT_EVENT__INIT;
    e.event_id = "ev-auth-1";
    e.customer = harness_ref_identity(&arena, ANON, "anon-auth-1");
    e.touchpoint = "home";
    e.channel = CXM__V1__CHANNEL__CHANNEL_WEB;
    e.event_type = "page_view";
    e.occurred_at_unix_ms = harness_wall_ms() - 1000;
    Cxm__V1__TouchpointEvent *evs[] = {&e};
    Cxm__V1__TrackRequest req = CXM__V1__TRACK_REQUEST__INIT;
    req.events = evs;
    req.n_events = 1;
    Cxm__V1__TrackResponse *resp = NULL;
    EXPECT(harness_call(front, "/cxm.v1.JourneyService/", "Track", &req,
                        &cxm__v1__track_response__descriptor, &arena, &resp, d),
           GRPC_STATUS_OK, d, "");
    CHECK(resp && resp->accepted == 1 && resp->n_rejected == 0, "Track: accepted %u, rejected %zu",
          resp ? resp->accepted : 0, resp ? resp->n_rejected : 0);
    /* The resolver (in the background, after the acknowledgement) created
     * the customer through ProfileService with the internal token, and
     * that call was audited under its subject. */
    Cxm__V1__ResolveIdentityRequest rr = CXM__V1__RESOLVE_IDENTITY_REQUEST__INIT;
    Cxm__V1__Identity ident = CXM__V1__IDENTITY__INIT;
    ident.type = ANON;
    ident.value = "anon-auth-1";
    rr.identity = &ident;
    Cxm__V1__ResolveIdentityResponse *rresp;
    grpc_status_code st = GRPC_STATUS_UNKNOWN;
    for (int i = 0; i < 200 && st != GRPC_STATUS_OK; i++) {
        st = pcall(admin, "ResolveIdentity", &rr, &cxm__v1__resolve_identity_response__descriptor,
                   &rresp, d);
        if (st != GRPC_STATUS_OK)
            usleep(50000);
    }
    EXPECT(st, GRPC_STATUS_OK, d, "");
    const char *log = read_all(srv->log_path);
    CHECK(count_lines(log, "method=/cxm.v1.ProfileService/ResolveIdentities", "sub=journey-svc",
                      "outcome=OK") >= 1,
          "no audit line of the resolver's call");
    CHECK(strstr(log, TOK_INTERNAL) == NULL, "the internal token is in the log");
    cxm_channel_close(front);
    cxm_channel_close(admin);
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: %s PATH_TO_CXMD CASE", argv[0]);
    cxm_arena_init(&arena, NULL, 0, 0);
    write_credentials();
    const char *which = argv[2];
    test_server srv = {.binary = argv[1]};
    if (strcmp(which, "config") == 0) {
        case_config(argv[1]); /* before any gRPC: it runs processes with system() */
    } else {
        static const char *const rate[] = {"--rate-limit-rps", "2", "--rate-limit-burst", "3",
                                           NULL};
        static const char *internal[] = {"--client-token-file", NULL, NULL};
        internal[1] = path_in("internal.tok");
        const char *const *more = strcmp(which, "rate") == 0       ? rate
                                  : strcmp(which, "internal") == 0 ? internal
                                                                   : NULL;
        start_auth(&srv, more);
        if (strcmp(which, "deny") == 0)
            case_deny(&srv);
        else if (strcmp(which, "audit") == 0)
            case_audit(&srv);
        else if (strcmp(which, "rate") == 0)
            case_rate(&srv);
        else if (strcmp(which, "internal") == 0)
            case_internal(&srv);
        else
            CHECK(false, "unknown case %s", which);
        int code = harness_stop(&srv, SIGTERM, 10000);
        CHECK(code == 0, "exit status %d after SIGTERM", code);
        harness_cleanup(&srv);
    }
    char *cmd = harness_fmt(&arena, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    printf("%s: ok\n", which);
    cxm_arena_dispose(&arena);
    return 0;
}
