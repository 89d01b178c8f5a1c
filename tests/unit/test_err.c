/*
 * test_err.c - error texts and the one error -> gRPC status mapping.
 */
#include <errno.h>
#include <limits.h>
#include <lmdb.h>

#include "check.h"
#include "cxm/err.h"

/* Every code of the table maps to the status the table names, and has text. */
static void test_table(void)
{
#define CHECK_ROW(name, code, text, status)                                                        \
    CHECK_EQ_INT(CXM_##name, code);                                                                \
    CHECK_EQ_STR(cxm_strerror(code), text);                                                        \
    CHECK_EQ_INT(cxm_err_status(code), status);
    CXM_ERR_MAP(CHECK_ROW)
#undef CHECK_ROW
}

static void test_status_mapping(void)
{
    CHECK_EQ_STR(cxm_status_name(GRPC_STATUS_OK), "OK");
    CHECK_EQ_STR(cxm_status_name(GRPC_STATUS_NOT_FOUND), "NOT_FOUND");
    CHECK_EQ_STR(cxm_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    CHECK_EQ_STR(cxm_status_name((grpc_status_code)99), "UNKNOWN");
    CHECK_EQ_INT(cxm_err_status(0), GRPC_STATUS_OK);
    CHECK_EQ_INT(cxm_err_status(CXM_EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
    CHECK_EQ_INT(cxm_err_status(CXM_ENOTFOUND), GRPC_STATUS_NOT_FOUND);
    CHECK_EQ_INT(cxm_err_status(CXM_ESTALE), GRPC_STATUS_FAILED_PRECONDITION);
    CHECK_EQ_INT(cxm_err_status(CXM_EDEADLINE), GRPC_STATUS_DEADLINE_EXCEEDED);
    CHECK_EQ_INT(cxm_err_status(CXM_EUNIMPL), GRPC_STATUS_UNIMPLEMENTED);
    /* Codes outside the table never masquerade as success. */
    CHECK_EQ_INT(cxm_err_status(-1000), GRPC_STATUS_UNKNOWN);
    CHECK_EQ_INT(cxm_err_status(5), GRPC_STATUS_UNKNOWN);
    CHECK_EQ_STR(cxm_strerror(0), "success");
    CHECK_EQ_STR(cxm_strerror(-1000), "unknown error");
    /* The edges of the table, and codes whose negation would overflow. */
    CHECK_EQ_INT(cxm_err_status(-17), GRPC_STATUS_INTERNAL);
    CHECK_EQ_INT(cxm_err_status(CXM_EAUTH), GRPC_STATUS_UNAUTHENTICATED);
    CHECK_EQ_INT(cxm_err_status(CXM_ELIMIT), GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK_EQ_INT(cxm_err_status(-19), GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK_EQ_INT(cxm_err_status(-20), GRPC_STATUS_UNKNOWN);
    CHECK_EQ_STR(cxm_strerror(-20), "unknown error");
    CHECK_EQ_INT(cxm_err_status(INT_MIN), GRPC_STATUS_UNKNOWN);
    CHECK_EQ_STR(cxm_strerror(INT_MIN), "unknown error");
    CHECK_EQ_INT(cxm_err_status(INT_MAX), GRPC_STATUS_UNKNOWN);
}

static void test_mdb(void)
{
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_SUCCESS), 0);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_NOTFOUND), CXM_ENOTFOUND);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_KEYEXIST), CXM_EEXIST);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_MAP_FULL), CXM_EFULL);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_DBS_FULL), CXM_EFULL);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_TXN_FULL), CXM_EFULL);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_PAGE_NOTFOUND), CXM_ECORRUPT);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_INVALID), CXM_ECORRUPT);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_VERSION_MISMATCH), CXM_ECORRUPT);
    CHECK_EQ_INT(cxm_err_from_mdb(ENOMEM), CXM_ENOMEM);
    CHECK_EQ_INT(cxm_err_from_mdb(ENOENT), CXM_ENOTFOUND);
    CHECK_EQ_INT(cxm_err_from_mdb(EIO), CXM_EIO);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_READERS_FULL), CXM_EBUSY);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_CORRUPTED), CXM_ECORRUPT);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_BAD_VALSIZE), CXM_ETOOBIG);
    CHECK_EQ_INT(cxm_err_from_mdb(ENOSPC), CXM_EFULL);
    CHECK_EQ_INT(cxm_err_from_mdb(EACCES), CXM_EPERM);
    CHECK_EQ_INT(cxm_err_from_mdb(MDB_PANIC), CXM_EINTERNAL);
}

static void test_errno(void)
{
    CHECK_EQ_INT(cxm_err_from_errno(0), 0);
    CHECK_EQ_INT(cxm_err_from_errno(ENOMEM), CXM_ENOMEM);
    CHECK_EQ_INT(cxm_err_from_errno(ENOENT), CXM_ENOTFOUND);
    CHECK_EQ_INT(cxm_err_from_errno(EEXIST), CXM_EEXIST);
    CHECK_EQ_INT(cxm_err_from_errno(EINVAL), CXM_EINVAL);
    CHECK_EQ_INT(cxm_err_from_errno(ETIMEDOUT), CXM_EDEADLINE);
    CHECK_EQ_INT(cxm_err_from_errno(ENOSPC), CXM_EFULL);
    CHECK_EQ_INT(cxm_err_from_errno(EACCES), CXM_EPERM);
    CHECK_EQ_INT(cxm_err_from_errno(EPERM), CXM_EPERM);
    CHECK_EQ_INT(cxm_err_from_errno(EAGAIN), CXM_EBUSY);
    CHECK_EQ_INT(cxm_err_from_errno(EBUSY), CXM_EBUSY);
    CHECK_EQ_INT(cxm_err_from_errno(EIO), CXM_EIO);
    CHECK_EQ_INT(cxm_err_from_errno(EXDEV), CXM_EIO);
}

/* Whatever goes in, a translation is 0 or a code of the table: never a raw
 * errno or LMDB value that cxm_err_status() would answer as UNKNOWN. */
static void test_translations_stay_in_table(void)
{
    int bad = 0;
    for (int e = 1; e < 200; e++)
        bad += cxm_err_status(cxm_err_from_errno(e)) == GRPC_STATUS_UNKNOWN;
    for (int rc = MDB_KEYEXIST; rc <= MDB_LAST_ERRCODE; rc++)
        bad += cxm_err_status(cxm_err_from_mdb(rc)) == GRPC_STATUS_UNKNOWN;
    bad += cxm_err_status(cxm_err_from_mdb(-1)) == GRPC_STATUS_UNKNOWN;
    bad += cxm_err_status(cxm_err_from_errno(-5)) == GRPC_STATUS_UNKNOWN;
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    test_table();
    test_status_mapping();
    test_mdb();
    test_errno();
    test_translations_stay_in_table();
    return check_report();
}
