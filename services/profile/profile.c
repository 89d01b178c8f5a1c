/*
 * profile.c - the profile service module.
 */
#include "profile.h"

#include "cxm/v1/profile.pb-c.h"

static int prof_open(cxm_store *store, cxm_service *svc)
{
    *svc = (cxm_service){.name = cxm__v1__profile_service__descriptor.name,
                         .contract = &cxm__v1__profile_service__descriptor};
    return 0;
}

const cxm_module prof_module = {"profile", prof_open, NULL};
