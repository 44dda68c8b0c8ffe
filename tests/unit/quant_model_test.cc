// Quantized models end to end on the CPU: a quantized forward equals the 16-bit forward run on the dequantized
// weights bit for bit; 8-bit prefill logits stay within 5e-2 (max |Δ| / max |ref|) of every fixture's reference and
// 4-bit runs; streamed quantized layers (host partitions, NVMe store) compute exactly what resident quantized layers
// do; packed shards shrink as the byte ratios say; NaN weights are refused naming file and tensor; the executor
// takes and reports quant_bits / quant_group_size. The last test prints the accuracy table of docs/QUANTIZATION.md.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"
#include "engine/io/safetensors_writer.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"
#include "engine/runtime/engine_options.h"
#include "engine/model/kv_cache.h"
#include "engine/zero/layer_pack.h"
#include "engine/zero/streamed_parameters.h"

namespace zi {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string fixture_dir(const std::string& name) { return std::string(ZI_TEST_DATA) + "/models/" + name; }
std::string demo_dir() { return std::string(ZI_SOURCE_DIR) + "/tools/demo_model/kjv-llama"; }

// Fixtures whose architecture this build runs (all of tests/data/models once every family is registered).
std::vector<std::string> runnable_fixtures() {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(std::string(ZI_TEST_DATA) + "/models")) {
    if (!fs::exists(e.path() / "reference.safetensors")) continue;
    auto cfg = load_model_config(e.path().string());
    if (cfg.ok() && find_architecture(cfg->architecture)) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

QuantConfig quant(int bits, int64_t group) {
  QuantConfig q;
  q.params = {bits, group};
  return q;
}

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

// The 16-bit twin of a (quantized) parameter source: every quantized linear weight replaced by its dequantized
// fp32 copy, everything else shared.
class DequantizedTwin final : public ParameterSource {
 public:
  DequantizedTwin(Backend& be, ParameterSource& src) : count_(src.parameter_count()), dtype_(src.stored_dtype()) {
    globals_ = src.globals();
    globals_.lm_head = dequantized_copy(be, globals_.lm_head);
    for (int l = 0; l < src.num_layers(); ++l) {
      auto w = src.fetch(l);
      EXPECT_TRUE(w.ok());
      layers_.push_back(dequantized_layer(be, **w));
      src.release(l);
    }
  }
  int num_layers() const override { return static_cast<int>(layers_.size()); }
  const GlobalWeights& globals() const override { return globals_; }
  StatusOr<const LayerWeights*> fetch(int layer) override { return &layers_.at(layer); }
  uint64_t parameter_count() const override { return count_; }
  std::string stored_dtype() const override { return dtype_; }

 private:
  GlobalWeights globals_;
  std::vector<LayerWeights> layers_;
  uint64_t count_;
  std::string dtype_;
};

// A model over `params` with a KV cache of one slot: prefill logits [L, V] of a prompt, or greedy decoding.
class Runner {
 public:
  Runner(Model& m, std::unique_ptr<ParameterSource> params)
      : m_(m), kv_(*m.backend, {static_cast<int>(m.cfg.num_layers), 1, 128, static_cast<int>(m.cfg.num_kv_heads),
                                static_cast<int>(m.cfg.head_dim)}) {
    auto model = m.arch->create(m.cfg, *m.backend, std::move(params));
    EXPECT_TRUE(model.ok()) << model.status();
    if (model.ok()) model_ = std::move(*model);
  }
  std::vector<float> prefill(const std::vector<int32_t>& prompt) {
    const int slot = *kv_.acquire();
    ForwardBatch b;
    b.tokens = prompt;
    b.seqs = {{slot, 0, static_cast<int32_t>(prompt.size()), 0}};
    for (int32_t r = 0; r < static_cast<int32_t>(prompt.size()); ++r) b.logit_rows.push_back(r);
    auto logits = model_->forward(b, kv_);
    kv_.release(slot);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.ok() ? m_.backend->to_host_f32(*logits) : std::vector<float>{};
  }
  // Logits of `steps` greedy steps after the prompt, concatenated.
  std::vector<float> greedy(const std::vector<int32_t>& prompt, int steps) {
    const int slot = *kv_.acquire();
    std::vector<float> all;
    std::vector<int32_t> tokens = prompt;
    int past = 0;
    for (int s = 0; s < steps; ++s) {
      ForwardBatch b;
      b.tokens = tokens;
      b.seqs = {{slot, 0, static_cast<int32_t>(tokens.size()), past}};
      b.logit_rows = {static_cast<int32_t>(tokens.size()) - 1};
      auto logits = model_->forward(b, kv_);
      EXPECT_TRUE(logits.ok()) << logits.status();
      if (!logits.ok()) break;
      std::vector<float> v = m_.backend->to_host_f32(*logits);
      all.insert(all.end(), v.begin(), v.end());
      past += static_cast<int>(tokens.size());
      tokens = {static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin())};
    }
    kv_.release(slot);
    return all;
  }

 private:
  Model& m_;
  KvCache kv_;
  std::unique_ptr<CausalLM> model_;
};

std::unique_ptr<ParameterSource> resident(Model& m, const QuantConfig& q) {
  auto p = load_resident_parameters(*m.backend, m.cfg, *m.arch, m.ckpt.get(), 0, q);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

std::vector<int32_t> reference_ints(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  std::vector<int32_t> v(t ? t->numel() : 0);
  if (t) std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}
std::vector<float> reference_floats(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  std::vector<float> v(t ? t->numel() : 0);
  if (t) std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}

// max |Δ| / max |ref|, the fixtures' measure.
double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  double max_ref = 0, max_d = 0;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
    max_d = std::max(max_d, std::fabs(static_cast<double>(got[i]) - ref[i]));
  }
  return max_d / max_ref;
}

// Positions (rows of V logits) whose argmax agrees, and how many rows.
std::pair<int, int> top1_agreement(const std::vector<float>& a, const std::vector<float>& b, size_t V) {
  int agree = 0, rows = static_cast<int>(a.size() / V);
  for (int r = 0; r < rows; ++r) {
    const auto ra = a.begin() + r * V, rb = b.begin() + r * V;
    agree += std::max_element(ra, ra + V) - ra == std::max_element(rb, rb + V) - rb;
  }
  return {agree, rows};
}

TEST(QuantizedModel, ForwardEqualsSixteenBitForwardOnDequantizedWeights) {
  const auto fixtures = runnable_fixtures();
  ASSERT_FALSE(fixtures.empty());
  QuantConfig with_head = quant(8, 32);
  with_head.embeddings = true;
  for (const std::string& name : fixtures)
    for (const QuantConfig& qc : {quant(8, 32), quant(4, 64), quant(4, 7), with_head}) {
      SCOPED_TRACE(name + ", " + std::to_string(qc.params.bits) + " bits, group " +
                   std::to_string(qc.params.group_size) + (qc.embeddings ? ", LM head too" : ""));
      auto m = open_model(fixture_dir(name));
      ASSERT_TRUE(m);
      auto q = resident(*m, qc);
      ASSERT_TRUE(q);
      auto fetched = q->fetch(0);
      ASSERT_TRUE(fetched.ok());
      int quantized = 0;
      for (LinearWeight* lw : linear_weights(const_cast<LayerWeights&>(**fetched)))
        quantized += lw->format == WeightFormat::kQuantized;
      EXPECT_GE(quantized, 3) << "attention and MLP projections are quantized";
      // The LM head (tied or not) is quantized only with `embeddings`; the embedding table never.
      EXPECT_EQ(q->globals().lm_head.format, qc.embeddings ? WeightFormat::kQuantized : WeightFormat::kDense);
      EXPECT_TRUE(q->globals().embed_tokens.defined());
      auto twin = std::make_unique<DequantizedTwin>(*m->backend, *q);
      const std::vector<int32_t> prompt = {1, 17, 450, 1996, 1735, 170, 432, 1720, 3, 99};
      const std::vector<float> want = Runner(*m, std::move(twin)).greedy(prompt, 4);
      const std::vector<float> got = Runner(*m, std::move(q)).greedy(prompt, 4);
      ASSERT_EQ(got.size(), want.size());
      ASSERT_FALSE(got.empty());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
    }
}

TEST(QuantizedModel, EightBitPrefillLogitsWithinFiveHundredthsOfTheReference) {
  for (const std::string& name : runnable_fixtures()) {
    auto ref = SafetensorsFile::Open(fixture_dir(name) + "/reference.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    {
      // The issue's bar: 8 bits at group 32 (group 64 is recorded by RecordAccuracy: the BLOOM fixture, whose
      // weights have std 0.3 and amplify any perturbation, lands at 6e-2 there).
      auto m = open_model(fixture_dir(name));
      ASSERT_TRUE(m);
      Runner run(*m, resident(*m, quant(8, 32)));
      for (int i = 0; i < 3; ++i) {
        const std::vector<float> want = reference_floats(**ref, "prefill_logits_" + std::to_string(i));
        const std::vector<float> got = run.prefill(reference_ints(**ref, "prompt_" + std::to_string(i)));
        EXPECT_LT(rel_err(got, want), 5e-2) << name << " prompt " << i;
      }
    }
    // 4 bits runs, with finite logits (its error is recorded, not gated).
    auto m = open_model(fixture_dir(name));
    ASSERT_TRUE(m);
    const std::vector<float> got = Runner(*m, resident(*m, quant(4, 64))).prefill(reference_ints(**ref, "prompt_1"));
    ASSERT_FALSE(got.empty());
    for (float v : got) ASSERT_TRUE(std::isfinite(v)) << name;
  }
}

std::unique_ptr<StreamedParameters> streamed(Model& m, const QuantConfig& q, std::vector<LayerTier> tiers,
                                             uint32_t depth, const std::string& store) {
  StreamingLoad load;
  load.tiers = std::move(tiers);
  load.prefetch_depth = depth;
  load.store_dir = store;
  load.quant = q;
  auto alloc = make_aligned_host_allocator();
  auto p = load_streamed_parameters(*m.backend, m.cfg, *m.arch, m.ckpt.get(), 0, load, *alloc,
                                    [](const HostShards& s) -> StatusOr<std::unique_ptr<ShardTransport>> {
                                      return make_host_transport(s, true);
                                    });
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

TEST(QuantizedModel, StreamedQuantizedLayersComputeExactlyWhatResidentOnesDo) {
  using T = LayerTier;
  const std::string store = (fs::current_path() / ("quant_store_" + std::to_string(getpid()))).string();
  for (int bits : {8, 4}) {
    auto m = open_model(fixture_dir("llama_mha"));
    ASSERT_TRUE(m);
    const std::vector<int32_t> prompt = {1, 450, 1996, 1735, 170, 432, 1720};
    const std::vector<float> want = Runner(*m, resident(*m, quant(bits, 32))).greedy(prompt, 5);
    for (auto tiers : std::vector<std::vector<T>>{{T::kGpu, T::kCpu, T::kCpu}, {T::kNvme, T::kNvme, T::kNvme}}) {
      fs::remove_all(store);
      auto p = streamed(*m, quant(bits, 32), tiers, 2, store);
      ASSERT_TRUE(p);
      const std::vector<float> got = Runner(*m, std::move(p)).greedy(prompt, 5);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << bits << " bits";
    }
    // The store written for the NVMe tier says what it holds; a 16-bit model cannot open it.
    const DType dt = layer_shard_dtype(*m->backend, m->cfg, *m->arch, m->ckpt.get());
    auto id = model_store_identity(m->cfg, dt, 1, quant(bits, 32));
    ASSERT_TRUE(id.ok());
    auto opened = OffloadStore::Open(store, *id);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ((*opened)->identity().quant_bits, static_cast<uint32_t>(bits));
    EXPECT_EQ((*opened)->identity().quant_group_size, 32u);
    auto dense_id = model_store_identity(m->cfg, dt, 1, {});
    EXPECT_THAT(OffloadStore::Open(store, *dense_id).status().message(), HasSubstr("quant_bits"));
    fs::remove_all(store);
  }
}

// A Llama-2-7B config.json in a scratch folder.
std::string llama7b_dir() {
  const std::string dir = (fs::current_path() / ("quant_llama7b_" + std::to_string(getpid()))).string();
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
    "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "dtype": "bfloat16",
    "bos_token_id": 1, "eos_token_id": 2})";
  return dir;
}

TEST(QuantizedModel, PackedLayerShardsShrinkByTheByteRatios) {
  const std::string dir = llama7b_dir();
  auto cfg = load_model_config(dir);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  const Architecture* arch = find_architecture(cfg->architecture);
  const double dense = static_cast<double>(layer_layout(*cfg, *arch, 0, DType::kBF16, 1).bytes);
  // Per weight: bits/8 bytes of codes + 4 bytes of fp16 scale and minimum per 64 weights, against 2 bytes.
  const double r4 = layer_layout(*cfg, *arch, 0, DType::kBF16, 1, quant(4, 64)).bytes / dense;
  const double r8 = layer_layout(*cfg, *arch, 0, DType::kBF16, 1, quant(8, 64)).bytes / dense;
  EXPECT_NEAR(r4, 0.28125, 2e-4);
  EXPECT_NEAR(r8, 0.53125, 2e-4);
  // Tensors of a packed layer: norms stay dense, each projection becomes codes + scales + minimums.
  const StoreShard s = layer_layout(*cfg, *arch, 3, DType::kBF16, 1, quant(4, 64));
  ASSERT_EQ(s.tensors.size(), 2u + 7 * 3);
  EXPECT_EQ(s.tensors[0].name, "model.layers.3.input_layernorm.weight");
  EXPECT_EQ(s.tensors[0].dtype, DType::kBF16);
  EXPECT_EQ(s.tensors[1].name, "model.layers.3.self_attn.q_proj.weight");
  EXPECT_EQ(s.tensors[1].dtype, DType::kU8);
  EXPECT_EQ(s.tensors[1].shape, (std::vector<int64_t>{4096, 2048}));
  EXPECT_EQ(s.tensors[2].name, "model.layers.3.self_attn.q_proj.weight.scales");
  EXPECT_EQ(s.tensors[2].shape, (std::vector<int64_t>{4096, 64}));
  EXPECT_EQ(s.tensors[3].name, "model.layers.3.self_attn.q_proj.weight.mins");
  fs::remove_all(dir);
}

// A copy of the llama_mha fixture whose `tensor` has a NaN at element `index`.
std::string fixture_with_nan(const std::string& tensor, int64_t index) {
  const std::string src = fixture_dir("llama_mha");
  const std::string dir = (fs::current_path() / ("quant_nan_" + std::to_string(getpid()))).string();
  fs::create_directories(dir);
  fs::copy_file(src + "/config.json", dir + "/config.json", fs::copy_options::overwrite_existing);
  auto ck = Checkpoint::Open(src);
  EXPECT_TRUE(ck.ok());
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TensorToWrite> out;
  for (const std::string& name : (*ck)->names()) {
    const TensorInfo* t = (*ck)->find(name);
    bytes.emplace_back(t->data, t->data + t->nbytes);
    if (name == tensor) {
      EXPECT_EQ(t->dtype, DType::kBF16);
      const uint16_t nan = 0x7fc0;
      std::memcpy(bytes.back().data() + 2 * index, &nan, 2);
    }
  }
  size_t k = 0;
  for (const std::string& name : (*ck)->names()) {
    const TensorInfo* t = (*ck)->find(name);
    out.push_back({name, t->dtype, t->shape, std::span<const uint8_t>(bytes[k++])});
  }
  EXPECT_TRUE(write_safetensors(dir + "/model.safetensors", out).ok());
  return dir;
}

TEST(QuantizedModel, NaNWeightsAreRefusedNamingFileAndTensor) {
  const std::string tensor = "model.layers.1.mlp.down_proj.weight";
  const std::string dir = fixture_with_nan(tensor, 176 + 21);  // down_proj is [H = 64, F = 176]: [1, 21]
  auto m = open_model(dir);
  ASSERT_TRUE(m);
  auto p = load_resident_parameters(*m->backend, m->cfg, *m->arch, m->ckpt.get(), 0, quant(8, 64));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr(dir + "/model.safetensors"));
  EXPECT_THAT(p.status().message(), HasSubstr(tensor));
  EXPECT_THAT(p.status().message(), HasSubstr("[1, 21] is NaN"));
  // The streamed path refuses it when packing the layer shard.
  const std::string store = dir + "/store";
  StreamingLoad load;
  load.tiers = {LayerTier::kCpu, LayerTier::kNvme, LayerTier::kCpu};
  load.store_dir = store;
  load.quant = quant(4, 32);
  auto alloc = make_aligned_host_allocator();
  auto s = load_streamed_parameters(*m->backend, m->cfg, *m->arch, m->ckpt.get(), 0, load, *alloc,
                                    [](const HostShards& h) -> StatusOr<std::unique_ptr<ShardTransport>> {
                                      return make_host_transport(h, true);
                                    });
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr(tensor));
  EXPECT_THAT(s.status().message(), HasSubstr("NaN"));
  m.reset();
  fs::remove_all(dir);
}

TEST(QuantizedModel, ExecutorTakesAndReportsQuantization) {
  EngineOptions o;
  o.model_dir = fixture_dir("llama_mha");
  o.device = Device::kCpu;
  o.max_batch_size = 1;
  auto dense = create_executor(o);
  ASSERT_TRUE(dense.ok()) << dense.status();
  EXPECT_EQ((*dense)->summary().quant_bits, 16u);
  EXPECT_EQ((*dense)->summary().quant_group_size, 0u);
  const uint64_t dense_bytes = (*dense)->summary().layer_weight_bytes;
  // llama_mha layer: 4 × 64² + 3 × 64 × 176 weights and 2 norms of 64, fp32 on the CPU backend.
  EXPECT_GE(dense_bytes, (4u * 64 * 64 + 3u * 64 * 176 + 128) * 4);
  o.quant_bits = 4;
  o.quant_group_size = 32;
  auto q = create_executor(o);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ((*q)->summary().quant_bits, 4u);
  EXPECT_EQ((*q)->summary().quant_group_size, 32u);
  EXPECT_LT((*q)->summary().layer_weight_bytes, dense_bytes / 4);
  StepInput in;
  SeqStep s;
  s.seq_id = 1;
  s.first = true;
  s.tokens = {1, 450, 1996};
  in.seqs.push_back(s);
  auto out = (*q)->step(in);
  ASSERT_TRUE(out.ok()) << out.status();
  o.quant_bits = 3;
  auto bad = create_executor(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("quant_bits must be 4, 8 or 16, got 3"));
  o.quant_bits = 8;
  o.quant_group_size = 0;
  EXPECT_THAT(create_executor(o).status().message(), HasSubstr("quant_group_size"));
}

// Records (does not gate) the accuracy of every scheme: docs/QUANTIZATION.md. Fixtures against their reference
// logits; the demo model (a trained model) against its own 16-bit forward over prompt + greedy continuation.
TEST(QuantizedModel, RecordAccuracy) {
  const std::vector<std::pair<int, int64_t>> schemes = {{8, 32}, {8, 64}, {4, 32}, {4, 64}};
  std::printf("| model | bits | group | max rel. logit error | top-1 agreement |\n|---|---|---|---|---|\n");
  for (const std::string& name : runnable_fixtures()) {
    auto ref = SafetensorsFile::Open(fixture_dir(name) + "/reference.safetensors");
    ASSERT_TRUE(ref.ok());
    for (auto [bits, group] : schemes) {
      auto m = open_model(fixture_dir(name));
      ASSERT_TRUE(m);
      Runner run(*m, resident(*m, quant(bits, group)));
      double err = 0;
      int agree = 0, rows = 0;
      for (int i = 0; i < 3; ++i) {
        const std::vector<float> want = reference_floats(**ref, "prefill_logits_" + std::to_string(i));
        const std::vector<float> got = run.prefill(reference_ints(**ref, "prompt_" + std::to_string(i)));
        err = std::max(err, rel_err(got, want));
        auto [a, r] = top1_agreement(got, want, static_cast<size_t>(m->cfg.vocab_size));
        agree += a, rows += r;
      }
      std::printf("| %s | %d | %lld | %.2e | %d/%d |\n", name.c_str(), bits, static_cast<long long>(group), err,
                  agree, rows);
    }
  }
  if (!fs::exists(demo_dir() + "/model.safetensors")) return;
  std::ifstream f(std::string(ZI_TEST_DATA) + "/demo_reference.json");
  const nlohmann::json demo = nlohmann::json::parse(f);
  std::vector<std::vector<int32_t>> seqs;
  for (const auto& c : demo.at("cases")) {
    std::vector<int32_t> s = c.at("prompt_ids").get<std::vector<int32_t>>();
    for (int32_t t : c.at("greedy_ids").get<std::vector<int32_t>>()) s.push_back(t);
    seqs.push_back(s);
  }
  auto m16 = open_model(demo_dir());
  ASSERT_TRUE(m16);
  Runner base(*m16, resident(*m16, {}));
  std::vector<std::vector<float>> want;
  for (const auto& s : seqs) want.push_back(base.prefill(s));
  for (auto [bits, group] : schemes) {
    auto m = open_model(demo_dir());
    Runner run(*m, resident(*m, quant(bits, group)));
    double err = 0;
    int agree = 0, rows = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const std::vector<float> got = run.prefill(seqs[i]);
      err = std::max(err, rel_err(got, want[i]));
      auto [a, r] = top1_agreement(got, want[i], static_cast<size_t>(m->cfg.vocab_size));
      agree += a, rows += r;
    }
    std::printf("| kjv-llama (demo) | %d | %lld | %.2e | %d/%d |\n", bits, static_cast<long long>(group), err, agree,
                rows);
  }
}

}  // namespace
}  // namespace zi
