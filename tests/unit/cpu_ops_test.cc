// CPU backend ops against straightforward double-precision references written here from the definitions
// (Hugging Face semantics), over odd sizes that exercise the vector tails, several thread counts, and batches of
// sequences with different cache lengths.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "engine/backend/backend.h"

namespace zi {
namespace {

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double max_rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  double max_ref = 1e-30, max_d = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_d = std::max(max_d, std::abs(got[i] - ref[i]));
  }
  return max_d / max_ref;
}

class CpuOps : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { be_ = make_cpu_backend(GetParam()); }
  Tensor f32(std::vector<int64_t> shape, const std::vector<float>& v) {
    return be_->from_host(DType::kF32, std::move(shape), v.data());
  }
  std::unique_ptr<Backend> be_;
};

TEST_P(CpuOps, LinearMatchesReferenceForAllWeightDtypes) {
  for (auto [T, in, out] : {std::tuple{1, 64, 64}, {3, 37, 19}, {9, 176, 64}, {17, 8, 130}, {5, 1, 3}}) {
    auto x = randn(T * in, 1);
    auto w = randn(out * in, 2, 0.1f);
    auto b = randn(out, 3);
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      // The weight as a checkpoint stores it, and the fp32 values the math must use.
      std::vector<uint16_t> half(w.size());
      std::vector<float> wq = w;
      for (size_t i = 0; i < w.size(); ++i) {
        if (dt == DType::kBF16) half[i] = f32_to_bf16(w[i]), wq[i] = bf16_to_f32(half[i]);
        if (dt == DType::kF16) half[i] = f32_to_f16(w[i]), wq[i] = f16_to_f32(half[i]);
      }
      const void* src = dt == DType::kF32 ? static_cast<const void*>(w.data()) : half.data();
      LinearWeight lw{WeightFormat::kDense, be_->upload_weight(dt, {out, in}, src), f32({out}, b)};
      Tensor y = be_->linear(f32({T, in}, x), lw);
      ASSERT_EQ(y.shape(), (std::vector<int64_t>{T, out}));
      std::vector<double> ref(T * out);
      for (int t = 0; t < T; ++t)
        for (int o = 0; o < out; ++o) {
          double s = b[o];
          for (int k = 0; k < in; ++k) s += static_cast<double>(x[t * in + k]) * wq[o * in + k];
          ref[t * out + o] = s;
        }
      EXPECT_LT(max_rel_err(be_->to_host_f32(y), ref), 1e-6) << T << "x" << in << "→" << out;
    }
  }
}

TEST_P(CpuOps, LinearRowResultDoesNotDependOnBatch) {
  // A row's output is bit-identical whether it is computed alone or with others (batch-invariant sampling).
  const int in = 45, out = 33;
  auto x = randn(7 * in, 4);
  LinearWeight lw{WeightFormat::kDense, f32({out, in}, randn(out * in, 5)), Tensor()};
  auto all = be_->to_host_f32(be_->linear(f32({7, in}, x), lw));
  for (int t = 0; t < 7; ++t) {
    std::vector<float> row(x.begin() + t * in, x.begin() + (t + 1) * in);
    auto one = be_->to_host_f32(be_->linear(f32({1, in}, row), lw));
    for (int o = 0; o < out; ++o) ASSERT_EQ(one[o], all[t * out + o]) << t << "," << o;
  }
}

TEST_P(CpuOps, RmsNormAndLayerNorm) {
  const int T = 5, H = 67;
  auto x = randn(T * H, 6, 3.0f);
  auto w = randn(H, 7);
  auto b = randn(H, 8);
  auto rms = be_->to_host_f32(be_->rms_norm(f32({T, H}, x), f32({H}, w), 1e-5f));
  auto ln = be_->to_host_f32(be_->layer_norm(f32({T, H}, x), f32({H}, w), f32({H}, b), 1e-5f));
  std::vector<double> rref(T * H), lref(T * H);
  for (int t = 0; t < T; ++t) {
    double ss = 0, sum = 0;
    for (int i = 0; i < H; ++i) ss += double(x[t * H + i]) * x[t * H + i], sum += x[t * H + i];
    double mean = sum / H, var = 0;
    for (int i = 0; i < H; ++i) var += (x[t * H + i] - mean) * (x[t * H + i] - mean);
    var /= H;
    for (int i = 0; i < H; ++i) {
      rref[t * H + i] = x[t * H + i] / std::sqrt(ss / H + 1e-5) * w[i];
      lref[t * H + i] = (x[t * H + i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
    }
  }
  EXPECT_LT(max_rel_err(rms, rref), 1e-6);
  EXPECT_LT(max_rel_err(ln, lref), 1e-6);
}

TEST_P(CpuOps, RopeRotatesHalvesByPositionTimesInvFreq) {
  const int T = 4, nH = 3, D = 8;
  auto x = randn(T * nH * D, 9);
  std::vector<int32_t> pos = {0, 5, 1, 100};
  std::vector<float> inv_freq(D / 2);
  for (int i = 0; i < D / 2; ++i) inv_freq[i] = static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / D));
  Tensor xt = f32({T, nH * D}, x);
  be_->rope_inplace(xt, be_->from_host(DType::kI32, {T}, pos.data()), f32({D / 2}, inv_freq), nH, D);
  std::vector<double> ref(x.size());
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < nH; ++h)
      for (int i = 0; i < D / 2; ++i) {
        double a = double(pos[t]) * inv_freq[i];
        double x1 = x[(t * nH + h) * D + i], x2 = x[(t * nH + h) * D + i + D / 2];
        ref[(t * nH + h) * D + i] = x1 * std::cos(a) - x2 * std::sin(a);
        ref[(t * nH + h) * D + i + D / 2] = x2 * std::cos(a) + x1 * std::sin(a);
      }
  EXPECT_LT(max_rel_err(be_->to_host_f32(xt), ref), 1e-5);
  // Position 0 is the identity.
  auto got = be_->to_host_f32(xt);
  for (int i = 0; i < nH * D; ++i) EXPECT_FLOAT_EQ(got[i], x[i]);
}

// Reference attention over the paged cache: every sequence's keys = its cached prefix + this step's rows, stored in
// blocks of 4 positions that its block table scatters over the cache (out of order, interleaved with the others').
TEST_P(CpuOps, AttentionOverPagedCacheWithGqaWindowAndAlibi) {
  const int nH = 6, nKV = 2, D = 5, BS = 4, NB = 12;
  // Three sequences: a fresh prefill, a decode step after 9 cached tokens, a chunk of 3 after 4 cached.
  std::vector<SeqSlice> seqs = {{2, 0, 5, 0}, {0, 5, 1, 9}, {1, 6, 3, 4}};
  const std::vector<std::vector<int32_t>> tables = {{7, 2}, {11, 0, 5}, {3, 9}};
  const int T = 9;
  auto at = [&](size_t s, int p) { return (tables[s][p / BS] * BS + p % BS) * nKV * D; };
  for (int window : {0, 3}) {
    for (bool alibi : {false, true}) {
      // Full per-sequence K/V histories (cached + new), [len, nKV, D].
      std::vector<std::vector<float>> kh, vh;
      std::vector<float> knew(T * nKV * D), vnew(T * nKV * D);
      std::vector<float> kcache(NB * BS * nKV * D, 0.0f), vcache(NB * BS * nKV * D, 0.0f);
      for (size_t s = 0; s < seqs.size(); ++s) {
        const int len = seqs[s].past_len + seqs[s].n_new;
        kh.push_back(randn(len * nKV * D, 100 + s));
        vh.push_back(randn(len * nKV * D, 200 + s));
        for (int p = 0; p < len; ++p)
          for (int e = 0; e < nKV * D; ++e) {
            float kv = kh[s][p * nKV * D + e], vv = vh[s][p * nKV * D + e];
            if (p < seqs[s].past_len) {
              kcache[at(s, p) + e] = kv;
              vcache[at(s, p) + e] = vv;
            } else {
              knew[(seqs[s].row_begin + p - seqs[s].past_len) * nKV * D + e] = kv;
              vnew[(seqs[s].row_begin + p - seqs[s].past_len) * nKV * D + e] = vv;
            }
          }
      }
      KvLayer cache{be_->from_host(DType::kF32, {NB, BS, nKV, D}, kcache.data()),
                    be_->from_host(DType::kF32, {NB, BS, nKV, D}, vcache.data())};
      AttentionBatch batch = make_attention_batch(*be_, seqs, BS, tables);
      be_->kv_write(cache, batch, f32({T, nKV * D}, knew), f32({T, nKV * D}, vnew));
      // kv_write put every new row where the block table says.
      auto kc = be_->to_host_f32(cache.k);
      for (size_t s = 0; s < seqs.size(); ++s)
        for (int p = seqs[s].past_len; p < seqs[s].past_len + seqs[s].n_new; ++p)
          for (int e = 0; e < nKV * D; ++e) ASSERT_EQ(kc[at(s, p) + e], kh[s][p * nKV * D + e]);
      auto q = randn(T * nH * D, 300);
      std::vector<float> slopes = {0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f};
      AttentionParams p{nH, nKV, D, 0.37f, window, alibi ? f32({nH}, slopes) : Tensor()};
      auto got = be_->to_host_f32(be_->attention(f32({T, nH * D}, q), cache, batch, p));
      std::vector<double> ref(T * nH * D);
      for (size_t s = 0; s < seqs.size(); ++s)
        for (int i = 0; i < seqs[s].n_new; ++i) {
          const int t = seqs[s].row_begin + i, pos = seqs[s].past_len + i;
          for (int h = 0; h < nH; ++h) {
            const int kvh = h / (nH / nKV);
            std::vector<double> sc;
            std::vector<int> keys;
            for (int j = 0; j <= pos; ++j) {
              if (window > 0 && pos - j >= window) continue;
              double dot = 0;
              for (int d = 0; d < D; ++d) dot += double(q[(t * nH + h) * D + d]) * kh[s][(j * nKV + kvh) * D + d];
              sc.push_back(dot * 0.37 + (alibi ? slopes[h] * double(j - pos) : 0.0));
              keys.push_back(j);
            }
            double mx = *std::max_element(sc.begin(), sc.end()), den = 0;
            for (auto& v : sc) den += (v = std::exp(v - mx));
            for (int d = 0; d < D; ++d) {
              double o = 0;
              for (size_t k = 0; k < keys.size(); ++k) o += sc[k] / den * vh[s][(keys[k] * nKV + kvh) * D + d];
              ref[(t * nH + h) * D + d] = o;
            }
          }
        }
      EXPECT_LT(max_rel_err(got, ref), 1e-5) << "window " << window << " alibi " << alibi;
    }
  }
}

TEST_P(CpuOps, ElementwiseOps) {
  const int n = 1000;
  auto a = randn(n, 11, 3.0f), b = randn(n, 12, 3.0f);
  auto silu_mul = be_->to_host_f32(be_->silu_mul(f32({n}, a), f32({n}, b)));
  auto relu = be_->to_host_f32(be_->activation(f32({n}, a), Activation::kRelu));
  auto gelu_t = be_->to_host_f32(be_->activation(f32({n}, a), Activation::kGeluTanh));
  auto gelu = be_->to_host_f32(be_->activation(f32({n}, a), Activation::kGelu));
  auto silu = be_->to_host_f32(be_->activation(f32({n}, a), Activation::kSilu));
  auto sum = be_->to_host_f32(be_->add(f32({n}, a), f32({n}, b)));
  std::vector<double> r_sm(n), r_relu(n), r_gt(n), r_g(n), r_silu(n), r_sum(n);
  for (int i = 0; i < n; ++i) {
    double x = a[i];
    r_silu[i] = x / (1 + std::exp(-x));
    r_sm[i] = r_silu[i] * b[i];
    r_relu[i] = x > 0 ? x : 0;
    r_gt[i] = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    r_g[i] = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    r_sum[i] = x + b[i];
  }
  EXPECT_LT(max_rel_err(silu_mul, r_sm), 1e-6);
  EXPECT_LT(max_rel_err(relu, r_relu), 1e-7);
  EXPECT_LT(max_rel_err(gelu_t, r_gt), 1e-6);
  EXPECT_LT(max_rel_err(gelu, r_g), 1e-6);
  EXPECT_LT(max_rel_err(silu, r_silu), 1e-6);
  EXPECT_LT(max_rel_err(sum, r_sum), 1e-7);
  Tensor at = f32({n}, a);
  be_->add_inplace(at, f32({n}, b));
  EXPECT_EQ(be_->to_host_f32(at), sum);
}

TEST_P(CpuOps, EmbeddingGatherAndColumnSlice) {
  const int V = 10, H = 6;
  auto table = randn(V * H, 13);
  std::vector<uint16_t> table_bf16(V * H);
  for (int i = 0; i < V * H; ++i) table_bf16[i] = f32_to_bf16(table[i]);
  Tensor tab = be_->upload_weight(DType::kBF16, {V, H}, table_bf16.data());
  std::vector<int32_t> ids = {3, 0, 9, 3};
  auto e = be_->to_host_f32(be_->embedding(tab, be_->from_host(DType::kI32, {4}, ids.data())));
  for (int t = 0; t < 4; ++t)
    for (int i = 0; i < H; ++i) EXPECT_EQ(e[t * H + i], bf16_to_f32(table_bf16[ids[t] * H + i]));
  auto g = be_->to_host_f32(be_->gather_rows(f32({V, H}, table), {7, 2}));
  for (int i = 0; i < H; ++i) {
    EXPECT_EQ(g[i], table[7 * H + i]);
    EXPECT_EQ(g[H + i], table[2 * H + i]);
  }
  // [2, 12] viewed as 2 groups of 6 per row: take columns 2..5 of each group.
  auto cs = be_->to_host_f32(be_->column_slice(f32({2, 12}, std::vector<float>(table.begin(), table.begin() + 24)),
                                               6, 2, 3));
  ASSERT_EQ(cs.size(), 12u);
  for (int t = 0; t < 2; ++t)
    for (int gi = 0; gi < 2; ++gi)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(cs[(t * 2 + gi) * 3 + c], table[t * 12 + gi * 6 + 2 + c]);
}

TEST_P(CpuOps, TensorViews) {
  Tensor t = f32({4, 3}, randn(12, 14));
  Tensor r = t.rows(1, 3);
  EXPECT_EQ(r.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(be_->to_host_f32(r)[0], be_->to_host_f32(t)[3]);
  EXPECT_EQ(r.shape_str(), "[2, 3]");
}

INSTANTIATE_TEST_SUITE_P(Threads, CpuOps, ::testing::Values(1, 3));

}  // namespace
}  // namespace zi
