#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace zi {

Status validate_sampling_params(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    return absl::InvalidArgumentError(absl::StrCat("temperature must be a finite number >= 0, got ", p.temperature));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty))
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty must be a finite number > 0, got ", p.repetition_penalty));
  return absl::OkStatus();
}

float log_softmax_at(std::span<const float> logits, int32_t token) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  return static_cast<float>(static_cast<double>(logits[token]) - mx - std::log(sum));
}

SampledToken sample_token(std::span<const float> logits, const SamplingParams& params,
                          std::span<const int32_t> history, SequenceRng& rng) {
  const int64_t V = static_cast<int64_t>(logits.size());
  ZI_CHECK(V > 0);
  std::vector<float> scores(logits.begin(), logits.end());

  // 1. Repetition penalty over the distinct tokens seen (applying it twice to a token would be wrong).
  if (params.repetition_penalty != 1.0f) {
    std::vector<bool> seen(V, false);
    for (int32_t t : history) {
      if (t < 0 || t >= V || seen[t]) continue;
      seen[t] = true;
      float& s = scores[t];
      s = s > 0 ? s / params.repetition_penalty : s * params.repetition_penalty;
    }
  }

  SampledToken out;
  if (params.temperature == 0.0f) {
    out.token = static_cast<int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
  } else {
    // 2. Temperature.
    for (float& s : scores) s /= params.temperature;
    const float kRemoved = -std::numeric_limits<float>::infinity();
    // 3. Top-k: keep scores ≥ the k-th largest (ties with it are kept, as transformers does).
    if (params.top_k > 0 && params.top_k < static_cast<uint64_t>(V)) {
      std::vector<float> sorted = scores;
      std::nth_element(sorted.begin(), sorted.begin() + (params.top_k - 1), sorted.end(), std::greater<float>());
      const float kth = sorted[params.top_k - 1];
      for (float& s : scores)
        if (s < kth) s = kRemoved;
    }
    // Probabilities of what is left (max-subtracted softmax, in double).
    const float mx = *std::max_element(scores.begin(), scores.end());
    std::vector<double> prob(V);
    double total = 0.0;
    for (int64_t i = 0; i < V; ++i) {
      prob[i] = scores[i] == kRemoved ? 0.0 : std::exp(static_cast<double>(scores[i]) - mx);
      total += prob[i];
    }
    // 4. Top-p: keep the most probable tokens while the mass before each is < top_p (the first is always kept).
    if (params.top_p < 1.0f) {
      std::vector<int32_t> order;
      for (int64_t i = 0; i < V; ++i)
        if (prob[i] > 0.0) order.push_back(static_cast<int32_t>(i));
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return prob[a] > prob[b]; });
      double before = 0.0;
      size_t keep = 0;
      for (; keep < order.size(); ++keep) {
        if (keep > 0 && before >= params.top_p * total) break;
        before += prob[order[keep]];
      }
      for (size_t i = keep; i < order.size(); ++i) {
        total -= prob[order[i]];
        prob[order[i]] = 0.0;
      }
    }
    // 5. Draw by inverse CDF in token-id order.
    const double u = rng.uniform() * total;
    double acc = 0.0;
    out.token = -1;
    for (int64_t i = 0; i < V; ++i) {
      if (prob[i] == 0.0) continue;
      acc += prob[i];
      out.token = static_cast<int32_t>(i);
      if (u < acc) break;
    }
    ZI_CHECK(out.token >= 0);
  }
  out.logprob = log_softmax_at(logits, out.token);
  return out;
}

}  // namespace zi
