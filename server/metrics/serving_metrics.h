// The serving rows of DESIGN.md's metrics table (prefix zeroinfer_), registered in one prometheus-cpp Registry
// that the coordinator exposes on server.metrics_listen. Thread-safe: prometheus-cpp metrics are atomic.
#pragma once

#include <cstdint>
#include <memory>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "server/metrics/engine_metrics.h"

namespace zi::server {

// requests_total{finish_reason=...}: how each request ended. `rejected` = refused before it ran (bad input,
// queue full, draining); `error` = failed while running (worker lost, engine error, deadline).
enum class RequestOutcome { kLength, kEos, kStop, kCancelled, kError, kRejected };

// api_requests_total{api=...}: the front end a generation request came through.
enum class Api { kGrpc, kHttp };

class ServingMetrics {
 public:
  // Registers the families in `registry` (which must outlive this object).
  explicit ServingMetrics(prometheus::Registry& registry);

  void observe_time_to_first_token(double seconds) { ttft_.Observe(seconds); }
  void observe_inter_token_latency(double seconds) { itl_.Observe(seconds); }
  void observe_request_duration(double seconds) { duration_.Observe(seconds); }
  void observe_queue_duration(double seconds) { queue_.Observe(seconds); }
  void observe_batch_size(double sequences) { batch_.Observe(sequences); }
  void add_prompt_tokens(uint64_t n) { prompt_tokens_.Increment(static_cast<double>(n)); }
  void add_generation_tokens(uint64_t n) { generation_tokens_.Increment(static_cast<double>(n)); }
  void count_request(RequestOutcome outcome);
  void count_api_request(Api api, uint64_t n = 1) { api_[static_cast<int>(api)]->Increment(static_cast<double>(n)); }
  void set_running(double n) { running_.Set(n); }
  void set_waiting(double n) { waiting_.Set(n); }
  // The engine rows (per rank) from a step's figures.
  void observe_step(const StepOutput& out) { engine_.observe_step(out); }

 private:
  prometheus::Histogram& ttft_;
  prometheus::Histogram& itl_;
  prometheus::Histogram& duration_;
  prometheus::Histogram& queue_;
  prometheus::Histogram& batch_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  prometheus::Counter* outcomes_[6];
  prometheus::Counter* api_[2];
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  EngineMetrics engine_;
};

}  // namespace zi::server
