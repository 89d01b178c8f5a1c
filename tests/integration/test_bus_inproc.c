/*
 * test_bus_inproc.c - integration.bus.inproc_kill9: the event bus delivering
 * in process (no NATS) under kill -9. Each trial runs `bus_producer DIR
 * inproc` (producer and subscriber in one process, one LMDB environment) on
 * a fresh data directory, kills it with SIGKILL at random moments and starts
 * it again on the same directory until it finishes, then checks:
 *   - no acknowledged write job was lost: every run's "start D" is at least
 *     the largest "acked N" any earlier run printed;
 *   - every event was applied exactly once and in order (bus_table.h);
 *   - the outbox is empty and the subscriber applied the last sequence.
 *
 *   test_bus_inproc BUS_PRODUCER [SEED]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "bus_table.h"
#include "cxm/log.h"

#define TRIALS 3
#define KILLS 6 /* per trial */
#define COUNT 20000
#define TRIAL_DEADLINE_MS 30000

extern char **environ;

static char root[] = "/tmp/cxm-test-businproc-XXXXXX";
static pid_t running; /* the producer of the current trial, killed if a check fails */

/* Start the producer with its stdout appended to acks (one file for every
 * run of a trial, so the lines stay in the order they were written). */
static void spawn(char *const *argv, const char *acks)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, acks, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int rc = posix_spawn(&running, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    CHECK(rc == 0, "spawn %s: %s", argv[0], strerror(rc));
}

/* Every run started at or past the largest acknowledgement before it.
 * Returns the number of runs; *mid those that resumed part way, *behind
 * those that found events emitted but not applied yet. */
static int check_acks(const char *acks, int trial, int *mid, int *behind)
{
    FILE *f = fopen(acks, "r");
    CHECK(f, "open %s: %s", acks, strerror(errno));
    char line[64];
    long acked = 0, n, applied;
    int runs = 0;
    *mid = *behind = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "acked %ld", &n) == 1) {
            acked = n > acked ? n : acked;
        } else if (sscanf(line, "start %ld %ld", &n, &applied) == 2) {
            CHECK(n >= acked, "trial %d: run %d resumed at %ld, but %ld were acknowledged", trial,
                  runs + 1, n, acked);
            runs++;
            *mid += n > 0 && n < COUNT;
            *behind += applied < n;
        }
    }
    fclose(f);
    CHECK(acked == COUNT, "trial %d: %ld acknowledged in the end (want %d)", trial, acked, COUNT);
    return runs;
}

/* The outbox is empty and the checker applied every sequence, as the bus
 * itself reports it on the data the killed runs left. */
static void check_bus(const char *dir, const char *name, int trial)
{
    cxm_store *st;
    cxm_bus *bus;
    cxm_bus_producer *p;
    MDB_dbi table;
    CHECK(cxm_store_open(dir, NULL, &st) == 0 && cxm_store_dbi(st, BUS_TABLE, 0, &table) == 0,
          "open %s", dir);
    cxm_bus_opts o = {0};
    CHECK(cxm_bus_create(st, &o, &bus) == 0 && cxm_bus_producer_open(bus, name, &p) == 0 &&
              cxm_bus_subscribe(bus, "checker", name, NULL, 0, bus_table_apply, &table) == 0,
          "bus: %s", cxm_bus_last_error());
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    Cxm__V1__GetBusStatusResponse *r;
    CHECK(cxm_bus_status(bus, &a, &r) == 0 && r->n_producers == 1 && r->n_subscribers == 1,
          "status");
    const Cxm__V1__BusProducerStatus *ps = r->producers[0];
    const Cxm__V1__BusSubscriberStatus *ss = r->subscribers[0];
    CHECK(ps->last_sequence == COUNT && ps->outbox_backlog == 0 && ss->applied_sequence == COUNT &&
              ss->backlog == 0,
          "trial %d: last sequence %llu, outbox %llu, applied %llu, backlog %llu (want %d, 0, %d, "
          "0)",
          trial, (unsigned long long)ps->last_sequence, (unsigned long long)ps->outbox_backlog,
          (unsigned long long)ss->applied_sequence, (unsigned long long)ss->backlog, COUNT, COUNT);
    cxm_arena_dispose(&a);
    cxm_bus_destroy(bus);
    cxm_store_close(st);
}

static void trial(const char *producer_bin, int t)
{
    char dir[300], acks[320], name[16], count[16];
    snprintf(dir, sizeof dir, "%s/d%d", root, t);
    snprintf(acks, sizeof acks, "%s/acks%d", root, t);
    snprintf(name, sizeof name, "trial%d", t);
    snprintf(count, sizeof count, "%d", COUNT);
    char *argv[] = {(char *)producer_bin, dir, "inproc", name, count, NULL};
    double start = test_now_ms();
    int kills = 0, status;
    spawn(argv, acks);
    for (;;) {
        usleep((useconds_t)(10 + rand() % 150) * 1000);
        if (kills < KILLS) {
            kill(running, SIGKILL);
            kills++;
        }
        if (waitpid(running, &status, kills < KILLS ? 0 : WNOHANG) == running) {
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                break;
            CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "trial %d: the producer failed (status %#x)", t, status);
            spawn(argv, acks);
        }
        CHECK(test_now_ms() - start < TRIAL_DEADLINE_MS, "trial %d: not done after %d ms", t,
              TRIAL_DEADLINE_MS);
    }
    running = 0;
    int mid, behind, runs = check_acks(acks, t, &mid, &behind);
    bus_verdict v;
    CHECK(bus_table_verdict(dir, &v) == 0, "read the table of %s", dir);
    CHECK(v.rows == COUNT && v.last == COUNT && v.bad == 0,
          "trial %d: %ld rows, last %ld, %ld out of order or repeated (want %d, %d, 0)", t, v.rows,
          v.last, v.bad, COUNT, COUNT);
    check_bus(dir, name, t);
    printf("trial %d: %d events exactly once and in order in %.0f ms; %d kills, %d runs (%d "
           "resumed part way, %d with events to apply)\n",
           t, COUNT, test_now_ms() - start, kills, runs, mid, behind);
}

/* A failed check exits: leave no process behind. */
static void cleanup(void)
{
    if (running > 0 && kill(running, SIGKILL) == 0)
        waitpid(running, NULL, 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_bus_inproc BUS_PRODUCER [SEED]\n");
        return 2;
    }
    unsigned seed = argc > 2 ? (unsigned)atoi(argv[2]) : (unsigned)time(NULL);
    printf("seed %u (pass it as the second argument to repeat this run)\n", seed);
    srand(seed);
    cxm_log_configure(false, CXM_LOG_WARN);
    atexit(cleanup);
    CHECK(mkdtemp(root) != NULL, "mkdtemp: %s", strerror(errno));
    for (int t = 0; t < TRIALS; t++)
        trial(argv[1], t);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0, "remove %s", root);
    return 0;
}
