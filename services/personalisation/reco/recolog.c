/*
 * recolog.c - interaction lists (see recolog.h).
 */
#include "personalisation/reco/recolog.h"

#include <stdlib.h>

#include "cxm/err.h"

int recolog_push(recolog *log, const recolog_event *e)
{
    if (log->n == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 1024;
        recolog_event *ev = realloc(log->ev, cap * sizeof *ev);
        if (!ev)
            return CXM_ENOMEM;
        log->ev = ev;
        log->cap = cap;
    }
    log->ev[log->n++] = *e;
    return 0;
}

void recolog_free(recolog *log)
{
    free(log->ev);
    *log = (recolog){0};
}

static int cmp_user_item(const void *a, const void *b)
{
    const recolog_event *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

void recolog_dedupe(recolog *log)
{
    if (log->n == 0)
        return;
    qsort(log->ev, log->n, sizeof *log->ev, cmp_user_item);
    size_t w = 0;
    for (size_t r = 1; r < log->n; r++) {
        recolog_event *keep = &log->ev[w], *e = &log->ev[r];
        if (e->user == keep->user && e->item == keep->item) {
            keep->rating = e->rating > keep->rating ? e->rating : keep->rating;
            keep->ts = e->ts > keep->ts ? e->ts : keep->ts;
        } else {
            log->ev[++w] = *e;
        }
    }
    log->n = w + 1;
}
