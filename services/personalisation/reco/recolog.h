/*
 * recolog.h - a growable list of interactions (customer, item, weight, time)
 * by dense index, as read from a file or an LMDB log before training, and
 * its de-duplication.
 *
 * Indices are the caller's (usually two recoids tables). Not thread-safe.
 */
#ifndef CXM_RECOLOG_H
#define CXM_RECOLOG_H

#include <stddef.h>
#include <stdint.h>

/* One interaction. */
typedef struct recolog_event {
    uint32_t user, item;
    float rating; /* the interaction weight, > 0 */
    int64_t ts;   /* any unit, larger = later */
} recolog_event;

/* Zero-initialise before use. */
typedef struct recolog {
    recolog_event *ev;
    size_t n, cap;
} recolog;

/* Append a copy of e. Returns 0 or CXM_ENOMEM (the log is then unchanged). */
int recolog_push(recolog *log, const recolog_event *e);
void recolog_free(recolog *log);

/* Merge repeated (user, item) pairs, keeping the largest rating and the
 * latest ts; leaves the log sorted by (user, item), as recomatrix_build and
 * per-user splits want it. */
void recolog_dedupe(recolog *log);

#endif
