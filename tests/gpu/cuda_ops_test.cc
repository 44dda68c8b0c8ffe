// Every CUDA backend op against the CPU backend (the fp32 reference) on identical inputs: values are rounded to the
// activation dtype first, so the two differ only by the GPU's own rounding (bf16 / fp16 stores, fp32 accumulation
// order). Each test runs with bf16, fp16 and fp32 activations; fp32 must agree to ~1e-5, which catches indexing
// errors that the half-precision tolerances could hide. Odd sizes exercise tails; attention covers prefill, decode,
// mixed batches, GQA, sliding windows, ALiBi and head dims 5 to 256, on both prefill kernels (bf16 / fp16 with the
// common head dims take the tensor-core one, which is also checked against the scalar one on a Llama-7B shape).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/decode_linear.h"
#include "engine/backend/cuda/dense_gemv.h"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/cuda/lt_gemm.h"
#include "engine/core/compute_dtype.h"
#include "engine/core/dummy_random.h"
#include "engine/model/dummy_weights.h"
#include "tests/gpu/cuda_test_util.h"

namespace zi {
namespace {

using testing_gpu::device_count;
using testing_gpu::encode;
using testing_gpu::randn;
using testing_gpu::rel_err;
using testing_gpu::round_to;

TEST(CudaBackendCreate, WithoutADeviceIsAnErrorNotACrash) {
  if (device_count() > 0) GTEST_SKIP() << "a GPU is present (this case runs on machines without one)";
  auto b = make_cuda_backend({});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(b.status().message()), ::testing::HasSubstr("no usable CUDA device"));
}

TEST(CudaBackendCreate, RejectsBadOrdinalAndDtype) {
  if (device_count() == 0) GTEST_SKIP() << "no GPU";
  auto bad_device = make_cuda_backend({device_count() + 3, DType::kBF16});
  ASSERT_FALSE(bad_device.ok());
  EXPECT_EQ(bad_device.status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_dtype = make_cuda_backend({0, DType::kI8});
  ASSERT_FALSE(bad_dtype.ok());
  EXPECT_EQ(bad_dtype.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CudaBackendCreate, ActivationDtypeFollowsCheckpointUnlessAsked) {
  EXPECT_EQ(gpu_compute_dtype(ComputeDtype::kAuto, DType::kF16), DType::kF16);
  EXPECT_EQ(gpu_compute_dtype(ComputeDtype::kAuto, DType::kBF16), DType::kBF16);
  EXPECT_EQ(gpu_compute_dtype(ComputeDtype::kAuto, DType::kF32), DType::kBF16);
  EXPECT_EQ(gpu_compute_dtype(ComputeDtype::kFloat16, DType::kBF16), DType::kF16);
}

class CudaOps : public testing_gpu::CpuGpuTest {};

TEST_P(CudaOps, UploadConvertsLikeTheHostAndCopiesBack) {
  const std::vector<float> v = randn(1001, 1, 2.0f);
  for (DType src : {DType::kF32, DType::kF16, DType::kBF16}) {
    const std::vector<uint8_t> bytes = encode(src, v);
    // An odd offset: checkpoint tensors need not be aligned.
    std::vector<uint8_t> unaligned(bytes.size() + 1);
    std::memcpy(unaligned.data() + 1, bytes.data(), bytes.size());
    Tensor w = gpu_->upload_weight(src, {7, 143}, unaligned.data() + 1);
    EXPECT_EQ(w.dtype(), gpu_->weight_dtype(src));
    // Bit-exact: the device conversion rounds as the host's (through fp32, nearest even).
    EXPECT_EQ(gpu_->to_host_f32(w), round_to(act(), round_to(src, v))) << dtype_torch_name(src);
  }
  std::vector<int32_t> ids = {5, -7, 1 << 30};
  Tensor t = gpu_->from_host(DType::kI32, {3}, ids.data());
  std::vector<int32_t> back(3);
  gpu_->copy_to_host(t, back.data());
  EXPECT_EQ(back, ids);
  gpu_->fill_zero(t);
  EXPECT_EQ(gpu_->to_host_f32(t), std::vector<float>(3, 0.0f));
}

TEST_P(CudaOps, Embedding) {
  const int V = 50, H = 67;
  Pair table = weight({V, H}, randn(V * H, 2));
  std::vector<int32_t> ids = {3, 0, 49, 3, 17};
  Pair id = raw(DType::kI32, {5}, ids.data());
  // A copy of bf16 values: exact in bf16 / fp32; fp16 rounds only values in its subnormal range.
  expect_close(cpu_->embedding(table.cpu, id.cpu), gpu_->embedding(table.gpu, id.gpu), "embedding", 1e-6);
}

TEST_P(CudaOps, RmsNormAndLayerNorm) {
  for (int H : {67, 4099}) {
    const int T = 5;
    // An offset mean makes LayerNorm's centring matter.
    Pair x = act_tensor({T, H}, randn(T * H, 6, 3.0f, 1.5f));
    for (DType wdt : {DType::kBF16, DType::kF32}) {
      Pair w = weight({H}, randn(H, 7), wdt), b = weight({H}, randn(H, 8), wdt);
      const std::string tag = " H=" + std::to_string(H) + " weights " + std::string(dtype_torch_name(wdt));
      expect_close(cpu_->rms_norm(x.cpu, w.cpu, 1e-5f), gpu_->rms_norm(x.gpu, w.gpu, 1e-5f), "rms_norm" + tag);
      expect_close(cpu_->layer_norm(x.cpu, w.cpu, b.cpu, 1e-5f), gpu_->layer_norm(x.gpu, w.gpu, b.gpu, 1e-5f),
                   "layer_norm" + tag);
      expect_close(cpu_->layer_norm(x.cpu, w.cpu, Tensor(), 1e-5f), gpu_->layer_norm(x.gpu, w.gpu, Tensor(), 1e-5f),
                   "layer_norm no bias" + tag);
    }
  }
}

TEST_P(CudaOps, Linear) {
  for (auto [T, in, out] : {std::tuple{1, 64, 64}, {3, 37, 19}, {9, 176, 64}, {17, 8, 130}, {5, 1, 3}, {33, 512, 1000},
                            {1, 4096, 11}}) {
    Pair x = act_tensor({T, in}, randn(T * in, 1));
    for (bool bias : {false, true}) {
      Pair w = weight({out, in}, randn(out * in, 2, 0.1f));
      Pair b = weight({out}, randn(out, 3));
      LinearWeight lc{WeightFormat::kDense, w.cpu, bias ? b.cpu : Tensor()};
      LinearWeight lg{WeightFormat::kDense, w.gpu, bias ? b.gpu : Tensor()};
      expect_close(cpu_->linear(x.cpu, lc), gpu_->linear(x.gpu, lg),
                   absl::StrCat("linear ", T, "x", in, "->", out, bias ? " +bias" : ""));
    }
  }
  // An fp32 checkpoint weight is converted at upload.
  Pair x = act_tensor({4, 96}, randn(4 * 96, 4));
  Pair w = weight({40, 96}, randn(40 * 96, 5, 0.1f), DType::kF32);
  // The CPU keeps the fp32 weight; the GPU rounds it to the activation dtype: allow that rounding.
  expect_close(cpu_->linear(x.cpu, {WeightFormat::kDense, w.cpu, Tensor()}),
               gpu_->linear(x.gpu, {WeightFormat::kDense, w.gpu, Tensor()}), "linear fp32 weight", 2 * tol());
}

// The cuBLASLt path (bf16 / fp16; fp32 stays on cublasGemmEx): decode-sized and prefill-sized T, odd `out` and
// `in` (rows not 16-byte aligned), the bias fused in the epilogue (activation dtype) or added by the separate
// kernel (an fp32 bias), and a second call that reuses the cached plan: the same algorithm, bit-identical output.
TEST_P(CudaOps, LinearTokenCountsBiasAndRepeat) {
  for (auto [in, out] : {std::pair{96, 129}, {37, 7}}) {
    for (int T : {1, 7, 64, 513}) {
      Pair x = act_tensor({T, in}, randn(T * in, 20 + T));
      Pair w = weight({out, in}, randn(out * in, 21, 0.1f));
      Pair b = weight({out}, randn(out, 22));  // uploaded in the activation dtype
      const std::vector<float> b32 = randn(out, 23);
      Pair b_f32 = raw(DType::kF32, {out}, b32.data());
      for (int bias : {0, 1, 2}) {
        const Pair none{};
        const Pair& bb = bias == 0 ? none : bias == 1 ? b : b_f32;
        LinearWeight lc{WeightFormat::kDense, w.cpu, bb.cpu};
        LinearWeight lg{WeightFormat::kDense, w.gpu, bb.gpu};
        const std::string tag = absl::StrCat("linear ", T, "x", in, "->", out,
                                             bias == 0 ? "" : bias == 1 ? " +bias" : " +fp32 bias");
        Tensor first = gpu_->linear(x.gpu, lg);
        expect_close(cpu_->linear(x.cpu, lc), first, tag);
        Tensor again = gpu_->linear(x.gpu, lg);
        EXPECT_EQ(gpu_->to_host_f32(first), gpu_->to_host_f32(again)) << tag << ": repeat call differs";
      }
    }
  }
}

// Decode-sized T of dense weights run cuBLASLt, the dense GEMV (T ≤ 8) or the dense tensor-core kernel (T ≤ 64),
// whichever was fastest (decode_linear.h): each forced in turn against the CPU and against cuBLASLt. K that leaves a
// partial unrolled pass and a partial 128-col K-block, N that leaves a partial block and a partial warp, the bias
// fused (activation dtype) or added after (fp32). Then the timed choice itself, once per shape.
TEST_P(CudaOps, DenseDecodeKernelsAgree) {
  if (GetParam() == DType::kF32) GTEST_SKIP() << "fp32 activations always take cuBLAS";
  const std::optional<cuda::DecodeKernel> saved = cuda::forced_decode_kernel();
  // K = 37: rows that are not whole 16-byte vectors, which neither hand-written kernel takes (cuBLASLt runs).
  for (auto [in, out] : {std::pair{1000, 37}, {4096, 4096}, {64, 8}, {136, 300}, {37, 20}}) {
    for (int T : {1, 2, 3, 5, 8, 9, 16, 17, 33, 48, 64}) {
      Pair x = act_tensor({T, in}, randn(T * in, 40 + T));
      Pair w = weight({out, in}, randn(out * in, 41, 0.05f));
      Pair b = weight({out}, randn(out, 42));
      const std::vector<float> b32 = randn(out, 43);
      Pair b_f32 = raw(DType::kF32, {out}, b32.data());
      for (int bias : {0, 1, 2}) {
        const Pair none{};
        const Pair& bb = bias == 0 ? none : bias == 1 ? b : b_f32;
        LinearWeight lc{WeightFormat::kDense, w.cpu, bb.cpu};
        LinearWeight lg{WeightFormat::kDense, w.gpu, bb.gpu};
        const std::string tag =
            absl::StrCat(T, "x", in, "->", out, bias == 1 ? " +bias" : bias == 2 ? " +fp32 bias" : "");
        cuda::force_decode_kernel(cuda::DecodeKernel::kLt);
        Tensor lt = gpu_->linear(x.gpu, lg);
        const Tensor ref = cpu_->linear(x.cpu, lc);
        expect_close(ref, lt, "lt " + tag);
        for (cuda::DecodeKernel k : {cuda::DecodeKernel::kGemv, cuda::DecodeKernel::kMma}) {
          if (k == cuda::DecodeKernel::kGemv && T > cuda::kDenseGemvMaxRows) continue;
          cuda::force_decode_kernel(k);
          Tensor y = gpu_->linear(x.gpu, lg);
          const std::string kt = std::string(cuda::decode_kernel_name(k)) + " " + tag;
          expect_close(ref, y, kt);
          expect_close(lt, *gpu_, y, kt + " vs cuBLAS");
        }
        cuda::force_decode_kernel(std::nullopt);  // timed choice: whichever kernel wins computes the same
        expect_close(ref, gpu_->linear(x.gpu, lg), "chosen " + tag);
        expect_close(ref, gpu_->linear(x.gpu, lg), "chosen again " + tag);
      }
    }
  }
  cuda::force_decode_kernel(saved);
}

// Dummy weights made on the GPU (Backend::uniform_weight) hold exactly what the host generator's values hold once
// uploaded, in every weight dtype (rounded to it first, then to the activation dtype as upload_weight does).
TEST_P(CudaOps, DummyWeightsMadeOnTheGpuEqualTheHostGenerator) {
  const int64_t n = 1000003;  // not a multiple of the block or the grid
  const std::string name = "model.layers.3.mlp.up_proj.weight";
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::optional<Tensor> made = gpu_->uniform_weight(dt, {n}, dummy_key(name, 11), kDummyAmplitude);
    ASSERT_TRUE(made.has_value());
    std::vector<uint8_t> host(static_cast<size_t>(n) * dtype_size(dt));
    fill_dummy(name, WeightInit::kNormal, 11, dt, 0, static_cast<size_t>(n), host.data());
    Tensor uploaded = gpu_->upload_weight(dt, {n}, host.data());
    const std::vector<float> a = gpu_->to_host_f32(*made), b = gpu_->to_host_f32(uploaded);
    EXPECT_EQ(a, b) << dtype_torch_name(dt);
    const float mx = *std::max_element(a.begin(), a.end()), mn = *std::min_element(a.begin(), a.end());
    EXPECT_GT(mx, 0.9f * kDummyAmplitude) << "values span (-a, a)";
    EXPECT_LT(mn, -0.9f * kDummyAmplitude);
  }
  // The CPU backend makes none (the host generator is its path).
  EXPECT_FALSE(cpu_->uniform_weight(DType::kF32, {4}, 1, kDummyAmplitude).has_value());
}

TEST_P(CudaOps, Rope) {
  for (int D : {8, 128}) {
    const int T = 6, nH = 3;
    std::vector<int32_t> pos = {0, 5, 1, 100, 4097, 2};
    std::vector<float> inv_freq(D / 2);
    for (int i = 0; i < D / 2; ++i) inv_freq[i] = static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / D));
    Pair x = act_tensor({T, nH * D}, randn(T * nH * D, 9));
    Pair p = raw(DType::kI32, {T}, pos.data());
    Pair f = raw(DType::kF32, {D / 2}, inv_freq.data());
    cpu_->rope_inplace(x.cpu, p.cpu, f.cpu, nH, D);
    gpu_->rope_inplace(x.gpu, p.gpu, f.gpu, nH, D);
    expect_close(x.cpu, x.gpu, "rope D=" + std::to_string(D));
  }
}

TEST_P(CudaOps, ElementwiseActivationsAndAdds) {
  const int n = 1000;
  Pair a = act_tensor({10, 100}, randn(n, 11, 3.0f)), b = act_tensor({10, 100}, randn(n, 12, 3.0f));
  expect_close(cpu_->silu_mul(a.cpu, b.cpu), gpu_->silu_mul(a.gpu, b.gpu), "silu_mul");
  for (auto [kind, name] : {std::pair{Activation::kRelu, "relu"}, {Activation::kGeluTanh, "gelu_tanh"},
                            {Activation::kGelu, "gelu"}, {Activation::kSilu, "silu"}})
    expect_close(cpu_->activation(a.cpu, kind), gpu_->activation(a.gpu, kind), name);
  expect_close(cpu_->add(a.cpu, b.cpu), gpu_->add(a.gpu, b.gpu), "add");
  cpu_->add_inplace(a.cpu, b.cpu);
  gpu_->add_inplace(a.gpu, b.gpu);
  expect_close(a.cpu, a.gpu, "add_inplace");
}

TEST_P(CudaOps, GatherRowsAndColumnSlice) {
  Pair x = act_tensor({7, 24}, randn(7 * 24, 13));
  // Copies: exact.
  expect_close(cpu_->gather_rows(x.cpu, {6, 0, 3, 3}), gpu_->gather_rows(x.gpu, {6, 0, 3, 3}), "gather_rows", 1e-30);
  expect_close(cpu_->gather_rows(x.cpu, std::vector<int32_t>{}), gpu_->gather_rows(x.gpu, std::vector<int32_t>{}),
               "gather_rows none", 1e-30);
  // Rows of a view (odd row offset, unaligned base).
  Pair odd = act_tensor({5, 3}, randn(15, 14));
  expect_close(cpu_->gather_rows(odd.cpu.rows(1, 5), {2, 0}), gpu_->gather_rows(odd.gpu.rows(1, 5), {2, 0}),
               "gather_rows of a view", 1e-30);
  expect_close(cpu_->column_slice(x.cpu, 24, 5, 7), gpu_->column_slice(x.gpu, 24, 5, 7), "column_slice row", 1e-30);
  // BLOOM-style fused [q k v] per head: 4 groups of 6, columns 2..4 of each.
  expect_close(cpu_->column_slice(x.cpu, 6, 2, 3), gpu_->column_slice(x.gpu, 6, 2, 3), "column_slice groups", 1e-30);
}

// ---- paged KV cache and attention ----

struct AttnCase {
  std::string name;
  int nH, nKV, D, S, C;        // S sequences of at most C positions each
  std::vector<SeqSlice> seqs;  // the step; rows contiguous in order
};

class CudaAttention : public CudaOps {
 protected:
  // Fills both paged caches with each sequence's history (past_len rows), writes the step's rows with kv_write and
  // runs attention on both backends for every window / ALiBi combination, for blocks of `block_size` tokens that
  // every sequence's table scatters over the cache in reverse order (so no two neighbours are adjacent). With
  // `host`, the GPU cache is KV-offloaded: pinned host memory the kernels reach over the bus.
  void run(const AttnCase& c, int block_size = 16, bool host = false) {
    int T = 0;
    for (const SeqSlice& s : c.seqs) T += s.n_new;
    const int row = c.nKV * c.D;
    const int per_seq = (c.C + block_size - 1) / block_size, NB = c.S * per_seq + 3;
    std::vector<std::vector<int32_t>> tables;  // by SeqSlice::slot
    for (int s = 0; s < c.S; ++s) {
      std::vector<int32_t> t;
      for (int b = 0; b < per_seq; ++b) t.push_back(NB - 1 - (b * c.S + s));
      tables.push_back(t);
    }
    auto tables_of = [&](const std::vector<SeqSlice>& ss) {
      std::vector<std::vector<int32_t>> out;
      for (const SeqSlice& s : ss) out.push_back(tables[s.slot]);
      return out;
    };
    std::vector<float> slopes(c.nH);
    for (int h = 0; h < c.nH; ++h) slopes[h] = std::pow(2.0f, -8.0f * (h + 1) / c.nH);
    for (int window : windows_) {
      for (bool alibi : {false, true}) {
        const std::string tag = c.name + " bs " + std::to_string(block_size) + (host ? " host" : "") + " window " +
                                std::to_string(window) + (alibi ? " alibi" : "");
        const std::vector<int64_t> dims = {NB, block_size, c.nKV, c.D};
        auto kg = gpu_->alloc_kv(act(), dims, host);
        auto vg = gpu_->alloc_kv(act(), dims, host);
        ASSERT_TRUE(kg.ok() && vg.ok()) << tag;
        Pair kc{cpu_->alloc(DType::kF32, dims), *kg};
        Pair vc{cpu_->alloc(DType::kF32, dims), *vg};
        cpu_->fill_zero(kc.cpu);
        cpu_->fill_zero(vc.cpu);
        gpu_->fill_zero(kc.gpu);
        gpu_->fill_zero(vc.gpu);
        KvLayer cache_c{kc.cpu, vc.cpu}, cache_g{kc.gpu, vc.gpu};
        // History: one kv_write of every sequence's past rows (a batch of prefills from position 0).
        std::vector<SeqSlice> hist;
        int hrows = 0;
        for (const SeqSlice& s : c.seqs)
          if (s.past_len > 0) {
            hist.push_back({s.slot, hrows, s.past_len, 0});
            hrows += s.past_len;
          }
        if (hrows > 0) {
          Pair hk = act_tensor({hrows, row}, randn(size_t(hrows) * row, 100));
          Pair hv = act_tensor({hrows, row}, randn(size_t(hrows) * row, 101));
          AttentionBatch bc = make_attention_batch(*cpu_, hist, block_size, tables_of(hist));
          AttentionBatch bg = make_attention_batch(*gpu_, hist, block_size, tables_of(hist));
          cpu_->kv_write(cache_c, bc, hk.cpu, hv.cpu);
          gpu_->kv_write(cache_g, bg, hk.gpu, hv.gpu);
        }
        AttentionBatch bc = make_attention_batch(*cpu_, c.seqs, block_size, tables_of(c.seqs));
        AttentionBatch bg = make_attention_batch(*gpu_, c.seqs, block_size, tables_of(c.seqs));
        Pair k = act_tensor({T, row}, randn(size_t(T) * row, 200));
        Pair v = act_tensor({T, row}, randn(size_t(T) * row, 201));
        cpu_->kv_write(cache_c, bc, k.cpu, v.cpu);
        gpu_->kv_write(cache_g, bg, k.gpu, v.gpu);
        // The caches hold exactly the same values (copies of identical inputs).
        EXPECT_EQ(gpu_->to_host_f32(cache_g.k), cpu_->to_host_f32(cache_c.k)) << tag << " k cache";
        EXPECT_EQ(gpu_->to_host_f32(cache_g.v), cpu_->to_host_f32(cache_c.v)) << tag << " v cache";
        Pair q = act_tensor({T, c.nH * c.D}, randn(size_t(T) * c.nH * c.D, 300));
        Pair sl = raw(DType::kF32, {c.nH}, slopes.data());
        const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
        AttentionParams pc{c.nH, c.nKV, c.D, scale, window, alibi ? sl.cpu : Tensor()};
        AttentionParams pg{c.nH, c.nKV, c.D, scale, window, alibi ? sl.gpu : Tensor()};
        expect_close(cpu_->attention(q.cpu, cache_c, bc, pc), gpu_->attention(q.gpu, cache_g, bg, pg), tag);
      }
    }
  }

  std::vector<int> windows_ = {0, 3, 40};  // sliding windows run() tries (0 = none)
};

TEST_P(CudaAttention, PrefillDecodeAndChunkMixedWithGqa) {
  // A fresh prefill, a decode row after 9 cached tokens, a chunk of 3 after 4 (the CPU test's batch), odd head dim.
  const AttnCase c{"mixed D=5", 6, 2, 5, 3, 16, {{2, 0, 5, 0}, {0, 5, 1, 9}, {1, 6, 3, 4}}};
  run(c);
  run(c, 4);  // blocks smaller than the step: chunks and decode rows cross block boundaries
  run(c, 1);
}

TEST_P(CudaAttention, DecodeOnlyBatchesUseLongContexts) {
  // Every sequence adds one row: the decode kernels; contexts from 1 to the cache's end, several splits.
  run({"decode D=128", 8, 2, 128, 4, 600, {{0, 0, 1, 300}, {3, 1, 1, 0}, {1, 2, 1, 598}, {2, 3, 1, 37}}});
  run({"decode D=96 MHA", 2, 2, 96, 2, 100, {{1, 0, 1, 64}, {0, 1, 1, 5}}}, 7);
  run({"decode D=8 GQA 4", 8, 2, 8, 1, 40, {{0, 0, 1, 33}}}, 5);
}

TEST_P(CudaAttention, DecodeSplitsGroupsAndThePerHeadKernel) {
  const bool was = cuda::attention_decode_split_enabled();
  cuda::set_attention_decode_split(true);
  // GQA 8:1 (8 query heads per block), a sequence with no new row (a replayed graph's padding: it must write
  // nothing), contexts split over many blocks, some splits past a short sequence's end.
  run({"split D=64 GQA 8", 16, 2, 64, 3, 300, {{0, 0, 1, 299}, {2, 1, 0, 17}, {1, 1, 1, 64}}});
  run({"split D=128", 8, 2, 128, 4, 600, {{0, 0, 1, 300}, {3, 1, 1, 0}, {1, 2, 1, 598}, {2, 3, 1, 37}}});
  run({"split D=256", 2, 1, 256, 2, 64, {{0, 0, 1, 10}, {1, 1, 1, 50}}});
  // 80 sequences × 16 heads are ≥ 2 blocks per SM already: one split, normalised in the kernel (no merge).
  AttnCase many{"split 80 seqs", 16, 16, 128, 80, 40, {}};
  for (int s = 0; s < 80; ++s) many.seqs.push_back({s, s, 1, (s * 7) % 39});
  run(many);
  // A window wider than one split's keys; head dims whose rows are not a power of two of 16-byte loads; blocks
  // of 7 and 5 rows.
  windows_ = {0, 100};
  run({"split D=128 window", 8, 2, 128, 4, 600, {{0, 0, 1, 300}, {3, 1, 1, 0}, {1, 2, 1, 598}, {2, 3, 1, 37}}});
  windows_ = {0, 3, 40};
  run({"split D=96 MHA", 2, 2, 96, 2, 100, {{1, 0, 1, 64}, {0, 1, 1, 5}}}, 7);
  run({"split D=8 GQA 4", 8, 2, 8, 1, 40, {{0, 0, 1, 33}}}, 5);
  // The per-head kernel on the same shapes.
  cuda::set_attention_decode_split(false);
  run({"per-head D=64 GQA 8", 16, 2, 64, 3, 300, {{0, 0, 1, 299}, {2, 1, 0, 17}, {1, 1, 1, 64}}});
  cuda::set_attention_decode_split(was);
}

TEST_P(CudaAttention, LongPrefillSpansManyTilesNextToADecodeRow) {
  // 70 new rows (5 row tiles) after 30 cached ones, beside a decode row at position 200.
  run({"prefill D=64", 4, 4, 64, 2, 300, {{1, 0, 70, 30}, {0, 70, 1, 200}}});
  run({"prefill D=64", 4, 4, 64, 2, 300, {{1, 0, 70, 30}, {0, 70, 1, 200}}}, 32);
}

TEST_P(CudaAttention, LargestHeadDim) {
  run({"prefill D=256", 2, 1, 256, 1, 64, {{0, 0, 20, 10}}});
  run({"decode D=256", 2, 1, 256, 2, 64, {{0, 0, 1, 10}, {1, 1, 1, 50}}});
}

TEST_P(CudaAttention, TensorCorePrefillTilesChunksAndDecodeRows) {
  // bf16 / fp16 with these head dims take the tensor-core kernel (fp32: the scalar one): 64-row query tiles, 64-key
  // tiles that span KV blocks of 16, 48 or 24 positions (not dividing 64). A fresh 300-row prefill (five tiles, the
  // last partial), a 17-row and a 100-row chunk after cached context, a decode row, and a sequence with no new row
  // (it must write nothing); GQA 4:1. Window 100 spans several key tiles; window 3 leaves whole tiles unseen.
  windows_ = {0, 3, 40, 100};
  const AttnCase d128{"flash D=128 GQA 4:1", 8, 2, 128, 5, 320,
                      {{0, 0, 300, 0}, {1, 300, 17, 70}, {2, 317, 1, 150}, {3, 318, 0, 40}, {4, 318, 100, 130}}};
  for (int bs : {16, 48, 24}) run(d128, bs);
  const AttnCase d64{"flash D=64 GQA 4:1", 4, 1, 64, 3, 200, {{1, 0, 64, 0}, {0, 64, 129, 5}, {2, 193, 1, 0}}};
  for (int bs : {16, 48}) run(d64, bs);
}

TEST_P(CudaAttention, TensorCorePrefillOtherHeadDims) {
  run({"flash D=16", 4, 2, 16, 2, 90, {{0, 0, 80, 3}, {1, 80, 1, 60}}}, 4);
  run({"flash D=32", 4, 2, 32, 1, 80, {{0, 0, 65, 0}}});
  run({"flash D=80", 2, 2, 80, 2, 100, {{0, 0, 70, 20}, {1, 70, 1, 50}}}, 24);
  run({"flash D=96", 4, 1, 96, 1, 80, {{0, 0, 33, 40}}}, 48);
}

// The tensor-core prefill kernel against the scalar one on a Llama-2-7B layer's shape (32 heads, D = 128, 16
// sequences × 512 new tokens, blocks of 16); prints both kernels' times and useful TFLOPS (causal: 4·D per visible
// (query, key) pair).
TEST_P(CudaAttention, TensorCorePrefillMatchesScalarOnLlama7bShape) {
  if (act() == DType::kF32) GTEST_SKIP() << "fp32 activations always take the scalar kernel";
  const int nH = 32, D = 128, S = 16, N = 512, BS = 16, row = nH * D, T = S * N;
  const int per_seq = N / BS, NB = S * per_seq;
  std::vector<SeqSlice> seqs;
  std::vector<std::vector<int32_t>> tables;
  for (int s = 0; s < S; ++s) {
    seqs.push_back({s, s * N, N, 0});
    std::vector<int32_t> t;
    for (int b = 0; b < per_seq; ++b) t.push_back(NB - 1 - (b * S + s));  // scattered, as run() does
    tables.push_back(t);
  }
  AttentionBatch batch = make_attention_batch(*gpu_, seqs, BS, tables);
  auto kc = gpu_->alloc_kv(act(), {NB, BS, nH, D}, false);
  auto vc = gpu_->alloc_kv(act(), {NB, BS, nH, D}, false);
  ASSERT_TRUE(kc.ok() && vc.ok());
  KvLayer cache{*kc, *vc};
  const std::vector<uint8_t> kb = encode(act(), randn(size_t(T) * row, 400));
  const std::vector<uint8_t> vb = encode(act(), randn(size_t(T) * row, 401));
  const std::vector<uint8_t> qb = encode(act(), randn(size_t(T) * row, 402));
  Tensor k = gpu_->from_host(act(), {T, row}, kb.data());
  Tensor v = gpu_->from_host(act(), {T, row}, vb.data());
  Tensor q = gpu_->from_host(act(), {T, row}, qb.data());
  gpu_->kv_write(cache, batch, k, v);
  const AttentionParams params{nH, nH, D, 1.0f / std::sqrt(static_cast<float>(D)), 0, Tensor()};
  const bool was = cuda::attention_prefill_flash_enabled();
  auto time_ms = [&](bool flash, Tensor& result) {
    cuda::set_attention_prefill_flash(flash);
    result = gpu_->attention(q, cache, batch, params);  // warm-up (and the result compared)
    cudaDeviceSynchronize();
    const int iters = 10;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) gpu_->attention(q, cache, batch, params);
    cudaDeviceSynchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
  };
  Tensor scalar_out, flash_out;
  const double scalar_ms = time_ms(false, scalar_out);
  const double flash_ms = time_ms(true, flash_out);
  cuda::set_attention_prefill_flash(was);
  const double flops = 4.0 * D * nH * S * (double(N) * (N + 1) / 2);
  std::printf("[ prefill attention %s, 16 x 512 tokens, 32 heads, D 128 ] scalar %.3f ms (%.1f TFLOPS), tensor-core "
              "%.3f ms (%.1f TFLOPS)\n",
              std::string(dtype_torch_name(act())).c_str(), scalar_ms, flops / scalar_ms * 1e-9, flash_ms,
              flops / flash_ms * 1e-9);
  const double err = rel_err(gpu_->to_host_f32(flash_out), gpu_->to_host_f32(scalar_out));
  // Both round the output once; the tensor-core kernel also rounds P (and Q·K is summed in another order).
  EXPECT_LT(err, tol()) << "tensor-core vs scalar";
}

TEST_P(CudaAttention, KvOffloadedToPinnedHostMemory) {
  // KV offload gives the CPU backend's results whoever computes it: the GPU on blocks staged by DMA, the CPU beside
  // the cache (decode rows), or both sharing a decode step (auto: the first step splits it in half).
  for (KvOffloadAttention mode : {KvOffloadAttention::kGpu, KvOffloadAttention::kCpu, KvOffloadAttention::kAuto}) {
    SCOPED_TRACE(std::string(enum_name(mode, kKvOffloadAttentionNames)));
    auto g = make_cuda_backend({0, GetParam(), mode});
    ASSERT_TRUE(g.ok()) << g.status();
    gpu_ = std::move(*g);
    run({"offload mixed D=5", 6, 2, 5, 3, 16, {{2, 0, 5, 0}, {0, 5, 1, 9}, {1, 6, 3, 4}}}, 4, /*host=*/true);
    run({"offload decode D=128", 8, 2, 128, 4, 600, {{0, 0, 1, 300}, {3, 1, 1, 0}, {1, 2, 1, 598}, {2, 3, 1, 37}}},
        16, /*host=*/true);
    run({"offload decode MHA D=64", 4, 4, 64, 3, 100, {{2, 0, 1, 99}, {0, 1, 1, 17}, {1, 2, 1, 50}}}, 16,
        /*host=*/true);
    run({"offload prefill D=64", 4, 4, 64, 2, 300, {{1, 0, 70, 30}, {0, 70, 1, 200}}}, 16, /*host=*/true);
  }
}

// LtGemm's plan cache: one heuristic query per (shape, dtype, bias, alignment), none on a repeat.
TEST(LtGemm, PlansAreCachedPerShapeBiasAndAlignment) {
  if (device_count() == 0) GTEST_SKIP() << "no GPU";
  auto lt = cuda::LtGemm::create(0);
  ASSERT_TRUE(lt.ok()) << lt.status();
  const int64_t T = 7, in = 64, out = 33;
  void *x = nullptr, *w = nullptr, *y = nullptr, *bias = nullptr;
  ASSERT_EQ(cudaMalloc(&x, (T * in + 8) * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&w, out * in * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&y, T * out * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&bias, out * 2), cudaSuccess);
  ASSERT_EQ(cudaMemset(x, 0, (T * in + 8) * 2), cudaSuccess);
  ASSERT_EQ(cudaMemset(w, 0, out * in * 2), cudaSuccess);
  ASSERT_EQ(cudaMemset(bias, 0, out * 2), cudaSuccess);
  auto& g = **lt;
  EXPECT_TRUE(g.matmul(DType::kBF16, x, w, nullptr, y, T, in, out, nullptr).ok());
  EXPECT_TRUE(g.matmul(DType::kBF16, x, w, nullptr, y, T, in, out, nullptr).ok());
  EXPECT_EQ(g.heuristic_queries(), 1u);
  EXPECT_TRUE(g.matmul(DType::kBF16, x, w, bias, y, T, in, out, nullptr).ok());
  EXPECT_TRUE(g.matmul(DType::kBF16, x, w, nullptr, y, T + 1, in, out, nullptr).ok());
  EXPECT_EQ(g.heuristic_queries(), 3u);
  // x one element past an aligned address: a plan of its own (or no algorithm: the caller's fallback).
  const Status odd = g.matmul(DType::kBF16, static_cast<char*>(x) + 2, w, nullptr, y, T, in, out, nullptr);
  EXPECT_TRUE(odd.ok() || absl::IsUnimplemented(odd)) << odd;
  EXPECT_EQ(g.heuristic_queries(), 4u);
  EXPECT_EQ(g.cached_plans(), 4u);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (void* p : {x, w, y, bias}) cudaFree(p);
}

// Decode-sized shapes are tuned by timing the heuristic's candidates on the call's operands: whichever wins, y is
// x · Wᵀ; a shape first seen inside a stream capture is neither tuned nor cached, and its graph still computes y.
TEST(LtGemm, TunedAndCapturedPlansComputeTheProduct) {
  if (device_count() == 0) GTEST_SKIP() << "no GPU";
  auto lt = cuda::LtGemm::create(0);
  ASSERT_TRUE(lt.ok()) << lt.status();
  auto& g = **lt;
  const int64_t in = 256, out = 384, max_t = 24;
  std::vector<float> xf(max_t * in), wf(out * in);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& v : xf) v = u(rng);
  for (float& v : wf) v = u(rng);
  std::vector<uint16_t> xh(xf.size()), wh(wf.size());
  for (size_t i = 0; i < xf.size(); ++i) xh[i] = f32_to_bf16(xf[i]), xf[i] = bf16_to_f32(xh[i]);
  for (size_t i = 0; i < wf.size(); ++i) wh[i] = f32_to_bf16(wf[i]), wf[i] = bf16_to_f32(wh[i]);
  void *x = nullptr, *w = nullptr, *y = nullptr;
  ASSERT_EQ(cudaMalloc(&x, xh.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&w, wh.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&y, max_t * out * 2), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(w, wh.data(), wh.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  auto check = [&](int64_t T) {
    std::vector<uint16_t> yh(T * out);
    ASSERT_EQ(cudaMemcpy(yh.data(), y, yh.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < out; ++o) {
        double ref = 0;
        for (int64_t c = 0; c < in; ++c) ref += double(xf[t * in + c]) * wf[o * in + c];
        ASSERT_NEAR(bf16_to_f32(yh[t * out + o]), ref, 0.02 * std::abs(ref) + 0.05) << "T " << T << " t " << t
                                                                                       << " o " << o;
      }
  };
  ASSERT_EQ(cudaMemset(y, 0, max_t * out * 2), cudaSuccess);
  ASSERT_TRUE(g.matmul(DType::kBF16, x, w, nullptr, y, 16, in, out, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  check(16);
  EXPECT_EQ(g.cached_plans(), 1u);

  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaMemset(y, 0, max_t * out * 2), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), cudaSuccess);
  const Status captured = g.matmul(DType::kBF16, x, w, nullptr, y, max_t, in, out, s);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  ASSERT_TRUE(captured.ok()) << captured;
  EXPECT_EQ(g.cached_plans(), 1u) << "a plan made inside a capture is not cached";
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiateWithFlags(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  check(max_t);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
  for (void* p : {x, w, y}) cudaFree(p);
}

const auto kDtypes = ::testing::Values(DType::kBF16, DType::kF16, DType::kF32);
std::string dtype_name(const ::testing::TestParamInfo<DType>& info) {
  return std::string(dtype_torch_name(info.param));
}
INSTANTIATE_TEST_SUITE_P(Dtypes, CudaOps, kDtypes, dtype_name);
INSTANTIATE_TEST_SUITE_P(Dtypes, CudaAttention, kDtypes, dtype_name);

}  // namespace
}  // namespace zi
