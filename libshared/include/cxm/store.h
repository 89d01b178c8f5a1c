/*
 * store.h - the LMDB environment of a data directory, and the transaction
 * helpers every service uses.
 *
 * One data directory is one LMDB environment (data.mdb + lock.mdb). Services
 * keep their tables in named databases ("profile.identities") inside it, with
 * keys built by keyenc.h so that LMDB's byte order is the logical order.
 *
 * Opening: cxm_store_open creates the directory if missing and opens the
 * environment once per process: a second open of the same directory (same
 * realpath) returns the same cxm_store with a reference added, because LMDB
 * must not open one environment twice in a process. Each open needs a
 * cxm_store_close. Across processes a directory has one owner: the first
 * open takes an exclusive lock on DIR/cxm.lock (holding its pid) until the
 * last close or the process's exit, and an open from another process fails
 * with CXM_EBUSY, naming the directory and the holder's pid.
 *
 * Writing: cxm_store_write(store, fn, user) runs fn in a write transaction
 * and commits; the call returns only after the commit is durable (fsync),
 * unless the store was opened with opts.nosync. When the map is full, the
 * transaction is aborted, the map doubled (up to opts.max_map_size) and fn run
 * AGAIN FROM SCRATCH: fn must build its effects only through the txn and
 * `user` inputs, and must not leave side effects outside the txn that a rerun
 * would repeat (or must reset them at its start). fn's non-zero return
 * aborts the transaction and is returned as is.
 *
 * Reading: cxm_store_read(store, fn, user), or cxm_store_read_begin/end
 * around the reads. cxm_txn_get copies the value into an arena, so it stays
 * valid after the transaction ends; cxm_txn_get_ref points into the map and is
 * valid only until the transaction ends (or, in a write txn, until the next
 * write). Iterators (cxm_iter_*) and cxm_txn_scan walk a prefix or a
 * [from, to) range, forward or backward.
 *
 * Threading:
 *   - cxm_store_open/close, cxm_store_dbi and every cxm_store_* call are
 *     thread-safe. Open named databases with cxm_store_dbi at module open
 *     time: a handle is usable only in transactions that start after it was
 *     created, and cxm_store_dbi must not be called inside a transaction.
 *   - The environment is opened with MDB_NOTLS: a read transaction is not
 *     tied to the thread that began it, so it may be handed to another worker
 *     thread, but it is used by one thread at a time. Ended read transactions
 *     are reset and pooled, so a begin is usually an mdb_txn_renew.
 *   - One write transaction at a time per environment (LMDB serialises them;
 *     concurrent cxm_store_write calls wait their turn). A write txn belongs to
 *     the thread running fn; do not start another transaction inside fn.
 *   - A thread holding a read transaction must not call cxm_store_write: if
 *     the map had to grow, growth waits for every transaction of the process
 *     to end. Such a call fails with CXM_EFULL instead of growing.
 *
 * Errors: functions return 0 or a negative CXM_E* code (err.h); in
 * particular CXM_ENOTFOUND (no such key, or an iterator is exhausted),
 * CXM_EEXIST (CXM_PUT_NOOVERWRITE on an existing key), CXM_ETOOBIG (a key
 * longer than cxm_store_max_key, or an empty key), CXM_EFULL (map at its cap),
 * CXM_ENOMEM (arena refused). cxm_store_last_error() returns a sentence about
 * the latest failure on the calling thread; cxm_store_open also logs it
 * ("store.open_failed"), naming the directory.
 */
#ifndef CXM_STORE_H
#define CXM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "cxm/arena.h"
#include "cxm/keyenc.h"

typedef struct cxm_store cxm_store;
typedef struct cxm_txn cxm_txn;

typedef struct cxm_store_opts {
    size_t initial_map_size; /* 0 = 64 MiB; an existing larger data file wins */
    size_t max_map_size;     /* growth cap; 0 = 16 GiB */
    unsigned max_dbs;        /* named databases; 0 = 128 */
    unsigned max_readers;    /* concurrent read txns (pooled ones count); 0 = 512 */
    bool nosync;             /* MDB_NOSYNC: faster, loses the last commits on a crash */
} cxm_store_opts;

/* Open (creating dir and its parents if missing) or share the environment of
 * dir. opts NULL = defaults; opts of a second open of the same directory are
 * ignored. */
int cxm_store_open(const char *dir, const cxm_store_opts *opts, cxm_store **out);

/* Drop a reference; the last one closes the environment. Every transaction
 * must have ended. NULL is ignored. */
void cxm_store_close(cxm_store *store);

/* The canonical (real) path of the directory; valid until the last close. */
const char *cxm_store_path(const cxm_store *store);

/* Current map size in bytes (grows with cxm_store_write). */
size_t cxm_store_map_size(cxm_store *store);

/* LMDB's maximum key length (511 with the default build). */
int cxm_store_max_key(cxm_store *store);

/* The raw environment, for what these helpers do not cover. */
MDB_env *cxm_store_env(cxm_store *store);

/* A description of the latest failure of a cxm_store or cxm_txn call on this
 * thread ("" if none). Not set for CXM_ENOTFOUND, which is an answer rather
 * than a failure. Valid until the next call on this thread. */
const char *cxm_store_last_error(void);

/* The handle of the named database, created on first use. flags: LMDB's
 * mdb_dbi_open flags (MDB_CREATE is implied); the first call for a name
 * decides them. Cached and thread-safe, but see the threading rules above. */
int cxm_store_dbi(cxm_store *store, const char *name, unsigned flags, MDB_dbi *out);

/* A service's tables: each name and where its handle goes. */
typedef struct cxm_store_table {
    const char *name;
    MDB_dbi *dbi;
} cxm_store_table;

/* cxm_store_dbi (flags 0) for each of tables[0..n), stopping at the first
 * failure, whose code it returns. */
int cxm_store_dbis(cxm_store *store, const cxm_store_table *tables, size_t n);

/* ---- transactions ---------------------------------------------------- */

typedef int (*cxm_txn_fn)(cxm_txn *txn, void *user);

/* Run fn in a write transaction and commit (see above for the retry). */
int cxm_store_write(cxm_store *store, cxm_txn_fn fn, void *user);

/* cxm_store_write with LMDB's per-transaction durability flags:
 * CXM_WRITE_NOMETASYNC flushes the data but not the meta page, so an OS
 * crash may undo this commit (never corrupt: integrity holds); the next
 * durable commit makes it durable too. 0 = as cxm_store_write. */
enum { CXM_WRITE_NOMETASYNC = MDB_NOMETASYNC };
int cxm_store_write_flags(cxm_store *store, unsigned flags, cxm_txn_fn fn, void *user);

/* Called on the committing thread after every successful write commit (of
 * cxm_store_write* and of each group-commit batch), before the writers hear
 * of it. Must be quick and must not start a transaction: it is meant to wake
 * a thread. One hook per store; fn NULL removes it. Thread-safe: once this
 * returns, the previous hook is no longer running or called. */
typedef void (*cxm_commit_fn)(void *user);
void cxm_store_on_commit(cxm_store *store, cxm_commit_fn fn, void *user);

/* Write health. A write that fails for the store's own reason (the map at
 * its cap: CXM_EFULL; a full disk or an I/O error at commit), not for a
 * job's own error, makes the store unhealthy; the next write that commits
 * makes it healthy again. While unhealthy, a probe write (a timestamp in
 * table "cxm.probe") runs every second, so that a store that gets no writes
 * recovers too once the cause is gone. fn(user, rc, why) is called on each
 * change, on the thread that saw it (rc 0: healthy; else the failure's
 * CXM_E* code and a sentence naming the path and cause), and at once when
 * set while unhealthy. It must be quick and must not start a transaction.
 * One hook per store; NULL removes it (once this returns, the previous one
 * is not running). Each failed write is also logged, once per cause per
 * minute with a count of the repeats (store.write_failed). */
typedef void (*cxm_store_health_fn)(void *user, int rc, const char *why);
void cxm_store_on_health(cxm_store *store, cxm_store_health_fn fn, void *user);

/* 0 if healthy, else the failure's code with its sentence in why. */
int cxm_store_health(cxm_store *store, char *why, size_t cap);

/* ---- group commit ---------------------------------------------------- */

/* Called on the store's writer thread after the shared transaction
 * committed (rc = fn's result, 0 meaning its writes are durable) or failed
 * (rc = the commit error). Must not block; typically it answers an RPC. */
typedef void (*cxm_write_done_fn)(void *user, int rc);

/* A queued write. The caller owns the memory (a call's arena is fine) and
 * keeps it alive until done runs; the fields after `user` are private. */
typedef struct cxm_write_job {
    cxm_txn_fn fn;
    cxm_write_done_fn done;
    void *user;
    int rc;
    bool excluded;
    struct cxm_write_job *next;
} cxm_write_job;

/* Queue job for the store's writer thread, which runs every queued job in
 * one write transaction and commits once: many concurrent writers share one
 * fsync instead of paying one each. A job whose fn fails before writing
 * anything is simply answered with its error; one that fails after writing
 * makes the batch roll back and run again without it, so a failed job never
 * leaves a trace. As with cxm_store_write, fn may therefore run more than
 * once and must build its effects from scratch each time. Thread-safe;
 * never blocks. The writer thread starts on first use and stops, after
 * draining its queue, when the store closes. */
void cxm_store_submit(cxm_store *store, cxm_write_job *job);

/* ---- compaction: erasure that really erases -------------------------- */

/* LMDB never overwrites in place: a deleted record's bytes stay readable in
 * the data file, in free pages (old page versions wait in the freelist until
 * reused), in the unused gap of live pages (mdb_node_del slides the nodes
 * below a deleted one and leaves their old bytes there) and in branch-page
 * separator keys. A compaction rewrites the environment so that the new
 * data.mdb holds nothing but the live records:
 *
 *   - writers are held back (new write transactions wait; those running
 *     finish first), so no write can be lost; readers go on meanwhile;
 *   - every named database is walked with a cursor in one read transaction
 *     and appended (MDB_APPEND) into a fresh environment,
 *     DIR/data.mdb.compact: every byte of that file (leaf, branch, overflow
 *     and free pages alike) is a copy of a live key or value, or zero. LMDB's
 *     own mdb_env_copy2(MDB_CP_COMPACT) is not used: it drops free pages but
 *     copies live pages whole, separator keys and stale gaps of the unused
 *     part of a node's sub-page included;
 *   - the copy is fsync'ed, renamed over data.mdb and the directory fsync'ed;
 *     then, once every transaction of the process has ended (the gate map
 *     growth uses), the environment is reopened in place and the named
 *     databases reopened in their original order, so every MDB_dbi handle
 *     keeps its number (checked). Pooled read transactions are dropped.
 *     Nothing may hold a pointer into the map past its transaction (the
 *     rule already), as the map moves.
 *
 * Cost: the whole live data is rewritten once per compaction (about the
 * speed of a sequential copy, see benchmarks/README.md "Erasure
 * compaction"), writes wait for that long, and the disk needs room for a
 * second copy of the live data meanwhile. Erasures therefore share one:
 * cxm_store_compact_request debounces. Out of scope: the freed blocks of
 * the old file on the disk itself (use an encrypted filesystem) and copies
 * other processes made before the compaction.
 *
 * Returns 0, CXM_EBUSY when the calling thread holds a transaction (the
 * swap would wait for it), or the error that stopped it (the old file then
 * stays, untouched, and the store goes on). A write attempted on a thread
 * holding a read transaction while a compaction copies fails with
 * CXM_EBUSY rather than deadlock (as with growth, do not do that). */
int cxm_store_compact(cxm_store *store);

/* Ask for a compaction `delay` ms from the first request not yet served
 * (cxm_store_set_compact_delay; default 1,000 ms), so a burst of erasures
 * shares one. Run by the store's compactor thread, started on first use and
 * stopped at the last close; a failed one is logged and retried after the
 * delay. Thread-safe; callable inside a write transaction (the compaction
 * waits for it to end). */
void cxm_store_compact_request(cxm_store *store);
void cxm_store_set_compact_delay(cxm_store *store, unsigned delay_ms);

/* Completed compactions since the store was opened. Read inside a write
 * transaction, a value g means: that transaction's commit is covered by
 * every compaction after the g-th (cxm_store_compactions() > g). */
uint64_t cxm_store_compactions(cxm_store *store);

/* Called on the compactor thread after each compaction it ran (not after a
 * direct cxm_store_compact); it may write (typically: confirm the erasures
 * the compaction covered). Up to 8 per store; CXM_EFULL beyond. Removing
 * waits for a running call, so the user's memory can be freed after. */
typedef void (*cxm_compacted_fn)(cxm_store *store, void *user);
int cxm_store_on_compacted(cxm_store *store, cxm_compacted_fn fn, void *user);
void cxm_store_on_compacted_remove(cxm_store *store, cxm_compacted_fn fn, void *user);

/* Run fn in a read transaction; returns fn's result. */
int cxm_store_read(cxm_store *store, cxm_txn_fn fn, void *user);

/* A read transaction (a consistent snapshot) until cxm_store_read_end. */
int cxm_store_read_begin(cxm_store *store, cxm_txn **out);
void cxm_store_read_end(cxm_txn *txn);

/* The raw transaction, for what these helpers do not cover. */
MDB_txn *cxm_txn_mdb(cxm_txn *txn);

/* Copy the value of key into arena memory (plus a NUL after it, so text can be
 * used as a C string); valid after the txn ends. CXM_ENOTFOUND if absent. */
int cxm_txn_get(cxm_txn *txn, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a, void **val,
                size_t *vlen);

/* Zero-copy: *val points into the map, valid only inside txn (and not past
 * the next put/del of a write txn). Never write through it. */
int cxm_txn_get_ref(cxm_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void **val,
                    size_t *vlen);

enum {
    CXM_PUT_NOOVERWRITE = 1, /* fail with CXM_EEXIST if key exists */
};

/* Write txns only. A CXM_EFULL from put makes cxm_store_write retry after
 * growing the map; fn should just return the error. */
int cxm_txn_put(cxm_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *val,
                size_t vlen, unsigned flags);

/* Write txns only. CXM_ENOTFOUND if key is absent. */
int cxm_txn_del(cxm_txn *txn, MDB_dbi dbi, const void *key, size_t klen);

/* ---- iteration ------------------------------------------------------- */

/* Walks keys in [from, to) (or with a prefix). Only key/klen/val/vlen are
 * public; they point into the map and follow the get_ref validity rule. Keep
 * the from/to buffers alive while iterating. */
typedef struct cxm_iter {
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
    /* private */
    MDB_cursor *cur;
    const void *from, *to;
    size_t from_len, to_len; /* 0 = unbounded */
    bool reverse, started, done;
    unsigned char succ[CXM_KEY_MAX]; /* upper bound computed for a prefix */
} cxm_iter;

/* Keys in [from, to): from NULL/0 = from the first key, to NULL/0 = to the
 * end. reverse walks from the largest key below `to` down to `from`. */
int cxm_iter_range(cxm_txn *txn, MDB_dbi dbi, const void *from, size_t from_len, const void *to,
                   size_t to_len, bool reverse, cxm_iter *it);

/* Keys that start with prefix (len 0 = every key). */
int cxm_iter_prefix(cxm_txn *txn, MDB_dbi dbi, const void *prefix, size_t len, bool reverse,
                    cxm_iter *it);

/* 0 with it->key/val set to the next entry, CXM_ENOTFOUND when done, or an
 * error. */
int cxm_iter_next(cxm_iter *it);

/* Release the cursor; required before the txn ends. Idempotent. */
void cxm_iter_close(cxm_iter *it);

/* Callback for cxm_txn_scan: 0 = go on, > 0 = stop (scan returns 0),
 * < 0 = stop and return that error. */
typedef int (*cxm_scan_fn)(const void *key, size_t klen, const void *val, size_t vlen, void *user);

/* cxm_iter_prefix + cxm_iter_next loop + close. */
int cxm_txn_scan_prefix(cxm_txn *txn, MDB_dbi dbi, const void *prefix, size_t len, bool reverse,
                        cxm_scan_fn fn, void *user);

#endif
