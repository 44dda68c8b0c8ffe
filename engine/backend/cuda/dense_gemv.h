// Kernels for dense linears of decode-sized T besides cuBLASLt: the CUDA-core GEMV (dense_gemv.cu, T ≤ 8) and the
// tensor-core skinny GEMM (quant_gemm_small_t.cu with 16-bit weights, T ≤ 64). linear() (gemm.cc) picks among them
// and cuBLASLt per shape by timing (decode_linear.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "engine/core/dtype.h"

namespace zi::cuda {

inline constexpr int kDenseGemvMaxRows = 8;  // all T sums of a warp's rows stay in registers


// x [T, K], w [N, K], y [T, N] in `type`: rows of whole 16-byte vectors and 16-byte-aligned buffers.
bool dense_gemv_supported(DType type, const void* x, const void* w, const void* y, int64_t K, int64_t N);
// y = x · wᵀ (+ bias [N] in `type`, may be null), 1 ≤ T ≤ kDenseGemvMaxRows.
void launch_dense_gemv(DType type, const void* x, int64_t T, const void* w, const void* bias, void* y, int64_t K,
                       int64_t N, cudaStream_t stream);

inline constexpr int kDenseMmaMaxRows = 256;  // the tensor-core kernel's T range (its quantized twin's)
// `type` bf16 / fp16, K % 8 == 0 (rows of whole 16-byte vectors), x and w 16-byte aligned, N ≤ 65535 · 128.
bool dense_mma_supported(DType type, const void* x, const void* w, int64_t K, int64_t N);
// y [T, N] = x [T, K] · w [N, K]ᵀ (+ bias [N] in `type`, may be null), 1 ≤ T ≤ kDenseMmaMaxRows.
void launch_dense_mma(DType type, const void* x, int64_t T, const void* w, const void* bias, void* y, int64_t K,
                      int64_t N, cudaStream_t stream);

}  // namespace zi::cuda
