/*
 * keyenc.h - order-preserving composite keys for LMDB.
 *
 * LMDB compares keys with memcmp (shorter first on a tie), so a key built
 * here sorts exactly like the tuple of values it was built from: component by
 * component, each in its natural order. A key is a sequence of fields:
 *
 *   u8, u32, u64   big-endian, fixed width
 *   i64            big-endian with the sign bit flipped (negatives first)
 *   f64            IEEE-754 bits, big-endian: positives get the sign bit
 *                  flipped, negatives get every bit flipped. -0.0 is encoded
 *                  as +0.0 (they compare equal, so they must find the same
 *                  key); every NaN is encoded as one canonical NaN that sorts
 *                  after +inf (so NaN == NaN and NaN is the largest value).
 *   bytes, str     each 0x00 byte written as 0x00 0xFF, then the terminator
 *                  0x00 0x01. The terminator sorts below any continuation, so
 *                  "ab" < "ab\0" < "ab\1" < "abc", the field after a string
 *                  never leaks into the comparison of the strings, and
 *                  embedded NULs are safe.
 *
 * Fields are not self-describing: a reader must read the fields in the order
 * and with the types they were written.
 *
 * Writing: a cxm_key builder appends into a caller buffer (at most
 * CXM_KEY_MAX = 511 bytes, LMDB's default maximum key size). Append calls
 * return nothing; the first overflow is remembered (sticky) and reported by
 * cxm_key_finish, so a key is built with straight-line code and checked once.
 *
 * Reading: a cxm_keyreader walks an encoded key. Each read returns 0 or
 * CXM_ECORRUPT (truncated or malformed input) / CXM_ETOOBIG (output buffer too
 * small); errors are sticky too, so a sequence of reads can be checked once,
 * with cxm_keyread_end.
 *
 * Range scans: a prefix of fields (or cxm_key_bytes_prefix for "strings that
 * start with") selects a contiguous key range [prefix, successor(prefix)),
 * see cxm_key_successor.
 *
 * Threading: no global state; a builder or reader belongs to one thread.
 */
#ifndef CXM_KEYENC_H
#define CXM_KEYENC_H

#include <stddef.h>
#include <stdint.h>

#include "cxm/arena.h"

/* The largest key LMDB accepts with its default build (mdb_env_get_maxkeysize). */
#define CXM_KEY_MAX 511

/* Treat the fields as private. */
typedef struct cxm_key {
    uint8_t *buf;
    size_t cap; /* min(caller capacity, CXM_KEY_MAX) */
    size_t len;
    int err; /* first error, sticky */
} cxm_key;

/* Start an empty key in buf (cap bytes; a key never grows past CXM_KEY_MAX
 * whatever cap is). */
void cxm_key_init(cxm_key *k, void *buf, size_t cap);

void cxm_key_u8(cxm_key *k, uint8_t v);
void cxm_key_u32(cxm_key *k, uint32_t v);
void cxm_key_u64(cxm_key *k, uint64_t v);
void cxm_key_i64(cxm_key *k, int64_t v);
void cxm_key_f64(cxm_key *k, double v);

/* A byte string (may contain NULs), escaped and terminated. */
void cxm_key_bytes(cxm_key *k, const void *p, size_t n);

/* A NUL-terminated string; same encoding as cxm_key_bytes(s, strlen(s)). */
void cxm_key_str(cxm_key *k, const char *s);

/* The escaped bytes WITHOUT the terminator: as the last field of a scan
 * prefix it selects every key whose string field starts with p. */
void cxm_key_bytes_prefix(cxm_key *k, const void *p, size_t n);

/* Bytes appended verbatim (an already encoded key or prefix). */
void cxm_key_raw(cxm_key *k, const void *p, size_t n);

/* 0 and the key's length in *len (may be NULL), or the first error:
 * CXM_ETOOBIG when the key outgrew its buffer or CXM_KEY_MAX. */
int cxm_key_finish(const cxm_key *k, size_t *len);

/* The smallest key greater than every key that starts with prefix[0..len):
 * trailing 0xFF bytes are dropped and the last remaining byte incremented.
 * out needs room for len bytes (it may equal prefix). When no such key exists
 * (len == 0 or all bytes 0xFF) *out_len is 0, meaning "no upper bound".
 * Always returns 0. */
int cxm_key_successor(const void *prefix, size_t len, void *out, size_t *out_len);

/* Treat the fields as private. */
typedef struct cxm_keyreader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    int err; /* first error, sticky */
} cxm_keyreader;

void cxm_keyreader_init(cxm_keyreader *r, const void *key, size_t len);

int cxm_keyread_u8(cxm_keyreader *r, uint8_t *out);
int cxm_keyread_u32(cxm_keyreader *r, uint32_t *out);
int cxm_keyread_u64(cxm_keyreader *r, uint64_t *out);
int cxm_keyread_i64(cxm_keyreader *r, int64_t *out);
int cxm_keyread_f64(cxm_keyreader *r, double *out);

/* Decode a bytes field into out (cap bytes); its length goes to *len.
 * CXM_ETOOBIG when it does not fit (the reader is then in error). */
int cxm_keyread_bytes(cxm_keyreader *r, void *out, size_t cap, size_t *len);

/* Like cxm_keyread_bytes, NUL-terminated: needs cap >= length + 1. len may
 * be NULL. A string with embedded NULs is returned whole; check *len. */
int cxm_keyread_str(cxm_keyreader *r, char *out, size_t cap, size_t *len);

/* Decode a bytes field into a NUL-terminated arena copy (CXM_ENOMEM when the
 * arena refuses). len may be NULL. */
int cxm_keyread_bytes_arena(cxm_keyreader *r, cxm_arena *a, char **out, size_t *len);

/* Step over a bytes field without decoding it. */
int cxm_keyread_skip_bytes(cxm_keyreader *r);

/* 0 when every read succeeded and the whole key was consumed; the first
 * error, or CXM_ECORRUPT when bytes are left over. */
int cxm_keyread_end(const cxm_keyreader *r);

#endif
