// Llama family: config keys, checkpoint tensor names, and the forward.
#include "engine/model/llama.h"

#include <cmath>

#include "engine/model/rope.h"

namespace zi::llama {

// ---------------------------------------------------------------------------------------------------------------
// config.json (LlamaConfig / MistralConfig keys; defaults as transformers' when a key is absent).

namespace {

Status parse_common(const ConfigReader& r, ModelConfig& cfg, int64_t default_max_positions) {
  ZI_ASSIGN_OR_RETURN(cfg.hidden_size, r.positive_int("hidden_size"));
  ZI_ASSIGN_OR_RETURN(cfg.intermediate_size, r.positive_int("intermediate_size"));
  ZI_ASSIGN_OR_RETURN(cfg.num_layers, r.positive_int("num_hidden_layers"));
  ZI_ASSIGN_OR_RETURN(cfg.num_heads, r.positive_int("num_attention_heads"));
  ZI_ASSIGN_OR_RETURN(cfg.num_kv_heads, r.positive_int_or("num_key_value_heads", cfg.num_heads));
  if (cfg.num_kv_heads > cfg.num_heads || cfg.num_heads % cfg.num_kv_heads != 0)
    return r.error("num_key_value_heads", absl::StrCat("(", cfg.num_kv_heads, ") must divide num_attention_heads (",
                                                       cfg.num_heads, ")"));
  if (r.has("head_dim")) {
    ZI_ASSIGN_OR_RETURN(cfg.head_dim, r.positive_int("head_dim"));
  } else {
    if (cfg.hidden_size % cfg.num_heads != 0)
      return r.error("num_attention_heads", absl::StrCat("(", cfg.num_heads, ") must divide hidden_size (",
                                                         cfg.hidden_size, ") when head_dim is not given"));
    cfg.head_dim = cfg.hidden_size / cfg.num_heads;
  }
  if (cfg.head_dim % 2 != 0) return r.error("head_dim", absl::StrCat("(", cfg.head_dim, ") must be even for RoPE"));
  ZI_ASSIGN_OR_RETURN(cfg.max_position_embeddings, r.positive_int_or("max_position_embeddings",
                                                                     default_max_positions));
  if (cfg.max_position_embeddings > INT32_MAX) return r.error("max_position_embeddings", "exceeds 2^31 - 1");
  cfg.default_max_context = cfg.max_position_embeddings;
  ZI_ASSIGN_OR_RETURN(cfg.norm_eps, r.number_or("rms_norm_eps", 1e-6));
  if (!(cfg.norm_eps >= 0)) return r.error("rms_norm_eps", "must be non-negative");
  ZI_ASSIGN_OR_RETURN(cfg.tie_word_embeddings, r.bool_or("tie_word_embeddings", false));
  ZI_ASSIGN_OR_RETURN(cfg.attention_bias, r.bool_or("attention_bias", false));
  ZI_ASSIGN_OR_RETURN(cfg.mlp_bias, r.bool_or("mlp_bias", false));
  ZI_ASSIGN_OR_RETURN(cfg.hidden_act, r.string_or("hidden_act", "silu"));
  if (cfg.hidden_act != "silu")
    return r.error("hidden_act", absl::StrCat("'", cfg.hidden_act, "' is not supported (supported: silu)"));
  return parse_rope_config(r, cfg.max_position_embeddings, &cfg.rope);
}

}  // namespace

Status parse_llama_config(const ConfigReader& r, ModelConfig& cfg) { return parse_common(r, cfg, 2048); }

Status parse_mistral_config(const ConfigReader& r, ModelConfig& cfg) {
  ZI_RETURN_IF_ERROR(parse_common(r, cfg, 4096 * 32));
  // MistralAttention has no biases whatever the config says.
  cfg.attention_bias = false;
  cfg.mlp_bias = false;
  ZI_ASSIGN_OR_RETURN(int64_t window, r.positive_int_or("sliding_window", 0));
  if (window > INT32_MAX) return r.error("sliding_window", "exceeds 2^31 - 1");
  cfg.sliding_window = static_cast<int>(window);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoint tensor names (transformers' LlamaForCausalLM / MistralForCausalLM state dict).

void global_weights(const ModelConfig& c, GlobalWeights& w, std::vector<WeightSpec>& specs) {
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, &w.embed_tokens});
  specs.push_back({"model.norm.weight", {c.hidden_size}, &w.final_norm, WeightInit::kOnes});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}, &w.lm_head.weight});
}

void layer_weights(const ModelConfig& c, int layer, LayerWeights& w, std::vector<WeightSpec>& specs) {
  const std::string p = absl::StrCat("model.layers.", layer, ".");
  const int64_t H = c.hidden_size, F = c.intermediate_size;
  const int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, LinearWeight& lw, bool bias) {
    specs.push_back({p + name + ".weight", {out, in}, &lw.weight});
    if (bias) specs.push_back({p + name + ".bias", {out}, &lw.bias, WeightInit::kZeros});
  };
  specs.push_back({p + "input_layernorm.weight", {H}, &w.attn_norm, WeightInit::kOnes});
  linear("self_attn.q_proj", q_out, H, w.q_proj, c.attention_bias);
  linear("self_attn.k_proj", kv_out, H, w.k_proj, c.attention_bias);
  linear("self_attn.v_proj", kv_out, H, w.v_proj, c.attention_bias);
  linear("self_attn.o_proj", H, q_out, w.o_proj, c.attention_bias);
  specs.push_back({p + "post_attention_layernorm.weight", {H}, &w.mlp_norm, WeightInit::kOnes});
  linear("mlp.gate_proj", F, H, w.gate_proj, c.mlp_bias);
  linear("mlp.up_proj", F, H, w.up_proj, c.mlp_bias);
  linear("mlp.down_proj", H, F, w.down_proj, c.mlp_bias);
}

// ---------------------------------------------------------------------------------------------------------------
// The forward.

namespace {

class LlamaModel final : public CausalLM {
 public:
  LlamaModel(const ModelConfig& cfg, Backend& backend, std::unique_ptr<ParameterSource> params)
      : cfg_(cfg), be_(backend), params_(std::move(params)) {
    std::vector<float> inv_freq = rope_inv_freq(cfg_.rope, cfg_.head_dim);
    inv_freq_ = be_.from_host(DType::kF32, {static_cast<int64_t>(inv_freq.size())}, inv_freq.data());
  }

  const ModelConfig& config() const override { return cfg_; }
  ParameterSource& parameters() override { return *params_; }
  StatusOr<Tensor> forward(const ForwardBatch& batch, KvCache& kv) override;

 private:
  ModelConfig cfg_;
  Backend& be_;
  std::unique_ptr<ParameterSource> params_;
  Tensor inv_freq_;  // f32 [D/2]
};

// T = rows in the step, H = hidden, nH/nKV = heads, D = head dim, F = MLP size, V = vocab, R = logit rows.
StatusOr<Tensor> LlamaModel::forward(const ForwardBatch& batch, KvCache& kv) {
  Backend& be = be_;
  ParameterSource& params = *params_;
  const GlobalWeights& g = params.globals();
  const int nH = static_cast<int>(cfg_.num_heads), nKV = static_cast<int>(cfg_.num_kv_heads);
  const int D = static_cast<int>(cfg_.head_dim);
  const float eps = static_cast<float>(cfg_.norm_eps);
  const int64_t T = static_cast<int64_t>(batch.tokens.size());

  AttentionBatch step = make_attention_batch(be, batch.seqs);             // slots, rows, positions [T]
  const AttentionParams attn{nH, nKV, D, 1.0f / std::sqrt(static_cast<float>(D)), cfg_.sliding_window, Tensor()};
  Tensor ids = be.from_host(DType::kI32, {T}, batch.tokens.data());        // int32 [T]

  Tensor x = be.embedding(g.embed_tokens, ids);                           // [T, H] residual stream
  params.prefetch(0);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    ZI_ASSIGN_OR_RETURN(const LayerWeights* w, params.fetch(l));
    if (l + 1 < cfg_.num_layers) params.prefetch(l + 1);

    // Self-attention block: x += o_proj(attention(rope(q), rope(k), v)).
    Tensor attn_in = be.rms_norm(x, w->attn_norm, eps);                   // [T, H]
    Tensor q = be.linear(attn_in, w->q_proj);                             // [T, nH·D]
    Tensor k = be.linear(attn_in, w->k_proj);                             // [T, nKV·D]
    Tensor v = be.linear(attn_in, w->v_proj);                             // [T, nKV·D]
    be.rope_inplace(q, step.positions, inv_freq_, nH, D);                 // [T, nH·D]
    be.rope_inplace(k, step.positions, inv_freq_, nKV, D);                // [T, nKV·D]
    KvLayer& cache = kv.layer(l);                                         // [S, C, nKV, D] each
    be.kv_write(cache, step, k, v);                                       // new rows → their slots
    Tensor attn_out = be.attention(q, cache, step, attn);                 // [T, nH·D]
    Tensor attn_proj = be.linear(attn_out, w->o_proj);                    // [T, H]
    be.add_inplace(x, attn_proj);                                         // [T, H]

    // MLP block (SwiGLU): x += down(silu(gate(h)) · up(h)).
    Tensor mlp_in = be.rms_norm(x, w->mlp_norm, eps);                     // [T, H]
    Tensor gate = be.linear(mlp_in, w->gate_proj);                        // [T, F]
    Tensor up = be.linear(mlp_in, w->up_proj);                            // [T, F]
    Tensor mlp_act = be.silu_mul(gate, up);                               // [T, F]
    Tensor mlp_out = be.linear(mlp_act, w->down_proj);                    // [T, H]
    be.add_inplace(x, mlp_out);                                           // [T, H]

    params.release(l);
  }

  Tensor x_wanted = be.gather_rows(x, batch.logit_rows);                  // [R, H]
  Tensor final_hidden = be.rms_norm(x_wanted, g.final_norm, eps);         // [R, H]
  Tensor logits = be.linear(final_hidden, g.lm_head);                     // [R, V]
  return logits;
}

}  // namespace

StatusOr<std::unique_ptr<CausalLM>> create(const ModelConfig& cfg, Backend& backend,
                                           std::unique_ptr<ParameterSource> params) {
  return std::unique_ptr<CausalLM>(new LlamaModel(cfg, backend, std::move(params)));
}

}  // namespace zi::llama
