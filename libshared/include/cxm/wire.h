/*
 * wire.h - a bounded look at protobuf wire bytes before they are decoded.
 *
 * protobuf-c's unpack recurses once per level of submessage and has no limit,
 * so a request of a few kilobytes that nests a message inside itself
 * thousands of times overflows the stack of whoever decodes it. The server
 * runtime therefore walks every request message with cxm_wire_check first:
 * an iterative pass over the bytes, guided by the message descriptor, that
 * follows length-delimited fields declared as messages and counts how deep
 * they go. It uses a fixed stack (no allocation, no recursion) and reads each
 * byte at most once.
 *
 * It also checks the framing protobuf-c would check while descending (tags,
 * varints, lengths that fit their enclosing message, no groups), so that
 * malformed bytes are rejected before any decoding starts. It does not check
 * field types against their wire types; the decoder does that.
 *
 * Pure and thread-safe.
 */
#ifndef CXM_WIRE_H
#define CXM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

/* The nesting limit the server runtime applies to every request message:
 * a request may hold submessages down to this many levels below itself. */
#define CXM_WIRE_MAX_DEPTH 64

/* Walk data as a serialized message of type d. Returns 0 when it is well
 * framed and no submessage lies more than max_depth (at most
 * CXM_WIRE_MAX_DEPTH) levels below the top; CXM_ETOOBIG when one does;
 * CXM_EINVAL when the framing is broken. */
int cxm_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                   int max_depth);

#endif
