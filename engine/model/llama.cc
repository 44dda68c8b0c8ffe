// Llama family: config keys, checkpoint tensor names, and the forward.
#include "engine/model/llama.h"

#include <algorithm>
#include <cmath>

#include "engine/model/rope.h"

namespace zi::llama {

// ---------------------------------------------------------------------------------------------------------------
// config.json (LlamaConfig / MistralConfig keys; defaults as transformers' when a key is absent).

namespace {

Status parse_common(const ConfigReader& r, ModelConfig& cfg, int64_t default_max_positions,
                    double default_norm_eps = 1e-6) {
  ZI_ASSIGN_OR_RETURN(cfg.hidden_size, r.positive_int("hidden_size"));
  ZI_ASSIGN_OR_RETURN(cfg.intermediate_size, r.positive_int("intermediate_size"));
  ZI_ASSIGN_OR_RETURN(cfg.num_layers, r.positive_int("num_hidden_layers"));
  // parse_model_config's bound (config.cc), checked here too: Qwen2 sizes a per-layer table from it before that
  // check runs (a config claiming 10^15 layers was an uncaught std::bad_alloc).
  constexpr int64_t kMaxLayers = 65536;
  if (cfg.num_layers > kMaxLayers) return r.error("num_hidden_layers", absl::StrCat("exceeds ", kMaxLayers));
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
  ZI_ASSIGN_OR_RETURN(cfg.norm_eps, r.number_or("rms_norm_eps", default_norm_eps));
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

// Qwen2Config: Llama's keys with Qwen2's defaults; q/k/v always have biases (o_proj and the MLP never). Sliding
// windows only with use_sliding_window, on the layers transformers 5's layer_types marks "sliding_attention" (when
// absent, transformers 4's rule: layers i >= max_window_layers). The forward has one window for all layers, so a
// mix is refused.
Status parse_qwen2_config(const ConfigReader& r, ModelConfig& cfg) {
  ZI_RETURN_IF_ERROR(parse_common(r, cfg, 32768));
  cfg.attention_bias = false;
  cfg.qkv_bias = true;
  cfg.mlp_bias = false;
  ZI_ASSIGN_OR_RETURN(bool use_window, r.bool_or("use_sliding_window", false));
  std::vector<bool> sliding(static_cast<size_t>(cfg.num_layers), false);
  if (r.has("layer_types")) {
    const nlohmann::json& types = r.object()["layer_types"];
    if (!types.is_array() || types.size() != sliding.size())
      return r.error("layer_types", absl::StrCat("must be a list of num_hidden_layers (", cfg.num_layers,
                                                 ") strings"));
    for (size_t i = 0; i < sliding.size(); ++i) {
      const std::string t = types[i].is_string() ? types[i].get<std::string>() : "";
      if (t != "full_attention" && t != "sliding_attention")
        return r.error("layer_types", absl::StrCat("[", i, "] must be \"full_attention\" or "
                                                   "\"sliding_attention\", got ", types[i].dump()));
      sliding[i] = t == "sliding_attention";
    }
  } else {
    int64_t max_window_layers = 28;
    if (r.has("max_window_layers")) {
      const nlohmann::json& v = r.object()["max_window_layers"];
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        return r.error("max_window_layers", absl::StrCat("must be a non-negative integer, got ", v.dump()));
      max_window_layers = v.get<int64_t>();
    }
    for (size_t i = 0; i < sliding.size(); ++i) sliding[i] = static_cast<int64_t>(i) >= max_window_layers;
  }
  // transformers keeps config.sliding_window only when use_sliding_window is true: otherwise no layer slides.
  if (!use_window) return absl::OkStatus();
  const size_t n_sliding = static_cast<size_t>(std::count(sliding.begin(), sliding.end(), true));
  if (n_sliding == 0) return absl::OkStatus();
  if (n_sliding != sliding.size())
    return r.error(r.has("layer_types") ? "layer_types" : "max_window_layers",
                   absl::StrCat("mixes sliding-window and full-attention layers (", n_sliding, " of ",
                                sliding.size(), " slide); only all or none is supported"));
  ZI_ASSIGN_OR_RETURN(int64_t window, r.positive_int("sliding_window"));
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
  const bool qkv_bias = c.attention_bias || c.qkv_bias;
  linear("self_attn.q_proj", q_out, H, w.q_proj, qkv_bias);
  linear("self_attn.k_proj", kv_out, H, w.k_proj, qkv_bias);
  linear("self_attn.v_proj", kv_out, H, w.v_proj, qkv_bias);
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
      : cfg_(cfg), be_(backend), params_(std::move(params)), rope_(backend, cfg_.rope, cfg_.head_dim) {}

  const ModelConfig& config() const override { return cfg_; }
  ParameterSource& parameters() override { return *params_; }
  Backend& backend() override { return be_; }
  bool replayable(const std::vector<SeqSlice>& seqs) const override { return rope_.shared_table(seqs); }
  bool exact_when_cut() const override { return cfg_.rope.type != "dynamic"; }

 private:
  Status embed(KvCache& kv) override;
  Status layer(int l, const LayerWeights& w, ChunkState& c, KvCache& kv) override;
  StatusOr<Tensor> final_hidden(ChunkState& c) override;

  ModelConfig cfg_;
  Backend& be_;
  std::unique_ptr<ParameterSource> params_;
  RopeTables rope_;  // inv_freq f32 [D/2] (per sequence for dynamic NTK scaling), for the chunk at hand
};

// T = rows in the chunk, H = hidden, nH/nKV = heads, D = head dim, F = MLP size, V = vocab, R = logit rows.
//
// Each residual add is fused with the norm that reads its result (Backend::add_rms_norm): the attention output's
// with the MLP norm, and the MLP output's with the next layer's attention norm (or, after the last layer, the final
// norm), so the MLP output waits as `pending` until the next norm's weights are at hand. Layers with fused
// projections (fuse_layer_projections: resident layers) run one q/k/v GEMM and one gate/up GEMM, and, when every
// row of the chunk rotates with the one RoPE table, q/k rotation and the KV write in one op.
Status LlamaModel::embed(KvCache& kv) {
  (void)kv;
  const GlobalWeights& g = params_->globals();
  for (ChunkState& c : chunks_) c.x = be_.embedding(g.embed_tokens, c.in->ids);  // [T, H] residual stream
  if (chunks_.size() == 1) rope_.begin_step(chunks_[0].in->attn);  // more chunks: per chunk and layer (layer())
  return absl::OkStatus();
}

Status LlamaModel::layer(int l, const LayerWeights& lw, ChunkState& c, KvCache& kv) {
  Backend& be = be_;
  const LayerWeights* w = &lw;
  const int nH = static_cast<int>(cfg_.num_heads), nKV = static_cast<int>(cfg_.num_kv_heads);
  const int D = static_cast<int>(cfg_.head_dim);
  const int64_t q_width = int64_t{nH} * D, kv_width = int64_t{nKV} * D;
  const float eps = static_cast<float>(cfg_.norm_eps);
  const AttentionBatch& step = c.in->attn;                               // block tables, rows, positions [T]
  if (chunks_.size() > 1) rope_.begin_step(step);                        // no-op unless dynamic scaling
  const Tensor* shared_inv_freq = rope_.shared_inv_freq();              // f32 [D/2], or null (per-sequence tables)
  const AttentionParams attn{nH, nKV, D, 1.0f / std::sqrt(static_cast<float>(D)), cfg_.sliding_window, Tensor()};
  Tensor& x = c.x;                                                        // [T, H]
  Tensor& pending = c.pending;                                            // [T, H] MLP output not yet added to x

  // Self-attention block: x += o_proj(attention(rope(q), rope(k), v)).
  Tensor attn_in = pending.defined() ? be.add_rms_norm(x, pending, w->attn_norm, eps)   // x += pending; [T, H]
                                     : be.rms_norm(x, w->attn_norm, eps);
  KvLayer& cache = kv.layer(l);                                           // [NB, BS, nKV, D] each (paged)
  Tensor q;                                                               // [T, nH·D], rotated
  if (w->qkv_fused.defined()) {
    Tensor qkv = be.linear(attn_in, w->qkv_fused);                        // [T, nH·D + 2·nKV·D] = [q | k | v]
    if (shared_inv_freq) {
      q = be.qkv_rope_kv_write(qkv, cache, step, *shared_inv_freq, nH, nKV, D);  // k, v → their slots
    } else {
      const int64_t width = qkv.dim(1);
      q = be.column_slice(qkv, width, 0, q_width);
      Tensor k = be.column_slice(qkv, width, q_width, kv_width);          // [T, nKV·D]
      Tensor v = be.column_slice(qkv, width, q_width + kv_width, kv_width);
      rope_.apply(q, step, nH);
      rope_.apply(k, step, nKV);
      be.kv_write(cache, step, k, v);
    }
  } else {
    q = be.linear(attn_in, w->q_proj);                                    // [T, nH·D]
    Tensor k = be.linear(attn_in, w->k_proj);                             // [T, nKV·D]
    Tensor v = be.linear(attn_in, w->v_proj);                             // [T, nKV·D]
    rope_.apply(q, step, nH);
    rope_.apply(k, step, nKV);
    be.kv_write(cache, step, k, v);                                       // new rows → their slots
  }
  Tensor attn_out = be.attention(q, cache, step, attn);                   // [T, nH·D]
  Tensor attn_proj = be.linear(attn_out, w->o_proj);                      // [T, H]

  // MLP block (SwiGLU): x += down(silu(gate(h)) · up(h)), the add deferred to the next norm.
  Tensor mlp_in = be.add_rms_norm(x, attn_proj, w->mlp_norm, eps);        // x += attn_proj; [T, H]
  Tensor mlp_act;                                                         // [T, F]
  if (w->gate_up_fused.defined()) {
    Tensor gate_up = be.linear(mlp_in, w->gate_up_fused);                 // [T, 2F] = [gate | up]
    mlp_act = be.gate_up_silu(gate_up);
  } else {
    Tensor gate = be.linear(mlp_in, w->gate_proj);                        // [T, F]
    Tensor up = be.linear(mlp_in, w->up_proj);                            // [T, F]
    mlp_act = be.silu_mul(gate, up);
  }
  pending = be.linear(mlp_act, w->down_proj);                             // [T, H]
  return absl::OkStatus();
}

// The final norm runs on the wanted rows only: the last residual add with it, on those rows.
StatusOr<Tensor> LlamaModel::final_hidden(ChunkState& c) {
  const GlobalWeights& g = params_->globals();
  const float eps = static_cast<float>(cfg_.norm_eps);
  Tensor x_wanted = be_.gather_rows(c.x, c.in->logit_rows);               // [R, H]
  return c.pending.defined()
             ? be_.add_rms_norm(x_wanted, be_.gather_rows(c.pending, c.in->logit_rows), g.final_norm, eps)
             : be_.rms_norm(x_wanted, g.final_norm, eps);                 // [R, H]
}

}  // namespace

StatusOr<std::unique_ptr<CausalLM>> create(const ModelConfig& cfg, Backend& backend,
                                           std::unique_ptr<ParameterSource> params) {
  return std::unique_ptr<CausalLM>(new LlamaModel(cfg, backend, std::move(params)));
}

}  // namespace zi::llama
