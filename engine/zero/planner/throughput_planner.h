// The throughput planner (issue 20): chooses the batch size, how many layers stay resident and where the rest
// stream from (pinned host memory or NVMe), where the KV cache lives (GPU, or host memory with decode attention
// split between the host's cores and the GPU), the prefill's tokens per step and the streaming ring's depth, to
// maximise end-to-end tokens/s = batch × gen / (prefill + (gen − 1) × decode step) for a given prompt and gen
// length, under memory.gpu_limit and memory.host_limit. Every candidate is priced by the cost model
// (cost_model.h) from measured rates (rates.h); the best is kept, with a one-line reason per decision.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/zero/planner/cost_model.h"

namespace zi {

struct Limits {
  uint64_t gpu_bytes = 0;            // memory.gpu_limit: what the process may hold on its GPU, context included
  uint64_t host_bytes = 0;           // memory.host_limit, resolved (MemAvailable when the key is 0)
  uint64_t disk_bytes = 0;           // room for the NVMe store; 0 = the NVMe tier is not offered
  uint64_t gpu_weights_budget = 0;   // offload.gpu_weights_budget: a cap on resident weights; 0 = none
};

struct PlannerInput {
  ModelShape model;
  Rates rates;
  Workload workload;
  Limits limits;
  uint32_t max_batch = 1024;         // the largest batch considered
  uint32_t fixed_batch = 0;          // > 0: only this batch (the rest is still chosen)
  std::optional<KvPlace> fixed_kv;   // only this KV place (to measure both choices against each other)
};

// A plan that keeps fewer layers resident must predict more than this fraction more tokens/s than the best plan
// that keeps more: the cost model does not price what streaming adds beyond bus time (ring stalls, the host's
// work per streamed layer), so a marginal gain does not buy it.
inline constexpr double kResidencyPreference = 0.02;

struct Plan {
  PlanChoice choice;
  Prediction prediction;
  MemoryNeed memory;
  std::vector<std::string> reasons;  // one line per decision: batch, layers, tier, KV, step tokens, ring
  size_t candidates = 0;             // choices priced
};

// The batches tried: every one to 32, every 4th to 128, then every 8th up to max_batch.
std::vector<uint32_t> candidate_batches(uint32_t max_batch);

// The best plan, or ResourceExhausted naming the limit and the bytes of the smallest deployment (one sequence,
// every layer streamed through a ring of 2) when even that does not fit; FailedPrecondition when a needed rate is
// missing.
StatusOr<Plan> plan_throughput(const PlannerInput& in);

// "kv gpu" | "kv host (cpu 40%)"; "24 of 48 layers resident, 24 streamed from cpu".
std::string describe_choice(const ModelShape& m, const PlanChoice& c, const Prediction& p);

}  // namespace zi
