/*
 * health_peer.cc - cxm-cpp-health-peer: the C++ baseline for cxmd.
 *
 * Serves grpc.health.v1.Health/Check with Debian's libgrpc++ (1.51) through
 * the callback API, which is what a C++ service written today would use.
 * It answers the way cxmd does ("" and the Health service itself are SERVING,
 * any other name is NOT_FOUND), so both sides do the same work per call.
 * Watch and List are left UNIMPLEMENTED: the benchmark only asks Check.
 *
 *   cxm-cpp-health-peer [--listen HOST:PORT]    (default 127.0.0.1:0)
 *
 * When ready it prints "listening on HOST:PORT" (the bound port, if 0 was
 * asked) on stdout; SIGTERM or SIGINT shut it down with exit status 0.
 */
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <pthread.h>

#include <grpcpp/grpcpp.h>

#include "grpc/health/v1/health.grpc.pb.h"

namespace
{

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class HealthPeer final : public grpc::health::v1::Health::CallbackService
{
    grpc::ServerUnaryReactor *Check(grpc::CallbackServerContext *ctx, const HealthCheckRequest *req,
                                    HealthCheckResponse *resp) override
    {
        // The default reactor finishes inline: no allocation or thread hop
        // beyond what the runtime itself needs.
        grpc::ServerUnaryReactor *r = ctx->DefaultReactor();
        const std::string &name = req->service();
        if (name.empty() || name == "grpc.health.v1.Health") {
            resp->set_status(HealthCheckResponse::SERVING);
            r->Finish(grpc::Status::OK);
        } else {
            r->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "this server does not host service \"" + name + "\""));
        }
        return r;
    }
};

void usage(FILE *f)
{
    std::fprintf(f, "usage: cxm-cpp-health-peer [--listen HOST:PORT]\n");
}

} // namespace

int main(int argc, char **argv)
{
    std::string listen = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (std::strncmp(argv[i], "--listen=", 9) == 0) {
            listen = argv[i] + 9;
        } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos) {
        std::fprintf(stderr, "cxm-cpp-health-peer: --listen wants HOST:PORT, got \"%s\"\n",
                     listen.c_str());
        return 2;
    }

    // Block the stop signals before gRPC starts its threads, so they all
    // inherit the mask and only sigwait() below ever sees the signals.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    HealthPeer service;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port == 0) {
        std::fprintf(stderr, "cxm-cpp-health-peer: cannot listen on %s\n", listen.c_str());
        return 1;
    }
    std::printf("listening on %s:%d\n", listen.substr(0, colon).c_str(), port);
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    // Give in-flight calls a moment, then cancel the rest: a benchmark peer
    // should stop promptly.
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server->Wait();
    return 0;
}
