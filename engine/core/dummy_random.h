// The dummy weights' random values (engine/model/dummy_weights.h), one definition for the host generator and the
// CUDA one (backend/cuda/dummy_fill.cu), so a tensor made on either is bit-identical: element i of the tensor keyed
// `key` is (2u − 1)·a, u = the top 24 bits of splitmix64's finaliser of key + φ·(i + 1) over 2^24. Uniform on
// (−a, a) with a = 0.02·√3 has std 0.02, transformers' init scale.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define ZI_DUMMY_HD __host__ __device__
#else
#define ZI_DUMMY_HD
#endif

namespace zi {

inline constexpr float kDummyAmplitude = 0.02f * 1.7320508f;

// splitmix64's finaliser: a bijection with full avalanche, so consecutive counters give independent-looking bits.
ZI_DUMMY_HD inline uint64_t dummy_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Element i's value in fp32 (exact: 2u − 1 has ≤ 24 significant bits; the product is rounded once, never fused).
ZI_DUMMY_HD inline float dummy_uniform(uint64_t key, uint64_t i, float a) {
  const uint64_t r = dummy_mix(key + 0x9e3779b97f4a7c15ull * (i + 1));
  const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
#if defined(__CUDA_ARCH__)
  return __fmul_rn(2.0f * u - 1.0f, a);
#else
  return (2.0f * u - 1.0f) * a;
#endif
}

}  // namespace zi
