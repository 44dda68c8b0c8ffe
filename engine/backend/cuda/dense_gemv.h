// The dense GEMV for decode-sized T (dense_gemv.cu): linear() (gemm.cc) runs it instead of cuBLASLt for unquantized
// weights when 1 ≤ T ≤ dense_gemv_max_rows() and dense_gemv_supported().
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "engine/core/dtype.h"

namespace zi::cuda {

inline constexpr int kDenseGemvMaxRows = 8;  // all T sums of a warp's rows stay in registers

// $ZI_DENSE_GEMV_MAX_ROWS when set (clamped to 0..kDenseGemvMaxRows; 0 = always cuBLASLt), else 0: the kernel was
// written without a GPU (2026-12-07) and stays off until gpu_all_tests has run it and bench has timed it against
// cuBLASLt. Process-wide; tests and benchmarks switch it to compare the two paths.
int dense_gemv_max_rows();
void set_dense_gemv_max_rows(int rows);

// x [T, K], w [N, K], y [T, N] in `type`: rows of whole 16-byte vectors and 16-byte-aligned buffers.
bool dense_gemv_supported(DType type, const void* x, const void* w, const void* y, int64_t K, int64_t N);
// y = x · wᵀ (+ bias [N] in `type`, may be null), 1 ≤ T ≤ kDenseGemvMaxRows.
void launch_dense_gemv(DType type, const void* x, int64_t T, const void* w, const void* bias, void* y, int64_t K,
                       int64_t N, cudaStream_t stream);

}  // namespace zi::cuda
