// Fuzz target: the tokenizer on arbitrary bytes, over the project's fixture tokenizers (tests/data/tokenizers:
// GPT-2 byte-level, the SentencePiece-style BPE with byte fallback, and variants with normalizers, Metaspace,
// a Llama-3 split regex and transformers' class rebuilds).
// Input: byte 0 picks the tokenizer, byte 1 the mode and flags, the rest is text (encode) or ids (decode).
// Promises checked: encode accepts every valid UTF-8 text and refuses invalid UTF-8; ids stay in range;
// decode is always valid UTF-8; GPT-2 round-trips text exactly; the incremental detokenizer's chunks are each
// valid UTF-8 and concatenate to decode() of all ids.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using Json = nlohmann::json;

Json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FUZZ_CHECK(in.good(), "cannot open %s", path.c_str());
  return Json::parse(in);
}

// A fixture folder, or a variant spec of tests/data/tokenizers/variants/ applied to its base fixture (the rule of
// tests/unit/tokenizer_test_util.h) and written to the scratch folder.
std::unique_ptr<zi::Tokenizer> load(const std::string& name) {
  const std::string root = std::string(ZI_TEST_DATA) + "/tokenizers";
  std::string dir = root + "/" + name;
  if (!std::filesystem::exists(dir + "/tokenizer.json")) {
    Json spec = read_json(root + "/variants/" + name + ".json");
    Json tj = read_json(root + "/" + spec["base"].get<std::string>() + "/tokenizer.json");
    if (spec.contains("replace"))
      for (const auto& [k, v] : spec["replace"].items()) tj[k] = v;
    if (spec.contains("model"))
      for (const auto& [k, v] : spec["model"].items()) tj["model"][k] = v;
    if (spec.value("merges_as_pairs", false)) {
      Json pairs = Json::array();
      for (const Json& m : tj["model"]["merges"]) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        pairs.push_back(Json::array({s.substr(0, sp), s.substr(sp + 1)}));
      }
      tj["model"]["merges"] = pairs;
    }
    if (spec.contains("added_tokens_append"))
      for (const Json& t : spec["added_tokens_append"]) tj["added_tokens"].push_back(t);
    dir = zi::fuzz::scratch_dir() + "/" + name;
    std::filesystem::create_directories(dir);
    zi::fuzz::write_file(dir + "/tokenizer.json", tj.dump());
    zi::fuzz::write_file(dir + "/tokenizer_config.json", spec["tokenizer_config"].dump());
  }
  auto tok = zi::Tokenizer::FromDir(dir);
  FUZZ_CHECK(tok.ok(), "fixture tokenizer %s: %s", name.c_str(), tok.status().ToString().c_str());
  return std::move(tok).value();
}

struct Fixtures {
  std::vector<std::string> names = {"gpt2", "spbpe", "gpt2_norm", "llama3ish", "qwen2_class", "sp_meta_split",
                                    "sp_norm_added"};
  std::vector<std::unique_ptr<zi::Tokenizer>> toks;
  Fixtures() {
    for (const auto& n : names) toks.push_back(load(n));
  }
};

const Fixtures& fixtures() {
  static const Fixtures f;
  return f;
}

void check_stream(const zi::Tokenizer& tok, const std::vector<int32_t>& ids, bool skip, const char* what) {
  const std::string whole = tok.decode(ids, skip);
  FUZZ_CHECK(zi::tok::is_valid_utf8(whole), "%s: decode is not valid UTF-8", what);
  zi::IncrementalDetokenizer d(tok, skip);
  std::string streamed;
  for (int32_t id : ids) {
    std::string chunk = d.push(id);
    FUZZ_CHECK(zi::tok::is_valid_utf8(chunk), "%s: push(%d) returned invalid UTF-8", what, id);
    streamed += chunk;
  }
  std::string rest = d.flush();
  FUZZ_CHECK(zi::tok::is_valid_utf8(rest), "%s: flush returned invalid UTF-8", what);
  streamed += rest;
  FUZZ_CHECK(streamed == whole, "%s: streamed text (%zu bytes) != decode (%zu bytes)", what, streamed.size(),
             whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)fixtures();  // load once, before the first input (keeps start-up out of the per-input timings)
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const Fixtures& f = fixtures();
  const size_t which = data[0] % f.toks.size();
  const zi::Tokenizer& tok = *f.toks[which];
  const uint8_t flags = data[1];
  const bool add_special = flags & 1, skip_special = flags & 2, ids_mode = flags & 4;
  std::string_view rest = zi::fuzz::as_text(data + 2, size - 2);
  const int32_t vocab = tok.vocab_size();

  if (!ids_mode) {
    auto ids = tok.encode(rest, add_special);
    const bool valid = zi::tok::is_valid_utf8(rest);
    FUZZ_CHECK(ids.ok() == valid, "%s: encode of %s UTF-8 gave %s", f.names[which].c_str(),
               valid ? "valid" : "invalid", ids.status().ToString().c_str());
    if (!ids.ok()) return 0;
    for (int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < vocab, "%s: id %d outside [0, %d)", f.names[which].c_str(), id, vocab);
    if (f.names[which] == "gpt2" && !add_special) {
      // Byte-level BPE without a normalizer loses nothing.
      FUZZ_CHECK(tok.decode(*ids, false) == rest, "gpt2: decode(encode(text)) != text");
    }
    check_stream(tok, *ids, skip_special, f.names[which].c_str());
    return 0;
  }
  // Ids from pairs of bytes: mostly inside the vocabulary, a few just outside it on either side.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < rest.size(); i += 2) {
    const uint32_t v = static_cast<uint8_t>(rest[i]) | (static_cast<uint32_t>(static_cast<uint8_t>(rest[i + 1])) << 8);
    ids.push_back(static_cast<int32_t>(v % static_cast<uint32_t>(vocab + 8)) - 4);
  }
  check_stream(tok, ids, skip_special, f.names[which].c_str());
  return 0;
}
