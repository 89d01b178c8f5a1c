/*
 * fuzz_model.c - the packed-model view (reco_model_view), which serving
 * puts over a blob read from the store without copying it. Its check is
 * O(1) by design (header and sizes: a blob is the output of
 * reco_model_pack), so what must hold for any bytes is that view does not
 * read outside the blob, and that every array of a view it accepts lies
 * inside the blob, which the header's sizes must guarantee.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "personalisation/reco/reco.h"
#include "personalisation/reco/reco_impl.h"

/* Does the array of n elements of size bytes at p lie inside [b, b + len)? */
static bool inside(const void *p, uint64_t n, size_t size, const char *b, size_t len)
{
    const char *c = p;
    if (!p)
        return n == 0;
    if (c < b || c > b + len)
        return false;
    return n <= (len - (size_t)(c - b)) / size;
}

static void check_view(const reco_model *m, const char *b, size_t len)
{
    uint64_t nnz = m->nrow ? m->nrow[m->nitems] : 0;
    bool ok = inside(m->popular, m->nitems, sizeof *m->popular, b, len) &&
              inside(m->pop_score, m->nitems, sizeof *m->pop_score, b, len) &&
              (!m->nrow || (inside(m->nrow, (uint64_t)m->nitems + 1, sizeof *m->nrow, b, len) &&
                            inside(m->nb, nnz, sizeof *m->nb, b, len))) &&
              (!m->cnb || (inside(m->cnb, nnz, sizeof *m->cnb, b, len) &&
                           inside(m->cscale, m->nitems, sizeof *m->cscale, b, len))) &&
              (!m->item_factors ||
               (inside(m->item_factors, (uint64_t)m->nitems * m->factors, sizeof(float), b, len) &&
                inside(m->gram, (uint64_t)m->factors * m->factors, sizeof(float), b, len)));
    if (!ok) {
        fprintf(stderr,
                "fuzz_model: an accepted view reaches outside its %zu-byte blob "
                "(nitems %u, nnz %llu, factors %u)\n",
                len, m->nitems, (unsigned long long)nnz, m->factors);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* malloc's alignment is the view's 8, so it reads this buffer in place
     * and the bounds above are the blob's. */
    char *blob = malloc(size ? size : 1);
    if (!blob)
        return 0;
    memcpy(blob, data, size);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, FUZZ_ARENA_LIMIT);
    const reco_model *m;
    char err[256];
    if (reco_model_view(blob, size, &a, &m, err, sizeof err) == 0)
        check_view(m, blob, size);
    cxm_arena_dispose(&a);
    free(blob);
    return 0;
}
