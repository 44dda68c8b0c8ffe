// Hugging Face chat templates: the `chat_template` of tokenizer_config.json applied to a conversation as
// transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=...) does, byte for byte.
//
// The template runs in a Jinja2 interpreter for the subset real chat templates use (chat_template/: lexer,
// parser, values, builtins, renderer), with the environment transformers builds: trim_blocks, lstrip_blocks,
// loop controls, its json.dumps-based `tojson`, raise_exception and strftime_now. A template using anything
// outside the subset (macros, unknown filters, ...) is refused by Parse, naming the construct, source and line.
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "nlohmann/json.hpp"

namespace zi::tok {

struct ChatMessage {
  std::string role;
  std::string content;
};

struct ChatRenderOptions {
  std::string bos_token;
  std::string eos_token;
  bool add_generation_prompt = true;
  // More template variables (e.g. "tools"), set after the defaults so they replace them.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  // The time strftime_now formats; empty: the local time now (transformers' datetime.now()).
  std::function<std::tm()> now;
  // Work bound: statements, expressions and loop iterations evaluated (a step is about a microsecond). Real
  // templates take well under 100 per message; a template that goes past this fails instead of running on.
  uint64_t max_steps = 2'000'000;
};

class ChatTemplate {
 public:
  // `source_name` (e.g. "model/tokenizer_config.json") names the template in every error.
  static StatusOr<ChatTemplate> Parse(std::string_view text, std::string source_name);

  // `messages`: a JSON array of message objects ({"role", "content", ...}), passed to the template as-is (ordered
  // JSON: key order shows in tojson output, as in Python). The template also sees bos_token, eos_token,
  // add_generation_prompt, and tools = documents = None, as apply_chat_template passes them.
  StatusOr<std::string> Render(const nlohmann::ordered_json& messages, std::string_view bos_token,
                               std::string_view eos_token, bool add_generation_prompt) const;
  StatusOr<std::string> Render(const std::vector<ChatMessage>& messages, std::string_view bos_token,
                               std::string_view eos_token, bool add_generation_prompt) const;
  StatusOr<std::string> Render(const nlohmann::ordered_json& messages, const ChatRenderOptions& options) const;

  const std::string& source_name() const;

 private:
  struct Impl;
  explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace zi::tok
