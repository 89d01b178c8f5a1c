/*
 * health_probe.cc - cxm-cpp-health-probe: time from exec to SERVING.
 *
 *   cxm-cpp-health-probe --target HOST:PORT [--timeout-ms N] -- COMMAND [ARGS...]
 *
 * Starts COMMAND (a server that will listen on HOST:PORT), asks
 * grpc.health.v1.Health/Check about every 0.5 ms until it answers SERVING,
 * prints the microseconds from just before exec to that answer, then stops
 * the server with SIGTERM and waits for it. Exit 0 on SERVING, 1 otherwise.
 *
 * Why a program and not a shell loop of client processes: a gRPC client
 * process costs tens of ms to start, more than the resolution we need. Here
 * gRPC is initialised before the clock starts, so each poll costs well under
 * a millisecond.
 */
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include "grpc/health/v1/health.grpc.pb.h"

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using clk = std::chrono::steady_clock;

static bool serving(const std::string &target)
{
    // A fresh channel with its own subchannel pool per poll: otherwise a
    // refused connection puts the shared subchannel into reconnect backoff
    // (a second or more) and we would measure gRPC's backoff, not the server.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    auto stub = grpc::health::v1::Health::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    HealthCheckRequest req;
    HealthCheckResponse resp;
    grpc::Status st = stub->Check(&ctx, req, &resp);
    return st.ok() && resp.status() == HealthCheckResponse::SERVING;
}

int main(int argc, char **argv)
{
    std::string target;
    long timeout_ms = 5000;
    int i = 1;
    for (; i < argc; i++) {
        if (std::strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            target = argv[++i];
        } else if (std::strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            timeout_ms = std::atol(argv[++i]);
        } else if (std::strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            break;
        }
    }
    if (target.empty() || i >= argc) {
        std::fprintf(stderr, "usage: cxm-cpp-health-probe --target HOST:PORT [--timeout-ms N] "
                             "-- COMMAND [ARGS...]\n");
        return 2;
    }

    serving(target); // warm gRPC up (threads, resolver) before the clock starts

    clk::time_point t0 = clk::now();
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("cxm-cpp-health-probe: fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[i], argv + i);
        std::perror("cxm-cpp-health-probe: exec");
        _exit(127);
    }

    bool ok = false;
    clk::time_point deadline = t0 + std::chrono::milliseconds(timeout_ms);
    while (clk::now() < deadline) {
        if (serving(target)) {
            ok = true;
            break;
        }
        if (waitpid(pid, nullptr, WNOHANG) == pid) {
            std::fprintf(stderr, "cxm-cpp-health-probe: %s exited before SERVING\n", argv[i]);
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    long long us = std::chrono::duration_cast<std::chrono::microseconds>(clk::now() - t0).count();
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    if (!ok) {
        std::fprintf(stderr, "cxm-cpp-health-probe: no SERVING from %s within %ld ms\n",
                     target.c_str(), timeout_ms);
        return 1;
    }
    std::printf("%lld\n", us);
    return 0;
}
