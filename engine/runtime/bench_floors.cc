#include "engine/runtime/bench_floors.h"

#include <algorithm>

#include "engine/model/quantized_weights.h"
#include "engine/model/registry.h"
#include "engine/model/weights.h"
#include "engine/quant/quantize.h"

namespace zi {

namespace {

uint64_t numel(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
  return n;
}

// Bytes of a [out, in] matrix packed as engine/quant/quantize.h lays it out: codes plus fp16 scales and minimums.
uint64_t packed_bytes(const std::vector<int64_t>& shape, const QuantParams& p) {
  const int64_t out = shape[0], in = shape[1];
  return static_cast<uint64_t>(out * quant_row_bytes(in, p.bits)) +
         2 * static_cast<uint64_t>(out * quant_groups(in, p.group_size)) * sizeof(uint16_t);
}

}  // namespace

std::vector<LinearShape> layer_linear_shapes(const ModelConfig& cfg, const Architecture& arch, int layer) {
  LayerWeights w;
  std::vector<WeightSpec> specs;
  arch.layer_weights(cfg, layer, w, specs);
  std::vector<LinearShape> out;
  for (LinearWeight* lw : linear_weights(w)) {
    const auto weight = std::find_if(specs.begin(), specs.end(),
                                     [&](const WeightSpec& s) { return s.slot == &lw->weight && s.shape.size() == 2; });
    if (weight == specs.end()) continue;
    const bool bias =
        std::any_of(specs.begin(), specs.end(), [&](const WeightSpec& s) { return s.slot == &lw->bias; });
    out.push_back({weight->shape[0], weight->shape[1], bias});
  }
  return out;
}

uint64_t decoder_linear_parameters(const ModelConfig& cfg, const Architecture& arch) {
  uint64_t n = 0;
  for (int l = 0; l < cfg.num_layers; ++l)
    for (const LinearShape& s : layer_linear_shapes(cfg, arch, l)) n += static_cast<uint64_t>(s.out * s.in);
  return n;
}

double mean_decode_context(int64_t prompt_len, int64_t gen_len, int64_t sliding_window) {
  if (gen_len <= 1) return 0;
  double sum = 0;
  for (int64_t j = 1; j < gen_len; ++j) {
    int64_t ctx = prompt_len + j;
    if (sliding_window > 0) ctx = std::min(ctx, sliding_window);
    sum += static_cast<double>(ctx);
  }
  return sum / static_cast<double>(gen_len - 1);
}

DecodeReadBytes decode_read_bytes(const ModelSummary& summary, const ModelConfig& cfg, const Architecture& arch,
                                  DType weight_dtype, const QuantConfig& quant, int64_t batch, int64_t prompt_len,
                                  int64_t gen_len, bool kv_in_device_memory) {
  DecodeReadBytes r;
  const uint64_t elem = dtype_size(weight_dtype);
  // A summary without placement (a CPU run, an old worker) has every layer resident.
  const int64_t resident = summary.layer_tiers.empty()
                               ? cfg.num_layers
                               : std::count(summary.layer_tiers.begin(), summary.layer_tiers.end(), "gpu");
  r.layer_weights = static_cast<uint64_t>(resident) * summary.layer_weight_bytes;

  GlobalWeights g;
  std::vector<WeightSpec> specs;
  arch.global_weights(cfg, g, specs);
  const bool tied =
      std::none_of(specs.begin(), specs.end(), [&](const WeightSpec& s) { return s.slot == &g.lm_head.weight; });
  const bool head_packed = quant.enabled() && quant.embeddings;
  for (const WeightSpec& s : specs) {
    const bool is_head = s.slot == &g.lm_head.weight || (tied && s.slot == &g.embed_tokens);
    if (!is_head && (s.slot == &g.embed_tokens || s.slot == &g.embed_positions)) continue;  // T rows gathered
    r.head += is_head && head_packed && s.shape.size() == 2 ? packed_bytes(s.shape, quant.params)
                                                            : numel(s.shape) * elem;
  }

  if (kv_in_device_memory) {
    const double per_position = static_cast<double>(cfg.num_layers) * 2.0 * static_cast<double>(cfg.num_kv_heads) *
                                static_cast<double>(cfg.head_dim) * static_cast<double>(elem);
    r.kv = static_cast<double>(batch) * mean_decode_context(prompt_len, gen_len, cfg.sliding_window) * per_position;
  }
  return r;
}

double decode_floor_seconds(double streamed_bytes, double pcie_bytes_per_second, double resident_bytes,
                            double hbm_bytes_per_second) {
  const double pcie = pcie_bytes_per_second > 0 ? streamed_bytes / pcie_bytes_per_second : 0;
  const double hbm = hbm_bytes_per_second > 0 ? resident_bytes / hbm_bytes_per_second : 0;
  return std::max(pcie, hbm);
}

}  // namespace zi
