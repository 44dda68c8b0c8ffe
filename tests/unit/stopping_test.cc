// Stopping: EOS / length per token; stop strings across token boundaries with the held-back prefix.
#include "engine/runtime/stopping.h"

#include <gtest/gtest.h>

namespace zi {
namespace {

TEST(Stopping, EosAndLength) {
  TokenStopCriteria c{3, {2, 7}, false};
  EXPECT_EQ(check_token(c, 5, 1), FinishReason::kNone);
  EXPECT_EQ(check_token(c, 7, 1), FinishReason::kEos);
  EXPECT_EQ(check_token(c, 2, 3), FinishReason::kEos);  // EOS wins over length: not returned
  EXPECT_EQ(check_token(c, 5, 3), FinishReason::kLength);
  c.ignore_eos = true;
  EXPECT_EQ(check_token(c, 7, 1), FinishReason::kNone);
  EXPECT_EQ(finish_reason_name(FinishReason::kStop), "stop");
  EXPECT_EQ(finish_reason_name(FinishReason::kEos), "eos");
  EXPECT_EQ(finish_reason_name(FinishReason::kLength), "length");
}

// Feeds pieces, returns everything emitted (+ flush) and whether it stopped.
std::pair<std::string, bool> run(std::vector<std::string> stops, std::vector<std::string> pieces) {
  StopStringMatcher m(std::move(stops));
  std::string out;
  bool stopped = false;
  for (const auto& p : pieces) {
    auto r = m.push(p);
    out += r.emit;
    stopped = r.stopped;
    if (stopped) break;
  }
  if (!stopped) out += m.flush();
  return {out, stopped};
}

TEST(Stopping, StopStringSplitAcrossTokens) {
  EXPECT_EQ(run({"\n\n"}, {"Hello", "\n", "\nworld"}), std::make_pair(std::string("Hello"), true));
  EXPECT_EQ(run({"END"}, {"a", "bE", "N", "Dcd"}), std::make_pair(std::string("ab"), true));
  EXPECT_EQ(run({"END"}, {"a", "bE", "N", "x"}), std::make_pair(std::string("abENx"), false));
  // Earliest of several stop strings.
  EXPECT_EQ(run({"xyz", "b"}, {"axyzb"}), std::make_pair(std::string("a"), true));
  // No stop strings: passthrough.
  EXPECT_EQ(run({}, {"a", "b"}), std::make_pair(std::string("ab"), false));
}

TEST(Stopping, HoldsBackOnlyAPossiblePrefix) {
  StopStringMatcher m({"<|end|>"});
  auto r = m.push("text <|e");
  EXPECT_EQ(r.emit, "text ");
  EXPECT_FALSE(r.stopped);
  r = m.push("x");
  EXPECT_EQ(r.emit, "<|ex");  // could no longer become the stop string
  r = m.push("<|end|> more");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.emit, "");
  EXPECT_TRUE(m.push("later").stopped);
  EXPECT_EQ(m.flush(), "");
}

TEST(Stopping, Utf8TextIsNotSplitInsideACharacter) {
  // "é" is two bytes; the stop string starts with it, so the held part starts on a character boundary.
  StopStringMatcher m({"é!"});
  auto r = m.push("café");
  EXPECT_EQ(r.emit, "caf");
  r = m.push("?");
  EXPECT_EQ(r.emit, "é?");
}

}  // namespace
}  // namespace zi
