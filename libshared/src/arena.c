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
/* Doubling stops here: past it a chunk is mostly wasted tail for a typical
 * call, and one oversized request must not make every later chunk huge. */
#define MAX_CHUNK (1024 * 1024)

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
    /* Everything goes at reset or dispose; freeing one message is a no-op. */
}

static void use_block(cxm_arena *a, char *start, size_t size)
{
    a->cur = start;
    a->end = start ? start + size : NULL;
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
        /* The kept chunk serves first: it is at least as large as the initial
         * block would be useful for, and it is already paid for. */
        use_block(a, largest->data, largest->size);
    } else {
        use_block(a, a->initial, a->initial_size);
    }
}

/* Would holding size more heap bytes stay within the limit? */
static int within_limit(const cxm_arena *a, size_t size)
{
    return !a->limit || (size <= a->limit && a->heap_bytes <= a->limit - size);
}

/* The size the next regular chunk should have: double the newest one. */
static size_t next_chunk_size(const cxm_arena *a)
{
    if (!a->chunks)
        return FIRST_CHUNK;
    size_t size = a->chunks->size;
    return size >= MAX_CHUNK / 2 ? MAX_CHUNK : size * 2;
}

static cxm_arena_chunk *new_chunk(cxm_arena *a, size_t size)
{
    if (size > SIZE_MAX - sizeof(cxm_arena_chunk))
        return NULL;
    cxm_arena_chunk *c = malloc(sizeof *c + size);
    if (!c)
        return NULL;
    c->size = size;
    a->heap_bytes += size;
    return c;
}

/* Is the block being bumped the newest chunk (rather than the initial block)?
 * Compared as integers: the pointers may belong to unrelated objects. */
static int current_is_head(const cxm_arena *a)
{
    if (!a->chunks || !a->cur)
        return 0;
    uintptr_t cur = (uintptr_t)a->cur, start = (uintptr_t)a->chunks->data;
    return cur >= start && cur - start <= a->chunks->size;
}

/* need bytes (a multiple of ALIGN) that do not fit the current block. */
static void *alloc_slow(cxm_arena *a, size_t need)
{
    size_t size = next_chunk_size(a);
    if (need > size) {
        /* An oversized allocation gets a chunk of its own, linked behind the
         * current one, so the free tail of the current block stays usable. */
        if (!within_limit(a, need))
            return NULL;
        cxm_arena_chunk *c = new_chunk(a, need);
        if (!c)
            return NULL;
        cxm_arena_chunk **link = current_is_head(a) ? &a->chunks->next : &a->chunks;
        c->next = *link;
        *link = c;
        return c->data;
    }
    if (!within_limit(a, size))
        size = need; /* the doubling would pass the limit; maybe the request fits */
    if (!within_limit(a, size))
        return NULL;
    cxm_arena_chunk *c = new_chunk(a, size);
    if (!c)
        return NULL;
    c->next = a->chunks;
    a->chunks = c;
    use_block(a, c->data + need, size - need);
    return c->data;
}

void *cxm_arena_alloc(cxm_arena *a, size_t size)
{
    /* Zero-byte requests still get a distinct pointer, as malloc(0) may. */
    if (size == 0)
        size = 1;
    if (size > SIZE_MAX - (ALIGN - 1))
        return NULL;
    size_t need = (size + ALIGN - 1) & ~(ALIGN - 1);
    if (a->cur) {
        /* The initial block need not be aligned; chunks always are. */
        uintptr_t cur = ((uintptr_t)a->cur + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
        uintptr_t end = (uintptr_t)a->end;
        if (cur <= end && end - cur >= need) {
            a->cur = (char *)(cur + need);
            return (void *)cur;
        }
    }
    return alloc_slow(a, need);
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

const void *cxm_arena_aligned(cxm_arena *a, const void *p, size_t len, size_t align)
{
    if (((uintptr_t)p & (align - 1)) == 0)
        return p;
    void *copy = cxm_arena_alloc(a, len);
    if (copy)
        memcpy(copy, p, len);
    return copy;
}

char *cxm_arena_strndup(cxm_arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = cxm_arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    if (len) /* s may be NULL when len is 0; memcpy(p, NULL, 0) is undefined */
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

ProtobufCAllocator *cxm_arena_protobuf(cxm_arena *a)
{
    /* The arena is embeddable, so it may have been copied since init: point
     * the adapter at where it lives now. */
    a->pb.allocator_data = a;
    return &a->pb;
}
