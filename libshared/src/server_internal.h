/*
 * server_internal.h - what the server runtime shares with its built-in
 * services (health and reflection). Not part of libshared's public contract.
 */
#ifndef CXM_SERVER_INTERNAL_H
#define CXM_SERVER_INTERNAL_H

#include <stddef.h>

#include "cxm/server.h"

/* Health: one status per hosted service name, plus "" for the whole server. */
typedef struct cxm__health cxm__health;

/* names: the hosted services, copied. The service starts NOT_SERVING. */
int cxm__health_create(const char *const *names, size_t n, cxm__health **out);
const cxm_service *cxm__health_service(cxm__health *h);
/* SERVING (true) or NOT_SERVING (false) for every name; watchers are told. */
void cxm__health_set_all(cxm__health *h, int serving);
/* Every name NOT_SERVING while degraded, whatever its status. */
void cxm__health_set_degraded(cxm__health *h, bool degraded);
void cxm__health_destroy(cxm__health *h);

/* Reflection over the descriptor set embedded in cxm_proto. */
typedef struct cxm__reflection cxm__reflection;

/* names: the services list_services answers with, copied. */
int cxm__reflection_create(const char *const *names, size_t n, cxm__reflection **out);
/* The same handler registered as grpc.reflection.v1 and v1alpha. */
const cxm_service *cxm__reflection_service_v1(cxm__reflection *r);
const cxm_service *cxm__reflection_service_v1alpha(cxm__reflection *r);
void cxm__reflection_destroy(cxm__reflection *r);

/* The connection cap (limits.c). Count the process's TCP connections
 * accepted on port and, when there are more than max, shut down the ones
 * that have received nothing for longest until max remain. Returns how many
 * were shut down; *count is how many there were. */
int cxm__shed_connections(int port, int max, int *count);

/* Open file descriptors of this process, or -1. */
int cxm__count_fds(void);

#endif
