// The 16-bit dtype a GPU computes a model in, from model.dtype and the checkpoint's dtype: auto = float16 for a
// float16 checkpoint (as it was trained and served), else bfloat16 (fp32's range). Used by the CUDA backend and by
// what prepares for it without a GPU (plan, convert).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "engine/core/dtype.h"
#include "engine/core/enum_names.h"

namespace zi {

// model.dtype / --dtype.
enum class ComputeDtype : uint8_t { kAuto, kBFloat16, kFloat16 };
inline constexpr std::array<EnumName<ComputeDtype>, 3> kComputeDtypeNames{{
    {ComputeDtype::kAuto, "auto"}, {ComputeDtype::kBFloat16, "bfloat16"}, {ComputeDtype::kFloat16, "float16"}}};

DType gpu_compute_dtype(ComputeDtype requested, DType checkpoint_dtype);

// config.json's torch_dtype/dtype as a DType (F32 when absent or unknown).
DType config_dtype(const std::string& config_dtype_name);

}  // namespace zi
