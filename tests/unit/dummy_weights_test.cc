// The one dummy-weight generator (engine/model/dummy_weights.h): element i depends only on (seed, name, i), so any
// range, thread split or dtype gives the same values; quantized tensors packed a block of rows at a time equal the
// quantization of the whole fp32 tensor; the values have the intended scale.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/model/dummy_weights.h"
#include "engine/quant/quantize.h"

namespace zi {
namespace {

TEST(DummyWeights, AnyRangeAndThreadSplitGivesTheSameValues) {
  const size_t n = 300001;  // not a multiple of anything the splits use
  std::vector<float> whole(n), threaded(n), piece(1000);
  fill_dummy("layers.0.mlp.up_proj.weight", WeightInit::kNormal, 7, DType::kF32, 0, n, whole.data());
  fill_dummy_parallel("layers.0.mlp.up_proj.weight", WeightInit::kNormal, 7, DType::kF32, n, threaded.data(), 5);
  EXPECT_EQ(whole, threaded);
  // `out` holds just the range: element i lands at out[i - begin].
  fill_dummy("layers.0.mlp.up_proj.weight", WeightInit::kNormal, 7, DType::kF32, 12345, 13345, piece.data());
  EXPECT_TRUE(std::equal(piece.begin(), piece.end(), whole.begin() + 12345));
  // bf16 is the rounding of the same values.
  std::vector<uint16_t> bf(n);
  fill_dummy_parallel("layers.0.mlp.up_proj.weight", WeightInit::kNormal, 7, DType::kBF16, n, bf.data(), 3);
  for (size_t i = 0; i < n; i += 997) EXPECT_EQ(bf[i], f32_to_bf16(whole[i])) << i;
  // Other seeds and names give other values; the scale is transformers' (std 0.02), bounded by 0.02·√3.
  std::vector<float> other(n);
  fill_dummy("layers.1.mlp.up_proj.weight", WeightInit::kNormal, 7, DType::kF32, 0, n, other.data());
  EXPECT_NE(whole, other);
  double sum = 0, sq = 0, peak = 0;
  for (float v : whole) sum += v, sq += double(v) * v, peak = std::max(peak, double(std::fabs(v)));
  EXPECT_NEAR(sum / n, 0.0, 1e-4);
  EXPECT_NEAR(std::sqrt(sq / n), 0.02, 2e-4);
  EXPECT_LE(peak, 0.02 * std::sqrt(3.0));
  std::vector<float> ones(10);
  fill_dummy("norm.weight", WeightInit::kOnes, 7, DType::kF32, 0, 10, ones.data());
  EXPECT_EQ(ones, std::vector<float>(10, 1.0f));
}

TEST(DummyWeights, PackedInBlocksEqualsTheWholeTensorQuantized) {
  for (int bits : {4, 8}) {
    WeightSpec spec;
    spec.name = "layers.3.self_attn.o_proj.weight";
    spec.shape = {1500, 1100};  // rows not a multiple of the block; an odd number of groups of 64
    spec.quant.bits = bits;
    spec.quant.group_size = 64;
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    std::vector<float> values(static_cast<size_t>(rows * cols));
    fill_dummy(spec.name, WeightInit::kNormal, 3, DType::kF32, 0, values.size(), values.data());
    auto whole = quantize_matrix(values.data(), rows, cols, spec.quant, spec.name);
    ASSERT_TRUE(whole.ok());
    for (int threads : {1, 4}) {
      std::vector<uint8_t> codes(whole->data.size());
      std::vector<uint16_t> scales(whole->scales.size()), mins(whole->mins.size());
      pack_dummy_quantized(spec, 3, codes.data(), scales.data(), mins.data(), threads);
      EXPECT_EQ(codes, whole->data) << bits << "-bit, " << threads << " threads";
      EXPECT_EQ(scales, whole->scales);
      EXPECT_EQ(mins, whole->mins);
    }
  }
}

}  // namespace
}  // namespace zi
