// The supported architectures, keyed by config.json's `architectures` entry. Each lives in engine/model/<arch>.cc
// and is listed once in registry.cc.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/model/config.h"
#include "engine/model/model.h"
#include "engine/model/weights.h"

namespace zi {

struct Architecture {
  std::string_view name;  // e.g. "LlamaForCausalLM"
  // Reads the architecture's keys (common ones, vocab_size, dtype, EOS, are read by parse_model_config).
  Status (*parse_config)(const ConfigReader& config, ModelConfig& cfg);
  // The checkpoint tensors outside the layers, with destinations in `w` (lm_head omitted when tied).
  void (*global_weights)(const ModelConfig& cfg, GlobalWeights& w, std::vector<WeightSpec>& specs);
  // The tensors of decoder layer `layer`, with destinations in `w`.
  void (*layer_weights)(const ModelConfig& cfg, int layer, LayerWeights& w, std::vector<WeightSpec>& specs);
  // The model over its parameters.
  StatusOr<std::unique_ptr<CausalLM>> (*create)(const ModelConfig& cfg, Backend& backend,
                                                std::unique_ptr<ParameterSource> params);
  // Resident layers get fused q/k/v and gate/up projections at load (fuse_layer_projections), which the forward
  // uses when present.
  bool fuse_projections = false;
};

// nullptr when unsupported.
const Architecture* find_architecture(std::string_view name);
// "LlamaForCausalLM, MistralForCausalLM" (for error messages).
std::string supported_architectures();

// Every checkpoint tensor the architecture reads (globals, then layers), with throwaway destinations: for
// parameter counts and planning without loading anything.
std::vector<WeightSpec> describe_weights(const ModelConfig& cfg, const Architecture& arch);

}  // namespace zi
