// The CUDA backend's fused ops (backend.h, "fused ops") against the CPU backend (the fp32 reference: literally the
// unfused sequence) on identical inputs, and against the unfused CUDA ops they replace, in bf16, fp16 and fp32:
// add_rms_norm / add_layer_norm at row widths taking the 16-byte kernel (one or several packs a thread) and the
// element kernel (odd H, an unaligned view); qkv_rope_kv_write with GQA and MHA, head dims with and without 16-byte
// packs, prefill, decode and chunk rows, a sequence with no new row, rows no sequence covers and odd T, also on a
// KV-offloaded cache; gate_up_silu; concat_rows; and the fused ops captured in a step graph and replayed on new
// inputs.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "tests/gpu/cuda_test_util.h"

namespace zi {
namespace {

using testing_gpu::device_count;
using testing_gpu::encode;
using testing_gpu::randn;
using testing_gpu::rel_err;
using testing_gpu::round_to;

class CudaFused : public testing_gpu::CpuGpuTest {
 protected:
  // A GPU activation tensor holding `t`'s values (a twin for the unfused GPU ops).
  Tensor gpu_copy(const Tensor& t) {
    const std::vector<uint8_t> bytes = encode(act(), gpu_->to_host_f32(t));
    return gpu_->from_host(act(), t.shape(), bytes.data());
  }
};

TEST_P(CudaFused, AddRmsNormAndAddLayerNorm) {
  // bf16 / fp16 packs are 8 wide, fp32 4: 4096 and 8192 take one pack a thread in bf16, 16384 several; 67 and 4099
  // the element kernel.
  for (int H : {67, 4096, 4099, 8192, 16384}) {
    for (int T : {1, 5}) {
      for (DType wdt : {DType::kBF16, DType::kF32}) {
        const std::string tag = " H=" + std::to_string(H) + " T=" + std::to_string(T) + " weights " +
                                std::string(dtype_torch_name(wdt));
        Pair w = weight({H}, randn(H, 7), wdt), b = weight({H}, randn(H, 8), wdt);
        for (int kind = 0; kind < 3; ++kind) {  // rms, layer + bias, layer without bias
          const std::string what = (kind == 0 ? "add_rms_norm" : kind == 1 ? "add_layer_norm" : "add_layer_norm no bias") + tag;
          // An offset mean makes LayerNorm's centring matter.
          Pair x = act_tensor({T, H}, randn(size_t(T) * H, 6, 3.0f, 1.5f));
          Pair d = act_tensor({T, H}, randn(size_t(T) * H, 9, 2.0f));
          Tensor x_unfused = gpu_copy(x.gpu);
          const Tensor bias_c = kind == 1 ? b.cpu : Tensor(), bias_g = kind == 1 ? b.gpu : Tensor();
          Tensor yc = kind == 0 ? cpu_->add_rms_norm(x.cpu, d.cpu, w.cpu, 1e-5f)
                                : cpu_->add_layer_norm(x.cpu, d.cpu, w.cpu, bias_c, 1e-5f);
          Tensor yg = kind == 0 ? gpu_->add_rms_norm(x.gpu, d.gpu, w.gpu, 1e-5f)
                                : gpu_->add_layer_norm(x.gpu, d.gpu, w.gpu, bias_g, 1e-5f);
          expect_close(yc, yg, what);
          expect_close(x.cpu, x.gpu, what + " (x + delta)");
          // The unfused CUDA ops: x bit for bit (one rounding of the same fp32 sum), y to fp32 summation order.
          gpu_->add_inplace(x_unfused, d.gpu);
          EXPECT_EQ(gpu_->to_host_f32(x.gpu), gpu_->to_host_f32(x_unfused)) << what;
          Tensor y_unfused = kind == 0 ? gpu_->rms_norm(x_unfused, w.gpu, 1e-5f)
                                       : gpu_->layer_norm(x_unfused, w.gpu, bias_g, 1e-5f);
          expect_close(y_unfused, *gpu_, yg, what + " vs unfused CUDA");
        }
      }
    }
  }
}

TEST_P(CudaFused, AddNormOnAnUnalignedView) {
  // Rows 1.. of a [4, 64] tensor in fp16 / bf16 start 128 bytes in (aligned); of a [4, 63] one, 126 bytes: the
  // element kernel.
  for (int H : {64, 63}) {
    Pair x = act_tensor({4, H}, randn(size_t(4) * H, 1, 2.0f));
    Pair d = act_tensor({4, H}, randn(size_t(4) * H, 2));
    Pair w = weight({H}, randn(H, 3));
    Tensor xc = x.cpu.rows(1, 4), xg = x.gpu.rows(1, 4);
    expect_close(cpu_->add_rms_norm(xc, d.cpu.rows(0, 3), w.cpu, 1e-6f),
                 gpu_->add_rms_norm(xg, d.gpu.rows(0, 3), w.gpu, 1e-6f), "add_rms_norm view H=" + std::to_string(H));
    expect_close(x.cpu, x.gpu, "x after the view's add (row 0 untouched) H=" + std::to_string(H));
  }
}

struct RopeCase {
  std::string name;
  int nH, nKV, D;
  std::vector<SeqSlice> seqs;  // rows contiguous in order
  int pad_rows = 0;            // rows past the sequences' (a padded step: no KV, q still rotated)
};

TEST_P(CudaFused, QkvRopeKvWrite) {
  const std::vector<RopeCase> cases = {
      // Prefill, decode after context, a chunk, a sequence with no new row; GQA 4:1, D = 128 (16-byte packs).
      {"GQA D=128", 8, 2, 128, {{0, 0, 5, 0}, {1, 5, 1, 37}, {2, 6, 3, 14}, {3, 9, 0, 20}}},
      // MHA D = 64, decode rows only, two padding rows (a replayed graph's bucket).
      {"MHA D=64 padded", 4, 4, 64, {{0, 0, 1, 3}, {1, 1, 1, 17}, {2, 2, 0, 5}}, 2},
      // Head dims without 16-byte packs in bf16 / fp16 (half a head of 4 or 3 elements), odd T.
      {"D=8", 4, 2, 8, {{1, 0, 7, 2}}},
      {"D=6 GQA 3:1", 3, 1, 6, {{0, 0, 2, 0}, {1, 2, 1, 9}}, 1},
  };
  for (const RopeCase& c : cases) {
    for (bool host : {false, true}) {
      const std::string tag = c.name + (host ? " offloaded KV" : "");
      const int BS = 4, per_seq = 16, S = static_cast<int>(c.seqs.size()), NB = S * per_seq + 2;
      std::vector<std::vector<int32_t>> tables;
      for (int s = 0; s < S; ++s) {
        std::vector<int32_t> t;
        for (int b = 0; b < per_seq; ++b) t.push_back(NB - 1 - (b * S + s));  // scattered blocks
        tables.push_back(t);
      }
      AttentionBatch bc = make_attention_batch(*cpu_, c.seqs, BS, tables);
      AttentionBatch bg = make_attention_batch(*gpu_, c.seqs, BS, tables);
      if (c.pad_rows > 0) {
        // Padding rows at position 0 past the covered ones, as StepTensors lays out a padded step.
        std::vector<int32_t> pos(static_cast<size_t>(bc.total_rows), 0);
        cpu_->copy_to_host(bc.positions, pos.data());
        pos.resize(pos.size() + c.pad_rows, 0);
        for (AttentionBatch* b : {&bc, &bg}) {
          b->total_rows += c.pad_rows;
          b->positions = (b == &bc ? *cpu_ : *gpu_).from_host(DType::kI32, {b->total_rows}, pos.data());
        }
      }
      const int64_t T = bc.total_rows, qw = int64_t{c.nH} * c.D, kw = int64_t{c.nKV} * c.D;
      std::vector<float> inv_freq(c.D / 2);
      for (int i = 0; i < c.D / 2; ++i) inv_freq[i] = static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / c.D));
      Pair f = raw(DType::kF32, {c.D / 2}, inv_freq.data());
      Pair qkv = act_tensor({T, qw + 2 * kw}, randn(size_t(T) * (qw + 2 * kw), 11));
      const std::vector<int64_t> dims = {NB, BS, c.nKV, c.D};
      // Caches start from the same random contents: slots not written must keep them.
      const std::vector<float> k0 = randn(size_t(NB) * BS * kw, 12), v0 = randn(size_t(NB) * BS * kw, 13);
      auto gpu_cache = [&]() {
        auto kg = gpu_->alloc_kv(act(), dims, host);
        auto vg = gpu_->alloc_kv(act(), dims, host);
        EXPECT_TRUE(kg.ok() && vg.ok());
        const std::vector<uint8_t> kb = encode(act(), k0), vb = encode(act(), v0);
        gpu_->upload(*kg, kb.data());
        gpu_->upload(*vg, vb.data());
        return KvLayer{*kg, *vg};
      };
      const std::vector<float> k0r = round_to(act(), k0), v0r = round_to(act(), v0);
      KvLayer cc{cpu_->from_host(DType::kF32, dims, k0r.data()), cpu_->from_host(DType::kF32, dims, v0r.data())};
      KvLayer cg = gpu_cache();
      Tensor qc = cpu_->qkv_rope_kv_write(qkv.cpu, cc, bc, f.cpu, c.nH, c.nKV, c.D);
      Tensor qg = gpu_->qkv_rope_kv_write(qkv.gpu, cg, bg, f.gpu, c.nH, c.nKV, c.D);
      expect_close(qc, qg, tag + " q");
      expect_close(cc.k, cg.k, tag + " k cache");
      expect_close(cc.v, cg.v, tag + " v cache", 1e-30);  // copies
      // The unfused CUDA sequence it replaces writes the same caches and q.
      KvLayer cu = gpu_cache();
      Tensor q = gpu_->column_slice(qkv.gpu, qw + 2 * kw, 0, qw);
      Tensor k = gpu_->column_slice(qkv.gpu, qw + 2 * kw, qw, kw);
      Tensor v = gpu_->column_slice(qkv.gpu, qw + 2 * kw, qw + kw, kw);
      gpu_->rope_inplace(q, bg.positions, f.gpu, c.nH, c.D);
      gpu_->rope_inplace(k, bg.positions, f.gpu, c.nKV, c.D);
      gpu_->kv_write(cu, bg, k, v);
      expect_close(q, *gpu_, qg, tag + " q vs unfused CUDA", act() == DType::kF32 ? 1e-6 : tol());
      expect_close(cu.k, *gpu_, cg.k, tag + " k cache vs unfused CUDA", act() == DType::kF32 ? 1e-6 : tol());
      EXPECT_EQ(gpu_->to_host_f32(cg.v), gpu_->to_host_f32(cu.v)) << tag;
      // Attention over the written cache (on an offloaded one, through the rows the op handed over).
      const AttentionParams p{c.nH, c.nKV, c.D, 1.0f / std::sqrt(static_cast<float>(c.D)), 0, Tensor()};
      // (The CPU leaves rows no sequence covers unwritten: compare the covered ones.)
      const int64_t covered = T - c.pad_rows;
      expect_close(cpu_->attention(qc, cc, bc, p).rows(0, covered), gpu_->attention(qg, cg, bg, p).rows(0, covered),
                   tag + " attention");
    }
  }
}

TEST_P(CudaFused, GateUpSilu) {
  for (int F : {64, 67, 11008}) {
    for (int T : {1, 3, 7}) {
      const std::string tag = "gate_up_silu F=" + std::to_string(F) + " T=" + std::to_string(T);
      Pair gu = act_tensor({T, 2 * F}, randn(size_t(T) * 2 * F, 21, 3.0f));
      Tensor yg = gpu_->gate_up_silu(gu.gpu);
      expect_close(cpu_->gate_up_silu(gu.cpu), yg, tag);
      // silu_mul on the two halves: the same arithmetic, bit for bit.
      Tensor gate = gpu_->column_slice(gu.gpu, 2 * F, 0, F), up = gpu_->column_slice(gu.gpu, 2 * F, F, F);
      EXPECT_EQ(gpu_->to_host_f32(yg), gpu_->to_host_f32(gpu_->silu_mul(gate, up))) << tag;
    }
  }
}

TEST_P(CudaFused, ConcatRowsOfWeightsCodesAndScales) {
  for (DType dt : {act(), DType::kU8, DType::kF16}) {
    const size_t e = dtype_size(dt);
    std::vector<uint8_t> a(3 * 5 * e), b(1 * 5 * e), c(4 * 5 * e);
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 7 + 1);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 5 + 2);
    for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<uint8_t>(i * 3 + 3);
    auto cat = gpu_->concat_rows({gpu_->from_host(dt, {3, 5}, a.data()), gpu_->from_host(dt, {1, 5}, b.data()),
                                  gpu_->from_host(dt, {4, 5}, c.data())});
    ASSERT_TRUE(cat.ok()) << cat.status();
    EXPECT_EQ(cat->shape(), (std::vector<int64_t>{8, 5}));
    std::vector<uint8_t> want = a, got(cat->nbytes());
    want.insert(want.end(), b.begin(), b.end());
    want.insert(want.end(), c.begin(), c.end());
    gpu_->copy_to_host(*cat, got.data());
    EXPECT_EQ(got, want) << dtype_torch_name(dt);
  }
}

TEST_P(CudaFused, CapturedInAStepGraph) {
  // A decode step's fused ops recorded once and replayed on refreshed inputs: each replay equals the eager ops.
  const int H = 256, nH = 4, nKV = 2, D = 64, F = 96, BS = 16;
  const std::vector<SeqSlice> seqs = {{0, 0, 1, 5}, {1, 1, 1, 40}};
  const std::vector<std::vector<int32_t>> tables = {{3, 4, 5}, {0, 1, 2}};
  AttentionBatch batch = make_attention_batch(*gpu_, seqs, BS, tables);
  const std::vector<float> inv(D / 2, 0.01f);
  Tensor inv_freq = gpu_->from_host(DType::kF32, {D / 2}, inv.data());
  Tensor w = gpu_->upload_weight(DType::kF32, {H}, randn(H, 1).data());
  const int64_t qkv_w = int64_t{nH + 2 * nKV} * D;
  Tensor x = gpu_->alloc(act(), {2, H}), delta = gpu_->alloc(act(), {2, H});
  Tensor qkv = gpu_->alloc(act(), {2, qkv_w}), gu = gpu_->alloc(act(), {2, 2 * F});
  auto kc = gpu_->alloc_kv(act(), {6, BS, nKV, D}, false), vc = gpu_->alloc_kv(act(), {6, BS, nKV, D}, false);
  ASSERT_TRUE(kc.ok() && vc.ok());
  KvLayer cache{*kc, *vc};
  Tensor y, q, act_out;
  auto graph = gpu_->capture([&]() -> Status {
    y = gpu_->add_rms_norm(x, delta, w, 1e-5f);
    q = gpu_->qkv_rope_kv_write(qkv, cache, batch, inv_freq, nH, nKV, D);
    act_out = gpu_->gate_up_silu(gu);
    return absl::OkStatus();
  });
  ASSERT_TRUE(graph.ok()) << graph.status();
  ASSERT_TRUE(*graph);
  for (uint64_t seed : {100, 200}) {
    const std::vector<uint8_t> xb = encode(act(), randn(2 * H, seed)), db = encode(act(), randn(2 * H, seed + 1));
    const std::vector<uint8_t> qb = encode(act(), randn(2 * qkv_w, seed + 2));
    const std::vector<uint8_t> gb = encode(act(), randn(2 * 2 * F, seed + 3));
    gpu_->upload(x, xb.data());
    gpu_->upload(delta, db.data());
    gpu_->upload(qkv, qb.data());
    gpu_->upload(gu, gb.data());
    (*graph)->replay();
    // Eager twins on fresh tensors.
    Tensor x2 = gpu_->from_host(act(), {2, H}, xb.data()), d2 = gpu_->from_host(act(), {2, H}, db.data());
    Tensor qkv2 = gpu_->from_host(act(), {2, qkv_w}, qb.data()), gu2 = gpu_->from_host(act(), {2, 2 * F}, gb.data());
    auto kc2 = gpu_->alloc_kv(act(), {6, BS, nKV, D}, false), vc2 = gpu_->alloc_kv(act(), {6, BS, nKV, D}, false);
    ASSERT_TRUE(kc2.ok() && vc2.ok());
    KvLayer cache2{*kc2, *vc2};
    EXPECT_EQ(gpu_->to_host_f32(y), gpu_->to_host_f32(gpu_->add_rms_norm(x2, d2, w, 1e-5f))) << seed;
    EXPECT_EQ(gpu_->to_host_f32(x), gpu_->to_host_f32(x2)) << seed;
    EXPECT_EQ(gpu_->to_host_f32(q), gpu_->to_host_f32(gpu_->qkv_rope_kv_write(qkv2, cache2, batch, inv_freq, nH, nKV,
                                                                                D)))
        << seed;
    // The rows this step wrote (block 3 row 5, block 2 row 8) hold the same keys and values.
    const std::vector<float> k_graph = gpu_->to_host_f32(cache.k), k_eager = gpu_->to_host_f32(cache2.k);
    const std::vector<float> v_graph = gpu_->to_host_f32(cache.v), v_eager = gpu_->to_host_f32(cache2.v);
    const int64_t row = int64_t{nKV} * D;
    for (auto [blk, r] : {std::pair{3, 5}, {2, 8}}) {
      const int64_t off = (int64_t{blk} * BS + r) * row;
      EXPECT_TRUE(std::equal(k_graph.begin() + off, k_graph.begin() + off + row, k_eager.begin() + off)) << seed;
      EXPECT_TRUE(std::equal(v_graph.begin() + off, v_graph.begin() + off + row, v_eager.begin() + off)) << seed;
    }
    EXPECT_EQ(gpu_->to_host_f32(act_out), gpu_->to_host_f32(gpu_->gate_up_silu(gu2))) << seed;
  }
}

const auto kDtypes = ::testing::Values(DType::kBF16, DType::kF16, DType::kF32);
INSTANTIATE_TEST_SUITE_P(Dtypes, CudaFused, kDtypes, [](const ::testing::TestParamInfo<DType>& info) {
  return std::string(dtype_torch_name(info.param));
});

}  // namespace
}  // namespace zi
