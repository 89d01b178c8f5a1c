/*
 * wire.c - the iterative depth and framing check described in cxm/wire.h.
 */
#include "cxm/wire.h"

#include "cxm/err.h"

enum { WT_VARINT = 0, WT_64BIT = 1, WT_LEN = 2, WT_32BIT = 5 };
#define FIELD_ID_MAX ((1u << 29) - 1) /* protobuf's largest field number */

/* One open message: where its bytes end and what type it is. */
typedef struct frame {
    size_t end;
    const ProtobufCMessageDescriptor *d;
} frame;

/* Read a varint of at most 10 bytes that ends before end. */
static int read_varint(const uint8_t *data, size_t *pos, size_t end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70 && *pos < end; shift += 7) {
        uint8_t b = data[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return CXM_EINVAL;
}

/* The message type of field number id in d, or NULL when the field is not a
 * message (or unknown, which the decoder keeps as bytes without descending).
 * protoc-c emits fields in ascending number order, which protobuf-c's own
 * lookup relies on too. */
static const ProtobufCMessageDescriptor *submessage(const ProtobufCMessageDescriptor *d,
                                                    uint64_t id)
{
    unsigned lo = 0, hi = d->n_fields;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const ProtobufCFieldDescriptor *f = &d->fields[mid];
        if (f->id == id)
            return f->type == PROTOBUF_C_TYPE_MESSAGE ? f->descriptor : NULL;
        if (f->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Step over one field's value; *sub is set when it opens a submessage,
 * whose bytes are then [*pos, *sub_end). */
static int skip_value(const frame *f, const uint8_t *data, size_t *pos, uint64_t tag,
                      const ProtobufCMessageDescriptor **sub, size_t *sub_end)
{
    uint64_t v;
    *sub = NULL;
    switch (tag & 7) {
    case WT_VARINT:
        return read_varint(data, pos, f->end, &v);
    case WT_64BIT:
    case WT_32BIT: {
        size_t n = (tag & 7) == WT_64BIT ? 8 : 4;
        if (f->end - *pos < n)
            return CXM_EINVAL;
        *pos += n;
        return 0;
    }
    case WT_LEN:
        if (read_varint(data, pos, f->end, &v) != 0 || v > f->end - *pos)
            return CXM_EINVAL;
        *sub = submessage(f->d, tag >> 3);
        *sub_end = *pos + (size_t)v;
        if (!*sub)
            *pos = *sub_end;
        return 0;
    default: /* groups (which protobuf-c does not decode) and invalid types */
        return CXM_EINVAL;
    }
}

int cxm_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                   int max_depth)
{
    frame stack[CXM_WIRE_MAX_DEPTH + 1];
    if (max_depth < 0 || max_depth > CXM_WIRE_MAX_DEPTH)
        max_depth = CXM_WIRE_MAX_DEPTH;
    int top = 0;
    stack[0] = (frame){len, d};
    size_t pos = 0;
    for (;;) {
        while (pos == stack[top].end && top > 0)
            top--;
        if (pos == stack[top].end)
            return 0;
        uint64_t tag;
        if (read_varint(data, &pos, stack[top].end, &tag) != 0 || tag >> 3 == 0 ||
            tag >> 3 > FIELD_ID_MAX)
            return CXM_EINVAL;
        const ProtobufCMessageDescriptor *sub;
        size_t sub_end = 0;
        if (skip_value(&stack[top], data, &pos, tag, &sub, &sub_end) != 0)
            return CXM_EINVAL;
        if (sub) {
            if (top == max_depth)
                return CXM_ETOOBIG;
            stack[++top] = (frame){sub_end, sub};
        }
    }
}
