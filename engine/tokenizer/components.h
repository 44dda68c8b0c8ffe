// The pipeline stages of a Hugging Face `tokenizer.json`, each parsed from its JSON object:
//   text → added tokens split out → normalizer → pre-tokenizer → model (BPE) → post-processor → ids
//   ids → tokens → decoder chain → text
// Every stage works on plain UTF-8 strings (no offsets are tracked: zeroinfer needs ids and text only).
// All stages are immutable after parsing and safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/status.h"
#include "engine/tokenizer/regex.h"

namespace zi::tok {

using Json = nlohmann::json;

// A piece of the input during encode. `id >= 0` marks an added token matched before the model runs;
// such pieces are left alone by normalizers, pre-tokenizers and the model.
struct Piece {
  std::string text;
  bool at_origin = false;  // starts at byte 0 of the input (Metaspace prepend_scheme "first")
  int32_t id = -1;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual Status normalize(std::string& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) every piece with id < 0; empty pieces are dropped.
  virtual Status pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // `tokenizers`' decode_chain: token strings in, token strings out (joined with "" at the end).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  // True when this decoder (or one inside a Sequence) is ByteFallback: runs of <0xNN> tokens decode as one.
  virtual bool has_byte_fallback() const { return false; }
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Single sequence: adds the special tokens of the template around `ids` when `add_special_tokens`.
  virtual void process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
};

// Looks up a token's id (added tokens first, then the model's vocabulary); used by post-processors.
class TokenLookup {
 public:
  virtual ~TokenLookup() = default;
  virtual bool lookup(const std::string& token, int32_t* id) const = 0;
};

// Parsers. `where` names the file for errors, e.g. `/m/tokenizer.json: normalizer type "NFKC" is not supported`.
// A JSON null yields nullptr (no such stage).
StatusOr<std::unique_ptr<Normalizer>> parse_normalizer(const Json& j, const std::string& where);
StatusOr<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const Json& j, const std::string& where);
StatusOr<std::unique_ptr<Decoder>> parse_decoder(const Json& j, const std::string& where);
StatusOr<std::unique_ptr<PostProcessor>> parse_post_processor(const Json& j, const std::string& where);

// NFC / NFD / NFKC / NFKD / Lowercase (ICU); nullptr for any other type.
StatusOr<std::unique_ptr<Normalizer>> make_unicode_normalizer(const std::string& type);

// A TemplateProcessing equivalent with fixed ids before and after the sequence (transformers'
// `update_post_processor` for add_bos_token / add_eos_token).
std::unique_ptr<PostProcessor> make_affix_processor(std::vector<int32_t> prefix, std::vector<int32_t> suffix);

// The GPT-2 byte-to-unicode table: byte b is written as the code point byte_to_char(b) in ByteLevel text.
char32_t byte_to_char(uint8_t b);
// Inverse; returns -1 for code points that are not in the table.
int char_to_byte(char32_t cp);

// Helpers shared by the parsers.
Status field_error(const std::string& where, const std::string& what);
StatusOr<std::string> get_string(const Json& j, const char* key, const std::string& where, const std::string& ctx);
bool get_bool_or(const Json& j, const char* key, bool dflt);
// {"String": "x"} (literal) or {"Regex": "x"}, as Replace and Split write their pattern.
StatusOr<std::unique_ptr<Regex>> parse_pattern(const Json& j, const std::string& where, const std::string& ctx);

}  // namespace zi::tok
