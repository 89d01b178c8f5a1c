/*
 * recoids.c - string ids as dense indices (see recoids.h).
 */
#include "personalisation/reco/recoids.h"

#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/hash.h"

/* The slot holding id, or the empty slot where it would go. */
static uint32_t slot_of(const recoids *ids, const char *id, size_t len)
{
    uint32_t mask = ids->nslots - 1;
    uint32_t i = (uint32_t)cxm_hash(CXM_HASH_INIT, id, len) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t v = ids->slots[i];
        if (v == 0)
            return i;
        const char *name = ids->names[v - 1];
        if (strncmp(name, id, len) == 0 && name[len] == '\0')
            return i;
    }
}

/* Double the table, keeping the load factor under one half so that probe
 * sequences stay short. */
static int grow(recoids *ids)
{
    uint32_t nslots = ids->nslots ? ids->nslots * 2 : 64;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    char **names = realloc(ids->names, (size_t)nslots / 2 * sizeof *names);
    if (!slots || !names) {
        free(slots);
        if (names)
            ids->names = names;
        return CXM_ENOMEM;
    }
    free(ids->slots);
    ids->names = names;
    ids->cap = nslots / 2;
    ids->slots = slots;
    ids->nslots = nslots;
    for (uint32_t k = 0; k < ids->n; k++)
        slots[slot_of(ids, ids->names[k], strlen(ids->names[k]))] = k + 1;
    return 0;
}

int recoids_intern(recoids *ids, const char *id, size_t len, uint32_t *out)
{
    if (ids->nslots) {
        uint32_t i = slot_of(ids, id, len);
        if (ids->slots[i]) {
            *out = ids->slots[i] - 1;
            return 0;
        }
    }
    if (ids->n >= UINT32_MAX / 4)
        return CXM_ETOOBIG;
    if (ids->n + 1 > ids->cap) {
        int rc = grow(ids);
        if (rc)
            return rc;
    }
    char *copy = strndup(id, len);
    if (!copy)
        return CXM_ENOMEM;
    ids->names[ids->n] = copy;
    ids->slots[slot_of(ids, id, len)] = ids->n + 1;
    *out = ids->n++;
    return 0;
}

uint32_t recoids_find(const recoids *ids, const char *id)
{
    if (!ids->nslots)
        return UINT32_MAX;
    uint32_t v = ids->slots[slot_of(ids, id, strlen(id))];
    return v ? v - 1 : UINT32_MAX;
}

typedef struct sort_ctx {
    const recoids *ids;
    const uint8_t *group;
} sort_ctx;

static int by_group_name(const void *a, const void *b, void *ctx)
{
    const sort_ctx *c = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (c->group && c->group[x] != c->group[y])
        return c->group[x] < c->group[y] ? -1 : 1;
    return strcmp(c->ids->names[x], c->ids->names[y]);
}

int recoids_sorted_map(const recoids *ids, const uint8_t *group, uint32_t *map)
{
    uint32_t *order = malloc(((size_t)ids->n + 1) * sizeof *order);
    if (!order)
        return CXM_ENOMEM;
    for (uint32_t k = 0; k < ids->n; k++)
        order[k] = k;
    sort_ctx c = {ids, group};
    qsort_r(order, ids->n, sizeof *order, by_group_name, &c);
    for (uint32_t r = 0; r < ids->n; r++)
        map[order[r]] = r;
    free(order);
    return 0;
}

int recoids_permute(recoids *ids, const uint32_t *map)
{
    char **names = malloc((ids->cap ? ids->cap : 1) * sizeof *names);
    if (!names)
        return CXM_ENOMEM;
    for (uint32_t k = 0; k < ids->n; k++)
        names[map[k]] = ids->names[k];
    free(ids->names);
    ids->names = names;
    for (uint32_t s = 0; s < ids->nslots; s++)
        if (ids->slots[s])
            ids->slots[s] = map[ids->slots[s] - 1] + 1;
    return 0;
}

void recoids_free(recoids *ids)
{
    for (uint32_t k = 0; k < ids->n; k++)
        free(ids->names[k]);
    free(ids->names);
    free(ids->slots);
    *ids = (recoids){0};
}
