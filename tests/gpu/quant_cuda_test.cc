// Quantized weights on the CUDA backend against the CPU reference (engine/quant): the dequantize kernel gives the
// reference's fp32 values rounded once to the activation dtype, bit for bit (word and byte paths, short last
// groups, odd widths); quantized linear — the fused kernels for T ≤ 64 (CUDA-core GEMV, and the tensor-core kernel
// for 16-bit activations, also forced down to T = 1) and dequantize + cuBLAS — agrees with the CPU's quantized
// linear within the activation dtype's tolerance, the fused result bit-identical from call to call (the cluster's
// fixed-order reduction); and a quantized model end to end
// (llama_mha, 8 and 4 bits) matches the CPU's quantized logits, streamed layers exactly equal to resident ones.
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/decode_linear.h"
#include "engine/backend/cuda/quant_kernels.h"
#include "engine/model/quantized_weights.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/local_executor.h"
#include "tests/gpu/cuda_test_util.h"

namespace zi {
namespace {

using testing_gpu::device_count;
using testing_gpu::randn;
using testing_gpu::rel_err;
using testing_gpu::round_to;
using testing_gpu::encode;
using testing_gpu::test_data_dir;

struct Shape {
  int64_t out, in, group;
};

class QuantCuda : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no GPU";
    cpu_ = make_cpu_backend(0);
    auto g = make_cuda_backend({0, GetParam()});
    ASSERT_TRUE(g.ok()) << g.status();
    gpu_ = std::move(*g);
    cuda_ = static_cast<cuda::CudaBackend*>(gpu_.get());
  }
  void TearDown() override {
    cuda::set_quant_gemv_max_rows(cuda::kQuantGemvMaxRows);
    cuda::set_quant_mma_min_rows(cuda::kQuantMmaMinRows);
  }
  DType act() const { return GetParam(); }
  double tol() const { return act() == DType::kF32 ? 2e-5 : act() == DType::kF16 ? 3e-3 : 1.5e-2; }

  // The same quantized weight on both backends (host quantizer, then each backend's upload).
  std::pair<LinearWeight, LinearWeight> quantized(const std::vector<float>& w, Shape s, int bits) {
    std::pair<LinearWeight, LinearWeight> out;
    for (int k = 0; k < 2; ++k) {
      WeightSpec spec;
      spec.name = "w";
      spec.shape = {s.out, s.in};
      spec.quantized = k == 0 ? &out.first : &out.second;
      spec.quant = {bits, s.group};
      const Status st = upload_quantized(k == 0 ? *cpu_ : *gpu_, spec, w.data(), "test");
      EXPECT_TRUE(st.ok()) << st;
    }
    return out;
  }

  std::unique_ptr<Backend> cpu_, gpu_;
  cuda::CudaBackend* cuda_ = nullptr;
};

// The tensor-core kernel's units (quant_gemm_small_t.cu): blocks of 128 rows, K-blocks of 128 columns split over a
// cluster of up to 8 blocks, x chunks of 2 K-blocks at 4 bits and 1 at 8.
const std::vector<Shape> kShapes = {
    {37, 70, 32},    // odd rows, short last group, 4-bit rows of 35 bytes: byte kernel, dequantize path
    {64, 176, 64},   // llama_mha's down_proj: short last group of 48; fused at 8 bits (rows of 176 bytes) only
    {96, 256, 32},   // word kernel, fused
    {130, 512, 64},  // fused, rows not a multiple of the warps per block nor of 128 (a 2-row block)
    {5, 33, 7},      // group of 7: never aligned to a word or a chunk
    {3, 1, 64},      // one column
    {1000, 4096, 128},
    {77, 640, 128},    // odd rows, group 128, 5 K-blocks: a cluster of 5 ranks with one K-block each
    {259, 1056, 32},   // 3 row blocks (the last of 3 rows), a last K-block of 32 columns
    {33, 1104, 48},    // 8 bits fused (a 16-column load straddles no group, a 128-column K-block does); 4 bits not
    {24, 4960, 32},    // 39 K-blocks over the cluster: uneven ranges, several chunks each
    {40, 8192, 64},    // 64 K-blocks: 8 per cluster rank
};

TEST_P(QuantCuda, DequantizeEqualsTheCpuReferenceBitForBit) {
  for (int bits : {8, 4})
    for (const Shape& s : kShapes) {
      const std::vector<float> w = randn(s.out * s.in, s.out + s.in + bits, 0.05f);
      auto q = quantize_matrix(w.data(), s.out, s.in, {bits, s.group}, "w");
      ASSERT_TRUE(q.ok()) << q.status();
      std::vector<float> ref(w.size());
      dequantize_rows(q->view(), 0, s.out, ref.data());
      const int64_t groups = quant_groups(s.in, s.group);
      Tensor data = gpu_->from_host(DType::kU8, {s.out, quant_row_bytes(s.in, bits)}, q->data.data());
      Tensor scales = gpu_->from_host(DType::kF16, {s.out, groups}, q->scales.data());
      Tensor mins = gpu_->from_host(DType::kF16, {s.out, groups}, q->mins.data());
      cuda::QuantArgs a;
      a.data = data.data_as<const uint8_t>();
      a.scales = scales.data_as<const uint16_t>();
      a.mins = mins.data_as<const uint16_t>();
      a.rows = s.out;
      a.cols = s.in;
      a.bits = bits;
      a.group_size = s.group;
      Tensor out = gpu_->alloc(act(), {s.out, s.in});
      cuda::launch_dequantize(a, act(), out.data(), cuda_->compute_stream());
      const std::vector<float> got = gpu_->to_host_f32(out);
      const std::vector<float> want = round_to(act(), ref);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(std::memcmp(&got[i], &want[i], 4), 0)
            << bits << " bits [" << s.out << ", " << s.in << "] group " << s.group << " element " << i << ": "
            << got[i] << " vs " << want[i];
    }
}

TEST_P(QuantCuda, LinearMatchesTheCpuQuantizedLinear) {
  struct Mode {
    int max_rows, mma_min_rows;
    const char* name;
  };
  const std::vector<Mode> modes = {
      {cuda::kQuantGemvMaxRows, cuda::kQuantMmaMinRows, "fused, default kernels"},
      {cuda::kQuantGemvMaxRows, 1, "fused, tensor cores for every T"},  // skipped at fp32: the default
      {0, cuda::kQuantMmaMinRows, "dequantize + GEMM"},
  };
  for (int bits : {8, 4})
    for (const Shape& s : kShapes) {
      const std::vector<float> w = randn(s.out * s.in, s.out * 7 + bits, 0.05f);
      auto [lc, lg] = quantized(w, s, bits);
      const bool bias = s.out % 2 == 1;
      if (bias) {
        const std::vector<float> b = randn(s.out, 3);
        const std::vector<uint8_t> bb = encode(DType::kBF16, b);
        lc.bias = cpu_->upload_weight(DType::kBF16, {s.out}, bb.data());
        lg.bias = gpu_->upload_weight(DType::kBF16, {s.out}, bb.data());
      }
      // Past 64 rows: the tensor-core kernel in slices of 64 (forced: mma), dequantize + GEMM (lt) and the timed
      // choice between them (auto).
      for (int64_t T : {1, 2, 5, 8, 9, 16, 17, 33, 64, 65, 100, 256}) {
        const std::vector<float> xv = round_to(act(), randn(T * s.in, T + bits));
        const std::vector<uint8_t> xb = encode(act(), xv);
        const Tensor xc = cpu_->from_host(DType::kF32, {T, s.in}, xv.data());
        const Tensor xg = gpu_->from_host(act(), {T, s.in}, xb.data());
        const std::vector<float> want = cpu_->to_host_f32(cpu_->linear(xc, lc));
        const std::optional<cuda::DecodeKernel> saved = cuda::forced_decode_kernel();
        std::vector<std::optional<cuda::DecodeKernel>> kernels = {saved};
        if (T > cuda::kQuantGemvMaxRows) kernels = {cuda::DecodeKernel::kLt, cuda::DecodeKernel::kMma, std::nullopt};
        for (const std::optional<cuda::DecodeKernel>& kernel : kernels)
        for (const Mode& m : modes) {
          if (act() == DType::kF32 && m.mma_min_rows == 1) continue;
          cuda::set_quant_gemv_max_rows(m.max_rows);
          cuda::set_quant_mma_min_rows(m.mma_min_rows);
          cuda::force_decode_kernel(kernel);
          const Tensor y = gpu_->linear(xg, lg);
          cuda::force_decode_kernel(saved);
          ASSERT_EQ(y.shape(), (std::vector<int64_t>{T, s.out}));
          const std::vector<float> got = gpu_->to_host_f32(y);
          const std::string what = std::to_string(bits) + " bits [" + std::to_string(s.out) + ", " +
                                   std::to_string(s.in) + "] group " + std::to_string(s.group) + " T " +
                                   std::to_string(T) + " (" + m.name + ", decode kernel " +
                                   (kernel ? std::string(cuda::decode_kernel_name(*kernel)) : "auto") + ")";
          EXPECT_LT(rel_err(got, want), tol()) << what;
          if (m.max_rows > 0) {
            cuda::force_decode_kernel(kernel);
            const std::vector<float> again = gpu_->to_host_f32(gpu_->linear(xg, lg));
            cuda::force_decode_kernel(saved);
            ASSERT_EQ(again.size(), got.size());
            EXPECT_EQ(std::memcmp(again.data(), got.data(), got.size() * sizeof(float)), 0)
                << what << ": not repeatable";
          }
        }
      }
    }
}

TEST_P(QuantCuda, UploadedTensorsRoundTrip) {
  const Shape s{48, 96, 32};
  const std::vector<float> w = randn(s.out * s.in, 9, 0.05f);
  auto [lc, lg] = quantized(w, s, 4);
  ASSERT_EQ(lg.format, WeightFormat::kQuantized);
  EXPECT_EQ(lg.in_features(), s.in);
  EXPECT_EQ(lg.out_features(), s.out);
  // dequantized_copy reads the packed tensors back from the device: the same dense values as from the host.
  // (The GPU's dense copy is uploaded in its weight dtype, the CPU's stays fp32.)
  EXPECT_EQ(round_to(gpu_->weight_dtype(DType::kF32), cpu_->to_host_f32(dequantized_copy(*cpu_, lc).weight)),
            gpu_->to_host_f32(dequantized_copy(*gpu_, lg).weight));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, QuantCuda, ::testing::Values(DType::kBF16, DType::kF16, DType::kF32),
                         [](const auto& info) { return std::string(dtype_torch_name(info.param)); });

// Prefill of one prompt then `steps` greedy decode steps; every step's logits, concatenated.
std::vector<float> run(Executor& ex, const std::vector<int32_t>& prompt, int steps) {
  std::vector<float> all;
  SeqStep first;
  first.seq_id = 1;
  first.tokens = prompt;
  first.first = true;
  first.want_logits = true;
  auto out = ex.step({{first}, {}});
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return all;
  all = out->results[0].logits;
  int32_t last = out->results[0].token;
  for (int k = 0; k < steps; ++k) {
    SeqStep next;
    next.seq_id = 1;
    next.tokens = {last};
    next.want_logits = true;
    auto o = ex.step({{next}, {}});
    EXPECT_TRUE(o.ok()) << o.status();
    if (!o.ok()) break;
    all.insert(all.end(), o->results[0].logits.begin(), o->results[0].logits.end());
    last = o->results[0].token;
  }
  EXPECT_TRUE(ex.step({{}, {1}}).ok());  // release the sequence: the next run starts it again
  return all;
}

TEST(QuantCudaModel, QuantizedLlamaMatchesTheCpuAndStreamsExactly) {
  if (device_count() == 0) GTEST_SKIP() << "no GPU";
  const std::vector<int32_t> prompt = {1, 450, 1996, 1735, 170, 432, 1720, 99, 3};
  for (auto [bits, group] : std::vector<std::pair<uint32_t, uint32_t>>{{8, 32}, {4, 64}}) {
    const std::string tag = std::to_string(bits) + " bits, group " + std::to_string(group);
    EngineOptions o;
    o.model_dir = test_data_dir() + "/models/llama_mha";
    o.max_batch_size = 1;
    o.max_context = 64;
    o.quant_bits = bits;
    o.quant_group_size = group;
    o.device = Device::kCpu;
    auto cpu = create_executor(o);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    o.device = Device::kCuda;
    auto resident = create_executor(o);
    ASSERT_TRUE(resident.ok()) << resident.status();
    EXPECT_EQ((*resident)->summary().quant_bits, bits);
    o.offload_tier = OffloadTier::kCpu;
    o.gpu_weights_budget = 1;  // no layer fits: all of them stream from pinned memory
    auto streamed = create_executor(o);
    ASSERT_TRUE(streamed.ok()) << streamed.status();

    // Only the prefill and first steps: past a near-tie the CPU and GPU may pick different tokens.
    const std::vector<float> want = run(**cpu, prompt, 0);
    const std::vector<float> got = run(**resident, prompt, 0);
    EXPECT_LT(rel_err(got, want), 2e-2) << tag;
    const std::vector<float> a = run(**resident, prompt, 5), b = run(**streamed, prompt, 5);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << tag << ": streamed != resident";
  }
}

}  // namespace
}  // namespace zi
