// `zeroinfer plan` on every example deployment (they must stay valid) and on a broken file (the error names the
// key), through the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out, err;
};

Result run(const std::string& args) {
  const std::string err_path = fs::temp_directory_path() / ("plan_test_err_" + std::to_string(getpid()));
  const std::string cmd = std::string(ZI_BINARY) + " " + args + " 2>" + err_path;
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err_path);
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  fs::remove(err_path);
  return r;
}

TEST(Plan, EveryExampleDeploymentPlansAndFitsItsGpu) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(std::string(ZI_SOURCE_DIR) + "/config/examples")) {
    if (e.path().extension() != ".yaml") continue;
    ++n;
    Result r = run("plan --config " + e.path().string() + " --gpu-memory 80GiB --json");
    ASSERT_EQ(r.code, 0) << e.path() << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_LE(j["gpu_total_bytes"].get<uint64_t>(), 80ull << 30) << e.path();
    EXPECT_GT(j["model_bytes"].get<uint64_t>(), 0u) << e.path();
    // With an offload tier, layers stream only when they do not fit (4-bit OPT-30B and LLaMA-2-70B do fit);
    // whatever streams sets the floor.
    EXPECT_EQ(j["streamed_bytes_per_step"].get<uint64_t>() > 0, j["layers_streamed"].get<int>() > 0) << e.path();
    EXPECT_EQ(j["step_floor_seconds"].get<double>() > 0, j["layers_streamed"].get<int>() > 0) << e.path();
    if (j["tier"] == "none") EXPECT_EQ(j["layers_streamed"].get<int>(), 0) << e.path();
  }
  EXPECT_GE(n, 4);
}

TEST(Plan, SeventyBillionStreamedFromCpuNeedsItsWeightsInHostMemory) {
  Result r = run("plan --config " + std::string(ZI_SOURCE_DIR) +
                 "/config/examples/llama-2-70b-4bit-cpu-kv-offload.yaml --gpu-memory 80GiB --quant_bits 16 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  // 16-bit LLaMA-2-70B: ~129 GiB of weights cannot sit on an 80 GiB GPU, so most are streamed from host memory.
  EXPECT_GT(j["model_bytes"].get<uint64_t>(), 120ull << 30);
  EXPECT_GT(j["layers_streamed"].get<int>(), 40);
  EXPECT_GE(j["host_bytes_per_rank"].get<uint64_t>(), j["streamed_bytes_per_step"].get<uint64_t>());
}

TEST(Plan, ABrokenDeploymentNamesTheBadKey) {
  const fs::path dir = fs::temp_directory_path() / ("plan_test_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "bad.yaml") << "model: {path: " << ZI_SOURCE_DIR
                                  << "/config/examples/models/llama-2-7b}\noffload: {tier: cpu, prefetch_dept: 2}\n";
  Result r = run("plan --config " + (dir / "bad.yaml").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("offload.prefetch_dept"), std::string::npos) << r.err;
  fs::remove_all(dir);
}

}  // namespace
