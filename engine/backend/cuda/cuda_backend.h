// The CUDA backend's factory. This header has no CUDA includes, so code outside the CUDA sources (create_executor, CLI
// commands) can declare its use; it links only in builds with the toolkit (ZI_WITH_CUDA). The class itself, for
// code that needs its stream and allocator (weight streaming), is in cuda_backend_impl.h.
#pragma once

#include <memory>
#include <string>

#include "engine/backend/backend.h"
#include "engine/core/dtype.h"
#include "engine/core/status.h"

namespace zi {

struct CudaBackendOptions {
  int device = 0;                            // CUDA device ordinal (after CUDA_VISIBLE_DEVICES)
  DType activation_dtype = DType::kBF16;     // kBF16 | kF16 (kF32: a slow full-precision mode for debugging)
  KvOffloadAttention offload_attention = KvOffloadAttention::kAuto;
  int host_threads = 0;                      // CPU attention threads (0: the cores this process may use)
};

// A Backend on `options.device`: activations and linear weights in `activation_dtype`, cuBLAS GEMMs with fp32
// accumulation, every op enqueued on one compute stream. FailedPrecondition (not a crash) when the machine has no
// usable GPU or driver, naming the CUDA error; InvalidArgument for a bad device ordinal or dtype.
StatusOr<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options);

}  // namespace zi
