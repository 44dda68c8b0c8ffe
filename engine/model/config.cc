#include "engine/model/config.h"

#include <fstream>
#include <sstream>

#include "engine/model/registry.h"

namespace zi {

using json = nlohmann::json;

Status ConfigReader::error(const std::string& key, const std::string& what) const {
  return absl::InvalidArgumentError(absl::StrCat(file_, ": ", key, " ", what));
}

StatusOr<int64_t> ConfigReader::positive_int(const std::string& key) const {
  if (!has(key)) return error(key, "is missing");
  return positive_int_or(key, 0);
}

StatusOr<int64_t> ConfigReader::positive_int_or(const std::string& key, int64_t fallback) const {
  if (!has(key)) return fallback;
  const json& v = j_[key];
  // Integral JSON numbers only (a float such as 64.0 is tolerated when whole, as Python's json may write it).
  if (v.is_number_integer() && v.get<int64_t>() > 0) return v.get<int64_t>();
  // The range test comes first: converting a double past INT64_MAX to int64_t is undefined behaviour.
  if (v.is_number_float() && v.get<double>() > 0 && v.get<double>() < 9.0e18 &&
      v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>())))
    return static_cast<int64_t>(v.get<double>());
  return error(key, absl::StrCat("must be a positive integer, got ", v.dump()));
}

StatusOr<double> ConfigReader::number_or(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  const json& v = j_[key];
  if (!v.is_number()) return error(key, absl::StrCat("must be a number, got ", v.dump()));
  return v.get<double>();
}

StatusOr<bool> ConfigReader::bool_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const json& v = j_[key];
  if (!v.is_boolean()) return error(key, absl::StrCat("must be true or false, got ", v.dump()));
  return v.get<bool>();
}

StatusOr<std::string> ConfigReader::string_or(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const json& v = j_[key];
  if (!v.is_string()) return error(key, absl::StrCat("must be a string, got ", v.dump()));
  return v.get<std::string>();
}

namespace {

StatusOr<json> read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  }
}

// eos_token_id as an int, a list of ints, or null (→ nullopt-like: returns false in *present).
Status read_token_ids(const ConfigReader& r, const std::string& key, std::vector<int32_t>* out, bool* present) {
  *present = false;
  if (!r.has(key)) return absl::OkStatus();
  const json& v = r.object()[key];
  auto one = [&](const json& x) -> Status {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
      return r.error(key, absl::StrCat("must be a token id or a list of token ids, got ", v.dump()));
    out->push_back(static_cast<int32_t>(x.get<int64_t>()));
    return absl::OkStatus();
  };
  if (v.is_array()) {
    for (const json& x : v) ZI_RETURN_IF_ERROR(one(x));
  } else {
    ZI_RETURN_IF_ERROR(one(v));
  }
  *present = true;
  return absl::OkStatus();
}

}  // namespace

StatusOr<ModelConfig> parse_model_config(const json& config, const json* generation, const std::string& dir) {
  const std::string file = dir + "/config.json";
  if (!config.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  ConfigReader r(config, file);
  ModelConfig cfg;
  cfg.dir = dir;

  if (!r.has("architectures") || !config["architectures"].is_array() || config["architectures"].empty() ||
      !config["architectures"][0].is_string())
    return r.error("architectures", "must be a non-empty list of class names (e.g. [\"LlamaForCausalLM\"])");
  cfg.architecture = config["architectures"][0].get<std::string>();
  const Architecture* arch = find_architecture(cfg.architecture);
  if (!arch)
    return absl::InvalidArgumentError(absl::StrCat(file, ": architecture ", cfg.architecture,
                                                   " is not supported yet (supported: ", supported_architectures(),
                                                   ")"));
  ZI_ASSIGN_OR_RETURN(cfg.model_type, r.string_or("model_type", ""));
  ZI_ASSIGN_OR_RETURN(cfg.vocab_size, r.positive_int("vocab_size"));
  if (cfg.vocab_size > INT32_MAX) return r.error("vocab_size", "exceeds the int32 token id range");
  // transformers 4 writes torch_dtype, transformers 5 dtype.
  ZI_ASSIGN_OR_RETURN(cfg.dtype, r.string_or("dtype", ""));
  if (cfg.dtype.empty()) {
    ZI_ASSIGN_OR_RETURN(cfg.dtype, r.string_or("torch_dtype", ""));
  }

  ZI_RETURN_IF_ERROR(arch->parse_config(r, cfg));
  // Far above any real model (Llama 3.1 405B has 126 layers); the engine builds per-layer tables from this
  // number and counts layers in int.
  constexpr int64_t kMaxLayers = 65536;
  if (cfg.num_layers > kMaxLayers)
    return absl::InvalidArgumentError(absl::StrCat(file, ": the number of layers (", cfg.num_layers, ") exceeds ",
                                                   kMaxLayers));

  // EOS / BOS: generation_config.json wins where it has them (as transformers' generate does).
  bool present = false;
  if (generation) {
    ConfigReader g(*generation, dir + "/generation_config.json");
    ZI_RETURN_IF_ERROR(read_token_ids(g, "eos_token_id", &cfg.eos_token_ids, &present));
  }
  if (!present) ZI_RETURN_IF_ERROR(read_token_ids(r, "eos_token_id", &cfg.eos_token_ids, &present));
  std::vector<int32_t> bos;
  if (generation) {
    ConfigReader g(*generation, dir + "/generation_config.json");
    ZI_RETURN_IF_ERROR(read_token_ids(g, "bos_token_id", &bos, &present));
  }
  if (bos.empty()) ZI_RETURN_IF_ERROR(read_token_ids(r, "bos_token_id", &bos, &present));
  if (!bos.empty()) cfg.bos_token_id = bos[0];
  return cfg;
}

StatusOr<ModelConfig> load_model_config(const std::string& dir) {
  ZI_ASSIGN_OR_RETURN(json config, read_json(dir + "/config.json"));
  const std::string gen_path = dir + "/generation_config.json";
  std::ifstream probe(gen_path);
  if (!probe) return parse_model_config(config, nullptr, dir);
  ZI_ASSIGN_OR_RETURN(json generation, read_json(gen_path));
  if (!generation.is_object()) return absl::InvalidArgumentError(absl::StrCat(gen_path, ": not a JSON object"));
  return parse_model_config(config, &generation, dir);
}

}  // namespace zi
