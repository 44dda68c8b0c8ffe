// What the two front ends (gRPC: server/grpc/, the OpenAI-compatible HTTP API: server/http/) share, so that both
// serve the same model under the same limits, queue bound and bearer token, and a SIGHUP changes both at once.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include "engine/runtime/executor.h"
#include "engine/tokenizer/model_chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/grpc/validate.h"
#include "server/scheduler/scheduler.h"

namespace zi::server {

// What the front ends need once the model is up. Everything borrowed must outlive both servers.
struct ServingRuntime {
  const Tokenizer* tokenizer = nullptr;
  Scheduler* scheduler = nullptr;
  const tok::ModelChatTemplate* chat_template = nullptr;  // null: the model has none (chat is refused)
  ModelSummary summary;
  RequestLimits limits;
  uint32_t max_batch_size = 1;  // server.max_batch_size: the most prompts one HTTP completion request may carry
};

class FrontendState {
 public:
  FrontendState() : rng_(std::random_device{}()) {}

  // Publishes the loaded model (call once). Until then runtime() is null and requests are answered "loading".
  void set_runtime(ServingRuntime runtime);
  std::shared_ptr<const ServingRuntime> runtime() const;
  // Replaces the request limits of the published runtime (SIGHUP). Requests already validated keep the limits
  // they were checked against.
  void set_limits(const RequestLimits& limits);

  // A queue bound below the scheduler's own (server.max_queue lowered by a reload); 0 = only the scheduler's.
  void set_max_queue(uint32_t max_queue) { max_queue_.store(max_queue); }
  // RESOURCE_EXHAUSTED when that bound is set and reached. Checked against the scheduler's counters before a place
  // is reserved, so a request racing a step may pass it by one; the scheduler's bound (the start-up
  // server.max_queue) stays exact.
  Status check_lowered_queue_bound(const Scheduler& scheduler) const;

  // The bearer token every request but health must carry (nullopt = none).
  void set_auth_token(std::optional<std::string> token);
  std::shared_ptr<const std::string> auth_token() const;  // null = no authentication

  uint64_t random_u64();

  // False while loading, once draining has begun or after the workers were lost: /health answers 503 and new
  // HTTP requests are refused (gRPC's health service says the same).
  void set_serving(bool serving) { serving_.store(serving); }
  bool serving() const { return serving_.load(); }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ServingRuntime> runtime_;  // guarded by mu_
  std::shared_ptr<const std::string> auth_token_;   // guarded by mu_
  std::atomic<uint32_t> max_queue_{0};
  std::atomic<bool> serving_{false};
  std::mt19937_64 rng_;                             // guarded by mu_
};

}  // namespace zi::server
