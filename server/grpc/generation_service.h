// zeroinfer.v1.Generation over gRPC's callback API. Handlers return at once: tokenization and validation run
// on the intake pool, generation on the scheduler thread; reactors never block.
//
// Before the model is loaded every RPC answers UNAVAILABLE. The model, limits, queue bound and token come from
// the FrontendState the HTTP API shares (server/frontend/frontend_state.h). With a bearer token set (server/grpc/security.h),
// every RPC first checks the call's `authorization` metadata and answers UNAUTHENTICATED without it.
#pragma once

#include <memory>

#include <boost/asio/thread_pool.hpp>

#include "server/frontend/frontend_state.h"
#include "server/metrics/serving_metrics.h"
#include "zeroinfer/v1/generate.grpc.pb.h"

namespace zi::server {

class GenerationService final : public ::zeroinfer::v1::Generation::CallbackService {
 public:
  // `intake` runs tokenization/validation; `state` holds the model, limits and token both front ends serve;
  // `metrics` may be null. All three must outlive the service.
  GenerationService(boost::asio::thread_pool* intake, FrontendState* state, ServingMetrics* metrics);

  grpc::ServerWriteReactor<::zeroinfer::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const ::zeroinfer::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const ::zeroinfer::v1::GetModelInfoRequest* request,
                                         ::zeroinfer::v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const ::zeroinfer::v1::TokenizeRequest* request,
                                     ::zeroinfer::v1::TokenizeResponse* response) override;

 private:
  // OK, or UNAUTHENTICATED when a token is set and the call does not carry it.
  grpc::Status authorize(const grpc::CallbackServerContext* context) const;
  void reject(RequestOutcome outcome);

  boost::asio::thread_pool* intake_;
  FrontendState* state_;
  ServingMetrics* metrics_;
};

}  // namespace zi::server
