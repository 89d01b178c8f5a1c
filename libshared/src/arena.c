/*
 * arena.c - the bump allocator described in cxm/arena.h.
 */
#include "cxm/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN alignof(max_align_t)
#define FIRST_CHUNK 4096

struct cxm_arena_chunk {
    cxm_arena_chunk *next;
    size_t size; /* usable bytes after the header */
    alignas(max_align_t) char data[];
};

static void *pb_alloc(void *a, size_t size)
{
    return cxm_arena_alloc(a, size);
}

static void pb_free(void *a, void *p)
{
    /* Everything goes when the arena is reset. */
}

static void use_block(cxm_arena *a, char *start, size_t size)
{
    a->cur = start;
    a->end = start + size;
}

void cxm_arena_init(cxm_arena *a, void *initial, size_t initial_size, size_t limit)
{
    memset(a, 0, sizeof *a);
    a->initial = initial;
    a->initial_size = initial ? initial_size : 0;
    a->limit = limit;
    a->pb = (ProtobufCAllocator){pb_alloc, pb_free, a};
    use_block(a, a->initial, a->initial_size);
}

void cxm_arena_dispose(cxm_arena *a)
{
    for (cxm_arena_chunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->chunks = NULL;
    a->heap_bytes = 0;
    use_block(a, a->initial, a->initial_size);
}

void cxm_arena_reset(cxm_arena *a)
{
    cxm_arena_chunk *largest = NULL;
    for (cxm_arena_chunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        if (!largest || c->size > largest->size) {
            if (largest)
                free(largest);
            largest = c;
        } else {
            free(c);
        }
    }
    a->chunks = largest;
    a->heap_bytes = 0;
    if (largest) {
        largest->next = NULL;
        a->heap_bytes = largest->size;
        /* The kept chunk serves first: it is the larger block. */
        use_block(a, largest->data, largest->size);
    } else {
        use_block(a, a->initial, a->initial_size);
    }
}

/* A new chunk of at least need bytes, twice the previous one, within limit. */
static int grow(cxm_arena *a, size_t need)
{
    size_t size = a->chunks ? a->chunks->size * 2 : FIRST_CHUNK;
    if (size < need)
        size = need;
    if (a->limit && (size > a->limit || a->heap_bytes > a->limit - size)) {
        if (need > a->limit || a->heap_bytes > a->limit - need)
            return -1;
        size = need; /* the doubling would pass the limit; the request fits */
    }
    if (size > SIZE_MAX - sizeof(cxm_arena_chunk))
        return -1;
    cxm_arena_chunk *c = malloc(sizeof *c + size);
    if (!c)
        return -1;
    c->size = size;
    c->next = a->chunks;
    a->chunks = c;
    a->heap_bytes += size;
    use_block(a, c->data, size);
    return 0;
}

void *cxm_arena_alloc(cxm_arena *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (size > SIZE_MAX - ALIGN)
        return NULL;
    size_t rounded = (size + ALIGN - 1) & ~(ALIGN - 1);
    uintptr_t cur = ((uintptr_t)a->cur + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
    if (!a->cur || cur > (uintptr_t)a->end || (uintptr_t)a->end - cur < rounded) {
        if (grow(a, rounded) != 0)
            return NULL;
        cur = (uintptr_t)a->cur; /* chunk data is max-aligned */
    }
    a->cur = (char *)(cur + rounded);
    return (void *)cur;
}

void *cxm_arena_calloc(cxm_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = cxm_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *cxm_arena_strndup(cxm_arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = cxm_arena_alloc(a, len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

ProtobufCAllocator *cxm_arena_protobuf(cxm_arena *a)
{
    return &a->pb;
}
