// The iteration-level scheduler against a scripted executor: batching at step boundaries, the bounded queue,
// stopping (EOS, length, stop strings), cancellation, deadlines, draining, a lost executor, and its metrics.
// Chunked prefill, KV-block admission and the static policy: scheduler_kv_test.cc.
#include <chrono>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "server/scheduler/scheduler.h"
#include "tests/unit/scheduler_harness.h"

namespace zi::server {
namespace {

using namespace scheduler_testing;
using testing::CharTokenizer;
using testing::ScriptedExecutor;
using namespace std::chrono_literals;

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

// scheduler.max_num_batched_tokens: 0 = auto, by whether layers stream (scheduler.h step_token_budget).
TEST(StepTokenBudget, AutoFollowsStreamingAndASetValueWins) {
  ModelSummary m;
  m.max_step_tokens = 32768;
  EXPECT_EQ(step_token_budget(0, m), kResidentStepTokens);  // every layer resident
  m.streamed_bytes_per_step = 12ull << 30;
  EXPECT_EQ(step_token_budget(0, m), 32768u);  // one weight pass for a 64 × 512 prefill
  EXPECT_EQ(step_token_budget(4096, m), 4096u);
  m.max_step_tokens = 0;  // an executor that does not report it
  EXPECT_EQ(step_token_budget(0, m), kResidentStepTokens);
}

}  // namespace
}  // namespace zi::server
