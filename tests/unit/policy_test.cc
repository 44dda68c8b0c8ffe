// The scheduling policies as small pure classes: what each admits from the waiting queue given free slots, free KV
// blocks and the step's token budget (the scheduler itself: scheduler_test.cc).
#include <gtest/gtest.h>

#include "server/scheduler/policy.h"

namespace zi::server {
namespace {

TEST(ContinuousPolicy, FillsFreeSlotsFromTheHeadOfTheQueue) {
  ContinuousPolicy p;
  std::vector<WaitingView> w = {{1, 5, 0}, {2, 5, 0}, {3, 5, 0}};
  auto d = p.schedule(w, {2, 4, -1, 100});
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(d.deferred, (std::vector<uint64_t>{3}));
  d = p.schedule(w, {4, 4, -1, 100});
  EXPECT_TRUE(d.scheduled.empty());
  EXPECT_EQ(d.deferred.size(), 3u);
}

TEST(ContinuousPolicy, WaitsForKvBlocksAndStepTokensWithoutOvertaking) {
  ContinuousPolicy p;
  std::vector<WaitingView> w = {{1, 5, 3}, {2, 5, 6}, {3, 5, 1}};
  // Blocks: 1 fits (3 of 8), 2 does not (6 of 5 left) and 3, though small, may not overtake it.
  auto d = p.schedule(w, {0, 8, 8, 100});
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1}));
  EXPECT_EQ(d.deferred, (std::vector<uint64_t>{2, 3}));
  // Tokens: the first prompt takes the step's last 4 tokens; nobody else joins this step.
  d = p.schedule(w, {0, 8, -1, 4});
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1}));
  d = p.schedule(w, {0, 8, -1, 0});
  EXPECT_TRUE(d.scheduled.empty());
}

TEST(StaticPolicy, AdmitsABatchOnlyIntoAnEmptyBatch) {
  StaticPolicy p;
  std::vector<WaitingView> w = {{1, 5, 2}, {2, 5, 2}, {3, 5, 2}};
  auto d = p.schedule(w, {0, 2, -1, 0});  // step tokens do not matter: prefill is chunked by the scheduler
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
  d = p.schedule(w, {1, 2, -1, 100});     // one member still running: nothing joins
  EXPECT_TRUE(d.scheduled.empty());
  d = p.schedule(w, {0, 4, 5, 100});      // KV blocks bound the batch too
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
}

TEST(StaticPolicy, WaitsForArrivingRequestsUnlessTheBatchIsFull) {
  StaticPolicy p;
  std::vector<WaitingView> w = {{1, 5, 0}, {2, 5, 0}};
  BatchView b{0, 4, -1, 100};
  b.arriving = 1;  // a third request is on its way: wait for it
  EXPECT_TRUE(p.schedule(w, b).scheduled.empty());
  b.max_batch_size = 2;  // the batch is full anyway: go
  EXPECT_EQ(p.schedule(w, b).scheduled, (std::vector<uint64_t>{1, 2}));
  b = BatchView{0, 4, -1, 100};  // nothing arriving: go with what is there
  EXPECT_EQ(p.schedule(w, b).scheduled, (std::vector<uint64_t>{1, 2}));
}

TEST(StaticPolicy, PadsEveryMemberToTheBatchsLongestPromptAndOutput) {
  // Request 1: 5 prompt tokens, 10 new (1 block of 16 alone); request 2: 100 prompt tokens, 2 new (7 blocks).
  // Together each holds 100 + 10 − 1 = 109 tokens: 7 blocks, 14 for the batch.
  StaticPolicy p;
  std::vector<WaitingView> w = {{1, 5, 1, 10}, {2, 100, 7, 2}};
  BatchView b{0, 4, 14, 1000};
  auto d = p.schedule(w, b);
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(d.kv_blocks, (std::vector<int64_t>{7, 7}));
  b.free_kv_blocks = 13;  // the padded pair does not fit: the first runs alone, reserving its own block
  d = p.schedule(w, b);
  EXPECT_EQ(d.scheduled, (std::vector<uint64_t>{1}));
  EXPECT_EQ(d.kv_blocks, (std::vector<int64_t>{1}));
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
