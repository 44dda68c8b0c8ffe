// zeroinfer.v1.Generation over gRPC's callback API. Handlers return at once: tokenization and validation run
// on the intake pool, generation on the scheduler thread; reactors never block.
//
// Before the model is loaded (and after the engine was lost) every RPC but GetModelInfo... answers UNAVAILABLE.
#pragma once

#include <memory>
#include <mutex>
#include <random>

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
  uint64_t random_u64();
  void reject(RequestOutcome outcome);

  boost::asio::thread_pool* intake_;
  ServingMetrics* metrics_;
  mutable std::mutex mu_;
  std::shared_ptr<const ServingRuntime> runtime_;  // guarded by mu_
  std::mt19937_64 rng_;                             // guarded by mu_
};

}  // namespace zi::server
