// Residual adds and the bias add after a cuBLAS GEMM (fp32 math, one rounding).
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {
namespace {

// y may alias a (add_inplace): each element is read before it is written by the same thread.
template <class T>
__global__ void add_kernel(const T* a, const T* __restrict__ b, int64_t n, T* y) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    y[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

template <class T, class B>
__global__ void bias_add_kernel(T* __restrict__ y, int64_t T_rows, int64_t out, const B* __restrict__ bias) {
  const int64_t n = T_rows * out;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    y[i] = from_f32<T>(to_f32(y[i]) + to_f32(bias[i % out]));
}

int blocks_for(int64_t n) { return static_cast<int>(std::clamp<int64_t>((n + 255) / 256, 1, 65536)); }

}  // namespace

void launch_add(DType type, const void* a, const void* b, int64_t n, void* y, cudaStream_t stream) {
  if (n == 0) return;
  ZI_DISPATCH_FLOAT(type, X, {
    add_kernel<X><<<blocks_for(n), 256, 0, stream>>>(static_cast<const X*>(a), static_cast<const X*>(b), n,
                                                      static_cast<X*>(y));
  });
  ZI_CUDA_CHECK_LAUNCH();
}

void launch_bias_add(DType type, void* y, int64_t T, int64_t out, DType b_type, const void* bias,
                     cudaStream_t stream) {
  if (T * out == 0) return;
  ZI_DISPATCH_FLOAT(type, X, ZI_DISPATCH_FLOAT(b_type, B, {
    bias_add_kernel<X, B><<<blocks_for(T * out), 256, 0, stream>>>(static_cast<X*>(y), T, out,
                                                                    static_cast<const B*>(bias));
  }));
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
