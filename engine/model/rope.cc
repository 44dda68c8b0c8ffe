#include "engine/model/rope.h"

#include <cmath>

namespace zi {

using json = nlohmann::json;

namespace {

// transformers' dynamic NTK table for a sequence of `seq_len` > max_pos tokens, step by step in fp32 as torch does
// it there (seq_len arrives as an int64 tensor, so every operation is a float32 tensor op).
std::vector<float> dynamic_ntk_inv_freq(const RopeConfig& rope, int64_t head_dim, int64_t seq_len) {
  const int64_t max_pos = rope.original_max_position_embeddings;
  float ratio = static_cast<float>(rope.factor) * static_cast<float>(seq_len);
  ratio = ratio / static_cast<float>(max_pos);
  ratio = ratio - static_cast<float>(rope.factor - 1.0);
  const double exponent = static_cast<double>(head_dim) / static_cast<double>(head_dim - 2);
  const float base = static_cast<float>(rope.theta) * std::pow(ratio, static_cast<float>(exponent));
  std::vector<float> inv(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv[i] = 1.0f / std::pow(base, e);
  }
  return inv;
}

}  // namespace

std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim, int64_t seq_len) {
  if (rope.type == "dynamic" && seq_len > rope.original_max_position_embeddings)
    return dynamic_ntk_inv_freq(rope, head_dim, seq_len);
  std::vector<float> inv(static_cast<size_t>(head_dim / 2));
  const float base = static_cast<float>(rope.theta);
  for (size_t i = 0; i < inv.size(); ++i) {
    // 1 / base^(2i / D), each step rounded to fp32 as torch does.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float power = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
    inv[i] = 1.0f / power;
  }
  if (rope.type == "linear") {
    for (float& f : inv) f = static_cast<float>(f / rope.factor);
  } else if (rope.type == "llama3") {
    // Long wavelengths are divided by `factor`, short ones kept, the band between interpolated.
    const double old_ctx = static_cast<double>(rope.original_max_position_embeddings);
    const double low_freq_wavelen = old_ctx / rope.low_freq_factor;
    const double high_freq_wavelen = old_ctx / rope.high_freq_factor;
    for (float& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      double scaled = wavelen > low_freq_wavelen ? f / rope.factor : f;
      if (!(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen)) {
        const double smooth = (old_ctx / wavelen - rope.low_freq_factor) /
                              (rope.high_freq_factor - rope.low_freq_factor);
        scaled = (1.0 - smooth) * scaled / rope.factor + smooth * scaled;
      }
      f = static_cast<float>(scaled);
    }
  }
  return inv;
}

namespace {

// Reads the scaling fields of one rope dict (`where` names it for errors).
Status read_rope_dict(const ConfigReader& top, const json& d, const std::string& where, int64_t max_pos,
                      RopeConfig* rope) {
  ConfigReader r(d, top.file());
  auto key = [&](const std::string& k) { return where + "." + k; };
  std::string type = "default";
  if (r.has("rope_type")) {
    if (!d["rope_type"].is_string()) return top.error(key("rope_type"), "must be a string");
    type = d["rope_type"].get<std::string>();
  } else if (r.has("type")) {
    if (!d["type"].is_string()) return top.error(key("type"), "must be a string");
    type = d["type"].get<std::string>();
  }
  if (type != "default" && type != "linear" && type != "llama3" && type != "dynamic")
    return top.error(key("rope_type"), absl::StrCat("'", type, "' is not supported (supported: default, linear, "
                                                    "llama3, dynamic)"));
  rope->type = type;
  auto number = [&](const std::string& k, double* out, bool required) -> Status {
    if (!r.has(k)) {
      if (required) return top.error(key(k), absl::StrCat("is missing (needed by rope_type ", type, ")"));
      return absl::OkStatus();
    }
    if (!d[k].is_number() || d[k].get<double>() <= 0) return top.error(key(k), "must be a positive number");
    *out = d[k].get<double>();
    return absl::OkStatus();
  };
  if (type == "linear" || type == "llama3" || type == "dynamic")
    ZI_RETURN_IF_ERROR(number("factor", &rope->factor, true));
  if (type == "dynamic") {
    // transformers scales from the config's max_position_embeddings (not a rope-dict key) and needs factor ≥ 1
    // for the base to grow with the length.
    if (max_pos <= 0) return top.error("max_position_embeddings", "is needed by rope_type dynamic");
    if (rope->factor < 1.0) return top.error(key("factor"), "must be at least 1 for rope_type dynamic");
    rope->original_max_position_embeddings = max_pos;
  }
  if (type == "llama3") {
    ZI_RETURN_IF_ERROR(number("low_freq_factor", &rope->low_freq_factor, true));
    ZI_RETURN_IF_ERROR(number("high_freq_factor", &rope->high_freq_factor, true));
    double orig = static_cast<double>(max_pos);
    ZI_RETURN_IF_ERROR(number("original_max_position_embeddings", &orig, true));
    rope->original_max_position_embeddings = static_cast<int64_t>(orig);
    if (rope->high_freq_factor <= rope->low_freq_factor)
      return top.error(key("high_freq_factor"), "must be greater than low_freq_factor");
  }
  return absl::OkStatus();
}

}  // namespace

Status parse_rope_config(const ConfigReader& config, int64_t max_position_embeddings, RopeConfig* rope) {
  const json& j = config.object();
  const bool has_top_theta = config.has("rope_theta");
  double top_theta = 10000.0;
  if (has_top_theta) {
    ZI_ASSIGN_OR_RETURN(top_theta, config.number_or("rope_theta", 10000.0));
    if (top_theta <= 0) return config.error("rope_theta", "must be positive");
  }
  if (config.has("rope_parameters")) {
    const json& p = j["rope_parameters"];
    if (!p.is_object()) return config.error("rope_parameters", "must be an object");
    if (!p.contains("rope_theta") && !has_top_theta)
      return config.error("rope_parameters.rope_theta", "is missing");
    double theta = top_theta;
    if (p.contains("rope_theta")) {
      if (!p["rope_theta"].is_number() || p["rope_theta"].get<double>() <= 0)
        return config.error("rope_parameters.rope_theta", "must be a positive number");
      theta = p["rope_theta"].get<double>();
      if (has_top_theta && theta != top_theta)
        return config.error("rope_theta", absl::StrCat("(", top_theta, ") disagrees with rope_parameters.rope_theta (",
                                                       theta, ")"));
    }
    rope->theta = theta;
    if (config.has("rope_scaling") && j["rope_scaling"] != p)
      return config.error("rope_scaling", "is given beside rope_parameters and differs from it");
    return read_rope_dict(config, p, "rope_parameters", max_position_embeddings, rope);
  }
  rope->theta = top_theta;
  if (config.has("rope_scaling")) {
    if (!j["rope_scaling"].is_object()) return config.error("rope_scaling", "must be an object or null");
    return read_rope_dict(config, j["rope_scaling"], "rope_scaling", max_position_embeddings, rope);
  }
  rope->type = "default";
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------------
// RopeTables

RopeTables::RopeTables(Backend& backend, const RopeConfig& rope, int64_t head_dim)
    : be_(backend), rope_(rope), head_dim_(head_dim) {
  const std::vector<float> inv = rope_inv_freq(rope_, head_dim_);
  base_ = be_.from_host(DType::kF32, {static_cast<int64_t>(inv.size())}, inv.data());
}

bool RopeTables::shared_table(const std::vector<SeqSlice>& seqs) const {
  if (rope_.type != "dynamic") return true;
  for (const SeqSlice& s : seqs)
    if (s.past_len + s.n_new > rope_.original_max_position_embeddings) return false;
  return true;
}

void RopeTables::begin_step(const AttentionBatch& step) {
  spans_.clear();
  if (shared_table(step.seqs)) return;
  // Rows are contiguous per sequence, in order (make_attention_batch); neighbours within the limit share base_.
  for (const SeqSlice& s : step.seqs) {
    if (s.n_new == 0) continue;
    const int64_t len = static_cast<int64_t>(s.past_len) + s.n_new;
    const int64_t begin = s.row_begin, end = begin + s.n_new;
    if (len <= rope_.original_max_position_embeddings) {
      if (!spans_.empty() && spans_.back().end == begin && spans_.back().inv_freq.data() == base_.data()) {
        spans_.back().end = end;
        continue;
      }
      spans_.push_back({begin, end, base_});
      continue;
    }
    const std::vector<float> inv = rope_inv_freq(rope_, head_dim_, len);
    spans_.push_back({begin, end, be_.from_host(DType::kF32, {static_cast<int64_t>(inv.size())}, inv.data())});
  }
}

void RopeTables::apply(Tensor& x, const AttentionBatch& step, int n_heads) const {
  const int D = static_cast<int>(head_dim_);
  if (spans_.empty()) {
    be_.rope_inplace(x, step.positions, base_, n_heads, D);
    return;
  }
  for (const Span& span : spans_) {
    Tensor rows = x.rows(span.begin, span.end);                           // [n, n_heads·D] view
    const Tensor positions = step.positions.rows(span.begin, span.end);   // int32 [n] view
    be_.rope_inplace(rows, positions, span.inv_freq, n_heads, D);
  }
}

}  // namespace zi
