// Appends the step's new keys/values to the paged KV cache: for each sequence s, rows [row_begin, row_begin + n_new)
// of k, v [T, nKV × D] go to positions past_len ... of its blocks (position p → block tables[s][p / BS], row p % BS of
// [NB, BS, nKV, D]). Grid: (chunks of the longest n_new, sequence).
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {
namespace {

// U: the copy unit (2 or 4 bytes = one element, 16 bytes when rows and pointers allow).
template <class U>
__global__ void kv_write_kernel(const int32_t* __restrict__ seqs, const int32_t* __restrict__ tables, int max_blocks,
                                int block_size, int64_t row_units, const U* __restrict__ k, const U* __restrict__ v,
                                U* __restrict__ k_cache, U* __restrict__ v_cache) {
  const int s = blockIdx.y;
  const int32_t row_begin = seqs[4 * s + 1], n_new = seqs[4 * s + 2], past = seqs[4 * s + 3];
  const int32_t* table = tables + int64_t{s} * max_blocks;
  const int64_t n = int64_t{n_new} * row_units;
  const int64_t src0 = int64_t{row_begin} * row_units;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int p = past + static_cast<int>(i / row_units);
    const int64_t dst = (int64_t{table[p / block_size]} * block_size + p % block_size) * row_units + i % row_units;
    k_cache[dst] = k[src0 + i];
    v_cache[dst] = v[src0 + i];
  }
}

template <class U>
void launch_typed(const KvArgs& kv, int64_t row_bytes, const void* k, const void* v, cudaStream_t stream) {
  const int64_t row_units = row_bytes / static_cast<int64_t>(sizeof(U));
  const int threads = 256;
  const int64_t per_seq = int64_t{kv.max_new} * row_units;
  const dim3 grid(static_cast<unsigned>(std::clamp<int64_t>((per_seq + threads - 1) / threads, 1, 4096)),
                  static_cast<unsigned>(kv.n_seqs));
  kv_write_kernel<U><<<grid, threads, 0, stream>>>(kv.seqs, kv.tables, kv.max_blocks, kv.block_size, row_units,
                                                    static_cast<const U*>(k), static_cast<const U*>(v),
                                                    static_cast<U*>(kv.k_cache), static_cast<U*>(kv.v_cache));
}

}  // namespace

void launch_kv_write(DType type, const KvArgs& kv, const void* k, const void* v, cudaStream_t stream) {
  if (kv.n_seqs == 0 || kv.max_new == 0) return;
  ZI_CHECK(kv.n_seqs <= 65535);
  const int64_t row_bytes = int64_t{kv.n_kv_heads} * kv.head_dim * static_cast<int64_t>(dtype_size(type));
  const uintptr_t align = reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v) |
                          reinterpret_cast<uintptr_t>(kv.k_cache) | reinterpret_cast<uintptr_t>(kv.v_cache) |
                          static_cast<uintptr_t>(row_bytes);
  if (align % 16 == 0) {
    launch_typed<uint4>(kv, row_bytes, k, v, stream);
  } else if (align % 4 == 0) {
    launch_typed<uint32_t>(kv, row_bytes, k, v, stream);
  } else {
    ZI_CHECK(align % 2 == 0);
    launch_typed<uint16_t>(kv, row_bytes, k, v, stream);
  }
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
