// `zeroinfer generate` end to end (the built binary, ZI_BINARY): --json output and --logits-out against the
// transformers fixtures, EOS / stop / length endings, seeded sampling, and exit codes for bad usage (2) and errors (1).
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"

namespace zi {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kModels = std::string(ZI_TEST_DATA) + "/models";

// Scratch paths unique to this process (several builds may run this test at once).
std::string scratch(const std::string& name) {
  return ::testing::TempDir() + "/zi_generate_" + std::to_string(::getpid()) + "_" + name;
}

struct CmdResult {
  int rc = -1;
  std::string out;
  std::string err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q.append("'\\''");
    else
      q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

CmdResult run(const std::vector<std::string>& args) {
  const std::string err_file = scratch("stderr.txt");
  std::string cmd = quote(ZI_BINARY);
  for (const auto& a : args) cmd.append(" ").append(quote(a));
  cmd.append(" 2>").append(quote(err_file));
  CmdResult r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream e(err_file);
  r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  return r;
}

json last_json_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return json::parse(nl == std::string::npos ? s : s.substr(nl + 1));
}

std::string ids_arg(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s.push_back(',');
    s.append(std::to_string(ids[i]));
  }
  return s;
}

template <class T>
std::vector<T> tensor(const SafetensorsFile& f, const std::string& name, std::vector<int64_t>* shape = nullptr) {
  const TensorInfo* t = f.find(name);
  EXPECT_TRUE(t) << name;
  if (!t) return {};
  if (shape) *shape = t->shape;
  std::vector<T> v(t->numel());
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}

double rel_err(const float* got, const float* ref, size_t n) {
  double max_ref = 0, max_d = 0;
  for (size_t i = 0; i < n; ++i) {
    max_ref = std::max(max_ref, std::abs(double(ref[i])));
    max_d = std::max(max_d, std::abs(double(got[i]) - ref[i]));
  }
  return max_d / max_ref;
}

class GenerateFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(GenerateFixture, JsonAndLogitsMatchTransformers) {
  const std::string dir = kModels + "/" + GetParam();
  auto ref = SafetensorsFile::Open(dir + "/reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  for (int i = 0; i < 3; ++i) {
    const std::string s = std::to_string(i);
    auto prompt = tensor<int32_t>(**ref, "prompt_" + s);
    auto greedy = tensor<int32_t>(**ref, "greedy_" + s);
    std::vector<int64_t> prefill_shape;
    auto prefill = tensor<float>(**ref, "prefill_logits_" + s, &prefill_shape);
    auto steps = tensor<float>(**ref, "greedy_logits_" + s);
    const std::string logits_path = scratch("logits_" + GetParam() + s + ".safetensors");
    CmdResult r = run({"generate", "--model", dir, "--prompt-ids", ids_arg(prompt), "--max-new-tokens", "12",
                 "--ignore-eos", "--json", "--logits-out", logits_path});
    ASSERT_EQ(r.rc, 0) << r.err;
    json j = last_json_line(r.out);
    EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), greedy) << "prompt " << i;
    EXPECT_EQ(j["finish_reason"], "length");
    EXPECT_TRUE(j["text"].is_string());
    auto lf = SafetensorsFile::Open(logits_path);
    ASSERT_TRUE(lf.ok()) << lf.status();
    std::vector<int64_t> got_prefill_shape, got_step_shape;
    auto got_prefill = tensor<float>(**lf, "prefill_logits", &got_prefill_shape);
    auto got_steps = tensor<float>(**lf, "step_logits", &got_step_shape);
    ASSERT_EQ(got_prefill_shape, prefill_shape);
    const int64_t V = prefill_shape[1];
    ASSERT_EQ(got_step_shape, (std::vector<int64_t>{12, V}));
    EXPECT_LT(rel_err(got_prefill.data(), prefill.data(), prefill.size()), 1e-4);
    EXPECT_LT(rel_err(got_steps.data(), steps.data(), steps.size()), 1e-4);
    // step_logits[0] is the last prefill row.
    EXPECT_TRUE(std::equal(got_steps.begin(), got_steps.begin() + V, got_prefill.end() - V));
    lf->reset();
    fs::remove(logits_path);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GenerateFixture, ::testing::Values("llama_mha", "mistral"));

// A copy of llama_mha whose generation_config.json names `eos` as the EOS token.
std::string model_with_eos(int32_t eos) {
  const std::string dir = scratch("llama_eos_" + std::to_string(eos));
  fs::remove_all(dir);
  fs::copy(kModels + "/llama_mha", dir, fs::copy_options::recursive);
  fs::permissions(dir + "/generation_config.json", fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(dir + "/generation_config.json") << json{{"eos_token_id", eos}, {"bos_token_id", 1}}.dump();
  return dir;
}

const std::vector<int32_t> kPrompt1 = {15, 1409, 1159, 1131, 1255, 400, 842};
const std::vector<int32_t> kGreedy1 = {85, 1459, 1928, 85, 699, 1436, 1756, 1950, 112, 85, 292, 1641};

TEST(Generate, EosEndsGenerationAndIsNotReturned) {
  const std::string dir = model_with_eos(kGreedy1[2]);
  const std::string logits = scratch("eos_logits.safetensors");
  CmdResult r = run({"generate", "--model", dir, "--prompt-ids", ids_arg(kPrompt1), "--max-new-tokens", "12", "--json",
               "--logits-out", logits});
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = last_json_line(r.out);
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), std::vector<int32_t>(kGreedy1.begin(), kGreedy1.begin() + 2));
  EXPECT_EQ(j["finish_reason"], "eos");
  auto lf = SafetensorsFile::Open(logits);
  ASSERT_TRUE(lf.ok());
  std::vector<int64_t> shape;
  tensor<float>(**lf, "step_logits", &shape);
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 2048}));
  lf->reset();
  fs::remove(logits);
  // --ignore-eos: EOS is an ordinary token, returned and counted.
  r = run({"generate", "--model", dir, "--prompt-ids", ids_arg(kPrompt1), "--max-new-tokens", "5", "--json",
           "--ignore-eos"});
  ASSERT_EQ(r.rc, 0) << r.err;
  j = last_json_line(r.out);
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), std::vector<int32_t>(kGreedy1.begin(), kGreedy1.begin() + 5));
  EXPECT_EQ(j["finish_reason"], "length");
  fs::remove_all(dir);
}

TEST(Generate, StopStringEndsTheTextBeforeIt) {
  const std::string dir = kModels + "/llama_mha";
  CmdResult full = run({"generate", "--model", dir, "--prompt-ids", ids_arg(kPrompt1), "--max-new-tokens", "12", "--json"});
  ASSERT_EQ(full.rc, 0) << full.err;
  const std::string text = last_json_line(full.out)["text"];
  ASSERT_GE(text.size(), 12u);
  // A stop string from the middle of the greedy text: the output is what precedes its first occurrence.
  const std::string stop = text.substr(text.size() / 2, 3);
  CmdResult r = run({"generate", "--model", dir, "--prompt-ids", ids_arg(kPrompt1), "--max-new-tokens", "12", "--json",
               "--stop", "zzzz-never", "--stop", stop});
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = last_json_line(r.out);
  EXPECT_EQ(j["finish_reason"], "stop");
  EXPECT_EQ(j["text"], text.substr(0, text.find(stop)));
  EXPECT_LT(j["token_ids"].size(), 12u);
  // Plain output: the text and a newline.
  CmdResult plain = run({"generate", "--model", dir, "--prompt-ids", ids_arg(kPrompt1), "--max-new-tokens", "12"});
  ASSERT_EQ(plain.rc, 0) << plain.err;
  EXPECT_EQ(plain.out, text + "\n");
}

TEST(Generate, PromptTextIsTokenizedWithSpecialTokens) {
  const std::string dir = kModels + "/llama_mha";
  CmdResult a = run({"generate", "--model", dir, "--prompt", "hello world", "--max-new-tokens", "4", "--json"});
  ASSERT_EQ(a.rc, 0) << a.err;
  CmdResult t = run({"tokenize", "--model", dir, "--text", "hello world"});
  ASSERT_EQ(t.rc, 0) << t.err;
  CmdResult b = run({"generate", "--model", dir, "--prompt-ids", ids_arg(last_json_line(t.out)["ids"]),
               "--max-new-tokens", "4", "--json"});
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(last_json_line(a.out), last_json_line(b.out));
}

TEST(Generate, SeededSamplingIsReproducible) {
  const std::string dir = kModels + "/mistral";
  auto sample = [&](const std::string& seed) {
    CmdResult r = run({"generate", "--model", dir, "--prompt-ids", "1,2,3", "--max-new-tokens", "16", "--temperature",
                 "1.0", "--top-k", "100", "--top-p", "0.95", "--repetition-penalty", "1.1", "--seed", seed,
                 "--ignore-eos", "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    return last_json_line(r.out)["token_ids"].get<std::vector<int32_t>>();
  };
  const auto a = sample("7");
  EXPECT_EQ(a.size(), 16u);
  EXPECT_EQ(a, sample("7"));
  EXPECT_NE(a, sample("8"));
}

TEST(Generate, BadUsageExitsTwoAndNamesTheFlag) {
  const std::string dir = kModels + "/llama_mha";
  struct Case {
    std::vector<std::string> args;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      // The request's checks are serve's (server/grpc/validate.cc), naming the flag instead of the field.
      {{"--prompt-ids", "1,2048"}, "--prompt-ids: token id 2048 is out of range (vocab_size 2048)"},
      {{"--prompt-ids", "1,2", "--max-new-tokens", "255"},
       "--max-new-tokens: prompt (2 tokens) + max_new_tokens (255) = 257 exceeds the model context of 256 tokens"},
      {{"--prompt-ids", "1,2", "--max-context", "8", "--max-new-tokens", "7"}, "exceeds the model context of 8 tokens"},
      {{"--prompt-ids", "1", "--top-p", "0"}, "--top-p: must be in (0, 1], got 0"},
      {{"--prompt-ids", "1", "--top-p", "1.01"}, "--top-p"},
      {{"--prompt-ids", "1", "--temperature", "-0.5"}, "--temperature"},
      {{"--prompt-ids", "1", "--temperature", "nan"}, "--temperature"},
      {{"--prompt-ids", "1", "--repetition-penalty", "0"}, "--repetition-penalty"},
      {{"--prompt-ids", "1", "--max-new-tokens", "0"}, "--max-new-tokens"},
      {{"--prompt-ids", "1,,2"}, "--prompt-ids"},
      {{"--prompt-ids", "1", "--prompt", "x"}, "exclude"},
      {{}, "--prompt"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"generate", "--model", dir};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CmdResult r = run(args);
    EXPECT_EQ(r.rc, 2) << c.fragment << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.fragment));
    EXPECT_EQ(r.out, "") << c.fragment;
  }
}

// generate runs serve's path: N CPU worker ranks (ZeRO-3 partitions gathered every step) and chunked prefill give
// the one-rank tokens and logits, and the engine flags it takes are honoured, not ignored.
TEST(Generate, RanksAndChunkedPrefillGiveTheOneRankTokensAndLogits) {
  const std::string dir = kModels + "/llama_mha";
  auto run_json = [&](std::vector<std::string> extra, const std::string& logits) {
    std::vector<std::string> args = {"generate", "--model", dir, "--prompt-ids", ids_arg(kPrompt1), "--max-new-tokens",
                                     "12", "--ignore-eos", "--json", "--device", "cpu", "--logits-out", logits};
    args.insert(args.end(), extra.begin(), extra.end());
    CmdResult r = run(args);
    EXPECT_EQ(r.rc, 0) << r.err;
    return r.rc == 0 ? last_json_line(r.out) : json();
  };
  const std::string one = scratch("one_rank.safetensors"), two = scratch("two_ranks.safetensors"),
                    chunked = scratch("chunked.safetensors");
  const json a = run_json({}, one);
  const json b = run_json({"--num-gpus", "2"}, two);
  const json c = run_json({"--max-num-batched-tokens", "2"}, chunked);  // the 7-token prompt over 4 steps
  EXPECT_EQ(a["token_ids"].get<std::vector<int32_t>>(), kGreedy1);
  EXPECT_EQ(b["token_ids"], a["token_ids"]);
  EXPECT_EQ(c["token_ids"], a["token_ids"]);
  for (const std::string& other : {two, chunked}) {
    auto x = SafetensorsFile::Open(one), y = SafetensorsFile::Open(other);
    ASSERT_TRUE(x.ok() && y.ok());
    for (const char* name : {"prefill_logits", "step_logits"}) {
      std::vector<int64_t> xs, ys;
      auto xv = tensor<float>(**x, name, &xs);
      auto yv = tensor<float>(**y, name, &ys);
      ASSERT_EQ(xs, ys) << other << " " << name;
      EXPECT_LT(rel_err(yv.data(), xv.data(), xv.size()), 1e-4)
          << other << " " << name;
    }
  }
  // --kv-cache-bytes reaches the engine: a cache too small for one block is refused by name.
  CmdResult r = run({"generate", "--model", dir, "--prompt-ids", "1,2", "--device", "cpu", "--kv-cache-bytes", "1KiB"});
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("KV cache too small"));
}

TEST(Generate, ModelErrorsExitOne) {
  CmdResult r = run({"generate", "--model", "/nonexistent/model", "--prompt-ids", "1"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/model"));
  const std::string gpt2 = scratch("gpt2");
  std::filesystem::create_directories(gpt2);
  std::ofstream(gpt2 + "/config.json") << R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 8})";
  r = run({"generate", "--model", gpt2, "--prompt-ids", "1"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("GPT2LMHeadModel is not supported yet"));
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace zi
