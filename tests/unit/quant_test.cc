// Group-wise quantization (engine/quant/quantize.h) and the CPU backend's quantized linear: the dequantizer equals a
// straightforward per-element reference bit for bit, every weight lands within half a step of its value (random and
// adversarial rows: constant rows, outliers, short last groups, narrow ranges far from zero, tiny magnitudes), the
// packing follows the documented nibble order, bad weights are refused naming the tensor, and the quantized linear
// equals the dense linear on the dequantized matrix exactly.
#include "engine/quant/quantize.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/dtype.h"
#include "engine/model/quantized_weights.h"

namespace zi {
namespace {

using ::testing::HasSubstr;

// The layout written out the long way: code of (r, c) from its byte and nibble, group g = c / G.
float reference_dequant(const QuantizedMatrix& m, int64_t r, int64_t c) {
  const int64_t G = m.params.group_size, groups = (m.cols + G - 1) / G;
  unsigned code;
  if (m.params.bits == 8) {
    code = m.data[r * m.cols + c];
  } else {
    const uint8_t byte = m.data[r * ((m.cols + 1) / 2) + c / 2];
    code = c % 2 == 0 ? (byte & 0x0f) : (byte >> 4);
  }
  const float mn = f16_to_f32(m.mins[r * groups + c / G]);
  const float sc = f16_to_f32(m.scales[r * groups + c / G]);
  return mn + static_cast<float>(code) * sc;
}

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint64_t seed, float std_dev = 0.02f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, std_dev);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (float& x : v) x = d(rng);
  return v;
}

// Spacing of fp16 numbers at x (normal or subnormal).
float f16_ulp(float x) {
  const float a = std::fabs(x);
  if (a < 6.103515625e-05f) return 5.9604645e-08f;  // 2^-24 below the smallest normal
  return std::ldexp(1.0f, std::ilogb(a) - 10);
}

// Every weight within half a step of its value, and the step no coarser than the group's range needs (the ideal
// step (max − min) / (2^bits − 1), widened only by fp16 rounding of the minimum and the step itself).
void expect_within_half_step(const std::vector<float>& w, int64_t rows, int64_t cols, const QuantParams& p,
                             const std::string& what) {
  auto q = quantize_matrix(w.data(), rows, cols, p, what);
  ASSERT_TRUE(q.ok()) << q.status();
  std::vector<float> deq(w.size());
  dequantize_rows(q->view(), 0, rows, deq.data());
  const int64_t G = p.group_size, groups = quant_groups(cols, G);
  const float qmax = static_cast<float>(quant_max_code(p.bits));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      const float sc = f16_to_f32(q->scales[r * groups + g]);
      const float mn = f16_to_f32(q->mins[r * groups + g]);
      float lo = INFINITY, hi = -INFINITY;
      for (int64_t c = g * G; c < std::min(cols, (g + 1) * G); ++c) lo = std::min(lo, w[r * cols + c]), hi = std::max(hi, w[r * cols + c]);
      ASSERT_LE(mn, lo) << what << " row " << r << " group " << g;
      const float needed = ((hi - lo) + f16_ulp(lo)) / qmax;
      ASSERT_LE(sc, needed * (1.0f + 0x1p-9f) + 0x1p-23f) << what << " row " << r << " group " << g;
      if (hi == lo && f16_to_f32(f32_to_f16(lo)) == lo) {
        ASSERT_EQ(sc, 0.0f) << what;
      }
      for (int64_t c = g * G; c < std::min(cols, (g + 1) * G); ++c) {
        const float v = w[r * cols + c], d = deq[r * cols + c];
        // Half a step, plus the single fp32 rounding of the dequantization's add.
        const float tol = 0.5f * sc + 0x1p-23f * std::max(std::fabs(v), std::fabs(mn));
        ASSERT_LE(std::fabs(d - v), tol) << what << " [" << r << ", " << c << "] = " << v << " → " << d
                                         << ", step " << sc;
      }
    }
}

TEST(Quantize, DequantizedEqualsStraightforwardReferenceExactly) {
  for (int bits : {8, 4})
    for (int64_t G : {1, 7, 32, 64, 1000})
      for (int64_t cols : {1, 31, 64, 70, 129}) {
        const int64_t rows = 5;
        const std::vector<float> w = random_matrix(rows, cols, 100 * bits + G + cols);
        auto q = quantize_matrix(w.data(), rows, cols, {bits, G}, "w");
        ASSERT_TRUE(q.ok()) << q.status();
        ASSERT_EQ(q->data.size(), static_cast<size_t>(rows * quant_row_bytes(cols, bits)));
        ASSERT_EQ(q->scales.size(), static_cast<size_t>(rows * ((cols + G - 1) / G)));
        std::vector<float> deq(static_cast<size_t>(rows * cols));
        dequantize_rows(q->view(), 0, rows, deq.data());
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            const float want = reference_dequant(*q, r, c);
            ASSERT_EQ(std::memcmp(&deq[r * cols + c], &want, 4), 0)
                << bits << " bits, group " << G << ", [" << r << ", " << c << "]";
          }
        // A row range equals the same rows of the whole.
        std::vector<float> part(static_cast<size_t>(2 * cols));
        dequantize_rows(q->view(), 2, 4, part.data());
        ASSERT_EQ(std::memcmp(part.data(), deq.data() + 2 * cols, part.size() * 4), 0);
      }
}

TEST(Quantize, RandomRowsWithinHalfAStep) {
  for (int bits : {8, 4})
    for (int64_t G : {32, 64, 128}) {
      expect_within_half_step(random_matrix(16, 256, bits * G), 16, 256, {bits, G}, "normal");
      expect_within_half_step(random_matrix(8, 300, bits + G, 3.0f), 8, 300, {bits, G}, "wide normal");
    }
}

TEST(Quantize, AdversarialRowsWithinHalfAStep) {
  const int64_t cols = 70;  // groups of 32: 32, 32 and a short last group of 6
  std::vector<std::vector<float>> rows;
  for (float v : {0.0f, 1.0f, -2.5f, 0.1f, -3.7e-3f, 65504.0f, -65504.0f, 1e-8f}) rows.push_back(std::vector<float>(cols, v));
  std::vector<float> outlier(cols, 0.01f);
  outlier[3] = 100.0f;
  outlier[40] = -57.0f;
  rows.push_back(outlier);
  std::vector<float> narrow(cols), ramp(cols), tiny(cols), last_group_outlier(cols, -0.02f), alternating(cols);
  for (int64_t c = 0; c < cols; ++c) {
    narrow[c] = 1000.0f + 1e-3f * static_cast<float>(c);        // range far below fp16 spacing of the minimum
    ramp[c] = -1.0f + 2.0f * static_cast<float>(c) / (cols - 1);
    tiny[c] = 1e-7f * static_cast<float>(c % 5) - 2e-7f;           // subnormal fp16 steps
    alternating[c] = c % 2 ? 0.75f : -0.75f;                      // all codes at the ends of the grid
  }
  last_group_outlier[cols - 1] = 9.0f;
  for (auto* r : {&narrow, &ramp, &tiny, &last_group_outlier, &alternating}) rows.push_back(*r);
  std::vector<float> w;
  for (const auto& r : rows) w.insert(w.end(), r.begin(), r.end());
  const int64_t n = static_cast<int64_t>(rows.size());
  for (int bits : {8, 4})
    for (int64_t G : {32, 64, 7}) expect_within_half_step(w, n, cols, {bits, G}, "adversarial");
}

TEST(Quantize, ConstantRowsOfFp16NumbersAreExact) {
  const std::vector<float> w(3 * 40, -1.5f);
  auto q = quantize_matrix(w.data(), 3, 40, {4, 32}, "w");
  ASSERT_TRUE(q.ok());
  std::vector<float> deq(w.size());
  dequantize_rows(q->view(), 0, 3, deq.data());
  EXPECT_EQ(deq, w);
}

TEST(Quantize, FourBitPackingIsLowNibbleFirst) {
  // Group 0 holds 0, 1, ..., 15: minimum 0, step 1, code = value. Group 1 is the odd 17th column, a constant.
  std::vector<float> w(17);
  for (int c = 0; c < 16; ++c) w[c] = static_cast<float>(c);
  w[16] = 7.0f;
  auto q = quantize_matrix(w.data(), 1, 17, {4, 16}, "w");
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->data.size(), 9u);
  EXPECT_EQ(f16_to_f32(q->mins[0]), 0.0f);
  EXPECT_EQ(f16_to_f32(q->scales[0]), 1.0f);
  EXPECT_EQ(f16_to_f32(q->mins[1]), 7.0f);
  EXPECT_EQ(f16_to_f32(q->scales[1]), 0.0f);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(q->data[j], (2 * j) | ((2 * j + 1) << 4)) << "byte " << j;
  EXPECT_EQ(q->data[8], 0) << "code 0 in the low nibble, the unused high nibble of an odd row zero";
  // 8 bits: one code a byte, in column order (step 15 / 255 over 0..15).
  auto q8 = quantize_matrix(w.data(), 1, 16, {8, 16}, "w");
  ASSERT_TRUE(q8.ok());
  ASSERT_EQ(q8->data.size(), 16u);
  const float s8 = f16_to_f32(q8->scales[0]);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(q8->data[c], static_cast<unsigned>(std::nearbyint(c / s8))) << c;
  EXPECT_EQ(q8->data[15], 255);
}

TEST(Quantize, NonFiniteAndOutOfRangeWeightsAreRefusedNamingTheTensor) {
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY, 1e6f};
  const char* word[] = {"NaN", "inf", "-inf", "1e+06"};
  for (int i = 0; i < 4; ++i)
    for (int bits : {8, 4}) {
      std::vector<float> w = random_matrix(3, 50, i);
      w[1 * 50 + 37] = bad[i];
      auto q = quantize_matrix(w.data(), 3, 50, {bits, 32}, "model.layers.2.mlp.up_proj.weight");
      ASSERT_FALSE(q.ok());
      EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(q.status().message(), HasSubstr("model.layers.2.mlp.up_proj.weight"));
      EXPECT_THAT(q.status().message(), HasSubstr("[1, 37]"));
      EXPECT_THAT(q.status().message(), HasSubstr(word[i]));
    }
}

TEST(Quantize, ThreadCountChangesNothing) {
  const int64_t rows = 48, cols = 65536;  // 3 M weights: split over up to 3 chunks of rows
  std::vector<float> w = random_matrix(rows, cols, 5);
  auto one = quantize_matrix(w.data(), rows, cols, {4, 64}, "w", 1);
  auto many = quantize_matrix(w.data(), rows, cols, {4, 64}, "w", 3);
  ASSERT_TRUE(one.ok() && many.ok());
  EXPECT_EQ(one->data, many->data);
  EXPECT_EQ(one->scales, many->scales);
  EXPECT_EQ(one->mins, many->mins);
  // Errors name the row in the whole tensor, the first bad one in row order.
  w[40 * cols + 3] = INFINITY;
  w[33 * cols + 9] = std::numeric_limits<float>::quiet_NaN();
  for (int threads : {1, 3}) {
    auto q = quantize_matrix(w.data(), rows, cols, {8, 64}, "big", threads);
    ASSERT_FALSE(q.ok());
    EXPECT_THAT(q.status().message(), HasSubstr("tensor 'big': weight [33, 9] is NaN")) << threads;
  }
}

TEST(Quantize, ParamsAreChecked) {
  EXPECT_TRUE(check_quant_params({8, 64}).ok());
  EXPECT_TRUE(check_quant_params({4, 1}).ok());
  EXPECT_TRUE(check_quant_params({16, 64}).ok());
  EXPECT_THAT(check_quant_params({3, 64}).message(), HasSubstr("quant_bits must be 4, 8 or 16, got 3"));
  EXPECT_THAT(check_quant_params({4, 0}).message(), HasSubstr("quant_group_size"));
  EXPECT_FALSE(make_quant_config(2, 64, false).ok());
  auto q = make_quant_config(4, 32, false);
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->enabled());
  EXPECT_FALSE(make_quant_config(16, 64, false)->enabled());
}

TEST(Quantize, PackedBytes) {
  // Llama-2-7B's q_proj at group 64: 4096 × 4096 codes plus two fp16 numbers per 64 weights.
  EXPECT_EQ(quantized_bytes(4096, 4096, {8, 64}), 4096u * 4096 + 4096u * 64 * 4);
  EXPECT_EQ(quantized_bytes(4096, 4096, {4, 64}), 4096u * 2048 + 4096u * 64 * 4);
  EXPECT_EQ(quantized_bytes(3, 5, {4, 2}), 3u * 3 + 3u * 3 * 4);
}

// ---- the CPU backend's quantized linear ----

LinearWeight quantized_linear(Backend& be, const std::vector<float>& w, int64_t out, int64_t in, QuantParams p,
                              const std::vector<float>* bias) {
  LinearWeight lw;
  WeightSpec spec;
  spec.name = "w";
  spec.shape = {out, in};
  spec.quantized = &lw;
  spec.quant = p;
  const Status s = upload_quantized(be, spec, w.data(), "test");
  EXPECT_TRUE(s.ok()) << s;
  if (bias) lw.bias = be.upload_weight(DType::kF32, {out}, bias->data());
  return lw;
}

TEST(QuantizedLinear, EqualsDenseLinearOnDequantizedWeightsExactly) {
  for (int threads : {1, 3}) {
    auto be = make_cpu_backend(threads);
    for (int bits : {8, 4})
      for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{37, 70}, {64, 176}, {16, 33}, {130, 64}})
        for (int64_t T : {1, 3, 5, 17}) {
          const std::vector<float> w = random_matrix(out, in, out * in + bits);
          const std::vector<float> b = random_matrix(1, out, 7);
          const std::vector<float> xv = random_matrix(T, in, T, 1.0f);
          const LinearWeight q = quantized_linear(*be, w, out, in, {bits, 32}, out % 2 ? &b : nullptr);
          ASSERT_EQ(q.format, WeightFormat::kQuantized);
          ASSERT_EQ(q.in_features(), in);
          ASSERT_EQ(q.out_features(), out);
          const LinearWeight dense = dequantized_copy(*be, q);
          ASSERT_EQ(dense.format, WeightFormat::kDense);
          const Tensor x = be->from_host(DType::kF32, {T, in}, xv.data());
          const std::vector<float> got = be->to_host_f32(be->linear(x, q));
          const std::vector<float> want = be->to_host_f32(be->linear(x, dense));
          ASSERT_EQ(got.size(), static_cast<size_t>(T * out));
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0)
              << bits << " bits, [" << out << ", " << in << "], T " << T << ", threads " << threads;
          // And the quantized result is close to the unquantized product (it is a real matmul).
          double max_err = 0, max_ref = 0;
          for (int64_t t = 0; t < T; ++t)
            for (int64_t o = 0; o < out; ++o) {
              double ref = out % 2 ? b[o] : 0.0;
              for (int64_t k = 0; k < in; ++k) ref += static_cast<double>(xv[t * in + k]) * w[o * in + k];
              max_err = std::max(max_err, std::fabs(ref - got[t * out + o]));
              max_ref = std::max(max_ref, std::fabs(ref));
            }
          EXPECT_LT(max_err / max_ref, bits == 8 ? 0.02 : 0.2) << bits << " bits";
        }
  }
}

}  // namespace
}  // namespace zi
