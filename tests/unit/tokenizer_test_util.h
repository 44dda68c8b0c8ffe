// Helpers for the tokenizer tests: fixture paths, JSON loading and the variant tokenizers of
// tests/data/tokenizers/variants/*.json (a patch applied to a fixture's tokenizer.json, exactly as
// tests/data/tokenizers/gen_oracle.py applies it when it records transformers' answers).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace zi::testing_tok {

using Json = nlohmann::json;

inline std::string data_dir() { return std::string(ZI_TEST_DATA) + "/tokenizers"; }

inline Json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return Json::parse(ss.str());
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A private temporary folder, removed with the object.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "zi_tok_XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// The tokenizer.json a variant spec describes (see gen_oracle.py's docstring).
inline Json build_variant_json(const Json& spec) {
  Json tj = read_json_file(data_dir() + "/" + spec["base"].get<std::string>() + "/tokenizer.json");
  if (spec.contains("replace"))
    for (const auto& [k, v] : spec["replace"].items()) tj[k] = v;
  if (spec.contains("model"))
    for (const auto& [k, v] : spec["model"].items()) tj["model"][k] = v;
  if (spec.value("merges_as_pairs", false)) {
    Json pairs = Json::array();
    for (const Json& m : tj["model"]["merges"]) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      pairs.push_back(Json::array({s.substr(0, sp), s.substr(sp + 1)}));
    }
    tj["model"]["merges"] = pairs;
  }
  if (spec.contains("added_tokens_append"))
    for (const Json& t : spec["added_tokens_append"]) tj["added_tokens"].push_back(t);
  return tj;
}

// Loads tokenizer `name`: a fixture folder (gpt2, spbpe) or a variant written into `tmp`.
inline std::unique_ptr<Tokenizer> load_named(const std::string& name, TempDir& tmp) {
  const std::string fixture = data_dir() + "/" + name;
  std::string dir = fixture;
  if (!std::filesystem::exists(fixture + "/tokenizer.json")) {
    Json spec = read_json_file(data_dir() + "/variants/" + name + ".json");
    dir = tmp.path + "/" + name;
    std::filesystem::create_directories(dir);
    write_file(dir + "/tokenizer.json", build_variant_json(spec).dump());
    Json cfg = spec.contains("tokenizer_config")
                   ? spec["tokenizer_config"]
                   : read_json_file(data_dir() + "/" + spec["base"].get<std::string>() + "/tokenizer_config.json");
    write_file(dir + "/tokenizer_config.json", cfg.dump());
  }
  auto tok = Tokenizer::FromDir(dir);
  EXPECT_TRUE(tok.ok()) << name << ": " << tok.status();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

// Every tokenizer with a recorded oracle_<name>.json.
inline const std::vector<std::string>& oracle_names() {
  static const std::vector<std::string> names = {"gpt2", "spbpe", "gpt2_norm", "llama3ish",
                                                 "sp_meta", "sp_meta_split", "sp_norm_added",
                                                 "llama_class", "llama_class_legacy", "gpt2_class", "qwen2_class",
                                                 "gpt2_nfkc_lower", "gpt2_nfd", "gpt2_cfg_specials"};
  return names;
}

inline std::vector<int32_t> to_ids(const Json& j) { return j.get<std::vector<int32_t>>(); }

// Streams `ids` through an IncrementalDetokenizer; returns the concatenated text. Every chunk must be
// valid UTF-8 on its own.
inline std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip, bool* chunks_valid) {
  IncrementalDetokenizer d(tok, skip);
  std::string all;
  *chunks_valid = true;
  auto check = [&](const std::string& chunk) {
    if (!tok::is_valid_utf8(chunk)) *chunks_valid = false;
    all += chunk;
  };
  for (int32_t id : ids) check(d.push(id));
  check(d.flush());
  return all;
}

}  // namespace zi::testing_tok
