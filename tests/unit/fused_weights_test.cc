// Fused projections on the CPU backend (engine/model/fused_weights.h): concat_linear_rows stacks dense and quantized
// weights (and biases) row by row and refuses parts that cannot share a weight; fuse_layer_projections fills the
// fused fields and empties the separate ones; and a Llama-family model loaded resident (fused) computes exactly the
// logits of the same model with separate projections, dense and 8-bit, through prefill, a decode step beside a
// sequence with no new token, and batched decode (llama_dynamic also past its trained context, where the forward
// splits the fused output instead of using the one-table fused op).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "engine/io/safetensors.h"
#include "engine/model/fused_weights.h"
#include "engine/model/kv_cache.h"
#include "engine/model/quantized_weights.h"
#include "engine/model/registry.h"

namespace zi {
namespace {

std::string fixture_dir(const std::string& name) { return std::string(ZI_TEST_DATA) + "/models/" + name; }

std::vector<float> iota(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

class FusedWeights : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be_ = make_cpu_backend(2);
  Tensor f32(std::vector<int64_t> shape, float start) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const std::vector<float> v = iota(static_cast<size_t>(n), start);
    return be_->from_host(DType::kF32, std::move(shape), v.data());
  }
  LinearWeight dense(int64_t out, int64_t in, float start, bool bias) {
    LinearWeight w;
    w.weight = f32({out, in}, start);
    if (bias) w.bias = f32({out}, -start);
    return w;
  }
  LinearWeight quantized(int64_t out, int64_t in, float start, bool bias) {
    const std::vector<float> v = iota(static_cast<size_t>(out * in), start);
    LinearWeight w;
    WeightSpec spec;
    spec.name = "w";
    spec.shape = {out, in};
    spec.quantized = &w;
    spec.quant = {8, 4};
    EXPECT_TRUE(upload_quantized(*be_, spec, v.data(), "").ok());
    if (bias) w.bias = f32({out}, -start);
    return w;
  }
};

TEST_F(FusedWeights, ConcatLinearRowsStacksDenseWeightsAndBiases) {
  const LinearWeight a = dense(3, 5, 0, true), b = dense(2, 5, 100, true);
  auto f = concat_linear_rows(*be_, {&a, &b});
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->defined());
  EXPECT_EQ(f->format, WeightFormat::kDense);
  EXPECT_EQ(f->weight.shape(), (std::vector<int64_t>{5, 5}));
  std::vector<float> want = iota(15, 0), tail = iota(10, 100);
  want.insert(want.end(), tail.begin(), tail.end());
  EXPECT_EQ(be_->to_host_f32(f->weight), want);
  std::vector<float> bias = iota(3, 0), bias_b = iota(2, -100);
  bias.insert(bias.end(), bias_b.begin(), bias_b.end());
  EXPECT_EQ(be_->to_host_f32(f->bias), bias);
}

TEST_F(FusedWeights, ConcatLinearRowsStacksQuantizedRows) {
  const LinearWeight a = quantized(3, 10, 0, false), b = quantized(4, 10, 50, false);
  auto f = concat_linear_rows(*be_, {&a, &b});
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->defined());
  EXPECT_EQ(f->format, WeightFormat::kQuantized);
  EXPECT_EQ(f->out_features(), 7);
  EXPECT_EQ(f->in_features(), 10);
  EXPECT_EQ(f->bits, 8);
  EXPECT_EQ(f->group_size, 4);
  EXPECT_FALSE(f->bias.defined());
  // Dequantized, the fused weight is the parts' dequantized rows in order.
  std::vector<float> want = be_->to_host_f32(dequantized_copy(*be_, a).weight);
  const std::vector<float> rows_b = be_->to_host_f32(dequantized_copy(*be_, b).weight);
  want.insert(want.end(), rows_b.begin(), rows_b.end());
  EXPECT_EQ(be_->to_host_f32(dequantized_copy(*be_, *f).weight), want);
}

TEST_F(FusedWeights, PartsThatCannotShareAWeightAreLeftApart) {
  const LinearWeight d = dense(3, 5, 0, false), q = quantized(3, 5, 0, false), wide = dense(3, 6, 0, false);
  const LinearWeight with_bias = dense(3, 5, 0, true), empty;
  for (auto parts : {std::vector<const LinearWeight*>{&d, &q}, {&d, &wide}, {&d, &with_bias}, {&d, &empty}, {}}) {
    auto f = concat_linear_rows(*be_, parts);
    ASSERT_TRUE(f.ok());
    EXPECT_FALSE(f->defined());
  }
}

TEST_F(FusedWeights, FuseLayerProjectionsFillsTheFusedFieldsAndEmptiesTheParts) {
  LayerWeights w;
  w.q_proj = dense(8, 4, 0, true);
  w.k_proj = dense(2, 4, 10, true);
  w.v_proj = dense(2, 4, 20, true);
  w.o_proj = dense(4, 8, 30, false);
  w.gate_proj = dense(6, 4, 40, false);
  w.up_proj = dense(6, 4, 50, false);
  w.down_proj = dense(4, 6, 60, false);
  ASSERT_TRUE(fuse_layer_projections(*be_, w).ok());
  EXPECT_EQ(w.qkv_fused.weight.shape(), (std::vector<int64_t>{12, 4}));
  EXPECT_EQ(w.qkv_fused.bias.shape(), (std::vector<int64_t>{12}));
  EXPECT_EQ(w.gate_up_fused.weight.shape(), (std::vector<int64_t>{12, 4}));
  for (const LinearWeight* lw : {&w.q_proj, &w.k_proj, &w.v_proj, &w.gate_proj, &w.up_proj})
    EXPECT_FALSE(lw->defined() || lw->bias.defined());
  EXPECT_TRUE(w.o_proj.defined() && w.down_proj.defined());
  // Rows: gate's, then up's.
  const std::vector<float> gu = be_->to_host_f32(w.gate_up_fused.weight);
  EXPECT_EQ(gu[0], 40.0f);
  EXPECT_EQ(gu[24], 50.0f);
  // A second call changes nothing; a layer without gate_proj (OPT's MLP) keeps up_proj.
  ASSERT_TRUE(fuse_layer_projections(*be_, w).ok());
  EXPECT_EQ(w.qkv_fused.weight.dim(0), 12);
  LayerWeights opt_like;
  opt_like.up_proj = dense(6, 4, 0, true);
  ASSERT_TRUE(fuse_layer_projections(*be_, opt_like).ok());
  EXPECT_TRUE(opt_like.up_proj.defined());
  EXPECT_FALSE(opt_like.gate_up_fused.defined() || opt_like.qkv_fused.defined());
}

// ---- whole models ----

struct Model {
  ModelConfig cfg;
  const Architecture* arch = nullptr;
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<Backend> backend = make_cpu_backend(2);
};

std::unique_ptr<Model> open_model(const std::string& dir) {
  auto m = std::make_unique<Model>();
  auto cfg = load_model_config(dir);
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return nullptr;
  m->cfg = *cfg;
  m->arch = find_architecture(m->cfg.architecture);
  auto ck = Checkpoint::Open(dir);
  EXPECT_TRUE(ck.ok()) << ck.status();
  if (!ck.ok()) return nullptr;
  m->ckpt = std::move(*ck);
  return m;
}

// load_resident_parameters without the fusion: every projection separate.
class SeparateProjections final : public ParameterSource {
 public:
  SeparateProjections(Model& m, const QuantConfig& q) {
    std::vector<WeightSpec> specs;
    m.arch->global_weights(m.cfg, globals_, specs);
    mark_quantized_specs(globals_, specs, 0, q);
    layers_.resize(static_cast<size_t>(m.cfg.num_layers));  // before the specs point into it
    for (int l = 0; l < m.cfg.num_layers; ++l) {
      const size_t begin = specs.size();
      m.arch->layer_weights(m.cfg, l, layers_[l], specs);
      mark_quantized_specs(layers_[l], specs, begin, q);
    }
    const Status s = load_weights(*m.backend, *m.ckpt, specs);
    EXPECT_TRUE(s.ok()) << s;
    if (m.cfg.tie_word_embeddings) {
      globals_.lm_head.weight = globals_.embed_tokens;
      EXPECT_TRUE(quantize_tied_lm_head(*m.backend, globals_, q).ok());
    }
  }
  int num_layers() const override { return static_cast<int>(layers_.size()); }
  const GlobalWeights& globals() const override { return globals_; }
  StatusOr<const LayerWeights*> fetch(int layer) override { return &layers_.at(layer); }
  uint64_t parameter_count() const override { return 0; }
  std::string stored_dtype() const override { return "float32"; }

 private:
  GlobalWeights globals_;
  std::vector<LayerWeights> layers_;
};

// Two sequences through three steps; the logits of every step, concatenated.
std::vector<float> run_steps(Model& m, std::unique_ptr<ParameterSource> params) {
  auto model = m.arch->create(m.cfg, *m.backend, std::move(params));
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  KvCache kv(*m.backend, {static_cast<int>(m.cfg.num_layers), 2, 64, static_cast<int>(m.cfg.num_kv_heads),
                          static_cast<int>(m.cfg.head_dim), 4});
  const int a = *kv.acquire(), b = *kv.acquire();
  const std::vector<int32_t> pa = {1, 17, 45, 19, 96, 17, 3, 22, 41, 8, 5, 60, 2, 33, 7, 11, 12, 19, 4, 9},
                             pb = {1, 5, 99};
  const int32_t na = static_cast<int32_t>(pa.size()), nb = static_cast<int32_t>(pb.size());
  std::vector<ForwardBatch> steps(3);
  // Both prompts (every row's logits); an odd T.
  steps[0].tokens = pa;
  steps[0].tokens.insert(steps[0].tokens.end(), pb.begin(), pb.end());
  steps[0].seqs = {{a, 0, na, 0}, {b, na, nb, 0}};
  for (int32_t r = 0; r < na + nb; ++r) steps[0].logit_rows.push_back(r);
  // A decodes; B takes part with no new token (it must write nothing).
  steps[1].tokens = {7};
  steps[1].seqs = {{a, 0, 1, na}, {b, 1, 0, nb}};
  steps[1].logit_rows = {0};
  // Both decode.
  steps[2].tokens = {9, 13};
  steps[2].seqs = {{a, 0, 1, na + 1}, {b, 1, 1, nb}};
  steps[2].logit_rows = {0, 1};
  std::vector<float> all;
  for (const ForwardBatch& s : steps) {
    auto logits = (*model)->forward(s, kv);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return {};
    const std::vector<float> v = m.backend->to_host_f32(*logits);
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

TEST(FusedModels, LlamaFamilyLogitsEqualSeparateProjectionsBitForBit) {
  QuantConfig eight_bit;
  eight_bit.params = {8, 32};
  for (const char* name : {"llama3", "llama_mha", "mistral", "qwen2", "llama_dynamic"}) {
    for (const QuantConfig& q : {QuantConfig{}, eight_bit}) {
      SCOPED_TRACE(std::string(name) + (q.enabled() ? " 8-bit" : " dense"));
      auto m = open_model(fixture_dir(name));
      ASSERT_TRUE(m);
      ASSERT_TRUE(m->arch->fuse_projections);
      auto fused = load_resident_parameters(*m->backend, m->cfg, *m->arch, m->ckpt.get(), 0, q);
      ASSERT_TRUE(fused.ok()) << fused.status();
      for (int l = 0; l < m->cfg.num_layers; ++l) {
        const LayerWeights* w = *(*fused)->fetch(l);
        ASSERT_TRUE(w->qkv_fused.defined() && w->gate_up_fused.defined()) << "layer " << l;
        EXPECT_FALSE(w->q_proj.defined() || w->k_proj.defined() || w->v_proj.defined() || w->gate_proj.defined() ||
                     w->up_proj.defined());
        EXPECT_EQ(w->qkv_fused.out_features(), (m->cfg.num_heads + 2 * m->cfg.num_kv_heads) * m->cfg.head_dim);
        EXPECT_EQ(w->gate_up_fused.out_features(), 2 * m->cfg.intermediate_size);
        EXPECT_EQ(w->qkv_fused.format, q.enabled() ? WeightFormat::kQuantized : WeightFormat::kDense);
        EXPECT_EQ(w->qkv_fused.bias.defined(), m->cfg.attention_bias || m->cfg.qkv_bias);
      }
      const std::vector<float> want = run_steps(*m, std::make_unique<SeparateProjections>(*m, q));
      const std::vector<float> got = run_steps(*m, std::move(*fused));
      ASSERT_FALSE(want.empty());
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
    }
  }
}

TEST(FusedModels, OtherFamiliesKeepSeparateProjections) {
  for (const char* name : {"opt", "bloom"}) {
    auto m = open_model(fixture_dir(name));
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->arch->fuse_projections) << name;
    auto p = load_resident_parameters(*m->backend, m->cfg, *m->arch, m->ckpt.get(), 0);
    ASSERT_TRUE(p.ok()) << p.status();
    const LayerWeights* w = *(*p)->fetch(0);
    EXPECT_FALSE(w->qkv_fused.defined() || w->gate_up_fused.defined()) << name;
    EXPECT_TRUE(w->up_proj.defined()) << name;
  }
}

}  // namespace
}  // namespace zi
