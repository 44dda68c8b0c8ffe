// Which kernel runs a bf16/fp16 linear of decode-sized T (1 ≤ T ≤ 256 rows). Dense weights: cuBLASLt (lt_gemm.h,
// itself tuned per shape), the CUDA-core GEMV for T ≤ 8 (dense_gemv.cu) or the tensor-core skinny GEMM
// (launch_dense_mma, quant_gemm_small_t.cu). 4/8-bit weights with 64 < T ≤ 256 (T ≤ 64 always take the fused
// kernels): dequantize + cuBLASLt (kLt) or the fused tensor-core kernel (kMma). Such a linear only reads W once from HBM, and which kernel gets closest to the HBM floor
// depends on T, the shape and the card (on an H100 cuBLASLt's heuristic choice read W at 1.1–2.4 TB/s of 3.2 for
// T = 1–16). In `auto` mode the first eager call of each (T, K, N, dtype, bias) times every eligible kernel on its
// own operands (kernel_timing.h) and keeps the fastest; a shape first seen inside a graph capture takes cuBLASLt
// without remembering it (CudaBackend::capture runs a step eagerly before capturing it, so graphs replay timed
// choices).
//
// $ZI_DECODE_GEMM = auto | lt | gemv | mma: auto times them all; the others force one kernel wherever it is
// eligible (A/B runs; tests use force_decode_kernel()). Unset means lt: the GEMV and the tensor-core kernel were
// written on 2026-12-08 without a GPU, and auto becomes the default once gpu_all_tests has run them on one and bench
// has timed auto against lt (KNOWN_ISSUES.md).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "engine/core/dtype.h"

namespace zi::cuda {

enum class DecodeKernel { kLt, kGemv, kMma };
std::string_view decode_kernel_name(DecodeKernel k);

// Process-wide mode: nullopt = auto (time and choose), else the forced kernel. Starts from $ZI_DECODE_GEMM.
void force_decode_kernel(std::optional<DecodeKernel> k);
std::optional<DecodeKernel> forced_decode_kernel();

class DecodeLinearChoice {
 public:
  struct Shape {
    int64_t tokens, in, out;
    DType dtype;
    bool bias;
    int bits = 16;  // the weights' (16: dense in the act dtype)
    bool operator==(const Shape&) const = default;
  };
  // `run(k)` enqueues kernel k on `stream` and returns false when k cannot take these operands (alignment, size).
  // Returns the kernel that ran the call: the cached choice, else (not capturing) the fastest after timing them
  // all, else cuBLASLt. Either way the call's output is written by one run of that kernel after any timing runs.
  DecodeKernel run(const Shape& shape, const std::function<bool(DecodeKernel)>& run, cudaStream_t stream);
  size_t chosen() const { return chosen_.size(); }

 private:
  struct ShapeHash {
    size_t operator()(const Shape& s) const;
  };
  std::unordered_map<Shape, DecodeKernel, ShapeHash> chosen_;
};

}  // namespace zi::cuda
