// The throughput planner (engine/zero/planner/) on a toy model whose numbers can be followed by hand: every layer
// 1 GiB, a link of 1 GiB/s (a layer streams in 1 s), HBM at 16 GiB/s, 1 TFLOPS of GEMM, prompts of 4 tokens and
// 3 generated (KV blocks of 1 token, so a sequence holds exactly 7 tokens). Expected plans and times are worked out
// in the comments from the equations in docs/DESIGN.md "The throughput planner", never by calling the cost model.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/zero/planner/rates.h"
#include "engine/zero/planner/throughput_planner.h"

namespace zi {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t GiB = uint64_t{1} << 30;
constexpr uint64_t MiB = uint64_t{1} << 20;

ModelShape toy(int layers, uint64_t kv_per_token = MiB) {
  ModelShape m;
  m.layers = layers;
  m.layer_bytes = GiB;
  m.global_bytes = GiB;
  m.head_read_bytes = 0;
  m.kv_bytes_per_token = kv_per_token;
  m.linear_params = 1e9;  // 2·10⁹ FLOPs per token
  m.head_params = 0;
  m.attention_flops_per_pair = 0;
  // Activations: rows × (8·128 + 0) × 1 byte = 1 KiB per row, no logits.
  m.hidden = 128;
  m.intermediate = 0;
  m.vocab = 0;
  m.element_bytes = 1;
  return m;
}

Rates toy_rates() {
  Rates r;
  r.h2d_bytes_per_second = static_cast<double>(GiB);
  r.hbm_bytes_per_second = 16.0 * GiB;
  r.cpu_attention_bytes_per_second = static_cast<double>(GiB);
  r.disk_bytes_per_second = 0.5 * GiB;
  r.gemm = {{1, 1.0}};
  r.gpu_context_bytes = GiB / 2;
  return r;
}

PlannerInput toy_input(int layers, uint64_t gpu, uint64_t host, uint32_t batch, uint64_t kv_per_token = MiB) {
  PlannerInput in;
  in.model = toy(layers, kv_per_token);
  in.rates = toy_rates();
  in.workload = Workload{4, 3, 1};
  in.limits.gpu_bytes = gpu;
  in.limits.host_bytes = host;
  in.limits.disk_bytes = 100 * GiB;
  in.fixed_batch = batch;
  return in;
}

// Case 1: 4 layers fit. GPU: context 0.5 + slack 1 + weights 1 + 4 = 6.5 GiB, KV 2 × 7 MiB, activations 8 KiB.
// Prefill, both prompts in one step of 8 rows: max(weights 4 GiB / 16 GiB/s = 0.25 s, 2·10⁹ × 8 / 10¹² = 0.016 s)
// = 0.25 s (two steps of 4 rows would take 0.5 s). Decode: tw = max(0.25, 2·10⁹ × 2 / 10¹²) = 0.25 s plus KV
// 2 × (4 + 3/2) × 1 MiB = 11 MiB at 16 GiB/s = 11/16384 s. Total 0.25 + 2 × step; 6 tokens.
TEST(Planner, AModelThatFitsStaysResidentWithItsKvOnTheGpu) {
  auto plan = plan_throughput(toy_input(4, 16 * GiB, 64 * GiB, 2));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->choice.batch, 2u);
  EXPECT_EQ(plan->choice.resident_layers, 4);
  EXPECT_EQ(plan->choice.kv, KvPlace::kGpu);
  EXPECT_EQ(plan->choice.step_tokens, 8u);
  EXPECT_EQ(plan->memory.gpu(), 6 * GiB + GiB / 2 + 14 * MiB + 8 * 1024);
  EXPECT_EQ(plan->memory.host(), 0u);
  const double step = 0.25 + 11.0 / 16384.0;
  EXPECT_DOUBLE_EQ(plan->prediction.prefill_seconds, 0.25);
  EXPECT_DOUBLE_EQ(plan->prediction.decode_step_seconds, step);
  EXPECT_DOUBLE_EQ(plan->prediction.tokens_per_second, 6.0 / (0.25 + 2 * step));
  EXPECT_THAT(plan->reasons[1], HasSubstr("all 4 resident"));
}

// Case 2: 8 layers under a 10 GiB limit. Fixed: 0.5 + 1 + 1 = 2.5 GiB (+ 14 MiB KV, 8 KiB activations). The ring
// holds 2 slots (1 + ceil(20 ms × 1 GiB/s / 1 GiB) = 2), so k resident layers need 2.5 + k + min(2, 8 − k) GiB:
// k = 5 → 9.5 GiB fits, k = 6 and 7 → 10.5 GiB, k = 8 → 10.5 GiB do not. 3 layers stream: 3 s of bus per step,
// above the 8 layers' HBM reads (0.5 s). Prefill in one step: 3 s; decode step 3 s; 6 tokens in 9 s.
TEST(Planner, WhenTheModelDoesNotFitItStreamsTheFewestLayers) {
  auto plan = plan_throughput(toy_input(8, 10 * GiB, 64 * GiB, 2));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->choice.resident_layers, 5);
  EXPECT_EQ(plan->choice.stream_tier, LayerTier::kCpu);
  EXPECT_EQ(plan->choice.prefetch_depth, 2u);
  EXPECT_EQ(plan->choice.kv, KvPlace::kGpu);
  EXPECT_EQ(plan->memory.gpu(), 9 * GiB + GiB / 2 + 14 * MiB + 8 * 1024);
  EXPECT_EQ(plan->memory.host(), 3 * GiB);
  EXPECT_DOUBLE_EQ(plan->prediction.prefill_seconds, 3.0);
  EXPECT_DOUBLE_EQ(plan->prediction.decode_step_seconds, 3.0);
  EXPECT_DOUBLE_EQ(plan->prediction.tokens_per_second, 6.0 / 9.0);
}

// Case 3: KV of 64 MiB per token: 448 MiB a sequence, 1.75 GiB for 4. On the GPU it leaves room for 3 resident
// layers (2.5 + 3 + 2 + 1.75 = 9.25 GiB; 4 would be 10.25): 5 stream, 5 s a step, 5 + 2 × 5 = 15 s for 12 tokens
// (0.8 tokens/s). In host memory 5 stay resident (9.5 GiB + 16 KiB): 3 s of bus. K = 4 × 5.5 × 64 MiB = 1.375 GiB:
// f = (3 + 1.375 − 0.5 − 1.375/16) / (1.375 − 1.375/16 + 1.375) > 1 → 1, all on the CPU: 0.5 + 1.375 s beside 3 s
// of bus. 3 + 2 × 3 = 9 s: 4/3 tokens/s.
TEST(Planner, KvMovesToHostWhenGpuMemoryCannotHoldTheBatchsCacheAndThatIsFaster) {
  auto plan = plan_throughput(toy_input(8, 10 * GiB, 64 * GiB, 4, 64 * MiB));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->choice.kv, KvPlace::kHost);
  EXPECT_EQ(plan->choice.resident_layers, 5);
  EXPECT_DOUBLE_EQ(plan->prediction.cpu_fraction, 1.0);
  EXPECT_EQ(plan->memory.host(), 3 * GiB + 4 * 448 * MiB);
  EXPECT_DOUBLE_EQ(plan->prediction.prefill_seconds, 3.0);
  EXPECT_DOUBLE_EQ(plan->prediction.decode_step_seconds, 3.0);
  EXPECT_DOUBLE_EQ(plan->prediction.tokens_per_second, 12.0 / 9.0);
  EXPECT_THAT(plan->reasons[3], HasSubstr("0.80 tokens/s at best"));  // the GPU-KV alternative, by hand above
}

// Case 2 with host memory too small for 3 streamed layers (3 GiB > 2 GiB): the NVMe tier, whose host need is its
// 2 staging slots (2 GiB). Its bus is min(disk 0.5, link 1) GiB/s: 6 s a step; 6 + 2 × 6 = 18 s for 6 tokens.
TEST(Planner, NvmeIsChosenOnlyWhenHostMemoryCannotHoldTheStreamedLayers) {
  auto roomy = plan_throughput(toy_input(8, 10 * GiB, 64 * GiB, 2));
  ASSERT_TRUE(roomy.ok()) << roomy.status();
  EXPECT_EQ(roomy->choice.stream_tier, LayerTier::kCpu);
  auto tight = plan_throughput(toy_input(8, 10 * GiB, 2 * GiB, 2));
  ASSERT_TRUE(tight.ok()) << tight.status();
  EXPECT_EQ(tight->choice.stream_tier, LayerTier::kNvme);
  EXPECT_EQ(tight->choice.resident_layers, 5);
  EXPECT_EQ(tight->memory.host(), 2 * GiB);
  EXPECT_EQ(tight->memory.disk, 3 * GiB);
  EXPECT_DOUBLE_EQ(tight->prediction.decode_step_seconds, 6.0);
  EXPECT_DOUBLE_EQ(tight->prediction.tokens_per_second, 6.0 / 18.0);
  // Without a disk (no rate or no room) the same host limit is refused, naming both.
  PlannerInput no_disk = toy_input(8, 10 * GiB, 2 * GiB, 2);
  no_disk.limits.disk_bytes = 0;
  auto refused = plan_throughput(no_disk);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("memory.host_limit 2.00 GiB (2147483648 bytes)"));
}

// The least deployment: KV in host memory, one sequence, every layer streamed through 2 slots:
// 0.5 + 1 + 1 + 2 GiB + 4 KiB of activations (4 rows) = 4831842304 bytes, over a 3 GiB limit.
TEST(Planner, ALimitBelowTheMinimumIsRefusedNamingTheBytes) {
  auto plan = plan_throughput(toy_input(8, 3 * GiB, 64 * GiB, 0));
  ASSERT_FALSE(plan.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(plan.status()));
  EXPECT_THAT(plan.status().message(), HasSubstr("memory.gpu_limit 3.00 GiB (3221225472 bytes)"));
  EXPECT_THAT(plan.status().message(), HasSubstr("(4831842304 bytes)"));
}

TEST(Planner, AMissingRateIsNamed) {
  PlannerInput in = toy_input(8, 10 * GiB, 64 * GiB, 2);
  in.rates.gemm.clear();
  auto plan = plan_throughput(in);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("gemm"));
}

// With GEMMs far faster than the weight reads, decode and prefill cost the same at any batch while memory
// allows, so the planner takes the largest batch that fits: (10 − 6.5) GiB of KV + activations at 7 MiB + 4 KiB a
// sequence (KV on the GPU) would hold 508; with the KV in host memory the batch is bound by the candidates (1024).
TEST(Planner, FreeComputeTakesTheLargestBatchThatFits) {
  PlannerInput in = toy_input(4, 10 * GiB, 64 * GiB, 0);
  in.rates.gemm = {{1, 1e9}};
  in.rates.cpu_attention_bytes_per_second = 1e15;
  auto plan = plan_throughput(in);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->choice.batch, 1024u);
  EXPECT_EQ(plan->choice.resident_layers, 4);
}

// A realistic shape (OPT-30B at 4 bits: 48 layers of ~0.35 GiB, 1.4 GiB of embeddings/head, 1.4 MiB of fp16 KV per
// token) with H100-like rates, for the monotonic properties over a grid.
PlannerInput opt30b_like(uint64_t gpu, uint64_t host, double h2d) {
  PlannerInput in;
  in.model.layers = 48;
  in.model.layer_bytes = 380 * MiB;
  in.model.global_bytes = 1400 * MiB;
  in.model.head_read_bytes = 700 * MiB;
  in.model.kv_bytes_per_token = 2ull * 48 * 7168 * 2;
  in.model.linear_params = 48.0 * 12 * 7168.0 * 7168.0;
  in.model.head_params = 7168.0 * 50272;
  in.model.attention_flops_per_pair = 4.0 * 48 * 7168;
  in.model.hidden = 7168;
  in.model.intermediate = 28672;
  in.model.vocab = 50272;
  in.model.element_bytes = 2;
  in.rates.h2d_bytes_per_second = h2d;
  in.rates.hbm_bytes_per_second = 3e12;
  in.rates.cpu_attention_bytes_per_second = 60e9;
  in.rates.disk_bytes_per_second = 1.5e9;
  in.rates.gemm = {{1, 2}, {16, 30}, {128, 200}, {512, 450}, {4096, 600}, {65536, 650}};
  in.rates.gpu_context_bytes = 600 * MiB;
  in.workload = Workload{512, 32, 16};
  in.limits = Limits{gpu, host, 60 * GiB, 0};
  in.max_batch = 256;
  return in;
}

TEST(PlannerProperties, ResidentLayersNeverDecreaseAsTheGpuLimitGrows) {
  int last = -1;
  for (uint64_t gb = 12; gb <= 80; gb += 4) {
    auto plan = plan_throughput(opt30b_like(gb * GiB, 200 * GiB, 50e9));
    ASSERT_TRUE(plan.ok()) << gb << " GiB: " << plan.status();
    EXPECT_GE(plan->choice.resident_layers, last) << gb << " GiB";
    last = plan->choice.resident_layers;
  }
  EXPECT_EQ(last, 48);  // 80 GiB holds the whole 4-bit model
}

TEST(PlannerProperties, TheBatchNeverDecreasesAsTheLinkSlows) {
  uint32_t last = 0;
  for (double gbps : {64.0, 50.0, 32.0, 25.0, 16.0, 8.0, 4.0}) {
    auto plan = plan_throughput(opt30b_like(16 * GiB, 200 * GiB, gbps * 1e9));
    ASSERT_TRUE(plan.ok()) << gbps << " GB/s: " << plan.status();
    EXPECT_GE(plan->choice.batch, last) << gbps << " GB/s";
    last = plan->choice.batch;
  }
}

// KV offload is chosen only where it is faster: the best plan with the KV cache kept on the GPU never predicts
// more tokens/s than a chosen host-KV plan, and the other way round.
TEST(PlannerProperties, KvOffloadOnlyWhereItIsFaster) {
  int host_chosen = 0;
  for (uint64_t gb : {12, 16, 24, 32, 48, 64}) {
    auto plan = plan_throughput(opt30b_like(gb * GiB, 200 * GiB, 50e9));
    ASSERT_TRUE(plan.ok()) << plan.status();
    PlannerInput other = opt30b_like(gb * GiB, 200 * GiB, 50e9);
    other.fixed_kv = plan->choice.kv == KvPlace::kHost ? KvPlace::kGpu : KvPlace::kHost;
    auto alt = plan_throughput(other);
    if (!alt.ok()) continue;  // the other place does not fit at all
    EXPECT_EQ(alt->choice.kv, *other.fixed_kv);
    if (plan->choice.kv == KvPlace::kHost) {
      ++host_chosen;
      EXPECT_GT(plan->prediction.tokens_per_second, alt->prediction.tokens_per_second) << gb << " GiB";
    } else {
      // GPU KV kept: host KV is no faster, or it is faster only by streaming layers of a model that fits whole
      // (kept resident by rule) or by less than the residency preference.
      EXPECT_TRUE(alt->prediction.tokens_per_second <= plan->prediction.tokens_per_second ||
                  (alt->choice.resident_layers < plan->choice.resident_layers &&
                   (plan->choice.resident_layers == 48 ||
                    alt->prediction.tokens_per_second * (1 - kResidencyPreference) <=
                        plan->prediction.tokens_per_second)))
          << gb << " GiB";
    }
  }
  EXPECT_GE(host_chosen, 1);  // small limits: the batch's cache goes to host memory
}

TEST(PlannerProperties, AHostShortfallShrinksTheBatchOrSpills) {
  auto roomy = plan_throughput(opt30b_like(16 * GiB, 400 * GiB, 50e9));
  ASSERT_TRUE(roomy.ok()) << roomy.status();
  const uint64_t need = roomy->memory.host();
  auto tight = plan_throughput(opt30b_like(16 * GiB, need - GiB, 50e9));
  ASSERT_TRUE(tight.ok()) << tight.status();
  EXPECT_LE(tight->memory.host(), need - GiB);
  EXPECT_TRUE(tight->choice.batch < roomy->choice.batch || tight->choice.stream_tier == LayerTier::kNvme ||
              tight->choice.kv != roomy->choice.kv)
      << "batch " << tight->choice.batch << " vs " << roomy->choice.batch;
}

TEST(Rates, ParseNamesTheBadField) {
  auto r = parse_rates(R"({"h2d_bytes_per_second": 5e10, "hbm_bytes_per_second": -1, "gpu_context_bytes": 0,
                          "gemm": [{"tokens": 1, "tflops": 2}]})", "r.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "r.json: hbm_bytes_per_second: must be a finite number >= 0");
  auto g = parse_rates(R"({"h2d_bytes_per_second": 5e10, "hbm_bytes_per_second": 3e12, "gpu_context_bytes": 0,
                          "gemm": [{"tokens": 8, "tflops": 2}, {"tokens": 4, "tflops": 3}]})", "r.json");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().message(), "r.json: gemm[1]: tokens must be ascending");
}

// GEMM rates between measured token counts: linear in log2(T). 8 → 2 TFLOPS, 32 → 6: T = 16 is halfway, 4.
TEST(Rates, GemmRateInterpolatesInLogTokens) {
  Rates r;
  r.gemm = {{8, 2}, {32, 6}};
  EXPECT_DOUBLE_EQ(r.gemm_tflops(16), 4.0);
  EXPECT_DOUBLE_EQ(r.gemm_tflops(1), 2.0);
  EXPECT_DOUBLE_EQ(r.gemm_tflops(1000), 6.0);
  auto back = parse_rates(rates_json(r), "x");
  ASSERT_FALSE(back.ok());  // h2d and hbm are required
}

// The quantized cost-model cases: toy(2) with quantized weights, both layers resident, KV on the GPU, prompt 4,
// gen 3, KV blocks of one token; prefill steps of `step_tokens` rows.
struct QuantCase {
  ModelShape m = toy(2);
  Workload w{4, 3, 1};
  PlanChoice c;
  QuantCase(uint32_t batch, uint32_t step_tokens) {
    m.quantized = true;
    c.resident_layers = 2;
    c.kv = KvPlace::kGpu;
    c.step_tokens = step_tokens;
    c.batch = batch;
  }
  StatusOr<Prediction> predict() const { return zi::predict(m, toy_rates(), w, c); }
};

// Quantized weights past the fused kernels' 64 rows are dequantized into the activation dtype before the GEMMs:
// 10⁹ parameters × 1 byte written and read again, 2·10⁹ B at 16 GiB/s = 0.116415321826934814453125 s a step. Toy
// model of 2 resident layers, KV on the GPU, prompt 4, gen 3 (each sequence attends to 4 + 3/2 = 5.5 tokens of
// 1 MiB on average). Decode step = max(weight reads (2 GiB / 16 GiB/s = 0.125 s), GEMM (2·10⁹·B / 10¹² s)) +
// dequantize + B · 5.5 MiB / 16 GiB/s:
//   B = 64: max(0.125, 0.128) + 0 + 352 MiB / 16384 MiB/s = 0.128 + 0.021484375            = 0.149484375 s;
//   B = 65: max(0.125, 0.130) + 0.1164153218 + 357.5 MiB / 16384 MiB/s (0.021820068359375) = 0.2682353902 s.
// Prefill in steps of one 4-row prompt stays on the fused kernels: no dequantize, quantized or not.
TEST(CostModel, QuantizedDecodePastTheFusedRowsPaysTheDequantize) {
  QuantCase q(64, 4);
  auto p64 = q.predict();
  ASSERT_TRUE(p64.ok()) << p64.status();
  EXPECT_NEAR(p64->decode_step_seconds, 0.149484375, 1e-12);
  q.c.batch = 65;
  auto p65 = q.predict();
  ASSERT_TRUE(p65.ok()) << p65.status();
  EXPECT_NEAR(p65->decode_step_seconds, 0.130 + 0.116415321826934814453125 + 0.021820068359375, 1e-12);
  // 65 prefill steps of 4 rows: each max(0.125 s of weight reads, 8·10⁹ FLOPs at 1 TFLOPS = 0.008 s) = 0.125 s.
  EXPECT_NEAR(p65->prefill_seconds, 65 * 0.125, 1e-9);
}

// A prefill step past the fused rows dequantizes once per chunk of the step (the engine runs each layer a chunk at a
// time). Chunks of at most 32 rows here: one step of 17 prompts of 4 rows = 68 rows = 3 chunks, so
// max(weight reads 0.125 s, 2·10⁹ · 68 FLOPs at 1 TFLOPS = 0.136 s) + 3 × 0.116415321826934814453125 s.
TEST(CostModel, QuantizedPrefillDequantizesOncePerChunk) {
  QuantCase q(17, 68);
  q.m.chunk_rows = 32;
  auto p = q.predict();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->prefill_steps, 1u);
  EXPECT_NEAR(p->prefill_seconds, 0.136 + 3 * 0.116415321826934814453125, 1e-12);
}

}  // namespace
}  // namespace zi
