/*
 * test_resolve.c - the shared resolver (cxm/resolve.h) against the real
 * cxmd's ProfileService/ResolveIdentities: batches create and cache, links
 * merge profiles, unknown customers are per-item NOT_FOUND, a profile
 * service that is down is CXM_EUNAVAIL and works again once restarted, and
 * 10,000 identities resolve well under a second. The resolve queue
 * (cxm_resolve_queue_*) behind a real server of this process: calls that
 * wait together share one batch, a call of several refs gets each answer,
 * stopping answers the calls still waiting, and profile down is UNAVAILABLE.
 *
 *   test_resolve PATH_TO_CXMD CASE
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/ident.h"
#include "cxm/resolve.h"
#include "cxm/svc.h"
#include "cxm/v1/profile.pb-c.h"
#include "../unit/test_server.h"
#include "harness.h"

#define SVC "/cxm.v1.ProfileService/"
#define EMAIL CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL
#define ANON CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_ANONYMOUS_ID
#define CRM CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID

static cxm_arena arena; /* everything of the running case; freed at exit */

static grpc_status_code call(cxm_channel *ch, const char *method, const void *req,
                             const ProtobufCMessageDescriptor *resp_desc, void *resp, char *details)
{
    return harness_call(ch, SVC, method, req, resp_desc, &arena, resp, details);
}

/* A normalised identity, as the resolver's callers hand them over. */
static Cxm__V1__Identity *ident(Cxm__V1__IdentityType type, const char *value)
{
    Cxm__V1__Identity *id = cxm_arena_alloc(&arena, sizeof *id);
    cxm__v1__identity__init(id);
    id->type = type;
    id->value = (char *)value;
    char err[CXM_SVC_ERR_MAX];
    CHECK(cxm_ident_check(NULL, &arena, id, "identity", err) == 0, "%s", err);
    return id;
}

static Cxm__V1__CustomerRef *by_identity(Cxm__V1__Identity *id)
{
    Cxm__V1__CustomerRef *ref = cxm_arena_alloc(&arena, sizeof *ref);
    cxm__v1__customer_ref__init(ref);
    ref->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    ref->identity = id;
    return ref;
}

static Cxm__V1__CustomerRef *by_id(const char *customer_id)
{
    Cxm__V1__CustomerRef *ref = cxm_arena_alloc(&arena, sizeof *ref);
    cxm__v1__customer_ref__init(ref);
    ref->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref->customer_id = (char *)customer_id;
    return ref;
}

static const char *target_of(void *ctx)
{
    return ((test_server *)ctx)->target;
}

/* A resolver following srv across restarts (the port changes). */
static cxm_resolver *open_resolver(test_server *srv, int64_t timeout_ms)
{
    cxm_resolver_opts o = {
        .addr_fn = target_of, .addr_ctx = srv, .source = "journey", .timeout_ms = timeout_ms};
    cxm_resolver *r = NULL;
    CHECK(cxm_resolver_open(&o, &r) == 0, "resolver: %s", cxm_resolver_last_error());
    return r;
}

static void resolve_ok(cxm_resolver *r, cxm_resolve_item *items, size_t n)
{
    int rc = cxm_resolver_resolve(r, items, n, &arena);
    CHECK(rc == 0, "resolve: %s: %s", cxm_strerror(rc), cxm_resolver_last_error());
}

static uint64_t rpcs(cxm_resolver *r)
{
    cxm_resolver_stats st;
    cxm_resolver_stats_get(r, &st);
    return st.rpcs;
}

/* New identities get profiles; one identity twice in a batch gets one; the
 * second call is answered from the cache without an RPC. */
static void case_create(cxm_channel *ch, test_server *srv)
{
    cxm_resolver *r = open_resolver(srv, 0);
    cxm_resolve_item it[3] = {{.customer = by_identity(ident(EMAIL, "Ann@Example.com"))},
                              {.customer = by_identity(ident(ANON, "anon-1"))},
                              {.customer = by_identity(ident(EMAIL, "ann@example.com"))}};
    resolve_ok(r, it, 3);
    for (int i = 0; i < 3; i++)
        CHECK(it[i].rc == 0 && it[i].customer_id && it[i].customer_id[0] == 'c', "item %d: %s", i,
              it[i].why ? it[i].why : "");
    CHECK(strcmp(it[0].customer_id, it[2].customer_id) == 0, "one identity, one customer");
    CHECK(strcmp(it[0].customer_id, it[1].customer_id) != 0, "two identities, two customers");
    CHECK(rpcs(r) == 1, "one batch RPC, not %llu", (unsigned long long)rpcs(r));

    const char *first = it[0].customer_id;
    resolve_ok(r, it, 3);
    CHECK(rpcs(r) == 1, "answered from the cache: %llu RPCs", (unsigned long long)rpcs(r));
    CHECK(strcmp(it[0].customer_id, first) == 0, "the same answer from the cache");
    cxm_resolver_stats st;
    cxm_resolver_stats_get(r, &st);
    CHECK(st.hits == 3 && st.misses == 3, "hits %llu misses %llu", (unsigned long long)st.hits,
          (unsigned long long)st.misses);

    /* A customer id is resolved (and cached) too. */
    cxm_resolve_item byid = {.customer = by_id(first)};
    resolve_ok(r, &byid, 1);
    CHECK(byid.rc == 0 && strcmp(byid.customer_id, first) == 0, "by customer id");

    /* After invalidation the profile service answers again, the same. */
    cxm_resolver_invalidate(r);
    resolve_ok(r, it, 3);
    CHECK(rpcs(r) == 3 && strcmp(it[0].customer_id, first) == 0, "same customer after invalidate");

    /* The service's answer to a profile that cannot exist: per item. */
    Cxm__V1__ResolveIdentitiesRequest req = CXM__V1__RESOLVE_IDENTITIES_REQUEST__INIT;
    Cxm__V1__ResolveIdentitiesItem a = CXM__V1__RESOLVE_IDENTITIES_ITEM__INIT,
                                   b = CXM__V1__RESOLVE_IDENTITIES_ITEM__INIT;
    Cxm__V1__ResolveIdentitiesItem *items[] = {&a, &b};
    Cxm__V1__Identity bad = CXM__V1__IDENTITY__INIT;
    bad.type = EMAIL;
    bad.value = "not-an-email";
    a.customer = by_identity(&bad);
    a.create_if_missing = true;
    b.customer = by_identity(ident(ANON, "anon-2"));
    b.create_if_missing = true;
    req.items = items;
    req.n_items = 2;
    Cxm__V1__ResolveIdentitiesResponse *resp = NULL;
    CALL_OK(ch, ResolveIdentities, req, cxm__v1__resolve_identities_response, resp);
    CHECK(resp->n_results == 2, "two results");
    CHECK(resp->results[0]->code == GRPC_STATUS_INVALID_ARGUMENT &&
              strstr(resp->results[0]->message, "items[0].customer.identity.value"),
          "bad item: %u %s", resp->results[0]->code, resp->results[0]->message);
    CHECK(resp->results[1]->code == 0 && resp->results[1]->created, "good item created");

    /* A later item sees an earlier one: the new email's profile is found
     * through the link and takes the anonymous id, without a merge. */
    Cxm__V1__Identity *links[] = {ident(EMAIL, "new@example.com")};
    a.customer = by_identity(links[0]);
    b.customer = by_identity(ident(ANON, "anon-3"));
    b.link_identities = links;
    b.n_link_identities = 1;
    CALL_OK(ch, ResolveIdentities, req, cxm__v1__resolve_identities_response, resp);
    CHECK(resp->results[0]->created && !resp->results[1]->created &&
              strcmp(resp->results[0]->customer_id, resp->results[1]->customer_id) == 0,
          "one customer for the email and its anonymous id");
    Cxm__V1__GetProfileRequest get = CXM__V1__GET_PROFILE_REQUEST__INIT;
    get.customer = by_identity(b.customer->identity);
    Cxm__V1__GetProfileResponse *p = NULL;
    CALL_OK(ch, GetProfile, get, cxm__v1__get_profile_response, p);
    CHECK(p->profile->n_merges == 0 && p->profile->n_identities == 3, "no merge: %zu identities",
          p->profile->n_identities);

    /* The batch as a whole: no items, or too many. */
    char d[512];
    req.n_items = 0;
    CHECK(call(ch, "ResolveIdentities", &req, &cxm__v1__resolve_identities_response__descriptor,
               NULL, d) == GRPC_STATUS_INVALID_ARGUMENT &&
              strstr(d, "items"),
          "no items: %s", d);
    static Cxm__V1__ResolveIdentitiesItem *many[1001];
    for (size_t i = 0; i < 1001; i++)
        many[i] = &a;
    req.items = many;
    req.n_items = 1001;
    CHECK(call(ch, "ResolveIdentities", &req, &cxm__v1__resolve_identities_response__descriptor,
               NULL, d) == GRPC_STATUS_INVALID_ARGUMENT &&
              strstr(d, "1 to 1000"),
          "too many items: %s", d);
    cxm_resolver_close(r);
}

/* A cache of 4 entries stays correct as the clock evicts. */
static void case_evict(cxm_channel *ch, test_server *srv)
{
    cxm_resolver_opts o = {.addr_fn = target_of, .addr_ctx = srv, .cache_entries = 4};
    cxm_resolver *r = NULL;
    CHECK(cxm_resolver_open(&o, &r) == 0, "resolver");
    enum { N = 12 };
    cxm_resolve_item it[N];
    const char *first[N];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < N; i++) {
            char v[32];
            snprintf(v, sizeof v, "evict-%d", i);
            it[i] = (cxm_resolve_item){
                .customer = by_identity(ident(ANON, cxm_arena_strndup(&arena, v, strlen(v))))};
            resolve_ok(r, &it[i], 1);
            if (round == 0)
                first[i] = it[i].customer_id;
            CHECK(strcmp(it[i].customer_id, first[i]) == 0, "round %d item %d", round, i);
        }
    cxm_resolver_stats st;
    cxm_resolver_stats_get(r, &st);
    CHECK(st.misses > N && st.hits + st.misses == 3 * N, "evictions: hits %llu misses %llu",
          (unsigned long long)st.hits, (unsigned long long)st.misses);
    /* The last four are still cached. */
    uint64_t before = rpcs(r);
    resolve_ok(r, &it[N - 1], 1);
    CHECK(rpcs(r) == before, "the newest entry is cached");
    cxm_resolver_opts none = {0};
    CHECK(cxm_resolver_open(&none, &r) == CXM_EINVAL, "an address is required");
    cxm_resolver_close(r);
}

/* A login links an anonymous history to a known customer: profiles merge. */
static void case_links(cxm_channel *ch, test_server *srv)
{
    cxm_resolver *r = open_resolver(srv, 0);
    Cxm__V1__Identity *anon = ident(ANON, "cookie-77"), *email = ident(EMAIL, "bo@example.com");
    cxm_resolve_item it[2] = {{.customer = by_identity(anon)}, {.customer = by_identity(email)}};
    resolve_ok(r, it, 2);
    const char *anon_id = it[0].customer_id, *email_id = it[1].customer_id;
    CHECK(strcmp(anon_id, email_id) != 0, "two customers before the login");

    Cxm__V1__Identity *links[] = {anon};
    cxm_resolve_item login = {.customer = by_identity(email), .links = links, .nlinks = 1};
    uint64_t before = rpcs(r);
    resolve_ok(r, &login, 1);
    CHECK(login.rc == 0 && strcmp(login.customer_id, email_id) == 0, "login: %s",
          login.why ? login.why : "");
    CHECK(rpcs(r) == before + 1, "the cached answers disagree: one RPC");

    Cxm__V1__GetProfileRequest get = CXM__V1__GET_PROFILE_REQUEST__INIT;
    get.customer = by_identity(anon);
    Cxm__V1__GetProfileResponse *p = NULL;
    CALL_OK(ch, GetProfile, get, cxm__v1__get_profile_response, p);
    CHECK(strcmp(p->profile->customer_id, email_id) == 0, "the anonymous id is the customer's");
    CHECK(p->profile->n_merges == 1 &&
              strcmp(p->profile->merges[0]->source_customer_id, anon_id) == 0,
          "one merge, of the anonymous profile");
    get.customer = by_id(anon_id);
    CALL_OK(ch, GetProfile, get, cxm__v1__get_profile_response, p);
    CHECK(p->redirected && strcmp(p->profile->customer_id, email_id) == 0, "old id redirected");

    /* Both now cached to one customer: no RPC. */
    resolve_ok(r, &login, 1);
    CHECK(rpcs(r) == before + 1, "login again answered from the cache");

    /* A link that cannot be made (a second CRM id) leaves the item resolved. */
    Cxm__V1__Identity *crm1 = ident(CRM, "crm-1"), *crm2 = ident(CRM, "crm-2");
    Cxm__V1__Identity *l1[] = {crm1}, *l2[] = {crm2};
    cxm_resolve_item c1 = {.customer = by_identity(email), .links = l1, .nlinks = 1};
    resolve_ok(r, &c1, 1);
    cxm_resolve_item c2 = {.customer = by_identity(email), .links = l2, .nlinks = 1};
    resolve_ok(r, &c2, 1);
    CHECK(c2.rc == 0 && strcmp(c2.customer_id, email_id) == 0, "item resolved despite the link");
    Cxm__V1__ResolveIdentityRequest rr = CXM__V1__RESOLVE_IDENTITY_REQUEST__INIT;
    rr.identity = crm2;
    char d[512];
    CHECK(call(ch, "ResolveIdentity", &rr, &cxm__v1__resolve_identity_response__descriptor, NULL,
               d) == GRPC_STATUS_NOT_FOUND,
          "crm-2 was not linked: %s", d);
    resolve_ok(r, &c2, 1); /* not cached: asks again */
    CHECK(rpcs(r) == before + 4, "an unlinked identity is never cached");
    cxm_resolver_close(r);
}

/* Unknown customer ids and, without creating, unknown identities. */
static void case_notfound(cxm_channel *ch, test_server *srv)
{
    cxm_resolver *r = open_resolver(srv, 0);
    Cxm__V1__Identity *links[] = {ident(ANON, "x-1")};
    cxm_resolve_item it[4] = {
        {.customer = by_id("c00000000deadbeef")},
        {.customer = by_identity(ident(EMAIL, "nobody@example.com")), .no_create = true},
        {.customer = by_identity(ident(EMAIL, "some@example.com"))},
        {.customer = by_identity(ident(EMAIL, "x@example.com")),
         .links = links,
         .nlinks = 1,
         .no_create = true},
    };
    resolve_ok(r, it, 4);
    CHECK(it[0].rc == CXM_ENOTFOUND && strstr(it[0].why, "c00000000deadbeef"), "unknown id: %s",
          it[0].why ? it[0].why : "");
    CHECK(it[1].rc == CXM_ENOTFOUND && !it[1].customer_id, "unknown identity, no create");
    CHECK(it[2].rc == 0, "the neighbour resolves");
    CHECK(it[3].rc == CXM_EINVAL, "links need a creating resolve");
    /* Ids and values over 256 bytes are refused before the cache (which
     * would cut their keys and confuse two alike up to the cut). */
    char long_id[300];
    memset(long_id, 'c', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    Cxm__V1__Identity long_link = CXM__V1__IDENTITY__INIT;
    long_link.type = ANON;
    long_link.value = long_id;
    Cxm__V1__Identity *long_links[] = {&long_link};
    cxm_resolve_item over[2] = {
        {.customer = by_id(long_id)},
        {.customer = by_identity(ident(EMAIL, "some@example.com")),
         .links = long_links,
         .nlinks = 1},
    };
    uint64_t before = rpcs(r);
    resolve_ok(r, over, 2);
    CHECK(over[0].rc == CXM_EINVAL && strstr(over[0].why, "customer"), "long id: %s",
          over[0].why ? over[0].why : "");
    CHECK(over[1].rc == CXM_EINVAL && strstr(over[1].why, "links"), "long link: %s",
          over[1].why ? over[1].why : "");
    CHECK(rpcs(r) == before, "refused without an RPC");
    resolve_ok(r, it, 2);
    CHECK(rpcs(r) == before + 1, "NOT_FOUND is never cached");
    /* The lookup created nothing. */
    Cxm__V1__GetProfileRequest get = CXM__V1__GET_PROFILE_REQUEST__INIT;
    get.customer = by_identity(ident(EMAIL, "nobody@example.com"));
    char d[512];
    CHECK(call(ch, "GetProfile", &get, &cxm__v1__get_profile_response__descriptor, NULL, d) ==
              GRPC_STATUS_NOT_FOUND,
          "no profile made: %s", d);
    cxm_resolver_close(r);
}

/* Profile down: CXM_EUNAVAIL, nothing cached; after the restart it works. */
static void case_unavailable(cxm_channel *ch, test_server *srv)
{
    cxm_resolver *r = open_resolver(srv, 1000);
    cxm_resolve_item known = {.customer = by_identity(ident(EMAIL, "kept@example.com"))};
    resolve_ok(r, &known, 1);
    const char *kept = known.customer_id;

    CHECK(harness_stop(srv, SIGTERM, 10000) == 0, "clean stop");
    cxm_resolve_item fresh = {.customer = by_identity(ident(EMAIL, "late@example.com"))};
    int rc = cxm_resolver_resolve(r, &fresh, 1, &arena);
    CHECK(rc == CXM_EUNAVAIL, "profile down: %s", cxm_strerror(rc));
    CHECK(*cxm_resolver_last_error(), "a sentence says why");
    printf("down: %s\n", cxm_resolver_last_error());
    resolve_ok(r, &known, 1); /* the cache still answers what it knows */

    harness_restart(srv);
    resolve_ok(r, &fresh, 1);
    CHECK(fresh.rc == 0 && fresh.customer_id, "resolved after the restart");
    cxm_resolver_invalidate(r);
    resolve_ok(r, &known, 1);
    CHECK(strcmp(known.customer_id, kept) == 0, "the same customer after the restart");
    cxm_resolver_stats st;
    cxm_resolver_stats_get(r, &st);
    CHECK(st.failures == 1, "one failed RPC, %llu", (unsigned long long)st.failures);
    cxm_resolver_close(r);
}

#if defined(__SANITIZE_ADDRESS__)
#define RATE_BUDGET_MS 10000.0 /* the sanitizers slow both sides several times */
#else
#define RATE_BUDGET_MS 1000.0
#endif

/* 10,000 new identities (10 batch RPCs), then again from the cache. */
static void case_rate(cxm_channel *ch, test_server *srv)
{
    enum { N = 10000 };
    cxm_resolver *r = open_resolver(srv, 10000);
    cxm_resolve_item *it = cxm_arena_calloc(&arena, N, sizeof *it);
    for (int i = 0; i < N; i++) {
        char v[32];
        snprintf(v, sizeof v, "anon-%06d", i);
        it[i].customer = by_identity(ident(ANON, cxm_arena_strndup(&arena, v, strlen(v))));
    }
    double t0 = test_now_ms();
    resolve_ok(r, it, N);
    double cold = test_now_ms() - t0;
    t0 = test_now_ms();
    resolve_ok(r, it, N);
    double warm = test_now_ms() - t0;
    cxm_resolver_invalidate(r);
    t0 = test_now_ms();
    resolve_ok(r, it, N);
    double known = test_now_ms() - t0;
    for (int i = 0; i < N; i++)
        CHECK(it[i].rc == 0 && it[i].customer_id, "item %d", i);
    printf("resolve 10k: new %.0f ms (%.0f/s), cached %.1f ms (%.0f/s), known but uncached "
           "%.0f ms (%.0f/s)\n",
           cold, N / cold * 1000, warm, N / warm * 1000, known, N / known * 1000);
    CHECK(cold < RATE_BUDGET_MS, "10k new identities took %.0f ms", cold);
    CHECK(known < RATE_BUDGET_MS, "10k known identities took %.0f ms", known);
    CHECK(rpcs(r) == 20, "10 batches each time the cache did not know: %llu",
          (unsigned long long)rpcs(r));
    cxm_resolver_close(r);
}

/* ---- the resolve queue behind a server of this process ---- */

#define QSVC "/cxm.test.ResolveQueue/"

/* The test service: GetProfile resolves one ref through
 * cxm_resolve_queue_push, ResolveIdentities several through push_many. */
typedef struct queue_svc {
    cxm_resolve_queue *q;
    pthread_mutex_t lock; /* the queue resolves under it: held = calls pile up */
} queue_svc;

static void one_done(cxm_call *call, void *in, const cxm_resolve_item *it, int rc, void *user)
{
    (void)in;
    (void)user;
    char err[CXM_SVC_ERR_MAX] = "";
    if (rc == 0 && it->rc != 0)
        rc = cxm_svc_errf(err, it->rc, "customer", "%s", it->why ? it->why : "");
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    Cxm__V1__Profile p = CXM__V1__PROFILE__INIT;
    p.customer_id = (char *)it->customer_id;
    Cxm__V1__GetProfileResponse resp = CXM__V1__GET_PROFILE_RESPONSE__INIT;
    resp.profile = &p;
    cxm_call_reply(call, &resp.base);
}

static void on_one(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__GetProfileRequest *req = (const Cxm__V1__GetProfileRequest *)msg;
    queue_svc *qs = cxm_call_service_ctx(call);
    int rc = cxm_resolve_queue_push(qs->q, call, req->customer, false, NULL, one_done, NULL);
    if (rc != 0)
        cxm_svc_finish(call, rc, "");
}

static void many_done(cxm_call *call, void *in, cxm_resolve_item *items, size_t n, int rc,
                      void *user)
{
    (void)in;
    (void)user;
    cxm_arena *a = cxm_call_arena(call);
    Cxm__V1__ResolveIdentitiesResult **res = cxm_arena_calloc(a, n + 1, sizeof *res);
    if (rc == 0 && !res)
        rc = CXM_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!(res[i] = cxm_arena_calloc(a, 1, sizeof *res[i])))
            return cxm_svc_finish(call, CXM_ENOMEM, "");
        cxm__v1__resolve_identities_result__init(res[i]);
        res[i]->customer_id = (char *)(items[i].customer_id ? items[i].customer_id : "");
        res[i]->code = items[i].rc ? (uint32_t)cxm_err_status(items[i].rc) : 0;
    }
    if (rc != 0)
        return cxm_svc_finish(call, rc, "");
    Cxm__V1__ResolveIdentitiesResponse resp = CXM__V1__RESOLVE_IDENTITIES_RESPONSE__INIT;
    resp.results = res;
    resp.n_results = n;
    cxm_call_reply(call, &resp.base);
}

static void on_many(cxm_call *call, const ProtobufCMessage *msg)
{
    const Cxm__V1__ResolveIdentitiesRequest *req = (const Cxm__V1__ResolveIdentitiesRequest *)msg;
    queue_svc *qs = cxm_call_service_ctx(call);
    cxm_resolve_item *items =
        cxm_arena_calloc(cxm_call_arena(call), req->n_items + 1, sizeof *items);
    for (size_t i = 0; items && i < req->n_items; i++)
        items[i] = (cxm_resolve_item){.customer = req->items[i]->customer,
                                      .no_create = !req->items[i]->create_if_missing};
    int rc =
        items ? cxm_resolve_queue_push_many(qs->q, call, items, req->n_items, NULL, many_done, NULL)
              : CXM_ENOMEM;
    if (rc != 0)
        cxm_svc_finish(call, rc, "");
}

static const cxm_method queue_methods[] = {
    {"GetProfile", CXM_UNARY, &cxm__v1__get_profile_request__descriptor, on_one, NULL, NULL},
    {"ResolveIdentities", CXM_UNARY, &cxm__v1__resolve_identities_request__descriptor, on_many,
     NULL, NULL},
};

static queue_svc qsvc;
static cxm_service queue_service = {
    .name = "cxm.test.ResolveQueue", .methods = queue_methods, .nmethods = 2, .ctx = &qsvc};
static unit_server qserver = {.opts = {.listen = "127.0.0.1:0", .workers = 2},
                              .service = &queue_service};

/* The queue's server on its own resolver (returned), and a channel to it. */
static cxm_resolver *queue_up(test_server *srv, cxm_channel **qch)
{
    cxm_resolver *r = open_resolver(srv, 2000);
    pthread_mutex_init(&qsvc.lock, NULL);
    CHECK(cxm_resolve_queue_start(r, &qsvc.lock, &qsvc.q) == 0, "queue start");
    CHECK(unit_server_start(&qserver, qch) == 0, "the queue's server starts");
    return r;
}

static void queue_down(cxm_resolver *r, cxm_channel *qch)
{
    cxm_resolve_queue_stop(qsvc.q);
    cxm_channel_close(qch);
    unit_server_stop(&qserver);
    cxm_resolver_close(r);
    pthread_mutex_destroy(&qsvc.lock);
}

/* One client call of a thread: `n` refs (1: GetProfile, else
 * ResolveIdentities with the last ref an unknown identity, not created). */
typedef struct qcall {
    cxm_channel *ch;
    const char *emails[3];
    size_t n;
    grpc_status_code status;
    char details[512];
    const char *ids[3]; /* answers, in the thread's arena */
    uint32_t codes[3];
    cxm_arena a;
} qcall;

static void *qcall_main(void *arg)
{
    qcall *c = arg;
    cxm_arena_init(&c->a, NULL, 0, 0);
    Cxm__V1__CustomerRef refs[3];
    Cxm__V1__Identity ids[3];
    for (size_t i = 0; i < c->n; i++) {
        cxm__v1__identity__init(&ids[i]);
        ids[i].type = EMAIL;
        ids[i].value = (char *)c->emails[i];
        cxm__v1__customer_ref__init(&refs[i]);
        refs[i].key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
        refs[i].identity = &ids[i];
    }
    if (c->n == 1) {
        Cxm__V1__GetProfileRequest req = CXM__V1__GET_PROFILE_REQUEST__INIT;
        req.customer = &refs[0];
        Cxm__V1__GetProfileResponse *resp = NULL;
        c->status =
            harness_call(c->ch, QSVC, "GetProfile", &req,
                         &cxm__v1__get_profile_response__descriptor, &c->a, &resp, c->details);
        if (c->status == GRPC_STATUS_OK)
            c->ids[0] = resp->profile->customer_id;
        return NULL;
    }
    Cxm__V1__ResolveIdentitiesItem items[3], *pitems[3];
    for (size_t i = 0; i < c->n; i++) {
        cxm__v1__resolve_identities_item__init(&items[i]);
        items[i].customer = &refs[i];
        items[i].create_if_missing = i + 1 < c->n;
        pitems[i] = &items[i];
    }
    Cxm__V1__ResolveIdentitiesRequest req = CXM__V1__RESOLVE_IDENTITIES_REQUEST__INIT;
    req.items = pitems;
    req.n_items = c->n;
    Cxm__V1__ResolveIdentitiesResponse *resp = NULL;
    c->status =
        harness_call(c->ch, QSVC, "ResolveIdentities", &req,
                     &cxm__v1__resolve_identities_response__descriptor, &c->a, &resp, c->details);
    for (size_t i = 0; c->status == GRPC_STATUS_OK && i < resp->n_results && i < c->n; i++) {
        c->ids[i] = resp->results[i]->customer_id;
        c->codes[i] = resp->results[i]->code;
    }
    return NULL;
}

static const char *email(const char *fmt, int i)
{
    char v[64];
    snprintf(v, sizeof v, fmt, i);
    return cxm_arena_strndup(&arena, v, strlen(v));
}

/* calls[0..n) started on threads; with the queue's lock held by the
 * caller they wait together. */
static void start_calls(qcall *calls, pthread_t *th, int n, cxm_channel *qch)
{
    for (int i = 0; i < n; i++) {
        calls[i].ch = qch;
        calls[i].n = i % 2 ? 3 : 1;
        calls[i].emails[0] = email("q%d@example.com", i);
        calls[i].emails[1] = email("q%d-b@example.com", i);
        calls[i].emails[2] = email("nobody%d@example.com", i);
        CHECK(pthread_create(&th[i], NULL, qcall_main, &calls[i]) == 0, "thread");
    }
    usleep(500 * 1000); /* every call reaches the queue and waits */
}

/* What a resolver of its own says of email now (created: no). */
static const char *direct(cxm_resolver *r, const char *e)
{
    cxm_resolve_item it = {.customer = by_identity(ident(EMAIL, e)), .no_create = true};
    resolve_ok(r, &it, 1);
    CHECK(it.rc == 0, "%s is known: %s", e, it.why ? it.why : "");
    return it.customer_id;
}

static void check_calls(qcall *calls, pthread_t *th, int n, cxm_resolver *check)
{
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        qcall *c = &calls[i];
        CHECK(c->status == GRPC_STATUS_OK, "call %d: status %d: %s", i, c->status, c->details);
        size_t created = c->n == 1 ? 1 : c->n - 1; /* the last of several: never created */
        for (size_t k = 0; k < created; k++)
            CHECK(strcmp(c->ids[k], direct(check, c->emails[k])) == 0, "call %d item %zu", i, k);
        if (c->n == 3)
            CHECK(c->codes[2] == GRPC_STATUS_NOT_FOUND && !*c->ids[2],
                  "an unknown identity without create_if_missing: code %u", c->codes[2]);
        if (c->n == 3)
            CHECK(strcmp(c->ids[0], c->ids[1]) != 0, "two customers of one call");
        cxm_arena_dispose(&c->a);
    }
}

/* Calls waiting together share one batch (one RPC for all their refs), and
 * every ref gets its own answer. */
static void case_queue(cxm_channel *ch, test_server *srv)
{
    (void)ch;
    enum { N = 8 };
    cxm_channel *qch;
    cxm_resolver *r = queue_up(srv, &qch);
    cxm_resolver *check = open_resolver(srv, 2000);
    qcall calls[N] = {0};
    pthread_t th[N];
    pthread_mutex_lock(&qsvc.lock);
    start_calls(calls, th, N, qch);
    pthread_mutex_unlock(&qsvc.lock);
    check_calls(calls, th, N, check);
    /* At most the batch the thread took before the lock, then the rest. */
    CHECK(rpcs(r) <= 2, "%d calls waiting together took %llu RPCs", N, (unsigned long long)rpcs(r));
    printf("queue: %d calls (%d refs) in %llu resolve RPCs\n", N, N / 2 * 1 + N / 2 * 3,
           (unsigned long long)rpcs(r));
    cxm_resolver_close(check);
    queue_down(r, qch);
}

static void *stop_main(void *arg)
{
    (void)arg;
    cxm_resolve_queue_stop(qsvc.q);
    return NULL;
}

/* Stopping the queue answers the calls still waiting before it ends and
 * refuses new ones; with profile down a waiting call is UNAVAILABLE. */
static void case_queue_stop(cxm_channel *ch, test_server *srv)
{
    (void)ch;
    enum { N = 4 };
    cxm_channel *qch;
    cxm_resolver *r = queue_up(srv, &qch);
    qcall calls[N] = {0};
    pthread_t th[N], stop;
    pthread_mutex_lock(&qsvc.lock);
    start_calls(calls, th, N, qch);
    CHECK(pthread_create(&stop, NULL, stop_main, NULL) == 0, "stopper");
    usleep(200 * 1000); /* stopping, waiting for the calls it holds */
    qcall late = {.ch = qch, .n = 1, .emails = {"late@example.com"}};
    qcall_main(&late);
    CHECK(late.status == GRPC_STATUS_UNAVAILABLE, "a call while the queue stops: %d: %s",
          late.status, late.details);
    cxm_arena_dispose(&late.a);
    pthread_mutex_unlock(&qsvc.lock);
    pthread_join(stop, NULL);
    cxm_resolver *check = open_resolver(srv, 2000);
    check_calls(calls, th, N, check);
    cxm_resolver_close(check);
    /* A new queue on the same resolver, profile stopped. */
    CHECK(cxm_resolve_queue_start(r, NULL, &qsvc.q) == 0, "queue start, its own lock");
    CHECK(harness_stop(srv, SIGTERM, 10000) == 0, "clean stop");
    qcall down = {.ch = qch, .n = 1, .emails = {"down@example.com"}};
    qcall_main(&down);
    CHECK(down.status == GRPC_STATUS_UNAVAILABLE, "profile down: status %d: %s", down.status,
          down.details);
    printf("down: %s\n", down.details);
    cxm_arena_dispose(&down.a);
    harness_restart(srv);
    qcall up = {.ch = qch, .n = 1, .emails = {"down@example.com"}};
    qcall_main(&up);
    CHECK(up.status == GRPC_STATUS_OK && *up.ids[0], "after the restart: %d: %s", up.status,
          up.details);
    cxm_arena_dispose(&up.a);
    queue_down(r, qch);
}

static const harness_case cases[] = {
    {"create", case_create},
    {"evict", case_evict},
    {"links", case_links},
    {"notfound", case_notfound},
    {"unavailable", case_unavailable},
    {"rate", case_rate},
    {"queue", case_queue},
    {"queue_stop", case_queue_stop},
};

int main(int argc, char **argv)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    int rc = harness_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
    cxm_arena_dispose(&arena);
    return rc;
}
