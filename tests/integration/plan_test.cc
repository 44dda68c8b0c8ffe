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

const std::string kRates = std::string("--rates ") + ZI_SOURCE_DIR + "/tests/data/rates/h100-like.json";

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
    Result r = run("plan --config " + e.path().string() + " --gpu-memory-limit 80GiB --host-memory-limit 400GiB " +
                   kRates + " --json");
    ASSERT_EQ(r.code, 0) << e.path() << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    if (j.contains("plan_batch_size")) {  // server.max_batch_size: auto — the planner's choice
      EXPECT_LE(j["predicted_gpu_bytes"].get<uint64_t>(), 80ull << 30) << e.path();
      EXPECT_GT(j["predicted_e2e_tokens_per_second"].get<double>(), 0) << e.path();
      continue;
    }
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
                 "/config/examples/llama-2-70b-4bit-cpu-kv-offload.yaml --gpu-memory-limit 80GiB --quant_bits 16 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  // 16-bit LLaMA-2-70B: ~128 GiB of weights cannot sit on an 80 GiB GPU: at least the ~48 GiB past the card stream
  // from host memory, in whole layers of 1.6 GiB (36 of 80 once the KV cache, ring and activations have room).
  EXPECT_GT(j["model_bytes"].get<uint64_t>(), 120ull << 30);
  EXPECT_GE(j["streamed_bytes_per_step"].get<uint64_t>() + (80ull << 30), j["model_bytes"].get<uint64_t>());
  EXPECT_GE(j["layers_streamed"].get<int>(), 30);
  EXPECT_GE(j["host_bytes_per_rank"].get<uint64_t>(), j["streamed_bytes_per_step"].get<uint64_t>());
}

// The planner from a rates file, as on a machine without the GPU, for the five models of ZeRO-Inference's
// headline table under a 48 GiB limit: a plan that fits the limit, with its times and a reason per decision.
TEST(Plan, OptimizeThroughputFromARatesFilePlansEveryHeadlineModel) {
  for (const char* m : {"opt-30b", "opt-66b", "llama-2-70b", "opt-175b", "bloom-176b"}) {
    Result r = run(std::string("plan --model ") + ZI_SOURCE_DIR + "/config/examples/models/" + m +
                   " --optimize throughput --quant-bits 4 --gpu-memory-limit 48GiB --host-memory-limit 240GiB " +
                   kRates + " --json");
    ASSERT_EQ(r.code, 0) << m << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_LE(j["predicted_gpu_bytes"].get<uint64_t>(), 48ull << 30) << m;
    EXPECT_LE(j["predicted_host_bytes"].get<uint64_t>(), 240ull << 30) << m;
    EXPECT_GE(j["plan_batch_size"].get<int>(), 1) << m;
    const double total = j["predicted_prefill_seconds"].get<double>() +
                         31 * j["predicted_decode_step_seconds"].get<double>();
    EXPECT_NEAR(j["predicted_total_seconds"].get<double>(), total, 1e-9 * total) << m;
    EXPECT_NEAR(j["predicted_e2e_tokens_per_second"].get<double>(), j["plan_batch_size"].get<double>() * 32 / total,
                1e-6) << m;
    EXPECT_GE(j["plan_reasons"].size(), 4u) << m;
    // The options the plan resolves to are what bench and serve would run.
    EXPECT_EQ(j["options"]["server.max_batch_size"], std::to_string(j["plan_batch_size"].get<int>())) << m;
    EXPECT_EQ(j["options"]["kv_cache.offload"], j["plan_kv_place"] == "host" ? "true" : "false") << m;
  }
  // The 16-bit OPT-175B (~326 GiB) cannot stream from 240 GiB of host memory; with no disk rate there is no NVMe
  // tier, so the plan is refused naming the host limit's bytes.
  Result big = run(std::string("plan --model ") + ZI_SOURCE_DIR + "/config/examples/models/opt-175b --optimize "
                   "throughput --gpu-memory-limit 48GiB --host-memory-limit 240GiB --rates " + ZI_SOURCE_DIR +
                   "/tests/data/rates/no-disk.json");
  EXPECT_EQ(big.code, 1) << big.err;
  EXPECT_NE(big.err.find("memory.host_limit 240.00 GiB (257698037760 bytes)"), std::string::npos) << big.err;
}

TEST(Plan, AGpuLimitBelowTheMinimumIsRefusedNamingTheBytes) {
  Result r = run(std::string("plan --model ") + ZI_SOURCE_DIR + "/config/examples/models/opt-30b --optimize "
                 "throughput --gpu-memory-limit 2GiB " + kRates);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("memory.gpu_limit 2.00 GiB (2147483648 bytes) cannot hold the minimum"), std::string::npos)
      << r.err;
}

TEST(Plan, NeedsAGpuLimitOrRatesWithoutAGpu) {
  Result r = run(std::string("plan --model ") + ZI_SOURCE_DIR + "/config/examples/models/opt-30b --device cpu "
                 "--optimize throughput");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--rates FILE"), std::string::npos) << r.err;
  Result both = run(std::string("plan --model ") + ZI_SOURCE_DIR + "/config/examples/models/opt-30b --config x.yaml");
  EXPECT_EQ(both.code, 2);
  EXPECT_NE(both.err.find("exactly one of --config FILE and --model DIR"), std::string::npos) << both.err;
}

// bench --batch-size auto end to end on the CPU backend (the demo model, a batch fixed small so it runs here): the
// planned settings are what runs, and the prediction is reported beside the measurement.
TEST(Plan, BenchWithAnAutoBatchReportsThePredictionBesideTheMeasurement) {
  Result r = run(std::string("bench --model ") + ZI_SOURCE_DIR + "/tools/demo_model/kjv-llama --device cpu " +
                 "--batch-size auto --planned-batch 3 --gpu-memory-limit 8GiB --prompt-len 8 --gen-len 2 --loops 1 " +
                 kRates + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["plan_batch_size"], 3);
  EXPECT_EQ(j["batch_size"], 3);
  EXPECT_GT(j["predicted_e2e_tokens_per_second"].get<double>(), 0);
  EXPECT_GT(j["e2e_tokens_per_second"].get<double>(), 0);
  EXPECT_GT(j["measured_over_predicted_e2e"].get<double>(), 0);
  EXPECT_NE(r.err.find("why         batch 3: given"), std::string::npos) << r.err;
}

// memory.host_limit on the CPU backend: every weight and the KV cache must fit, or the run is refused before
// loading, naming the bytes.
TEST(Plan, AHostLimitTooSmallIsRefusedBeforeLoading) {
  Result r = run(std::string("generate --model ") + ZI_SOURCE_DIR + "/tools/demo_model/kjv-llama --device cpu " +
                 "--host-memory-limit 1MiB --prompt-ids 1,2,3 --max-new-tokens 2");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("memory.host_limit 1.0 MiB (1048576 bytes) cannot hold the model on the CPU backend"),
            std::string::npos)
      << r.err;
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
