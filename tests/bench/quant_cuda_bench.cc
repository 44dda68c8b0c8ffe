// Quantized linear on the GPU (Google Benchmark; never pass/fail): Llama-2-7B projection shapes at decode batch
// sizes, bf16 activations, for the dense bf16 GEMM (bits 16) and 8/4-bit weights through each path — the fused
// kernels with the default split (path 1: CUDA-core GEMV for T ≤ 8, tensor cores above), the tensor-core kernel
// for every T (path 3, T ≤ 8 only: above it path 1 is the same) and dequantize + cuBLAS (path 2) — so that
// quant_gemv_max_rows() and quant_mma_min_rows() can be set from measurements. Time per linear from CUDA events
// around 20 back-to-back calls. Built only with CUDA.
//   build-*/tests/quant_cuda_bench --benchmark_counters_tabular=true
#if defined(ZI_WITH_CUDA)
#include <cuda_runtime_api.h>

#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/quant_kernels.h"
#include "engine/model/quantized_weights.h"

namespace zi {
namespace {

cuda::CudaBackend* gpu() {
  static std::unique_ptr<Backend> be = [] {
    auto b = make_cuda_backend({0, DType::kBF16});
    if (!b.ok()) {
      std::fprintf(stderr, "quant_cuda_bench: %s\n", std::string(b.status().message()).c_str());
      std::exit(1);
    }
    return std::move(*b);
  }();
  return static_cast<cuda::CudaBackend*>(be.get());
}

std::vector<float> random_values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.02f);
  for (auto& x : v) x = d(rng);
  return v;
}

// args: bits (16 = dense bf16), path (1 fused, 2 dequantize + GEMM, 3 fused on tensor cores; ignored for 16), T,
// out, in
void BM_QuantLinear(benchmark::State& state) {
  const int bits = static_cast<int>(state.range(0)), path = static_cast<int>(state.range(1));
  const int64_t T = state.range(2), out = state.range(3), in = state.range(4);
  cuda::CudaBackend& be = *gpu();
  const std::vector<float> w = random_values(out * in, 1);
  LinearWeight lw;
  if (bits == 16) {
    lw.weight = be.upload_weight(DType::kF32, {out, in}, w.data());
  } else {
    WeightSpec spec;
    spec.name = "w";
    spec.shape = {out, in};
    spec.quantized = &lw;
    spec.quant = {bits, 64};
    if (!upload_quantized(be, spec, w.data(), "bench").ok()) state.SkipWithError("quantize");
  }
  const std::vector<float> xv = random_values(T * in, 2);
  const Tensor x = be.upload_weight(DType::kF32, {T, in}, xv.data());
  cuda::set_quant_gemv_max_rows(path == 2 ? 0 : cuda::kQuantGemvMaxRows);
  cuda::set_quant_mma_min_rows(path == 3 ? 1 : cuda::kQuantMmaMinRows);
  if (path != 2 && (T > cuda::kQuantGemvMaxRows || bits == 16)) state.SkipWithError("fused: T > max rows");
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  constexpr int kCalls = 20;
  for (int i = 0; i < 3; ++i) be.linear(x, lw);  // warm-up (cuBLAS heuristics, allocator)
  for (auto _ : state) {
    cudaEventRecord(start, be.compute_stream());
    for (int i = 0; i < kCalls; ++i) benchmark::DoNotOptimize(be.linear(x, lw).data());
    cudaEventRecord(stop, be.compute_stream());
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3 / kCalls);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cuda::set_quant_gemv_max_rows(cuda::kQuantGemvMaxRows);
  cuda::set_quant_mma_min_rows(cuda::kQuantMmaMinRows);
  const double weight_bytes = bits == 16 ? 2.0 * out * in : static_cast<double>(quantized_bytes(out, in, {bits, 64}));
  state.counters["weight_GB/s"] =
      benchmark::Counter(weight_bytes, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t T : {1, 4, 8, 16, 32, 64})
    for (auto [out, in] : {std::pair<int64_t, int64_t>{4096, 4096}, {11008, 4096}, {4096, 11008}}) {
      b->Args({16, 0, T, out, in});
      for (int bits : {8, 4})
        for (int path : {1, 2, 3})
          if (path == 2 || (T <= cuda::kQuantGemvMaxRows && (path == 1 || T < cuda::kQuantMmaMinRows)))
            b->Args({bits, path, T, out, in});
    }
}
BENCHMARK(BM_QuantLinear)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace zi
#endif  // ZI_WITH_CUDA
