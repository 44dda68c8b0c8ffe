// OPT, BLOOM and Qwen2 configs, their checkpoint tensor lists, ALiBi slopes, OPT's learned-position rows, and RoPE
// scaling (linear / llama3 / dynamic) as transformers defines it; errors name the key; an unsupported architecture
// names the supported list.
#include <cmath>
#include <map>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/io/safetensors.h"
#include "engine/model/bloom.h"
#include "engine/model/config.h"
#include "engine/model/opt.h"
#include "engine/model/registry.h"
#include "engine/model/rope.h"
#include "tests/unit/model_fixture_util.h"

namespace zi {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

StatusOr<ModelConfig> parse(const json& c) { return parse_model_config(c, nullptr, "/m"); }

void expect_error(const json& c, const std::string& fragment) {
  auto r = parse(c);
  ASSERT_FALSE(r.ok()) << "accepted; expected an error about " << fragment;
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/m/config.json"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(fragment));
}

std::set<std::string> spec_names(const ModelConfig& cfg) {
  std::set<std::string> out;
  for (const WeightSpec& s : describe_weights(cfg, *find_architecture(cfg.architecture))) out.insert(s.name);
  return out;
}

// facebook/opt-350m's config.json (transformers 4 layout).
json opt350m() {
  return json::parse(R"({
    "_remove_final_layer_norm": false, "activation_dropout": 0.0, "activation_function": "relu",
    "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2, "do_layer_norm_before": false,
    "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 4096, "hidden_size": 1024, "init_std": 0.02, "layerdrop": 0.0,
    "max_position_embeddings": 2048, "model_type": "opt", "num_attention_heads": 16, "num_hidden_layers": 24,
    "pad_token_id": 1, "prefix": "</s>", "torch_dtype": "float16", "use_cache": true, "vocab_size": 50272,
    "word_embed_proj_dim": 512})");
}

// bigscience/bloom-560m-like config.json (legacy n_embed spelling).
json bloom560m() {
  return json::parse(R"({
    "apply_residual_connection_post_layernorm": false, "architectures": ["BloomForCausalLM"],
    "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "hidden_dropout": 0.0,
    "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "bloom", "n_embed": 1024, "n_head": 16,
    "n_layer": 24, "pad_token_id": 3, "pretraining_tp": 1, "slow_but_exact": false, "vocab_size": 250880})");
}

// Qwen/Qwen2-0.5B-like config.json.
json qwen2() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu",
    "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 131072, "max_window_layers": 24,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": true,
    "torch_dtype": "bfloat16", "use_sliding_window": false, "vocab_size": 151936})");
}

TEST(ModelFamilies, UnsupportedArchitectureListsTheSupportedOnes) {
  json j = qwen2();
  j["architectures"] = json::array({"GPT2LMHeadModel"});
  expect_error(j, "architecture GPT2LMHeadModel is not supported yet (supported: LlamaForCausalLM, "
                  "MistralForCausalLM, Qwen2ForCausalLM, OPTForCausalLM, BloomForCausalLM)");
}

TEST(ModelFamilies, Opt350mPostLayerNormWithProjections) {
  auto c = parse(opt350m());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 1024);
  EXPECT_EQ(c->intermediate_size, 4096);
  EXPECT_EQ(c->num_heads, 16);
  EXPECT_EQ(c->num_kv_heads, 16);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->embed_dim, 512);
  EXPECT_FALSE(c->norm_before);
  EXPECT_FALSE(c->final_norm);  // OPTDecoder has no final_layer_norm when the blocks are post-LN
  EXPECT_TRUE(c->norm_affine);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_TRUE(c->tie_word_embeddings);  // transformers' default
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->default_max_context, 2048);
  EXPECT_DOUBLE_EQ(c->norm_eps, 1e-5);
  const std::set<std::string> names = spec_names(*c);
  EXPECT_TRUE(names.count("model.decoder.project_in.weight"));
  EXPECT_TRUE(names.count("model.decoder.project_out.weight"));
  EXPECT_FALSE(names.count("model.decoder.final_layer_norm.weight"));
  EXPECT_FALSE(names.count("lm_head.weight"));
  EXPECT_TRUE(names.count("model.decoder.layers.23.fc2.bias"));
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const WeightSpec& s : describe_weights(*c, *find_architecture(c->architecture))) shapes[s.name] = s.shape;
  EXPECT_EQ(shapes["model.decoder.embed_tokens.weight"], (std::vector<int64_t>{50272, 512}));
  EXPECT_EQ(shapes["model.decoder.embed_positions.weight"], (std::vector<int64_t>{2050, 1024}));
  EXPECT_EQ(shapes["model.decoder.project_in.weight"], (std::vector<int64_t>{1024, 512}));
  EXPECT_EQ(shapes["model.decoder.project_out.weight"], (std::vector<int64_t>{512, 1024}));
  EXPECT_EQ(shapes["model.decoder.layers.0.fc1.weight"], (std::vector<int64_t>{4096, 1024}));
}

TEST(ModelFamilies, OptFlagsAndErrors) {
  json j = opt350m();
  j["do_layer_norm_before"] = true;
  j["word_embed_proj_dim"] = 1024;
  j["enable_bias"] = false;
  j["layer_norm_elementwise_affine"] = false;
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->final_norm);
  EXPECT_EQ(c->embed_dim, 0);
  const std::set<std::string> names = spec_names(*c);
  for (const std::string& n : names) {
    EXPECT_THAT(n, ::testing::Not(HasSubstr(".bias"))) << "enable_bias false";
    EXPECT_THAT(n, ::testing::Not(HasSubstr("layer_norm"))) << "no affine LayerNorm parameters";
    EXPECT_THAT(n, ::testing::Not(HasSubstr("project_")));
  }
  j["_remove_final_layer_norm"] = true;
  j["layer_norm_elementwise_affine"] = true;
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->final_norm);
  EXPECT_FALSE(spec_names(*c).count("model.decoder.final_layer_norm.weight"));

  json bad = opt350m();
  bad["activation_function"] = "quick_gelu";
  expect_error(bad, "activation_function 'quick_gelu' is not supported (supported: relu, gelu");
  bad = opt350m();
  bad["num_attention_heads"] = 24;
  expect_error(bad, "num_attention_heads (24) must divide hidden_size (1024)");
  bad = opt350m();
  bad.erase("ffn_dim");
  expect_error(bad, "ffn_dim is missing");
  bad = opt350m();
  bad["do_layer_norm_before"] = "yes";
  expect_error(bad, "do_layer_norm_before must be true or false");
}

TEST(ModelFamilies, OptPositionRowsAreOffsetByTwoAndBounded) {
  std::vector<SeqSlice> seqs = {{0, 0, 3, 0}, {1, 3, 1, 5}};
  auto rows = opt::position_rows(seqs, 2048);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(*rows, (std::vector<int32_t>{2, 3, 4, 7}));
  rows = opt::position_rows({{0, 0, 2, 2046}}, 2048);  // positions 2046, 2047: the table's last rows
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(*rows, (std::vector<int32_t>{2048, 2049}));
  rows = opt::position_rows({{0, 0, 1, 2048}}, 2048);
  ASSERT_FALSE(rows.ok());
  EXPECT_THAT(std::string(rows.status().message()), HasSubstr("position 2048 is past them"));
}

TEST(ModelFamilies, OptRefusesPositionsPastItsTable) {
  // opt's table holds max_position_embeddings = 256 positions: a longer context errors instead of reading past it.
  EngineOptions o = testing_fixtures::cpu_options(testing_fixtures::models_dir() + "/opt");
  o.max_context = 300;
  auto ex = testing_fixtures::make_executor(o);
  ASSERT_TRUE(ex);
  SeqStep s;
  s.seq_id = 1;
  s.first = true;
  s.tokens.assign(257, 5);
  auto r = ex->step({{s}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("OPT has learned positions 0..255"));
  s.seq_id = 2;
  s.tokens.assign(256, 5);  // exactly the table
  EXPECT_TRUE(ex->step({{s}, {}}).ok());
  // Its default context is the table.
  o.max_context = 0;
  ex = testing_fixtures::make_executor(o);
  ASSERT_TRUE(ex);
  EXPECT_EQ(ex->summary().max_context, 256u);
}

TEST(ModelFamilies, BloomConfigAliasesAndContext) {
  auto c = parse(bloom560m());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 1024);
  EXPECT_EQ(c->num_layers, 24);
  EXPECT_EQ(c->num_heads, 16);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->intermediate_size, 4096);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->residual_from_norm);
  EXPECT_EQ(c->max_position_embeddings, 0);  // ALiBi: no table
  EXPECT_EQ(c->default_max_context, 2048);   // no seq_length
  json j = bloom560m();
  j.erase("n_embed");
  j.erase("n_layer");
  j.erase("n_head");
  j["hidden_size"] = 64;
  j["num_hidden_layers"] = 2;
  j["num_attention_heads"] = 4;
  j["seq_length"] = 4096;
  j["apply_residual_connection_post_layernorm"] = true;
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->default_max_context, 4096);
  EXPECT_TRUE(c->residual_from_norm);
  const std::set<std::string> names = spec_names(*c);
  EXPECT_TRUE(names.count("transformer.h.1.self_attention.query_key_value.weight"));
  EXPECT_TRUE(names.count("transformer.word_embeddings_layernorm.bias"));
  j.erase("hidden_size");
  expect_error(j, "hidden_size / n_embed is missing");
  j = bloom560m();
  j["n_head"] = 12;
  expect_error(j, "n_head (12) must divide hidden_size (1024)");
}

TEST(ModelFamilies, BloomFixturesDefaultContext) {
  // bloom_6h's config.json carries seq_length 64; bloom has none (→ 2048).
  for (auto [name, context] : {std::pair<const char*, uint32_t>{"bloom_6h", 64}, {"bloom", 2048}}) {
    EngineOptions o = testing_fixtures::cpu_options(testing_fixtures::models_dir() + "/" + name);
    o.max_context = 0;
    o.max_batch_size = 1;
    auto ex = testing_fixtures::make_executor(o);
    ASSERT_TRUE(ex);
    EXPECT_EQ(ex->summary().max_context, context) << name;
  }
}

TEST(ModelFamilies, AlibiSlopesAsTransformersBuildsThem) {
  // Powers of two: 2^(-8/n · h) for h = 1..n.
  const std::vector<float> s8 = bloom::alibi_slopes(8);
  ASSERT_EQ(s8.size(), 8u);
  for (int h = 0; h < 8; ++h) EXPECT_FLOAT_EQ(s8[h], std::ldexp(1.0f, -(h + 1)));
  EXPECT_EQ(bloom::alibi_slopes(1), std::vector<float>{1.0f / 256});
  // 6 heads: the 4-head slopes, then the odd powers of the 8-head base (1/2, 1/8).
  EXPECT_EQ(bloom::alibi_slopes(6), (std::vector<float>{0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f}));
  // 12 heads: 2^-1 .. 2^-8, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
  const std::vector<float> s12 = bloom::alibi_slopes(12);
  ASSERT_EQ(s12.size(), 12u);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(s12[8 + i], static_cast<float>(std::pow(2.0, -0.5 - i)));
  // 112 heads (BLOOM-176B): 64 + the first 48 odd powers of the 128-head base.
  const std::vector<float> s112 = bloom::alibi_slopes(112);
  ASSERT_EQ(s112.size(), 112u);
  EXPECT_FLOAT_EQ(s112[63], static_cast<float>(std::pow(2.0, -8.0)));
  EXPECT_FLOAT_EQ(s112[64], static_cast<float>(std::pow(2.0, -4.0 / 64)));
  EXPECT_FLOAT_EQ(s112[111], static_cast<float>(std::pow(2.0, -4.0 / 64 * 95)));
}

TEST(ModelFamilies, Qwen2BiasesAndSlidingWindows) {
  auto c = parse(qwen2());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->sliding_window, 0);  // use_sliding_window false
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_DOUBLE_EQ(c->rope.theta, 1e6);
  const std::set<std::string> names = spec_names(*c);
  for (const char* p : {"q_proj", "k_proj", "v_proj"})
    EXPECT_TRUE(names.count(absl::StrCat("model.layers.0.self_attn.", p, ".bias"))) << p;
  EXPECT_FALSE(names.count("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_FALSE(names.count("model.layers.0.mlp.up_proj.bias"));
  EXPECT_FALSE(names.count("lm_head.weight"));  // tied

  json j = qwen2();
  j["use_sliding_window"] = true;
  j["max_window_layers"] = 0;  // transformers 4 rule: layers >= 0 slide, i.e. all
  j["sliding_window"] = 4096;
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 4096);
  j["max_window_layers"] = 12;
  expect_error(j, "max_window_layers mixes sliding-window and full-attention layers (12 of 24 slide)");
  j.erase("max_window_layers");
  j["num_hidden_layers"] = 2;
  j["layer_types"] = json::array({"sliding_attention", "sliding_attention"});
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 4096);
  j["layer_types"] = json::array({"full_attention", "sliding_attention"});
  expect_error(j, "layer_types mixes sliding-window and full-attention layers (1 of 2 slide)");
  j["layer_types"] = json::array({"full_attention"});
  expect_error(j, "layer_types must be a list of num_hidden_layers (2) strings");
  j["layer_types"] = json::array({"full_attention", "chunked"});
  expect_error(j, "layer_types [1] must be \"full_attention\" or \"sliding_attention\", got \"chunked\"");
  // Without use_sliding_window transformers drops the window whatever layer_types say.
  j["layer_types"] = json::array({"sliding_attention", "sliding_attention"});
  j["use_sliding_window"] = false;
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 0);
}

TEST(ModelFamilies, DynamicNtkRope) {
  json j = qwen2();
  j["architectures"] = json::array({"LlamaForCausalLM"});
  j["max_position_embeddings"] = 16;
  j["rope_scaling"] = json::parse(R"({"type": "dynamic", "factor": 2.0})");
  j["rope_theta"] = 10000.0;
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, "dynamic");
  EXPECT_EQ(c->rope.original_max_position_embeddings, 16);
  RopeConfig plain;
  plain.theta = 10000.0;
  const int64_t D = 16;
  // Within max_position_embeddings: the plain table, at any length up to it.
  EXPECT_EQ(rope_inv_freq(c->rope, D, 0), rope_inv_freq(plain, D));
  EXPECT_EQ(rope_inv_freq(c->rope, D, 16), rope_inv_freq(plain, D));
  // Beyond: θ' = θ · (factor · L / max − (factor − 1))^(D / (D − 2)), here L = 33: (66/16 − 1)^(16/14).
  const std::vector<float> inv = rope_inv_freq(c->rope, D, 33);
  const double base = 10000.0 * std::pow(2.0 * 33 / 16 - 1.0, 16.0 / 14.0);
  ASSERT_EQ(inv.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    const double want = 1.0 / std::pow(base, 2.0 * i / D);
    EXPECT_NEAR(inv[i], want, 2e-6 * want) << i;
  }
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_LT(inv[7], rope_inv_freq(plain, D)[7]);  // longer wavelengths past the trained length
  // Errors name the key.
  j["rope_scaling"] = json::parse(R"({"type": "dynamic"})");
  expect_error(j, "rope_scaling.factor is missing (needed by rope_type dynamic)");
  j["rope_scaling"] = json::parse(R"({"type": "dynamic", "factor": 0.5})");
  expect_error(j, "rope_scaling.factor must be at least 1 for rope_type dynamic");
  j["rope_scaling"] = json::parse(R"({"type": "longrope", "factor": 2.0})");
  expect_error(j, "'longrope' is not supported (supported: default, linear, llama3, dynamic)");
}

TEST(ModelFamilies, FixtureConfigsReadAsIntended) {
  const std::string dir = testing_fixtures::models_dir();
  auto llama3 = load_model_config(dir + "/llama3");
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_EQ(llama3->rope.type, "llama3");
  EXPECT_EQ(llama3->rope.original_max_position_embeddings, 64);
  EXPECT_TRUE(llama3->tie_word_embeddings);
  EXPECT_LT(llama3->num_kv_heads, llama3->num_heads);
  auto q = load_model_config(dir + "/qwen2");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_TRUE(q->qkv_bias);
  EXPECT_EQ(q->sliding_window, 0);
  auto post = load_model_config(dir + "/opt_post_ln");
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_FALSE(post->norm_before);
  EXPECT_EQ(post->embed_dim, 32);
  auto variant = load_model_config(dir + "/opt_variant");
  ASSERT_TRUE(variant.ok()) << variant.status();
  EXPECT_FALSE(variant->norm_affine);
  EXPECT_FALSE(variant->attention_bias);
  EXPECT_EQ(variant->hidden_act, "gelu");
  auto b6 = load_model_config(dir + "/bloom_6h");
  ASSERT_TRUE(b6.ok()) << b6.status();
  EXPECT_EQ(b6->num_heads, 6);
  EXPECT_TRUE(b6->residual_from_norm);
}

// Every fixture's checkpoint holds exactly the tensors its architecture reads (a tied head is not saved): nothing
// the forward ignores, nothing it needs that transformers did not write.
TEST(ModelFamilies, WeightListsMatchTheCheckpoints) {
  for (const std::string& name : testing_fixtures::fixture_names()) {
    const std::string dir = testing_fixtures::models_dir() + "/" + name;
    auto cfg = load_model_config(dir);
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    auto ck = Checkpoint::Open(dir);
    ASSERT_TRUE(ck.ok()) << ck.status();
    const std::vector<std::string> have = (*ck)->names();
    EXPECT_EQ(spec_names(*cfg), std::set<std::string>(have.begin(), have.end())) << name;
  }
}

}  // namespace
}  // namespace zi
