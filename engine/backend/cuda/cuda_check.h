// Error handling for CUDA runtime and cuBLAS calls. Two flavours, as engine/core/status.h draws the line:
//  - cuda_status(): a recoverable failure (no device, out of memory at load, pinning refused) becomes a Status that
//    names the call and the CUDA error;
//  - ZI_CUDA_CHECK(): a failure on the hot path that leaves nothing sensible to do (a kernel launch rejected, a
//    stream call failing) aborts with the call, the error and the source location.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>

#include "engine/core/status.h"

namespace zi::cuda {

inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  // Clear the (non-sticky) error so the next call starts clean.
  cudaGetLastError();
  const auto code = err == cudaErrorMemoryAllocation ? absl::StatusCode::kResourceExhausted
                    : (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver)
                        ? absl::StatusCode::kFailedPrecondition
                        : absl::StatusCode::kInternal;
  return Status(code, absl::StrCat(what, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
}

[[noreturn]] inline void cuda_fail(const char* what, const char* detail, const char* file, int line) {
  std::fprintf(stderr, "zeroinfer: CUDA call failed at %s:%d: %s: %s\n", file, line, what, detail);
  std::abort();
}

}  // namespace zi::cuda

#define ZI_CUDA_CHECK(call)                                                                  \
  do {                                                                                       \
    cudaError_t zi_cuda_err_ = (call);                                                       \
    if (zi_cuda_err_ != cudaSuccess)                                                         \
      ::zi::cuda::cuda_fail(#call, cudaGetErrorString(zi_cuda_err_), __FILE__, __LINE__);    \
  } while (0)

#define ZI_CUBLAS_CHECK(call)                                                                \
  do {                                                                                       \
    cublasStatus_t zi_cublas_st_ = (call);                                                   \
    if (zi_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                              \
      ::zi::cuda::cuda_fail(#call, cublasGetStatusString(zi_cublas_st_), __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: a bad configuration (grid, shared memory) is reported by cudaGetLastError.
#define ZI_CUDA_CHECK_LAUNCH() ZI_CUDA_CHECK(cudaGetLastError())
