// config.json → ModelConfig: both transformers layouts, defaults, GQA / head_dim, EOS sources, RoPE scaling, and
// errors that name the key; unsupported architectures name the supported list.
#include "engine/model/config.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/model/registry.h"
#include "engine/model/rope.h"

namespace zi {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

const std::string kData = ZI_TEST_DATA;

json llama_tf4() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "rope_scaling": null,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu"})");
}

StatusOr<ModelConfig> parse(const json& c, const json* gen = nullptr) { return parse_model_config(c, gen, "/m"); }

void expect_error(const json& c, const std::string& fragment) {
  auto r = parse(c);
  ASSERT_FALSE(r.ok()) << "accepted; expected an error about " << fragment;
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/m/config.json"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(fragment));
}

TEST(ModelConfig, FixtureLlamaTransformers5Layout) {
  auto c = load_model_config(kData + "/models/llama_mha");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 2048);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 176);
  EXPECT_EQ(c->num_layers, 3);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->max_position_embeddings, 256);
  EXPECT_EQ(c->default_max_context, 256);
  EXPECT_DOUBLE_EQ(c->norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope.theta, 10000.0);
  EXPECT_EQ(c->rope.type, "default");
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->dtype, "bfloat16");
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c->bos_token_id, 1);
}

TEST(ModelConfig, FixtureMistralGqaWithExplicitHeadDim) {
  auto c = load_model_config(kData + "/models/mistral");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "MistralForCausalLM");
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->sliding_window, 0);  // null
  EXPECT_DOUBLE_EQ(c->norm_eps, 1e-6);
}

TEST(ModelConfig, UnsupportedArchitectureNamesTheSupportedOnes) {
  json j = llama_tf4();
  j["architectures"] = json::array({"GPT2LMHeadModel"});
  auto c = parse(j);
  ASSERT_FALSE(c.ok());
  const std::string msg(c.status().message());
  EXPECT_THAT(msg, HasSubstr("GPT2LMHeadModel is not supported yet"));
  EXPECT_THAT(msg, HasSubstr("LlamaForCausalLM, MistralForCausalLM"));
}

TEST(ModelConfig, Transformers4LayoutAndDefaults) {
  auto c = parse(llama_tf4());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);  // hidden / heads
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
  EXPECT_EQ(c->dtype, "bfloat16");  // torch_dtype
  json j = llama_tf4();
  for (const char* k : {"num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings",
                        "tie_word_embeddings", "rope_scaling", "hidden_act"})
    j.erase(k);
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 32);  // MHA when absent
  EXPECT_DOUBLE_EQ(c->norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c->rope.theta, 10000.0);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_FALSE(c->tie_word_embeddings);
}

TEST(ModelConfig, TiedHeadDropsLmHeadFromTheWeights) {
  json j = llama_tf4();
  j["tie_word_embeddings"] = true;
  auto c = parse(j);
  ASSERT_TRUE(c.ok());
  auto specs = describe_weights(*c, *find_architecture(c->architecture));
  bool has_head = false;
  for (const auto& s : specs) has_head |= s.name == "lm_head.weight";
  EXPECT_FALSE(has_head);
  // Llama-3-8B-like sizes: embeddings + 32 layers + norm (tied).
  const uint64_t per_layer = 2ull * 4096 + 4096ull * 4096 * 2 + 4096ull * 1024 * 2 + 3ull * 4096 * 11008;
  EXPECT_EQ(count_parameters(specs), 32000ull * 4096 + 4096 + 32 * per_layer);
  j["tie_word_embeddings"] = false;
  auto untied = parse(j);
  EXPECT_EQ(count_parameters(describe_weights(*untied, *find_architecture("LlamaForCausalLM"))),
            count_parameters(specs) + 32000ull * 4096);
}

TEST(ModelConfig, EosFromGenerationConfigIntOrListElseConfig) {
  json gen = json::parse(R"({"eos_token_id": [128001, 128009], "bos_token_id": 128000})");
  auto c = parse(llama_tf4(), &gen);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{128001, 128009}));
  EXPECT_EQ(c->bos_token_id, 128000);
  gen = json::parse(R"({"eos_token_id": 7})");
  c = parse(llama_tf4(), &gen);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{7});
  gen = json::parse(R"({"do_sample": true})");
  c = parse(llama_tf4(), &gen);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{2});  // config.json's
  json j = llama_tf4();
  j["eos_token_id"] = json::array({2, 3});
  c = parse(j);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{2, 3}));
  j["eos_token_id"] = nullptr;
  c = parse(j);
  EXPECT_TRUE(c->eos_token_ids.empty());
  j["eos_token_id"] = "2";
  expect_error(j, "eos_token_id");
}

TEST(ModelConfig, InconsistentOrMissingKeysNameTheKey) {
  auto with = [](const char* key, json v) {
    json j = llama_tf4();
    j[key] = v;
    return j;
  };
  auto without = [](const char* key) {
    json j = llama_tf4();
    j.erase(key);
    return j;
  };
  expect_error(with("num_attention_heads", 48), "num_attention_heads (48) must divide hidden_size (4096)");
  expect_error(with("num_key_value_heads", 5), "num_key_value_heads (5) must divide num_attention_heads (32)");
  expect_error(with("num_key_value_heads", 64), "num_key_value_heads");
  expect_error(with("head_dim", 7), "head_dim (7) must be even");
  expect_error(with("hidden_size", -4), "hidden_size must be a positive integer");
  expect_error(with("hidden_size", "4096"), "hidden_size must be a positive integer");
  expect_error(with("vocab_size", 0), "vocab_size");
  expect_error(with("rms_norm_eps", "x"), "rms_norm_eps must be a number");
  expect_error(with("tie_word_embeddings", 1), "tie_word_embeddings must be true or false");
  expect_error(with("hidden_act", "gelu"), "hidden_act 'gelu' is not supported");
  expect_error(with("architectures", json::array()), "architectures");
  for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "vocab_size", "architectures"})
    expect_error(without(k), k);
  // head_dim given: heads need not divide hidden_size (e.g. Mistral-Nemo: 32 × 160 ≠ 5120 is fine).
  auto c = parse(with("head_dim", 160));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 160);
}

TEST(ModelConfig, RopeParametersAndScaling) {
  json j = llama_tf4();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = json::parse(R"({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  // transformers 4 spelling of the same.
  json t4 = llama_tf4();
  t4["rope_scaling"] = json::parse(R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  auto c4 = parse(t4);
  ASSERT_TRUE(c4.ok()) << c4.status();
  EXPECT_EQ(rope_inv_freq(c4->rope, 128), rope_inv_freq(c->rope, 128));
  // Llama 3: high frequencies untouched, the lowest divided by the factor.
  RopeConfig plain;
  plain.theta = 500000.0;
  auto base = rope_inv_freq(plain, 128), scaled = rope_inv_freq(c->rope, 128);
  EXPECT_FLOAT_EQ(scaled[0], base[0]);
  EXPECT_NEAR(scaled[63], base[63] / 8.0f, 1e-12);
  // Linear: every frequency divided.
  t4["rope_scaling"] = json::parse(R"({"type": "linear", "factor": 4.0})");
  c4 = parse(t4);
  ASSERT_TRUE(c4.ok()) << c4.status();
  auto lin = rope_inv_freq(c4->rope, 128);
  for (int i = 0; i < 64; ++i) EXPECT_FLOAT_EQ(lin[i], base[i] / 4.0f);
  // Default frequencies: 1 / θ^(2i/D).
  EXPECT_FLOAT_EQ(base[1], static_cast<float>(1.0 / std::pow(500000.0, 2.0 / 128)));
  // Errors name the key.
  t4["rope_scaling"] = json::parse(R"({"type": "yarn", "factor": 4.0})");
  expect_error(t4, "rope_scaling.rope_type 'yarn' is not supported");
  t4["rope_scaling"] = json::parse(R"({"type": "linear"})");
  expect_error(t4, "rope_scaling.factor is missing");
  json both = j;
  both["rope_theta"] = 10000.0;
  expect_error(both, "rope_theta (10000) disagrees with rope_parameters.rope_theta (500000)");
  json no_theta = j;
  no_theta["rope_parameters"].erase("rope_theta");
  expect_error(no_theta, "rope_parameters.rope_theta is missing");
}

TEST(ModelConfig, MistralSlidingWindowAndNoBiases) {
  json j = llama_tf4();
  j["architectures"] = json::array({"MistralForCausalLM"});
  j["sliding_window"] = 4096;
  j["attention_bias"] = true;
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_FALSE(c->attention_bias);
}

TEST(ModelConfig, FileErrorsNameTheFile) {
  auto c = load_model_config("/nonexistent/dir");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("/nonexistent/dir/config.json"));
  const std::string dir = ::testing::TempDir() + "/zi_cfg_bad_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << "{not json";
  c = load_model_config(dir);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(dir + "/config.json: not valid JSON"));
  std::ofstream(dir + "/config.json") << llama_tf4().dump();
  std::ofstream(dir + "/generation_config.json") << "[1]";
  c = load_model_config(dir);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("generation_config.json"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zi
