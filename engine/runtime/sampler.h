// Token sampling from one row of logits, in transformers' order: repetition penalty → temperature → top-k → top-p
// → draw. Temperature 0 is greedy (argmax of the penalised logits, first index on ties). Each sequence has its own
// RNG seeded with SamplingParams.seed, so its tokens do not depend on what else is batched with it.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "engine/core/status.h"
#include "engine/runtime/sampling_params.h"

namespace zi {

// The per-sequence random source (std::mt19937_64: its output sequence is fixed by the C++ standard).
class SequenceRng {
 public:
  explicit SequenceRng(uint64_t seed) : gen_(seed) {}
  // Uniform in [0, 1) with 53 random bits (implementation-independent, unlike std::uniform_real_distribution).
  double uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 gen_;
};

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;  // log-softmax of the raw logits at `token`
};

// Checks the fields a user sets: temperature ≥ 0 and finite, top_p in (0, 1], repetition_penalty > 0 and finite.
// Errors name the field and the limit.
Status validate_sampling_params(const SamplingParams& p);

// Samples one token from raw `logits` [V]. `history` = the sequence's tokens so far (prompt and generated), for the
// repetition penalty (HF: over the distinct tokens seen, logit > 0 ? logit / p : logit × p).
SampledToken sample_token(std::span<const float> logits, const SamplingParams& params,
                          std::span<const int32_t> history, SequenceRng& rng);

// log-softmax of `logits` at `token`, computed in double.
float log_softmax_at(std::span<const float> logits, int32_t token);

}  // namespace zi
