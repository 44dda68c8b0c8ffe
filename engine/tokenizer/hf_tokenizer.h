// The Tokenizer built from `tokenizer.json` (+ `tokenizer_config.json`): the pipeline of components.h.
#pragma once

#include <memory>
#include <string>

#include "engine/tokenizer/added_vocab.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/components.h"
#include "engine/tokenizer/tokenizer.h"

namespace zi::tok {

class HfTokenizer : public Tokenizer, public TokenLookup {
 public:
  // `config` may be null (no tokenizer_config.json). `where` / `config_where` name the files in errors.
  static StatusOr<std::unique_ptr<HfTokenizer>> Build(Json tokenizer_json, const Json& config,
                                                      const std::string& where, const std::string& config_where);

  StatusOr<std::vector<int32_t>> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  std::string id_to_token(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  int32_t vocab_size() const override;
  bool is_special(int32_t id) const override;
  bool continues_byte_run(int32_t id, bool skip_special_tokens) const override;

  bool lookup(const std::string& token, int32_t* id) const override;

 private:
  HfTokenizer() = default;
  Status apply_config(const Json& config, const std::string& config_where,
                      const std::vector<std::pair<std::string, std::string>>& class_defaults);
  // The string `decode` starts from for `id`, or nullptr for an unknown id.
  const std::string* token_string(int32_t id) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocab added_;
  bool clean_up_spaces_ = false;
};

}  // namespace zi::tok
