// Helpers shared by the GPU tests: device presence, data-dir override, host rounding to a dtype, and running the
// same op on the CPU (reference) and CUDA backends from identical inputs.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
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

// A fixture per activation dtype with a CPU (reference) and a CUDA backend, and helpers to give both the same
// inputs and compare their outputs.
class CpuGpuTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no GPU";
    cpu_ = make_cpu_backend(0);
    auto g = make_cuda_backend({0, GetParam()});
    ASSERT_TRUE(g.ok()) << g.status();
    gpu_ = std::move(*g);
    ASSERT_EQ(gpu_->activation_dtype(), GetParam());
  }
  DType act() const { return GetParam(); }
  // Largest acceptable max|Δ|/max|ref| for an op whose output is rounded once or twice to the activation dtype.
  double tol() const { return act() == DType::kF32 ? 2e-5 : act() == DType::kF16 ? 3e-3 : 1.5e-2; }

  struct Pair {
    Tensor cpu, gpu;
  };
  // The same activation values on both backends (rounded to the activation dtype).
  Pair act_tensor(std::vector<int64_t> shape, const std::vector<float>& v) {
    const std::vector<float> r = round_to(act(), v);
    const std::vector<uint8_t> bytes = encode(act(), v);
    return {cpu_->from_host(DType::kF32, shape, r.data()), gpu_->from_host(act(), shape, bytes.data())};
  }
  // A checkpoint tensor stored as `dt`, uploaded to both.
  Pair weight(std::vector<int64_t> shape, const std::vector<float>& v, DType dt = DType::kBF16) {
    const std::vector<uint8_t> bytes = encode(dt, v);
    return {cpu_->upload_weight(dt, shape, bytes.data()), gpu_->upload_weight(dt, shape, bytes.data())};
  }
  Pair raw(DType dt, std::vector<int64_t> shape, const void* p) {
    return {cpu_->from_host(dt, shape, p), gpu_->from_host(dt, shape, p)};
  }
  // Asserts `gpu` agrees with `ref` (computed on `ref_be`) within `tolerance` (default tol()), same shape.
  void expect_close(const Tensor& ref, Backend& ref_be, const Tensor& gpu, const std::string& what,
                    double tolerance = -1) {
    ASSERT_EQ(ref.shape(), gpu.shape()) << what;
    EXPECT_EQ(gpu.dtype(), act()) << what;
    EXPECT_LT(rel_err(gpu_->to_host_f32(gpu), ref_be.to_host_f32(ref)), tolerance < 0 ? tol() : tolerance) << what;
  }
  void expect_close(const Tensor& cpu, const Tensor& gpu, const std::string& what, double tolerance = -1) {
    expect_close(cpu, *cpu_, gpu, what, tolerance);
  }

  std::unique_ptr<Backend> cpu_, gpu_;
};

}  // namespace zi::testing_gpu
