// When a sequence stops: max new tokens, EOS (unless ignored), stop strings. Shared by `generate` and the
// coordinator: token-level checks are a function, stop strings a small per-sequence class fed with text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zi {

enum class FinishReason : uint8_t { kNone, kLength, kEos, kStop };

// "length" | "eos" | "stop" ("" for kNone), as `generate --json` prints it.
std::string_view finish_reason_name(FinishReason r);

struct TokenStopCriteria {
  uint32_t max_new_tokens = 0;        // > 0
  std::vector<int32_t> eos_token_ids;
  bool ignore_eos = false;
};

// Called with each new token and the number of tokens generated including it. kEos: the token ends generation and
// is not part of the output; kLength: the token is the last one of the output; kNone: go on.
FinishReason check_token(const TokenStopCriteria& criteria, int32_t token, uint32_t generated);

// Finds stop strings in a sequence's streamed text. Feed it the text that became final after each token; it returns
// what may be shown now, holding back a tail that could still turn into a stop string. Once a stop string appears,
// `stopped` is set and `emit` ends right before it (the stop string is never returned); later pushes return nothing.
// Not thread-safe; one per sequence.
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  struct Result {
    std::string emit;
    bool stopped = false;
  };
  Result push(std::string_view text);
  // At the end of generation (not stopped): the held-back tail.
  std::string flush();
  bool stopped() const { return stopped_; }
  bool empty() const { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;  // non-empty strings only
  std::string pending_;             // held back: a suffix that is a prefix of some stop string
  bool stopped_ = false;
};

}  // namespace zi
