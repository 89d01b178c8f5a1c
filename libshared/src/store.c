/*
 * store.c - LMDB environment sharing, map growth and transaction helpers.
 *
 * Map growth: mdb_env_set_mapsize may only run while no transaction of this
 * process is active. Every transaction therefore passes a gate (a counter
 * under s->mu): begin waits while a growth is pending and counts itself in,
 * end counts itself out; growth marks itself pending (new transactions wait,
 * so it cannot starve) and waits for the count to reach zero. A counter is
 * used instead of a pthread rwlock because with MDB_NOTLS a read transaction
 * may end on another thread than the one that began it, and unlocking a
 * rwlock from another thread is undefined.
 */
#include "cxm/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cxm/err.h"
#include "cxm/log.h"

#define DEFAULT_MAP ((size_t)64 << 20)
#define DEFAULT_MAX_MAP ((size_t)16 << 30)
#define DEFAULT_MAX_DBS 128u /* cxmd holds every service's tables in one store */
#define DEFAULT_MAX_READERS 512u
#define READ_POOL_MAX 64    /* reset read txns kept for renewal */
#define FAIL_LOG_CAUSES 4   /* distinct write failures rate-limited apart */
#define FAIL_LOG_EVERY_S 60 /* at most one line per cause this often */
#define PROBE_EVERY_MS 1000 /* while writes fail, a probe write this often */
#define PROBE_TABLE "cxm.probe"
#define DEFAULT_COMPACT_DELAY_MS 1000u
#define COMPACT_COMMIT_BYTES ((size_t)32 << 20) /* per txn of the copy: bounds its dirty memory */

struct cxm_txn {
    cxm_store *s;
    MDB_txn *t;
    bool write;
    bool map_full;          /* a put/del hit MDB_MAP_FULL: grow and rerun */
    bool dirty;             /* a put/del was attempted: a failing job must be undone */
    size_t seen_map;        /* map size when the txn began, to detect a concurrent growth */
    atomic_int *owner_txns; /* the beginning thread's tls_txns (a read txn may end elsewhere) */
    cxm_txn *next;          /* read txn pool link */
};

/* One cause of failed writes (its message) and when it may be logged again. */
typedef struct fail_note {
    char msg[320];
    long long next_log_s; /* CLOCK_MONOTONIC seconds */
    unsigned suppressed;  /* failures since the last line */
} fail_note;

typedef struct dbi_entry {
    char *name;
    MDB_dbi dbi;
    unsigned flags; /* as opened, so a compaction reopens it the same */
} dbi_entry;

/* A function run after each compaction (cxm_store_on_compacted). */
typedef struct compact_hook {
    cxm_compacted_fn fn;
    void *user;
} compact_hook;

#define COMPACT_HOOKS 8 /* one per service of cxmd, with room */

struct cxm_store {
    cxm_store *next; /* registry link */
    int refs;
    char *path;
    MDB_env *env;
    size_t max_map;
    cxm_store_opts opts; /* as opened, for the reopen after a compaction */
    int lock_fd;         /* DIR/cxm.lock, flock'ed while this process has it open */

    pthread_mutex_t mu; /* gate, map size and read pool */
    pthread_cond_t cv;
    size_t map_size;
    int active;           /* transactions between begin and end */
    bool growing;         /* a growth (or a compaction's swap) is pending or running */
    bool compacting;      /* a compaction is copying: new write txns wait */
    int writing;          /* write transactions between begin and end */
    uint64_t compactions; /* completed since open */
    cxm_txn *pool;        /* reset read txns */
    int pooled;

    fail_note fails[FAIL_LOG_CAUSES]; /* under mu */

    pthread_mutex_t dbi_mu;
    dbi_entry *dbis;
    size_t ndbis;

    /* group commit: jobs queued for the writer thread */
    pthread_mutex_t wq_mu;
    pthread_cond_t wq_cv;
    cxm_write_job *wq_head, *wq_tail;
    pthread_t writer;
    bool writer_started, writer_stop;

    /* compaction: one at a time (compact_mu); the debounced compactor
     * thread (compactor_*, under cmp_mu) and the hooks run after each */
    pthread_mutex_t compact_mu;
    pthread_mutex_t cmp_mu;
    pthread_cond_t cmp_cv;
    pthread_t compactor;
    bool compactor_started, compactor_stop, compact_wanted;
    long long compact_due_ms; /* CLOCK_MONOTONIC ms when the wanted one runs */
    unsigned compact_delay_ms;
    compact_hook hooks[COMPACT_HOOKS]; /* under hooks_mu, held while they run */
    pthread_mutex_t hooks_mu;

    /* post-commit hook (cxm_store_on_commit) */
    pthread_mutex_t hook_mu;
    cxm_commit_fn hook;
    void *hook_user;

    /* write health (cxm_store_on_health): the failure's code, 0 if the last
     * write committed; changed and reported under hook_mu */
    atomic_int write_rc;
    char write_why[320];
    cxm_store_health_fn health_fn;
    void *health_user;
    /* the prober: started at the first failure, probes while it lasts */
    pthread_mutex_t probe_mu;
    pthread_cond_t probe_cv;
    pthread_t prober;
    bool probe_started, probe_stop;
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static cxm_store *registry;

static _Thread_local char tls_err[320];
/* Transactions this thread began and has not ended: such a thread must not
 * wait for a growth (that waits for its own transaction). Atomic because a
 * read transaction handed to another thread is ended there, and its end must
 * still count against the thread that began it (see gate_leave). */
static _Thread_local atomic_int tls_txns;

/* ---- errors ----------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_err, sizeof tls_err, fmt, ap);
    va_end(ap);
    return rc;
}

/* The codes store.h promises are mapped here so the contract does not depend
 * on the general table; everything else goes through cxm_err_from_mdb. */
static int from_mdb(int mdb_rc)
{
    switch (mdb_rc) {
    case MDB_NOTFOUND:
        return CXM_ENOTFOUND;
    case MDB_KEYEXIST:
        return CXM_EEXIST;
    case MDB_MAP_FULL:
        return CXM_EFULL;
    case MDB_BAD_VALSIZE:
        return CXM_ETOOBIG;
    default:
        return cxm_err_from_mdb(mdb_rc);
    }
}

static int mdb_fail(int mdb_rc, const char *what)
{
    return fail(from_mdb(mdb_rc), "%s: %s", what, mdb_strerror(mdb_rc));
}

const char *cxm_store_last_error(void)
{
    return tls_err;
}

/* ---- the gate and map growth ----------------------------------------- */

/* Enter the gate; *owner is where the transaction's end is counted. */
static size_t gate_enter(cxm_store *s, atomic_int **owner)
{
    pthread_mutex_lock(&s->mu);
    /* A thread already inside a transaction passes: growth waits for it. */
    while (s->growing && tls_txns == 0)
        pthread_cond_wait(&s->cv, &s->mu);
    s->active++;
    size_t seen = s->map_size;
    pthread_mutex_unlock(&s->mu);
    tls_txns++;
    *owner = &tls_txns;
    return seen;
}

static void gate_leave(cxm_store *s, atomic_int *owner);

/* Enter the gate for a write transaction: also wait while a compaction
 * copies (a write committed meanwhile would be missing from the copy).
 * A thread holding a read transaction cannot wait (the compaction's swap
 * waits for that transaction): CXM_EBUSY, with *owner untouched. */
static int gate_enter_write(cxm_store *s, size_t *seen, atomic_int **owner)
{
    pthread_mutex_lock(&s->mu);
    while ((s->growing || s->compacting) && tls_txns == 0)
        pthread_cond_wait(&s->cv, &s->mu);
    if (s->compacting) {
        pthread_mutex_unlock(&s->mu);
        return fail(CXM_EBUSY,
                    "%s: a write from a thread holding a read transaction while the store is "
                    "being compacted; end the read transaction first",
                    s->path);
    }
    s->active++;
    s->writing++;
    *seen = s->map_size;
    pthread_mutex_unlock(&s->mu);
    tls_txns++;
    *owner = &tls_txns;
    return 0;
}

static void gate_leave_write(cxm_store *s, atomic_int *owner)
{
    pthread_mutex_lock(&s->mu);
    if (--s->writing == 0 && s->compacting)
        pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    gate_leave(s, owner);
}

/* Leave the gate, counting the end against the thread that entered (owner:
 * from gate_enter; worker threads outlive the transactions they begin). */
static void gate_leave(cxm_store *s, atomic_int *owner)
{
    pthread_mutex_lock(&s->mu);
    if (--s->active == 0 && s->growing)
        pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub(owner, 1);
}

static size_t env_map_size(MDB_env *env)
{
    MDB_envinfo info;
    mdb_env_info(env, &info);
    return info.me_mapsize;
}

/* Called with s->mu held and s->growing set, once no txn is active. adopt:
 * another process grew the file (MDB_MAP_RESIZED); take its size. */
static int resize_locked(cxm_store *s, bool adopt)
{
    size_t want = s->map_size > s->max_map / 2 ? s->max_map : s->map_size * 2;
    int rc = mdb_env_set_mapsize(s->env, adopt ? 0 : want);
    if (rc != 0)
        return mdb_fail(rc, "cannot resize the LMDB map");
    s->map_size = env_map_size(s->env);
    return 0;
}

/* Grow the map after a MAP_FULL seen by a txn that began at map size `seen`.
 * Returns 0 when the caller should retry. */
static int grow(cxm_store *s, size_t seen, bool adopt)
{
    if (tls_txns > 0)
        return fail(CXM_EFULL,
                    "%s: the LMDB map is full and cannot grow while this thread "
                    "holds a transaction",
                    s->path);
    pthread_mutex_lock(&s->mu);
    if (s->growing || s->map_size != seen) {
        /* Someone else is growing or has grown it: wait, then retry. */
        while (s->growing)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (!adopt && s->map_size >= s->max_map) {
        pthread_mutex_unlock(&s->mu);
        return fail(CXM_EFULL, "%s: the LMDB map is full at its cap of %zu bytes", s->path,
                    s->max_map);
    }
    s->growing = true;
    while (s->active > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    int rc = resize_locked(s, adopt);
    s->growing = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc == 0 && !adopt)
        cxm_log_info("store.map_grown", "%s: LMDB map grown to %zu bytes", s->path, s->map_size);
    return rc;
}

/* ---- open / close ----------------------------------------------------- */

static int mkdir_one(const char *path)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST)
        return 0;
    int e = errno;
    char buf[128];
    return fail(cxm_err_from_errno(e), "cannot create data directory \"%s\": %s", path,
                strerror_r(e, buf, sizeof buf));
}

/* mkdir -p: every missing component, then check the result is a directory. */
static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return fail(CXM_ETOOBIG, "data directory path is too long: \"%s\"", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir_one(path);
        *p = '/';
        if (rc != 0)
            return rc;
    }
    int rc = mkdir_one(path);
    if (rc != 0)
        return rc;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail(CXM_EINVAL, "data directory \"%s\" exists but is not a directory", dir);
    return 0;
}

static size_t page_round(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return n < page ? page : n / page * page;
}

/* The holder's pid as written in the lock file, or 0. */
static long lock_holder(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return strtol(buf, NULL, 10);
}

/* LMDB lets two processes share an environment, but two servers on one data
 * directory would each believe they own it (one writer thread each, one
 * segment evaluator each...). The first process takes an exclusive flock on
 * DIR/cxm.lock and writes its pid there; the lock goes with the process, so
 * a crash never leaves it behind. */
static int lock_dir(cxm_store *s)
{
    char path[PATH_MAX + 16], buf[128];
    snprintf(path, sizeof path, "%s/cxm.lock", s->path);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lock_fd < 0)
        return fail(cxm_err_from_errno(errno), "cannot open the lock file \"%s\": %s", path,
                    strerror_r(errno, buf, sizeof buf));
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return fail(cxm_err_from_errno(errno), "cannot lock \"%s\": %s", path,
                        strerror_r(errno, buf, sizeof buf));
        long pid = lock_holder(s->lock_fd);
        return fail(CXM_EBUSY,
                    "data directory \"%s\" is in use by another process (pid %ld); stop it or "
                    "choose another data directory",
                    s->path, pid);
    }
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, buf, (size_t)n, 0) != n)
        return fail(cxm_err_from_errno(errno), "cannot write the lock file \"%s\": %s", path,
                    strerror_r(errno, buf, sizeof buf));
    return 0;
}

static int env_open(cxm_store *s, const cxm_store_opts *o)
{
    s->opts = *o;
    size_t initial = page_round(o->initial_map_size ? o->initial_map_size : DEFAULT_MAP);
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, o->max_dbs ? o->max_dbs : DEFAULT_MAX_DBS);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(s->env, o->max_readers ? o->max_readers : DEFAULT_MAX_READERS);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, initial);
    /* MDB_NOTLS: read txns are objects, not thread slots, so they can be
     * pooled and handed between worker threads. */
    if (rc == 0)
        rc = mdb_env_open(s->env, s->path, MDB_NOTLS | (o->nosync ? MDB_NOSYNC : 0), 0640);
    if (rc != 0) {
        char what[PATH_MAX + 64];
        snprintf(what, sizeof what, "cannot open the LMDB environment in \"%s\"", s->path);
        return mdb_fail(rc, what);
    }
    /* An existing data file larger than the initial size sets the map size. */
    s->map_size = env_map_size(s->env);
    size_t cap = page_round(o->max_map_size ? o->max_map_size : DEFAULT_MAX_MAP);
    s->max_map = cap > s->map_size ? cap : s->map_size;
    return 0;
}

static void writer_stop(cxm_store *s);
static void compactor_stop(cxm_store *s);

static void prober_stop(cxm_store *s);

static void store_free(cxm_store *s)
{
    prober_stop(s); /* it writes */
    compactor_stop(s);
    writer_stop(s);
    while (s->pool) {
        cxm_txn *t = s->pool;
        s->pool = t->next;
        mdb_txn_abort(t->t);
        free(t);
    }
    if (s->env)
        mdb_env_close(s->env);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    for (size_t i = 0; i < s->ndbis; i++)
        free(s->dbis[i].name);
    free(s->dbis);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->dbi_mu);
    pthread_mutex_destroy(&s->wq_mu);
    pthread_mutex_destroy(&s->hook_mu);
    pthread_mutex_destroy(&s->probe_mu);
    pthread_cond_destroy(&s->probe_cv);
    pthread_mutex_destroy(&s->compact_mu);
    pthread_mutex_destroy(&s->cmp_mu);
    pthread_mutex_destroy(&s->hooks_mu);
    pthread_cond_destroy(&s->cmp_cv);
    pthread_cond_destroy(&s->wq_cv);
    pthread_cond_destroy(&s->cv);
    free(s->path);
    free(s);
}

static cxm_store *registry_find(const char *path)
{
    for (cxm_store *s = registry; s; s = s->next)
        if (strcmp(s->path, path) == 0)
            return s;
    return NULL;
}

/* Create and open a store for real path `real` (taken over). Registry held. */
static int store_create(char *real, const cxm_store_opts *opts, cxm_store **out)
{
    cxm_store *s = calloc(1, sizeof *s);
    if (!s) {
        fail(CXM_ENOMEM, "out of memory opening \"%s\"", real);
        free(real);
        return CXM_ENOMEM;
    }
    s->path = real;
    s->refs = 1;
    s->lock_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->dbi_mu, NULL);
    pthread_mutex_init(&s->wq_mu, NULL);
    pthread_mutex_init(&s->hook_mu, NULL);
    pthread_mutex_init(&s->probe_mu, NULL);
    pthread_cond_init(&s->probe_cv, NULL);
    pthread_mutex_init(&s->compact_mu, NULL);
    pthread_mutex_init(&s->cmp_mu, NULL);
    pthread_mutex_init(&s->hooks_mu, NULL);
    pthread_cond_init(&s->cmp_cv, NULL);
    s->compact_delay_ms = DEFAULT_COMPACT_DELAY_MS;
    pthread_cond_init(&s->wq_cv, NULL);
    pthread_cond_init(&s->cv, NULL);
    cxm_store_opts defaults = {0};
    int rc = lock_dir(s);
    if (rc == 0)
        rc = env_open(s, opts ? opts : &defaults);
    if (rc != 0) {
        store_free(s);
        return rc;
    }
    s->next = registry;
    registry = s;
    *out = s;
    return 0;
}

static int store_open(const char *dir, const cxm_store_opts *opts, cxm_store **out)
{
    if (!dir || !*dir)
        return fail(CXM_EINVAL, "no data directory given");
    int rc = mkdir_p(dir);
    if (rc != 0)
        return rc;
    char *real = realpath(dir, NULL);
    if (!real) {
        int e = errno;
        char buf[128];
        return fail(cxm_err_from_errno(e), "cannot resolve data directory \"%s\": %s", dir,
                    strerror_r(e, buf, sizeof buf));
    }
    pthread_mutex_lock(&registry_mu);
    cxm_store *s = registry_find(real);
    if (s) {
        s->refs++;
        free(real);
        *out = s;
    } else {
        rc = store_create(real, opts, out);
    }
    pthread_mutex_unlock(&registry_mu);
    return rc;
}

int cxm_store_open(const char *dir, const cxm_store_opts *opts, cxm_store **out)
{
    int rc = store_open(dir, opts, out);
    if (rc != 0)
        cxm_log_error("store.open_failed", "%s", tls_err);
    return rc;
}

void cxm_store_close(cxm_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&registry_mu);
    if (--s->refs > 0) {
        pthread_mutex_unlock(&registry_mu);
        return;
    }
    for (cxm_store **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    store_free(s);
}

const char *cxm_store_path(const cxm_store *s)
{
    return s->path;
}

size_t cxm_store_map_size(cxm_store *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->map_size;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int cxm_store_max_key(cxm_store *s)
{
    return mdb_env_get_maxkeysize(s->env);
}

MDB_env *cxm_store_env(cxm_store *s)
{
    return s->env;
}

/* ---- write transactions ----------------------------------------------- */

/* ---- group commit ----------------------------------------------------- */

#define BATCH_MAX 512 /* jobs per shared transaction */

/* Jobs share the batch's transaction directly. LMDB's nested transactions
 * would isolate them, but each costs a 2 MiB dirty-list allocation and a
 * merge on commit, which dominated the writer's time. Instead: a job that
 * fails before writing anything needs no undo (most failures are
 * validation against stored state); one that fails after writing makes the
 * batch roll back and run again without it. */
enum { JOB_OK, JOB_GROW, JOB_UNDO };

/* The hook runs under hook_mu so that removing it waits for a running call. */
static void commit_hook(cxm_store *s)
{
    pthread_mutex_lock(&s->hook_mu);
    if (s->hook)
        s->hook(s->hook_user);
    pthread_mutex_unlock(&s->hook_mu);
}

void cxm_store_on_commit(cxm_store *s, cxm_commit_fn fn, void *user)
{
    pthread_mutex_lock(&s->hook_mu);
    s->hook = fn;
    s->hook_user = user;
    pthread_mutex_unlock(&s->hook_mu);
}

static int batch_job(cxm_store *s, MDB_txn *txn, cxm_write_job *job)
{
    cxm_txn t = {.s = s, .t = txn, .write = true};
    job->rc = job->fn(&t, job->user);
    if (t.map_full)
        return JOB_GROW;
    return job->rc != 0 && t.dirty ? JOB_UNDO : JOB_OK;
}

/* One attempt at a batch: JOB_OK = committed (or failed: *commit_rc),
 * JOB_GROW = grow the map and rerun, JOB_UNDO = rerun without a job that
 * failed after writing (now excluded). */
static int batch_once(cxm_store *s, cxm_write_job *jobs, unsigned flags, size_t *seen, bool *adopt,
                      int *commit_rc)
{
    MDB_txn *txn;
    atomic_int *owner;
    int rc = gate_enter_write(s, seen, &owner);
    if (rc != 0) {
        *commit_rc = rc;
        return JOB_OK;
    }
    rc = mdb_txn_begin(s->env, NULL, flags, &txn);
    if (rc != 0) {
        gate_leave_write(s, owner);
        *adopt = rc == MDB_MAP_RESIZED;
        if (*adopt)
            return JOB_GROW;
        *commit_rc = mdb_fail(rc, "cannot begin a write transaction");
        return JOB_OK;
    }
    for (cxm_write_job *j = jobs; j; j = j->next) {
        if (j->excluded)
            continue;
        int r = batch_job(s, txn, j);
        if (r != JOB_OK) {
            j->excluded = r == JOB_UNDO;
            mdb_txn_abort(txn);
            gate_leave_write(s, owner);
            return r;
        }
    }
    rc = mdb_txn_commit(txn);
    gate_leave_write(s, owner);
    if (rc == MDB_MAP_FULL)
        return JOB_GROW;
    *commit_rc = rc == 0 ? 0 : mdb_fail(rc, "cannot commit a write transaction");
    return JOB_OK;
}

/* The slot for msg: its own, else an empty one, else the one logged
 * longest ago. s->mu held. */
static fail_note *fail_slot(cxm_store *s, const char *msg)
{
    fail_note *pick = &s->fails[0];
    for (int i = 0; i < FAIL_LOG_CAUSES; i++) {
        fail_note *f = &s->fails[i];
        if (strcmp(f->msg, msg) == 0)
            return f;
        if (pick->msg[0] && (!f->msg[0] || f->next_log_s < pick->next_log_s))
            pick = f;
    }
    snprintf(pick->msg, sizeof pick->msg, "%s", msg);
    pick->next_log_s = 0;
    pick->suppressed = 0;
    return pick;
}

/* A write failed for a reason of the store's own (full map or disk, I/O):
 * the caller answers its client, and operators hear of it here, once per
 * cause per FAIL_LOG_EVERY_S with a count of the repeats not logged, so a
 * full disk under load is one line a minute rather than one per request. */
static void note_write_failure(cxm_store *s, const char *msg)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&s->mu);
    fail_note *f = fail_slot(s, msg);
    bool log = now.tv_sec >= f->next_log_s;
    unsigned suppressed = f->suppressed;
    if (log) {
        f->next_log_s = now.tv_sec + FAIL_LOG_EVERY_S;
        f->suppressed = 0;
    } else {
        f->suppressed++;
    }
    pthread_mutex_unlock(&s->mu);
    if (!log)
        return;
    char repeats[80] = "";
    if (suppressed)
        snprintf(repeats, sizeof repeats, " (%u more since the last report, not logged)",
                 suppressed);
    bool named = strstr(msg, s->path) != NULL; /* LMDB's own errors do not name it */
    cxm_log_error("store.write_failed", "%s%s%s%s", named ? "" : s->path, named ? "" : ": ", msg,
                  repeats);
}

/* ---- write health ---------------------------------------------------- */

static void *prober_main(void *arg);

/* The store's writes work (rc 0) or fail (rc, why): report a change to the
 * health hook, and start the prober at the first failure. The common case,
 * healthy and still healthy, is one atomic load. */
static void set_write_health(cxm_store *s, int rc, const char *why)
{
    if ((atomic_load_explicit(&s->write_rc, memory_order_acquire) == 0) == (rc == 0))
        return;
    pthread_mutex_lock(&s->hook_mu);
    int was = atomic_load_explicit(&s->write_rc, memory_order_relaxed);
    bool changed = (was == 0) != (rc == 0);
    if (changed) {
        snprintf(s->write_why, sizeof s->write_why, "%s", rc ? why : "");
        atomic_store_explicit(&s->write_rc, rc, memory_order_release);
        if (s->health_fn)
            s->health_fn(s->health_user, rc, s->write_why);
    }
    pthread_mutex_unlock(&s->hook_mu);
    if (!changed || rc == 0)
        return;
    pthread_mutex_lock(&s->probe_mu);
    if (!s->probe_started && !s->probe_stop)
        s->probe_started = pthread_create(&s->prober, NULL, prober_main, s) == 0;
    pthread_mutex_unlock(&s->probe_mu);
}

void cxm_store_on_health(cxm_store *s, cxm_store_health_fn fn, void *user)
{
    pthread_mutex_lock(&s->hook_mu);
    s->health_fn = fn;
    s->health_user = user;
    int rc = atomic_load_explicit(&s->write_rc, memory_order_relaxed);
    if (fn && rc)
        fn(user, rc, s->write_why);
    pthread_mutex_unlock(&s->hook_mu);
}

int cxm_store_health(cxm_store *s, char *why, size_t cap)
{
    pthread_mutex_lock(&s->hook_mu);
    int rc = atomic_load_explicit(&s->write_rc, memory_order_relaxed);
    if (why && cap)
        snprintf(why, cap, "%s", s->write_why);
    pthread_mutex_unlock(&s->hook_mu);
    return rc;
}

static int probe_fn(cxm_txn *t, void *user)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    return cxm_txn_put(t, *(MDB_dbi *)user, "last", 4, &ms, sizeof ms, 0);
}

/* While writes fail, write a timestamp every PROBE_EVERY_MS: a store that
 * gets no writes must still notice that the disk has room again. A probe
 * that fails is a failed write like any other (logged by cause, rate
 * limited); one that commits makes the store healthy. */
static void *prober_main(void *arg)
{
    cxm_store *s = arg;
    pthread_mutex_lock(&s->probe_mu);
    while (!s->probe_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(PROBE_EVERY_MS % 1000) * 1000000L;
        until.tv_sec += PROBE_EVERY_MS / 1000 + until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->probe_cv, &s->probe_mu, &until);
        if (s->probe_stop || atomic_load(&s->write_rc) == 0)
            continue;
        pthread_mutex_unlock(&s->probe_mu);
        MDB_dbi dbi;
        if (cxm_store_dbi(s, PROBE_TABLE, 0, &dbi) == 0)
            cxm_store_write(s, probe_fn, &dbi);
        pthread_mutex_lock(&s->probe_mu);
    }
    pthread_mutex_unlock(&s->probe_mu);
    return NULL;
}

static void prober_stop(cxm_store *s)
{
    pthread_mutex_lock(&s->probe_mu);
    bool started = s->probe_started;
    s->probe_stop = true;
    pthread_cond_signal(&s->probe_cv);
    pthread_mutex_unlock(&s->probe_mu);
    if (started)
        pthread_join(s->prober, NULL);
}

static void run_batch(cxm_store *s, cxm_write_job *jobs, unsigned flags)
{
    int commit_rc = 0;
    for (;;) {
        size_t seen = 0;
        bool adopt = false;
        int r = batch_once(s, jobs, flags, &seen, &adopt, &commit_rc);
        if (r == JOB_OK)
            break;
        if (r == JOB_GROW && (commit_rc = grow(s, seen, adopt)) != 0)
            break;
    }
    if (commit_rc == 0) {
        commit_hook(s);
        set_write_health(s, 0, NULL);
    } else {
        const char *why = tls_err[0] ? tls_err : cxm_strerror(commit_rc);
        note_write_failure(s, why);
        set_write_health(s, commit_rc, why);
    }
    for (cxm_write_job *j = jobs, *next; j; j = next) {
        next = j->next; /* done may release the job's memory */
        j->done(j->user, j->rc != 0 ? j->rc : commit_rc);
    }
}

/* cxm_store_write is a batch of one, run on the calling thread: one commit
 * protocol (map growth, undo of a failed job) for both paths. */
typedef struct sync_write {
    cxm_txn_fn fn;
    void *user;
    int rc;
} sync_write;

static int sync_fn(cxm_txn *t, void *user)
{
    sync_write *w = user;
    return w->fn(t, w->user);
}

static void sync_done(void *user, int rc)
{
    ((sync_write *)user)->rc = rc;
}

int cxm_store_write_flags(cxm_store *s, unsigned flags, cxm_txn_fn fn, void *user)
{
    sync_write w = {fn, user, 0};
    cxm_write_job job = {.fn = sync_fn, .done = sync_done, .user = &w};
    run_batch(s, &job, flags & CXM_WRITE_NOMETASYNC);
    return w.rc;
}

int cxm_store_write(cxm_store *s, cxm_txn_fn fn, void *user)
{
    return cxm_store_write_flags(s, 0, fn, user);
}

/* Take up to BATCH_MAX queued jobs; NULL once stopping with an empty queue. */
static cxm_write_job *take_batch(cxm_store *s)
{
    pthread_mutex_lock(&s->wq_mu);
    while (!s->wq_head && !s->writer_stop)
        pthread_cond_wait(&s->wq_cv, &s->wq_mu);
    cxm_write_job *head = s->wq_head, *last = head;
    for (int n = 1; last && last->next && n < BATCH_MAX; n++)
        last = last->next;
    if (last) {
        s->wq_head = last->next;
        if (!s->wq_head)
            s->wq_tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&s->wq_mu);
    return head;
}

static void *writer_main(void *arg)
{
    cxm_store *s = arg;
    for (cxm_write_job *jobs; (jobs = take_batch(s));)
        run_batch(s, jobs, 0);
    return NULL;
}

void cxm_store_submit(cxm_store *s, cxm_write_job *job)
{
    job->rc = 0;
    job->excluded = false;
    job->next = NULL;
    pthread_mutex_lock(&s->wq_mu);
    if (!s->writer_started) {
        if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
            pthread_mutex_unlock(&s->wq_mu);
            job->done(job->user, fail(CXM_EBUSY, "cannot start the store's writer thread"));
            return;
        }
        s->writer_started = true;
    }
    if (s->wq_tail)
        s->wq_tail->next = job;
    else
        s->wq_head = job;
    s->wq_tail = job;
    pthread_cond_signal(&s->wq_cv);
    pthread_mutex_unlock(&s->wq_mu);
}

static void writer_stop(cxm_store *s)
{
    pthread_mutex_lock(&s->wq_mu);
    bool started = s->writer_started;
    s->writer_stop = true;
    pthread_cond_signal(&s->wq_cv);
    pthread_mutex_unlock(&s->wq_mu);
    if (started)
        pthread_join(s->writer, NULL);
}

/* ---- read transactions ------------------------------------------------ */

static void read_discard(cxm_txn *t)
{
    if (t->t)
        mdb_txn_abort(t->t);
    free(t);
}

/* A pooled txn renewed, or a new one. */
static int read_begin_once(cxm_store *s, cxm_txn **out)
{
    pthread_mutex_lock(&s->mu);
    cxm_txn *t = s->pool;
    if (t) {
        s->pool = t->next;
        s->pooled--;
    }
    pthread_mutex_unlock(&s->mu);
    int rc;
    if (t) {
        rc = mdb_txn_renew(t->t);
    } else {
        t = calloc(1, sizeof *t);
        if (!t)
            return fail(CXM_ENOMEM, "out of memory beginning a read transaction");
        t->s = s;
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->t);
        if (rc != 0)
            t->t = NULL;
    }
    if (rc != 0) {
        read_discard(t);
        return rc == MDB_MAP_RESIZED ? 1 : mdb_fail(rc, "cannot begin a read transaction");
    }
    t->next = NULL;
    *out = t;
    return 0;
}

int cxm_store_read_begin(cxm_store *s, cxm_txn **out)
{
    for (;;) {
        atomic_int *owner;
        size_t seen = gate_enter(s, &owner);
        int rc = read_begin_once(s, out);
        if (rc == 0) {
            (*out)->seen_map = seen;
            (*out)->owner_txns = owner;
            return 0;
        }
        gate_leave(s, owner);
        if (rc != 1)
            return rc;
        if ((rc = grow(s, seen, true)) != 0)
            return rc;
    }
}

void cxm_store_read_end(cxm_txn *t)
{
    if (!t)
        return;
    cxm_store *s = t->s;
    atomic_int *owner = t->owner_txns; /* t may be reused once pooled */
    mdb_txn_reset(t->t);
    pthread_mutex_lock(&s->mu);
    bool keep = s->pooled < READ_POOL_MAX;
    if (keep) {
        t->next = s->pool;
        s->pool = t;
        s->pooled++;
    }
    pthread_mutex_unlock(&s->mu);
    if (!keep)
        read_discard(t);
    gate_leave(s, owner);
}

int cxm_store_read(cxm_store *s, cxm_txn_fn fn, void *user)
{
    cxm_txn *t;
    int rc = cxm_store_read_begin(s, &t);
    if (rc != 0)
        return rc;
    rc = fn(t, user);
    cxm_store_read_end(t);
    return rc;
}

MDB_txn *cxm_txn_mdb(cxm_txn *t)
{
    return t->t;
}

/* ---- named databases -------------------------------------------------- */

typedef struct dbi_open_ctx {
    const char *name;
    unsigned flags;
    MDB_dbi dbi;
} dbi_open_ctx;

static int dbi_open_fn(cxm_txn *t, void *user)
{
    dbi_open_ctx *c = user;
    int rc = mdb_dbi_open(t->t, c->name, c->flags | MDB_CREATE, &c->dbi);
    if (rc == MDB_MAP_FULL)
        t->map_full = true;
    if (rc == 0)
        return 0;
    char what[160];
    snprintf(what, sizeof what, "cannot open database \"%.100s\"", c->name);
    return mdb_fail(rc, what);
}

static bool dbi_lookup(cxm_store *s, const char *name, MDB_dbi *out)
{
    bool found = false;
    pthread_mutex_lock(&s->dbi_mu);
    for (size_t i = 0; i < s->ndbis && !found; i++) {
        if (strcmp(s->dbis[i].name, name) == 0) {
            *out = s->dbis[i].dbi;
            found = true;
        }
    }
    pthread_mutex_unlock(&s->dbi_mu);
    return found;
}

static int dbi_remember(cxm_store *s, const char *name, MDB_dbi dbi, unsigned flags)
{
    int rc = 0;
    pthread_mutex_lock(&s->dbi_mu);
    bool known = false;
    for (size_t i = 0; i < s->ndbis && !known; i++)
        known = strcmp(s->dbis[i].name, name) == 0; /* another thread raced us: same handle */
    if (!known) {
        dbi_entry *grown = realloc(s->dbis, (s->ndbis + 1) * sizeof *grown);
        char *copy = strdup(name);
        if (grown)
            s->dbis = grown;
        if (grown && copy)
            s->dbis[s->ndbis++] = (dbi_entry){copy, dbi, flags};
        else {
            free(copy);
            rc = fail(CXM_ENOMEM, "out of memory caching database \"%s\"", name);
        }
    }
    pthread_mutex_unlock(&s->dbi_mu);
    return rc;
}

int cxm_store_dbi(cxm_store *s, const char *name, unsigned flags, MDB_dbi *out)
{
    if (!name || !*name)
        return fail(CXM_EINVAL, "a database needs a name");
    if (dbi_lookup(s, name, out))
        return 0;
    /* Opened in its own write txn so the handle is shared once committed;
     * LMDB serialises write txns, which is what mdb_dbi_open requires. */
    dbi_open_ctx c = {name, flags, 0};
    /* No compaction between the open and the remembering: it reopens only
     * the databases it knows of. */
    pthread_mutex_lock(&s->compact_mu);
    int rc = cxm_store_write(s, dbi_open_fn, &c);
    if (rc == 0)
        rc = dbi_remember(s, name, c.dbi, flags);
    pthread_mutex_unlock(&s->compact_mu);
    if (rc == 0)
        *out = c.dbi;
    return rc;
}

int cxm_store_dbis(cxm_store *store, const cxm_store_table *tables, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = cxm_store_dbi(store, tables[i].name, 0, tables[i].dbi);
    return rc;
}

/* ---- get / put / del -------------------------------------------------- */

static int check_key(cxm_txn *t, size_t klen)
{
    int max = mdb_env_get_maxkeysize(t->s->env);
    if (klen == 0 || klen > (size_t)max)
        return fail(CXM_ETOOBIG, "a key of %zu bytes: LMDB keys are 1 to %d bytes", klen, max);
    return 0;
}

int cxm_txn_get_ref(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, const void **val,
                    size_t *vlen)
{
    int rc = check_key(t, klen);
    if (rc != 0)
        return rc;
    MDB_val k = {klen, (void *)key}, v;
    rc = mdb_get(t->t, dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return CXM_ENOTFOUND;
    if (rc != 0)
        return mdb_fail(rc, "cannot read a key");
    *val = v.mv_data;
    *vlen = v.mv_size;
    return 0;
}

int cxm_txn_get(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, cxm_arena *a, void **val,
                size_t *vlen)
{
    const void *ref = NULL;
    size_t n = 0;
    int rc = cxm_txn_get_ref(t, dbi, key, klen, &ref, &n);
    if (rc != 0)
        return rc;
    char *copy = cxm_arena_alloc(a, n + 1);
    if (!copy)
        return fail(CXM_ENOMEM, "the arena refused %zu bytes for a value", n + 1);
    memcpy(copy, ref, n);
    copy[n] = '\0';
    *val = copy;
    *vlen = n;
    return 0;
}

/* MAP_FULL poisons the LMDB txn; remember it so cxm_store_write grows and
 * reruns even if fn swallowed the error. */
static int write_fail(cxm_txn *t, int mdb_rc, const char *what)
{
    if (mdb_rc == MDB_MAP_FULL)
        t->map_full = true;
    if (mdb_rc == MDB_NOTFOUND)
        return CXM_ENOTFOUND;
    if (mdb_rc == MDB_KEYEXIST)
        return CXM_EEXIST;
    return mdb_fail(mdb_rc, what);
}

int cxm_txn_put(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen,
                unsigned flags)
{
    if (!t->write)
        return fail(CXM_EINVAL, "put in a read transaction");
    int rc = check_key(t, klen);
    if (rc != 0)
        return rc;
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    t->dirty = true;
    rc = mdb_put(t->t, dbi, &k, &v, (flags & CXM_PUT_NOOVERWRITE) ? MDB_NOOVERWRITE : 0);
    return rc == 0 ? 0 : write_fail(t, rc, "cannot write a key");
}

int cxm_txn_del(cxm_txn *t, MDB_dbi dbi, const void *key, size_t klen)
{
    if (!t->write)
        return fail(CXM_EINVAL, "delete in a read transaction");
    int rc = check_key(t, klen);
    if (rc != 0)
        return rc;
    MDB_val k = {klen, (void *)key};
    t->dirty = true;
    rc = mdb_del(t->t, dbi, &k, NULL);
    return rc == 0 ? 0 : write_fail(t, rc, "cannot delete a key");
}

/* ---- iteration -------------------------------------------------------- */

/* LMDB's default order: memcmp, then shorter first. */
static int key_cmp(const MDB_val *k, const void *b, size_t blen)
{
    size_t n = k->mv_size < blen ? k->mv_size : blen;
    int c = n ? memcmp(k->mv_data, b, n) : 0;
    if (c != 0)
        return c;
    return k->mv_size < blen ? -1 : k->mv_size > blen;
}

int cxm_iter_range(cxm_txn *t, MDB_dbi dbi, const void *from, size_t from_len, const void *to,
                   size_t to_len, bool reverse, cxm_iter *it)
{
    memset(it, 0, offsetof(cxm_iter, succ));
    int rc = mdb_cursor_open(t->t, dbi, &it->cur);
    if (rc != 0) {
        it->cur = NULL;
        return mdb_fail(rc, "cannot open a cursor");
    }
    it->from = from;
    it->from_len = from ? from_len : 0;
    it->to = to;
    it->to_len = to ? to_len : 0;
    it->reverse = reverse;
    return 0;
}

int cxm_iter_prefix(cxm_txn *t, MDB_dbi dbi, const void *prefix, size_t len, bool reverse,
                    cxm_iter *it)
{
    it->cur = NULL; /* so that cxm_iter_close is safe after a failure */
    if (len > sizeof it->succ)
        return fail(CXM_ETOOBIG, "a scan prefix of %zu bytes is longer than any key", len);
    int rc = cxm_iter_range(t, dbi, prefix, len, NULL, 0, reverse, it);
    if (rc != 0)
        return rc;
    cxm_key_successor(prefix, len, it->succ, &it->to_len);
    it->to = it->succ;
    return 0;
}

/* Position on the first entry of the walk. */
static int iter_first(cxm_iter *it, MDB_val *k, MDB_val *v)
{
    if (!it->reverse) {
        if (it->from_len == 0)
            return mdb_cursor_get(it->cur, k, v, MDB_FIRST);
        *k = (MDB_val){it->from_len, (void *)it->from};
        return mdb_cursor_get(it->cur, k, v, MDB_SET_RANGE);
    }
    if (it->to_len == 0)
        return mdb_cursor_get(it->cur, k, v, MDB_LAST);
    /* The last key below `to`: the one before the first key >= to. */
    *k = (MDB_val){it->to_len, (void *)it->to};
    int rc = mdb_cursor_get(it->cur, k, v, MDB_SET_RANGE);
    if (rc == 0)
        return mdb_cursor_get(it->cur, k, v, MDB_PREV);
    return rc == MDB_NOTFOUND ? mdb_cursor_get(it->cur, k, v, MDB_LAST) : rc;
}

static bool in_range(const cxm_iter *it, const MDB_val *k)
{
    if (!it->reverse)
        return it->to_len == 0 || key_cmp(k, it->to, it->to_len) < 0;
    return it->from_len == 0 || key_cmp(k, it->from, it->from_len) >= 0;
}

int cxm_iter_next(cxm_iter *it)
{
    if (it->done || !it->cur)
        return CXM_ENOTFOUND;
    MDB_val k, v;
    int rc;
    if (!it->started) {
        it->started = true;
        rc = iter_first(it, &k, &v);
    } else {
        rc = mdb_cursor_get(it->cur, &k, &v, it->reverse ? MDB_PREV : MDB_NEXT);
    }
    if (rc == 0 && !in_range(it, &k))
        rc = MDB_NOTFOUND;
    if (rc != 0) {
        it->done = true;
        return rc == MDB_NOTFOUND ? CXM_ENOTFOUND : mdb_fail(rc, "cannot move a cursor");
    }
    it->key = k.mv_data;
    it->klen = k.mv_size;
    it->val = v.mv_data;
    it->vlen = v.mv_size;
    return 0;
}

void cxm_iter_close(cxm_iter *it)
{
    if (it->cur)
        mdb_cursor_close(it->cur);
    it->cur = NULL;
    it->done = true;
}

int cxm_txn_scan_prefix(cxm_txn *t, MDB_dbi dbi, const void *prefix, size_t len, bool reverse,
                        cxm_scan_fn fn, void *user)
{
    cxm_iter it;
    int rc = cxm_iter_prefix(t, dbi, prefix, len, reverse, &it);
    while (rc == 0 && (rc = cxm_iter_next(&it)) == 0)
        rc = fn(it.key, it.klen, it.val, it.vlen, user);
    cxm_iter_close(&it);
    if (rc == CXM_ENOTFOUND || rc > 0)
        return 0;
    return rc;
}

/* ---- compaction ------------------------------------------------------- */

/* Paths of the copy beside data.mdb (MDB_NOSUBDIR: its lock file is
 * "<copy>-lock"). */
static void compact_paths(const cxm_store *s, char *copy, char *lock, char *data, size_t len)
{
    snprintf(copy, len, "%s/data.mdb.compact", s->path);
    snprintf(lock, len, "%s/data.mdb.compact-lock", s->path);
    snprintf(data, len, "%s/data.mdb", s->path);
}

static int errno_fail(const char *what, const char *path)
{
    int e = errno;
    char buf[128];
    return fail(cxm_err_from_errno(e), "%s \"%s\": %s", what, path, strerror_r(e, buf, sizeof buf));
}

/* Append every entry of `from` (open in rtxn) into the database of the same
 * name and flags in `to`, committing every COMPACT_COMMIT_BYTES so the
 * copy's dirty pages stay bounded. Those commits leave free pages in the
 * copy, but they hold copies of live entries only. */
static int copy_db(MDB_txn *rtxn, MDB_dbi from, const char *name, MDB_env *to)
{
    unsigned flags = 0;
    mdb_dbi_flags(rtxn, from, &flags);
    MDB_cursor *rc_cur = NULL, *wc = NULL;
    MDB_txn *w = NULL;
    MDB_dbi dst;
    MDB_val k, v;
    size_t bytes = 0;
    int rc = mdb_cursor_open(rtxn, from, &rc_cur);
    if (rc == 0 && (rc = mdb_txn_begin(to, NULL, 0, &w)) == 0)
        rc = mdb_dbi_open(w, name, flags | MDB_CREATE, &dst);
    if (rc == 0)
        rc = mdb_cursor_open(w, dst, &wc);
    unsigned put = flags & MDB_DUPSORT ? MDB_APPENDDUP : MDB_APPEND;
    for (int op = MDB_FIRST; rc == 0; op = MDB_NEXT) {
        if ((rc = mdb_cursor_get(rc_cur, &k, &v, op)) != 0)
            break;
        if ((rc = mdb_cursor_put(wc, &k, &v, put)) != 0)
            break;
        bytes += k.mv_size + v.mv_size;
        if (bytes < COMPACT_COMMIT_BYTES)
            continue;
        bytes = 0;
        wc = NULL; /* a write txn's cursors end with it */
        if ((rc = mdb_txn_commit(w)) != 0 || (rc = mdb_txn_begin(to, NULL, 0, &w)) != 0) {
            w = NULL;
            break;
        }
        rc = mdb_cursor_open(w, dst, &wc);
    }
    if (rc_cur)
        mdb_cursor_close(rc_cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (w && rc == 0)
        rc = mdb_txn_commit(w);
    else if (w)
        mdb_txn_abort(w);
    if (rc == 0)
        return 0;
    char what[160];
    snprintf(what, sizeof what, "compaction: cannot copy database \"%.100s\"", name);
    return mdb_fail(rc, what);
}

/* Walk the main database (its keys are the named databases) and copy each. */
static int copy_all(MDB_txn *rtxn, MDB_env *to)
{
    MDB_dbi main_dbi;
    MDB_cursor *cur;
    int rc = mdb_dbi_open(rtxn, NULL, 0, &main_dbi);
    if (rc == 0)
        rc = mdb_cursor_open(rtxn, main_dbi, &cur);
    if (rc != 0)
        return mdb_fail(rc, "compaction: cannot read the list of databases");
    MDB_val k, v;
    for (int op = MDB_FIRST; rc == 0; op = MDB_NEXT) {
        if ((rc = mdb_cursor_get(cur, &k, &v, op)) != 0) {
            rc = rc == MDB_NOTFOUND ? 0 : mdb_fail(rc, "compaction: cannot list the databases");
            break;
        }
        char name[256];
        if (k.mv_size == 0 || k.mv_size >= sizeof name || memchr(k.mv_data, 0, k.mv_size)) {
            rc = fail(CXM_ECORRUPT, "compaction: the main database holds a key that is no "
                                    "database name; cxm keeps none there");
            break;
        }
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        MDB_dbi dbi;
        /* A handle this process has is returned as is; another (a table no
         * module opened this time) is opened for this read txn only. */
        if ((rc = mdb_dbi_open(rtxn, name, 0, &dbi)) != 0)
            rc = mdb_fail(rc, "compaction: cannot open a database to copy");
        else
            rc = copy_db(rtxn, dbi, name, to);
    }
    mdb_cursor_close(cur);
    return rc;
}

/* Write the compact copy of the current snapshot into `copy`, fsync'ed. */
static int write_copy(cxm_store *s, const char *copy, const char *lock)
{
    unlink(copy); /* a copy left by a crash: start again */
    unlink(lock);
    MDB_env *to;
    MDB_txn *rtxn = NULL;
    atomic_int *owner;
    int rc = mdb_env_create(&to);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(to, s->opts.max_dbs ? s->opts.max_dbs : DEFAULT_MAX_DBS);
    if (rc == 0)
        rc =
            mdb_env_set_mapsize(to, page_round(cxm_store_map_size(s) / 4 * 5)); /* + commits' COW */
    if (rc == 0)
        rc = mdb_env_open(to, copy, MDB_NOSUBDIR | MDB_NOSYNC, 0640);
    if (rc != 0) {
        mdb_env_close(to);
        return mdb_fail(rc, "compaction: cannot create the copy");
    }
    gate_enter(s, &owner);
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &rtxn);
    rc = rc == 0 ? copy_all(rtxn, to) : mdb_fail(rc, "compaction: cannot begin a read txn");
    if (rtxn)
        mdb_txn_abort(rtxn);
    gate_leave(s, owner);
    if (rc == 0 && (rc = mdb_env_sync(to, 1)) != 0)
        rc = mdb_fail(rc, "compaction: cannot sync the copy");
    mdb_env_close(to);
    unlink(lock);
    if (rc != 0)
        unlink(copy);
    return rc;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int rc = errno_fail("compaction: cannot sync the directory", dir);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    return 0;
}

/* Reopen the environment on the new file and the named databases in their
 * original order, which gives them the same handles. With s->mu held and
 * no transaction active. A failure here leaves the store unusable: the
 * handles the modules hold would point nowhere. */
static int reopen_locked(cxm_store *s)
{
    while (s->pool) {
        cxm_txn *t = s->pool;
        s->pool = t->next;
        mdb_txn_abort(t->t);
        free(t);
    }
    s->pooled = 0;
    mdb_env_close(s->env);
    s->env = NULL;
    cxm_store_opts o = s->opts;
    o.initial_map_size = s->map_size;
    int rc = env_open(s, &o);
    MDB_txn *w = NULL;
    if (rc == 0 && (rc = mdb_txn_begin(s->env, NULL, 0, &w)) != 0)
        return mdb_fail(rc, "compaction: cannot begin a write txn on the new file");
    pthread_mutex_lock(&s->dbi_mu);
    for (size_t i = 0; rc == 0 && i < s->ndbis; i++) {
        MDB_dbi dbi;
        rc = mdb_dbi_open(w, s->dbis[i].name, s->dbis[i].flags | MDB_CREATE, &dbi);
        if (rc != 0)
            rc = mdb_fail(rc, "compaction: cannot reopen a database");
        else if (dbi != s->dbis[i].dbi)
            rc = fail(CXM_EINTERNAL,
                      "compaction: database \"%s\" reopened as handle %u instead of %u",
                      s->dbis[i].name, dbi, s->dbis[i].dbi);
    }
    pthread_mutex_unlock(&s->dbi_mu);
    if (w && rc == 0 && (rc = mdb_txn_commit(w)) != 0)
        rc = mdb_fail(rc, "compaction: cannot commit the reopened databases");
    else if (w && rc != 0)
        mdb_txn_abort(w);
    return rc;
}

/* Swap the copy in once every transaction has ended (writers are held off
 * already). */
static int swap_in(cxm_store *s, const char *copy, const char *lock, const char *data)
{
    pthread_mutex_lock(&s->mu);
    s->growing = true;
    while (s->active > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    int rc = 0;
    if (rename(copy, data) != 0)
        rc = errno_fail("compaction: cannot rename the copy over", data);
    if (rc == 0 && (rc = fsync_dir(s->path)) == 0 && (rc = reopen_locked(s)) == 0)
        s->compactions++;
    s->growing = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc != 0)
        unlink(copy);
    unlink(lock);
    return rc;
}

static int compact_locked(cxm_store *s)
{
    char copy[PATH_MAX + 32], lock[PATH_MAX + 32], data[PATH_MAX + 32];
    compact_paths(s, copy, lock, data, sizeof copy);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_mutex_lock(&s->mu);
    s->compacting = true;
    while (s->writing > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    int rc = write_copy(s, copy, lock);
    if (rc == 0)
        rc = swap_in(s, copy, lock, data);
    pthread_mutex_lock(&s->mu);
    s->compacting = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    struct stat st;
    long long size = stat(data, &st) == 0 ? (long long)st.st_size : -1;
    if (rc == 0)
        cxm_log_info("store.compacted",
                     "%s: data.mdb rewritten with live data only: %lld bytes "
                     "in %.1f ms",
                     s->path, size, ms);
    else
        cxm_log_error("store.compact_failed", "%s", tls_err);
    return rc;
}

int cxm_store_compact(cxm_store *s)
{
    if (tls_txns > 0)
        return fail(CXM_EBUSY,
                    "%s: cannot compact from a thread that holds a transaction (the compaction "
                    "waits for every transaction to end)",
                    s->path);
    pthread_mutex_lock(&s->compact_mu);
    int rc = compact_locked(s);
    pthread_mutex_unlock(&s->compact_mu);
    return rc;
}

uint64_t cxm_store_compactions(cxm_store *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->compactions;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- the compactor thread and its hooks ---- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_hooks(cxm_store *s)
{
    pthread_mutex_lock(&s->hooks_mu);
    for (int i = 0; i < COMPACT_HOOKS; i++)
        if (s->hooks[i].fn)
            s->hooks[i].fn(s, s->hooks[i].user);
    pthread_mutex_unlock(&s->hooks_mu);
}

/* Wait until a wanted compaction is due; false when stopping. */
static bool compactor_wait(cxm_store *s)
{
    pthread_mutex_lock(&s->cmp_mu);
    for (;;) {
        if (s->compactor_stop) {
            pthread_mutex_unlock(&s->cmp_mu);
            return false;
        }
        long long wait = s->compact_due_ms - now_ms();
        if (s->compact_wanted && wait <= 0)
            break;
        if (!s->compact_wanted) {
            pthread_cond_wait(&s->cmp_cv, &s->cmp_mu);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += wait / 1000;
        until.tv_nsec += (wait % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cmp_cv, &s->cmp_mu, &until);
    }
    s->compact_wanted = false;
    pthread_mutex_unlock(&s->cmp_mu);
    return true;
}

static void *compactor_main(void *arg)
{
    cxm_store *s = arg;
    while (compactor_wait(s)) {
        if (cxm_store_compact(s) == 0)
            run_hooks(s);
        else
            cxm_store_compact_request(s); /* logged; try again after the delay */
    }
    return NULL;
}

void cxm_store_compact_request(cxm_store *s)
{
    pthread_mutex_lock(&s->cmp_mu);
    if (!s->compactor_started && !s->compactor_stop) {
        if (pthread_create(&s->compactor, NULL, compactor_main, s) != 0) {
            pthread_mutex_unlock(&s->cmp_mu);
            cxm_log_error("store.compact_failed", "%s: cannot start the compactor thread", s->path);
            return;
        }
        s->compactor_started = true;
    }
    if (!s->compact_wanted) {
        s->compact_wanted = true;
        s->compact_due_ms = now_ms() + s->compact_delay_ms;
    }
    pthread_cond_signal(&s->cmp_cv);
    pthread_mutex_unlock(&s->cmp_mu);
}

void cxm_store_set_compact_delay(cxm_store *s, unsigned delay_ms)
{
    pthread_mutex_lock(&s->cmp_mu);
    s->compact_delay_ms = delay_ms;
    pthread_mutex_unlock(&s->cmp_mu);
}

/* A wanted compaction not yet run when the store closes is lost with it;
 * its callers find their erasures unconfirmed at the next open and ask
 * again (see svc.c). */
static void compactor_stop(cxm_store *s)
{
    pthread_mutex_lock(&s->cmp_mu);
    bool started = s->compactor_started;
    s->compactor_stop = true;
    pthread_cond_signal(&s->cmp_cv);
    pthread_mutex_unlock(&s->cmp_mu);
    if (started)
        pthread_join(s->compactor, NULL);
}

int cxm_store_on_compacted(cxm_store *s, cxm_compacted_fn fn, void *user)
{
    int rc = CXM_EFULL;
    pthread_mutex_lock(&s->hooks_mu);
    for (int i = 0; i < COMPACT_HOOKS; i++) {
        if (!s->hooks[i].fn) {
            s->hooks[i] = (compact_hook){fn, user};
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->hooks_mu);
    return rc == 0 ? 0 : fail(rc, "%s: more than %d compaction hooks", s->path, COMPACT_HOOKS);
}

void cxm_store_on_compacted_remove(cxm_store *s, cxm_compacted_fn fn, void *user)
{
    pthread_mutex_lock(&s->hooks_mu);
    for (int i = 0; i < COMPACT_HOOKS; i++)
        if (s->hooks[i].fn == fn && s->hooks[i].user == user)
            s->hooks[i] = (compact_hook){NULL, NULL};
    pthread_mutex_unlock(&s->hooks_mu);
}
