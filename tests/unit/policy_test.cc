// The scheduling policies as small pure classes: what each admits from the waiting queue, and on which rank, given
// every rank's free slots and KV blocks and the step's token budget (the scheduler itself: scheduler_test.cc).
#include <gtest/gtest.h>

#include "server/scheduler/policy.h"

namespace zi::server {
namespace {

// One rank with the batch's free slots.
BatchView one_rank(size_t running, size_t max_batch_size, int64_t free_kv_blocks, size_t free_step_tokens) {
  BatchView b;
  b.running = running;
  b.max_batch_size = max_batch_size;
  b.ranks = {RankView{max_batch_size - std::min(running, max_batch_size), free_kv_blocks}};
  b.free_step_tokens = free_step_tokens;
  return b;
}

TEST(ContinuousPolicy, FillsFreeSlotsFromTheHeadOfTheQueue) {
  ContinuousPolicy p;
  std::vector<WaitingView> w = {{1, 5, 0}, {2, 5, 0}, {3, 5, 0}};
  auto d = p.schedule(w, one_rank(2, 4, -1, 100));
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(d.deferred, (std::vector<uint64_t>{3}));
  d = p.schedule(w, one_rank(4, 4, -1, 100));
  EXPECT_TRUE(d.scheduled.empty());
  EXPECT_EQ(d.deferred.size(), 3u);
}

TEST(ContinuousPolicy, WaitsForKvBlocksAndStepTokensWithoutOvertaking) {
  ContinuousPolicy p;
  std::vector<WaitingView> w = {{1, 5, 3}, {2, 5, 6}, {3, 5, 1}};
  // Blocks: 1 fits (3 of 8), 2 does not (6 of 5 left) and 3, though small, may not overtake it.
  auto d = p.schedule(w, one_rank(0, 8, 8, 100));
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1}));
  EXPECT_EQ(d.deferred, (std::vector<uint64_t>{2, 3}));
  // Tokens: the first prompt takes the step's last 4 tokens; nobody else joins this step.
  d = p.schedule(w, one_rank(0, 8, -1, 4));
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1}));
  d = p.schedule(w, one_rank(0, 8, -1, 0));
  EXPECT_TRUE(d.scheduled.empty());
}

TEST(StaticPolicy, AdmitsABatchOnlyIntoAnEmptyBatch) {
  StaticPolicy p;
  std::vector<WaitingView> w = {{1, 5, 2}, {2, 5, 2}, {3, 5, 2}};
  auto d = p.schedule(w, one_rank(0, 2, -1, 0));  // step tokens do not matter: prefill is chunked by the scheduler
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
  d = p.schedule(w, one_rank(1, 2, -1, 100));     // one member still running: nothing joins
  EXPECT_TRUE(d.scheduled.empty());
  d = p.schedule(w, one_rank(0, 4, 5, 100));      // KV blocks bound the batch too
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
}

TEST(StaticPolicy, WaitsForArrivingRequestsUnlessTheBatchIsFull) {
  StaticPolicy p;
  std::vector<WaitingView> w = {{1, 5, 0}, {2, 5, 0}};
  BatchView b = one_rank(0, 4, -1, 100);
  b.arriving = 1;  // a third request is on its way: wait for it
  EXPECT_TRUE(p.schedule(w, b).scheduled.empty());
  b.max_batch_size = 2;  // the batch is full anyway: go
  EXPECT_EQ(p.schedule(w, b).scheduled, (std::vector<uint64_t>{1, 2}));
  b = one_rank(0, 4, -1, 100);  // nothing arriving: go with what is there
  EXPECT_EQ(p.schedule(w, b).scheduled, (std::vector<uint64_t>{1, 2}));
}

TEST(StaticPolicy, PadsEveryMemberToTheBatchsLongestPromptAndOutput) {
  // Request 1: 5 prompt tokens, 10 new (1 block of 16 alone); request 2: 100 prompt tokens, 2 new (7 blocks).
  // Together each holds 100 + 10 − 1 = 109 tokens: 7 blocks, 14 for the batch.
  StaticPolicy p;
  std::vector<WaitingView> w = {{1, 5, 1, 10}, {2, 100, 7, 2}};
  BatchView b = one_rank(0, 4, 14, 1000);
  auto d = p.schedule(w, b);
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(d.kv_blocks, (std::vector<int64_t>{7, 7}));
  b.ranks[0].free_kv_blocks = 13;  // the padded pair does not fit: the first runs alone, reserving its own block
  d = p.schedule(w, b);
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1}));
  EXPECT_EQ(d.kv_blocks, (std::vector<int64_t>{1}));
}

TEST(PickRank, MostFreeBlocksThenMostFreeSlotsThenLowestIndex) {
  // Rank 2 has the most free blocks; rank 1 has no slot.
  EXPECT_EQ(pick_rank({{2, 5}, {0, 9}, {1, 7}}, 3), 2);
  // Too big for the rank with most blocks? Nowhere else either: it fits where it fits, not by total room.
  EXPECT_EQ(pick_rank({{2, 5}, {2, 5}}, 6), -1);
  // Equal blocks: fewest sequences (most free slots); all equal: the lowest index.
  EXPECT_EQ(pick_rank({{1, 4}, {3, 4}}, 1), 1);
  EXPECT_EQ(pick_rank({{3, 4}, {3, 4}}, 1), 0);
  // Blocks not counted: the most free slots.
  EXPECT_EQ(pick_rank({{1, -1}, {2, -1}}, 0), 1);
  EXPECT_EQ(pick_rank({{0, -1}, {0, -1}}, 0), -1);
}

TEST(ContinuousPolicy, PlacesEachRequestWhereMostRoomIsLeft) {
  ContinuousPolicy p;
  // Two ranks of 3 free blocks; each request reserves 3: one per rank, the third waits (6 blocks are free in all,
  // but on no single rank).
  std::vector<WaitingView> w = {{1, 5, 3}, {2, 5, 3}, {3, 5, 3}};
  BatchView b;
  b.max_batch_size = 8;
  b.ranks = {{4, 3}, {4, 3}};
  b.free_step_tokens = 100;
  auto d = p.schedule(w, b);
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(d.ranks, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(d.deferred, (std::vector<uint64_t>{3}));
  // A head that fits no rank holds the queue even when a later, smaller one would fit.
  w = {{1, 5, 4}, {2, 5, 1}};
  d = p.schedule(w, b);
  EXPECT_TRUE(d.scheduled.empty());
  // Sequence slots are per rank too: one free slot on each rank takes two requests, whatever max_batch_size says.
  b.ranks = {{1, -1}, {1, -1}};
  w = {{1, 5, 0}, {2, 5, 0}, {3, 5, 0}};
  d = p.schedule(w, b);
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(d.ranks, (std::vector<uint32_t>{0, 1}));
}

TEST(StaticPolicy, SpreadsAPaddedBatchOverTheRanks) {
  StaticPolicy p;
  // Each member pads to 3 blocks (5 prompt tokens + 40 new: 44 positions of 16); a rank of 7 free blocks holds two.
  std::vector<WaitingView> w = {{1, 5, 1, 40}, {2, 5, 1, 40}, {3, 5, 1, 40}, {4, 5, 1, 40}, {5, 5, 1, 40}};
  BatchView b;
  b.max_batch_size = 8;
  b.ranks = {{4, 7}, {4, 7}};
  auto d = p.schedule(w, b);
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(d.ranks, (std::vector<uint32_t>{0, 1, 0, 1}));
  EXPECT_EQ(d.kv_blocks, (std::vector<int64_t>{3, 3, 3, 3}));
  EXPECT_EQ(d.deferred, (std::vector<uint64_t>{5}));
  // Without KV counting, slots bound it: two per rank.
  b.ranks = {{2, -1}, {2, -1}};
  d = p.schedule(w, b);
  EXPECT_EQ(d.ranks, (std::vector<uint32_t>{0, 1, 0, 1}));
  EXPECT_TRUE(d.kv_blocks.empty());
}

TEST(MakePolicy, NamesTheChoices) {
  EXPECT_STREQ((*make_policy("continuous"))->name(), "continuous");
  EXPECT_STREQ((*make_policy("static"))->name(), "static");
  auto bad = make_policy("fifo");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "scheduler.policy must be continuous or static, got 'fifo'");
}

}  // namespace
}  // namespace zi::server
