// The /metrics endpoint: `GET /metrics` (and HEAD) answers the Prometheus text format of one prometheus-cpp
// Registry; anything else is 404 (another path) or 405 (another method). It runs on the same Beast server as the
// HTTP API (server/http/http_server.h), plain and unauthenticated, on its own port (server.metrics_listen).
//
// Why not prometheus-cpp's Exposer: its civetweb creates threads with a fixed 100 KiB stack, and glibc refuses
// such threads once a linked library (libcublasLt in the CUDA build) needs more static TLS than that, so the
// exporter could not start in the CUDA build (docs/KNOWN_ISSUES.md). std::thread stacks have no such limit.
//
// Each connection gets one response and is closed. Thread-safety: Start/port/destructor from one thread; scrapes run on the server's I/O thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "engine/core/status.h"
#include "server/http/http_server.h"

namespace zi::server {

class MetricsHttpServer {
 public:
  // Binds HOST:PORT (port 0 = any free port) and starts serving `registry`, which must outlive the server.
  static StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host_port,
                                                            std::shared_ptr<prometheus::Registry> registry);

  uint16_t port() const { return server_->port(); }

 private:
  explicit MetricsHttpServer(std::unique_ptr<http::HttpServer> server) : server_(std::move(server)) {}
  std::unique_ptr<http::HttpServer> server_;
};

}  // namespace zi::server
