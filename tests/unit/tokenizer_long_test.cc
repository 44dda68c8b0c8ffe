// Long inputs: 1 MB of one repeated character must not hang (BPE merges are O(n log n) per word; the
// GPT-2 regex makes one pre-token of the whole run). CTest's TIMEOUT for this binary (tests/CMakeLists.txt)
// is the hang guard; the speed itself is measured in tests/bench/tokenizer_bench.cc.
#include <gtest/gtest.h>

#include "tests/unit/tokenizer_test_util.h"

namespace zi {
namespace {

using testing_tok::TempDir;

constexpr size_t kMiB = 1 << 20;

std::string repeat(std::string_view unit, size_t bytes) {
  std::string s;
  s.reserve(bytes + unit.size());
  while (s.size() + unit.size() <= bytes) s.append(unit);
  return s;
}

// transformers gives 50 x "aaaa" (24794) for 200 'a' with GPT-2 (fixture encode_cases.json): the
// leftmost-first merge order pairs the run evenly, so 1 MiB of 'a' is 2^18 of that token.
TEST(TokenizerLong, Gpt2MegabyteOfOneLetter) {
  TempDir tmp;
  auto tok = testing_tok::load_named("gpt2", tmp);
  ASSERT_TRUE(tok);
  auto ids = tok->encode(repeat("a", kMiB), false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, std::vector<int32_t>(kMiB / 4, 24794));
}

// spbpe has no "aa" merge: <s>, "▁" then one token per 'a' (fixture: [1, 423, 325, 325, ...]).
TEST(TokenizerLong, SentencePieceMegabyteOfOneLetter) {
  TempDir tmp;
  auto tok = testing_tok::load_named("spbpe", tmp);
  ASSERT_TRUE(tok);
  auto ids = tok->encode(repeat("a", kMiB), true);
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_EQ(ids->size(), kMiB + 2);
  EXPECT_EQ((*ids)[0], 1);
  EXPECT_EQ((*ids)[1], 423);
  EXPECT_EQ(std::count(ids->begin() + 2, ids->end(), 325), static_cast<long>(kMiB));
}

// Other long runs: spaces and a CJK character (byte-level pieces / byte fallback), digits and newlines
// under the Llama-3 regex. Each must come back exactly through decode.
TEST(TokenizerLong, MegabyteRunsRoundTrip) {
  TempDir tmp;
  const std::pair<const char*, std::vector<std::string_view>> runs[] = {
      {"gpt2", {" ", "日"}}, {"spbpe", {" ", "日"}}, {"llama3ish", {"7", "\n"}}};
  for (const auto& [name, units] : runs) {
    auto tok = testing_tok::load_named(name, tmp);
    ASSERT_TRUE(tok);
    for (std::string_view unit : units) {
      const std::string text = repeat(unit, kMiB);
      auto ids = tok->encode(text, false);
      ASSERT_TRUE(ids.ok()) << name << ": " << ids.status();
      EXPECT_FALSE(ids->empty());
      EXPECT_EQ(tok->decode(*ids, false), text) << name << " unit " << unit;
    }
  }
}

}  // namespace
}  // namespace zi
