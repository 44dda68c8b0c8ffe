#include "engine/tokenizer/added_vocab.h"

#include "engine/tokenizer/utf8.h"

namespace zi::tok {
namespace {

// Rust regex's Unicode \w (Alphabetic, marks, decimal numbers, connector punctuation, joiners).
constexpr std::string_view kWordCharPattern = "^[\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\x{200C}\\x{200D}]$";

size_t prev_char_start(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

}  // namespace

void AddedVocab::Trie::insert(std::string_view s, int32_t id) {
  int32_t n = 0;
  for (unsigned char c : s) {
    int32_t nxt = -1;
    for (const auto& [b, child] : nodes[n].next)
      if (b == c) nxt = child;
    if (nxt < 0) {
      nxt = static_cast<int32_t>(nodes.size());
      nodes[n].next.emplace_back(c, nxt);
      nodes.emplace_back();
    }
    n = nxt;
  }
  nodes[n].token = id;
  if (!s.empty()) first_byte[static_cast<unsigned char>(s[0])] = true;
}

size_t AddedVocab::Trie::longest_at(std::string_view s, size_t i, int32_t* id) const {
  size_t best = 0;
  int32_t n = 0;
  for (size_t k = i; k < s.size(); ++k) {
    unsigned char c = static_cast<unsigned char>(s[k]);
    int32_t nxt = -1;
    for (const auto& [b, child] : nodes[n].next)
      if (b == c) {
        nxt = child;
        break;
      }
    if (nxt < 0) break;
    n = nxt;
    if (nodes[n].token >= 0) {
      best = k + 1 - i;
      *id = nodes[n].token;
    }
  }
  return best;
}

Status AddedVocab::add_tokens(const std::vector<AddedToken>& tokens, const BpeModel& model,
                              const Normalizer* normalizer) {
  const int32_t model_size = static_cast<int32_t>(model.vocab_count());
  int32_t next_id = model_size;
  if (max_id_ >= 0) next_id = (max_id_ >= model_size || model_size == 0) ? max_id_ + 1 : model_size;
  for (const AddedToken& t : tokens) {
    if (t.content.empty()) continue;
    auto existing = by_content_.find(t.content);
    if (existing != by_content_.end()) {
      auto it = by_id_.find(existing->second);
      if (it != by_id_.end() && it->second.same_flags(t)) continue;
    }
    int32_t id;
    if (existing != by_content_.end()) {
      id = existing->second;
    } else if (auto mid = model.token_to_id(t.content)) {
      id = *mid;
    } else {
      id = next_id++;
    }
    normalized_form_.erase(id);
    if (t.normalized && normalizer != nullptr) {
      std::string s = t.content;
      ZI_RETURN_IF_ERROR(normalizer->normalize(s));
      if (s != t.content) normalized_form_[id] = s;
    }
    by_content_[t.content] = id;
    if (t.special) special_set_.insert(t.content);
    by_id_[id] = t;
    max_id_ = std::max(max_id_, id);
  }
  return absl::OkStatus();
}

Status AddedVocab::finalize() {
  raw_trie_ = Trie();
  norm_trie_ = Trie();
  for (const auto& [id, t] : by_id_) {
    if (t.normalized) {
      auto nf = normalized_form_.find(id);
      norm_trie_.insert(nf != normalized_form_.end() ? nf->second : t.content, id);
    } else {
      raw_trie_.insert(t.content, id);
    }
  }
  ZI_ASSIGN_OR_RETURN(word_char_, Regex::Compile(kWordCharPattern, false));
  return absl::OkStatus();
}

std::optional<int32_t> AddedVocab::token_to_id(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

const AddedToken* AddedVocab::get(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

const std::string* AddedVocab::decode_string(int32_t id) const {
  auto nf = normalized_form_.find(id);
  if (nf != normalized_form_.end()) return &nf->second;
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second.content;
}

void AddedVocab::find_matches(std::string_view s, const Trie& trie,
                              std::vector<std::pair<int32_t, Span>>* out) const {
  auto is_word = [&](std::string_view ch) {
    std::vector<Span> m;
    return word_char_->find_all(ch, &m).ok() && !m.empty();
  };
  size_t start_offset = 0;
  for (size_t i = 0; i < s.size();) {
    int32_t id = -1;
    size_t len = trie.first_byte[static_cast<unsigned char>(s[i])] ? trie.longest_at(s, i, &id) : 0;
    if (len == 0) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + len;
    i = stop;  // matches never overlap, even when this one is discarded below
    const AddedToken& t = by_id_.at(id);
    if (encode_special_tokens_ && special_set_.count(t.content)) continue;
    if (t.single_word) {
      bool start_space = start == 0 || !is_word(s.substr(prev_char_start(s, start), start - prev_char_start(s, start)));
      bool stop_space = stop == s.size() || !is_word(s.substr(stop, utf8_len(static_cast<unsigned char>(s[stop]))));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t ns = start;
      while (ns > 0) {
        size_t ps = prev_char_start(s, ns), k = ps;
        if (!is_unicode_whitespace(next_code_point(s, k))) break;
        ns = ps;
      }
      start = std::max(ns, start_offset);
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        size_t k = stop;
        if (!is_unicode_whitespace(next_code_point(s, k))) break;
        stop = k;
      }
      i = std::max(i, stop);  // keeps pieces disjoint (the stripped spaces belong to this token)
    }
    if (start_offset < start) out->push_back({-1, {start_offset, start}});
    out->push_back({id, {start, stop}});
    start_offset = stop;
  }
  if (start_offset != s.size()) out->push_back({-1, {start_offset, s.size()}});
}

void AddedVocab::split(const Piece& p, bool normalized_set, std::vector<Piece>* out) const {
  std::vector<std::pair<int32_t, Span>> m;
  find_matches(p.text, normalized_set ? norm_trie_ : raw_trie_, &m);
  for (const auto& [id, sp] : m) {
    if (sp.second <= sp.first) continue;
    Piece q;
    q.text = p.text.substr(sp.first, sp.second - sp.first);
    q.at_origin = p.at_origin && sp.first == 0;
    q.id = id;
    out->push_back(std::move(q));
  }
}

}  // namespace zi::tok
