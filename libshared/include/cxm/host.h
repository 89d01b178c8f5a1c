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
 *   --auth on|off|auto, --auth-tokens FILE, --auth-jwt-key FILE,
 *   --auth-jwt-alg HS256|RS256|ES256, --auth-jwt-issuer, --auth-jwt-audience,
 *   --auth-clock-skew DURATION, --rate-limit-rps N, --rate-limit-burst N
 *   (auth.h), --client-token-file FILE (what this process's own calls to
 *   other services send, e.g. the resolver's; CXM_CLIENT_TOKEN[_FILE]),
 *   --nats-url URL and its authentication, one of --nats-creds FILE,
 *   --nats-nkey-seed FILE, --nats-user NAME with --nats-password-file FILE
 *   (or $CXM_NATS_PASSWORD), --nats-token-file FILE (or $CXM_NATS_TOKEN),
 *   and TLS with --nats-tls-ca, --nats-tls-cert, --nats-tls-key (the event
 *   bus, see bus.h and nats.h); secrets come from files or the environment
 *   and are never logged,
 *   --tls-cert FILE, --tls-key FILE, --tls-client-ca FILE (see server.h),
 *   --insecure, --client-tls-ca/-cert/-key FILE (cxm_host_client_opts)
 *
 * Listen policy: an address other machines can reach (anything but
 * 127.0.0.0/8, ::1 and names resolving only to those) is refused (exit 2)
 * unless TLS and authentication are configured, or --insecure is given, in
 * which case a warning ("server.insecure") says the port is exposed.
 *
 * Store: --max-map-size BYTES (growth cap; Health turns NOT_SERVING while
 *   writes fail), --erasure-compact-delay DURATION (store.h).
 *
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

#include <stdbool.h>
#include <stddef.h>

#include "cxm/client.h"
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

/* Channel options for the process's own calls to other services (TLS from
 * --client-tls-ca, --client-tls-cert, --client-tls-key; all unset:
 * plaintext). The resolver uses them, also when a module resolves through
 * the profile service of its own process: a cxmd serving TLS needs
 * --client-tls-ca (and, with --tls-client-ca, a client certificate) for
 * journey, feedback and personalisation to resolve identities. Valid for
 * the life of the process once cxm_host_main parsed its flags; zeroed
 * before. */
const cxm_channel_opts *cxm_host_client_opts(void);

/* The same as an address callback (cxm_resolver_opts.addr_fn; ctx is
 * unused): modules resolving through the profile service of their own
 * process pass it instead of a --profile-addr. */
const char *cxm_host_self_addr_fn(void *ctx);

/* True when this process checks bearer tokens (auth.h). Valid once
 * cxm_host_main parsed its flags; thread-safe after that. */
bool cxm_host_auth_on(void);

/* The token this process's own clients send to other services (the
 * resolver's channel to profile), or NULL when none was configured. */
const char *cxm_host_client_token(void);

#endif
