// The bench's floor arithmetic (engine/runtime/bench_floors.h) on a small Llama shape worked out by hand: linear
// shapes and counts, the mean decode context, the bytes a decode step reads (resident layers, head, KV) and the
// max(PCIe, HBM) rule.
#include "engine/runtime/bench_floors.h"

#include <gtest/gtest.h>

#include "engine/model/registry.h"
#include "engine/quant/quantize.h"

namespace zi {
namespace {

using json = nlohmann::json;

// H 64, F 176, 3 layers, 4 heads of 16, 2 KV heads, vocab 1000.
ModelConfig small_llama(bool tied) {
  json c = json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 1000, "hidden_size": 64,
    "intermediate_size": 176, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "torch_dtype": "bfloat16", "hidden_act": "silu"})");
  c["tie_word_embeddings"] = tied;
  auto cfg = parse_model_config(c, nullptr, "/m");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  return *cfg;
}

const Architecture& llama() { return *find_architecture("LlamaForCausalLM"); }

TEST(BenchFloors, LayerLinearShapesAndParameters) {
  const ModelConfig cfg = small_llama(false);
  const std::vector<LinearShape> s = layer_linear_shapes(cfg, llama(), 0);
  ASSERT_EQ(s.size(), 7u);  // q, k, v, o, gate, up, down
  const std::vector<std::pair<int64_t, int64_t>> want = {{64, 64},  {32, 64},  {32, 64}, {64, 64},
                                                         {176, 64}, {176, 64}, {64, 176}};
  for (size_t i = 0; i < s.size(); ++i) {
    EXPECT_EQ(s[i].out, want[i].first) << i;
    EXPECT_EQ(s[i].in, want[i].second) << i;
    EXPECT_FALSE(s[i].bias) << i;
  }
  // 3 layers × (2·64·64 + 2·32·64 + 3·176·64)
  EXPECT_EQ(decoder_linear_parameters(cfg, llama()), 3u * (8192 + 4096 + 33792));

  ModelConfig biased = cfg;
  biased.qkv_bias = true;  // Qwen2: q/k/v have biases, o not
  const std::vector<LinearShape> b = layer_linear_shapes(biased, llama(), 1);
  EXPECT_TRUE(b[0].bias && b[1].bias && b[2].bias);
  EXPECT_FALSE(b[3].bias);
}

TEST(BenchFloors, MeanDecodeContext) {
  // prompt 10, gen 5: decode steps attend over 11, 12, 13, 14 positions.
  EXPECT_DOUBLE_EQ(mean_decode_context(10, 5), 12.5);
  EXPECT_DOUBLE_EQ(mean_decode_context(10, 5, 12), (11 + 12 + 12 + 12) / 4.0);
  EXPECT_DOUBLE_EQ(mean_decode_context(10, 1), 0.0);
  EXPECT_DOUBLE_EQ(mean_decode_context(512, 32), 512 + 16.0);
}

TEST(BenchFloors, DecodeReadBytes) {
  const ModelConfig cfg = small_llama(false);
  ModelSummary m;
  m.layer_weight_bytes = 1000;
  m.layer_tiers = {"gpu", "cpu", "gpu"};
  const DecodeReadBytes r = decode_read_bytes(m, cfg, llama(), DType::kBF16, QuantConfig{}, 2, 10, 5, true);
  EXPECT_EQ(r.layer_weights, 2000u);              // two resident layers
  EXPECT_EQ(r.head, 1000u * 64 * 2 + 64 * 2);     // lm_head + final norm in bf16; the embedding table is gathered
  EXPECT_DOUBLE_EQ(r.kv, 2 * 12.5 * 3 * 2 * 2 * 16 * 2);  // batch × context × L × (K, V) × nKV × D × bf16
  EXPECT_DOUBLE_EQ(r.total(), 2000 + 128128 + 9600);

  // Tied: the embedding table is the head. KV in host memory: no HBM read. No placement: every layer resident.
  ModelSummary all;
  all.layer_weight_bytes = 1000;
  const DecodeReadBytes t = decode_read_bytes(all, small_llama(true), llama(), DType::kF16, QuantConfig{}, 2, 10, 5,
                                              false);
  EXPECT_EQ(t.layer_weights, 3000u);
  EXPECT_EQ(t.head, 1000u * 64 * 2 + 64 * 2);
  EXPECT_EQ(t.kv, 0.0);

  // A 4-bit head in groups of 64: 1000 rows of 32 code bytes + fp16 scale and minimum per row.
  QuantConfig q;
  q.params.bits = 4;
  q.params.group_size = 64;
  q.embeddings = true;
  EXPECT_EQ(decode_read_bytes(m, cfg, llama(), DType::kBF16, q, 2, 10, 5, true).head,
            1000u * 32 + 2 * 1000 * 2 + 64 * 2);
  q.embeddings = false;  // the head stays 16-bit
  EXPECT_EQ(decode_read_bytes(m, cfg, llama(), DType::kBF16, q, 2, 10, 5, true).head, 1000u * 64 * 2 + 64 * 2);
}

TEST(BenchFloors, FloorIsTheSlowerOfPcieAndHbm) {
  EXPECT_DOUBLE_EQ(decode_floor_seconds(50e9, 50e9, 3e12, 3e12), 1.0);
  EXPECT_DOUBLE_EQ(decode_floor_seconds(100e9, 50e9, 3e12, 3e12), 2.0);  // streaming bound
  EXPECT_DOUBLE_EQ(decode_floor_seconds(10e9, 50e9, 6e12, 3e12), 2.0);   // HBM bound
  EXPECT_DOUBLE_EQ(decode_floor_seconds(0, 50e9, 6e12, 3e12), 2.0);      // all resident
  EXPECT_DOUBLE_EQ(decode_floor_seconds(10e9, 50e9, 6e12, 0), 0.2);      // no HBM probe: the PCIe term alone
}

}  // namespace
}  // namespace zi
