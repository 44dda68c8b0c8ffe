// CUDA kernels for group-wise quantized linear weights (layout and math: engine/quant/quantize.h). Two ways to run
// y = x · Wᵀ with a quantized W:
//  - quant_dequant.cu: W dequantized into a [out, in] buffer in the activation dtype, then the dense cuBLAS GEMM
//    (any T; the fp32 value of each weight is exactly the CPU reference's, then rounded once to the act dtype);
//  - quant_gemv.cu: a fused GEMV for decode-sized T (≤ kQuantGemvMaxRows): each warp streams one packed row once,
//    dequantizes in registers (fp32, the same value as the reference) and dots it with all T activation rows,
//    fp32 accumulation. It needs 16-byte-aligned rows (row_bytes % 16 == 0) and groups that are whole multiples of
//    one 16-byte load (32 codes at 4 bits, 16 at 8); anything else takes the dequantize path.
// Which one linear() picks for a given T is quant_gemv_max_rows() (measure before changing the default).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "engine/core/dtype.h"

// Helpers both host code and kernels call.
#if defined(__CUDACC__)
#define ZI_QUANT_HD __host__ __device__
#else
#define ZI_QUANT_HD
#endif

namespace zi::cuda {

// One quantized matrix on the device: codes U8 [rows, row_bytes], scales / mins fp16 bits [rows, groups].
struct QuantArgs {
  const uint8_t* data = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* mins = nullptr;
  int64_t rows = 0;        // out
  int64_t cols = 0;        // in
  int bits = 8;            // 8 | 4
  int64_t group_size = 64;
  ZI_QUANT_HD int64_t row_bytes() const { return bits == 4 ? (cols + 1) / 2 : cols; }
  ZI_QUANT_HD int64_t groups() const { return (cols + group_size - 1) / group_size; }
};

// out [rows, cols] in `out_type` (F32 / F16 / BF16) = the dequantized matrix, rounded once to out_type.
void launch_dequantize(const QuantArgs& q, DType out_type, void* out, cudaStream_t stream);

// Largest T the fused GEMV handles. Beyond it, dequantize + GEMM: at batch 16 the two paths measured the same
// (a 16-row GEMV, 0.0704 s vs 0.0701 s per 4-bit Llama-2-7B step, H200, docs/BENCHMARKS.md), so 8 it stays.
inline constexpr int kQuantGemvMaxRows = 8;
// Whether launch_quant_gemv takes this matrix (alignment and group conditions above; x and y 16-byte aligned).
bool quant_gemv_supported(const QuantArgs& q, const void* x);
// y [T, rows] = x [T, cols] · Wᵀ, x and y in `type` (the activation dtype), 1 ≤ T ≤ kQuantGemvMaxRows. No bias.
void launch_quant_gemv(const QuantArgs& q, DType type, const void* x, int64_t T, void* y, cudaStream_t stream);

// linear() uses the fused GEMV for 1 ≤ T ≤ this (and supported matrices), else dequantize + GEMM. 0 = never.
// Defaults to $ZI_QUANT_GEMV_MAX_ROWS when set (clamped to 0..kQuantGemvMaxRows), else kQuantGemvMaxRows.
// Process-wide; tests and benchmarks switch it to compare the two paths.
int quant_gemv_max_rows();
void set_quant_gemv_max_rows(int rows);

}  // namespace zi::cuda
