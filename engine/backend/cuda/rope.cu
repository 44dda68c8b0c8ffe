// Rotary position embedding, rotate-half layout (Hugging Face): in each head, the pair (i, i + D/2) is rotated by
// angle = float(position) × inv_freq[i]. fp32 math with accurate sincosf (the angle can reach thousands of radians;
// the fast intrinsics lose precision there).
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {
namespace {

// One thread per (token, head, i < D/2).
template <class T>
__global__ void rope_kernel(T* __restrict__ x, int64_t T_rows, int n_heads, int head_dim,
                            const int32_t* __restrict__ positions, const float* __restrict__ inv_freq) {
  const int half = head_dim / 2;
  const int64_t total = T_rows * n_heads * half;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int i = static_cast<int>(idx % half);
    const int64_t th = idx / half;  // token × n_heads + head
    const int64_t t = th / n_heads;
    const float angle = static_cast<float>(positions[t]) * inv_freq[i];
    float s, c;
    sincosf(angle, &s, &c);
    T* xh = x + th * head_dim;
    const float a = to_f32(xh[i]), b = to_f32(xh[i + half]);
    xh[i] = from_f32<T>(a * c - b * s);
    xh[i + half] = from_f32<T>(b * c + a * s);
  }
}

}  // namespace

void launch_rope(DType type, void* x, int64_t T, int n_heads, int head_dim, const int32_t* positions,
                 const float* inv_freq, cudaStream_t stream) {
  const int64_t total = T * n_heads * (head_dim / 2);
  if (total == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((total + threads - 1) / threads, 65536));
  ZI_DISPATCH_FLOAT(type, X, {
    rope_kernel<X><<<blocks, threads, 0, stream>>>(static_cast<X*>(x), T, n_heads, head_dim, positions, inv_freq);
  });
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
