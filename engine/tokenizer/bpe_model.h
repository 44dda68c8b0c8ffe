// The BPE model of `tokenizer.json` ("model": {"type": "BPE", ...}): vocabulary, merges by rank,
// unk / fuse_unk / byte_fallback / ignore_merges / continuing_subword_prefix / end_of_word_suffix.
// Thread-safety: tokenize() may run on many threads at once; the word cache is sharded under mutexes.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/tokenizer/components.h"

namespace zi::tok {

// Heterogeneous lookup: find(std::string_view) without building a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  static StatusOr<std::unique_ptr<BpeModel>> Parse(const Json& model, const std::string& where);

  // Appends the ids of one pre-tokenized word (valid UTF-8, not empty).
  // Errors only when an unknown character needs an unk_token that the vocabulary lacks.
  Status tokenize(std::string_view word, std::vector<int32_t>* out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(int32_t id) const;  // nullptr when the id is not in the vocabulary
  int32_t size() const { return static_cast<int32_t>(vocab_r_.size()); }  // max id + 1
  size_t vocab_count() const { return vocab_.size(); }

 private:
  struct MergeInfo {
    uint32_t rank;
    int32_t new_id;
  };
  Status merge_word(std::string_view word, std::vector<int32_t>* out) const;
  // merge_word over the pieces of `word` between barriers: adjacent characters a, b that are both
  // one-character tokens while no vocabulary token holds "ab". No merge can ever span a barrier, so the
  // pieces merge independently and the result is the same as for the whole word, with small heaps.
  Status merge_segments(std::string_view word, std::vector<int32_t>* out) const;
  const MergeInfo* find_merge(int32_t a, int32_t b) const;

  Vocab vocab_;
  std::vector<std::string> vocab_r_;
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, MergeInfo> merges_;  // key: (uint64(a) << 32) | b
  std::optional<int32_t> unk_id_;
  std::string missing_unk_;  // unk_token named by the file but absent from the vocabulary
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::array<int32_t, 256> byte_token_id_{};  // "<0xNN>" ids, -1 when missing
  std::unordered_set<uint64_t> bigrams_;       // (cp1 << 32) | cp2 for adjacent code points in any token
  bool segmentable_ = false;                   // no continuing_subword_prefix / end_of_word_suffix

  // Word cache as in `tokenizers` (words shorter than 256 bytes, 10000 entries at most).
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxCachedWordLen = 256;
  static constexpr size_t kCacheCapacity = 10000;
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  mutable std::array<Shard, kShards> cache_;
};

}  // namespace zi::tok
