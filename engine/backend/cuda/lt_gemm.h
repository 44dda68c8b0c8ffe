// LtGemm: the dense GEMM of linear on cuBLASLt, shared by CudaBackend::linear and the bench's GEMM probe
// (engine/zero/cuda/probes.h) so the probe measures exactly the settings linear runs with.
//
//   y[T, out] = x[T, in] · W[out, in]ᵀ (+ bias[out])   all row-major, one dtype (bf16, fp16 or fp32) for x, W, y
//                                                      and bias; fp32 accumulation and fp32 alpha/beta.
//
// cuBLASLt is column-major: a row-major [r, c] matrix is a column-major [c, r] one, so the call computes
// yᵀ[out, T] = op(A) · B with A = W seen as [in, out] (transposed, lda = in), B = xᵀ seen as [in, T] (ldb = in)
// and D = yᵀ [out, T] (ldd = out). The bias is a vector over D's rows (the output features), added by the
// CUBLASLT_EPILOGUE_BIAS epilogue inside the GEMM kernel.
//
// Algorithm choice: cuBLASLt's heuristic picks well for prefill-sized T, but for decode-sized T (≤ kTuneMaxTokens)
// its first answer reads W at well under HBM bandwidth (H100, T = 16: 1.3 TB/s of 3.2). So the first matmul of such
// a shape, when its stream is not being captured, times up to kTuneCandidates of the heuristic's answers on the
// call's own operands, each read cold (L2 flushed), and keeps the fastest (a few ms once per shape;
// ZI_LT_AUTOTUNE=0 keeps the heuristic's first, for A/B runs). Captured graphs therefore replay tuned choices only
// if an eager call of the shape came first (CudaBackend::capture runs one); a shape first seen inside a capture
// takes the heuristic's first answer without caching it.
//
// Outside tuning nothing here allocates device memory after create(): the workspace is allocated once, algorithm
// choices are cached per (T, in, out, dtype, bias, pointer alignment), and matmul only enqueues, so it may be
// captured in a CUDA graph. Tuning (never inside a capture) waits for its timing events and holds a transient L2
// flush buffer (kernel_timing.h). Split-K reductions stay in fp32 (as
// CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION does for the cuBLAS handle). Used from one thread at a time (the
// Backend contract).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "engine/core/dtype.h"
#include "engine/core/status.h"

namespace zi::cuda {

class LtGemm {
 public:
  // cuBLAS's recommended workspace on Hopper; larger buys nothing for these shapes.
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;
  // Cached plans at most. Decode reuses a few T values (the batch sizes) per linear shape; prefill chunks bring
  // new ones. When full the cache is emptied and refills on the next calls (one heuristic query per plan).
  static constexpr size_t kMaxPlans = 1024;
  // Decode-sized shapes whose algorithm is chosen by timing (above), and how many of the heuristic's answers.
  static constexpr int64_t kTuneMaxTokens = 256;
  static constexpr int kTuneCandidates = 8;

  // Creates the cuBLASLt handle and allocates the workspace on `device` (made current). Fails with a Status (no
  // abort) when there is no device or memory.
  static StatusOr<std::unique_ptr<LtGemm>> create(int device, size_t workspace_bytes = kWorkspaceBytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Enqueues y = x · Wᵀ (+ bias) on `stream` (shapes above; T, in, out ≥ 1 and ≤ INT32_MAX). `bias` may be null.
  // The device must be current. Unimplemented when cuBLASLt offers no algorithm for the shape, dtype and pointer
  // alignment (the caller falls back to cublasGemmEx; remembered, so asking again is cheap); Internal when the
  // matmul itself is refused.
  Status matmul(DType dtype, const void* x, const void* w, const void* bias, void* y, int64_t tokens, int64_t in,
                int64_t out, cudaStream_t stream);

  size_t cached_plans() const { return plans_.size(); }
  uint64_t heuristic_queries() const { return heuristic_queries_; }  // tests: a cache hit queries nothing
  uint64_t tuned_plans() const { return tuned_plans_; }              // plans chosen by timing candidates

 private:
  struct Key {
    int64_t tokens, in, out;
    DType dtype;
    bool bias;
    // log2 of each pointer's alignment, capped at 256 bytes: cuBLASLt picks kernels for the alignment it is told,
    // and a view into a larger buffer may be less aligned than a fresh allocation.
    uint8_t align_x, align_w, align_y, align_bias;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Plan;  // descriptors, layouts and the chosen algorithm (lt_gemm.cc)
  struct PlanDeleter {
    void operator()(Plan* p) const;
  };

  LtGemm(int device, cublasLtHandle_t handle, void* workspace, size_t workspace_bytes);
  // Operands of the call that makes a plan: a tuned plan times its candidates on them.
  struct Operands {
    const void *x, *w, *bias;
    void* y;
    cudaStream_t stream;
  };
  // The cached plan for `key`, made (one heuristic query, then timing when tune_) on a miss; plan->algo_ok false:
  // no algorithm. A plan made while `ops.stream` is capturing is not tuned and not cached (*uncached owns it).
  StatusOr<Plan*> plan(const Key& key, const Operands& ops, std::unique_ptr<Plan, PlanDeleter>* uncached);
  // Index of the fastest of `n` algorithms on `ops` (kernel_timing.h); -1 when none ran.
  int fastest(Plan& p, const cublasLtMatmulHeuristicResult_t* cand, int n, const Operands& ops);

  const int device_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  const size_t workspace_bytes_;
  std::unordered_map<Key, std::unique_ptr<Plan, PlanDeleter>, KeyHash> plans_;
  uint64_t heuristic_queries_ = 0;
  uint64_t tuned_plans_ = 0;
  const bool tune_;  // ZI_LT_AUTOTUNE unset or not "0"
};

}  // namespace zi::cuda
