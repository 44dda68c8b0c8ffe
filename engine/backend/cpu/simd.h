// 8-wide float vectors (GCC/Clang vector extensions) for the CPU kernels, and the multiversioning attribute that
// compiles a hot function twice (x86-64-v3 = AVX2 + FMA, and the baseline), picked once at load time.
#pragma once

#include <cstdint>
#include <cstring>

// Not under the sanitizers: their instrumentation of the ifunc resolver runs before the runtime is up (TSan
// crashes at load).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define ZI_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ZI_CPU_CLONES
#endif

// 32-byte vectors are passed between always-inline helpers only; the ABI note does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace zi::cpu {

typedef float v8f __attribute__((vector_size(32)));

inline __attribute__((always_inline)) v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline __attribute__((always_inline)) void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }

inline __attribute__((always_inline)) float hsum(v8f v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// Σ a[i]·b[i] over n floats: 8 lanes, then the tail in order.
inline __attribute__((always_inline)) float dot(const float* a, const float* b, int64_t n) {
  v8f acc = v8f{};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc += load8(a + i) * load8(b + i);
  float s = hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y[i] += a · x[i] over n floats.
inline __attribute__((always_inline)) void axpy(float a, const float* x, float* y, int64_t n) {
  const v8f av = v8f{} + a;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8(y + i, load8(y + i) + av * load8(x + i));
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace zi::cpu
