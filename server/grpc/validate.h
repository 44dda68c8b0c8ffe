// Checks a public GenerateRequest against the model and the server's limits and turns it into the scheduler's
// GenerationRequest (prompt tokenized, defaults resolved, seed chosen). Every refusal is INVALID_ARGUMENT naming
// the field and the limit. Runs on the intake pool (tokenization can be slow), never on a reactor thread.
#pragma once

#include <cstdint>
#include <functional>

#include "engine/tokenizer/model_chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/scheduler/request.h"
#include "zeroinfer/v1/generate.pb.h"

namespace zi::server {

struct RequestLimits {
  uint32_t vocab_size = 0;              // ids must be < this
  uint32_t max_context = 0;             // prompt + generated tokens per sequence
  uint32_t max_prompt_tokens = 0;       // server.max_prompt_tokens resolved (0 in YAML = max_context)
  uint32_t max_new_tokens_default = 256;
};

inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

inline constexpr int kMaxChatMessages = 4096;

// `random_seed` supplies a seed when the request has none. `tokenizer` may be null only for token-id prompts.
// `chat_template` (null: the model has none) renders a `chat` input; without one, chat is INVALID_ARGUMENT.
StatusOr<GenerationRequest> validate_request(const ::zeroinfer::v1::GenerateRequest& request,
                                             const Tokenizer* tokenizer, const RequestLimits& limits,
                                             const std::function<uint64_t()>& random_seed,
                                             const tok::ModelChatTemplate* chat_template = nullptr);

}  // namespace zi::server
