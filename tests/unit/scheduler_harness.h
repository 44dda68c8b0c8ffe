// The scheduler tests' harness: a recording response sink, request makers, a metric reader, and a Scheduler over
// the scripted executor (serving_fakes.h) with an optional paged KV cache and a policy.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "server/scheduler/policy.h"
#include "server/scheduler/scheduler.h"
#include "tests/unit/serving_fakes.h"

namespace zi::server::scheduler_testing {

using testing::CharTokenizer;
using testing::ScriptedExecutor;

class RecordingSink final : public ResponseSink {
 public:
  void send(GenerationChunk c) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) extra_calls_++;
    if (c.finish != FinishReason::kNone) done_ = true;
    chunks_.push_back(std::move(c));
    cv_.notify_all();
  }
  void fail(const Status& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) extra_calls_++;
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }
  bool cancelled() const override { return cancelled_.load(); }
  void cancel() { cancelled_ = true; }

  // Waits for the last call (fails the test after 30 s rather than hanging).
  bool wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [this] { return done_; });
  }
  bool wait_for_done(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, d, [this] { return done_; });
  }
  void wait_chunks(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return chunks_.size() >= n || done_; });
  }
  Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::vector<GenerationChunk> chunks() {
    std::lock_guard<std::mutex> lock(mu_);
    return chunks_;
  }
  std::vector<uint32_t> tokens() {
    std::vector<uint32_t> out;
    for (auto& c : chunks()) out.insert(out.end(), c.token_ids.begin(), c.token_ids.end());
    return out;
  }
  std::string text() {
    std::string out;
    for (auto& c : chunks()) out += c.text;
    return out;
  }
  GenerationChunk last() { return chunks().back(); }
  int extra_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return extra_calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<GenerationChunk> chunks_;
  Status status_;
  bool done_ = false;
  int extra_calls_ = 0;
  std::atomic<bool> cancelled_{false};
};

// Token i of a sequence seeded s is the letter 'a' + (s + i) % 26.
inline int32_t letters(const SamplingParams& sp, size_t i) {
  return CharTokenizer::id_of(static_cast<char>('a' + (sp.seed + i) % 26));
}

inline GenerationRequest make_request(uint64_t seed, uint32_t max_new_tokens) {
  GenerationRequest r;
  r.request_id = "r" + std::to_string(seed);
  r.prompt = {CharTokenizer::kBos, CharTokenizer::id_of('h'), CharTokenizer::id_of('i')};
  r.sampling.seed = seed;
  r.max_new_tokens = max_new_tokens;
  return r;
}

inline double metric(prometheus::Registry& reg, const std::string& name, const std::string& label_value = "") {
  for (const auto& family : reg.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      if (!label_value.empty() && (m.label.empty() || m.label[0].value != label_value)) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter: return m.counter.value;
        case prometheus::MetricType::Gauge: return m.gauge.value;
        case prometheus::MetricType::Histogram: return static_cast<double>(m.histogram.sample_count);
        default: return -1;
      }
    }
  }
  return -1;
}

// A paged KV cache the scripted executor reports (blocks = 0: none), on each of `ranks` ranks.
struct KvSetup {
  uint64_t blocks = 0;      // per rank
  uint32_t block_size = 4;  // tokens per block
  uint32_t ranks = 1;
};

struct Harness {
  explicit Harness(SchedulerOptions opts = {}, ScriptedExecutor::TokenFn fn = letters, KvSetup kv = {},
                   const std::string& policy = "continuous")
      : executor(std::move(fn)), metrics(registry) {
    if (opts.eos_token_ids.empty()) opts.eos_token_ids = {CharTokenizer::kEos};
    executor.mutable_summary().kv_num_blocks = kv.blocks;
    executor.mutable_summary().kv_block_size = kv.blocks ? kv.block_size : 0;
    executor.mutable_summary().num_ranks = kv.ranks;
    auto p = make_policy(policy);
    EXPECT_TRUE(p.ok()) << p.status();
    scheduler = std::make_unique<Scheduler>(&executor, &tokenizer, opts, &metrics, std::move(*p));
  }
  std::shared_ptr<RecordingSink> submit(GenerationRequest req) {
    auto sink = std::make_shared<RecordingSink>();
    auto res = scheduler->reserve();
    EXPECT_TRUE(res.ok()) << res.status();
    if (res.ok()) scheduler->submit(std::move(*res), std::move(req), sink);
    return sink;
  }
  CharTokenizer tokenizer;
  ScriptedExecutor executor;
  prometheus::Registry registry;
  ServingMetrics metrics;
  std::unique_ptr<Scheduler> scheduler;
};

}  // namespace zi::server::scheduler_testing
