// The engine end to end on the CUDA backend: the Llama-family fixtures (tests/data/models/{llama_mha,mistral})
// through LocalExecutor + the forward, against transformers' float32 reference. Prefill and decode logits within
// 2e-2 relative (max |Δ| / max |ref|) in bf16 / fp16 and 1e-4 with fp32 activations; greedy tokens equal to the
// reference wherever its top-2 margin exceeds that error (past a step where it does not, the continuations may
// legitimately differ and are not compared). Alone, batched, and with a chunked prefill beside decoding rows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/decode_linear.h"
#include "engine/backend/cuda/kernels.h"
#include "engine/io/safetensors.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/local_executor.h"
#include "tests/gpu/cuda_test_util.h"

namespace zi {
namespace {

using testing_gpu::device_count;
using testing_gpu::rel_err;
using testing_gpu::test_data_dir;

constexpr int kPrompts = 3;
constexpr int kGreedy = 12;

struct Reference {
  std::vector<int32_t> prompt[kPrompts];
  std::vector<int32_t> greedy[kPrompts];
  std::vector<float> prefill_logits[kPrompts];  // [L, V]
  std::vector<float> greedy_logits[kPrompts];   // [12, V]: row k chose greedy[k]
};

Reference load_reference(const std::string& dir) {
  Reference ref;
  auto f = SafetensorsFile::Open(dir + "/reference.safetensors");
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return ref;
  auto read = [&](const std::string& name, DType want, auto* out) {
    const TensorInfo* t = (*f)->find(name);
    EXPECT_TRUE(t && t->dtype == want) << name;
    if (!t || t->dtype != want) return;
    out->resize(t->numel());
    std::memcpy(out->data(), t->data, t->nbytes);
  };
  for (int i = 0; i < kPrompts; ++i) {
    const std::string s = std::to_string(i);
    read("prompt_" + s, DType::kI32, &ref.prompt[i]);
    read("greedy_" + s, DType::kI32, &ref.greedy[i]);
    read("prefill_logits_" + s, DType::kF32, &ref.prefill_logits[i]);
    read("greedy_logits_" + s, DType::kF32, &ref.greedy_logits[i]);
  }
  return ref;
}

// top1 − top2 of a logits row, and max |logit|.
std::pair<double, double> margin_and_scale(const float* row, size_t V) {
  double a = -INFINITY, b = -INFINITY, scale = 0;
  for (size_t i = 0; i < V; ++i) {
    const double v = row[i];
    scale = std::max(scale, std::abs(v));
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) {
      b = v;
    }
  }
  return {a - b, scale};
}

using Param = std::tuple<std::string, DType>;

class CudaForward : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no GPU";
    dir_ = test_data_dir() + "/models/" + std::get<0>(GetParam());
    ref_ = load_reference(dir_);
    ASSERT_FALSE(ref_.greedy_logits[0].empty());
    V_ = ref_.greedy_logits[0].size() / kGreedy;
  }
  DType act() const { return std::get<1>(GetParam()); }
  double tol() const { return act() == DType::kF32 ? 1e-4 : 2e-2; }
  void decode_graphs_match_eager();  // DecodeGraphsGiveTheEagerTokens's body, once per kernel setting

  // `offload`: the KV cache in pinned host memory, decode attention computed as `mode` says.
  std::unique_ptr<Executor> make_executor(std::optional<KvOffloadAttention> offload = std::nullopt,
                                          bool enforce_eager = false) {
    EngineOptions o;
    o.enforce_eager = enforce_eager;
    o.model_dir = dir_;
    o.device = Device::kCuda;
    o.max_batch_size = 4;
    o.max_context = 128;
    o.kv_offload = offload.has_value();
    auto backend = make_cuda_backend({0, act(), offload.value_or(KvOffloadAttention::kAuto)});
    EXPECT_TRUE(backend.ok()) << backend.status();
    if (!backend.ok()) return nullptr;
    auto folder = open_model_folder(o);
    EXPECT_TRUE(folder.ok()) << folder.status();
    if (!folder.ok()) return nullptr;
    auto ex = LocalExecutor::Create(o, std::move(*folder), std::move(*backend));
    EXPECT_TRUE(ex.ok()) << ex.status();
    return ex.ok() ? std::move(*ex) : nullptr;
  }

  // Checks one sampled token and its logits against reference step k of prompt i. Returns false once the tokens
  // may diverge (the reference's margin is within the error bound and the tokens differ): stop comparing then.
  bool check_step(int i, int k, const std::vector<float>& logits, int32_t token, const std::string& tag) {
    const float* ref_row = ref_.greedy_logits[i].data() + k * V_;
    if (!logits.empty()) {
      EXPECT_LT(rel_err(logits, std::vector<float>(ref_row, ref_row + V_)), tol()) << tag << " step " << k;
    }
    const auto [margin, scale] = margin_and_scale(ref_row, V_);
    if (token == ref_.greedy[i][k]) return true;
    EXPECT_LE(margin, tol() * scale) << tag << " step " << k << ": token " << token << " vs reference "
                                     << ref_.greedy[i][k] << " with a clear margin " << margin;
    return false;
  }

  void batched_prefill_then_decode(Executor* ex, const std::string& tag);

  std::string dir_;
  Reference ref_;
  size_t V_ = 0;
};

TEST_P(CudaForward, EachPromptAloneMatchesTransformers) {
  auto ex = make_executor();
  ASSERT_TRUE(ex);
  EXPECT_EQ(ex->summary().device, "cuda");
  for (int i = 0; i < kPrompts; ++i) {
    const std::string tag = std::get<0>(GetParam()) + " prompt " + std::to_string(i);
    SeqStep first;
    first.seq_id = 100 + i;
    first.tokens = ref_.prompt[i];
    first.first = true;
    first.want_logits = true;
    auto out = ex->step({{first}, {}});
    ASSERT_TRUE(out.ok()) << out.status();
    const SeqResult& r = out->results[0];
    const double err = rel_err(r.logits, ref_.prefill_logits[i]);
    EXPECT_LT(err, tol()) << tag << " prefill";
    std::printf("%s %s prefill rel err %.3g\n", tag.c_str(), std::string(dtype_torch_name(act())).c_str(), err);
    bool same = check_step(i, 0, {}, r.token, tag);
    int32_t last = r.token;
    for (int k = 1; k < kGreedy && same; ++k) {
      SeqStep next;
      next.seq_id = 100 + i;
      next.tokens = {last};
      next.want_logits = true;
      auto o = ex->step({{next}, {}});
      ASSERT_TRUE(o.ok()) << o.status();
      last = o->results[0].token;
      same = check_step(i, k, o->results[0].logits, last, tag);
    }
    ASSERT_TRUE(ex->step({{}, {100ull + i}}).ok());
  }
}

// Every prompt prefilled in one step, then decoded together, each compared with transformers.
void CudaForward::batched_prefill_then_decode(Executor* ex, const std::string& tag) {
  ASSERT_TRUE(ex);
  StepInput in;
  for (int i = 0; i < kPrompts; ++i) {
    SeqStep s;
    s.seq_id = i;
    s.tokens = ref_.prompt[i];
    s.first = true;
    s.want_logits = true;
    in.seqs.push_back(s);
  }
  auto out = ex->step(in);
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<bool> same(kPrompts);
  std::vector<int32_t> last(kPrompts);
  for (int i = 0; i < kPrompts; ++i) {
    EXPECT_LT(rel_err(out->results[i].logits, ref_.prefill_logits[i]), tol()) << tag << " prompt " << i;
    last[i] = out->results[i].token;
    same[i] = check_step(i, 0, {}, last[i], tag + " prompt " + std::to_string(i));
  }
  for (int k = 1; k < kGreedy; ++k) {
    StepInput step;
    for (int i = 0; i < kPrompts; ++i) {
      SeqStep s;
      s.seq_id = i;
      s.tokens = {last[i]};
      s.want_logits = true;
      step.seqs.push_back(s);
    }
    auto o = ex->step(step);
    ASSERT_TRUE(o.ok()) << o.status();
    for (int i = 0; i < kPrompts; ++i) {
      last[i] = o->results[i].token;
      if (same[i]) same[i] = check_step(i, k, o->results[i].logits, last[i], tag + " prompt " + std::to_string(i));
    }
  }
}

TEST_P(CudaForward, BatchedPrefillThenBatchedDecode) { batched_prefill_then_decode(make_executor().get(), "batched"); }

TEST_P(CudaForward, KvOffloadedMatchesTransformersWhoeverComputesAttention) {
  // Over every layer and step: auto re-balances the decode rows between the GPU and the CPU as it measures them.
  for (KvOffloadAttention mode : {KvOffloadAttention::kGpu, KvOffloadAttention::kCpu, KvOffloadAttention::kAuto})
    batched_prefill_then_decode(make_executor(mode).get(),
                                std::string("kv offload ") + std::string(enum_name(mode, kKvOffloadAttentionNames)));
}

TEST_P(CudaForward, ChunkedPrefillBesideADecodingSequence) {
  auto ex = make_executor();
  ASSERT_TRUE(ex);
  // Sequence 1 (prompt 1) decodes while sequence 2 (prompt 2, 33 tokens) is prefilled in chunks of 10: every step
  // is a mixed batch (the prefill kernel with a one-row sequence beside a chunk after cached rows).
  SeqStep a;
  a.seq_id = 1;
  a.tokens = ref_.prompt[1];
  a.first = true;
  auto out = ex->step({{a}, {}});
  ASSERT_TRUE(out.ok()) << out.status();
  int32_t a_last = out->results[0].token;
  bool a_same = check_step(1, 0, {}, a_last, "decoding prompt 1");
  int a_k = 1;
  const std::vector<int32_t>& pb = ref_.prompt[2];
  std::vector<float> b_logits;
  int32_t b_token = -1;
  for (size_t begin = 0; begin < pb.size(); begin += 10) {
    const size_t end = std::min(pb.size(), begin + 10);
    SeqStep b;
    b.seq_id = 2;
    b.tokens.assign(pb.begin() + begin, pb.begin() + end);
    b.first = begin == 0;
    b.sample = end == pb.size();
    b.want_logits = true;
    SeqStep ad;
    ad.seq_id = 1;
    ad.tokens = {a_last};
    ad.want_logits = true;
    auto o = ex->step({{ad, b}, {}});
    ASSERT_TRUE(o.ok()) << o.status();
    a_last = o->results[0].token;
    if (a_same) a_same = check_step(1, a_k, o->results[0].logits, a_last, "decoding prompt 1");
    ++a_k;
    b_logits.insert(b_logits.end(), o->results[1].logits.begin(), o->results[1].logits.end());
    b_token = o->results[1].token;
  }
  EXPECT_LT(rel_err(b_logits, ref_.prefill_logits[2]), tol());
  check_step(2, 0, {}, b_token, "chunked prompt 2");
}

// Decode steps replayed from CUDA graphs give the tokens of the op-by-op path, while the batch shrinks and grows
// across buckets (3 → padded to 4, 2, 1, then 3 again with a new sequence whose block table is narrower) and the
// block tables widen past a bucket of table width. Twice: with the default kernels, then with the timed choice of
// decode linears (its timing runs in the eager run before each capture) and the split-context decode attention
// (its workspace from the graph pool).
TEST_P(CudaForward, DecodeGraphsGiveTheEagerTokens) {
  for (bool alternatives : {false, true}) {
    SCOPED_TRACE(alternatives ? "ZI_DECODE_GEMM=auto, split decode attention" : "default kernels");
    const std::optional<cuda::DecodeKernel> forced = cuda::forced_decode_kernel();
    const bool split = cuda::attention_decode_split_enabled();
    if (alternatives) {
      cuda::force_decode_kernel(std::nullopt);
      cuda::set_attention_decode_split(true);
    }
    decode_graphs_match_eager();
    cuda::force_decode_kernel(forced);
    cuda::set_attention_decode_split(split);
  }
}

void CudaForward::decode_graphs_match_eager() {
  auto graphs = make_executor(std::nullopt, false);
  auto eager = make_executor(std::nullopt, true);
  ASSERT_TRUE(graphs && eager);
  auto* g = dynamic_cast<LocalExecutor*>(graphs.get());
  auto* e = dynamic_cast<LocalExecutor*>(eager.get());
  ASSERT_TRUE(g && e);
  std::map<uint64_t, int32_t> last_g, last_e;
  auto start = [&](uint64_t id, int prompt) {
    SeqStep s;
    s.seq_id = id;
    s.tokens = ref_.prompt[prompt];
    s.first = true;
    auto og = g->step({{s}, {}});
    auto oe = e->step({{s}, {}});
    ASSERT_TRUE(og.ok() && oe.ok()) << og.status() << oe.status();
    EXPECT_EQ(og->results[0].token, oe->results[0].token);
    last_g[id] = og->results[0].token;
    last_e[id] = oe->results[0].token;
  };
  auto decode = [&](int steps) {
    for (int k = 0; k < steps; ++k) {
      StepInput ig, ie;
      for (const auto& [id, tok] : last_g) {
        SeqStep s;
        s.seq_id = id;
        s.tokens = {tok};
        s.want_logits = true;
        ig.seqs.push_back(s);
        s.tokens = {last_e[id]};
        ie.seqs.push_back(s);
      }
      auto og = g->step(ig);
      auto oe = e->step(ie);
      ASSERT_TRUE(og.ok() && oe.ok()) << og.status() << oe.status();
      for (size_t i = 0; i < ig.seqs.size(); ++i) {
        const uint64_t id = ig.seqs[i].seq_id;
        EXPECT_EQ(og->results[i].token, oe->results[i].token) << "sequence " << id << " step " << k;
        EXPECT_LT(rel_err(og->results[i].logits, oe->results[i].logits), tol()) << "sequence " << id;
        last_g[id] = og->results[i].token;
        last_e[id] = oe->results[i].token;
      }
    }
  };
  auto release = [&](uint64_t id) {
    ASSERT_TRUE(g->step({{}, {id}}).ok());
    ASSERT_TRUE(e->step({{}, {id}}).ok());
    last_g.erase(id);
    last_e.erase(id);
  };
  for (int i = 0; i < kPrompts; ++i) start(i, i);
  decode(6);
  release(0);
  decode(3);
  release(1);
  decode(20);  // past 16 tokens a block: the block tables widen
  start(7, 0);
  start(8, 1);
  decode(4);
  EXPECT_GT(g->captured_step_graphs(), 2);
  EXPECT_EQ(e->captured_step_graphs(), 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaForward,
                         ::testing::Combine(::testing::Values("llama_mha", "mistral"),
                                            ::testing::Values(DType::kBF16, DType::kF16, DType::kF32)),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::get<0>(info.param) + "_" + std::string(dtype_torch_name(std::get<1>(info.param)));
                         });

}  // namespace
}  // namespace zi
