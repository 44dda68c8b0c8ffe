// The scheduler places sequences on real CPU worker ranks (`zeroinfer worker` through the WorkerPool, the tiny llama
// of tests/data) whose KV cache holds one request each: two ranks run two requests at once where one rank runs one,
// every request completes (no rank ever runs out of blocks: the engine would fail the step), and the scheduler
// counts each rank's blocks.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>

#include <gtest/gtest.h>

#include "engine/runtime/engine_options.h"
#include "engine/model/kv_cache.h"
#include "server/scheduler/scheduler.h"
#include "server/worker_pool/worker_pool.h"

namespace zi::server {
namespace {

using namespace std::chrono_literals;

// Ids only: the test counts tokens, not text.
class IdTokenizer final : public Tokenizer {
 public:
  StatusOr<std::vector<int32_t>> encode(std::string_view, bool) const override { return std::vector<int32_t>{}; }
  std::string decode(std::span<const int32_t>, bool) const override { return ""; }
  std::string id_to_token(int32_t) const override { return ""; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  int32_t vocab_size() const override { return 2048; }
  bool is_special(int32_t) const override { return false; }
};

// Passes steps to the pool, keeping the most sequences one step held and the ranks they ran on (scheduler thread).
class Recorder final : public Executor {
 public:
  explicit Recorder(Executor* inner) : inner_(inner) {}
  StatusOr<StepOutput> step(const StepInput& in) override {
    most = std::max(most, in.seqs.size());
    for (const SeqStep& s : in.seqs) ranks.insert(s.rank);
    return inner_->step(in);
  }
  const ModelSummary& summary() const override { return inner_->summary(); }
  size_t most = 0;
  std::set<uint32_t> ranks;

 private:
  Executor* inner_;
};

class CountingSink final : public ResponseSink {
 public:
  void send(GenerationChunk c) override {
    std::lock_guard<std::mutex> lock(mu_);
    tokens_ += c.token_ids.size();
    if (c.finish != FinishReason::kNone) done_ = true;
    cv_.notify_all();
  }
  void fail(const Status& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }
  bool cancelled() const override { return false; }
  // Tokens generated, once the request has ended (its status otherwise).
  StatusOr<size_t> wait() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, 300s, [this] { return done_; })) return absl::DeadlineExceededError("no end in 300 s");
    if (!status_.ok()) return status_;
    return tokens_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t tokens_ = 0;
  Status status_;
  bool done_ = false;
};

constexpr uint32_t kBlockTokens = 16;
constexpr uint64_t kBlocksPerRank = 4;     // 64 tokens
constexpr uint32_t kPromptTokens = 8;
constexpr uint32_t kNewTokens = 33;        // 8 + 32 positions: 3 blocks, so one request per rank

// Four requests through a scheduler over `world` CPU ranks; returns the most sequences one step ran.
size_t most_together(int world) {
  EngineOptions eo;
  eo.model_dir = std::string(ZI_TEST_DATA) + "/models/llama_mha";  // 3 layers, 4 KV heads of 16, vocab 2048
  eo.device = Device::kCpu;
  eo.max_batch_size = 4;
  eo.max_context = 128;
  eo.world_size = static_cast<uint32_t>(world);
  eo.cpu_threads = 1;
  eo.kv_block_size = kBlockTokens;
  eo.kv_cache_bytes = kBlocksPerRank * kv_block_bytes(3, kBlockTokens, 4, 16, sizeof(float));  // fp32 on the CPU
  WorkerPoolOptions po;
  po.executable = ZI_BINARY;
  po.log_level = "warning";
  po.heartbeat_interval = 100ms;
  po.heartbeat_timeout = 20s;
  auto pool = WorkerPool::Spawn(eo, po);
  EXPECT_TRUE(pool.ok()) << pool.status();
  if (!pool.ok()) return 0;
  auto ready = (*pool)->wait_ready(120s);
  EXPECT_TRUE(ready.has_value() && ready->ok()) << (ready ? ready->ToString() : "not ready in 120 s");
  if (!ready || !ready->ok()) return 0;
  EXPECT_EQ((*pool)->summary().kv_num_blocks, kBlocksPerRank);
  EXPECT_EQ((*pool)->summary().num_ranks, static_cast<uint32_t>(world));

  Recorder recorder(pool->get());
  IdTokenizer tokenizer;
  SchedulerOptions so;
  so.max_batch_size = eo.max_batch_size * eo.world_size;  // as serve: server.max_batch_size per rank
  size_t most = 0;
  {
    Scheduler scheduler(&recorder, &tokenizer, so, nullptr);
    EXPECT_EQ(scheduler.kv_blocks_per_rank(), static_cast<int64_t>(kBlocksPerRank));
    EXPECT_EQ(scheduler.kv_blocks_total(), static_cast<int64_t>(kBlocksPerRank) * world);
    std::vector<std::shared_ptr<CountingSink>> sinks;
    for (int i = 0; i < 4; ++i) {
      GenerationRequest r;
      r.request_id = absl::StrCat("r", i);
      for (uint32_t t = 0; t < kPromptTokens; ++t) r.prompt.push_back(static_cast<int32_t>(1 + 100 * i + t));
      r.max_new_tokens = kNewTokens;
      r.ignore_eos = true;
      r.sampling.seed = static_cast<uint64_t>(i);
      auto place = scheduler.reserve();
      EXPECT_TRUE(place.ok()) << place.status();
      if (!place.ok()) return 0;
      auto sink = std::make_shared<CountingSink>();
      scheduler.submit(std::move(*place), std::move(r), sink);
      sinks.push_back(sink);
    }
    for (auto& s : sinks) {
      StatusOr<size_t> n = s->wait();
      EXPECT_TRUE(n.ok()) << n.status();
      if (n.ok()) {
        EXPECT_EQ(*n, kNewTokens);
      }
    }
    EXPECT_EQ(scheduler.kv_blocks_reserved(), 0);
  }
  most = recorder.most;
  EXPECT_EQ(recorder.ranks.size(), static_cast<size_t>(world)) << "every rank ran requests";
  (*pool)->shutdown(5s);
  return most;
}

TEST(MultiRankPlacement, TwoCpuRanksWithATightKvCacheHoldTwiceTheSequencesOfOne) {
  EXPECT_EQ(most_together(1), 1u);
  EXPECT_EQ(most_together(2), 2u);
}

}  // namespace
}  // namespace zi::server
