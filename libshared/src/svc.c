/*
 * svc.c - the service kit (see svc.h).
 */
#include "cxm/svc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/log.h"

/* ---- errors and field paths ---- */

int cxm_svc_errf(char *err, int rc, const char *field, const char *fmt, ...)
{
    int n = 0;
    if (field && *field)
        n = snprintf(err, CXM_SVC_ERR_MAX, "%s: ", field);
    if (n < 0 || n >= CXM_SVC_ERR_MAX)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, CXM_SVC_ERR_MAX - (size_t)n, fmt, ap);
    va_end(ap);
    return rc;
}

const char *cxm_svc_index(cxm_svc_path *p, const char *base, size_t index)
{
    snprintf(p->s, sizeof p->s, "%s[%zu]", base, index);
    return p->s;
}

const char *cxm_svc_member(cxm_svc_path *p, const char *base, const char *name)
{
    if (base && *base)
        snprintf(p->s, sizeof p->s, "%s.%s", base, name);
    else
        snprintf(p->s, sizeof p->s, "%s", name);
    return p->s;
}

void cxm_svc_finish(cxm_call *call, int rc, const char *err)
{
    const char *method = cxm_call_path(call) + 1; /* without the leading '/' */
    if (err && err[0])
        cxm_call_finish(call, rc, "%s: %s", method, err);
    else
        cxm_call_finish(call, rc, "%s: %s (%s)", method, cxm_strerror(rc), cxm_store_last_error());
}

/* ---- checks ---- */

bool cxm_svc_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end) {
        unsigned c = *s;
        size_t n;
        unsigned min;
        if (c == 0)
            return false;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - s) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (s[i] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

bool cxm_svc_slug_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CXM_SVC_SLUG_MAX)
        return false;
    for (; *s; s++)
        if (!(*s >= 'a' && *s <= 'z') && !(*s >= '0' && *s <= '9') && !strchr("_.-", *s))
            return false;
    return true;
}

int cxm_svc_check_text(const char *s, size_t min, size_t max, const char *field, char *err)
{
    s = s ? s : "";
    size_t n = strlen(s);
    if (n < min)
        return cxm_svc_errf(err, CXM_EINVAL, field, "required");
    if (n > max)
        return cxm_svc_errf(err, CXM_EINVAL, field, "at most %zu bytes (got %zu)", max, n);
    if (!cxm_svc_utf8_valid(s, n))
        return cxm_svc_errf(err, CXM_EINVAL, field, "not valid UTF-8");
    return 0;
}

int cxm_svc_check_slug(const char *s, const char *field, char *err)
{
    if (cxm_svc_slug_valid(s))
        return 0;
    return cxm_svc_errf(err, CXM_EINVAL, field, "must be [a-z0-9_.-], 1 to %d bytes",
                        CXM_SVC_SLUG_MAX);
}

int cxm_svc_page_size(int32_t asked, int32_t dflt, int32_t max, int *limit, char *err)
{
    if (asked < 0)
        return cxm_svc_errf(err, CXM_EINVAL, "page_size", "must not be negative");
    *limit = asked == 0 ? dflt : asked > max ? max : asked;
    return 0;
}

/* ---- page tokens: "<16 hex digits of the filter hash>:<key after>" ---- */

uint64_t cxm_svc_hash_messages(cxm_arena *a, const ProtobufCMessage *const *msgs, size_t n)
{
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = protobuf_c_message_get_packed_size(msgs[i]);
        uint8_t *buf = cxm_arena_alloc(a, len ? len : 1);
        if (!buf)
            return 0;
        protobuf_c_message_pack(msgs[i], buf);
        h = h * 31 + cxm_hash(CXM_HASH_INIT, buf, len);
    }
    return h;
}

char *cxm_svc_token_make(cxm_arena *a, uint64_t filters, const char *after, size_t len)
{
    char *t = cxm_arena_alloc(a, 18 + len);
    if (t)
        snprintf(t, 18 + len, "%016llx:%.*s", (unsigned long long)filters, (int)len, after);
    return t;
}

int cxm_svc_token_parse(const char *token, uint64_t filters, const char **after, char *err)
{
    *after = "";
    if (!token || !*token)
        return 0;
    char *end;
    uint64_t h = strtoull(token, &end, 16);
    if (end != token + 16 || *end != ':' || h != filters)
        return cxm_svc_errf(err, CXM_EINVAL, "page_token",
                            "malformed, or issued for other filters; start again without it");
    *after = end + 1;
    return 0;
}

/* ---- replies and the message limit ---- */

size_t cxm_svc_field_size(size_t body_len)
{
    size_t n = 1 + body_len; /* tag */
    do {
        n++;
        body_len >>= 7;
    } while (body_len);
    return n;
}

size_t cxm_svc_reply_budget(const cxm_call *call, size_t reserve)
{
    size_t limit = cxm_call_max_message_bytes(call);
    return limit > reserve ? limit - reserve : 0;
}

int cxm_svc_too_big(const cxm_call *call, size_t size, const char *what, char *err)
{
    return cxm_svc_errf(err, CXM_ENOMEM, NULL,
                        "%s would take %zu bytes, over this server's message limit of %zu bytes "
                        "(raise --max-message-bytes)",
                        what, size, cxm_call_max_message_bytes(call));
}

/* ---- write jobs ---- */

static int job_run(cxm_txn *t, void *user)
{
    cxm_svc_job *j = user;
    j->err[0] = '\0';
    j->resp = NULL;
    int rc = j->fn(t, j);
    if (rc != 0 || !j->resp)
        return rc;
    /* Checked here, not after the commit: failing now rolls the write back,
     * so a client never gets an error for a write that happened. */
    size_t n = protobuf_c_message_get_packed_size(j->resp);
    if (n <= j->limit)
        return 0;
    rc = cxm_svc_too_big(j->call, n, "the reply", j->err);
    size_t len = strlen(j->err);
    snprintf(j->err + len, sizeof j->err - len, "; nothing was written");
    return rc;
}

static void job_done(void *user, int rc)
{
    cxm_svc_job *j = user;
    if (rc == 0 && j->resp)
        cxm_call_reply(j->call, j->resp);
    else
        cxm_svc_finish(j->call, rc ? rc : CXM_EINTERNAL, j->err);
}

void cxm_svc_submit(cxm_call *call, cxm_store *store, const void *req, cxm_svc_job_fn fn)
{
    cxm_arena *a = cxm_call_arena(call);
    cxm_svc_job *j = cxm_arena_calloc(a, 1, sizeof *j);
    if (!j)
        return cxm_call_finish(call, CXM_ENOMEM, "out of memory");
    j->call = call;
    j->a = a;
    j->ctx = cxm_call_service_ctx(call);
    j->req = req;
    j->now = cxm_svc_now_ms();
    j->fn = fn;
    j->limit = cxm_call_max_message_bytes(call);
    j->wj = (cxm_write_job){.fn = job_run, .done = job_done, .user = j};
    cxm_store_submit(store, &j->wj);
}

void *cxm_svc_response(cxm_svc_job *j, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = cxm_arena_alloc(j->a, d->sizeof_message);
    if (m) {
        protobuf_c_message_init(d, m);
        j->resp = m;
    }
    return m;
}

/* ---- configuration ---- */

int cxm_svc_split(char *s, const char **out, size_t max, size_t *n)
{
    size_t k = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!*tok)
            continue;
        if (k == max)
            return CXM_ETOOBIG;
        out[k++] = tok;
    }
    *n = k;
    return 0;
}

/* ---- the erasure cascade ---- */

static const char *const deleted_types[] = {"CustomerDeleted"};

/* Pending erasures (svc.erasure_pending), per service: key service NUL
 * receipt_id; value: the compaction count the erase commit saw (8 bytes),
 * records erased (8 bytes), then the customer id. Only ids: no personal
 * data is kept to confirm an erasure. */
#define PENDING_HEAD 16

static size_t pending_key(const cxm_svc_erasure *e, const char *receipt_id, char *key, size_t cap)
{
    int n = snprintf(key, cap, "%s%c%s", e->service, 0, receipt_id);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int cxm_svc_erasure_defer(cxm_txn *txn, const cxm_svc_erasure *e, const char *customer_id,
                          const char *receipt_id, uint64_t records)
{
    char key[CXM_SVC_SLUG_MAX + 128];
    size_t klen = pending_key(e, receipt_id, key, sizeof key);
    size_t clen = strlen(customer_id);
    unsigned char val[PENDING_HEAD + 256];
    if (klen == 0 || clen > sizeof val - PENDING_HEAD)
        return CXM_ETOOBIG;
    uint64_t gen = cxm_store_compactions(e->store);
    memcpy(val, &gen, 8);
    memcpy(val + 8, &records, 8);
    memcpy(val + PENDING_HEAD, customer_id, clen);
    int rc = cxm_txn_put(txn, e->pending, key, klen, val, PENDING_HEAD + clen, 0);
    if (rc == 0)
        cxm_store_compact_request(e->store);
    return rc;
}

typedef struct confirm_run {
    cxm_svc_erasure *e;
    uint64_t covered; /* rows with a count below this are final */
    bool reset;       /* at open: mark every row for the next compaction */
    size_t confirmed, waiting;
    cxm_arena *a; /* keys to delete once the walk is over */
    struct done_key {
        const void *key;
        size_t len;
        struct done_key *next;
    } * done;
} confirm_run;

/* One pending row: confirm it if the compaction covered it, then drop it. */
static int confirm_row(cxm_txn *txn, confirm_run *r, cxm_iter *it)
{
    const cxm_svc_erasure *e = r->e;
    size_t plen = strlen(e->service) + 1;
    uint64_t gen, records;
    if (it->vlen < PENDING_HEAD || it->klen <= plen || it->klen - plen > 127)
        return CXM_ECORRUPT;
    memcpy(&gen, it->val, 8);
    memcpy(&records, (const char *)it->val + 8, 8);
    if (r->reset) {
        r->waiting++;
        if (gen == 0)
            return 0;
        unsigned char val[PENDING_HEAD + 256];
        size_t vlen = it->vlen < sizeof val ? it->vlen : sizeof val;
        memcpy(val, it->val, vlen);
        memset(val, 0, 8);
        return cxm_txn_put(txn, e->pending, it->key, it->klen, val, vlen, 0);
    }
    if (gen >= r->covered) {
        r->waiting++;
        return 0;
    }
    char receipt[128], customer[257];
    size_t clen = it->vlen - PENDING_HEAD < 256 ? it->vlen - PENDING_HEAD : 256;
    memcpy(receipt, (const char *)it->key + plen, it->klen - plen);
    receipt[it->klen - plen] = '\0';
    memcpy(customer, (const char *)it->val + PENDING_HEAD, clen);
    customer[clen] = '\0';
    int rc = e->confirm(txn, customer, receipt, records, e->confirm_user);
    if (rc != 0)
        return rc;
    struct done_key *d = cxm_arena_alloc(r->a, sizeof *d);
    void *key = cxm_arena_alloc(r->a, it->klen);
    if (!d || !key)
        return CXM_ENOMEM;
    memcpy(key, it->key, it->klen);
    *d = (struct done_key){key, it->klen, r->done};
    r->done = d;
    r->confirmed++;
    return 0;
}

static int confirm_fn(cxm_txn *txn, void *user)
{
    confirm_run *r = user;
    r->confirmed = r->waiting = 0;
    r->done = NULL;
    cxm_arena_reset(r->a);
    r->covered = cxm_store_compactions(r->e->store);
    char prefix[CXM_SVC_SLUG_MAX + 1];
    size_t plen = pending_key(r->e, "", prefix, sizeof prefix);
    cxm_iter it;
    int rc = cxm_iter_prefix(txn, r->e->pending, prefix, plen, false, &it);
    /* LMDB keeps the cursor valid across a put or del of the row under it. */
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0)
        rc = confirm_row(txn, r, &it);
    cxm_iter_close(&it);
    for (struct done_key *d = r->done; rc == CXM_ENOTFOUND && d; d = d->next)
        if (cxm_txn_del(txn, r->e->pending, d->key, d->len) != 0)
            rc = CXM_EIO;
    return rc == CXM_ENOTFOUND ? 0 : rc;
}

static void confirm_after_compaction(cxm_store *store, void *user)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    confirm_run r = {.e = user, .a = &a};
    int rc = cxm_store_write(store, confirm_fn, &r);
    cxm_arena_dispose(&a);
    if (rc != 0) {
        cxm_log_error("svc.erasure_confirm_failed",
                      "%s: cannot confirm erasures after the compaction: %s; retried after the "
                      "next one",
                      r.e->service, cxm_strerror(rc));
        cxm_store_compact_request(store);
    } else if (r.confirmed) {
        cxm_log_info("svc.erasure_confirmed",
                     "%s: %zu erasure(s) confirmed after the compaction, %zu waiting for the "
                     "next",
                     r.e->service, r.confirmed, r.waiting);
    }
}

int cxm_svc_erasure_confirmer(cxm_store *store, const char *service, cxm_svc_confirm_fn confirm,
                              void *user, cxm_svc_erasure *e)
{
    e->service = service;
    e->store = store;
    e->confirm = confirm;
    e->confirm_user = user;
    int rc = cxm_store_dbi(store, "svc.erasure_pending", 0, &e->pending);
    /* Rows of an earlier run carry its compaction count: restart them at 0. */
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    confirm_run r = {.e = e, .reset = true, .a = &a};
    if (rc == 0)
        rc = cxm_store_write(store, confirm_fn, &r);
    cxm_arena_dispose(&a);
    if (rc == 0)
        rc = cxm_store_on_compacted(store, confirm_after_compaction, e);
    if (rc == 0 && r.waiting)
        cxm_store_compact_request(store);
    if (rc != 0) {
        cxm_log_error("svc.erasure_failed", "the %s service cannot confirm erasures: %s", service,
                      cxm_store_last_error());
        e->store = NULL;
    }
    return rc;
}

void cxm_svc_erasure_close(cxm_svc_erasure *e)
{
    if (e && e->store)
        cxm_store_on_compacted_remove(e->store, confirm_after_compaction, e);
    if (e)
        e->store = NULL;
}

static int erasure_apply(cxm_txn *txn, const Cxm__V1__Event *ev, void *user)
{
    const cxm_svc_erasure *e = user;
    const Cxm__V1__CustomerDeleted *d = ev->customer_deleted;
    if (ev->payload_case != CXM__V1__EVENT__PAYLOAD_CUSTOMER_DELETED || !d->receipt_id ||
        !*d->receipt_id) {
        /* Nothing to answer: retrying would stop the subscription for good. */
        cxm_log_warn("svc.erasure_skipped",
                     "%s: event %s:%llu of type %s has no CustomerDeleted receipt; skipped",
                     e->service, ev->producer, (unsigned long long)ev->sequence, ev->type);
        return 0;
    }
    uint64_t records = 0;
    int rc = e->erase(txn, ev->customer_id, d->merged_customer_ids, d->n_merged_customer_ids,
                      &records, e->user);
    return rc != 0 ? rc : cxm_svc_erasure_defer(txn, e, ev->customer_id, d->receipt_id, records);
}

/* The confirmation of a bus service: ErasureCompleted to profile. */
static int emit_completed(cxm_txn *txn, const char *customer_id, const char *receipt_id,
                          uint64_t records, void *user)
{
    const cxm_svc_erasure *e = user;
    Cxm__V1__ErasureCompleted done = CXM__V1__ERASURE_COMPLETED__INIT;
    done.service = (char *)e->service;
    done.receipt_id = (char *)receipt_id;
    done.records_erased = records;
    Cxm__V1__Event out = CXM__V1__EVENT__INIT;
    out.customer_id = (char *)customer_id;
    out.payload_case = CXM__V1__EVENT__PAYLOAD_ERASURE_COMPLETED;
    out.erasure_completed = &done;
    return cxm_bus_emit(e->producer, txn, &out);
}

int cxm_svc_erase_nothing(cxm_txn *txn, const char *customer_id, char *const *merged,
                          size_t nmerged, uint64_t *records, void *user)
{
    *records = 0;
    return 0;
}

int cxm_svc_erasure_subscribe(cxm_bus *bus, const char *service, cxm_svc_erase_fn erase, void *user,
                              cxm_svc_erasure *e)
{
    if (!bus) {
        cxm_log_error("svc.erasure_failed",
                      "the %s service needs the event bus to take part in erasures, and its "
                      "store has none (open it through cxm_host_main)",
                      service);
        return CXM_EUNAVAIL;
    }
    *e = (cxm_svc_erasure){.service = service, .erase = erase, .user = user};
    int rc = cxm_bus_producer_open(bus, service, &e->producer);
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, service, "profile", deleted_types, 1, erasure_apply, e);
    if (rc != 0) {
        cxm_log_error("svc.erasure_failed", "the %s service cannot join the erasure cascade: %s",
                      service, cxm_bus_last_error());
        return rc;
    }
    return cxm_svc_erasure_confirmer(cxm_bus_store(bus), service, emit_completed, e, e);
}

int64_t cxm_svc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
