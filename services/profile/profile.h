/*
 * profile.h - the profile service: one profile per customer across identities, with consent, traits
 * and segments.
 *
 * prof_module plugs the service into a host (cxm-profile alone, or cxmd
 * with the others). Methods of cxm.v1.ProfileService that are not in the method table
 * yet are answered UNIMPLEMENTED by the runtime, naming the method.
 */
#ifndef CXM_PROFILE_H
#define CXM_PROFILE_H

#include "cxm/host.h"

extern const cxm_module prof_module;

#endif
