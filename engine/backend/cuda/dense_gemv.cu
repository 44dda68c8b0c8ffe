// Dense GEMV for decode-sized T: y[T, N] = x[T, K] · W[N, K]ᵀ (+ bias), 16-bit or fp32 activations and weights of
// one dtype, fp32 accumulation, rounded once on store.
//
// Why: a decode step at batch 1–8 is a pass over the weights (13 GB for a 7B model) whose floor is the HBM read
// rate. cuBLASLt's heuristics for N = T ≤ 8 pick GEMM tiles that leave part of that rate unused.
//
// Shape of the work: one block per R output rows (R = 2 for T ≤ 2, else 4), its 256 threads splitting K in 16-byte
// vectors (thread i takes vectors i, i + 256, …: each warp reads 512 contiguous bytes of a row), kUnroll vectors of
// each row loaded before any FMA, then one block reduction of the T × R sums. A first version gave each warp 4 whole
// rows: for N = 4096 that is 128 blocks on 132 SMs and reached 1.0–1.1 TB/s on H100 (2026-12-07). Splitting K over
// the block gives N / R blocks (2048 for N = 4096), enough loads in flight for every SM. x (T × K, ≤ 176 KiB) is
// read through L1/L2 once per block: T / R times the weight bytes, from cache.
#include <algorithm>
#include <cstdlib>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/dense_gemv.h"
#include "engine/backend/cuda/device_types.cuh"

namespace zi::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 2;

constexpr int rows_per_block(int t) { return t <= 2 ? 2 : 4; }

// 16 bytes of T as fp32.
template <class T>
struct Vec {
  static constexpr int N = 16 / sizeof(T);
  __device__ __forceinline__ static void unpack(const uint4& raw, float (&f)[N]) {
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) f[i] = to_f32(e[i]);
  }
};

template <class T, int TR>
__global__ void __launch_bounds__(kThreads)
    dense_gemv_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                      T* __restrict__ y, int64_t K, int64_t N) {
  constexpr int R = rows_per_block(TR);
  constexpr int V = Vec<T>::N;
  const int64_t n0 = int64_t{blockIdx.x} * R;
  const int64_t vecs = K / V;  // 16-byte vectors per row
  const uint4* wrow[R];
#pragma unroll
  for (int r = 0; r < R; ++r)
    wrow[r] = reinterpret_cast<const uint4*>(w + (n0 + r < N ? n0 + r : N - 1) * K);  // past N: read, unused
  const uint4* xrow = reinterpret_cast<const uint4*>(x);
  float acc[TR][R];
#pragma unroll
  for (int t = 0; t < TR; ++t)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[t][r] = 0.0f;

  for (int64_t v0 = threadIdx.x; v0 < vecs; v0 += int64_t{kThreads} * kUnroll) {
    uint4 raw[kUnroll][R];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + int64_t{u} * kThreads;
#pragma unroll
      for (int r = 0; r < R; ++r)  // W is read once (evict-first load), so x, re-read by every block, stays cached
        raw[u][r] = v < vecs ? __ldcs(wrow[r] + v) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + int64_t{u} * kThreads;
      if (v >= vecs) break;
#pragma unroll
      for (int t = 0; t < TR; ++t) {
        float xf[V];
        Vec<T>::unpack(__ldg(xrow + t * vecs + v), xf);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float wf[V];
          Vec<T>::unpack(raw[u][r], wf);
#pragma unroll
          for (int i = 0; i < V; ++i) acc[t][r] += xf[i] * wf[i];
        }
      }
    }
  }

  __shared__ float partial[kWarps][TR * R];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int t = 0; t < TR; ++t)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float s = warp_sum(acc[t][r]);
      if (lane == 0) partial[warp][t * R + r] = s;
    }
  __syncthreads();
  if (threadIdx.x < TR * R) {
    const int t = threadIdx.x / R, r = threadIdx.x % R;
    const int64_t n = n0 + r;
    if (n < N) {
      float s = bias != nullptr ? to_f32(bias[n]) : 0.0f;
#pragma unroll
      for (int k = 0; k < kWarps; ++k) s += partial[k][threadIdx.x];
      y[int64_t{t} * N + n] = from_f32<T>(s);
    }
  }
}

template <class T, int TR>
void launch_rows(const void* x, const void* w, const void* bias, void* y, int64_t K, int64_t N,
                 cudaStream_t stream) {
  constexpr int R = rows_per_block(TR);
  const unsigned blocks = static_cast<unsigned>((N + R - 1) / R);
  dense_gemv_kernel<T, TR><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<const T*>(w),
                                                            static_cast<const T*>(bias), static_cast<T*>(y), K, N);
}

}  // namespace

bool dense_gemv_supported(DType type, const void* x, const void* w, const void* y, int64_t K, int64_t N) {
  const int64_t elem = static_cast<int64_t>(dtype_size(type));
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return K > 0 && N > 0 && (K * elem) % 16 == 0 && aligned(x) && aligned(w) && aligned(y) &&
         (N + 1) / 2 <= 0x7fffffff;
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
