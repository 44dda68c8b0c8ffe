// The scheduler's KV and batching rules against a scripted executor: chunked prefill beside running decodes,
// admission by free KV blocks (never overcommitted, refused when it can never fit, given back on cancel), and the
// static policy's batches.
#include <chrono>
#include <map>
#include <thread>

#include "server/scheduler/scheduler.h"
#include "tests/unit/scheduler_harness.h"

namespace zi::server {
namespace {

using namespace scheduler_testing;
using testing::CharTokenizer;
using testing::ScriptedExecutor;
using namespace std::chrono_literals;

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

}  // namespace
}  // namespace zi::server
