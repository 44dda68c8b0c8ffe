// The Llama family (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM): pre-RMSNorm decoder, RoPE
// (rotate-half), GQA attention, SwiGLU MLP, tied or untied LM head; Qwen2 adds q/k/v biases.
#pragma once

#include <memory>
#include <vector>

#include "engine/model/registry.h"

namespace zi::llama {

Status parse_llama_config(const ConfigReader& config, ModelConfig& cfg);
Status parse_mistral_config(const ConfigReader& config, ModelConfig& cfg);
Status parse_qwen2_config(const ConfigReader& config, ModelConfig& cfg);
void global_weights(const ModelConfig& cfg, GlobalWeights& w, std::vector<WeightSpec>& specs);
void layer_weights(const ModelConfig& cfg, int layer, LayerWeights& w, std::vector<WeightSpec>& specs);
StatusOr<std::unique_ptr<CausalLM>> create(const ModelConfig& cfg, Backend& backend,
                                           std::unique_ptr<ParameterSource> params);

}  // namespace zi::llama
