// Fuzz target: config.json (+ generation_config.json) → ModelConfig (engine/model/config.h parse_model_config, and
// each architecture's own keys through the registry).
// Input: config.json bytes, optionally followed by the line "#generation_config" and generation_config.json bytes.
// Promises checked on an accepted config: the sizes the engine divides and indexes by are positive and
// consistent (GQA divides, head_dim even), token ids are in range, and the RoPE table for the model's head_dim
// can be computed.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/model/config.h"
#include "engine/model/registry.h"
#include "engine/model/rope.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nlohmann::json;
  bool has_generation = false;
  auto [cfg_text, gen_text] =
      zi::fuzz::split_once(zi::fuzz::as_text(data, size), "\n#generation_config\n", &has_generation);
  json config = json::parse(cfg_text.begin(), cfg_text.end(), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return 0;
  json generation;
  if (has_generation) {
    generation = json::parse(gen_text.begin(), gen_text.end(), nullptr, /*allow_exceptions=*/false);
    if (generation.is_discarded()) return 0;
  }
  auto cfg = zi::parse_model_config(config, has_generation ? &generation : nullptr, "/fuzz/model");
  if (!cfg.ok()) {
    FUZZ_CHECK(cfg.status().message().find("/fuzz/model/") != std::string::npos, "error names no file: %s",
               cfg.status().ToString().c_str());
    return 0;
  }
  const zi::ModelConfig& c = *cfg;
  FUZZ_CHECK(zi::find_architecture(c.architecture) != nullptr, "unknown architecture %s accepted",
             c.architecture.c_str());
  FUZZ_CHECK(c.vocab_size > 0 && c.vocab_size <= INT32_MAX, "vocab_size %lld", (long long)c.vocab_size);
  FUZZ_CHECK(c.hidden_size > 0 && c.intermediate_size > 0 && c.num_layers > 0, "non-positive size");
  FUZZ_CHECK(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0, "heads %lld / kv %lld",
             (long long)c.num_heads, (long long)c.num_kv_heads);
  FUZZ_CHECK(c.head_dim > 0, "head_dim %lld", (long long)c.head_dim);
  FUZZ_CHECK(c.default_max_context > 0 && c.default_max_context <= INT32_MAX, "default_max_context %lld",
             (long long)c.default_max_context);
  FUZZ_CHECK(c.max_position_embeddings >= 0 && c.max_position_embeddings <= INT32_MAX, "max_position_embeddings");
  FUZZ_CHECK(c.sliding_window >= 0, "sliding_window %d", c.sliding_window);
  FUZZ_CHECK(c.norm_eps >= 0, "norm_eps");
  for (int32_t id : c.eos_token_ids) FUZZ_CHECK(id >= 0, "eos id %d", id);
  FUZZ_CHECK(c.bos_token_id >= -1, "bos id %d", c.bos_token_id);
  // The RoPE table (host math from config values alone) for families that rotate; bounded so a legitimately
  // huge head_dim does not turn into a slow input.
  if (c.head_dim <= 4096 && c.head_dim % 2 == 0) {
    std::vector<float> inv = zi::rope_inv_freq(c.rope, c.head_dim, c.max_position_embeddings + 1);
    FUZZ_CHECK(static_cast<int64_t>(inv.size()) == c.head_dim / 2, "inv_freq has %zu entries", inv.size());
  }
  return 0;
}
