// The attention prologue of a fused q/k/v projection in one kernel: from qkv [T, (nH + 2·nKV) × D] (columns
// [q | k | v]) it writes q rotated (rotate-half RoPE, as rope.cu) to q_out [T, nH × D], and k rotated plus v
// copied to the paged KV cache (as kv_write.cu), where the unfused path runs three column copies or projections,
// two rope kernels and kv_write. fp32 rotation with accurate sincosf, rounded once on store, so q and the cache hold
// what rope_inplace + kv_write would have written.
//
// Grid: one block per row t. The block first computes cos/sin of the row's angles (D/2 of them, shared by every head)
// and finds the sequence covering t (KvArgs::seqs; none for padding rows or sequences with n_new = 0: then only q is
// written). Work items are packs of V elements (16 bytes when aligned): q pairs, k pairs, v packs.
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/cuda/vec_pack.cuh"

namespace zi::cuda {
namespace {

template <class T, int V>
__global__ void qkv_rope_kv_write_kernel(const T* __restrict__ qkv, int n_heads, int n_kv_heads, int head_dim,
                                         const int32_t* __restrict__ positions, const float* __restrict__ inv_freq,
                                         KvArgs kv, T* __restrict__ q_out) {
  using P = VecPack<T, V>;
  extern __shared__ float cos_sin[];  // [D/2] cos, then [D/2] sin
  __shared__ int64_t cache_row;       // element offset of row t's slot in k_cache / v_cache, or −1
  const int64_t t = blockIdx.x;
  const int half = head_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float s, c;
    sincosf(pos * inv_freq[i], &s, &c);
    cos_sin[i] = c;
    cos_sin[half + i] = s;
  }
  if (threadIdx.x == 0) cache_row = -1;
  __syncthreads();
  // Rows of different sequences never overlap: at most one thread finds t.
  for (int s = threadIdx.x; s < kv.n_seqs; s += blockDim.x) {
    const int32_t row_begin = kv.seqs[4 * s + 1], n_new = kv.seqs[4 * s + 2], past = kv.seqs[4 * s + 3];
    if (t >= row_begin && t < int64_t{row_begin} + n_new) {
      const int p = past + static_cast<int>(t - row_begin);
      const int32_t block = kv.tables[int64_t{s} * kv.max_blocks + p / kv.block_size];
      cache_row = (int64_t{block} * kv.block_size + p % kv.block_size) * n_kv_heads * head_dim;
    }
  }
  __syncthreads();
  const int64_t dst = cache_row;
  T* k_cache = static_cast<T*>(kv.k_cache);
  T* v_cache = static_cast<T*>(kv.v_cache);

  const int pairs = half / V;  // packs in half a head
  const int n_q = n_heads * pairs, n_k = n_kv_heads * pairs, n_v = n_kv_heads * head_dim / V;
  const T* row = qkv + t * (int64_t{n_heads} + 2 * n_kv_heads) * head_dim;
  for (int item = threadIdx.x; item < n_q + n_k + n_v; item += blockDim.x) {
    if (item < n_q + n_k) {
      const bool is_q = item < n_q;
      if (!is_q && dst < 0) continue;
      const int j = is_q ? item : item - n_q;
      const int h = j / pairs, i0 = (j % pairs) * V;
      const T* src = row + (is_q ? 0 : n_heads * head_dim) + h * head_dim + i0;
      float a[V], b[V], lo[V], hi[V];
      P::load(src, a);
      P::load(src + half, b);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float c = cos_sin[i0 + e], s = cos_sin[half + i0 + e];
        lo[e] = a[e] * c - b[e] * s;
        hi[e] = b[e] * c + a[e] * s;
      }
      T* out = is_q ? q_out + t * n_heads * head_dim + h * head_dim + i0 : k_cache + dst + h * head_dim + i0;
      P::store(out, lo);
      P::store(out + half, hi);
    } else if (dst >= 0) {
      const int j = (item - n_q - n_k) * V;
      P::copy(v_cache + dst + j, row + (n_heads + n_kv_heads) * head_dim + j);
    }
  }
}

}  // namespace

void launch_qkv_rope_kv_write(DType type, const void* qkv, int64_t T, int n_heads, const int32_t* positions,
                              const float* inv_freq, const KvArgs& kv, void* q_out, cudaStream_t stream) {
  if (T == 0) return;
  ZI_CHECK(T <= 0x7fffffff && kv.head_dim % 2 == 0);
  const int half = kv.head_dim / 2;
  const size_t smem = sizeof(float) * kv.head_dim;
  ZI_DISPATCH_FLOAT(type, X, {
    constexpr int N = Vec16<X>::N;
    // Packs of N need every offset a multiple of N (half a head is) and 16-byte aligned bases.
    const bool vec = half % N == 0 && aligned16(qkv) && aligned16(q_out) && aligned16(kv.k_cache) &&
                     aligned16(kv.v_cache);
    const int v = vec ? N : 1;
    const int64_t items = (int64_t{n_heads} * half + int64_t{kv.n_kv_heads} * half +
                           int64_t{kv.n_kv_heads} * kv.head_dim) / v;
    const int threads = static_cast<int>(std::clamp<int64_t>((items + 31) / 32 * 32, 64, 256));
    const unsigned grid = static_cast<unsigned>(T);
    if (vec) {
      qkv_rope_kv_write_kernel<X, N><<<grid, threads, smem, stream>>>(static_cast<const X*>(qkv), n_heads,
                                                                      kv.n_kv_heads, kv.head_dim, positions,
                                                                      inv_freq, kv, static_cast<X*>(q_out));
    } else {
      qkv_rope_kv_write_kernel<X, 1><<<grid, threads, smem, stream>>>(static_cast<const X*>(qkv), n_heads,
                                                                      kv.n_kv_heads, kv.head_dim, positions,
                                                                      inv_freq, kv, static_cast<X*>(q_out));
    }
  });
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
