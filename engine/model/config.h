// config.json (+ generation_config.json) → ModelConfig: the architecture-independent description the engine
// uses. Each architecture reads its own keys (engine/model/<arch>.cc, through the registry); errors name the file
// and the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/status.h"

namespace zi {

// Rotary position embedding frequencies (transformers' ROPE_INIT_FUNCTIONS): default, linear, llama3, dynamic
// (engine/model/rope.h).
struct RopeConfig {
  double theta = 10000.0;
  std::string type = "default";   // default | linear | llama3 | dynamic
  double factor = 1.0;            // linear, llama3, dynamic
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  // llama3: the rope dict's original_max_position_embeddings; dynamic: config's max_position_embeddings (the
  // length past which the frequencies are recomputed, as transformers does).
  int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
  std::string dir;                 // the model folder
  std::string architecture;        // config.json architectures[0], e.g. "LlamaForCausalLM"
  std::string model_type;          // e.g. "llama"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;   // MLP inner size
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;        // GQA: num_heads % num_kv_heads == 0
  int64_t head_dim = 0;            // config's head_dim, else hidden_size / num_heads
  int64_t max_position_embeddings = 0;  // 0 when the architecture has no such limit
  int64_t default_max_context = 2048;   // what max_context 0 means for this model
  double norm_eps = 1e-6;
  RopeConfig rope;
  int sliding_window = 0;          // 0 = full attention
  bool tie_word_embeddings = false;
  bool attention_bias = false;     // q/k/v/o projections have biases
  bool qkv_bias = false;           // q/k/v projections have biases, o_proj not (Qwen2)
  bool mlp_bias = false;
  std::string hidden_act = "silu";
  // LayerNorm families (OPT, BLOOM; engine/model/opt.h, bloom.h).
  bool norm_before = true;         // pre-LN blocks; false: OPT-350M's post-LN (norm after each residual add)
  bool norm_affine = true;         // LayerNorms have weight and bias (OPT's layer_norm_elementwise_affine)
  bool final_norm = true;          // a norm after the last layer
  bool residual_from_norm = false; // BLOOM's apply_residual_connection_post_layernorm
  int64_t embed_dim = 0;           // OPT's word_embed_proj_dim when it differs from hidden_size (project_in/out)
  std::string dtype;               // config's torch_dtype / dtype ("bfloat16"), "" when absent
  std::vector<int32_t> eos_token_ids;  // generation_config.json, else config.json; may be empty
  int32_t bos_token_id = -1;
};

// Reads DIR/config.json and, when present, DIR/generation_config.json. An architecture not in the registry is an
// error naming it and the supported list.
StatusOr<ModelConfig> load_model_config(const std::string& dir);
// The same from already-parsed JSON (tests); `generation` may be null. `dir` is used in messages.
StatusOr<ModelConfig> parse_model_config(const nlohmann::json& config, const nlohmann::json* generation,
                                         const std::string& dir);

// Typed readers for architecture parsers: errors read "DIR/config.json: KEY ...".
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}
  const nlohmann::json& object() const { return j_; }
  const std::string& file() const { return file_; }
  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  // A required positive integer.
  StatusOr<int64_t> positive_int(const std::string& key) const;
  // An optional positive integer (fallback when absent or null).
  StatusOr<int64_t> positive_int_or(const std::string& key, int64_t fallback) const;
  StatusOr<double> number_or(const std::string& key, double fallback) const;
  StatusOr<bool> bool_or(const std::string& key, bool fallback) const;
  StatusOr<std::string> string_or(const std::string& key, const std::string& fallback) const;
  Status error(const std::string& key, const std::string& what) const;

 private:
  const nlohmann::json& j_;
  std::string file_;
};

}  // namespace zi
