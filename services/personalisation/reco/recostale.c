/*
 * recostale.c - the customers whose cached candidates must be recomputed
 * (recodb_stale): a stack of ids, each listed once however often its
 * history changes or it is scored before a refresh, and after a model
 * switch a walk over reco.stamps, which lists every customer with history.
 *
 * Each listed id's hash is kept in an open-addressing set so that a push
 * of a listed customer costs one probe; two ids of one hash (1 in 2^64)
 * would list only the first until it is taken. Out of memory, a push
 * starts the walk instead: everyone is looked at, nobody is lost.
 */
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "personalisation/reco/recodb_impl.h"

static uint64_t id_hash(const char *id, size_t len)
{
    uint64_t h = cxm_hash(CXM_HASH_INIT, id, len);
    return h ? h : 1; /* 0 marks an empty slot */
}

void recodb__stale_init(recodb_stalelist *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
}

static void clear_list(recodb_stalelist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    l->n = 0;
    if (l->set)
        memset(l->set, 0, l->nset * sizeof *l->set);
}

void recodb__stale_dispose(recodb_stalelist *l)
{
    clear_list(l);
    free(l->ids);
    free(l->set);
    free(l->sweep_after);
    pthread_mutex_destroy(&l->mu);
}

/* Linear probing: the slot of h, or the empty one where it would go. */
static size_t set_slot(const recodb_stalelist *l, uint64_t h)
{
    size_t s = (size_t)h & (l->nset - 1);
    while (l->set[s] != 0 && l->set[s] != h)
        s = (s + 1) & (l->nset - 1);
    return s;
}

/* Delete h, shifting back the entries that probed past its slot. */
static void set_remove(recodb_stalelist *l, uint64_t h)
{
    size_t hole = set_slot(l, h), s = hole;
    if (l->set[hole] != h)
        return;
    l->set[hole] = 0;
    for (;;) {
        s = (s + 1) & (l->nset - 1);
        if (l->set[s] == 0)
            return;
        size_t home = (size_t)l->set[s] & (l->nset - 1);
        /* Movable when home is not cyclically in (hole, s]. */
        if ((s > hole && (home <= hole || home > s)) || (s < hole && home <= hole && home > s)) {
            l->set[hole] = l->set[s];
            l->set[s] = 0;
            hole = s;
        }
    }
}

/* Room for one more id in the stack and the set (kept at most half full). */
static int make_room(recodb_stalelist *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **g = realloc(l->ids, cap * sizeof *g);
        if (!g)
            return CXM_ENOMEM;
        l->ids = g;
        l->cap = cap;
    }
    if (2 * (l->n + 1) <= l->nset)
        return 0;
    size_t nset = l->nset ? 2 * l->nset : 128;
    uint64_t *set = calloc(nset, sizeof *set), *old = l->set;
    if (!set)
        return CXM_ENOMEM;
    size_t nold = l->nset;
    l->set = set;
    l->nset = nset;
    for (size_t i = 0; i < nold; i++)
        if (old[i])
            l->set[set_slot(l, old[i])] = old[i];
    free(old);
    return 0;
}

void recodb__stale_push(recodb *db, const char *customer, size_t len)
{
    recodb_stalelist *l = &db->stale;
    uint64_t h = id_hash(customer, len);
    pthread_mutex_lock(&l->mu);
    if (l->nset == 0 || l->set[set_slot(l, h)] != h) {
        char *id = make_room(l) == 0 ? strndup(customer, len) : NULL;
        if (id) {
            l->ids[l->n++] = id;
            l->set[set_slot(l, h)] = h;
        } else {
            l->sweep = true;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

void recodb__stale_sweep(recodb *db)
{
    recodb_stalelist *l = &db->stale;
    pthread_mutex_lock(&l->mu);
    clear_list(l); /* the walk lists them all anyway */
    l->sweep = true;
    free(l->sweep_after);
    l->sweep_after = NULL;
    l->sweep_len = 0;
    pthread_mutex_unlock(&l->mu);
}

/* The next customers of reco.stamps after the walk's position. */
static size_t sweep_some(recodb *db, recodb_stalelist *l, char **out, size_t max)
{
    cxm_txn *t;
    size_t n = 0;
    if (cxm_store_read_begin(db->store, &t) != 0)
        return 0;
    uint8_t from[RECODB_ID_MAX + 1];
    size_t flen = 0;
    if (l->sweep_after) { /* strictly after: the id with a NUL appended */
        memcpy(from, l->sweep_after, l->sweep_len);
        from[l->sweep_len] = 0;
        flen = l->sweep_len + 1;
    }
    cxm_iter it;
    int rc = cxm_iter_range(t, db->stamps, flen ? from : NULL, flen, NULL, 0, false, &it);
    while (rc == 0 && n < max && (rc = cxm_iter_next(&it)) == 0)
        if (it.klen > RECODB_ID_MAX || !(out[n] = strndup(it.key, it.klen)))
            break;
        else
            n++;
    cxm_iter_close(&it);
    cxm_store_read_end(t);
    if (rc == CXM_ENOTFOUND || n == 0)
        l->sweep = false;
    if (n > 0) {
        free(l->sweep_after);
        l->sweep_after = strdup(out[n - 1]);
        l->sweep_len = l->sweep_after ? strlen(out[n - 1]) : 0;
    }
    return n;
}

size_t recodb_stale(recodb *db, char **out, size_t max)
{
    recodb_stalelist *l = &db->stale;
    pthread_mutex_lock(&l->mu);
    size_t n = 0;
    while (n < max && l->n > 0) {
        out[n] = l->ids[--l->n];
        set_remove(l, id_hash(out[n], strlen(out[n])));
        n++;
    }
    if (n < max && l->sweep)
        n += sweep_some(db, l, out + n, max - n);
    pthread_mutex_unlock(&l->mu);
    return n;
}
