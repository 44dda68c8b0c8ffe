// Writes safetensors files (generate --logits-out, tests). Tensors are laid out in the order given, the header is
// padded with spaces to a multiple of 8 bytes as the reference implementation does.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/status.h"

namespace zi {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;  // must be product(shape) × dtype_size(dtype) bytes
};

// Serialises to a byte image (header + data).
StatusOr<std::vector<uint8_t>> serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                                     const std::map<std::string, std::string>& metadata = {});
// Writes atomically enough for our uses: to PATH.tmp, then renamed over PATH. Errors name the path.
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Convenience view of float32 data as a tensor to write.
inline TensorToWrite f32_tensor(std::string name, std::vector<int64_t> shape, std::span<const float> data) {
  return TensorToWrite{std::move(name), DType::kF32, std::move(shape),
                       std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size_bytes())};
}

}  // namespace zi
