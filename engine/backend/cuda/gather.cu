// Row and column gathers: the embedding lookup, gather_rows (e.g. the last row of each sequence before the LM
// head) and column_slice (splitting fused projections).
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {
namespace {

int grid_for(int64_t n, int threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 65536)));
}

// One block row per token; threads stride over H.
template <class S, class D>
__global__ void embedding_kernel(const S* __restrict__ table, int64_t V, int64_t H, const int32_t* __restrict__ ids,
                                 int64_t T, D* __restrict__ out) {
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
    const int32_t id = ids[t];
    const bool ok = id >= 0 && id < V;
    const S* row = table + (ok ? id : 0) * H;
    D* o = out + t * H;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) o[i] = ok ? from_f32<D>(to_f32(row[i])) : from_f32<D>(0.f);
  }
}

// Copies whole rows in units of U (16, 4 or 2 bytes, whichever divides the row size and the alignment).
template <class U>
__global__ void gather_rows_kernel(const U* __restrict__ x, int64_t row_units, const int32_t* __restrict__ rows,
                                   int64_t n, U* __restrict__ out) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const U* src = x + rows[i] * row_units;
    U* dst = out + i * row_units;
    for (int64_t j = threadIdx.x; j < row_units; j += blockDim.x) dst[j] = src[j];
  }
}

template <class U>
__global__ void column_slice_kernel(const U* __restrict__ x, int64_t T, int64_t n_groups, int64_t group,
                                    int64_t offset, int64_t width, U* __restrict__ out) {
  const int64_t out_row = n_groups * width;
  const int64_t total = T * out_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / out_row, r = i % out_row;
    const int64_t g = r / width, c = r % width;
    out[i] = x[t * n_groups * group + g * group + offset + c];
  }
}

}  // namespace

void launch_embedding(DType table_type, const void* table, int64_t V, int64_t H, const int32_t* ids, int64_t T,
                      DType out_type, void* out, cudaStream_t stream) {
  if (T == 0 || H == 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(256, (H + 31) / 32 * 32));
  const int blocks = static_cast<int>(std::min<int64_t>(T, 65536));
  ZI_DISPATCH_FLOAT(table_type, S, ZI_DISPATCH_FLOAT(out_type, D, {
    embedding_kernel<S, D><<<blocks, threads, 0, stream>>>(static_cast<const S*>(table), V, H, ids, T,
                                                             static_cast<D*>(out));
  }));
  ZI_CUDA_CHECK_LAUNCH();
}

void launch_gather_rows(const void* x, int64_t row_bytes, const int32_t* rows, int64_t n, void* out,
                        cudaStream_t stream) {
  if (n == 0 || row_bytes == 0) return;
  const uintptr_t align = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(out) |
                          static_cast<uintptr_t>(row_bytes);
  const int blocks = static_cast<int>(std::min<int64_t>(n, 65536));
  if (align % 16 == 0) {
    gather_rows_kernel<uint4><<<blocks, 128, 0, stream>>>(static_cast<const uint4*>(x), row_bytes / 16, rows, n,
                                                           static_cast<uint4*>(out));
  } else if (align % 4 == 0) {
    gather_rows_kernel<uint32_t><<<blocks, 256, 0, stream>>>(static_cast<const uint32_t*>(x), row_bytes / 4, rows,
                                                              n, static_cast<uint32_t*>(out));
  } else {
    ZI_CHECK(align % 2 == 0);
    gather_rows_kernel<uint16_t><<<blocks, 256, 0, stream>>>(static_cast<const uint16_t*>(x), row_bytes / 2, rows,
                                                              n, static_cast<uint16_t*>(out));
  }
  ZI_CUDA_CHECK_LAUNCH();
}

void launch_column_slice(size_t elem_size, const void* x, int64_t T, int64_t n_groups, int64_t group,
                         int64_t offset, int64_t width, void* out, cudaStream_t stream) {
  const int64_t total = T * n_groups * width;
  if (total == 0) return;
  const int threads = 256;
  const int blocks = grid_for(total, threads);
  if (elem_size == 4) {
    column_slice_kernel<uint32_t><<<blocks, threads, 0, stream>>>(static_cast<const uint32_t*>(x), T, n_groups,
                                                                   group, offset, width, static_cast<uint32_t*>(out));
  } else {
    ZI_CHECK(elem_size == 2);
    column_slice_kernel<uint16_t><<<blocks, threads, 0, stream>>>(static_cast<const uint16_t*>(x), T, n_groups,
                                                                   group, offset, width, static_cast<uint16_t*>(out));
  }
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
