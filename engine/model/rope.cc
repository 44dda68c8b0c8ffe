#include "engine/model/rope.h"

#include <cmath>

namespace zi {

using json = nlohmann::json;

std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim) {
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
  if (type != "default" && type != "linear" && type != "llama3")
    return top.error(key("rope_type"), absl::StrCat("'", type, "' is not supported (supported: default, linear, "
                                                    "llama3)"));
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
  if (type == "linear" || type == "llama3") ZI_RETURN_IF_ERROR(number("factor", &rope->factor, true));
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

}  // namespace zi
