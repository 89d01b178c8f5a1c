/*
 * svc.h - the service kit: what every cxm service's handlers share, so a
 * service file holds its handlers and domain rules and nothing else.
 *
 *   - Write jobs: a write RPC is validated on the worker thread, then
 *     cxm_svc_submit queues one function that runs inside the store's group
 *     commit (cxm_store_submit) and builds the response there. The call is
 *     answered only after the commit made the write durable; a job that
 *     fails, or whose response would not fit the call's message limit, is
 *     rolled back without a trace (its batch neighbours still commit).
 *   - Errors: every failure ends the call with a CXM_E* code and a message
 *     that starts with the field path it is about ("attributes[3].name:
 *     ...") and says what to do. cxm_svc_index/cxm_svc_member build paths.
 *   - Checks: text (UTF-8, length), slug names, page sizes.
 *   - Page tokens: opaque to clients, bound to a hash of the request's
 *     filters, so a token cannot be replayed with other filters.
 *   - Replies over the message limit: the runtime answers them
 *     RESOURCE_EXHAUSTED naming the limit (server.h, never INTERNAL), a
 *     write job refuses one before it commits, and paged reads use
 *     cxm_svc_reply_budget to return a shorter page instead.
 *   - Comma-separated flag values: cxm_svc_split.
 *   - The erasure cascade: cxm_svc_erasure_subscribe joins a service to
 *     profile's CustomerDeleted events and answers each with
 *     ErasureCompleted once a compaction of its store has removed the
 *     erased bytes from the data file.
 *
 * Handlers reach their service state through the call
 * (cxm_call_service_ctx, or job->ctx inside a write job); the kit keeps no
 * globals. Everything here is thread-safe; the pure helpers allocate
 * nothing unless an arena is passed.
 *
 * Error buffers: functions that can fail with a message write it into
 * `char err[CXM_SVC_ERR_MAX]` and return the CXM_E* code.
 */
#ifndef CXM_SVC_H
#define CXM_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cxm/arena.h"
#include "cxm/bus.h"
#include "cxm/server.h"
#include "cxm/store.h"

#define CXM_SVC_ERR_MAX 320  /* bytes of an error message, NUL included */
#define CXM_SVC_PATH_MAX 160 /* bytes of a field path, NUL included */
#define CXM_SVC_SLUG_MAX 64  /* bytes of a slug name */

/* ---- errors and field paths ------------------------------------------ */

/* Write "field: <printf message>" into err (CXM_SVC_ERR_MAX bytes; field
 * NULL or "" writes the message alone) and return rc, so a check reads
 * `return cxm_svc_errf(err, CXM_EINVAL, field, "required");`. */
int cxm_svc_errf(char *err, int rc, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A field path, built in caller storage. */
typedef struct cxm_svc_path {
    char s[CXM_SVC_PATH_MAX];
} cxm_svc_path;

/* "base[index]" into p; returns p->s. A path longer than the buffer is cut
 * (it is only ever shown to people). */
const char *cxm_svc_index(cxm_svc_path *p, const char *base, size_t index);

/* "base.name" into p (just "name" when base is NULL or ""); returns p->s. */
const char *cxm_svc_member(cxm_svc_path *p, const char *base, const char *name);

/* End a call that failed: status from rc (cxm_err_status), message
 * "<method path>: <err>", or, when err is empty, rc's description and the
 * store's last error (the failure came from below, not from a check). */
void cxm_svc_finish(cxm_call *call, int rc, const char *err);

/* ---- checks ---------------------------------------------------------- */

/* True when s[0..len) is well-formed UTF-8 (no overlong forms, surrogates
 * or values past U+10FFFF) without NUL bytes. */
bool cxm_svc_utf8_valid(const char *s, size_t len);

/* True for the lower-case names callers choose (custom identity types,
 * consent scopes, segment ids): [a-z0-9_.-], 1 to CXM_SVC_SLUG_MAX bytes.
 * NULL is not. */
bool cxm_svc_slug_valid(const char *s);

/* A text field (NULL counts as ""): valid UTF-8, at most max bytes, and at
 * least min (min > 0 makes it required). 0 or CXM_EINVAL naming field. */
int cxm_svc_check_text(const char *s, size_t min, size_t max, const char *field, char *err);

/* A slug field (see cxm_svc_slug_valid). 0 or CXM_EINVAL naming field. */
int cxm_svc_check_slug(const char *s, const char *field, char *err);

/* A requested page size: 0 means dflt, more than max is cut to max,
 * negative is CXM_EINVAL (naming "page_size"). *limit is set on success. */
int cxm_svc_page_size(int32_t asked, int32_t dflt, int32_t max, int *limit, char *err);

/* ---- page tokens ----------------------------------------------------- */

/* A hash (hash.h) of the request's filter messages (packed, in order), to bind
 * tokens to. Packing uses scratch memory from a; 0 when out of memory. */
uint64_t cxm_svc_hash_messages(cxm_arena *a, const ProtobufCMessage *const *msgs, size_t n);

/* A token for the page after the item whose key is after[0..len), bound to
 * filters. Allocated in a; NULL when out of memory. */
char *cxm_svc_token_make(cxm_arena *a, uint64_t filters, const char *after, size_t len);

/* Parse a token from the client: *after is the key to continue after ("" for
 * an empty or NULL token, meaning the first page); it points into token.
 * CXM_EINVAL naming "page_token" when the token is malformed or was issued
 * for other filters. */
int cxm_svc_token_parse(const char *token, uint64_t filters, const char **after, char *err);

/* ---- replies and the message limit ----------------------------------- */

/* Bytes a message takes as one length-delimited field of another (tag of a
 * field number below 16, length, body): what adding it to a repeated field
 * of a response costs. */
size_t cxm_svc_field_size(size_t body_len);

/* The byte budget of a paged reply's items: the call's message limit less
 * `reserve` bytes for the reply's other fields (token, totals). A page
 * stops before the item that would exceed it; a first item alone that
 * exceeds it is cxm_svc_too_big. */
size_t cxm_svc_reply_budget(const cxm_call *call, size_t reserve);

/* Write into err why a reply of `size` bytes cannot be sent, naming the
 * limit and what to do, and return CXM_ENOMEM (RESOURCE_EXHAUSTED). */
int cxm_svc_too_big(const cxm_call *call, size_t size, const char *what, char *err);

/* ---- write jobs ------------------------------------------------------ */

typedef struct cxm_svc_job cxm_svc_job;

/* The body of a write RPC, run inside the store's write transaction: read
 * and write through t, build the response with cxm_svc_response, return 0
 * or a CXM_E* code with a message in job->err. It may run more than once
 * (a batch that rolls back runs again without a failed neighbour), so it
 * builds everything from scratch each time; job->err and job->resp are
 * reset before each run. */
typedef int (*cxm_svc_job_fn)(cxm_txn *t, cxm_svc_job *job);

struct cxm_svc_job {
    cxm_call *call;
    cxm_arena *a;    /* the call's arena */
    void *ctx;       /* the service's state (cxm_call_service_ctx) */
    const void *req; /* the validated request */
    int64_t now;     /* wall-clock ms when the call was queued */
    ProtobufCMessage *resp;
    char err[CXM_SVC_ERR_MAX];
    /* private */
    cxm_svc_job_fn fn;
    size_t limit;
    cxm_write_job wj;
};

/* Queue fn for the store's writer thread. Once its batch committed, the
 * call is answered with job->resp (or, when fn failed, with fn's code and
 * job->err). Before the commit, the packed size of job->resp is checked
 * against the call's message limit: a response that would not fit fails the
 * job (RESOURCE_EXHAUSTED, naming the limit) and so rolls its writes back. */
void cxm_svc_submit(cxm_call *call, cxm_store *store, const void *req, cxm_svc_job_fn fn);

/* The job's response, allocated in the call's arena and initialised, to be
 * filled by fn; NULL when out of memory. */
void *cxm_svc_response(cxm_svc_job *job, const ProtobufCMessageDescriptor *d);

/* ---- the erasure cascade ---------------------------------------------- */

/* Erase what the service holds about customer_id and the customer ids
 * merged into it earlier (merged[0..nmerged)), through txn only (it runs in
 * the service's bus subscription, see bus.h: it may run again after a
 * rollback, and must not keep pointers into its arguments). Sets *records
 * to the number of records erased; returns 0 or a CXM_E* code, which rolls
 * the erasure back and has the bus retry it with backoff. */
typedef int (*cxm_svc_erase_fn)(cxm_txn *txn, const char *customer_id, char *const *merged,
                                size_t nmerged, uint64_t *records, void *user);

/* The erase function of a service that stores no customer data yet: it
 * erases nothing (*records = 0), so the erasure is confirmed at once. */
int cxm_svc_erase_nothing(cxm_txn *txn, const char *customer_id, char *const *merged,
                          size_t nmerged, uint64_t *records, void *user);

/* Confirm one erasure, in txn, once a compaction made it final (see
 * below): emit ErasureCompleted, or for profile, mark its own part of the
 * receipt done. Non-zero rolls the confirmations of this batch back; they
 * are retried after the next compaction. */
typedef int (*cxm_svc_confirm_fn)(cxm_txn *txn, const char *customer_id, const char *receipt_id,
                                  uint64_t records, void *user);

/* A service's membership of the cascade, in the caller's storage (its
 * module state), which must outlive the bus's delivery (the host stops the
 * bus before it closes the modules) and be closed with
 * cxm_svc_erasure_close. Fields are private. */
typedef struct cxm_svc_erasure {
    const char *service;
    cxm_svc_erase_fn erase;
    void *user;
    cxm_bus_producer *producer; /* the service's own: ErasureCompleted */
    cxm_store *store;
    MDB_dbi pending; /* svc.erasure_pending: erasures awaiting a compaction */
    cxm_svc_confirm_fn confirm;
    void *confirm_user;
} cxm_svc_erasure;

/* Join service ("journey": a producer name, see bus.h) to the erasure
 * cascade: subscribe it to the "profile" producer's CustomerDeleted events,
 * and for each run erase(txn, customer_id, merged ids, &records, user) and
 * record the erasure as pending in the same transaction. Erased bytes stay
 * readable in the data file until the store is compacted (store.h), so
 * ErasureCompleted {service, receipt_id, records_erased} is emitted from
 * the service's producer only after a compaction that followed the erase
 * commit: the profile service completes the receipt from these (its
 * --profile-erasure-services), so a DONE receipt means a clean file. Call
 * from the module's open, with cxm_bus_of(store): a NULL bus is
 * CXM_EUNAVAIL (the service cannot erase anything without it); bus errors
 * as they are, with cxm_bus_last_error(). `service` must outlive the bus. */
int cxm_svc_erasure_subscribe(cxm_bus *bus, const char *service, cxm_svc_erase_fn erase, void *user,
                              cxm_svc_erasure *e);

/* The confirming half alone, for a service that erases on its own (profile
 * in DeleteProfile): erasures recorded with cxm_svc_erasure_defer are
 * passed to confirm(txn, ..., user) after the compaction that covers them,
 * in a write transaction of the compactor thread. Pending erasures left by
 * an earlier run are confirmed after this run's first compaction, which is
 * requested here. */
int cxm_svc_erasure_confirmer(cxm_store *store, const char *service, cxm_svc_confirm_fn confirm,
                              void *user, cxm_svc_erasure *e);

/* In the erase transaction: record the erasure as pending and ask the store
 * for a compaction (debounced, --erasure-compact-delay). */
int cxm_svc_erasure_defer(cxm_txn *txn, const cxm_svc_erasure *e, const char *customer_id,
                          const char *receipt_id, uint64_t records);

/* Stop confirming (waits for a running confirmation); from the module's
 * close. A zeroed or never opened e is ignored. */
void cxm_svc_erasure_close(cxm_svc_erasure *e);

/* ---- configuration --------------------------------------------------- */

/* Split a comma-separated list in place (s is modified): out gets pointers
 * to the non-empty items. Returns 0 with *n set, or CXM_ETOOBIG when there
 * are more than max items. */
int cxm_svc_split(char *s, const char **out, size_t max, size_t *n);

/* Wall-clock milliseconds since the epoch. */
int64_t cxm_svc_now_ms(void);

#endif
