// PCRE2 wrapper with the matching semantics `tokenizers` gets from Oniguruma: UTF-8 subjects, Unicode
// classes (PCRE2_UTF | PCRE2_UCP), JIT when available, and leftmost non-overlapping matches where an
// empty match right after the previous match is skipped (Rust `find_iter`).
// Thread-safety: a compiled Regex is immutable and may be used from several threads at once; match
// data is per call.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/status.h"

namespace zi::tok {

using Span = std::pair<size_t, size_t>;  // [begin, end) byte offsets

class Regex {
 public:
  // `pattern` in Oniguruma/Ruby syntax as found in tokenizer.json. `literal` compiles it as a plain string.
  static StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends every match of the regex in `s` (valid UTF-8). Errors: PCRE2 resource limits.
  Status find_all(std::string_view s, std::vector<Span>* out) const;
  // Convenience for the splitting helpers: pieces of `s` labelled matched / not matched, covering `s`.
  // Returns {{0,0},false} for an empty `s`, as `tokenizers`' Pattern::find_matches does.
  Status find_matches(std::string_view s, std::vector<std::pair<Span, bool>>* out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;
  bool literal_ = false;  // plain string search (no PCRE2 call) for a non-empty literal
  void* code_ = nullptr;  // pcre2_code*
  bool jit_ = false;
};

// Rewrites Oniguruma's \s / \S (Unicode White_Space) into classes PCRE2 reads the same way: PCRE2's own
// \s also matches U+180E, which Oniguruma (and so tokenizers) does not.
std::string onig_to_pcre2(std::string_view pattern);

}  // namespace zi::tok
