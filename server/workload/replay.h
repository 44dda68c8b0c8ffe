// `zeroinfer bench --workload FILE`: replays mixed traffic through the scheduler in-process (the Scheduler driving
// the executor, as `serve` does behind gRPC) and reports throughput and TTFT / inter-token percentiles.
// FILE is JSONL, one request a line: {"prompt_tokens": N, "output_tokens": M} (prompt ids are drawn at random with a
// fixed seed; every request generates exactly M tokens, EOS ignored). tools/make_workload.py writes such files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/status.h"
#include "engine/runtime/executor.h"

namespace zi::server {

struct WorkloadRequest {
  uint32_t prompt_tokens = 0;
  uint32_t output_tokens = 0;
};

// Reads FILE; an error names the file, line and field.
StatusOr<std::vector<WorkloadRequest>> load_workload(const std::string& path);

struct WorkloadOptions {
  std::string policy = "continuous";      // continuous | static
  uint32_t max_batch_size = 16;
  uint32_t max_num_batched_tokens = 0;  // 0 = auto (server/scheduler/scheduler.h step_token_budget)
  double request_rate = 0;                // requests/s (Poisson arrivals); 0 = all at once
  uint64_t seed = 0;
  // Before the clock starts: one step prefilling up to max_num_batched_tokens (in prompts no longer than the
  // workload's longest) and one decode step over them, so one-time costs (kernel selection, allocator growth,
  // first touches) are not charged to the first requests. Its wall time is reported as warmup_seconds.
  bool warmup = true;
  std::string step_log;                   // when set: one JSON line per executor step (StepStats) written here
};

// Runs every request to completion; the JSON holds the figures (`tokens_per_second`, `ttft_p50_seconds`, ...).
StatusOr<nlohmann::json> run_workload(Executor& executor, const std::vector<WorkloadRequest>& requests,
                                      const WorkloadOptions& options);

}  // namespace zi::server
