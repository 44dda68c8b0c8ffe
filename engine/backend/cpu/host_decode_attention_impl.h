// The body of host_decode_attention (host_decode_attention.h), compiled once per instruction set: the including
// file defines ZI_HDA_NS (the namespace keeping each copy's symbols apart) and its compiler flags pick the code
// (host_decode_attention_avx2.cc: -mavx2 -mfma -mf16c; host_decode_attention.cc: the baseline). No templates or
// other inline library code here (this file's own templates live in the per-copy namespace): a weak copy of a library
// template built with AVX2 could be the one the linker keeps for every caller.
#ifndef ZI_HDA_NS
#error "define ZI_HDA_NS before including host_decode_attention_impl.h"
#endif

#include <math.h>

#include <cstring>

#if defined(__F16C__) && defined(__AVX2__)
#include <immintrin.h>
#endif

#include "engine/backend/cpu/host_decode_attention.h"
#include "engine/core/status.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace zi::cpu::ZI_HDA_NS {

typedef float f8 __attribute__((vector_size(32)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));

inline __attribute__((always_inline)) f8 load(const float* p) {
  f8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// This namespace's own copies of dtype.h's inline conversions (see the note at the top).
inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t float_to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Loading 8 cached elements (or 1) of each cache dtype as fp32.
struct F32 {
  static constexpr size_t kSize = 4;
  static f8 load8(const uint8_t* p) {
    f8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static float load1(const uint8_t* p) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
};

struct BF16 {
  static constexpr size_t kSize = 2;
  static f8 load8(const uint8_t* p) {
    u16x8 h;
    std::memcpy(&h, p, sizeof h);
    const u32x8 w = __builtin_convertvector(h, u32x8) << 16;
    f8 v;
    std::memcpy(&v, &w, sizeof v);
    return v;
  }
  static float load1(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return bf16_to_float(h);
  }
};

struct F16 {
  static constexpr size_t kSize = 2;
  static f8 load8(const uint8_t* p) {
#if defined(__F16C__) && defined(__AVX2__)
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    f8 v;
    std::memcpy(&v, &x, sizeof v);
    return v;
#else
    f8 v;
    for (int i = 0; i < 8; ++i) v[i] = load1(p + 2 * i);
    return v;
#endif
  }
  static float load1(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
  }
};

inline float hsum(f8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

// q (D floats) · each of 4 cached rows (D elements): 4 independent FMA chains, q loaded once per 8 dims.
template <class L>
void dot4(const float* q, const uint8_t* const r[4], int D, float* out) {
  f8 a0 = f8{}, a1 = f8{}, a2 = f8{}, a3 = f8{};
  int d = 0;
  for (; d + 8 <= D; d += 8) {
    const f8 qv = load(q + d);
    const size_t o = L::kSize * static_cast<size_t>(d);
    a0 += qv * L::load8(r[0] + o);
    a1 += qv * L::load8(r[1] + o);
    a2 += qv * L::load8(r[2] + o);
    a3 += qv * L::load8(r[3] + o);
  }
  float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
  for (; d < D; ++d)
    for (int i = 0; i < 4; ++i) s[i] += q[d] * L::load1(r[i] + L::kSize * static_cast<size_t>(d));
  for (int i = 0; i < 4; ++i) out[i] = s[i];
}

template <class L>
float dot1(const float* q, const uint8_t* r, int D) {
  f8 a = f8{};
  int d = 0;
  for (; d + 8 <= D; d += 8) a += load(q + d) * L::load8(r + L::kSize * static_cast<size_t>(d));
  float s = hsum(a);
  for (; d < D; ++d) s += q[d] * L::load1(r + L::kSize * static_cast<size_t>(d));
  return s;
}

// acc (D floats) += Σ_i w[i] · row_i, for `m` (1..4) rows: acc is read and written once per m rows.
template <class L>
void axpy_rows(float* acc, const float* w, const uint8_t* const r[4], int m, int D) {
  int d = 0;
  for (; d + 8 <= D; d += 8) {
    const size_t o = L::kSize * static_cast<size_t>(d);
    f8 x = load(acc + d);
    x += (f8{} + w[0]) * L::load8(r[0] + o);
    if (m > 1) x += (f8{} + w[1]) * L::load8(r[1] + o);
    if (m > 2) x += (f8{} + w[2]) * L::load8(r[2] + o);
    if (m > 3) x += (f8{} + w[3]) * L::load8(r[3] + o);
    std::memcpy(acc + d, &x, sizeof x);
  }
  for (; d < D; ++d)
    for (int i = 0; i < m; ++i) acc[d] += w[i] * L::load1(r[i] + L::kSize * static_cast<size_t>(d));
}

// exp(x) for x ≤ 0 (max-subtracted scores): 2^n · e^r with n = round(x / ln 2), |r| ≤ ln 2 / 2, e^r by its degree-6
// Taylor polynomial (relative error < 2e-7); below −87 the result is flushed towards 0 (≈ 1e-38).
inline f8 exp8(f8 x) {
  x = x < -87.0f ? f8{} - 87.0f : x;
  const f8 magic = f8{} + 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds to an integer
  const f8 n = (x * 1.44269504f + magic) - magic;
  const f8 r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  f8 p = f8{} + (1.0f / 720);
  p = p * r + (1.0f / 120);
  p = p * r + (1.0f / 24);
  p = p * r + (1.0f / 6);
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  typedef int32_t i8v __attribute__((vector_size(32)));
  const i8v bits = (__builtin_convertvector(n, i8v) + 127) << 23;
  f8 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// sc[0, n) → softmax(sc) in place.
inline void softmax(float* sc, int64_t n) {
  float mx = -__builtin_inff();
  for (int64_t j = 0; j < n; ++j) mx = sc[j] > mx ? sc[j] : mx;
  f8 sum8 = f8{};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const f8 e = exp8(load(sc + j) - mx);
    std::memcpy(sc + j, &e, sizeof e);
    sum8 += e;
  }
  float sum = hsum(sum8);
  for (; j < n; ++j) {
    f8 e = exp8(f8{} + (sc[j] - mx));
    sc[j] = e[0];
    sum += e[0];
  }
  const float inv = 1.0f / sum;
  for (j = 0; j < n; ++j) sc[j] *= inv;
}

inline void to_f32(DType t, const void* src, float* dst, int n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int i = 0; i < n; ++i)
    dst[i] = t == DType::kF32 ? F32::load1(p + 4 * i) : t == DType::kBF16 ? BF16::load1(p + 2 * i) : F16::load1(p + 2 * i);
}

inline void from_f32(DType t, const float* src, void* dst, int n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int i = 0; i < n; ++i) {
    if (t == DType::kF32) {
      std::memcpy(p + 4 * i, src + i, 4);
    } else {
      const uint16_t h = t == DType::kBF16 ? float_to_bf16(src[i]) : f32_to_f16(src[i]);
      std::memcpy(p + 2 * i, &h, 2);
    }
  }
}

// The task body for one cache dtype. Rows are taken 4 positions at a time: 4 independent dot products per query head
// (keys), and the accumulator updated once per 4 value rows.
template <class L>
void attend_rows(const HostDecodeAttention& a, const SeqSlice& seq, const int32_t* table, int kv0, int kv1, DType io,
                 const void* q_row, void* out_row, float* scratch) {
  const KvGeometry& g = a.g;
  const int D = g.head_dim, nKV = g.n_kv_heads, G = a.n_heads / nKV;
  const int nh = (kv1 - kv0) * G;               // query heads of this task: kv0·G .. kv1·G − 1
  const int64_t pos = seq.past_len;             // the new row's position (n_new == 1)
  const int64_t first = a.sliding_window > 0 && pos - a.sliding_window + 1 > 0 ? pos - a.sliding_window + 1 : 0;
  const int64_t n = pos - first + 1;
  const int64_t row_elems = int64_t{nKV} * D;

  float* qf = scratch;                                     // [nh, D] pre-scaled
  float* acc = qf + static_cast<size_t>(nh) * D;           // [nh, D]
  float* scores = acc + static_cast<size_t>(nh) * D;       // [nh, n]
  for (int i = 0; i < nh * D; ++i) acc[i] = 0.0f;

  const size_t io_size = dtype_size(io);
  to_f32(io, static_cast<const uint8_t*>(q_row) + io_size * static_cast<size_t>(kv0) * G * D, qf, nh * D);
  for (int i = 0; i < nh * D; ++i) qf[i] *= a.scale;

  // Address of position p's row from kv head kv0 on, in a layer's cache.
  auto row_at = [&](const void* cache, int64_t p) {
    const int32_t b = table[p / g.block_size];
    ZI_CHECK(b >= 0 && b < g.num_blocks);
    return static_cast<const uint8_t*>(cache) +
           L::kSize * static_cast<size_t>((int64_t{b} * g.block_size + p % g.block_size) * row_elems + int64_t{kv0} * D);
  };
  const size_t head_bytes = L::kSize * static_cast<size_t>(D);

  // Keys, front to back.
  for (int64_t j = 0; j < n; j += 4) {
    const int m = n - j < 4 ? static_cast<int>(n - j) : 4;
    const uint8_t* r[4];
    for (int i = 0; i < 4; ++i) r[i] = row_at(a.k_cache, first + j + (i < m ? i : 0));
    for (int h = 0; h < nh; ++h) {
      const size_t ho = head_bytes * static_cast<size_t>(h / G);
      float* sc = scores + static_cast<size_t>(h) * n + j;
      if (m == 4) {
        const uint8_t* rh[4] = {r[0] + ho, r[1] + ho, r[2] + ho, r[3] + ho};
        dot4<L>(qf + h * D, rh, D, sc);
      } else {
        for (int i = 0; i < m; ++i) sc[i] = dot1<L>(qf + h * D, r[i] + ho, D);
      }
    }
  }
  // Softmax per head, ALiBi first.
  for (int h = 0; h < nh; ++h) {
    float* sc = scores + static_cast<size_t>(h) * n;
    if (a.alibi_slopes != nullptr) {
      const float slope = a.alibi_slopes[kv0 * G + h];
      for (int64_t j = 0; j < n; ++j) sc[j] += slope * static_cast<float>(first + j - pos);
    }
    softmax(sc, n);
  }
  // Values, front to back.
  for (int64_t j = 0; j < n; j += 4) {
    const int m = n - j < 4 ? static_cast<int>(n - j) : 4;
    const uint8_t* r[4];
    for (int i = 0; i < 4; ++i) r[i] = row_at(a.v_cache, first + j + (i < m ? i : 0));
    for (int h = 0; h < nh; ++h) {
      const size_t ho = head_bytes * static_cast<size_t>(h / G);
      const uint8_t* rh[4] = {r[0] + ho, r[1] + ho, r[2] + ho, r[3] + ho};
      float w[4];
      for (int i = 0; i < 4; ++i) w[i] = i < m ? scores[static_cast<size_t>(h) * n + j + i] : 0.0f;
      axpy_rows<L>(acc + h * D, w, rh, m, D);
    }
  }
  from_f32(io, acc, static_cast<uint8_t*>(out_row) + io_size * static_cast<size_t>(kv0) * G * D, nh * D);
}

// One task: sequence `seq` (its row at `q_row`/`out_row`), kv heads [kv0, kv1) and their query heads.
// `scratch` holds 2·nh·D + nh·(past_len + 1) floats (no allocation here: this copy may be built for another
// instruction set, and only plain code should come from it).
void attend(const HostDecodeAttention& a, const SeqSlice& seq, const int32_t* table, int kv0, int kv1, DType io,
            const void* q_row, void* out_row, float* scratch) {
  switch (a.cache_dtype) {
    case DType::kF32: return attend_rows<F32>(a, seq, table, kv0, kv1, io, q_row, out_row, scratch);
    case DType::kF16: return attend_rows<F16>(a, seq, table, kv0, kv1, io, q_row, out_row, scratch);
    case DType::kBF16: return attend_rows<BF16>(a, seq, table, kv0, kv1, io, q_row, out_row, scratch);
    default: ZI_CHECK(false && "host_decode_attention: cache dtype must be F32, F16 or BF16");
  }
}

}  // namespace zi::cpu::ZI_HDA_NS
