// Stop strings over streamed text: text is released only once no stop string can still begin inside it, and
// generation ends *before* the first stop string (which is not returned).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace zi::server {

class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  struct Result {
    std::string text;      // final text to emit now
    bool stopped = false;  // a stop string was completed; `text` ends right before it
  };
  // Appends newly decoded text. Once stopped, further pushes return nothing.
  Result push(std::string_view piece);
  // The text held back because it could have begun a stop string (at the end of generation).
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;       // unreleased tail: the longest suffix that is a proper prefix of a stop string
  bool stopped_ = false;
};

}  // namespace zi::server
