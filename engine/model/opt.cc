// OPT: config keys, checkpoint tensor names, and the forward (transformers' OPTDecoder / OPTDecoderLayer).
#include "engine/model/opt.h"

#include <cmath>

namespace zi::opt {

namespace {

// OPT's table holds max_position_embeddings + 2 rows: transformers looks up position + 2 (a fairseq leftover from
// when padding_idx 1 took the first rows).
constexpr int64_t kPositionOffset = 2;
// nn.LayerNorm's default; OPTConfig has no key for it.
constexpr double kLayerNormEps = 1e-5;

// activation_function (transformers' ACT2FN names) → backend activation.
StatusOr<Activation> activation_of(const std::string& name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "gelu") return Activation::kGelu;
  // Same tanh approximation, different spellings.
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::kGeluTanh;
  if (name == "silu" || name == "swish") return Activation::kSilu;
  return absl::InvalidArgumentError("not supported (supported: relu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, "
                                    "silu, swish)");
}

// Width of the token embeddings (word_embed_proj_dim).
int64_t embed_width(const ModelConfig& c) { return c.embed_dim > 0 ? c.embed_dim : c.hidden_size; }

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// config.json (OPTConfig keys; defaults as transformers' when a key is absent).

Status parse_config(const ConfigReader& r, ModelConfig& cfg) {
  ZI_ASSIGN_OR_RETURN(cfg.hidden_size, r.positive_int("hidden_size"));
  ZI_ASSIGN_OR_RETURN(cfg.intermediate_size, r.positive_int("ffn_dim"));
  ZI_ASSIGN_OR_RETURN(cfg.num_layers, r.positive_int("num_hidden_layers"));
  ZI_ASSIGN_OR_RETURN(cfg.num_heads, r.positive_int("num_attention_heads"));
  if (cfg.hidden_size % cfg.num_heads != 0)
    return r.error("num_attention_heads", absl::StrCat("(", cfg.num_heads, ") must divide hidden_size (",
                                                       cfg.hidden_size, ")"));
  cfg.num_kv_heads = cfg.num_heads;
  cfg.head_dim = cfg.hidden_size / cfg.num_heads;
  ZI_ASSIGN_OR_RETURN(int64_t proj_dim, r.positive_int_or("word_embed_proj_dim", cfg.hidden_size));
  cfg.embed_dim = proj_dim == cfg.hidden_size ? 0 : proj_dim;
  ZI_ASSIGN_OR_RETURN(cfg.max_position_embeddings, r.positive_int_or("max_position_embeddings", 2048));
  if (cfg.max_position_embeddings > INT32_MAX - kPositionOffset)
    return r.error("max_position_embeddings", "exceeds 2^31 - 3");
  // Learned positions end at the table: a longer context cannot be served.
  cfg.default_max_context = cfg.max_position_embeddings;
  ZI_ASSIGN_OR_RETURN(cfg.norm_before, r.bool_or("do_layer_norm_before", true));
  ZI_ASSIGN_OR_RETURN(bool remove_final, r.bool_or("_remove_final_layer_norm", false));
  // OPTDecoder builds final_layer_norm only for pre-LN models (and not for pre-v4.20 fine-tunes that removed it).
  cfg.final_norm = cfg.norm_before && !remove_final;
  ZI_ASSIGN_OR_RETURN(bool enable_bias, r.bool_or("enable_bias", true));
  cfg.attention_bias = enable_bias;
  cfg.mlp_bias = enable_bias;
  ZI_ASSIGN_OR_RETURN(cfg.norm_affine, r.bool_or("layer_norm_elementwise_affine", true));
  ZI_ASSIGN_OR_RETURN(cfg.hidden_act, r.string_or("activation_function", "relu"));
  if (auto act = activation_of(cfg.hidden_act); !act.ok())
    return r.error("activation_function", absl::StrCat("'", cfg.hidden_act, "' is ", act.status().message()));
  ZI_ASSIGN_OR_RETURN(cfg.tie_word_embeddings, r.bool_or("tie_word_embeddings", true));
  cfg.norm_eps = kLayerNormEps;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoint tensor names (transformers' OPTForCausalLM state dict).

void global_weights(const ModelConfig& c, GlobalWeights& w, std::vector<WeightSpec>& specs) {
  const int64_t H = c.hidden_size, E = embed_width(c), V = c.vocab_size;
  specs.push_back({"model.decoder.embed_tokens.weight", {V, E}, &w.embed_tokens});
  specs.push_back({"model.decoder.embed_positions.weight", {c.max_position_embeddings + kPositionOffset, H},
                   &w.embed_positions});
  if (c.final_norm && c.norm_affine) {
    specs.push_back({"model.decoder.final_layer_norm.weight", {H}, &w.final_norm, WeightInit::kOnes});
    specs.push_back({"model.decoder.final_layer_norm.bias", {H}, &w.final_norm_bias, WeightInit::kZeros});
  }
  if (c.embed_dim > 0) {
    specs.push_back({"model.decoder.project_in.weight", {H, E}, &w.project_in.weight});
    specs.push_back({"model.decoder.project_out.weight", {E, H}, &w.project_out.weight});
  }
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {V, E}, &w.lm_head.weight});
}

void layer_weights(const ModelConfig& c, int layer, LayerWeights& w, std::vector<WeightSpec>& specs) {
  const std::string p = absl::StrCat("model.decoder.layers.", layer, ".");
  const int64_t H = c.hidden_size, F = c.intermediate_size;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, LinearWeight& lw) {
    specs.push_back({p + name + ".weight", {out, in}, &lw.weight});
    if (c.attention_bias) specs.push_back({p + name + ".bias", {out}, &lw.bias, WeightInit::kZeros});
  };
  auto norm = [&](const std::string& name, Tensor& weight, Tensor& bias) {
    if (!c.norm_affine) return;
    specs.push_back({p + name + ".weight", {H}, &weight, WeightInit::kOnes});
    specs.push_back({p + name + ".bias", {H}, &bias, WeightInit::kZeros});
  };
  norm("self_attn_layer_norm", w.attn_norm, w.attn_norm_bias);
  linear("self_attn.q_proj", H, H, w.q_proj);
  linear("self_attn.k_proj", H, H, w.k_proj);
  linear("self_attn.v_proj", H, H, w.v_proj);
  linear("self_attn.out_proj", H, H, w.o_proj);
  norm("final_layer_norm", w.mlp_norm, w.mlp_norm_bias);
  linear("fc1", F, H, w.up_proj);
  linear("fc2", H, F, w.down_proj);
}

Status check_positions(const std::vector<SeqSlice>& seqs, int64_t max_position_embeddings) {
  for (const SeqSlice& s : seqs) {
    const int64_t last = static_cast<int64_t>(s.past_len) + s.n_new - 1;
    if (s.n_new > 0 && last >= max_position_embeddings)
      return absl::OutOfRangeError(absl::StrCat("OPT has learned positions 0..", max_position_embeddings - 1,
                                                " (config.json max_position_embeddings); position ", last,
                                                " is past them: lower max_context"));
  }
  return absl::OkStatus();
}

StatusOr<std::vector<int32_t>> position_rows(const std::vector<SeqSlice>& seqs, int64_t max_position_embeddings) {
  ZI_RETURN_IF_ERROR(check_positions(seqs, max_position_embeddings));
  std::vector<int32_t> rows;
  for (const SeqSlice& s : seqs) {
    for (int32_t i = 0; i < s.n_new; ++i) rows.push_back(static_cast<int32_t>(s.past_len + i + kPositionOffset));
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------
// The forward.

namespace {

class OptModel final : public CausalLM {
 public:
  OptModel(const ModelConfig& cfg, Backend& backend, std::unique_ptr<ParameterSource> params, Activation act)
      : cfg_(cfg), be_(backend), params_(std::move(params)), act_(act) {
    if (!cfg_.norm_affine) {
      // LayerNorm without weight and bias = weight 1, no bias (a constant, not a checkpoint tensor).
      const std::vector<float> ones(static_cast<size_t>(cfg_.hidden_size), 1.0f);
      ones_ = be_.upload_weight(DType::kF32, {cfg_.hidden_size}, ones.data());
    }
  }

  const ModelConfig& config() const override { return cfg_; }
  ParameterSource& parameters() override { return *params_; }
  Backend& backend() override { return be_; }
  // A position past the table is an error the eager forward reports; a replay would read past the table.
  bool replayable(const std::vector<SeqSlice>& seqs) const override {
    return check_positions(seqs, cfg_.max_position_embeddings).ok();
  }

 private:
  Status embed(KvCache& kv) override;
  Status layer(int l, const LayerWeights& w, ChunkState& c, KvCache& kv) override;
  StatusOr<Tensor> final_hidden(ChunkState& c) override;

  Tensor norm(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    const float eps = static_cast<float>(cfg_.norm_eps);
    return cfg_.norm_affine ? be_.layer_norm(x, weight, bias, eps) : be_.layer_norm(x, ones_, Tensor(), eps);
  }
  // x += delta, then norm(x) (one fused op).
  Tensor add_norm(Tensor& x, const Tensor& delta, const Tensor& weight, const Tensor& bias) {
    const float eps = static_cast<float>(cfg_.norm_eps);
    return cfg_.norm_affine ? be_.add_layer_norm(x, delta, weight, bias, eps)
                            : be_.add_layer_norm(x, delta, ones_, Tensor(), eps);
  }

  ModelConfig cfg_;
  Backend& be_;
  std::unique_ptr<ParameterSource> params_;
  Activation act_;
  Tensor ones_;  // [H] when the LayerNorms have no affine parameters
};

// T = rows in the chunk, H = hidden, E = word_embed_proj_dim, nH = heads, D = head dim, F = ffn_dim, V = vocab,
// R = logit rows.
//
// Every residual add is fused with the LayerNorm that reads its result (Backend::add_layer_norm): pre-LN, the
// attention output's with the MLP norm and the MLP output's with the next layer's attention norm (or the final norm,
// on the wanted rows), so the MLP output waits as `pending`; post-LN, each add with the norm that replaces x.
Status OptModel::embed(KvCache& kv) {
  (void)kv;
  const GlobalWeights& g = params_->globals();
  // Learned positions start kPositionOffset rows into the table: a view from there, indexed by position.
  const Tensor pos_table = g.embed_positions.rows(kPositionOffset, g.embed_positions.dim(0));  // [P - 2, H]
  for (ChunkState& c : chunks_) {
    ZI_RETURN_IF_ERROR(check_positions(c.in->attn.seqs, cfg_.max_position_embeddings));
    Tensor x = be_.embedding(g.embed_tokens, c.in->ids);                 // [T, E]
    if (cfg_.embed_dim > 0) x = be_.linear(x, g.project_in);             // [T, H]
    Tensor pos = be_.embedding(pos_table, c.in->attn.positions);         // [T, H]
    be_.add_inplace(x, pos);                                             // [T, H] residual stream
    c.x = std::move(x);
  }
  return absl::OkStatus();
}

Status OptModel::layer(int l, const LayerWeights& lw, ChunkState& c, KvCache& kv) {
  Backend& be = be_;
  const LayerWeights* w = &lw;
  const int nH = static_cast<int>(cfg_.num_heads), D = static_cast<int>(cfg_.head_dim);
  const AttentionBatch& step = c.in->attn;                               // block tables, rows, positions [T]
  const AttentionParams attn{nH, nH, D, 1.0f / std::sqrt(static_cast<float>(D)), 0, Tensor()};
  Tensor& x = c.x;                                                        // [T, H]
  Tensor& pending = c.pending;                                            // [T, H] pre-LN: MLP output not yet in x

  // Self-attention block: x += out_proj(attention(q, k, v)), LayerNorm before (pre-LN) or after the add.
  Tensor attn_in = x;                                                    // [T, H]
  if (cfg_.norm_before)
    attn_in = pending.defined() ? add_norm(x, pending, w->attn_norm, w->attn_norm_bias)  // x += pending
                                : norm(x, w->attn_norm, w->attn_norm_bias);
  Tensor q = be.linear(attn_in, w->q_proj);                              // [T, H]
  Tensor k = be.linear(attn_in, w->k_proj);                              // [T, H]
  Tensor v = be.linear(attn_in, w->v_proj);                              // [T, H]
  KvLayer& cache = kv.layer(l);                                          // [NB, BS, nH, D] each (paged)
  be.kv_write(cache, step, k, v);
  Tensor attn_out = be.attention(q, cache, step, attn);                  // [T, H]
  Tensor attn_proj = be.linear(attn_out, w->o_proj);                     // [T, H]

  // MLP block: x += fc2(act(fc1(h))).
  Tensor mlp_in;                                                         // [T, H]
  if (cfg_.norm_before) {
    mlp_in = add_norm(x, attn_proj, w->mlp_norm, w->mlp_norm_bias);      // x += attn_proj
  } else {
    x = add_norm(x, attn_proj, w->attn_norm, w->attn_norm_bias);         // x = norm(x + attn_proj)
    mlp_in = x;
  }
  Tensor hidden = be.linear(mlp_in, w->up_proj);                         // [T, F]
  Tensor act = be.activation(hidden, act_);                              // [T, F]
  Tensor mlp_out = be.linear(act, w->down_proj);                         // [T, H]
  if (cfg_.norm_before) {
    pending = mlp_out;                                                   // added by the next norm
  } else {
    x = add_norm(x, mlp_out, w->mlp_norm, w->mlp_norm_bias);             // x = norm(x + mlp_out)
  }
  return absl::OkStatus();
}

StatusOr<Tensor> OptModel::final_hidden(ChunkState& c) {
  const GlobalWeights& g = params_->globals();
  Tensor h = be_.gather_rows(c.x, c.in->logit_rows);                      // [R, H]
  if (c.pending.defined()) {
    Tensor delta = be_.gather_rows(c.pending, c.in->logit_rows);         // [R, H]
    if (cfg_.final_norm) {
      h = add_norm(h, delta, g.final_norm, g.final_norm_bias);           // [R, H]
    } else {
      be_.add_inplace(h, delta);
    }
  } else if (cfg_.final_norm) {
    h = norm(h, g.final_norm, g.final_norm_bias);                         // [R, H]
  }
  if (cfg_.embed_dim > 0) h = be_.linear(h, g.project_out);               // [R, E]
  return h;
}

}  // namespace

StatusOr<std::unique_ptr<CausalLM>> create(const ModelConfig& cfg, Backend& backend,
                                           std::unique_ptr<ParameterSource> params) {
  ZI_ASSIGN_OR_RETURN(Activation act, activation_of(cfg.hidden_act));
  return std::unique_ptr<CausalLM>(new OptModel(cfg, backend, std::move(params), act));
}

}  // namespace zi::opt
