/*
 * nats_fixture.c - start, kill and restart nats-server for tests (see
 * nats_fixture.h). posix_spawn, not fork: the test process runs libnats
 * threads.
 */
#include "check.h"
#include "nats_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int find_binary(char *out, size_t cap)
{
    const char *env = getenv("NATS_SERVER");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *dirs[] = {"/usr/sbin", "/usr/bin", "/usr/local/bin"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(out, cap, "%s/nats-server", dirs[i]);
        if (access(out, X_OK) == 0)
            return 0;
    }
    char *path = strdup(getenv("PATH") ? getenv("PATH") : "");
    int rc = -1;
    for (char *save = NULL, *d = strtok_r(path, ":", &save); d && rc;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/nats-server", d);
        rc = access(out, X_OK) == 0 ? 0 : -1;
    }
    free(path);
    return rc;
}

/* A port the kernel had free a moment ago; nf_start retries on a clash. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 1};
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* True when the server answers a JetStream account-info request without an
 * error, i.e. it accepts clients and JetStream has recovered its store. */
static int jetstream_answers(const nf_server *s)
{
    int fd = connect_port(s->port);
    if (fd < 0)
        return 0;
    char req[512], auth[200] = "";
    if (s->cfg.user)
        snprintf(auth, sizeof auth, ",\"user\":\"%s\",\"pass\":\"%s\"", s->cfg.user,
                 s->cfg.password ? s->cfg.password : "");
    int len = snprintf(req, sizeof req,
                       "CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true%s}"
                       "\r\nSUB _INBOX.nf 1\r\nPUB $JS.API.INFO _INBOX.nf 0\r\n\r\n",
                       auth);
    char buf[8192];
    size_t got = 0;
    int ok = 0;
    if (write(fd, req, (size_t)len) == (ssize_t)len) {
        ssize_t r;
        while (got < sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0) {
            got += (size_t)r;
            buf[got] = '\0';
            if (strstr(buf, "account_info_response")) {
                ok = strstr(buf, "\"error\"") == NULL;
                break;
            }
            if (strstr(buf, "HMSG _INBOX.nf") || strstr(buf, "-ERR"))
                break; /* no responders (JetStream not up yet) or refused */
        }
    }
    close(fd);
    return ok;
}

/* With TLS the raw check cannot talk to the server: trust its log, which
 * says "Server is ready" once JetStream has started and it listens. A
 * restart appends to the log, so count the lines. */
static int log_says_ready(const nf_server *s)
{
    char path[300], line[1024];
    snprintf(path, sizeof path, "%s/server.log", s->dir);
    FILE *f = fopen(path, "r");
    int ready = 0;
    while (f && fgets(line, sizeof line, f))
        ready += strstr(line, "Server is ready") != NULL;
    if (f)
        fclose(f);
    return ready > s->restarts;
}

static int spawn(nf_server *s)
{
    char port[16], store[300], log[300];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(store, sizeof store, "%s/js", s->dir);
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    char conf[300];
    snprintf(conf, sizeof conf, "%s/server.conf", s->dir);
    const char *argv[] = {
        s->bin, "-js", "-sd", store, "-a", "127.0.0.1", "-p", port, s->cfg.conf ? "-c" : NULL,
        conf,   NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int rc = posix_spawn(&s->pid, s->bin, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "nats_fixture: cannot run %s: %s\n", s->bin, strerror(rc));
        s->pid = 0;
        return -2;
    }
    return 0;
}

/* 0 when JetStream answers within 10 s; -2 when the server exited or
 * stayed silent (then it is killed). */
static int wait_ready(nf_server *s)
{
    for (double end = test_now_ms() + 10000; test_now_ms() < end; usleep(20000)) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            return -2;
        }
        if (s->cfg.tls ? log_says_ready(s) : jetstream_answers(s))
            return 0;
    }
    nf_kill9(s);
    return -2;
}

int nf_start(nf_server *s)
{
    return nf_start_with(s, &(nf_config){0});
}

int nf_start_with(nf_server *s, const nf_config *cfg)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    if (find_binary(s->bin, sizeof s->bin) != 0) {
        fprintf(stderr, "nats_fixture: nats-server is not installed; skipping\n");
        return -1;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/cxm-nats-XXXXXX");
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "nats_fixture: mkdtemp: %s\n", strerror(errno));
        return -2;
    }
    if (cfg->conf) {
        char path[300];
        snprintf(path, sizeof path, "%s/server.conf", s->dir);
        FILE *f = fopen(path, "w");
        if (!f || fputs(cfg->conf, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "nats_fixture: cannot write %s\n", path);
            return -2;
        }
    }
    for (int attempt = 0; attempt < 3; attempt++) { /* another process may take the port */
        s->port = free_port();
        snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
        if (s->port > 0 && spawn(s) == 0 && wait_ready(s) == 0)
            return 0;
    }
    fprintf(stderr, "nats_fixture: nats-server did not start; see %s/server.log\n", s->dir);
    return -2;
}

int nf_kill9(nf_server *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return 0;
}

int nf_restart(nf_server *s)
{
    s->restarts++;
    int rc = spawn(s);
    if (rc == 0)
        rc = wait_ready(s);
    if (rc)
        fprintf(stderr, "nats_fixture: nats-server did not restart on port %d; see %s/server.log\n",
                s->port, s->dir);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void nf_stop(nf_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        double end = test_now_ms() + 5000;
        while (waitpid(s->pid, NULL, WNOHANG) != s->pid) {
            if (test_now_ms() > end) {
                nf_kill9(s);
                break;
            }
            usleep(10000);
        }
        s->pid = 0;
    }
    if (s->dir[0])
        nftw(s->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    s->dir[0] = '\0';
}
