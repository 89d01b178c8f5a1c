/*
 * fuzz_delim.c - the length-delimited record files that `cxmctl journey
 * track --file` reads (cxm-gen writes them; benchmarks/gen/delim.c): the
 * bytes as a file, read record by record, each record decoded as the
 * TrackRequest it should be, as the server decodes what cxmctl sends on.
 * A damaged file must end with CXM_ECORRUPT, never crash the reader.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cxm/v1/journey.pb-c.h"
#include "delim.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = size ? fmemopen((void *)data, size, "rb") : NULL;
    if (!f)
        return 0;
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    while (cxm_delim_read(f, &buf, &cap, &len) == 1) {
        cxm_arena a;
        cxm_arena_init(&a, NULL, 0, FUZZ_ARENA_LIMIT);
        fuzz_unpack(&cxm__v1__track_request__descriptor, &a, buf, len);
        cxm_arena_dispose(&a);
    }
    free(buf);
    fclose(f);
    return 0;
}
