#include "engine/zero/placement.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>


namespace zi {

const char* layer_tier_name(LayerTier t) {
  switch (t) {
    case LayerTier::kGpu: return "gpu";
    case LayerTier::kCpu: return "cpu";
    case LayerTier::kNvme: return "nvme";
  }
  return "?";
}

uint64_t kv_cache_bytes(int64_t layers, uint64_t slots, uint64_t context, int64_t kv_heads, int64_t head_dim,
                        size_t element_bytes) {
  return 2ull * static_cast<uint64_t>(layers) * slots * context * static_cast<uint64_t>(kv_heads) *
         static_cast<uint64_t>(head_dim) * element_bytes;
}

uint64_t activation_tokens(uint64_t slots, uint64_t context) { return std::min<uint64_t>(slots * context, 65536); }

uint64_t activation_bytes(int64_t hidden, int64_t intermediate, int64_t vocab, uint64_t slots, uint64_t context,
                          size_t element_bytes) {
  return activation_bytes_for_rows(hidden, intermediate, vocab, activation_tokens(slots, context), slots,
                                   element_bytes);
}

uint64_t activation_bytes_for_rows(int64_t hidden, int64_t intermediate, int64_t vocab, uint64_t rows,
                                   uint64_t slots, size_t element_bytes, uint64_t chunk_rows) {
  const uint64_t chunk = std::min<uint64_t>(rows, chunk_rows);
  return chunk * static_cast<uint64_t>(8 * hidden + 4 * intermediate) * element_bytes +
         (rows - chunk) * static_cast<uint64_t>(2 * hidden) * element_bytes +
         2ull * slots * static_cast<uint64_t>(vocab) * 4;
}

uint32_t auto_prefetch_depth(uint64_t layer_bytes, double h2d_bytes_per_second) {
  const double rate = h2d_bytes_per_second > 0 ? h2d_bytes_per_second : kAssumedH2dBytesPerSecond;
  if (layer_bytes == 0) return 2;
  const double layers = std::ceil(kRingCoverSeconds * rate / static_cast<double>(layer_bytes));
  return static_cast<uint32_t>(std::clamp(1.0 + layers, 2.0, 8.0));
}

StatusOr<Placement> plan_placement(const PlacementInput& in) {
  if (in.prefetch_depth > 16)
    return absl::InvalidArgumentError(
        absl::StrFormat("offload.prefetch_depth: must be 0 (auto) or 1..16, got %d", in.prefetch_depth));
  if (in.num_ranks == 0) return absl::InvalidArgumentError("parallel.num_gpus: must be at least 1");
  const size_t L = in.layer_bytes.size();
  Placement p;
  p.layers.assign(L, LayerTier::kGpu);
  const uint64_t reserved = in.kv_cache_bytes + in.activation_bytes;
  uint64_t all_layers = 0, max_layer = 0;
  for (uint64_t b : in.layer_bytes) {
    all_layers += b;
    max_layer = std::max(max_layer, b);
  }

  if (in.tier == OffloadTier::kNone) {
    p.resident_weight_bytes = in.global_bytes + all_layers;
    p.gpu_total_bytes = p.resident_weight_bytes + reserved;
    if (in.gpu_memory_bytes && p.gpu_total_bytes > in.gpu_memory_bytes)
      return absl::ResourceExhaustedError(absl::StrFormat(
          "the model does not fit the GPU: needs %s (weights %s + KV cache %s + activations %s), %s available; "
          "set offload.tier: cpu (--cpu-offload) or nvme (--disk-offload), or lower server.max_batch_size / "
          "model.max_context",
          format_bytes(p.gpu_total_bytes), format_bytes(p.resident_weight_bytes), format_bytes(in.kv_cache_bytes),
          format_bytes(in.activation_bytes), format_bytes(in.gpu_memory_bytes)));
    return p;
  }

  // Room for resident layers: the budget when given, else what the GPU has left after globals, KV cache,
  // activations and the streaming ring.
  uint32_t depth = in.prefetch_depth;
  if (depth == 0) {
    // Auto: as many slots as the rule asks for and memory allows (at least 2).
    depth = auto_prefetch_depth(max_layer, in.h2d_bytes_per_second);
    while (depth > 2 && in.gpu_memory_bytes &&
           in.global_bytes + reserved + static_cast<uint64_t>(depth) * max_layer > in.gpu_memory_bytes)
      --depth;
  }
  p.prefetch_depth = depth;
  const uint64_t ring = static_cast<uint64_t>(depth) * max_layer;
  const uint64_t fixed = in.global_bytes + reserved + ring;
  if (in.gpu_memory_bytes && fixed > in.gpu_memory_bytes)
    return absl::ResourceExhaustedError(absl::StrFormat(
        "not enough GPU memory even with every layer streamed: needs %s (embeddings/head %s + ring of %d slots %s "
        "+ KV cache %s + activations %s), %s available; lower offload.prefetch_depth, server.max_batch_size or "
        "model.max_context, or set kv_cache.offload: true",
        format_bytes(fixed), format_bytes(in.global_bytes), depth, format_bytes(ring),
        format_bytes(in.kv_cache_bytes), format_bytes(in.activation_bytes), format_bytes(in.gpu_memory_bytes)));
  uint64_t room = in.gpu_memory_bytes ? in.gpu_memory_bytes - fixed : UINT64_MAX;
  if (in.gpu_weights_budget) {
    // The budget covers every resident weight byte, as accelerate's max_memory does.
    const uint64_t budget_room =
        in.gpu_weights_budget > in.global_bytes ? in.gpu_weights_budget - in.global_bytes : 0;
    room = std::min(room, budget_room);
  }
  uint64_t resident = 0;
  size_t k = 0;
  while (k < L && resident + in.layer_bytes[k] <= room) resident += in.layer_bytes[k++];
  const LayerTier streamed_tier = in.tier == OffloadTier::kCpu ? LayerTier::kCpu : LayerTier::kNvme;
  uint64_t streamed = 0, streamed_max = 0;
  for (size_t i = k; i < L; ++i) {
    p.layers[i] = streamed_tier;
    streamed += in.layer_bytes[i];
    streamed_max = std::max(streamed_max, in.layer_bytes[i]);
    ++p.num_streamed;
  }
  p.resident_weight_bytes = in.global_bytes + resident;
  p.ring_bytes = static_cast<uint64_t>(std::min<size_t>(depth, p.num_streamed)) * streamed_max;
  p.gpu_total_bytes = p.resident_weight_bytes + p.ring_bytes + reserved;
  p.streamed_bytes_per_step = streamed;
  p.pcie_bytes_per_step = (streamed + in.num_ranks - 1) / in.num_ranks;
  if (streamed_tier == LayerTier::kCpu) p.host_bytes_per_rank = p.pcie_bytes_per_step;
  else p.disk_bytes_per_rank = p.pcie_bytes_per_step;
  return p;
}

}  // namespace zi
