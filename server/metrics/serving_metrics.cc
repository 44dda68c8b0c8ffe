#include "server/metrics/serving_metrics.h"

namespace zi::server {
namespace {

using prometheus::Histogram;

prometheus::Histogram& histogram(prometheus::Registry& r, const char* name, const char* help,
                                 Histogram::BucketBoundaries buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(buckets));
}

}  // namespace

ServingMetrics::ServingMetrics(prometheus::Registry& r)
    : ttft_(histogram(r, "zeroinfer_time_to_first_token_seconds",
                      "Seconds from a request's arrival to its first generated token",
                      {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60})),
      itl_(histogram(r, "zeroinfer_inter_token_latency_seconds", "Seconds between consecutive tokens of a request",
                     {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})),
      duration_(histogram(r, "zeroinfer_request_duration_seconds",
                          "Seconds from a request's arrival to its last message",
                          {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})),
      queue_(histogram(r, "zeroinfer_queue_duration_seconds",
                       "Seconds a request waited between arrival and its first step",
                       {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300})),
      batch_(histogram(r, "zeroinfer_batch_size", "Sequences per engine step",
                       {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})),
      prompt_tokens_(prometheus::BuildCounter()
                         .Name("zeroinfer_prompt_tokens_total")
                         .Help("Prompt tokens of the requests that ran")
                         .Register(r)
                         .Add({})),
      generation_tokens_(prometheus::BuildCounter()
                             .Name("zeroinfer_generation_tokens_total")
                             .Help("Tokens generated")
                             .Register(r)
                             .Add({})),
      running_(prometheus::BuildGauge()
                   .Name("zeroinfer_requests_running")
                   .Help("Requests whose sequences are in the running batch")
                   .Register(r)
                   .Add({})),
      waiting_(prometheus::BuildGauge()
                   .Name("zeroinfer_requests_waiting")
                   .Help("Requests admitted to the queue and not yet running")
                   .Register(r)
                   .Add({})),
      engine_(r) {
  auto& family = prometheus::BuildCounter()
                     .Name("zeroinfer_requests_total")
                     .Help("Finished requests by how they ended")
                     .Register(r);
  const char* reasons[6] = {"length", "eos", "stop", "cancelled", "error", "rejected"};
  for (int i = 0; i < 6; ++i) outcomes_[i] = &family.Add({{"finish_reason", reasons[i]}});
  auto& by_api = prometheus::BuildCounter()
                     .Name("zeroinfer_api_requests_total")
                     .Help("Generation requests received, by the API they came through (one per prompt)")
                     .Register(r);
  api_[0] = &by_api.Add({{"api", "grpc"}});
  api_[1] = &by_api.Add({{"api", "http"}});
}

void ServingMetrics::count_request(RequestOutcome outcome) { outcomes_[static_cast<int>(outcome)]->Increment(); }

}  // namespace zi::server
