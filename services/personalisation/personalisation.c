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

/* Erase a customer's personalisation records: none are stored yet. When the service
 * gets its tables (interactions the recommender learns from, served
 * recommendations), delete the rows of customer_id and of every merged id
 * here and count them in *records. */
static int pers_erase(cxm_txn *txn, const char *customer_id, char *const *merged, size_t nmerged,
                      uint64_t *records, void *user)
{
    (void)txn;
    (void)customer_id;
    (void)merged;
    (void)nmerged;
    (void)user;
    *records = 0;
    return 0;
}

static void pers_close(cxm_service *svc)
{
    free(svc->ctx);
    svc->ctx = NULL;
}

static int pers_open(cxm_store *store, cxm_service *svc)
{
    pers_state *st = calloc(1, sizeof *st);
    if (!st)
        return CXM_ENOMEM;
    *svc = (cxm_service){.name = cxm__v1__personalisation_service__descriptor.name,
                         .contract = &cxm__v1__personalisation_service__descriptor,
                         .ctx = st};
    int rc = cxm_svc_erasure_subscribe(cxm_bus_of(store), "personalisation", pers_erase, st,
                                       &st->erasure);
    if (rc != 0)
        pers_close(svc);
    return rc;
}

const cxm_module pers_module = {"personalisation", pers_open, pers_close};
