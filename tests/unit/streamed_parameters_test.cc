// The ZeRO-Inference parameter coordinator's protocol, checked on the CPU: a model whose layers stream through a
// ring of slots (from host partitions or an NVMe store) computes exactly what the resident model computes, step
// after step (cross-step prefetch), for every ring depth, and moves the bytes it should.
#include "engine/zero/streamed_parameters.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "engine/io/safetensors.h"
#include "engine/model/registry.h"
#include "engine/runtime/engine_options.h"
#include "engine/model/kv_cache.h"

namespace zi {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  ModelConfig cfg;
  const Architecture* arch = nullptr;
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<Backend> backend = make_cpu_backend(1);
};

std::unique_ptr<Fixture> open_fixture(const std::string& name) {
  auto f = std::make_unique<Fixture>();
  const std::string dir = std::string(ZI_TEST_DATA) + "/models/" + name;
  auto cfg = load_model_config(dir);
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  f->cfg = *cfg;
  f->arch = find_architecture(f->cfg.architecture);
  auto ck = Checkpoint::Open(dir);
  EXPECT_TRUE(ck.ok()) << ck.status();
  f->ckpt = std::move(*ck);
  return f;
}

// Greedy decoding of `prompt` for `steps` tokens; returns every step's logits, concatenated.
// `streamed` (optional) is the same object as `params`: its stats are read before the model is destroyed.
std::vector<float> run_greedy(Fixture& f, std::unique_ptr<ParameterSource> params, const std::vector<int32_t>& prompt,
                              int steps, StreamedParameters* streamed = nullptr, StreamStats* stats = nullptr) {
  auto model = f.arch->create(f.cfg, *f.backend, std::move(params));
  EXPECT_TRUE(model.ok()) << model.status();
  KvCache kv(*f.backend, {static_cast<int>(f.cfg.num_layers), 1, 64, static_cast<int>(f.cfg.num_kv_heads),
                          static_cast<int>(f.cfg.head_dim)});
  const int slot = *kv.acquire();
  std::vector<float> all;
  std::vector<int32_t> tokens = prompt;
  int past = 0;
  for (int s = 0; s < steps; ++s) {
    ForwardBatch b;
    b.tokens = tokens;
    b.seqs = {{slot, 0, static_cast<int32_t>(tokens.size()), past}};
    b.logit_rows = {static_cast<int32_t>(tokens.size()) - 1};
    auto logits = (*model)->forward(b, kv);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return all;
    std::vector<float> v = f.backend->to_host_f32(*logits);
    all.insert(all.end(), v.begin(), v.end());
    past += static_cast<int>(tokens.size());
    tokens = {static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin())};
  }
  if (streamed) *stats = streamed->take_stream_stats();
  return all;
}

std::vector<float> resident_run(Fixture& f, const std::vector<int32_t>& prompt, int steps) {
  auto p = load_resident_parameters(*f.backend, f.cfg, *f.arch, f.ckpt.get(), 0);
  EXPECT_TRUE(p.ok()) << p.status();
  return run_greedy(f, std::move(*p), prompt, steps);
}

struct Case {
  std::string model;
  std::vector<LayerTier> tiers;
  uint32_t depth;
};

class StreamedParametersTest : public ::testing::TestWithParam<Case> {};

TEST_P(StreamedParametersTest, StreamedModelComputesExactlyWhatTheResidentOneDoes) {
  const Case& c = GetParam();
  auto f = open_fixture(c.model);
  ASSERT_EQ(c.tiers.size(), static_cast<size_t>(f->cfg.num_layers));
  const std::vector<int32_t> prompt = {1, 450, 1996, 1735, 170, 432, 1720};
  const int steps = 6;
  const std::vector<float> want = resident_run(*f, prompt, steps);

  const std::string store = (fs::current_path() / ("streamed_test_store_" + std::to_string(getpid()))).string();
  fs::remove_all(store);
  StreamingLoad load;
  load.tiers = c.tiers;
  load.prefetch_depth = c.depth;
  load.store_dir = store;
  auto host_alloc = make_aligned_host_allocator();
  auto params = load_streamed_parameters(*f->backend, f->cfg, *f->arch, f->ckpt.get(), 0, load, *host_alloc,
                                         [&](const HostShards& s) -> StatusOr<std::unique_ptr<ShardTransport>> {
                                           return make_host_transport(s, true);
                                         });
  ASSERT_TRUE(params.ok()) << params.status();
  StreamedParameters* sp = params->get();
  StreamStats st;
  const std::vector<float> got = run_greedy(*f, std::move(*params), prompt, steps, sp, &st);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "logit " << i;

  // Bytes moved: at most every streamed shard once per step (a shard whose slot nobody else used in between is not
  // fetched again: 3 layers in 2 slots move 2 shards a step), plus the next step's prefetch; with a ring that holds
  // every streamed shard, each is fetched exactly once.
  int streamed = 0;
  for (LayerTier t : c.tiers) streamed += t != LayerTier::kGpu;
  if (static_cast<int>(c.depth) >= streamed) {
    EXPECT_EQ(st.fetches, streamed);
  } else {
    EXPECT_GE(st.fetches, (streamed - static_cast<int>(c.depth) + 1) * steps);
    EXPECT_LE(st.fetches, streamed * steps + static_cast<int>(c.depth));
  }
  fs::remove_all(store);
}

using T = LayerTier;
INSTANTIATE_TEST_SUITE_P(
    Placements, StreamedParametersTest,
    ::testing::Values(Case{"llama_mha", {T::kGpu, T::kCpu, T::kCpu}, 1},
                      Case{"llama_mha", {T::kGpu, T::kCpu, T::kCpu}, 2},
                      Case{"llama_mha", {T::kCpu, T::kCpu, T::kCpu}, 2},   // ring smaller than the layers, 3 % 2
                      Case{"llama_mha", {T::kCpu, T::kCpu, T::kCpu}, 3},   // ring holds every layer
                      Case{"llama_mha", {T::kGpu, T::kNvme, T::kNvme}, 2},
                      Case{"mistral", {T::kNvme, T::kNvme}, 1},
                      Case{"mistral", {T::kGpu, T::kCpu}, 2}));

TEST(StreamedParameters, NvmeStoreIsBuiltOnceAndReused) {
  auto f = open_fixture("llama_mha");
  const std::string store = (fs::current_path() / ("streamed_reuse_store_" + std::to_string(getpid()))).string();
  fs::remove_all(store);
  StreamingLoad load;
  load.tiers = {T::kGpu, T::kNvme, T::kNvme};
  load.store_dir = store;
  auto alloc = make_aligned_host_allocator();
  auto factory = [](const HostShards& s) -> StatusOr<std::unique_ptr<ShardTransport>> {
    return make_host_transport(s, true);
  };
  ASSERT_TRUE(load_streamed_parameters(*f->backend, f->cfg, *f->arch, f->ckpt.get(), 0, load, *alloc, factory).ok());
  const auto written = fs::last_write_time(store + "/manifest.json");
  auto again = load_streamed_parameters(*f->backend, f->cfg, *f->arch, f->ckpt.get(), 0, load, *alloc, factory);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(fs::last_write_time(store + "/manifest.json"), written);
  // A store for another rank count is refused, not silently rebuilt.
  load.num_ranks = 2;
  auto other = load_streamed_parameters(*f->backend, f->cfg, *f->arch, f->ckpt.get(), 0, load, *alloc, factory);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("num_gpus"), std::string::npos) << other.status();
  fs::remove_all(store);
}

}  // namespace
}  // namespace zi

namespace zi {
namespace {

// Through the public facade: `--device cpu --disk-offload` streams every layer from the store each step and still
// produces transformers' greedy continuation.
TEST(StreamedExecutor, CpuNvmeTierReproducesTheFixtureGreedyTokens) {
  const std::string dir = std::string(ZI_TEST_DATA) + "/models/llama_mha";
  auto ref = SafetensorsFile::Open(dir + "/reference.safetensors");
  ASSERT_TRUE(ref.ok());
  auto ints = [&](const std::string& name) {
    const TensorInfo* t = (*ref)->find(name);
    std::vector<int32_t> v(t->numel());
    std::memcpy(v.data(), t->data, t->nbytes);
    return v;
  };
  const std::string store = (fs::current_path() / ("streamed_exec_store_" + std::to_string(getpid()))).string();
  fs::remove_all(store);
  EngineOptions o;
  o.model_dir = dir;
  o.device = Device::kCpu;
  o.max_batch_size = 1;
  o.offload_tier = OffloadTier::kNvme;
  o.offload_dir = store;
  o.prefetch_depth = 2;
  auto ex = create_executor(o);
  ASSERT_TRUE(ex.ok()) << ex.status();
  for (int p = 0; p < 3; ++p) {
    const std::vector<int32_t> prompt = ints("prompt_" + std::to_string(p));
    const std::vector<int32_t> greedy = ints("greedy_" + std::to_string(p));
    std::vector<int32_t> got;
    SeqStep s;
    s.seq_id = 100 + p;
    s.first = true;
    s.tokens = prompt;
    uint64_t fetched = 0;
    for (size_t i = 0; i < greedy.size(); ++i) {
      auto out = (*ex)->step({{s}, {}});
      ASSERT_TRUE(out.ok()) << out.status();
      got.push_back(out->results[0].token);
      fetched += out->stats.fetch_bytes;
      s.first = false;
      s.tokens = {got.back()};
    }
    EXPECT_EQ(got, greedy) << "prompt " << p;
    EXPECT_GT(fetched, 0u);  // the layers really came from the store
    ASSERT_TRUE((*ex)->step({{}, {100u + p}}).ok());
  }
  fs::remove_all(store);
}

}  // namespace
}  // namespace zi
