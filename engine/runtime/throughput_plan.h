// The throughput planner (engine/zero/planner/) on a real model: its ModelShape from config.json and the
// architecture's tensor list (nothing is loaded), and a chosen plan written into EngineOptions so the executor
// builds exactly what was priced: batch, resident layers (as offload.gpu_weights_budget), tier, ring depth, KV
// place and size, and the step rows its activation reserve is sized for.
#pragma once

#include "engine/core/dtype.h"
#include "engine/model/config.h"
#include "engine/runtime/engine_options.h"
#include "engine/zero/planner/throughput_planner.h"

namespace zi {

struct Architecture;
struct QuantConfig;

// `act` is the GPU's activation dtype (dense weights, KV cache).
ModelShape model_shape(const ModelConfig& cfg, const Architecture& arch, DType act, const QuantConfig& quant);

// Writes the plan into `o` (max_batch_size, offload_tier, gpu_weights_budget, prefetch_depth, kv_offload,
// kv_offload_attention, kv_cache_bytes = 0 (= max_batch_size full contexts), max_step_tokens, max_context = prompt +
// gen when it was 0).
void apply_plan(const Plan& plan, const ModelShape& m, const Workload& w, EngineOptions* o);

// The choice a loaded executor made from `o` (no planning), for predicting a run whose settings were given:
// `resident_layers` and `prefetch_depth` as its placement chose them (ModelSummary).
PlanChoice choice_from_options(const EngineOptions& o, const ModelShape& m, const Workload& w, int resident_layers,
                               uint32_t prefetch_depth);

}  // namespace zi
