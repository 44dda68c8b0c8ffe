// Decode attention: every sequence adds one row, which attends over its whole cached context (paged: keys and values
// are found through the sequence's block table, attention_common.cuh). The split-context kernel
// (attention_decode_split.cu), when on, takes every shape whose key rows are whole 16-byte vectors; this per-head
// kernel takes the rest. One block per
// (sequence, query head); its four warps split the context into 32-key chunks (warp w takes chunks w, w + 4, ...),
// each keeping its own online softmax (lane j scores key j straight from global memory, then all lanes fold the
// chunk's value rows into their slice of the head dims), and the warps' partial results are merged at the end.
// fp32 throughout; GQA, sliding window and ALiBi as in the prefill kernel.
#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "engine/backend/cuda/attention_common.cuh"
#include "engine/backend/cuda/attention_decode_split.h"
#include "engine/backend/cuda/cuda_check.h"

namespace zi::cuda {
namespace {

constexpr int kWarps = 4;

// Off until gpu_all_tests has run the split kernel on a GPU (written without one, 2026-12-07): ZI_ATTENTION_DECODE=
// split (or set_attention_decode_split(true)) turns it on; the per-head kernel takes every shape otherwise.
bool g_split = [] {
  const char* v = std::getenv("ZI_ATTENTION_DECODE");
  return v != nullptr && std::string_view(v) == "split";
}();

// q (fp32, shared memory) · k (one cached key row of D elements). kVec: 16-byte loads (D × sizeof(T) is a multiple
// of 16 and the cache is 16-byte aligned).
template <class T, bool kVec>
__device__ __forceinline__ float dot_key(const float* qs, const T* k, int D) {
  float acc = 0.0f;
  if constexpr (kVec) {
    constexpr int kN = 16 / sizeof(T);
    for (int d = 0; d < D; d += kN) {
      const uint4 raw = *reinterpret_cast<const uint4*>(k + d);
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int i = 0; i < kN; ++i) acc += qs[d + i] * to_f32(e[i]);
    }
  } else {
    for (int d = 0; d < D; ++d) acc += qs[d] * to_f32(k[d]);
  }
  return acc;
}

template <class T, int kChunks, bool kVec>
__global__ void __launch_bounds__(kWarps * 32)
    attention_decode_kernel(KvArgs kv, AttentionArgs a, const T* __restrict__ q, T* __restrict__ out) {
  const int h = blockIdx.y;
  const SeqView sv = load_seq(kv, blockIdx.x);
  if (sv.n_new == 0) return;  // a sequence with no new row this step (padding of a replayed step)
  const int D = kv.head_dim;
  const int kvh = h / (a.n_heads / kv.n_kv_heads);
  const int64_t q_stride = int64_t{a.n_heads} * D;
  const T* kbase = static_cast<const T*>(kv.k_cache) + int64_t{kvh} * D;  // + kv_offset(position)
  const T* vbase = static_cast<const T*>(kv.v_cache) + int64_t{kvh} * D;
  const int p = sv.past;  // the new row's position (n_new == 1)

  extern __shared__ float smem[];
  float* qs = smem;            // [D], pre-scaled
  float* part_o = qs + D;      // [kWarps][D]
  __shared__ float part_m[kWarps], part_l[kWarps];
  for (int d = threadIdx.x; d < D; d += blockDim.x)
    qs[d] = to_f32(q[int64_t{sv.row_begin} * q_stride + int64_t{h} * D + d]) * a.scale;
  __syncthreads();

  const float slope = a.alibi_slopes != nullptr ? a.alibi_slopes[h] : 0.0f;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float m = -INFINITY, l = 0.0f, o[kChunks];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) o[c] = 0.0f;

  for (int c0 = first_visible(p, a.sliding_window) + warp * 32; c0 <= p; c0 += kWarps * 32) {
    const int kp = c0 + lane;
    float score = -INFINITY;
    if (kp <= p) score = dot_key<T, kVec>(qs, kbase + kv_offset(kv, sv, kp), D) + slope * static_cast<float>(kp - p);
    const float pj = online_softmax_step(score, m, l, o);  // lane 0's key (c0 ≤ p) is always visible
    const int nj = min(32, p - c0 + 1);
    // Lane j's key row offset, shared so that every lane reads value row j through the block table once.
    const int64_t my_off = kp <= p ? kv_offset(kv, sv, kp) : 0;
    for (int j = 0; j < nj; ++j) {
      const float pjj = __shfl_sync(0xffffffffu, pj, j);
      const T* vr = vbase + __shfl_sync(0xffffffffu, my_off, j);
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const int d = lane + 32 * c;
        if (d < D) o[c] += pjj * to_f32(vr[d]);
      }
    }
  }

  // Merge the warps: a warp that saw no key has l = 0 and contributes nothing.
  if (lane == 0) {
    part_m[warp] = m;
    part_l[warp] = l;
  }
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int d = lane + 32 * c;
    if (d < D) part_o[warp * D + d] = o[c];
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < kWarps; ++w)
    if (part_l[w] > 0.0f) M = fmaxf(M, part_m[w]);
  float L = 0.0f;
  for (int w = 0; w < kWarps; ++w)
    if (part_l[w] > 0.0f) L += part_l[w] * expf(part_m[w] - M);
  T* orow = out + int64_t{sv.row_begin} * q_stride + int64_t{h} * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int w = 0; w < kWarps; ++w)
      if (part_l[w] > 0.0f) acc += part_o[w * D + d] * expf(part_m[w] - M);
    orow[d] = from_f32<T>(acc / L);
  }
}

template <class T, int kChunks>
void launch_typed(const KvArgs& kv, const AttentionArgs& a, const void* q, void* out, cudaStream_t stream) {
  const size_t smem = sizeof(float) * (kv.head_dim + kWarps * kv.head_dim);
  const dim3 grid(static_cast<unsigned>(kv.n_seqs), static_cast<unsigned>(a.n_heads));
  const bool vec = (kv.head_dim * sizeof(T)) % 16 == 0 && reinterpret_cast<uintptr_t>(kv.k_cache) % 16 == 0;
  if (vec) {
    attention_decode_kernel<T, kChunks, true>
        <<<grid, kWarps * 32, smem, stream>>>(kv, a, static_cast<const T*>(q), static_cast<T*>(out));
  } else {
    attention_decode_kernel<T, kChunks, false>
        <<<grid, kWarps * 32, smem, stream>>>(kv, a, static_cast<const T*>(q), static_cast<T*>(out));
  }
}

}  // namespace

void set_attention_decode_split(bool on) { g_split = on; }
bool attention_decode_split_enabled() { return g_split; }

size_t attention_decode_workspace_bytes(DType type, const KvArgs& kv, const AttentionArgs& a) {
  return g_split ? plan_decode_split(type, kv, a).workspace_bytes : 0;
}

void launch_attention_decode(DType type, const KvArgs& kv, const AttentionArgs& a, const void* q, void* out,
                             void* workspace, cudaStream_t stream) {
  if (kv.n_seqs == 0) return;
  ZI_CHECK(kv.head_dim >= 1 && kv.head_dim <= kMaxAttentionHeadDim && kv.n_seqs <= 0x7fffffff &&
           a.n_heads <= 65535);
  // The split kernel reads q rows in 16-byte loads (the per-head one element by element).
  const bool q_aligned = reinterpret_cast<uintptr_t>(q) % 16 == 0;
  if (const DecodeSplitPlan plan = plan_decode_split(type, kv, a); plan.splits > 0 && g_split && q_aligned) {
    launch_attention_decode_split(type, kv, a, plan, q, out, workspace, stream);
    return;
  }
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
