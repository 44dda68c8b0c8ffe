// The arithmetic behind `zeroinfer bench`'s floors and references, from the model's shapes alone (config.json and
// the architecture's tensor list; nothing is loaded): the bytes a decode step must read from GPU memory, the
// linear GEMM shapes of a decoder layer, and the weights a prefill multiplies every token by. The CLI divides
// these by the rates its probes measure (engine/zero/cuda/probes.h).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/model/config.h"
#include "engine/runtime/executor.h"

namespace zi {

struct Architecture;
struct QuantConfig;

// One linear of a decoder layer: W[out, in] (+ bias[out]). As a GEMM over T tokens: M = T, N = out, K = in.
struct LinearShape {
  int64_t out = 0;
  int64_t in = 0;
  bool bias = false;
};

// The linears (attention and MLP projections) of decoder layer `layer`, in q, k, v, qkv, o, gate, up, down order
// (those the architecture has).
std::vector<LinearShape> layer_linear_shapes(const ModelConfig& cfg, const Architecture& arch, int layer);

// Σ out·in over every decoder layer's linears: the weights a prefill multiplies each token by, so its linear FLOPs
// are 2 × this × tokens. The LM head is not counted (a prefill applies it to one row per sequence).
uint64_t decoder_linear_parameters(const ModelConfig& cfg, const Architecture& arch);

// Mean positions one sequence attends to over a bench run's decode steps: step j = 1 .. gen_len − 1 appends one
// token after the prompt and attends over prompt_len + j positions (at most sliding_window when > 0, applied to
// every layer). 0 when there is no decode step (gen_len ≤ 1).
double mean_decode_context(int64_t prompt_len, int64_t gen_len, int64_t sliding_window = 0);

// What one decode step on one rank reads from GPU memory at least, each byte once, in bytes.
struct DecodeReadBytes {
  uint64_t layer_weights = 0;  // resident decoder layers (layer_tiers "gpu") × layer_weight_bytes (packed when
                               // quantized)
  uint64_t head = 0;           // globals read whole every step: the LM head (the embedding table when tied, the
                               // packed copy when quantized), final/embedding norms, OPT's project_in/out. The
                               // untied embedding table and learned positions are not: a step gathers T rows.
  double kv = 0;               // K and V of every attended position: batch × mean context × L × 2 × nKV × D ×
                               // elem; 0 when the cache is in host memory (kv_cache.offload: read over PCIe instead)
  double total() const { return static_cast<double>(layer_weights) + static_cast<double>(head) + kv; }
};

// `summary` gives the placement (layer_tiers, layer_weight_bytes); `weight_dtype` is what the backend holds dense
// weights and the KV cache in (the GPU's activation dtype); batch is this rank's sequences.
DecodeReadBytes decode_read_bytes(const ModelSummary& summary, const ModelConfig& cfg, const Architecture& arch,
                                  DType weight_dtype, const QuantConfig& quant, int64_t batch, int64_t prompt_len,
                                  int64_t gen_len, bool kv_in_device_memory);

// The floor of a decode step, in seconds. Streamed layers cross PCIe while resident bytes are read from HBM, and
// the two overlap (the prefetch copies layer i+1 while layer i computes), so a step can be no shorter than the
// slower of them: max(streamed / pcie, resident / hbm). The streamed layers are read from HBM again once in their
// slots; that read is not added, since it overlaps the copies that bound such a step. A rate ≤ 0 (not measured)
// drops its term.
double decode_floor_seconds(double streamed_bytes, double pcie_bytes_per_second, double resident_bytes,
                            double hbm_bytes_per_second);

}  // namespace zi
