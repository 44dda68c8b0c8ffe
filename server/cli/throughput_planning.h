// The throughput planner for the commands that offer it: `plan --optimize throughput`, `bench --batch-size auto`
// and `serve` with `server.max_batch_size: auto`. Gathers what the planner works from — the model's shapes from
// config.json, the rates (a --rates FILE, or measured now on the GPU), the limits (memory.gpu_limit, else the
// card's memory from the rates; memory.host_limit, else MemAvailable; the offload folder's free disk) — and runs it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/model/config.h"
#include "engine/runtime/throughput_plan.h"
#include "server/config/config.h"

namespace zi::cli {

struct PlanningRequest {
  std::optional<std::string> rates_file;  // --rates FILE; absent: measure on the GPU
  uint32_t prompt_len = 512;
  uint32_t gen_len = 32;
  uint32_t fixed_batch = 0;               // > 0: plan only this batch
  std::optional<bool> kv_offload;         // given: plan only that KV place (host when true)
};

struct Planned {
  ModelShape shape;
  Rates rates;
  std::string rates_source;  // the file, or "measured"
  Limits limits;
  Workload workload;
  Plan plan;
};

// The rates: read from the file, or measured (engine/runtime/rate_probes.h) for this model.
StatusOr<Rates> obtain_rates(const server::ServeConfig& c, const ModelConfig& cfg, const PlanningRequest& r,
                             std::string* source);
// The planner's limits for `c` (gpu_total from the rates when memory.gpu_limit is 0).
StatusOr<Limits> planner_limits(const EngineOptions& o, const Rates& rates);
// Plans `c` and, when `apply`, writes the plan into c->engine (engine/runtime/throughput_plan.h apply_plan) and the
// step budget into scheduler.max_num_batched_tokens when that was 0.
StatusOr<Planned> plan_deployment(server::ServeConfig* c, const PlanningRequest& r, bool apply);
// The plan as text lines, and as JSON keys (plan_*, predicted_*, memory_*, the limits and the reasons).
std::string plan_text(const Planned& p);
nlohmann::json plan_json(const Planned& p);

}  // namespace zi::cli
