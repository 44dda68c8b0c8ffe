#include "engine/core/dtype.h"

#include <cmath>

#include "engine/core/status.h"

namespace zi {

namespace {

struct DTypeNames {
  DType type;
  std::string_view safetensors;
  std::string_view torch;
  size_t size;
};

constexpr DTypeNames kNames[] = {
    {DType::kF32, "F32", "float32", 4},       {DType::kF16, "F16", "float16", 2},
    {DType::kBF16, "BF16", "bfloat16", 2},    {DType::kF64, "F64", "float64", 8},
    {DType::kI8, "I8", "int8", 1},            {DType::kI16, "I16", "int16", 2},
    {DType::kI32, "I32", "int32", 4},         {DType::kI64, "I64", "int64", 8},
    {DType::kU8, "U8", "uint8", 1},           {DType::kU16, "U16", "uint16", 2},
    {DType::kU32, "U32", "uint32", 4},        {DType::kU64, "U64", "uint64", 8},
    {DType::kBool, "BOOL", "bool", 1},        {DType::kF8E4M3, "F8_E4M3", "float8_e4m3fn", 1},
    {DType::kF8E5M2, "F8_E5M2", "float8_e5m2", 1},
};

const DTypeNames& names_of(DType t) {
  for (const auto& n : kNames)
    if (n.type == t) return n;
  ZI_CHECK(false && "unknown DType");
  return kNames[0];
}

}  // namespace

size_t dtype_size(DType t) { return names_of(t).size; }
std::string_view dtype_safetensors_name(DType t) { return names_of(t).safetensors; }
std::string_view dtype_torch_name(DType t) { return names_of(t).torch; }

std::optional<DType> parse_safetensors_dtype(std::string_view name) {
  for (const auto& n : kNames)
    if (n.safetensors == name) return n.type;
  return std::nullopt;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: value = mant × 2^-24, exact in fp32.
    float v = std::ldexp(static_cast<float>(mant), -24);
    std::memcpy(&bits, &v, sizeof bits);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;            // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;           // rounds to ≥ 65520 → inf
  if (abs < 0x38800000u) {                                 // below the smallest normal (2^-14): subnormal
    // value / 2^-24 rounded to nearest even.
    float a;
    std::memcpy(&a, &abs, sizeof a);
    float scaled = std::ldexp(a, 24);
    float r = std::nearbyint(scaled);  // default rounding mode: to nearest even
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);    // round to nearest even at bit 13
  return sign | static_cast<uint16_t>(((rounded >> 13) - (112u << 10)));
}

void convert_to_f32(DType src_type, const void* src, float* dst, size_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (src_type) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    default:
      ZI_CHECK(false && "convert_to_f32: not a float weight dtype");
  }
}

}  // namespace zi
