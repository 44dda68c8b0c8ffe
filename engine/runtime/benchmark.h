// The measurement loop behind `zeroinfer bench`: B sequences of random prompt tokens prefilled in one step, then
// decoded together for gen_len − 1 more steps, `loops` times. Greedy; EOS is not special. Timings and the
// executor's streaming figures per step; the CLI adds probes and prints.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/core/status.h"
#include "engine/runtime/executor.h"

namespace zi {

struct BenchConfig {
  int batch_size = 1;
  int prompt_len = 512;
  int gen_len = 32;
  int loops = 3;
  uint64_t seed = 1;
  // Prefill rows per step: 0 = every prompt in one step; else whole prompts, as many as fit (at least one), so a
  // prefill of B prompts takes ceil(B / prompts per step) steps (the throughput planner's step budget).
  int prefill_step_tokens = 0;
};

struct BenchLoop {
  double prefill_seconds = 0;           // the step(s) that prefill all B prompts (and sample their first token)
  int prefill_steps = 1;
  uint64_t prefill_fetch_bytes = 0;     // weight bytes the prefill streamed host → device
  double decode_seconds = 0;            // the gen_len − 1 decode steps together
  int decode_steps = 0;
  StepStats decode_totals;              // summed over the decode steps (streaming bytes, copy, stall)
};

struct BenchReport {
  BenchConfig config;
  std::vector<BenchLoop> loops;
  // Medians over the loops (the first loop included only when it is the only one: it pays one-off warm-up).
  double prefill_seconds = 0;
  double decode_step_seconds = 0;
  double decode_tokens_per_second = 0;  // batch / decode step time
  double e2e_tokens_per_second = 0;     // batch × gen_len / (prefill + decode)
  // Times the prefill streamed the offloaded layers (prefill fetch bytes / the model's streamed bytes per step): 1
  // when the whole batch's prompts went through each layer together; 0 when nothing streams.
  double prefill_weight_passes = 0;
  double fetch_bytes_per_step = 0;      // per decode step
  double copy_seconds_per_step = 0;
  double stall_seconds_per_step = 0;
  double nvme_bytes_per_step = 0;
  double nvme_read_seconds_per_step = 0;
  // ZeRO-3 (N > 1): bytes all ranks gathered per decode step, and the slowest rank's all-gather time.
  double allgather_bytes_per_step = 0;
  double allgather_seconds_per_step = 0;
};

// Runs the benchmark on `ex` (its max batch and context must hold batch_size × (prompt_len + gen_len)).
StatusOr<BenchReport> run_benchmark(Executor& ex, const BenchConfig& config);

}  // namespace zi
