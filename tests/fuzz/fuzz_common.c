/* fuzz_common.c - the helpers of fuzz.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/svc.h"
#include "cxm/wire.h"

ProtobufCMessage *fuzz_unpack(const ProtobufCMessageDescriptor *d, cxm_arena *a,
                              const uint8_t *data, size_t size)
{
    if (cxm_wire_check(d, data, size, CXM_WIRE_MAX_DEPTH) != 0)
        return NULL;
    return protobuf_c_message_unpack(d, cxm_arena_protobuf(a), size, data);
}

static fuzz_check_fn check_of(const fuzz_check *checks, size_t n, const char *method)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(checks[i].method, method) == 0)
            return checks[i].check;
    fprintf(stderr, "fuzz: no check for method %s: add it to the target\n", method);
    abort();
}

void fuzz_service(const cxm_method *methods, size_t n, const fuzz_check *checks, size_t nchecks,
                  const uint8_t *data, size_t size)
{
    if (size == 0 || n == 0)
        return;
    const cxm_method *m = &methods[data[0] % n];
    fuzz_check_fn check = check_of(checks, nchecks, m->name);
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, FUZZ_ARENA_LIMIT);
    ProtobufCMessage *req = fuzz_unpack(m->request, &a, data + 1, size - 1);
    char err[CXM_SVC_ERR_MAX] = "";
    int rc = req ? check(req, &a, err) : 0;
    if (rc != 0 && rc != CXM_ENOMEM && !err[0]) {
        fprintf(stderr, "fuzz: %s refused a request (code %d) without a message\n", m->name, rc);
        abort();
    }
    cxm_arena_dispose(&a);
}

int fuzz_paging(int32_t page_size, const char *token, int dflt, int max, char *err)
{
    int limit;
    const char *after;
    int rc = cxm_svc_page_size(page_size, dflt, max, &limit, err);
    return rc ? rc : cxm_svc_token_parse(token, CXM_HASH_INIT, &after, err);
}

static cxm_store *store;

cxm_store *fuzz_store(void)
{
    if (store)
        return store;
    char dir[] = "/tmp/cxm-fuzz-XXXXXX", path[sizeof dir + 16];
    cxm_store_opts opts = {.initial_map_size = 16u << 20, .nosync = true};
    if (!mkdtemp(dir) || cxm_store_open(dir, &opts, &store) != 0) {
        fprintf(stderr, "fuzz: cannot open a store in %s\n", dir);
        abort();
    }
    /* Removed at once: LMDB keeps using the open files, and libFuzzer ends
     * some runs without running atexit handlers. */
    static const char *const files[] = {"data.mdb", "lock.mdb", "cxm.lock"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return store;
}

typedef struct try_ctx {
    int (*fn)(cxm_txn *t, void *user);
    void *user;
    int rc;
} try_ctx;

static int try_fn(cxm_txn *t, void *user)
{
    try_ctx *c = user;
    c->rc = c->fn(t, c->user);
    return CXM_ECANCELLED; /* never commit */
}

int fuzz_store_try(int (*fn)(cxm_txn *t, void *user), void *user)
{
    try_ctx c = {fn, user, 0};
    int rc = cxm_store_write(fuzz_store(), try_fn, &c);
    if (rc != CXM_ECANCELLED) {
        fprintf(stderr, "fuzz: the store's write transaction failed: %d\n", rc);
        abort();
    }
    return c.rc;
}

void fuzz_records(const uint8_t *data, size_t size, uint8_t nkinds,
                  int (*read_back)(cxm_txn *t, void *record))
{
    if (size == 0)
        return;
    fuzz_record in = {(uint8_t)(data[0] % nkinds), data + 1, size - 1};
    fuzz_store_try(read_back, &in);
}

void fuzz_put(cxm_txn *t, const char *table, const void *key, size_t klen, const void *data,
              size_t size)
{
    MDB_dbi dbi;
    int rc = cxm_store_dbi(fuzz_store(), table, 0, &dbi);
    if (rc == 0)
        rc = cxm_txn_put(t, dbi, key, klen, data, size, 0);
    if (rc != 0) {
        fprintf(stderr, "fuzz: cannot put %zu bytes into %s: %d\n", size, table, rc);
        abort();
    }
}
