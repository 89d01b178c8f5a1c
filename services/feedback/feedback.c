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

/* Erase a customer's feedback records: none are stored yet. When the service
 * gets its tables (survey responses, follow-ups), delete the rows of
 * customer_id and of every merged id here and count them in *records. */
static int fb_erase(cxm_txn *txn, const char *customer_id, char *const *merged, size_t nmerged,
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

static void fb_close(cxm_service *svc)
{
    free(svc->ctx);
    svc->ctx = NULL;
}

static int fb_open(cxm_store *store, cxm_service *svc)
{
    fb_state *st = calloc(1, sizeof *st);
    if (!st)
        return CXM_ENOMEM;
    *svc = (cxm_service){.name = cxm__v1__feedback_service__descriptor.name,
                         .contract = &cxm__v1__feedback_service__descriptor,
                         .ctx = st};
    int rc = cxm_svc_erasure_subscribe(cxm_bus_of(store), "feedback", fb_erase, st, &st->erasure);
    if (rc != 0)
        fb_close(svc);
    return rc;
}

const cxm_module fb_module = {"feedback", fb_open, fb_close};
