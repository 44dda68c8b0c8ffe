// Measurements the bench sets its results against, taken on this machine in the same run:
// the host→device bus (pinned copy), how fast page-locked memory can be made, how fast the GPU reads its own
// memory (the floor of a resident decode step) and what cuBLASLt GEMMs of the model's shapes achieve (the
// reference for prefill).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/status.h"

namespace zi::cuda {

// Best of `reps` copies of `bytes` from pinned host memory to the device, in bytes/second.
StatusOr<double> probe_h2d_bandwidth(int device, size_t bytes = size_t{1} << 30, int reps = 5);

// Bytes/second of cudaHostAlloc for `bytes` (pages allocated and pinned), best of `reps`.
StatusOr<double> probe_pinning_rate(size_t bytes = size_t{1} << 30, int reps = 2);

// Device-memory read rate in bytes/second: a read-only kernel (probe_kernels.h) over a `bytes` buffer, best of
// `reps` after one warm-up pass. The buffer is far larger than L2 (50 MiB on H100), so this is HBM. When the
// device has less free memory than asked (keeping 512 MiB free), it reads what fits and logs a warning; under
// 256 MiB it fails.
StatusOr<double> probe_hbm_read_bandwidth(int device, size_t bytes = size_t{4} << 30, int reps = 5);

// One GEMM as linear runs it: y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]).
struct GemmShape {
  int64_t m = 0;  // T: tokens
  int64_t n = 0;  // out features
  int64_t k = 0;  // in features
  bool bias = false;
};

struct GemmProbeResult {
  double tflops = 0;                  // Σ 2·M·N·K / Σ best seconds, over the set: 10¹² FLOP/s
  std::vector<double> shape_tflops;   // per shape, in the order given
  std::vector<double> shape_seconds;  // best seconds of one GEMM per shape
};

// cuBLASLt GEMMs of `shapes` in `dtype` with linear's settings (engine/backend/cuda/lt_gemm.h: fp32 accumulation,
// bias epilogue, same workspace), operands filled with values in [-1, 1). Each shape: two warm-up calls, then
// `reps` timings with CUDA events of a run of calls long enough (~1 ms) to hide launch overhead; best rep.
// Fails when the operands do not fit the device or cuBLASLt has no algorithm for a shape.
StatusOr<GemmProbeResult> probe_gemm_tflops(int device, DType dtype, const std::vector<GemmShape>& shapes,
                                            int reps = 3);

}  // namespace zi::cuda
