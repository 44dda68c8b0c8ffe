// Tensor-core prefill attention (FlashAttention-2 style) for bf16 / fp16 activations and head dims 16 (the test
// fixtures), 32, 64, 80, 96, 128 and 256; launch_attention_prefill (attention_prefill.cu) sends everything else
// (fp32 activations, other head dims) to the scalar kernel, which does every product in fp32 on CUDA cores (~10-20
// TFLOPS on a Llama-7B prefill). Here Q·Kᵀ and P·V run on mma.sync m16n8k16 (tensor_core.cuh), fp32 accumulation.
//
// Grid (64-row tiles of the longest n_new, sequence, head), the heaviest (last) row tiles first; tiles past a
// sequence's n_new exit at once. A block of four warps takes 64 consecutive new rows of one sequence and one query
// head (GQA: kv head h / (nH / nKV)); warp w owns rows 16w..16w+15, held in registers as mma A fragments (D ≤ 128;
// D = 256 reloads them from shared memory each tile to stay within the register file). The sequence's keys and
// values stream through shared memory 64 positions at a time, from the first one any row of the tile sees (sliding
// window) to the tile's last position (causal); each position's cache row is found through the block table
// (attention_common.cuh), so a tile may span any number of KV blocks of any size. cp.async overlaps the V tile's
// load with S = Q·Kᵀ and the next K tile's load with O += P·V.
//
// Per tile and warp: S (16 × 64, fp32 accumulators) → scale, ALiBi bias (slope_h × (key − query position)) and the
// causal / window mask in fp32 → online softmax in fp32 (base-2 exponent; a row with nothing visible yet keeps
// m = −inf and contributes nothing) → P rounded to the activation dtype, straight from the S accumulators into A
// fragments → O (16 × D, fp32) += P·V. The running sum l adds the rounded P, so the output is an exact convex
// combination of the values P·V saw. A warp skips the products of a tile none of its rows sees. At the end O / l goes
// through shared memory to 16-byte stores of the rows the sequence has (rows past n_new are computed but never
// written). Keys past the tile's last position are zero-filled, never read from the cache (the table may end there).
#include <cmath>

#include "engine/backend/cuda/attention_common.cuh"
#include "engine/backend/cuda/attention_prefill.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/tensor_core.cuh"

namespace zi::cuda {
namespace {

constexpr int kBM = 64;  // query rows per block (16 per warp)
constexpr int kBN = 64;  // key positions per shared-memory tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

// Shared-memory row stride in elements: D plus 16 bytes, so the eight rows an ldmatrix phase reads fall on distinct
// banks.
constexpr int row_stride(int D) { return D + 8; }

template <class T, int D>
constexpr size_t flash_smem_bytes() {
  return 2 * kBN * sizeof(int64_t) + sizeof(T) * size_t{3} * kBM * row_stride(D);  // offsets, Q, K, V
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads)
    attention_prefill_flash_kernel(KvArgs kv, AttentionArgs a, const T* __restrict__ q, T* __restrict__ out) {
  static_assert(D % 16 == 0 && D >= 16 && D <= 256, "head dim: a multiple of 16");
  constexpr int S = row_stride(D);
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kKSteps = D / 16;  // k steps of Q·Kᵀ
  constexpr int kDTiles = D / 8;   // 8-column tiles of O
  constexpr bool kQInRegs = D <= 128;

  const int h = blockIdx.z;
  const SeqView sv = load_seq(kv, blockIdx.y);
  const int i0 = (gridDim.x - 1 - blockIdx.x) * kBM;
  if (i0 >= sv.n_new) return;  // uniform over the block, before any barrier
  const int nrows = min(kBM, sv.n_new - i0);
  const int kvh = h / (a.n_heads / kv.n_kv_heads);
  const int64_t q_stride = int64_t{a.n_heads} * D;
  const T* kbase = static_cast<const T*>(kv.k_cache) + int64_t{kvh} * D;  // + offset of a position's row
  const T* vbase = static_cast<const T*>(kv.v_cache) + int64_t{kvh} * D;
  const int window = a.sliding_window;
  const int p_first = sv.past + i0, p_last = p_first + nrows - 1;
  const int k_begin = first_visible(p_first, window);
  const int n_tiles = (p_last - k_begin) / kBN + 1;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  int64_t* koff = reinterpret_cast<int64_t*>(smem_raw);  // [2][kBN]: cache offsets of a tile's positions, -1 = none
  T* qs = reinterpret_cast<T*>(koff + 2 * kBN);          // [kBM][S]
  T* ks = qs + kBM * S;                                  // [kBN][S]
  T* vs = ks + kBN * S;                                  // [kBN][S]

  // Offsets of tile `tile`'s positions (threads 0..63); positions past the tile's last query are not looked up.
  auto tile_offsets = [&](int tile, int64_t* dst) {
    if (threadIdx.x < kBN) {
      const int kp = k_begin + tile * kBN + static_cast<int>(threadIdx.x);
      dst[threadIdx.x] = kp <= p_last ? kv_offset(kv, sv, kp) : int64_t{-1};
    }
  };
  // One K or V tile into shared memory (asynchronously; zeros where there is no position).
  auto load_tile = [&](T* dst, const T* base, const int64_t* offs) {
#pragma unroll 4
    for (int e = threadIdx.x; e < kBN * kChunks; e += kThreads) {
      const int j = e / kChunks, c = e % kChunks;
      T* s = dst + j * S + c * 8;
      const int64_t off = offs[j];
      if (off >= 0)
        cp_async_16(s, base + off + c * 8);
      else
        *reinterpret_cast<uint4*>(s) = make_uint4(0, 0, 0, 0);
    }
  };

  tile_offsets(0, koff);
  for (int e = threadIdx.x; e < kBM * kChunks; e += kThreads) {
    const int r = e / kChunks, c = e % kChunks;
    T* s = qs + r * S + c * 8;
    if (r < nrows)
      cp_async_16(s, q + (int64_t{sv.row_begin} + i0 + r) * q_stride + int64_t{h} * D + c * 8);
    else
      *reinterpret_cast<uint4*>(s) = make_uint4(0, 0, 0, 0);
  }
  __syncthreads();  // koff[0] is written
  load_tile(ks, kbase, koff);
  cp_async_commit();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int r0 = warp * 16;                              // the warp's first row in the tile
  const bool warp_live = r0 < nrows;                     // some row of the warp is a real one
  const int pw_lo = p_first + r0, pw_hi = pw_lo + 15;    // the warp's positions (rows past n_new included)
  const int pa = pw_lo + g, pb = pa + 8;                 // this thread's two rows: g and g + 8
  const int lo_a = first_visible(pa, window), lo_b = first_visible(pb, window);
  const int pw_lo_visible = first_visible(pw_lo, window), pw_hi_visible = first_visible(pw_hi, window);
  const bool alibi = a.alibi_slopes != nullptr;
  const float slope2 = alibi ? a.alibi_slopes[h] * kLog2e : 0.0f;
  const float scale2 = a.scale * kLog2e;

  // Lane addresses for ldmatrix: A (Q rows) and B of Q·Kᵀ (key rows, non-transposed), B of P·V (value rows,
  // transposed); see tensor_core.cuh for the matrix order each x4 load produces.
  const T* q_lane = qs + (r0 + (lane & 15)) * S + (lane >> 4) * 8;
  const T* k_lane = ks + ((lane >> 4) * 8 + (lane & 7)) * S + ((lane >> 3) & 1) * 8;
  const T* v_lane = vs + (lane & 15) * S + (lane >> 4) * 8;

  float o[kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;  // l: this thread's columns only, summed at the end

  uint32_t qf[kQInRegs ? kKSteps : 1][4];
  cp_async_wait_all();
  __syncthreads();  // Q and K(0) have landed
  if constexpr (kQInRegs) {
#pragma unroll
    for (int kt = 0; kt < kKSteps; ++kt) ldmatrix_x4(qf[kt], q_lane + kt * 16);
  }

  for (int tile = 0; tile < n_tiles; ++tile) {
    const int k0 = k_begin + tile * kBN;
    cp_async_wait_all();
    __syncthreads();  // K(tile) has landed; every warp is done with V(tile - 1)
    load_tile(vs, vbase, koff + (tile & 1) * kBN);
    cp_async_commit();

    // Does any row of the warp see a key of this tile? Then does any (row, key) pair need the mask?
    const bool visible = warp_live && k0 <= pw_hi && k0 + kBN - 1 >= pw_lo_visible;
    const bool masked = k0 + kBN - 1 > pw_lo || (window > 0 && k0 < pw_hi_visible);
    uint32_t pf[kBN / 16][4];  // P as A fragments, one per 16 keys
    if (visible) {
      float s[kBN / 8][4];
#pragma unroll
      for (int nt = 0; nt < kBN / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
      for (int kt = 0; kt < kKSteps; ++kt) {
        uint32_t af[4];
        if constexpr (kQInRegs) {
#pragma unroll
          for (int i = 0; i < 4; ++i) af[i] = qf[kt][i];
        } else {
          ldmatrix_x4(af, q_lane + kt * 16);
        }
#pragma unroll
        for (int np = 0; np < kBN / 16; ++np) {
          uint32_t bf[4];
          ldmatrix_x4(bf, k_lane + np * 16 * S + kt * 16);
          mma_16816<T>(s[2 * np], af, bf[0], bf[1]);
          mma_16816<T>(s[2 * np + 1], af, bf[2], bf[3]);
        }
      }

      // Scores in log2 units; c < 2: row g (position pa), else row g + 8 (pb); column 2t + (c & 1) of key tile nt.
      if (masked || alibi) {
#pragma unroll
        for (int nt = 0; nt < kBN / 8; ++nt) {
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const int kp = k0 + nt * 8 + 2 * t + (c & 1);
            const int p = c < 2 ? pa : pb;
            const int lo = c < 2 ? lo_a : lo_b;
            const float v = s[nt][c] * scale2 + slope2 * static_cast<float>(kp - p);
            s[nt][c] = kp > p || kp < lo ? -INFINITY : v;
          }
        }
      } else {
#pragma unroll
        for (int nt = 0; nt < kBN / 8; ++nt) {
#pragma unroll
          for (int c = 0; c < 4; ++c) s[nt][c] *= scale2;
        }
      }

      // Online softmax; a row's 64 scores are spread over the 4 lanes of its quad.
      float mx_a = m_a, mx_b = m_b;
#pragma unroll
      for (int nt = 0; nt < kBN / 8; ++nt) {
        mx_a = fmaxf(mx_a, fmaxf(s[nt][0], s[nt][1]));
        mx_b = fmaxf(mx_b, fmaxf(s[nt][2], s[nt][3]));
      }
      mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
      mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
      mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
      mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
      // Nothing visible yet (max −inf): subtract 0 instead, so exp2 gives 0 rather than NaN.
      const float base_a = mx_a == -INFINITY ? 0.0f : mx_a, base_b = mx_b == -INFINITY ? 0.0f : mx_b;
      const float corr_a = exp2f(m_a - base_a), corr_b = exp2f(m_b - base_b);  // m = −inf → 0
      m_a = mx_a;
      m_b = mx_b;
      l_a *= corr_a;
      l_b *= corr_b;
#pragma unroll
      for (int dt = 0; dt < kDTiles; ++dt) {
        o[dt][0] *= corr_a;
        o[dt][1] *= corr_a;
        o[dt][2] *= corr_b;
        o[dt][3] *= corr_b;
      }
      // C fragment of key tile nt → A fragment of keys 16 (nt / 2)..: register 2 (nt & 1) + (row half).
#pragma unroll
      for (int nt = 0; nt < kBN / 8; ++nt) {
        float r0v, r1v, r2v, r3v;
        pf[nt / 2][2 * (nt & 1)] =
            pack2_rn<T>(exp2f(s[nt][0] - base_a), exp2f(s[nt][1] - base_a), r0v, r1v);
        pf[nt / 2][2 * (nt & 1) + 1] =
            pack2_rn<T>(exp2f(s[nt][2] - base_b), exp2f(s[nt][3] - base_b), r2v, r3v);
        l_a += r0v + r1v;
        l_b += r2v + r3v;
      }
    }

    if (tile + 1 < n_tiles) tile_offsets(tile + 1, koff + ((tile + 1) & 1) * kBN);
    cp_async_wait_all();
    __syncthreads();  // V(tile) has landed; every warp is done with K(tile); the next tile's offsets are written
    if (tile + 1 < n_tiles) {
      load_tile(ks, kbase, koff + ((tile + 1) & 1) * kBN);
      cp_async_commit();
    }

    if (visible) {
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
#pragma unroll
        for (int dp = 0; dp < kDTiles / 2; ++dp) {
          uint32_t bf[4];
          ldmatrix_x4_trans(bf, v_lane + kk * 16 * S + dp * 16);
          mma_16816<T>(o[2 * dp], pf[kk], bf[0], bf[1]);
          mma_16816<T>(o[2 * dp + 1], pf[kk], bf[2], bf[3]);
        }
      }
    }
  }

  // O / l, staged through the warp's own Q rows (no other warp reads them) for 16-byte row stores.
  l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
  l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
  l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
  l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
  const float inv_a = l_a > 0.0f ? 1.0f / l_a : 0.0f, inv_b = l_b > 0.0f ? 1.0f / l_b : 0.0f;
  __syncwarp();  // every lane's ldmatrix of its Q rows (D = 256: in the last tile) is done
  T* stage = qs + r0 * S;
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt) {
    float u0, u1;
    *reinterpret_cast<uint32_t*>(stage + g * S + dt * 8 + 2 * t) =
        pack2_rn<T>(o[dt][0] * inv_a, o[dt][1] * inv_a, u0, u1);
    *reinterpret_cast<uint32_t*>(stage + (g + 8) * S + dt * 8 + 2 * t) =
        pack2_rn<T>(o[dt][2] * inv_b, o[dt][3] * inv_b, u0, u1);
  }
  __syncwarp();
  for (int e = lane; e < 16 * kChunks; e += 32) {
    const int r = e / kChunks, c = e % kChunks;
    if (r0 + r >= nrows) break;  // rows grow with e
    T* orow = out + (int64_t{sv.row_begin} + i0 + r0 + r) * q_stride + int64_t{h} * D;
    *reinterpret_cast<uint4*>(orow + c * 8) = *reinterpret_cast<const uint4*>(stage + r * S + c * 8);
  }
}

template <class T, int D>
void launch_typed(const KvArgs& kv, const AttentionArgs& a, const void* q, void* out, cudaStream_t stream) {
  constexpr size_t smem = flash_smem_bytes<T, D>();
  auto* kernel = attention_prefill_flash_kernel<T, D>;
  if constexpr (smem > 48 * 1024)
    ZI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>((kv.max_new + kBM - 1) / kBM), static_cast<unsigned>(kv.n_seqs),
                  static_cast<unsigned>(a.n_heads));
  kernel<<<grid, kThreads, smem, stream>>>(kv, a, static_cast<const T*>(q), static_cast<T*>(out));
}

template <class T>
void launch_dim(const KvArgs& kv, const AttentionArgs& a, const void* q, void* out, cudaStream_t stream) {
  switch (kv.head_dim) {
    case 16: launch_typed<T, 16>(kv, a, q, out, stream); break;
    case 32: launch_typed<T, 32>(kv, a, q, out, stream); break;
    case 64: launch_typed<T, 64>(kv, a, q, out, stream); break;
    case 80: launch_typed<T, 80>(kv, a, q, out, stream); break;
    case 96: launch_typed<T, 96>(kv, a, q, out, stream); break;
    case 128: launch_typed<T, 128>(kv, a, q, out, stream); break;
    case 256: launch_typed<T, 256>(kv, a, q, out, stream); break;
    default: ZI_CHECK(false && "flash prefill attention: head dim not built");
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool attention_prefill_flash_supports(DType type, const KvArgs& kv, const void* q, const void* out) {
  if (type != DType::kBF16 && type != DType::kF16) return false;
  switch (kv.head_dim) {
    case 16: case 32: case 64: case 80: case 96: case 128: case 256: break;
    default: return false;
  }
  // Rows are D × 2 bytes (a multiple of 64): with 16-byte aligned bases every row chunk is 16-byte aligned.
  return aligned16(q) && aligned16(out) && aligned16(kv.k_cache) && aligned16(kv.v_cache);
}

void launch_attention_prefill_flash(DType type, const KvArgs& kv, const AttentionArgs& a, const void* q, void* out,
                                    cudaStream_t stream) {
  if (type == DType::kBF16)
    launch_dim<__nv_bfloat16>(kv, a, q, out, stream);
  else
    launch_dim<__half>(kv, a, q, out, stream);
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
