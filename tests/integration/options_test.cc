// One knob, one meaning on every command line (the built binary, ZI_BINARY): every engine knob that serve, generate
// and bench all take is given as a flag to each of them with `--print-options`, and each prints the same value for
// its YAML key (plan too, which takes them over its --config); a bad value is refused by each with exit 2 and the
// same message; --cpu-offload / --disk-offload mean offload.tier cpu / nvme everywhere; and a flag a command does
// not offer is refused (exit 2), never silently ignored.
//
// A new knob of that kind needs a row in kSamples below (docs/DESIGN.md "Adding a knob"): the test fails without one.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/config/knobs.h"

namespace zi {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using json = nlohmann::ordered_json;  // keys in the order printed (the table's)
namespace fs = std::filesystem;
using server::Command;
using server::Knob;

const std::string kModel = std::string(ZI_SOURCE_DIR) + "/tools/demo_model/kjv-llama";

// A sample flag value per knob, other than every command's default, and what --print-options shows for it.
struct Sample {
  const char* key;
  std::optional<std::string> value;  // nullopt: a switch (Knob::bare) given alone
  std::string printed;               // the key's value in --print-options' JSON
  std::optional<std::string> bad;    // a value the flag refuses; nullopt when every text is valid (say why)
};

const std::vector<Sample> kSamples = {
    {"model.dtype", "float16", "float16", "bogus"},
    {"model.max_context", "512", "512", "bogus"},
    {"model.enforce_eager", std::nullopt, "true", "bogus"},
    {"device", "cpu", "cpu", "bogus"},
    {"parallel.num_gpus", "2", "2", "bogus"},
    {"parallel.cpu_communicator", "gloo", "gloo", "bogus"},
    {"memory.gpu_limit", "48GiB", "51539607552", "bogus"},
    {"memory.host_limit", "1.5GiB", "1610612736", "bogus"},
    {"offload.tier", "cpu", "cpu", "bogus"},
    {"offload.dir", "zi-store/rank", "zi-store/rank", std::nullopt},  // any path; relative = as given
    {"offload.pin_memory", "false", "false", "bogus"},
    {"offload.gpu_weights_budget", "1.5GiB", "1610612736", "bogus"},
    {"offload.prefetch_depth", "5", "5", "bogus"},
    {"offload.aio.block_size", "64KiB", "65536", "bogus"},
    {"offload.aio.queue_depth", "32", "32", "bogus"},
    {"quantization.bits", "8", "8", "bogus"},
    {"quantization.group_size", "128", "128", "bogus"},
    {"quantization.embeddings", std::nullopt, "true", "bogus"},
    {"kv_cache.offload", std::nullopt, "true", "bogus"},
    {"kv_cache.offload_attention", "cpu", "cpu", "bogus"},
    {"kv_cache.max_bytes", "64MiB", "67108864", "bogus"},
    {"kv_cache.block_size", "32", "32", "bogus"},
};

constexpr uint32_t kServeGenerateBench = server::kServe | server::kGenerate | server::kBench;

// The knobs this test covers: engine options that serve, generate and bench all take as flags.
std::vector<const Knob*> shared_engine_knobs() {
  std::vector<const Knob*> out;
  for (const Knob& k : server::knobs())
    if (k.engine && (k.commands & kServeGenerateBench) == kServeGenerateBench) out.push_back(&k);
  return out;
}

const Sample* sample_of(const std::string& key) {
  for (const Sample& s : kSamples)
    if (key == s.key) return &s;
  return nullptr;
}

// The first spelling of a knob's flag ("--scheduler-policy,--policy" → "--scheduler-policy"), and all of them.
std::string flag_name(const Knob& k) { return k.flag.substr(0, k.flag.find(',')); }
std::vector<std::string> flag_names(const Knob& k) {
  std::vector<std::string> out;
  for (size_t p = 0; p <= k.flag.size();) {
    size_t e = k.flag.find(',', p);
    if (e == std::string::npos) e = k.flag.size();
    out.push_back(k.flag.substr(p, e - p));
    p = e + 1;
  }
  return out;
}

// Scratch paths unique to this process (several builds may run this test at once).
std::string scratch(const std::string& name) {
  return ::testing::TempDir() + "/zi_options_" + std::to_string(::getpid()) + "_" + name;
}

struct CmdResult {
  int rc = -1;
  std::string out;
  std::string err;
  std::string line;  // the command line, for failure messages
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs ZI_BINARY with `args` (no shell), stdout and stderr captured separately.
CmdResult run(const std::vector<std::string>& args) {
  CmdResult r;
  r.line = "zeroinfer";
  for (const auto& a : args) r.line.append(" ").append(a);
  const std::string out_file = scratch("stdout.txt"), err_file = scratch("stderr.txt");
  std::vector<std::string> argv_s = {ZI_BINARY};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return r;
  if (pid == 0) {
    const int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int in = ::open("/dev/null", O_RDONLY);
    if (out < 0 || err < 0 || in < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out_file);
  r.err = slurp(err_file);
  return r;
}

class Options : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    yaml_ = new std::string(scratch("serve.yaml"));
    std::ofstream(*yaml_) << "model: {path: \"" << kModel << "\"}\n";
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove(*yaml_, ec);
    fs::remove(scratch("stdout.txt"), ec);
    fs::remove(scratch("stderr.txt"), ec);
    delete yaml_;
  }

  // The command line of `command` up to its setting flags: its required arguments and --print-options.
  static std::vector<std::string> base(Command command, bool print = true) {
    std::vector<std::string> a;
    switch (command) {
      case server::kServe: a = {"serve", "--config", *yaml_}; break;
      case server::kGenerate: a = {"generate", "--model", kModel}; break;
      case server::kBench: a = {"bench", "--model", kModel}; break;
      case server::kPlan: a = {"plan", "--config", *yaml_}; break;
      case server::kConvert: a = {"convert", "--model", kModel, "--out", scratch("store")}; break;
    }
    if (print && command != server::kConvert) a.push_back("--print-options");
    return a;
  }

  static const char* name(Command c) {
    switch (c) {
      case server::kServe: return "serve";
      case server::kGenerate: return "generate";
      case server::kBench: return "bench";
      case server::kPlan: return "plan";
      case server::kConvert: return "convert";
    }
    return "?";
  }

  // --print-options' JSON of `command` with `flags`; a failed run or bad JSON fails the test and gives {}.
  static json options(Command command, const std::vector<std::string>& flags) {
    std::vector<std::string> a = base(command);
    a.insert(a.end(), flags.begin(), flags.end());
    const CmdResult r = run(a);
    EXPECT_EQ(r.rc, 0) << r.line << "\nstderr: " << r.err;
    if (r.rc != 0) return json::object();
    try {
      json j = json::parse(r.out);
      EXPECT_TRUE(j.is_object()) << r.line << "\nstdout: " << r.out;
      return j.is_object() ? j : json::object();
    } catch (const json::exception& e) {
      ADD_FAILURE() << r.line << ": stdout is not JSON (" << e.what() << "): " << r.out;
      return json::object();
    }
  }

  static std::string* yaml_;
};
std::string* Options::yaml_ = nullptr;

const std::vector<Command> kShared = {server::kServe, server::kGenerate, server::kBench};
const std::vector<Command> kAllCommands = {server::kServe, server::kGenerate, server::kBench, server::kPlan,
                                           server::kConvert};

TEST_F(Options, EverySharedEngineKnobHasASampleRow) {
  std::set<std::string> covered;
  for (const Knob* k : shared_engine_knobs()) {
    covered.insert(k->key);
    const Sample* s = sample_of(k->key);
    EXPECT_NE(s, nullptr) << k->key << " (" << k->flag << ") has no row in kSamples: add a sample value";
    // A switch (Knob::bare) may be given alone or with a value (--pin-memory=false); other flags need one.
    if (s && !k->bare) {
      EXPECT_TRUE(s->value.has_value()) << k->key << ": the flag takes a value";
    }
  }
  EXPECT_GE(covered.size(), 15u);
  for (const Sample& s : kSamples)
    EXPECT_TRUE(covered.count(s.key)) << s.key << " is in kSamples but is not an engine knob of serve, generate and "
                                         "bench any more: remove its row";
}

// --print-options prints every engine knob, and the defaults are not the samples (so a sample proves its flag).
TEST_F(Options, PrintOptionsPrintsEveryEngineKnob) {
  std::vector<std::string> engine_keys;
  for (const Knob& k : server::knobs())
    if (k.engine) engine_keys.push_back(k.key);
  for (Command c : {server::kServe, server::kGenerate, server::kBench, server::kPlan}) {
    const json j = options(c, {});
    std::vector<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it) {
      keys.push_back(it.key());
      EXPECT_TRUE(it.value().is_string()) << name(c) << ": " << it.key() << " = " << it.value();
    }
    EXPECT_EQ(keys, engine_keys) << name(c);
    EXPECT_EQ(j.value("model.path", ""), kModel) << name(c);
    for (const Sample& s : kSamples)
      EXPECT_NE(j.value(s.key, ""), s.printed) << name(c) << ": the sample of " << s.key << " is its default";
  }
}

TEST_F(Options, EachSharedEngineFlagMeansTheSameInServeGenerateAndBench) {
  for (const Knob* k : shared_engine_knobs()) {
    const Sample* s = sample_of(k->key);
    if (!s) continue;  // EverySharedEngineKnobHasASampleRow fails
    std::vector<std::string> flags = {flag_name(*k)};
    if (s->value) flags.push_back(*s->value);
    std::vector<Command> commands = kShared;
    if (k->commands & server::kPlan) commands.push_back(server::kPlan);
    for (Command c : commands) {
      SCOPED_TRACE(std::string(name(c)) + " " + flags[0] + (s->value ? " " + *s->value : ""));
      const json j = options(c, flags);
      EXPECT_EQ(j.value(k->key, "(missing)"), s->printed) << name(c) << " " << flags[0];
    }
    // The '_' spelling of the flag is the same flag.
    std::string underscored = flags[0];
    for (size_t i = 2; i < underscored.size(); ++i)
      if (underscored[i] == '-') underscored[i] = '_';
    if (underscored != flags[0]) {
      std::vector<std::string> f2 = flags;
      f2[0] = underscored;
      EXPECT_EQ(options(server::kServe, f2).value(k->key, "(missing)"), s->printed) << "serve " << underscored;
    }
  }
}

TEST_F(Options, ABadValueIsRefusedTheSameWayByEachCommand) {
  for (const Knob* k : shared_engine_knobs()) {
    const Sample* s = sample_of(k->key);
    if (!s || !s->bad) continue;
    const std::string flag = flag_name(*k);
    // A bare flag takes no value: "--flag=bogus" is the only way to hand it one.
    const std::vector<std::string> flags =
        s->value ? std::vector<std::string>{flag, *s->bad} : std::vector<std::string>{flag + "=" + *s->bad};
    std::vector<Command> commands = kShared;
    if (k->commands & server::kPlan) commands.push_back(server::kPlan);
    std::optional<std::string> first;
    for (Command c : commands) {
      std::vector<std::string> a = base(c);
      a.insert(a.end(), flags.begin(), flags.end());
      const CmdResult r = run(a);
      EXPECT_EQ(r.rc, 2) << r.line << "\nstdout: " << r.out << "\nstderr: " << r.err;
      EXPECT_EQ(r.out, "") << r.line;
      // One line, "zeroinfer: " and the flag (the knob's own message names it first).
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.line << "\nstderr: " << r.err;
      if (s->value)
        EXPECT_THAT(r.err, StartsWith("zeroinfer: " + flag + ": ")) << r.line;
      else
        EXPECT_THAT(r.err, AllOf(StartsWith("zeroinfer: "), HasSubstr(flag), HasSubstr(*s->bad))) << r.line;
      if (!first) first = r.err;
      EXPECT_EQ(r.err, *first) << r.line << " differs from " << name(commands[0]);
    }
  }
}

TEST_F(Options, CpuAndDiskOffloadAreTheTierInEveryCommand) {
  for (Command c : {server::kServe, server::kGenerate, server::kBench, server::kPlan}) {
    EXPECT_EQ(options(c, {"--cpu-offload"}).value("offload.tier", "(missing)"), "cpu") << name(c);
    EXPECT_EQ(options(c, {"--disk-offload"}).value("offload.tier", "(missing)"), "nvme") << name(c);
  }
  // Together, or with --offload-tier: refused, the same way everywhere.
  const std::vector<std::pair<std::vector<std::string>, std::string>> conflicts = {
      {{"--cpu-offload", "--disk-offload"}, "zeroinfer: --cpu-offload and --disk-offload exclude each other\n"},
      {{"--disk-offload", "--cpu-offload"}, "zeroinfer: --cpu-offload and --disk-offload exclude each other\n"},
      {{"--cpu-offload", "--offload-tier", "cpu"}, "zeroinfer: --cpu-offload and --offload-tier exclude each other\n"},
      {{"--offload-tier", "none", "--disk-offload"},
       "zeroinfer: --disk-offload and --offload-tier exclude each other\n"},
  };
  for (const auto& [flags, message] : conflicts) {
    for (Command c : {server::kServe, server::kGenerate, server::kBench, server::kPlan}) {
      std::vector<std::string> a = base(c);
      a.insert(a.end(), flags.begin(), flags.end());
      const CmdResult r = run(a);
      EXPECT_EQ(r.rc, 2) << r.line << "\nstderr: " << r.err;
      EXPECT_EQ(r.err, message) << r.line;
      EXPECT_EQ(r.out, "") << r.line;
    }
  }
}

// A knob's flag on a command whose row does not list it is a usage error (CLI11's), not a flag quietly dropped.
TEST_F(Options, AFlagACommandDoesNotOfferIsRefused) {
  {
    std::vector<std::string> a = base(server::kConvert, false);
    a.push_back("--kv-offload");
    const CmdResult r = run(a);
    EXPECT_EQ(r.rc, 2) << r.line << "\nstderr: " << r.err;
    EXPECT_EQ(r.err, "zeroinfer: The following argument was not expected: --kv-offload\n") << r.line;
  }
  int checked = 0;
  for (const Knob& k : server::knobs()) {
    if (k.flag.empty()) continue;
    for (Command c : kAllCommands) {
      if (k.commands & c) continue;
      for (const std::string& f : flag_names(k)) {
        // One argument either way, so that CLI11 names it whole: "--flag" (bare) or "--flag=value".
        const std::string arg = k.bare ? f : f + "=1";
        std::vector<std::string> a = base(c, false);
        a.push_back(arg);
        const CmdResult r = run(a);
        EXPECT_EQ(r.rc, 2) << r.line << "\nstdout: " << r.out << "\nstderr: " << r.err;
        EXPECT_EQ(r.err, "zeroinfer: The following argument was not expected: " + arg + "\n") << r.line;
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 20);
  // --cpu-offload / --disk-offload are not convert's either.
  for (const char* f : {"--cpu-offload", "--disk-offload"}) {
    std::vector<std::string> a = base(server::kConvert, false);
    a.push_back(f);
    const CmdResult r = run(a);
    EXPECT_EQ(r.rc, 2) << r.line;
    EXPECT_EQ(r.err, std::string("zeroinfer: The following argument was not expected: ") + f + "\n") << r.line;
  }
}

// bench --gpu-memory-limit-enforce is refused, as usage (2), with the flags it needs named: without a limit, on the
// CPU, and in a build without CUDA (which has no GPU to enforce a limit on).
TEST_F(Options, BenchGpuMemoryLimitEnforceIsRefusedWhereItCannotApply) {
  const std::vector<std::string> shape = {"--prompt-len", "8", "--gen-len", "4", "--loops", "1"};
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, std::vector<std::string>{"--gpu-memory-limit", "4GiB", "--device", "cpu"}}) {
    std::vector<std::string> a = base(server::kBench, false);
    a.insert(a.end(), shape.begin(), shape.end());
    a.push_back("--gpu-memory-limit-enforce");
    a.insert(a.end(), extra.begin(), extra.end());
    const CmdResult r = run(a);
    EXPECT_EQ(r.rc, 2) << r.line << "\nstderr: " << r.err;
    EXPECT_THAT(r.err, ::testing::HasSubstr("zeroinfer: --gpu-memory-limit-enforce ")) << r.line;
#if defined(ZI_WITH_CUDA)
    EXPECT_THAT(r.err, ::testing::HasSubstr(extra.empty() ? "--gpu-memory-limit SIZE > 0" : "--device cpu")) << r.line;
#else
    EXPECT_THAT(r.err, ::testing::HasSubstr("built without CUDA")) << r.line;
#endif
  }
}

// A bare flag (Knob::bare) switches its knob on and takes no value: "--flag=false" must not pass unnoticed (it
// either switches the knob off or is refused) after the knob was switched on by the YAML file (serve) or by the
// bare flag before it (generate, bench).
TEST_F(Options, ABareFlagGivenAValueIsNotIgnored) {
  for (const Knob* k : shared_engine_knobs()) {
    if (!k->bare) continue;
    const std::string arg = flag_name(*k) + "=false";
    for (Command c : kShared) {
      std::vector<std::string> a = base(c);
      a.push_back(arg);
      std::string yaml;
      if (c == server::kServe) {
        yaml = scratch("bare.yaml");
        const std::string section = k->key.substr(0, k->key.find('.'));
        const std::string leaf = k->key.substr(k->key.find('.') + 1);
        std::ofstream(yaml) << "model: {path: \"" << kModel << "\"}\n" << section << ": {" << leaf << ": true}\n";
        a[2] = yaml;
      } else {
        a.insert(a.end() - 1, flag_name(*k));
      }
      const CmdResult r = run(a);
      if (r.rc == 0) {
        const json j = json::parse(r.out, nullptr, false);
        EXPECT_EQ(j.is_object() ? j.value(k->key, "(missing)") : "(not JSON)", "false")
            << r.line << ": accepted, but " << k->key << " is not false";
      } else {
        EXPECT_EQ(r.rc, 2) << r.line << "\nstderr: " << r.err;
      }
      if (!yaml.empty()) fs::remove(yaml);
    }
  }
}

}  // namespace
}  // namespace zi
