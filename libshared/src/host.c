/*
 * host.c - the main() shared by cxmd and the single-service binaries.
 */
#include "cxm/host.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/auth.h"
#include "cxm/bus.h"
#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/nats.h"
#include "cxm/opts.h"

#define MAX_MODULES 8
#define MAX_OPTS 192

typedef struct host_config {
    const char *listen;
    const char *data;
    const char *log_format;
    const char *log_level;
    int64_t workers;
    int64_t requests_per_method;
    uint64_t max_message_bytes;
    int64_t grace_ms;
    uint64_t max_map_size;
    int64_t erasure_compact_delay_ms;
    const char *nats_url;
    const char *nats_creds;
    /* auth.h; "auth" is on, off or auto (on when credentials are given) */
    const char *auth;
    cxm_auth_opts auth_opts;
    int64_t clock_skew_ms;
    int64_t rate_rps;
    int64_t rate_burst;
    const char *client_token;
    const char *client_token_file;
    const char *nats_nkey_seed;
    const char *nats_user;
    const char *nats_password_file;
    const char *nats_token_file;
    const char *nats_tls_ca;
    const char *nats_tls_cert;
    const char *nats_tls_key;
    const char *tls_cert, *tls_key, *tls_client_ca;
    const char *client_tls_ca, *client_tls_cert, *client_tls_key;
    bool insecure;
    bool loopback; /* --listen reaches this machine only (the listen policy) */
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

static cxm_auth *host_auth;
static char *client_token;

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

bool cxm_host_auth_on(void)
{
    return host_auth != NULL;
}

const char *cxm_host_client_token(void)
{
    return client_token;
}

/* The auth flags: a half-configured auth (a key without its alg, --auth on
 * with nothing to check against) refuses to start. */
static int configure_auth(host_config *cfg, char *err, size_t errlen)
{
    const char *mode = cfg->auth;
    cxm_auth_opts *o = &cfg->auth_opts;
    bool given = (o->tokens_file && *o->tokens_file) || (o->jwt_key_file && *o->jwt_key_file);
    if (strcmp(mode, "on") != 0 && strcmp(mode, "off") != 0 && strcmp(mode, "auto") != 0) {
        snprintf(err, errlen, "--auth: \"%s\" is not on, off or auto", mode);
        return CXM_EINVAL;
    }
    char why[400];
    if (cxm_client_token_pick(cfg->client_token, cfg->client_token_file, &client_token, why,
                              sizeof why) != 0) {
        snprintf(err, errlen, "--client-token / --client-token-file: %s", why);
        return CXM_EINVAL;
    }
    if (strcmp(mode, "off") == 0 || (strcmp(mode, "auto") == 0 && !given)) {
        if (cfg->rate_rps > 0) {
            snprintf(err, errlen, "--rate-limit-rps limits each token's subject: it needs auth");
            return CXM_EINVAL;
        }
        if (given)
            cxm_log_warn("auth.off", "--auth off: the configured credentials are not checked");
        return 0;
    }
    o->clock_skew_s = cfg->clock_skew_ms / 1000;
    o->rate_rps = (double)cfg->rate_rps;
    o->rate_burst = cfg->rate_burst;
    int rc = cxm_auth_create(o, &host_auth, err, errlen);
    if (rc == 0)
        cxm_log_info("auth.on", "every call but health needs a bearer token (%s%s%s)",
                     o->tokens_file && *o->tokens_file ? "token file" : "",
                     o->tokens_file && *o->tokens_file && o->jwt_key_file && *o->jwt_key_file ? ", "
                                                                                              : "",
                     o->jwt_key_file && *o->jwt_key_file ? o->jwt_alg : "");
    return rc;
}

static bool has(const char *s)
{
    return s && *s;
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
    bool protected = has(cfg->tls_cert) && host_auth;
    if (!protected && !cfg->insecure && !cfg->loopback) {
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
        {"max-map-size", CXM_OPT_BYTES, &cfg->max_map_size, 1 << 20, (uint64_t)1 << 44,
         "the data file's growth cap (K/M/G suffixes); writes beyond it fail and Health turns "
         "NOT_SERVING"},
        {"erasure-compact-delay", CXM_OPT_MILLIS, &cfg->erasure_compact_delay_ms, 0, 600000,
         "after an erasure, how long to wait for more before the data file is rewritten "
         "without the erased bytes (one compaction serves them all)"},
        {"log-format", CXM_OPT_STR, &cfg->log_format, 0, 0, "text or json"},
        {"log-level", CXM_OPT_STR, &cfg->log_level, 0, 0, "debug, info, warn or error"},
        {"nats-url", CXM_OPT_STR, &cfg->nats_url, 0, 0,
         "relay the event bus through NATS JetStream at this URL; empty: in process"},
        {"nats-creds", CXM_OPT_STR, &cfg->nats_creds, 0, 0, "NATS credentials file (JWT + seed)"},
        {"auth", CXM_OPT_STR, &cfg->auth, 0, 0,
         "require bearer tokens: on, off, or auto (on when --auth-tokens or --auth-jwt-key)"},
        {"auth-tokens", CXM_OPT_STR, &cfg->auth_opts.tokens_file, 0, 0,
         "static token file: lines \"<token> <subject> <scope,scope,...>\""},
        {"auth-jwt-key", CXM_OPT_STR, &cfg->auth_opts.jwt_key_file, 0, 0,
         "JWT key file: HS256 secret, or RS256/ES256 public key PEM"},
        {"auth-jwt-alg", CXM_OPT_STR, &cfg->auth_opts.jwt_alg, 0, 0,
         "the one JWT algorithm accepted: HS256, RS256 or ES256"},
        {"auth-jwt-issuer", CXM_OPT_STR, &cfg->auth_opts.jwt_issuer, 0, 0,
         "required JWT iss; empty: not checked"},
        {"auth-jwt-audience", CXM_OPT_STR, &cfg->auth_opts.jwt_audience, 0, 0,
         "required in JWT aud; empty: not checked"},
        {"auth-clock-skew", CXM_OPT_MILLIS, &cfg->clock_skew_ms, 0, 3600000,
         "leeway on JWT exp and nbf"},
        {"rate-limit-rps", CXM_OPT_INT, &cfg->rate_rps, 0, 10000000,
         "requests per second per token subject (auth on); 0 = no limit"},
        {"rate-limit-burst", CXM_OPT_INT, &cfg->rate_burst, 0, 10000000,
         "requests a subject may burst above the rate; 0 = the rate"},
        {"client-token", CXM_OPT_STR, &cfg->client_token, 0, 0,
         "bearer token this server's own calls (the resolver's) send; prefer the file"},
        {"client-token-file", CXM_OPT_STR, &cfg->client_token_file, 0, 0,
         "file holding that token (an \"internal\" scope token)"},
        {"nats-nkey-seed", CXM_OPT_STR, &cfg->nats_nkey_seed, 0, 0,
         "NATS user NKey seed file (\"SU...\", from nk -gen user)"},
        {"nats-user", CXM_OPT_STR, &cfg->nats_user, 0, 0,
         "NATS user name; its password from --nats-password-file or $CXM_NATS_PASSWORD"},
        {"nats-password-file", CXM_OPT_STR, &cfg->nats_password_file, 0, 0,
         "file holding the NATS user's password"},
        {"nats-token-file", CXM_OPT_STR, &cfg->nats_token_file, 0, 0,
         "file holding a NATS token ($CXM_NATS_TOKEN also works)"},
        {"nats-tls-ca", CXM_OPT_STR, &cfg->nats_tls_ca, 0, 0,
         "CA certificates (PEM) that signed the NATS server's; turns TLS on"},
        {"nats-tls-cert", CXM_OPT_STR, &cfg->nats_tls_cert, 0, 0,
         "client certificate (PEM) for a NATS server that verifies clients; turns TLS on"},
        {"nats-tls-key", CXM_OPT_STR, &cfg->nats_tls_key, 0, 0, "the key of --nats-tls-cert (PEM)"},
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
    /* Auth first: the listen policy depends on it. */
    cfg->loopback = cxm_server_listen_is_loopback(cfg->listen);
    if (configure_auth(cfg, err, sizeof err) != 0 || check_tls_flags(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s (see --help)\n", argv[0], err);
        *exit_code = 2;
        return 1;
    }
    return 0;
}

/* A secret from the file named by flag (its first line), else from the
 * environment variable env, else NULL; -1 (logged, without the secret) when
 * the file cannot be read or is empty. Secrets never go on the command
 * line, where ps shows them. */
static int read_secret(const char *flag, const char *path, const char *env, char *buf, size_t cap,
                       const char **out)
{
    *out = NULL;
    if (!path || !*path) {
        const char *v = getenv(env);
        *out = v && *v ? v : NULL;
        return 0;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        cxm_log_error("host.secret_unreadable",
                      "--%s %s: %s; the service user must be able to read it", flag, path,
                      strerror(errno));
        return -1;
    }
    bool got = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    buf[got ? strcspn(buf, "\r\n") : 0] = '\0';
    if (!*buf) {
        cxm_log_error("host.secret_empty", "--%s %s: the first line is empty; put the secret there",
                      flag, path);
        return -1;
    }
    *out = buf;
    return 0;
}

/* Once the port is open: say so when it is open to everyone (--insecure). */
static void warn_if_exposed(const host_config *cfg)
{
    if (!(has(cfg->tls_cert) && host_auth) && !cfg->loopback)
        cxm_log_warn("server.insecure",
                     "--insecure: %s is reachable from other machines without %s; anyone who "
                     "can connect can read and change every customer's data",
                     cfg->listen, has(cfg->tls_cert) ? "authentication" : "TLS or authentication");
}

/* Modules other than profile resolve identities by calling a profile
 * service (this process's in cxmd). With TLS or auth on here, that profile
 * most likely wants the same of those calls: say at start what they lack,
 * rather than have every resolution fail later. */
static void warn_own_calls(const host_config *cfg, const cxm_module *modules, size_t n)
{
    bool calls_out = false;
    for (size_t i = 0; i < n; i++)
        calls_out = calls_out || strcmp(modules[i].name, "profile") != 0;
    if (!calls_out)
        return;
    if (has(cfg->tls_cert) && !has(cfg->client_tls_ca))
        cxm_log_warn("host.client_tls_missing",
                     "this server speaks TLS but its own calls to the profile service do not "
                     "(identity resolution will fail): give --client-tls-ca (and "
                     "--client-tls-cert/--client-tls-key under mutual TLS)");
    if (host_auth && !client_token)
        cxm_log_warn("host.client_token_missing",
                     "auth is on but this server's own calls to the profile service carry no "
                     "token (identity resolution will be refused): give --client-token-file "
                     "with an \"internal\" scope token");
}

/* The bus exists before the modules, which find it with cxm_bus_of(store). */
static int open_bus(cxm_store *store, const host_config *cfg, cxm_bus **out)
{
    char password[512], token[512];
    cxm_nats_opts sec = {.nkey_seed_file = cfg->nats_nkey_seed,
                         .user = cfg->nats_user,
                         .tls_ca = cfg->nats_tls_ca,
                         .tls_cert = cfg->nats_tls_cert,
                         .tls_key = cfg->nats_tls_key};
    if (read_secret("nats-password-file", cfg->nats_password_file, "CXM_NATS_PASSWORD", password,
                    sizeof password, &sec.password) != 0 ||
        read_secret("nats-token-file", cfg->nats_token_file, "CXM_NATS_TOKEN", token, sizeof token,
                    &sec.token) != 0)
        return CXM_EINVAL;
    cxm_bus_opts o = {
        .nats_url = cfg->nats_url, .nats_creds = cfg->nats_creds, .nats_security = &sec};
    int rc = cxm_bus_create(store, &o, out);
    /* libnats keeps its own copies for reconnecting. */
    explicit_bzero(password, sizeof password);
    explicit_bzero(token, sizeof token);
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

/* The store's write health drives Health: NOT_SERVING while writes fail
 * (full map or disk), SERVING again once one commits. */
static void on_store_health(void *user, int rc, const char *why)
{
    cxm_server_set_degraded(user, rc != 0);
    if (rc)
        cxm_log_error("health.not_serving",
                      "the store cannot write (%s): %s; Health answers NOT_SERVING until a write "
                      "commits (probed every second): free disk space or raise --max-map-size",
                      cxm_strerror(rc), why);
    else
        cxm_log_info("health.serving", "the store writes again; Health answers SERVING");
}

/* fd: the file-descriptor limit before and after raising it, and the hard
 * limit. */
static int serve(const host_config *cfg, cxm_store *store, cxm_service *svcs, size_t n,
                 cxm_bus *bus, const struct timespec *started, const long fd[3])
{
    cxm_server_opts so = {.auth = host_auth,
                          .listen = cfg->listen,
                          .workers = (int)cfg->workers,
                          .requests_per_method = (int)cfg->requests_per_method,
                          .max_message_bytes = (size_t)cfg->max_message_bytes,
                          .grace_ms = cfg->grace_ms,
                          .tls_cert = cfg->tls_cert,
                          .tls_key = cfg->tls_key,
                          .tls_client_ca = cfg->tls_client_ca,
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
        cxm_store_on_health(store, on_store_health, srv);
        warn_if_exposed(cfg);
        rc = cxm_server_run(srv);
        cxm_store_on_health(store, NULL, NULL);
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
                       .auth = "auto",
                       .clock_skew_ms = 60000,
                       .erasure_compact_delay_ms = 1000,
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
    warn_own_calls(&cfg, modules, nmodules);
    client_opts = (cxm_channel_opts){.tls_ca = cfg.client_tls_ca,
                                     .tls_cert = cfg.client_tls_cert,
                                     .tls_key = cfg.client_tls_key,
                                     .token = client_token};
    /* Before anything opens a file: every connection costs one. Logged once
     * the server listens, so that a failed start stays one line. */
    long fd_before, fd_hard;
    long fd_now = cxm_server_raise_fd_limit(&fd_before, &fd_hard);

    cxm_store *store = NULL;
    cxm_service svcs[MAX_MODULES];
    memset(svcs, 0, sizeof svcs);
    size_t opened = 0;
    cxm_bus *bus = NULL;
    /* A cap below the default initial map is the whole map. */
    cxm_store_opts so = {.max_map_size = (size_t)cfg.max_map_size,
                         .initial_map_size = cfg.max_map_size && cfg.max_map_size < (64u << 20)
                                                 ? (size_t)cfg.max_map_size
                                                 : 0};
    int rc = cxm_store_open(cfg.data, &so, &store);
    if (rc == 0)
        cxm_store_set_compact_delay(store, (unsigned)cfg.erasure_compact_delay_ms);
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
        rc =
            serve(&cfg, store, svcs, nmodules, bus, &started, (long[]){fd_before, fd_now, fd_hard});
    cxm_bus_stop(bus); /* no delivery into closing modules */
    while (opened > 0) {
        opened--;
        if (modules[opened].close)
            modules[opened].close(&svcs[opened]);
    }
    cxm_bus_destroy(bus);
    if (store)
        cxm_store_close(store);
    cxm_auth_destroy(host_auth);
    host_auth = NULL;
    free(client_token);
    client_token = NULL;
    return rc == 0 ? 0 : bad_flags ? 2 : 1;
}
