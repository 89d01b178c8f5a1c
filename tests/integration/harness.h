/*
 * harness.h - start a real cxm server binary on a free loopback port for an
 * integration test, and stop it.
 *
 * The server runs with --listen 127.0.0.1:0 and a fresh data directory under
 * /tmp; its log goes to DATA/server.log and is parsed for the "listening on"
 * line to learn the port. posix_spawn is used because the test process also
 * runs gRPC, and fork after grpc_init is unsupported.
 */
#ifndef CXM_TEST_HARNESS_H
#define CXM_TEST_HARNESS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "check.h"
#include "cxm/client.h"
#include "cxm/v1/common.pb-c.h"
#include "cxm/v1/profile.pb-c.h"

typedef struct test_server {
    const char *binary;
    const char *const *extra_args;
    pid_t pid;
    int port;
    char target[64];
    char data_dir[256];
    char log_path[300];
} test_server;

/* Start binary with extra arguments (NULL-terminated, may be NULL). Waits
 * up to 10 s for the listening line; exits the test on failure. */
void harness_start(test_server *s, const char *binary, const char *const *extra_args);

/* Start the server again, same binary and flags, on the data directory of
 * the stopped server s. */
void harness_restart(test_server *s);

/* Send sig and wait up to timeout_ms for the process to exit. Returns its
 * exit status (0-255), 128+signal if killed by one, or -1 on time-out (the
 * process is then SIGKILLed). */
int harness_stop(test_server *s, int sig, int timeout_ms);

/* Remove the data directory (after the server stopped). */
void harness_cleanup(test_server *s);

/* True when the server's log contains needle. */
bool harness_log_contains(const test_server *s, const char *needle);

/* One test case: runs against a freshly started server on channel ch. */
typedef struct harness_case {
    const char *name;
    void (*run)(cxm_channel *ch, test_server *srv);
} harness_case;

/* main() of an integration test program, `PROG SERVER_BINARY CASE`: start
 * the server, run the named case, stop it with SIGTERM expecting exit 0.
 * Returns the exit status (failures exit through CHECK). */
int harness_main(int argc, char **argv, const harness_case *cases, size_t ncases);

/* One unary RPC, service_path + method ("/cxm.v1.ProfileService/" +
 * "GetProfile"), with a 10 s deadline. Returns the status; on OK *resp (a
 * ProtobufCMessage pointer, may be NULL) is the answer decoded in arena;
 * details (512 bytes, may be NULL) gets the status message. Exits the test
 * when the call cannot even start. */
grpc_status_code harness_call(cxm_channel *ch, const char *service_path, const char *method,
                              const void *req, const ProtobufCMessageDescriptor *resp_desc,
                              cxm_arena *arena, void *resp, char *details);

/* service's line ("feedback") of the deletion receipt receipt_id
 * (ProfileService/GetDeletionReceipt), in arena; fails the test when the
 * call fails or the receipt lacks the service. */
const Cxm__V1__ServiceErasure *harness_receipt_line(cxm_channel *ch, cxm_arena *arena,
                                                    const char *receipt_id, const char *service);

/* Upsert profile's segment segment_id of the customers who have an identity
 * of type (the "known" customers); fails the test when refused. */
void harness_identity_segment(cxm_channel *ch, cxm_arena *arena, const char *segment_id,
                              Cxm__V1__IdentityType type);

/* DeleteProfile of customer_id, then service's receipt line once it is
 * DONE (polled for 10 s, else the test fails), in arena. */
const Cxm__V1__ServiceErasure *harness_erase(cxm_channel *ch, cxm_arena *arena,
                                             const char *customer_id, const char *service);

/* The binary next to srv's ("cxm-profile" beside cxmd), in a. */
const char *harness_sibling(cxm_arena *a, const test_server *srv, const char *name);

/* A profile service that is down: cxm-profile (next to srv's binary) is
 * started and stopped, so prof knows its port and data; harness_restart(prof)
 * brings it back on that same port. Returns "127.0.0.1:PORT" (in a) for
 * --profile-addr. */
const char *harness_profile_stopped(cxm_arena *a, const test_server *srv, test_server *prof);

/* ---- request building: everything in the case's arena ---- */

/* Wall-clock milliseconds since the epoch (event and answer times). */
int64_t harness_wall_ms(void);

/* A printf-formatted copy (at most 511 bytes) in a. */
char *harness_fmt(cxm_arena *a, const char *f, ...) __attribute__((format(printf, 2, 3)));

/* A CustomerRef naming a customer id, or an identity of type. */
Cxm__V1__CustomerRef *harness_ref_id(cxm_arena *a, const char *customer_id);
Cxm__V1__CustomerRef *harness_ref_identity(cxm_arena *a, Cxm__V1__IdentityType type,
                                           const char *value);

/* Call `method` through the test file's own call(ch, method, req, desc,
 * resp, details) (a harness_call bound to its service and arena) and fail
 * the test unless it answers OK. */
#define CALL_OK(ch, method, req, type, resp)                                                       \
    do {                                                                                           \
        char d_[512];                                                                              \
        grpc_status_code s_ = call(ch, #method, &(req).base, &type##__descriptor, &(resp), d_);    \
        CHECK(s_ == GRPC_STATUS_OK, #method ": status %d: %s", s_, d_);                            \
    } while (0)

#endif
