// Element types of tensors in checkpoints and on backends, with the conversions the engine needs
// (bf16/fp16 ↔ fp32, done bit-exactly and without relying on compiler half types).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace zi {

enum class DType : uint8_t {
  kF32, kF16, kBF16, kF64,
  kI8, kI16, kI32, kI64,
  kU8, kU16, kU32, kU64,
  kBool, kF8E4M3, kF8E5M2,
};

// Bytes per element.
size_t dtype_size(DType t);
// The safetensors spelling: "F32", "BF16", ...
std::string_view dtype_safetensors_name(DType t);
// Parses the safetensors spelling; nullopt for an unknown name.
std::optional<DType> parse_safetensors_dtype(std::string_view name);
// The torch/transformers spelling: "float32", "bfloat16", ...
std::string_view dtype_torch_name(DType t);
// Floating types the engine computes from (fp32 / fp16 / bf16).
inline bool is_float_weight_dtype(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of a float type (F32/F16/BF16) at `src` (any alignment) to fp32.
void convert_to_f32(DType src_type, const void* src, float* dst, size_t n);

}  // namespace zi
