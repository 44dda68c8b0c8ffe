// BLOOM: config keys, checkpoint tensor names, and the forward (transformers' BloomModel / BloomBlock).
#include "engine/model/bloom.h"

#include <cmath>

namespace zi::bloom {

// ---------------------------------------------------------------------------------------------------------------
// config.json (BloomConfig keys; transformers also accepts num_hidden_layers / num_attention_heads through its
// attribute map and the legacy n_embed for hidden_size).

namespace {

// The first of `keys` present, as a positive integer; an error naming them all when none is.
StatusOr<int64_t> first_positive_int(const ConfigReader& r, std::initializer_list<const char*> keys) {
  std::string names;
  for (const char* k : keys) {
    if (r.has(k)) return r.positive_int(k);
    absl::StrAppend(&names, names.empty() ? "" : " / ", k);
  }
  return r.error(names, "is missing");
}

}  // namespace

Status parse_config(const ConfigReader& r, ModelConfig& cfg) {
  ZI_ASSIGN_OR_RETURN(cfg.hidden_size, first_positive_int(r, {"hidden_size", "n_embed"}));
  ZI_ASSIGN_OR_RETURN(cfg.num_layers, first_positive_int(r, {"n_layer", "num_hidden_layers"}));
  ZI_ASSIGN_OR_RETURN(cfg.num_heads, first_positive_int(r, {"n_head", "num_attention_heads"}));
  if (cfg.hidden_size % cfg.num_heads != 0)
    return r.error(r.has("n_head") ? "n_head" : "num_attention_heads",
                   absl::StrCat("(", cfg.num_heads, ") must divide hidden_size (", cfg.hidden_size, ")"));
  cfg.num_kv_heads = cfg.num_heads;
  cfg.head_dim = cfg.hidden_size / cfg.num_heads;
  cfg.intermediate_size = 4 * cfg.hidden_size;  // BloomMLP: always 4·hidden
  ZI_ASSIGN_OR_RETURN(cfg.norm_eps, r.number_or("layer_norm_epsilon", 1e-5));
  if (!(cfg.norm_eps >= 0)) return r.error("layer_norm_epsilon", "must be non-negative");
  ZI_ASSIGN_OR_RETURN(cfg.residual_from_norm, r.bool_or("apply_residual_connection_post_layernorm", false));
  ZI_ASSIGN_OR_RETURN(cfg.tie_word_embeddings, r.bool_or("tie_word_embeddings", true));
  cfg.attention_bias = true;
  cfg.mlp_bias = true;
  cfg.hidden_act = "bloom_gelu";
  // ALiBi has no position table; the context is the training length when the config records it.
  cfg.max_position_embeddings = 0;
  ZI_ASSIGN_OR_RETURN(cfg.default_max_context, r.positive_int_or("seq_length", 2048));
  if (cfg.default_max_context > INT32_MAX) return r.error("seq_length", "exceeds 2^31 - 1");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoint tensor names (transformers' BloomForCausalLM state dict).

void global_weights(const ModelConfig& c, GlobalWeights& w, std::vector<WeightSpec>& specs) {
  const int64_t H = c.hidden_size;
  specs.push_back({"transformer.word_embeddings.weight", {c.vocab_size, H}, &w.embed_tokens});
  specs.push_back({"transformer.word_embeddings_layernorm.weight", {H}, &w.embed_norm, WeightInit::kOnes});
  specs.push_back({"transformer.word_embeddings_layernorm.bias", {H}, &w.embed_norm_bias, WeightInit::kZeros});
  specs.push_back({"transformer.ln_f.weight", {H}, &w.final_norm, WeightInit::kOnes});
  specs.push_back({"transformer.ln_f.bias", {H}, &w.final_norm_bias, WeightInit::kZeros});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, H}, &w.lm_head.weight});
}

void layer_weights(const ModelConfig& c, int layer, LayerWeights& w, std::vector<WeightSpec>& specs) {
  const std::string p = absl::StrCat("transformer.h.", layer, ".");
  const int64_t H = c.hidden_size, F = c.intermediate_size;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, LinearWeight& lw) {
    specs.push_back({p + name + ".weight", {out, in}, &lw.weight});
    specs.push_back({p + name + ".bias", {out}, &lw.bias, WeightInit::kZeros});
  };
  auto norm = [&](const std::string& name, Tensor& weight, Tensor& bias) {
    specs.push_back({p + name + ".weight", {H}, &weight, WeightInit::kOnes});
    specs.push_back({p + name + ".bias", {H}, &bias, WeightInit::kZeros});
  };
  norm("input_layernorm", w.attn_norm, w.attn_norm_bias);
  linear("self_attention.query_key_value", 3 * H, H, w.qkv_proj);  // rows: head h's q, k, v (D each), h = 0..nH-1
  linear("self_attention.dense", H, H, w.o_proj);
  norm("post_attention_layernorm", w.mlp_norm, w.mlp_norm_bias);
  linear("mlp.dense_h_to_4h", F, H, w.up_proj);
  linear("mlp.dense_4h_to_h", H, F, w.down_proj);
}

std::vector<float> alibi_slopes(int n_heads) {
  int p = 1;
  while (p * 2 <= n_heads) p *= 2;
  // transformers builds the bases in double, stores them as fp32 tensors and raises them to integer powers.
  const float base = static_cast<float>(std::pow(2.0, -8.0 / p));
  const float extra_base = static_cast<float>(std::pow(2.0, -4.0 / p));
  std::vector<float> slopes;
  for (int i = 1; i <= p; ++i) slopes.push_back(static_cast<float>(std::pow(static_cast<double>(base), i)));
  for (int i = 0; i < n_heads - p; ++i)
    slopes.push_back(static_cast<float>(std::pow(static_cast<double>(extra_base), 2 * i + 1)));
  return slopes;
}

// ---------------------------------------------------------------------------------------------------------------
// The forward.

namespace {

class BloomModel final : public CausalLM {
 public:
  BloomModel(const ModelConfig& cfg, Backend& backend, std::unique_ptr<ParameterSource> params)
      : cfg_(cfg), be_(backend), params_(std::move(params)) {
    const std::vector<float> slopes = alibi_slopes(static_cast<int>(cfg_.num_heads));
    slopes_ = be_.from_host(DType::kF32, {cfg_.num_heads}, slopes.data());
  }

  const ModelConfig& config() const override { return cfg_; }
  ParameterSource& parameters() override { return *params_; }
  Backend& backend() override { return be_; }

 private:
  Status embed(KvCache& kv) override;
  Status layer(int l, const LayerWeights& w, ChunkState& c, KvCache& kv) override;
  StatusOr<Tensor> final_hidden(ChunkState& c) override;

  ModelConfig cfg_;
  Backend& be_;
  std::unique_ptr<ParameterSource> params_;
  Tensor slopes_;  // f32 [nH]
};

// T = rows in the chunk, H = hidden, nH = heads, D = head dim, F = 4H, V = vocab, R = logit rows.
//
// Every residual sum feeds a LayerNorm, and each is computed by that norm's fused op (Backend::add_layer_norm: its
// first operand becomes the sum): the attention block's with ln2, the MLP block's with the next layer's ln1 (or the
// final norm, on the wanted rows). Between layers the residual is kept as the pair x + pending, whichever tensors
// apply_residual_connection_post_layernorm makes the operands.
Status BloomModel::embed(KvCache& kv) {
  (void)kv;
  const GlobalWeights& g = params_->globals();
  const float eps = static_cast<float>(cfg_.norm_eps);
  for (ChunkState& c : chunks_) {
    Tensor embedded = be_.embedding(g.embed_tokens, c.in->ids);           // [T, H]
    c.x = be_.layer_norm(embedded, g.embed_norm, g.embed_norm_bias, eps);  // [T, H] residual (+ pending)
  }
  return absl::OkStatus();
}

Status BloomModel::layer(int l, const LayerWeights& lw, ChunkState& c, KvCache& kv) {
  Backend& be = be_;
  const LayerWeights* w = &lw;
  const int nH = static_cast<int>(cfg_.num_heads), D = static_cast<int>(cfg_.head_dim);
  const float eps = static_cast<float>(cfg_.norm_eps);
  const AttentionBatch& step = c.in->attn;                               // block tables, rows, positions [T]
  // Scores q·k/√D + slope_h·(key_pos − query_pos): transformers adds slope_h·key_pos, which differs by a constant
  // per query row and so gives the same softmax.
  const AttentionParams attn{nH, nH, D, 1.0f / std::sqrt(static_cast<float>(D)), 0, slopes_};
  Tensor& x = c.x;                                                        // [T, H]
  Tensor& pending = c.pending;                                            // [T, H] the residual's other addend

  // Self-attention block: x' = dense(attention(q, k, v)) + residual, residual = x or (apply_residual_connection_
  // post_layernorm) its LayerNorm.
  Tensor ln1 = pending.defined() ? be.add_layer_norm(x, pending, w->attn_norm, w->attn_norm_bias, eps)  // x += p
                                 : be.layer_norm(x, w->attn_norm, w->attn_norm_bias, eps);           // [T, H]
  Tensor qkv = be.linear(ln1, w->qkv_proj);                              // [T, 3H] viewed [T, nH, 3, D]
  Tensor q = be.column_slice(qkv, 3 * D, 0, D);                          // [T, nH·D]
  Tensor k = be.column_slice(qkv, 3 * D, D, D);                          // [T, nH·D]
  Tensor v = be.column_slice(qkv, 3 * D, 2 * D, D);                      // [T, nH·D]
  KvLayer& cache = kv.layer(l);                                          // [NB, BS, nH, D] each (paged)
  be.kv_write(cache, step, k, v);
  Tensor attn_out = be.attention(q, cache, step, attn);                  // [T, H]
  Tensor attn_proj = be.linear(attn_out, w->o_proj);                     // [T, H]
  // x' = attn_proj + (ln1 or x), and ln2 its norm.
  if (cfg_.residual_from_norm) x = attn_proj;
  Tensor ln2 = be.add_layer_norm(x, cfg_.residual_from_norm ? ln1 : attn_proj, w->mlp_norm, w->mlp_norm_bias,
                                 eps);                                   // [T, H]

  // MLP block: x'' = dense_4h_to_h(gelu_tanh(dense_h_to_4h(ln2))) + residual (x' or ln2), summed by the next norm.
  Tensor hidden = be.linear(ln2, w->up_proj);                            // [T, F]
  Tensor act = be.activation(hidden, Activation::kGeluTanh);             // [T, F]
  Tensor mlp_out = be.linear(act, w->down_proj);                         // [T, H]
  if (cfg_.residual_from_norm) {
    x = mlp_out;
    pending = ln2;
  } else {
    pending = mlp_out;
  }
  return absl::OkStatus();
}

StatusOr<Tensor> BloomModel::final_hidden(ChunkState& c) {
  const GlobalWeights& g = params_->globals();
  const float eps = static_cast<float>(cfg_.norm_eps);
  Tensor x_wanted = be_.gather_rows(c.x, c.in->logit_rows);               // [R, H]
  return c.pending.defined() ? be_.add_layer_norm(x_wanted, be_.gather_rows(c.pending, c.in->logit_rows),
                                                  g.final_norm, g.final_norm_bias, eps)
                             : be_.layer_norm(x_wanted, g.final_norm, g.final_norm_bias, eps);  // [R, H]
}

}  // namespace

StatusOr<std::unique_ptr<CausalLM>> create(const ModelConfig& cfg, Backend& backend,
                                           std::unique_ptr<ParameterSource> params) {
  return std::unique_ptr<CausalLM>(new BloomModel(cfg, backend, std::move(params)));
}

}  // namespace zi::bloom
