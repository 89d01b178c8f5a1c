/*
 * feedback.c - the feedback service module.
 *
 * It takes part in the erasure cascade (svc.h): it stores no customer data yet, so an erasure
 * erases nothing and is confirmed at once.
 */
#include "feedback.h"

#include <stdlib.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/svc.h"
#include "cxm/v1/feedback.pb-c.h"

/* What open allocates: the service's membership of the erasure cascade. */
typedef struct fb_state {
    cxm_svc_erasure erasure;
} fb_state;

static void fb_close(cxm_service *svc)
{
    free(svc->ctx);
    svc->ctx = NULL;
}

/* Erasure: the service stores no customer data yet, so
 * cxm_svc_erase_nothing confirms at once. When it gets its tables
 * (survey responses, follow-ups), its own erase function deletes the rows of
 * customer_id and of every merged id and counts them. */
static int fb_open(cxm_store *store, cxm_service *svc)
{
    fb_state *st = calloc(1, sizeof *st);
    if (!st)
        return CXM_ENOMEM;
    *svc = (cxm_service){.name = cxm__v1__feedback_service__descriptor.name,
                         .contract = &cxm__v1__feedback_service__descriptor,
                         .ctx = st};
    int rc = cxm_svc_erasure_subscribe(cxm_bus_of(store), "feedback", cxm_svc_erase_nothing, st,
                                       &st->erasure);
    if (rc != 0)
        fb_close(svc);
    return rc;
}

const cxm_module fb_module = {"feedback", fb_open, fb_close};
