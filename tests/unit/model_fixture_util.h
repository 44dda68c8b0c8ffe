// Helpers for tests against the reference fixtures in tests/data/models/<name>/ (made by
// tools/reference/make_fixtures.py): reference.safetensors holds, for prompts i = 0, 1, 2, prompt_i int32 [L],
// prefill_logits_i f32 [L, V], greedy_i int32 [12], greedy_logits_i f32 [12, V].
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/safetensors.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"

namespace zi::testing_fixtures {

inline constexpr int kPrompts = 3;
inline constexpr int kGreedy = 12;
// Prefill and decode logits: max |Δ| / max |ref| (the bar; an fp32 CPU forward is at ~1e-6).
inline constexpr double kTolerance = 1e-4;

inline std::string models_dir() { return std::string(ZI_TEST_DATA) + "/models"; }

// Every folder of tests/data/models with a reference.safetensors, sorted.
inline std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(models_dir()))
    if (e.is_directory() && std::filesystem::exists(e.path() / "reference.safetensors"))
      names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct Reference {
  std::vector<int32_t> prompt[kPrompts];
  std::vector<int32_t> greedy[kPrompts];
  std::vector<float> prefill_logits[kPrompts];  // [L, V]
  std::vector<float> greedy_logits[kPrompts];   // [12, V]
  size_t vocab() const { return greedy_logits[0].size() / kGreedy; }
};

inline Reference load_reference(const std::string& dir) {
  Reference ref;
  auto f = SafetensorsFile::Open(dir + "/reference.safetensors");
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return ref;
  auto read = [&](const std::string& name, DType dtype, auto* out) {
    const TensorInfo* t = (*f)->find(name);
    EXPECT_TRUE(t && t->dtype == dtype) << dir << ": " << name;
    if (!t || t->dtype != dtype) return;
    out->resize(static_cast<size_t>(t->numel()));
    std::memcpy(out->data(), t->data, t->nbytes);
  };
  for (int i = 0; i < kPrompts; ++i) {
    const std::string s = std::to_string(i);
    read("prompt_" + s, DType::kI32, &ref.prompt[i]);
    read("greedy_" + s, DType::kI32, &ref.greedy[i]);
    read("prefill_logits_" + s, DType::kF32, &ref.prefill_logits[i]);
    read("greedy_logits_" + s, DType::kF32, &ref.greedy_logits[i]);
  }
  return ref;
}

// max |got − ref| / max |ref| over n values (1 when the sizes differ).
inline double rel_err(const std::vector<float>& got, const float* ref, size_t n) {
  EXPECT_EQ(got.size(), n);
  if (got.size() != n) return 1.0;
  double max_ref = 0, max_d = 0;
  for (size_t i = 0; i < n; ++i) {
    max_ref = std::max(max_ref, std::abs(static_cast<double>(ref[i])));
    max_d = std::max(max_d, std::abs(static_cast<double>(got[i]) - ref[i]));
  }
  return max_d / max_ref;
}

// CPU executor options for a fixture: a context of 64 covers every prompt + 12 tokens (the fixtures' own defaults
// may be smaller, e.g. llama_dynamic's max_position_embeddings of 16, which it is meant to exceed).
inline EngineOptions cpu_options(const std::string& dir, uint32_t threads = 0) {
  EngineOptions o;
  o.model_dir = dir;
  o.device = Device::kCpu;
  o.max_batch_size = 4;
  o.max_context = 64;
  o.cpu_threads = threads;
  return o;
}

inline std::unique_ptr<Executor> make_executor(const EngineOptions& o) {
  auto ex = create_executor(o);
  EXPECT_TRUE(ex.ok()) << o.model_dir << ": " << ex.status();
  return ex.ok() ? std::move(*ex) : nullptr;
}

// Prompt i alone: prefill then 11 decode steps, every step's logits against the reference (within kTolerance) and
// the 12 greedy tokens. `what` labels failures. Leaves the sequence released.
inline void expect_prompt_matches(Executor& ex, const Reference& ref, int i, const std::string& what) {
  const size_t V = ref.vocab();
  SeqStep first;
  first.seq_id = 100 + i;
  first.tokens = ref.prompt[i];
  first.first = true;
  first.want_logits = true;
  auto out = ex.step({{first}, {}});
  ASSERT_TRUE(out.ok()) << what << ": " << out.status();
  const double err = rel_err(out->results[0].logits, ref.prefill_logits[i].data(), ref.prefill_logits[i].size());
  EXPECT_LT(err, kTolerance) << what << " prompt " << i << " prefill";
  std::vector<int32_t> generated = {out->results[0].token};
  for (int k = 1; k < kGreedy; ++k) {
    SeqStep next;
    next.seq_id = 100 + i;
    next.tokens = {generated.back()};
    next.want_logits = true;
    auto o = ex.step({{next}, {}});
    ASSERT_TRUE(o.ok()) << what << ": " << o.status();
    EXPECT_LT(rel_err(o->results[0].logits, ref.greedy_logits[i].data() + k * V, V), kTolerance)
        << what << " prompt " << i << " step " << k;
    generated.push_back(o->results[0].token);
  }
  EXPECT_EQ(generated, ref.greedy[i]) << what << " prompt " << i;
  ASSERT_TRUE(ex.step({{}, {100ull + i}}).ok());
}

}  // namespace zi::testing_fixtures
