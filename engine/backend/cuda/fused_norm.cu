// Residual add fused with the norm after it: x += delta in place and y = norm(x), one block per row of H, instead of
// an add kernel that writes x and a norm kernel that reads it back (two launches, two ramps, x read twice). As
// add_inplace then rms_norm / layer_norm: the sum is rounded once to the activation dtype and stored, and the
// statistics are taken of those rounded values in fp32; y is rounded once on store.
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/cuda/vec_pack.cuh"

namespace zi::cuda {
namespace {

template <class T>
__device__ __forceinline__ float round_to(float v) {
  return to_f32(from_f32<T>(v));
}

// 16-byte packs (H a multiple of the pack, rows aligned): thread i owns packs i, i + blockDim.x, ... (at most
// kPacks), whose sums stay in registers between the statistics and the output, so the row is read once.
template <class T, class W, bool kLayer, int kPacks>
__global__ void __launch_bounds__(1024)
    add_norm_vec_kernel(T* __restrict__ x, const T* __restrict__ delta, int64_t H, const W* __restrict__ w,
                        const W* __restrict__ b, float eps, T* __restrict__ y) {
  constexpr int N = Vec16<T>::N;
  using P = VecPack<T, N>;
  __shared__ float scratch[32];
  const int64_t packs = H / N;
  T* xr = x + blockIdx.x * H;
  const T* dr = delta + blockIdx.x * H;
  T* yr = y + blockIdx.x * H;
  float v[kPacks][N];
  float sum = 0.0f;  // Σ v (LayerNorm) or Σ v² (RMSNorm)
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int64_t p = threadIdx.x + int64_t{k} * blockDim.x;
    if (p < packs) {
      float a[N], d[N];
      P::load(xr + p * N, a);
      P::load(dr + p * N, d);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        v[k][j] = round_to<T>(a[j] + d[j]);
        sum += kLayer ? v[k][j] : v[k][j] * v[k][j];
      }
      P::store(xr + p * N, v[k]);  // exact: already rounded
    }
  }
  float mean = 0.0f, inv;
  if constexpr (kLayer) {
    mean = block_sum(sum, scratch) / static_cast<float>(H);
    // Variance from the centred values, as layer_norm (no cancellation for rows far from zero).
    float sq = 0.0f;
#pragma unroll
    for (int k = 0; k < kPacks; ++k)
      if (threadIdx.x + int64_t{k} * blockDim.x < packs) {
#pragma unroll
        for (int j = 0; j < N; ++j) sq += (v[k][j] - mean) * (v[k][j] - mean);
      }
    inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(H) + eps);
  } else {
    inv = rsqrtf(block_sum(sum, scratch) / static_cast<float>(H) + eps);
  }
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int64_t p = threadIdx.x + int64_t{k} * blockDim.x;
    if (p < packs) {
      float o[N];
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const int64_t i = p * N + j;
        if constexpr (kLayer) {
          o[j] = (v[k][j] - mean) * inv * to_f32(w[i]);
          if (b != nullptr) o[j] += to_f32(b[i]);
        } else {
          o[j] = to_f32(w[i]) * (v[k][j] * inv);
        }
      }
      P::store(yr + p * N, o);
    }
  }
}

// Any H and alignment: element by element; the later passes re-read the sums this thread stored in x (from cache).
template <class T, class W, bool kLayer>
__global__ void add_norm_kernel(T* x, const T* __restrict__ delta, int64_t H, const W* __restrict__ w,
                                const W* __restrict__ b, float eps, T* __restrict__ y) {
  __shared__ float scratch[32];
  T* xr = x + blockIdx.x * H;
  const T* dr = delta + blockIdx.x * H;
  T* yr = y + blockIdx.x * H;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const T s = from_f32<T>(to_f32(xr[i]) + to_f32(dr[i]));
    xr[i] = s;
    const float v = to_f32(s);
    sum += kLayer ? v : v * v;
  }
  float mean = 0.0f, inv;
  if constexpr (kLayer) {
    mean = block_sum(sum, scratch) / static_cast<float>(H);
    float sq = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      const float d = to_f32(xr[i]) - mean;
      sq += d * d;
    }
    inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(H) + eps);
  } else {
    inv = rsqrtf(block_sum(sum, scratch) / static_cast<float>(H) + eps);
  }
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = to_f32(xr[i]);
    float o;
    if constexpr (kLayer) {
      o = (v - mean) * inv * to_f32(w[i]);
      if (b != nullptr) o += to_f32(b[i]);
    } else {
      o = to_f32(w[i]) * (v * inv);
    }
    yr[i] = from_f32<T>(o);
  }
}

int round_up_warps(int64_t threads) { return static_cast<int>(std::clamp<int64_t>((threads + 31) / 32 * 32, 32, 1024)); }

// Registers per thread cap the vector kernel at kMaxPacks packs a thread (H ≤ 32768 in bf16 / fp16, 16384 in fp32).
constexpr int kMaxPacks = 4;

template <bool kLayer>
void launch_add_norm(DType type, void* x, const void* delta, int64_t T, int64_t H, DType w_type, const void* w,
                     const void* b, float eps, void* y, cudaStream_t stream) {
  if (T == 0 || H == 0) return;
  ZI_CHECK(T <= 0x7fffffff);
  ZI_DISPATCH_FLOAT(type, X, ZI_DISPATCH_FLOAT(w_type, W, {
    constexpr int N = Vec16<X>::N;
    const int64_t packs = H / N;
    X* xp = static_cast<X*>(x);
    const X* dp = static_cast<const X*>(delta);
    const W* wp = static_cast<const W*>(w);
    const W* bp = static_cast<const W*>(b);
    X* yp = static_cast<X*>(y);
    const unsigned grid = static_cast<unsigned>(T);
    const bool vec = H % N == 0 && packs <= int64_t{kMaxPacks} * 1024 && aligned16(x) && aligned16(delta) &&
                     aligned16(y);
    if (vec && packs <= 1024) {
      add_norm_vec_kernel<X, W, kLayer, 1><<<grid, round_up_warps(packs), 0, stream>>>(xp, dp, H, wp, bp, eps, yp);
    } else if (vec) {
      add_norm_vec_kernel<X, W, kLayer, kMaxPacks>
          <<<grid, round_up_warps((packs + kMaxPacks - 1) / kMaxPacks), 0, stream>>>(xp, dp, H, wp, bp, eps, yp);
    } else {
      add_norm_kernel<X, W, kLayer><<<grid, round_up_warps(H / 4), 0, stream>>>(xp, dp, H, wp, bp, eps, yp);
    }
  }));
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_add_rms_norm(DType type, void* x, const void* delta, int64_t T, int64_t H, DType w_type, const void* w,
                         float eps, void* y, cudaStream_t stream) {
  launch_add_norm<false>(type, x, delta, T, H, w_type, w, nullptr, eps, y, stream);
}

void launch_add_layer_norm(DType type, void* x, const void* delta, int64_t T, int64_t H, DType w_type,
                           const void* w, const void* b, float eps, void* y, cudaStream_t stream) {
  launch_add_norm<true>(type, x, delta, T, H, w_type, w, b, eps, y, stream);
}

}  // namespace zi::cuda
