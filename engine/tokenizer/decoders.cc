// Decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence) and post-processors
// (TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence), as `tokenizers` runs them.
#include <map>

#include "engine/tokenizer/components.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok {
namespace {

// ---------------------------------------------------------------------------------------------- decoders

class ByteLevelDec : public Decoder {
 public:
  // Each token becomes bytes through the byte table (or its own UTF-8 when one character is not in the
  // table); all bytes together are then read as UTF-8 with U+FFFD for ill-formed parts.
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      size_t start = bytes.size();
      bool ok = true;
      for (size_t i = 0; i < t.size();) {
        int b = char_to_byte(next_code_point(t, i));
        if (b < 0) {
          ok = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (!ok) {
        bytes.resize(start);
        bytes.append(t);
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ReplaceDec : public Decoder {
 public:
  ReplaceDec(std::unique_ptr<Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<Span> m;
    for (std::string& t : tokens) {
      m.clear();
      if (!re_->find_all(t, &m).ok() || m.empty()) continue;  // tokens are short: no resource limits
      std::string out;
      size_t prev = 0;
      for (const Span& sp : m) {
        out.append(t, prev, sp.first - prev).append(content_);
        prev = sp.second;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

// "<0xNN>" → the byte, as Rust's u8::from_str_radix(&token[3..5], 16) reads it (a leading '+' is allowed).
int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (t[3] == '+') return hex(t[4]);
  int hi = hex(t[3]), lo = hex(t[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

class ByteFallbackDec : public Decoder {
 public:
  // A run of byte tokens becomes its UTF-8 text when the whole run is valid, else one U+FFFD per byte.
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      if (is_valid_utf8(run)) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back(kReplacementChar);
      }
      run.clear();
    };
    for (std::string& t : tokens) {
      int b = parse_byte_token(t);
      if (b >= 0) {
        run.push_back(static_cast<char>(b));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
  bool has_byte_fallback() const override { return true; }
};

class FuseDec : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDec : public Decoder {
 public:
  StripDec(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  // Removes up to `start` leading and `stop` trailing `content` characters of every token.
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      std::vector<size_t> offs;  // byte offset of each character, plus the end
      for (size_t i = 0; i < t.size();) {
        offs.push_back(i);
        next_code_point(t, i);
      }
      const size_t n = offs.size();
      offs.push_back(t.size());
      size_t start_cut = 0;
      for (size_t i = 0; i < n && i < start_; ++i) {
        size_t k = offs[i];
        if (next_code_point(t, k) != content_) break;
        start_cut = i + 1;
      }
      size_t stop_cut = n;
      for (size_t i = 0; i < stop_ && i < n; ++i) {
        size_t idx = n - i - 1, k = offs[idx];
        if (next_code_point(t, k) != content_) break;
        stop_cut = idx;
      }
      if (stop_cut < start_cut) stop_cut = start_cut;
      t = t.substr(offs[start_cut], offs[stop_cut] - offs[start_cut]);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class MetaspaceDec : public Decoder {
 public:
  MetaspaceDec(std::string rep, bool prepend) : rep_(std::move(rep)), prepend_(prepend) {}
  // The replacement becomes ' ', except in the first token when a prefix was prepended (then it goes).
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string& t = tokens[i];
      std::string out;
      size_t pos = 0, prev = 0;
      while ((pos = t.find(rep_, pos)) != std::string::npos) {
        out.append(t, prev, pos - prev);
        if (!(i == 0 && prepend_)) out.push_back(' ');
        pos += rep_.size();
        prev = pos;
      }
      out.append(t, prev, std::string::npos);
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string rep_;
  bool prepend_;
};

class SequenceDec : public Decoder {
 public:
  explicit SequenceDec(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& d : parts_) d->decode_chain(tokens);
  }
  bool has_byte_fallback() const override {
    for (const auto& d : parts_)
      if (d->has_byte_fallback()) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// ------------------------------------------------------------------------------------- post-processors

class AffixProcessor : public PostProcessor {
 public:
  AffixProcessor(std::vector<int32_t> prefix, std::vector<int32_t> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }

 private:
  std::vector<int32_t> prefix_, suffix_;
};

class NoopProcessor : public PostProcessor {
 public:
  void process(std::vector<int32_t>&, bool) const override {}
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> p) : parts_(std::move(p)) {}
  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    for (const auto& p : parts_) p->process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

StatusOr<std::unique_ptr<PostProcessor>> parse_template(const Json& j, const std::string& where) {
  const std::string ctx = "post_processor TemplateProcessing";
  std::map<std::string, std::vector<int32_t>> specials;
  if (j.contains("special_tokens") && j["special_tokens"].is_object()) {
    for (const auto& [name, v] : j["special_tokens"].items()) {
      if (!v.is_object() || !v.contains("ids") || !v["ids"].is_array()) {
        return field_error(where, ctx + ": special_tokens[\"" + name + "\"] needs a list \"ids\"");
      }
      std::vector<int32_t> ids;
      for (const Json& id : v["ids"]) {
        if (!id.is_number_integer()) return field_error(where, ctx + ": special_tokens ids must be integers");
        ids.push_back(id.get<int32_t>());
      }
      specials[name] = std::move(ids);
    }
  }
  if (!j.contains("single") || !j["single"].is_array()) {
    return field_error(where, ctx + ": field \"single\" must be a list");
  }
  std::vector<int32_t> prefix, suffix;
  bool seen_a = false;
  for (const Json& piece : j["single"]) {
    if (piece.contains("Sequence")) {
      std::string id = piece["Sequence"].value("id", std::string("A"));
      if (id != "A" || seen_a) return field_error(where, ctx + ": single template must hold sequence A once");
      seen_a = true;
    } else if (piece.contains("SpecialToken")) {
      std::string id = piece["SpecialToken"].value("id", std::string());
      auto it = specials.find(id);
      if (it == specials.end()) {
        return field_error(where, ctx + ": special token \"" + id + "\" is missing from special_tokens");
      }
      auto& dst = seen_a ? suffix : prefix;
      dst.insert(dst.end(), it->second.begin(), it->second.end());
    } else {
      return field_error(where, ctx + ": unknown template piece " + piece.dump());
    }
  }
  if (!seen_a) return field_error(where, ctx + ": single template lacks sequence A");
  return make_affix_processor(std::move(prefix), std::move(suffix));
}

// RobertaProcessing / BertProcessing: {"cls": [token, id], "sep": [token, id]} → cls A sep.
StatusOr<std::unique_ptr<PostProcessor>> parse_cls_sep(const Json& j, const std::string& where,
                                                       const std::string& ctx) {
  auto id_of = [&](const char* key, int32_t* out) -> Status {
    if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 || !j[key][1].is_number_integer()) {
      return field_error(where, ctx + ": field \"" + key + "\" must be [token, id]");
    }
    *out = j[key][1].get<int32_t>();
    return absl::OkStatus();
  };
  int32_t cls = 0, sep = 0;
  ZI_RETURN_IF_ERROR(id_of("cls", &cls));
  ZI_RETURN_IF_ERROR(id_of("sep", &sep));
  return make_affix_processor({cls}, {sep});
}

}  // namespace

std::unique_ptr<PostProcessor> make_affix_processor(std::vector<int32_t> prefix, std::vector<int32_t> suffix) {
  return std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix));
}

StatusOr<std::unique_ptr<Decoder>> parse_decoder(const Json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return field_error(where, "decoder must be an object with a \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  const std::string ctx = "decoder " + type;
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      return field_error(where, ctx + ": field \"decoders\" must be a list");
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const Json& sub : j["decoders"]) {
      ZI_ASSIGN_OR_RETURN(auto d, parse_decoder(sub, where));
      if (d) parts.push_back(std::move(d));
    }
    return std::unique_ptr<Decoder>(new SequenceDec(std::move(parts)));
  }
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDec());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDec());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDec());
  if (type == "Replace") {
    ZI_ASSIGN_OR_RETURN(std::string content, get_string(j, "content", where, ctx));
    ZI_ASSIGN_OR_RETURN(auto re, parse_pattern(j.value("pattern", Json()), where, ctx));
    return std::unique_ptr<Decoder>(new ReplaceDec(std::move(re), std::move(content)));
  }
  if (type == "Strip") {
    ZI_ASSIGN_OR_RETURN(std::string content, get_string(j, "content", where, ctx));
    size_t k = 0;
    if (content.empty() || !is_valid_utf8(content)) return field_error(where, ctx + ": \"content\" must be one character");
    char32_t c = next_code_point(content, k);
    if (k != content.size()) return field_error(where, ctx + ": \"content\" must be one character");
    auto count = [&](const char* key) -> StatusOr<size_t> {
      if (!j.contains(key)) return size_t{0};
      if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0) {
        return field_error(where, ctx + ": \"" + key + "\" must be a count >= 0");
      }
      return static_cast<size_t>(j[key].get<int64_t>());
    };
    ZI_ASSIGN_OR_RETURN(size_t start, count("start"));
    ZI_ASSIGN_OR_RETURN(size_t stop, count("stop"));
    return std::unique_ptr<Decoder>(new StripDec(c, start, stop));
  }
  if (type == "Metaspace") {
    ZI_ASSIGN_OR_RETURN(std::string rep, get_string(j, "replacement", where, ctx));
    std::string scheme = j.value("prepend_scheme", std::string("always"));
    bool prepend = scheme != "never";
    if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() && !j["add_prefix_space"].get<bool>()) {
      prepend = false;
    }
    return std::unique_ptr<Decoder>(new MetaspaceDec(rep, prepend));
  }
  return field_error(where, "decoder type \"" + type + "\" is not supported");
}

StatusOr<std::unique_ptr<PostProcessor>> parse_post_processor(const Json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<PostProcessor>();
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return field_error(where, "post_processor must be an object with a \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "TemplateProcessing") return parse_template(j, where);
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>(new NoopProcessor());
  if (type == "RobertaProcessing" || type == "BertProcessing") return parse_cls_sep(j, where, "post_processor " + type);
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array()) {
      return field_error(where, "post_processor Sequence: field \"processors\" must be a list");
    }
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const Json& sub : j["processors"]) {
      ZI_ASSIGN_OR_RETURN(auto p, parse_post_processor(sub, where));
      if (p) parts.push_back(std::move(p));
    }
    return std::unique_ptr<PostProcessor>(new SequenceProcessor(std::move(parts)));
  }
  return field_error(where, "post_processor type \"" + type + "\" is not supported");
}

}  // namespace zi::tok
