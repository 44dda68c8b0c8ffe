// CUDA kernels for group-wise quantized linear weights (layout and math: engine/quant/quantize.h). Two ways to run
// y = x · Wᵀ with a quantized W:
//  - quant_dequant.cu: W dequantized into a [out, in] buffer in the activation dtype, then the dense cuBLAS GEMM
//    (any T; the fp32 value of each weight is exactly the CPU reference's, then rounded once to the act dtype);
//  - fused kernels for decode-sized T (1 ≤ T ≤ kQuantGemvMaxRows = 64) that read each packed row (and its scales
//    and mins) from HBM once, dequantize it on chip to the reference's fp32 value and multiply it against all T
//    activation rows, fp32 accumulation:
//      quant_gemv.cu: CUDA cores, one warp per output row, all T dot products in registers; fp32 activations
//        (any T ≤ 64) and 16-bit activations with T < quant_mma_min_rows();
//      quant_gemm_small_t.cu: tensor cores (mma.sync m16n8k16) for bf16 / fp16 activations with
//        T ≥ quant_mma_min_rows(); each weight is rounded once to the act dtype before the MMA, as the dequantize
//        path rounds it (so the two paths differ only in summation order).
//    Both need 16-byte-aligned rows (row_bytes % 16 == 0) and groups that are whole multiples of one 16-byte load
//    (32 codes at 4 bits, 16 at 8); anything else takes the dequantize path.
// linear() (gemm.cc) takes the fused path when T ≤ quant_gemv_max_rows() and quant_gemv_supported(), else
// dequantize + GEMM; launch_quant_gemv picks the fused kernel by dtype and T (measure before changing a default).
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
  int bits = 8;            // 8 | 4 (16: dense weights in the act dtype, only for launch_dense_mma's kernel)
  int64_t group_size = 64;
  ZI_QUANT_HD int64_t row_bytes() const { return bits == 4 ? (cols + 1) / 2 : bits == 16 ? 2 * cols : cols; }
  ZI_QUANT_HD int64_t groups() const { return (cols + group_size - 1) / group_size; }
};

// out [rows, cols] in `out_type` (F32 / F16 / BF16) = the dequantized matrix, rounded once to out_type.
void launch_dequantize(const QuantArgs& q, DType out_type, void* out, cudaStream_t stream);

// Largest T the fused kernels handle. Beyond it, dequantize + GEMM (prefill-sized T: the dense buffer's extra
// traffic is spread over many rows). Before the tensor-core kernel this was 8: a 16-row CUDA-core GEMV measured
// the same as dequantize + GEMM at batch 16 (0.0704 s vs 0.0701 s per 4-bit Llama-2-7B step, H200,
// docs/BENCHMARKS.md).
inline constexpr int kQuantGemvMaxRows = 64;
// Whether launch_quant_gemv takes this matrix (alignment and group conditions above; x 16-byte aligned).
bool quant_gemv_supported(const QuantArgs& q, const void* x);
// y [T, rows] = x [T, cols] · Wᵀ, x and y in `type` (the activation dtype), 1 ≤ T ≤ kQuantGemvMaxRows. No bias.
void launch_quant_gemv(const QuantArgs& q, DType type, const void* x, int64_t T, void* y, cudaStream_t stream);
// Largest T the tensor-core kernel takes (slices of 64 rows along grid.z past 64). linear() runs it for 64 < T ≤
// this only in ZI_DECODE_GEMM=auto mode, timed against dequantize + GEMM (decode_linear.h): written on 2026-12-08
// without a GPU.
inline constexpr int kQuantMmaMaxRows = 256;
// The tensor-core kernel alone (quant_gemm_small_t.cu): `type` BF16 or F16, 1 ≤ T ≤ kQuantMmaMaxRows, the
// matrix quant_gemv_supported. launch_quant_gemv calls it for T ≤ kQuantGemvMaxRows; linear() and tests call it
// directly.
void launch_quant_mma(const QuantArgs& q, DType type, const void* x, int64_t T, void* y, cudaStream_t stream);

// linear() uses the fused kernels for 1 ≤ T ≤ this (and supported matrices), else dequantize + GEMM. 0 = never.
// Defaults to $ZI_QUANT_GEMV_MAX_ROWS when set (clamped to 0..kQuantGemvMaxRows), else kQuantGemvMaxRows.
// Process-wide; tests and benchmarks switch it to compare the two paths.
int quant_gemv_max_rows();
void set_quant_gemv_max_rows(int rows);

// Smallest T that 16-bit activations send to the tensor-core kernel; smaller T take the CUDA-core GEMV (which
// holds all T sums in registers, up to 8 rows). Range 1..kQuantMmaMinRows; defaults to $ZI_QUANT_MMA_MIN_ROWS
// when set (clamped), else kQuantMmaMinRows = 9: T ≤ 8 keep the GEMV as measured until the two are timed against
// each other on T = 1..8 (the tensor-core kernel spends ~4 ALU instructions a weight whatever T, the GEMV ~2 + 2T).
// Process-wide, as above.
inline constexpr int kQuantMmaMinRows = 9;
int quant_mma_min_rows();
void set_quant_mma_min_rows(int rows);

}  // namespace zi::cuda
