#include "engine/zero/placement.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/core/size.h"

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
  in.prefetch_depth = 2;
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

// Auto ring (prefetch_depth 0): 20 ms of copy beyond the layer in use, 2..8 slots, fewer when memory is short.
TEST(Placement, AutoRingHoldsTwentyMillisecondsOfCopy) {
  // A 7B fp16 layer (405 MB) at 55 GB/s copies in 7.4 ms: 1 + ceil(20 / 7.4) = 4 slots.
  EXPECT_EQ(auto_prefetch_depth(404750336, 55e9), 4u);
  // At 25 GB/s (the assumption when nothing was measured) 16.2 ms: 1 + 2 = 3.
  EXPECT_EQ(auto_prefetch_depth(404750336, 0), 3u);
  // Huge layers (a 4-bit BLOOM-176B layer, 1.0 GB: 18 ms) still get 2 behind the one in use.
  EXPECT_EQ(auto_prefetch_depth(1000000000, 55e9), 3u);
  EXPECT_EQ(auto_prefetch_depth(4000000000, 55e9), 2u);
  // Tiny layers are capped at 8.
  EXPECT_EQ(auto_prefetch_depth(1 << 20, 55e9), 8u);

  PlacementInput in = llama7b();
  in.tier = OffloadTier::kCpu;
  in.gpu_weights_budget = 1;  // every layer streams
  in.h2d_bytes_per_second = 55e9;
  auto p = plan_placement(in);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->prefetch_depth, 4u);
  EXPECT_EQ(p->ring_bytes, 4ull * 404750336);
  // GPU memory for globals, KV, activations and only 3 slots: auto takes 3, a fixed 4 is refused.
  in.gpu_memory_bytes = in.global_bytes + in.kv_cache_bytes + in.activation_bytes + 3ull * 404750336 + MiB;
  p = plan_placement(in);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->prefetch_depth, 3u);
  EXPECT_EQ(p->num_streamed, 32);
  in.prefetch_depth = 4;
  EXPECT_FALSE(plan_placement(in).ok());
  in.prefetch_depth = 17;
  p = plan_placement(in);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("0 (auto) or 1..16"), std::string::npos) << p.status();
}

TEST(Placement, ParsesSizes) {
  EXPECT_EQ(*parse_size("2GiB", "x"), 2 * GiB);
  EXPECT_EQ(*parse_size("512MiB", "x"), 512 * MiB);
  EXPECT_EQ(*parse_size("1.5GB", "x"), 1500000000u);
  EXPECT_EQ(*parse_size("4096", "x"), 4096u);
  auto bad = parse_size("lots", "offload.gpu_weights_budget");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("offload.gpu_weights_budget"), std::string::npos);
  EXPECT_FALSE(parse_size("2 parsecs", "x").ok());
}

// One parser for every size flag and key: units in any case, decimals when the bytes come out whole.
TEST(Placement, SizeUnitsInAnyCase) {
  for (const char* s : {"2GiB", "2gib", "2GIB", "2Gib", "2 GiB", "2g", "2G", " 2GiB "})
    EXPECT_EQ(parse_size(s, "x").value_or(0), 2 * GiB) << s;
  for (const char* s : {"2GB", "2gb", "2Gb"}) EXPECT_EQ(parse_size(s, "x").value_or(0), 2000000000u) << s;
  EXPECT_EQ(parse_size("512kib", "x").value_or(0), 512u << 10);
  EXPECT_EQ(parse_size("3KB", "x").value_or(0), 3000u);
  EXPECT_EQ(parse_size("1TiB", "x").value_or(0), uint64_t{1} << 40);
  EXPECT_EQ(parse_size("7b", "x").value_or(0), 7u);
  EXPECT_EQ(parse_size("0", "x").value_or(1), 0u);
}

TEST(Placement, SizeDecimalsMustComeToWholeBytes) {
  EXPECT_EQ(parse_size("1.5GiB", "x").value_or(0), 1610612736u);
  EXPECT_EQ(parse_size("0.5KiB", "x").value_or(0), 512u);
  EXPECT_EQ(parse_size("2.0", "x").value_or(0), 2u);
  auto frac = parse_size("0.3B", "x");
  ASSERT_FALSE(frac.ok());
  EXPECT_EQ(frac.status().message(), "x: is not a whole number of bytes, got '0.3B'");
  EXPECT_FALSE(parse_size("1.1", "x").ok());
  EXPECT_FALSE(parse_size("1.5.2GiB", "x").ok());
  EXPECT_FALSE(parse_size(".", "x").ok());
}

TEST(Placement, SizeErrorsNameTheFlagOrKey) {
  auto unit = parse_size("2 parsecs", "--kv-cache-bytes");
  ASSERT_FALSE(unit.ok());
  EXPECT_EQ(unit.status().message(),
            "--kv-cache-bytes: unknown size unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, in any case), "
            "got '2 parsecs'");
  auto word = parse_size("lots", "test.yaml: kv_cache.max_bytes");
  ASSERT_FALSE(word.ok());
  EXPECT_EQ(word.status().message(),
            "test.yaml: kv_cache.max_bytes: must be a size such as 2GiB, 512MiB, 1.5GB or 1048576, got 'lots'");
  for (const char* s : {"", "  ", "GiB", "-1", "-1GiB", "+1", "1e3", "0x10", "2 GiB extra"}) {
    auto r = parse_size(s, "--what");
    ASSERT_FALSE(r.ok()) << "'" << s << "' was read as " << *r;
    EXPECT_EQ(r.status().message().rfind("--what: ", 0), 0u) << r.status();
  }
}

TEST(Placement, SizeOverflowIsAnError) {
  EXPECT_EQ(parse_size("18446744073709549568", "x").value_or(0), 18446744073709549568ull);  // 2^64 - 2^11
  EXPECT_EQ(parse_size("16777215TiB", "x").value_or(0), 16777215ull << 40);  // 2^64 - 2^40
  for (const char* s :
       {"16EiB", "16777216TiB", "17179869184GiB", "18446744073709551616", "99999999999999999999999", "1e400"}) {
    auto r = parse_size(s, "x");
    ASSERT_FALSE(r.ok()) << s << " was read as " << *r;
  }
  EXPECT_EQ(parse_size("16777216TiB", "x").status().message(),
            "x: is larger than 2^64 - 1 bytes, got '16777216TiB'");
  EXPECT_EQ(parse_size("20000000000000000000", "x").status().message(),
            "x: is larger than 2^64 - 1 bytes, got '20000000000000000000'");
}

// A layer takes at most kLayerChunkRows (8192) rows at a time: rows past the chunk cost only their residual
// stream and pending addend (2·hidden elements each). Llama-2-7B shape, fp16, 16 sequences (fp32 logits twice).
TEST(ActivationBytes, RowsPastOneChunkCostTheirResidualStreamOnly) {
  // 8192 · (8·4096 + 4·11008) · 2 + 2 · 16 · 32000 · 4 = 1,258,291,200 + 4,096,000
  EXPECT_EQ(activation_bytes_for_rows(4096, 11008, 32000, 8192, 16, 2), 1262387200u);
  // + 1000 more rows · 2 · 4096 · 2 = 16,384,000
  EXPECT_EQ(activation_bytes_for_rows(4096, 11008, 32000, 9192, 16, 2), 1278771200u);
  // below a chunk nothing changed: 100 · 76800 · 2 + 4,096,000
  EXPECT_EQ(activation_bytes_for_rows(4096, 11008, 32000, 100, 16, 2), 19456000u);
  // a model whose sequences are never cut (dynamic-NTK RoPE: chunks unbounded): every row's intermediates,
  // 9192 · 76800 · 2 + 4,096,000
  EXPECT_EQ(activation_bytes_for_rows(4096, 11008, 32000, 9192, 16, 2, INT64_MAX), 1415987200u);
}

}  // namespace
}  // namespace zi
