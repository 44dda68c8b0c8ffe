#include "engine/zero/cuda/probe_kernels.h"

#include <algorithm>

#include "engine/backend/cuda/device_types.cuh"

namespace zi::cuda {
namespace {

// Four independent 16-byte loads per iteration keep enough requests in flight to saturate HBM; the tail loop takes
// what is left. The XOR fold is one instruction per word, far below the memory time.
__global__ void __launch_bounds__(kHbmReadThreads) hbm_read_kernel(const uint4* __restrict__ src, size_t n,
                                                                   uint32_t* __restrict__ sink) {
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
  uint32_t acc = 0;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = src[i], b = src[i + stride], c = src[i + 2 * stride], d = src[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
  }
  for (; i < n; i += stride) {
    const uint4 a = src[i];
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  __shared__ uint32_t warps[kHbmReadThreads / 32];
  if ((threadIdx.x & 31) == 0) warps[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t r = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) r ^= warps[w];
    sink[blockIdx.x] = r;
  }
}

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

template <class T>
__global__ void fill_uniform_kernel(T* __restrict__ dst, size_t n, uint32_t seed) {
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    const float u = static_cast<float>(hash32(i * 0x9E3779B97F4A7C15ull + seed) >> 8) * (1.0f / 16777216.0f);
    dst[i] = from_f32<T>(2.0f * u - 1.0f);
  }
}

}  // namespace

cudaError_t hbm_read_blocks(int device, int* blocks) {
  int sms = 0, per_sm = 0;
  cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err == cudaSuccess)
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, hbm_read_kernel, kHbmReadThreads, 0);
  *blocks = std::max(1, sms * std::max(1, per_sm));
  return err;
}

cudaError_t launch_hbm_read(const void* src, size_t bytes, uint32_t* sink, int blocks, cudaStream_t stream) {
  hbm_read_kernel<<<blocks, kHbmReadThreads, 0, stream>>>(static_cast<const uint4*>(src), bytes / 16, sink);
  return cudaGetLastError();
}

cudaError_t launch_fill_uniform(DType dtype, void* dst, size_t n, uint32_t seed, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<size_t>((n + threads - 1) / threads, 65536));
  switch (dtype) {
    case DType::kF32: fill_uniform_kernel<<<blocks, threads, 0, stream>>>(static_cast<float*>(dst), n, seed); break;
    case DType::kF16: fill_uniform_kernel<<<blocks, threads, 0, stream>>>(static_cast<__half*>(dst), n, seed); break;
    case DType::kBF16:
      fill_uniform_kernel<<<blocks, threads, 0, stream>>>(static_cast<__nv_bfloat16*>(dst), n, seed);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace zi::cuda
