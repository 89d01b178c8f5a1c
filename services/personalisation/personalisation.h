/*
 * personalisation.h - the personalisation service: next-best-experience
 * recommendations and the experience catalogue (cxm.v1.PersonalisationService).
 *
 * pers_module plugs the service into a host (cxm-personalisation alone, or
 * cxmd with the others). Its flags: --reco-max-history,
 * --reco-recovery-days, --reco-hold-offers, --reco-retrain-interactions,
 * --reco-retrain-minutes, --profile-addr (personalisation.c says what each
 * does). It follows profile (segments, consents, merges, erasures), journey
 * (stages, touchpoints about items) and feedback (detractors, negative
 * comments, follow-ups) on the event bus, so no request waits for another
 * service except to resolve an identity.
 */
#ifndef CXM_PERSONALISATION_H
#define CXM_PERSONALISATION_H

#include "cxm/host.h"

extern const cxm_module pers_module;

#endif
