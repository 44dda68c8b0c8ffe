// OpenAI request bodies (POST /v1/completions, /v1/chat/completions) read into zeroinfer's own GenerateRequests,
// which then go through the same validation as gRPC's (server/grpc/validate.h).
//
// Fields honoured: model, prompt (a string, a list of strings — each its own choice —, token ids, or a list of
// token-id lists) or messages, max_tokens (chat also max_completion_tokens), temperature, top_p, seed, stop (a
// string or a list), stream, stream_options.include_usage, logprobs (completions: 0 or 1, the chosen token's
// log-probability; chat: true/false), and the extensions top_k, repetition_penalty and ignore_eos (as vLLM).
// Fields zeroinfer cannot honour are accepted only at their default or no-op values (n: 1, presence_penalty: 0,
// logit_bias: {}, tools: [], response_format: {"type": "text"}, ...); another value, or a field OpenAI does not
// define, is INVALID_ARGUMENT "field: why". null is the same as absent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "zeroinfer/v1/generate.pb.h"

namespace zi::server::http {

struct OpenAiRequest {
  bool chat = false;
  std::string model;                                       // "" when absent
  std::vector<::zeroinfer::v1::GenerateRequest> prompts;   // one per choice
  bool stream = false;
  bool include_usage = false;                              // stream_options.include_usage
  bool logprobs = false;
};

// `max_prompts`: the most prompts one completion request may carry (server.max_batch_size).
StatusOr<OpenAiRequest> parse_completion_request(std::string_view body, uint32_t max_prompts);
StatusOr<OpenAiRequest> parse_chat_request(std::string_view body);

// validate_request names zeroinfer's fields (stopping.max_new_tokens, prompt_token_ids[3], chat.messages); the
// same error with OpenAI's names (max_tokens, prompt[3], messages).
Status with_openai_fields(const Status& status);

}  // namespace zi::server::http
