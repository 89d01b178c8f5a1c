/*
 * test_svc.c - the service kit: field paths and messages, text/slug/page
 * checks, page tokens, comma lists, and write jobs on a real server and
 * store in this process (answered after the commit; a failed job or one
 * whose reply is over the message limit leaves no trace and is answered
 * with the right status), and the erasure cascade on a real store and
 * in-process bus (erase and ErasureCompleted in one transaction, retried
 * after a failure, an event without a receipt skipped).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "test_server.h"
#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/svc.h"
#include "cxm/v1/profile.pb-c.h"

#define LIMIT 4096 /* the test server's message limit */

static void test_paths_and_errors(void)
{
    cxm_svc_path p, q;
    CHECK_EQ_STR(cxm_svc_index(&p, "attributes", 3), "attributes[3]");
    CHECK_EQ_STR(cxm_svc_member(&q, p.s, "name"), "attributes[3].name");
    CHECK_EQ_STR(cxm_svc_member(&q, NULL, "name"), "name");
    char long_base[300];
    memset(long_base, 'a', sizeof long_base - 1);
    long_base[sizeof long_base - 1] = '\0';
    CHECK_EQ_INT(strlen(cxm_svc_member(&p, long_base, "x")), CXM_SVC_PATH_MAX - 1); /* cut */

    char err[CXM_SVC_ERR_MAX];
    CHECK_EQ_INT(cxm_svc_errf(err, CXM_EINVAL, "attributes[3].name", "must be %s", "short"),
                 CXM_EINVAL);
    CHECK_EQ_STR(err, "attributes[3].name: must be short");
    CHECK_EQ_INT(cxm_svc_errf(err, CXM_ESTALE, NULL, "no field"), CXM_ESTALE);
    CHECK_EQ_STR(err, "no field");
}

static void test_checks(void)
{
    CHECK(!cxm_svc_utf8_valid("\xc0\xaf", 2));                   /* overlong */
    CHECK(!cxm_svc_utf8_valid("\xed\xa0\x80", 3));               /* surrogate */
    CHECK(!cxm_svc_utf8_valid("\xf4\x90\x80\x80", 4));           /* past U+10FFFF */
    CHECK(!cxm_svc_utf8_valid("\xe2\x82", 2));                   /* cut short */
    CHECK(!cxm_svc_utf8_valid("a\0b", 3));                       /* NUL */
    CHECK(cxm_svc_utf8_valid("고객 경험", strlen("고객 경험"))); /* Korean */
    CHECK(cxm_svc_slug_valid("kakao_id") && cxm_svc_slug_valid("a.b-c_9"));
    CHECK(!cxm_svc_slug_valid("Kakao") && !cxm_svc_slug_valid("") && !cxm_svc_slug_valid(NULL));
    CHECK(!cxm_svc_slug_valid("a b") && !cxm_svc_slug_valid("é"));
    char slug[CXM_SVC_SLUG_MAX + 2];
    memset(slug, 'a', sizeof slug - 1);
    slug[sizeof slug - 1] = '\0';
    CHECK(!cxm_svc_slug_valid(slug));
    slug[CXM_SVC_SLUG_MAX] = '\0';
    CHECK(cxm_svc_slug_valid(slug));

    char err[CXM_SVC_ERR_MAX];
    CHECK_EQ_INT(cxm_svc_check_text(NULL, 0, 8, "reason", err), 0);
    CHECK_EQ_INT(cxm_svc_check_text(NULL, 1, 8, "reason", err), CXM_EINVAL);
    CHECK_EQ_STR(err, "reason: required");
    CHECK_EQ_INT(cxm_svc_check_text("123456789", 0, 8, "reason", err), CXM_EINVAL);
    CHECK_EQ_STR(err, "reason: at most 8 bytes (got 9)");
    CHECK_EQ_INT(cxm_svc_check_text("\xff", 0, 8, "source", err), CXM_EINVAL);
    CHECK_EQ_STR(err, "source: not valid UTF-8");
    CHECK_EQ_INT(cxm_svc_check_slug("Gold", "segment.segment_id", err), CXM_EINVAL);
    CHECK(strncmp(err, "segment.segment_id: must be [a-z0-9_.-]", 39) == 0);

    int limit = -1;
    CHECK_EQ_INT(cxm_svc_page_size(0, 50, 1000, &limit, err), 0);
    CHECK_EQ_INT(limit, 50);
    CHECK_EQ_INT(cxm_svc_page_size(5000, 50, 1000, &limit, err), 0);
    CHECK_EQ_INT(limit, 1000);
    CHECK_EQ_INT(cxm_svc_page_size(7, 50, 1000, &limit, err), 0);
    CHECK_EQ_INT(limit, 7);
    CHECK_EQ_INT(cxm_svc_page_size(-1, 50, 1000, &limit, err), CXM_EINVAL);
    CHECK_EQ_INT(limit, 7); /* untouched on failure */
    CHECK_EQ_STR(err, "page_size: must not be negative");
}

static void test_tokens(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__FieldCondition c1 = CXM__V1__FIELD_CONDITION__INIT, c2 = c1;
    c1.name = "tier";
    c2.name = "city";
    const ProtobufCMessage *one[] = {&c1.base, &c2.base}, *other[] = {&c2.base, &c1.base};
    uint64_t h = cxm_svc_hash_messages(&a, one, 2);
    CHECK(h != 0 && h == cxm_svc_hash_messages(&a, one, 2));
    CHECK(h != cxm_svc_hash_messages(&a, other, 2)); /* order is part of the filters */

    char err[CXM_SVC_ERR_MAX];
    const char *after = "x";
    CHECK_EQ_INT(cxm_svc_token_parse(NULL, h, &after, err), 0);
    CHECK_EQ_STR(after, "");
    char *tok = cxm_svc_token_make(&a, h, "c0123:rest", 5);
    CHECK_EQ_INT(cxm_svc_token_parse(tok, h, &after, err), 0);
    CHECK_EQ_STR(after, "c0123");
    CHECK_EQ_INT(cxm_svc_token_parse(tok, h + 1, &after, err), CXM_EINVAL);
    CHECK(strncmp(err, "page_token: ", 12) == 0);
    CHECK_EQ_INT(cxm_svc_token_parse("12:abc", h, &after, err), CXM_EINVAL);
    CHECK_EQ_INT(cxm_svc_token_parse("zzzzzzzzzzzzzzzz:abc", h, &after, err), CXM_EINVAL);
    /* FNV-1a: the empty input is the offset basis; one byte changes it. */
    CHECK(cxm_hash(CXM_HASH_INIT, "", 0) == CXM_HASH_INIT);
    CHECK(cxm_hash(CXM_HASH_INIT, "a", 1) == 0xaf63dc4c8601ec8cull);
    cxm_arena_dispose(&a);
}

static void test_split_and_sizes(void)
{
    char list[] = "crm_id,,email, ,phone";
    const char *out[4];
    size_t n = 99;
    CHECK_EQ_INT(cxm_svc_split(list, out, 4, &n), 0);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_STR(out[0], "crm_id");
    CHECK_EQ_STR(out[1], "email");
    CHECK_EQ_STR(out[2], " ");
    CHECK_EQ_STR(out[3], "phone");
    char three[] = "a,b,c";
    n = 99;
    CHECK_EQ_INT(cxm_svc_split(three, out, 2, &n), CXM_ETOOBIG);
    CHECK_EQ_INT(n, 99);
    char empty[] = "";
    CHECK_EQ_INT(cxm_svc_split(empty, out, 2, &n), 0);
    CHECK_EQ_INT(n, 0);

    CHECK_EQ_INT(cxm_svc_field_size(0), 2);
    CHECK_EQ_INT(cxm_svc_field_size(127), 129);
    CHECK_EQ_INT(cxm_svc_field_size(128), 131);
    Cxm__V1__Profile p = CXM__V1__PROFILE__INIT;
    p.customer_id = "c1";
    Cxm__V1__SearchProfilesResponse r = CXM__V1__SEARCH_PROFILES_RESPONSE__INIT;
    Cxm__V1__Profile *list1[] = {&p};
    r.profiles = list1;
    r.n_profiles = 1;
    CHECK_EQ_INT(protobuf_c_message_get_packed_size(&r.base),
                 cxm_svc_field_size(protobuf_c_message_get_packed_size(&p.base)));
}

/* ---- write jobs on a real server ---- */

typedef struct kit_svc {
    cxm_store *store;
    MDB_dbi dbi;
} kit_svc;

static kit_svc svc_state;

/* Put: stores merge_id -> reason and answers customer_id = reason, twice
 * when the reason starts with "double" (to make a reply over the limit). */
static int put_job(cxm_txn *t, cxm_svc_job *j)
{
    const kit_svc *ks = j->ctx;
    const Cxm__V1__UnmergeProfileRequest *req = j->req;
    int rc = cxm_txn_put(t, ks->dbi, req->merge_id, strlen(req->merge_id), req->reason,
                         strlen(req->reason), 0);
    if (rc != 0)
        return rc;
    if (strncmp(req->reason, "fail", 4) == 0) {
        cxm_svc_path f;
        return cxm_svc_errf(j->err, CXM_ESTALE, cxm_svc_index(&f, "items", 2), "refused after %s",
                            "writing");
    }
    Cxm__V1__ResolveIdentityResponse *resp =
        cxm_svc_response(j, &cxm__v1__resolve_identity_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    size_t n = strlen(req->reason), times = strncmp(req->reason, "double", 6) == 0 ? 2 : 1;
    char *text = cxm_arena_alloc(j->a, n * times + 1);
    if (!text)
        return CXM_ENOMEM;
    for (size_t i = 0; i < times; i++)
        memcpy(text + i * n, req->reason, n);
    text[n * times] = '\0';
    resp->customer_id = text;
    return 0;
}

static void on_put(cxm_call *call, const ProtobufCMessage *msg)
{
    const kit_svc *ks = cxm_call_service_ctx(call);
    cxm_svc_submit(call, ks->store, msg, put_job);
}

/* Get: the stored reason of merge_id, answered with cxm_call_reply. */
static void on_get(cxm_call *call, const ProtobufCMessage *msg)
{
    const kit_svc *ks = cxm_call_service_ctx(call);
    const Cxm__V1__UnmergeProfileRequest *req = (const void *)msg;
    cxm_txn *t;
    void *v = NULL;
    size_t n;
    int rc = cxm_store_read_begin(ks->store, &t);
    if (rc == 0) {
        rc = cxm_txn_get(t, ks->dbi, req->merge_id, strlen(req->merge_id), cxm_call_arena(call), &v,
                         &n);
        cxm_store_read_end(t);
    }
    char err[CXM_SVC_ERR_MAX] = "";
    if (rc == CXM_ENOTFOUND)
        cxm_svc_errf(err, rc, "merge_id", "nothing stored under \"%s\"", req->merge_id);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    Cxm__V1__ResolveIdentityResponse resp = CXM__V1__RESOLVE_IDENTITY_RESPONSE__INIT;
    resp.customer_id = v;
    cxm_call_reply(call, &resp.base);
}

static const cxm_method kit_methods[] = {
    {"Put", CXM_UNARY, &cxm__v1__unmerge_profile_request__descriptor, on_put},
    {"Get", CXM_UNARY, &cxm__v1__unmerge_profile_request__descriptor, on_get},
};

static cxm_service kit_service = {
    .name = "test.Kit", .methods = kit_methods, .nmethods = 2, .ctx = &svc_state};
static unit_server srv = {
    .opts = {.listen = "127.0.0.1:0", .workers = 2, .max_message_bytes = LIMIT},
    .service = &kit_service};

static grpc_status_code kit_call(cxm_channel *ch, const char *method, const char *key,
                                 const char *reason, cxm_arena *a, char **answer, char *details)
{
    Cxm__V1__UnmergeProfileRequest req = CXM__V1__UNMERGE_PROFILE_REQUEST__INIT;
    req.merge_id = (char *)key;
    req.reason = (char *)reason;
    char path[64];
    snprintf(path, sizeof path, "/test.Kit/%s", method);
    ProtobufCMessage *out = NULL;
    cxm_client_result r = {0};
    if (cxm_client_unary_pb(ch, path, &req.base, &cxm__v1__resolve_identity_response__descriptor, a,
                            10000, &out, &r) != 0)
        return GRPC_STATUS_UNKNOWN;
    grpc_status_code st = r.status;
    snprintf(details, 512, "%s", r.details ? r.details : "");
    *answer = out ? ((Cxm__V1__ResolveIdentityResponse *)out)->customer_id : NULL;
    cxm_client_result_dispose(&r);
    return st;
}

/* A value too large to be sent back, written behind the server's back. */
static int put_large(cxm_txn *t, void *user)
{
    (void)user;
    static char v[LIMIT + 100];
    memset(v, 'z', sizeof v);
    return cxm_txn_put(t, svc_state.dbi, "k5", 2, v, sizeof v, 0);
}

static void test_write_jobs(void)
{
    char dir[] = "/tmp/cxm-test-svc-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cxm_store_opts so = {.nosync = true};
    CHECK_EQ_INT(cxm_store_open(dir, &so, &svc_state.store), 0);
    CHECK_EQ_INT(cxm_store_dbi(svc_state.store, "kit.items", 0, &svc_state.dbi), 0);
    char details[512], *answer;
    cxm_channel *ch;
    CHECK_EQ_INT(unit_server_start(&srv, &ch), 0);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);

    /* Committed, then answered from the job's response. */
    CHECK_EQ_INT(kit_call(ch, "Put", "k1", "hello", &a, &answer, details), GRPC_STATUS_OK);
    CHECK_EQ_STR(answer, "hello");
    CHECK_EQ_INT(kit_call(ch, "Get", "k1", "", &a, &answer, details), GRPC_STATUS_OK);
    CHECK_EQ_STR(answer, "hello");

    /* A job failing after its write: its status and field path, no trace. */
    CHECK_EQ_INT(kit_call(ch, "Put", "k2", "fail now", &a, &answer, details),
                 GRPC_STATUS_FAILED_PRECONDITION);
    CHECK_EQ_STR(details, "test.Kit/Put: items[2]: refused after writing");
    CHECK_EQ_INT(kit_call(ch, "Get", "k2", "", &a, &answer, details), GRPC_STATUS_NOT_FOUND);
    CHECK_EQ_STR(details, "test.Kit/Get: merge_id: nothing stored under \"k2\"");

    /* A reply over the limit: refused before the commit, so nothing written. */
    char big[LIMIT * 3 / 4];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "double", 6);
    CHECK_EQ_INT(kit_call(ch, "Put", "k3", big, &a, &answer, details),
                 GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(strstr(details, "message limit of 4096 bytes") && strstr(details, "nothing was written"));
    CHECK_EQ_INT(kit_call(ch, "Get", "k3", "", &a, &answer, details), GRPC_STATUS_NOT_FOUND);
    /* The same size once is fine; a reply of it through cxm_call_reply too. */
    big[0] = 'y';
    CHECK_EQ_INT(kit_call(ch, "Put", "k4", big, &a, &answer, details), GRPC_STATUS_OK);
    CHECK_EQ_INT(kit_call(ch, "Get", "k4", "", &a, &answer, details), GRPC_STATUS_OK);
    CHECK_EQ_INT(strlen(answer), sizeof big - 1);
    /* A read whose reply is over the limit: RESOURCE_EXHAUSTED naming it. */
    CHECK_EQ_INT(cxm_store_write(svc_state.store, put_large, NULL), 0);
    CHECK_EQ_INT(kit_call(ch, "Get", "k5", "", &a, &answer, details),
                 GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(strstr(details, "the reply would take") && strstr(details, "limit of 4096 bytes"));

    cxm_arena_dispose(&a);
    cxm_channel_close(ch);
    unit_server_stop(&srv);
    cxm_store_close(svc_state.store);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

/* ---- the erasure cascade ---- */

static atomic_int erase_calls;
static char erased_id[32];
static size_t erased_merged;

/* Fails its first call (after the bus rolled nothing in yet), then erases
 * "one record per id". */
static int erase_fn(cxm_txn *txn, const char *customer_id, char *const *merged, size_t nmerged,
                    uint64_t *records, void *user)
{
    (void)txn;
    (void)merged;
    CHECK(user == &erase_calls);
    if (atomic_fetch_add(&erase_calls, 1) == 0)
        return CXM_EBUSY;
    snprintf(erased_id, sizeof erased_id, "%s", customer_id);
    erased_merged = nmerged;
    *records = 1 + nmerged;
    return 0;
}

static atomic_int completed;
static char got_service[32], got_receipt[32], got_customer[32];
static uint64_t got_records;

/* What the "audit" subscriber saw of journey's ErasureCompleted (copied:
 * the event is gone after apply). */
static int audit_fn(cxm_txn *txn, const Cxm__V1__Event *ev, void *user)
{
    (void)txn;
    (void)user;
    const Cxm__V1__ErasureCompleted *done = ev->erasure_completed;
    snprintf(got_service, sizeof got_service, "%s", done->service);
    snprintf(got_receipt, sizeof got_receipt, "%s", done->receipt_id);
    snprintf(got_customer, sizeof got_customer, "%s", ev->customer_id);
    got_records = done->records_erased;
    atomic_fetch_add(&completed, 1);
    return 0;
}

/* CustomerDeleted without a receipt (to be skipped), then one for c1. */
static int deleted_fn(cxm_txn *txn, void *user)
{
    static char *merged[] = {"c2", "c3"};
    Cxm__V1__CustomerDeleted bad = CXM__V1__CUSTOMER_DELETED__INIT, d = bad;
    d.receipt_id = "r1";
    d.merged_customer_ids = merged;
    d.n_merged_customer_ids = 2;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.customer_id = "c0";
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_DELETED;
    ev.customer_deleted = &bad;
    int rc = cxm_bus_emit(user, txn, &ev);
    ev = (Cxm__V1__Event)CXM__V1__EVENT__INIT;
    ev.customer_id = "c1";
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_DELETED;
    ev.customer_deleted = &d;
    return rc ? rc : cxm_bus_emit(user, txn, &ev);
}

static void test_erasure_cascade(void)
{
    char dir[] = "/tmp/cxm-test-svc-erasure-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cxm_store *st;
    cxm_bus *bus;
    cxm_bus_producer *profile;
    cxm_svc_erasure e;
    static const char *const completed_types[] = {"ErasureCompleted"};
    CHECK_EQ_INT(cxm_svc_erasure_subscribe(NULL, "journey", erase_fn, NULL, &e), CXM_EUNAVAIL);
    CHECK_EQ_INT(cxm_store_open(dir, &(cxm_store_opts){.nosync = true}, &st), 0);
    CHECK_EQ_INT(cxm_bus_create(st, NULL, &bus), 0);
    CHECK_EQ_INT(cxm_bus_producer_open(bus, "profile", &profile), 0);
    CHECK_EQ_INT(cxm_svc_erasure_subscribe(bus, "journey", erase_fn, &erase_calls, &e), 0);
    CHECK_EQ_INT(cxm_bus_subscribe(bus, "audit", "journey", completed_types, 1, audit_fn, NULL), 0);
    CHECK_EQ_INT(cxm_bus_start(bus), 0);
    CHECK_EQ_INT(cxm_store_write(st, deleted_fn, profile), 0);
    for (int i = 0; i < 300 && atomic_load(&completed) == 0; i++)
        usleep(10000); /* the retry comes after 0.1 s */
    usleep(100000);    /* time for a second, wrong, answer */
    CHECK_EQ_INT(atomic_load(&completed), 1);
    CHECK_EQ_INT(atomic_load(&erase_calls), 2); /* failed once, then erased; c0 skipped */
    CHECK_EQ_STR(erased_id, "c1");
    CHECK_EQ_INT(erased_merged, 2);
    CHECK_EQ_STR(got_service, "journey");
    CHECK_EQ_STR(got_receipt, "r1");
    CHECK_EQ_STR(got_customer, "c1");
    CHECK_EQ_INT(got_records, 3);
    cxm_bus_destroy(bus);
    cxm_store_close(st);
    char cmd[80];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
    test_paths_and_errors();
    test_checks();
    test_tokens();
    test_split_and_sizes();
    test_write_jobs();
    test_erasure_cascade();
    return check_report();
}
