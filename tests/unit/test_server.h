/*
 * test_server.h - a server of the kit running one service in a thread of
 * the test, on a loopback port, for unit tests that call their handlers over
 * real gRPC without a whole host.
 *
 *   static unit_server srv = {.opts = {.listen = "127.0.0.1:0", .workers = 2},
 *                             .service = &my_service};
 *   cxm_channel *ch;
 *   if (unit_server_start(&srv, &ch) != 0) ...
 *   ...
 *   cxm_channel_close(ch);
 *   unit_server_stop(&srv);
 */
#ifndef CXM_TEST_SERVER_H
#define CXM_TEST_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "cxm/client.h"
#include "cxm/server.h"

typedef struct unit_server {
    cxm_server_opts opts;
    cxm_service *service;
    cxm_server *server;
    pthread_t thread;
    atomic_int port; /* 0 while starting, -1 when it could not start */
} unit_server;

static void *unit_server_main(void *arg)
{
    unit_server *u = arg;
    if (cxm_server_create(&u->opts, &u->server) != 0 ||
        cxm_server_add_service(u->server, u->service) != 0 || cxm_server_start(u->server) != 0) {
        atomic_store(&u->port, -1);
        return NULL;
    }
    atomic_store(&u->port, cxm_server_port(u->server));
    cxm_server_run(u->server);
    cxm_server_destroy(u->server);
    return NULL;
}

/* Starts the server, waits until it listens and opens *ch to it: 0, or -1
 * when the server did not start (or the channel did not open). */
static int unit_server_start(unit_server *u, cxm_channel **ch)
{
    atomic_store(&u->port, 0);
    if (pthread_create(&u->thread, NULL, unit_server_main, u) != 0)
        return -1;
    while (atomic_load(&u->port) == 0)
        usleep(1000);
    if (atomic_load(&u->port) < 0) {
        pthread_join(u->thread, NULL);
        return -1;
    }
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", atomic_load(&u->port));
    return cxm_channel_open(target, NULL, ch) == 0 ? 0 : -1;
}

/* Stops the server (after the caller closed its channel) and joins it. */
static void unit_server_stop(unit_server *u)
{
    cxm_server_stop(u->server);
    pthread_join(u->thread, NULL);
}

#endif
