// The /metrics endpoint: a minimal HTTP/1.x server (Boost.Asio, one I/O thread) that answers
// `GET /metrics` with the Prometheus text format of one prometheus-cpp Registry.
//
// Why not prometheus-cpp's Exposer: its civetweb creates threads with a fixed 100 KiB stack, and glibc refuses
// such threads once a linked library (libcublasLt in the CUDA build) needs more static TLS than that, so the
// exporter could not start in the CUDA build (docs/KNOWN_ISSUES.md). std::thread stacks have no such limit.
//
// Each connection gets one response and is closed (Connection: close); a request must arrive within 10 s and
// fit in 16 KiB. Thread-safety: Start/port/destructor from one thread; scrapes run on the I/O thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <prometheus/registry.h>

#include "engine/core/status.h"

namespace zi::server {

class MetricsHttpServer {
 public:
  // Binds HOST:PORT (port 0 = any free port) and starts serving `registry`, which must outlive the server.
  static StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host_port,
                                                            std::shared_ptr<prometheus::Registry> registry);
  ~MetricsHttpServer();  // stops accepting, closes connections, joins the I/O thread

  uint16_t port() const { return port_; }

 private:
  MetricsHttpServer(std::shared_ptr<prometheus::Registry> registry);
  void accept_next();
  std::string respond(const std::string& request) const;

  std::shared_ptr<prometheus::Registry> registry_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace zi::server
