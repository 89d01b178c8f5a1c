/*
 * prof_rpc.c - the ProfileService handlers (see prof_rpc.h).
 *
 * Each write RPC is a handler (check, then cxm_svc_submit) and one *_job
 * function that runs inside the write transaction with the profile loaded
 * before it changes and saved after: the place where what else a write
 * must do in the same transaction goes.
 */
#include "prof_rpc.h"

#include <stdio.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/log.h"
#include "cxm/svc.h"
#include "prof_check.h"

static const char *s_or_empty(const char *s)
{
    return s ? s : "";
}

/* ---- reading ---- */

/* The live customer id a CustomerRef names, or CXM_ENOTFOUND. */
static int ref_to_id(cxm_txn *t, const prof_ctx *ctx, cxm_arena *a, const Cxm__V1__CustomerRef *ref,
                     const char **id, bool *redirected, char *err)
{
    int rc;
    *redirected = false;
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY) {
        rc = pdb_identity_owner(t, ctx->db, ref->identity, a, id);
        if (rc == CXM_ENOTFOUND)
            cxm_svc_errf(err, rc, NULL, "no customer has the identity %s \"%s\"",
                         cxm_ident_type_name(ref->identity->type), ref->identity->value);
        return rc;
    }
    rc = pdb_resolve_id(t, ctx->db, ref->customer_id, a, id, redirected);
    if (rc == 0 && (rc = pdb_exists(t, ctx->db, *id)) == CXM_ENOTFOUND)
        cxm_svc_errf(err, rc, NULL, "no customer with id \"%s\"", ref->customer_id);
    return rc;
}

/* ---- events ---- */

/* Record ev about customer_id in the job's transaction (bus.h): it exists
 * exactly when the change commits, and a job that fails leaves none. */
static int publish(cxm_txn *t, cxm_svc_job *j, const char *customer_id, Cxm__V1__Event *ev)
{
    const prof_ctx *ctx = j->ctx;
    ev->customer_id = (char *)customer_id;
    ev->occurred_at_unix_ms = j->now;
    int rc = cxm_bus_emit(ctx->events, t, ev);
    if (rc == CXM_EINVAL) /* an event we built is wrong: our bug, not the caller's */
        rc = cxm_svc_errf(j->err, CXM_EINTERNAL, NULL, "cannot publish the change: %s",
                          cxm_bus_last_error());
    return rc;
}

/* SegmentMembershipChanged when p's segments differ from before. */
static int publish_segments(cxm_txn *t, cxm_svc_job *j, const prof_profile *p, char *const *before,
                            size_t nbefore)
{
    Cxm__V1__SegmentMembershipChanged c = CXM__V1__SEGMENT_MEMBERSHIP_CHANGED__INIT;
    int rc = prof_segments_diff(j->a, before, nbefore, p, &c);
    if (rc != 0 || (!c.n_entered_segment_ids && !c.n_left_segment_ids))
        return rc;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED;
    ev.segment_membership_changed = &c;
    return publish(t, j, p->customer_id, &ev);
}

/* TraitsChanged when p's generic traits differ from before. */
static int publish_traits(cxm_txn *t, cxm_svc_job *j, const prof_profile *p,
                          Cxm__V1__Trait *const *before, size_t nbefore)
{
    Cxm__V1__TraitsChanged c = CXM__V1__TRAITS_CHANGED__INIT;
    int rc = prof_traits_diff(j->a, before, nbefore, p, &c);
    if (rc != 0 || (!c.n_traits && !c.n_removed_trait_names))
        return rc;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_TRAITS_CHANGED;
    ev.traits_changed = &c;
    return publish(t, j, p->customer_id, &ev);
}

/* ---- the write path ---- */

/* Save p as a new version, and publish the change of its segments (from
 * the ones p lists, which must be those stored for it). */
static int save_profile(cxm_txn *t, cxm_svc_job *j, prof_profile *p)
{
    const prof_ctx *ctx = j->ctx;
    char **before = p->segment_ids; /* pdb_save gives p a new list */
    size_t nbefore = p->n_segment_ids;
    p->version++;
    p->updated_at_unix_ms = j->now;
    int rc = pdb_save(t, ctx->db, j->a, p);
    return rc ? rc : publish_segments(t, j, p, before, nbefore);
}

/* A new profile holding its own CUSTOMER_ID identity. */
static prof_profile *create_profile(cxm_svc_job *j, const char *source)
{
    char id[PDB_ID_LEN];
    pdb_new_id('c', id);
    prof_profile *p = prof_new(j->a, id, j->now);
    Cxm__V1__Identity self = CXM__V1__IDENTITY__INIT;
    self.type = CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID;
    self.custom_type = "";
    self.value = id;
    if (!p || prof_identity_add(j->a, p, &self, source, "", j->now) != 0)
        return NULL;
    return p;
}

/* An identity erased with suppress_identities may not come back. */
static int check_not_suppressed(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__Identity *id)
{
    const prof_ctx *ctx = j->ctx;
    const char *receipt;
    int rc = pdb_suppressed_by(t, ctx->db, id, j->a, &receipt);
    if (rc == CXM_ENOTFOUND)
        return 0;
    if (rc == 0)
        rc = cxm_svc_errf(j->err, CXM_ESTALE, NULL,
                          "identity %s \"%s\" belongs to an erased customer whose identities are "
                          "suppressed (receipt %s)",
                          cxm_ident_type_name(id->type), id->value, receipt);
    return rc;
}

/* A new profile for a customer first seen through identity id. */
static int create_for(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__Identity *id, const char *source,
                      prof_profile **out)
{
    int rc = check_not_suppressed(t, j, id);
    if (rc != 0)
        return rc;
    prof_profile *p = create_profile(j, source);
    if (!p || prof_identity_add(j->a, p, id, source, "", j->now) != 0)
        return CXM_ENOMEM;
    *out = p;
    return 0;
}

/* Prepend r to p's merge log (newest first). */
static int log_merge(cxm_arena *a, prof_profile *p, Cxm__V1__MergeRecord *r)
{
    Cxm__V1__MergeRecord **merges = cxm_arena_alloc(a, (p->n_merges + 1) * sizeof *merges);
    if (!merges)
        return CXM_ENOMEM;
    merges[0] = r;
    if (p->n_merges) /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(merges + 1, p->merges, p->n_merges * sizeof *merges);
    p->merges = merges;
    p->n_merges++;
    return 0;
}

static Cxm__V1__MergeRecord *new_record(cxm_svc_job *j, const prof_profile *target,
                                        const prof_profile *source, const char *reason,
                                        const Cxm__V1__Identity *linking)
{
    Cxm__V1__MergeRecord *r = cxm_arena_calloc(j->a, 1, sizeof *r);
    char *merge_id = cxm_arena_alloc(j->a, PDB_ID_LEN);
    if (!r || !merge_id)
        return NULL;
    pdb_new_id('m', merge_id);
    cxm__v1__merge_record__init(r);
    r->merge_id = merge_id;
    r->source_customer_id = source->customer_id;
    r->target_customer_id = target->customer_id;
    r->merged_at_unix_ms = j->now;
    r->reason = (char *)s_or_empty(reason);
    r->linking_identity = (Cxm__V1__Identity *)linking;
    return r;
}

/* CustomerMerged for r, and the source's memberships gone with it (its
 * profile was removed). */
static int publish_merged(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__MergeRecord *r,
                          const prof_profile *source)
{
    Cxm__V1__CustomerMerged m = CXM__V1__CUSTOMER_MERGED__INIT;
    m.merge_id = r->merge_id;
    m.source_customer_id = r->source_customer_id;
    m.target_customer_id = r->target_customer_id;
    m.reason = r->reason;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED;
    ev.customer_merged = &m;
    prof_profile gone = *source;
    gone.n_segment_ids = 0;
    int rc = publish(t, j, r->target_customer_id, &ev);
    return rc ? rc : publish_segments(t, j, &gone, source->segment_ids, source->n_segment_ids);
}

/* Merge source into target inside the transaction: snapshots, redirect,
 * record. linking may be NULL (an explicit MergeProfiles). */
static int merge_into(cxm_txn *t, cxm_svc_job *j, prof_profile *target, prof_profile *source,
                      const char *reason, const Cxm__V1__Identity *linking,
                      Cxm__V1__MergeRecord **record)
{
    const prof_ctx *ctx = j->ctx;
    int rc = prof_merge_check(target, source, &ctx->unique, j->err, sizeof j->err);
    if (rc != 0)
        return rc;
    pdb_snapshot snap = {prof_copy(j->a, target), prof_copy(j->a, source), NULL, NULL};
    Cxm__V1__MergeRecord *r = new_record(j, target, source, reason, linking);
    if (!snap.target_before || !snap.source_before || !r)
        return CXM_ENOMEM;
    if ((rc = prof_merge(j->a, target, source, r->merge_id, j->now, j->err, sizeof j->err)) != 0 ||
        (rc = log_merge(j->a, target, r)) != 0)
        return rc;
    if ((rc = pdb_remove(t, ctx->db, source)) != 0 ||
        (rc = pdb_redirect_set(t, ctx->db, source->customer_id, target->customer_id)) != 0 ||
        (rc = publish_merged(t, j, r, snap.source_before)) != 0 ||
        (rc = save_profile(t, j, target)) != 0 ||
        (rc = publish_traits(t, j, target, snap.target_before->traits,
                             snap.target_before->n_traits)) != 0)
        return rc;
    snap.target_after = prof_copy(j->a, target);
    snap.record = r;
    if (!snap.target_after)
        return CXM_ENOMEM;
    *record = r;
    return pdb_put_snapshot(t, ctx->db, j->a, &snap);
}

/* Resolve and load the profile a CustomerRef names inside a write. */
static int load_ref(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__CustomerRef *ref, prof_profile **p)
{
    const prof_ctx *ctx = j->ctx;
    const char *id;
    bool redirected;
    int rc = ref_to_id(t, ctx, j->a, ref, &id, &redirected, j->err);
    return rc == 0 ? pdb_load(t, ctx->db, id, j->a, p) : rc;
}

/* Resolve a customer id and load its live profile; field names it in errors. */
static int load_live(cxm_txn *t, cxm_svc_job *j, const char *id, const char *field,
                     prof_profile **p)
{
    const prof_ctx *ctx = j->ctx;
    const char *live;
    bool redirected;
    int rc = pdb_resolve_id(t, ctx->db, id, j->a, &live, &redirected);
    if (rc == 0)
        rc = pdb_load(t, ctx->db, live, j->a, p);
    if (rc == CXM_ENOTFOUND)
        cxm_svc_errf(j->err, rc, field, "no customer with id \"%s\"", id);
    return rc;
}

/* ---- ResolveIdentity ---- */

static int resolve_job(cxm_txn *t, cxm_svc_job *j)
{
    const prof_ctx *ctx = j->ctx;
    const Cxm__V1__ResolveIdentityRequest *req = j->req;
    Cxm__V1__ResolveIdentityResponse *resp =
        cxm_svc_response(j, &cxm__v1__resolve_identity_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    resp->normalized = req->identity;
    const char *owner;
    int rc = pdb_identity_owner(t, ctx->db, req->identity, j->a, &owner);
    if (rc == CXM_ENOTFOUND) { /* still unknown inside the write: create */
        prof_profile *p;
        if ((rc = create_for(t, j, req->identity, "resolve", &p)) != 0 ||
            (rc = save_profile(t, j, p)) != 0)
            return rc;
        owner = p->customer_id;
        resp->created = true;
    } else if (rc != 0) {
        return rc;
    }
    resp->customer_id = (char *)owner;
    return 0;
}

/* The owner of a known identity (a CUSTOMER_ID identity follows merges). */
static int resolve_read(const prof_ctx *ctx, cxm_arena *a, const Cxm__V1__Identity *id,
                        const char **owner, char *err)
{
    cxm_txn *t;
    int rc = cxm_store_read_begin(pdb_store(ctx->db), &t);
    if (rc != 0)
        return rc;
    bool redirected = false;
    if (id->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID) {
        Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
        ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
        ref.customer_id = id->value;
        rc = ref_to_id(t, ctx, a, &ref, owner, &redirected, err);
    } else {
        rc = pdb_identity_owner(t, ctx->db, id, a, owner);
    }
    cxm_store_read_end(t);
    return rc;
}

static void on_resolve(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__ResolveIdentityRequest *req = (Cxm__V1__ResolveIdentityRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_resolve(&ctx->ident, a, req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    const char *owner = NULL;
    rc = resolve_read(ctx, a, req->identity, &owner, err);
    if (rc == CXM_ENOTFOUND && req->create_if_missing)
        return cxm_svc_submit(call, pdb_store(ctx->db), req, resolve_job);
    if (rc == CXM_ENOTFOUND && !err[0])
        cxm_svc_errf(err, rc, NULL, "no customer has the identity %s \"%s\"",
                     cxm_ident_type_name(req->identity->type), req->identity->value);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
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
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = cxm_ident_check_ref(&ctx->ident, a, req->customer, "customer", err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(pdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    const char *id;
    bool redirected;
    const void *stored;
    size_t n = 0, len = 0;
    uint8_t *resp = NULL;
    rc = ref_to_id(t, ctx, a, req->customer, &id, &redirected, err);
    if (rc == 0)
        rc = pdb_load_packed(t, ctx->db, id, &stored, &n);
    if (rc == 0 && cxm_svc_field_size(n) + 2 > cxm_call_max_message_bytes(call))
        rc = cxm_svc_too_big(call, cxm_svc_field_size(n) + 2, "the profile", err);
    if (rc == 0 && !(resp = get_response(a, stored, n, redirected, &len)))
        rc = CXM_ENOMEM;
    cxm_store_read_end(t);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_call_reply_bytes(call, resp, len);
}

/* ---- UpsertProfile ---- */

/* The profile an upsert writes to: by id, by the first identity that
 * resolves, or new. */
static int upsert_target(cxm_txn *t, cxm_svc_job *j, prof_profile **p, bool *created)
{
    const prof_ctx *ctx = j->ctx;
    const Cxm__V1__UpsertProfileRequest *req = j->req;
    const char *id = NULL;
    int rc = CXM_ENOTFOUND;
    *created = false;
    if (*s_or_empty(req->customer_id))
        return load_live(t, j, req->customer_id, "customer_id", p);
    for (size_t i = 0; i < req->n_identities && rc == CXM_ENOTFOUND; i++)
        rc = pdb_identity_owner(t, ctx->db, req->identities[i], j->a, &id);
    if (rc == 0)
        return pdb_load(t, ctx->db, id, j->a, p);
    if (rc != CXM_ENOTFOUND)
        return rc;
    *created = true;
    *p = create_profile(j, s_or_empty(req->source));
    return *p ? 0 : CXM_ENOMEM;
}

static int check_expected(cxm_svc_job *j, const prof_profile *p, bool created)
{
    const Cxm__V1__UpsertProfileRequest *req = j->req;
    if (!req->expected_version || req->expected_version == p->version)
        return 0;
    if (created)
        return cxm_svc_errf(
            j->err, CXM_ESTALE, NULL,
            "expected_version %llu is stale: the customer does not exist yet (none of its "
            "identities is known), so expected_version must be 0 or unset",
            (unsigned long long)req->expected_version);
    return cxm_svc_errf(
        j->err, CXM_ESTALE, NULL, "expected_version %llu is stale: customer %s is at version %llu",
        (unsigned long long)req->expected_version, p->customer_id, (unsigned long long)p->version);
}

/* Add id to p; a profile full of identities is refused with a sentence. */
static int add_identity(cxm_svc_job *j, prof_profile *p, const Cxm__V1__Identity *id,
                        const char *source)
{
    int rc = prof_identity_add(j->a, p, id, source, "", j->now);
    if (rc == CXM_ESTALE)
        cxm_svc_errf(j->err, rc, NULL, "customer %s already holds %d identities, the most allowed",
                     p->customer_id, PROF_MAX_IDENTITIES);
    return rc;
}

typedef struct link_result {
    Cxm__V1__MergeRecord **merges;
    size_t nmerges;
    Cxm__V1__Identity **skipped;
    size_t nskipped;
} link_result;

/* Link identity id to p as UpsertProfile does (ResolveIdentities too): an
 * unknown one is added, one of another profile merges that profile into p
 * or not, as policy says. Every refusal for the caller's reasons
 * (CXM_ESTALE: suppressed, unique type, limits) comes before any write. */
static int link_one(cxm_txn *t, cxm_svc_job *j, prof_profile *p, Cxm__V1__Identity *id,
                    const char *source, Cxm__V1__LinkPolicy policy, link_result *lr)
{
    const prof_ctx *ctx = j->ctx;
    const char *owner;
    int rc = pdb_identity_owner(t, ctx->db, id, j->a, &owner);
    if (rc == CXM_ENOTFOUND) {
        if ((rc = check_not_suppressed(t, j, id)) != 0)
            return rc;
        if ((rc = prof_unique_check(p, id, &ctx->unique, j->err, sizeof j->err)) != 0)
            return rc;
        return add_identity(j, p, id, source);
    }
    if (rc != 0 || strcmp(owner, p->customer_id) == 0)
        return rc;
    if (policy == CXM__V1__LINK_POLICY__LINK_POLICY_FAIL)
        return cxm_svc_errf(j->err, CXM_ESTALE, NULL,
                            "identity %s \"%s\" belongs to customer %s (link_policy FAIL)",
                            cxm_ident_type_name(id->type), id->value, owner);
    if (policy == CXM__V1__LINK_POLICY__LINK_POLICY_SKIP) {
        lr->skipped[lr->nskipped++] = id;
        return 0;
    }
    prof_profile *other;
    if ((rc = pdb_load(t, ctx->db, owner, j->a, &other)) != 0)
        return rc;
    char reason[CXM_SVC_ERR_MAX];
    snprintf(reason, sizeof reason, "identity %s linked by UpsertProfile",
             cxm_ident_type_name(id->type));
    Cxm__V1__MergeRecord *r;
    rc = merge_into(t, j, p, other, cxm_arena_strndup(j->a, reason, strlen(reason)), id, &r);
    if (rc == 0)
        lr->merges[lr->nmerges++] = r;
    return rc;
}

/* A request id seen before: answer with the profile it was applied to. */
static int upsert_duplicate(cxm_txn *t, cxm_svc_job *j, const char *customer_id,
                            Cxm__V1__UpsertProfileResponse *resp)
{
    const prof_ctx *ctx = j->ctx;
    const char *live;
    bool redirected;
    int rc = pdb_resolve_id(t, ctx->db, customer_id, j->a, &live, &redirected);
    if (rc == 0)
        rc = pdb_load(t, ctx->db, live, j->a, &resp->profile);
    resp->duplicate = true;
    return rc;
}

static int upsert_job(cxm_txn *t, cxm_svc_job *j)
{
    const prof_ctx *ctx = j->ctx;
    const Cxm__V1__UpsertProfileRequest *req = j->req;
    Cxm__V1__UpsertProfileResponse *resp =
        cxm_svc_response(j, &cxm__v1__upsert_profile_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    const char *rid = s_or_empty(req->request_id), *seen;
    if (*rid && pdb_request_get(t, ctx->db, rid, j->a, &seen) == 0)
        return upsert_duplicate(t, j, seen, resp);
    prof_profile *p;
    bool created;
    int rc = upsert_target(t, j, &p, &created);
    if (rc != 0 || (rc = check_expected(j, p, created)) != 0)
        return rc;
    link_result lr = {cxm_arena_alloc(j->a, (req->n_identities + 1) * sizeof(void *)), 0,
                      cxm_arena_alloc(j->a, (req->n_identities + 1) * sizeof(void *)), 0};
    if (!lr.merges || !lr.skipped)
        return CXM_ENOMEM;
    for (size_t i = 0; i < req->n_identities && rc == 0; i++)
        rc = link_one(t, j, p, req->identities[i], s_or_empty(req->source), req->link_policy, &lr);
    cxm_svc_path f;
    for (size_t i = 0; i < req->n_attributes && rc == 0; i++) {
        bool changed;
        rc = prof_attr_apply(j->a, p, req->attributes[i], cxm_svc_index(&f, "attributes", i),
                             s_or_empty(req->source), j->now, &changed, j->err, sizeof j->err);
    }
    if (rc == 0)
        rc = save_profile(t, j, p);
    if (rc == 0 && *rid)
        rc = pdb_request_put(t, ctx->db, rid, p->customer_id);
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
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_upsert(&ctx->ident, cxm_call_arena(call), req, cxm_svc_now_ms(), err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, pdb_store(ctx->db), req, upsert_job);
}

/* ---- ResolveIdentities ---- */

/* The request with what its handler learnt about each item: a check error
 * (rc, msg), and the read pass's answer when no write is needed. */
typedef struct batch_item {
    int rc;
    char *msg;
} batch_item;

typedef struct batch_req {
    Cxm__V1__ResolveIdentitiesRequest *req;
    batch_item *items;
    const char *source;
} batch_req;

/* Give res the error rc of item i (its message from err, which it clears). */
static int item_failed(cxm_arena *a, Cxm__V1__ResolveIdentitiesResult *res, int rc, char *err)
{
    res->code = (uint32_t)cxm_err_status(rc);
    res->message = cxm_arena_strndup(a, err, strlen(err));
    res->customer_id = "";
    err[0] = '\0';
    return res->message ? 0 : CXM_ENOMEM;
}

/* Item it's profile inside the write: by customer id, else by its identity,
 * else by its first known link (*add_ref: the identity joins it), else new
 * when the item allows. CXM_ENOTFOUND / CXM_ESTALE with j->err: the item's
 * own failure, before any write. */
static int item_target(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__ResolveIdentitiesItem *it,
                       const char *field, prof_profile **p, bool *created, bool *add_ref)
{
    const prof_ctx *ctx = j->ctx;
    const batch_req *b = j->req;
    const Cxm__V1__CustomerRef *ref = it->customer;
    cxm_svc_path f;
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return load_live(t, j, ref->customer_id, cxm_svc_member(&f, field, "customer.customer_id"),
                         p);
    const char *owner;
    int rc = pdb_identity_owner(t, ctx->db, ref->identity, j->a, &owner);
    for (size_t k = 0; rc == CXM_ENOTFOUND && k < it->n_link_identities; k++)
        if ((rc = pdb_identity_owner(t, ctx->db, it->link_identities[k], j->a, &owner)) == 0)
            *add_ref = true;
    if (rc == 0)
        return pdb_load(t, ctx->db, owner, j->a, p);
    if (rc != CXM_ENOTFOUND)
        return rc;
    if (!it->create_if_missing)
        return cxm_svc_errf(j->err, rc, cxm_svc_member(&f, field, "customer.identity"),
                            "no customer has the identity %s \"%s\" (set create_if_missing to "
                            "create one)",
                            cxm_ident_type_name(ref->identity->type), ref->identity->value);
    *created = true;
    return create_for(t, j, ref->identity, b->source, p);
}

/* Link the item's identities to p; a link refused for the caller's reasons
 * is listed in res->unlinked, and the item still resolves. */
static int item_links(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__ResolveIdentitiesItem *it,
                      prof_profile *p, Cxm__V1__ResolveIdentitiesResult *res, size_t *nmerges)
{
    const batch_req *b = j->req;
    size_t n = it->n_link_identities;
    Cxm__V1__MergeRecord *merges[PROF_MAX_RESOLVE_LINKS];
    link_result lr = {merges, 0, NULL, 0};
    res->unlinked = cxm_arena_alloc(j->a, (n + 1) * sizeof *res->unlinked);
    res->unlinked_reasons = cxm_arena_alloc(j->a, (n + 1) * sizeof(char *));
    if (!res->unlinked || !res->unlinked_reasons)
        return CXM_ENOMEM;
    for (size_t k = 0; k < n; k++) {
        int rc = link_one(t, j, p, it->link_identities[k], b->source,
                          CXM__V1__LINK_POLICY__LINK_POLICY_MERGE, &lr);
        if (rc != CXM_ESTALE && rc != 0)
            return rc;
        if (rc == CXM_ESTALE) {
            res->unlinked[res->n_unlinked++] = (uint32_t)k;
            res->unlinked_reasons[res->n_unlinked_reasons++] =
                cxm_arena_strndup(j->a, j->err, strlen(j->err));
            j->err[0] = '\0';
        }
    }
    *nmerges = lr.nmerges;
    return 0;
}

/* Item i inside the write job: its answer in res, or its own error there. */
static int item_resolve(cxm_txn *t, cxm_svc_job *j, size_t i, Cxm__V1__ResolveIdentitiesResult *res)
{
    const batch_req *b = j->req;
    const Cxm__V1__ResolveIdentitiesItem *it = b->req->items[i];
    cxm_svc_path field;
    cxm_svc_index(&field, "items", i);
    prof_profile *p = NULL;
    bool created = false, add_ref = false;
    int rc = item_target(t, j, it, field.s, &p, &created, &add_ref);
    if (rc == 0 && add_ref && (rc = check_not_suppressed(t, j, it->customer->identity)) == 0 &&
        (rc = prof_unique_check(p, it->customer->identity, &((const prof_ctx *)j->ctx)->unique,
                                j->err, sizeof j->err)) == 0)
        rc = add_identity(j, p, it->customer->identity, b->source);
    if (rc == CXM_ENOTFOUND || rc == CXM_ESTALE) /* nothing written for the item yet */
        return item_failed(j->a, res, rc, j->err);
    size_t before = rc == 0 ? p->n_identities : 0, nmerges = 0;
    if (rc == 0)
        rc = item_links(t, j, it, p, res, &nmerges);
    /* Only a real change is saved: a known customer costs no write. */
    if (rc == 0 && (created || add_ref || nmerges || p->n_identities != before))
        rc = save_profile(t, j, p);
    if (rc != 0)
        return rc;
    res->customer_id = p->customer_id;
    res->created = created;
    return 0;
}

/* Room in resp for a result per item: the results array, NULL when out of
 * memory. */
static Cxm__V1__ResolveIdentitiesResult *results_new(cxm_arena *a, const batch_req *b,
                                                     Cxm__V1__ResolveIdentitiesResponse *resp)
{
    size_t n = b->req->n_items;
    Cxm__V1__ResolveIdentitiesResult *res = cxm_arena_alloc(a, n * sizeof *res);
    resp->results = res ? cxm_arena_alloc(a, n * sizeof *resp->results) : NULL;
    return resp->results ? res : NULL;
}

/* Add item i's result to resp: false when the item failed its checks (the
 * result then holds that error), true when it is to be resolved. */
static bool result_next(const batch_req *b, Cxm__V1__ResolveIdentitiesResponse *resp,
                        Cxm__V1__ResolveIdentitiesResult *res, size_t i)
{
    cxm__v1__resolve_identities_result__init(&res[i]);
    resp->results[resp->n_results++] = &res[i];
    if (!b->items[i].rc)
        return true;
    res[i].code = (uint32_t)cxm_err_status(b->items[i].rc);
    res[i].message = b->items[i].msg;
    return false;
}

static int resolve_batch_job(cxm_txn *t, cxm_svc_job *j)
{
    const batch_req *b = j->req;
    Cxm__V1__ResolveIdentitiesResponse *resp =
        cxm_svc_response(j, &cxm__v1__resolve_identities_response__descriptor);
    Cxm__V1__ResolveIdentitiesResult *res = resp ? results_new(j->a, b, resp) : NULL;
    if (!res)
        return CXM_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < b->req->n_items && rc == 0; i++)
        if (result_next(b, resp, res, i))
            rc = item_resolve(t, j, i, &res[i]);
    return rc;
}

/* The read pass: answer item i from the snapshot when that needs no write
 * (a known customer whose links are all its own already, or an unknown one
 * the item does not create). Returns 1 when the item needs the write job. */
static int item_read(cxm_txn *t, const prof_ctx *ctx, cxm_arena *a,
                     const Cxm__V1__ResolveIdentitiesItem *it, size_t i,
                     Cxm__V1__ResolveIdentitiesResult *res)
{
    char err[CXM_SVC_ERR_MAX] = "";
    cxm_svc_path f, g;
    const char *id = NULL, *owner;
    bool redirected;
    int rc = ref_to_id(t, ctx, a, it->customer, &id, &redirected, err);
    bool by_id = it->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    if (rc == CXM_ENOTFOUND && (by_id || (!it->create_if_missing && !it->n_link_identities))) {
        cxm_svc_errf(err, rc,
                     cxm_svc_member(&f, cxm_svc_index(&g, "items", i),
                                    by_id ? "customer.customer_id" : "customer.identity"),
                     by_id ? "no customer with id \"%s\""
                           : "no customer has the identity \"%s\" (set create_if_missing to "
                             "create one)",
                     by_id ? it->customer->customer_id : it->customer->identity->value);
        return item_failed(a, res, rc, err);
    }
    if (rc == CXM_ENOTFOUND)
        return 1;
    for (size_t k = 0; rc == 0 && k < it->n_link_identities; k++) {
        rc = pdb_identity_owner(t, ctx->db, it->link_identities[k], a, &owner);
        if (rc == CXM_ENOTFOUND || (rc == 0 && strcmp(owner, id) != 0))
            return 1;
    }
    if (rc != 0)
        return rc;
    res->customer_id = (char *)id;
    return 0;
}

/* Answer every item from a read snapshot if none needs a write; *need_write
 * otherwise (the job then does every item again, in order). */
static int batch_read(const prof_ctx *ctx, cxm_arena *a, const batch_req *b,
                      Cxm__V1__ResolveIdentitiesResponse *resp, bool *need_write)
{
    Cxm__V1__ResolveIdentitiesResult *res = results_new(a, b, resp);
    if (!res)
        return CXM_ENOMEM;
    cxm_txn *t;
    int rc = cxm_store_read_begin(pdb_store(ctx->db), &t);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < b->req->n_items && rc == 0 && !*need_write; i++) {
        if (!result_next(b, resp, res, i))
            continue;
        rc = item_read(t, ctx, a, b->req->items[i], i, &res[i]);
        *need_write = rc == 1;
        rc = rc == 1 ? 0 : rc;
    }
    cxm_store_read_end(t);
    return rc;
}

/* Check the request and each item: a bad item gets its error, not the call. */
static int batch_check(const prof_ctx *ctx, cxm_arena *a, Cxm__V1__ResolveIdentitiesRequest *req,
                       batch_req *b, char *err)
{
    int rc = prof_check_resolve_batch(req, err);
    if (rc != 0)
        return rc;
    b->req = req;
    b->source = *s_or_empty(req->source) ? req->source : "resolve";
    if (!(b->items = cxm_arena_calloc(a, req->n_items, sizeof *b->items)))
        return CXM_ENOMEM;
    for (size_t i = 0; i < req->n_items; i++) {
        char item_err[CXM_SVC_ERR_MAX] = "";
        rc = prof_check_resolve_item(&ctx->ident, a, req->items[i], i, item_err);
        if (rc == CXM_ENOMEM)
            return rc;
        b->items[i].rc = rc;
        if (rc && !(b->items[i].msg = cxm_arena_strndup(a, item_err, strlen(item_err))))
            return CXM_ENOMEM;
    }
    return 0;
}

static void on_resolve_batch(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__ResolveIdentitiesRequest *req = (Cxm__V1__ResolveIdentitiesRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    batch_req *b = cxm_arena_calloc(a, 1, sizeof *b);
    int rc = b ? batch_check(ctx, a, req, b, err) : CXM_ENOMEM;
    Cxm__V1__ResolveIdentitiesResponse resp = CXM__V1__RESOLVE_IDENTITIES_RESPONSE__INIT;
    bool need_write = false;
    if (rc == 0)
        rc = batch_read(ctx, a, b, &resp, &need_write);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    if (need_write)
        return cxm_svc_submit(call, pdb_store(ctx->db), b, resolve_batch_job);
    cxm_call_reply(call, &resp.base);
}

/* ---- MergeProfiles / UnmergeProfile ---- */

static int merge_job(cxm_txn *t, cxm_svc_job *j)
{
    const prof_ctx *ctx = j->ctx;
    const Cxm__V1__MergeProfilesRequest *req = j->req;
    prof_profile *target, *source;
    int rc = load_live(t, j, req->target_customer_id, "target_customer_id", &target);
    if (rc == 0)
        rc = load_live(t, j, req->source_customer_id, "source_customer_id", &source);
    if (rc != 0)
        return rc;
    if (strcmp(target->customer_id, source->customer_id) == 0)
        return cxm_svc_errf(j->err, CXM_EINVAL, "source_customer_id",
                            "customer %s is already part of %s", req->source_customer_id,
                            target->customer_id);
    if (req->expected_target_version && req->expected_target_version != target->version)
        return cxm_svc_errf(j->err, CXM_ESTALE, NULL,
                            "expected_target_version %llu is stale: the target is at %llu",
                            (unsigned long long)req->expected_target_version,
                            (unsigned long long)target->version);
    Cxm__V1__MergeProfilesResponse *resp =
        cxm_svc_response(j, &cxm__v1__merge_profiles_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    resp->profile = target;
    if (!req->dry_run)
        return merge_into(t, j, target, source, req->reason, NULL, &resp->merge);
    /* Computed in memory only: nothing is written. */
    rc = prof_merge_check(target, source, &ctx->unique, j->err, sizeof j->err);
    return rc ? rc : prof_merge(j->a, target, source, "", j->now, j->err, sizeof j->err);
}

static void on_merge(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__MergeProfilesRequest *req = (Cxm__V1__MergeProfilesRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_merge(req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, pdb_store(ctx->db), req, merge_job);
}

/* The merge's target must be live: if it was merged away since, the merge
 * that did so must be undone first, and the error names it. */
static int unmerge_target(cxm_txn *t, cxm_svc_job *j, const pdb_snapshot *s, prof_profile **current)
{
    const prof_ctx *ctx = j->ctx;
    const char *target = s->record->target_customer_id, *later;
    int rc = pdb_latest_merge_of(t, ctx->db, target, j->a, &later);
    if (rc == 0)
        return cxm_svc_errf(j->err, CXM_ESTALE, NULL,
                            "customer %s was merged away after merge %s; undo merge %s first",
                            target, s->record->merge_id, later);
    if (rc != CXM_ENOTFOUND)
        return rc;
    return pdb_load(t, ctx->db, target, j->a, current);
}

static int publish_unmerged(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__MergeRecord *r)
{
    Cxm__V1__CustomerUnmerged u = CXM__V1__CUSTOMER_UNMERGED__INIT;
    u.merge_id = r->merge_id;
    u.source_customer_id = r->source_customer_id;
    u.target_customer_id = r->target_customer_id;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_UNMERGED;
    ev.customer_unmerged = &u;
    return publish(t, j, r->target_customer_id, &ev);
}

static int unmerge_job(cxm_txn *t, cxm_svc_job *j)
{
    const prof_ctx *ctx = j->ctx;
    const Cxm__V1__UnmergeProfileRequest *req = j->req;
    pdb_snapshot s;
    int rc = pdb_get_snapshot(t, ctx->db, req->merge_id, j->a, &s);
    if (rc == CXM_ENOTFOUND)
        return cxm_svc_errf(j->err, rc, "merge_id", "no merge \"%s\" (unknown, or erased)",
                            req->merge_id);
    if (rc != 0)
        return rc;
    if (s.record->unmerged_at_unix_ms)
        return cxm_svc_errf(j->err, CXM_ESTALE, NULL, "merge %s was already undone", req->merge_id);
    prof_profile *current;
    if ((rc = unmerge_target(t, j, &s, &current)) != 0)
        return rc;
    prof_profile *target =
        prof_unmerge(j->a, current, s.target_before, s.target_after, req->merge_id);
    if (!target)
        return CXM_ENOMEM;
    s.record->unmerged_at_unix_ms = j->now;
    for (size_t i = 0; i < target->n_merges; i++)
        if (strcmp(target->merges[i]->merge_id, req->merge_id) == 0)
            target->merges[i] = s.record;
    target->version = current->version;
    /* The segments stored for it now, for the change save_profile publishes. */
    target->segment_ids = current->segment_ids;
    target->n_segment_ids = current->n_segment_ids;
    /* The source comes back as it was, its log now listing the undone merge;
     * merged away it was in no segment. */
    prof_profile *source = s.source_before;
    source->n_segment_ids = 0;
    if ((rc = pdb_put_snapshot(t, ctx->db, j->a, &s)) != 0 ||
        (rc = log_merge(j->a, source, s.record)) != 0 ||
        (rc = publish_unmerged(t, j, s.record)) != 0 || (rc = save_profile(t, j, target)) != 0 ||
        (rc = publish_traits(t, j, target, current->traits, current->n_traits)) != 0 ||
        (rc = pdb_redirect_clear(t, ctx->db, source->customer_id)) != 0 ||
        (rc = save_profile(t, j, source)) != 0)
        return rc;
    Cxm__V1__UnmergeProfileResponse *resp =
        cxm_svc_response(j, &cxm__v1__unmerge_profile_response__descriptor);
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
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_unmerge(req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, pdb_store(ctx->db), req, unmerge_job);
}

/* ---- SetConsent ---- */

/* The scope's decision in force, or NULL. prof_consent_set replaces a
 * decision rather than changing it, so this stays the previous one. */
static const Cxm__V1__Consent *consent_of(const prof_profile *p, const char *scope)
{
    for (size_t i = 0; i < p->n_consents; i++)
        if (strcmp(p->consents[i]->scope, scope) == 0)
            return p->consents[i];
    return NULL;
}

/* ConsentChanged when the decision in force says something else than
 * before (another state or policy version): a newer decision repeating
 * the old one changes nothing a subscriber acts on. */
static int publish_consent(cxm_txn *t, cxm_svc_job *j, const char *customer_id,
                           const Cxm__V1__Consent *prev, Cxm__V1__Consent *cur)
{
    if (prev && prev->state == cur->state &&
        strcmp(s_or_empty(prev->policy_version), s_or_empty(cur->policy_version)) == 0)
        return 0;
    Cxm__V1__ConsentChanged c = CXM__V1__CONSENT_CHANGED__INIT;
    c.consent = cur;
    c.previous_state = prev ? prev->state : CXM__V1__CONSENT_STATE__CONSENT_STATE_UNSPECIFIED;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_CONSENT_CHANGED;
    ev.consent_changed = &c;
    return publish(t, j, customer_id, &ev);
}

static int consent_job(cxm_txn *t, cxm_svc_job *j)
{
    const Cxm__V1__SetConsentRequest *req = j->req;
    prof_profile *p;
    int rc = load_ref(t, j, req->customer, &p);
    if (rc != 0)
        return rc;
    Cxm__V1__Consent c = CXM__V1__CONSENT__INIT;
    c.scope = req->scope;
    c.state = req->state;
    c.decided_at_unix_ms = req->decided_at_unix_ms ? req->decided_at_unix_ms : j->now;
    c.source = req->source;
    c.policy_version = req->policy_version;
    c.recorded_at_unix_ms = j->now;
    const Cxm__V1__Consent *prev = consent_of(p, c.scope);
    bool applied;
    Cxm__V1__Consent *cur = prof_consent_set(j->a, p, &c, &applied);
    if (!cur)
        return CXM_ENOMEM;
    if (applied && ((rc = save_profile(t, j, p)) != 0 ||
                    (rc = publish_consent(t, j, p->customer_id, prev, cur)) != 0))
        return rc;
    Cxm__V1__SetConsentResponse *resp =
        cxm_svc_response(j, &cxm__v1__set_consent_response__descriptor);
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
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_consent(&ctx->ident, cxm_call_arena(call), req, cxm_svc_now_ms(), err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, pdb_store(ctx->db), req, consent_job);
}

/* ---- DeleteProfile ---- */

static int erase_merges(cxm_txn *t, cxm_svc_job *j, const prof_profile *p,
                        Cxm__V1__DeletionReceipt *r, uint64_t *records)
{
    const prof_ctx *ctx = j->ctx;
    r->merged_customer_ids = cxm_arena_alloc(j->a, (p->n_merges + 1) * sizeof(char *));
    if (!r->merged_customer_ids)
        return CXM_ENOMEM;
    for (size_t i = 0; i < p->n_merges; i++) {
        const Cxm__V1__MergeRecord *m = p->merges[i];
        int rc = pdb_erase_snapshot(t, ctx->db, m->merge_id);
        if (rc != 0 && rc != CXM_ENOTFOUND)
            return rc;
        *records += rc == 0;
        if (m->unmerged_at_unix_ms)
            continue;
        rc = pdb_redirect_clear(t, ctx->db, m->source_customer_id);
        if (rc != 0 && rc != CXM_ENOTFOUND)
            return rc;
        r->merged_customer_ids[r->n_merged_customer_ids++] = m->source_customer_id;
    }
    return 0;
}

/* A receipt for p's erasure: pending in this service until a compaction of
 * its store has made the erasure final (prof_erasure_confirm), and in each
 * configured other service until it confirms. */
static Cxm__V1__DeletionReceipt *new_receipt(cxm_svc_job *j, const prof_profile *p)
{
    const prof_ctx *ctx = j->ctx;
    const Cxm__V1__DeleteProfileRequest *req = j->req;
    size_t n = 1 + ctx->nerasure_services;
    Cxm__V1__DeletionReceipt *r = cxm_arena_alloc(j->a, sizeof *r);
    Cxm__V1__ServiceErasure *se = cxm_arena_alloc(j->a, n * sizeof *se);
    char *rid = cxm_arena_alloc(j->a, PDB_ID_LEN);
    Cxm__V1__ServiceErasure **services = cxm_arena_alloc(j->a, n * sizeof *services);
    if (!r || !se || !rid || !services)
        return NULL;
    cxm__v1__deletion_receipt__init(r);
    pdb_new_id('r', rid);
    r->receipt_id = rid;
    r->customer_id = p->customer_id;
    r->reason = req->reason;
    r->identities_suppressed = req->suppress_identities;
    r->requested_at_unix_ms = j->now;
    r->completed_at_unix_ms = 0;
    for (size_t i = 0; i < n; i++) {
        cxm__v1__service_erasure__init(&se[i]);
        se[i].service = i ? (char *)ctx->erasure_services[i - 1] : "profile";
        se[i].state = CXM__V1__ERASURE_STATE__ERASURE_STATE_PENDING;
        services[i] = &se[i];
    }
    r->services = services;
    r->n_services = n;
    return r;
}

/* CustomerDeleted: every other service erases what it holds and answers
 * with ErasureCompleted (svc.h, cxm_svc_erasure_subscribe). */
static int publish_deleted(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__DeletionReceipt *r)
{
    Cxm__V1__CustomerDeleted d = CXM__V1__CUSTOMER_DELETED__INIT;
    d.receipt_id = r->receipt_id;
    d.merged_customer_ids = r->merged_customer_ids;
    d.n_merged_customer_ids = r->n_merged_customer_ids;
    d.identities_suppressed = r->identities_suppressed;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_DELETED;
    ev.customer_deleted = &d;
    return publish(t, j, r->customer_id, &ev);
}

static int delete_job(cxm_txn *t, cxm_svc_job *j)
{
    const prof_ctx *ctx = j->ctx;
    const Cxm__V1__DeleteProfileRequest *req = j->req;
    Cxm__V1__DeleteProfileResponse *resp =
        cxm_svc_response(j, &cxm__v1__delete_profile_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    int rc;
    if (req->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID &&
        (rc = pdb_receipt_get(t, ctx->db, req->customer->customer_id, j->a, &resp->receipt)) !=
            CXM_ENOTFOUND)
        return rc; /* 0: erased before, answered with the same receipt */
    prof_profile *p;
    rc = load_ref(t, j, req->customer, &p);
    if (rc != 0)
        return rc;
    Cxm__V1__DeletionReceipt *r = new_receipt(j, p);
    if (!r)
        return CXM_ENOMEM;
    uint64_t records = p->n_identities + p->n_attributes + p->n_traits + p->n_consents;
    for (size_t i = 0; req->suppress_identities && i < p->n_identities; i++) {
        const Cxm__V1__Identity *id = p->identities[i]->identity;
        if (id->type != CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID &&
            (rc = pdb_suppress(t, ctx->db, id, r->receipt_id)) != 0)
            return rc;
    }
    if ((rc = erase_merges(t, j, p, r, &records)) != 0 || (rc = pdb_remove(t, ctx->db, p)) != 0)
        return rc;
    r->services[0]->records_erased = records;
    resp->receipt = r;
    if ((rc = pdb_receipt_put(t, ctx->db, j->a, r)) != 0 ||
        (rc = cxm_svc_erasure_defer(t, &ctx->erasure, r->customer_id, r->receipt_id, records)) != 0)
        return rc;
    return publish_deleted(t, j, r);
}

static void on_delete(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__DeleteProfileRequest *req = (Cxm__V1__DeleteProfileRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_delete(&ctx->ident, cxm_call_arena(call), req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, pdb_store(ctx->db), req, delete_job);
}

/* ---- GetDeletionReceipt ---- */

static void on_get_receipt(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__GetDeletionReceiptRequest *req = (Cxm__V1__GetDeletionReceiptRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_get_receipt(req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(pdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    bool by_id = req->key_case == CXM__V1__GET_DELETION_RECEIPT_REQUEST__KEY_RECEIPT_ID;
    Cxm__V1__GetDeletionReceiptResponse resp = CXM__V1__GET_DELETION_RECEIPT_RESPONSE__INIT;
    rc = by_id ? pdb_receipt_by_id(t, ctx->db, req->receipt_id, a, &resp.receipt)
               : pdb_receipt_get(t, ctx->db, req->customer_id, a, &resp.receipt);
    cxm_store_read_end(t);
    if (rc == CXM_ENOTFOUND && by_id)
        cxm_svc_errf(err, rc, "receipt_id", "no erasure has the receipt id \"%s\"",
                     req->receipt_id);
    else if (rc == CXM_ENOTFOUND)
        cxm_svc_errf(err, rc, "customer_id", "customer \"%s\" was never erased (or is unknown)",
                     req->customer_id);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_call_reply(call, &resp.base);
}

/* ---- ErasureCompleted from the other services ---- */

int prof_erasure_completed(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    const prof_ctx *ctx = user;
    const Cxm__V1__ErasureCompleted *e = ev->erasure_completed;
    if (ev->payload_case != CXM__V1__EVENT__PAYLOAD_ERASURE_COMPLETED ||
        strcmp(s_or_empty(e->service), ev->producer) != 0) {
        cxm_log_warn("profile.erasure_skipped",
                     "event %s:%llu is not an ErasureCompleted of %s itself; skipped", ev->producer,
                     (unsigned long long)ev->sequence, ev->producer);
        return 0;
    }
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    bool changed;
    int rc = pdb_receipt_confirm(t, ctx->db, s_or_empty(e->receipt_id), e->service,
                                 e->records_erased, ev->occurred_at_unix_ms, "", &a, &changed);
    cxm_arena_dispose(&a);
    if (rc == CXM_ENOTFOUND || rc == CXM_EINVAL) {
        cxm_log_warn("profile.erasure_skipped",
                     "%s confirmed erasing customer %s under receipt \"%.40s\", which %s; skipped",
                     e->service, ev->customer_id, s_or_empty(e->receipt_id),
                     rc == CXM_ENOTFOUND ? "no erasure has" : "cannot be recorded");
        return 0;
    }
    return rc;
}

int prof_erasure_confirm(cxm_txn *t, const char *customer_id, const char *receipt_id,
                         uint64_t records, void *user)
{
    const prof_ctx *ctx = user;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    bool changed;
    int rc = pdb_receipt_confirm(t, ctx->db, receipt_id, "profile", records, cxm_svc_now_ms(), "",
                                 &a, &changed);
    cxm_arena_dispose(&a);
    if (rc == CXM_ENOTFOUND) {
        cxm_log_warn("profile.erasure_skipped",
                     "no erasure has receipt \"%.40s\" (customer %s) any more; skipped", receipt_id,
                     customer_id);
        return 0;
    }
    return rc;
}

/* ---- events of other services that set standard traits ---- */

/* The live profile an event of another service is about, in *p; NULL (and
 * 0) when the customer is gone (erased meanwhile), logged as event `skipped`
 * naming what was not recorded: failing would stop the subscription for
 * good. */
static int load_for_event(cxm_txn *t, cxm_svc_job *j, const Cxm__V1__Event *ev, const char *skipped,
                          const char *what, prof_profile **p)
{
    int rc = load_live(t, j, s_or_empty(ev->customer_id), "customer_id", p);
    if (rc == CXM_ENOTFOUND)
        cxm_log_info(skipped, "%s of customer %s not recorded: no such customer (erased?)", what,
                     s_or_empty(ev->customer_id));
    if (rc != 0)
        *p = NULL;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

/* ---- StageChanged from the journey service ---- */

/* The customer's journey stage becomes the standard trait journey_stage
 * (owner journey), as if journey had written it with WriteTraits. Journey's
 * events apply in its order and a later one is the truth even when its
 * stage is older (a late event, a merge or new rules rewrote the history),
 * so no time comparison: the latest wins. A real change is saved and
 * published as TraitsChanged; the stage already stored writes nothing (no
 * version bump). A customer erased meanwhile, or a stage this build does
 * not know, is skipped: failing would stop the subscription for good. */
static int stage_changed(cxm_txn *t, const Cxm__V1__Event *ev, const prof_ctx *ctx)
{
    const Cxm__V1__StageChanged *sc = ev->stage_changed;
    if (sc->to_stage <= CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_UNSPECIFIED ||
        sc->to_stage > CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_ADVOCACY) {
        cxm_log_warn("profile.stage_skipped",
                     "journey stage %d of customer %s not recorded: not a known stage",
                     (int)sc->to_stage, s_or_empty(ev->customer_id));
        return 0;
    }
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    cxm_svc_job j = {.a = &a, .ctx = (void *)ctx, .now = cxm_svc_now_ms()};
    prof_profile *p;
    int rc = load_for_event(t, &j, ev, "profile.stage_skipped", "journey stage", &p);
    if (rc == 0 && p && p->standard_traits->journey_stage != sc->to_stage) {
        size_t nbefore;
        Cxm__V1__Trait **before = prof_traits_keep(&a, p, &nbefore);
        Cxm__V1__StandardTraitsUpdate u = CXM__V1__STANDARD_TRAITS_UPDATE__INIT;
        u.journey_stage = sc->to_stage;
        u.journey_stage_since_unix_ms = sc->since_unix_ms;
        int64_t observed = sc->since_unix_ms ? sc->since_unix_ms : ev->occurred_at_unix_ms;
        if (!before && p->n_traits)
            rc = CXM_ENOMEM;
        if (rc == 0) {
            prof_standard_apply(&a, p, &u, observed);
            if ((rc = save_profile(t, &j, p)) == 0)
                rc = publish_traits(t, &j, p, before, nbefore);
        }
    }
    cxm_arena_dispose(&a);
    return rc;
}

int prof_journey_event(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    if (ev->payload_case == CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED)
        return stage_changed(t, ev, user);
    return prof_erasure_completed(t, ev, user);
}

/* ---- FeedbackReceived and FollowUpChanged from the feedback service ---- */

/* The update a FeedbackReceived makes: the score of its kind, stamped with
 * when the customer answered. false (logged) for a score off its survey's
 * scale or a kind this build does not know: skipped, as failing would stop
 * the subscription for good. */
static bool feedback_update(const Cxm__V1__Event *ev, Cxm__V1__StandardTraitsUpdate *u,
                            int64_t *observed)
{
    const Cxm__V1__FeedbackReceived *f = ev->feedback_received;
    int lo = 1, hi = 0;
    switch (f->kind) {
    case CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS:
        lo = 0, hi = 10;
        u->last_nps_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_NPS_UPDATE_LAST_NPS;
        u->last_nps = f->score;
        if ((unsigned)f->nps_category <= CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PROMOTER)
            u->last_nps_category = f->nps_category;
        break;
    case CXM__V1__SURVEY_KIND__SURVEY_KIND_CSAT:
        hi = 5;
        u->last_csat_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_CSAT_UPDATE_LAST_CSAT;
        u->last_csat = f->score;
        break;
    case CXM__V1__SURVEY_KIND__SURVEY_KIND_CES:
        hi = 7;
        u->last_ces_update_case = CXM__V1__STANDARD_TRAITS_UPDATE__LAST_CES_UPDATE_LAST_CES;
        u->last_ces = f->score;
        break;
    default:
        break;
    }
    if (f->score < lo || f->score > hi) {
        cxm_log_warn("profile.feedback_skipped",
                     "response %.64s of customer %s not recorded: kind %d, score %d off its scale",
                     s_or_empty(f->response_id), s_or_empty(ev->customer_id), (int)f->kind,
                     (int)f->score);
        return false;
    }
    *observed = f->answered_at_unix_ms ? f->answered_at_unix_ms : ev->occurred_at_unix_ms;
    return true;
}

/* Whether the traits feedback owns are the same in x and y. */
static bool feedback_traits_same(const Cxm__V1__StandardTraits *x, const Cxm__V1__StandardTraits *y)
{
    return x->last_nps == y->last_nps && x->last_nps_category == y->last_nps_category &&
           x->last_nps_at_unix_ms == y->last_nps_at_unix_ms && x->last_csat == y->last_csat &&
           x->last_csat_at_unix_ms == y->last_csat_at_unix_ms && x->last_ces == y->last_ces &&
           x->last_ces_at_unix_ms == y->last_ces_at_unix_ms &&
           x->open_follow_ups == y->open_follow_ups;
}

/* Apply u to the customer's standard traits as feedback (their owner) would
 * with WriteTraits; saved only when a trait changed, so a redelivered or
 * older answer writes nothing (no version bump). A customer erased
 * meanwhile is skipped. */
static int feedback_apply(cxm_txn *t, const Cxm__V1__Event *ev, const prof_ctx *ctx,
                          const Cxm__V1__StandardTraitsUpdate *u, int64_t observed)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    cxm_svc_job j = {.a = &a, .ctx = (void *)ctx, .now = cxm_svc_now_ms()};
    prof_profile *p;
    int rc = load_for_event(t, &j, ev, "profile.feedback_skipped", "feedback", &p);
    if (rc == 0 && p) {
        Cxm__V1__StandardTraits before = *p->standard_traits;
        prof_standard_apply(&a, p, u, observed);
        if (!feedback_traits_same(&before, p->standard_traits))
            rc = save_profile(t, &j, p);
    }
    cxm_arena_dispose(&a);
    return rc;
}

int prof_feedback_event(cxm_txn *t, const Cxm__V1__Event *ev, void *user)
{
    Cxm__V1__StandardTraitsUpdate u = CXM__V1__STANDARD_TRAITS_UPDATE__INIT;
    int64_t observed = ev->occurred_at_unix_ms;
    switch (ev->payload_case) {
    case CXM__V1__EVENT__PAYLOAD_FEEDBACK_RECEIVED:
        if (!feedback_update(ev, &u, &observed))
            return 0;
        return feedback_apply(t, ev, user, &u, observed);
    case CXM__V1__EVENT__PAYLOAD_FOLLOW_UP_CHANGED:
        /* The count after the change, in feedback's order: the latest wins. */
        u.open_follow_ups_update_case =
            CXM__V1__STANDARD_TRAITS_UPDATE__OPEN_FOLLOW_UPS_UPDATE_OPEN_FOLLOW_UPS;
        u.open_follow_ups = ev->follow_up_changed->open_follow_ups;
        return feedback_apply(t, ev, user, &u, observed);
    default:
        return 0; /* a type this subscription does not ask for */
    }
}

/* ---- SearchProfiles ---- */

/* Bytes kept free in a paged reply for its token and counters. */
#define PAGE_RESERVE (2 * CXM_IDENT_MAX + 64)

typedef struct search_page {
    const Cxm__V1__SearchProfilesRequest *req;
    const cxm_call *call;
    Cxm__V1__SearchProfilesResponse *resp;
    size_t limit, budget, used;
    bool more;
    char *err;
} search_page;

/* Keep p when it matches, until the page is full by count or by bytes. */
static int search_one(prof_profile *p, size_t stored_len, void *user)
{
    search_page *pg = user;
    (void)stored_len;
    for (size_t i = 0; i < pg->req->n_conditions; i++)
        if (!prof_field_eval(pg->req->conditions[i], p))
            return 0;
    size_t item = cxm_svc_field_size(protobuf_c_message_get_packed_size(&p->base));
    if (pg->resp->n_profiles == pg->limit ||
        (pg->resp->n_profiles > 0 && pg->used + item > pg->budget)) {
        pg->more = true;
        return 1;
    }
    if (item > pg->budget)
        return cxm_svc_too_big(pg->call, item, "one matching profile alone", pg->err);
    pg->used += item;
    pg->resp->profiles[pg->resp->n_profiles++] = p;
    return 0;
}

static void on_search(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__SearchProfilesRequest *req = (Cxm__V1__SearchProfilesRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int limit = 0;
    int rc = prof_check_search(req, err);
    if (rc == 0)
        rc = cxm_svc_page_size(req->page_size, 50, 1000, &limit, err);
    uint64_t h = cxm_svc_hash_messages(a, (const ProtobufCMessage *const *)req->conditions,
                                       req->n_conditions);
    const char *after = "";
    if (rc == 0)
        rc = cxm_svc_token_parse(req->page_token, h, &after, err);
    Cxm__V1__SearchProfilesResponse resp = CXM__V1__SEARCH_PROFILES_RESPONSE__INIT;
    search_page pg = {req, call,  &resp, (size_t)limit, cxm_svc_reply_budget(call, PAGE_RESERVE),
                      0,   false, err};
    if (rc == 0 && !(resp.profiles = cxm_arena_alloc(a, (size_t)limit * sizeof *resp.profiles)))
        rc = CXM_ENOMEM;
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(pdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    rc = pdb_scan(t, ctx->db, a, after, search_one, &pg);
    cxm_store_read_end(t);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    if (pg.more) {
        const char *last = resp.profiles[resp.n_profiles - 1]->customer_id;
        resp.next_page_token = cxm_svc_token_make(a, h, last, strlen(last));
    }
    cxm_call_reply(call, &resp.base);
}

/* ---- segments ---- */

/* A profile entered or left the segment a job (re)defines. */
typedef struct segment_change {
    cxm_svc_job *j;
    char *segment_id;
} segment_change;

static int publish_member(cxm_txn *t, const char *customer_id, bool entered, void *user)
{
    segment_change *sc = user;
    Cxm__V1__SegmentMembershipChanged c = CXM__V1__SEGMENT_MEMBERSHIP_CHANGED__INIT;
    *(entered ? &c.entered_segment_ids : &c.left_segment_ids) = &sc->segment_id;
    *(entered ? &c.n_entered_segment_ids : &c.n_left_segment_ids) = 1;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED;
    ev.segment_membership_changed = &c;
    return publish(t, sc->j, customer_id, &ev);
}

static int segment_job(cxm_txn *t, cxm_svc_job *j)
{
    const prof_ctx *ctx = j->ctx;
    const Cxm__V1__UpsertSegmentRequest *req = j->req;
    Cxm__V1__Segment *seg = req->segment, *old = NULL;
    Cxm__V1__UpsertSegmentResponse *resp =
        cxm_svc_response(j, &cxm__v1__upsert_segment_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    int rc = pdb_segment_get(t, ctx->db, seg->segment_id, j->a, &old);
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    uint64_t version = old ? old->version : 0;
    if (req->expected_version && req->expected_version != version)
        return cxm_svc_errf(j->err, CXM_ESTALE, NULL,
                            "expected_version %llu is stale: segment %s is at version %llu",
                            (unsigned long long)req->expected_version, seg->segment_id,
                            (unsigned long long)version);
    seg->version = version + 1;
    seg->created_at_unix_ms = old ? old->created_at_unix_ms : j->now;
    seg->updated_at_unix_ms = j->now;
    segment_change sc = {j, seg->segment_id};
    if ((rc = pdb_evaluate_segment(t, ctx->db, j->a, seg, &seg->member_count, publish_member,
                                   &sc)) != 0)
        return rc;
    seg->evaluated_at_unix_ms = j->now;
    if ((rc = pdb_segment_put(t, ctx->db, j->a, seg)) != 0)
        return rc;
    resp->segment = seg;
    resp->created = old == NULL;
    return 0;
}

static void on_upsert_segment(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__UpsertSegmentRequest *req = (Cxm__V1__UpsertSegmentRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_segment(req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, pdb_store(ctx->db), req, segment_job);
}

/* Trim a page of member ids to the reply's byte budget. */
static int members_fit(const cxm_call *call, pdb_members_page *page, char *err)
{
    size_t budget = cxm_svc_reply_budget(call, PAGE_RESERVE), used = 0;
    for (size_t i = 0; i < page->n; i++) {
        used += cxm_svc_field_size(strlen(page->ids[i]));
        if (used > budget) {
            page->n = i;
            page->more = true;
            return i ? 0 : cxm_svc_too_big(call, used, "one member id alone", err);
        }
    }
    return 0;
}

static void on_list_members(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__ListSegmentMembersRequest *req = (Cxm__V1__ListSegmentMembersRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int limit = 0;
    int rc = cxm_svc_check_slug(req->segment_id, "segment_id", err);
    if (rc == 0)
        rc = cxm_svc_page_size(req->page_size, 1000, 1000, &limit, err);
    uint64_t h = rc ? 0 : cxm_hash(CXM_HASH_INIT, req->segment_id, strlen(req->segment_id));
    const char *after = "";
    if (rc == 0)
        rc = cxm_svc_token_parse(req->page_token, h, &after, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_txn *t;
    if ((rc = cxm_store_read_begin(pdb_store(ctx->db), &t)) != 0)
        return cxm_svc_finish(call, rc, "");
    Cxm__V1__Segment *seg = NULL;
    pdb_members_page page = {0};
    rc = pdb_segment_get(t, ctx->db, req->segment_id, a, &seg);
    if (rc == 0)
        rc = pdb_members(t, ctx->db, a, req->segment_id, after, (size_t)limit, &page);
    cxm_store_read_end(t);
    if (rc == CXM_ENOTFOUND)
        cxm_svc_errf(err, rc, "segment_id", "no segment \"%s\"", req->segment_id);
    if (rc == 0)
        rc = members_fit(call, &page, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    Cxm__V1__ListSegmentMembersResponse resp = CXM__V1__LIST_SEGMENT_MEMBERS_RESPONSE__INIT;
    resp.customer_ids = page.ids;
    resp.n_customer_ids = page.n;
    resp.total_size = page.total;
    resp.evaluated_at_unix_ms = seg->evaluated_at_unix_ms;
    if (page.more) {
        const char *last = page.ids[page.n - 1];
        resp.next_page_token = cxm_svc_token_make(a, h, last, strlen(last));
    }
    cxm_call_reply(call, &resp.base);
}

/* ---- WriteTraits ---- */

static int traits_apply(cxm_svc_job *j, prof_profile *p, int64_t observed,
                        Cxm__V1__WriteTraitsResponse *resp)
{
    const Cxm__V1__WriteTraitsRequest *req = j->req;
    resp->ignored_traits = cxm_arena_alloc(j->a, (req->n_traits + 1) * sizeof(char *));
    if (!resp->ignored_traits)
        return CXM_ENOMEM;
    for (size_t i = 0; i < req->n_traits; i++) {
        const Cxm__V1__WriteTraitsRequest__TraitsEntry *e = req->traits[i];
        for (size_t k = 0; k < p->n_traits; k++)
            if (strcmp(p->traits[k]->name, e->key) == 0 &&
                strcmp(p->traits[k]->source, req->source) != 0)
                return cxm_svc_errf(j->err, CXM_EPERM, NULL, "traits[%s]: owned by %s, not %s",
                                    e->key, p->traits[k]->source, req->source);
        bool applied;
        int rc = prof_trait_set(j->a, p, e->key, e->value, req->source, observed, j->now, &applied);
        if (rc == CXM_ESTALE)
            cxm_svc_errf(j->err, rc, "traits", "a profile holds at most %d traits",
                         PROF_MAX_TRAITS);
        if (rc != 0)
            return rc;
        if (!applied)
            resp->ignored_traits[resp->n_ignored_traits++] = e->key;
    }
    for (size_t i = 0; i < req->n_unset_traits; i++)
        prof_trait_unset(p, req->unset_traits[i]);
    if (req->standard)
        prof_standard_apply(j->a, p, req->standard, observed);
    return 0;
}

static int traits_job(cxm_txn *t, cxm_svc_job *j)
{
    const Cxm__V1__WriteTraitsRequest *req = j->req;
    Cxm__V1__WriteTraitsResponse *resp =
        cxm_svc_response(j, &cxm__v1__write_traits_response__descriptor);
    if (!resp)
        return CXM_ENOMEM;
    prof_profile *p;
    int rc = load_ref(t, j, req->customer, &p);
    if (rc == CXM_ENOTFOUND && req->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY) {
        j->err[0] = '\0';
        if ((rc = create_for(t, j, req->customer->identity, req->source, &p)) != 0)
            return rc;
        resp->created = true;
    }
    if (rc != 0)
        return rc;
    int64_t observed = req->observed_at_unix_ms ? req->observed_at_unix_ms : j->now;
    size_t nbefore;
    Cxm__V1__Trait **before = prof_traits_keep(j->a, p, &nbefore);
    if (!before && p->n_traits)
        return CXM_ENOMEM;
    if ((rc = traits_apply(j, p, observed, resp)) != 0 || (rc = save_profile(t, j, p)) != 0 ||
        (rc = publish_traits(t, j, p, before, nbefore)) != 0)
        return rc;
    resp->customer_id = p->customer_id;
    resp->version = p->version;
    return 0;
}

static void on_traits(cxm_call *call, const ProtobufCMessage *msg)
{
    Cxm__V1__WriteTraitsRequest *req = (Cxm__V1__WriteTraitsRequest *)msg;
    const prof_ctx *ctx = cxm_call_service_ctx(call);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = prof_check_traits(&ctx->ident, cxm_call_arena(call), req, err);
    if (rc != 0)
        return cxm_svc_finish(call, rc, err);
    cxm_svc_submit(call, pdb_store(ctx->db), req, traits_job);
}

/* ---- the method table ---- */

const cxm_method prof_methods[] = {
    {"UpsertProfile", CXM_UNARY, &cxm__v1__upsert_profile_request__descriptor, on_upsert},
    {"GetProfile", CXM_UNARY, &cxm__v1__get_profile_request__descriptor, on_get},
    {"ResolveIdentity", CXM_UNARY, &cxm__v1__resolve_identity_request__descriptor, on_resolve},
    {"ResolveIdentities", CXM_UNARY, &cxm__v1__resolve_identities_request__descriptor,
     on_resolve_batch},
    {"MergeProfiles", CXM_UNARY, &cxm__v1__merge_profiles_request__descriptor, on_merge},
    {"UnmergeProfile", CXM_UNARY, &cxm__v1__unmerge_profile_request__descriptor, on_unmerge},
    {"SetConsent", CXM_UNARY, &cxm__v1__set_consent_request__descriptor, on_consent},
    {"DeleteProfile", CXM_UNARY, &cxm__v1__delete_profile_request__descriptor, on_delete},
    {"GetDeletionReceipt", CXM_UNARY, &cxm__v1__get_deletion_receipt_request__descriptor,
     on_get_receipt},
    {"SearchProfiles", CXM_UNARY, &cxm__v1__search_profiles_request__descriptor, on_search},
    {"UpsertSegment", CXM_UNARY, &cxm__v1__upsert_segment_request__descriptor, on_upsert_segment},
    {"ListSegmentMembers", CXM_UNARY, &cxm__v1__list_segment_members_request__descriptor,
     on_list_members},
    {"WriteTraits", CXM_UNARY, &cxm__v1__write_traits_request__descriptor, on_traits},
};

const size_t prof_nmethods = sizeof prof_methods / sizeof prof_methods[0];

/* Who may call each method with auth on (auth.h has the whole table and the
 * reasoning); keep in step with the method table above. */
const cxm_method_access prof_access[] = {
    {"UpsertProfile", CXM_ACCESS_WRITE},        {"GetProfile", CXM_ACCESS_READ},
    {"ResolveIdentity", CXM_ACCESS_WRITE},      /* create_if_missing makes a profile */
    {"ResolveIdentities", CXM_ACCESS_INTERNAL}, /* the resolver of journey, feedback */
    {"MergeProfiles", CXM_ACCESS_WRITE},        {"UnmergeProfile", CXM_ACCESS_WRITE},
    {"SetConsent", CXM_ACCESS_WRITE},           {"DeleteProfile", CXM_ACCESS_ADMIN}, /* erasure */
    {"GetDeletionReceipt", CXM_ACCESS_READ},    {"SearchProfiles", CXM_ACCESS_READ},
    {"UpsertSegment", CXM_ACCESS_WRITE},        {"ListSegmentMembers", CXM_ACCESS_READ},
    {"WriteTraits", CXM_ACCESS_INTERNAL}, /* traits written on behalf of a service */
};
const size_t prof_naccess = sizeof prof_access / sizeof prof_access[0];
