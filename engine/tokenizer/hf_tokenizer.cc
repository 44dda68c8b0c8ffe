#include "engine/tokenizer/hf_tokenizer.h"

#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "engine/tokenizer/tokenizer_classes.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok {
namespace {

// transformers' named special tokens (SPECIAL_TOKENS_ATTRIBUTES).
constexpr const char* kNamedSpecialTokens[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                               "pad_token", "cls_token", "mask_token"};

StatusOr<AddedToken> parse_added_token(const Json& j, const std::string& where, const std::string& ctx,
                                       bool default_special) {
  AddedToken t;
  if (j.is_string()) {
    t.content = j.get<std::string>();
    t.special = default_special;
    t.normalized = !default_special;
    return t;
  }
  if (!j.is_object() || !j.contains("content") || !j["content"].is_string()) {
    return field_error(where, ctx + " must be a string or an object with \"content\"");
  }
  t.content = j["content"].get<std::string>();
  t.special = get_bool_or(j, "special", default_special);
  t.single_word = get_bool_or(j, "single_word", false);
  t.lstrip = get_bool_or(j, "lstrip", false);
  t.rstrip = get_bool_or(j, "rstrip", false);
  t.normalized = get_bool_or(j, "normalized", !t.special);
  return t;
}

StatusOr<Json> read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  Json j = Json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(path + ": not valid JSON");
  return j;
}

// transformers' clean_up_tokenization (only used when a config forces it on a BPE tokenizer).
void clean_up_tokenization(std::string& s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    std::string out;
    const std::string_view f(from);
    size_t prev = 0, pos;
    while ((pos = s.find(f, prev)) != std::string::npos) {
      out.append(s, prev, pos - prev).append(to);
      prev = pos + f.size();
    }
    out.append(s, prev, std::string::npos);
    s = std::move(out);
  }
}

}  // namespace

// A function-try-block: a value of the wrong JSON type where a component reads it with nlohmann's typed accessors
// (e.g. "type": {} in "model") throws json::exception; it becomes one error naming the file, not a crash.
StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Build(Json tj, const Json& config, const std::string& where,
                                                          const std::string& config_where) try {
  if (!tj.is_object()) return field_error(where, "top level must be an object");
  if (!config.is_null() && !config.is_object()) return field_error(config_where, "top level must be an object");
  auto tok = std::unique_ptr<HfTokenizer>(new HfTokenizer());
  std::vector<std::pair<std::string, std::string>> class_defaults;
  if (!config.is_null() && tj.contains("model")) apply_tokenizer_class(config, tj, &class_defaults);
  // "truncation" and "padding" are ignored: transformers' encode(text) turns both off unless asked.
  if (!tj.contains("model")) return field_error(where, "field \"model\" is missing");
  ZI_ASSIGN_OR_RETURN(tok->model_, BpeModel::Parse(tj["model"], where));
  ZI_ASSIGN_OR_RETURN(tok->normalizer_, parse_normalizer(tj.value("normalizer", Json()), where));
  ZI_ASSIGN_OR_RETURN(tok->pre_tokenizer_, parse_pre_tokenizer(tj.value("pre_tokenizer", Json()), where));
  ZI_ASSIGN_OR_RETURN(tok->post_processor_, parse_post_processor(tj.value("post_processor", Json()), where));
  ZI_ASSIGN_OR_RETURN(tok->decoder_, parse_decoder(tj.value("decoder", Json()), where));

  std::vector<AddedToken> added;
  if (tj.contains("added_tokens") && !tj["added_tokens"].is_null()) {
    if (!tj["added_tokens"].is_array()) return field_error(where, "added_tokens must be a list");
    size_t i = 0;
    for (const Json& a : tj["added_tokens"]) {
      ZI_ASSIGN_OR_RETURN(AddedToken t,
                          parse_added_token(a, where, absl::StrFormat("added_tokens[%d]", i++), false));
      added.push_back(std::move(t));
    }
  }
  ZI_RETURN_IF_ERROR(tok->added_.add_tokens(added, *tok->model_, tok->normalizer_.get()));
  if (!config.is_null()) ZI_RETURN_IF_ERROR(tok->apply_config(config, config_where, class_defaults));
  ZI_RETURN_IF_ERROR(tok->added_.finalize());
  return tok;
} catch (const Json::exception& e) {
  return field_error(config.is_null() ? where : absl::StrCat(where, " (or ", config_where, ")"),
                     absl::StrCat("a value has the wrong JSON type: ", e.what()));
}

// What transformers' TokenizersBackend takes from tokenizer_config.json: named special tokens (or the
// class's defaults) missing from the added tokens become special added tokens; split_special_tokens;
// clean-up of spaces (skipped for BPE unless forced). add_bos_token / add_eos_token are dropped by
// transformers when tokenizer.json exists, so the post-processor of the file stays.
Status HfTokenizer::apply_config(const Json& c, const std::string& cw,
                                 const std::vector<std::pair<std::string, std::string>>& class_defaults) {
  std::vector<AddedToken> extra;
  auto want = [&](const Json& v, const std::string& ctx) -> Status {
    if (v.is_null()) return absl::OkStatus();
    ZI_ASSIGN_OR_RETURN(AddedToken t, parse_added_token(v, cw, ctx, true));
    if (!added_.token_to_id(t.content)) extra.push_back(std::move(t));
    return absl::OkStatus();
  };
  for (const char* key : kNamedSpecialTokens) {
    if (c.contains(key)) {
      ZI_RETURN_IF_ERROR(want(c[key], key));
      continue;
    }
    for (const auto& [k, token] : class_defaults)
      if (k == key) ZI_RETURN_IF_ERROR(want(Json(token), key));
  }
  for (const char* key : {"additional_special_tokens", "extra_special_tokens"}) {
    if (!c.contains(key) || c[key].is_null()) continue;
    const Json& list = c[key];
    if (list.is_array()) {
      for (const Json& v : list) ZI_RETURN_IF_ERROR(want(v, key));
    } else if (list.is_object()) {
      for (const auto& [name, v] : list.items()) ZI_RETURN_IF_ERROR(want(v, std::string(key) + "." + name));
    } else {
      return field_error(cw, std::string(key) + " must be a list");
    }
  }
  ZI_RETURN_IF_ERROR(added_.add_tokens(extra, *model_, normalizer_.get()));
  added_.set_encode_special_tokens(get_bool_or(c, "split_special_tokens", false));
  clean_up_spaces_ = get_bool_or(c, "clean_up_tokenization_spaces", false) &&
                     get_bool_or(c, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", false);
  return absl::OkStatus();
}

StatusOr<std::vector<int32_t>> HfTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tokenizer: input text is not valid UTF-8 (byte %d of %d)", bad, text.size()));
  }
  // 1. Added tokens that match the raw text; 2. normalizer, then the normalized added tokens.
  std::vector<Piece> pieces, next;
  Piece whole;
  whole.text = std::string(text);
  whole.at_origin = true;
  added_.split(whole, /*normalized_set=*/false, &pieces);
  for (Piece& p : pieces) {
    if (p.id >= 0) {
      next.push_back(std::move(p));
      continue;
    }
    if (normalizer_) ZI_RETURN_IF_ERROR(normalizer_->normalize(p.text));
    if (p.text.empty()) continue;
    added_.split(p, /*normalized_set=*/true, &next);
  }
  pieces.swap(next);
  // 3. Pre-tokenizer; 4. the model on every piece that is not an added token.
  if (pre_tokenizer_) ZI_RETURN_IF_ERROR(pre_tokenizer_->pre_tokenize(pieces));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const Piece& p : pieces) {
    if (p.id >= 0) {
      ids.push_back(p.id);
    } else {
      ZI_RETURN_IF_ERROR(model_->tokenize(p.text, &ids));
    }
  }
  // 5. Post-processor (special tokens of the template).
  if (post_processor_) post_processor_->process(ids, add_special_tokens);
  return ids;
}

const std::string* HfTokenizer::token_string(int32_t id) const {
  if (const std::string* s = added_.decode_string(id)) return s;
  return model_->id_to_token(id);
}

std::string HfTokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* s = token_string(id);
    if (s == nullptr) continue;  // unknown ids are dropped, as `tokenizers` does
    if (skip_special_tokens && added_.is_special_content(*s)) continue;
    tokens.push_back(*s);
  }
  std::string text;
  if (decoder_) {
    decoder_->decode_chain(tokens);
    for (const auto& t : tokens) text += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) text += ' ';
      text += tokens[i];
    }
  }
  if (clean_up_spaces_) clean_up_tokenization(text);
  return text;
}

std::string HfTokenizer::id_to_token(int32_t id) const {
  const std::string* s = token_string(id);
  if (const AddedToken* t = added_.get(id)) return t->content;
  return s ? *s : std::string();
}

std::optional<int32_t> HfTokenizer::token_to_id(std::string_view token) const {
  if (auto id = added_.token_to_id(token)) return id;
  return model_->token_to_id(token);
}

bool HfTokenizer::lookup(const std::string& token, int32_t* id) const {
  auto r = token_to_id(token);
  if (r) *id = *r;
  return r.has_value();
}

int32_t HfTokenizer::vocab_size() const { return std::max(model_->size(), added_.max_id() + 1); }

bool HfTokenizer::is_special(int32_t id) const {
  const std::string* s = token_string(id);
  return s != nullptr && added_.is_special_content(*s);
}

bool HfTokenizer::continues_byte_run(int32_t id, bool skip_special_tokens) const {
  if (!decoder_ || !decoder_->has_byte_fallback()) return false;
  const std::string* s = token_string(id);
  if (s == nullptr || (skip_special_tokens && added_.is_special_content(*s))) return false;
  return s->size() == 6 && s->compare(0, 3, "<0x") == 0 && (*s)[5] == '>';
}

}  // namespace zi::tok

namespace zi {

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  ZI_ASSIGN_OR_RETURN(tok::Json j, tok::read_json(path));
  ZI_ASSIGN_OR_RETURN(auto t, tok::HfTokenizer::Build(std::move(j), tok::Json(), path, ""));
  return std::unique_ptr<Tokenizer>(std::move(t));
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromDir(const std::string& dir) {
  const std::string tj_path = dir + "/tokenizer.json";
  const std::string cfg_path = dir + "/tokenizer_config.json";
  ZI_ASSIGN_OR_RETURN(tok::Json j, tok::read_json(tj_path));
  tok::Json cfg;  // null: no tokenizer_config.json
  struct stat st;
  if (::stat(cfg_path.c_str(), &st) == 0) {
    ZI_ASSIGN_OR_RETURN(cfg, tok::read_json(cfg_path));
  }
  ZI_ASSIGN_OR_RETURN(auto t, tok::HfTokenizer::Build(std::move(j), cfg, tj_path, cfg_path));
  return std::unique_ptr<Tokenizer>(std::move(t));
}

}  // namespace zi
