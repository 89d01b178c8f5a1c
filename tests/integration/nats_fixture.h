/*
 * nats_fixture.h - a real nats-server with JetStream on a free loopback port,
 * for integration tests (plain C, no libnats: readiness is checked by asking
 * the JetStream API over a raw socket).
 *
 * The server runs as `nats-server -js -sd DIR/js -a 127.0.0.1 -p PORT` with
 * its log appended to DIR/server.log. It is found through $NATS_SERVER, then
 * /usr/sbin, /usr/bin, /usr/local/bin and $PATH.
 */
#ifndef CXM_TEST_NATS_FIXTURE_H
#define CXM_TEST_NATS_FIXTURE_H

#include <sys/types.h>

/* The exit code that makes ctest report SKIPPED (SKIP_RETURN_CODE). */
#define NF_SKIP 77

/* A server with authorization or TLS: conf is nats-server configuration
 * text (written to DIR/server.conf, given with -c); the readiness check
 * connects as user/password (NULL: anonymously), or, with tls, waits for
 * the log's "Server is ready" instead (it cannot speak TLS). The strings
 * must outlive the server. */
typedef struct nf_config {
    const char *conf;
    const char *user, *password;
    int tls;
} nf_config;

typedef struct nf_server {
    int port;
    char dir[256];
    pid_t pid;
    char url[64]; /* "nats://127.0.0.1:PORT" */
    char bin[256];
    nf_config cfg;
    int restarts; /* for the TLS readiness check */
} nf_server;

/* Start nats-server on a free port with a fresh store directory and wait
 * (up to 10 s) until JetStream answers. Returns 0; -1 when nats-server is
 * not installed (the test should exit NF_SKIP); -2 when it would not start
 * (printed, with the log's path). */
int nf_start(nf_server *s);

/* nf_start with a configuration (see nf_config). */
int nf_start_with(nf_server *s, const nf_config *cfg);

/* SIGKILL the server and reap it. Returns 0, or -1 if it was not running. */
int nf_kill9(nf_server *s);

/* Start the stopped server again on the same port and store directory and
 * wait until JetStream answers. Returns 0 or -2. */
int nf_restart(nf_server *s);

/* SIGTERM (SIGKILL after 5 s), reap, and remove the directory. */
void nf_stop(nf_server *s);

#endif
