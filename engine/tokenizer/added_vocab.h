// Added tokens ("added_tokens" of tokenizer.json, plus special tokens named by tokenizer_config.json):
// found in the text before the model runs, with `tokenizers`' rules: leftmost-longest matches, the
// non-normalized tokens on the raw text, the normalized ones on the normalized pieces; single_word /
// lstrip / rstrip as AddedVocabulary::find_matches applies them.
// Thread-safety: immutable after building; split() may run on many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/components.h"

namespace zi::tok {

struct AddedToken {
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
  bool same_flags(const AddedToken& o) const {
    return content == o.content && single_word == o.single_word && lstrip == o.lstrip && rstrip == o.rstrip &&
           normalized == o.normalized && special == o.special;
  }
};

class AddedVocab {
 public:
  // `tokenizers`' add_tokens: an id comes from the added tokens, then the model's vocabulary, else the next
  // free id. `normalizer` (may be null) gives the normalized form that normalized tokens match and decode as.
  Status add_tokens(const std::vector<AddedToken>& tokens, const BpeModel& model, const Normalizer* normalizer);
  // Builds the matchers; call after the last add_tokens.
  Status finalize();
  void set_encode_special_tokens(bool v) { encode_special_tokens_ = v; }

  // Splits `p` (id < 0) at the added tokens of one kind: normalized == false on the raw text, true on
  // normalized pieces. Matched pieces get their id.
  void split(const Piece& p, bool normalized_set, std::vector<Piece>* out) const;

  std::optional<int32_t> token_to_id(std::string_view content) const;
  // The string a token decodes from (the normalized form for normalized tokens whose form differs).
  const std::string* decode_string(int32_t id) const;
  const AddedToken* get(int32_t id) const;
  bool is_special_content(const std::string& s) const { return special_set_.count(s) != 0; }
  int32_t max_id() const { return max_id_; }
  bool empty() const { return by_id_.empty(); }

 private:
  // Byte trie over the token strings: leftmost-longest match at each position.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> next;
      int32_t token = -1;  // id ending here
    };
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
    void insert(std::string_view s, int32_t id);
    // Longest token starting at s[i]: its length (0 if none) and id.
    size_t longest_at(std::string_view s, size_t i, int32_t* id) const;
  };
  void find_matches(std::string_view s, const Trie& trie, std::vector<std::pair<int32_t, Span>>* out) const;

  std::unordered_map<int32_t, AddedToken> by_id_;
  std::unordered_map<std::string, int32_t> by_content_;
  std::unordered_map<int32_t, std::string> normalized_form_;
  std::unordered_set<std::string> special_set_;
  Trie raw_trie_, norm_trie_;
  std::unique_ptr<Regex> word_char_;
  bool encode_special_tokens_ = false;
  int32_t max_id_ = -1;
};

}  // namespace zi::tok
