// The Llama-family forward on configurations the fixtures do not cover (GQA/MQA ratios, explicit head_dim ≠
// hidden/heads, tied heads, biases, RoPE θ and llama3/linear scaling, Mistral's sliding window, F16/F32/BF16 and
// sharded checkpoints), checked against an independent float64 implementation written here from the
// transformers definitions (full recompute, no KV cache).
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/io/safetensors_writer.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"

namespace zi {
namespace {

using json = nlohmann::json;
using Mat = std::vector<double>;  // row-major

struct Case {
  std::string name;
  json config;
  DType dtype = DType::kBF16;
  bool sharded = false;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// Weights as stored (already rounded to the checkpoint dtype), in double.
struct Weights {
  std::map<std::string, Mat> w;
  std::map<std::string, std::vector<int64_t>> shape;
};

double round_to(DType dt, float v) {
  if (dt == DType::kBF16) return bf16_to_f32(f32_to_bf16(v));
  if (dt == DType::kF16) return f16_to_f32(f32_to_f16(v));
  return v;
}

// Writes config.json and the checkpoint; returns the weights the model must compute with.
Weights write_model(const std::string& dir, const Case& c, const ModelConfig& cfg) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << c.config.dump(2);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Weights W;
  const int64_t H = cfg.hidden_size, F = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t qo = cfg.num_heads * cfg.head_dim, kvo = cfg.num_kv_heads * cfg.head_dim;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean, float std) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    Mat m(n);
    for (auto& v : m) v = round_to(c.dtype, mean + std * normal(rng));
    W.w[name] = m;
    W.shape[name] = shape;
  };
  add("model.embed_tokens.weight", {V, H}, 0, 0.08f);
  add("model.norm.weight", {H}, 1, 0.05f);
  if (!cfg.tie_word_embeddings) add("lm_head.weight", {V, H}, 0, 0.08f);
  for (int l = 0; l < cfg.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, 1, 0.05f);
    add(p + "post_attention_layernorm.weight", {H}, 1, 0.05f);
    for (auto [n, out, in] : {std::tuple{"self_attn.q_proj", qo, H}, {"self_attn.k_proj", kvo, H},
                              {"self_attn.v_proj", kvo, H}, {"self_attn.o_proj", H, qo}}) {
      add(p + n + ".weight", {out, in}, 0, 0.08f);
      if (cfg.attention_bias) add(p + n + ".bias", {out}, 0, 0.05f);
    }
    for (auto [n, out, in] : {std::tuple{"mlp.gate_proj", F, H}, {"mlp.up_proj", F, H}, {"mlp.down_proj", H, F}}) {
      add(p + n + ".weight", {out, in}, 0, 0.08f);
      if (cfg.mlp_bias) add(p + n + ".bias", {out}, 0, 0.05f);
    }
  }
  // Serialise in the checkpoint dtype.
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, m] : W.w) {
    std::vector<uint8_t> bytes(m.size() * dtype_size(c.dtype));
    for (size_t i = 0; i < m.size(); ++i) {
      if (c.dtype == DType::kF32) {
        float f = static_cast<float>(m[i]);
        std::memcpy(bytes.data() + 4 * i, &f, 4);
      } else {
        uint16_t h = c.dtype == DType::kBF16 ? f32_to_bf16(static_cast<float>(m[i])) : f32_to_f16(static_cast<float>(m[i]));
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    buffers.push_back(std::move(bytes));
    tensors.push_back({name, c.dtype, W.shape[name], buffers.back()});
  }
  if (!c.sharded) {
    EXPECT_TRUE(write_safetensors(dir + "/model.safetensors", tensors).ok());
  } else {
    // Two shards: even and odd tensors, listed by the index.
    std::vector<TensorToWrite> a, b;
    json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
    for (size_t i = 0; i < tensors.size(); ++i) {
      (i % 2 ? b : a).push_back(tensors[i]);
      index["weight_map"][tensors[i].name] = i % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    }
    EXPECT_TRUE(write_safetensors(dir + "/model-00001-of-00002.safetensors", a).ok());
    EXPECT_TRUE(write_safetensors(dir + "/model-00002-of-00002.safetensors", b).ok());
    std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
  }
  return W;
}

// y[T, out] = x[T, in] · w[out, in]ᵀ + b
Mat matmul(const Mat& x, int64_t T, int64_t in, const Mat& w, int64_t out, const Mat* b) {
  Mat y(T * out);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t k = 0; k < in; ++k) s += x[t * in + k] * w[o * in + k];
      y[t * out + o] = s;
    }
  return y;
}

Mat rms_norm(const Mat& x, int64_t T, int64_t H, const Mat& w, double eps) {
  Mat y(T * H);
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += x[t * H + i] * x[t * H + i];
    const double inv = 1.0 / std::sqrt(ss / H + eps);
    for (int64_t i = 0; i < H; ++i) y[t * H + i] = x[t * H + i] * inv * w[i];
  }
  return y;
}

// logits [T, V] of the whole sequence `ids`.
Mat reference_logits(const ModelConfig& c, Weights& W, const std::vector<int32_t>& ids) {
  const int64_t T = ids.size(), H = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t nH = c.num_heads, nKV = c.num_kv_heads, D = c.head_dim;
  auto get = [&](const std::string& n) -> Mat& { return W.w.at(n); };
  auto bias = [&](const std::string& n) -> const Mat* { return W.w.count(n) ? &W.w.at(n) : nullptr; };
  // inv_freq: the default formula in double; scaled variants from the engine's (separately tested) function.
  std::vector<double> inv_freq(D / 2);
  const std::vector<float> scaled = rope_inv_freq(c.rope, D);
  for (int64_t i = 0; i < D / 2; ++i)
    inv_freq[i] = c.rope.type == "default" ? 1.0 / std::pow(c.rope.theta, 2.0 * i / D) : scaled[i];
  Mat x(T * H);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < H; ++i) x[t * H + i] = get("model.embed_tokens.weight")[ids[t] * H + i];
  auto rope = [&](Mat& m, int64_t heads) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < D / 2; ++i) {
          double* v = &m[(t * heads + h) * D];
          const double a = t * inv_freq[i], x1 = v[i], x2 = v[i + D / 2];
          v[i] = x1 * std::cos(a) - x2 * std::sin(a);
          v[i + D / 2] = x2 * std::cos(a) + x1 * std::sin(a);
        }
  };
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Mat h = rms_norm(x, T, H, get(p + "input_layernorm.weight"), c.norm_eps);
    Mat q = matmul(h, T, H, get(p + "self_attn.q_proj.weight"), nH * D, bias(p + "self_attn.q_proj.bias"));
    Mat k = matmul(h, T, H, get(p + "self_attn.k_proj.weight"), nKV * D, bias(p + "self_attn.k_proj.bias"));
    Mat v = matmul(h, T, H, get(p + "self_attn.v_proj.weight"), nKV * D, bias(p + "self_attn.v_proj.bias"));
    rope(q, nH);
    rope(k, nKV);
    Mat attn(T * nH * D, 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t hh = 0; hh < nH; ++hh) {
        const int64_t g = hh / (nH / nKV);
        std::vector<double> s;
        std::vector<int64_t> keys;
        for (int64_t j = 0; j <= t; ++j) {
          if (c.sliding_window > 0 && t - j >= c.sliding_window) continue;
          double d = 0;
          for (int64_t e = 0; e < D; ++e) d += q[(t * nH + hh) * D + e] * k[(j * nKV + g) * D + e];
          s.push_back(d / std::sqrt(static_cast<double>(D)));
          keys.push_back(j);
        }
        double mx = *std::max_element(s.begin(), s.end()), z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (size_t n = 0; n < keys.size(); ++n)
          for (int64_t e = 0; e < D; ++e) attn[(t * nH + hh) * D + e] += s[n] / z * v[(keys[n] * nKV + g) * D + e];
      }
    Mat o = matmul(attn, T, nH * D, get(p + "self_attn.o_proj.weight"), H, bias(p + "self_attn.o_proj.bias"));
    for (int64_t i = 0; i < T * H; ++i) x[i] += o[i];
    Mat h2 = rms_norm(x, T, H, get(p + "post_attention_layernorm.weight"), c.norm_eps);
    Mat gate = matmul(h2, T, H, get(p + "mlp.gate_proj.weight"), F, bias(p + "mlp.gate_proj.bias"));
    Mat up = matmul(h2, T, H, get(p + "mlp.up_proj.weight"), F, bias(p + "mlp.up_proj.bias"));
    for (int64_t i = 0; i < T * F; ++i) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
    Mat down = matmul(gate, T, F, get(p + "mlp.down_proj.weight"), H, bias(p + "mlp.down_proj.bias"));
    for (int64_t i = 0; i < T * H; ++i) x[i] += down[i];
  }
  Mat hf = rms_norm(x, T, H, get("model.norm.weight"), c.norm_eps);
  const Mat& head = c.tie_word_embeddings ? get("model.embed_tokens.weight") : get("lm_head.weight");
  return matmul(hf, T, H, head, V, nullptr);
}

double rel_err(const std::vector<float>& got, const double* ref, size_t n) {
  EXPECT_EQ(got.size(), n);
  double mr = 0, md = 0;
  for (size_t i = 0; i < n && i < got.size(); ++i) {
    mr = std::max(mr, std::abs(ref[i]));
    md = std::max(md, std::abs(got[i] - ref[i]));
  }
  return md / mr;
}

class LlamaReference : public ::testing::TestWithParam<Case> {};

TEST_P(LlamaReference, ForwardMatchesFloat64Reference) {
  const Case& c = GetParam();
  const std::string dir = ::testing::TempDir() + "/zi_llama_ref_" + std::to_string(::getpid()) + "_" + c.name;
  std::filesystem::remove_all(dir);
  auto cfg = parse_model_config(c.config, nullptr, dir);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  Weights W = write_model(dir, c, *cfg);

  EngineOptions o;
  o.model_dir = dir;
  o.device = Device::kCpu;
  o.max_batch_size = 2;
  auto ex = create_executor(o);
  ASSERT_TRUE(ex.ok()) << ex.status();
  std::vector<int32_t> ids = {3, 17, 92, 5, 44, 61, 8, 99, 23, 71, 12, 50};
  SeqStep s;
  s.seq_id = 1;
  s.tokens = ids;
  s.first = true;
  s.want_logits = true;
  auto out = (*ex)->step({{s}, {}});
  ASSERT_TRUE(out.ok()) << out.status();
  Mat ref = reference_logits(*cfg, W, ids);
  EXPECT_LT(rel_err(out->results[0].logits, ref.data(), ref.size()), 1e-4) << c.name << " prefill";
  // Three decode steps through the KV cache.
  for (int k = 0; k < 3; ++k) {
    const int32_t next = out->results[0].token;
    ids.push_back(next);
    SeqStep d;
    d.seq_id = 1;
    d.tokens = {next};
    d.want_logits = true;
    out = (*ex)->step({{d}, {}});
    ASSERT_TRUE(out.ok()) << out.status();
    ref = reference_logits(*cfg, W, ids);
    const size_t V = cfg->vocab_size;
    EXPECT_LT(rel_err(out->results[0].logits, ref.data() + (ids.size() - 1) * V, V), 1e-4) << c.name << " step " << k;
  }
  std::filesystem::remove_all(dir);
}

json base_config(const char* arch) {
  return json{{"architectures", {arch}}, {"vocab_size", 128},         {"hidden_size", 48},
              {"intermediate_size", 80}, {"num_hidden_layers", 2},   {"num_attention_heads", 6},
              {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5}};
}

std::vector<Case> cases() {
  std::vector<Case> out;
  {
    // GQA 6/2, head_dim 12 ≠ 48/6, tied head, biases, Llama-3 RoPE in the transformers-5 layout.
    json j = base_config("LlamaForCausalLM");
    j["num_key_value_heads"] = 2;
    j["head_dim"] = 12;
    j["tie_word_embeddings"] = true;
    j["attention_bias"] = true;
    j["mlp_bias"] = true;
    j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                            {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 16}};
    out.push_back({"gqa_tied_bias_llama3", j, DType::kBF16, false});
  }
  {
    // MQA (one kv head), sliding window 5 over a 12-token prompt, θ = 1e6 in the transformers-4 layout, F16.
    json j = base_config("MistralForCausalLM");
    j["num_attention_heads"] = 4;
    j["num_key_value_heads"] = 1;
    j["sliding_window"] = 5;
    j["rope_theta"] = 1e6;
    out.push_back({"mistral_mqa_window_f16", j, DType::kF16, false});
  }
  {
    // MHA, head_dim derived, linear RoPE scaling, F32 weights in a sharded checkpoint.
    json j = base_config("LlamaForCausalLM");
    j["rope_theta"] = 10000.0;
    j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    out.push_back({"mha_linear_rope_f32_sharded", j, DType::kF32, true});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Configs, LlamaReference, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace zi
