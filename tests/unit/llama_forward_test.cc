// The Llama-family forward against transformers' outputs (tests/data/models/*/reference.safetensors): prefill
// logits within 1e-4 relative (max |Δ| / max |ref|) and the 12 greedy tokens of each prompt, alone, batched,
// and with the prompt split into chunks.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_format.h"
#include "engine/io/safetensors.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"

namespace zi {
namespace {

constexpr double kTolerance = 1e-4;
constexpr int kPrompts = 3;
constexpr int kGreedy = 12;

struct Reference {
  std::vector<int32_t> prompt[kPrompts];
  std::vector<int32_t> greedy[kPrompts];
  std::vector<float> prefill_logits[kPrompts];  // [L, V]
  std::vector<float> greedy_logits[kPrompts];   // [12, V]
};

Reference load_reference(const std::string& dir) {
  Reference ref;
  auto f = SafetensorsFile::Open(dir + "/reference.safetensors");
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return ref;
  auto ints = [&](const std::string& name) {
    const TensorInfo* t = (*f)->find(name);
    EXPECT_TRUE(t && t->dtype == DType::kI32) << name;
    std::vector<int32_t> v(t ? t->numel() : 0);
    if (t) std::memcpy(v.data(), t->data, t->nbytes);
    return v;
  };
  auto floats = [&](const std::string& name) {
    const TensorInfo* t = (*f)->find(name);
    EXPECT_TRUE(t && t->dtype == DType::kF32) << name;
    std::vector<float> v(t ? t->numel() : 0);
    if (t) std::memcpy(v.data(), t->data, t->nbytes);
    return v;
  };
  for (int i = 0; i < kPrompts; ++i) {
    const std::string s = std::to_string(i);
    ref.prompt[i] = ints("prompt_" + s);
    ref.greedy[i] = ints("greedy_" + s);
    ref.prefill_logits[i] = floats("prefill_logits_" + s);
    ref.greedy_logits[i] = floats("greedy_logits_" + s);
  }
  return ref;
}

double rel_err(const std::vector<float>& got, const float* ref, size_t n) {
  EXPECT_EQ(got.size(), n);
  double max_ref = 0, max_d = 0;
  for (size_t i = 0; i < n && i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(static_cast<double>(ref[i])));
    max_d = std::max(max_d, std::abs(static_cast<double>(got[i]) - ref[i]));
  }
  return max_d / max_ref;
}

std::unique_ptr<Executor> make_executor(const std::string& dir, uint32_t threads = 0) {
  EngineOptions o;
  o.model_dir = dir;
  o.device = Device::kCpu;
  o.max_batch_size = 4;
  o.cpu_threads = threads;
  auto ex = create_executor(o);
  EXPECT_TRUE(ex.ok()) << ex.status();
  return ex.ok() ? std::move(*ex) : nullptr;
}

class LlamaForward : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::string(ZI_TEST_DATA) + "/models/" + GetParam();
    ref_ = load_reference(dir_);
  }
  size_t vocab() const { return ref_.greedy_logits[0].size() / kGreedy; }
  std::string dir_;
  Reference ref_;
};

TEST_P(LlamaForward, EachPromptAloneMatchesTransformers) {
  auto ex = make_executor(dir_);
  ASSERT_TRUE(ex);
  const size_t V = vocab();
  EXPECT_EQ(ex->summary().vocab_size, V);
  for (int i = 0; i < kPrompts; ++i) {
    SeqStep first;
    first.seq_id = 100 + i;
    first.tokens = ref_.prompt[i];
    first.first = true;
    first.want_logits = true;
    auto out = ex->step({{first}, {}});
    ASSERT_TRUE(out.ok()) << out.status();
    const SeqResult& r = out->results[0];
    const double err = rel_err(r.logits, ref_.prefill_logits[i].data(), ref_.prefill_logits[i].size());
    EXPECT_LT(err, kTolerance) << GetParam() << " prompt " << i << " prefill";
    RecordProperty("prefill_rel_err_" + std::to_string(i), absl::StrFormat("%.3g", err));
    std::vector<int32_t> generated = {r.token};
    for (int k = 1; k < kGreedy; ++k) {
      SeqStep next;
      next.seq_id = 100 + i;
      next.tokens = {generated.back()};
      next.want_logits = true;
      auto o = ex->step({{next}, {}});
      ASSERT_TRUE(o.ok()) << o.status();
      EXPECT_LT(rel_err(o->results[0].logits, ref_.greedy_logits[i].data() + k * V, V), kTolerance)
          << GetParam() << " prompt " << i << " step " << k;
      generated.push_back(o->results[0].token);
    }
    EXPECT_EQ(generated, ref_.greedy[i]) << GetParam() << " prompt " << i;
    ASSERT_TRUE(ex->step({{}, {100ull + i}}).ok());
  }
}

TEST_P(LlamaForward, BatchedPromptsAndDecodeMatchAlone) {
  // Single-threaded too: results must not depend on the thread count.
  for (uint32_t threads : {1u, 0u}) {
    auto ex = make_executor(dir_, threads);
    ASSERT_TRUE(ex);
    const size_t V = vocab();
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
                kTolerance);
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
      EXPECT_EQ(o->stats.decode_tokens, 3u);
      for (int i = 0; i < kPrompts; ++i) {
        EXPECT_LT(rel_err(o->results[i].logits, ref_.greedy_logits[i].data() + k * V, V), kTolerance);
        generated[i].push_back(o->results[i].token);
      }
    }
    for (int i = 0; i < kPrompts; ++i) EXPECT_EQ(generated[i], ref_.greedy[i]) << "prompt " << i;
  }
}

TEST_P(LlamaForward, ChunkedPrefillMixedWithDecodeMatches) {
  auto ex = make_executor(dir_);
  ASSERT_TRUE(ex);
  const size_t V = vocab();
  // Sequence A (prompt 1) is decoding while sequence B (prompt 2, 33 tokens) is prefilled in chunks of 10.
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
    EXPECT_EQ(o->results[1].token == -1, !b.sample);
    b_token = o->results[1].token;
  }
  EXPECT_LT(rel_err(b_logits, ref_.prefill_logits[2].data(), ref_.prefill_logits[2].size()), kTolerance);
  EXPECT_EQ(b_token, ref_.greedy[2][0]);
  EXPECT_EQ(a_tokens, std::vector<int32_t>(ref_.greedy[1].begin(), ref_.greedy[1].begin() + a_tokens.size()));
  (void)V;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaForward, ::testing::Values("llama_mha", "mistral"));

}  // namespace
}  // namespace zi
