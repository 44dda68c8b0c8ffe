// Pieces shared by the prefill and decode attention kernels: the per-sequence view of the paged KV cache and the online
// (streaming) softmax update that both apply to a 32-key chunk, one key per lane.
#pragma once

#include <cmath>

#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {

// Head dims up to 32 × kChunks, accumulated 32 lanes wide: lane l owns dims l, l + 32, ...
inline int attention_chunks(int head_dim) { return head_dim <= 32 ? 1 : head_dim <= 64 ? 2 : head_dim <= 128 ? 4 : 8; }

// One sequence of the step, as the kernels see it: its rows and its block table.
struct SeqView {
  int32_t row_begin, n_new, past;
  int64_t kv_stride;      // elements between consecutive positions of a block: nKV × D
  const int32_t* table;   // its blocks in position order
};

__device__ __forceinline__ SeqView load_seq(const KvArgs& kv, int s) {
  SeqView v;
  v.row_begin = kv.seqs[4 * s + 1];
  v.n_new = kv.seqs[4 * s + 2];
  v.past = kv.seqs[4 * s + 3];
  v.kv_stride = int64_t{kv.n_kv_heads} * kv.head_dim;
  v.table = kv.tables + int64_t{s} * kv.max_blocks;
  return v;
}

// Element offset of position p of the sequence (the start of its nKV × D row) in a layer's paged cache.
__device__ __forceinline__ int64_t kv_offset(const KvArgs& kv, const SeqView& sv, int p) {
  const int b = sv.table[p / kv.block_size];
  return (int64_t{b} * kv.block_size + p % kv.block_size) * sv.kv_stride;
}

// First key position a query at position p sees: everything before it, or the last `window` positions.
__device__ __forceinline__ int first_visible(int p, int window) { return window > 0 ? max(0, p - window + 1) : 0; }

// Online softmax over one chunk of ≤ 32 keys for one query row, one key per lane. `score` is the lane's scaled
// (and ALiBi-biased) score or -inf when its key is not visible; at least one lane must hold a visible key, so the
// running max is finite after the first chunk. Rescales the running sum `l` and the accumulator `o`, and returns
// the lane's unnormalised probability exp(score − m) for the caller to fold its value row into `o`.
template <int kChunks>
__device__ __forceinline__ float online_softmax_step(float score, float& m, float& l, float (&o)[kChunks]) {
  const float m_new = fmaxf(m, warp_max(score));
  const float corr = expf(m - m_new);  // m = -inf before the first chunk → 0
  const float p = score == -INFINITY ? 0.0f : expf(score - m_new);
  l = l * corr + warp_sum(p);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) o[c] *= corr;
  m = m_new;
  return p;
}

}  // namespace zi::cuda
