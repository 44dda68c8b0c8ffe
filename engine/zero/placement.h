// Where each decoder layer's weights live (ZeRO-Inference placement), decided before anything is loaded:
// resident on the GPU while they fit, the rest streamed every step from pinned CPU memory or NVMe through a ring
// of `prefetch_depth` GPU slots. Also the figures `zeroinfer plan` prints. Pure arithmetic: testable anywhere.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/enum_names.h"
#include "engine/core/size.h"  // format_bytes: every user of a placement reports sizes
#include "engine/core/status.h"
#include "engine/model/model.h"  // kLayerChunkRows

namespace zi {

// Where streamed layers come from (offload.tier): none = every layer resident.
enum class OffloadTier : uint8_t { kNone, kCpu, kNvme };
inline constexpr std::array<EnumName<OffloadTier>, 3> kOffloadTierNames{
    {{OffloadTier::kNone, "none"}, {OffloadTier::kCpu, "cpu"}, {OffloadTier::kNvme, "nvme"}}};

enum class LayerTier : uint8_t { kGpu, kCpu, kNvme };
const char* layer_tier_name(LayerTier t);  // "gpu" | "cpu" | "nvme"

// The automatic streaming ring (offload.prefetch_depth: 0). Two slots keep the bus busy while layers compute one
// after another; what starves it is a stretch in which the forward releases no slot while the ring is full: the
// host's gap between steps (logits to the host, sampling, scheduling) plus the resident layers' compute at the start
// of the next step, both growing with the batch (batch 64 of a Llama-2-7B shape needed 4 slots for 1.04× the copy
// floor; 2 gave 1.2×). So the ring holds kRingCoverSeconds of copy beyond the layer in use, whatever the layer size:
// slots = 1 + ceil(cover × rate / layer bytes), in [2, 8], fewer when GPU memory is short (never under 2 unless
// even that does not fit). That is ~1 GiB of ring at PCIe Gen5 rates, small beside the weights it saves.
inline constexpr double kRingCoverSeconds = 0.020;
inline constexpr double kAssumedH2dBytesPerSecond = 25e9;  // when the caller measured nothing (PCIe Gen4 x16)
uint32_t auto_prefetch_depth(uint64_t layer_bytes, double h2d_bytes_per_second);

struct PlacementInput {
  std::vector<uint64_t> layer_bytes;  // [L] one layer shard's bytes on the GPU (all ranks' partitions together)
  uint64_t global_bytes = 0;          // embeddings, final norm, LM head: always resident
  uint64_t kv_cache_bytes = 0;        // per GPU, reserved on top of the weights (0 with KV offload)
  uint64_t activation_bytes = 0;      // per GPU: the largest step's activations and logits
  uint64_t gpu_memory_bytes = 0;      // per GPU: what zeroinfer may use (free memory minus a safety margin)
  OffloadTier tier = OffloadTier::kNone;
  uint64_t gpu_weights_budget = 0;    // 0 = as many layers as fit
  uint32_t prefetch_depth = 0;        // GPU slots in the streaming ring; 0 = auto (auto_prefetch_depth)
  double h2d_bytes_per_second = 0;    // measured host→device rate for the auto depth; 0 = kAssumedH2dBytesPerSecond
  uint32_t num_ranks = 1;             // ZeRO-3: host and disk hold 1/N of each streamed shard per rank
};

struct Placement {
  std::vector<LayerTier> layers;      // [L]
  int num_streamed = 0;
  uint64_t resident_weight_bytes = 0; // per GPU: globals + resident layers
  uint32_t prefetch_depth = 0;        // the ring's slots (the input's, or the auto choice)
  uint64_t ring_bytes = 0;            // per GPU: prefetch_depth × the largest streamed shard
  uint64_t gpu_total_bytes = 0;       // per GPU: weights + ring + KV cache + activations
  uint64_t streamed_bytes_per_step = 0;  // per GPU: every streamed shard once (its own 1/N over PCIe, the
                                         // rest over NCCL when N > 1)
  uint64_t pcie_bytes_per_step = 0;      // per rank over its own PCIe link: streamed bytes / N
  uint64_t host_bytes_per_rank = 0;      // pinned (or pageable) CPU memory for the CPU tier
  uint64_t disk_bytes_per_rank = 0;      // NVMe store for the NVMe tier
};

// Resident layers come first (layer 0 upward): while they compute at the start of a step, the copy engine
// brings in the first streamed layers. Refuses, naming needed and available bytes and the setting to change, when
// the placement cannot fit.
StatusOr<Placement> plan_placement(const PlacementInput& in);

// Memory the KV cache needs on one GPU: K and V of every layer for `slots` sequences of `context` tokens.
uint64_t kv_cache_bytes(int64_t layers, uint64_t slots, uint64_t context, int64_t kv_heads, int64_t head_dim,
                        size_t element_bytes);
// Rows the largest step carries: every slot's context at once, capped at 64 Ki tokens.
uint64_t activation_tokens(uint64_t slots, uint64_t context);
// The largest step's activations on one GPU: activation_tokens rows
// through the widest projections, plus fp32 logits of every sequence. A deliberately generous estimate.
uint64_t activation_bytes(int64_t hidden, int64_t intermediate, int64_t vocab, uint64_t slots, uint64_t context,
                          size_t element_bytes);
// The same for a step of `rows` tokens over `slots` sequences. A layer runs at most kLayerChunkRows rows at a time
// (engine/model/model.h), so: the chunk's rows × (8·hidden + 4·intermediate) × element bytes (its intermediates and
// residual stream), the other rows' residual stream and pending addend (2·hidden each), plus fp32 logits (twice)
// of every sequence. activation_bytes = this at activation_tokens(slots, context) rows.
// chunk_rows: the model's bound on one chunk (engine/model/model.h layer_chunk_rows; unbounded for dynamic-NTK RoPE).
uint64_t activation_bytes_for_rows(int64_t hidden, int64_t intermediate, int64_t vocab, uint64_t rows,
                                   uint64_t slots, size_t element_bytes, uint64_t chunk_rows = kLayerChunkRows);

}  // namespace zi
