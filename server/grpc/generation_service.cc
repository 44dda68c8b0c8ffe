#include "server/grpc/generation_service.h"

#include <boost/asio/post.hpp>

#include "engine/core/log.h"
#include "server/grpc/generate_stream.h"
#include "server/grpc/security.h"

namespace zi::server {

namespace pb = ::zeroinfer::v1;

namespace {

// The RPC's deadline on the steady clock (max = none).
Clock::time_point steady_deadline(const grpc::CallbackServerContext* ctx) {
  auto d = ctx->deadline();
  if (d == std::chrono::system_clock::time_point::max()) return Clock::time_point::max();
  auto left = d - std::chrono::system_clock::now();
  if (left > std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
}

const grpc::Status kLoading(grpc::StatusCode::UNAVAILABLE, "the model is still loading; retry shortly");

}  // namespace

GenerationService::GenerationService(boost::asio::thread_pool* intake, FrontendState* state, ServingMetrics* metrics)
    : intake_(intake), state_(state), metrics_(metrics) {}

grpc::Status GenerationService::authorize(const grpc::CallbackServerContext* context) const {
  std::shared_ptr<const std::string> token = state_->auth_token();
  return check_bearer(context->client_metadata(), token.get());
}

void GenerationService::reject(RequestOutcome outcome) {
  if (metrics_) metrics_->count_request(outcome);
}

grpc::ServerWriteReactor<pb::GenerateResponse>* GenerationService::Generate(grpc::CallbackServerContext* context,
                                                                           const pb::GenerateRequest* request) {
  std::string request_id = request->request_id();
  if (request_id.empty()) request_id = absl::StrFormat("req-%016x", state_->random_u64());
  auto* reactor = new GenerateReactor(request_id);
  std::shared_ptr<GenerateStream> stream = reactor->stream();
  const Clock::time_point arrival = Clock::now();
  if (metrics_) metrics_->count_api_request(Api::kGrpc);

  if (grpc::Status auth = authorize(context); !auth.ok()) {
    reject(RequestOutcome::kRejected);
    stream->finish_now(auth);
    return reactor;
  }
  std::shared_ptr<const ServingRuntime> rt = state_->runtime();
  if (!rt) {
    reject(RequestOutcome::kRejected);
    stream->finish_now(kLoading);
    return reactor;
  }
  // A server.max_queue lowered by a reload (the scheduler enforces the start-up value itself).
  if (Status bound = state_->check_lowered_queue_bound(*rt->scheduler); !bound.ok()) {
    reject(RequestOutcome::kRejected);
    stream->finish_now(to_grpc(bound));
    return reactor;
  }
  // Take a place in the queue now, so that a full queue is refused before any work is done.
  StatusOr<Reservation> reservation = rt->scheduler->reserve();
  if (!reservation.ok()) {
    reject(RequestOutcome::kRejected);
    stream->finish_now(to_grpc(reservation.status()));
    return reactor;
  }
  Scheduler* scheduler = rt->scheduler;
  stream->set_cancel_hook([scheduler] { scheduler->wake(); });
  const Clock::time_point deadline = steady_deadline(context);
  // The request message lives as long as the RPC, but the job may outlast a cancelled RPC: copy it.
  auto job = [this, rt, stream, req = *request, request_id, arrival, deadline,
              res = std::make_shared<Reservation>(std::move(*reservation))]() mutable {
    if (stream->cancelled()) {
      reject(RequestOutcome::kCancelled);
      stream->fail(absl::CancelledError("cancelled by the client"));
      return;  // `res` releases the place
    }
    StatusOr<GenerationRequest> valid =
        validate_request(req, rt->tokenizer, rt->limits, [this] { return state_->random_u64(); },
                         rt->chat_template);
    if (!valid.ok()) {
      ZI_LOG(DEBUG) << "request " << request_id << " rejected: " << valid.status().message();
      reject(RequestOutcome::kRejected);
      stream->fail(valid.status());
      return;
    }
    valid->request_id = request_id;
    valid->arrival = arrival;
    valid->deadline = deadline;
    rt->scheduler->submit(std::move(*res), std::move(*valid), stream);
  };
  boost::asio::post(*intake_, std::move(job));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const pb::GetModelInfoRequest*, pb::ModelInfo* response) {
  auto* reactor = context->DefaultReactor();
  if (grpc::Status auth = authorize(context); !auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  std::shared_ptr<const ServingRuntime> rt = state_->runtime();
  if (!rt) {
    reactor->Finish(kLoading);
    return reactor;
  }
  const ModelSummary& s = rt->summary;
  response->set_name(s.name);
  response->set_architecture(s.architecture);
  response->set_parameters(s.parameters);
  response->set_vocab_size(s.vocab_size);
  response->set_max_context(rt->limits.max_context);
  response->set_dtype(s.dtype);
  response->set_device(s.device);
  response->set_num_ranks(s.num_ranks);
  response->set_quant_bits(s.quant_bits);
  response->set_quant_group_size(s.quant_group_size);
  response->set_layer_weight_bytes(s.layer_weight_bytes);
  for (const std::string& t : s.layer_tiers) response->add_layer_tiers(t);
  response->set_streamed_bytes_per_step(s.streamed_bytes_per_step);
  response->set_prefetch_depth(s.prefetch_depth);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                     const pb::TokenizeRequest* request,
                                                     pb::TokenizeResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (grpc::Status auth = authorize(context); !auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  std::shared_ptr<const ServingRuntime> rt = state_->runtime();
  if (!rt) {
    reactor->Finish(kLoading);
    return reactor;
  }
  // The request and response outlive the job: gRPC keeps them until the reactor's Finish.
  boost::asio::post(*intake_, [rt, request, response, reactor] {
    auto ids = rt->tokenizer->encode(request->text(), request->add_special_tokens());
    if (!ids.ok()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("text: ", ids.status().message())));
      return;
    }
    for (int32_t id : *ids) {
      response->add_ids(static_cast<uint32_t>(id));
      response->add_tokens(rt->tokenizer->id_to_token(id));
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace zi::server
