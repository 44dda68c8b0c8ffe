#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/tokenizer/regex.h"

#include "engine/tokenizer/utf8.h"

#include <pcre2.h>

namespace zi::tok {
namespace {

// Oniguruma's Unicode classes spelled for PCRE2 (contents only, to be placed inside [...] or [^...]).
constexpr std::string_view kSpaceSet =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
    "\\x{3000}";
constexpr std::string_view kWordSet = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
constexpr std::string_view kHexSet = "0-9a-fA-F";

// Per thread: a JIT stack grown on demand up to 64 MiB (long runs of one class can need a deep stack)
// and match data with a one-pair ovector (only whole matches are read, so it serves every pattern).
struct ThreadMatch {
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  pcre2_match_data* md = nullptr;
  ThreadMatch() {
    stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    if (stack && ctx) pcre2_jit_stack_assign(ctx, nullptr, stack);
    md = pcre2_match_data_create(1, nullptr);
  }
  ~ThreadMatch() {
    if (md) pcre2_match_data_free(md);
    if (ctx) pcre2_match_context_free(ctx);
    if (stack) pcre2_jit_stack_free(stack);
  }
};

ThreadMatch& thread_match() {
  thread_local ThreadMatch tm;
  return tm;
}

std::string pcre2_error(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return std::string(reinterpret_cast<const char*>(buf));
}

}  // namespace

std::string onig_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t class_start = 0;  // index in `p` just after '[' or '[^'
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      std::string_view set;
      bool neg = false;
      switch (e) {
        case 's': set = kSpaceSet; break;
        case 'S': set = kSpaceSet; neg = true; break;
        case 'w': set = kWordSet; break;
        case 'W': set = kWordSet; neg = true; break;
        case 'h': set = kHexSet; break;
        case 'H': set = kHexSet; neg = true; break;
        default: break;
      }
      if (!set.empty() && !(in_class && neg)) {
        if (in_class) {
          out.append(set);
        } else {
          out.append(neg ? "[^" : "[").append(set).append("]");
        }
      } else {
        out.push_back(c);
        out.push_back(e);
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      if (i + 1 < p.size() && p[i + 1] == '^') {
        out.push_back('^');
        ++i;
      }
      class_start = i + 1;
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:alpha:]
      size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']' && i != class_start) in_class = false;
    out.push_back(c);
  }
  return out;
}

StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern, bool literal) {
  std::unique_ptr<Regex> re(new Regex());
  re->pattern_ = std::string(pattern);
  re->literal_ = literal && !pattern.empty();
  std::string src = literal ? std::string(pattern) : onig_to_pcre2(pattern);
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
  if (literal) opts = PCRE2_UTF | PCRE2_LITERAL | PCRE2_NO_UTF_CHECK;
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(src.data()), src.size(), opts, &err,
                                   &err_off, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat("regex \"%s\" does not compile at offset %d: %s",
                                                      std::string(pattern), err_off, pcre2_error(err)));
  }
  re->code_ = code;
  re->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return re;
}

Regex::~Regex() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

Status Regex::find_all(std::string_view s, std::vector<Span>* out) const {
  if (literal_) {  // leftmost non-overlapping occurrences, as the escaped pattern would match
    for (size_t pos = s.find(pattern_); pos != std::string_view::npos; pos = s.find(pattern_, pos + pattern_.size())) {
      out->emplace_back(pos, pos + pattern_.size());
    }
    return absl::OkStatus();
  }
  auto* code = static_cast<pcre2_code*>(code_);
  ThreadMatch& tm = thread_match();
  pcre2_match_data* md = tm.md;
  pcre2_match_context* ctx = tm.ctx;
  if (md == nullptr || ctx == nullptr) return absl::ResourceExhaustedError("regex: out of memory for match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  bool has_last = false;
  size_t last_end = 0;
  Status st;
  while (pos <= s.size()) {
    int rc = jit_ ? pcre2_jit_match(code, subject, s.size(), pos, 0, md, ctx)
                  : pcre2_match(code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md, ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {  // rc == 0 only says the ovector holds fewer groups than the pattern has: fine
      st = absl::ResourceExhaustedError(
          absl::StrFormat("regex \"%s\": matching failed: %s", pattern_, pcre2_error(rc)));
      break;
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t b = ov[0], e = ov[1];
    if (b == e && has_last && last_end == e) {
      // An empty match right after the previous match: step one character and search again.
      if (pos >= s.size()) break;
      pos += utf8_len(static_cast<unsigned char>(s[pos]));
      continue;
    }
    out->emplace_back(b, e);
    has_last = true;
    last_end = e;
    if (e == b) {
      // Empty match: the next search starts at the same place but may not match empty there again.
      pos = e;
      if (pos >= s.size()) break;
    } else {
      pos = e;
    }
  }
  return st;
}

Status Regex::find_matches(std::string_view s, std::vector<std::pair<Span, bool>>* out) const {
  if (s.empty()) {
    out->push_back({{0, 0}, false});
    return absl::OkStatus();
  }
  std::vector<Span> m;
  ZI_RETURN_IF_ERROR(find_all(s, &m));
  size_t prev = 0;
  for (const Span& sp : m) {
    if (prev != sp.first) out->push_back({{prev, sp.first}, false});
    out->push_back({sp, true});
    prev = sp.second;
  }
  if (prev != s.size()) out->push_back({{prev, s.size()}, false});
  return absl::OkStatus();
}

}  // namespace zi::tok
