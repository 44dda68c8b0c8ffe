// zeroinfer.v1.Generation over gRPC's callback API. Handlers return at once: tokenization and validation run
// on the intake pool, generation on the scheduler thread; reactors never block.
//
// Before the model is loaded every RPC answers UNAVAILABLE. With a bearer token set (server/grpc/security.h),
// every RPC first checks the call's `authorization` metadata and answers UNAUTHENTICATED without it.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include <boost/asio/thread_pool.hpp>

#include "engine/runtime/executor.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/grpc/validate.h"
#include "server/metrics/serving_metrics.h"
#include "server/scheduler/scheduler.h"
#include "zeroinfer/v1/generate.grpc.pb.h"

namespace zi::server {

// What the service needs once the model is up. Everything borrowed must outlive the gRPC server.
struct ServingRuntime {
  const Tokenizer* tokenizer = nullptr;
  Scheduler* scheduler = nullptr;
  ModelSummary summary;
  RequestLimits limits;
};

class GenerationService final : public ::zeroinfer::v1::Generation::CallbackService {
 public:
  // `intake` runs tokenization/validation; `metrics` may be null. Both must outlive the service.
  GenerationService(boost::asio::thread_pool* intake, ServingMetrics* metrics);

  // Publishes the loaded model (thread-safe; call once).
  void set_runtime(ServingRuntime runtime);
  // Replaces the request limits of the published runtime (SIGHUP; thread-safe). Requests already validated keep
  // the limits they were checked against.
  void set_limits(const RequestLimits& limits);
  // A queue bound below the scheduler's own (server.max_queue lowered by a reload); 0 = only the scheduler's.
  // Checked against the scheduler's counters before a place is reserved, so a request racing a step may pass
  // it by one; the scheduler's bound (the start-up server.max_queue) stays exact. Thread-safe.
  void set_max_queue(uint32_t max_queue);
  // The bearer token every RPC of this service must carry (nullopt = none). Thread-safe; callable any time.
  void set_auth_token(std::optional<std::string> token);

  grpc::ServerWriteReactor<::zeroinfer::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const ::zeroinfer::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const ::zeroinfer::v1::GetModelInfoRequest* request,
                                         ::zeroinfer::v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const ::zeroinfer::v1::TokenizeRequest* request,
                                     ::zeroinfer::v1::TokenizeResponse* response) override;

 private:
  std::shared_ptr<const ServingRuntime> runtime() const;
  // OK, or UNAUTHENTICATED when a token is set and the call does not carry it.
  grpc::Status authorize(const grpc::CallbackServerContext* context) const;
  uint64_t random_u64();
  void reject(RequestOutcome outcome);

  boost::asio::thread_pool* intake_;
  ServingMetrics* metrics_;
  mutable std::mutex mu_;
  std::shared_ptr<const ServingRuntime> runtime_;  // guarded by mu_
  std::shared_ptr<const std::string> auth_token_;   // null = no authentication; guarded by mu_
  std::atomic<uint32_t> max_queue_{0};
  std::mt19937_64 rng_;                             // guarded by mu_
};

}  // namespace zi::server
