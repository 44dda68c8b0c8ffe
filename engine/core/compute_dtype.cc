#include "engine/core/compute_dtype.h"

namespace zi {

DType gpu_compute_dtype(ComputeDtype requested, DType checkpoint_dtype) {
  switch (requested) {
    case ComputeDtype::kBFloat16: return DType::kBF16;
    case ComputeDtype::kFloat16: return DType::kF16;
    case ComputeDtype::kAuto: break;
  }
  return checkpoint_dtype == DType::kF16 ? DType::kF16 : DType::kBF16;
}

DType config_dtype(const std::string& name) {
  if (name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  return DType::kF32;
}

}  // namespace zi
