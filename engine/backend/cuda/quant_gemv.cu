// Fused dequantize + GEMV on CUDA cores for decode steps: y[t, o] = Σ_c x[t, c] · W[o, c] for T ≤ 64 rows of x,
// W packed (engine/quant/quantize.h). Decode is bound by reading W: each warp streams one packed row exactly once
// (16-byte loads, 32 codes at 4 bits or 16 at 8 per lane and load), dequantizes in registers with
// fmaf(code, scale, min) — the reference's fp32 value — and accumulates all T dot products in fp32 registers; x
// rows are small and stay in L1/L2. The warp's partial sums are reduced with shuffles; lane 0 stores, rounding once.
// T ≤ 8 has one instantiation per T; T > 8 (fp32 activations only: 16-bit ones go to the tensor-core kernel in
// quant_gemm_small_t.cu) runs 16 / 32 / 64 accumulators with the rows past T skipped. This file also holds the
// dispatch (launch_quant_gemv) and the process-wide path knobs.
#include <algorithm>
#include <cstdlib>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/quant_kernels.h"

namespace zi::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

// Eight consecutive activations as fp32 (p 16-byte aligned for the 16-bit types, 32-byte-compatible for fp32).
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float* v) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void load8(const __half* p, float* v) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void load8(const float* p, float* v) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// One warp per output row o; lane L takes 16-byte chunks L, L + 32, ... of the row. TR accumulators: exactly T
// rows when TR ≤ 8, else the first `nrows` ≤ TR.
template <class T, int BITS, int TR>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    quant_gemv_kernel(QuantArgs q, const T* __restrict__ x, int nrows, T* __restrict__ y) {
  constexpr int kCodes = 128 / BITS;  // codes per 16-byte chunk: 32 at 4 bits, 16 at 8
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t{blockIdx.x} * kWarpsPerBlock + (threadIdx.x >> 5);
  if (o >= q.rows) return;
  const int64_t rb = q.row_bytes(), chunks = rb / 16, groups = q.groups();
  const int64_t chunks_per_group = q.group_size / kCodes;
  const uint4* w_row = reinterpret_cast<const uint4*>(q.data + o * rb);
  const __half* s_row = reinterpret_cast<const __half*>(q.scales) + o * groups;
  const __half* m_row = reinterpret_cast<const __half*>(q.mins) + o * groups;
  float acc[TR];
#pragma unroll
  for (int t = 0; t < TR; ++t) acc[t] = 0.0f;
#pragma unroll(TR <= 8 ? 2 : 1)
  for (int64_t j = lane; j < chunks; j += 32) {
    const uint4 packed = __ldg(w_row + j);
    const int64_t g = j / chunks_per_group;
    const float s = __half2float(s_row[g]), m = __half2float(m_row[g]);
    const uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
    float w[kCodes];
#pragma unroll
    for (int k = 0; k < kCodes; ++k) {
      // Little-endian bytes: code k of the chunk sits at bits [k·BITS, (k+1)·BITS) of its word (low nibble first).
      const uint32_t code = (words[k / (32 / BITS)] >> ((k % (32 / BITS)) * BITS)) & ((1u << BITS) - 1);
      w[k] = fmaf(static_cast<float>(code), s, m);
    }
    const int64_t c0 = j * kCodes;
#pragma unroll
    for (int t = 0; t < TR; ++t) {
      if (TR > 8 && t >= nrows) break;
      const T* xr = x + t * q.cols + c0;
#pragma unroll
      for (int k8 = 0; k8 < kCodes; k8 += 8) {
        float xv[8];
        load8(xr + k8, xv);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[t] = fmaf(xv[i], w[k8 + i], acc[t]);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < TR; ++t) {
    if (TR > 8 && t >= nrows) break;
    const float sum = warp_sum(acc[t]);
    if (lane == 0) y[t * q.rows + o] = from_f32<T>(sum);
  }
}

template <class T, int BITS>
void launch_rows(const QuantArgs& q, const T* x, int64_t T_rows, T* y, cudaStream_t stream) {
  const int blocks = static_cast<int>((q.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const int threads = kWarpsPerBlock * 32;
  switch (T_rows) {
#define ZI_GEMV_CASE(N) \
  case N: quant_gemv_kernel<T, BITS, N><<<blocks, threads, 0, stream>>>(q, x, N, y); break;
    ZI_GEMV_CASE(1) ZI_GEMV_CASE(2) ZI_GEMV_CASE(3) ZI_GEMV_CASE(4)
    ZI_GEMV_CASE(5) ZI_GEMV_CASE(6) ZI_GEMV_CASE(7) ZI_GEMV_CASE(8)
#undef ZI_GEMV_CASE
    default: ZI_CHECK(false && "quant GEMV: T out of range");
  }
}

// fp32 activations, 8 < T ≤ 64.
template <int BITS>
void launch_rows_wide(const QuantArgs& q, const float* x, int64_t T_rows, float* y, cudaStream_t stream) {
  const int blocks = static_cast<int>((q.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const int threads = kWarpsPerBlock * 32, n = static_cast<int>(T_rows);
  if (n <= 16)
    quant_gemv_kernel<float, BITS, 16><<<blocks, threads, 0, stream>>>(q, x, n, y);
  else if (n <= 32)
    quant_gemv_kernel<float, BITS, 32><<<blocks, threads, 0, stream>>>(q, x, n, y);
  else
    quant_gemv_kernel<float, BITS, 64><<<blocks, threads, 0, stream>>>(q, x, n, y);
}

int env_or(const char* name, int fallback, int lo, int hi) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback;
  return std::clamp(std::atoi(env), lo, hi);
}

int g_max_rows = env_or("ZI_QUANT_GEMV_MAX_ROWS", kQuantGemvMaxRows, 0, kQuantGemvMaxRows);
int g_mma_min_rows = env_or("ZI_QUANT_MMA_MIN_ROWS", kQuantMmaMinRows, 1, kQuantMmaMinRows);

}  // namespace

int quant_gemv_max_rows() { return g_max_rows; }
void set_quant_gemv_max_rows(int rows) { g_max_rows = std::clamp(rows, 0, kQuantGemvMaxRows); }
int quant_mma_min_rows() { return g_mma_min_rows; }
void set_quant_mma_min_rows(int rows) { g_mma_min_rows = std::clamp(rows, 1, kQuantMmaMinRows); }

bool quant_gemv_supported(const QuantArgs& q, const void* x) {
  const int codes = 128 / q.bits;
  const int64_t rb = q.row_bytes();
  return (q.bits == 4 || q.bits == 8) && rb > 0 && rb % 16 == 0 && (q.bits == 8 || q.cols == 2 * rb) &&
         q.group_size % codes == 0 && reinterpret_cast<uintptr_t>(q.data) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

void launch_quant_gemv(const QuantArgs& q, DType type, const void* x, int64_t T, void* y, cudaStream_t stream) {
  ZI_CHECK(T >= 1 && T <= kQuantGemvMaxRows && quant_gemv_supported(q, x));
  if (q.rows == 0) return;
  if (type != DType::kF32 && T >= quant_mma_min_rows()) return launch_quant_mma(q, type, x, T, y, stream);
  if (T > 8) {  // fp32 only: 16-bit activations took the branch above (quant_mma_min_rows() ≤ 9)
    ZI_CHECK(type == DType::kF32);
    const float* xf = static_cast<const float*>(x);
    float* yf = static_cast<float*>(y);
    if (q.bits == 4)
      launch_rows_wide<4>(q, xf, T, yf, stream);
    else
      launch_rows_wide<8>(q, xf, T, yf, stream);
  } else {
    ZI_DISPATCH_FLOAT(type, X, {
      if (q.bits == 4)
        launch_rows<X, 4>(q, static_cast<const X*>(x), T, static_cast<X*>(y), stream);
      else
        launch_rows<X, 8>(q, static_cast<const X*>(x), T, static_cast<X*>(y), stream);
    });
  }
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
