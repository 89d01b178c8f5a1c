/*
 * test_events.c - profile's events and the erasure cascade between separate
 * processes through a real nats-server with JetStream: cxm-profile,
 * cxm-journey, cxm-feedback and cxm-personalisation, each with its own data
 * directory and --nats-url.
 *
 *   test_events BIN_DIR cascade     an erasure completes on every service;
 *                                   with cxm-journey stopped it stays
 *                                   PENDING for journey alone, and
 *                                   completes once journey is back
 *   test_events BIN_DIR subscriber  this process subscribes to profile's
 *                                   events through NATS: a scripted run of
 *                                   profile RPCs arrives once each, in
 *                                   order, with the right payloads
 *   test_events BIN_DIR feedback    this process publishes as "feedback"
 *                                   through NATS: cxm-profile keeps the
 *                                   last NPS/CSAT/CES (newer answers win)
 *                                   and open follow-ups, cxm-journey puts
 *                                   each response on the customer's
 *                                   timeline once (redelivered: still
 *                                   once) and erases it with the customer
 *
 * Exits 77 (SKIPPED) without nats-server. At exit (a failed check
 * included) every process started is killed and every directory removed.
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cxm/bus.h"
#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/nats.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "harness.h"
#include "nats_fixture.h"

#define SVC "/cxm.v1.ProfileService/"
#define EMAIL CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL
#define CRM CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID
#define NSERVICES 4

static const char *const services[NSERVICES] = {"profile", "journey", "feedback",
                                                "personalisation"};
static nf_server nats;
static bool nats_up;
static test_server srv[NSERVICES]; /* the service binaries, in services' order */
static char bus_args[2][64];       /* "--nats-url", URL */
static char paths[NSERVICES][512]; /* the binaries (harness_restart needs them) */
static char sub_dir[] = "/tmp/cxm-test-events-XXXXXX"; /* case subscriber's store */
static char cert_dir[] = "/tmp/cxm-nats-certs-XXXXXX"; /* case tls's certificates */
static cxm_arena arena;

static void cleanup(void)
{
    for (int i = 0; i < NSERVICES; i++) {
        if (srv[i].pid > 0)
            harness_stop(&srv[i], SIGKILL, 5000);
        if (srv[i].data_dir[0])
            harness_cleanup(&srv[i]);
    }
    if (nats_up)
        nf_stop(&nats);
    const char *dirs[] = {sub_dir, cert_dir};
    for (size_t i = 0; i < 2; i++) {
        if (strstr(dirs[i], "XXXXXX"))
            continue;
        char cmd[64];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dirs[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: could not remove %s\n", dirs[i]);
    }
}

/* One ProfileService RPC (see harness_call). */
static grpc_status_code call(cxm_channel *ch, const char *method, const void *req,
                             const ProtobufCMessageDescriptor *resp_desc, void *resp, char *details)
{
    return harness_call(ch, SVC, method, req, resp_desc, &arena, resp, details);
}

static Cxm__V1__Identity *ident(Cxm__V1__IdentityType type, const char *value)
{
    Cxm__V1__Identity *id = cxm_arena_calloc(&arena, 1, sizeof *id);
    cxm__v1__identity__init(id);
    id->type = type;
    id->value = (char *)value;
    return id;
}

static Cxm__V1__CustomerRef *by_id(const char *customer_id)
{
    Cxm__V1__CustomerRef *ref = cxm_arena_calloc(&arena, 1, sizeof *ref);
    cxm__v1__customer_ref__init(ref);
    ref->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref->customer_id = (char *)customer_id;
    return ref;
}

static const char *upsert(cxm_channel *ch, Cxm__V1__Identity **ids, size_t n)
{
    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    req.identities = ids;
    req.n_identities = n;
    Cxm__V1__UpsertProfileResponse *resp;
    CALL_OK(ch, UpsertProfile, req, cxm__v1__upsert_profile_response, resp);
    return resp->profile->customer_id;
}

static Cxm__V1__DeletionReceipt *delete_customer(cxm_channel *ch, const char *id, bool suppress)
{
    Cxm__V1__DeleteProfileRequest dr = CXM__V1__DELETE_PROFILE_REQUEST__INIT;
    dr.customer = by_id(id);
    dr.reason = "test_events";
    dr.suppress_identities = suppress;
    Cxm__V1__DeleteProfileResponse *resp;
    CALL_OK(ch, DeleteProfile, dr, cxm__v1__delete_profile_response, resp);
    return resp->receipt;
}

static Cxm__V1__DeletionReceipt *get_receipt(cxm_channel *ch, const char *receipt_id)
{
    Cxm__V1__GetDeletionReceiptRequest req = CXM__V1__GET_DELETION_RECEIPT_REQUEST__INIT;
    req.key_case = CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_RECEIPT_ID;
    req.receipt_id = (char *)receipt_id;
    Cxm__V1__GetDeletionReceiptResponse *resp;
    CALL_OK(ch, GetDeletionReceipt, req, cxm__v1__get_deletion_receipt_response, resp);
    return resp->receipt;
}

static Cxm__V1__ErasureState state_of(const Cxm__V1__DeletionReceipt *r, const char *service)
{
    for (size_t i = 0; i < r->n_services; i++)
        if (strcmp(r->services[i]->service, service) == 0)
            return r->services[i]->state;
    return CXM__V1__ERASURE_STATE__ERASURE_STATE_UNSPECIFIED;
}

/* The receipt once complete (every service DONE), polled up to 10 s. */
static Cxm__V1__DeletionReceipt *wait_completed(cxm_channel *ch, const char *receipt_id)
{
    double start = test_now_ms();
    Cxm__V1__DeletionReceipt *r = get_receipt(ch, receipt_id);
    while (!r->completed_at_unix_ms && test_now_ms() - start < 10000) {
        usleep(10000);
        r = get_receipt(ch, receipt_id);
    }
    CHECK(r->completed_at_unix_ms, "receipt %s incomplete after 10 s", receipt_id);
    for (int i = 0; i < NSERVICES; i++)
        CHECK(state_of(r, services[i]) == CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE, "%s not DONE",
              services[i]);
    fprintf(stderr, "receipt %s complete after %.0f ms\n", receipt_id, test_now_ms() - start);
    return r;
}

/* Authentication or TLS flags each service gets after its own (cases
 * auth and tls), and the same for this process's buses. */
static const char *sec_args[NSERVICES][10];
static cxm_nats_opts sec_opts;

static const char *const *with_security(int service, const char *const *a)
{
    static const char *all[NSERVICES][32];
    size_t n = 0;
    for (; a[n]; n++)
        all[service][n] = a[n];
    for (size_t i = 0; sec_args[service][i]; i++)
        all[service][n++] = sec_args[service][i];
    all[service][n] = NULL;
    return all[service];
}

static void start_nats_with(const nf_config *cfg)
{
    int rc = nf_start_with(&nats, cfg);
    if (rc == -1) {
        fprintf(stderr, "nats-server not installed: skipped\n");
        exit(NF_SKIP);
    }
    CHECK(rc == 0, "nats-server would not start");
    nats_up = true;
    snprintf(bus_args[0], sizeof bus_args[0], "--nats-url");
    snprintf(bus_args[1], sizeof bus_args[1], "%s", nats.url);
}

static void start_nats(void)
{
    start_nats_with(&(nf_config){0});
}

/* ---- cascade ---- */

static void case_cascade(const char *bin)
{
    static const char *a[] = {NULL, NULL, "--grace", "2s", "--workers", "2", NULL};
    a[0] = bus_args[0];
    a[1] = bus_args[1];
    for (int i = 0; i < NSERVICES; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/cxm-%s", bin, services[i]);
        harness_start(&srv[i], paths[i], with_security(i, a));
    }
    cxm_channel *ch;
    CHECK(cxm_channel_open(srv[0].target, NULL, &ch) == 0, "channel");
    Cxm__V1__Identity *ids[] = {ident(EMAIL, "cascade-1@example.com")};
    Cxm__V1__DeletionReceipt *r = delete_customer(ch, upsert(ch, ids, 1), false);
    wait_completed(ch, r->receipt_id);

    /* journey down: the others confirm, journey's part waits for it. */
    test_server *journey = &srv[1];
    CHECK(harness_stop(journey, SIGTERM, 10000) == 0, "cxm-journey drains");
    ids[0] = ident(EMAIL, "cascade-2@example.com");
    r = delete_customer(ch, upsert(ch, ids, 1), false);
    double end = test_now_ms() + 10000;
    Cxm__V1__DeletionReceipt *now = get_receipt(ch, r->receipt_id);
    while ((state_of(now, "feedback") != CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE ||
            state_of(now, "personalisation") != CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE) &&
           test_now_ms() < end) {
        usleep(10000);
        now = get_receipt(ch, r->receipt_id);
    }
    CHECK(state_of(now, "feedback") == CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE &&
              state_of(now, "personalisation") == CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE,
          "feedback and personalisation confirm while journey is down");
    usleep(500000); /* time journey's confirmation would have needed */
    now = get_receipt(ch, r->receipt_id);
    CHECK(state_of(now, "journey") == CXM__V1__ERASURE_STATE__ERASURE_STATE_PENDING &&
              !now->completed_at_unix_ms,
          "journey PENDING and the receipt incomplete while journey is down");
    harness_restart(journey);
    Cxm__V1__DeletionReceipt *done = wait_completed(ch, r->receipt_id);
    CHECK(done->completed_at_unix_ms >= now->requested_at_unix_ms, "completed after the request");
    cxm_channel_close(ch);
    for (int i = 0; i < NSERVICES; i++) {
        CHECK(harness_stop(&srv[i], SIGTERM, 10000) == 0, "%s drains", services[i]);
    }
}

/* ---- subscriber ---- */

/* What this process received: table test.events, big-endian sequence ->
 * packed Event; "dup" counts events delivered to apply a second time. */
typedef struct received {
    cxm_store *store;
    MDB_dbi dbi;
    Cxm__V1__Event **evs;
    size_t n;
    uint64_t dups;
} received;

static int record(cxm_txn *txn, const Cxm__V1__Event *ev, void *user)
{
    received *rcv = user;
    uint8_t key[8], buf[4096];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(ev->sequence >> (56 - 8 * i));
    size_t n = cxm__v1__event__get_packed_size(ev);
    if (n > sizeof buf)
        return CXM_ETOOBIG;
    cxm__v1__event__pack(ev, buf);
    int rc = cxm_txn_put(txn, rcv->dbi, key, 8, buf, n, CXM_PUT_NOOVERWRITE);
    if (rc != CXM_EEXIST)
        return rc;
    uint64_t dups = 0;
    const void *v;
    size_t vlen;
    if (cxm_txn_get_ref(txn, rcv->dbi, "dup", 3, &v, &vlen) == 0 && vlen == sizeof dups)
        memcpy(&dups, v, sizeof dups);
    dups++;
    return cxm_txn_put(txn, rcv->dbi, "dup", 3, &dups, sizeof dups, 0);
}

static int read_received(cxm_txn *txn, void *user)
{
    received *rcv = user;
    cxm_iter it;
    rcv->n = 0;
    int rc = cxm_iter_prefix(txn, rcv->dbi, NULL, 0, false, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        if (it.klen == 3) {
            memcpy(&rcv->dups, it.val, sizeof rcv->dups);
            continue;
        }
        Cxm__V1__Event *ev =
            cxm__v1__event__unpack(cxm_arena_protobuf(&arena), it.vlen, (const uint8_t *)it.val);
        CHECK(ev, "a recorded event does not decode");
        rcv->evs[rcv->n++] = ev;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* Wait until want events arrived (10 s), and a moment for any extra one. */
static void wait_received(received *rcv, size_t want)
{
    double end = test_now_ms() + 10000;
    do {
        usleep(20000);
        CHECK(cxm_store_read(rcv->store, read_received, rcv) == 0, "read the received events");
    } while (rcv->n < want && test_now_ms() < end);
    usleep(300000);
    CHECK(cxm_store_read(rcv->store, read_received, rcv) == 0, "read the received events");
    CHECK(rcv->n == want && rcv->dups == 0, "%zu events received (%llu twice), want %zu", rcv->n,
          (unsigned long long)rcv->dups, want);
}

static void strs_are(char **got, size_t n, const char *want, const char *what)
{
    char joined[256] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", i ? "," : "",
                 got[i]);
    CHECK(strcmp(joined, want) == 0, "%s: [%s], want [%s]", what, joined, want);
}

/* The ids the script uses, filled as it runs. */
typedef struct script_ids {
    const char *a, *b, *c, *merge_ab, *merge_ac, *receipt;
} script_ids;

static void set_consent(cxm_channel *ch, const char *id, Cxm__V1__ConsentState state, int64_t at)
{
    Cxm__V1__SetConsentRequest sc = CXM__V1__SET_CONSENT_REQUEST__INIT;
    sc.customer = by_id(id);
    sc.scope = "marketing_email";
    sc.state = state;
    sc.decided_at_unix_ms = at;
    sc.source = "web_banner";
    Cxm__V1__SetConsentResponse *cr;
    CALL_OK(ch, SetConsent, sc, cxm__v1__set_consent_response, cr);
}

static void write_score(cxm_channel *ch, const char *id, bool set, int64_t at)
{
    Cxm__V1__WriteTraitsRequest wt = CXM__V1__WRITE_TRAITS_REQUEST__INIT;
    wt.customer = by_id(id);
    wt.source = "feedback";
    wt.observed_at_unix_ms = at;
    Cxm__V1__Value v = CXM__V1__VALUE__INIT;
    v.kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    v.number_value = 7;
    Cxm__V1__WriteTraitsRequest__TraitsEntry e = CXM__V1__WRITE_TRAITS_REQUEST__TRAITS_ENTRY__INIT,
                                             *ep = &e;
    char *unset = "score";
    e.key = "score";
    e.value = &v;
    wt.traits = set ? &ep : NULL;
    wt.n_traits = set;
    wt.unset_traits = set ? NULL : &unset;
    wt.n_unset_traits = !set;
    Cxm__V1__WriteTraitsResponse *wr;
    CALL_OK(ch, WriteTraits, wt, cxm__v1__write_traits_response, wr);
}

static const char *merge(cxm_channel *ch, const char *target, const char *source)
{
    Cxm__V1__MergeProfilesRequest mr = CXM__V1__MERGE_PROFILES_REQUEST__INIT;
    mr.target_customer_id = (char *)target;
    mr.source_customer_id = (char *)source;
    mr.reason = "same person";
    Cxm__V1__MergeProfilesResponse *m;
    CALL_OK(ch, MergeProfiles, mr, cxm__v1__merge_profiles_response, m);
    return m->merge->merge_id;
}

static void upsert_segment(cxm_channel *ch)
{
    Cxm__V1__FieldCondition f = CXM__V1__FIELD_CONDITION__INIT;
    f.kind = CXM__V1__FIELD_KIND__FIELD_KIND_TRAIT;
    f.name = "score";
    f.op = CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS;
    Cxm__V1__SegmentCondition c = CXM__V1__SEGMENT_CONDITION__INIT;
    c.node_case = CXM__V1__SEGMENT_CONDITION__NODE_FIELD;
    c.field = &f;
    Cxm__V1__Segment seg = CXM__V1__SEGMENT__INIT;
    seg.segment_id = "scored";
    seg.condition = &c;
    Cxm__V1__UpsertSegmentRequest sr = CXM__V1__UPSERT_SEGMENT_REQUEST__INIT;
    sr.segment = &seg;
    Cxm__V1__UpsertSegmentResponse *resp;
    CALL_OK(ch, UpsertSegment, sr, cxm__v1__upsert_segment_response, resp);
}

/* The RPCs whose events the subscriber must see; returns their count. */
static size_t run_script(cxm_channel *ch, script_ids *s)
{
    Cxm__V1__Identity *ia[] = {ident(EMAIL, "sub-a@example.com"), ident(CRM, "A1")};
    Cxm__V1__Identity *ib[] = {ident(EMAIL, "sub-b@example.com")};
    Cxm__V1__Identity *ic[] = {ident(EMAIL, "sub-c@example.com")};
    Cxm__V1__Identity *id[] = {ident(EMAIL, "sub-d@example.com"), ident(CRM, "D1")};
    s->a = upsert(ch, ia, 2);
    s->b = upsert(ch, ib, 1);
    s->c = upsert(ch, ic, 1);
    upsert(ch, id, 2);
    s->merge_ab = merge(ch, s->a, s->b);                                        /* 1 */
    set_consent(ch, s->a, CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED, 1000); /* 2 */
    set_consent(ch, s->a, CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED, 2000); /* none */
    set_consent(ch, s->a, CXM__V1__CONSENT_STATE__CONSENT_STATE_DENIED, 3000);  /* 3 */
    write_score(ch, s->a, true, 1000);                                          /* 4 */
    upsert_segment(ch);                                                         /* 5 */
    write_score(ch, s->a, false, 2000);                                         /* 6, 7 */
    /* Merges c, then fails on d's second crm id: rolled back, no event. */
    Cxm__V1__Identity *both[] = {ic[0], id[0]};
    Cxm__V1__UpsertProfileRequest ur = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    ur.customer_id = (char *)s->a;
    ur.identities = both;
    ur.n_identities = 2;
    char d[512];
    CHECK(call(ch, "UpsertProfile", &ur.base, &cxm__v1__upsert_profile_response__descriptor, NULL,
               d) == GRPC_STATUS_FAILED_PRECONDITION,
          "the upsert linking two crm ids fails: %s", d);
    Cxm__V1__UnmergeProfileRequest un = CXM__V1__UNMERGE_PROFILE_REQUEST__INIT;
    un.merge_id = (char *)s->merge_ab;
    Cxm__V1__UnmergeProfileResponse *unr;
    CALL_OK(ch, UnmergeProfile, un, cxm__v1__unmerge_profile_response, unr); /* 8 */
    s->merge_ac = merge(ch, s->a, s->c);                                     /* 9 */
    s->receipt = delete_customer(ch, s->a, true)->receipt_id;                /* 10 */
    return 10;
}

/* Event i is about customer with a payload of this case. */
static const Cxm__V1__Event *event_is(const received *rcv, size_t i, const char *customer,
                                      Cxm__V1__Event__PayloadCase pc)
{
    const Cxm__V1__Event *ev = rcv->evs[i];
    CHECK(ev->sequence == i + 1 && strcmp(ev->producer, "profile") == 0, "event %zu: %s:%llu", i,
          ev->producer, (unsigned long long)ev->sequence);
    CHECK(strcmp(ev->customer_id, customer) == 0 && ev->payload_case == pc,
          "event %llu (%s) about %s, want payload %d about %s", (unsigned long long)ev->sequence,
          ev->type, ev->customer_id, pc, customer);
    CHECK(ev->occurred_at_unix_ms > 0 && ev->recorded_at_unix_ms >= ev->occurred_at_unix_ms,
          "event %llu times", (unsigned long long)ev->sequence);
    uint8_t buf[4096];
    size_t n = cxm__v1__event__pack(ev, buf);
    CHECK(!memmem(buf, n, "@example.com", 12), "event %llu carries an email",
          (unsigned long long)ev->sequence);
    return ev;
}

static void check_merged(const Cxm__V1__Event *ev, const char *merge_id, const char *source,
                         const char *target)
{
    const Cxm__V1__CustomerMerged *m = ev->customer_merged;
    CHECK(strcmp(m->merge_id, merge_id) == 0 && strcmp(m->source_customer_id, source) == 0 &&
              strcmp(m->target_customer_id, target) == 0 && strcmp(m->reason, "same person") == 0,
          "CustomerMerged %s %s -> %s", m->merge_id, m->source_customer_id, m->target_customer_id);
}

static void check_script(const received *rcv, const script_ids *s)
{
    typedef Cxm__V1__Event__PayloadCase pc;
    const pc merged = CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED,
             consent = CXM__V1__EVENT__PAYLOAD_CONSENT_CHANGED,
             traits = CXM__V1__EVENT__PAYLOAD_TRAITS_CHANGED,
             segs = CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED;
    check_merged(event_is(rcv, 0, s->a, merged), s->merge_ab, s->b, s->a);
    const Cxm__V1__ConsentChanged *c = event_is(rcv, 1, s->a, consent)->consent_changed;
    CHECK(c->consent->state == CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED &&
              strcmp(c->consent->scope, "marketing_email") == 0 &&
              c->previous_state == CXM__V1__CONSENT_STATE__CONSENT_STATE_UNSPECIFIED,
          "first consent");
    c = event_is(rcv, 2, s->a, consent)->consent_changed;
    CHECK(c->consent->state == CXM__V1__CONSENT_STATE__CONSENT_STATE_DENIED &&
              c->consent->decided_at_unix_ms == 3000 &&
              c->previous_state == CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED,
          "consent denied after granted");
    const Cxm__V1__TraitsChanged *t = event_is(rcv, 3, s->a, traits)->traits_changed;
    CHECK(t->n_traits == 1 && strcmp(t->traits[0]->name, "score") == 0 &&
              t->traits[0]->value->number_value == 7 && t->n_removed_trait_names == 0,
          "trait score set");
    const Cxm__V1__SegmentMembershipChanged *m =
        event_is(rcv, 4, s->a, segs)->segment_membership_changed;
    strs_are(m->entered_segment_ids, m->n_entered_segment_ids, "scored", "segment entered");
    strs_are(m->left_segment_ids, m->n_left_segment_ids, "", "segment left");
    m = event_is(rcv, 5, s->a, segs)->segment_membership_changed;
    strs_are(m->left_segment_ids, m->n_left_segment_ids, "scored", "trait gone: segment left");
    t = event_is(rcv, 6, s->a, traits)->traits_changed;
    strs_are(t->removed_trait_names, t->n_removed_trait_names, "score", "trait removed");
    CHECK(t->n_traits == 0, "no trait set");
    const Cxm__V1__CustomerUnmerged *u =
        event_is(rcv, 7, s->a, CXM__V1__EVENT__PAYLOAD_CUSTOMER_UNMERGED)->customer_unmerged;
    CHECK(strcmp(u->merge_id, s->merge_ab) == 0 && strcmp(u->source_customer_id, s->b) == 0 &&
              strcmp(u->target_customer_id, s->a) == 0,
          "CustomerUnmerged");
    check_merged(event_is(rcv, 8, s->a, merged), s->merge_ac, s->c, s->a);
    const Cxm__V1__CustomerDeleted *d =
        event_is(rcv, 9, s->a, CXM__V1__EVENT__PAYLOAD_CUSTOMER_DELETED)->customer_deleted;
    CHECK(strcmp(d->receipt_id, s->receipt) == 0 && d->identities_suppressed, "CustomerDeleted");
    /* b was unmerged before: only c went with a. */
    strs_are(d->merged_customer_ids, d->n_merged_customer_ids, s->c, "merged ids erased");
}

static void case_subscriber(const char *bin)
{
    static const char *a[] = {NULL, NULL, "--profile-erasure-services", "", "--workers", "2", NULL};
    a[0] = bus_args[0];
    a[1] = bus_args[1];
    snprintf(paths[0], sizeof paths[0], "%s/cxm-profile", bin);
    harness_start(&srv[0], paths[0], with_security(0, a));

    CHECK(mkdtemp(sub_dir), "mkdtemp");
    received rcv = {.evs = cxm_arena_alloc(&arena, 64 * sizeof(Cxm__V1__Event *))};
    cxm_bus *bus;
    cxm_bus_opts o = {.nats_url = nats.url, .nats_ack_wait_ms = 1000, .nats_security = &sec_opts};
    CHECK(cxm_store_open(sub_dir, NULL, &rcv.store) == 0 &&
              cxm_store_dbi(rcv.store, "test.events", 0, &rcv.dbi) == 0,
          "the subscriber's store");
    CHECK(cxm_bus_create(rcv.store, &o, &bus) == 0 &&
              cxm_bus_subscribe(bus, "events_test", "profile", NULL, 0, record, &rcv) == 0 &&
              cxm_bus_start(bus) == 0,
          "subscribe: %s", cxm_bus_last_error());

    cxm_channel *ch;
    CHECK(cxm_channel_open(srv[0].target, NULL, &ch) == 0, "channel");
    script_ids s;
    size_t n = run_script(ch, &s);
    wait_received(&rcv, n);
    check_script(&rcv, &s);
    cxm_channel_close(ch);
    cxm_bus_destroy(bus);
    cxm_store_close(rcv.store);
    CHECK(harness_stop(&srv[0], SIGTERM, 10000) == 0, "cxm-profile drains");
}

/* ---- feedback ---- */

/* This process publishes as the feedback service, on a real bus through
 * NATS: it can send what the service itself never would on demand (an
 * older answer after a newer one, one response twice), which is what
 * profile and journey must absorb. The whole chain from SubmitResponse is
 * integration.feedback_cli. */
typedef struct feedback_producer {
    cxm_store *store;
    cxm_bus *bus;
    cxm_bus_producer *p;
    Cxm__V1__Event *ev;
} feedback_producer;

static int emit_job(cxm_txn *t, void *user)
{
    feedback_producer *f = user;
    return cxm_bus_emit(f->p, t, f->ev);
}

static void emit_feedback(feedback_producer *f, const char *customer, const char *response,
                          Cxm__V1__SurveyKind kind, int score, int64_t at)
{
    Cxm__V1__FeedbackReceived fr = CXM__V1__FEEDBACK_RECEIVED__INIT;
    fr.response_id = (char *)response;
    fr.survey_id = "post_purchase";
    fr.kind = kind;
    fr.score = score;
    fr.touchpoint = "checkout_page";
    fr.channel = CXM__V1__CHANNEL__CHANNEL_WEB;
    fr.answered_at_unix_ms = at;
    fr.sentiment = CXM__V1__SENTIMENT_LABEL__SENTIMENT_LABEL_NEGATIVE;
    if (kind == CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS)
        fr.nps_category = score >= 9   ? CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PROMOTER
                          : score >= 7 ? CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PASSIVE
                                       : CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.customer_id = (char *)customer;
    ev.occurred_at_unix_ms = at;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_FEEDBACK_RECEIVED;
    ev.feedback_received = &fr;
    f->ev = &ev;
    CHECK(cxm_store_write(f->store, emit_job, f) == 0, "emit FeedbackReceived");
}

static void emit_follow_ups(feedback_producer *f, const char *customer, uint32_t open)
{
    Cxm__V1__FollowUpChanged fc = CXM__V1__FOLLOW_UP_CHANGED__INIT;
    fc.follow_up_id = "fu-1";
    fc.state = CXM__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_OPEN;
    fc.open_follow_ups = open;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.customer_id = (char *)customer;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_FOLLOW_UP_CHANGED;
    ev.follow_up_changed = &fc;
    f->ev = &ev;
    CHECK(cxm_store_write(f->store, emit_job, f) == 0, "emit FollowUpChanged");
}

/* The customer's standard traits once open_follow_ups reads want (the
 * last event emitted), within 10 s. */
static const Cxm__V1__StandardTraits *traits_after(cxm_channel *ch, const char *id, uint32_t want)
{
    double end = test_now_ms() + 10000;
    const Cxm__V1__StandardTraits *st;
    do {
        usleep(20000);
        Cxm__V1__GetProfileRequest req = CXM__V1__GET_PROFILE_REQUEST__INIT;
        req.customer = by_id(id);
        Cxm__V1__GetProfileResponse *resp;
        CALL_OK(ch, GetProfile, req, cxm__v1__get_profile_response, resp);
        st = resp->profile->standard_traits;
    } while ((!st || st->open_follow_ups != want) && test_now_ms() < end);
    CHECK(st && st->open_follow_ups == want, "open_follow_ups %u, want %u",
          st ? st->open_follow_ups : 0, want);
    return st;
}

/* The customer's survey_response events on journey's timeline, waiting up
 * to 10 s for want of them. */
static Cxm__V1__GetTimelineResponse *survey_events(cxm_channel *jch, const char *id, size_t want)
{
    double end = test_now_ms() + 10000;
    Cxm__V1__GetTimelineResponse *resp = NULL;
    char *types[] = {"survey_response"};
    do {
        usleep(20000);
        Cxm__V1__GetTimelineRequest req = CXM__V1__GET_TIMELINE_REQUEST__INIT;
        req.customer = by_id(id);
        req.event_types = types;
        req.n_event_types = 1;
        req.oldest_first = true;
        char d[512];
        grpc_status_code st =
            harness_call(jch, "/cxm.v1.JourneyService/", "GetTimeline", &req.base,
                         &cxm__v1__get_timeline_response__descriptor, &arena, &resp, d);
        if (st != GRPC_STATUS_OK)
            resp = NULL; /* an unknown customer until the first event lands */
    } while (!(resp ? resp->n_events == want : want == 0) && test_now_ms() < end);
    CHECK(resp ? resp->n_events == want : want == 0, "%zu survey_response events, want %zu",
          resp ? resp->n_events : 0, want);
    return resp;
}

static const char *prop_string(const Cxm__V1__TouchpointEvent *e, const char *key)
{
    for (size_t i = 0; i < e->n_properties; i++)
        if (strcmp(e->properties[i]->key, key) == 0 &&
            e->properties[i]->value->kind_case == CXM__V1__VALUE__KIND_STRING_VALUE)
            return e->properties[i]->value->string_value;
    return "";
}

static void check_feedback_traits(cxm_channel *ch, feedback_producer *f, const char *id)
{
    emit_feedback(f, id, "r1", CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS, 3, 2000000);
    emit_feedback(f, id, "r0", CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS, 10, 1000000); /* older */
    emit_feedback(f, id, "r2", CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT, 2, 3000000);
    emit_feedback(f, id, "r3", CXM__V1__SURVEY_KIND__SURVEY_KIND_CES, 6, 3000000);
    emit_feedback(f, id, "r1", CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS, 3, 2000000); /* again */
    emit_follow_ups(f, id, 1);
    const Cxm__V1__StandardTraits *st = traits_after(ch, id, 1);
    CHECK(st->last_nps == 3 && st->last_nps_at_unix_ms == 2000000 &&
              st->last_nps_category == CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR,
          "last NPS %d at %lld (category %d), want the newer answer 3", st->last_nps,
          (long long)st->last_nps_at_unix_ms, st->last_nps_category);
    CHECK(st->last_csat == 2 && st->last_csat_at_unix_ms == 3000000, "last CSAT %d", st->last_csat);
    CHECK(st->last_ces == 6 && st->last_ces_at_unix_ms == 3000000, "last CES %d", st->last_ces);
    emit_feedback(f, id, "r4", CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS, 9, 4000000);
    emit_follow_ups(f, id, 0);
    st = traits_after(ch, id, 0);
    CHECK(st->last_nps == 9 &&
              st->last_nps_category == CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PROMOTER,
          "a newer answer replaces the last NPS: %d", st->last_nps);
}

static void check_feedback_timeline(cxm_channel *jch, const char *id)
{
    /* r0..r4 and the repeat of r1: five responses, five events. */
    Cxm__V1__GetTimelineResponse *tl = survey_events(jch, id, 5);
    const Cxm__V1__TouchpointEvent *e = tl->events[0]; /* r0, the oldest */
    CHECK(strcmp(e->event_id, "fb:r0") == 0 && e->occurred_at_unix_ms == 1000000 &&
              strcmp(e->touchpoint, "checkout_page") == 0 &&
              e->channel == CXM__V1__CHANNEL__CHANNEL_WEB,
          "the oldest response's event: %s at %lld", e->event_id,
          (long long)e->occurred_at_unix_ms);
    CHECK(strcmp(prop_string(e, "kind"), "nps") == 0 &&
              strcmp(prop_string(e, "nps_category"), "promoter") == 0 &&
              strcmp(prop_string(e, "sentiment"), "negative") == 0,
          "its properties: kind %s, nps_category %s", prop_string(e, "kind"),
          prop_string(e, "nps_category"));
}

static void case_feedback(const char *bin)
{
    static const char *pa[] = {
        NULL, NULL, "--profile-erasure-services", "journey,feedback", "--workers", "2", NULL};
    pa[0] = bus_args[0], pa[1] = bus_args[1];
    snprintf(paths[0], sizeof paths[0], "%s/cxm-profile", bin);
    harness_start(&srv[0], paths[0], pa);
    static const char *ja[] = {NULL, NULL, "--profile-addr", NULL, "--workers", "2", NULL};
    ja[0] = bus_args[0], ja[1] = bus_args[1], ja[3] = srv[0].target;
    snprintf(paths[1], sizeof paths[1], "%s/cxm-journey", bin);
    harness_start(&srv[1], paths[1], ja);

    CHECK(mkdtemp(sub_dir), "mkdtemp");
    feedback_producer f = {0};
    cxm_bus_opts o = {.nats_url = nats.url, .nats_ack_wait_ms = 1000};
    CHECK(cxm_store_open(sub_dir, NULL, &f.store) == 0 &&
              cxm_bus_create(f.store, &o, &f.bus) == 0 &&
              cxm_bus_producer_open(f.bus, "feedback", &f.p) == 0 && cxm_bus_start(f.bus) == 0,
          "the feedback producer: %s", cxm_bus_last_error());

    cxm_channel *ch, *jch;
    CHECK(cxm_channel_open(srv[0].target, NULL, &ch) == 0 &&
              cxm_channel_open(srv[1].target, NULL, &jch) == 0,
          "channels");
    Cxm__V1__Identity *ids[] = {ident(EMAIL, "feedback-1@example.com")};
    const char *id = upsert(ch, ids, 1);
    check_feedback_traits(ch, &f, id);
    check_feedback_timeline(jch, id);
    delete_customer(ch, id, false);
    survey_events(jch, id, 0); /* journey erased them with the customer */

    cxm_channel_close(jch);
    cxm_channel_close(ch);
    cxm_bus_destroy(f.bus);
    cxm_store_close(f.store);
    for (int i = 1; i >= 0; i--)
        CHECK(harness_stop(&srv[i], SIGTERM, 10000) == 0, "%s drains", services[i]);
}

/* ---- auth and tls: the bus on a NATS server that checks who connects ---- */

static char secret_dir[300]; /* nats.dir: removed with the server */

static void write_file(const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", secret_dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

/* Connects with opts to the test's server; returns the rc and leaves the
 * error in why. */
static int try_open(cxm_nats_opts opts, char *why, size_t cap)
{
    opts.url = nats.url;
    opts.timeout_ms = 2000;
    cxm_nats *n = NULL;
    int rc = cxm_nats_open(&opts, &n);
    snprintf(why, cap, "%s", rc ? cxm_nats_last_error() : "");
    if (rc)
        fprintf(stderr, "refused (%s): %s\n", cxm_strerror(rc), why);
    cxm_nats_close(n);
    return rc;
}

/* Every message stream CXM_PROFILE holds, read by a fresh durable consumer
 * with cxm's credentials: returns their count, *found if one has msg_id. */
static size_t profile_stream_scan(const cxm_nats_opts *cxm_creds, const char *msg_id, bool *found)
{
    cxm_nats_opts o = *cxm_creds;
    o.url = nats.url;
    cxm_nats *n;
    cxm_nats_sub *sub;
    CHECK(cxm_nats_open(&o, &n) == 0 &&
              cxm_nats_subscribe(n, "profile", "auth_audit", NULL, &sub) == 0,
          "audit consumer: %s", cxm_nats_last_error());
    size_t total = 0;
    *found = false;
    for (;;) {
        cxm_nats_batch b;
        CHECK(cxm_nats_fetch(sub, 1000, 500, &b) == 0, "fetch: %s", cxm_nats_last_error());
        size_t count = b.count;
        for (size_t i = 0; i < count; i++)
            *found |= strcmp(b.msg_id[i], msg_id) == 0;
        cxm_nats_ack(&b);
        cxm_nats_batch_free(&b);
        if (count == 0)
            break;
        total += count;
    }
    cxm_nats_unsubscribe(sub);
    cxm_nats_close(n);
    return total;
}

static void case_auth(const char *bin)
{
    /* The nats-server's directory holds the secrets; it is made first. */
    char seed[CXM_NATS_NKEY_SEED_LEN + 1], pub[CXM_NATS_NKEY_PUBLIC_LEN + 1];
    CHECK(cxm_nats_nkey_new(seed, pub) == 0, "nkey: %s", cxm_nats_last_error());
    CHECK(seed[0] == 'S' && seed[1] == 'U' && pub[0] == 'U', "nkey prefixes: %.2s %.1s", seed, pub);
    /* cxm's services: profile as a user with a password, the others with
     * an NKey; both with rights on cxm's subjects and JetStream's API. An
     * "intruder" may connect but publish only replies. */
    static char conf[2048];
    snprintf(conf, sizeof conf,
             "authorization {\n"
             "  CXM = { publish: [\"cxm.>\", \"$JS.API.>\", \"$JS.ACK.>\", \"_INBOX.>\"],\n"
             "          subscribe: [\"_INBOX.>\"] }\n"
             "  READER = { publish: [\"_INBOX.>\"], subscribe: [\"_INBOX.>\"] }\n"
             "  users: [\n"
             "    { user: cxm, password: \"s3cret-cxm\", permissions: $CXM }\n"
             "    { nkey: %s, permissions: $CXM }\n"
             "    { user: intruder, password: \"intruder-pw\", permissions: $READER }\n"
             "  ]\n"
             "}\n",
             pub);
    start_nats_with(&(nf_config){.conf = conf, .user = "cxm", .password = "s3cret-cxm"});
    snprintf(secret_dir, sizeof secret_dir, "%s", nats.dir);
    static char pw_file[400], seed_file[400];
    write_file("cxm.password", "s3cret-cxm\n", pw_file, sizeof pw_file);
    char seed_line[80];
    snprintf(seed_line, sizeof seed_line, "%s\n", seed);
    write_file("cxm.nk", seed_line, seed_file, sizeof seed_file);
    const char *pw[] = {"--nats-user", "cxm", "--nats-password-file", pw_file, NULL};
    const char *nk[] = {"--nats-nkey-seed", seed_file, NULL};
    for (int i = 0; i < NSERVICES; i++)
        memcpy(sec_args[i], i == 0 ? pw : nk, (i == 0 ? 5 : 3) * sizeof(char *));

    /* Authenticated services deliver the erasure cascade end to end. */
    case_cascade(bin);

    char why[600];
    int rc = try_open((cxm_nats_opts){0}, why, sizeof why);
    CHECK(rc == CXM_EPERM && strstr(why, "uthorization"),
          "no credentials: want EPERM naming the authorization, got %d: %s", rc, why);
    rc = try_open((cxm_nats_opts){.user = "cxm", .password = "wrong"}, why, sizeof why);
    CHECK(rc == CXM_EPERM, "a wrong password: want EPERM, got %d: %s", rc, why);
    rc = try_open((cxm_nats_opts){.nkey_seed_file = pw_file}, why, sizeof why);
    CHECK(rc == CXM_EINVAL && strstr(why, "--nats-nkey-seed"),
          "a seed file without a seed: want EINVAL naming the flag, got %d: %s", rc, why);
    CHECK(strstr(why, "s3cret") == NULL, "the error shows the secret: %s", why);
    /* Credentials in the URL work, and never show in errors or logs. */
    char url[120];
    snprintf(url, sizeof url, "nats://cxm:wrong-in-url@127.0.0.1:%d", nats.port);
    cxm_nats *n = NULL;
    rc = cxm_nats_open(&(cxm_nats_opts){.url = url}, &n);
    CHECK(rc == CXM_EPERM && !strstr(cxm_nats_last_error(), "wrong-in-url") &&
              strstr(cxm_nats_last_error(), "nats://***@127.0.0.1"),
          "a wrong password in the URL: want EPERM without it, got %d: %s", rc,
          cxm_nats_last_error());
    snprintf(url, sizeof url, "nats://cxm:s3cret-cxm@127.0.0.1:%d", nats.port);
    CHECK(cxm_nats_open(&(cxm_nats_opts){.url = url}, &n) == 0, "the URL's credentials: %s",
          cxm_nats_last_error());
    cxm_nats_close(n);

    /* The intruder connects, but its event is refused and never stored,
     * so no consumer of cxm's streams can see it. */
    cxm_nats *in;
    cxm_nats_opts io = {.url = nats.url, .user = "intruder", .password = "intruder-pw"};
    CHECK(cxm_nats_open(&io, &in) == 0, "the intruder connects: %s", cxm_nats_last_error());
    static const char fake[] = "not an event";
    cxm_nats_msg m = {.subject = "cxm.profile.CustomerDeleted.1",
                      .msg_id = "intruder:1",
                      .data = fake,
                      .len = sizeof fake};
    rc = cxm_nats_publish(in, &m, 1, 1500);
    CHECK(rc == CXM_EPERM && strstr(cxm_nats_last_error(), "Permissions Violation"),
          "the intruder's publish: want EPERM with the server's words, got %d: %s", rc,
          cxm_nats_last_error());
    cxm_nats_close(in);
    cxm_nats_opts cxm_creds = {.user = "cxm", .password = "s3cret-cxm"};
    bool found;
    size_t total = profile_stream_scan(&cxm_creds, "intruder:1", &found);
    CHECK(total > 0, "the audit reads none of profile's own events");
    CHECK(!found, "the intruder's event reached the stream");
    fprintf(stderr, "auth: services delivered with credentials; none, wrong and publish-denied "
                    "clients were refused\n");
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate signed
 * by it, and a second CA that signed neither, made by openssl now. */
static void make_certs(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "set -e; cd %s; k='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
             "for ca in ca other; do openssl req -x509 $k -keyout $ca.key -out $ca.pem -days 2 "
             "-subj /CN=cxm-test-$ca; done;"
             "printf 'subjectAltName=IP:127.0.0.1\\n' >server.ext;"
             "printf 'extendedKeyUsage=clientAuth\\n' >client.ext;"
             "for who in server client; do openssl req $k -keyout $who.key -out $who.csr "
             "-subj /CN=cxm-$who; openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key "
             "-CAcreateserial -days 2 -extfile $who.ext -out $who.pem; done",
             dir);
    char quiet[2100];
    snprintf(quiet, sizeof quiet, "( %s ) >%s/openssl.log 2>&1", cmd, dir);
    CHECK(system(quiet) == 0, "openssl could not make the certificates; see %s/openssl.log", dir);
}

static void case_tls(const char *bin)
{
    char *tmp = cert_dir;
    CHECK(mkdtemp(tmp), "mkdtemp");
    make_certs(tmp);
    static char conf[1024], ca[80], cert[80], key[80], other[80];
    snprintf(ca, sizeof ca, "%s/ca.pem", tmp);
    snprintf(cert, sizeof cert, "%s/client.pem", tmp);
    snprintf(key, sizeof key, "%s/client.key", tmp);
    snprintf(other, sizeof other, "%s/other.pem", tmp);
    /* The server verifies clients' certificates too (mutual TLS), and
     * wants a token. */
    snprintf(conf, sizeof conf,
             "tls { cert_file: \"%s/server.pem\", key_file: \"%s/server.key\", "
             "ca_file: \"%s\", verify: true, timeout: 5 }\n"
             "authorization { token: \"tok-s3cret\" }\n",
             tmp, tmp, ca);
    start_nats_with(&(nf_config){.conf = conf, .tls = 1});
    static char token_file[100];
    snprintf(secret_dir, sizeof secret_dir, "%s", tmp);
    write_file("token", "tok-s3cret\n", token_file, sizeof token_file);
    const char *t[] = {
        "--nats-tls-ca", ca,  "--nats-tls-cert", cert, "--nats-tls-key", key, "--nats-token-file",
        token_file,      NULL};
    memcpy(sec_args[0], t, sizeof t);
    sec_opts =
        (cxm_nats_opts){.tls_ca = ca, .tls_cert = cert, .tls_key = key, .token = "tok-s3cret"};

    /* cxm-profile and this process's subscriber, both over mutual TLS. */
    case_subscriber(bin);

    char why[600];
    int rc = try_open((cxm_nats_opts){0}, why, sizeof why);
    CHECK(rc == CXM_EUNAVAIL && strstr(why, "TLS"),
          "plaintext: want EUNAVAIL naming TLS, got %d: %s", rc, why);
    rc = try_open((cxm_nats_opts){.tls_ca = other, .tls_cert = cert, .tls_key = key}, why,
                  sizeof why);
    CHECK(rc == CXM_EUNAVAIL && strstr(why, "TLS"),
          "a CA that did not sign the server's certificate: want EUNAVAIL naming TLS, got %d: %s",
          rc, why);
    rc = try_open((cxm_nats_opts){.tls_ca = ca, .tls_cert = cert, .tls_key = key}, why, sizeof why);
    CHECK(rc == CXM_EPERM, "TLS without the token: want EPERM, got %d: %s", rc, why);
    rc = try_open((cxm_nats_opts){.tls_ca = ca, .token = "tok-s3cret"}, why, sizeof why);
    CHECK(rc != 0, "no client certificate: the server verifies clients, yet it connected");
    rc = try_open((cxm_nats_opts){.tls_ca = ca, .tls_cert = cert}, why, sizeof why);
    CHECK(rc == CXM_EINVAL, "a certificate without its key: want EINVAL, got %d: %s", rc, why);
    fprintf(stderr, "tls: services delivered over mutual TLS with a token; plaintext, a wrong CA, "
                    "no token and no client certificate refused\n");
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: test_events BIN_DIR cascade|subscriber|feedback|auth|tls");
    cxm_log_configure(false, CXM_LOG_WARN);
    cxm_arena_init(&arena, NULL, 0, 0);
    atexit(cleanup);
    bool secured = strcmp(argv[2], "auth") == 0 || strcmp(argv[2], "tls") == 0;
    if (!secured)
        start_nats();
    if (strcmp(argv[2], "auth") == 0)
        case_auth(argv[1]);
    else if (strcmp(argv[2], "tls") == 0)
        case_tls(argv[1]);
    else if (strcmp(argv[2], "cascade") == 0)
        case_cascade(argv[1]);
    else if (strcmp(argv[2], "subscriber") == 0)
        case_subscriber(argv[1]);
    else if (strcmp(argv[2], "feedback") == 0)
        case_feedback(argv[1]);
    else
        CHECK(false, "unknown case %s", argv[2]);
    cxm_arena_dispose(&arena);
    return 0;
}
