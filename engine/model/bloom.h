// BLOOM (BloomForCausalLM, bigscience/bloom*): ALiBi instead of positions, a LayerNorm right after the embeddings,
// fused query_key_value with a per-head [q k v] layout, tanh-GELU MLP of 4·hidden, biases everywhere, tied head.
#pragma once

#include <memory>
#include <vector>

#include "engine/model/registry.h"

namespace zi::bloom {

Status parse_config(const ConfigReader& config, ModelConfig& cfg);
void global_weights(const ModelConfig& cfg, GlobalWeights& w, std::vector<WeightSpec>& specs);
void layer_weights(const ModelConfig& cfg, int layer, LayerWeights& w, std::vector<WeightSpec>& specs);
StatusOr<std::unique_ptr<CausalLM>> create(const ModelConfig& cfg, Backend& backend,
                                           std::unique_ptr<ParameterSource> params);

// ALiBi slopes [n_heads] as transformers' build_alibi_tensor: for the largest power of two p <= n, heads 0..p-1 get
// b^1 .. b^p with b = 2^(-8/p); the remaining n - p heads get b'^1, b'^3, b'^5, ... with b' = 2^(-4/p) (the odd
// powers of the slopes of 2p heads).
std::vector<float> alibi_slopes(int n_heads);

}  // namespace zi::bloom
