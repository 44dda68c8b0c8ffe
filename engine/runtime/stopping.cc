#include "engine/runtime/stopping.h"

#include <algorithm>

namespace zi {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kNone:
      break;
  }
  return "";
}

FinishReason check_token(const TokenStopCriteria& c, int32_t token, uint32_t generated) {
  if (!c.ignore_eos && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), token) != c.eos_token_ids.end())
    return FinishReason::kEos;
  if (generated >= c.max_new_tokens) return FinishReason::kLength;
  return FinishReason::kNone;
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings) {
  for (auto& s : stop_strings)
    if (!s.empty()) stops_.push_back(std::move(s));
}

StopStringMatcher::Result StopStringMatcher::push(std::string_view text) {
  Result r;
  if (stopped_) {
    r.stopped = true;
    return r;
  }
  pending_.append(text);
  if (stops_.empty()) {
    r.emit.swap(pending_);
    return r;
  }
  // The earliest occurrence of any stop string ends the output right before it.
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    r.emit = pending_.substr(0, first);
    r.stopped = stopped_ = true;
    pending_.clear();
    return r;
  }
  // Hold back the longest tail that is a proper prefix of a stop string. A stop string starts on a character
  // boundary, so the emitted part never ends inside a UTF-8 character the input completed.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t len = std::min(pending_.size(), s.size() - 1); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  r.emit = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return r;
}

std::string StopStringMatcher::flush() {
  std::string out;
  if (!stopped_) out.swap(pending_);
  pending_.clear();
  return out;
}

}  // namespace zi
