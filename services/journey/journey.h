/*
 * journey.h - the journey service: touchpoint events, journey stages, funnels, paths and
 * per-touchpoint statistics.
 *
 * jrn_module plugs the service into a host (cxm-journey alone, or cxmd
 * with the others). Methods of cxm.v1.JourneyService that are not in the method table
 * yet are answered UNIMPLEMENTED by the runtime, naming the method.
 */
#ifndef CXM_JOURNEY_H
#define CXM_JOURNEY_H

#include "cxm/host.h"

extern const cxm_module jrn_module;

#endif
