/*
 * feedback.c - the feedback service module.
 */
#include "feedback.h"

#include "cxm/v1/feedback.pb-c.h"

static int fb_open(cxm_store *store, cxm_service *svc)
{
    *svc = (cxm_service){.name = cxm__v1__feedback_service__descriptor.name,
                         .contract = &cxm__v1__feedback_service__descriptor};
    return 0;
}

const cxm_module fb_module = {"feedback", fb_open, NULL};
