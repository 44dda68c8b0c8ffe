// A model folder's chat template, as transformers finds it: `chat_template` of tokenizer_config.json (a string, or
// a list of {name, template} of which "default" is used), else a `chat_template.jinja` file beside it; with the
// bos_token / eos_token strings the template sees (tokenizer_config.json's, given as strings or {"content": ...}).
//
// Rendering follows apply_chat_template(messages, tokenize=False, add_generation_prompt=True); the text is then
// tokenized without special tokens added (the template writes them), as apply_chat_template(tokenize=True) does.
#pragma once

#include <optional>
#include <string>

#include "engine/core/status.h"
#include "engine/tokenizer/chat_template.h"

namespace zi::tok {

struct ModelChatTemplate {
  ChatTemplate chat_template;
  std::string bos_token;  // "" when tokenizer_config.json names none
  std::string eos_token;

  // `messages`: a JSON array of {"role", "content", ...} objects. Errors (raise_exception in the template, a
  // missing field it reads) name the template's file.
  StatusOr<std::string> render(const nlohmann::ordered_json& messages) const {
    return chat_template.Render(messages, bos_token, eos_token, /*add_generation_prompt=*/true);
  }
};

// nullopt when the folder has no chat template; an error when the template cannot be read or uses a construct
// outside the interpreter's subset (naming the construct and the file).
StatusOr<std::optional<ModelChatTemplate>> load_model_chat_template(const std::string& dir);

}  // namespace zi::tok
