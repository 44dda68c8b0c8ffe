// Normalizers (Sequence, Prepend, Replace, Strip, ByteLevel; the Unicode ones are in unicode_normalizers.cc),
// the byte-to-unicode table and parser helpers.
#include <array>

#include "engine/tokenizer/components.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok {
namespace {

struct ByteTables {
  std::array<char32_t, 256> to_char{};
  std::array<int, 0x144> to_byte{};  // the table's code points all lie below U+0144
  ByteTables() {
    to_byte.fill(-1);
    // Printable Latin-1 bytes map to themselves; the other 68 bytes to U+0100.. in byte order (GPT-2).
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      to_byte[to_char[b]] = b;
    }
  }
};

const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> n) : parts_(std::move(n)) {}
  Status normalize(std::string& s) const override {
    for (const auto& n : parts_) ZI_RETURN_IF_ERROR(n->normalize(s));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  Status normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
    return absl::OkStatus();
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  Status normalize(std::string& s) const override {
    std::vector<Span> m;
    ZI_RETURN_IF_ERROR(re_->find_all(s, &m));
    if (m.empty()) return absl::OkStatus();
    std::string out;
    out.reserve(s.size() + m.size() * content_.size());
    size_t prev = 0;
    for (const Span& sp : m) {
      out.append(s, prev, sp.first - prev).append(content_);
      prev = sp.second;
    }
    out.append(s, prev, std::string::npos);
    s = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  Status normalize(std::string& s) const override {
    if (left_) {
      size_t i = 0;
      while (i < s.size()) {
        size_t j = i;
        if (!is_unicode_whitespace(next_code_point(s, j))) break;
        i = j;
      }
      s.erase(0, i);
    }
    if (right_) {
      size_t end = s.size();
      while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        size_t j = start;
        if (!is_unicode_whitespace(next_code_point(s, j))) break;
        end = start;
      }
      s.resize(end);
    }
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  Status normalize(std::string& s) const override {
    std::string out;
    out.reserve(s.size() * 2);
    for (unsigned char b : s) append_utf8(out, byte_to_char(b));
    s = std::move(out);
    return absl::OkStatus();
  }
};

}  // namespace

char32_t byte_to_char(uint8_t b) { return byte_tables().to_char[b]; }
int char_to_byte(char32_t cp) { return cp < 0x144 ? byte_tables().to_byte[cp] : -1; }

Status field_error(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

StatusOr<std::string> get_string(const Json& j, const char* key, const std::string& where,
                                 const std::string& ctx) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return field_error(where, absl::StrCat(ctx, ": field \"", key, "\" must be a string"));
  }
  return it->get<std::string>();
}

bool get_bool_or(const Json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  return (it != j.end() && it->is_boolean()) ? it->get<bool>() : dflt;
}

// {"String": "x"} or {"Regex": "x"} as used by Replace and Split.
StatusOr<std::unique_ptr<Regex>> parse_pattern(const Json& j, const std::string& where, const std::string& ctx) {
  if (!j.is_object()) return field_error(where, ctx + ": \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
  if (j.contains("String") && j["String"].is_string()) {
    auto re = Regex::Compile(j["String"].get<std::string>(), /*literal=*/true);
    if (!re.ok()) return field_error(where, ctx + ": " + std::string(re.status().message()));
    return re;
  }
  if (j.contains("Regex") && j["Regex"].is_string()) {
    auto re = Regex::Compile(j["Regex"].get<std::string>(), /*literal=*/false);
    if (!re.ok()) return field_error(where, ctx + ": " + std::string(re.status().message()));
    return re;
  }
  return field_error(where, ctx + ": \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
}

StatusOr<std::unique_ptr<Normalizer>> parse_normalizer(const Json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return field_error(where, "normalizer must be an object with a \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  const std::string ctx = "normalizer " + type;
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      return field_error(where, ctx + ": field \"normalizers\" must be a list");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const Json& sub : j["normalizers"]) {
      ZI_ASSIGN_OR_RETURN(auto n, parse_normalizer(sub, where));
      if (n) parts.push_back(std::move(n));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  if (type == "Prepend") {
    ZI_ASSIGN_OR_RETURN(std::string p, get_string(j, "prepend", where, ctx));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(std::move(p)));
  }
  if (type == "Replace") {
    ZI_ASSIGN_OR_RETURN(std::string content, get_string(j, "content", where, ctx));
    ZI_ASSIGN_OR_RETURN(auto re, parse_pattern(j.value("pattern", Json()), where, ctx));
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(std::move(re), std::move(content)));
  }
  if (type == "Strip") {
    return std::unique_ptr<Normalizer>(
        new StripNormalizer(get_bool_or(j, "strip_left", true), get_bool_or(j, "strip_right", true)));
  }
  if (type == "ByteLevel") return std::unique_ptr<Normalizer>(new ByteLevelNormalizer());
  ZI_ASSIGN_OR_RETURN(auto unicode, make_unicode_normalizer(type));
  if (unicode) return unicode;
  return field_error(where, "normalizer type \"" + type + "\" is not supported");
}

}  // namespace zi::tok
