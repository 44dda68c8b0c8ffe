// host_decode_attention (the CPU kernel for KV-offloaded decode) against a double-precision reference: caches in
// fp32/fp16/bf16 scattered over blocks, GQA, sliding window, ALiBi, head dims with and without a vector tail, both
// instruction-set copies, and results independent of the thread count.
#include "engine/backend/cpu/host_decode_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace zi::cpu {
namespace {

// Elements of `dtype` holding `x` rounded to it, and the rounded values as fp32.
void encode(DType dtype, const std::vector<float>& x, std::vector<uint8_t>* raw, std::vector<float>* rounded) {
  raw->assign(x.size() * dtype_size(dtype), 0);
  rounded->resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(raw->data() + 4 * i, &x[i], 4);
      (*rounded)[i] = x[i];
    } else {
      const uint16_t h = dtype == DType::kF16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
      std::memcpy(raw->data() + 2 * i, &h, 2);
      (*rounded)[i] = dtype == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
}

std::vector<float> decode(DType dtype, const std::vector<uint8_t>& raw) {
  std::vector<float> out(raw.size() / dtype_size(dtype));
  convert_to_f32(dtype, raw.data(), out.data(), out.size());
  return out;
}

struct Case {
  DType cache;
  DType io;
  int n_heads, n_kv_heads, head_dim, block_size, window;
  bool alibi;
};

class HostDecodeAttentionTest : public ::testing::TestWithParam<Case> {};

TEST_P(HostDecodeAttentionTest, MatchesReferenceOnEveryCopyAndThreadCount) {
  const Case c = GetParam();
  const int nH = c.n_heads, nKV = c.n_kv_heads, D = c.head_dim, BS = c.block_size, G = nH / nKV;
  // Context lengths (past_len + 1): one token, within a block, across several blocks.
  const std::vector<int> lens = {1, 3, BS + 1, 3 * BS + 5, 2 * BS};
  const int n = static_cast<int>(lens.size());
  int max_blocks = 0, total_blocks = 0;
  for (int len : lens) {
    max_blocks = std::max(max_blocks, (len + BS - 1) / BS);
    total_blocks += (len + BS - 1) / BS;
  }
  const int NB = total_blocks + 3;
  // Blocks handed out in a shuffled order, as a paged cache does after sequences come and go.
  std::mt19937 rng(7);
  std::vector<int32_t> free_blocks(NB);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  std::vector<int32_t> tables(static_cast<size_t>(n) * max_blocks, -1);
  std::vector<SeqSlice> seqs;
  for (int s = 0, next = 0; s < n; ++s) {
    for (int b = 0; b < (lens[s] + BS - 1) / BS; ++b) tables[s * max_blocks + b] = free_blocks[next++];
    seqs.push_back(SeqSlice{s, s, 1, lens[s] - 1});
  }
  std::normal_distribution<float> dist(0.0f, 1.0f);
  auto randn = [&](size_t k) {
    std::vector<float> v(k);
    for (float& x : v) x = dist(rng);
    return v;
  };
  const size_t cache_elems = static_cast<size_t>(NB) * BS * nKV * D;
  std::vector<uint8_t> kraw, vraw, qraw;
  std::vector<float> k, v, q;
  encode(c.cache, randn(cache_elems), &kraw, &k);
  encode(c.cache, randn(cache_elems), &vraw, &v);
  encode(c.io, randn(static_cast<size_t>(n) * nH * D), &qraw, &q);
  std::vector<float> slopes(nH);
  for (int h = 0; h < nH; ++h) slopes[h] = std::pow(2.0f, -1.0f - h);

  HostDecodeAttention a;
  a.k_cache = kraw.data();
  a.v_cache = vraw.data();
  a.cache_dtype = c.cache;
  a.g = KvGeometry{NB, BS, nKV, D, tables.data(), max_blocks};
  a.n_heads = nH;
  a.scale = 1.0f / std::sqrt(static_cast<float>(D));
  a.sliding_window = c.window;
  a.alibi_slopes = c.alibi ? slopes.data() : nullptr;

  // Reference in double over the rounded values.
  std::vector<double> ref(static_cast<size_t>(n) * nH * D);
  for (int s = 0; s < n; ++s) {
    const int pos = lens[s] - 1;
    for (int h = 0; h < nH; ++h) {
      const int kvh = h / G;
      std::vector<double> sc;
      std::vector<size_t> offs;
      for (int j = 0; j <= pos; ++j) {
        if (c.window > 0 && pos - j >= c.window) continue;
        const size_t off = ((static_cast<size_t>(tables[s * max_blocks + j / BS]) * BS + j % BS) * nKV + kvh) * D;
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += double(q[(static_cast<size_t>(s) * nH + h) * D + d]) * k[off + d];
        sc.push_back(dot * a.scale + (c.alibi ? slopes[h] * double(j - pos) : 0.0));
        offs.push_back(off);
      }
      const double mx = *std::max_element(sc.begin(), sc.end());
      double den = 0;
      for (double& x : sc) den += (x = std::exp(x - mx));
      for (int d = 0; d < D; ++d) {
        double o = 0;
        for (size_t j = 0; j < sc.size(); ++j) o += sc[j] / den * v[offs[j] + d];
        ref[(static_cast<size_t>(s) * nH + h) * D + d] = o;
      }
    }
  }
  // The io dtype's rounding of the output bounds the error (fp32: the kernel's float arithmetic).
  const double tol = c.io == DType::kF32 ? 2e-5 : c.io == DType::kF16 ? 2e-3 : 1.6e-2;

  std::vector<uint8_t> first;
  for (CpuIsa isa : {CpuIsa::kBest, CpuIsa::kGeneric}) {
    for (int threads : {1, 3}) {
      ThreadPool pool(threads);
      std::vector<uint8_t> out(static_cast<size_t>(n) * nH * D * dtype_size(c.io), 0xff);
      host_decode_attention(pool, a, seqs, 0, seqs.size(), c.io, qraw.data(), out.data(), isa);
      const std::vector<float> got = decode(c.io, out);
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(got[i], ref[i], tol * (1.0 + std::abs(ref[i])))
            << "element " << i << " isa " << static_cast<int>(isa) << " threads " << threads;
      // One copy gives the same bytes whatever the thread count.
      if (threads == 1) first = out;
      else EXPECT_EQ(out, first) << "isa " << static_cast<int>(isa);
    }
  }

  // A sub-range of the step: sequences [2, 5), q and out pointing at row 2.
  ThreadPool pool(2);
  const size_t row = static_cast<size_t>(nH) * D * dtype_size(c.io);
  std::vector<uint8_t> part(3 * row), whole(static_cast<size_t>(n) * row);
  host_decode_attention(pool, a, seqs, 0, seqs.size(), c.io, qraw.data(), whole.data());
  host_decode_attention(pool, a, seqs, 2, 5, c.io, qraw.data() + 2 * row, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + 2 * row));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, HostDecodeAttentionTest,
    ::testing::Values(Case{DType::kF16, DType::kF16, 8, 8, 128, 16, 0, false},   // Llama-2 (MHA)
                      Case{DType::kBF16, DType::kBF16, 8, 2, 64, 16, 0, false},  // GQA
                      Case{DType::kF16, DType::kF16, 4, 1, 80, 4, 7, false},     // MQA, window, 8-wide tail
                      Case{DType::kBF16, DType::kBF16, 6, 6, 20, 16, 0, true},   // ALiBi (BLOOM), odd tail
                      Case{DType::kF32, DType::kF32, 4, 2, 5, 3, 4, true}));     // fp32, tiny head, window

TEST(HostDecodeAttention, NamesItsInstructionSet) {
  const std::string isa = host_decode_attention_isa();
  EXPECT_TRUE(isa == "avx2-f16c" || isa == "generic") << isa;
}

}  // namespace
}  // namespace zi::cpu
