/*
 * test_arena.c - the per-call bump allocator.
 */
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "cxm/arena.h"
#include "google/protobuf/descriptor.pb-c.h"

static void test_alignment_and_initial_block(void)
{
    alignas(max_align_t) char initial[1024];
    cxm_arena a;
    cxm_arena_init(&a, initial, sizeof initial, 0);
    for (size_t n = 1; n < 40; n += 3) {
        char *p = cxm_arena_alloc(&a, n);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p % alignof(max_align_t)) == 0);
        memset(p, 0xab, n);
    }
    /* Small allocations came from the caller's block: no heap yet. */
    char *first = cxm_arena_alloc(&a, 1);
    CHECK(first >= initial && first < initial + sizeof initial);
    CHECK_EQ_INT(a.heap_bytes, 0);
    /* A large one goes to the heap. */
    char *big = cxm_arena_alloc(&a, 10000);
    CHECK(big != NULL && (big < initial || big >= initial + sizeof initial));
    CHECK(a.heap_bytes >= 10000);
    cxm_arena_dispose(&a);
    CHECK_EQ_INT(a.heap_bytes, 0);
}

/* An unaligned caller block still yields max_align_t-aligned pointers. */
static void test_unaligned_initial_block(void)
{
    alignas(max_align_t) char storage[512];
    cxm_arena a;
    cxm_arena_init(&a, storage + 1, sizeof storage - 1, 0);
    for (int i = 0; i < 8; i++) {
        char *p = cxm_arena_alloc(&a, 3);
        CHECK(p != NULL && (uintptr_t)p % alignof(max_align_t) == 0);
        CHECK(p > storage && p + 3 <= storage + sizeof storage);
    }
    CHECK_EQ_INT(a.heap_bytes, 0);
    cxm_arena_dispose(&a);
}

/* Each new regular chunk is twice the previous one. */
static void test_geometric_growth(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    size_t last_total = 0, last_chunk = 0;
    int chunks = 0, doubled = 0;
    for (int i = 0; i < 2000; i++) {
        char *p = cxm_arena_alloc(&a, 100);
        CHECK(p != NULL && (uintptr_t)p % alignof(max_align_t) == 0);
        memset(p, i, 100);
        if (a.heap_bytes != last_total) {
            size_t chunk = a.heap_bytes - last_total;
            chunks++;
            doubled += last_chunk && chunk == 2 * last_chunk;
            last_chunk = chunk;
            last_total = a.heap_bytes;
        }
    }
    /* 2000 * 112 bytes need 4K + 8K + ... + 128K: six chunks, five doublings;
     * a fixed chunk size would need 55 chunks. */
    CHECK_EQ_INT(chunks, 6);
    CHECK_EQ_INT(doubled, chunks - 1);
    cxm_arena_dispose(&a);
}

/* A request larger than the next chunk gets its own chunk and does not
 * abandon the free tail of the block being bumped. */
static void test_oversized_allocation(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char *small = cxm_arena_alloc(&a, 16);
    char *big = cxm_arena_alloc(&a, 100000);
    CHECK(big != NULL);
    memset(big, 1, 100000);
    char *next = cxm_arena_alloc(&a, 16);
    CHECK_EQ_INT(next - small, 16); /* still bumping in the first chunk */
    CHECK(a.heap_bytes >= 4096 + 100000 && a.heap_bytes < 4096 + 100000 + 64);
    cxm_arena_dispose(&a);
}

static void test_limit(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 64 * 1024);
    size_t got = 0;
    /* Bounded, so that a broken limit fails the check instead of hanging. */
    for (int i = 0; i < 1000 && cxm_arena_alloc(&a, 1000); i++)
        got += 1000;
    CHECK(got < 64 * 1024);
    CHECK(got >= 32 * 1024); /* most of the limit is usable */
    CHECK(a.heap_bytes <= 64 * 1024);
    CHECK(cxm_arena_alloc(&a, 100 * 1024) == NULL);
    cxm_arena_dispose(&a);

    /* Exactly at the limit is allowed, one byte more is not. */
    cxm_arena_init(&a, NULL, 0, 4096);
    CHECK(cxm_arena_alloc(&a, 4096) != NULL);
    CHECK_EQ_INT(a.heap_bytes, 4096);
    CHECK(cxm_arena_alloc(&a, 1) == NULL);
    CHECK_EQ_INT(a.heap_bytes, 4096);
    /* The kept chunk counts against the limit after a reset, and serves. */
    cxm_arena_reset(&a);
    CHECK(cxm_arena_alloc(&a, 4096) != NULL);
    CHECK(cxm_arena_alloc(&a, 1) == NULL);
    cxm_arena_dispose(&a);

    /* The caller's block does not count against the heap limit. */
    alignas(max_align_t) char initial[128];
    cxm_arena_init(&a, initial, sizeof initial, 1);
    CHECK(cxm_arena_alloc(&a, 64) != NULL);
    CHECK(cxm_arena_alloc(&a, 64) != NULL);
    CHECK(cxm_arena_alloc(&a, 1) == NULL);
    CHECK_EQ_INT(a.heap_bytes, 0);
    cxm_arena_dispose(&a);
}

static void test_overflow(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    CHECK(cxm_arena_alloc(&a, SIZE_MAX) == NULL);
    CHECK(cxm_arena_alloc(&a, SIZE_MAX - 8) == NULL);
    CHECK(cxm_arena_calloc(&a, SIZE_MAX / 2, 3) == NULL);
    CHECK(cxm_arena_strndup(&a, "x", SIZE_MAX) == NULL);
    CHECK(cxm_arena_calloc(&a, SIZE_MAX, SIZE_MAX) == NULL);
    CHECK(cxm_arena_calloc(&a, (SIZE_MAX >> 4) + 1, 16) == NULL);
    CHECK_EQ_INT(a.heap_bytes, 0); /* a refused request allocates nothing */
    cxm_arena_dispose(&a);
    /* With a huge limit, heap_bytes + size must not wrap around. */
    cxm_arena_init(&a, NULL, 0, SIZE_MAX - 1);
    CHECK(cxm_arena_alloc(&a, 100) != NULL);
    CHECK(cxm_arena_alloc(&a, SIZE_MAX - 64) == NULL);
    cxm_arena_dispose(&a);
}

static void test_reset_reuses_largest_chunk(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    for (int i = 0; i < 100; i++)
        CHECK(cxm_arena_alloc(&a, 1000) != NULL);
    size_t before = a.heap_bytes;
    cxm_arena_reset(&a);
    CHECK(a.heap_bytes > 0 && a.heap_bytes <= before);
    CHECK(a.chunks != NULL);
    /* The kept chunk serves the next allocations without new heap memory. */
    size_t kept = a.heap_bytes;
    char *p = cxm_arena_alloc(&a, 1000);
    CHECK(p != NULL);
    CHECK_EQ_INT(a.heap_bytes, kept);
    /* The largest chunk was kept: 100 KB (the total used before) fits in it
     * without any new heap memory. */
    for (int i = 0; i < 40; i++)
        CHECK(cxm_arena_alloc(&a, 1000) != NULL);
    CHECK_EQ_INT(a.heap_bytes, kept);
    /* Another reset hands out the same memory again. */
    cxm_arena_reset(&a);
    CHECK(cxm_arena_alloc(&a, 1000) == p);
    CHECK_EQ_INT(a.heap_bytes, kept);
    cxm_arena_dispose(&a);
    CHECK(a.chunks == NULL);

    /* Without heap chunks, reset returns to the caller's block. */
    alignas(max_align_t) char initial[64];
    cxm_arena_init(&a, initial, sizeof initial, 0);
    CHECK(cxm_arena_alloc(&a, 8) == (void *)initial);
    cxm_arena_reset(&a);
    CHECK(cxm_arena_alloc(&a, 8) == (void *)initial);
    cxm_arena_dispose(&a);
}

static void test_calloc_strndup(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    unsigned char *z = cxm_arena_alloc(&a, 64);
    memset(z, 0xff, 64);
    cxm_arena_reset(&a);
    unsigned char *c = cxm_arena_calloc(&a, 16, 4);
    int nonzero = 0;
    for (int i = 0; i < 64; i++)
        nonzero |= c[i];
    CHECK_EQ_INT(nonzero, 0);
    char *s = cxm_arena_strndup(&a, "hello world", 5);
    CHECK_EQ_STR(s, "hello");
    CHECK_EQ_STR(cxm_arena_strndup(&a, NULL, 0), "");
    /* Aligned memory is used in place; otherwise it is copied, aligned. */
    static const alignas(8) char blob[16] = "0123456789abcde";
    CHECK(cxm_arena_aligned(&a, blob, 8, 8) == blob);
    const char *moved = cxm_arena_aligned(&a, blob + 1, 8, 8);
    CHECK(moved != blob + 1 && ((uintptr_t)moved & 7) == 0 && memcmp(moved, "12345678", 8) == 0);
    CHECK(cxm_arena_aligned(&a, blob + 2, 8, 2) == blob + 2);
    /* Zero-size requests still return distinct pointers. */
    char *z1 = cxm_arena_alloc(&a, 0), *z2 = cxm_arena_alloc(&a, 0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    CHECK(cxm_arena_calloc(&a, 0, 8) != NULL);
    cxm_arena_dispose(&a);
}

/* protobuf-c messages unpacked into the arena need no free. */
static void test_protobuf_allocator(void)
{
    Google__Protobuf__FileDescriptorProto f = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    f.name = "x.proto";
    f.package = "cxm.test";
    uint8_t buf[128];
    size_t n = google__protobuf__file_descriptor_proto__pack(&f, buf);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Google__Protobuf__FileDescriptorProto *back =
        google__protobuf__file_descriptor_proto__unpack(cxm_arena_protobuf(&a), n, buf);
    CHECK(back != NULL);
    CHECK_EQ_STR(back->package, "cxm.test");
    /* free_unpacked goes through the no-op free: nothing is released (ASan
     * would report freeing a non-malloc pointer) and the memory stays. */
    size_t held = a.heap_bytes;
    google__protobuf__file_descriptor_proto__free_unpacked(back, cxm_arena_protobuf(&a));
    CHECK_EQ_INT(a.heap_bytes, held);
    CHECK_EQ_STR(back->name, "x.proto");
    /* The adapter follows the arena when a call context is copied. */
    cxm_arena moved = a;
    ProtobufCAllocator *pb = cxm_arena_protobuf(&moved);
    CHECK(pb->allocator_data == &moved);
    void *m = pb->alloc(pb->allocator_data, 24);
    CHECK(m != NULL && (uintptr_t)m % alignof(max_align_t) == 0);
    a = moved;
    /* A limit too small for the message makes unpack fail cleanly. */
    cxm_arena tiny;
    cxm_arena_init(&tiny, NULL, 0, 16);
    CHECK(google__protobuf__file_descriptor_proto__unpack(cxm_arena_protobuf(&tiny), n, buf) ==
          NULL);
    cxm_arena_dispose(&tiny);
    cxm_arena_dispose(&a); /* ASan reports a leak if the allocator used malloc */
}

int main(void)
{
    test_alignment_and_initial_block();
    test_unaligned_initial_block();
    test_geometric_growth();
    test_oversized_allocation();
    test_limit();
    test_overflow();
    test_reset_reuses_largest_chunk();
    test_calloc_strndup();
    test_protobuf_allocator();
    return check_report();
}
