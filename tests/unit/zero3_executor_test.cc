// ZeRO-3 over CPU ranks in one process (one thread per rank, the shared-memory communicator between them): every
// layer is split into N partitions and all-gathered each step. Greedy tokens must equal one rank's on every model
// family; a rank with no sequences steps with an empty micro-batch and the others keep running; the summary says
// where the layers live.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/comm/communicator.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"
#include "tests/common/greedy_steps.h"

namespace zi {
namespace {

const std::vector<std::vector<int32_t>> kPrompts = {{1, 15, 27, 99, 4}, {1, 8, 200, 31}, {1, 77, 5}};
constexpr int kNewTokens = 6;

std::string g_offload_dir;  // set: the NVMe tier, every layer read from this store (one file per rank)

EngineOptions options_for(const std::string& model, int rank, int world, const std::string& comm_id) {
  EngineOptions o;
  if (!g_offload_dir.empty()) {
    o.offload_tier = OffloadTier::kNvme;
    o.offload_dir = g_offload_dir + "/" + std::to_string(world);
  }
  o.model_dir = std::string(ZI_TEST_DATA) + "/models/" + model;
  o.device = Device::kCpu;
  o.max_batch_size = 4;
  o.cpu_threads = 1;
  o.rank = static_cast<uint32_t>(rank);
  o.world_size = static_cast<uint32_t>(world);
  o.comm_id = comm_id;
  return o;
}

StatusOr<std::vector<std::vector<int32_t>>> drive(Executor& ex, const std::vector<int>& seqs) {
  return testing::greedy_steps(ex, kPrompts, seqs, kNewTokens);
}

// Runs `world` ranks, rank r continuing the prompts in assignment[r]; returns every prompt's tokens.
std::vector<std::vector<int32_t>> run_ranks(const std::string& model, int world,
                                            const std::vector<std::vector<int>>& assignment) {
  std::string id;
  if (world > 1) {
    auto made = create_shm_comm_id(world);
    EXPECT_TRUE(made.ok()) << made.status();
    id = *made;
  }
  std::vector<std::vector<int32_t>> tokens(kPrompts.size());
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      auto ex = create_executor(options_for(model, r, world, id));
      if (!ex.ok()) {
        errors[r] = std::string(ex.status().message());
        return;
      }
      if (r == 0 && world > 1) {
        const ModelSummary& s = (*ex)->summary();
        EXPECT_EQ(s.num_ranks, static_cast<uint32_t>(world));
        EXPECT_THAT(s.layer_tiers, ::testing::Each(std::string(g_offload_dir.empty() ? "cpu" : "nvme")));
        EXPECT_GT(s.streamed_bytes_per_step, 0u);
      }
      auto out = drive(**ex, assignment[r]);
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

class Zero3Cpu : public ::testing::TestWithParam<std::string> {};

TEST_P(Zero3Cpu, TwoAndThreeRanksGiveOneRanksGreedyTokens) {
  const std::string model = GetParam();
  const auto reference = run_ranks(model, 1, {{0, 1, 2}});
  for (const auto& seq : reference) ASSERT_EQ(seq.size(), static_cast<size_t>(kNewTokens));
  // Two ranks: rank 0 holds two sequences, rank 1 one.
  EXPECT_EQ(run_ranks(model, 2, {{0, 2}, {1}}), reference) << model << ", 2 ranks";
  // Three ranks, one of them idle for the whole run: it must keep stepping so the others can gather.
  const auto three = run_ranks(model, 3, {{1}, {}, {0, 2}});
  EXPECT_EQ(three, reference) << model << ", 3 ranks with an idle one";
}

// The NVMe tier over two ranks: rank 0 writes the store (one file per rank) while rank 1 waits for it, then each
// reads its own partitions and gathers the other's.
TEST(Zero3CpuNvme, TwoRanksReadTheirOwnStoreFiles) {
  g_offload_dir = ::testing::TempDir() + "zero3-nvme-" + std::to_string(getpid());
  const auto reference = run_ranks("llama_mha", 1, {{0, 1, 2}});
  EXPECT_EQ(run_ranks("llama_mha", 2, {{0}, {1, 2}}), reference);
  EXPECT_TRUE(std::filesystem::exists(g_offload_dir + "/2/rank-0-of-2.bin"));
  EXPECT_TRUE(std::filesystem::exists(g_offload_dir + "/2/rank-1-of-2.bin"));
  std::filesystem::remove_all(g_offload_dir);
  g_offload_dir.clear();
}

// A CPU tier larger than the host's available memory is refused before anything loads, naming both sizes and the
// settings to change (Llama-2-70B's shape: 140 GB per rank of two in the CPU backend's fp32).
TEST(Zero3CpuErrors, ACpuTierLargerThanHostMemoryIsRefusedUpFront) {
  if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long kb = 0;
    while (std::fgets(line, sizeof(line), f) && std::sscanf(line, "MemAvailable: %lu kB", &kb) != 1) {
    }
    std::fclose(f);
    if (kb > (120ul << 20)) GTEST_SKIP() << "this host could hold the partitions (" << (kb >> 20) << " GiB available)";
  }
  auto id = create_shm_comm_id(2);
  ASSERT_TRUE(id.ok());
  std::vector<Status> results(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      EngineOptions o = options_for("llama_mha", r, 2, *id);
      o.model_dir = std::string(ZI_SOURCE_DIR) + "/config/examples/models/llama-2-70b";
      o.dummy_weights = true;
      o.max_context = 64;
      auto ex = create_executor(o);
      results[r] = ex.status();
    });
  for (auto& t : threads) t.join();
  for (const Status& s : results) {
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_THAT(s.message(), ::testing::HasSubstr("the CPU tier needs"));
    EXPECT_THAT(s.message(), ::testing::HasSubstr("is available"));
    EXPECT_THAT(s.message(), ::testing::HasSubstr("--disk-offload"));
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Zero3Cpu, ::testing::Values("llama_mha", "mistral", "opt", "bloom"));

// A step this rank refuses (an unknown sequence) still takes part in the group's collectives: the other rank's
// step completes, and the group keeps working afterwards.
TEST(Zero3CpuErrors, ARefusedStepStillJoinsTheCollectives) {
  auto id = create_shm_comm_id(2);
  ASSERT_TRUE(id.ok());
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      auto ex = create_executor(options_for("llama_mha", r, 2, *id));
      ASSERT_TRUE(ex.ok()) << ex.status();
      StepInput bad;
      SeqStep s;
      s.seq_id = 7;
      s.tokens = {1, 2, 3};
      s.first = r == 0;  // rank 1 "continues" a sequence it never started: refused
      bad.seqs.push_back(s);
      auto out = (*ex)->step(bad);
      if (r == 1) {
        EXPECT_FALSE(out.ok());
        EXPECT_THAT(out.status().message(), ::testing::HasSubstr("unknown"));
      } else {
        EXPECT_TRUE(out.ok()) << out.status();
      }
      auto again = drive(**ex, {r});
      if (!again.ok()) errors[r] = std::string(again.status().message());
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

}  // namespace
}  // namespace zi
