// ZeRO-3 on GPUs: one thread per rank in this process, rank r on GPU r, every layer streamed from pinned CPU
// memory as N partitions that NCCL all-gathers each step. Greedy tokens must equal one GPU's, with an idle rank
// too. Also the single-rank path through the same code (N = 1: no communicator). Needs 2 GPUs for the N = 2 case.
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/comm/communicator.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"
#include "tests/common/greedy_steps.h"
#include "tests/gpu/cuda_test_util.h"

namespace zi {
namespace {

using testing_gpu::device_count;
using testing_gpu::test_data_dir;

const std::vector<std::vector<int32_t>> kPrompts = {{1, 15, 27, 99, 4}, {1, 8, 200, 31}, {1, 77, 5}};
constexpr int kNewTokens = 6;

EngineOptions options_for(const std::string& model, int rank, int world, const std::string& id) {
  EngineOptions o;
  o.model_dir = test_data_dir() + "/models/" + model;
  o.device = Device::kCuda;
  o.max_batch_size = 4;
  o.max_context = 64;
  o.offload_tier = OffloadTier::kCpu;
  o.gpu_weights_budget = 1;  // every layer streams
  o.rank = static_cast<uint32_t>(rank);
  o.world_size = static_cast<uint32_t>(world);
  o.comm_id = id;
  return o;
}

StatusOr<std::vector<std::vector<int32_t>>> drive(Executor& ex, const std::vector<int>& seqs,
                                                  StepStats* streamed) {
  return testing::greedy_steps(ex, kPrompts, seqs, kNewTokens, nullptr, streamed);
}

std::vector<std::vector<int32_t>> run_ranks(const std::string& model, int world,
                                            const std::vector<std::vector<int>>& assignment,
                                            std::vector<StepStats>* stats) {
  std::string id;
  if (world > 1) {
    auto made = create_nccl_comm_id();
    EXPECT_TRUE(made.ok()) << made.status();
    if (!made.ok()) return {};
    id = *made;
  }
  std::vector<std::vector<int32_t>> tokens(kPrompts.size());
  std::vector<std::string> errors(world);
  stats->assign(world, StepStats{});
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      auto ex = create_executor(options_for(model, r, world, id));
      if (!ex.ok()) {
        errors[r] = std::string(ex.status().message());
        return;
      }
      EXPECT_THAT((*ex)->summary().layer_tiers, ::testing::Each(std::string("cpu")));
      auto out = drive(**ex, assignment[r], &(*stats)[r]);
      if (!out.ok()) {
        errors[r] = std::string(out.status().message());
        return;
      }
      for (size_t i = 0; i < assignment[r].size(); ++i) tokens[assignment[r][i]] = (*out)[i];
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << model << " rank " << r << " of " << world;
  return tokens;
}

class Zero3Nccl : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no GPU";
  }
};

// One GPU running each rank's micro-batch on its own: the same kernels on the same shapes as the rank in the
// group, so with exactly gathered weights the tokens are identical (bf16 batch composition aside).
std::vector<std::vector<int32_t>> one_gpu_reference(const std::string& model,
                                                    const std::vector<std::vector<int>>& assignment) {
  std::vector<std::vector<int32_t>> ref(kPrompts.size());
  std::vector<StepStats> stats;
  for (const auto& group : assignment) {
    if (group.empty()) continue;
    auto part = run_ranks(model, 1, {group}, &stats);
    EXPECT_GT(stats[0].fetch_bytes, 0u) << "one GPU: every layer streamed";
    for (int i : group) ref[i] = part[i];
  }
  return ref;
}

TEST_P(Zero3Nccl, TwoGpusGiveOneGpusGreedyTokens) {
  const std::string model = GetParam();
  const std::vector<std::vector<int>> split = {{0, 2}, {1}}, idle = {{0, 1, 2}, {}};
  const auto ref_split = one_gpu_reference(model, split);
  const auto ref_idle = one_gpu_reference(model, idle);
  for (const auto& seq : ref_idle) ASSERT_EQ(seq.size(), static_cast<size_t>(kNewTokens));
  if (device_count() < 2) GTEST_SKIP() << "one GPU: the N = 2 case needs two";
  std::vector<StepStats> stats;
  EXPECT_EQ(run_ranks(model, 2, split, &stats), ref_split) << model;
  for (int r = 0; r < 2; ++r) {
    EXPECT_GT(stats[r].allgather_bytes, 0u) << "rank " << r;
    EXPECT_GT(stats[r].allgather_seconds, 0.0) << "rank " << r;
  }
  // Rank 1 idle throughout: it still gathers every layer, so rank 0 finishes.
  EXPECT_EQ(run_ranks(model, 2, idle, &stats), ref_idle) << model << " with an idle rank";
}

INSTANTIATE_TEST_SUITE_P(Families, Zero3Nccl, ::testing::Values("llama_mha", "opt", "bloom"));

}  // namespace
}  // namespace zi
