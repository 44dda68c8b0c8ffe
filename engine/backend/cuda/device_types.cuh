// Device-side helpers shared by the kernels: element loads/stores in fp32 for the three float dtypes, warp and
// block reductions, and the host-side switch that instantiates a kernel for a runtime DType.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "engine/core/dtype.h"
#include "engine/core/status.h"

namespace zi::cuda {

template <class T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round to nearest even, as the host conversions in engine/core/dtype.h.
template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result. `scratch` holds 32
// floats of shared memory; the call ends with a barrier so scratch can be reused right after.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < warps ? scratch[lane] : 0.0f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

}  // namespace zi::cuda

// Runs the statement with `T` bound to the element type of `dtype` (F32 / F16 / BF16); anything else is a bug in
// the caller (the backend checks dtypes before launching).
#define ZI_DISPATCH_FLOAT(dtype, T, ...)                             \
  switch (dtype) {                                                   \
    case ::zi::DType::kF32: {                                        \
      using T = float;                                               \
      __VA_ARGS__;                                                   \
      break;                                                         \
    }                                                                \
    case ::zi::DType::kF16: {                                        \
      using T = __half;                                              \
      __VA_ARGS__;                                                   \
      break;                                                         \
    }                                                                \
    case ::zi::DType::kBF16: {                                       \
      using T = __nv_bfloat16;                                       \
      __VA_ARGS__;                                                   \
      break;                                                         \
    }                                                                \
    default:                                                         \
      ZI_CHECK(false && "CUDA kernel: not a float dtype");           \
  }
