// Fused dequantize + GEMM on tensor cores for decode batches: y[t, o] = Σ_c x[t, c] · W[o, c] for 1 ≤ T ≤ 256 rows
// of bf16 / fp16 activations x [T, cols], W packed 4- or 8-bit (engine/quant/quantize.h), y [T, rows] in the act
// dtype.
//
// Why: at decode the step is bound by reading W from HBM. The CUDA-core GEMV (quant_gemv.cu) spends ~2 instructions
// per weight and activation row, so past a few rows it is compute bound (64 rows of a 4-bit Llama-2-7B layer, ~100 MB
// read in ~30 µs at 3.35 TB/s, are ~0.8 PFLOP/s of FMAs); dequantize + cuBLAS reads W, writes it as bf16 and reads
// it again (0.56 + 2 + 2 bytes a weight at 4 bits, group 64: ~8x). Here each packed row (and its scales / mins) is read from HBM exactly once,
// dequantized in registers and fed to mma.sync.m16n8k16 (fp32 accumulation); the dequantize cost (~4 ALU
// instructions a weight) does not grow with T.
//
// Numerics: each weight is fmaf(code, scale, min) in fp32 — the CPU reference's value bit for bit — rounded once to
// the act dtype (what the dequantize + GEMM path feeds cuBLAS); products and sums in fp32 on the tensor cores.
//
// Work split (units: rows = output features, cols = input features, a K-block = 128 cols):
//  - a block of 8 warps owns 128 output rows; each warp owns 16 of them (one MMA M-tile) and all T of its slice (NT
//    tiles of 8, T padded to 8·NT; NT ∈ {1, 2, 4, 6, 8}). T > 64 is cut into slices of 64 rows along grid.y, row
//    blocks along grid.z: blocks are scheduled x, then y, then z, so the slices of one row block start together
//    and read the same W, the later reads hitting L2, and W crosses HBM about once (4 slices at T = 256;
//    dequantize + GEMM moves ~8× the packed bytes);
//  - the C blocks of a thread-block cluster (C ≤ 8, chosen so that the grid fits the GPU in one wave: 4096 rows give
//    32 row blocks × 8) split the K-blocks of those rows; each block copies x for a chunk of its K-blocks into
//    shared memory (cp.async, [8·NT rows, 256 cols at 4 bits / 128 at 8] in the act dtype, double-buffered,
//    XOR-swizzled so the fragment reads are conflict free) while the next chunk's W is in flight in registers
//    (4 16-byte loads a thread, 16 KiB a block);
//  - at the end every block writes its fp32 partial tile [T, 128] to shared memory and the cluster sums the C
//    partials through distributed shared memory in rank order (deterministic), rounding once into y.
//
// The MMA's K order is free (a sum), so thread (g = lane / 4, t = lane % 4) of a warp takes cols [32t, 32t + 32) of
// a K-block for both operands: one 16-byte load of its two rows g, g + 8 at 4 bits (two at 8), and 4 16-byte smem
// reads of x per 8-row tile; k-step s (0..7) uses its physical cols 32t + 4s .. + 3 as the fragment's logical
// k = {2t, 2t + 1, 2t + 8, 2t + 9}.
//
// Preconditions (quant_gemv_supported): row_bytes % 16 == 0 (so cols % 32 == 0 at 4 bits, % 16 at 8), group_size a
// multiple of one load's codes (a load never straddles groups), data and x 16-byte aligned. sm_90 (clusters).
//
// Dense weights (BITS = 16: W already in the act dtype, launch_dense_mma) take the same kernel with the dequantize
// left out: cuBLASLt's kernels for T ≤ 64 read W at well under HBM bandwidth (H100, T = 16: 1.3 TB/s of 3.2), and
// this one's work split (all T in one block's registers, K split over a cluster so the grid fills the GPU in one
// wave) is what a memory-bound skinny GEMM needs. Thread (g, t) then loads cols [32t, 32t + 32) of a K-block as 4
// 16-byte loads per row; load i holds cols 8i .. 8i + 7, its words 2e and 2e + 1 are k-step 2i + e's fragment
// registers as they stand. Preconditions (dense_mma_supported): cols % 8 == 0, W, x 16-byte aligned. An optional
// bias [rows] in the act dtype is added before the one rounding into y.
#include <cooperative_groups.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/dense_gemv.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/quant_kernels.h"

namespace zi::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockRows = kWarps * 16;  // output rows per block
constexpr int kKb = 128;                 // cols per K-block
constexpr int kMaxCluster = 8;           // portable cluster size
constexpr int kSliceRows = 64;           // T rows one block holds (NT ≤ 8 tiles of 8)
constexpr int kPStride = kBlockRows + 4;  // floats per T row of the partial tile (spreads the fragment stores)

template <int BITS>
struct Cfg {
  static constexpr int kLoads = BITS / 4;           // 16-byte loads per row, K-block and thread: 1, 2 or 4
  static constexpr int kChunk = BITS == 4 ? 2 : 1;  // K-blocks per x chunk = K-blocks of W a thread has in flight
  static constexpr int kUnits = kChunk * kKb / 8;   // 16-byte units (8 activations) per x row of a chunk
};

// Two x chunk buffers [8·NT][kUnits] (the next one fills while the current one is read), or the partial tile.
template <int BITS, int NT>
constexpr size_t smem_bytes() {
  const size_t x = size_t{2} * 8 * NT * Cfg<BITS>::kUnits * 16, p = size_t{8} * NT * kPStride * 4;
  return x > p ? x : p;
}

// The act dtype's fragment packing and MMA.
template <class A>
struct Mma;
template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <>
struct Mma<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

__device__ __forceinline__ void cp_async16(void* smem, const void* global, int src_bytes) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(global), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Byte `b` of `src` (a code) as an exact float: 0x4B0000cc is 2^23 + cc, minus 2^23 (cheaper than I2F).
__device__ __forceinline__ float code_f32(uint32_t src, int b) {
  return __uint_as_float(__byte_perm(src, 0x4B000000u, 0x7440u | static_cast<uint32_t>(b))) - 8388608.0f;
}
// The reference's dequantized value (quantize.h): min + code · scale, one fp32 rounding.
__device__ __forceinline__ float dq(uint32_t src, int b, float s, float m) { return fmaf(code_f32(src, b), s, m); }

__device__ __forceinline__ float half_bits_to_f32(unsigned short h) { return __half2float(__ushort_as_half(h)); }

// One thread's W for one K-block: rows g and g + 8 of its warp's tile, kLoads 16-byte loads each, and the scale /
// min (raw fp16 bits) of each load's group. Zero (weights 0) where the row or the cols lie outside the matrix.
template <int BITS>
struct WTile {
  uint4 d[2][Cfg<BITS>::kLoads];
  unsigned short s[2][Cfg<BITS>::kLoads], m[2][Cfg<BITS>::kLoads];
};

template <class A, int BITS, int NT>
__global__ void __launch_bounds__(kThreads, 2)
    quant_mma_kernel(QuantArgs q, const A* __restrict__ x, int T, const A* __restrict__ bias, A* __restrict__ y) {
  using C = Cfg<BITS>;
  constexpr int kUnits = C::kUnits, kChunk = C::kChunk, kLoads = C::kLoads;
  constexpr int kBuf = 8 * NT * kUnits;  // uint4 per x chunk buffer
  extern __shared__ uint4 smem[];  // x chunks 2 × [8·NT][kUnits] swizzled; at the end the partial tile [8·NT][kPStride]
  cg::cluster_group cluster = cg::this_cluster();
  const int ranks = static_cast<int>(cluster.num_blocks()), rank = static_cast<int>(cluster.block_rank());
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  {  // this block's slice of T (grid.y): rows [64y, 64y + 64)
    const int t0 = static_cast<int>(blockIdx.y) * kSliceRows;
    x += int64_t{t0} * q.cols;
    y += int64_t{t0} * q.rows;
    T = min(kSliceRows, T - t0);
  }

  // Column indices fit an int (the launcher checks cols); row offsets are 64-bit.
  const int64_t rows = q.rows, rb = q.row_bytes(), groups = q.groups();
  const int cols = static_cast<int>(q.cols);
  const int gs = static_cast<int>(q.group_size < q.cols ? q.group_size : q.cols);  // col / gs = the group
  const int64_t block_row0 = int64_t{blockIdx.z} * kBlockRows;  // row blocks along grid.z
  const int64_t warp_row0 = block_row0 + warp * 16;
  const bool warp_live = warp_row0 < rows;  // warp-uniform: a warp past the last row skips its MMAs
  const int kblocks = (cols + kKb - 1) / kKb;
  const int kb_begin = kblocks * rank / ranks, kb_end = kblocks * (rank + 1) / ranks;

  const uint8_t* w_rows[2];  // this thread's rows g and g + 8 (row 0 stands in for a row past the matrix)
  int64_t sm_off[2];         // their scales / mins offset
  bool row_ok[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t o = warp_row0 + g + 8 * r;
    row_ok[r] = o < rows;
    const int64_t oc = row_ok[r] ? o : 0;
    w_rows[r] = q.data + oc * rb;
    sm_off[r] = oc * groups;
  }
  const unsigned short* scales = reinterpret_cast<const unsigned short*>(q.scales);
  const unsigned short* mins = reinterpret_cast<const unsigned short*>(q.mins);

  auto load = [&](WTile<BITS>& w, int kb) {
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int h = 0; h < kLoads; ++h) {
        const int col = kb * kKb + 32 * t + (128 / BITS) * h;  // this load's first col (steps 8, 16, 32 cols)
        if (row_ok[r] && kb < kb_end && col < cols) {
          w.d[r][h] = __ldg(reinterpret_cast<const uint4*>(w_rows[r] + int64_t{col} * BITS / 8));
          if constexpr (BITS != 16) {
            const int64_t gi = sm_off[r] + col / gs;
            w.s[r][h] = __ldg(scales + gi);
            w.m[r][h] = __ldg(mins + gi);
          }
        } else {
          w.d[r][h] = make_uint4(0, 0, 0, 0);
          w.s[r][h] = 0;
          w.m[r][h] = 0;
        }
      }
  };

  // x fragment reads: row 8·nt + g, unit 16·kl + 4t + (i ^ xr) of the chunk (see stage()).
  const int xr = ((g & 1) << 1) | (t >> 1);
  const uint4* xs_thread = smem + g * kUnits + 4 * t;

  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

  // K-block `kl` of the chunk in buffer `buf` with this thread's W tile.
  auto compute = [&](const WTile<BITS>& w, int buf, int kl) {
    float s[2][kLoads], m[2][kLoads];
    if constexpr (BITS != 16) {
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int h = 0; h < kLoads; ++h)
          s[r][h] = half_bits_to_f32(w.s[r][h]), m[r][h] = half_bits_to_f32(w.m[r][h]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // piece i: this thread's cols 8i .. 8i + 7 = k-steps 2i, 2i + 1
      uint32_t a[2][4];            // [k-step][fragment register]
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        if constexpr (BITS == 16) {
          a[0][r] = word(w.d[r][i], 0), a[0][r + 2] = word(w.d[r][i], 1);
          a[1][r] = word(w.d[r][i], 2), a[1][r + 2] = word(w.d[r][i], 3);
        } else if constexpr (BITS == 4) {
          // Word i holds cols 8i .. 8i + 7, low nibble first: lo's byte b = col 2b, hi's byte b = col 2b + 1.
          const uint32_t wd = word(w.d[r][0], i);
          const uint32_t lo = wd & 0x0F0F0F0Fu, hi = (wd >> 4) & 0x0F0F0F0Fu;
          const float sc = s[r][0], mn = m[r][0];
#pragma unroll
          for (int e = 0; e < 2; ++e) {  // k-step 2i + e: cols 8i + 4e + 0..3 = lo/hi bytes 2e, 2e + 1
            a[e][r] = Mma<A>::pack(dq(lo, 2 * e, sc, mn), dq(hi, 2 * e, sc, mn));
            a[e][r + 2] = Mma<A>::pack(dq(lo, 2 * e + 1, sc, mn), dq(hi, 2 * e + 1, sc, mn));
          }
        } else {
          // Load i / 2 holds cols 16·(i / 2) .. + 15, one byte each; k-step 2i + e is its word 2·(i % 2) + e.
          const int h = i / 2;
          const float sc = s[r][h], mn = m[r][h];
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const uint32_t wd = word(w.d[r][h], 2 * (i % 2) + e);
            a[e][r] = Mma<A>::pack(dq(wd, 0, sc, mn), dq(wd, 1, sc, mn));
            a[e][r + 2] = Mma<A>::pack(dq(wd, 2, sc, mn), dq(wd, 3, sc, mn));
          }
        }
      }
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        const uint4 b = xs_thread[buf * kBuf + n * 8 * kUnits + 16 * kl + (i ^ xr)];
        Mma<A>::mma(acc[n], a[0], b.x, b.y);
        Mma<A>::mma(acc[n], a[1], b.z, b.w);
      }
    }
  };

  // Issues the copy of x cols [kc·128, min(kc + kChunk, kb_end)·128) of rows < T into buffer `buf`, zero past the
  // matrix. Unit u of row r lands at u ^ ((r & 1) << 1 | (u >> 3 & 1)): the 8 lanes of one 16-byte read phase
  // (g ∈ {2j, 2j + 1}, t = 0..3, unit 4t + i) then hit 8 distinct bank quads. Rows ≥ T are never written: MMA
  // column n only feeds output column n, and those are not stored.
  auto stage = [&](int kc, int buf) {
    const int c0 = kc * kKb, c_end = min(kb_end * kKb, cols);
    uint4* dst = smem + buf * kBuf;
    for (int idx = tid; idx < T * kUnits; idx += kThreads) {
      const int r = idx / kUnits, u = idx % kUnits;
      const int col = c0 + 8 * u;
      const bool valid = col < c_end;
      const int pu = u ^ (((r & 1) << 1) | ((u >> 3) & 1));
      cp_async16(dst + r * kUnits + pu, valid ? x + int64_t{r} * cols + col : x, valid ? 16 : 0);
    }
    cp_async_commit();
  };

  // Pipeline: while chunk j is multiplied, x of chunk j + 1 is copying into the other buffer and W of chunk j + 1
  // is loading into the registers chunk j frees.
  WTile<BITS> wt[kChunk];
#pragma unroll
  for (int p = 0; p < kChunk; ++p) load(wt[p], kb_begin + p);
  if (kb_begin < kb_end) stage(kb_begin, 0);
  int buf = 0;
  for (int kc = kb_begin; kc < kb_end; kc += kChunk, buf ^= 1) {
    if (kc + kChunk < kb_end) {
      stage(kc + kChunk, buf ^ 1);  // its buffer was last read by chunk j − 1, before the barrier that ended it
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // chunk j's x is visible to every warp
#pragma unroll
    for (int p = 0; p < kChunk; ++p) {
      if (warp_live && kc + p < kb_end) compute(wt[p], buf, p);
      load(wt[p], kc + kChunk + p);
    }
    __syncthreads();  // chunk j's buffer is free for chunk j + 2
  }

  // This block's partial sums → smem [T row][block row] (after the loop's last barrier), then the cluster's sum in
  // rank order.
  float* part = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int c = 0; c < 4; ++c) {  // c0, c1: row g, T rows 2t, 2t + 1; c2, c3: row g + 8
      const int tn = 8 * n + 2 * t + (c & 1), rl = warp * 16 + g + 8 * (c >> 1);
      part[tn * kPStride + rl] = acc[n][c];
    }
  cluster.sync();
  const int total = T * kBlockRows, e0 = total * rank / ranks, e1 = total * (rank + 1) / ranks;
  for (int e = e0 + tid; e < e1; e += kThreads) {
    const int tn = e / kBlockRows, rl = e % kBlockRows;
    float sum = 0.0f;
    for (int k = 0; k < ranks; ++k) sum += cluster.map_shared_rank(part, k)[tn * kPStride + rl];
    const int64_t o = block_row0 + rl;
    if (o < rows) y[int64_t{tn} * rows + o] = from_f32<A>(bias ? sum + to_f32(bias[o]) : sum);
  }
  cluster.sync();  // no block leaves while another still reads its partials
}

void set_cluster_attr(cudaLaunchAttribute& attr, int c) {
  attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = c;
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
}

// The cluster size for `row_blocks` row blocks over `kblocks` K-blocks: the largest C ≤ min(8, kblocks) with which
// all row blocks' clusters are resident at once (one wave; more K split = fewer K-blocks per block), else 1. Cached
// per (kernel, device, shape). The first call for a (kernel, device) also sets its dynamic shared memory limit.
int cluster_size(const void* fn, size_t smem, int64_t row_blocks, int64_t kblocks) {
  int dev = 0;
  ZI_CUDA_CHECK(cudaGetDevice(&dev));
  const int max_c = static_cast<int>(std::min<int64_t>(kMaxCluster, kblocks));
  static std::mutex mu;
  static std::map<std::tuple<const void*, int, int64_t, int>, int> cache;  // row_blocks −1: attribute set
  std::lock_guard<std::mutex> lock(mu);
  if (cache.emplace(std::make_tuple(fn, dev, int64_t{-1}, 0), 0).second)
    ZI_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const auto key = std::make_tuple(fn, dev, row_blocks, max_c);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  int chosen = 1;
  for (int c = max_c; c > 1; --c) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(c, 1, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr;
    set_cluster_attr(attr, c);
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, fn, &cfg) != cudaSuccess) {
      cudaGetLastError();  // not fatal: try a smaller cluster
      continue;
    }
    if (row_blocks <= clusters) {
      chosen = c;
      break;
    }
  }
  cache[key] = chosen;
  return chosen;
}

template <class A, int BITS, int NT>
void launch(const QuantArgs& q, const A* x, int T, const A* bias, A* y, cudaStream_t stream) {
  auto* kernel = &quant_mma_kernel<A, BITS, NT>;
  constexpr size_t smem = smem_bytes<BITS, NT>();
  const int64_t row_blocks = (q.rows + kBlockRows - 1) / kBlockRows, kblocks = (q.cols + kKb - 1) / kKb;
  const int64_t slices = (T + kSliceRows - 1) / kSliceRows;
  ZI_CHECK(row_blocks <= 65535 && q.cols <= (int64_t{1} << 30));
  // One wave for all slices: the clusters of every (row block, slice) resident together.
  const int c = cluster_size(reinterpret_cast<const void*>(kernel), smem, row_blocks * slices, kblocks);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(c, static_cast<unsigned>(slices), static_cast<unsigned>(row_blocks));
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr;
  set_cluster_attr(attr, c);
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  ZI_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, q, x, T, bias, y));
}

template <class A, int BITS>
void launch_nt(const QuantArgs& q, const A* x, int T, const A* bias, A* y, cudaStream_t stream) {
  if (T <= 8)
    launch<A, BITS, 1>(q, x, T, bias, y, stream);
  else if (T <= 16)
    launch<A, BITS, 2>(q, x, T, bias, y, stream);
  else if (T <= 32)
    launch<A, BITS, 4>(q, x, T, bias, y, stream);
  else if (T <= 48)
    launch<A, BITS, 6>(q, x, T, bias, y, stream);
  else
    launch<A, BITS, 8>(q, x, T, bias, y, stream);  // and T > 64: slices of 64 (grid.z)
}

template <class A>
void launch_bits(const QuantArgs& q, const void* x, int T, const void* bias, void* y, cudaStream_t stream) {
  const A* xa = static_cast<const A*>(x);
  const A* ba = static_cast<const A*>(bias);
  A* ya = static_cast<A*>(y);
  if (q.bits == 4)
    launch_nt<A, 4>(q, xa, T, ba, ya, stream);
  else if (q.bits == 8)
    launch_nt<A, 8>(q, xa, T, ba, ya, stream);
  else
    launch_nt<A, 16>(q, xa, T, ba, ya, stream);
}

}  // namespace

void launch_quant_mma(const QuantArgs& q, DType type, const void* x, int64_t T, void* y, cudaStream_t stream) {
  ZI_CHECK(T >= 1 && T <= kQuantMmaMaxRows && quant_gemv_supported(q, x));
  ZI_CHECK(type == DType::kBF16 || type == DType::kF16);
  if (q.rows == 0) return;
  if (type == DType::kBF16)
    launch_bits<__nv_bfloat16>(q, x, static_cast<int>(T), nullptr, y, stream);
  else
    launch_bits<__half>(q, x, static_cast<int>(T), nullptr, y, stream);
  ZI_CUDA_CHECK_LAUNCH();
}

bool dense_mma_supported(DType type, const void* x, const void* w, int64_t K, int64_t N) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (type == DType::kBF16 || type == DType::kF16) && K > 0 && K % 8 == 0 && K <= (int64_t{1} << 30) &&
         N <= int64_t{65535} * kBlockRows && aligned(x) && aligned(w);  // grid.y = row blocks ≤ 65535
}

void launch_dense_mma(DType type, const void* x, int64_t T, const void* w, const void* bias, void* y, int64_t K,
                      int64_t N, cudaStream_t stream) {
  ZI_CHECK(T >= 1 && T <= kDenseMmaMaxRows && dense_mma_supported(type, x, w, K, N));
  if (N == 0) return;
  QuantArgs q;  // the kernel's view of a weight matrix: 16 "bits" = the act dtype itself, no scales
  q.data = static_cast<const uint8_t*>(w);
  q.rows = N;
  q.cols = K;
  q.bits = 16;
  q.group_size = K;
  if (type == DType::kBF16)
    launch_bits<__nv_bfloat16>(q, x, static_cast<int>(T), bias, y, stream);
  else
    launch_bits<__half>(q, x, static_cast<int>(T), bias, y, stream);
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
