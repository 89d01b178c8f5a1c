/*
 * resolve_queue.c - the resolver thread: calls waiting for their customer
 * (see the end of cxm/resolve.h).
 *
 * A waiting record lives in its call's arena, which only this thread
 * touches from the push until the record is handed on. The thread takes
 * every waiting record at once, copies their items into one batch in its
 * own arena, resolves the batch with one cxm_resolver_resolve, copies each
 * answer back into its call's arena and hands the call on.
 */
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/resolve.h"

typedef struct rq_wait {
    cxm_call *call;
    void *in, *user;
    cxm_resolve_done_fn done;      /* one item (push) ... */
    cxm_resolve_many_fn done_many; /* ... or several (push_many) */
    cxm_resolve_item one;          /* push's item */
    cxm_resolve_item *items;       /* &one, or the caller's array */
    size_t n;
    struct rq_wait *next;
} rq_wait;

struct cxm_resolve_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rq_wait *head, *tail;
    bool stop, started;
    pthread_t thread;
    cxm_resolver *resolver;
    pthread_mutex_t own_lock; /* used when the caller gave no lock */
    pthread_mutex_t *lock;
    cxm_arena a; /* the batch's scratch, reset per batch */
};

/* A queue that is stopping takes nothing more: its thread may already have
 * seen the last waiting call, and a record left behind would never be
 * answered. */
static int wait_push(cxm_resolve_queue *q, rq_wait *w)
{
    pthread_mutex_lock(&q->mu);
    bool stopping = q->stop;
    if (!stopping) {
        if (q->tail)
            q->tail->next = w;
        else
            q->head = w;
        q->tail = w;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return stopping ? CXM_EUNAVAIL : 0;
}

/* A string of the batch's arena copied into the call's (NULL stays NULL). */
static int copy_out(cxm_arena *a, const char *s, const char **out)
{
    *out = s ? cxm_arena_strndup(a, s, strlen(s)) : NULL;
    return s && !*out ? CXM_ENOMEM : 0;
}

/* Answers of the batch (from) into the call's items. */
static int answers_out(rq_wait *w, const cxm_resolve_item *from)
{
    cxm_arena *a = cxm_call_arena(w->call);
    for (size_t i = 0; i < w->n; i++) {
        cxm_resolve_item *it = &w->items[i];
        it->rc = from[i].rc;
        int rc = copy_out(a, from[i].customer_id, &it->customer_id);
        if (rc == 0)
            rc = copy_out(a, from[i].why, &it->why);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void hand_on(rq_wait *w, int rc)
{
    if (w->done_many)
        w->done_many(w->call, w->in, w->items, w->n, rc, w->user);
    else
        w->done(w->call, w->in, w->items, rc, w->user);
}

/* Resolve every waiting call of the batch in one resolver call. */
static void resolve_batch(cxm_resolve_queue *q, rq_wait *batch)
{
    size_t n = 0;
    for (rq_wait *w = batch; w; w = w->next)
        n += w->n;
    cxm_arena_reset(&q->a);
    cxm_resolve_item *items = n ? cxm_arena_calloc(&q->a, n, sizeof *items) : NULL;
    int rc = n && !items ? CXM_ENOMEM : 0;
    size_t at = 0;
    for (rq_wait *w = batch; rc == 0 && w; at += w->n, w = w->next)
        memcpy(items + at, w->items, w->n * sizeof *items);
    if (rc == 0 && n) {
        pthread_mutex_lock(q->lock);
        rc = cxm_resolver_resolve(q->resolver, items, n, &q->a);
        pthread_mutex_unlock(q->lock);
    }
    at = 0;
    for (rq_wait *w = batch, *next; w; w = next) {
        next = w->next; /* w lives in its call's arena, gone once answered */
        int wrc = rc == 0 ? answers_out(w, items + at) : rc;
        at += w->n;
        hand_on(w, wrc);
    }
}

static void *queue_main(void *arg)
{
    cxm_resolve_queue *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->cv, &q->mu);
        if (!q->head)
            break;
        rq_wait *batch = q->head;
        q->head = q->tail = NULL;
        pthread_mutex_unlock(&q->mu);
        resolve_batch(q, batch);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static void queue_free(cxm_resolve_queue *q)
{
    cxm_arena_dispose(&q->a);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    pthread_mutex_destroy(&q->own_lock);
    free(q);
}

int cxm_resolve_queue_start(cxm_resolver *r, pthread_mutex_t *lock, cxm_resolve_queue **out)
{
    if (!r || !out)
        return CXM_EINVAL;
    cxm_resolve_queue *q = calloc(1, sizeof *q);
    if (!q)
        return CXM_ENOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    pthread_mutex_init(&q->own_lock, NULL);
    cxm_arena_init(&q->a, NULL, 0, 0);
    q->resolver = r;
    q->lock = lock ? lock : &q->own_lock;
    if (pthread_create(&q->thread, NULL, queue_main, q) != 0) {
        queue_free(q);
        return CXM_ENOMEM;
    }
    q->started = true;
    *out = q;
    return 0;
}

static rq_wait *wait_new(cxm_call *call, void *in, void *user)
{
    rq_wait *w = cxm_arena_calloc(cxm_call_arena(call), 1, sizeof *w);
    if (w)
        *w = (rq_wait){.call = call, .in = in, .user = user};
    return w;
}

int cxm_resolve_queue_push(cxm_resolve_queue *q, cxm_call *call, const Cxm__V1__CustomerRef *ref,
                           bool no_create, void *in, cxm_resolve_done_fn done, void *user)
{
    if (!q || !call || !ref || !done)
        return CXM_EINVAL;
    rq_wait *w = wait_new(call, in, user);
    if (!w)
        return CXM_ENOMEM;
    w->done = done;
    w->one = (cxm_resolve_item){.customer = ref, .no_create = no_create};
    w->items = &w->one;
    w->n = 1;
    return wait_push(q, w);
}

int cxm_resolve_queue_push_many(cxm_resolve_queue *q, cxm_call *call, cxm_resolve_item *items,
                                size_t n, void *in, cxm_resolve_many_fn done, void *user)
{
    if (!q || !call || (n && !items) || !done)
        return CXM_EINVAL;
    rq_wait *w = wait_new(call, in, user);
    if (!w)
        return CXM_ENOMEM;
    w->done_many = done;
    w->items = items;
    w->n = n;
    return wait_push(q, w);
}

void cxm_resolve_queue_stop(cxm_resolve_queue *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (q->started)
        pthread_join(q->thread, NULL);
    queue_free(q);
}
