/*
 * err.c - error texts and the error -> gRPC status mapping (see cxm/err.h).
 */
#include "cxm/err.h"

#include <errno.h>
#include <stddef.h>
#include <lmdb.h>

typedef struct err_entry {
    int code;
    const char *text;
    grpc_status_code status;
} err_entry;

static const err_entry err_table[] = {
#define CXM__ERR_ROW(name, code, text, status) {code, text, status},
    CXM_ERR_MAP(CXM__ERR_ROW)
#undef CXM__ERR_ROW
};

#define ERR_COUNT (sizeof err_table / sizeof err_table[0])

/* err_lookup() indexes the table by code, which is only right while the codes
 * are -1, -2, ... in row order; make a reordered or renumbered row a build
 * error instead of a wrong status on the wire. */
enum err_row {
#define CXM__ERR_ROW(name, code, text, status) ERR_ROW_##name,
    CXM_ERR_MAP(CXM__ERR_ROW)
#undef CXM__ERR_ROW
};
#define CXM__ERR_ROW(name, code, text, status)                                                     \
    _Static_assert(code == -(ERR_ROW_##name + 1), "CXM_ERR_MAP codes must be -1, -2, ... in "      \
                                                  "order");
CXM_ERR_MAP(CXM__ERR_ROW)
#undef CXM__ERR_ROW

/* Codes are -1, -2, ... in table order, so a code is its own index. */
static const err_entry *err_lookup(int err)
{
    /* Compare without negating err: -INT_MIN would overflow. */
    if (err >= 0 || err < -(int)ERR_COUNT)
        return NULL;
    return &err_table[-err - 1];
}

const char *cxm_strerror(int err)
{
    if (err == 0)
        return "success";
    const err_entry *e = err_lookup(err);
    return e ? e->text : "unknown error";
}

grpc_status_code cxm_err_status(int err)
{
    if (err == 0)
        return GRPC_STATUS_OK;
    const err_entry *e = err_lookup(err);
    return e ? e->status : GRPC_STATUS_UNKNOWN;
}

int cxm_err_from_mdb(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return CXM_ENOTFOUND;
    case MDB_KEYEXIST:
        return CXM_EEXIST;
    case MDB_MAP_FULL:
    case MDB_DBS_FULL:
    case MDB_TXN_FULL:
        return CXM_EFULL;
    case MDB_READERS_FULL:
        return CXM_EBUSY;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return CXM_ECORRUPT;
    case MDB_BAD_VALSIZE:
        return CXM_ETOOBIG;
    default:
        /* LMDB passes errno values through unchanged. */
        return rc > 0 ? cxm_err_from_errno(rc) : CXM_EINTERNAL;
    }
}

int cxm_err_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return 0;
    case ENOMEM:
        return CXM_ENOMEM;
    case ENOSPC:
    case EDQUOT:
        return CXM_EFULL;
    case EACCES:
    case EPERM:
    case EROFS:
        return CXM_EPERM;
    case ENOENT:
        return CXM_ENOTFOUND;
    case EEXIST:
        return CXM_EEXIST;
    case EINVAL:
        return CXM_EINVAL;
    case EAGAIN:
    case EBUSY:
        return CXM_EBUSY;
    case ETIMEDOUT:
        return CXM_EDEADLINE;
    case ENAMETOOLONG:
    case E2BIG:
        return CXM_ETOOBIG;
    default:
        return CXM_EIO;
    }
}

const char *cxm_status_name(grpc_status_code status)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    return (unsigned)status < sizeof names / sizeof names[0] ? names[status] : "UNKNOWN";
}
