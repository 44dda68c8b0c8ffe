// The throughput planner's cost model: predicted prefill time, decode-step time, end-to-end tokens/s and the
// memory a choice needs on the GPU and in host memory, from a model's sizes (ModelShape) and measured rates
// (rates.h). Pure functions of numbers, so every equation is checked by hand in tests/unit/planner_test.cc.
// docs/DESIGN.md "The throughput planner" gives the same equations.
//
// Units: bytes, seconds, FLOPs. One rank (one GPU).
#pragma once

#include <cstdint>

#include "engine/zero/placement.h"
#include "engine/zero/planner/rates.h"

namespace zi {

// What the cost model needs to know of a model, per rank. Layers are taken as identical (every supported
// architecture's decoder layers are).
struct ModelShape {
  int layers = 0;
  uint64_t layer_bytes = 0;        // one decoder layer as held on the GPU and streamed (packed when quantized)
  uint64_t global_bytes = 0;       // embeddings, final norm, LM head: always resident
  uint64_t head_read_bytes = 0;    // of those, what a decode step reads whole (LM head, norms)
  uint64_t kv_bytes_per_token = 0; // K and V of every layer for one token: 2 × L × nKV × D × element bytes
  double linear_params = 0;        // Σ out × in of every decoder linear: 2 × this FLOPs per token
  double head_params = 0;          // hidden × vocab: 2 × this FLOPs per sampled row
  double attention_flops_per_pair = 0;  // 4 × L × nH × D: QKᵀ and PV FLOPs per (query token, key position)
  // For the activation reserve (placement.h activation_bytes_for_rows).
  int64_t hidden = 0, intermediate = 0, vocab = 0;
  size_t element_bytes = 2;        // activations and KV cache
  // Quantized weights: a step of more than kFusedQuantMaxRows rows dequantizes every layer into the activation
  // dtype before its GEMMs (engine/backend/cuda/gemm.cc), writing and reading linear_params × element bytes once
  // more each; the fused kernels at fewer rows read only the packed bytes. False: dense weights.
  bool quantized = false;
  uint64_t chunk_rows = 8192;      // the most rows a layer runs at once (engine/model/model.h layer_chunk_rows)
};

// The most rows the GPU's fused quantized kernels take by default (quant_kernels.h kQuantGemvMaxRows).
inline constexpr uint32_t kFusedQuantMaxRows = 64;

// Where the KV cache lives. kHost: pinned host memory; each decode step's attention is split between the host's
// cores (fraction cpu_fraction of the rows) and the GPU over PCIe (the rest), as kv_cache.offload_attention: auto
// does (cpu when the fraction is 1, gpu when 0).
enum class KvPlace : uint8_t { kGpu, kHost };

struct PlanChoice {
  uint32_t batch = 1;              // sequences decoded together
  int resident_layers = 0;         // layers 0 .. resident_layers − 1 stay on the GPU; the rest stream
  LayerTier stream_tier = LayerTier::kCpu;  // where streamed layers come from: kCpu (pinned) or kNvme
  uint32_t prefetch_depth = 2;     // ring slots (only when layers stream)
  KvPlace kv = KvPlace::kGpu;
  uint32_t step_tokens = 0;        // prefill rows per step: whole prompts, ≥ prompt_len
};

struct Workload {
  uint32_t prompt_len = 512;
  uint32_t gen_len = 32;
  uint32_t kv_block_size = 16;     // KV blocks are whole: a sequence holds ceil(ctx / block) blocks
};

// What one choice needs, per rank.
struct MemoryNeed {
  uint64_t context = 0;      // rates.gpu_context_bytes
  uint64_t slack = 0;        // kGpuSlackBytes
  uint64_t weights = 0;      // globals + resident layers
  uint64_t ring = 0;         // prefetch_depth × layer (0 when nothing streams)
  uint64_t kv_gpu = 0;
  uint64_t activations = 0;  // activation_bytes_for_rows(step rows, batch)
  uint64_t gpu() const { return context + slack + weights + ring + kv_gpu + activations; }
  uint64_t host_weights = 0; // streamed layers pinned in host memory (CPU tier) or the NVMe tier's staging slots
  uint64_t kv_host = 0;
  uint64_t host() const { return host_weights + kv_host; }
  uint64_t disk = 0;         // streamed layers in the NVMe store
};

struct Prediction {
  double prefill_seconds = 0;
  double decode_step_seconds = 0;
  double total_seconds = 0;        // prefill + (gen − 1) × decode step
  double tokens_per_second = 0;    // batch × gen / total (bench's e2e_tokens_per_second)
  uint32_t prefill_steps = 0;      // ceil(batch / prompts per step): each streams every offloaded layer once
  double cpu_fraction = 0;         // KV in host memory: the decode rows whose attention runs on the CPU
  // The parts behind the decode step (for the reasons the planner prints).
  double decode_bus_seconds = 0;   // streamed weights (+ the GPU's share of host KV) over the bus
  double decode_gpu_seconds = 0;   // weight reads / GEMMs and GPU-side KV reads
  double decode_cpu_seconds = 0;   // the CPU's share of host-KV attention
};

// Bytes left free beside the KV cache on every GPU for allocator fragmentation and per-op workspaces beyond the
// activation estimate; the executor keeps it free and the planner counts it.
inline constexpr uint64_t kGpuSlackBytes = uint64_t{1} << 30;

// Tokens a sequence attends to on average over a run's decode steps: prompt + j for j = 1 .. gen − 1.
double mean_decode_attended(const Workload& w);
// The bus rate of the streamed tier: host→device for kCpu; for kNvme disk → pinned → device, so the slower one.
double stream_rate(const Rates& r, LayerTier tier);
MemoryNeed memory_need(const ModelShape& m, const Rates& r, const Workload& w, const PlanChoice& c);
// Refuses (FailedPrecondition naming the rates field) when a rate the choice needs was not measured.
StatusOr<Prediction> predict(const ModelShape& m, const Rates& r, const Workload& w, const PlanChoice& c);

}  // namespace zi
