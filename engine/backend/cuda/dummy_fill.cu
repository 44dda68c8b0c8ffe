// Dummy weights made on the GPU (Backend::uniform_weight): the host generator's values (engine/core/dummy_random.h),
// bit for bit, written at HBM speed instead of being generated on the host and copied over the bus.
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"
#include "engine/core/dummy_random.h"

namespace zi::cuda {
namespace {

template <class T>
__global__ void dummy_uniform_kernel(T* __restrict__ y, int64_t n, uint64_t key, float amplitude) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    y[i] = from_f32<T>(dummy_uniform(key, static_cast<uint64_t>(i), amplitude));
}

}  // namespace

void launch_dummy_uniform(DType type, void* y, int64_t n, uint64_t key, float amplitude, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65536);
  ZI_DISPATCH_FLOAT(type, X, {
    dummy_uniform_kernel<X><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(static_cast<X*>(y), n, key,
                                                                                   amplitude);
  });
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
