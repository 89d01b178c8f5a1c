/*
 * personalisation.c - the personalisation service module.
 *
 * It takes part in the erasure cascade (svc.h): it stores no customer data yet, so an erasure
 * erases nothing and is confirmed at once.
 */
#include "personalisation.h"

#include <stdlib.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/svc.h"
#include "cxm/v1/personalisation.pb-c.h"

/* What open allocates: the service's membership of the erasure cascade. */
typedef struct pers_state {
    cxm_svc_erasure erasure;
} pers_state;

static void pers_close(cxm_service *svc)
{
    free(svc->ctx);
    svc->ctx = NULL;
}

/* Erasure: the service stores no customer data yet, so
 * cxm_svc_erase_nothing confirms at once. When it gets its tables
 * (interactions the recommender learns from, served recommendations), its own erase function
 * deletes the rows of customer_id and of every merged id and counts them. */
static int pers_open(cxm_store *store, cxm_service *svc)
{
    pers_state *st = calloc(1, sizeof *st);
    if (!st)
        return CXM_ENOMEM;
    *svc = (cxm_service){.name = cxm__v1__personalisation_service__descriptor.name,
                         .contract = &cxm__v1__personalisation_service__descriptor,
                         .ctx = st};
    int rc = cxm_svc_erasure_subscribe(cxm_bus_of(store), "personalisation", cxm_svc_erase_nothing,
                                       st, &st->erasure);
    if (rc != 0)
        pers_close(svc);
    return rc;
}

const cxm_module pers_module = {"personalisation", pers_open, pers_close};
