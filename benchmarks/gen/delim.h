/*
 * delim.h - streams of length-delimited protobuf messages, the framing of
 * the .pb files cxm-gen writes.
 *
 * A stream is a plain concatenation of records; a record is the length of
 * one serialised message as a protobuf base-128 varint (7 bits per byte,
 * least significant group first, the top bit set on every byte but the
 * last), followed by that many bytes of the message. No file header, no
 * trailer: an empty file is an empty stream. This is the framing of
 * protobuf's writeDelimitedTo/parseDelimitedFrom, so other languages read
 * the files with their stock protobuf library.
 *
 * Reading a stream with protobuf-c:
 *
 *     uint8_t *buf = NULL;
 *     size_t cap = 0, len;
 *     int rc;
 *     while ((rc = cxm_delim_read(f, &buf, &cap, &len)) == 1) {
 *         Cxm__V1__TrackRequest *m = cxm__v1__track_request__unpack(NULL, len, buf);
 *         ...
 *     }
 *     free(buf);  // rc == 0: clean end; rc < 0: damaged stream
 */
#ifndef CXM_DELIM_H
#define CXM_DELIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Records longer than this are refused as damage (the gRPC default message
 * limit is 4 MiB; 64 MiB leaves room). */
#define CXM_DELIM_MAX_RECORD (64u << 20)

/* Longest varint of a size_t. */
#define CXM_DELIM_VARINT_MAX 10

/* Encode v as a varint into out (at least CXM_DELIM_VARINT_MAX bytes);
 * returns the number of bytes written. */
size_t cxm_delim_varint(uint64_t v, uint8_t *out);

/* Write one record: the varint length of msg, then msg. 0 or CXM_EIO. */
int cxm_delim_write(FILE *f, const uint8_t *msg, size_t len);

/* Read the next record into *buf (grown with realloc as needed; *cap is
 * its size; the caller frees *buf). Returns 1 with the message length in
 * *len, 0 at a clean end of stream, CXM_ECORRUPT for a truncated record, a
 * malformed varint or a record over CXM_DELIM_MAX_RECORD, CXM_EIO for a read
 * error, CXM_ENOMEM. */
int cxm_delim_read(FILE *f, uint8_t **buf, size_t *cap, size_t *len);

#endif
