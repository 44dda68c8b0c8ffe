#include "engine/runtime/throughput_plan.h"

#include <algorithm>

#include "engine/model/model.h"
#include "engine/model/quantized_weights.h"
#include "engine/model/registry.h"
#include "engine/model/weights.h"
#include "engine/runtime/bench_floors.h"
#include "engine/zero/layer_pack.h"

namespace zi {

ModelShape model_shape(const ModelConfig& cfg, const Architecture& arch, DType act, const QuantConfig& quant) {
  ModelShape m;
  m.layers = static_cast<int>(cfg.num_layers);
  m.layer_bytes = cfg.num_layers > 0 ? layer_layout(cfg, arch, 0, act, 1, quant).bytes : 0;
  GlobalWeights g;
  std::vector<WeightSpec> specs;
  arch.global_weights(cfg, g, specs);
  for (const WeightSpec& s : specs) {
    uint64_t e = 1;
    for (int64_t d : s.shape) e *= static_cast<uint64_t>(d);
    m.global_bytes += e * dtype_size(act);
  }
  // The head a decode step reads whole: decode_read_bytes with no resident layer and no KV.
  ModelSummary none;
  none.layer_tiers.assign(static_cast<size_t>(cfg.num_layers), "cpu");
  m.head_read_bytes = decode_read_bytes(none, cfg, arch, act, quant, 0, 1, 1, false).head;
  m.element_bytes = dtype_size(act);
  m.kv_bytes_per_token = 2ull * static_cast<uint64_t>(cfg.num_layers) * static_cast<uint64_t>(cfg.num_kv_heads) *
                         static_cast<uint64_t>(cfg.head_dim) * m.element_bytes;
  m.linear_params = static_cast<double>(decoder_linear_parameters(cfg, arch));
  m.head_params = static_cast<double>(cfg.hidden_size) * static_cast<double>(cfg.vocab_size);
  m.attention_flops_per_pair = 4.0 * static_cast<double>(cfg.num_layers) * static_cast<double>(cfg.num_heads) *
                               static_cast<double>(cfg.head_dim);
  m.hidden = cfg.hidden_size;
  m.intermediate = cfg.intermediate_size;
  m.vocab = cfg.vocab_size;
  m.quantized = quant.enabled();
  m.chunk_rows = static_cast<uint64_t>(layer_chunk_rows(cfg));
  return m;
}

void apply_plan(const Plan& plan, const ModelShape& m, const Workload& w, EngineOptions* o) {
  const PlanChoice& c = plan.choice;
  o->max_batch_size = c.batch;
  if (o->max_context == 0) o->max_context = w.prompt_len + w.gen_len;
  const bool streams = c.resident_layers < m.layers;
  o->offload_tier = !streams ? OffloadTier::kNone
                             : c.stream_tier == LayerTier::kNvme ? OffloadTier::kNvme : OffloadTier::kCpu;
  // The budget holds exactly the resident layers (placement keeps layers 0.. while they fit the budget).
  o->gpu_weights_budget = streams ? m.global_bytes + static_cast<uint64_t>(c.resident_layers) * m.layer_bytes : 0;
  o->prefetch_depth = streams ? c.prefetch_depth : 0;
  o->kv_offload = c.kv == KvPlace::kHost;
  if (o->kv_offload) {
    const double f = plan.prediction.cpu_fraction;
    o->kv_offload_attention = f >= 1.0 ? KvOffloadAttention::kCpu
                              : f <= 0.0 ? KvOffloadAttention::kGpu
                                         : KvOffloadAttention::kAuto;
  }
  // kv_cache.max_bytes 0: the executor reserves max_batch_size full contexts (within memory.gpu_limit on a GPU),
  // which is what the plan priced, in the backend's own KV dtype (fp32 on the CPU backend).
  o->kv_cache_bytes = 0;
  o->max_step_tokens = std::max(c.step_tokens, c.batch);
}

PlanChoice choice_from_options(const EngineOptions& o, const ModelShape& m, const Workload& w, int resident_layers,
                               uint32_t prefetch_depth) {
  PlanChoice c;
  c.batch = std::max<uint32_t>(1, o.max_batch_size);
  c.kv = o.kv_offload ? KvPlace::kHost : KvPlace::kGpu;
  c.stream_tier = o.offload_tier == OffloadTier::kNvme ? LayerTier::kNvme : LayerTier::kCpu;
  c.resident_layers = std::clamp(resident_layers, 0, m.layers);
  c.prefetch_depth = std::max<uint32_t>(1, prefetch_depth);
  c.step_tokens = o.max_step_tokens ? o.max_step_tokens : c.batch * w.prompt_len;
  return c;
}

}  // namespace zi
