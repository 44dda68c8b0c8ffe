// Tokenizer against transformers' answers: the fixtures' encode_cases.json (tests/data/tokenizers/*/)
// and the oracle_<name>.json files recorded by tests/data/tokenizers/gen_oracle.py (transformers 5.17 /
// tokenizers 0.23 on the fixtures and on variants with Llama-3 / Metaspace / added-token layouts).
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "engine/tokenizer/utf8.h"
#include "tests/unit/tokenizer_test_util.h"

namespace zi {
namespace {

using testing_tok::Json;
using testing_tok::TempDir;

std::string show(const std::string& s) { return Json(s).dump(); }

// The fixtures' own cases: gpt2 encoded without special tokens, spbpe with them (fixtures README).
TEST(TokenizerFixtures, EncodeCasesMatchTransformersExactly) {
  TempDir tmp;
  for (const auto& [name, add_special] : {std::pair{"gpt2", false}, std::pair{"spbpe", true}}) {
    auto tok = testing_tok::load_named(name, tmp);
    ASSERT_TRUE(tok);
    Json cases = testing_tok::read_json_file(testing_tok::data_dir() + "/" + name + "/encode_cases.json");
    ASSERT_GE(cases.size(), 20u);
    for (const Json& c : cases) {
      const std::string text = c["text"];
      auto ids = tok->encode(text, add_special);
      ASSERT_TRUE(ids.ok()) << name << " " << show(text) << ": " << ids.status();
      EXPECT_EQ(*ids, testing_tok::to_ids(c["ids"])) << name << " text " << show(text);
      EXPECT_EQ(tok->decode(testing_tok::to_ids(c["ids"]), false), c["decoded"].get<std::string>())
          << name << " text " << show(text);
    }
  }
}

class TokenizerOracle : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerOracle, EncodeWithAndWithoutSpecialTokens) {
  TempDir tmp;
  auto tok = testing_tok::load_named(GetParam(), tmp);
  ASSERT_TRUE(tok);
  Json o = testing_tok::read_json_file(testing_tok::data_dir() + "/oracle_" + GetParam() + ".json");
  ASSERT_GE(o["encode"].size(), 100u);
  for (const Json& c : o["encode"]) {
    const std::string text = c["text"];
    auto ids = tok->encode(text, true);
    ASSERT_TRUE(ids.ok()) << show(text) << ": " << ids.status();
    EXPECT_EQ(*ids, testing_tok::to_ids(c["ids"])) << "text " << show(text);
    auto plain = tok->encode(text, false);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(*plain, testing_tok::to_ids(c["ids_plain"])) << "text " << show(text);
  }
}

TEST_P(TokenizerOracle, DecodeWithAndWithoutSkippingSpecialTokens) {
  TempDir tmp;
  auto tok = testing_tok::load_named(GetParam(), tmp);
  ASSERT_TRUE(tok);
  Json o = testing_tok::read_json_file(testing_tok::data_dir() + "/oracle_" + GetParam() + ".json");
  for (const char* part : {"encode", "decode"}) {
    for (const Json& c : o[part]) {
      auto ids = testing_tok::to_ids(c["ids"]);
      EXPECT_EQ(tok->decode(ids, false), c["decoded"].get<std::string>()) << part << " ids " << c["ids"].dump();
      EXPECT_EQ(tok->decode(ids, true), c["decoded_skip"].get<std::string>()) << part << " ids " << c["ids"].dump();
    }
  }
}

// Streaming: the chunks are valid UTF-8 each, and together they are decode(ids) — for the recorded
// encodings and for the random id sequences (invalid byte runs, special tokens) of every oracle.
TEST_P(TokenizerOracle, StreamingConcatenationEqualsDecode) {
  TempDir tmp;
  auto tok = testing_tok::load_named(GetParam(), tmp);
  ASSERT_TRUE(tok);
  Json o = testing_tok::read_json_file(testing_tok::data_dir() + "/oracle_" + GetParam() + ".json");
  for (const char* part : {"encode", "decode"}) {
    for (const Json& c : o[part]) {
      auto ids = testing_tok::to_ids(c["ids"]);
      for (bool skip : {false, true}) {
        bool valid = false;
        std::string streamed = testing_tok::stream_decode(*tok, ids, skip, &valid);
        EXPECT_TRUE(valid) << "ids " << c["ids"].dump();
        EXPECT_EQ(streamed, tok->decode(ids, skip)) << part << " skip=" << skip << " ids " << c["ids"].dump();
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerOracle, ::testing::ValuesIn(testing_tok::oracle_names()),
                         [](const auto& info) { return info.param; });

TEST(TokenizerFixtures, StreamingOfFixtureCasesEqualsDecode) {
  TempDir tmp;
  for (const char* name : {"gpt2", "spbpe"}) {
    auto tok = testing_tok::load_named(name, tmp);
    ASSERT_TRUE(tok);
    Json cases = testing_tok::read_json_file(testing_tok::data_dir() + "/" + name + "/encode_cases.json");
    for (const Json& c : cases) {
      auto ids = testing_tok::to_ids(c["ids"]);
      bool valid = false;
      EXPECT_EQ(testing_tok::stream_decode(*tok, ids, false, &valid), c["decoded"].get<std::string>());
      EXPECT_TRUE(valid);
    }
  }
}

TEST(TokenizerStreaming, EmitsCompleteCharactersAsSoonAsTheyAreFinal) {
  TempDir tmp;
  auto tok = testing_tok::load_named("gpt2", tmp);
  ASSERT_TRUE(tok);
  // "😀" is two byte-level tokens in GPT-2: nothing may come out after the first, the emoji after the second.
  auto ids = tok->encode("x😀y", false);
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 4u);
  IncrementalDetokenizer d(*tok, false);
  EXPECT_EQ(d.push((*ids)[0]), "x");
  EXPECT_EQ(d.push((*ids)[1]), "");
  EXPECT_EQ(d.push((*ids)[2]), "😀");
  EXPECT_EQ(d.push((*ids)[3]), "y");
  EXPECT_EQ(d.flush(), "");
  // A character that never completes comes out as U+FFFD at flush, as decode gives it.
  IncrementalDetokenizer d2(*tok, false);
  EXPECT_EQ(d2.push((*ids)[1]), "");
  EXPECT_EQ(d2.flush(), tok->decode(std::vector<int32_t>{(*ids)[1]}, false));
  EXPECT_EQ(d2.flush(), "");
}

TEST(TokenizerStreaming, SentencePieceLeadingSpaceIsStrippedOnlyAtTheStart) {
  TempDir tmp;
  auto tok = testing_tok::load_named("spbpe", tmp);
  ASSERT_TRUE(tok);
  auto ids = tok->encode("Hello world again", true);
  ASSERT_TRUE(ids.ok());
  for (bool skip : {false, true}) {
    IncrementalDetokenizer d(*tok, skip);
    std::string all;
    for (int32_t id : *ids) all += d.push(id);
    all += d.flush();
    EXPECT_EQ(all, skip ? "Hello world again" : "<s> Hello world again");
  }
}

TEST(TokenizerInput, InvalidUtf8IsAnErrorNotACrash) {
  TempDir tmp;
  for (const char* name : {"gpt2", "spbpe"}) {
    auto tok = testing_tok::load_named(name, tmp);
    ASSERT_TRUE(tok);
    for (std::string bad : {std::string("\xff"), std::string("ok\xc3"), std::string("\xed\xa0\x80"),
                            std::string("a\xc0\xafz"), std::string("\xf4\x90\x80\x80"), std::string("\x80")}) {
      auto r = tok->encode(bad, true);
      ASSERT_FALSE(r.ok()) << show(tok::utf8_lossy(bad));
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(r.status().message().find("not valid UTF-8"), std::string_view::npos) << r.status();
    }
  }
}

// Random byte strings: invalid ones are refused, valid ones round-trip through encode/decode
// (both fixtures are lossless on valid text: byte-level BPE and byte-fallback BPE).
TEST(TokenizerInput, ArbitraryBytesAreRefusedOrRoundTrip) {
  TempDir tmp;
  std::mt19937 rng(7);
  for (const char* name : {"gpt2", "spbpe"}) {
    auto tok = testing_tok::load_named(name, tmp);
    ASSERT_TRUE(tok);
    int valid_seen = 0;
    for (int n = 0; n < 400; ++n) {
      std::string s(rng() % 24, '\0');
      for (char& c : s) c = static_cast<char>(n % 2 ? rng() % 256 : (rng() % 2 ? 0x20 + rng() % 0x60 : 0xC0 + rng() % 0x30));
      if (n % 4 == 0) s = tok::utf8_lossy(s);
      auto r = tok->encode(s, false);
      ASSERT_EQ(r.ok(), tok::is_valid_utf8(s));
      if (!r.ok()) continue;
      ++valid_seen;
      EXPECT_EQ(tok->decode(*r, false), s) << show(s);
    }
    EXPECT_GT(valid_seen, 100);
  }
}

TEST(TokenizerDecode, AnyIdSequenceDecodesToValidUtf8) {
  TempDir tmp;
  std::mt19937 rng(11);
  for (const std::string& name : testing_tok::oracle_names()) {
    auto tok = testing_tok::load_named(name, tmp);
    ASSERT_TRUE(tok);
    const int32_t v = tok->vocab_size();
    for (int n = 0; n < 300; ++n) {
      std::vector<int32_t> ids(1 + rng() % 12);
      for (int32_t& id : ids) id = (rng() % 3 == 0) ? static_cast<int32_t>(rng() % 300) : static_cast<int32_t>(rng() % (v + 10)) - 5;
      for (bool skip : {false, true}) {
        std::string s = tok->decode(ids, skip);
        EXPECT_TRUE(tok::is_valid_utf8(s)) << name;
        bool valid = false;
        EXPECT_EQ(testing_tok::stream_decode(*tok, ids, skip, &valid), s) << name << " skip=" << skip << " ids " << Json(ids).dump();
        EXPECT_TRUE(valid);
      }
    }
  }
}

TEST(TokenizerDecode, ByteFallbackInvalidRunsBecomeOneReplacementPerByte) {
  TempDir tmp;
  auto tok = testing_tok::load_named("spbpe", tmp);
  ASSERT_TRUE(tok);
  auto id = [&](const char* t) { return *tok->token_to_id(t); };
  const std::string fffd(tok::kReplacementChar);
  // "日" = E6 97 A5: whole, cut, and with a stray byte; ASCII byte tokens inside an invalid run turn to U+FFFD too.
  EXPECT_EQ(tok->decode(std::vector<int32_t>{id("<0xE6>"), id("<0x97>"), id("<0xA5>")}, false), "日");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{id("<0xE6>"), id("<0x97>")}, false), fffd + fffd);
  EXPECT_EQ(tok->decode(std::vector<int32_t>{id("<0x41>"), id("<0xFF>")}, false), fffd + fffd);
}

TEST(TokenizerLoad, MergesAsStringsOrPairsGiveTheSameTokenizer) {
  TempDir tmp;
  Json spec = {{"base", "gpt2"}, {"merges_as_pairs", true}};
  std::string dir = tmp.path + "/pairs";
  std::filesystem::create_directories(dir);
  testing_tok::write_file(dir + "/tokenizer.json", testing_tok::build_variant_json(spec).dump());
  auto pairs = Tokenizer::FromDir(dir);
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  auto strings = testing_tok::load_named("gpt2", tmp);
  for (const char* text : {"Hello world", "ZeRO-Inference streams parameters", "日本語 😀 x"}) {
    EXPECT_EQ(*(*pairs)->encode(text, false), *strings->encode(text, false)) << text;
  }
}

// Unsupported components and bad fields are errors that name the file and the component.
TEST(TokenizerLoad, UnsupportedComponentsAreNamed) {
  TempDir tmp;
  Json base = testing_tok::read_json_file(testing_tok::data_dir() + "/spbpe/tokenizer.json");
  struct Case {
    const char* key;
    Json value;
    const char* message;
  } cases[] = {
      {"normalizer", {{"type", "BertNormalizer"}}, "normalizer type \"BertNormalizer\" is not supported"},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}, "pre_tokenizer type \"BertPreTokenizer\" is not supported"},
      {"decoder", {{"type", "WordPiece"}}, "decoder type \"WordPiece\" is not supported"},
      {"post_processor", {{"type", "Nope"}}, "post_processor type \"Nope\" is not supported"},
      {"model", {{"type", "Unigram"}, {"vocab", Json::array()}}, "model type \"Unigram\" is not supported"},
      {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
       "does not compile"},
  };
  for (const Case& c : cases) {
    Json j = base;
    j[c.key] = c.value;
    const std::string path = tmp.path + "/tokenizer.json";
    testing_tok::write_file(path, j.dump());
    auto tok = Tokenizer::FromFile(path);
    ASSERT_FALSE(tok.ok()) << c.message;
    EXPECT_NE(tok.status().message().find(c.message), std::string_view::npos) << tok.status();
    EXPECT_NE(tok.status().message().find(path), std::string_view::npos) << tok.status();
  }
  Json j = base;
  j["model"]["merges"][0] = "a b c";
  testing_tok::write_file(tmp.path + "/tokenizer.json", j.dump());
  auto bad = Tokenizer::FromDir(tmp.path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("model.merges[0]"), std::string_view::npos) << bad.status();
  EXPECT_FALSE(Tokenizer::FromDir(tmp.path + "/missing").ok());
  testing_tok::write_file(tmp.path + "/tokenizer.json", "{not json");
  EXPECT_FALSE(Tokenizer::FromDir(tmp.path).ok());
}

// The model fixtures' tokenizers (tests/data/models/*/, copied there by the engine's tests) load and agree
// with the spbpe fixture they were made from.
TEST(TokenizerLoad, ModelFixtureTokenizersLoad) {
  const std::string models = std::string(ZI_TEST_DATA) + "/models";
  if (!std::filesystem::exists(models)) GTEST_SKIP() << "no " << models;
  TempDir tmp;
  auto ref = testing_tok::load_named("spbpe", tmp);
  int loaded = 0;
  for (const auto& e : std::filesystem::directory_iterator(models)) {
    if (!std::filesystem::exists(e.path() / "tokenizer.json")) continue;
    auto tok = Tokenizer::FromDir(e.path().string());
    ASSERT_TRUE(tok.ok()) << e.path() << ": " << tok.status();
    EXPECT_EQ(*(*tok)->encode("Hello world", true), *ref->encode("Hello world", true)) << e.path();
    ++loaded;
  }
  EXPECT_GT(loaded, 0);
}

TEST(TokenizerApi, VocabularyLookups) {
  TempDir tmp;
  auto tok = testing_tok::load_named("gpt2", tmp);
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->vocab_size(), 50257);
  EXPECT_EQ(tok->id_to_token(15496), "Hello");
  EXPECT_EQ(tok->id_to_token(50256), "<|endoftext|>");
  EXPECT_EQ(tok->id_to_token(-1), "");
  EXPECT_EQ(tok->id_to_token(1 << 30), "");
  EXPECT_EQ(tok->token_to_id("Hello"), 15496);
  EXPECT_FALSE(tok->token_to_id("no such token").has_value());
  EXPECT_TRUE(tok->is_special(50256));
  EXPECT_FALSE(tok->is_special(15496));
}

// Many threads encode at once (the server does): same answers as one thread.
TEST(TokenizerThreads, ConcurrentEncodeGivesTheSameIds) {
  TempDir tmp;
  auto tok = testing_tok::load_named("llama3ish", tmp);
  ASSERT_TRUE(tok);
  Json o = testing_tok::read_json_file(testing_tok::data_dir() + "/oracle_llama3ish.json");
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (size_t i = t; i < o["encode"].size(); i += 2) {
          const Json& c = o["encode"][i];
          auto ids = tok->encode(c["text"].get<std::string>(), true);
          if (!ids.ok() || *ids != testing_tok::to_ids(c["ids"])) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace zi
