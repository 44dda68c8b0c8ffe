// Quantized weights in the model's parameter structures: which checkpoint tensors are quantized (QuantConfig's
// rule), quantizing them at load, pointing LinearWeights at packed tensors (uploaded or views into a layer shard),
// and the host-side helpers the CPU backend and the tests use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/weights.h"
#include "engine/quant/quantize.h"

namespace zi {

// The QuantConfig for engine options' numbers (bits 16 = off); errors name the option and its value.
StatusOr<QuantConfig> make_quant_config(uint32_t bits, uint32_t group_size, bool embeddings);

// The LinearWeight members of a layer (q, k, v, qkv, o, gate, up, down, and the fused qkv and gate/up), whether
// used or not.
std::vector<LinearWeight*> linear_weights(LayerWeights& w);

// Marks the specs in [begin, end) whose slot is the `weight` of one of `w`'s linear weights (attention and MLP
// projections) to be quantized with q.params; nothing when q is off. Norms and biases are never marked.
void mark_quantized_specs(LayerWeights& w, std::vector<WeightSpec>& specs, size_t begin, const QuantConfig& q);
// Marks the LM head when q.embeddings (an untied head; a tied one is quantize_tied_lm_head's).
void mark_quantized_specs(GlobalWeights& g, std::vector<WeightSpec>& specs, size_t begin, const QuantConfig& q);
// With q.embeddings and a tied head (lm_head.weight is embed_tokens): gives the head its own quantized copy.
Status quantize_tied_lm_head(Backend& backend, GlobalWeights& g, const QuantConfig& q);

// Points `lw` at packed tensors (format kQuantized; its bias is kept, its dense weight dropped).
void set_quantized(LinearWeight& lw, const QuantParams& p, int64_t in_features, Tensor data, Tensor scales,
                   Tensor mins);
// Quantizes `values` (fp32, spec.shape = [out, in]) and uploads the packed tensors into *spec.quantized. Errors
// (NaN, Inf, out of fp16 range) name `where` (the file) and the tensor.
Status upload_quantized(Backend& backend, const WeightSpec& spec, const float* values, const std::string& where);

// The host view of a quantized LinearWeight whose tensors live in host memory (CPU backend, or host shards).
QuantView host_quant_view(const LinearWeight& lw);
// A dense copy of a quantized weight: dequantized on the host (the reference) and uploaded as fp32 values through
// upload_weight (the backend's weight dtype). The bias is shared. For tests and reference forwards.
LinearWeight dequantized_copy(Backend& backend, const LinearWeight& lw);
// Every quantized linear weight of the layer replaced by dequantized_copy: the "16-bit" twin of a quantized layer.
LayerWeights dequantized_layer(Backend& backend, const LayerWeights& w);

}  // namespace zi
