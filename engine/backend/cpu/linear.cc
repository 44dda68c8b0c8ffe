// y = x · Wᵀ on the CPU in fp32. Work is split over blocks of output rows (W rows) so every thread streams its own
// part of W once per block of 4 activation rows; the inner loops are 8-wide vector code (GCC vector extensions) that
// the compiler maps to AVX2+FMA or SSE, picked at load time by function multiversioning on x86-64.
#include <algorithm>
#include <cstring>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"

namespace zi::cpu {
namespace {

// out[t][o] = Σ_k x[t, k] · w[o, k] for TR activation rows and OR weight rows.
template <int TR, int OR>
inline __attribute__((always_inline)) void dot_block(const float* x, int64_t ldx, const float* w, int64_t ldw,
                                                     int64_t K, float (&out)[TR][OR]) {
  v8f acc[TR][OR];
  for (int t = 0; t < TR; ++t)
    for (int o = 0; o < OR; ++o) acc[t][o] = v8f{};
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    v8f wv[OR];
    for (int o = 0; o < OR; ++o) wv[o] = load8(w + o * ldw + k);
    for (int t = 0; t < TR; ++t) {
      const v8f xv = load8(x + t * ldx + k);
      for (int o = 0; o < OR; ++o) acc[t][o] += xv * wv[o];
    }
  }
  for (int t = 0; t < TR; ++t)
    for (int o = 0; o < OR; ++o) {
      float s = hsum(acc[t][o]);
      for (int64_t kk = k; kk < K; ++kk) s += x[t * ldx + kk] * w[o * ldw + kk];
      out[t][o] = s;
    }
}

template <int TR, int OR>
inline __attribute__((always_inline)) void store_block(float (&r)[TR][OR], float* y, int64_t ldy, int64_t o0,
                                                       const float* bias) {
  for (int t = 0; t < TR; ++t)
    for (int o = 0; o < OR; ++o) y[t * ldy + o0 + o] = r[t][o] + (bias ? bias[o0 + o] : 0.0f);
}

// Rows [o_begin, o_end) of W against all T rows of x; `w_rows` points at W's row o_begin.
ZI_CPU_CLONES
void linear_rows(const float* x, int64_t T, int64_t in, const float* w_rows, int64_t o_begin, int64_t o_end,
                 const float* bias, float* y, int64_t out) {
  const float* w = w_rows - o_begin * in;  // indexed with o ≥ o_begin only
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) {
    const float* xt = x + t * in;
    float* yt = y + t * out;
    int64_t o = o_begin;
    for (; o + 2 <= o_end; o += 2) {
      float r[4][2];
      dot_block<4, 2>(xt, in, w + o * in, in, in, r);
      store_block<4, 2>(r, yt, out, o, bias);
    }
    for (; o < o_end; ++o) {
      float r[4][1];
      dot_block<4, 1>(xt, in, w + o * in, in, in, r);
      store_block<4, 1>(r, yt, out, o, bias);
    }
  }
  for (; t < T; ++t) {
    const float* xt = x + t * in;
    float* yt = y + t * out;
    int64_t o = o_begin;
    for (; o + 4 <= o_end; o += 4) {
      float r[1][4];
      dot_block<1, 4>(xt, in, w + o * in, in, in, r);
      store_block<1, 4>(r, yt, out, o, bias);
    }
    for (; o < o_end; ++o) {
      float r[1][1];
      dot_block<1, 1>(xt, in, w + o * in, in, in, r);
      store_block<1, 1>(r, yt, out, o, bias);
    }
  }
}

}  // namespace

namespace {

// Blocks of 16 W rows (16 × in floats stay in L2 while all 4-row blocks of x pass by); with little work in total,
// more blocks per task so that small layers do not pay thread wake-ups.
constexpr int64_t kBlock = 16;
int64_t blocks_per_task(int64_t T, int64_t in) {
  const int64_t flops_per_row = std::max<int64_t>(1, T * in);
  const int64_t min_rows = std::max<int64_t>(kBlock, (1 << 16) / flops_per_row);
  return (min_rows + kBlock - 1) / kBlock;
}

}  // namespace

void linear_f32(ThreadPool& pool, const float* x, int64_t T, int64_t in, const float* w, int64_t out,
                const float* bias, float* y) {
  const int64_t blocks = (out + kBlock - 1) / kBlock;
  pool.parallel_for(blocks, blocks_per_task(T, in), [&](int64_t b0, int64_t b1) {
    linear_rows(x, T, in, w + b0 * kBlock * in, b0 * kBlock, std::min(out, b1 * kBlock), bias, y, out);
  });
}

// Each block of 16 W rows is dequantized into the thread's scratch (16 × in floats) and multiplied by exactly the
// code linear_f32 runs on those rows. Blocks start at multiples of 16 in both, so every output element goes
// through the same instruction sequence: the result equals linear_f32 on the dequantized matrix bit for bit.
void linear_quant_f32(ThreadPool& pool, const float* x, int64_t T, const QuantView& w, const float* bias, float* y) {
  const int64_t in = w.cols, out = w.rows;
  const int64_t blocks = (out + kBlock - 1) / kBlock;
  pool.parallel_for(blocks, blocks_per_task(T, in), [&](int64_t b0, int64_t b1) {
    std::vector<float> scratch(static_cast<size_t>(kBlock * in));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o0 = b * kBlock, o1 = std::min(out, o0 + kBlock);
      dequantize_rows(w, o0, o1, scratch.data());
      linear_rows(x, T, in, scratch.data(), o0, o1, bias, y, out);
    }
  });
}

}  // namespace zi::cpu
