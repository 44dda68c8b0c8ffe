// The OpenAI-compatible HTTP API (server.http_listen), beside gRPC in the same process and over the same
// FrontendState: the same scheduler, request limits, queue bound and bearer token.
//
//   POST /v1/completions, POST /v1/chat/completions   generation (openai_request.h, completion_job.h)
//   GET  /v1/models                                   the served model
//   GET  /health                                      200 when serving, 503 while loading or draining (no token)
//
// With a bearer token set, every path but /health needs `Authorization: Bearer <token>` (401 otherwise). Bodies
// are parsed, validated and tokenized on the intake pool, never on the I/O thread.
#pragma once

#include <boost/asio/thread_pool.hpp>

#include "server/frontend/frontend_state.h"
#include "server/http/http_server.h"
#include "server/metrics/serving_metrics.h"

namespace zi::server::http {

class OpenAiApi {
 public:
  // All three are borrowed and must outlive the HTTP server; `metrics` may be null.
  OpenAiApi(boost::asio::thread_pool* intake, FrontendState* state, ServingMetrics* metrics)
      : intake_(intake), state_(state), metrics_(metrics) {}

  // The HttpServer's handler (runs on its I/O thread; returns at once).
  void handle(Request request, std::shared_ptr<Reply> reply);

 private:
  void generate(Request request, std::shared_ptr<Reply> reply, bool chat);
  void models(Reply& reply, const ServingRuntime& rt);
  void reject(uint64_t n = 1);

  boost::asio::thread_pool* intake_;
  FrontendState* state_;
  ServingMetrics* metrics_;
  const int64_t started_ = static_cast<int64_t>(std::time(nullptr));
};

}  // namespace zi::server::http
