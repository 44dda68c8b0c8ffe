// Pre-tokenizers: ByteLevel, Split, Metaspace, Digits, Sequence — with `tokenizers`' split behaviours.
#include "engine/tokenizer/components.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok {
namespace {

// GPT-2's pattern, which ByteLevel(use_regex=true) applies.
constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// `tokenizers`' NormalizedString::split: labelled pieces → the spans to keep.
std::vector<Span> apply_behavior(const std::vector<std::pair<Span, bool>>& m, Behavior b) {
  std::vector<Span> out;
  switch (b) {
    case Behavior::kRemoved:
      for (const auto& [sp, is_match] : m)
        if (!is_match) out.push_back(sp);
      break;
    case Behavior::kIsolated:
      for (const auto& [sp, is_match] : m) out.push_back(sp);
      break;
    case Behavior::kContiguous: {
      int prev = -1;  // -1 none, else the previous piece's is_match
      for (const auto& [sp, is_match] : m) {
        if (prev == static_cast<int>(is_match) && !out.empty()) {
          out.back().second = sp.second;
        } else {
          out.push_back(sp);
        }
        prev = is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const auto& [sp, is_match] : m) {
        if (is_match && !prev_match && !out.empty()) {
          out.back().second = sp.second;
        } else {
          out.push_back(sp);
        }
        prev_match = is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev_match = false;
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        const auto& [sp, is_match] = *it;
        if (is_match && !prev_match && !out.empty()) {
          out.back().first = sp.first;
        } else {
          out.push_back(sp);
        }
        prev_match = is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  return out;
}

// Replaces every piece with id < 0 by the pieces `fn` makes of it (spans of its text); keeps the rest.
template <typename Fn>
Status split_pieces(std::vector<Piece>& pieces, Fn&& fn) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  std::vector<Span> spans;
  for (Piece& p : pieces) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    spans.clear();
    ZI_RETURN_IF_ERROR(fn(p, &spans));
    for (const Span& sp : spans) {
      if (sp.second <= sp.first) continue;
      Piece q;
      q.text = p.text.substr(sp.first, sp.second - sp.first);
      q.at_origin = p.at_origin && sp.first == 0;
      out.push_back(std::move(q));
    }
  }
  pieces = std::move(out);
  return absl::OkStatus();
}

Status regex_split(std::vector<Piece>& pieces, const Regex& re, Behavior b, bool invert) {
  std::vector<std::pair<Span, bool>> m;
  return split_pieces(pieces, [&](const Piece& p, std::vector<Span>* spans) -> Status {
    m.clear();
    ZI_RETURN_IF_ERROR(re.find_matches(p.text, &m));
    if (invert)
      for (auto& e : m) e.second = !e.second;
    *spans = apply_behavior(m, b);
    return absl::OkStatus();
  });
}

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex, std::unique_ptr<Regex> re)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex), re_(std::move(re)) {}
  Status pre_tokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      for (Piece& p : pieces)
        if (p.id < 0 && !p.text.empty() && p.text[0] != ' ') p.text = " " + p.text;
    }
    if (use_regex_) ZI_RETURN_IF_ERROR(regex_split(pieces, *re_, Behavior::kIsolated, false));
    for (Piece& p : pieces) {
      if (p.id >= 0) continue;
      std::string out;
      out.reserve(p.text.size() * 2);
      for (unsigned char b : p.text) append_utf8(out, byte_to_char(b));
      p.text = std::move(out);
    }
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_, use_regex_;
  std::unique_ptr<Regex> re_;
};

class SplitPre : public PreTokenizer {
 public:
  SplitPre(std::unique_ptr<Regex> re, Behavior b, bool invert) : re_(std::move(re)), b_(b), invert_(invert) {}
  Status pre_tokenize(std::vector<Piece>& pieces) const override {
    return regex_split(pieces, *re_, b_, invert_);
  }

 private:
  std::unique_ptr<Regex> re_;
  Behavior b_;
  bool invert_;
};

class MetaspacePre : public PreTokenizer {
 public:
  enum class Scheme { kFirst, kNever, kAlways };
  MetaspacePre(std::string rep, Scheme scheme, bool split) : rep_(std::move(rep)), scheme_(scheme), split_(split) {}
  Status pre_tokenize(std::vector<Piece>& pieces) const override {
    for (Piece& p : pieces) {
      if (p.id >= 0) continue;
      std::string out;
      out.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ') {
          out.append(rep_);
        } else {
          out.push_back(c);
        }
      }
      bool starts = out.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == Scheme::kAlways || (scheme_ == Scheme::kFirst && p.at_origin))) {
        out = rep_ + out;
      }
      p.text = std::move(out);
    }
    if (!split_) return absl::OkStatus();
    // Split on the replacement character, each piece keeping the replacement that starts it.
    return split_pieces(pieces, [&](const Piece& p, std::vector<Span>* spans) -> Status {
      std::vector<std::pair<Span, bool>> m;
      size_t prev = 0, pos = 0;
      while ((pos = p.text.find(rep_, pos)) != std::string::npos) {
        if (pos != prev) m.push_back({{prev, pos}, false});
        m.push_back({{pos, pos + rep_.size()}, true});
        pos += rep_.size();
        prev = pos;
      }
      if (prev != p.text.size() || m.empty()) m.push_back({{prev, p.text.size()}, false});
      *spans = apply_behavior(m, Behavior::kMergedWithNext);
      return absl::OkStatus();
    });
  }

 private:
  std::string rep_;
  Scheme scheme_;
  bool split_;
};

class SequencePre : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  Status pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) ZI_RETURN_IF_ERROR(p->pre_tokenize(pieces));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

StatusOr<std::unique_ptr<Regex>> compile_or_error(std::string_view pattern, const std::string& where,
                                                 const std::string& ctx) {
  auto re = Regex::Compile(pattern, false);
  if (!re.ok()) return field_error(where, ctx + ": " + std::string(re.status().message()));
  return re;
}

}  // namespace

StatusOr<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const Json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return field_error(where, "pre_tokenizer must be an object with a \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  const std::string ctx = "pre_tokenizer " + type;
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      return field_error(where, ctx + ": field \"pretokenizers\" must be a list");
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const Json& sub : j["pretokenizers"]) {
      ZI_ASSIGN_OR_RETURN(auto p, parse_pre_tokenizer(sub, where));
      if (p) parts.push_back(std::move(p));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePre(std::move(parts)));
  }
  if (type == "ByteLevel") {
    bool use_regex = get_bool_or(j, "use_regex", true);
    std::unique_ptr<Regex> re;
    if (use_regex) {
      ZI_ASSIGN_OR_RETURN(re, compile_or_error(kGpt2Pattern, where, ctx));
    }
    return std::unique_ptr<PreTokenizer>(
        new ByteLevelPre(get_bool_or(j, "add_prefix_space", true), use_regex, std::move(re)));
  }
  if (type == "Split") {
    ZI_ASSIGN_OR_RETURN(auto re, parse_pattern(j.value("pattern", Json()), where, ctx));
    ZI_ASSIGN_OR_RETURN(std::string bname, get_string(j, "behavior", where, ctx));
    Behavior b;
    if (bname == "Removed") b = Behavior::kRemoved;
    else if (bname == "Isolated") b = Behavior::kIsolated;
    else if (bname == "MergedWithPrevious") b = Behavior::kMergedWithPrevious;
    else if (bname == "MergedWithNext") b = Behavior::kMergedWithNext;
    else if (bname == "Contiguous") b = Behavior::kContiguous;
    else return field_error(where, ctx + ": behavior \"" + bname + "\" is not supported");
    return std::unique_ptr<PreTokenizer>(new SplitPre(std::move(re), b, get_bool_or(j, "invert", false)));
  }
  if (type == "Metaspace") {
    ZI_ASSIGN_OR_RETURN(std::string rep, get_string(j, "replacement", where, ctx));
    size_t k = 0;
    if (rep.empty() || !is_valid_utf8(rep) || (next_code_point(rep, k), k != rep.size())) {
      return field_error(where, ctx + ": \"replacement\" must be one character");
    }
    MetaspacePre::Scheme scheme = MetaspacePre::Scheme::kAlways;
    std::string s = j.value("prepend_scheme", std::string("always"));
    if (s == "first") scheme = MetaspacePre::Scheme::kFirst;
    else if (s == "never") scheme = MetaspacePre::Scheme::kNever;
    else if (s != "always") return field_error(where, ctx + ": prepend_scheme \"" + s + "\" is not supported");
    if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() && !j["add_prefix_space"].get<bool>()) {
      scheme = MetaspacePre::Scheme::kNever;
    }
    return std::unique_ptr<PreTokenizer>(new MetaspacePre(rep, scheme, get_bool_or(j, "split", true)));
  }
  if (type == "Digits") {
    bool individual = get_bool_or(j, "individual_digits", false);
    ZI_ASSIGN_OR_RETURN(auto re, compile_or_error(individual ? "\\p{N}" : "\\p{N}+", where, ctx));
    return std::unique_ptr<PreTokenizer>(new SplitPre(std::move(re), Behavior::kIsolated, false));
  }
  return field_error(where, "pre_tokenizer type \"" + type + "\" is not supported");
}

}  // namespace zi::tok
