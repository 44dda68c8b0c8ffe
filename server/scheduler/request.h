// What the front end hands the scheduler (a validated request) and how results flow back (a ResponseSink).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/runtime/sampling_params.h"
#include "engine/runtime/stopping.h"

namespace zi::server {

using Clock = std::chrono::steady_clock;

// A request after validation: every limit checked, defaults resolved, the prompt tokenized.
struct GenerationRequest {
  std::string request_id;
  std::vector<int32_t> prompt;            // token ids, non-empty, each < vocab
  SamplingParams sampling;                // seed always set (random when the client gave none)
  uint32_t max_new_tokens = 1;            // resolved: ≥ 1, prompt + max_new_tokens ≤ context
  std::vector<std::string> stop;          // stop strings (non-empty, ≤ 16, each ≤ 256 bytes)
  bool ignore_eos = false;
  // Stream the logits of every position (GenerationChunk::logits): `generate --logits-out`. Costly: vocab × 4 bytes
  // per position, so the scheduler sends a long prompt's rows over several steps.
  bool want_logits = false;
  Clock::time_point arrival = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();  // the RPC's deadline; max = none
};

// One streamed message: the tokens generated since the previous one and the text that became final.
struct GenerationChunk {
  std::vector<uint32_t> token_ids;
  std::string text;                       // valid UTF-8
  std::vector<float> logprobs;            // one per token id when the request asked for them
  // want_logits: float32 rows [n × vocab_size], row-major, of every position appended to the sequence since the
  // previous chunk, in order (the prompt's positions arrive with the first token's chunk, rows of prefill chunks
  // that sampled nothing included). Over a request: prompt_tokens rows, then one per generated token the engine
  // appended (every generated token but the last; an EOS that ends generation was sampled from the last row).
  std::vector<float> logits;
  FinishReason finish = FinishReason::kNone;  // zi::FinishReason (engine/runtime/stopping.h); last chunk only
  uint32_t prompt_tokens = 0;             // usage, on the last chunk
  uint32_t completion_tokens = 0;
};

// Where one request's results go (the gRPC stream, or a test recorder). The scheduler calls send() and fail()
// from its own thread; after a chunk with `finish` set or after fail(), it calls nothing more. cancelled() may
// be polled from any thread.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void send(GenerationChunk chunk) = 0;
  // Ends the request with an error status (CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE, INTERNAL, ...).
  virtual void fail(const Status& status) = 0;
  // True once the client has gone (RPC cancelled); the scheduler stops the sequence at the next step boundary.
  virtual bool cancelled() const = 0;
};

}  // namespace zi::server
