// Continuous batching on the real CPU executor and the fixture models (Llama, Mistral, Qwen2, OPT, BLOOM): sequences
// that join and leave a running batch, prefilled in chunks, produce exactly the tokens they produce alone (greedy);
// chunked prefill equals whole-prompt prefill; a released (cancelled) sequence's KV blocks are free at once.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include <prometheus/registry.h>

#include "engine/runtime/local_executor.h"
#include "server/scheduler/scheduler.h"
#include "tests/unit/model_fixture_util.h"
#include "tests/unit/serving_fakes.h"

namespace zi::server {
namespace {

using namespace std::chrono_literals;
using testing_fixtures::kGreedy;
using testing_fixtures::kPrompts;

const char* const kModels[] = {"llama_mha", "mistral", "qwen2", "opt", "bloom"};

class TokenSink final : public ResponseSink {
 public:
  void send(GenerationChunk c) override {
    std::lock_guard<std::mutex> lock(mu_);
    tokens_.insert(tokens_.end(), c.token_ids.begin(), c.token_ids.end());
    if (c.finish != FinishReason::kNone) done_ = true;
    cv_.notify_all();
  }
  void fail(const Status& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }
  bool cancelled() const override { return cancelled_.load(); }
  void cancel() { cancelled_ = true; }
  bool wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 120s, [this] { return done_; });
  }
  void wait_tokens(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, 120s, [&] { return tokens_.size() >= n || done_; });
  }
  std::vector<int32_t> tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::vector<int32_t>(tokens_.begin(), tokens_.end());
  }
  Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint32_t> tokens_;
  Status status_;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
};

GenerationRequest greedy_request(const std::vector<int32_t>& prompt, uint32_t n) {
  GenerationRequest r;
  r.prompt = prompt;
  r.max_new_tokens = n;
  r.ignore_eos = true;
  return r;
}

struct Server {
  Server(const std::string& model, uint32_t step_tokens, uint32_t batch, const std::string& policy = "continuous") {
    EngineOptions o = testing_fixtures::cpu_options(testing_fixtures::models_dir() + "/" + model, 2);
    o.max_batch_size = batch;
    o.kv_block_size = 4;  // sequences span several blocks
    executor = testing_fixtures::make_executor(o);
    SchedulerOptions so;
    so.max_batch_size = batch;
    so.max_num_batched_tokens = step_tokens;
    scheduler = std::make_unique<Scheduler>(executor.get(), &tokenizer, so, nullptr, std::move(*make_policy(policy)));
  }
  std::shared_ptr<TokenSink> submit(GenerationRequest r) {
    auto sink = std::make_shared<TokenSink>();
    auto res = scheduler->reserve();
    EXPECT_TRUE(res.ok());
    scheduler->submit(std::move(*res), std::move(r), sink);
    return sink;
  }
  testing::CharTokenizer tokenizer;  // text is not compared: token ids are
  std::unique_ptr<Executor> executor;
  std::unique_ptr<Scheduler> scheduler;
};

class Batching : public ::testing::TestWithParam<const char*> {};

TEST_P(Batching, JoiningAndLeavingMidBatchGivesTheTokensOfARunAlone) {
  const std::string model = GetParam();
  const auto ref = testing_fixtures::load_reference(testing_fixtures::models_dir() + "/" + model);
  // Alone: whole-prompt prefill, one sequence at a time. Greedy = the reference's tokens.
  std::vector<std::vector<int32_t>> alone(kPrompts);
  std::vector<int32_t> alone_long;  // prompt 1, 30 tokens (the sequence cancelled below)
  {
    Server s(model, 8192, 1);
    auto sink = s.submit(greedy_request(ref.prompt[1], 30));
    ASSERT_TRUE(sink->wait());
    alone_long = sink->tokens();
    for (int i = 0; i < kPrompts; ++i) {
      auto sink = s.submit(greedy_request(ref.prompt[i], kGreedy));
      ASSERT_TRUE(sink->wait());
      ASSERT_TRUE(sink->status().ok()) << sink->status();
      alone[i] = sink->tokens();
      EXPECT_EQ(alone[i], ref.greedy[i]) << model << " prompt " << i;
    }
  }
  for (const char* policy : {"continuous", "static"}) {
    // Together: steps of at most 4 tokens (prompts go in chunks beside decodes), sequences of different lengths
    // joining while others run, one leaving early, one cancelled mid-way.
    Server s(model, 4, 3, policy);
    auto a = s.submit(greedy_request(ref.prompt[0], kGreedy));
    a->wait_tokens(3);
    auto b = s.submit(greedy_request(ref.prompt[1], 5));  // leaves early
    auto c = s.submit(greedy_request(ref.prompt[2], kGreedy));
    auto d = s.submit(greedy_request(ref.prompt[1], 30));  // cancelled after a few tokens
    auto e = s.submit(greedy_request(ref.prompt[2], 7));  // joins when a slot frees
    d->wait_tokens(2);
    d->cancel();
    s.scheduler->wake();
    for (auto* sink : {&a, &b, &c, &d, &e}) ASSERT_TRUE((*sink)->wait()) << model << " " << policy;
    EXPECT_EQ(a->tokens(), alone[0]) << model << " " << policy;
    EXPECT_EQ(b->tokens(), std::vector<int32_t>(alone[1].begin(), alone[1].begin() + 5)) << model << " " << policy;
    EXPECT_EQ(c->tokens(), alone[2]) << model << " " << policy;
    EXPECT_EQ(e->tokens(), std::vector<int32_t>(alone[2].begin(), alone[2].begin() + 7)) << model << " " << policy;
    // Cancelled mid-way (or, on a very slow machine, finished before the cancellation landed): its tokens so far
    // are the solo run's.
    const auto dt = d->tokens();
    if (d->status().ok()) EXPECT_EQ(dt.size(), 30u);
    else EXPECT_EQ(d->status().code(), absl::StatusCode::kCancelled);
    ASSERT_LE(dt.size(), alone_long.size());
    EXPECT_EQ(dt, std::vector<int32_t>(alone_long.begin(), alone_long.begin() + dt.size())) << model << " " << policy;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Batching, ::testing::ValuesIn(kModels));

// Direct executor steps: a prompt prefilled in chunks of 3 (no token sampled until the last) gives the logits and
// tokens of the whole prompt at once.
TEST(ChunkedPrefill, EqualsWholePromptPrefill) {
  for (const char* model : kModels) {
    const std::string dir = testing_fixtures::models_dir() + "/" + model;
    const auto ref = testing_fixtures::load_reference(dir);
    EngineOptions o = testing_fixtures::cpu_options(dir, 2);
    o.kv_block_size = 2;
    auto ex = testing_fixtures::make_executor(o);
    ASSERT_TRUE(ex);
    const std::vector<int32_t>& prompt = ref.prompt[0];
    SeqStep whole;
    whole.seq_id = 1;
    whole.tokens = prompt;
    whole.first = true;
    whole.want_logits = true;
    auto w = ex->step({{whole}, {}});
    ASSERT_TRUE(w.ok()) << w.status();
    std::vector<float> chunked;
    int32_t token = -1;
    for (size_t at = 0; at < prompt.size(); at += 3) {
      SeqStep c;
      c.seq_id = 2;
      c.first = at == 0;
      c.tokens.assign(prompt.begin() + at, prompt.begin() + std::min(prompt.size(), at + 3));
      c.sample = at + 3 >= prompt.size();
      c.want_logits = true;
      auto r = ex->step({{c}, {}});
      ASSERT_TRUE(r.ok()) << r.status();
      chunked.insert(chunked.end(), r->results[0].logits.begin(), r->results[0].logits.end());
      if (c.sample) token = r->results[0].token;
      else EXPECT_EQ(r->results[0].token, -1);
    }
    EXPECT_LT(testing_fixtures::rel_err(chunked, w->results[0].logits.data(), w->results[0].logits.size()), 1e-5)
        << model;
    EXPECT_EQ(token, w->results[0].token) << model;
    EXPECT_EQ(token, ref.greedy[0][0]) << model;
  }
}

TEST(PagedKvCache, AReleasedSequenceFreesItsBlocks) {
  EngineOptions o = testing_fixtures::cpu_options(testing_fixtures::models_dir() + "/llama_mha", 2);
  o.kv_block_size = 4;
  auto ex = testing_fixtures::make_executor(o);
  ASSERT_TRUE(ex);
  auto* local = dynamic_cast<LocalExecutor*>(ex.get());
  ASSERT_NE(local, nullptr);
  const KvCache& kv = local->kv_cache();
  EXPECT_EQ(kv.num_blocks(), 4 * 16);  // max_batch_size 4 × 64 positions / 4
  SeqStep a;
  a.seq_id = 1;
  a.first = true;
  a.tokens = {5, 6, 7, 8, 9};  // 5 positions: 2 blocks
  SeqStep b = a;
  b.seq_id = 2;
  b.tokens = {5, 6, 7};  // 1 block
  auto r = ex->step({{a, b}, {}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(kv.used_blocks(), 3);
  EXPECT_DOUBLE_EQ(r->stats.kv_usage_ratio, 3.0 / 64);
  // A is cancelled: its release rides with the next step, which frees its blocks before anything is allocated.
  SeqStep next;
  next.seq_id = 2;
  next.tokens = {r->results[1].token};
  r = ex->step({{next}, {1}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(kv.used_blocks(), 1);  // A's 2 blocks are back; B holds 4 positions = 1 block
  EXPECT_EQ(local->active_sequences(), 1u);
  r = ex->step({{}, {2}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(kv.used_blocks(), 0);
  EXPECT_DOUBLE_EQ(r->stats.kv_usage_ratio, 0.0);
}

TEST(PagedKvCache, AStepBeyondTheFreeBlocksIsRefusedNamingTheLimit) {
  EngineOptions o = testing_fixtures::cpu_options(testing_fixtures::models_dir() + "/llama_mha", 2);
  o.kv_block_size = 4;
  o.kv_cache_bytes = 1;  // less than a block
  auto bad = create_executor(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("KV cache too small"), std::string::npos) << bad.status();
  // Room for 3 blocks: a 13-token prompt (4 blocks) cannot run.
  auto probe = testing_fixtures::make_executor(testing_fixtures::cpu_options(o.model_dir, 2));
  ASSERT_TRUE(probe);
  auto* local = dynamic_cast<LocalExecutor*>(probe.get());
  ASSERT_NE(local, nullptr);
  // The probe's blocks hold 16 tokens; one of 4 tokens takes a quarter of that.
  const uint64_t block4 = local->kv_cache().bytes() / static_cast<uint64_t>(local->kv_cache().num_blocks()) / 4;
  o.kv_cache_bytes = 3 * block4;
  auto ex = testing_fixtures::make_executor(o);
  ASSERT_TRUE(ex);
  auto* small = dynamic_cast<LocalExecutor*>(ex.get());
  EXPECT_EQ(small->kv_cache().num_blocks(), 3);
  EXPECT_EQ(ex->summary().kv_num_blocks, 3u);
  EXPECT_EQ(ex->summary().kv_block_size, 4u);
  SeqStep s;
  s.seq_id = 1;
  s.first = true;
  s.tokens.assign(13, 5);
  auto r = ex->step({{s}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("KV cache out of blocks"), std::string::npos) << r.status();
  s.tokens.assign(12, 5);
  EXPECT_TRUE(ex->step({{s}, {}}).ok());
}

}  // namespace
}  // namespace zi::server
