// Hugging Face `tokenizer.json` in C++, with transformers' behaviour (BPE: ByteLevel and SentencePiece families).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace zi {

// Thread-safety: every const method may be called from several threads at once.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Reads DIR/tokenizer.json (and DIR/tokenizer_config.json when present: its named special tokens, and a
  // "tokenizer_class" whose transformers class rebuilds the pipeline — LlamaTokenizer, GPT2Tokenizer,
  // Qwen2Tokenizer). Errors name the file and the component, e.g. `normalizer type "X" is not supported`.
  static StatusOr<std::unique_ptr<Tokenizer>> FromDir(const std::string& dir);
  static StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& tokenizer_json_path);

  // As transformers' `encode(text, add_special_tokens=...)`. Invalid UTF-8 input is an error. Thread-safe.
  virtual StatusOr<std::vector<int32_t>> encode(std::string_view text, bool add_special_tokens) const = 0;
  // As `decode(ids, skip_special_tokens=...)`: always valid UTF-8 (U+FFFD where transformers puts it).
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;
  // The token's string in the vocabulary ("" when out of range).
  virtual std::string id_to_token(int32_t id) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // True when `id` decodes as one byte of a byte-fallback run ("<0xNN>" with a ByteFallback decoder):
  // such a run decodes as a whole (U+FFFD for every byte when the run is not valid UTF-8), so streaming
  // text is final only once the run has ended.
  virtual bool continues_byte_run(int32_t id, bool skip_special_tokens) const { return false; }
};

// Streaming detokenization: push ids one by one, get the text that became final (never half a UTF-8
// character, never text a later token could still change); flush() returns the rest at the end, with
// U+FFFD for bytes that never formed a character. The concatenation of all push() results and flush()
// equals decode(all ids). Not thread-safe; one per sequence.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  // Text of ids_[from, to) decoded together.
  std::string window(size_t from, size_t to) const;
  // True when ids_[from, to) holds a token that adds text of its own (not skipped, not empty).
  bool has_visible_token(size_t from, size_t to) const;

  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;   // ids_[prefix_offset_..] are decoded together for context
  size_t read_offset_ = 0;     // text of ids_[prefix_offset_..read_offset_) has been emitted
};

}  // namespace zi
