/*
 * recoals.c - implicit ALS for the recommendation core (see reco_impl.h).
 */
#include <stdio.h>

#include "cxm/err.h"
#include "personalisation/reco_impl.h"

int reco_als_train(reco_model *m, const reco_matrix *x, const reco_params *p, char *err,
                   size_t errlen)
{
    (void)m, (void)x, (void)p;
    snprintf(err, errlen, "ALS is not built yet; use ease, itemknn or pop");
    return CXM_EUNIMPL;
}

size_t reco_als_score(const reco_model *m, reco_scratch *s, const uint32_t *hist, const float *w,
                      size_t n)
{
    (void)m, (void)s, (void)hist, (void)w, (void)n;
    return 0;
}
