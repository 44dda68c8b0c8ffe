// The 16-bit dtype a GPU computes a model in, from model.dtype (auto|bfloat16|float16) and the checkpoint's dtype:
// auto = float16 for a float16 checkpoint (as it was trained and served), else bfloat16 (fp32's range). Used by the
// CUDA backend and by what prepares for it without a GPU (plan, convert).
#pragma once

#include <string>

#include "engine/core/dtype.h"
#include "engine/core/status.h"

namespace zi {

StatusOr<DType> gpu_compute_dtype(const std::string& requested, DType checkpoint_dtype);

// config.json's torch_dtype/dtype as a DType (F32 when absent or unknown).
DType config_dtype(const std::string& config_dtype_name);

}  // namespace zi
