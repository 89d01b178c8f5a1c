/*
 * feedback.h - the feedback service: NPS/CSAT/CES surveys, sentiment, expectation gaps and
 * follow-ups.
 *
 * fb_module plugs the service into a host (cxm-feedback alone, or cxmd
 * with the others). Methods of cxm.v1.FeedbackService that are not in the method table
 * yet are answered UNIMPLEMENTED by the runtime, naming the method.
 */
#ifndef CXM_FEEDBACK_H
#define CXM_FEEDBACK_H

#include "cxm/host.h"

extern const cxm_module fb_module;

#endif
