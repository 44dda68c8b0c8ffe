// Per-sequence sampling settings, validated by whoever accepts them from a user (CLI or gRPC).
#pragma once

#include <cstdint>

namespace zi {

struct SamplingParams {
  float temperature = 0.0f;          // 0 = greedy
  uint32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;                // (0, 1]
  float repetition_penalty = 1.0f;   // > 0; 1 = off (HF semantics: logit > 0 ? /p : *p over seen tokens)
  uint64_t seed = 0;                 // each sequence has its own RNG seeded with this: batch-independent
  bool return_logprobs = false;      // log-softmax of the raw logits at the chosen token
};

}  // namespace zi
