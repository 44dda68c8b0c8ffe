// UTF-8 helpers for the tokenizer: validation, code-point iteration, lossy repair with Rust's
// `String::from_utf8_lossy` rules (one U+FFFD per maximal ill-formed subpart, as the Hugging Face
// decoders produce) and the Unicode White_Space property (Rust's `char::is_whitespace`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace zi::tok {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Offset of the first byte that does not start a well-formed UTF-8 sequence, or npos when `s` is valid.
size_t find_invalid_utf8(std::string_view s);
inline bool is_valid_utf8(std::string_view s) { return find_invalid_utf8(s) == std::string_view::npos; }

// `s` with every maximal ill-formed subpart replaced by U+FFFD (Unicode "substitution of maximal subparts").
std::string utf8_lossy(std::string_view s);

// Length in bytes of the UTF-8 sequence starting with lead byte `b` (1 for stray bytes). `s` must be valid
// for the decode functions below.
inline size_t utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b >> 5) == 0x6) return 2;
  if ((b >> 4) == 0xE) return 3;
  if ((b >> 3) == 0x1E) return 4;
  return 1;
}
// Decodes the code point at s[i] (valid UTF-8) and advances i past it.
char32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t cp);

// Unicode White_Space (Rust char::is_whitespace, Oniguruma's \s).
bool is_unicode_whitespace(char32_t cp);

// True when the text ends with U+FFFD (an incomplete character in streaming decode).
inline bool ends_with_replacement(std::string_view s) {
  return s.size() >= 3 && s.substr(s.size() - 3) == kReplacementChar;
}

}  // namespace zi::tok
