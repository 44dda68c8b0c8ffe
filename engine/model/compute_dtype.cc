#include "engine/model/compute_dtype.h"

namespace zi {

StatusOr<DType> gpu_compute_dtype(const std::string& requested, DType checkpoint_dtype) {
  if (requested == "bfloat16") return DType::kBF16;
  if (requested == "float16") return DType::kF16;
  if (requested == "auto") return checkpoint_dtype == DType::kF16 ? DType::kF16 : DType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("model.dtype: '", requested, "' is not one of auto, bfloat16, float16"));
}

DType config_dtype(const std::string& name) {
  if (name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  return DType::kF32;
}

}  // namespace zi
