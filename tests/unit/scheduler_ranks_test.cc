// Rank placement in the scheduler against a scripted executor of N ranks: slots and KV blocks are counted per rank,
// so two ranks with a tight KV cache hold twice the sequences of one; a new sequence goes where most room is left
// and stays there (its steps and its release name that rank); a request that fits no rank's empty cache is refused
// naming the per-rank limit; the static policy spreads its batch over the ranks.
#include <algorithm>
#include <map>
#include <set>

#include "server/scheduler/scheduler.h"
#include "tests/unit/scheduler_harness.h"

namespace zi::server {
namespace {

using namespace scheduler_testing;
using testing::CharTokenizer;
using testing::ScriptedExecutor;

// Most sequences in one step (all ranks). The scripted executor itself checks each rank's KV blocks and that a
// sequence never changes rank.
size_t max_per_step(const std::vector<ScriptedExecutor::Recorded>& steps) {
  size_t most = 0;
  for (auto& st : steps) most = std::max(most, st.seq_ids.size());
  return most;
}

// Most sequences one rank ran in one step.
size_t max_per_rank_step(const std::vector<ScriptedExecutor::Recorded>& steps) {
  size_t most = 0;
  for (auto& st : steps) {
    std::map<uint32_t, size_t> n;
    for (uint32_t r : st.ranks) most = std::max(most, ++n[r]);
  }
  return most;
}

// Four requests of 3 prompt tokens + 8 new (10 positions: 3 blocks of 4 tokens) on `ranks` ranks of 3 blocks each:
// every rank holds one at a time. Returns the most that ran together.
size_t concurrency_with_tight_kv(uint32_t ranks) {
  SchedulerOptions opts;
  opts.max_batch_size = 8;
  Harness h(opts, letters, {3, 4, ranks});
  EXPECT_EQ(h.scheduler->num_ranks(), ranks);
  EXPECT_EQ(h.scheduler->kv_blocks_per_rank(), 3);
  EXPECT_EQ(h.scheduler->kv_blocks_total(), 3 * static_cast<int64_t>(ranks));
  h.executor.hold();
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (uint64_t i = 0; i < 4; ++i) sinks.push_back(h.submit(make_request(i, 8)));
  h.executor.release_hold();
  const char* want[] = {"abcdefgh", "bcdefghi", "cdefghij", "defghijk"};
  for (size_t i = 0; i < sinks.size(); ++i) {
    EXPECT_TRUE(sinks[i]->wait());
    EXPECT_TRUE(sinks[i]->status().ok()) << sinks[i]->status();
    EXPECT_EQ(sinks[i]->text(), want[i]);
  }
  EXPECT_TRUE(h.executor.protocol_errors().empty()) << h.executor.protocol_errors().front();
  auto steps = h.executor.steps();
  EXPECT_EQ(max_per_rank_step(steps), 1u) << "a rank's 3 blocks hold one request";
  EXPECT_EQ(h.scheduler->kv_blocks_reserved(), 0);
  return max_per_step(steps);
}

TEST(SchedulerRanks, TwoRanksWithATightKvCacheHoldTwiceTheSequencesOfOne) {
  EXPECT_EQ(concurrency_with_tight_kv(1), 1u);
  EXPECT_EQ(concurrency_with_tight_kv(2), 2u);
  EXPECT_EQ(concurrency_with_tight_kv(3), 3u);
}

TEST(SchedulerRanks, ANewSequenceGoesWhereMostKvBlocksAreFreeAndStaysThere) {
  // Two ranks of 8 blocks of 4 tokens. A (3 + 20 new: 22 positions, 6 blocks) takes rank 0 (a tie: the lowest);
  // then rank 1 has the most free blocks for B (1 block), C (1) and D (3 blocks; rank 0 has 2 left).
  SchedulerOptions opts;
  opts.max_batch_size = 8;
  Harness h(opts, letters, {8, 4, 2});
  h.executor.hold();
  auto a = h.submit(make_request(0, 20));
  auto b = h.submit(make_request(1, 2));
  auto c = h.submit(make_request(2, 2));
  auto d = h.submit(make_request(3, 10));
  h.executor.release_hold();
  for (auto& s : {a, b, c, d}) {
    ASSERT_TRUE(s->wait());
    EXPECT_TRUE(s->status().ok()) << s->status();
  }
  auto steps = h.executor.steps();
  std::map<uint64_t, uint32_t> rank_of;
  for (auto& st : steps)
    for (size_t i = 0; i < st.seq_ids.size(); ++i) rank_of.emplace(st.seq_ids[i], st.ranks[i]);
  const uint64_t a_id = steps[0].seq_ids[0];
  EXPECT_EQ(rank_of[a_id], 0u);
  EXPECT_EQ(rank_of[a_id + 1], 1u);
  EXPECT_EQ(rank_of[a_id + 2], 1u);
  EXPECT_EQ(rank_of[a_id + 3], 1u);
  // Every release names the rank that ran the sequence (the scripted executor checks it, and that no sequence
  // moved).
  std::set<uint64_t> released;
  for (auto& st : steps)
    for (size_t i = 0; i < st.release.size(); ++i) {
      EXPECT_EQ(st.release_ranks[i], rank_of[st.release[i]]);
      released.insert(st.release[i]);
    }
  EXPECT_TRUE(h.executor.protocol_errors().empty()) << h.executor.protocol_errors().front();
}

TEST(SchedulerRanks, EachRankTakesItsShareOfMaxBatchSize) {
  // max_batch_size 4 over 2 ranks: 2 sequences per rank, spread evenly (blocks not counted: fewest sequences).
  SchedulerOptions opts;
  opts.max_batch_size = 4;
  Harness h(opts, letters, {0, 4, 2});
  h.executor.hold();
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (uint64_t i = 0; i < 6; ++i) sinks.push_back(h.submit(make_request(i, 3 + i % 3)));
  h.executor.release_hold();
  for (auto& s : sinks) {
    ASSERT_TRUE(s->wait());
    EXPECT_TRUE(s->status().ok()) << s->status();
  }
  auto steps = h.executor.steps();
  EXPECT_EQ(max_per_step(steps), 4u);
  EXPECT_EQ(max_per_rank_step(steps), 2u);
  EXPECT_TRUE(h.executor.protocol_errors().empty()) << h.executor.protocol_errors().front();
}

TEST(SchedulerRanks, ARequestThatFitsNoRanksCacheIsRefusedNamingThePerRankLimit) {
  Harness h({}, letters, {5, 4, 2});
  EXPECT_EQ(h.scheduler->kv_blocks_total(), 10);
  auto a = h.submit(make_request(0, 30));  // 3 + 29 positions = 8 blocks: under the 10 of both ranks, over one's 5
  ASSERT_TRUE(a->wait());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->status().message(),
            "prompt (3 tokens) + max_new_tokens (30) needs 8 KV cache blocks of 4 tokens; each rank's KV cache holds "
            "5 (20 tokens; kv_cache.max_bytes)");
  EXPECT_EQ(h.scheduler->in_flight(), 0u);
}

TEST(SchedulerRanks, StaticPolicySpreadsItsBatchOverTheRanks) {
  // Static batches of up to 4 over 2 ranks of 3 blocks: each member pads to 3 blocks, so a batch is one per rank.
  SchedulerOptions opts;
  opts.max_batch_size = 4;
  Harness h(opts, letters, {3, 4, 2}, "static");
  std::vector<Reservation> places;
  for (int i = 0; i < 4; ++i) places.push_back(*h.scheduler->reserve());  // all four arrive together
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (uint64_t i = 0; i < 4; ++i) {
    auto sink = std::make_shared<RecordingSink>();
    h.scheduler->submit(std::move(places[i]), make_request(i, 8), sink);
    sinks.push_back(sink);
  }
  for (auto& s : sinks) {
    ASSERT_TRUE(s->wait());
    EXPECT_TRUE(s->status().ok()) << s->status();
  }
  auto steps = h.executor.steps();
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps[0].ranks, (std::vector<uint32_t>{0, 1})) << "the first batch: one member per rank";
  EXPECT_EQ(max_per_step(steps), 2u);
  EXPECT_TRUE(h.executor.protocol_errors().empty()) << h.executor.protocol_errors().front();
}

}  // namespace
}  // namespace zi::server
