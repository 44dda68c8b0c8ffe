// server.health_listen: a second gRPC port that serves grpc.health.v1.Health and nothing else, always in
// plaintext. Kubernetes' native gRPC probe (and most load balancers' health checks) can present neither a client
// certificate nor a bearer token, while the main port refuses plaintext off loopback; this port gives them the
// serving state only (Check/Watch), never Generate, GetModelInfo, Tokenize or reflection, so plaintext off loopback
// exposes no more than a readiness bit.
//
// Its health state is a mirror: the coordinator sets it together with the main port's (NOT_SERVING while loading,
// when a worker is lost and, for good, once draining starts).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include <grpcpp/completion_queue.h>
#include <grpcpp/server.h>

#include "engine/core/status.h"

namespace zi::server {

class HealthPort {
 public:
  // Binds `listen` (HOST:PORT; port 0 = any free port) and serves health, NOT_SERVING until set_serving(true).
  // Errors name server.health_listen.
  static StatusOr<std::unique_ptr<HealthPort>> Start(const std::string& listen);
  ~HealthPort();

  int port() const { return port_; }
  // The status of "" (the whole server) and of `services` on this port.
  void set_serving(bool serving, const std::string& service);
  // NOT_SERVING for every service, and later set_serving() calls are ignored (gRPC's Shutdown semantics).
  void shutdown_health();
  // Stops accepting and closes open calls (Watch streams) within `deadline_ms`.
  void stop(int deadline_ms);

 private:
  HealthPort() = default;
  std::unique_ptr<grpc::Server> server_;
  // gRPC refuses to build a server with no service of its own (the health service is added later, at start)
  // unless a completion queue is polled: this one, drained by its thread; nothing is ever queued on it.
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread cq_thread_;
  int port_ = 0;
};

}  // namespace zi::server
