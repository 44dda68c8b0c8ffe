// The CPU executor's contract beyond the forward: per-sequence state and RNG (tokens independent of batch mates),
// slot accounting and release, errors that fail the step and name the limit, dummy weights, summary.
#include <chrono>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"

namespace zi {
namespace {

using ::testing::HasSubstr;

const std::string kLlama = std::string(ZI_TEST_DATA) + "/models/llama_mha";

std::unique_ptr<Executor> make(EngineOptions o) {
  auto ex = create_executor(o);
  EXPECT_TRUE(ex.ok()) << ex.status();
  return ex.ok() ? std::move(*ex) : nullptr;
}

EngineOptions llama_options() {
  EngineOptions o;
  o.model_dir = kLlama;
  o.device = Device::kCpu;
  o.max_batch_size = 3;
  return o;
}

SeqStep first_step(uint64_t id, std::vector<int32_t> tokens, SamplingParams sp = {}) {
  SeqStep s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.first = true;
  s.sampling = sp;
  return s;
}

SeqStep next_step(uint64_t id, int32_t token) {
  SeqStep s;
  s.seq_id = id;
  s.tokens = {token};
  return s;
}

// Generates n tokens for `id` while the other sequences in `mates` step along.
std::vector<int32_t> generate(Executor& ex, uint64_t id, std::vector<int32_t> prompt, SamplingParams sp, int n,
                              const std::vector<uint64_t>& mates = {}) {
  StepInput in;
  in.seqs.push_back(first_step(id, prompt, sp));
  SamplingParams other;
  other.temperature = 1.3f;
  other.seed = 999;
  for (uint64_t m : mates) in.seqs.push_back(first_step(m, {5, 6, 7, static_cast<int32_t>(m)}, other));
  std::vector<int32_t> out;
  for (int k = 0; k < n; ++k) {
    auto r = ex.step(in);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return out;
    out.push_back(r->results[0].token);
    StepInput next;
    for (const SeqResult& res : r->results) next.seqs.push_back(next_step(res.seq_id, res.token));
    in = next;
  }
  StepInput release;
  release.release.assign(mates.begin(), mates.end());
  release.release.emplace_back(id);
  EXPECT_TRUE(ex.step(release).ok());
  return out;
}

TEST(Executor, SummaryDescribesTheModel) {
  auto ex = make(llama_options());
  ASSERT_TRUE(ex);
  const ModelSummary& s = ex->summary();
  EXPECT_EQ(s.name, "llama_mha");
  EXPECT_EQ(s.architecture, "LlamaForCausalLM");
  EXPECT_EQ(s.vocab_size, 2048u);
  EXPECT_EQ(s.max_context, 256u);  // max_position_embeddings
  EXPECT_EQ(s.dtype, "bfloat16");
  EXPECT_EQ(s.device, "cpu");
  EXPECT_EQ(s.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(s.bos_token_id, 1);
  // embed + head (2 × 2048 × 64) + norm + 3 layers × (4 × 64² + 3 × 64 × 176 + 2 × 64)
  EXPECT_EQ(s.parameters, 2u * 2048 * 64 + 64 + 3u * (4 * 64 * 64 + 3 * 64 * 176 + 2 * 64));
}

TEST(Executor, SeededSamplingDoesNotDependOnBatchMates) {
  auto ex = make(llama_options());
  ASSERT_TRUE(ex);
  SamplingParams sp;
  sp.temperature = 0.9f;
  sp.top_k = 50;
  sp.top_p = 0.95f;
  sp.seed = 1234;
  sp.repetition_penalty = 1.2f;
  const std::vector<int32_t> prompt = {1, 400, 842, 17};
  auto alone = generate(*ex, 1, prompt, sp, 10);
  auto batched = generate(*ex, 2, prompt, sp, 10, {3, 4});
  EXPECT_EQ(alone, batched);
  auto again = generate(*ex, 5, prompt, sp, 10, {6});
  EXPECT_EQ(alone, again);
  sp.seed = 1235;
  EXPECT_NE(generate(*ex, 7, prompt, sp, 10), alone);
}

TEST(Executor, LogprobsWhenAsked) {
  auto ex = make(llama_options());
  ASSERT_TRUE(ex);
  SamplingParams sp;
  sp.return_logprobs = true;
  SeqStep s = first_step(1, {1, 2, 3}, sp);
  s.want_logits = true;
  auto r = ex->step({{s}, {}});
  ASSERT_TRUE(r.ok());
  const auto& res = r->results[0];
  ASSERT_EQ(res.logits.size(), 3u * 2048);
  EXPECT_LT(res.logprob, 0.0f);
  // Greedy: the chosen token is the argmax of the last row and the logprob its log-softmax.
  const float* last = res.logits.data() + 2 * 2048;
  EXPECT_EQ(res.token, std::max_element(last, last + 2048) - last);
  double z = 0;
  for (int i = 0; i < 2048; ++i) z += std::exp(double(last[i]) - last[res.token]);
  EXPECT_NEAR(res.logprob, -std::log(z), 1e-5);
}

TEST(Executor, ErrorsFailTheStepAndNameTheLimit) {
  EngineOptions o = llama_options();
  o.max_context = 8;
  auto ex = make(o);
  ASSERT_TRUE(ex);
  EXPECT_EQ(ex->summary().max_context, 8u);
  auto expect_err = [&](const StepInput& in, const std::string& fragment) {
    auto r = ex->step(in);
    ASSERT_FALSE(r.ok()) << "expected: " << fragment;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(fragment));
  };
  expect_err({{first_step(1, {1, 2, 3, 4, 5, 6, 7, 8, 9})}, {}}, "9 tokens, over max_context 8");
  expect_err({{first_step(1, {1, 2048})}, {}}, "token id 2048 is outside the vocabulary (vocab_size 2048)");
  expect_err({{first_step(1, {-1})}, {}}, "token id -1");
  expect_err({{next_step(9, 1)}, {}}, "sequence 9 is unknown");
  expect_err({{first_step(1, {})}, {}}, "no tokens");
  expect_err({{first_step(1, {1}), first_step(1, {2})}, {}}, "appears twice");
  SamplingParams bad;
  bad.top_p = 0;
  expect_err({{first_step(1, {1}, bad)}, {}}, "top_p");
  // One rank in process: a step or a release placed elsewhere is refused, naming it.
  SeqStep elsewhere = first_step(1, {1});
  elsewhere.rank = 1;
  expect_err({{elsewhere}, {}}, "sequence 1: SeqStep.rank is 1; this executor runs one rank (rank 0)");
  expect_err({{}, {SeqRelease(5, 2)}}, "release of sequence 5 names rank 2; this executor runs one rank (rank 0)");
  // A failed step leaves nothing behind: sequence 1 can start now.
  auto ok = ex->step({{first_step(1, {1, 2, 3, 4, 5, 6, 7})}, {}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  expect_err({{first_step(1, {1})}, {}}, "sequence 1 already exists");
  // 7 cached + 1 = 8 fits; one more does not.
  ASSERT_TRUE(ex->step({{next_step(1, ok->results[0].token)}, {}}).ok());
  expect_err({{next_step(1, 5)}, {}}, "9 tokens, over max_context 8");
}

TEST(Executor, SlotsAreLimitedAndReleased) {
  auto ex = make(llama_options());  // 3 slots
  ASSERT_TRUE(ex);
  ASSERT_TRUE(ex->step({{first_step(1, {1}), first_step(2, {2}), first_step(3, {3})}, {}}).ok());
  auto r = ex->step({{first_step(4, {4})}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("KV cache slots"));
  // Releasing one in the same step makes room; a released id may be reused as a new sequence.
  ASSERT_TRUE(ex->step({{first_step(4, {4})}, {2}}).ok());
  ASSERT_TRUE(ex->step({{first_step(2, {2})}, {1}}).ok());
  EXPECT_FALSE(ex->step({{next_step(1, 5)}, {}}).ok());
  // Releasing unknown or already released ids is harmless.
  EXPECT_TRUE(ex->step({{}, {1, 77}}).ok());
}

TEST(Executor, ReusedSlotDoesNotLeakOldContext) {
  auto ex = make(llama_options());
  ASSERT_TRUE(ex);
  SeqStep a = first_step(1, {10, 20, 30, 40});
  a.want_logits = true;
  auto fresh = ex->step({{a}, {}});
  ASSERT_TRUE(fresh.ok());
  // Another sequence fills the slot with a longer history, is released, and the first prompt runs again.
  ASSERT_TRUE(ex->step({{first_step(2, {5, 6, 7, 8, 9, 11, 12, 13})}, {1}}).ok());
  SeqStep b = first_step(3, {10, 20, 30, 40});
  b.want_logits = true;
  auto again = ex->step({{b}, {2}});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->results[0].logits, fresh->results[0].logits);
}

TEST(Executor, DummyWeightsNeedOnlyConfigAndAreSeeded) {
  EngineOptions o = llama_options();
  o.dummy_weights = true;
  o.dummy_seed = 5;
  auto a = make(o), b = make(o);
  o.dummy_seed = 6;
  auto c = make(o);
  ASSERT_TRUE(a && b && c);
  SeqStep s = first_step(1, {1, 2, 3});
  s.want_logits = true;
  auto ra = a->step({{s}, {}}), rb = b->step({{s}, {}}), rc = c->step({{s}, {}});
  ASSERT_TRUE(ra.ok() && rb.ok() && rc.ok());
  EXPECT_EQ(ra->results[0].logits, rb->results[0].logits);
  EXPECT_NE(ra->results[0].logits, rc->results[0].logits);
  EXPECT_EQ(a->summary().dtype, "bfloat16");  // from config.json
}

// One generator for every tier (engine/model/dummy_weights.h): a dummy model computes the same whether its layers
// are resident or read from an NVMe store at every step, dense or 8-bit.
TEST(Executor, DummyWeightsAreTheSameResidentOrStreamed) {
  for (uint32_t bits : {16u, 8u}) {
    EngineOptions o = llama_options();
    o.dummy_weights = true;
    o.dummy_seed = 11;
    o.quant_bits = bits;
    auto resident = make(o);
    o.offload_tier = OffloadTier::kNvme;
    o.offload_dir = ::testing::TempDir() + "/zi_dummy_store_" + std::to_string(bits);
    std::filesystem::remove_all(o.offload_dir);
    auto streamed = make(o);
    ASSERT_TRUE(resident && streamed);
    EXPECT_NE(streamed->summary().layer_tiers.front(), "cpu") << "layer 0 should stream from the store";
    SeqStep s = first_step(1, {1, 2, 3, 4});
    s.want_logits = true;
    auto a = resident->step({{s}, {}}), b = streamed->step({{s}, {}});
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->results[0].logits, b->results[0].logits) << bits << "-bit";
    EXPECT_EQ(a->results[0].token, b->results[0].token);
    std::filesystem::remove_all(o.offload_dir);
  }
}

TEST(Executor, DebugStepDelaySleeps) {
  EngineOptions o = llama_options();
  o.debug_step_delay_ms = 30;
  auto ex = make(o);
  ASSERT_TRUE(ex);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(ex->step({{first_step(1, {1})}, {}}).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(30));
}

TEST(Executor, BadOptionsAreRefused) {
  EngineOptions o = llama_options();
  o.quant_bits = 3;  // 4, 8 and 16 are valid (quantized weights run on the CPU too)
  auto r = create_executor(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("quant_bits must be 4, 8 or 16, got 3"));
  o = llama_options();
  o.model_dir = ::testing::TempDir() + "/zi_exec_gpt2";
  std::filesystem::create_directories(o.model_dir);
  std::ofstream(o.model_dir + "/config.json") << R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 8})";
  r = create_executor(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("GPT2LMHeadModel is not supported yet"));
  o.model_dir = "/nonexistent";
  r = create_executor(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/nonexistent/config.json"));
}

}  // namespace
}  // namespace zi
