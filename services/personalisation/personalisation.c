/*
 * personalisation.c - the personalisation service module.
 */
#include "personalisation.h"

#include "cxm/v1/personalisation.pb-c.h"

static int pers_open(cxm_store *store, cxm_service *svc)
{
    *svc = (cxm_service){.name = cxm__v1__personalisation_service__descriptor.name,
                         .contract = &cxm__v1__personalisation_service__descriptor};
    return 0;
}

const cxm_module pers_module = {"personalisation", pers_open, NULL};
