/*
 * test_bus_nats.c - integration.bus.nats_kill9: the event bus end to end
 * through a real nats-server, with kill -9 of the producer, the consumer and
 * the server at random moments. Each trial runs bus_producer (COUNT numbered
 * events) and bus_consumer on fresh data directories, kills and restarts
 * processes while events flow, and then checks from the consumer's LMDB that
 * every event was applied exactly once and in order.
 *
 *   test_bus_nats BUS_PRODUCER BUS_CONSUMER [SEED]
 * Exits NF_SKIP when nats-server is not installed.
 */
#include <errno.h>
#include <ftw.h>
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
#include "nats_fixture.h"

#define TRIALS 3
#define KILLS 5 /* per trial */
#define COUNT 20000
#define TRIAL_DEADLINE_MS 30000

extern char **environ;

static nf_server srv;
static char root[] = "/tmp/cxm-test-busnats-XXXXXX";
static struct proc *running[2]; /* of the current trial, killed if a check fails */

typedef struct proc {
    const char *name;
    char *argv[8];
    pid_t pid;  /* 0: not running */
    bool done;  /* exited 0 */
    int starts; /* restarts included */
} proc;

static void spawn(proc *p)
{
    int rc = posix_spawn(&p->pid, p->argv[0], NULL, NULL, p->argv, environ);
    CHECK(rc == 0, "spawn %s: %s", p->argv[0], strerror(rc));
    p->starts++;
}

/* Reap p if it exited: done on 0, started again otherwise (it was killed,
 * or could not reach a killed server). */
static void reap(proc *p)
{
    int status;
    if (p->pid == 0 || waitpid(p->pid, &status, WNOHANG) != p->pid)
        return;
    p->pid = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        p->done = true;
    else
        spawn(p);
}

static void kill9(proc *p)
{
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    spawn(p);
}

/* One random kill: the producer, the consumer or nats-server. */
static void random_kill(proc *prod, proc *cons, int *server_kills)
{
    int victim = rand() % 3;
    if (victim == 0 && prod->pid) {
        kill9(prod);
    } else if (victim == 1 && cons->pid) {
        kill9(cons);
    } else {
        CHECK(nf_kill9(&srv) == 0, "kill nats-server");
        usleep((useconds_t)(50 + rand() % 250) * 1000);
        CHECK(nf_restart(&srv) == 0, "restart nats-server");
        (*server_kills)++;
    }
}

/* Every number applied once (one row each), in order (no violation), up to
 * COUNT. */
static void check_consumer(const char *dir, int trial)
{
    bus_verdict r;
    CHECK(bus_table_verdict(dir, &r) == 0, "read the table of %s", dir);
    CHECK(r.rows == COUNT && r.last == COUNT && r.bad == 0,
          "trial %d: %ld rows, last %ld, %ld out of order or repeated (want %d, %d, 0)", trial,
          r.rows, r.last, r.bad, COUNT, COUNT);
}

static void trial(const char *producer_bin, const char *consumer_bin, int t)
{
    char pdir[300], cdir[300], name[16], count[16];
    snprintf(pdir, sizeof pdir, "%s/p%d", root, t);
    snprintf(cdir, sizeof cdir, "%s/c%d", root, t);
    snprintf(name, sizeof name, "trial%d", t); /* fresh stream ids per trial */
    snprintf(count, sizeof count, "%d", COUNT);
    proc prod = {"producer", {(char *)producer_bin, pdir, srv.url, name, count, NULL}};
    proc cons = {"consumer", {(char *)consumer_bin, cdir, srv.url, name, "checker", count, NULL}};
    running[0] = &prod;
    running[1] = &cons;
    spawn(&prod);
    spawn(&cons);
    int kills = 0, server_kills = 0;
    double start = test_now_ms();
    while (!(prod.done && cons.done)) {
        usleep((useconds_t)(50 + rand() % 300) * 1000);
        reap(&prod);
        reap(&cons);
        if (kills < KILLS && !(prod.done && cons.done)) {
            random_kill(&prod, &cons, &server_kills);
            kills++;
        }
        CHECK(test_now_ms() - start < TRIAL_DEADLINE_MS,
              "trial %d: not done after %d ms (producer %s, consumer %s)", t, TRIAL_DEADLINE_MS,
              prod.done ? "done" : "running", cons.done ? "done" : "running");
    }
    running[0] = running[1] = NULL;
    check_consumer(cdir, t);
    printf("trial %d: %d events exactly once and in order in %.0f ms; %d kills (nats-server "
           "%d), producer started %d times, consumer %d\n",
           t, COUNT, test_now_ms() - start, kills, server_kills, prod.starts, cons.starts);
}

/* A failed check exits: leave no process behind. */
static void cleanup(void)
{
    for (int i = 0; i < 2; i++)
        if (running[i] && running[i]->pid > 0 && kill(running[i]->pid, SIGKILL) == 0)
            waitpid(running[i]->pid, NULL, 0);
    if (srv.pid > 0)
        nf_stop(&srv);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_bus_nats BUS_PRODUCER BUS_CONSUMER [SEED]\n");
        return 2;
    }
    unsigned seed = argc > 3 ? (unsigned)atoi(argv[3]) : (unsigned)time(NULL);
    printf("seed %u (pass it as the third argument to repeat this run)\n", seed);
    srand(seed);
    int rc = nf_start(&srv);
    if (rc == -1)
        return NF_SKIP;
    CHECK(rc == 0, "nats-server did not start");
    atexit(cleanup);
    CHECK(mkdtemp(root) != NULL, "mkdtemp: %s", strerror(errno));
    for (int t = 0; t < TRIALS; t++)
        trial(argv[1], argv[2], t);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
