/*
 * recomatrix.h - the reco_matrix (reco.h) the recommendation core trains on,
 * built from an interaction log (recolog.h).
 */
#ifndef CXM_RECOMATRIX_H
#define CXM_RECOMATRIX_H

#include <stdint.h>

#include "personalisation/reco/reco.h"
#include "personalisation/reco/recolog.h"

/* Build a CSR matrix of nusers x nitems (rows sorted ascending and unique,
 * ts filled in) from a de-duplicated log (recolog_dedupe) whose indices are
 * all below those bounds. The matrix owns its arrays; free it with
 * recomatrix_free. Returns 0, CXM_EINVAL (an index out of bounds, or a
 * repeated (user, item) pair) or CXM_ENOMEM; *out is then all zero. */
int recomatrix_build(const recolog *log, uint32_t nusers, uint32_t nitems, reco_matrix *out);
/* Free a matrix from recomatrix_build (or an all-zero one). */
void recomatrix_free(reco_matrix *m);

#endif
