// Fuzz target: building a Tokenizer from tokenizer.json (+ tokenizer_config.json) text (engine/tokenizer).
// Input: tokenizer.json bytes, optionally followed by the line "#tokenizer_config" and tokenizer_config.json bytes.
// A file that builds must then tokenize: a few fixed texts are encoded (ids in range, decode valid UTF-8) and
// arbitrary ids decoded, so a component that parses but breaks at use is caught too.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using zi::tok::Json;

void exercise(const zi::Tokenizer& tok) {
  static const char* const kTexts[] = {"", "Hello world", "  two  spaces\tand\nnewline", "caf\xC3\xA9 \xE2\x82\xAC",
                                       "<s>special</s>", "\xF0\x9F\x98\x80 emoji", "1234567890"};
  const int32_t vocab = tok.vocab_size();
  FUZZ_CHECK(vocab >= 0, "vocab_size %d", vocab);
  for (const char* text : kTexts) {
    for (bool special : {false, true}) {
      auto ids = tok.encode(text, special);
      if (!ids.ok()) continue;  // e.g. a piece with no token and no unk: an error, which is fine
      for (int32_t id : *ids) FUZZ_CHECK(id >= 0, "encode(%s) gave id %d", text, id);
      for (bool skip : {false, true}) {
        std::string s = tok.decode(*ids, skip);
        FUZZ_CHECK(zi::tok::is_valid_utf8(s), "decode of encode(%s) is not UTF-8", text);
      }
    }
  }
  // Ids in, around and far outside the vocabulary.
  std::vector<int32_t> ids;
  for (int32_t id : {0, 1, 2, vocab - 1, vocab, vocab + 1, -1, 255, 1 << 30}) ids.push_back(id);
  for (bool skip : {false, true}) {
    FUZZ_CHECK(zi::tok::is_valid_utf8(tok.decode(ids, skip)), "decode of edge ids is not UTF-8");
    zi::IncrementalDetokenizer d(tok, skip);
    std::string streamed;
    for (int32_t id : ids) streamed += d.push(id);
    streamed += d.flush();
    FUZZ_CHECK(streamed == tok.decode(ids, skip), "streamed decode differs from decode");
  }
  for (int32_t id : ids) {
    (void)tok.id_to_token(id);
    (void)tok.is_special(id);
  }
  (void)tok.token_to_id("a");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto [tj_text, cfg_text] = zi::fuzz::split_once(zi::fuzz::as_text(data, size), "\n#tokenizer_config\n");
  Json tj = Json::parse(tj_text.begin(), tj_text.end(), nullptr, /*allow_exceptions=*/false);
  if (tj.is_discarded()) return 0;
  Json cfg;  // null: no tokenizer_config.json
  if (!cfg_text.empty()) {
    cfg = Json::parse(cfg_text.begin(), cfg_text.end(), nullptr, /*allow_exceptions=*/false);
    if (cfg.is_discarded()) return 0;
  }
  auto tok = zi::tok::HfTokenizer::Build(std::move(tj), cfg, "tokenizer.json", "tokenizer_config.json");
  if (!tok.ok()) {
    FUZZ_CHECK(!tok.status().message().empty(), "an error without a message");
    return 0;
  }
  exercise(**tok);
  return 0;
}
