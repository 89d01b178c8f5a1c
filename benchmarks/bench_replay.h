/*
 * bench_replay.h - cxm-bench --requests: a recorded stream of requests, in
 * the length-delimited framing of the .pb files cxm-gen writes (see
 * gen/delim.h), loaded into memory and checked against the method's request
 * type before the first call, so that a wrong or damaged file fails at once
 * with the record at fault rather than as a stream of server errors.
 *
 * The whole file is held in memory, a little over its size, so that sending
 * costs no I/O. Loaded once on the main thread; read-only afterwards, so
 * every loop thread shares one (sending a record takes a reference, not a
 * copy).
 */
#ifndef CXM_BENCH_REPLAY_H
#define CXM_BENCH_REPLAY_H

#include <stddef.h>

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

typedef struct cxm_bench_replay {
    grpc_byte_buffer **records; /* in file order */
    size_t n;                   /* at least 1 once loaded */
} cxm_bench_replay;

/* The request type of method ("/package.Service/Method") among the services
 * of proto/ (cxm.v1 and grpc.health.v1), or NULL when it is not one of them. */
const ProtobufCMessageDescriptor *cxm_bench_request_type(const char *method);

/* Load every record of the stream at path into *r (caller's storage; release
 * with cxm_bench_replay_dispose). When cxm-bench knows method's request type,
 * every record must decode as it, with no field the type does not define;
 * otherwise only the framing is checked and a note says the server will
 * judge. Returns 0, or after one line on stderr naming path (and the record,
 * counted from 1): CXM_EINVAL (cannot open, no records, a record of another
 * type), CXM_ECORRUPT (a record cut short or its length malformed), CXM_EIO,
 * CXM_ENOMEM. *r is untouched on failure. */
int cxm_bench_replay_load(cxm_bench_replay *r, const char *path, const char *method);

void cxm_bench_replay_dispose(cxm_bench_replay *r);

#endif
