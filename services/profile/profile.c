/*
 * profile.c - the profile service: request validation, the read path and
 * the write jobs behind every ProfileService RPC.
 *
 * Reads (GetProfile, ResolveIdentity of a known identity, SearchProfiles,
 * ListSegmentMembers) run on the worker thread in an LMDB read transaction:
 * no lock, no writer in the way. Every write is validated on the worker,
 * then queued for the store's writer thread (cxm_store_submit), which runs
 * many of them in one transaction and answers each call after the commit
 * that made it durable.
 */
#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/log.h"
#include "ident.h"
#include "model.h"
#include "pdb.h"

#define ERR_MAX 320
#define MAX_LINK 50
#define MAX_CONDITIONS 16
#define FUTURE_SLACK_MS (5 * 60 * 1000)

/* ---- configuration (module flags) ---- */

static const char *cfg_unique = "crm_id";
static const char *cfg_blocklist = "";
static const char *cfg_phone_country = "";

static const cxm_opt prof_opts[] = {
    {"profile-unique-types", CXM_OPT_STR, &cfg_unique, 0, 0,
     "identity types one customer may hold only one value of, comma-separated (crm_id, email, "
     "phone, device_id, ...)"},
    {"profile-identity-blocklist", CXM_OPT_STR, &cfg_blocklist, 0, 0,
     "identity values refused as junk in addition to the built-in list, comma-separated"},
    {"profile-phone-country", CXM_OPT_STR, &cfg_phone_country, 0, 0,
     "country code given to national phone numbers (0-prefixed), e.g. 82; empty: refuse them"},
};

typedef struct prof_ctx {
    pdb db;
    prof_ident_config ident;
    prof_unique_types unique;
    char *blocklist_copy;
    const char *blocked[64];
} prof_ctx;

static prof_ctx ctx;

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *s_or_empty(const char *s)
{
    return s ? s : "";
}

/* A string field: at most max bytes of valid UTF-8; required if min > 0. */
static int check_text(const char *s, size_t min, size_t max, const char *field, char *err)
{
    size_t n = strlen(s_or_empty(s));
    if (n < min) {
        snprintf(err, ERR_MAX, "%s: required", field);
        return CXM_EINVAL;
    }
    if (n > max) {
        snprintf(err, ERR_MAX, "%s: at most %zu bytes (got %zu)", field, max, n);
        return CXM_EINVAL;
    }
    if (!prof_utf8_valid(s_or_empty(s), n)) {
        snprintf(err, ERR_MAX, "%s: not valid UTF-8", field);
        return CXM_EINVAL;
    }
    return 0;
}

static const char *type_name(Cxm__V1__IdentityType t)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cxm__v1__identity_type__descriptor, (int)t);
    return v ? v->name : "?";
}

/* Validate and normalise an identity in place (its value becomes the
 * normalised copy in arena a). */
static int check_identity(cxm_arena *a, Cxm__V1__Identity *id, const char *field, char *err)
{
    if (!id || id->type <= CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_UNSPECIFIED ||
        id->type > CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM) {
        snprintf(err, ERR_MAX, "%s.type: an identity type is required (EMAIL, PHONE, ...)", field);
        return CXM_EINVAL;
    }
    bool custom = id->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM;
    if (custom != (id->custom_type && *id->custom_type) ||
        (custom && !prof_slug_valid(id->custom_type))) {
        snprintf(err, ERR_MAX,
                 "%s.custom_type: required for IDENTITY_TYPE_CUSTOM ([a-z0-9_.-], 1 to 64 bytes) "
                 "and forbidden otherwise",
                 field);
        return CXM_EINVAL;
    }
    char *norm = cxm_arena_alloc(a, PROF_IDENT_MAX + 1);
    size_t n;
    const char *why = NULL;
    if (!norm)
        return CXM_ENOMEM;
    const char *v = s_or_empty(id->value);
    if (prof_ident_normalize(&ctx.ident, (prof_ident_kind)id->type, v, strlen(v), norm, &n, &why)) {
        snprintf(err, ERR_MAX, "%s.value: \"%.64s\" %s", field, v, why);
        return CXM_EINVAL;
    }
    id->value = norm;
    if (!custom)
        id->custom_type = "";
    return 0;
}

static int check_customer_id(const char *id, const char *field, char *err)
{
    return check_text(id, 1, PROF_IDENT_MAX, field, err);
}

/* A CustomerRef: exactly one of id or identity, valid. */
static int check_ref(cxm_arena *a, Cxm__V1__CustomerRef *ref, const char *field, char *err)
{
    char sub[96];
    if (!ref || ref->key_case == CXM__V1__CUSTOMER_REF__KEY__NOT_SET) {
        snprintf(err, ERR_MAX, "%s: a customer_id or an identity is required", field);
        return CXM_EINVAL;
    }
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID) {
        snprintf(sub, sizeof sub, "%s.customer_id", field);
        return check_customer_id(ref->customer_id, sub, err);
    }
    snprintf(sub, sizeof sub, "%s.identity", field);
    return check_identity(a, ref->identity, sub, err);
}

/* ---- reading ---- */

/* The live customer id a CustomerRef names, or CXM_ENOTFOUND. */
static int ref_to_id(cxm_txn *t, cxm_arena *a, const Cxm__V1__CustomerRef *ref, const char **id,
                     bool *redirected, char *err)
{
    int rc;
    *redirected = false;
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY) {
        rc = pdb_identity_owner(t, &ctx.db, ref->identity, a, id);
        if (rc == CXM_ENOTFOUND)
            snprintf(err, ERR_MAX, "no customer has the identity %s \"%s\"",
                     type_name(ref->identity->type), ref->identity->value);
        return rc;
    }
    rc = pdb_resolve_id(t, &ctx.db, ref->customer_id, a, id, redirected);
    const void *v;
    size_t n;
    if (rc == 0 &&
        (rc = cxm_txn_get_ref(t, ctx.db.profiles, *id, strlen(*id), &v, &n)) == CXM_ENOTFOUND)
        snprintf(err, ERR_MAX, "no customer with id \"%s\"", ref->customer_id);
    return rc;
}

static void finish_err(cxm_call *call, int rc, const char *err)
{
    if (err[0])
        cxm_call_finish(call, rc, "%s: %s", cxm_call_path(call) + 1, err);
    else
        cxm_call_finish(call, rc, "%s: %s (%s)", cxm_call_path(call) + 1, cxm_strerror(rc),
                        cxm_store_last_error());
}

/* ---- the write path ---- */

typedef struct op op;
typedef int (*op_fn)(cxm_txn *t, op *o);

struct op {
    cxm_write_job job;
    cxm_call *call;
    cxm_arena *a;
    const void *req;
    ProtobufCMessage *resp;
    op_fn fn;
    int64_t now;
    char err[ERR_MAX];
};

static int op_run(cxm_txn *t, void *user)
{
    op *o = user;
    o->err[0] = '\0';
    o->resp = NULL;
    return o->fn(t, o);
}

static void op_done(void *user, int rc)
{
    op *o = user;
    if (rc == 0 && o->resp)
        cxm_call_reply(o->call, o->resp);
    else
        finish_err(o->call, rc ? rc : CXM_EINTERNAL, o->err);
}

/* The call's response, allocated in its arena and initialised; it is what
 * op_done sends once the job committed. NULL when out of memory. */
static void *op_response(op *o, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = cxm_arena_alloc(o->a, d->sizeof_message);
    if (m) {
        protobuf_c_message_init(d, m);
        o->resp = m;
    }
    return m;
}

static void submit(cxm_call *call, const void *req, op_fn fn)
{
    cxm_arena *a = cxm_call_arena(call);
    op *o = cxm_arena_calloc(a, 1, sizeof *o);
    if (!o) {
        cxm_call_finish(call, CXM_ENOMEM, "out of memory");
        return;
    }
    *o = (op){.job = {.fn = op_run, .done = op_done, .user = o},
              .call = call,
              .a = a,
              .req = req,
              .fn = fn,
              .now = now_ms()};
    cxm_store_submit(ctx.db.store, &o->job);
}

/* Save p as a new version. */
static int commit_profile(cxm_txn *t, op *o, prof_profile *p)
{
    p->version++;
    p->updated_at_unix_ms = o->now;
    return pdb_save(t, &ctx.db, o->a, p);
}

/* A new profile holding its own CUSTOMER_ID identity. */
static prof_profile *create_profile(op *o, const char *source)
{
    char id[PDB_ID_LEN];
    pdb_new_id('c', id);
    prof_profile *p = prof_new(o->a, id, o->now);
    Cxm__V1__Identity self = CXM__V1__IDENTITY__INIT;
    self.type = CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID;
    self.custom_type = "";
    self.value = id;
    if (!p || prof_identity_add(o->a, p, &self, source, "", o->now) != 0)
        return NULL;
    return p;
}

/* An identity erased with suppress_identities may not come back. */
static int check_not_suppressed(cxm_txn *t, op *o, const Cxm__V1__Identity *id)
{
    const char *receipt;
    int rc = pdb_suppressed_by(t, &ctx.db, id, o->a, &receipt);
    if (rc == CXM_ENOTFOUND)
        return 0;
    if (rc == 0) {
        snprintf(o->err, ERR_MAX,
                 "identity %s \"%s\" belongs to an erased customer whose identities are "
                 "suppressed (receipt %s)",
                 type_name(id->type), id->value, receipt);
        rc = CXM_ESTALE;
    }
    return rc;
}

/* Merge source into target inside the transaction: snapshots, redirect,
 * record. linking may be NULL (an explicit MergeProfiles). */
static int merge_into(cxm_txn *t, op *o, prof_profile *target, prof_profile *source,
                      const char *reason, const Cxm__V1__Identity *linking,
                      Cxm__V1__MergeRecord **record)
{
    int rc = prof_merge_check(target, source, &ctx.unique, o->err, sizeof o->err);
    if (rc != 0)
        return rc;
    pdb_snapshot snap = {prof_copy(o->a, target), prof_copy(o->a, source), NULL, NULL};
    Cxm__V1__MergeRecord *r = cxm_arena_calloc(o->a, 1, sizeof *r);
    char *merge_id = cxm_arena_alloc(o->a, PDB_ID_LEN);
    if (!snap.target_before || !snap.source_before || !r || !merge_id)
        return CXM_ENOMEM;
    pdb_new_id('m', merge_id);
    cxm__v1__merge_record__init(r);
    r->merge_id = merge_id;
    r->source_customer_id = source->customer_id;
    r->target_customer_id = target->customer_id;
    r->merged_at_unix_ms = o->now;
    r->reason = (char *)s_or_empty(reason);
    r->linking_identity = (Cxm__V1__Identity *)linking;
    if ((rc = prof_merge(o->a, target, source, merge_id, o->now, o->err, sizeof o->err)) != 0)
        return rc;
    /* Newest first. */
    Cxm__V1__MergeRecord **merges = cxm_arena_alloc(o->a, (target->n_merges + 1) * sizeof *merges);
    if (!merges)
        return CXM_ENOMEM;
    merges[0] = r;
    if (target->n_merges) /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(merges + 1, target->merges, target->n_merges * sizeof *merges);
    target->merges = merges;
    target->n_merges++;
    if ((rc = pdb_remove(t, &ctx.db, source)) != 0 ||
        (rc = cxm_txn_put(t, ctx.db.redirects, source->customer_id, strlen(source->customer_id),
                          target->customer_id, strlen(target->customer_id), 0)) != 0 ||
        (rc = commit_profile(t, o, target)) != 0)
        return rc;
    snap.target_after = prof_copy(o->a, target);
    snap.record = r;
    if (!snap.target_after)
        return CXM_ENOMEM;
    *record = r;
    return pdb_put_snapshot(t, &ctx.db, o->a, &snap);
}

/* ---- ResolveIdentity ---- */

static int resolve_create(cxm_txn *t, op *o)
{
    const Cxm__V1__ResolveIdentityRequest *req = o->req;
    Cxm__V1__ResolveIdentityResponse *resp =
        op_response(o, &cxm__v1__resolve_identity_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    resp->normalized = req->identity;
    const char *owner;
    int rc = pdb_identity_owner(t, &ctx.db, req->identity, o->a, &owner);
    if (rc == CXM_ENOTFOUND) { /* still unknown inside the write: create */
        if ((rc = check_not_suppressed(t, o, req->identity)) != 0)
            return rc;
        prof_profile *p = create_profile(o, "resolve");
        if (!p || prof_identity_add(o->a, p, req->identity, "resolve", "", o->now) != 0)
            return CXM_ENOMEM;
        if ((rc = commit_profile(t, o, p)) != 0)
            return rc;
        owner = p->customer_id;
        resp->created = true;
    } else if (rc != 0) {
        return rc;
    }
    resp->customer_id = (char *)owner;
    return 0;
}

static void on_resolve(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__ResolveIdentityRequest *req = (Cxm__V1__ResolveIdentityRequest *)msg;
    cxm_arena *a = cxm_call_arena(call);
    char err[ERR_MAX] = "";
    int rc = check_identity(a, req->identity, "identity", err);
    if (rc == 0 && req->create_if_missing &&
        req->identity->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID) {
        snprintf(err, ERR_MAX,
                 "identity.type: CUSTOMER_ID ids are assigned by cxm and cannot be "
                 "created through create_if_missing");
        rc = CXM_EINVAL;
    }
    if (rc != 0)
        return finish_err(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(ctx.db.store, &t)) != 0)
        return finish_err(call, rc, "");
    const char *owner = NULL;
    bool redirected = false;
    if (req->identity->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID) {
        Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
        ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
        ref.customer_id = req->identity->value;
        rc = ref_to_id(t, a, &ref, &owner, &redirected, err);
    } else {
        rc = pdb_identity_owner(t, &ctx.db, req->identity, a, &owner);
    }
    cxm_store_read_end(t);
    if (rc == CXM_ENOTFOUND && req->create_if_missing)
        return submit(call, req, resolve_create);
    if (rc == CXM_ENOTFOUND && !err[0])
        snprintf(err, ERR_MAX, "no customer has the identity %s \"%s\"",
                 type_name(req->identity->type), req->identity->value);
    if (rc != 0)
        return finish_err(call, rc, err);
    Cxm__V1__ResolveIdentityResponse resp = CXM__V1__RESOLVE_IDENTITY_RESPONSE__INIT;
    resp.customer_id = (char *)owner;
    resp.normalized = req->identity;
    cxm_call_reply(call, &resp.base);
}

/* ---- GetProfile ---- */

/* GetProfileResponse spliced from the stored bytes: field 1 (profile) as a
 * length-delimited copy, then field 2 (redirected). The stored profile is
 * never decoded: a read costs one copy. */
static uint8_t *get_response(cxm_arena *a, const void *profile, size_t n, bool redirected,
                             size_t *len)
{
    uint8_t *buf = cxm_arena_alloc(a, n + 16), *p = buf;
    if (!buf)
        return NULL;
    *p++ = 0x0a; /* field 1, wire type 2 */
    for (size_t v = n;; v >>= 7) {
        *p++ = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        if (v <= 0x7f)
            break;
    }
    memcpy(p, profile, n);
    p += n;
    if (redirected) {
        *p++ = 0x10; /* field 2, varint */
        *p++ = 1;
    }
    *len = (size_t)(p - buf);
    return buf;
}

static void on_get(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__GetProfileRequest *req = (Cxm__V1__GetProfileRequest *)msg;
    cxm_arena *a = cxm_call_arena(call);
    char err[ERR_MAX] = "";
    int rc = check_ref(a, req->customer, "customer", err);
    if (rc != 0)
        return finish_err(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(ctx.db.store, &t)) != 0)
        return finish_err(call, rc, "");
    const char *id;
    bool redirected;
    const void *stored;
    size_t n, len = 0;
    uint8_t *resp = NULL;
    rc = ref_to_id(t, a, req->customer, &id, &redirected, err);
    if (rc == 0)
        rc = cxm_txn_get_ref(t, ctx.db.profiles, id, strlen(id), &stored, &n);
    if (rc == 0 && !(resp = get_response(a, stored, n, redirected, &len)))
        rc = CXM_ENOMEM;
    cxm_store_read_end(t);
    if (rc != 0)
        return finish_err(call, rc, err);
    cxm_call_reply_bytes(call, resp, len);
}

/* ---- UpsertProfile ---- */

static int check_attribute_update(const Cxm__V1__AttributeUpdate *u, size_t i, int64_t now,
                                  char *err)
{
    char field[64];
    snprintf(field, sizeof field, "attributes[%zu]", i);
    if (!prof_name_valid(u->name)) {
        snprintf(err, ERR_MAX, "%s.name: must be [A-Za-z0-9_.-], 1 to 128 bytes", field);
        return CXM_EINVAL;
    }
    if ((unsigned)u->strategy > CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD) {
        snprintf(err, ERR_MAX, "%s.strategy: unknown strategy %d", field, u->strategy);
        return CXM_EINVAL;
    }
    if (u->observed_at_unix_ms < 0 || u->observed_at_unix_ms > now + FUTURE_SLACK_MS) {
        snprintf(err, ERR_MAX, "%s.observed_at_unix_ms: must not be negative or in the future",
                 field);
        return CXM_EINVAL;
    }
    if (u->unset) {
        if (u->value && u->value->kind_case) {
            snprintf(err, ERR_MAX, "%s.value: must be empty when unset is true", field);
            return CXM_EINVAL;
        }
        return 0;
    }
    strcat(field, ".value");
    return prof_value_check(u->value, field, err, ERR_MAX);
}

static int check_upsert(cxm_arena *a, Cxm__V1__UpsertProfileRequest *req, int64_t now, char *err)
{
    int rc = 0;
    if (!*s_or_empty(req->customer_id) && req->n_identities == 0) {
        snprintf(err, ERR_MAX, "customer_id: a customer_id or at least one identity is required");
        return CXM_EINVAL;
    }
    if (*s_or_empty(req->customer_id) &&
        (rc = check_customer_id(req->customer_id, "customer_id", err)) != 0)
        return rc;
    if (req->n_identities > MAX_LINK || req->n_attributes > PROF_MAX_ATTRIBUTES) {
        snprintf(err, ERR_MAX, "%s: too many (at most %d)",
                 req->n_identities > MAX_LINK ? "identities" : "attributes",
                 req->n_identities > MAX_LINK ? MAX_LINK : PROF_MAX_ATTRIBUTES);
        return CXM_EINVAL;
    }
    for (size_t i = 0; i < req->n_identities && rc == 0; i++) {
        char field[48];
        snprintf(field, sizeof field, "identities[%zu]", i);
        rc = check_identity(a, req->identities[i], field, err);
    }
    for (size_t i = 0; i < req->n_attributes && rc == 0; i++) {
        rc = check_attribute_update(req->attributes[i], i, now, err);
        for (size_t j = 0; j < i && rc == 0; j++)
            if (strcmp(req->attributes[j]->name, req->attributes[i]->name) == 0) {
                snprintf(err, ERR_MAX, "attributes[%zu].name: \"%s\" appears twice", i,
                         req->attributes[i]->name);
                rc = CXM_EINVAL;
            }
    }
    if (rc == 0 && (unsigned)req->link_policy > CXM__V1__LINK_POLICY__LINK_POLICY_SKIP) {
        snprintf(err, ERR_MAX, "link_policy: unknown policy %d", req->link_policy);
        rc = CXM_EINVAL;
    }
    if (rc == 0)
        rc = check_text(req->source, 0, 128, "source", err);
    if (rc == 0)
        rc = check_text(req->request_id, 0, 128, "request_id", err);
    return rc;
}

/* The profile an upsert writes to: by id, by the first identity that
 * resolves, or new. */
static int upsert_target(cxm_txn *t, op *o, const Cxm__V1__UpsertProfileRequest *req,
                         prof_profile **p, bool *created)
{
    const char *id = NULL;
    bool redirected;
    int rc = CXM_ENOTFOUND;
    *created = false;
    if (*s_or_empty(req->customer_id)) {
        rc = pdb_resolve_id(t, &ctx.db, req->customer_id, o->a, &id, &redirected);
        if (rc == 0 && (rc = pdb_load(t, &ctx.db, id, o->a, p)) == CXM_ENOTFOUND)
            snprintf(o->err, ERR_MAX, "customer_id: no customer with id \"%s\"", req->customer_id);
        return rc;
    }
    for (size_t i = 0; i < req->n_identities && rc == CXM_ENOTFOUND; i++)
        rc = pdb_identity_owner(t, &ctx.db, req->identities[i], o->a, &id);
    if (rc == 0)
        return pdb_load(t, &ctx.db, id, o->a, p);
    if (rc != CXM_ENOTFOUND)
        return rc;
    *created = true;
    *p = create_profile(o, s_or_empty(req->source));
    return *p ? 0 : CXM_ENOMEM;
}

typedef struct link_result {
    Cxm__V1__MergeRecord **merges;
    size_t nmerges;
    Cxm__V1__Identity **skipped;
    size_t nskipped;
} link_result;

static int link_one(cxm_txn *t, op *o, const Cxm__V1__UpsertProfileRequest *req, prof_profile *p,
                    Cxm__V1__Identity *id, link_result *lr)
{
    const char *owner;
    int rc = pdb_identity_owner(t, &ctx.db, id, o->a, &owner);
    if (rc == CXM_ENOTFOUND) {
        if ((rc = check_not_suppressed(t, o, id)) != 0)
            return rc;
        if ((rc = prof_unique_check(p, id, &ctx.unique, o->err, ERR_MAX)) != 0)
            return rc;
        return prof_identity_add(o->a, p, id, s_or_empty(req->source), "", o->now);
    }
    if (rc != 0 || strcmp(owner, p->customer_id) == 0)
        return rc;
    if (req->link_policy == CXM__V1__LINK_POLICY__LINK_POLICY_FAIL) {
        snprintf(o->err, ERR_MAX, "identity %s \"%s\" belongs to customer %s (link_policy FAIL)",
                 type_name(id->type), id->value, owner);
        return CXM_ESTALE;
    }
    if (req->link_policy == CXM__V1__LINK_POLICY__LINK_POLICY_SKIP) {
        lr->skipped[lr->nskipped++] = id;
        return 0;
    }
    prof_profile *other;
    if ((rc = pdb_load(t, &ctx.db, owner, o->a, &other)) != 0)
        return rc;
    char reason[ERR_MAX];
    snprintf(reason, sizeof reason, "identity %s linked by UpsertProfile", type_name(id->type));
    Cxm__V1__MergeRecord *r;
    rc = merge_into(t, o, p, other, cxm_arena_strndup(o->a, reason, strlen(reason)), id, &r);
    if (rc == 0)
        lr->merges[lr->nmerges++] = r;
    return rc;
}

static int upsert_duplicate(cxm_txn *t, op *o, const char *customer_id,
                            Cxm__V1__UpsertProfileResponse *resp)
{
    const char *live;
    bool redirected;
    int rc = pdb_resolve_id(t, &ctx.db, customer_id, o->a, &live, &redirected);
    if (rc == 0)
        rc = pdb_load(t, &ctx.db, live, o->a, &resp->profile);
    resp->duplicate = true;
    return rc;
}

static int upsert_run(cxm_txn *t, op *o)
{
    const Cxm__V1__UpsertProfileRequest *req = o->req;
    Cxm__V1__UpsertProfileResponse *resp =
        op_response(o, &cxm__v1__upsert_profile_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    const char *rid = s_or_empty(req->request_id);
    const char *seen;
    if (*rid &&
        cxm_txn_get(t, ctx.db.requests, rid, strlen(rid), o->a, (void **)&seen, &(size_t){0}) == 0)
        return upsert_duplicate(t, o, seen, resp);
    prof_profile *p;
    bool created;
    int rc = upsert_target(t, o, req, &p, &created);
    if (rc != 0)
        return rc;
    if (req->expected_version && req->expected_version != p->version) {
        snprintf(o->err, ERR_MAX, "expected_version %llu is stale: customer %s is at version %llu",
                 (unsigned long long)req->expected_version, p->customer_id,
                 (unsigned long long)p->version);
        return CXM_ESTALE;
    }
    link_result lr = {cxm_arena_alloc(o->a, (req->n_identities + 1) * sizeof(void *)), 0,
                      cxm_arena_alloc(o->a, (req->n_identities + 1) * sizeof(void *)), 0};
    if (!lr.merges || !lr.skipped)
        return CXM_ENOMEM;
    for (size_t i = 0; i < req->n_identities && rc == 0; i++)
        rc = link_one(t, o, req, p, req->identities[i], &lr);
    for (size_t i = 0; i < req->n_attributes && rc == 0; i++) {
        bool changed;
        rc = prof_attr_apply(o->a, p, req->attributes[i], s_or_empty(req->source), o->now, &changed,
                             o->err, ERR_MAX);
    }
    if (rc == 0)
        rc = commit_profile(t, o, p);
    if (rc == 0 && *rid)
        rc = cxm_txn_put(t, ctx.db.requests, rid, strlen(rid), p->customer_id,
                         strlen(p->customer_id), 0);
    if (rc != 0)
        return rc;
    resp->profile = p;
    resp->created = created;
    resp->merges = lr.merges;
    resp->n_merges = lr.nmerges;
    resp->skipped_identities = lr.skipped;
    resp->n_skipped_identities = lr.nskipped;
    return 0;
}

static void on_upsert(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__UpsertProfileRequest *req = (Cxm__V1__UpsertProfileRequest *)msg;
    char err[ERR_MAX] = "";
    int rc = check_upsert(cxm_call_arena(call), req, now_ms(), err);
    if (rc != 0)
        return finish_err(call, rc, err);
    submit(call, req, upsert_run);
}

/* ---- MergeProfiles / UnmergeProfile ---- */

static int load_live(cxm_txn *t, op *o, const char *id, const char *field, prof_profile **p)
{
    const char *live;
    bool redirected;
    int rc = pdb_resolve_id(t, &ctx.db, id, o->a, &live, &redirected);
    if (rc == 0)
        rc = pdb_load(t, &ctx.db, live, o->a, p);
    if (rc == CXM_ENOTFOUND)
        snprintf(o->err, ERR_MAX, "%s: no customer with id \"%s\"", field, id);
    return rc;
}

static int merge_run(cxm_txn *t, op *o)
{
    const Cxm__V1__MergeProfilesRequest *req = o->req;
    prof_profile *target, *source;
    int rc = load_live(t, o, req->target_customer_id, "target_customer_id", &target);
    if (rc == 0)
        rc = load_live(t, o, req->source_customer_id, "source_customer_id", &source);
    if (rc != 0)
        return rc;
    if (strcmp(target->customer_id, source->customer_id) == 0) {
        snprintf(o->err, ERR_MAX, "source_customer_id: customer %s is already part of %s",
                 req->source_customer_id, target->customer_id);
        return CXM_EINVAL;
    }
    if (req->expected_target_version && req->expected_target_version != target->version) {
        snprintf(o->err, ERR_MAX, "expected_target_version %llu is stale: the target is at %llu",
                 (unsigned long long)req->expected_target_version,
                 (unsigned long long)target->version);
        return CXM_ESTALE;
    }
    Cxm__V1__MergeProfilesResponse *resp =
        op_response(o, &cxm__v1__merge_profiles_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    if (req->dry_run) {
        if ((rc = prof_merge_check(target, source, &ctx.unique, o->err, ERR_MAX)) != 0 ||
            (rc = prof_merge(o->a, target, source, "", o->now, o->err, ERR_MAX)) != 0)
            return rc;
        resp->profile = target; /* computed in memory only: nothing was written */
        return 0;
    }
    rc = merge_into(t, o, target, source, req->reason, NULL, &resp->merge);
    resp->profile = target;
    return rc;
}

static void on_merge(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__MergeProfilesRequest *req = (Cxm__V1__MergeProfilesRequest *)msg;
    char err[ERR_MAX] = "";
    int rc = check_customer_id(req->target_customer_id, "target_customer_id", err);
    if (rc == 0)
        rc = check_customer_id(req->source_customer_id, "source_customer_id", err);
    if (rc == 0)
        rc = check_text(req->reason, 0, 1024, "reason", err);
    if (rc == 0 && strcmp(req->target_customer_id, req->source_customer_id) == 0) {
        snprintf(err, ERR_MAX, "source_customer_id: a profile cannot be merged into itself");
        rc = CXM_EINVAL;
    }
    if (rc != 0)
        return finish_err(call, rc, err);
    submit(call, req, merge_run);
}

static int unmerge_run(cxm_txn *t, op *o)
{
    const Cxm__V1__UnmergeProfileRequest *req = o->req;
    pdb_snapshot s;
    int rc = pdb_get_snapshot(t, &ctx.db, req->merge_id, o->a, &s);
    if (rc == CXM_ENOTFOUND)
        snprintf(o->err, ERR_MAX, "merge_id: no merge \"%s\" (unknown, or erased)", req->merge_id);
    if (rc != 0)
        return rc;
    if (s.record->unmerged_at_unix_ms) {
        snprintf(o->err, ERR_MAX, "merge %s was already undone", req->merge_id);
        return CXM_ESTALE;
    }
    const char *live;
    bool redirected;
    if ((rc = pdb_resolve_id(t, &ctx.db, s.record->target_customer_id, o->a, &live, &redirected)) !=
        0)
        return rc;
    if (redirected) {
        snprintf(o->err, ERR_MAX,
                 "customer %s was merged into %s after this merge; undo that merge first",
                 s.record->target_customer_id, live);
        return CXM_ESTALE;
    }
    prof_profile *current;
    if ((rc = pdb_load(t, &ctx.db, live, o->a, &current)) != 0)
        return rc;
    prof_profile *target =
        prof_unmerge(o->a, current, s.target_before, s.target_after, req->merge_id);
    if (!target)
        return CXM_ENOMEM;
    s.record->unmerged_at_unix_ms = o->now;
    for (size_t i = 0; i < target->n_merges; i++)
        if (strcmp(target->merges[i]->merge_id, req->merge_id) == 0)
            target->merges[i] = s.record;
    target->version = current->version;
    prof_profile *source = s.source_before;
    if ((rc = commit_profile(t, o, target)) != 0 ||
        (rc = cxm_txn_del(t, ctx.db.redirects, source->customer_id, strlen(source->customer_id))) !=
            0 ||
        (rc = pdb_save(t, &ctx.db, o->a, source)) != 0 ||
        (rc = pdb_put_snapshot(t, &ctx.db, o->a, &s)) != 0)
        return rc;
    Cxm__V1__UnmergeProfileResponse *resp =
        op_response(o, &cxm__v1__unmerge_profile_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    resp->target = target;
    resp->source = source;
    resp->merge = s.record;
    return 0;
}

static void on_unmerge(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__UnmergeProfileRequest *req = (Cxm__V1__UnmergeProfileRequest *)msg;
    char err[ERR_MAX] = "";
    int rc = check_text(req->merge_id, 1, 64, "merge_id", err);
    if (rc == 0)
        rc = check_text(req->reason, 0, 1024, "reason", err);
    if (rc != 0)
        return finish_err(call, rc, err);
    submit(call, req, unmerge_run);
}

/* ---- SetConsent ---- */

/* Resolve and load the profile a CustomerRef names inside a write. */
static int load_ref(cxm_txn *t, op *o, const Cxm__V1__CustomerRef *ref, prof_profile **p)
{
    const char *id;
    bool redirected;
    int rc = ref_to_id(t, o->a, ref, &id, &redirected, o->err);
    return rc == 0 ? pdb_load(t, &ctx.db, id, o->a, p) : rc;
}

static int consent_run(cxm_txn *t, op *o)
{
    const Cxm__V1__SetConsentRequest *req = o->req;
    prof_profile *p;
    int rc = load_ref(t, o, req->customer, &p);
    if (rc != 0)
        return rc;
    Cxm__V1__Consent c = CXM__V1__CONSENT__INIT;
    c.scope = req->scope;
    c.state = req->state;
    c.decided_at_unix_ms = req->decided_at_unix_ms ? req->decided_at_unix_ms : o->now;
    c.source = req->source;
    c.policy_version = req->policy_version;
    c.recorded_at_unix_ms = o->now;
    bool applied;
    Cxm__V1__Consent *cur = prof_consent_set(o->a, p, &c, &applied);
    if (!cur)
        return CXM_ENOMEM;
    if (applied && (rc = commit_profile(t, o, p)) != 0)
        return rc;
    Cxm__V1__SetConsentResponse *resp = op_response(o, &cxm__v1__set_consent_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    resp->consent = cur;
    resp->applied = applied;
    resp->customer_id = p->customer_id;
    resp->version = p->version;
    return 0;
}

static void on_consent(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__SetConsentRequest *req = (Cxm__V1__SetConsentRequest *)msg;
    char err[ERR_MAX] = "";
    int rc = check_ref(cxm_call_arena(call), req->customer, "customer", err);
    if (rc == 0 && !prof_slug_valid(req->scope)) {
        snprintf(err, ERR_MAX, "scope: must be [a-z0-9_.-], 1 to 64 bytes");
        rc = CXM_EINVAL;
    }
    if (rc == 0 && (req->state < CXM__V1__CONSENT_STATE__CONSENT_STATE_GRANTED ||
                    req->state > CXM__V1__CONSENT_STATE__CONSENT_STATE_REVOKED)) {
        snprintf(err, ERR_MAX, "state: GRANTED, DENIED or REVOKED is required");
        rc = CXM_EINVAL;
    }
    if (rc == 0 &&
        (req->decided_at_unix_ms < 0 || req->decided_at_unix_ms > now_ms() + FUTURE_SLACK_MS)) {
        snprintf(err, ERR_MAX, "decided_at_unix_ms: must not be negative or in the future");
        rc = CXM_EINVAL;
    }
    if (rc == 0)
        rc = check_text(req->source, 1, 128, "source", err);
    if (rc == 0)
        rc = check_text(req->policy_version, 0, 64, "policy_version", err);
    if (rc != 0)
        return finish_err(call, rc, err);
    submit(call, req, consent_run);
}

/* ---- DeleteProfile ---- */

static int erase_merges(cxm_txn *t, op *o, const prof_profile *p, Cxm__V1__DeletionReceipt *r,
                        uint64_t *records)
{
    r->merged_customer_ids = cxm_arena_alloc(o->a, (p->n_merges + 1) * sizeof(char *));
    if (!r->merged_customer_ids)
        return CXM_ENOMEM;
    for (size_t i = 0; i < p->n_merges; i++) {
        const Cxm__V1__MergeRecord *m = p->merges[i];
        int rc = cxm_txn_del(t, ctx.db.merges, m->merge_id, strlen(m->merge_id));
        if (rc != 0 && rc != CXM_ENOTFOUND)
            return rc;
        *records += rc == 0;
        if (m->unmerged_at_unix_ms)
            continue;
        rc = cxm_txn_del(t, ctx.db.redirects, m->source_customer_id, strlen(m->source_customer_id));
        if (rc != 0 && rc != CXM_ENOTFOUND)
            return rc;
        r->merged_customer_ids[r->n_merged_customer_ids++] = m->source_customer_id;
    }
    return 0;
}

static int delete_run(cxm_txn *t, op *o)
{
    const Cxm__V1__DeleteProfileRequest *req = o->req;
    Cxm__V1__DeleteProfileResponse *resp =
        op_response(o, &cxm__v1__delete_profile_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    if (req->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID) {
        void *v;
        size_t n;
        const char *id = req->customer->customer_id;
        if (cxm_txn_get(t, ctx.db.receipts, id, strlen(id), o->a, &v, &n) == 0) {
            resp->receipt = cxm__v1__deletion_receipt__unpack(cxm_arena_protobuf(o->a), n, v);
            return resp->receipt ? 0 : CXM_ECORRUPT;
        }
    }
    prof_profile *p;
    int rc = load_ref(t, o, req->customer, &p);
    if (rc != 0)
        return rc;
    Cxm__V1__DeletionReceipt *r = cxm_arena_alloc(o->a, sizeof *r);
    Cxm__V1__ServiceErasure *se = cxm_arena_alloc(o->a, sizeof *se);
    char *rid = cxm_arena_alloc(o->a, PDB_ID_LEN);
    if (!r || !se || !rid)
        return CXM_ENOMEM;
    cxm__v1__deletion_receipt__init(r);
    cxm__v1__service_erasure__init(se);
    pdb_new_id('r', rid);
    uint64_t records = p->n_identities + p->n_attributes + p->n_traits + p->n_consents;
    for (size_t i = 0; req->suppress_identities && i < p->n_identities; i++) {
        const Cxm__V1__Identity *id = p->identities[i]->identity;
        if (id->type != CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID &&
            (rc = pdb_suppress(t, &ctx.db, id, rid)) != 0)
            return rc;
    }
    r->identities_suppressed = req->suppress_identities;
    if ((rc = erase_merges(t, o, p, r, &records)) != 0 || (rc = pdb_remove(t, &ctx.db, p)) != 0)
        return rc;
    r->receipt_id = rid;
    r->customer_id = p->customer_id;
    r->reason = req->reason;
    r->requested_at_unix_ms = r->completed_at_unix_ms = o->now;
    se->service = "profile";
    se->state = CXM__V1__ERASURE_STATE__ERASURE_STATE_DONE;
    se->records_erased = records;
    se->completed_at_unix_ms = o->now;
    r->services = cxm_arena_alloc(o->a, sizeof *r->services);
    if (!r->services)
        return CXM_ENOMEM;
    r->services[0] = se;
    r->n_services = 1;
    resp->receipt = r;
    return pdb_put_message(t, ctx.db.receipts, p->customer_id, strlen(p->customer_id), o->a,
                           &r->base);
}

static void on_delete(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__DeleteProfileRequest *req = (Cxm__V1__DeleteProfileRequest *)msg;
    char err[ERR_MAX] = "";
    int rc = check_ref(cxm_call_arena(call), req->customer, "customer", err);
    if (rc == 0)
        rc = check_text(req->reason, 1, 1024, "reason", err);
    if (rc != 0)
        return finish_err(call, rc, err);
    submit(call, req, delete_run);
}

/* ---- SearchProfiles ---- */

/* Page tokens carry a hash of the filters, so a token is refused with
 * other filters, and the last customer id returned. */
static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    while (n--)
        h = (h ^ *p++) * 1099511628211ull;
    return h;
}

static uint64_t filter_hash(cxm_arena *a, const ProtobufCMessage *const *parts, size_t n)
{
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = protobuf_c_message_get_packed_size(parts[i]);
        uint8_t *buf = cxm_arena_alloc(a, len ? len : 1);
        if (!buf)
            return 0;
        protobuf_c_message_pack(parts[i], buf);
        h = h * 31 + fnv1a(buf, len);
    }
    return h;
}

/* Parse "<16 hex hash>:<after>"; empty token = from the start. */
static int parse_token(const char *token, uint64_t want, const char **after, char *err)
{
    *after = "";
    if (!token || !*token)
        return 0;
    char *end;
    uint64_t h = strtoull(token, &end, 16);
    if (end != token + 16 || *end != ':' || h != want) {
        snprintf(err, ERR_MAX,
                 "page_token: malformed, or issued for other filters; start again without it");
        return CXM_EINVAL;
    }
    *after = end + 1;
    return 0;
}

static char *make_token(cxm_arena *a, uint64_t h, const char *after, size_t len)
{
    char *t = cxm_arena_alloc(a, 18 + len);
    if (t)
        snprintf(t, 18 + len, "%016llx:%.*s", (unsigned long long)h, (int)len, after);
    return t;
}

static int page_size(int32_t asked, int32_t dflt, char *err)
{
    if (asked < 0) {
        snprintf(err, ERR_MAX, "page_size: must not be negative");
        return -1;
    }
    return asked == 0 ? dflt : asked > 1000 ? 1000 : asked;
}

static bool matches_all(const Cxm__V1__SearchProfilesRequest *req, const prof_profile *p)
{
    for (size_t i = 0; i < req->n_conditions; i++)
        if (!prof_field_eval(req->conditions[i], p))
            return false;
    return true;
}

/* Walk profiles after `after` in id order, keeping matches. */
static int search_scan(cxm_txn *t, cxm_arena *a, const Cxm__V1__SearchProfilesRequest *req,
                       const char *after, int limit, Cxm__V1__SearchProfilesResponse *resp,
                       bool *more)
{
    cxm_iter it;
    int rc = cxm_iter_range(t, ctx.db.profiles, after, strlen(after), NULL, 0, false, &it);
    *more = false;
    resp->profiles = cxm_arena_alloc(a, (size_t)limit * sizeof *resp->profiles);
    if (!resp->profiles)
        rc = CXM_ENOMEM;
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        if (*after && it.klen == strlen(after) && memcmp(it.key, after, it.klen) == 0)
            continue;
        prof_profile *p = prof_unpack(a, it.val, it.vlen);
        if (!p) {
            rc = CXM_ECORRUPT;
            break;
        }
        if (!matches_all(req, p))
            continue;
        if (resp->n_profiles == (size_t)limit) {
            *more = true;
            break;
        }
        resp->profiles[resp->n_profiles++] = p;
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static void on_search(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__SearchProfilesRequest *req = (Cxm__V1__SearchProfilesRequest *)msg;
    cxm_arena *a = cxm_call_arena(call);
    char err[ERR_MAX] = "";
    int rc = 0;
    if (req->n_conditions == 0 || req->n_conditions > MAX_CONDITIONS) {
        snprintf(err, ERR_MAX, "conditions: 1 to %d conditions are required", MAX_CONDITIONS);
        rc = CXM_EINVAL;
    }
    for (size_t i = 0; i < req->n_conditions && rc == 0; i++) {
        char field[48];
        snprintf(field, sizeof field, "conditions[%zu]", i);
        rc = prof_field_check(req->conditions[i], field, err, ERR_MAX);
    }
    int limit = rc == 0 ? page_size(req->page_size, 50, err) : 0;
    uint64_t h =
        filter_hash(a, (const ProtobufCMessage *const *)req->conditions, req->n_conditions);
    const char *after = "";
    if (rc == 0 && limit < 0)
        rc = CXM_EINVAL;
    if (rc == 0)
        rc = parse_token(req->page_token, h, &after, err);
    if (rc != 0)
        return finish_err(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(ctx.db.store, &t)) != 0)
        return finish_err(call, rc, "");
    Cxm__V1__SearchProfilesResponse resp = CXM__V1__SEARCH_PROFILES_RESPONSE__INIT;
    bool more;
    rc = search_scan(t, a, req, after, limit, &resp, &more);
    cxm_store_read_end(t);
    if (rc != 0)
        return finish_err(call, rc, "");
    if (more) {
        const char *last = resp.profiles[resp.n_profiles - 1]->customer_id;
        resp.next_page_token = make_token(a, h, last, strlen(last));
    }
    cxm_call_reply(call, &resp.base);
}

/* ---- segments ---- */

static int segment_run(cxm_txn *t, op *o)
{
    const Cxm__V1__UpsertSegmentRequest *req = o->req;
    Cxm__V1__Segment *seg = req->segment;
    Cxm__V1__UpsertSegmentResponse *resp =
        op_response(o, &cxm__v1__upsert_segment_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    void *v;
    size_t n;
    Cxm__V1__Segment *old = NULL;
    int rc =
        cxm_txn_get(t, ctx.db.segments, seg->segment_id, strlen(seg->segment_id), o->a, &v, &n);
    if (rc == 0 && !(old = cxm__v1__segment__unpack(cxm_arena_protobuf(o->a), n, v)))
        return CXM_ECORRUPT;
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    uint64_t version = old ? old->version : 0;
    if (req->expected_version && req->expected_version != version) {
        snprintf(o->err, ERR_MAX, "expected_version %llu is stale: segment %s is at version %llu",
                 (unsigned long long)req->expected_version, seg->segment_id,
                 (unsigned long long)version);
        return CXM_ESTALE;
    }
    seg->version = version + 1;
    seg->created_at_unix_ms = old ? old->created_at_unix_ms : o->now;
    seg->updated_at_unix_ms = o->now;
    if ((rc = pdb_evaluate_segment(t, &ctx.db, o->a, seg, &seg->member_count)) != 0)
        return rc;
    seg->evaluated_at_unix_ms = o->now;
    if ((rc = pdb_put_message(t, ctx.db.segments, seg->segment_id, strlen(seg->segment_id), o->a,
                              &seg->base)) != 0)
        return rc;
    resp->segment = seg;
    resp->created = old == NULL;
    return 0;
}

static void on_upsert_segment(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__UpsertSegmentRequest *req = (Cxm__V1__UpsertSegmentRequest *)msg;
    char err[ERR_MAX] = "";
    int rc = 0;
    Cxm__V1__Segment *s = req->segment;
    if (!s) {
        snprintf(err, ERR_MAX, "segment: required");
        rc = CXM_EINVAL;
    } else if (!prof_slug_valid(s->segment_id)) {
        snprintf(err, ERR_MAX, "segment.segment_id: must be [a-z0-9_.-], 1 to 64 bytes");
        rc = CXM_EINVAL;
    }
    if (rc == 0)
        rc = check_text(s->display_name, 0, 256, "segment.display_name", err);
    if (rc == 0)
        rc = check_text(s->description, 0, 4096, "segment.description", err);
    if (rc == 0)
        rc = prof_condition_check(s->condition, err, ERR_MAX);
    if (rc != 0)
        return finish_err(call, rc, err);
    submit(call, req, segment_run);
}

static int list_members(cxm_txn *t, cxm_arena *a, const char *segment_id, const char *after,
                        int limit, Cxm__V1__ListSegmentMembersResponse *resp, bool *more)
{
    uint8_t prefix[CXM_KEY_MAX];
    size_t plen;
    cxm_key k;
    cxm_key_init(&k, prefix, sizeof prefix);
    cxm_key_str(&k, segment_id);
    int rc = cxm_key_finish(&k, &plen);
    cxm_iter it;
    if (rc == 0)
        rc = cxm_iter_prefix(t, ctx.db.members, prefix, plen, false, &it);
    if (rc != 0)
        return rc;
    *more = false;
    resp->customer_ids = cxm_arena_alloc(a, (size_t)limit * sizeof(char *));
    if (!resp->customer_ids)
        rc = CXM_ENOMEM;
    size_t alen = strlen(after);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0) {
        const char *id = (const char *)it.key + plen;
        size_t idlen = it.klen - plen;
        resp->total_size++;
        int c = memcmp(id, after, idlen < alen ? idlen : alen);
        if (alen && (c < 0 || (c == 0 && idlen <= alen)))
            continue;
        if (resp->n_customer_ids == (size_t)limit) {
            *more = true;
            continue; /* keep counting for total_size */
        }
        resp->customer_ids[resp->n_customer_ids++] = cxm_arena_strndup(a, id, idlen);
    }
    cxm_iter_close(&it);
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static void on_list_members(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__ListSegmentMembersRequest *req = (Cxm__V1__ListSegmentMembersRequest *)msg;
    cxm_arena *a = cxm_call_arena(call);
    char err[ERR_MAX] = "";
    int rc = prof_slug_valid(req->segment_id) ? 0 : CXM_EINVAL;
    if (rc != 0)
        snprintf(err, ERR_MAX, "segment_id: must be [a-z0-9_.-], 1 to 64 bytes");
    int limit = rc == 0 ? page_size(req->page_size, 1000, err) : 0;
    if (limit < 0)
        rc = CXM_EINVAL;
    uint64_t h = fnv1a((const uint8_t *)req->segment_id, strlen(s_or_empty(req->segment_id)));
    const char *after = "";
    if (rc == 0)
        rc = parse_token(req->page_token, h, &after, err);
    if (rc != 0)
        return finish_err(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(ctx.db.store, &t)) != 0)
        return finish_err(call, rc, "");
    void *v;
    size_t n;
    Cxm__V1__ListSegmentMembersResponse resp = CXM__V1__LIST_SEGMENT_MEMBERS_RESPONSE__INIT;
    bool more = false;
    rc = cxm_txn_get(t, ctx.db.segments, req->segment_id, strlen(req->segment_id), a, &v, &n);
    Cxm__V1__Segment *seg = rc == 0 ? cxm__v1__segment__unpack(cxm_arena_protobuf(a), n, v) : NULL;
    if (rc == 0)
        rc = seg ? list_members(t, a, req->segment_id, after, limit, &resp, &more) : CXM_ECORRUPT;
    cxm_store_read_end(t);
    if (rc == CXM_ENOTFOUND)
        snprintf(err, ERR_MAX, "segment_id: no segment \"%s\"", req->segment_id);
    if (rc != 0)
        return finish_err(call, rc, err);
    resp.evaluated_at_unix_ms = seg->evaluated_at_unix_ms;
    if (more) {
        const char *last = resp.customer_ids[resp.n_customer_ids - 1];
        resp.next_page_token = make_token(a, h, last, strlen(last));
    }
    cxm_call_reply(call, &resp.base);
}

/* ---- WriteTraits ---- */

/* Which service owns each well-known trait. */
static const char *standard_owner(const Cxm__V1__StandardTraitsUpdate *u)
{
    bool journey = u->journey_stage || u->first_seen_unix_ms || u->last_seen_unix_ms ||
                   u->lifetime_value_update_case || u->n_channel_mix;
    bool feedback =
        u->last_nps_update_case || u->open_follow_ups_update_case || u->last_nps_category;
    return journey && feedback ? "mixed" : journey ? "journey" : feedback ? "feedback" : NULL;
}

static int traits_apply(op *o, const Cxm__V1__WriteTraitsRequest *req, prof_profile *p,
                        int64_t observed, Cxm__V1__WriteTraitsResponse *resp)
{
    resp->ignored_traits = cxm_arena_alloc(o->a, (req->n_traits + 1) * sizeof(char *));
    if (!resp->ignored_traits)
        return CXM_ENOMEM;
    for (size_t i = 0; i < req->n_traits; i++) {
        const Cxm__V1__WriteTraitsRequest__TraitsEntry *e = req->traits[i];
        bool found = false;
        for (size_t j = 0; j < p->n_traits && !found; j++)
            if (strcmp(p->traits[j]->name, e->key) == 0) {
                found = true;
                if (strcmp(p->traits[j]->source, req->source) != 0) {
                    snprintf(o->err, ERR_MAX, "traits[%s]: owned by %s, not %s", e->key,
                             p->traits[j]->source, req->source);
                    return CXM_EPERM;
                }
            }
        bool applied;
        int rc = prof_trait_set(o->a, p, e->key, e->value, req->source, observed, o->now, &applied);
        if (rc == CXM_ESTALE)
            snprintf(o->err, ERR_MAX, "traits: a profile holds at most %d traits", PROF_MAX_TRAITS);
        if (rc != 0)
            return rc;
        if (!applied)
            resp->ignored_traits[resp->n_ignored_traits++] = e->key;
    }
    for (size_t i = 0; i < req->n_unset_traits; i++)
        prof_trait_unset(p, req->unset_traits[i]);
    if (req->standard)
        prof_standard_apply(o->a, p, req->standard, observed);
    return 0;
}

static int traits_run(cxm_txn *t, op *o)
{
    const Cxm__V1__WriteTraitsRequest *req = o->req;
    Cxm__V1__WriteTraitsResponse *resp =
        op_response(o, &cxm__v1__write_traits_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    prof_profile *p;
    int rc = load_ref(t, o, req->customer, &p);
    if (rc == CXM_ENOTFOUND && req->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY) {
        o->err[0] = '\0';
        if ((rc = check_not_suppressed(t, o, req->customer->identity)) != 0)
            return rc;
        p = create_profile(o, req->source);
        if (!p || prof_identity_add(o->a, p, req->customer->identity, req->source, "", o->now))
            return CXM_ENOMEM;
        resp->created = true;
        rc = 0;
    }
    if (rc != 0)
        return rc;
    int64_t observed = req->observed_at_unix_ms ? req->observed_at_unix_ms : o->now;
    if ((rc = traits_apply(o, req, p, observed, resp)) != 0 || (rc = commit_profile(t, o, p)) != 0)
        return rc;
    resp->customer_id = p->customer_id;
    resp->version = p->version;
    return 0;
}

static int check_standard(const Cxm__V1__StandardTraitsUpdate *u, const char *source, char *err)
{
    const char *owner = standard_owner(u);
    if (owner && strcmp(owner, source) != 0) {
        snprintf(err, ERR_MAX, "standard: these well-known traits are owned by %s, not %s",
                 strcmp(owner, "mixed") == 0 ? "journey and feedback" : owner, source);
        return CXM_EPERM;
    }
    if (u->last_nps_update_case && (u->last_nps < 0 || u->last_nps > 10)) {
        snprintf(err, ERR_MAX, "standard.last_nps: 0 to 10 (got %d)", u->last_nps);
        return CXM_EINVAL;
    }
    if (u->lifetime_value_update_case && !(u->lifetime_value >= 0 && u->lifetime_value < 1e300)) {
        snprintf(err, ERR_MAX, "standard.lifetime_value: a finite amount >= 0");
        return CXM_EINVAL;
    }
    if ((unsigned)u->journey_stage > CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_ADVOCACY) {
        snprintf(err, ERR_MAX, "standard.journey_stage: unknown stage %d", u->journey_stage);
        return CXM_EINVAL;
    }
    return 0;
}

static int check_traits(cxm_arena *a, Cxm__V1__WriteTraitsRequest *req, char *err)
{
    int rc = check_ref(a, req->customer, "customer", err);
    if (rc != 0)
        return rc;
    const char *sources[] = {"journey", "feedback", "personalisation"};
    bool known = false;
    for (size_t i = 0; i < 3; i++)
        known |= strcmp(s_or_empty(req->source), sources[i]) == 0;
    if (!known) {
        snprintf(err, ERR_MAX, "source: must be journey, feedback or personalisation");
        return CXM_EINVAL;
    }
    if (req->n_traits > PROF_MAX_TRAITS) {
        snprintf(err, ERR_MAX, "traits: at most %d per request", PROF_MAX_TRAITS);
        return CXM_EINVAL;
    }
    for (size_t i = 0; i < req->n_traits && rc == 0; i++) {
        char field[160];
        snprintf(field, sizeof field, "traits[%.128s]", s_or_empty(req->traits[i]->key));
        if (!prof_name_valid(req->traits[i]->key)) {
            snprintf(err, ERR_MAX, "%s: trait names are [A-Za-z0-9_.-], 1 to 128 bytes", field);
            return CXM_EINVAL;
        }
        rc = prof_value_check(req->traits[i]->value, field, err, ERR_MAX);
        for (size_t j = 0; j < req->n_unset_traits && rc == 0; j++)
            if (strcmp(req->unset_traits[j], req->traits[i]->key) == 0) {
                snprintf(err, ERR_MAX, "unset_traits[%zu]: \"%s\" is also set", j,
                         req->unset_traits[j]);
                rc = CXM_EINVAL;
            }
    }
    if (rc == 0 && req->standard)
        rc = check_standard(req->standard, req->source, err);
    if (rc == 0 && req->observed_at_unix_ms < 0) {
        snprintf(err, ERR_MAX, "observed_at_unix_ms: must not be negative");
        rc = CXM_EINVAL;
    }
    return rc;
}

static void on_traits(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__WriteTraitsRequest *req = (Cxm__V1__WriteTraitsRequest *)msg;
    char err[ERR_MAX] = "";
    int rc = check_traits(cxm_call_arena(call), req, err);
    if (rc != 0)
        return finish_err(call, rc, err);
    submit(call, req, traits_run);
}

/* ---- the module ---- */

static const cxm_method prof_methods[] = {
    {"UpsertProfile", CXM_UNARY, &cxm__v1__upsert_profile_request__descriptor, on_upsert},
    {"GetProfile", CXM_UNARY, &cxm__v1__get_profile_request__descriptor, on_get},
    {"ResolveIdentity", CXM_UNARY, &cxm__v1__resolve_identity_request__descriptor, on_resolve},
    {"MergeProfiles", CXM_UNARY, &cxm__v1__merge_profiles_request__descriptor, on_merge},
    {"UnmergeProfile", CXM_UNARY, &cxm__v1__unmerge_profile_request__descriptor, on_unmerge},
    {"SetConsent", CXM_UNARY, &cxm__v1__set_consent_request__descriptor, on_consent},
    {"DeleteProfile", CXM_UNARY, &cxm__v1__delete_profile_request__descriptor, on_delete},
    {"SearchProfiles", CXM_UNARY, &cxm__v1__search_profiles_request__descriptor, on_search},
    {"UpsertSegment", CXM_UNARY, &cxm__v1__upsert_segment_request__descriptor, on_upsert_segment},
    {"ListSegmentMembers", CXM_UNARY, &cxm__v1__list_segment_members_request__descriptor,
     on_list_members},
    {"WriteTraits", CXM_UNARY, &cxm__v1__write_traits_request__descriptor, on_traits},
};

/* Split a comma list in place into out (at most max entries). */
static size_t split_list(char *s, const char **out, size_t max)
{
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
        if (*tok)
            out[n++] = tok;
    return n;
}

static int parse_unique(void)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", cfg_unique);
    const char *names[8];
    size_t n = split_list(buf, names, 8);
    for (size_t i = 0; i < n; i++) {
        char full[80];
        snprintf(full, sizeof full, "IDENTITY_TYPE_%s", names[i]);
        for (char *c = full; *c; c++)
            *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value_by_name(&cxm__v1__identity_type__descriptor, full);
        if (!v || v->value == 0) {
            cxm_log_error("profile.config", "--profile-unique-types: unknown identity type \"%s\"",
                          names[i]);
            return CXM_EINVAL;
        }
        ctx.unique.types[ctx.unique.n++] = (Cxm__V1__IdentityType)v->value;
    }
    return 0;
}

static int prof_open(cxm_store *store, cxm_service *svc)
{
    memset(&ctx, 0, sizeof ctx);
    int rc = pdb_open(store, &ctx.db);
    if (rc == 0)
        rc = parse_unique();
    if (rc != 0)
        return rc;
    ctx.blocklist_copy = strdup(cfg_blocklist);
    if (!ctx.blocklist_copy)
        return CXM_ENOMEM;
    ctx.ident.nblocklist = split_list(ctx.blocklist_copy, ctx.blocked, 64);
    ctx.ident.blocklist = ctx.blocked;
    if (strlen(cfg_phone_country) > 4 ||
        strspn(cfg_phone_country, "0123456789") != strlen(cfg_phone_country)) {
        cxm_log_error("profile.config",
                      "--profile-phone-country: \"%s\" is not a country code "
                      "(1 to 4 digits, e.g. 82)",
                      cfg_phone_country);
        return CXM_EINVAL;
    }
    ctx.ident.default_phone_country = cfg_phone_country;
    *svc = (cxm_service){.name = cxm__v1__profile_service__descriptor.name,
                         .methods = prof_methods,
                         .nmethods = sizeof prof_methods / sizeof prof_methods[0],
                         .contract = &cxm__v1__profile_service__descriptor,
                         .ctx = &ctx};
    return 0;
}

static void prof_close(cxm_service *svc)
{
    free(ctx.blocklist_copy);
    ctx.blocklist_copy = NULL;
}

const cxm_module prof_module = {"profile", prof_open, prof_close, prof_opts,
                                sizeof prof_opts / sizeof prof_opts[0]};
