/*
 * recoids.h - string ids interned as dense indices 0..n-1, the numbering the
 * recommendation core (reco.h) works in.
 *
 * Indices are given in order of first appearance, so the same ids in the same
 * order give the same numbering. The strings are kept for output. Not
 * thread-safe; one table per thread.
 */
#ifndef CXM_RECOIDS_H
#define CXM_RECOIDS_H

#include <stddef.h>
#include <stdint.h>

/* Zero-initialise before use. */
typedef struct recoids {
    char **names;    /* n NUL-terminated strings, index -> id */
    uint32_t n, cap; /* names used / allocated */
    uint32_t *slots; /* hash table of index + 1 (0 = empty), nslots a power of two */
    uint32_t nslots;
} recoids;

/* The index of id (len bytes, need not be NUL-terminated, should hold no NUL),
 * adding it if new. Returns 0 or CXM_ENOMEM / CXM_ETOOBIG (more than
 * UINT32_MAX / 4 ids). */
int recoids_intern(recoids *ids, const char *id, size_t len, uint32_t *out);
/* The index of id, or UINT32_MAX when unknown. */
uint32_t recoids_find(const recoids *ids, const char *id);
/* The renumbering (for recoids_permute) that orders ids by group[k]
 * (NULL = one group), then by the bytes of their names: a numbering that
 * does not depend on the order ids were first seen, so two programs that
 * intern the same ids in different orders train identical models. Returns
 * 0 or CXM_ENOMEM. */
int recoids_sorted_map(const recoids *ids, const uint8_t *group, uint32_t *map);
/* Renumber: id k becomes map[k]; map must be a permutation of 0..n-1.
 * Returns 0 or CXM_ENOMEM (the table is then unchanged). */
int recoids_permute(recoids *ids, const uint32_t *map);
void recoids_free(recoids *ids);

#endif
