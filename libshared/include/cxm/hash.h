/*
 * hash.h - FNV-1a, 64-bit: the one fast non-cryptographic hash of cxm, for
 * in-memory hash tables, the item keys recodb stores, and the filter digests
 * page tokens carry; and splitmix64, its one seeded pseudo-random sequence,
 * for what must repeat from a seed (evaluation splits, validation draws,
 * starting values).
 *
 * Stable by contract: hash values are stored on disk and handed to clients,
 * and a seed must give the same split in every release, so neither function
 * ever changes. Thread-safe, allocates nothing.
 */
#ifndef CXM_HASH_H
#define CXM_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a's offset basis: the h to start from. */
#define CXM_HASH_INIT 14695981039346656037ull

/* FNV-1a over n bytes of p, continuing from h (CXM_HASH_INIT to start). */
uint64_t cxm_hash(uint64_t h, const void *p, size_t n);

/* The next value of the splitmix64 sequence whose state is *state (any
 * seed is a valid first state). Not for secrets: it is predictable. */
uint64_t cxm_splitmix64(uint64_t *state);

#endif
