// Elementwise activations in fp32: the SwiGLU gate product silu(gate) × up, and ReLU / GELU (tanh and erf) / SiLU.
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {
namespace {

// Accurate expf/tanhf/erff, not the fast intrinsics: these run once per element of a memory-bound pass.
__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }

template <class T>
__global__ void silu_mul_kernel(const T* __restrict__ gate, const T* __restrict__ up, int64_t n, T* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    y[i] = from_f32<T>(silu(to_f32(gate[i])) * to_f32(up[i]));
}

template <class T, Activation kKind>
__global__ void activation_kernel(const T* __restrict__ x, int64_t n, T* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float v = to_f32(x[i]);
    float r;
    if constexpr (kKind == Activation::kRelu) {
      r = v > 0.0f ? v : 0.0f;
    } else if constexpr (kKind == Activation::kGeluTanh) {
      r = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    } else if constexpr (kKind == Activation::kGelu) {
      r = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    } else {
      r = silu(v);
    }
    y[i] = from_f32<T>(r);
  }
}

int blocks_for(int64_t n) { return static_cast<int>(std::clamp<int64_t>((n + 255) / 256, 1, 65536)); }

}  // namespace

void launch_silu_mul(DType type, const void* gate, const void* up, int64_t n, void* y, cudaStream_t stream) {
  if (n == 0) return;
  ZI_DISPATCH_FLOAT(type, X, {
    silu_mul_kernel<X><<<blocks_for(n), 256, 0, stream>>>(static_cast<const X*>(gate), static_cast<const X*>(up), n,
                                                           static_cast<X*>(y));
  });
  ZI_CUDA_CHECK_LAUNCH();
}

void launch_activation(DType type, const void* x, int64_t n, Activation kind, void* y, cudaStream_t stream) {
  if (n == 0) return;
  ZI_DISPATCH_FLOAT(type, X, {
    const X* xp = static_cast<const X*>(x);
    X* yp = static_cast<X*>(y);
    switch (kind) {
      case Activation::kRelu:
        activation_kernel<X, Activation::kRelu><<<blocks_for(n), 256, 0, stream>>>(xp, n, yp);
        break;
      case Activation::kGeluTanh:
        activation_kernel<X, Activation::kGeluTanh><<<blocks_for(n), 256, 0, stream>>>(xp, n, yp);
        break;
      case Activation::kGelu:
        activation_kernel<X, Activation::kGelu><<<blocks_for(n), 256, 0, stream>>>(xp, n, yp);
        break;
      case Activation::kSilu:
        activation_kernel<X, Activation::kSilu><<<blocks_for(n), 256, 0, stream>>>(xp, n, yp);
        break;
    }
  });
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
