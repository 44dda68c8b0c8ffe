// Sampling: greedy, seeded reproducibility, temperature, top-k / top-p truncation (only allowed tokens are ever
// drawn, and with the right frequencies), repetition penalty (HF semantics), logprob = log-softmax of raw logits.
#include "engine/runtime/sampler.h"

#include <cmath>
#include <map>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace zi {
namespace {

std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::map<int32_t, int> histogram(const std::vector<float>& logits, const SamplingParams& p, int n, uint64_t seed,
                                 std::vector<int32_t> history = {}) {
  SequenceRng rng(seed);
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) ++h[sample_token(logits, p, history, rng).token];
  return h;
}

TEST(Sampler, GreedyPicksFirstArgmaxAndUsesNoRandomness) {
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f};
  SamplingParams p;  // temperature 0
  SequenceRng a(1), b(2);
  EXPECT_EQ(sample_token(l, p, {}, a).token, 1);
  EXPECT_EQ(sample_token(l, p, {}, b).token, 1);
  // Greedy does not consume the RNG: the next draw equals a fresh generator's first.
  SequenceRng fresh(1);
  EXPECT_EQ(a.uniform(), fresh.uniform());
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[i] = std::sin(i * 0.7f) * 2;
  SamplingParams p;
  p.temperature = 1.0f;
  auto run = [&](uint64_t seed) {
    SequenceRng rng(seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 40; ++i) out.push_back(sample_token(l, p, {}, rng).token);
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, FrequenciesFollowSoftmaxOfLogitsOverTemperature) {
  const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
  SamplingParams p;
  p.temperature = 1.0f;
  const int n = 20000;
  auto h = histogram(logits_of(probs), p, n, 7);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(h[i] / double(n), probs[i], 0.015) << i;
  // Temperature 0.5 squares the odds: p_i ∝ probs_i².
  p.temperature = 0.5f;
  h = histogram(logits_of(probs), p, n, 8);
  double z = 0;
  for (double q : probs) z += q * q;
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(h[i] / double(n), probs[i] * probs[i] / z, 0.015) << i;
}

TEST(Sampler, TopKKeepsOnlyTheKLargest) {
  const std::vector<double> probs = {0.05, 0.3, 0.1, 0.25, 0.2, 0.1};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;
  auto h = histogram(logits_of(probs), p, 20000, 9);
  EXPECT_EQ(h.size(), 3u);
  for (auto [tok, count] : h) EXPECT_THAT(tok, ::testing::AnyOf(1, 3, 4));
  // Renormalised over the kept three: 0.3 / 0.75 = 0.4.
  EXPECT_NEAR(h[1] / 20000.0, 0.4, 0.015);
  p.top_k = 1;
  h = histogram(logits_of(probs), p, 100, 10);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, 1);
  p.top_k = 100;  // more than the vocabulary: no truncation
  h = histogram(logits_of(probs), p, 20000, 11);
  EXPECT_EQ(h.size(), 6u);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  const std::vector<double> probs = {0.05, 0.4, 0.1, 0.3, 0.15};
  SamplingParams p;
  p.temperature = 1.0f;
  // 0.4 + 0.3 = 0.7 < 0.75 → the third (0.15) is needed; 0.1 and 0.05 are cut.
  p.top_p = 0.75f;
  auto h = histogram(logits_of(probs), p, 20000, 12);
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.count(0) + h.count(2), 0u);
  EXPECT_NEAR(h[1] / 20000.0, 0.4 / 0.85, 0.015);
  // Once the kept mass reaches p no more tokens are added: 0.4 + 0.3 = 0.7 ≥ 0.69.
  p.top_p = 0.69f;
  h = histogram(logits_of(probs), p, 5000, 13);
  EXPECT_EQ(h.size(), 2u);
  // Tiny p keeps the most probable token only.
  p.top_p = 0.01f;
  h = histogram(logits_of(probs), p, 200, 14);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, 1);
}

TEST(Sampler, TopKThenTopP) {
  const std::vector<double> probs = {0.35, 0.3, 0.2, 0.15};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;      // {0.35, 0.3, 0.2} → renormalised {0.41, 0.35, 0.24}
  p.top_p = 0.7f;   // 0.41 + 0.35 ≥ 0.7 → two tokens
  auto h = histogram(logits_of(probs), p, 5000, 15);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeOnce) {
  // Token 0 leads with a positive logit; once seen (twice), penalty 2 halves it below token 1.
  std::vector<float> l = {3.0f, 2.0f, -1.0f, -0.5f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  SequenceRng rng(0);
  EXPECT_EQ(sample_token(l, p, {}, rng).token, 0);
  EXPECT_EQ(sample_token(l, p, std::vector<int32_t>{0, 0}, rng).token, 1);  // 3/2 = 1.5 < 2
  // Negative logits are multiplied: -0.5 seen → -1.0; with 0 and 1 also seen: 1.5, 1.0, -1, -1 → 0 still.
  std::vector<float> neg = {-0.6f, -0.5f};
  EXPECT_EQ(sample_token(neg, p, std::vector<int32_t>{1}, rng).token, 0);  // -0.5 × 2 = -1 < -0.6
  // Penalty < 1 encourages repetition.
  p.repetition_penalty = 0.5f;
  EXPECT_EQ(sample_token(l, p, std::vector<int32_t>{1}, rng).token, 1);  // 2 / 0.5 = 4 > 3
}

TEST(Sampler, LogprobIsLogSoftmaxOfRawLogits) {
  std::vector<float> l = {1.0f, 2.0f, 3.0f};
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  SamplingParams p;
  SequenceRng rng(0);
  auto t = sample_token(l, p, {}, rng);
  EXPECT_EQ(t.token, 2);
  EXPECT_NEAR(t.logprob, 3.0 - std::log(z), 1e-6);
  // Processors (penalty, temperature) do not change the reported logprob.
  p.repetition_penalty = 10.0f;
  p.temperature = 0.1f;
  auto u = sample_token(l, p, std::vector<int32_t>{2}, rng);
  EXPECT_NEAR(u.logprob, l[u.token] - std::log(z), 1e-6);
  EXPECT_NEAR(log_softmax_at(l, 0), 1.0 - std::log(z), 1e-6);
}

TEST(Sampler, ValidationNamesFieldAndLimit) {
  SamplingParams p;
  EXPECT_TRUE(validate_sampling_params(p).ok());
  p.temperature = -1;
  EXPECT_THAT(std::string(validate_sampling_params(p).message()), ::testing::HasSubstr("temperature"));
  p.temperature = NAN;
  EXPECT_FALSE(validate_sampling_params(p).ok());
  p = {};
  p.top_p = 0;
  EXPECT_THAT(std::string(validate_sampling_params(p).message()), ::testing::HasSubstr("top_p must be in (0, 1]"));
  p.top_p = 1.5f;
  EXPECT_FALSE(validate_sampling_params(p).ok());
  p = {};
  p.repetition_penalty = 0;
  EXPECT_THAT(std::string(validate_sampling_params(p).message()), ::testing::HasSubstr("repetition_penalty"));
}

}  // namespace
}  // namespace zi
