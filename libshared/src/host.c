/*
 * host.c - the main() shared by cxmd and the single-service binaries.
 */
#include "cxm/host.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/opts.h"

#define MAX_MODULES 8
#define MAX_OPTS 64

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
    const char *tls_cert, *tls_key, *tls_client_ca;
    const char *client_tls_ca, *client_tls_cert, *client_tls_key;
    bool insecure;
    /* Whether calls must carry credentials; set by the authentication
     * module (not wired yet, so always false): a non-loopback listen needs
     * it together with TLS, or --insecure. */
    bool auth_on;
} host_config;

/* Options of this process's own clients (the resolver's channel to the
 * profile service), from --client-tls-*. */
static cxm_channel_opts client_opts;

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 +
           (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

static bool has(const char *s)
{
    return s && *s;
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* Whether every address the host of listen ("HOST:PORT", already checked)
 * stands for is a loopback one: 127.0.0.0/8, ::1, or a name resolving only
 * to those (localhost). A wildcard (0.0.0.0, [::]) is not. */
static bool listen_is_loopback(const char *listen)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    if (n >= 2 && listen[0] == '[')
        snprintf(host, sizeof host, "%.*s", (int)(n - 2), listen + 1);
    else
        snprintf(host, sizeof host, "%.*s", (int)n, listen);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (!*host || getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    bool loop = true;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        loop = loop && addr_is_loopback(ai->ai_addr);
    freeaddrinfo(res);
    return loop;
}

/* The TLS flags go in pairs, and a listen address other machines can reach
 * needs TLS and authentication, or --insecure to say that is intended. */
static int check_tls_flags(const host_config *cfg, char *err, size_t errlen)
{
    if (has(cfg->tls_cert) != has(cfg->tls_key)) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together; give both");
        return CXM_EINVAL;
    }
    if (has(cfg->tls_client_ca) && !has(cfg->tls_cert)) {
        snprintf(err, errlen, "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)");
        return CXM_EINVAL;
    }
    if (has(cfg->client_tls_cert) != has(cfg->client_tls_key)) {
        snprintf(err, errlen, "--client-tls-cert and --client-tls-key go together; give both");
        return CXM_EINVAL;
    }
    if (has(cfg->client_tls_cert) && !has(cfg->client_tls_ca)) {
        snprintf(err, errlen, "--client-tls-cert needs --client-tls-ca to verify the server");
        return CXM_EINVAL;
    }
    bool protected = has(cfg->tls_cert) && cfg->auth_on;
    if (!protected && !cfg->insecure && !listen_is_loopback(cfg->listen)) {
        snprintf(err, errlen,
                 "--listen %s is not a loopback address and this server would accept anyone "
                 "there: configure TLS (--tls-cert, --tls-key) and authentication, listen on "
                 "127.0.0.1, or pass --insecure to expose it unprotected anyway",
                 cfg->listen);
        return CXM_EINVAL;
    }
    return 0;
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
        {"tls-cert", CXM_OPT_STR, &cfg->tls_cert, 0, 0,
         "serve TLS with this PEM certificate chain (reloaded on SIGHUP or change)"},
        {"tls-key", CXM_OPT_STR, &cfg->tls_key, 0, 0, "PEM private key of --tls-cert"},
        {"tls-client-ca", CXM_OPT_STR, &cfg->tls_client_ca, 0, 0,
         "require client certificates signed by this PEM CA (mutual TLS)"},
        {"insecure", CXM_OPT_BOOL, &cfg->insecure, 0, 0,
         "allow a non-loopback --listen without TLS and authentication"},
        {"client-tls-ca", CXM_OPT_STR, &cfg->client_tls_ca, 0, 0,
         "own calls to other services (profile) use TLS, verifying them with this PEM CA"},
        {"client-tls-cert", CXM_OPT_STR, &cfg->client_tls_cert, 0, 0,
         "client certificate for own calls to services requiring mutual TLS"},
        {"client-tls-key", CXM_OPT_STR, &cfg->client_tls_key, 0, 0, "PEM key of --client-tls-cert"},
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
    if (rc == 0)
        rc = check_tls_flags(cfg, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s: %s (see --help)\n", argv[0], err);
        *exit_code = 2;
        return 1;
    }
    cxm_log_configure(strcmp(cfg->log_format, "json") == 0, level);
    return 0;
}

/* Once the port is open: say so when it is open to everyone (--insecure). */
static void warn_if_exposed(const host_config *cfg)
{
    if (!(has(cfg->tls_cert) && cfg->auth_on) && !listen_is_loopback(cfg->listen))
        cxm_log_warn("server.insecure",
                     "--insecure: %s is reachable from other machines without %s; anyone who "
                     "can connect can read and change every customer's data",
                     cfg->listen, has(cfg->tls_cert) ? "authentication" : "TLS or authentication");
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

const cxm_channel_opts *cxm_host_client_opts(void)
{
    return &client_opts;
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

static int serve(const host_config *cfg, cxm_service *svcs, size_t n, cxm_bus *bus,
                 const struct timespec *started)
{
    cxm_server_opts so = {.listen = cfg->listen,
                          .workers = (int)cfg->workers,
                          .requests_per_method = (int)cfg->requests_per_method,
                          .max_message_bytes = (size_t)cfg->max_message_bytes,
                          .grace_ms = cfg->grace_ms,
                          .tls_cert = cfg->tls_cert,
                          .tls_key = cfg->tls_key,
                          .tls_client_ca = cfg->tls_client_ca};
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
        cxm_log_info("server.listening", "listening on %s:%d (data %s, ready in %.1f ms)", host,
                     cxm_server_port(srv), cfg->data, elapsed_ms(started));
        warn_if_exposed(cfg);
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
                       .grace_ms = 5000};
    int exit_code = 0;
    if (nmodules > MAX_MODULES)
        return 1;
    if (configure(argc, argv, summary, modules, nmodules, &cfg, &exit_code) != 0)
        return exit_code;
    client_opts = (cxm_channel_opts){.tls_ca = cfg.client_tls_ca,
                                     .tls_cert = cfg.client_tls_cert,
                                     .tls_key = cfg.client_tls_key};

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
        rc = serve(&cfg, svcs, nmodules, bus, &started);
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
