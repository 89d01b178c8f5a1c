/*
 * test_wire.c - the nesting and framing check the server runs before
 * protobuf-c decodes a request, on google.protobuf.DescriptorProto (whose
 * nested_type field nests the message in itself).
 *
 * Besides hand-made cases, a differential run mutates a valid message many
 * times and requires that whatever cxm_wire_check refuses, protobuf-c
 * refuses too: the check may never turn away a message the decoder takes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cxm/err.h"
#include "cxm/wire.h"
#include "google/protobuf/descriptor.pb-c.h"

#define DP (&google__protobuf__descriptor_proto__descriptor)

/* Wrap the bytes [*at, end) as length-delimited field tag, in place. */
static void wrap(uint8_t **at, const uint8_t *end, uint8_t tag)
{
    uint8_t tmp[10];
    size_t n = 0;
    for (size_t v = (size_t)(end - *at);; v >>= 7) {
        tmp[n++] = (uint8_t)(v >= 0x80 ? (v & 0x7f) | 0x80 : v);
        if (v < 0x80)
            break;
    }
    *at -= n;
    memcpy(*at, tmp, n);
    *--*at = tag;
}

/* A DescriptorProto with `levels` messages in a nested_type chain below it
 * (packed by protobuf-c itself, so the bytes are valid). */
static uint8_t *nested(int levels, size_t *len)
{
    Google__Protobuf__DescriptorProto *m = calloc((size_t)levels + 1, sizeof *m);
    Google__Protobuf__DescriptorProto **links = calloc((size_t)levels + 1, sizeof *links);
    for (int i = 0; i <= levels; i++) {
        google__protobuf__descriptor_proto__init(&m[i]);
        m[i].name = "n";
        links[i] = &m[i];
        if (i > 0) {
            m[i - 1].n_nested_type = 1;
            m[i - 1].nested_type = &links[i];
        }
    }
    *len = google__protobuf__descriptor_proto__get_packed_size(&m[0]);
    uint8_t *buf = malloc(*len);
    google__protobuf__descriptor_proto__pack(&m[0], buf);
    free(links);
    free(m);
    return buf;
}

static void test_depth(void)
{
    size_t len;
    uint8_t *at = nested(CXM_WIRE_MAX_DEPTH, &len);
    CHECK_EQ_INT(cxm_wire_check(DP, at, len, CXM_WIRE_MAX_DEPTH), 0);
    CHECK_EQ_INT(cxm_wire_check(DP, at, len, 10), CXM_ETOOBIG);
    ProtobufCMessage *m = protobuf_c_message_unpack(DP, NULL, len, at);
    CHECK(m != NULL);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    free(at);

    uint8_t *over = nested(CXM_WIRE_MAX_DEPTH + 1, &len);
    CHECK_EQ_INT(cxm_wire_check(DP, over, len, CXM_WIRE_MAX_DEPTH), CXM_ETOOBIG);
    /* A limit above the maximum is held to the maximum. */
    CHECK_EQ_INT(cxm_wire_check(DP, over, len, 1000), CXM_ETOOBIG);
    free(over);

    /* 100,000 levels by hand, refused without descending past the limit. */
    enum { DEEP = 100000 };
    uint8_t *deep = malloc((size_t)DEEP * 4);
    uint8_t *end = deep + (size_t)DEEP * 4, *p = end;
    for (int i = 0; i < DEEP; i++)
        wrap(&p, end, 0x1a); /* nested_type = 3 */
    CHECK_EQ_INT(cxm_wire_check(DP, p, (size_t)(end - p), CXM_WIRE_MAX_DEPTH), CXM_ETOOBIG);
    free(deep);
}

typedef struct wire_case {
    const char *what;
    uint8_t bytes[16];
    size_t len;
    int want;
} wire_case;

static void test_framing(void)
{
    static const wire_case cases[] = {
        {"empty message", {0}, 0, 0},
        {"name", {0x0a, 1, 'x'}, 3, 0},
        {"unknown length-delimited field is not descended", {0xba, 0x3e, 2, 0x1a, 0x7f}, 5, 0},
        {"fixed32 and fixed64 values are stepped over",
         {0x3d, 1, 2, 3, 4, 0x39, 1, 2, 3, 4, 5, 6, 7, 8},
         14,
         0},
        {"truncated tag varint", {0x80}, 1, CXM_EINVAL},
        {"length past the end", {0x0a, 5, 'x'}, 3, CXM_EINVAL},
        {"field number 0", {0x02, 0}, 2, CXM_EINVAL},
        {"start group", {0x0b, 0x0c}, 2, CXM_EINVAL},
        {"wire type 7", {0x0f}, 1, CXM_EINVAL},
        {"truncated fixed64", {0x39, 1, 2}, 3, CXM_EINVAL},
        {"varint of 11 bytes",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         12,
         CXM_EINVAL},
        /* nested_type of 2 bytes whose own field claims 3: overruns its parent */
        {"submessage overruns its parent", {0x1a, 2, 0x0a, 3, 'a', 'b', 'c'}, 7, CXM_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = cxm_wire_check(DP, cases[i].bytes, cases[i].len, CXM_WIRE_MAX_DEPTH);
        if (rc != cases[i].want)
            fprintf(stderr, "case \"%s\": %d, want %d\n", cases[i].what, rc, cases[i].want);
        CHECK_EQ_INT(rc, cases[i].want);
    }
}

/* A message using most wire types, a few levels deep. */
static uint8_t *sample(size_t *len)
{
    Google__Protobuf__FieldDescriptorProto f = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
    f.name = "field";
    f.number = 7;
    f.has_number = 1;
    f.default_value = "-12";
    Google__Protobuf__FieldDescriptorProto *fs[] = {&f, &f};
    Google__Protobuf__MessageOptions o = GOOGLE__PROTOBUF__MESSAGE_OPTIONS__INIT;
    o.has_deprecated = 1;
    o.deprecated = 1;
    Google__Protobuf__DescriptorProto leaf = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
    leaf.name = "leaf";
    leaf.n_field = 2;
    leaf.field = fs;
    leaf.options = &o;
    Google__Protobuf__DescriptorProto *leaves[] = {&leaf, &leaf};
    Google__Protobuf__DescriptorProto top = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
    top.name = "top";
    top.n_nested_type = 2;
    top.nested_type = leaves;
    top.n_field = 1;
    top.field = fs;
    *len = google__protobuf__descriptor_proto__get_packed_size(&top);
    uint8_t *buf = malloc(*len);
    google__protobuf__descriptor_proto__pack(&top, buf);
    return buf;
}

/* Whatever the check refuses as malformed, protobuf-c refuses too. */
static void test_never_stricter_than_decoder(void)
{
    size_t len;
    uint8_t *orig = sample(&len);
    CHECK_EQ_INT(cxm_wire_check(DP, orig, len, CXM_WIRE_MAX_DEPTH), 0);
    uint8_t *buf = malloc(len);
    srand(1);
    int refused = 0, wrong = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, orig, len);
        size_t n = len - (size_t)(rand() % 2 ? 0 : rand() % (int)len);
        for (int k = 1 + rand() % 3; k > 0; k--)
            buf[rand() % (int)len] = (uint8_t)rand();
        if (cxm_wire_check(DP, buf, n, CXM_WIRE_MAX_DEPTH) == 0)
            continue;
        refused++;
        ProtobufCMessage *m = protobuf_c_message_unpack(DP, NULL, n, buf);
        if (m) {
            wrong++;
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    CHECK(refused > 1000); /* the mutations do reach the refusals */
    CHECK_EQ_INT(wrong, 0);
    free(buf);
    free(orig);
}

int main(void)
{
    test_depth();
    test_framing();
    test_never_stricter_than_decoder();
    return check_report();
}
