/*
 * host.c - the main() shared by cxmd and the single-service binaries.
 */
#include "cxm/host.h"

#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/opts.h"

#define MAX_MODULES 8
#define MAX_OPTS 96

typedef struct host_config {
    const char *listen;
    const char *data;
    const char *log_format;
    const char *log_level;
    int64_t workers;
    int64_t requests_per_method;
    uint64_t max_message_bytes;
    int64_t grace_ms;
    const char *nats_url;
    const char *nats_creds;
    /* The limits of cxm_server_opts (see server.h). */
    int64_t max_streams;
    int64_t keepalive_ms;
    int64_t idle_timeout_ms;
    int64_t max_connection_age_ms;
    int64_t max_connection_age_grace_ms;
    uint64_t memory_quota;
    int64_t default_deadline_ms;
    int64_t stream_deadline_ms;
    int64_t max_connections;
} host_config;

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 +
           (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

/* Returns 0 to go on, or the exit status (0 after --help, 2 for bad flags). */
static int configure(int argc, char **argv, const char *summary, const cxm_module *modules,
                     size_t nmodules, host_config *cfg, int *exit_code)
{
    const cxm_opt common[] = {
        {"listen", CXM_OPT_STR, &cfg->listen, 0, 0,
         "address to serve gRPC on, HOST:PORT (port 0: any free port)"},
        {"data", CXM_OPT_STR, &cfg->data, 0, 0,
         "data directory (one LMDB environment), created if missing"},
        {"workers", CXM_OPT_INT, &cfg->workers, 0, 256,
         "completion-queue threads; 0 = one per core"},
        {"requests-per-method", CXM_OPT_INT, &cfg->requests_per_method, 0, 1024,
         "requests kept posted per method per worker; 0 = 16"},
        {"max-message-bytes", CXM_OPT_BYTES, &cfg->max_message_bytes, 1024, 64 << 20,
         "largest request or response accepted (K/M suffixes)"},
        {"grace", CXM_OPT_MILLIS, &cfg->grace_ms, 0, 600000,
         "on SIGTERM, how long in-flight calls may finish before they are cancelled"},
        {"log-format", CXM_OPT_STR, &cfg->log_format, 0, 0, "text or json"},
        {"log-level", CXM_OPT_STR, &cfg->log_level, 0, 0, "debug, info, warn or error"},
        {"nats-url", CXM_OPT_STR, &cfg->nats_url, 0, 0,
         "relay the event bus through NATS JetStream at this URL; empty: in process"},
        {"nats-creds", CXM_OPT_STR, &cfg->nats_creds, 0, 0, "NATS credentials file (JWT + seed)"},
        {"max-streams", CXM_OPT_INT, &cfg->max_streams, 1, 100000,
         "concurrent calls per connection; more wait in the client"},
        {"keepalive", CXM_OPT_MILLIS, &cfg->keepalive_ms, 1000, 86400000,
         "ping a silent connection after this long, close it if no answer in 20 s"},
        {"idle-timeout", CXM_OPT_MILLIS, &cfg->idle_timeout_ms, 1000, 86400000,
         "close a connection without calls after this long"},
        {"max-connection-age", CXM_OPT_MILLIS, &cfg->max_connection_age_ms, 1000, 604800000,
         "ask a client to reconnect after this long (spreads load, ends stalled calls)"},
        {"max-connection-age-grace", CXM_OPT_MILLIS, &cfg->max_connection_age_grace_ms, 0, 86400000,
         "then close the connection, calls and all, after this long"},
        {"memory-quota", CXM_OPT_BYTES, &cfg->memory_quota, 0, (uint64_t)1 << 40,
         "memory for connections and calls (K/M/G); 0 = 1G or a quarter of RAM if less"},
        {"default-deadline", CXM_OPT_MILLIS, &cfg->default_deadline_ms, 1, 86400000,
         "deadline of a unary call that came without one"},
        {"stream-deadline", CXM_OPT_MILLIS, &cfg->stream_deadline_ms, 1, 604800000,
         "deadline of a client or bidi stream that came without one (Health/Watch: none)"},
        {"max-connections", CXM_OPT_INT, &cfg->max_connections, 0, 1000000,
         "connections kept before the silent longest are closed; 0 = fd limit - 1/8"},
    };
    /* The common flags, then each module's own. */
    cxm_opt opts[MAX_OPTS];
    size_t n = sizeof common / sizeof common[0];
    memcpy(opts, common, sizeof common);
    for (size_t m = 0; m < nmodules; m++)
        for (size_t i = 0; i < modules[m].nopts && n < MAX_OPTS; i++)
            opts[n++] = modules[m].opts[i];
    char err[512];
    int rc = cxm_opts_parse(opts, n, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == 1) {
        cxm_opts_usage(stdout, argv[0], summary, opts, n);
        *exit_code = 0;
        return 1;
    }
    cxm_log_level level = CXM_LOG_INFO;
    if (rc == 0 && cxm_log_level_parse(cfg->log_level, &level) != 0) {
        snprintf(err, sizeof err, "--log-level: \"%s\" is not one of debug, info, warn, error",
                 cfg->log_level);
        rc = CXM_EINVAL;
    }
    if (rc == 0 && strcmp(cfg->log_format, "text") != 0 && strcmp(cfg->log_format, "json") != 0) {
        snprintf(err, sizeof err, "--log-format: \"%s\" is not text or json", cfg->log_format);
        rc = CXM_EINVAL;
    }
    char why[200];
    if (rc == 0 && cxm_server_check_listen(cfg->listen, why, sizeof why) != 0) {
        snprintf(err, sizeof err, "--listen \"%s\": %s", cfg->listen, why);
        rc = CXM_EINVAL;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s (see --help)\n", argv[0], err);
        *exit_code = 2;
        return 1;
    }
    cxm_log_configure(strcmp(cfg->log_format, "json") == 0, level);
    return 0;
}

/* The bus exists before the modules, which find it with cxm_bus_of(store). */
static int open_bus(cxm_store *store, const host_config *cfg, cxm_bus **out)
{
    cxm_bus_opts o = {.nats_url = cfg->nats_url, .nats_creds = cfg->nats_creds};
    int rc = cxm_bus_create(store, &o, out);
    if (rc != 0)
        cxm_log_error("host.bus_failed", "cannot create the event bus: %s", cxm_bus_last_error());
    return rc;
}

static int open_modules(cxm_store *store, const cxm_module *modules, size_t n, cxm_service *svcs,
                        size_t *opened)
{
    for (*opened = 0; *opened < n; (*opened)++) {
        int rc = modules[*opened].open(store, &svcs[*opened]);
        if (rc != 0) {
            cxm_log_error("host.module_failed", "cannot open the %s service: %s",
                          modules[*opened].name, cxm_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static char self_addr[300];
static atomic_bool self_addr_set;

const char *cxm_host_self_addr(void)
{
    return atomic_load(&self_addr_set) ? self_addr : NULL;
}

const char *cxm_host_self_addr_fn(void *ctx)
{
    (void)ctx;
    return cxm_host_self_addr();
}

/* Remember where this process serves: host of listen (loopback for a
 * wildcard) and the bound port. */
static void set_self_addr(const char *host, int port)
{
    bool wild = !*host || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0 ||
                strcmp(host, "::") == 0;
    snprintf(self_addr, sizeof self_addr, "%s:%d", wild ? "127.0.0.1" : host, port);
    atomic_store(&self_addr_set, true);
}

/* fd: the file-descriptor limit before and after raising it, and the hard
 * limit. */
static int serve(const host_config *cfg, cxm_service *svcs, size_t n, cxm_bus *bus,
                 const struct timespec *started, const long fd[3])
{
    cxm_server_opts so = {.listen = cfg->listen,
                          .workers = (int)cfg->workers,
                          .requests_per_method = (int)cfg->requests_per_method,
                          .max_message_bytes = (size_t)cfg->max_message_bytes,
                          .grace_ms = cfg->grace_ms,
                          .max_streams = (int)cfg->max_streams,
                          .keepalive_ms = cfg->keepalive_ms,
                          .idle_timeout_ms = cfg->idle_timeout_ms,
                          .max_connection_age_ms = cfg->max_connection_age_ms,
                          .max_connection_age_grace_ms = cfg->max_connection_age_grace_ms,
                          .memory_quota = (size_t)cfg->memory_quota,
                          .default_deadline_ms = cfg->default_deadline_ms,
                          .stream_deadline_ms = cfg->stream_deadline_ms,
                          .max_connections = (int)cfg->max_connections};
    cxm_server *srv = NULL;
    int rc = cxm_server_create(&so, &srv);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = cxm_server_add_service(srv, &svcs[i]);
    if (rc == 0)
        rc = cxm_server_add_service(srv, cxm_bus_service(bus));
    if (rc == 0)
        rc = cxm_server_start(srv);
    if (rc == 0) {
        char host[256];
        const char *colon = strrchr(cfg->listen, ':');
        int hlen = colon ? (int)(colon - cfg->listen) : (int)strlen(cfg->listen);
        snprintf(host, sizeof host, "%.*s", hlen, cfg->listen);
        set_self_addr(host, cxm_server_port(srv));
        cxm_log_info("server.fd_limit",
                     "file-descriptor limit raised from %ld to %ld (the hard limit %ld); "
                     "connections are capped at %d (--max-connections)",
                     fd[0], fd[1], fd[2], cxm_server_max_connections(srv));
        cxm_log_info("server.listening", "listening on %s:%d (data %s, ready in %.1f ms)", host,
                     cxm_server_port(srv), cfg->data, elapsed_ms(started));
        rc = cxm_server_run(srv);
    }
    cxm_server_destroy(srv);
    return rc;
}

int cxm_host_main(int argc, char **argv, const char *summary, const char *default_listen,
                  const cxm_module *modules, size_t nmodules)
{
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    host_config cfg = {.listen = default_listen,
                       .data = "cxm-data",
                       .log_format = "text",
                       .log_level = "info",
                       .max_message_bytes = 4u << 20,
                       .grace_ms = 5000,
                       .max_streams = CXM_LIMIT_MAX_STREAMS,
                       .keepalive_ms = CXM_LIMIT_KEEPALIVE_MS,
                       .idle_timeout_ms = CXM_LIMIT_IDLE_MS,
                       .max_connection_age_ms = CXM_LIMIT_AGE_MS,
                       .max_connection_age_grace_ms = CXM_LIMIT_AGE_GRACE_MS,
                       .default_deadline_ms = CXM_LIMIT_DEADLINE_MS,
                       .stream_deadline_ms = CXM_LIMIT_STREAM_DEADLINE_MS};
    int exit_code = 0;
    if (nmodules > MAX_MODULES)
        return 1;
    if (configure(argc, argv, summary, modules, nmodules, &cfg, &exit_code) != 0)
        return exit_code;
    /* Before anything opens a file: every connection costs one. Logged once
     * the server listens, so that a failed start stays one line. */
    long fd_before, fd_hard;
    long fd_now = cxm_server_raise_fd_limit(&fd_before, &fd_hard);

    cxm_store *store = NULL;
    cxm_service svcs[MAX_MODULES];
    memset(svcs, 0, sizeof svcs);
    size_t opened = 0;
    cxm_bus *bus = NULL;
    int rc = cxm_store_open(cfg.data, NULL, &store);
    bool bad_flags = false;
    if (rc == 0)
        rc = open_bus(store, &cfg, &bus);
    if (rc == 0) {
        rc = open_modules(store, modules, nmodules, svcs, &opened);
        /* A module refusing its flags is bad usage like a bad common flag. */
        bad_flags = rc == CXM_EINVAL;
    }
    if (rc == 0 && (rc = cxm_bus_start(bus)) != 0)
        cxm_log_error("host.bus_failed", "cannot start the event bus: %s", cxm_bus_last_error());
    if (rc == 0)
        rc = serve(&cfg, svcs, nmodules, bus, &started, (long[]){fd_before, fd_now, fd_hard});
    cxm_bus_stop(bus); /* no delivery into closing modules */
    while (opened > 0) {
        opened--;
        if (modules[opened].close)
            modules[opened].close(&svcs[opened]);
    }
    cxm_bus_destroy(bus);
    if (store)
        cxm_store_close(store);
    return rc == 0 ? 0 : bad_flags ? 2 : 1;
}
