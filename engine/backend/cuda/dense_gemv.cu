// Dense GEMV for decode-sized T: y[T, N] = x[T, K] · W[N, K]ᵀ (+ bias), 16-bit or fp32 activations and weights of
// one dtype, fp32 accumulation, rounded once on store.
//
// Why: a decode step at batch 1–8 is a pass over the weights (13 GB for a 7B model) whose floor is the HBM read
// rate. cuBLASLt's heuristics for N = T ≤ 8 pick GEMM tiles that leave part of that rate unused; this kernel reads
// each weight once with 16-byte loads, kRowsPerWarp rows per warp and kUnroll loads of each in flight per lane, and
// takes x (T × K elements, a few KiB to 200 KiB: L1/L2-resident) through the read-only cache. Every lane sums a
// strided part of each (t, row) dot product; one warp reduction per sum at the end.
#include <algorithm>
#include <cstdlib>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/dense_gemv.h"
#include "engine/backend/cuda/device_types.cuh"

namespace zi::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kRowsPerWarp = 4;
constexpr int kUnroll = 2;

template <class T>
struct Vec {
  static constexpr int N = 16 / sizeof(T);
  __device__ __forceinline__ static void load(const T* p, float (&f)[N]) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) f[i] = to_f32(e[i]);
  }
};

template <class T, int TR>
__global__ void __launch_bounds__(kThreads)
    dense_gemv_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                      T* __restrict__ y, int64_t K, int64_t N) {
  constexpr int V = Vec<T>::N;
  const int lane = threadIdx.x & 31;
  const int64_t n0 = (int64_t{blockIdx.x} * kWarpsPerBlock + (threadIdx.x >> 5)) * kRowsPerWarp;
  if (n0 >= N) return;
  float acc[TR][kRowsPerWarp];
#pragma unroll
  for (int t = 0; t < TR; ++t)
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) acc[t][r] = 0.0f;
  const T* wrow[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) wrow[r] = w + (n0 + r < N ? n0 + r : N - 1) * K;  // past N: read, unused

  for (int64_t k0 = int64_t{lane} * V; k0 < K; k0 += int64_t{32} * V * kUnroll) {
    float wf[kUnroll][kRowsPerWarp][V];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + int64_t{u} * 32 * V;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        if (k < K) {
          Vec<T>::load(wrow[r] + k, wf[u][r]);
        } else {
#pragma unroll
          for (int i = 0; i < V; ++i) wf[u][r][i] = 0.0f;
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + int64_t{u} * 32 * V;
      if (k >= K) break;
#pragma unroll
      for (int t = 0; t < TR; ++t) {
        float xf[V];
        Vec<T>::load(x + int64_t{t} * K + k, xf);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
          for (int i = 0; i < V; ++i) acc[t][r] += xf[i] * wf[u][r][i];
      }
    }
  }
#pragma unroll
  for (int t = 0; t < TR; ++t)
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) acc[t][r] = warp_sum(acc[t][r]);
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t n = n0 + r;
      if (n >= N) break;
      const float b = bias != nullptr ? to_f32(bias[n]) : 0.0f;
#pragma unroll
      for (int t = 0; t < TR; ++t) y[int64_t{t} * N + n] = from_f32<T>(acc[t][r] + b);
    }
  }
}

template <class T, int TR>
void launch_rows(const void* x, const void* w, const void* bias, void* y, int64_t K, int64_t N,
                 cudaStream_t stream) {
  const int64_t rows_per_block = int64_t{kWarpsPerBlock} * kRowsPerWarp;
  const unsigned blocks = static_cast<unsigned>((N + rows_per_block - 1) / rows_per_block);
  dense_gemv_kernel<T, TR><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<const T*>(w),
                                                            static_cast<const T*>(bias), static_cast<T*>(y), K, N);
}

int initial_max_rows() {
  const char* env = std::getenv("ZI_DENSE_GEMV_MAX_ROWS");
  if (!env || !*env) return 0;  // off until validated on a GPU (dense_gemv.h)
  return std::clamp(std::atoi(env), 0, kDenseGemvMaxRows);
}

int g_max_rows = initial_max_rows();

}  // namespace

int dense_gemv_max_rows() { return g_max_rows; }
void set_dense_gemv_max_rows(int rows) { g_max_rows = std::clamp(rows, 0, kDenseGemvMaxRows); }

bool dense_gemv_supported(DType type, const void* x, const void* w, const void* y, int64_t K, int64_t N) {
  const int64_t elem = static_cast<int64_t>(dtype_size(type));
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return K > 0 && N > 0 && (K * elem) % 16 == 0 && aligned(x) && aligned(w) && aligned(y) &&
         (N + kThreads / 32 * kRowsPerWarp - 1) / (kThreads / 32 * kRowsPerWarp) <= 0x7fffffff;
}

void launch_dense_gemv(DType type, const void* x, int64_t T, const void* w, const void* bias, void* y, int64_t K,
                       int64_t N, cudaStream_t stream) {
  ZI_CHECK(T >= 1 && T <= kDenseGemvMaxRows);
  ZI_DISPATCH_FLOAT(type, X, {
    switch (T) {
      case 1: launch_rows<X, 1>(x, w, bias, y, K, N, stream); break;
      case 2: launch_rows<X, 2>(x, w, bias, y, K, N, stream); break;
      case 3: launch_rows<X, 3>(x, w, bias, y, K, N, stream); break;
      case 4: launch_rows<X, 4>(x, w, bias, y, K, N, stream); break;
      case 5: launch_rows<X, 5>(x, w, bias, y, K, N, stream); break;
      case 6: launch_rows<X, 6>(x, w, bias, y, K, N, stream); break;
      case 7: launch_rows<X, 7>(x, w, bias, y, K, N, stream); break;
      default: launch_rows<X, 8>(x, w, bias, y, K, N, stream); break;
    }
  });
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
