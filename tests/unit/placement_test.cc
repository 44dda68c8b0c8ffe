#include "engine/zero/placement.h"

#include <gtest/gtest.h>

namespace zi {
namespace {

constexpr uint64_t GiB = uint64_t{1} << 30, MiB = uint64_t{1} << 20;

// Llama-2-7B in fp16: 32 layers of 202.4M parameters, embeddings + head 2 × 32000 × 4096.
PlacementInput llama7b() {
  PlacementInput in;
  in.layer_bytes.assign(32, 404750336);
  in.global_bytes = 2ull * 32000 * 4096 * 2 + 4096 * 2;
  in.kv_cache_bytes = 8 * GiB;
  in.activation_bytes = 1 * GiB;
  in.gpu_memory_bytes = 78 * GiB;
  return in;
}

TEST(Placement, EverythingResidentWhenNoOffloadAndItFits) {
  auto p = plan_placement(llama7b());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->num_streamed, 0);
  EXPECT_EQ(p->streamed_bytes_per_step, 0u);
  EXPECT_EQ(p->resident_weight_bytes, llama7b().global_bytes + 32ull * 404750336);
}

TEST(Placement, NoOffloadThatDoesNotFitNamesNeededAvailableAndTheSetting) {
  PlacementInput in = llama7b();
  in.gpu_memory_bytes = 10 * GiB;
  auto p = plan_placement(in);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("10.00 GiB available"), std::string::npos) << p.status();
  EXPECT_NE(p.status().message().find("offload.tier"), std::string::npos) << p.status();
}

TEST(Placement, TwoGiBBudgetStreamsAllButTheLayersThatFitAfterTheEmbeddings) {
  PlacementInput in = llama7b();
  in.tier = OffloadTier::kCpu;
  in.gpu_weights_budget = 2 * GiB;
  auto p = plan_placement(in);
  ASSERT_TRUE(p.ok()) << p.status();
  // (2048 MiB − 500 MiB of embeddings/head) / 386 MiB per layer → 4 resident, the first four; 28 streamed.
  EXPECT_EQ(p->num_streamed, 28);
  EXPECT_EQ(p->layers[0], LayerTier::kGpu);
  EXPECT_EQ(p->layers[3], LayerTier::kGpu);
  EXPECT_EQ(p->layers[4], LayerTier::kCpu);
  EXPECT_LE(p->resident_weight_bytes, 2 * GiB);
  EXPECT_EQ(p->streamed_bytes_per_step, 28ull * 404750336);
  EXPECT_EQ(p->ring_bytes, 2ull * 404750336);
  EXPECT_EQ(p->host_bytes_per_rank, 28ull * 404750336);
}

TEST(Placement, ZeroThreeSplitsHostAndPcieBytesOverRanks) {
  PlacementInput in = llama7b();
  in.tier = OffloadTier::kNvme;
  in.gpu_weights_budget = 1;  // stream everything
  in.num_ranks = 4;
  auto p = plan_placement(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->num_streamed, 32);
  EXPECT_EQ(p->pcie_bytes_per_step, 8ull * 404750336);
  EXPECT_EQ(p->disk_bytes_per_rank, 8ull * 404750336);
  EXPECT_EQ(p->host_bytes_per_rank, 0u);
}

TEST(Placement, WithoutABudgetLayersStayResidentWhileTheyFit) {
  PlacementInput in = llama7b();
  in.tier = OffloadTier::kCpu;
  in.gpu_memory_bytes = 12 * GiB;
  auto p = plan_placement(in);
  ASSERT_TRUE(p.ok());
  EXPECT_GT(p->num_streamed, 0);
  EXPECT_LT(p->num_streamed, 32);
  EXPECT_LE(p->gpu_total_bytes, 12 * GiB);
}

TEST(Placement, RingThatCannotFitIsRefusedNamingTheSettings) {
  PlacementInput in = llama7b();
  in.tier = OffloadTier::kCpu;
  in.gpu_memory_bytes = 9 * GiB;
  auto p = plan_placement(in);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("prefetch_depth"), std::string::npos) << p.status();
}

TEST(Placement, ParsesSizes) {
  EXPECT_EQ(*parse_bytes("2GiB", "x"), 2 * GiB);
  EXPECT_EQ(*parse_bytes("512MiB", "x"), 512 * MiB);
  EXPECT_EQ(*parse_bytes("1.5GB", "x"), 1500000000u);
  EXPECT_EQ(*parse_bytes("4096", "x"), 4096u);
  auto bad = parse_bytes("lots", "offload.gpu_weights_budget");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("offload.gpu_weights_budget"), std::string::npos);
  EXPECT_FALSE(parse_bytes("2 parsecs", "x").ok());
}

}  // namespace
}  // namespace zi
