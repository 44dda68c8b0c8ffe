// Decode attention, split over the context (flash-decoding): every sequence adds one row, which attends over its
// whole cached context through the paged block table (attention_common.cuh).
//
// Why split: one block per (sequence, head) gives a batch-1 step of a 32-head model 32 blocks on a 132-SM GPU, each
// walking ~500 keys one after another: far from the HBM rate, and the step's KV bytes are read at a few hundred
// GB/s. Here a block owns (sequence, group of G query heads sharing one KV head, split of `keys_per_split`
// consecutive keys), so the grid has enough blocks at every batch size (plan_decode picks the split so that there
// are ≥ 2 blocks per SM), and a KV row read from memory serves all G heads of its group (GQA).
//
// Inside a block (128 threads): a key row of D elements is RP lanes × CH 16-byte vectors (RP a power of two ≤ 32,
// lanes of one row adjacent in a warp), so NR = 128 / RP rows are read per pass. One pass over keys and values
// together: each lane loads U key rows and the same U value rows (2·U·CH 16-byte loads in flight), the RP lanes of a
// row sum q·k by shuffles, and every row slot keeps its own online softmax (m, l and its slice of o per head),
// rescaled once per pass. At the end the row slots merge (shuffles within a warp, shared memory across warps).
// A first version scored all keys into shared memory, then read the values in a second pass (two dependent walks,
// 4 rows in flight per lane): on H100 it was 3 % slower than the per-head kernel at batch 16 and 7 % faster at 64.
// With one split the block writes o / l. Otherwise it writes (m, l, o) to the workspace
// [n_seqs][n_heads][splits][2 + D] (fp32) and a second kernel merges the splits (rescaling by exp(m_i − M)).
// A split past the sequence's last key writes l = 0 and is skipped by the merge. fp32 math throughout.
#include <algorithm>

#include "engine/backend/cuda/attention_common.cuh"
#include "engine/backend/cuda/attention_decode_split.h"
#include "engine/backend/cuda/cuda_check.h"

namespace zi::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
// Key (and value) rows a lane has in flight per pass: fewer when G heads' state fills the registers.
constexpr int unroll_for(int g, int ch) { return g * ch >= 16 ? 1 : g * ch >= 8 ? 2 : 4; }

template <class T>
struct Vec {
  static constexpr int N = 16 / sizeof(T);  // elements per 16-byte load
  __device__ __forceinline__ static void load(const T* p, float (&f)[N]) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) f[i] = to_f32(e[i]);
  }
  __device__ __forceinline__ static void unpack(const uint4& raw, float (&f)[N]) {
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) f[i] = to_f32(e[i]);
  }
};

// exp(m_old − m_new) for rescaling a running sum; 0 when nothing was summed yet (m_old = −∞).
__device__ __forceinline__ float rescale(float m_old, float m_new) {
  return m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
}

__device__ __forceinline__ float* split_slot(float* ws, int s, int h, int n_heads, int splits, int split, int D) {
  return ws + ((int64_t{s} * n_heads + h) * splits + split) * (2 + int64_t{D});
}

// One pass's key or value rows into registers: row j0 + u·NR + r (u < U) of the split, this lane's vectors
// c + ch·RP of it; rows past n and vectors past R read as zeros.
template <class T, int RP, int CH, int U>
__device__ __forceinline__ void load_rows(const T* base, const KvArgs& kv, const SeqView& sv, int k0, int j0, int n,
                                          int r, int c, int R, uint4 (&out)[U][CH]) {
  constexpr int N = Vec<T>::N, NR = kThreads / RP;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int j = j0 + u * NR + r;
#pragma unroll
    for (int ch = 0; ch < CH; ++ch) {
      const int vi = c + ch * RP;
      out[u][ch] = j < n && vi < R ? __ldg(reinterpret_cast<const uint4*>(base + kv_offset(kv, sv, k0 + j) + vi * N))
                                   : make_uint4(0, 0, 0, 0);
    }
  }
}

template <class T, int RP, int CH, int G>
__global__ void __launch_bounds__(kThreads)
    decode_split_kernel(KvArgs kv, AttentionArgs a, const T* __restrict__ q, T* __restrict__ out,
                        float* __restrict__ ws, int keys_per_split, int splits) {
  constexpr int N = Vec<T>::N;
  constexpr int NR = kThreads / RP;  // rows per pass
  constexpr int U = unroll_for(G, CH);
  const SeqView sv = load_seq(kv, blockIdx.x);
  if (sv.n_new == 0) return;  // a sequence with no new row this step (padding of a replayed step)
  const int D = kv.head_dim, R = D / N;  // R vectors per row
  const int h0 = blockIdx.y * G;
  const int kvh = h0 / (a.n_heads / kv.n_kv_heads);
  const int split = blockIdx.z;
  const int p = sv.past;  // the new row's position
  const int k0 = first_visible(p, a.sliding_window) + split * keys_per_split;
  const int n = min(p + 1, k0 + keys_per_split) - k0;  // keys of this split (≤ 0: past the end)
  const int64_t q_stride = int64_t{a.n_heads} * D;
  if (n <= 0) {
    if (threadIdx.x < G) split_slot(ws, blockIdx.x, h0 + threadIdx.x, a.n_heads, splits, split, D)[1] = 0.0f;
    return;
  }

  extern __shared__ float part[];  // [kWarps][G][D]
  __shared__ float part_m[kWarps][G], part_l[kWarps][G];
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31;
  const int r = t / RP, c = t % RP;  // row slot and vector index within the row

  float qv[G][CH][N];
  const T* qrow = q + int64_t{sv.row_begin} * q_stride + int64_t{h0} * D;
#pragma unroll
  for (int ch = 0; ch < CH; ++ch) {
    const int vi = c + ch * RP;
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (vi < R) {
        Vec<T>::load(qrow + int64_t{g} * D + vi * N, qv[g][ch]);
#pragma unroll
        for (int i = 0; i < N; ++i) qv[g][ch][i] *= a.scale;
      } else {
#pragma unroll
        for (int i = 0; i < N; ++i) qv[g][ch][i] = 0.0f;
      }
    }
  }
  const T* kbase = static_cast<const T*>(kv.k_cache) + int64_t{kvh} * D;
  const T* vbase = static_cast<const T*>(kv.v_cache) + int64_t{kvh} * D;

  // This row slot's online softmax per head: the running max m, the sum l of exp(s − m), and o = Σ exp(s − m)·v
  // over this lane's vectors.
  float m[G], l[G], o[G][CH][N];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int ch = 0; ch < CH; ++ch)
#pragma unroll
      for (int i = 0; i < N; ++i) o[g][ch][i] = 0.0f;
  }

  // Every lane runs the same passes (shuffles need the whole warp); rows past n are predicated off.
  for (int j0 = 0; j0 < n; j0 += NR * U) {
    uint4 kraw[U][CH], vraw[U][CH];
    load_rows<T, RP, CH, U>(kbase, kv, sv, k0, j0, n, r, c, R, kraw);
    load_rows<T, RP, CH, U>(vbase, kv, sv, k0, j0, n, r, c, R, vraw);
    float sc[U][G];
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int g = 0; g < G; ++g) sc[u][g] = 0.0f;
#pragma unroll
      for (int ch = 0; ch < CH; ++ch) {
        float kf[N];
        Vec<T>::unpack(kraw[u][ch], kf);
#pragma unroll
        for (int g = 0; g < G; ++g)
#pragma unroll
          for (int i = 0; i < N; ++i) sc[u][g] += qv[g][ch][i] * kf[i];
      }
#pragma unroll
      for (int off = RP / 2; off > 0; off >>= 1)
#pragma unroll
        for (int g = 0; g < G; ++g) sc[u][g] += __shfl_xor_sync(0xffffffffu, sc[u][g], off);
      const int j = j0 + u * NR + r;
      const float bias = static_cast<float>(k0 + j - p);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float slope = a.alibi_slopes != nullptr ? a.alibi_slopes[h0 + g] : 0.0f;
        sc[u][g] = j < n ? sc[u][g] + slope * bias : -INFINITY;
      }
    }
    if (j0 + r >= n) continue;  // no row of this pass for this slot (uniform over its RP lanes; no shuffle below)
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, sc[u][g]);
      const float f = rescale(m[g], mx);
      m[g] = mx;
      l[g] *= f;
#pragma unroll
      for (int ch = 0; ch < CH; ++ch)
#pragma unroll
        for (int i = 0; i < N; ++i) o[g][ch][i] *= f;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (j0 + u * NR + r >= n) break;
#pragma unroll
      for (int ch = 0; ch < CH; ++ch) {
        float vf[N];
        Vec<T>::unpack(vraw[u][ch], vf);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          const float pj = expf(sc[u][g] - m[g]);
          if (ch == 0) l[g] += pj;
#pragma unroll
          for (int i = 0; i < N; ++i) o[g][ch][i] += pj * vf[i];
        }
      }
    }
  }

  // Merge the row slots of the warp (lanes c, c + RP, ...): each pair to their common max.
#pragma unroll
  for (int off = RP; off < 32; off <<= 1)
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[g], off);
      const float lo = __shfl_xor_sync(0xffffffffu, l[g], off);
      const float mx = fmaxf(m[g], mo);
      const float fa = rescale(m[g], mx), fb = rescale(mo, mx);
      m[g] = mx;
      l[g] = l[g] * fa + lo * fb;
#pragma unroll
      for (int ch = 0; ch < CH; ++ch)
#pragma unroll
        for (int i = 0; i < N; ++i) o[g][ch][i] = o[g][ch][i] * fa + __shfl_xor_sync(0xffffffffu, o[g][ch][i], off) * fb;
    }
  if (lane < RP) {
    if (lane == 0) {
#pragma unroll
      for (int g = 0; g < G; ++g) {
        part_m[warp][g] = m[g];
        part_l[warp][g] = l[g];
      }
    }
#pragma unroll
    for (int ch = 0; ch < CH; ++ch) {
      const int vi = c + ch * RP;
      if (vi >= R) continue;
#pragma unroll
      for (int g = 0; g < G; ++g)
#pragma unroll
        for (int i = 0; i < N; ++i) part[(warp * G + g) * D + vi * N + i] = o[g][ch][i];
    }
  }
  __syncthreads();
  // Then over the warps (a warp that saw no key has l = 0 and m = −∞: weight 0).
  for (int idx = t; idx < G * D; idx += kThreads) {
    const int g = idx / D, d = idx % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, part_m[w][g]);
    float L = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = rescale(part_m[w][g], M);
      L += part_l[w][g] * f;
      acc += part[(w * G + g) * D + d] * f;
    }
    if (splits == 1) {
      out[int64_t{sv.row_begin} * q_stride + int64_t{h0 + g} * D + d] = from_f32<T>(acc / L);
    } else {
      float* slot = split_slot(ws, blockIdx.x, h0 + g, a.n_heads, splits, split, D);
      slot[2 + d] = acc;
      if (d == 0) {
        slot[0] = M;
        slot[1] = L;
      }
    }
  }
}

// out[s, h] = Σ_i o_i · e^(m_i − M) / Σ_i l_i · e^(m_i − M) over the splits i that saw a key (l_i > 0).
template <class T>
__global__ void __launch_bounds__(kThreads)
    decode_merge_kernel(KvArgs kv, AttentionArgs a, const float* __restrict__ ws, int splits, T* __restrict__ out) {
  const SeqView sv = load_seq(kv, blockIdx.x);
  if (sv.n_new == 0) return;
  const int h = blockIdx.y, D = kv.head_dim;
  float M = -INFINITY;
  for (int i = 0; i < splits; ++i) {
    const float* slot = split_slot(const_cast<float*>(ws), blockIdx.x, h, a.n_heads, splits, i, D);
    if (slot[1] > 0.0f) M = fmaxf(M, slot[0]);
  }
  float L = 0.0f;
  for (int i = 0; i < splits; ++i) {
    const float* slot = split_slot(const_cast<float*>(ws), blockIdx.x, h, a.n_heads, splits, i, D);
    if (slot[1] > 0.0f) L += slot[1] * expf(slot[0] - M);
  }
  T* orow = out + int64_t{sv.row_begin} * a.n_heads * D + int64_t{h} * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < splits; ++i) {
      const float* slot = split_slot(const_cast<float*>(ws), blockIdx.x, h, a.n_heads, splits, i, D);
      if (slot[1] > 0.0f) acc += slot[2 + d] * expf(slot[0] - M);
    }
    orow[d] = from_f32<T>(acc / L);
  }
}

int multiprocessors() {
  int dev = 0;
  ZI_CUDA_CHECK(cudaGetDevice(&dev));
  static int cached[64] = {};
  if (dev < 0 || dev >= 64) return 132;
  if (cached[dev] == 0) ZI_CUDA_CHECK(cudaDeviceGetAttribute(&cached[dev], cudaDevAttrMultiProcessorCount, dev));
  return cached[dev];
}

template <class T, int RP, int CH, int G>
void launch_typed(const KvArgs& kv, const AttentionArgs& a, const DecodeSplitPlan& plan, const void* q, void* out,
                  float* ws, cudaStream_t stream) {
  const size_t smem = sizeof(float) * size_t{kWarps} * G * kv.head_dim;
  const dim3 grid(static_cast<unsigned>(kv.n_seqs), static_cast<unsigned>(a.n_heads / G),
                  static_cast<unsigned>(plan.splits));
  decode_split_kernel<T, RP, CH, G><<<grid, kThreads, smem, stream>>>(
      kv, a, static_cast<const T*>(q), static_cast<T*>(out), ws, plan.keys_per_split, plan.splits);
  ZI_CUDA_CHECK_LAUNCH();
  if (plan.splits > 1) {
    decode_merge_kernel<T><<<dim3(static_cast<unsigned>(kv.n_seqs), static_cast<unsigned>(a.n_heads)), kThreads, 0,
                             stream>>>(kv, a, ws, plan.splits, static_cast<T*>(out));
    ZI_CUDA_CHECK_LAUNCH();
  }
}

template <class T, int RP, int CH>
void dispatch_group(const KvArgs& kv, const AttentionArgs& a, const DecodeSplitPlan& plan, const void* q, void* out,
                    float* ws, cudaStream_t stream) {
  switch (plan.heads_per_block) {
    case 1: launch_typed<T, RP, CH, 1>(kv, a, plan, q, out, ws, stream); break;
    case 2: launch_typed<T, RP, CH, 2>(kv, a, plan, q, out, ws, stream); break;
    case 4: launch_typed<T, RP, CH, 4>(kv, a, plan, q, out, ws, stream); break;
    default: launch_typed<T, RP, CH, 8>(kv, a, plan, q, out, ws, stream); break;
  }
}

}  // namespace

DecodeSplitPlan plan_decode_split(DType type, const KvArgs& kv, const AttentionArgs& a) {
  DecodeSplitPlan plan;
  const int elem = static_cast<int>(dtype_size(type));
  const int row_bytes = kv.head_dim * elem;
  const int vectors = row_bytes / 16;
  if (row_bytes % 16 != 0 || vectors > 64 || reinterpret_cast<uintptr_t>(kv.k_cache) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(kv.v_cache) % 16 != 0 || kv.n_seqs == 0)
    return plan;  // not eligible: the per-head kernel (attention_decode.cu) runs instead
  plan.lanes_per_row = vectors <= 4 ? 4 : vectors <= 8 ? 8 : vectors <= 16 ? 16 : 32;
  plan.vectors_per_lane = vectors <= 32 ? 1 : 2;
  const int group = a.n_heads / kv.n_kv_heads;
  plan.heads_per_block = group % 8 == 0 ? 8 : group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
  // Keys a sequence can see: its block table's width (fixed for a captured graph), at most the sliding window.
  int64_t max_keys = std::max<int64_t>(1, int64_t{kv.max_blocks} * kv.block_size);
  if (a.sliding_window > 0) max_keys = std::min<int64_t>(max_keys, a.sliding_window);
  const int64_t base = int64_t{kv.n_seqs} * (a.n_heads / plan.heads_per_block);
  const int64_t want = std::max<int64_t>(1, (2 * int64_t{multiprocessors()} + base - 1) / base);
  int64_t per = (max_keys + want - 1) / want;
  per = std::max<int64_t>((per + 31) / 32 * 32, 64);
  plan.keys_per_split = static_cast<int>(per);
  plan.splits = static_cast<int>((max_keys + per - 1) / per);
  if (plan.splits > 1)
    plan.workspace_bytes = sizeof(float) * static_cast<size_t>(kv.n_seqs) * a.n_heads * plan.splits *
                           (2 + static_cast<size_t>(kv.head_dim));
  return plan;
}

void launch_attention_decode_split(DType type, const KvArgs& kv, const AttentionArgs& a, const DecodeSplitPlan& plan,
                                   const void* q, void* out, void* workspace, cudaStream_t stream) {
  ZI_CHECK(plan.splits >= 1 && (plan.splits == 1 || workspace != nullptr));
  ZI_CHECK(a.n_heads / plan.heads_per_block <= 65535 && plan.splits <= 65535 && kv.n_seqs <= 0x7fffffff);
  float* ws = static_cast<float*>(workspace);
  ZI_DISPATCH_FLOAT(type, X, {
    if (plan.vectors_per_lane == 2) {
      dispatch_group<X, 32, 2>(kv, a, plan, q, out, ws, stream);
    } else {
      switch (plan.lanes_per_row) {
        case 4: dispatch_group<X, 4, 1>(kv, a, plan, q, out, ws, stream); break;
        case 8: dispatch_group<X, 8, 1>(kv, a, plan, q, out, ws, stream); break;
        case 16: dispatch_group<X, 16, 1>(kv, a, plan, q, out, ws, stream); break;
        default: dispatch_group<X, 32, 1>(kv, a, plan, q, out, ws, stream); break;
      }
    }
  });
}

}  // namespace zi::cuda
