// Model parameters as the forwards see them, and the seam through which they arrive: a forward asks its
// ParameterSource for layer i (fetch), says when it is done with it (release) and what it needs next (prefetch).
// On the CPU every layer is resident (ResidentParameters); the ZeRO-3 parameter coordinator implements the same
// interface by streaming layer shards from pinned CPU memory or NVMe to the GPU.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/config.h"
#include "engine/quant/quantize.h"

namespace zi {

class Checkpoint;
struct Architecture;

// One decoder layer's parameters. Fields an architecture does not use stay undefined.
struct LayerWeights {
  Tensor attn_norm;        // [H] (input_layernorm / self_attn_layer_norm)
  Tensor attn_norm_bias;   // [H] LayerNorm architectures
  LinearWeight q_proj;     // [nH·D, H]
  LinearWeight k_proj;     // [nKV·D, H]
  LinearWeight v_proj;     // [nKV·D, H]
  LinearWeight qkv_proj;   // fused [3·nH·D, H] (BLOOM's query_key_value), instead of q/k/v
  LinearWeight o_proj;     // [H, nH·D]
  Tensor mlp_norm;         // [H] (post_attention_layernorm / final_layer_norm of the layer)
  Tensor mlp_norm_bias;    // [H]
  LinearWeight gate_proj;  // [F, H] gated MLPs (SwiGLU)
  LinearWeight up_proj;    // [F, H] (fc1 in OPT, dense_h_to_4h in BLOOM)
  LinearWeight down_proj;  // [H, F] (fc2, dense_4h_to_h)
  // Resident Llama-family layers after fuse_layer_projections (engine/model/fused_weights.h): the projections that
  // read the same input, rows concatenated so one GEMM replaces three (two); the separate fields are then empty.
  LinearWeight qkv_fused;      // [nH·D + 2·nKV·D, H]: q_proj rows, then k_proj, then v_proj (bias likewise)
  LinearWeight gate_up_fused;  // [2F, H]: gate_proj rows, then up_proj
};

// Parameters outside the decoder layers.
struct GlobalWeights {
  Tensor embed_tokens;       // [V, H]
  Tensor embed_positions;    // [P, H] learned positions (OPT)
  Tensor embed_norm;         // [H] LayerNorm after the embeddings (BLOOM)
  Tensor embed_norm_bias;    // [H]
  Tensor final_norm;         // [H]
  Tensor final_norm_bias;    // [H]
  LinearWeight lm_head;      // [V, H]; with tied embeddings its weight is embed_tokens
  // OPT when word_embed_proj_dim E != hidden_size H (OPT-350M): embeddings are [V, E], projected in and out.
  LinearWeight project_in;   // [H, E], no bias
  LinearWeight project_out;  // [E, H], no bias
};

// How a dummy (random) weight is initialised: transformers' init for its role.
enum class WeightInit : uint8_t { kNormal, kOnes, kZeros };

// One checkpoint tensor and where it goes.
struct WeightSpec {
  std::string name;             // checkpoint name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;   // expected shape (from config.json)
  Tensor* slot = nullptr;       // destination inside a GlobalWeights / LayerWeights
  WeightInit init = WeightInit::kNormal;
  // Set by mark_quantized_specs (engine/model/quantized_weights.h) for a linear weight to be stored quantized:
  // the LinearWeight whose `weight` is *slot receives the packed form instead (format kQuantized).
  LinearWeight* quantized = nullptr;
  QuantParams quant;
};

// Loads specs from the checkpoint: each tensor must exist, have the expected shape and a float dtype
// (F32/F16/BF16); errors name the file and the tensor.
Status load_weights(Backend& backend, const Checkpoint& checkpoint, std::vector<WeightSpec>& specs);
uint64_t count_parameters(const std::vector<WeightSpec>& specs);

// Per-step figures of weight streaming (zeros when every layer is resident): metrics and the bench.
struct StreamStats {
  uint64_t fetch_bytes = 0;         // bytes this rank moved host → device (its partitions)
  uint64_t nvme_bytes = 0;          // of which read from the NVMe store
  double copy_seconds = 0;          // device time of the host → device copies
  double nvme_read_seconds = 0;     // wall time of the store reads
  double stall_seconds = 0;         // time compute waited for shards that were not there yet
  uint64_t allgather_bytes = 0;     // ZeRO-3: bytes of the other ranks' partitions gathered
  double allgather_seconds = 0;     // time of those all-gathers
  int fetches = 0;
};

class ParameterSource {
 public:
  virtual ~ParameterSource() = default;
  virtual int num_layers() const = 0;
  // Embeddings, final norm, LM head: resident for the model's lifetime.
  virtual const GlobalWeights& globals() const = 0;
  // Layer `layer`'s weights, available on the backend until release(layer). Blocks until they are.
  virtual StatusOr<const LayerWeights*> fetch(int layer) = 0;
  // Hint: the forward will fetch `layer` soon (start moving it). No-op when resident.
  virtual void prefetch(int layer) {}
  // The forward is done with `layer` for this step; its memory may be reused. No-op when resident.
  virtual void release(int layer) {}
  // Total parameters (a tied head counted once) and the checkpoint's dtype ("bfloat16").
  virtual uint64_t parameter_count() const = 0;
  virtual std::string stored_dtype() const = 0;
  // Streaming figures since the last call (may wait for the step's timing events).
  virtual StreamStats take_stream_stats() { return {}; }
  // Where a streamed layer's weights live between steps: "cpu" (host memory) or "nvme" (the store); "" when it is
  // resident on the backend.
  virtual std::string layer_tier(int layer) const { return ""; }
  // Streaming ring slots (0 when every layer is resident).
  virtual uint32_t prefetch_depth() const { return 0; }
};

// A step with no tokens on this rank: fetches and releases every layer exactly as a forward does, so the
// collectives inside fetch (the ZeRO-3 all-gather) run in the same order on every rank. A rank with nothing to
// compute must still take part, or the others wait forever (DeepSpeed #4910).
Status walk_layers(ParameterSource& params);

// Every layer loaded onto the backend up front. `checkpoint` null = dummy weights seeded with `dummy_seed`.
// With `quant` enabled, the linear weights it selects are quantized at load (engine/model/quantized_weights.h).
StatusOr<std::unique_ptr<ParameterSource>> load_resident_parameters(Backend& backend, const ModelConfig& config,
                                                                     const Architecture& arch,
                                                                     const Checkpoint* checkpoint,
                                                                     uint64_t dummy_seed,
                                                                     const QuantConfig& quant = {});

}  // namespace zi
