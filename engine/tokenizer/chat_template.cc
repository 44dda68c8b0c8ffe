#include "engine/tokenizer/chat_template.h"

#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/lexer.h"
#include "engine/tokenizer/chat_template/parser.h"
#include "engine/tokenizer/chat_template/render.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok {

struct ChatTemplate::Impl {
  std::string source;
  jinja::Body body;
};

namespace {

Status error_status(const std::string& source, const jinja::TemplateError& e) {
  std::string where = "chat template " + source + (e.line > 0 ? ":" + std::to_string(e.line) : "");
  if (e.raised) return absl::InvalidArgumentError(where + ": raise_exception: " + e.message);
  return absl::InvalidArgumentError(where + ": " + e.message);
}

// The JSON messages as template values; strings must be UTF-8 (the interpreter assumes it everywhere).
Status check_utf8(const nlohmann::ordered_json& j) {
  if (j.is_string()) {
    if (!is_valid_utf8(j.get_ref<const std::string&>())) return absl::InvalidArgumentError("message text is not valid UTF-8");
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (!is_valid_utf8(k)) return absl::InvalidArgumentError("message key is not valid UTF-8");
      ZI_RETURN_IF_ERROR(check_utf8(v));
    }
  } else if (j.is_array()) {
    for (const auto& v : j) ZI_RETURN_IF_ERROR(check_utf8(v));
  }
  return absl::OkStatus();
}

std::tm local_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return tm;
}

}  // namespace

StatusOr<ChatTemplate> ChatTemplate::Parse(std::string_view text, std::string source_name) {
  auto impl = std::make_shared<Impl>();
  impl->source = std::move(source_name);
  if (size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
    return absl::InvalidArgumentError("chat template " + impl->source + ": not valid UTF-8 at byte " + std::to_string(bad));
  try {
    impl->body = jinja::parse(jinja::lex(text));
  } catch (const jinja::TemplateError& e) {
    return error_status(impl->source, e);
  }
  return ChatTemplate(std::move(impl));
}

const std::string& ChatTemplate::source_name() const { return impl_->source; }

StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages, std::string_view bos_token,
                                           std::string_view eos_token, bool add_generation_prompt) const {
  ChatRenderOptions o;
  o.bos_token = std::string(bos_token);
  o.eos_token = std::string(eos_token);
  o.add_generation_prompt = add_generation_prompt;
  return Render(messages, o);
}

StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages, std::string_view bos_token,
                                           std::string_view eos_token, bool add_generation_prompt) const {
  nlohmann::ordered_json j = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) j.push_back({{"role", m.role}, {"content", m.content}});
  return Render(j, bos_token, eos_token, add_generation_prompt);
}

StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                           const ChatRenderOptions& options) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("chat messages must be a JSON array");
  if (!options.extra.is_object()) return absl::InvalidArgumentError("extra template variables must be a JSON object");
  ZI_RETURN_IF_ERROR(check_utf8(messages));
  ZI_RETURN_IF_ERROR(check_utf8(options.extra));
  if (!is_valid_utf8(options.bos_token) || !is_valid_utf8(options.eos_token))
    return absl::InvalidArgumentError("bos/eos token is not valid UTF-8");
  try {
    jinja::Dict ctx = {{"messages", jinja::from_json(messages)},
                       {"tools", jinja::Value::none()},
                       {"documents", jinja::Value::none()},
                       {"add_generation_prompt", jinja::Value::boolean(options.add_generation_prompt)},
                       {"bos_token", jinja::Value::string(options.bos_token)},
                       {"eos_token", jinja::Value::string(options.eos_token)}};
    for (const auto& [k, v] : options.extra.items()) {
      jinja::Value val = jinja::from_json(v);
      bool replaced = false;
      for (auto& kv : ctx)
        if (kv.first == k) kv.second = val, replaced = true;
      if (!replaced) ctx.emplace_back(k, std::move(val));
    }
    jinja::Clock clock = options.now ? jinja::Clock(options.now) : jinja::Clock(local_now);
    return jinja::render(impl_->body, std::move(ctx), clock, options.max_steps);
  } catch (const jinja::TemplateError& e) {
    return error_status(impl_->source, e);
  }
}

}  // namespace zi::tok
