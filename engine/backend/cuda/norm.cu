// RMSNorm and LayerNorm: one block per row of H, fp32 statistics (two passes over the row, the second from L2),
// the result rounded once to the activation dtype. Weight and bias may be stored in another float dtype.
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {
namespace {

template <class T, class W>
__global__ void rms_norm_kernel(const T* __restrict__ x, int64_t H, const W* __restrict__ w, float eps,
                                T* __restrict__ y) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * H;
  T* yr = y + blockIdx.x * H;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = to_f32(xr[i]);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(H) + eps);
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) yr[i] = from_f32<T>(to_f32(w[i]) * (to_f32(xr[i]) * inv));
}

template <class T, class W, class B>
__global__ void layer_norm_kernel(const T* __restrict__ x, int64_t H, const W* __restrict__ w,
                                  const B* __restrict__ b, float eps, T* __restrict__ y) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * H;
  T* yr = y + blockIdx.x * H;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) sum += to_f32(xr[i]);
  const float mean = block_sum(sum, scratch) / static_cast<float>(H);
  // Variance from the centred values (not E[x²] − mean²), as torch: no cancellation for rows far from zero.
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float d = to_f32(xr[i]) - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(H) + eps);
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    float v = (to_f32(xr[i]) - mean) * inv * to_f32(w[i]);
    if (b != nullptr) v += to_f32(b[i]);
    yr[i] = from_f32<T>(v);
  }
}

int threads_for(int64_t H) { return static_cast<int>(std::clamp<int64_t>((H / 4 + 31) / 32 * 32, 32, 1024)); }

}  // namespace

void launch_rms_norm(DType type, const void* x, int64_t T, int64_t H, DType w_type, const void* w, float eps,
                     void* y, cudaStream_t stream) {
  if (T == 0) return;
  ZI_CHECK(T <= 0x7fffffff);
  ZI_DISPATCH_FLOAT(type, X, ZI_DISPATCH_FLOAT(w_type, W, {
    rms_norm_kernel<X, W><<<static_cast<unsigned>(T), threads_for(H), 0, stream>>>(
        static_cast<const X*>(x), H, static_cast<const W*>(w), eps, static_cast<X*>(y));
  }));
  ZI_CUDA_CHECK_LAUNCH();
}

void launch_layer_norm(DType type, const void* x, int64_t T, int64_t H, DType w_type, const void* w, DType b_type,
                       const void* b, float eps, void* y, cudaStream_t stream) {
  if (T == 0) return;
  ZI_CHECK(T <= 0x7fffffff);
  // Without a bias the bias type is irrelevant: instantiate with the weight's.
  if (b == nullptr) b_type = w_type;
  ZI_DISPATCH_FLOAT(type, X, ZI_DISPATCH_FLOAT(w_type, W, ZI_DISPATCH_FLOAT(b_type, B, {
    layer_norm_kernel<X, W, B><<<static_cast<unsigned>(T), threads_for(H), 0, stream>>>(
        static_cast<const X*>(x), H, static_cast<const W*>(w), static_cast<const B*>(b), eps, static_cast<X*>(y));
  })));
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
