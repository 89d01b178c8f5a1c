/*
 * journey.c - the journey service module.
 */
#include "journey.h"

#include "cxm/v1/journey.pb-c.h"

static int jrn_open(cxm_store *store, cxm_service *svc)
{
    *svc = (cxm_service){.name = cxm__v1__journey_service__descriptor.name,
                         .contract = &cxm__v1__journey_service__descriptor};
    return 0;
}

const cxm_module jrn_module = {"journey", jrn_open, NULL};
