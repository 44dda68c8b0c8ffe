// ZeRO-3 across worker processes (`zeroinfer worker`, CPU backend, shared-memory communicator), driven through the
// coordinator's WorkerPool: the group forms from rank 0's id, data-parallel steps give one rank's greedy tokens,
// an idle rank keeps stepping, and a worker killed mid-step fails the step with UNAVAILABLE (no hang) and takes
// the rest of the group down with it.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <future>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/runtime/engine_options.h"
#include "server/worker_pool/worker_pool.h"

namespace zi {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

EngineOptions options(int world, uint32_t delay_ms = 0) {
  EngineOptions eo;
  eo.model_dir = std::string(ZI_TEST_DATA) + "/models/llama_mha";
  eo.device = Device::kCpu;
  eo.max_batch_size = 3;
  eo.world_size = static_cast<uint32_t>(world);
  eo.cpu_threads = 1;
  eo.debug_step_delay_ms = delay_ms;
  return eo;
}

std::unique_ptr<server::WorkerPool> spawn(const EngineOptions& eo) {
  server::WorkerPoolOptions po;
  po.executable = ZI_BINARY;
  po.log_level = "warning";
  po.heartbeat_interval = 100ms;
  po.heartbeat_timeout = 20s;
  auto pool = server::WorkerPool::Spawn(eo, po);
  EXPECT_TRUE(pool.ok()) << pool.status();
  if (!pool.ok()) return nullptr;
  auto ready = (*pool)->wait_ready(120s);
  EXPECT_TRUE(ready.has_value() && ready->ok()) << (ready ? ready->ToString() : "not ready in 120 s");
  return std::move(*pool);
}

// Greedy tokens of three prompts generated together, spread round-robin over the pool's ranks.
std::vector<std::vector<int32_t>> generate(server::WorkerPool& pool, std::vector<StepStats>* rank_stats = nullptr) {
  const std::vector<std::vector<int32_t>> prompts = {{1, 15, 27, 99}, {1, 8, 200}, {1, 300, 5, 6, 7}};
  std::vector<std::vector<int32_t>> out(prompts.size());
  for (int step = 0; step < 5; ++step) {
    StepInput in;
    for (size_t i = 0; i < prompts.size(); ++i) {
      SeqStep s;
      s.seq_id = 10 + i;
      s.rank = static_cast<uint32_t>(i % pool.summary().num_ranks);
      s.first = step == 0;
      s.tokens = step == 0 ? prompts[i] : std::vector<int32_t>{out[i].back()};
      in.seqs.push_back(s);
    }
    auto o = pool.step(in);
    EXPECT_TRUE(o.ok()) << o.status();
    if (!o.ok()) return {};
    for (size_t i = 0; i < prompts.size(); ++i) out[i].push_back(o->results[i].token);
    if (rank_stats) *rank_stats = o->rank_stats;
  }
  return out;
}

TEST(MultiRank, TwoAndThreeWorkerProcessesMatchOne) {
  auto one = spawn(options(1));
  ASSERT_TRUE(one);
  const auto reference = generate(*one);
  one->shutdown(5s);
  ASSERT_EQ(reference.size(), 3u);

  for (int world : {2, 3}) {
    auto pool = spawn(options(world));
    ASSERT_TRUE(pool);
    EXPECT_EQ(pool->summary().num_ranks, static_cast<uint32_t>(world));
    std::vector<StepStats> stats;
    EXPECT_EQ(generate(*pool, &stats), reference) << world << " ranks";
    // Every rank reports its own figures: its partitions gathered from the others every step.
    ASSERT_EQ(stats.size(), static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(stats[r].rank, static_cast<uint32_t>(r));
      EXPECT_GT(stats[r].allgather_bytes, 0u) << "rank " << r;
      EXPECT_GT(stats[r].fetch_bytes, 0u) << "rank " << r;
    }
    pool->shutdown(5s);
  }
}

// Two ranks, one sequence: the rank without work steps with an empty micro-batch (it must, for the gathers) and
// the sequence still gets its tokens.
TEST(MultiRank, AnIdleRankKeepsTheOtherRunning) {
  auto pool = spawn(options(2));
  ASSERT_TRUE(pool);
  StepInput in;
  SeqStep s;
  s.seq_id = 1;
  s.first = true;
  s.tokens = {1, 100, 200};
  in.seqs.push_back(s);
  for (int step = 0; step < 4; ++step) {
    auto out = pool->step(in);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->results.size(), 1u);
    ASSERT_EQ(out->rank_stats.size(), 2u);
    // Both ranks took part in the layer gathers, the idle one included.
    EXPECT_GT(out->rank_stats[0].allgather_bytes, 0u);
    EXPECT_GT(out->rank_stats[1].allgather_bytes, 0u);
    in.seqs[0].first = false;
    in.seqs[0].tokens = {out->results[0].token};
  }
  // The pool routes by the rank each step names: one it does not have is refused, naming it.
  in.seqs[0].rank = 2;
  auto bad = pool->step(in);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "sequence 1: SeqStep.rank is 2; the pool has 2 ranks");
  pool->shutdown(5s);
}

// SIGKILL one rank while a step is in flight: the step fails with UNAVAILABLE naming the rank (the stream's client
// gets an error, not a hang), the other rank is stopped too, and later steps fail at once.
TEST(MultiRank, AKilledWorkerFailsTheStepAndStopsTheGroup) {
  auto pool = spawn(options(2, /*delay_ms=*/300));
  ASSERT_TRUE(pool);
  std::promise<Status> lost;
  pool->set_on_lost([&](const Status& s) { lost.set_value(s); });
  StepInput in;
  for (uint64_t id : {1, 2}) {
    SeqStep s;
    s.seq_id = id;
    s.rank = static_cast<uint32_t>(id - 1);  // one on each rank
    s.first = true;
    s.tokens = {1, 100, static_cast<int32_t>(id)};
    in.seqs.push_back(s);
  }
  const auto pids = pool->worker_pids();
  auto step = std::async(std::launch::async, [&] { return pool->step(in); });
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(kill(pids[1], SIGKILL), 0);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(step.wait_for(60s), std::future_status::ready) << "the step hung after a worker died";
  auto out = step.get();
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnavailable) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("worker rank 1"));
  std::printf("worker death noticed after %.3f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  auto lost_future = lost.get_future();
  ASSERT_EQ(lost_future.wait_for(10s), std::future_status::ready);
  // The surviving rank is stopped (it cannot step without its peer).
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = kill(pids[0], 0) != 0;
    if (!gone) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(gone) << "rank 0 (pid " << pids[0] << ") still runs";
  EXPECT_EQ(pool->step(in).status().code(), absl::StatusCode::kUnavailable);
  pool->shutdown(2s);
}

}  // namespace
}  // namespace zi
