/*
 * limits.c - the connection cap and the file-descriptor limit of the server
 * runtime (see max_connections in cxm/server.h for why the cap is enforced
 * from outside gRPC core).
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cxm/server.h"
#include "server_internal.h"

static long clamp_limit(rlim_t v)
{
    return v == RLIM_INFINITY || v > (1 << 30) ? 1 << 30 : (long)v;
}

int cxm_server_default_max_connections(long nofile)
{
    long headroom = nofile / 8;
    if (headroom < CXM_LIMIT_FD_HEADROOM_MIN)
        headroom = CXM_LIMIT_FD_HEADROOM_MIN;
    long cap = nofile - headroom;
    if (cap < 16)
        cap = 16;
    return cap > 1000000 ? 1000000 : (int)cap;
}

long cxm_server_raise_fd_limit(long *before, long *hard)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return *before = *hard = 1024;
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        /* Some systems report an infinite hard limit but refuse it. */
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && rl.rlim_max == RLIM_INFINITY) {
            rl.rlim_cur = 1 << 20;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                rl.rlim_cur = was;
        }
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    *before = clamp_limit(was);
    *hard = clamp_limit(rl.rlim_max);
    return clamp_limit(rl.rlim_cur);
}

/* One accepted connection: its fd and how long it has received nothing. */
typedef struct conn {
    int fd;
    uint32_t silent_ms;
} conn;

static int local_port(int fd, bool *peer)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    int port;
    if (a.ss_family == AF_INET)
        port = ntohs(((struct sockaddr_in *)&a)->sin_port);
    else if (a.ss_family == AF_INET6)
        port = ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
    else
        return -1;
    struct sockaddr_storage p;
    len = sizeof p;
    *peer = getpeername(fd, (struct sockaddr *)&p, &len) == 0;
    return port;
}

/* How long an established connection has received nothing. False for any
 * other state: one already shut down (by an earlier tick, while gRPC has
 * not closed it yet) or closed by its peer is on its way out. */
static bool silent_ms(int fd, uint32_t *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || ti.tcpi_state != TCP_ESTABLISHED)
        return false;
    *out = ti.tcpi_last_data_recv;
    return true;
}

static int by_silence_desc(const void *a, const void *b)
{
    uint32_t x = ((const conn *)a)->silent_ms, y = ((const conn *)b)->silent_ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Append every established TCP connection of this process whose local port
 * is port to *v (grown as needed). Returns the count, or -1. */
static int list_connections(int port, conn **v, size_t *cap)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int self = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        struct stat st;
        bool peer = false;
        if (*end || end == e->d_name || fd == self || fstat((int)fd, &st) != 0 ||
            !S_ISSOCK(st.st_mode) || local_port((int)fd, &peer) != port || !peer)
            continue;
        uint32_t silent;
        if (!silent_ms((int)fd, &silent))
            continue;
        if ((size_t)n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 1024;
            conn *nv = realloc(*v, ncap * sizeof *nv);
            if (!nv)
                break;
            *v = nv, *cap = ncap;
        }
        (*v)[n++] = (conn){(int)fd, silent};
    }
    closedir(d);
    return n;
}

int cxm__shed_connections(int port, int max, int *count)
{
    conn *v = NULL;
    size_t cap = 0;
    int n = list_connections(port, &v, &cap), shed = 0;
    *count = n < 0 ? 0 : n;
    if (n > max) {
        qsort(v, (size_t)n, sizeof *v, by_silence_desc);
        for (int i = 0; i < n - max; i++) {
            /* gRPC may have closed this fd since, and a new connection may
             * hold the number now: that one has just received data, so it
             * is told apart by its silence being shorter. */
            uint32_t now;
            if (silent_ms(v[i].fd, &now) && now >= v[i].silent_ms &&
                shutdown(v[i].fd, SHUT_RDWR) == 0)
                shed++;
        }
    }
    free(v);
    return shed;
}

int cxm__count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory itself */
}
