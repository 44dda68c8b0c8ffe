// Every model fixture in tests/data/models/ (the shared llama_mha, mistral, opt, bloom and the project's own
// qwen2, llama3, llama_dynamic, llama_linear, opt_post_ln, opt_variant, bloom_6h) against transformers' outputs on
// the CPU backend: prefill logits and every greedy step's logits within 1e-4 relative, the 12 greedy tokens of each
// of three prompts, alone, batched, with chunked prefill; the same from fp32 / fp16 / bf16, single-file and sharded
// copies of the weights (also named as the base model saves them), and through the NVMe-tier weight streaming that
// packs Architecture::layer_weights.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "engine/io/safetensors_writer.h"
#include "engine/model/config.h"
#include "tests/unit/model_fixture_util.h"

namespace zi {
namespace {

using namespace testing_fixtures;
namespace fs = std::filesystem;

TEST(ModelFixtures, EveryRequiredFixtureIsPresent) {
  const std::vector<std::string> names = fixture_names();
  const std::set<std::string> have(names.begin(), names.end());
  for (const char* need : {"llama_mha", "mistral", "opt", "bloom", "qwen2", "llama3"})
    EXPECT_TRUE(have.count(need)) << "tests/data/models/" << need << " is missing";
  // Each architecture the registry serves has at least one fixture.
  std::set<std::string> archs;
  for (const std::string& n : names) {
    auto cfg = load_model_config(models_dir() + "/" + n);
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    archs.insert(cfg->architecture);
  }
  EXPECT_EQ(archs, (std::set<std::string>{"BloomForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
                                          "OPTForCausalLM", "Qwen2ForCausalLM"}));
}

class ModelParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = models_dir() + "/" + GetParam();
    ref_ = load_reference(dir_);
    auto cfg = load_model_config(dir_);
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    cfg_ = *cfg;
  }
  std::string dir_;
  Reference ref_;
  ModelConfig cfg_;
};

TEST_P(ModelParity, EachPromptAloneMatchesTransformers) {
  auto ex = make_executor(cpu_options(dir_));
  ASSERT_TRUE(ex);
  EXPECT_EQ(ex->summary().vocab_size, ref_.vocab());
  EXPECT_EQ(ex->summary().architecture, cfg_.architecture);
  for (int i = 0; i < kPrompts; ++i) expect_prompt_matches(*ex, ref_, i, GetParam());
}

TEST_P(ModelParity, BatchedPromptsMatchAlone) {
  // The three prompts share every step; single-threaded too (results must not depend on the thread count).
  for (uint32_t threads : {1u, 0u}) {
    auto ex = make_executor(cpu_options(dir_, threads));
    ASSERT_TRUE(ex);
    const size_t V = ref_.vocab();
    StepInput in;
    for (int i = 0; i < kPrompts; ++i) {
      SeqStep s;
      s.seq_id = i;
      s.tokens = ref_.prompt[i];
      s.first = true;
      s.want_logits = true;
      in.seqs.push_back(s);
    }
    auto out = ex->step(in);
    ASSERT_TRUE(out.ok()) << out.status();
    std::vector<std::vector<int32_t>> generated(kPrompts);
    for (int i = 0; i < kPrompts; ++i) {
      EXPECT_LT(rel_err(out->results[i].logits, ref_.prefill_logits[i].data(), ref_.prefill_logits[i].size()),
                kTolerance)
          << "prompt " << i;
      generated[i].push_back(out->results[i].token);
    }
    for (int k = 1; k < kGreedy; ++k) {
      StepInput step;
      for (int i = 0; i < kPrompts; ++i) {
        SeqStep s;
        s.seq_id = i;
        s.tokens = {generated[i].back()};
        s.want_logits = true;
        step.seqs.push_back(s);
      }
      auto o = ex->step(step);
      ASSERT_TRUE(o.ok()) << o.status();
      for (int i = 0; i < kPrompts; ++i) {
        EXPECT_LT(rel_err(o->results[i].logits, ref_.greedy_logits[i].data() + k * V, V), kTolerance)
            << "prompt " << i << " step " << k;
        generated[i].push_back(o->results[i].token);
      }
    }
    for (int i = 0; i < kPrompts; ++i) EXPECT_EQ(generated[i], ref_.greedy[i]) << "prompt " << i;
  }
}

TEST_P(ModelParity, ChunkedPrefillMixedWithDecodeMatches) {
  if (cfg_.rope.type == "dynamic")
    GTEST_SKIP() << "dynamic NTK tables follow the length at each forward, so chunk boundaries change the result "
                    "(in transformers too); the reference is a single prefill";
  auto ex = make_executor(cpu_options(dir_));
  ASSERT_TRUE(ex);
  // Sequence A (prompt 1) decodes while sequence B (prompt 2, 33 tokens) is prefilled in chunks of 10.
  SeqStep a;
  a.seq_id = 1;
  a.tokens = ref_.prompt[1];
  a.first = true;
  auto out = ex->step({{a}, {}});
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<int32_t> a_tokens = {out->results[0].token};
  const std::vector<int32_t>& pb = ref_.prompt[2];
  std::vector<float> b_logits;
  int32_t b_token = -1;
  for (size_t begin = 0; begin < pb.size(); begin += 10) {
    const size_t end = std::min(pb.size(), begin + 10);
    SeqStep b;
    b.seq_id = 2;
    b.tokens.assign(pb.begin() + begin, pb.begin() + end);
    b.first = begin == 0;
    b.sample = end == pb.size();
    b.want_logits = true;
    SeqStep ad;
    ad.seq_id = 1;
    ad.tokens = {a_tokens.back()};
    auto o = ex->step({{ad, b}, {}});
    ASSERT_TRUE(o.ok()) << o.status();
    a_tokens.push_back(o->results[0].token);
    b_logits.insert(b_logits.end(), o->results[1].logits.begin(), o->results[1].logits.end());
    b_token = o->results[1].token;
  }
  EXPECT_LT(rel_err(b_logits, ref_.prefill_logits[2].data(), ref_.prefill_logits[2].size()), kTolerance);
  EXPECT_EQ(b_token, ref_.greedy[2][0]);
  EXPECT_EQ(a_tokens, std::vector<int32_t>(ref_.greedy[1].begin(), ref_.greedy[1].begin() + a_tokens.size()));
}

// ---------------------------------------------------------------------------------------------------------------
// The same weights stored other ways: fp32 / fp16 / bf16, one file or shards with model.safetensors.index.json.

struct Layout {
  std::string name;
  std::vector<DType> shard_dtypes;  // one entry = a single model.safetensors; more = that many shards
  bool base_model_names = false;    // names without "model." / "transformer." (saved from the base model)
};

std::string stored_name(const std::string& name, bool base_model_names) {
  if (!base_model_names) return name;
  for (const std::string prefix : {"model.", "transformer."})
    if (name.rfind(prefix, 0) == 0) return name.substr(prefix.size());
  return name;
}

// A copy of fixture `src` under `dst` with its weights converted and split per `layout` (tensors dealt to the
// shards round-robin in name order). The values survive: bf16 → fp32 is exact and the fixtures' bf16 values are
// fp16-representable to within fp16's subnormal step.
void write_layout(const std::string& src, const std::string& dst, const Layout& layout) {
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const char* f : {"config.json", "generation_config.json"})
    if (fs::exists(src + "/" + f)) fs::copy_file(src + "/" + f, dst + "/" + f);
  auto in = SafetensorsFile::Open(src + "/model.safetensors");
  ASSERT_TRUE(in.ok()) << in.status();
  const size_t n_shards = layout.shard_dtypes.size();
  std::vector<std::vector<std::vector<uint8_t>>> bytes(n_shards);
  std::vector<std::vector<TensorToWrite>> shards(n_shards);
  std::vector<const TensorInfo*> tensors;
  for (const TensorInfo& t : (*in)->tensors()) tensors.push_back(&t);
  std::sort(tensors.begin(), tensors.end(), [](auto* a, auto* b) { return a->name < b->name; });
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total = 0;
  auto shard_file = [&](size_t s) {
    return n_shards == 1 ? std::string("model.safetensors")
                         : absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, n_shards);
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = *tensors[i];
    const size_t s = i % n_shards;
    const DType dt = layout.shard_dtypes[s];
    std::vector<float> f32(static_cast<size_t>(t.numel()));
    convert_to_f32(t.dtype, t.data, f32.data(), f32.size());
    std::vector<uint8_t> out(f32.size() * dtype_size(dt));
    for (size_t k = 0; k < f32.size(); ++k) {
      if (dt == DType::kF32) {
        std::memcpy(out.data() + 4 * k, &f32[k], 4);
      } else {
        const uint16_t h = dt == DType::kF16 ? f32_to_f16(f32[k]) : f32_to_bf16(f32[k]);
        std::memcpy(out.data() + 2 * k, &h, 2);
      }
    }
    bytes[s].push_back(std::move(out));
    total += bytes[s].back().size();
    weight_map[stored_name(t.name, layout.base_model_names)] = shard_file(s);
  }
  for (size_t s = 0; s < n_shards; ++s) {
    size_t k = 0;
    for (size_t i = s; i < tensors.size(); i += n_shards, ++k)
      shards[s].push_back({stored_name(tensors[i]->name, layout.base_model_names), layout.shard_dtypes[s],
                           tensors[i]->shape, bytes[s][k]});
    ASSERT_TRUE(write_safetensors(dst + "/" + shard_file(s), shards[s], {{"format", "pt"}}).ok());
  }
  if (n_shards > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    std::ofstream(dst + "/model.safetensors.index.json") << index.dump(2);
  }
}

class WeightLayouts : public ModelParity {};

TEST_P(WeightLayouts, Fp32Fp16Bf16SingleAndShardedGiveTheReference) {
  const std::vector<Layout> layouts = {
      {"fp32", {DType::kF32}},
      {"fp16", {DType::kF16}},
      {"bf16_sharded", {DType::kBF16, DType::kBF16, DType::kBF16}},
      {"fp16_sharded", {DType::kF16, DType::kF16}},
      {"mixed_sharded", {DType::kF32, DType::kF16, DType::kBF16}},
      // facebook/opt-350m, opt-6.7b..30b and bigscience/bloom* name tensors as the base model does.
      {"base_model_names", {DType::kBF16}, true},
      {"base_model_names_sharded", {DType::kF16, DType::kBF16}, true},
  };
  const std::map<std::string, std::string> stored = {
      {"fp32", "float32"}, {"fp16", "float16"}, {"bf16_sharded", "bfloat16"}, {"fp16_sharded", "float16"}};
  for (const Layout& layout : layouts) {
    const std::string dst = ::testing::TempDir() + "/zi_layout_" + GetParam() + "_" + layout.name;
    write_layout(dir_, dst, layout);
    if (HasFatalFailure()) return;
    EXPECT_EQ(fs::exists(dst + "/model.safetensors.index.json"), layout.shard_dtypes.size() > 1);
    auto ex = make_executor(cpu_options(dst));
    ASSERT_TRUE(ex) << layout.name;
    if (stored.count(layout.name)) {
      EXPECT_EQ(ex->summary().dtype, stored.at(layout.name)) << layout.name;
    }
    // The longest prompt: prefill, every decode step and the greedy tokens.
    expect_prompt_matches(*ex, ref_, 2, GetParam() + " " + layout.name);
    ex.reset();
    fs::remove_all(dst);
  }
}

// Layers streamed from the NVMe-tier store (packed from Architecture::layer_weights) give the same results as
// resident weights: every decoder tensor is listed there, globals (OPT's project_in/out, BLOOM's embedding norm)
// in global_weights.
TEST_P(WeightLayouts, NvmeTierStreamingMatches) {
  EngineOptions o = cpu_options(dir_);
  o.offload_tier = OffloadTier::kNvme;
  o.offload_dir = ::testing::TempDir() + "/zi_store_" + GetParam();
  fs::remove_all(o.offload_dir);
  auto ex = make_executor(o);
  ASSERT_TRUE(ex);
  expect_prompt_matches(*ex, ref_, 2, GetParam() + " nvme tier");
  ex.reset();
  fs::remove_all(o.offload_dir);
}

// The RoPE-scaling fixtures really exercise their scaling: the same weights read with plain RoPE miss the
// reference for the 33-token prompt (llama_dynamic: past its max_position_embeddings of 16), so a forward that
// ignored the scaling could not pass the parity tests above.
TEST(RopeScalingFixtures, PlainRopeMissesTheirReference) {
  for (const char* name : {"llama3", "llama_linear", "llama_dynamic"}) {
    const std::string src = models_dir() + "/" + name;
    const std::string dst = ::testing::TempDir() + "/zi_plain_rope_" + name;
    fs::remove_all(dst);
    fs::create_directories(dst);
    fs::copy_file(src + "/model.safetensors", dst + "/model.safetensors");
    nlohmann::json cfg = nlohmann::json::parse(std::ifstream(src + "/config.json"));
    ASSERT_TRUE(cfg.contains("rope_parameters")) << name;
    cfg["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", cfg["rope_parameters"]["rope_theta"]}};
    std::ofstream(dst + "/config.json") << cfg.dump();
    const Reference ref = load_reference(src);
    auto ex = make_executor(cpu_options(dst));
    ASSERT_TRUE(ex);
    SeqStep s;
    s.seq_id = 1;
    s.first = true;
    s.tokens = ref.prompt[2];
    s.want_logits = true;
    auto out = ex->step({{s}, {}});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_GT(rel_err(out->results[0].logits, ref.prefill_logits[2].data(), ref.prefill_logits[2].size()), 1e-3)
        << name;
    ex.reset();
    fs::remove_all(dst);
  }
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelParity, ::testing::ValuesIn(fixture_names()), test_name);
INSTANTIATE_TEST_SUITE_P(Fixtures, WeightLayouts, ::testing::ValuesIn(fixture_names()), test_name);

}  // namespace
}  // namespace zi
