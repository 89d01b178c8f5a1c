/*
 * personalisation.h - the personalisation service: next-best-experience recommendations and the
 * experience catalogue.
 *
 * pers_module plugs the service into a host (cxm-personalisation alone, or cxmd
 * with the others). Methods of cxm.v1.PersonalisationService that are not in the method table
 * yet are answered UNIMPLEMENTED by the runtime, naming the method.
 */
#ifndef CXM_PERSONALISATION_H
#define CXM_PERSONALISATION_H

#include "cxm/host.h"

extern const cxm_module pers_module;

#endif
