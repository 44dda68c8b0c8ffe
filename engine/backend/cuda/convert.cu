// Element type conversion between F32 / F16 / BF16 (upload_weight from a checkpoint of another dtype).
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {
namespace {

template <class S, class D>
__global__ void convert_kernel(const S* __restrict__ x, D* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    y[i] = from_f32<D>(to_f32(x[i]));
}

}  // namespace

void launch_convert(DType src_type, const void* x, DType dst_type, void* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65536));
  ZI_DISPATCH_FLOAT(src_type, S, ZI_DISPATCH_FLOAT(dst_type, D, {
    convert_kernel<S, D><<<blocks, threads, 0, stream>>>(static_cast<const S*>(x), static_cast<D*>(y), n);
  }));
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
