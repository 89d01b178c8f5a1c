/*
 * arena.h - a bump allocator whose memory is released all at once.
 *
 * Every RPC gets one arena: the decoded request, scratch buffers and the
 * response live in it, and the runtime resets it when the call completes, so
 * handlers never free anything. An arena is not thread-safe; it belongs to one
 * call (or one thread) at a time.
 *
 * Memory comes first from an optional caller-supplied initial block (so a
 * small call needs no malloc at all), then from heap chunks that grow
 * geometrically. cxm_arena_reset() keeps the largest chunk for reuse, so a
 * recycled arena quickly stops touching malloc.
 */
#ifndef CXM_ARENA_H
#define CXM_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

typedef struct cxm_arena_chunk cxm_arena_chunk;

/* Embeddable so that a call context can carry its arena inline; treat the
 * fields as private. */
typedef struct cxm_arena {
    char *cur;     /* next free byte in the current block */
    char *end;     /* one past the current block */
    char *initial; /* caller-supplied first block, or NULL */
    size_t initial_size;
    cxm_arena_chunk *chunks; /* heap chunks, newest first */
    size_t limit;            /* total heap bytes allowed, 0 = unlimited */
    size_t heap_bytes;       /* heap bytes held now */
    ProtobufCAllocator pb;   /* adapter returned by cxm_arena_protobuf() */
} cxm_arena;

/* Prepare an arena over caller storage. initial/initial_size may be NULL/0.
 * limit caps the heap bytes the arena may hold (0 = no cap); an allocation
 * past it returns NULL, which bounds what one hostile request can cost. */
void cxm_arena_init(cxm_arena *a, void *initial, size_t initial_size, size_t limit);

/* Release every heap chunk. The arena may be init'ed again afterwards. */
void cxm_arena_dispose(cxm_arena *a);

/* Forget every allocation but keep the largest heap chunk for reuse. */
void cxm_arena_reset(cxm_arena *a);

/* size bytes aligned to max_align_t, or NULL when out of memory or over the
 * limit. The memory is valid until the next reset or dispose. */
void *cxm_arena_alloc(cxm_arena *a, size_t size);

/* Like cxm_arena_alloc, zero-filled. */
void *cxm_arena_calloc(cxm_arena *a, size_t n, size_t size);

/* A NUL-terminated copy of len bytes of s (s need not be terminated). */
char *cxm_arena_strndup(cxm_arena *a, const char *s, size_t len);

/* p itself when it is aligned to align (a power of two, at most
 * alignof(max_align_t)), else a copy of its len bytes in the arena (NULL
 * when out of memory): for reading structures in place from LMDB values,
 * which are only 2-byte aligned. */
const void *cxm_arena_aligned(cxm_arena *a, const void *p, size_t len, size_t align);

/* A ProtobufCAllocator that allocates from this arena and whose free does
 * nothing: messages unpacked with it need no protobuf_c_message_free_unpacked.
 * The pointer stays valid as long as the arena. */
ProtobufCAllocator *cxm_arena_protobuf(cxm_arena *a);

#endif
