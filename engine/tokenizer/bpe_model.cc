#include "engine/tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>

#include "engine/tokenizer/utf8.h"

namespace zi::tok {
namespace {

struct Symbol {
  int32_t c;       // token id
  int32_t prev;    // index of the previous live symbol, -1 at the start
  int32_t next;    // index of the next live symbol, -1 at the end
  uint32_t len;    // bytes of the word it covers; 0 once merged into its left neighbour
};

struct Merge {
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
  // Heap order: the lowest rank first, and the leftmost among equal ranks (as `tokenizers`).
  bool before(const Merge& o) const { return rank != o.rank ? rank < o.rank : pos < o.pos; }
};

// A 4-ary min-heap: half the depth of a binary heap and the children of a node share cache lines,
// which matters for words of millions of characters (a SentencePiece text without pre-tokenizer).
class MergeQueue {
 public:
  explicit MergeQueue(std::vector<Merge>& storage) : v_(storage) { v_.clear(); }
  bool empty() const { return v_.empty(); }
  void push(const Merge& m) {
    v_.push_back(m);
    sift_up(v_.size() - 1);
  }
  // Builds the heap from entries appended with append() in any order.
  void append(const Merge& m) { v_.push_back(m); }
  void heapify() {
    if (v_.size() < 2) return;
    for (size_t i = (v_.size() - 2) / 4 + 1; i-- > 0;) sift_down(i);
  }
  Merge pop() {
    Merge top = v_[0];
    v_[0] = v_.back();
    v_.pop_back();
    if (!v_.empty()) sift_down(0);
    return top;
  }

 private:
  void sift_up(size_t i) {
    Merge m = v_[i];
    while (i > 0) {
      size_t parent = (i - 1) / 4;
      if (!m.before(v_[parent])) break;
      v_[i] = v_[parent];
      i = parent;
    }
    v_[i] = m;
  }
  void sift_down(size_t i) {
    const size_t n = v_.size();
    Merge m = v_[i];
    for (;;) {
      size_t first = 4 * i + 1;
      if (first >= n) break;
      size_t best = first, last = std::min(first + 4, n);
      for (size_t c = first + 1; c < last; ++c)
        if (v_[c].before(v_[best])) best = c;
      if (!v_[best].before(m)) break;
      v_[i] = v_[best];
      i = best;
    }
    v_[i] = m;
  }
  std::vector<Merge>& v_;
};

void add_symbol(std::vector<Symbol>& syms, int32_t c, uint32_t len) {
  int32_t idx = static_cast<int32_t>(syms.size());
  if (idx > 0) syms.back().next = idx;
  syms.push_back(Symbol{c, idx - 1, -1, len});
}

}  // namespace

StatusOr<std::unique_ptr<BpeModel>> BpeModel::Parse(const Json& m, const std::string& where) {
  if (!m.is_object()) return field_error(where, "\"model\" must be an object");
  std::string type = m.value("type", std::string("BPE"));
  if (type != "BPE") return field_error(where, "model type \"" + type + "\" is not supported (only BPE)");
  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() != 0.0) {
    return field_error(where, "model.dropout is not supported (it makes encoding random)");
  }
  if (!m.contains("vocab") || !m["vocab"].is_object()) return field_error(where, "model.vocab must be an object");
  int32_t max_id = -1;
  // Ids index tables sized max id + 1: far above any real vocabulary (~256K), far below a 2^31 allocation.
  constexpr int64_t kMaxTokenId = (1 << 24) - 1;
  for (const auto& [tok, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > kMaxTokenId) {
      return field_error(where, "model.vocab[\"" + tok + "\"] must be an id in 0.." + std::to_string(kMaxTokenId));
    }
    int32_t v = id.get<int32_t>();
    model->vocab_.emplace(tok, v);
    max_id = std::max(max_id, v);
  }
  model->vocab_r_.resize(static_cast<size_t>(max_id + 1));
  model->has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [tok, id] : model->vocab_) {
    if (!model->has_id_[id]) {
      model->vocab_r_[id] = tok;
      model->has_id_[id] = true;
    }
  }
  auto opt_string = [&](const char* key) -> std::string {
    return (m.contains(key) && m[key].is_string()) ? m[key].get<std::string>() : std::string();
  };
  model->continuing_subword_prefix_ = opt_string("continuing_subword_prefix");
  model->end_of_word_suffix_ = opt_string("end_of_word_suffix");
  model->fuse_unk_ = get_bool_or(m, "fuse_unk", false);
  model->byte_fallback_ = get_bool_or(m, "byte_fallback", false);
  model->ignore_merges_ = get_bool_or(m, "ignore_merges", false);
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    std::string unk = m["unk_token"].get<std::string>();
    auto it = model->vocab_.find(unk);
    if (it == model->vocab_.end()) {
      model->missing_unk_ = unk;  // an error only when a character needs it, as in `tokenizers`
    } else {
      model->unk_id_ = it->second;
    }
  }
  model->segmentable_ = model->continuing_subword_prefix_.empty() && model->end_of_word_suffix_.empty();
  if (model->segmentable_) {
    for (const auto& [tok, id] : model->vocab_) {
      if (!is_valid_utf8(tok)) continue;
      size_t i = 0;
      char32_t prev = next_code_point(tok, i);
      while (i < tok.size()) {
        char32_t c = next_code_point(tok, i);
        model->bigrams_.insert((static_cast<uint64_t>(prev) << 32) | c);
        prev = c;
      }
    }
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = model->vocab_.find(std::string_view(name));
    model->byte_token_id_[b] = it == model->vocab_.end() ? -1 : it->second;
  }

  // Merges: ["a b", ...] (lines of merges.txt) or [["a", "b"], ...]. The rank is the position.
  if (!m.contains("merges") || !m["merges"].is_array()) return field_error(where, "model.merges must be a list");
  const Json& merges = m["merges"];
  model->merges_.reserve(merges.size() * 2);
  const size_t prefix_len = model->continuing_subword_prefix_.size();
  uint32_t rank = 0;
  for (size_t i = 0; i < merges.size(); ++i) {
    const Json& e = merges[i];
    std::string a, b;
    if (e.is_string()) {
      const std::string& line = e.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      size_t sp = line.find(' ');
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos) {
        return field_error(where, absl::StrFormat("model.merges[%d]: \"%s\" is not two tokens separated by one space",
                                                  i, line));
      }
      a = line.substr(0, sp);
      b = line.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      return field_error(where, absl::StrFormat("model.merges[%d] must be \"a b\" or [\"a\", \"b\"]", i));
    }
    auto ia = model->vocab_.find(a), ib = model->vocab_.find(b);
    if (ia == model->vocab_.end() || ib == model->vocab_.end()) {
      return field_error(where, absl::StrFormat("model.merges[%d]: token \"%s\" is not in model.vocab", i,
                                                ia == model->vocab_.end() ? a : b));
    }
    std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : std::string());
    auto in = model->vocab_.find(merged);
    if (in == model->vocab_.end()) {
      return field_error(where, absl::StrFormat("model.merges[%d]: merged token \"%s\" is not in model.vocab", i,
                                                merged));
    }
    uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                   static_cast<uint32_t>(ib->second);
    model->merges_.insert_or_assign(key, MergeInfo{rank, in->second});  // a repeated pair keeps its last rank
    ++rank;
  }
  return model;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= vocab_r_.size() || !has_id_[id]) return nullptr;
  return &vocab_r_[id];
}

const BpeModel::MergeInfo* BpeModel::find_merge(int32_t a, int32_t b) const {
  auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b));
  return it == merges_.end() ? nullptr : &it->second;
}

Status BpeModel::tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return absl::OkStatus();
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return absl::OkStatus();
    }
  }
  const bool cacheable = word.size() < kMaxCachedWordLen;
  Shard& shard = cache_[StringHash{}(word) % kShards];
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(word);
    if (it != shard.map.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return absl::OkStatus();
    }
  }
  size_t start = out->size();
  if (segmentable_ && !cacheable) {
    ZI_RETURN_IF_ERROR(merge_segments(word, out));
  } else {
    ZI_RETURN_IF_ERROR(merge_word(word, out));
  }
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard.mu);
    if (shard.map.size() < kCacheCapacity / kShards) {
      shard.map.emplace(std::string(word), std::vector<int32_t>(out->begin() + start, out->end()));
    }
  }
  return absl::OkStatus();
}

Status BpeModel::merge_segments(std::string_view w, std::vector<int32_t>* out) const {
  size_t seg_start = 0, i = 0;
  char32_t prev = 0;
  bool prev_single = false;  // the previous character is a one-character token
  while (i < w.size()) {
    const size_t at = i;
    const size_t len = std::min(utf8_len(static_cast<unsigned char>(w[i])), w.size() - i);
    const bool single = vocab_.find(w.substr(i, len)) != vocab_.end();
    char32_t c = next_code_point(w, i);
    if (single && prev_single && at > seg_start && bigrams_.count((static_cast<uint64_t>(prev) << 32) | c) == 0) {
      ZI_RETURN_IF_ERROR(merge_word(w.substr(seg_start, at - seg_start), out));
      seg_start = at;
    }
    prev = c;
    prev_single = single;
  }
  return merge_word(w.substr(seg_start), out);
}

// Splits the word into characters (vocabulary ids, byte-fallback ids or unk), then applies merges by
// rank with a min-heap over a linked list of symbols: O(n log n) for a word of n characters.
Status BpeModel::merge_word(std::string_view w, std::vector<int32_t>* out) const {
  // Buffers reused by each thread (no allocation per word once warm).
  thread_local std::vector<Symbol> syms;
  thread_local std::vector<Merge> heap_storage;
  syms.clear();
  bool have_unk = false;
  int32_t unk_len = 0;
  std::string buf;
  for (size_t i = 0; i < w.size();) {
    size_t len = std::min(utf8_len(static_cast<unsigned char>(w[i])), w.size() - i);
    const bool is_first = i == 0, is_last = i + len == w.size();
    std::string_view ch = w.substr(i, len);
    std::string_view key = ch;
    if ((!is_first && !continuing_subword_prefix_.empty()) || (is_last && !end_of_word_suffix_.empty())) {
      buf.clear();
      if (!is_first) buf += continuing_subword_prefix_;
      buf += ch;
      if (is_last) buf += end_of_word_suffix_;
      key = buf;
    }
    i += len;
    auto it = vocab_.find(key);
    if (it != vocab_.end()) {
      if (have_unk) {
        add_symbol(syms, *unk_id_, unk_len);
        have_unk = false;
      }
      add_symbol(syms, it->second, static_cast<uint32_t>(len));
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : key)
        if (byte_token_id_[b] < 0) all = false;
      if (all) {
        for (unsigned char b : key) add_symbol(syms, byte_token_id_[b], 1);
        continue;
      }
    }
    if (!missing_unk_.empty()) {
      return absl::InvalidArgumentError("tokenizer: model.unk_token \"" + missing_unk_ +
                                        "\" is needed but is not in model.vocab");
    }
    if (unk_id_) {
      if (have_unk && fuse_unk_) {
        unk_len += static_cast<int32_t>(len);
      } else {
        if (have_unk) add_symbol(syms, *unk_id_, unk_len);
        have_unk = true;
        unk_len = static_cast<int32_t>(len);
      }
    }
    // Without an unk token the character is dropped, as `tokenizers` does.
  }
  if (have_unk) add_symbol(syms, *unk_id_, unk_len);

  if (syms.size() == 1) {  // nothing to merge (single characters are common after merge_segments)
    out->push_back(syms[0].c);
    return absl::OkStatus();
  }
  MergeQueue heap(heap_storage);
  for (size_t k = 0; k + 1 < syms.size(); ++k) {
    if (const MergeInfo* mi = find_merge(syms[k].c, syms[k + 1].c)) {
      heap.append(Merge{mi->rank, static_cast<int32_t>(k), mi->new_id});
    }
  }
  heap.heapify();
  while (!heap.empty()) {
    const Merge top = heap.pop();
    Symbol& cur = syms[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = syms[next_pos];
    // Skip stale entries: the pair at `pos` must still produce this merge's token.
    const MergeInfo* now = find_merge(cur.c, right.c);
    if (now == nullptr || now->new_id != top.new_id) continue;
    cur.c = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    syms[next_pos].len = 0;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const MergeInfo* mi = find_merge(syms[cur.prev].c, cur.c)) {
        heap.push(Merge{mi->rank, cur.prev, mi->new_id});
      }
    }
    if (cur.next >= 0) {
      if (const MergeInfo* mi = find_merge(cur.c, syms[cur.next].c)) {
        heap.push(Merge{mi->rank, top.pos, mi->new_id});
      }
    }
  }
  for (const Symbol& s : syms)
    if (s.len != 0) out->push_back(s.c);
  return absl::OkStatus();
}

}  // namespace zi::tok
