#include "engine/model/registry.h"

#include "engine/model/bloom.h"
#include "engine/model/llama.h"
#include "engine/model/opt.h"

namespace zi {

namespace {

// One line per architecture. Llama, Mistral and Qwen2 share the Llama-family forward, which takes fused projections.
const Architecture kArchitectures[] = {
    {"LlamaForCausalLM", &llama::parse_llama_config, &llama::global_weights, &llama::layer_weights, &llama::create,
     true},
    {"MistralForCausalLM", &llama::parse_mistral_config, &llama::global_weights, &llama::layer_weights,
     &llama::create, true},
    {"Qwen2ForCausalLM", &llama::parse_qwen2_config, &llama::global_weights, &llama::layer_weights, &llama::create,
     true},
    {"OPTForCausalLM", &opt::parse_config, &opt::global_weights, &opt::layer_weights, &opt::create},
    {"BloomForCausalLM", &bloom::parse_config, &bloom::global_weights, &bloom::layer_weights, &bloom::create},
};

}  // namespace

const Architecture* find_architecture(std::string_view name) {
  for (const Architecture& a : kArchitectures)
    if (a.name == name) return &a;
  return nullptr;
}

std::string supported_architectures() {
  std::string out;
  for (const Architecture& a : kArchitectures) absl::StrAppend(&out, out.empty() ? "" : ", ", std::string(a.name));
  return out;
}

std::vector<WeightSpec> describe_weights(const ModelConfig& cfg, const Architecture& arch) {
  GlobalWeights g;
  LayerWeights l;
  std::vector<WeightSpec> specs;
  arch.global_weights(cfg, g, specs);
  for (int i = 0; i < cfg.num_layers; ++i) arch.layer_weights(cfg, i, l, specs);
  for (WeightSpec& s : specs) s.slot = nullptr;
  return specs;
}

}  // namespace zi
