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

static void test_limit(void)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 64 * 1024);
    size_t got = 0;
    while (cxm_arena_alloc(&a, 1000))
        got += 1000;
    CHECK(got >= 32 * 1024); /* most of the limit is usable */
    CHECK(a.heap_bytes <= 64 * 1024);
    CHECK(cxm_arena_alloc(&a, 100 * 1024) == NULL);
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
    CHECK(cxm_arena_alloc(&a, 1000) != NULL);
    CHECK_EQ_INT(a.heap_bytes, kept);
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
    test_limit();
    test_overflow();
    test_reset_reuses_largest_chunk();
    test_calloc_strndup();
    test_protobuf_allocator();
    return check_report();
}
