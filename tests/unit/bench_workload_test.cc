// `zeroinfer bench --workload` on a CPU fixture model: every request generates its tokens, the warm-up leaves the
// executor empty, a burst submitted at once forms one static batch, and the step log records every step.
#include "server/workload/replay.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/unit/model_fixture_util.h"

namespace zi::server {
namespace {

std::unique_ptr<Executor> fixture_executor() {
  EngineOptions o = testing_fixtures::cpu_options(testing_fixtures::models_dir() + "/llama_mha", 2);
  o.max_batch_size = 4;
  o.kv_block_size = 4;
  return testing_fixtures::make_executor(o);
}

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(BenchWorkload, StaticBurstRunsAsOneBatchAndEveryStepIsLogged) {
  auto ex = fixture_executor();
  ASSERT_TRUE(ex);
  const std::vector<WorkloadRequest> reqs = {{5, 3}, {9, 6}, {3, 2}, {7, 4}};
  WorkloadOptions o;
  o.policy = "static";
  o.max_batch_size = 4;
  o.max_num_batched_tokens = 64;
  o.step_log = ::testing::TempDir() + "steps-" + std::to_string(::getpid()) + ".jsonl";
  auto j = run_workload(*ex, reqs, o);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["generated_tokens"].get<uint64_t>(), 3u + 6 + 2 + 4);
  EXPECT_EQ((*j)["prompt_tokens"].get<uint64_t>(), 5u + 9 + 3 + 7);
  EXPECT_GT((*j)["warmup_seconds"].get<double>(), 0.0);
  const auto steps = read_lines(o.step_log);
  // All four prompts in the first step (the warm-up's sequences are gone: nothing else is in it), then decodes
  // until the longest output (6 tokens: 5 decode steps after the prefill), nothing joining.
  ASSERT_EQ(steps.size(), 6u);
  EXPECT_EQ(steps[0]["prefill_tokens"].get<uint64_t>(), 24u);
  EXPECT_EQ(steps[0]["decode_tokens"].get<uint64_t>(), 0u);
  for (size_t k = 1; k < steps.size(); ++k) EXPECT_EQ(steps[k]["prefill_tokens"].get<uint64_t>(), 0u) << k;
  EXPECT_EQ((*j)["prefill_steps"].get<size_t>(), 1u);
  EXPECT_EQ((*j)["decode_steps"].get<size_t>(), 5u);
  std::remove(o.step_log.c_str());
}

TEST(BenchWorkload, ContinuousStartsEachRequestAsSlotsFree) {
  auto ex = fixture_executor();
  ASSERT_TRUE(ex);
  // Six requests, four slots: the last two can only start once a short one (2 tokens) has left, while the long ones
  // (8 tokens) are still decoding. (How the first four arrive depends on thread timing: continuous batching starts
  // whatever has arrived at once.)
  const std::vector<WorkloadRequest> reqs = {{4, 2}, {4, 8}, {4, 2}, {4, 8}, {6, 3}, {6, 3}};
  WorkloadOptions o;
  o.max_batch_size = 4;
  o.max_num_batched_tokens = 64;
  o.step_log = ::testing::TempDir() + "steps-cont-" + std::to_string(::getpid()) + ".jsonl";
  auto j = run_workload(*ex, reqs, o);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["generated_tokens"].get<uint64_t>(), 2u + 8 + 2 + 8 + 3 + 3);
  const auto steps = read_lines(o.step_log);
  uint64_t prompt = 0, decoded = 0;
  bool joined_mid_batch = false;
  for (const auto& st : steps) {
    prompt += st["prefill_tokens"].get<uint64_t>();
    decoded += st["decode_tokens"].get<uint64_t>();
    joined_mid_batch = joined_mid_batch || (st["prefill_tokens"].get<uint64_t>() > 0 && st["decode_tokens"].get<uint64_t>() > 0);
    EXPECT_LE(st["decode_tokens"].get<uint64_t>(), 4u);  // never more sequences than slots
  }
  EXPECT_EQ(prompt, 4u * 4 + 2 * 6);
  EXPECT_EQ(decoded + reqs.size(), 2u + 8 + 2 + 8 + 3 + 3);  // each request's first token comes from its prefill
  EXPECT_TRUE(joined_mid_batch) << "a prompt was prefilled beside running decodes";
  EXPECT_GE((*j)["prefill_steps"].get<size_t>(), 2u);
  std::remove(o.step_log.c_str());
}

TEST(BenchWorkload, RefusesARequestLongerThanTheContextNamingIt) {
  auto ex = fixture_executor();
  ASSERT_TRUE(ex);
  WorkloadOptions o;
  o.warmup = false;
  auto j = run_workload(*ex, {{8, 2}, {60, 10}}, o);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("workload request 2"), std::string::npos) << j.status();
  EXPECT_NE(j.status().message().find("max_context 64"), std::string::npos) << j.status();
}

}  // namespace
}  // namespace zi::server
