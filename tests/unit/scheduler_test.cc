// The iteration-level scheduler against a scripted executor: batching at step boundaries, the bounded queue,
// stopping (EOS, length, stop strings), cancellation, deadlines, draining, a lost executor, and its metrics.
#include <chrono>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "server/scheduler/policy.h"
#include "server/scheduler/scheduler.h"
#include "tests/unit/serving_fakes.h"

namespace zi::server {
namespace {

using testing::CharTokenizer;
using testing::ScriptedExecutor;
using namespace std::chrono_literals;

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
    return cv_.wait_for(lock, 30s, [this] { return done_; });
  }
  bool wait_for_done(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, d, [this] { return done_; });
  }
  void wait_chunks(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, 30s, [&] { return chunks_.size() >= n || done_; });
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
int32_t letters(const SamplingParams& sp, size_t i) {
  return CharTokenizer::id_of(static_cast<char>('a' + (sp.seed + i) % 26));
}

GenerationRequest make_request(uint64_t seed, uint32_t max_new_tokens) {
  GenerationRequest r;
  r.request_id = "r" + std::to_string(seed);
  r.prompt = {CharTokenizer::kBos, CharTokenizer::id_of('h'), CharTokenizer::id_of('i')};
  r.sampling.seed = seed;
  r.max_new_tokens = max_new_tokens;
  return r;
}

double metric(prometheus::Registry& reg, const std::string& name, const std::string& label_value = "") {
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

// A paged KV cache the scripted executor reports (blocks = 0: none).
struct KvSetup {
  uint64_t blocks = 0;
  uint32_t block_size = 4;
};

struct Harness {
  explicit Harness(SchedulerOptions opts = {}, ScriptedExecutor::TokenFn fn = letters, KvSetup kv = {},
                   const std::string& policy = "continuous")
      : executor(std::move(fn)), metrics(registry) {
    if (opts.eos_token_ids.empty()) opts.eos_token_ids = {CharTokenizer::kEos};
    executor.mutable_summary().kv_num_blocks = kv.blocks;
    executor.mutable_summary().kv_block_size = kv.blocks ? kv.block_size : 0;
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

TEST(Scheduler, GeneratesUpToMaxNewTokensAndStreamsOneTokenPerChunk) {
  Harness h;
  auto sink = h.submit(make_request(0, 5));
  ASSERT_TRUE(sink->wait());
  EXPECT_TRUE(sink->status().ok()) << sink->status();
  auto chunks = sink->chunks();
  ASSERT_EQ(chunks.size(), 5u);
  EXPECT_EQ(sink->text(), "abcde");
  for (auto& c : chunks) EXPECT_EQ(c.token_ids.size(), 1u);
  EXPECT_EQ(sink->last().finish, FinishReason::kLength);
  EXPECT_EQ(sink->last().prompt_tokens, 3u);
  EXPECT_EQ(sink->last().completion_tokens, 5u);
  auto steps = h.executor.steps();
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_TRUE(steps[0].first[0]);
  EXPECT_EQ(steps[0].n_tokens[0], 3u);  // the prompt
  for (size_t i = 1; i < steps.size(); ++i) {
    EXPECT_FALSE(steps[i].first[0]);
    EXPECT_EQ(steps[i].n_tokens[0], 1u);  // the token sampled last step
  }
  EXPECT_EQ(sink->extra_calls(), 0);
  EXPECT_TRUE(h.executor.protocol_errors().empty());
  EXPECT_EQ(h.scheduler->in_flight(), 0u);
}

TEST(Scheduler, EosEndsGenerationUnreturnedUnlessIgnored) {
  auto eos_at_3 = [](const SamplingParams& sp, size_t i) {
    return i == 3 ? CharTokenizer::kEos : letters(sp, i);
  };
  Harness h({}, eos_at_3);
  auto a = h.submit(make_request(0, 10));
  ASSERT_TRUE(a->wait());
  EXPECT_EQ(a->last().finish, FinishReason::kEos);
  EXPECT_EQ(a->tokens().size(), 3u);
  EXPECT_EQ(a->last().completion_tokens, 3u);
  EXPECT_EQ(a->text(), "abc");

  GenerationRequest req = make_request(0, 6);
  req.ignore_eos = true;
  auto b = h.submit(std::move(req));
  ASSERT_TRUE(b->wait());
  EXPECT_EQ(b->last().finish, FinishReason::kLength);
  ASSERT_EQ(b->tokens().size(), 6u);
  EXPECT_EQ(b->tokens()[3], static_cast<uint32_t>(CharTokenizer::kEos));
  EXPECT_EQ(b->last().completion_tokens, 6u);
  EXPECT_EQ(b->text(), "abcef");  // special tokens are not part of the text
}

TEST(Scheduler, StopStringEndsTextBeforeIt) {
  Harness h;
  GenerationRequest req = make_request(0, 20);
  req.stop = {"zz", "cd"};
  auto a = h.submit(std::move(req));
  ASSERT_TRUE(a->wait());
  EXPECT_EQ(a->last().finish, FinishReason::kStop);
  EXPECT_EQ(a->text(), "ab");
  EXPECT_EQ(a->tokens().size(), 4u);  // a b c d: the tokens that completed the stop string are returned
  EXPECT_EQ(a->last().completion_tokens, 4u);
  // Text that might begin a stop string is held back: after 'c' nothing new was released.
  auto chunks = a->chunks();
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[2].text, "");

  GenerationRequest never = make_request(0, 4);
  never.stop = {"dX"};  // 'd' is held back, then released at the end
  auto b = h.submit(std::move(never));
  ASSERT_TRUE(b->wait());
  EXPECT_EQ(b->last().finish, FinishReason::kLength);
  EXPECT_EQ(b->text(), "abcd");
}

TEST(Scheduler, LogprobsOnlyWhenAsked) {
  Harness h;
  GenerationRequest req = make_request(0, 3);
  req.sampling.return_logprobs = true;
  auto a = h.submit(std::move(req));
  auto b = h.submit(make_request(0, 3));
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(b->wait());
  for (auto& c : a->chunks()) EXPECT_EQ(c.logprobs.size(), c.token_ids.size());
  for (auto& c : b->chunks()) EXPECT_TRUE(c.logprobs.empty());
}

TEST(Scheduler, NewSequencesJoinAtStepBoundariesWithinTheBatchLimit) {
  SchedulerOptions opts;
  opts.max_batch_size = 2;
  Harness h(opts);
  h.executor.hold();
  auto a = h.submit(make_request(0, 6));
  h.executor.wait_entered(1);  // step 1: A's prefill, held
  h.executor.allow(1);
  h.executor.wait_entered(2);  // step 2 (A alone) was built before B arrived
  auto b = h.submit(make_request(5, 6));
  auto c = h.submit(make_request(9, 6));
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(b->wait());
  ASSERT_TRUE(c->wait());
  auto steps = h.executor.steps();
  bool mixed = false;
  for (auto& s : steps) {
    EXPECT_LE(s.seq_ids.size(), 2u);
    bool has_first = false, has_decode = false;
    for (bool f : s.first) (f ? has_first : has_decode) = true;
    mixed = mixed || (has_first && has_decode);
  }
  EXPECT_TRUE(mixed) << "a new sequence's prefill should share a step with a running decode";
  ASSERT_EQ(steps[2].seq_ids.size(), 2u);
  EXPECT_FALSE(steps[2].first[0]);
  EXPECT_TRUE(steps[2].first[1]);
  EXPECT_EQ(a->text(), "abcdef");
  EXPECT_EQ(b->text(), "fghijk");
  EXPECT_EQ(c->text(), "jklmno");
  // Every finished sequence is eventually released, except those finishing in the very last step.
  EXPECT_TRUE(h.executor.protocol_errors().empty());
}

TEST(Scheduler, SeededOutputDoesNotDependOnBatchmates) {
  Harness alone;
  auto solo = alone.submit(make_request(7, 8));
  ASSERT_TRUE(solo->wait());

  SchedulerOptions opts;
  opts.max_batch_size = 4;
  Harness busy(opts);
  busy.executor.hold();
  std::vector<std::shared_ptr<RecordingSink>> others;
  others.push_back(busy.submit(make_request(1, 12)));
  busy.executor.wait_entered(1);
  auto same = busy.submit(make_request(7, 8));
  others.push_back(busy.submit(make_request(3, 5)));
  busy.executor.release_hold();
  ASSERT_TRUE(same->wait());
  for (auto& o : others) ASSERT_TRUE(o->wait());
  EXPECT_EQ(same->tokens(), solo->tokens());
  EXPECT_EQ(same->text(), solo->text());
}

TEST(Scheduler, FullQueueIsResourceExhaustedAndPlacesComeBack) {
  SchedulerOptions opts;
  opts.max_queue = 2;
  opts.max_batch_size = 1;
  Harness h(opts);
  h.executor.hold();
  auto running = h.submit(make_request(0, 3));
  h.executor.wait_entered(1);  // A runs; the queue is empty again
  auto r1 = h.scheduler->reserve();
  auto r2 = h.scheduler->reserve();
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(metric(h.registry, "zeroinfer_requests_waiting"), 2);
  auto r3 = h.scheduler->reserve();
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r3.status().message().find("server.max_queue = 2"), std::string::npos) << r3.status();
  { Reservation dropped = std::move(*r2); }  // a client that left before tokenization gives its place back
  EXPECT_TRUE(h.scheduler->reserve().ok());
  auto queued = std::make_shared<RecordingSink>();
  h.scheduler->submit(std::move(*r1), make_request(4, 2), queued);
  h.executor.release_hold();
  ASSERT_TRUE(running->wait());
  ASSERT_TRUE(queued->wait());
  EXPECT_EQ(queued->text(), "ef");
  EXPECT_EQ(h.scheduler->in_flight(), 0u);
}

TEST(Scheduler, CancellationStopsTheSequenceAndReleasesItsSlot) {
  SchedulerOptions opts;
  opts.max_batch_size = 1;
  Harness h(opts);
  h.executor.hold();
  auto a = h.submit(make_request(0, 50));
  auto b = h.submit(make_request(2, 3));  // waits for A's slot
  h.executor.allow(2);
  a->wait_chunks(2);
  a->cancel();
  h.scheduler->wake();
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kCancelled);
  EXPECT_LT(a->tokens().size(), 50u);
  ASSERT_TRUE(b->wait());  // B got A's slot
  EXPECT_EQ(b->text(), "cde");
  auto steps = h.executor.steps();
  uint64_t a_id = steps[0].seq_ids[0];
  EXPECT_TRUE(h.executor.released().count(a_id)) << "the cancelled sequence's state must be released";
  EXPECT_EQ(metric(h.registry, "zeroinfer_requests_total", "cancelled"), 1);
  EXPECT_TRUE(h.executor.protocol_errors().empty());
}

TEST(Scheduler, ExpiredDeadlineNeverRuns) {
  Harness h;
  GenerationRequest req = make_request(0, 5);
  req.deadline = Clock::now() - 1ms;
  auto a = h.submit(std::move(req));
  ASSERT_TRUE(a->wait());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(h.executor.steps().empty());
}

TEST(Scheduler, LostExecutorFailsEverythingWithUnavailable) {
  SchedulerOptions opts;
  opts.max_batch_size = 1;
  Harness h(opts);
  std::atomic<int> lost_calls{0};
  h.scheduler->set_on_executor_lost([&](const Status&) { lost_calls++; });
  h.executor.hold();
  auto a = h.submit(make_request(0, 10));
  auto b = h.submit(make_request(1, 10));
  h.executor.allow(1);
  a->wait_chunks(1);
  h.executor.fail_next_step(absl::UnavailableError("worker rank 0 (pid 42) closed its control socket"));
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(b->wait());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(a->status().message().find("worker rank 0"), std::string::npos) << a->status();
  EXPECT_EQ(b->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(lost_calls.load(), 1);
  auto r = h.scheduler->reserve();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(metric(h.registry, "zeroinfer_requests_total", "error"), 2);
}

TEST(Scheduler, FailedStepFailsItsSequencesAndServingGoesOn) {
  Harness h;
  h.executor.fail_next_step(absl::InternalError("out of KV cache"));
  auto a = h.submit(make_request(0, 4));
  ASSERT_TRUE(a->wait());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(a->status().message().find("out of KV cache"), std::string::npos);
  auto b = h.submit(make_request(1, 2));
  ASSERT_TRUE(b->wait());
  EXPECT_TRUE(b->status().ok());
  EXPECT_EQ(b->text(), "bc");
}

TEST(Scheduler, DrainingRefusesNewWorkButFinishesTheRest) {
  Harness h;
  h.executor.hold();
  auto a = h.submit(make_request(0, 4));
  h.executor.wait_entered(1);
  h.scheduler->start_draining();
  auto r = h.scheduler->reserve();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(h.scheduler->in_flight(), 1u);
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  EXPECT_TRUE(a->status().ok());
  EXPECT_EQ(h.scheduler->in_flight(), 0u);
}

TEST(Scheduler, FailAllEndsQueuedAndRunningRequests) {
  SchedulerOptions opts;
  opts.max_batch_size = 1;
  Harness h(opts);
  h.executor.hold();
  auto a = h.submit(make_request(0, 100));
  auto b = h.submit(make_request(1, 100));
  h.executor.wait_entered(1);
  h.scheduler->fail_all(absl::UnavailableError("server shutting down"));
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(b->wait());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(h.scheduler->in_flight(), 0u);
}

TEST(Scheduler, MetricsCountTokensOutcomesAndBatches) {
  Harness h;
  auto a = h.submit(make_request(0, 4));
  ASSERT_TRUE(a->wait());
  GenerationRequest req = make_request(0, 9);
  req.stop = {"c"};
  auto b = h.submit(std::move(req));
  ASSERT_TRUE(b->wait());
  EXPECT_EQ(metric(h.registry, "zeroinfer_requests_total", "length"), 1);
  EXPECT_EQ(metric(h.registry, "zeroinfer_requests_total", "stop"), 1);
  EXPECT_EQ(metric(h.registry, "zeroinfer_prompt_tokens_total"), 6);
  EXPECT_EQ(metric(h.registry, "zeroinfer_generation_tokens_total"), 4 + 3);
  EXPECT_EQ(metric(h.registry, "zeroinfer_time_to_first_token_seconds"), 2);
  EXPECT_EQ(metric(h.registry, "zeroinfer_inter_token_latency_seconds"), 3 + 2);
  EXPECT_EQ(metric(h.registry, "zeroinfer_request_duration_seconds"), 2);
  EXPECT_EQ(metric(h.registry, "zeroinfer_queue_duration_seconds"), 2);
  EXPECT_EQ(metric(h.registry, "zeroinfer_batch_size"), 4 + 3);
  EXPECT_EQ(metric(h.registry, "zeroinfer_requests_running"), 0);
  EXPECT_EQ(metric(h.registry, "zeroinfer_requests_waiting"), 0);
}

// A request whose prompt is `len` letters.
GenerationRequest long_request(uint64_t seed, size_t len, uint32_t max_new_tokens) {
  GenerationRequest r = make_request(seed, max_new_tokens);
  r.prompt.assign(len, CharTokenizer::id_of('x'));
  return r;
}

TEST(Scheduler, ChunkedPrefillSplitsALongPromptBesideRunningDecodes) {
  SchedulerOptions opts;
  opts.max_batch_size = 4;
  opts.max_num_batched_tokens = 5;
  Harness h(opts);
  h.executor.hold();
  auto a = h.submit(make_request(0, 8));  // prompt of 3: one step
  h.executor.allow(1);
  h.executor.wait_steps(1);
  auto b = h.submit(long_request(3, 11, 3));  // 11 prompt tokens: chunks while A decodes
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(b->wait());
  EXPECT_EQ(a->text(), "abcdefgh");
  EXPECT_EQ(b->text(), "def");
  auto steps = h.executor.steps();
  const uint64_t b_id = steps[0].seq_ids[0] + 1;
  std::vector<size_t> b_chunks;
  std::vector<bool> b_samples;
  for (auto& st : steps) {
    size_t tokens = 0;
    for (size_t i = 0; i < st.seq_ids.size(); ++i) {
      tokens += st.n_tokens[i];
      if (st.seq_ids[i] == b_id && (b_chunks.empty() || b_samples.back() == false)) {
        b_chunks.push_back(st.n_tokens[i]);
        b_samples.push_back(st.sample[i]);
      }
    }
    EXPECT_LE(tokens, 5u) << "a step holds at most max_num_batched_tokens";
  }
  // A's decode takes 1 token of each step's 5: B's prompt goes in chunks of 4, 4, 3; only the last samples.
  EXPECT_EQ(b_chunks, (std::vector<size_t>{4, 4, 3}));
  EXPECT_EQ(b_samples, (std::vector<bool>{false, false, true}));
  EXPECT_TRUE(h.executor.protocol_errors().empty());
}

TEST(Scheduler, AdmissionWaitsForKvBlocksAndNeverOvercommits) {
  SchedulerOptions opts;
  opts.max_batch_size = 8;
  // 5 blocks of 4 tokens: a prompt of 3 + 8 new tokens holds up to 10 positions = 3 blocks; two cannot share.
  Harness h(opts, letters, {5, 4});
  EXPECT_EQ(h.scheduler->kv_blocks_total(), 5);
  h.executor.hold();
  auto a = h.submit(make_request(0, 8));
  auto b = h.submit(make_request(1, 8));
  auto c = h.submit(make_request(2, 2));  // 1 block, but it may not overtake B
  h.executor.allow(1);
  h.executor.wait_steps(1);
  EXPECT_EQ(h.scheduler->kv_blocks_reserved(), 3);  // A alone (the scheduler also checks it never overcommits)
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(b->wait());
  ASSERT_TRUE(c->wait());
  EXPECT_EQ(b->text(), "bcdefghi");
  // B's first step comes after A's last: its reservation waited for A's blocks.
  auto steps = h.executor.steps();
  const uint64_t a_id = steps[0].seq_ids[0];
  size_t a_last = 0, b_first = SIZE_MAX, c_first = SIZE_MAX;
  for (size_t k = 0; k < steps.size(); ++k)
    for (size_t i = 0; i < steps[k].seq_ids.size(); ++i) {
      if (steps[k].seq_ids[i] == a_id) a_last = k;
      if (steps[k].seq_ids[i] == a_id + 1) b_first = std::min(b_first, k);
      if (steps[k].seq_ids[i] == a_id + 2) c_first = std::min(c_first, k);
    }
  EXPECT_GT(b_first, a_last);
  EXPECT_GE(c_first, b_first) << "first come, first served";
  EXPECT_EQ(h.scheduler->kv_blocks_reserved(), 0);
}

TEST(Scheduler, ARequestThatCanNeverFitTheKvCacheIsRefusedNamingTheLimit) {
  Harness h({}, letters, {5, 4});
  auto a = h.submit(make_request(0, 30));  // 3 + 29 positions = 8 blocks > 5
  ASSERT_TRUE(a->wait());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->status().message(),
            "prompt (3 tokens) + max_new_tokens (30) needs 8 KV cache blocks of 4 tokens; the KV cache holds 5 "
            "(20 tokens; kv_cache.max_bytes)");
  EXPECT_EQ(h.scheduler->in_flight(), 0u);
  auto b = h.submit(make_request(0, 17));  // 3 + 16 = 19 positions = 5 blocks: fits exactly
  ASSERT_TRUE(b->wait());
  EXPECT_TRUE(b->status().ok());
  EXPECT_EQ(b->tokens().size(), 17u);
}

TEST(Scheduler, CancelledSequenceGivesItsKvBlocksBackAtOnce) {
  SchedulerOptions opts;
  opts.max_batch_size = 4;
  Harness h(opts, letters, {4, 4});  // room for one request of 3 + 12
  h.executor.hold();
  auto a = h.submit(make_request(0, 12));
  auto b = h.submit(make_request(2, 3));
  h.executor.allow(2);
  a->wait_chunks(2);
  EXPECT_EQ(h.scheduler->kv_blocks_reserved(), 4);
  a->cancel();
  h.scheduler->wake();
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(b->wait());
  EXPECT_EQ(b->text(), "cde");
  auto steps = h.executor.steps();
  const uint64_t a_id = steps[0].seq_ids[0];
  // The step that starts B also releases A.
  bool together = false;
  for (auto& st : steps)
    if (!st.seq_ids.empty() && st.seq_ids[0] == a_id + 1 && st.first[0])
      together = std::count(st.release.begin(), st.release.end(), a_id) == 1;
  EXPECT_TRUE(together) << "B starts in the step that frees A's blocks";
  EXPECT_EQ(h.scheduler->kv_blocks_reserved(), 0);
  EXPECT_TRUE(h.executor.protocol_errors().empty());
}

TEST(Scheduler, StaticPolicyAdmitsInBatchesAndNothingJoinsARunningBatch) {
  SchedulerOptions opts;
  opts.max_batch_size = 2;
  Harness h(opts, letters, {}, "static");
  h.executor.hold();
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (uint64_t i = 0; i < 5; ++i) sinks.push_back(h.submit(make_request(i, i % 2 ? 6 : 2)));  // short, long, ...
  h.executor.release_hold();
  for (auto& s : sinks) ASSERT_TRUE(s->wait());
  for (uint64_t i = 0; i < 5; ++i) EXPECT_EQ(sinks[i]->tokens().size(), i % 2 ? 6u : 2u);
  // Batches = sequences that start in the same step. A batch starts only after every earlier one has ended.
  auto steps = h.executor.steps();
  std::map<uint64_t, size_t> first, last;
  for (size_t k = 0; k < steps.size(); ++k)
    for (uint64_t id : steps[k].seq_ids) {
      if (!first.count(id)) first[id] = k;
      last[id] = k;
    }
  ASSERT_EQ(first.size(), 5u);
  std::map<size_t, int> batch_sizes;
  for (auto& [id, k] : first) {
    ++batch_sizes[k];
    for (auto& [other, k2] : first) {
      if (k2 < k) {
        EXPECT_GT(k, last[other]) << "sequence " << id << " joined while " << other << " ran";
      }
    }
  }
  bool full = false;
  for (auto& [k, n] : batch_sizes) {
    EXPECT_LE(n, 2);
    full = full || n == 2;
  }
  EXPECT_TRUE(full) << "requests waiting together are admitted together";
}

TEST(Scheduler, StaticPolicyBatchesABurstSubmittedOneByOne) {
  // Three requests accepted together (reserved), queued 20 ms apart: one batch, not a batch of the first alone. A
  // fourth reservation given up wakes the scheduler too.
  SchedulerOptions opts;
  opts.max_batch_size = 4;
  Harness h(opts, letters, {}, "static");
  std::vector<Reservation> places;
  for (int i = 0; i < 4; ++i) places.push_back(*h.scheduler->reserve());
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (uint64_t i = 0; i < 3; ++i) {
    auto sink = std::make_shared<RecordingSink>();
    h.scheduler->submit(std::move(places[i]), make_request(i, 3), sink);
    sinks.push_back(sink);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  places[3] = Reservation();  // released unused
  for (auto& s : sinks) ASSERT_TRUE(s->wait());
  auto steps = h.executor.steps();
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps[0].seq_ids.size(), 3u) << "the burst starts in one step";
}

TEST(Scheduler, TheQueueNeverExceedsItsBound) {
  SchedulerOptions opts;
  opts.max_queue = 5;
  opts.max_batch_size = 2;
  Harness h(opts);
  h.executor.hold();
  std::vector<std::shared_ptr<RecordingSink>> accepted;
  int refused = 0;
  for (int i = 0; i < 20; ++i) {
    auto res = h.scheduler->reserve();
    if (!res.ok()) {
      EXPECT_EQ(res.status().code(), absl::StatusCode::kResourceExhausted);
      ++refused;
      continue;
    }
    auto sink = std::make_shared<RecordingSink>();
    h.scheduler->submit(std::move(*res), make_request(i, 3), sink);
    accepted.push_back(sink);
    EXPECT_LE(metric(h.registry, "zeroinfer_requests_waiting"), 5);
  }
  // Two may have left the queue for the batch before the executor held them; never more than 5 wait.
  EXPECT_LE(accepted.size(), 5u + 2u);
  EXPECT_GE(refused, 13);
  h.executor.release_hold();
  for (auto& s : accepted) ASSERT_TRUE(s->wait());
  EXPECT_EQ(h.scheduler->in_flight(), 0u);
}

}  // namespace
}  // namespace zi::server
