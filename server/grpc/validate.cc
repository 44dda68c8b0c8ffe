#include "server/grpc/validate.h"

#include <cmath>

namespace zi::server {
namespace {

Status invalid(absl::string_view field, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", msg));
}

}  // namespace

StatusOr<GenerationRequest> validate_request(const ::zeroinfer::v1::GenerateRequest& request,
                                             const Tokenizer* tokenizer, const RequestLimits& limits,
                                             const std::function<uint64_t()>& random_seed,
                                             const tok::ModelChatTemplate* chat_template) {
  GenerationRequest out;
  out.request_id = request.request_id();

  // Sampling: validated even when decoding is greedy, so a bad value is never silently ignored.
  const auto& sp = request.sampling();
  if (sp.has_temperature()) {
    float t = sp.temperature();
    if (!std::isfinite(t) || t < 0)
      return invalid("sampling.temperature", absl::StrCat("must be a finite number >= 0 (0 = greedy), got ", t));
    out.sampling.temperature = t;
  }
  if (sp.has_top_k()) out.sampling.top_k = sp.top_k();
  if (sp.has_top_p()) {
    float p = sp.top_p();
    if (!(p > 0.0f && p <= 1.0f)) return invalid("sampling.top_p", absl::StrCat("must be in (0, 1], got ", p));
    out.sampling.top_p = p;
  }
  if (sp.has_repetition_penalty()) {
    float r = sp.repetition_penalty();
    if (!std::isfinite(r) || r <= 0)
      return invalid("sampling.repetition_penalty", absl::StrCat("must be a finite number > 0, got ", r));
    out.sampling.repetition_penalty = r;
  }
  out.sampling.seed = sp.has_seed() ? sp.seed() : random_seed();
  out.sampling.return_logprobs = request.return_logprobs();

  // Stopping.
  const auto& st = request.stopping();
  if (st.stop_size() > kMaxStopStrings)
    return invalid("stopping.stop", absl::StrCat("at most ", kMaxStopStrings, " stop strings, got ", st.stop_size()));
  for (int i = 0; i < st.stop_size(); ++i) {
    const std::string& s = st.stop(i);
    if (s.empty()) return invalid(absl::StrCat("stopping.stop[", i, "]"), "must not be empty");
    if (s.size() > kMaxStopStringBytes)
      return invalid(absl::StrCat("stopping.stop[", i, "]"),
                     absl::StrCat("at most ", kMaxStopStringBytes, " bytes, got ", s.size()));
    out.stop.push_back(s);
  }
  out.ignore_eos = st.ignore_eos();

  // The prompt.
  absl::string_view field;
  // A tokenizer whose vocabulary is larger than the model's embedding table (prompt and chat paths alike).
  auto check_tokenized = [&]() -> Status {
    for (int32_t id : out.prompt)
      if (id < 0 || static_cast<uint32_t>(id) >= limits.vocab_size)
        return invalid(field, absl::StrCat("the tokenizer produced id ", id, ", outside the model's vocab_size ",
                                           limits.vocab_size));
    return absl::OkStatus();
  };
  switch (request.input_case()) {
    case ::zeroinfer::v1::GenerateRequest::kPrompt: {
      field = "prompt";
      if (request.prompt().empty()) return invalid(field, "must not be empty");
      if (!tokenizer) return absl::FailedPreconditionError("prompt: the server has no tokenizer; send prompt_token_ids");
      auto ids = tokenizer->encode(request.prompt(), /*add_special_tokens=*/true);
      if (!ids.ok()) return invalid(field, ids.status().message());
      if (ids->empty()) return invalid(field, "tokenizes to no tokens");
      out.prompt = std::move(*ids);
      if (Status s = check_tokenized(); !s.ok()) return s;
      break;
    }
    case ::zeroinfer::v1::GenerateRequest::kPromptTokenIds: {
      field = "prompt_token_ids";
      const auto& ids = request.prompt_token_ids().ids();
      if (ids.empty()) return invalid(field, "must not be empty");
      out.prompt.reserve(ids.size());
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] >= limits.vocab_size)
          return invalid(absl::StrCat(field, "[", i, "]"),
                         absl::StrCat("token id ", ids[i], " is out of range (vocab_size ", limits.vocab_size, ")"));
        out.prompt.push_back(static_cast<int32_t>(ids[i]));
      }
      break;
    }
    case ::zeroinfer::v1::GenerateRequest::kChat: {
      field = "chat.messages";
      const auto& messages = request.chat().messages();
      if (messages.empty()) return invalid(field, "must not be empty");
      if (messages.size() > kMaxChatMessages)
        return invalid(field, absl::StrCat("at most ", kMaxChatMessages, " messages, got ", messages.size()));
      if (!chat_template)
        return invalid(field, "the model has no chat template (no chat_template in tokenizer_config.json); send a "
                              "prompt instead");
      if (!tokenizer) return absl::FailedPreconditionError("chat: the server has no tokenizer");
      nlohmann::ordered_json list = nlohmann::ordered_json::array();
      for (const auto& m : messages) list.push_back({{"role", m.role()}, {"content", m.content()}});
      auto text = chat_template->render(list);
      if (!text.ok()) return invalid(field, text.status().message());
      auto ids = tokenizer->encode(*text, /*add_special_tokens=*/false);  // the template wrote them
      if (!ids.ok()) return invalid(field, ids.status().message());
      if (ids->empty()) return invalid(field, "the chat template rendered no tokens");
      out.prompt = std::move(*ids);
      if (Status s = check_tokenized(); !s.ok()) return s;
      break;
    }
    default:
      return invalid("input", "set prompt, prompt_token_ids or chat");
  }

  // Lengths.
  const uint64_t n = out.prompt.size();
  const uint32_t prompt_limit = limits.max_prompt_tokens ? std::min(limits.max_prompt_tokens, limits.max_context)
                                                         : limits.max_context;
  if (n > prompt_limit)
    return invalid(field, absl::StrCat(n, " tokens, over the limit of ", prompt_limit,
                                       limits.max_prompt_tokens && limits.max_prompt_tokens < limits.max_context
                                           ? " (server.max_prompt_tokens)"
                                           : " (the model context)"));
  if (n >= limits.max_context)
    return invalid(field, absl::StrCat(n, " tokens leave no room to generate in the model context of ",
                                       limits.max_context, " tokens"));
  const uint64_t room = limits.max_context - n;
  if (st.max_new_tokens() == 0) {
    out.max_new_tokens = static_cast<uint32_t>(std::min<uint64_t>(limits.max_new_tokens_default, room));
  } else {
    if (st.max_new_tokens() > room)
      return invalid("stopping.max_new_tokens",
                     absl::StrCat("prompt (", n, " tokens) + max_new_tokens (", st.max_new_tokens(), ") = ",
                                  n + st.max_new_tokens(), " exceeds the model context of ", limits.max_context,
                                  " tokens"));
    out.max_new_tokens = st.max_new_tokens();
  }
  return out;
}

}  // namespace zi::server
