/*
 * hash.c - FNV-1a, 64-bit (see hash.h).
 */
#include "cxm/hash.h"

uint64_t cxm_hash(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n--)
        h = (h ^ *b++) * 1099511628211ull;
    return h;
}
