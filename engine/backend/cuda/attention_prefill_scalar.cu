// Scalar (fp32 CUDA-core) prefill attention: the fallback behind launch_attention_prefill (attention_prefill.cu) for
// fp32 activations and for head dims the tensor-core kernel (attention_prefill_flash.cu) does not take.
// Grid (row tiles of the longest n_new, sequence, head); a block takes 16 consecutive new rows of one
// sequence and one query head, streams that sequence's cached keys/values (found through its block table: the cache
// is paged, attention_common.cuh) through shared memory 32 at a time and
// keeps an online softmax per row (fp32 throughout). Four warps, four rows each; in a chunk, lane j scores key j
// against the row, then every lane folds the 32 value rows into its slice of the head dims.
// GQA reads kv head h / (nH / nKV); the sliding window and ALiBi are applied per (row, key).
// Tiles past a sequence's n_new exit at once, so a mixed batch costs a few empty blocks.
#include <algorithm>

#include "engine/backend/cuda/attention_common.cuh"
#include "engine/backend/cuda/attention_prefill.h"
#include "engine/backend/cuda/cuda_check.h"

namespace zi::cuda {
namespace {

constexpr int kBQ = 16;       // query rows per block
constexpr int kBK = 32;       // keys per shared-memory chunk (one per lane)
constexpr int kWarps = 4;
constexpr int kRowsPerWarp = kBQ / kWarps;

size_t prefill_smem_bytes(int D) { return sizeof(float) * (kBQ * D + kBK * (D + 1) + kBK * D); }

template <class T, int kChunks>
__global__ void __launch_bounds__(kWarps * 32)
    attention_prefill_kernel(KvArgs kv, AttentionArgs a, const T* __restrict__ q, T* __restrict__ out) {
  const int h = blockIdx.z;
  const SeqView sv = load_seq(kv, blockIdx.y);
  const int i0 = blockIdx.x * kBQ;
  if (i0 >= sv.n_new) return;
  const int nrows = min(kBQ, sv.n_new - i0);
  const int D = kv.head_dim;
  const int kvh = h / (a.n_heads / kv.n_kv_heads);
  const int64_t q_stride = int64_t{a.n_heads} * D;
  const T* kbase = static_cast<const T*>(kv.k_cache) + int64_t{kvh} * D;  // + kv_offset(position)
  const T* vbase = static_cast<const T*>(kv.v_cache) + int64_t{kvh} * D;

  extern __shared__ float smem[];
  float* qs = smem;                  // [kBQ][D], pre-scaled
  float* ks = qs + kBQ * D;          // [kBK][D + 1]: the pad keeps lane j's row reads on distinct banks
  float* vs = ks + kBK * (D + 1);    // [kBK][D]
  for (int e = threadIdx.x; e < kBQ * D; e += blockDim.x) {
    const int r = e / D, d = e % D;
    qs[e] = r < nrows ? to_f32(q[(int64_t{sv.row_begin} + i0 + r) * q_stride + int64_t{h} * D + d]) * a.scale : 0.0f;
  }

  const int p_first = sv.past + i0, p_last = sv.past + i0 + nrows - 1;
  const float slope = a.alibi_slopes != nullptr ? a.alibi_slopes[h] : 0.0f;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kChunks];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) o[rr][c] = 0.0f;
  }

  for (int k0 = first_visible(p_first, a.sliding_window); k0 <= p_last; k0 += kBK) {
    __syncthreads();  // the previous chunk is consumed (first pass: the q tile is written)
    for (int e = threadIdx.x; e < kBK * D; e += blockDim.x) {
      const int j = e / D, d = e % D;
      const int kp = k0 + j;
      float kx = 0.0f, vx = 0.0f;
      if (kp <= p_last) {
        const int64_t off = kv_offset(kv, sv, kp);
        kx = to_f32(kbase[off + d]);
        vx = to_f32(vbase[off + d]);
      }
      ks[j * (D + 1) + d] = kx;
      vs[j * D + d] = vx;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int r = warp * kRowsPerWarp + rr;
      if (r >= nrows) continue;  // uniform across the warp
      const int p = sv.past + i0 + r;
      const int lo = first_visible(p, a.sliding_window);
      if (k0 > p || k0 + kBK - 1 < lo) continue;  // no visible key for this row in the chunk
      const int kp = k0 + lane;
      float score = -INFINITY;
      if (kp >= lo && kp <= p) {
        const float* qr = qs + r * D;
        const float* kr = ks + lane * (D + 1);
        float dot = 0.0f;
        for (int d = 0; d < D; ++d) dot += qr[d] * kr[d];
        score = dot + slope * static_cast<float>(kp - p);
      }
      const float pj = online_softmax_step(score, m[rr], l[rr], o[rr]);
      // Partly unrolled: fully unrolling 32 keys × 4 rows × kChunks makes the kernel megabytes of code.
#pragma unroll 4
      for (int j = 0; j < kBK; ++j) {
        const float pjj = __shfl_sync(0xffffffffu, pj, j);
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          const int d = lane + 32 * c;
          if (d < D) o[rr][c] += pjj * vs[j * D + d];
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr;
    if (r >= nrows) continue;
    T* orow = out + (int64_t{sv.row_begin} + i0 + r) * q_stride + int64_t{h} * D;
    const float inv = 1.0f / l[rr];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int d = lane + 32 * c;
      if (d < D) orow[d] = from_f32<T>(o[rr][c] * inv);
    }
  }
}

template <class T, int kChunks>
void launch_typed(const KvArgs& kv, const AttentionArgs& a, const void* q, void* out, cudaStream_t stream) {
  const size_t smem = prefill_smem_bytes(kv.head_dim);
  auto* kernel = attention_prefill_kernel<T, kChunks>;
  // Above the default 48 KiB (head_dim > 128) the kernel must opt in to the larger shared memory.
  if (smem > 48 * 1024)
    ZI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>((kv.max_new + kBQ - 1) / kBQ), static_cast<unsigned>(kv.n_seqs),
                  static_cast<unsigned>(a.n_heads));
  kernel<<<grid, kWarps * 32, smem, stream>>>(kv, a, static_cast<const T*>(q), static_cast<T*>(out));
}

}  // namespace

void launch_attention_prefill_scalar(DType type, const KvArgs& kv, const AttentionArgs& a, const void* q, void* out,
                                     cudaStream_t stream) {
  ZI_DISPATCH_FLOAT(type, X, {
    switch (attention_chunks(kv.head_dim)) {
      case 1: launch_typed<X, 1>(kv, a, q, out, stream); break;
      case 2: launch_typed<X, 2>(kv, a, q, out, stream); break;
      case 4: launch_typed<X, 4>(kv, a, q, out, stream); break;
      default: launch_typed<X, 8>(kv, a, q, out, stream); break;
    }
  });
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
