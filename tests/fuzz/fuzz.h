/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz share.
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput and nothing else that
 * libFuzzer needs. With CXM_FUZZ (clang) it links libFuzzer's main; in every
 * other build it links fuzz_replay.c, a main that runs the committed corpus
 * through the same function, so a decoder that regresses on a corpus entry
 * fails ctest even without clang.
 *
 * A target must not leak, must not keep state that changes what a later
 * input does (libFuzzer's reproducers replay one input alone), and must
 * reject nothing by crashing: every decoder and check under test answers a
 * bad input with an error code.
 */
#ifndef CXM_FUZZ_H
#define CXM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "cxm/arena.h"
#include "cxm/server.h"
#include "cxm/store.h"

/* The call arena's cap in the targets: what the server's default allows a
 * request to cost, so that an input that only fails for lack of memory is
 * not mistaken for a finding. */
#define FUZZ_ARENA_LIMIT (64u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decode data as the server runtime decodes a request (server.c): the
 * nesting and framing walk of cxm_wire_check first, then protobuf-c into
 * arena a. NULL when either refuses the bytes. */
ProtobufCMessage *fuzz_unpack(const ProtobufCMessageDescriptor *d, cxm_arena *a,
                              const uint8_t *data, size_t size);

/* A service's request checks, one per method of its table: each runs what
 * the method's handler runs on a decoded request before any work (the
 * service's *_check.c functions), with the arena the request lives in, and
 * returns their code with err (CXM_SVC_ERR_MAX bytes) set on failure. */
typedef int (*fuzz_check_fn)(ProtobufCMessage *req, cxm_arena *a, char *err);
typedef struct fuzz_check {
    const char *method; /* cxm_method.name */
    fuzz_check_fn check;
} fuzz_check;

/* One input of a per-service target: the first byte picks a method of the
 * table (modulo n), the rest is decoded as its request (fuzz_unpack) and, if
 * it decodes, checked. Aborts when a method has no check (the target no
 * longer covers its service) or a refusal other than CXM_ENOMEM comes
 * without a message (svc.h: every refusal names its field). */
void fuzz_service(const cxm_method *methods, size_t n, const fuzz_check *checks, size_t nchecks,
                  const uint8_t *data, size_t size);

/* A list RPC's paging fields as its handler parses them: the page size
 * against dflt and max, then the page token. */
int fuzz_paging(int32_t page_size, const char *token, int dflt, int max, char *err);

/* A store of the process's own in a fresh temporary directory, opened on
 * first use (nosync), its files unlinked at once: the targets of stored records put
 * the input where a module reads it, inside a write transaction that
 * fuzz_store_try rolls back, so no input changes what the next one sees. */
cxm_store *fuzz_store(void);

/* Run fn in a write transaction of fuzz_store() and roll it back. Returns
 * fn's code (0 when it succeeded). */
int fuzz_store_try(int (*fn)(cxm_txn *t, void *user), void *user);

/* One input of a stored-record target: the first byte picks the kind of
 * record (modulo the target's count of kinds), the rest is its stored
 * value. */
typedef struct fuzz_record {
    uint8_t kind;
    const uint8_t *data;
    size_t size;
} fuzz_record;

/* Split data into a fuzz_record of nkinds kinds and run read_back on it
 * (its user is the record) in fuzz_store_try; an empty input does nothing. */
void fuzz_records(const uint8_t *data, size_t size, uint8_t nkinds,
                  int (*read_back)(cxm_txn *t, void *record));

/* Put data under key in fuzz_store()'s table name (created on first use),
 * inside t; aborts when the store refuses (the map is sized for the
 * targets' inputs). */
void fuzz_put(cxm_txn *t, const char *table, const void *key, size_t klen, const void *data,
              size_t size);

/* A fixed wall clock for checks that compare timestamps with now, so that an
 * input behaves the same on every run: 2026-01-01T00:00:00Z. */
#define FUZZ_NOW_MS 1767225600000LL

#endif
