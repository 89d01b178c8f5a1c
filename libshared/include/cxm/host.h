/*
 * host.h - the main() of every cxm server binary.
 *
 * A module is one service (profile, journey, ...) with the state it keeps
 * between calls. cxm_host_main parses the common flags, opens the data
 * directory (one LMDB environment shared by every module), opens the modules,
 * serves them on one port until SIGTERM/SIGINT, drains, and closes
 * everything. `cxmd` hosts all four modules; `cxm-profile` and friends host
 * one each.
 *
 * Common flags (each also an environment variable, see opts.h):
 *   --listen HOST:PORT, --data DIR, --workers N, --max-message-bytes N,
 *   --grace DURATION, --log-format text|json, --log-level LEVEL,
 *   --nats-url URL, --nats-creds FILE (the event bus, see bus.h)
 * Limits (see cxm_server_opts in server.h for what each bounds and why):
 *   --max-streams N, --keepalive, --idle-timeout, --max-connection-age,
 *   --max-connection-age-grace, --default-deadline, --stream-deadline
 *   DURATION, --memory-quota BYTES, --max-connections N. At start the soft
 *   RLIMIT_NOFILE is raised to the hard limit and logged (server.fd_limit).
 *
 * The event bus of the store is created before the modules open (they find
 * it with cxm_bus_of(store) to open producers and subscribe), started once
 * every module opened, and stopped after the server drained, before the
 * modules close. cxm.v1.BusService is served next to the modules.
 */
#ifndef CXM_HOST_H
#define CXM_HOST_H

#include <stddef.h>

#include "cxm/opts.h"
#include "cxm/server.h"
#include "cxm/store.h"

typedef struct cxm_module {
    const char *name; /* "profile": used in logs */
    /* Fill *svc (name, methods, contract, ctx, on_drain) using the shared
     * store. Returns 0 or a CXM_E* code after logging what went wrong;
     * CXM_EINVAL means its flags are bad (the process exits 2). */
    int (*open)(cxm_store *store, cxm_service *svc);
    /* Release what open acquired; called after the server stopped. */
    void (*close)(cxm_service *svc);
    /* The module's own flags (and CXM_* variables), parsed with the common
     * ones before open; targets are the module's static configuration. */
    const cxm_opt *opts;
    size_t nopts;
} cxm_module;

/* Returns the process exit status: 0 after a clean drain, 2 for bad flags
 * (common or a module's), 1 when start-up failed (the reason is logged). */
int cxm_host_main(int argc, char **argv, const char *summary, const char *default_listen,
                  const cxm_module *modules, size_t nmodules);

/* "HOST:PORT" this process serves on, once its server started (NULL
 * before): the bound port, and 127.0.0.1 for a wildcard listen address
 * (0.0.0.0, [::] or empty host). How a module calls a service hosted in the
 * same process (journey resolving through the profile service in cxmd).
 * Thread-safe. */
const char *cxm_host_self_addr(void);

/* The same as an address callback (cxm_resolver_opts.addr_fn; ctx is
 * unused): modules resolving through the profile service of their own
 * process pass it instead of a --profile-addr. */
const char *cxm_host_self_addr_fn(void *ctx);

#endif
