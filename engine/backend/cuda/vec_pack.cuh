// 16-byte vector loads and stores of activations, converted to and from fp32: a pack is 8 bf16 / fp16 or 4 fp32
// elements moved as one uint4. Callers check alignment on the host (pointers and row strides multiples of 16 bytes)
// and fall back to one element per access (VecPack<T, 1>) otherwise.
#pragma once

#include <cstdint>

#include "engine/backend/cuda/device_types.cuh"

namespace zi::cuda {

// Elements of T in 16 bytes.
template <class T>
struct Vec16 {
  static constexpr int N = static_cast<int>(16 / sizeof(T));
};

// N consecutive elements of T at p (N = Vec16<T>::N: one 16-byte access, p 16-byte aligned; N = 1: a scalar).
template <class T, int N>
struct VecPack {
  static_assert(N == 1 || N == Vec16<T>::N, "a pack is one element or 16 bytes");

  __device__ __forceinline__ static void load(const T* p, float (&out)[N]) {
    if constexpr (N == 1) {
      out[0] = to_f32(*p);
    } else {
      const uint4 u = *reinterpret_cast<const uint4*>(p);
      const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int j = 0; j < N; ++j) out[j] = to_f32(e[j]);
    }
  }

  // Rounds each value once to T.
  __device__ __forceinline__ static void store(T* p, const float (&in)[N]) {
    if constexpr (N == 1) {
      *p = from_f32<T>(in[0]);
    } else {
      uint4 u;
      T* e = reinterpret_cast<T*>(&u);
#pragma unroll
      for (int j = 0; j < N; ++j) e[j] = from_f32<T>(in[j]);
      *reinterpret_cast<uint4*>(p) = u;
    }
  }

  // A raw copy (no conversion).
  __device__ __forceinline__ static void copy(T* dst, const T* src) {
    if constexpr (N == 1) {
      *dst = *src;
    } else {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
    }
  }
};

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace zi::cuda
