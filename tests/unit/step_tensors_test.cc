// The packed step inputs (engine/model/step_tensors.h) and the batch buckets decode graphs pad to
// (engine/runtime/step_graphs.h), on the CPU backend.
#include "engine/model/step_tensors.h"

#include <gtest/gtest.h>

#include <vector>

#include "engine/runtime/step_graphs.h"

namespace zi {
namespace {

class StepTensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    be_ = make_cpu_backend(1);
    KvCacheShape shape;
    shape.num_layers = 1;
    shape.slots = 4;
    shape.context = 64;
    shape.n_kv_heads = 1;
    shape.head_dim = 2;
    shape.block_size = 4;
    kv_ = std::make_unique<KvCache>(*be_, shape);
    a_ = *kv_->acquire();
    b_ = *kv_->acquire();
    // Sequence a: 5 tokens cached (2 blocks), decodes one; sequence b: a prefill of 3.
    ASSERT_TRUE(kv_->reserve(a_, 5).ok());
    batch_.tokens = {11, 21, 22, 23};
    batch_.seqs = {{a_, 0, 1, 5}, {b_, 1, 3, 0}};
    batch_.logit_rows = {0, 3};
  }

  std::vector<int32_t> ints(const Tensor& t) {
    const int32_t* p = t.data_as<int32_t>();
    return std::vector<int32_t>(p, p + t.numel());
  }

  std::unique_ptr<Backend> be_;
  std::unique_ptr<KvCache> kv_;
  int a_ = -1, b_ = -1;
  ForwardBatch batch_;
};

TEST_F(StepTensorsTest, ExactShapePacksEveryPartOnce) {
  const StepShape shape = exact_step_shape(batch_, *kv_);
  EXPECT_EQ(shape, (StepShape{4, 2, 2, 2}));  // a holds 6 positions = 2 blocks of 4
  auto step = upload_step(*be_, batch_, *kv_);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(ints(step->ids), (std::vector<int32_t>{11, 21, 22, 23}));
  EXPECT_EQ(ints(step->attn.positions), (std::vector<int32_t>{5, 0, 1, 2}));
  EXPECT_EQ(ints(step->attn.seqs_device), (std::vector<int32_t>{a_, 0, 1, 5, b_, 1, 3, 0}));
  const std::vector<int32_t>& ta = kv_->block_table(a_);
  const std::vector<int32_t>& tb = kv_->block_table(b_);
  ASSERT_EQ(ta.size(), 2u);
  ASSERT_EQ(tb.size(), 1u);  // reserved by the packing: 3 positions
  EXPECT_EQ(ints(step->attn.block_tables), (std::vector<int32_t>{ta[0], ta[1], tb[0], -1}));
  EXPECT_EQ(step->attn.block_tables_host, ints(step->attn.block_tables));
  EXPECT_EQ(ints(step->logit_rows), (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(step->attn.total_rows, 4);
  EXPECT_EQ(step->attn.max_past_plus_new, 6);
  EXPECT_EQ(step->attn.max_blocks, 2);
  EXPECT_EQ(step->packed.numel(), shape.packed_ints());
}

TEST_F(StepTensorsTest, PaddedShapeAddsEmptySequencesRowsAndColumns) {
  const StepShape shape{6, 3, 4, 3};
  std::vector<int32_t> packed;
  AttentionBatch attn;
  ASSERT_TRUE(pack_step(batch_, *kv_, shape, packed, attn).ok());
  ASSERT_EQ(static_cast<int64_t>(packed.size()), shape.packed_ints());
  Tensor dev = be_->from_host(DType::kI32, {shape.packed_ints()}, packed.data());
  const StepTensors step = step_tensors_view(dev, shape, attn);
  EXPECT_EQ(ints(step.ids), (std::vector<int32_t>{11, 21, 22, 23, 0, 0}));
  EXPECT_EQ(ints(step.attn.positions), (std::vector<int32_t>{5, 0, 1, 2, 0, 0}));
  // The padding sequence starts after the last real row and has no rows.
  EXPECT_EQ(ints(step.attn.seqs_device), (std::vector<int32_t>{a_, 0, 1, 5, b_, 1, 3, 0, 0, 4, 0, 0}));
  const std::vector<int32_t>& ta = kv_->block_table(a_);
  const std::vector<int32_t>& tb = kv_->block_table(b_);
  EXPECT_EQ(ints(step.attn.block_tables),
            (std::vector<int32_t>{ta[0], ta[1], -1, -1, tb[0], -1, -1, -1, -1, -1, -1, -1}));
  EXPECT_EQ(ints(step.logit_rows), (std::vector<int32_t>{0, 3, 0}));
  ASSERT_EQ(step.attn.seqs.size(), 3u);
  EXPECT_EQ(step.attn.seqs[2].n_new, 0);
  EXPECT_EQ(step.attn.total_rows, 6);
  EXPECT_EQ(step.attn.max_blocks, 4);
}

TEST_F(StepTensorsTest, ShapeSmallerThanTheBatchIsRefused) {
  std::vector<int32_t> packed;
  AttentionBatch attn;
  for (const StepShape& small : {StepShape{3, 2, 2, 2}, StepShape{4, 1, 2, 2}, StepShape{4, 2, 2, 1},
                                 StepShape{4, 2, 1, 2}}) {
    const Status st = pack_step(batch_, *kv_, small, packed, attn);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find("does not fit a step shape"), std::string::npos) << st;
  }
}

TEST_F(StepTensorsTest, OutOfBlocksIsResourceExhausted) {
  KvCacheShape shape = kv_->shape();
  shape.num_blocks = 3;  // 12 positions
  KvCache small(*be_, shape);
  const int s = *small.acquire();
  ForwardBatch big;
  big.tokens.assign(13, 1);
  big.seqs = {{s, 0, 13, 0}};
  std::vector<int32_t> packed;
  AttentionBatch attn;
  const Status st = pack_step(big, small, exact_step_shape(big, small), packed, attn);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_EQ(small.free_blocks(), 3);  // nothing taken
}

TEST(StepGraphBuckets, PowersOfTwoThenMultiplesOfEight) {
  const std::vector<std::pair<int64_t, int64_t>> cases = {{1, 1},   {2, 2},   {3, 4},   {4, 4},  {5, 8},
                                                          {8, 8},   {9, 16},  {16, 16}, {17, 24}, {63, 64},
                                                          {64, 64}, {65, 72}, {100, 104}};
  for (const auto& [n, bucket] : cases) EXPECT_EQ(StepGraphs::batch_bucket(n, 1024), bucket) << n;
  EXPECT_EQ(StepGraphs::batch_bucket(0, 64), 0);
  EXPECT_EQ(StepGraphs::batch_bucket(65, 64), 0);   // past max_batch: eager
  EXPECT_EQ(StepGraphs::batch_bucket(13, 14), 14);  // the last bucket is max_batch itself
}

}  // namespace
}  // namespace zi
