#include "engine/tokenizer/model_chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace zi::tok {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A named special token: "<s>", {"content": "<s>", ...}, or null / absent ("").
std::string token_text(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return "";
}

}  // namespace

StatusOr<std::optional<ModelChatTemplate>> load_model_chat_template(const std::string& dir) {
  const fs::path config_path = fs::path(dir) / "tokenizer_config.json";
  nlohmann::json config = nlohmann::json::object();
  if (std::optional<std::string> text = read_file(config_path)) {
    config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object())
      return absl::InvalidArgumentError(absl::StrCat(config_path.string(), ": not a JSON object"));
  }
  std::optional<std::string> source;
  std::string source_name = config_path.string();
  if (auto it = config.find("chat_template"); it != config.end() && !it->is_null()) {
    if (it->is_string()) {
      source = it->get<std::string>();
    } else if (it->is_array()) {  // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
      for (const auto& entry : *it)
        if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
            entry["template"].is_string())
          source = entry["template"].get<std::string>();
      if (!source)
        return absl::InvalidArgumentError(
            absl::StrCat(config_path.string(), ": chat_template: a list of templates without one named \"default\""));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path.string(), ": chat_template: must be a string or a list of {name, template}"));
    }
  } else {
    const fs::path jinja = fs::path(dir) / "chat_template.jinja";
    source = read_file(jinja);
    source_name = jinja.string();
  }
  if (!source) return std::optional<ModelChatTemplate>();
  ZI_ASSIGN_OR_RETURN(ChatTemplate parsed, ChatTemplate::Parse(*source, source_name));
  return std::optional<ModelChatTemplate>(
      ModelChatTemplate{std::move(parsed), token_text(config, "bos_token"), token_text(config, "eos_token")});
}

}  // namespace zi::tok
