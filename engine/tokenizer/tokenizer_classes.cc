// transformers 5 model-specific tokenizer classes. When tokenizer_config.json names one whose __init__
// rebuilds the pipeline (LlamaTokenizer, GPT2Tokenizer, Qwen2Tokenizer), transformers keeps only the
// vocabulary, merges, added tokens and post-processor of tokenizer.json and sets the other stages itself.
// We patch the tokenizer.json object the same way before parsing it (checked against transformers 5.17 by
// tests/data/tokenizers/oracle_llama_class*.json).
#include "engine/tokenizer/tokenizer_classes.h"

namespace zi::tok {
namespace {

constexpr const char* kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// config[key] as a bool; `dflt` when absent or null.
bool config_bool(const Json& c, const char* key, bool dflt) {
  auto it = c.find(key);
  return (it != c.end() && it->is_boolean()) ? it->get<bool>() : dflt;
}

Json byte_level(bool add_prefix_space, bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true},
          {"use_regex", use_regex}};
}

void set_model(Json& tj, bool fuse_unk, bool byte_fallback, bool empty_affixes) {
  Json& m = tj["model"];
  m["dropout"] = nullptr;
  m["unk_token"] = nullptr;  // these classes build BPE(...) without passing the unk token
  m["fuse_unk"] = fuse_unk;
  m["byte_fallback"] = byte_fallback;
  m["ignore_merges"] = false;
  m["continuing_subword_prefix"] = empty_affixes ? Json("") : Json(nullptr);
  m["end_of_word_suffix"] = empty_affixes ? Json("") : Json(nullptr);
}

}  // namespace

std::string class_base_name(const Json& config) {
  if (!config.is_object() || !config.contains("tokenizer_class") || !config["tokenizer_class"].is_string()) return "";
  std::string name = config["tokenizer_class"].get<std::string>();
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Fast") == 0) name.resize(name.size() - 4);
  return name;
}

bool apply_tokenizer_class(const Json& config, Json& tj, std::vector<std::pair<std::string, std::string>>* defaults) {
  const std::string cls = class_base_name(config);
  if (cls == "LlamaTokenizer") {
    // LlamaTokenizer(add_prefix_space=None → True, legacy=False): Metaspace "first" (or "always" when
    // legacy, "never" without prefix space), no normalizer, and the SentencePiece decoder.
    const bool add_prefix_space = config_bool(config, "add_prefix_space", true);
    const bool legacy = config_bool(config, "legacy", false);
    const char* scheme = !add_prefix_space ? "never" : (legacy ? "always" : "first");
    set_model(tj, /*fuse_unk=*/true, /*byte_fallback=*/true, /*empty_affixes=*/false);
    tj["normalizer"] = nullptr;
    tj["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", scheme},
                           {"split", false}};
    Json decoders = Json::array();
    decoders.push_back({{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}});
    decoders.push_back({{"type", "ByteFallback"}});
    decoders.push_back({{"type", "Fuse"}});
    if (add_prefix_space) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    tj["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
    *defaults = {{"unk_token", "<unk>"}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
    return true;
  }
  if (cls == "GPT2Tokenizer") {
    set_model(tj, /*fuse_unk=*/false, /*byte_fallback=*/false, /*empty_affixes=*/true);
    tj["normalizer"] = nullptr;
    tj["pre_tokenizer"] = byte_level(config_bool(config, "add_prefix_space", false), true);
    tj["decoder"] = byte_level(true, true);
    *defaults = {{"unk_token", "<|endoftext|>"}, {"bos_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"}};
    return true;
  }
  if (cls == "Qwen2Tokenizer") {
    set_model(tj, /*fuse_unk=*/false, /*byte_fallback=*/false, /*empty_affixes=*/true);
    tj["normalizer"] = {{"type", "NFC"}};
    Json split = {{"type", "Split"}, {"pattern", {{"Regex", kQwen2Pattern}}}, {"behavior", "Isolated"},
                  {"invert", false}};
    tj["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers", {split, byte_level(config_bool(config, "add_prefix_space", false), false)}}};
    tj["decoder"] = byte_level(true, true);
    *defaults = {{"unk_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"}, {"pad_token", "<|endoftext|>"}};
    return true;
  }
  return false;
}

}  // namespace zi::tok
