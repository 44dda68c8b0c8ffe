// Streaming detokenization with the prefix/read offsets of vLLM and TGI: the ids since `prefix_offset_`
// are decoded together, and what the newest ids add to the text of ids_[prefix_offset_, read_offset_) is
// emitted once it is final:
//  - it must not end in U+FFFD (an unfinished UTF-8 character that later bytes may complete);
//  - with a ByteFallback decoder, a run of <0xNN> tokens decodes as a whole (one U+FFFD per byte when the
//    run is not valid UTF-8), so nothing is emitted while the newest token continues such a run.
// Decoding a window that starts mid-sequence is only safe when the window's first part has visible text:
// decoders act on the start of their input (Strip removes a leading space, Metaspace drops the first
// token's replacement), and that start must be text already emitted. So the window start only moves to
// a group of ids that shows text of its own.
// The concatenation of push() results and flush() equals decode(all ids).
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace zi {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(tokenizer), skip_special_(skip_special_tokens) {}

std::string IncrementalDetokenizer::window(size_t from, size_t to) const {
  return tok_.decode(std::span<const int32_t>(ids_.data() + from, to - from), skip_special_);
}

bool IncrementalDetokenizer::has_visible_token(size_t from, size_t to) const {
  for (size_t i = from; i < to; ++i) {
    if (skip_special_ && tok_.is_special(ids_[i])) continue;
    if (!tok_.id_to_token(ids_[i]).empty()) return true;
  }
  return false;
}

std::string IncrementalDetokenizer::push(int32_t id) {
  ids_.push_back(id);
  // A token that decode drops (unknown id, skipped special token) changes no text: nothing to decode.
  if ((skip_special_ && tok_.is_special(id)) || tok_.id_to_token(id).empty()) return std::string();
  // The newest token that decode keeps (unknown ids and skipped special tokens are dropped by decode and
  // so do not end a byte run).
  for (size_t i = ids_.size(); i-- > read_offset_;) {
    const bool dropped = (skip_special_ && tok_.is_special(ids_[i])) || tok_.id_to_token(ids_[i]).empty();
    if (dropped) continue;
    if (tok_.continues_byte_run(ids_[i], skip_special_)) return std::string();
    break;
  }
  const std::string prefix_text = window(prefix_offset_, read_offset_);
  const std::string new_text = window(prefix_offset_, ids_.size());
  if (new_text.size() <= prefix_text.size() || tok::ends_with_replacement(new_text)) return std::string();
  // Decoders here only append to the window's text; should one ever rewrite it, emit from the first byte
  // that differs, at a character boundary, so the output stays valid UTF-8.
  size_t common = 0;
  while (common < prefix_text.size() && prefix_text[common] == new_text[common]) ++common;
  while (common > 0 && (static_cast<unsigned char>(new_text[common]) & 0xC0) == 0x80) --common;
  std::string out = new_text.substr(common);
  if (has_visible_token(read_offset_, ids_.size())) prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return out;
}

std::string IncrementalDetokenizer::flush() {
  if (read_offset_ == ids_.size()) return std::string();
  const std::string prefix_text = window(prefix_offset_, read_offset_);
  const std::string new_text = window(prefix_offset_, ids_.size());
  size_t common = 0;
  while (common < prefix_text.size() && common < new_text.size() && prefix_text[common] == new_text[common]) {
    ++common;
  }
  while (common > 0 && common < new_text.size() && (static_cast<unsigned char>(new_text[common]) & 0xC0) == 0x80) {
    --common;
  }
  std::string out = new_text.size() > common ? new_text.substr(common) : std::string();
  if (has_visible_token(read_offset_, ids_.size())) prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return out;
}

}  // namespace zi
