// Helpers shared by the GPU tests: device presence, data-dir override, host rounding to a dtype, and running the
// same op on the CPU (reference) and CUDA backends from identical inputs.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/backend/backend.h"
#include "engine/core/dtype.h"

namespace zi::testing_gpu {

inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

// The fixtures folder: $ZI_TEST_DATA when set (the GPU machine gets the tree elsewhere), else the compiled-in one.
inline std::string test_data_dir() {
  const char* env = std::getenv("ZI_TEST_DATA");
  return env && *env ? std::string(env) : std::string(ZI_TEST_DATA);
}

inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f, float mean = 0.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The bytes of `v` stored as `dt` (F32 / F16 / BF16), rounded to nearest even.
inline std::vector<uint8_t> encode(DType dt, const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * dtype_size(dt));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = dt == DType::kBF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// `v` rounded to `dt` and back.
inline std::vector<float> round_to(DType dt, const std::vector<float>& v) {
  std::vector<float> out(v.size());
  const std::vector<uint8_t> bytes = encode(dt, v);
  convert_to_f32(dt, bytes.data(), out.data(), v.size());
  return out;
}

// max |got − ref| / max |ref| (the fixtures' measure).
inline double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  double max_ref = 1e-30, max_d = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(static_cast<double>(ref[i])));
    const double d = std::abs(static_cast<double>(got[i]) - ref[i]);
    max_d = std::isnan(d) ? INFINITY : std::max(max_d, d);
  }
  return max_d / max_ref;
}

}  // namespace zi::testing_gpu
