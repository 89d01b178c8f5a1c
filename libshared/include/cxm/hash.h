/*
 * hash.h - FNV-1a, 64-bit: the one fast non-cryptographic hash of cxm, for
 * in-memory hash tables, the item keys recodb stores, and the filter digests
 * page tokens carry.
 *
 * Stable by contract: its values are stored on disk and handed to clients,
 * so the function never changes. Thread-safe, allocates nothing.
 */
#ifndef CXM_HASH_H
#define CXM_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a's offset basis: the h to start from. */
#define CXM_HASH_INIT 14695981039346656037ull

/* FNV-1a over n bytes of p, continuing from h (CXM_HASH_INIT to start). */
uint64_t cxm_hash(uint64_t h, const void *p, size_t n);

#endif
