// A step with more rows than a layer takes at once runs in chunks, layers outside and chunks inside
// (engine/model/model.h): split_rows cuts the batch as stated; in every model family the chunked forward gives
// the unchunked one's logits and greedy tokens (a sequence cut over chunks reads its earlier rows' KV, written
// first in the same layer); and a streamed layer crosses the bus once per step however many chunks the step has.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "engine/model/kv_cache.h"
#include "engine/model/model.h"
#include "engine/model/registry.h"
#include "engine/runtime/engine_options.h"
#include "engine/zero/streamed_parameters.h"
#include "tests/unit/model_fixture_util.h"

namespace zi {
namespace {

using testing_fixtures::load_reference;
using testing_fixtures::Reference;

// (slot, row_begin, n_new, past_len) of every sequence of a chunk.
std::vector<std::vector<int32_t>> seqs_of(const ForwardBatch& b) {
  std::vector<std::vector<int32_t>> out;
  for (const SeqSlice& s : b.seqs) out.push_back({s.slot, s.row_begin, s.n_new, s.past_len});
  return out;
}

using Ints = std::vector<int32_t>;
using Seqs = std::vector<std::vector<int32_t>>;

// Sequence A (slot 0): rows 0–4, 2 tokens cached; B (slot 1): rows 5–7, none cached; logits of both last rows.
ForwardBatch two_sequences() {
  ForwardBatch b;
  b.tokens = {10, 11, 12, 13, 14, 15, 16, 17};
  b.seqs = {{0, 0, 5, 2}, {1, 5, 3, 0}};
  b.logit_rows = {4, 7};
  return b;
}

TEST(SplitRows, CutsSequencesWhereTheRoomEndsAndMovesLogitRows) {
  const std::vector<ForwardBatch> c = split_rows(two_sequences(), 3);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].tokens, (Ints{10, 11, 12}));
  EXPECT_EQ(seqs_of(c[0]), (Seqs{{0, 0, 3, 2}}));
  EXPECT_EQ(c[0].logit_rows, Ints{});
  EXPECT_EQ(c[1].tokens, (Ints{13, 14, 15}));
  EXPECT_EQ(seqs_of(c[1]), (Seqs{{0, 0, 2, 5}, {1, 2, 1, 0}}));  // A's rest after its first 3 rows
  EXPECT_EQ(c[1].logit_rows, Ints{1});                            // row 4 of the batch
  EXPECT_EQ(c[2].tokens, (Ints{16, 17}));
  EXPECT_EQ(seqs_of(c[2]), (Seqs{{1, 0, 2, 1}}));
  EXPECT_EQ(c[2].logit_rows, Ints{1});  // row 7
}

// 10 rows in chunks of at most 4: three chunks of 4, 3 and 3 rows (equal within a row, so the device allocator's
// size classes repeat), not 4, 4 and 2.
TEST(SplitRows, ChunksAreEqualWithinARow) {
  ForwardBatch b;
  b.tokens = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  b.seqs = {{0, 0, 10, 0}};
  b.logit_rows = {9};
  const std::vector<ForwardBatch> c = split_rows(b, 4);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(seqs_of(c[0]), (Seqs{{0, 0, 4, 0}}));
  EXPECT_EQ(seqs_of(c[1]), (Seqs{{0, 0, 3, 4}}));
  EXPECT_EQ(seqs_of(c[2]), (Seqs{{0, 0, 3, 7}}));
  EXPECT_EQ(c[2].tokens, (Ints{7, 8, 9}));
  EXPECT_EQ(c[2].logit_rows, Ints{2});
}

TEST(SplitRows, WithoutCuttingALongSequenceIsAChunkOfItsOwn) {
  const std::vector<ForwardBatch> c = split_rows(two_sequences(), 3, /*cut=*/false);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(seqs_of(c[0]), (Seqs{{0, 0, 5, 2}}));
  EXPECT_EQ(c[0].logit_rows, Ints{4});
  EXPECT_EQ(seqs_of(c[1]), (Seqs{{1, 0, 3, 0}}));
  EXPECT_EQ(c[1].tokens, (Ints{15, 16, 17}));
  EXPECT_EQ(c[1].logit_rows, Ints{2});
}

TEST(SplitRows, OneChunkWhenItFitsOrLogitRowsAreOutOfOrder) {
  EXPECT_EQ(split_rows(two_sequences(), 8).size(), 1u);
  EXPECT_EQ(split_rows(two_sequences(), 0).size(), 1u);
  ForwardBatch b = two_sequences();
  b.logit_rows = {7, 4};
  const std::vector<ForwardBatch> c = split_rows(b, 3);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].logit_rows, (Ints{7, 4}));
}

struct Outcome {
  std::vector<float> logits;  // every step's, concatenated
  std::vector<int32_t> tokens;
  StreamStats stream;
};

// The three reference prompts prefilled in one step, then `decode` greedy steps of all three together, each step
// through forward(batch, kv, chunk_rows) (0 = unchunked).
Outcome run_prompts(const ModelConfig& cfg, const Architecture& arch, Backend& be,
                    std::unique_ptr<ParameterSource> params, const Reference& ref, int64_t chunk_rows, int decode,
                    StreamedParameters* streamed = nullptr) {
  Outcome out;
  auto model = arch.create(cfg, be, std::move(params));
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return out;
  KvCache kv(be, {static_cast<int>(cfg.num_layers), testing_fixtures::kPrompts, 64, static_cast<int>(cfg.num_kv_heads),
                  static_cast<int>(cfg.head_dim)});
  std::vector<int> slots;
  std::vector<int32_t> past(testing_fixtures::kPrompts, 0);
  ForwardBatch b;
  for (int i = 0; i < testing_fixtures::kPrompts; ++i) {
    slots.push_back(*kv.acquire());
    const int32_t row = static_cast<int32_t>(b.tokens.size()), n = static_cast<int32_t>(ref.prompt[i].size());
    b.seqs.push_back({slots[i], row, n, 0});
    b.tokens.insert(b.tokens.end(), ref.prompt[i].begin(), ref.prompt[i].end());
    b.logit_rows.push_back(row + n - 1);
  }
  for (int step = 0; step <= decode; ++step) {
    auto logits = (*model)->forward(b, kv, chunk_rows);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return out;
    const std::vector<float> v = be.to_host_f32(*logits);
    out.logits.insert(out.logits.end(), v.begin(), v.end());
    const size_t V = v.size() / testing_fixtures::kPrompts;
    ForwardBatch next;
    for (int i = 0; i < testing_fixtures::kPrompts; ++i) {
      past[i] += b.seqs[i].n_new;
      const auto row = v.begin() + static_cast<std::ptrdiff_t>(i * V);
      const int32_t tok = static_cast<int32_t>(std::max_element(row, row + static_cast<std::ptrdiff_t>(V)) - row);
      out.tokens.push_back(tok);
      next.tokens.push_back(tok);
      next.seqs.push_back({slots[i], i, 1, past[i]});
      next.logit_rows.push_back(i);
    }
    b = std::move(next);
  }
  if (streamed) out.stream = streamed->take_stream_stats();
  return out;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  if (a.size() != b.size() || a.empty()) return 1.0;
  double max_ref = 0, max_d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(static_cast<double>(a[i])));
    max_d = std::max(max_d, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return max_d / max_ref;
}

struct Fixture {
  std::string dir;
  ModelConfig cfg;
  const Architecture* arch = nullptr;
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<Backend> backend = make_cpu_backend(1);
  Reference ref;
};

std::unique_ptr<Fixture> open_fixture(const std::string& name) {
  auto f = std::make_unique<Fixture>();
  f->dir = testing_fixtures::models_dir() + "/" + name;
  auto cfg = load_model_config(f->dir);
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return nullptr;
  f->cfg = *cfg;
  f->arch = find_architecture(f->cfg.architecture);
  auto ck = Checkpoint::Open(f->dir);
  EXPECT_TRUE(ck.ok()) << ck.status();
  if (!ck.ok()) return nullptr;
  f->ckpt = std::move(*ck);
  f->ref = load_reference(f->dir);
  return f;
}

std::unique_ptr<ParameterSource> resident(Fixture& f) {
  auto p = load_resident_parameters(*f.backend, f.cfg, *f.arch, f.ckpt.get(), 0);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

class ChunkedForward : public ::testing::TestWithParam<std::string> {};

TEST_P(ChunkedForward, ChunksGiveTheUnchunkedLogitsAndTokens) {
  auto f = open_fixture(GetParam());
  ASSERT_TRUE(f);
  const int decode = 4;
  const Outcome want = run_prompts(f->cfg, *f->arch, *f->backend, resident(*f), f->ref, 0, decode);
  ASSERT_FALSE(want.logits.empty());
  // 7 rows: the longer prompts cut; 2: the decode steps of three sequences in two chunks; 1: a row a chunk.
  for (int64_t rows : {7, 2, 1}) {
    const Outcome got = run_prompts(f->cfg, *f->arch, *f->backend, resident(*f), f->ref, rows, decode);
    EXPECT_LT(rel_diff(want.logits, got.logits), 1e-5) << GetParam() << " in chunks of " << rows << " rows";
    EXPECT_EQ(want.tokens, got.tokens) << GetParam() << " in chunks of " << rows << " rows";
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ChunkedForward,
                         ::testing::Values("llama_mha", "mistral", "qwen2", "llama_dynamic", "opt", "opt_post_ln",
                                           "bloom", "bloom_6h"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Every layer streamed through a ring of one slot: each step fetches each layer once, chunked or not (a forward
// per chunk would fetch them once per chunk).
TEST(ChunkedForwardStreaming, AStreamedLayerCrossesOncePerStepWhateverTheChunks) {
  auto f = open_fixture("llama_mha");
  ASSERT_TRUE(f);
  const int layers = static_cast<int>(f->cfg.num_layers);
  auto host_alloc = make_aligned_host_allocator();
  auto streamed_run = [&](int64_t chunk_rows) {
    StreamingLoad load;
    load.tiers.assign(static_cast<size_t>(layers), LayerTier::kCpu);
    load.prefetch_depth = 1;
    auto params = load_streamed_parameters(*f->backend, f->cfg, *f->arch, f->ckpt.get(), 0, load, *host_alloc,
                                           [&](const HostShards& s) -> StatusOr<std::unique_ptr<ShardTransport>> {
                                             return make_host_transport(s, true);
                                           });
    EXPECT_TRUE(params.ok()) << params.status();
    StreamedParameters* sp = params->get();
    return run_prompts(f->cfg, *f->arch, *f->backend, std::move(*params), f->ref, chunk_rows, /*decode=*/0, sp);
  };
  const Outcome whole = streamed_run(0), chunked = streamed_run(3);
  EXPECT_EQ(whole.tokens, chunked.tokens);
  EXPECT_LT(rel_diff(whole.logits, chunked.logits), 1e-5);
  int rows = 0;
  for (const auto& p : f->ref.prompt) rows += static_cast<int>(p.size());
  ASSERT_GT(rows, 3 * 3);  // the prefill really is several chunks
  EXPECT_EQ(chunked.stream.fetches, whole.stream.fetches);
  EXPECT_GE(chunked.stream.fetches, layers);
  EXPECT_LE(chunked.stream.fetches, layers + 1);  // one pass, plus at most the ring's prefetch of the next step
  EXPECT_EQ(chunked.stream.fetch_bytes, whole.stream.fetch_bytes);
}

}  // namespace
}  // namespace zi
