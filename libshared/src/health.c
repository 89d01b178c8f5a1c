/*
 * health.c - grpc.health.v1.Health for every cxm server.
 *
 * The set of names is fixed when the server starts ("" is the whole server),
 * so Check reads two atomics per call and takes no lock: it is the empty RPC
 * every benchmark compares against. Watch streams are kept on a list under
 * a mutex and told of every change; on drain they hear NOT_SERVING and end.
 *
 * "degraded" (the store cannot write) overrides every name's status with
 * NOT_SERVING without changing it, so recovery restores what was there and
 * cannot revive a server that is draining.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "grpc/health/v1/health.pb-c.h"
#include "server_internal.h"

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

/* Watchers of one name are linked through this node, kept in the call arena. */
typedef struct watcher {
    struct watcher *prev, *next;
    cxm_call *call;
    size_t index; /* into names, or SIZE_MAX for a name we do not host */
} watcher;

struct cxm__health {
    char **names;
    atomic_int *status;
    atomic_bool degraded;
    size_t n;
    pthread_mutex_t mu;
    watcher *watchers;
    bool draining;
    cxm_service svc;
};

static size_t find_name(const cxm__health *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->names[i], name) == 0)
            return i;
    return SIZE_MAX;
}

static serving_status status_of(const cxm__health *h, size_t index)
{
    if (index == SIZE_MAX)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    if (atomic_load_explicit(&h->degraded, memory_order_acquire))
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return (serving_status)atomic_load_explicit(&h->status[index], memory_order_acquire);
}

static void check(cxm_call *call, const ProtobufCMessage *msg)
{
    const cxm__health *h = cxm_call_service_ctx(call);
    const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
    size_t index = find_name(h, req->service);
    if (index == SIZE_MAX) {
        cxm_call_finish(call, CXM_ENOTFOUND,
                        "this server does not host service \"%s\"; ask with an empty name for "
                        "the server as a whole",
                        req->service);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = status_of(h, index);
    cxm_call_reply(call, &resp.base);
}

static void list(cxm_call *call, const ProtobufCMessage *msg)
{
    const cxm__health *h = cxm_call_service_ctx(call);
    cxm_arena *a = cxm_call_arena(call);
    Grpc__Health__V1__HealthListResponse resp = GRPC__HEALTH__V1__HEALTH_LIST_RESPONSE__INIT;
    resp.statuses = cxm_arena_calloc(a, h->n, sizeof *resp.statuses);
    Grpc__Health__V1__HealthListResponse__StatusesEntry *entries =
        cxm_arena_calloc(a, h->n, sizeof *entries);
    Grpc__Health__V1__HealthCheckResponse *values = cxm_arena_calloc(a, h->n, sizeof *values);
    if (!resp.statuses || !entries || !values) {
        cxm_call_finish(call, CXM_ENOMEM, "no memory for the health list");
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        grpc__health__v1__health_check_response__init(&values[i]);
        values[i].status = status_of(h, i);
        grpc__health__v1__health_list_response__statuses_entry__init(&entries[i]);
        entries[i].key = h->names[i];
        entries[i].value = &values[i];
        resp.statuses[i] = &entries[i];
    }
    resp.n_statuses = h->n;
    cxm_call_reply(call, &resp.base);
}

static void send_status(cxm_call *call, serving_status st)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st;
    cxm_call_send(call, &resp.base);
}

static void unlink_watcher(cxm__health *h, watcher *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        h->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

/* Per the health protocol, an unknown name is answered SERVICE_UNKNOWN and
 * the stream stays open, in case the service appears later. */
static void watch(cxm_call *call, const ProtobufCMessage *msg)
{
    cxm__health *h = cxm_call_service_ctx(call);
    const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
    watcher *w = cxm_arena_calloc(cxm_call_arena(call), 1, sizeof *w);
    if (!w) {
        cxm_call_finish(call, CXM_ENOMEM, "no memory for a health watcher");
        return;
    }
    w->call = call;
    w->index = find_name(h, req->service);
    pthread_mutex_lock(&h->mu);
    if (h->draining) {
        pthread_mutex_unlock(&h->mu);
        send_status(call, status_of(h, w->index));
        cxm_call_finish(call, CXM_EUNAVAIL, "the server is shutting down");
        return;
    }
    send_status(call, status_of(h, w->index));
    w->next = h->watchers;
    if (w->next)
        w->next->prev = w;
    h->watchers = w;
    cxm_call_set_user(call, w);
    pthread_mutex_unlock(&h->mu);
}

static void watch_cancelled(cxm_call *call)
{
    cxm__health *h = cxm_call_service_ctx(call);
    watcher *w = cxm_call_user(call);
    if (!w) {
        /* Cancelled before watch() registered it; watch() finished it or will. */
        return;
    }
    pthread_mutex_lock(&h->mu);
    bool listed = !h->draining; /* drain ended every listed watcher already */
    if (listed)
        unlink_watcher(h, w);
    pthread_mutex_unlock(&h->mu);
    if (listed)
        cxm_call_finish(call, CXM_ECANCELLED, NULL);
}

void cxm__health_set_all(cxm__health *h, int serving)
{
    serving_status st = serving
                            ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                            : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n; i++)
        atomic_store_explicit(&h->status[i], (int)st, memory_order_release);
    for (watcher *w = h->watchers; w; w = w->next)
        if (w->index != SIZE_MAX)
            send_status(w->call, status_of(h, w->index));
    pthread_mutex_unlock(&h->mu);
}

void cxm__health_set_degraded(cxm__health *h, bool degraded)
{
    pthread_mutex_lock(&h->mu);
    bool was = atomic_exchange_explicit(&h->degraded, degraded, memory_order_acq_rel);
    for (watcher *w = was != degraded ? h->watchers : NULL; w; w = w->next)
        if (w->index != SIZE_MAX)
            send_status(w->call, status_of(h, w->index));
    pthread_mutex_unlock(&h->mu);
}

/* Tell watchers NOT_SERVING, then end their streams so the drain need not
 * wait the whole grace period for them. */
static void drain(void *ctx)
{
    cxm__health *h = ctx;
    cxm__health_set_all(h, 0);
    pthread_mutex_lock(&h->mu);
    h->draining = true;
    watcher *list = h->watchers;
    h->watchers = NULL;
    pthread_mutex_unlock(&h->mu);
    for (watcher *w = list, *next; w; w = next) {
        next = w->next; /* w lives in the call's arena, gone after finish */
        cxm_call_finish(w->call, CXM_EUNAVAIL, "the server is shutting down");
    }
}

static const cxm_method health_methods[] = {
    {"Check", CXM_UNARY, &grpc__health__v1__health_check_request__descriptor, check, NULL, NULL},
    {"List", CXM_UNARY, &grpc__health__v1__health_list_request__descriptor, list, NULL, NULL},
    /* Open by design: a watcher waits for the next change, however long. */
    {.name = "Watch",
     .kind = CXM_SERVER_STREAMING,
     .request = &grpc__health__v1__health_check_request__descriptor,
     .on_message = watch,
     .on_cancel = watch_cancelled,
     .open_ended = true},
};

/* Load balancers and orchestrators probe without credentials. */
static const cxm_method_access health_access[] = {
    {"Check", CXM_ACCESS_PUBLIC},
    {"List", CXM_ACCESS_PUBLIC},
    {"Watch", CXM_ACCESS_PUBLIC},
};

int cxm__health_create(const char *const *names, size_t n, cxm__health **out)
{
    cxm__health *h = calloc(1, sizeof *h);
    if (!h)
        return CXM_ENOMEM;
    h->n = n + 1;
    h->names = calloc(h->n, sizeof *h->names);
    h->status = calloc(h->n, sizeof *h->status);
    if (!h->names || !h->status)
        goto fail;
    h->names[0] = strdup("");
    for (size_t i = 0; i < n; i++)
        h->names[i + 1] = strdup(names[i]);
    for (size_t i = 0; i < h->n; i++) {
        if (!h->names[i])
            goto fail;
        atomic_init(&h->status[i],
                    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    }
    atomic_init(&h->degraded, false);
    pthread_mutex_init(&h->mu, NULL);
    h->svc = (cxm_service){.name = "grpc.health.v1.Health",
                           .methods = health_methods,
                           .nmethods = sizeof health_methods / sizeof health_methods[0],
                           .access = health_access,
                           .naccess = sizeof health_access / sizeof health_access[0],
                           .contract = &grpc__health__v1__health__descriptor,
                           .ctx = h,
                           .on_drain = drain};
    *out = h;
    return 0;
fail:
    if (h->names)
        for (size_t i = 0; i < h->n; i++)
            free(h->names[i]);
    free(h->names);
    free(h->status);
    free(h);
    return CXM_ENOMEM;
}

const cxm_service *cxm__health_service(cxm__health *h)
{
    return &h->svc;
}

void cxm__health_destroy(cxm__health *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->names[i]);
    free(h->names);
    free(h->status);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
