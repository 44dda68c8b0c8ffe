// `zeroinfer tokenize`: one JSON line {"ids", "decoded"} on stdout, errors on stderr with exit 1 (bad
// input) or 2 (bad usage). Runs the built binary (ZI_BINARY).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "tests/unit/tokenizer_test_util.h"

namespace zi {
namespace {

using testing_tok::Json;

struct CliRun {
  int rc = -1;
  std::string out;
};

// Runs the binary with `args` (already shell-quoted); stderr is discarded.
CliRun run_cli(const std::string& args) {
  CliRun r;
  const std::string cmd = std::string(ZI_BINARY) + " tokenize " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(TokenizeCli, PrintsIdsAndDecodedTextAsTransformers) {
  const std::string dir = testing_tok::data_dir() + "/spbpe";
  Json cases = testing_tok::read_json_file(dir + "/encode_cases.json");
  for (size_t i : {0u, 9u, 14u}) {  // ASCII, accents, emoji
    const std::string text = cases[i]["text"];
    CliRun r = run_cli("--model '" + dir + "' --text '" + text + "'");
    ASSERT_EQ(r.rc, 0) << text;
    ASSERT_FALSE(r.out.empty());
    EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one line: " << r.out;
    Json j = Json::parse(r.out);
    EXPECT_EQ(j["ids"], cases[i]["ids"]) << text;
    EXPECT_EQ(j["decoded"], cases[i]["decoded"]) << text;
    EXPECT_EQ(r.out.rfind("{\"ids\":", 0), 0u) << r.out;  // ids first, as documented
  }
  CliRun plain = run_cli("--model '" + dir + "' --text 'Hello world' --no-special");
  ASSERT_EQ(plain.rc, 0);
  Json j = Json::parse(plain.out);
  EXPECT_EQ(j["ids"].front(), 423) << "no <s> with --no-special";
  EXPECT_EQ(j["decoded"], "Hello world");
}

TEST(TokenizeCli, ErrorsExitNonZeroWithNothingOnStdout) {
  CliRun missing = run_cli("--model /nonexistent/dir --text hi");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_TRUE(missing.out.empty());
  CliRun bad_utf8 = run_cli("--model '" + testing_tok::data_dir() + "/gpt2' --text \"$(printf '\\377')\"");
  EXPECT_EQ(bad_utf8.rc, 1);
  EXPECT_TRUE(bad_utf8.out.empty());
  CliRun usage = run_cli("--model '" + testing_tok::data_dir() + "/gpt2'");
  EXPECT_EQ(usage.rc, 2);
  EXPECT_TRUE(usage.out.empty());
}

}  // namespace
}  // namespace zi
