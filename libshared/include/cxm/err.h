/*
 * err.h - the error codes every cxm library returns, and the one place that
 * maps them to gRPC status codes.
 *
 * Convention (borrowed from libuv): a function that can fail returns int,
 * 0 on success or a negative CXM_E* code, and writes its out-parameters only
 * on success. Foreign codes (LMDB, errno) are translated once, at the edge of
 * the module that called the foreign library, with cxm_err_from_mdb() and
 * cxm_err_from_errno(). A service never picks a gRPC status by hand: it
 * returns a CXM_E* code and the server runtime calls cxm_err_status().
 *
 * All functions here are pure and thread-safe.
 */
#ifndef CXM_ERR_H
#define CXM_ERR_H

#include <grpc/status.h>

#define CXM_ERR_MAP(X)                                                                             \
    X(EINVAL, -1, "invalid argument", GRPC_STATUS_INVALID_ARGUMENT)                                \
    X(ENOTFOUND, -2, "not found", GRPC_STATUS_NOT_FOUND)                                           \
    X(EEXIST, -3, "already exists", GRPC_STATUS_ALREADY_EXISTS)                                    \
    X(ESTALE, -4, "precondition failed", GRPC_STATUS_FAILED_PRECONDITION)                          \
    X(ENOMEM, -5, "out of memory", GRPC_STATUS_RESOURCE_EXHAUSTED)                                 \
    X(ETOOBIG, -6, "too large", GRPC_STATUS_INVALID_ARGUMENT)                                      \
    X(EIO, -7, "input/output error", GRPC_STATUS_INTERNAL)                                         \
    X(ECORRUPT, -8, "data is corrupt", GRPC_STATUS_DATA_LOSS)                                      \
    X(EFULL, -9, "storage is full", GRPC_STATUS_RESOURCE_EXHAUSTED)                                \
    X(EBUSY, -10, "overloaded, retry later", GRPC_STATUS_UNAVAILABLE)                              \
    X(EUNAVAIL, -11, "unavailable", GRPC_STATUS_UNAVAILABLE)                                       \
    X(EDEADLINE, -12, "deadline exceeded", GRPC_STATUS_DEADLINE_EXCEEDED)                          \
    X(ECANCELLED, -13, "cancelled", GRPC_STATUS_CANCELLED)                                         \
    X(EUNIMPL, -14, "not implemented", GRPC_STATUS_UNIMPLEMENTED)                                  \
    X(EPERM, -15, "permission denied", GRPC_STATUS_PERMISSION_DENIED)                              \
    X(ERANGE, -16, "out of range", GRPC_STATUS_OUT_OF_RANGE)                                       \
    X(EINTERNAL, -17, "internal error", GRPC_STATUS_INTERNAL)                                      \
    X(EAUTH, -18, "unauthenticated", GRPC_STATUS_UNAUTHENTICATED)                                  \
    X(ELIMIT, -19, "rate limit exceeded, retry later", GRPC_STATUS_RESOURCE_EXHAUSTED)

enum cxm_err {
    CXM_OK = 0,
#define CXM__ERR_ENUM(name, code, text, status) CXM_##name = code,
    CXM_ERR_MAP(CXM__ERR_ENUM)
#undef CXM__ERR_ENUM
};

/* A short lower-case description of a CXM_E* code; never NULL. */
const char *cxm_strerror(int err);

/* The gRPC status a CXM_E* code is answered with (GRPC_STATUS_OK for 0,
 * GRPC_STATUS_UNKNOWN for codes outside the table). */
grpc_status_code cxm_err_status(int err);

/* The canonical upper-case name of a gRPC status ("NOT_FOUND"), for
 * messages and tools; "UNKNOWN" for codes outside the range. */
const char *cxm_status_name(grpc_status_code status);

/* Translate an LMDB return code (MDB_SUCCESS, MDB_NOTFOUND, MDB_MAP_FULL, ...
 * or an errno value LMDB passed through) into a CXM_E* code. */
int cxm_err_from_mdb(int mdb_rc);

/* Translate a positive errno value into a CXM_E* code. */
int cxm_err_from_errno(int errnum);

#endif
