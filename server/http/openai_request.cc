#include "server/http/openai_request.h"

#include <cmath>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

namespace zi::server::http {
namespace {

namespace pb = ::zeroinfer::v1;
using Json = nlohmann::json;

Status bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

StatusOr<Json> parse_json(std::string_view body) {
  try {
    Json j = Json::parse(body);
    if (!j.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
    return j;
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("the request body is not valid JSON: ", e.what()));
  }
}

StatusOr<double> number(const Json& v, const std::string& field) {
  if (!v.is_number()) return bad(field, absl::StrCat("must be a number, got ", v.dump()));
  double d = v.get<double>();
  if (!std::isfinite(d)) return bad(field, "must be finite");
  return d;
}

StatusOr<int64_t> integer(const Json& v, const std::string& field) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return bad(field, "is too large");
    return static_cast<int64_t>(u);
  }
  if (!v.is_number_integer()) return bad(field, absl::StrCat("must be an integer, got ", v.dump()));
  return v.get<int64_t>();
}

StatusOr<bool> boolean(const Json& v, const std::string& field) {
  if (!v.is_boolean()) return bad(field, absl::StrCat("must be true or false, got ", v.dump()));
  return v.get<bool>();
}

// A field accepted only at its default or a no-op value (`ok` says which).
Status only_default(const Json& v, const std::string& field, const std::function<bool(const Json&)>& ok,
                    const std::string& supported) {
  if (ok(v)) return absl::OkStatus();
  return bad(field, absl::StrCat("zeroinfer cannot honour ", v.dump(), "; only ", supported, " is supported"));
}

bool is_zero(const Json& v) { return v.is_number() && v.get<double>() == 0.0; }
bool is_one(const Json& v) { return v.is_number_integer() && v.get<int64_t>() == 1; }
bool is_empty(const Json& v) { return (v.is_object() || v.is_array()) && v.empty(); }

// The fields both endpoints share: sampling, stopping and streaming, set on `proto` (copied to every prompt).
struct Common {
  pb::GenerateRequest proto;
  OpenAiRequest out;
};

Status read_common(const std::string& key, const Json& v, Common& c) {
  pb::SamplingParams& sp = *c.proto.mutable_sampling();
  pb::StoppingCriteria& st = *c.proto.mutable_stopping();
  if (key == "model") {
    if (!v.is_string()) return bad(key, "must be a string");
    c.out.model = v.get<std::string>();
  } else if (key == "stream") {
    ZI_ASSIGN_OR_RETURN(c.out.stream, boolean(v, key));
  } else if (key == "stream_options") {
    if (!v.is_object()) return bad(key, "must be an object");
    for (const auto& [k, x] : v.items()) {
      if (x.is_null()) continue;
      if (k != "include_usage") return bad(absl::StrCat(key, ".", k), "unrecognized field");
      ZI_ASSIGN_OR_RETURN(c.out.include_usage, boolean(x, "stream_options.include_usage"));
    }
  } else if (key == "max_tokens" || key == "max_completion_tokens") {
    ZI_ASSIGN_OR_RETURN(int64_t n, integer(v, key));
    if (n < 1 || n > (int64_t{1} << 24)) return bad(key, absl::StrCat("must be 1..16777216, got ", n));
    st.set_max_new_tokens(static_cast<uint32_t>(n));
  } else if (key == "temperature") {
    ZI_ASSIGN_OR_RETURN(double t, number(v, key));
    sp.set_temperature(static_cast<float>(t));
  } else if (key == "top_p") {
    ZI_ASSIGN_OR_RETURN(double p, number(v, key));
    sp.set_top_p(static_cast<float>(p));
  } else if (key == "top_k") {  // extension (vLLM): 0 or -1 = off
    ZI_ASSIGN_OR_RETURN(int64_t k, integer(v, key));
    if (k < -1 || k > INT32_MAX) return bad(key, absl::StrCat("must be -1 (off) or 0..2147483647, got ", k));
    sp.set_top_k(k < 0 ? 0 : static_cast<uint32_t>(k));
  } else if (key == "repetition_penalty") {  // extension (vLLM)
    ZI_ASSIGN_OR_RETURN(double r, number(v, key));
    sp.set_repetition_penalty(static_cast<float>(r));
  } else if (key == "seed") {
    ZI_ASSIGN_OR_RETURN(int64_t s, integer(v, key));
    sp.set_seed(static_cast<uint64_t>(s));
  } else if (key == "ignore_eos") {  // extension (vLLM)
    ZI_ASSIGN_OR_RETURN(bool b, boolean(v, key));
    st.set_ignore_eos(b);
  } else if (key == "stop") {
    if (v.is_string()) {
      st.add_stop(v.get<std::string>());
    } else if (v.is_array()) {
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string()) return bad(absl::StrCat("stop[", i, "]"), "must be a string");
        st.add_stop(v[i].get<std::string>());
      }
    } else {
      return bad(key, "must be a string or a list of strings");
    }
  } else if (key == "n" || key == "best_of") {
    return only_default(v, key, is_one, "1");
  } else if (key == "presence_penalty" || key == "frequency_penalty") {
    return only_default(v, key, is_zero, "0");
  } else if (key == "logit_bias") {
    return only_default(v, key, is_empty, "{}");
  } else if (key == "user") {
    if (!v.is_string()) return bad(key, "must be a string");  // an end-user id for abuse tracking: not used
  } else {
    return bad(key, "unrecognized field");
  }
  return absl::OkStatus();
}

// Token ids of a prompt: non-negative integers below 2^32 (the vocabulary is checked later).
StatusOr<pb::TokenIds> token_ids(const Json& list, const std::string& field) {
  pb::TokenIds ids;
  if (list.empty()) return bad(field, "must not be empty");
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& x = list[i];
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > UINT32_MAX)
      return bad(absl::StrCat(field, "[", i, "]"), absl::StrCat("must be a token id (an integer >= 0), got ", x.dump()));
    ids.add_ids(static_cast<uint32_t>(x.get<int64_t>()));
  }
  return ids;
}

// prompt: "text" | ["text", ...] | [id, ...] | [[id, ...], ...] → one GenerateRequest each.
Status read_prompt(const Json& v, const pb::GenerateRequest& proto, uint32_t max_prompts,
                   std::vector<pb::GenerateRequest>* out) {
  const char* shape = "must be a string, a list of strings, a list of token ids or a list of token-id lists";
  auto add = [&]() -> pb::GenerateRequest& { return out->emplace_back(proto); };
  if (v.is_string()) {
    add().set_prompt(v.get<std::string>());
    return absl::OkStatus();
  }
  if (!v.is_array()) return bad("prompt", shape);
  if (v.empty()) return bad("prompt", "must not be empty");
  if (v[0].is_number()) {
    ZI_ASSIGN_OR_RETURN(pb::TokenIds ids, token_ids(v, "prompt"));
    *add().mutable_prompt_token_ids() = std::move(ids);
    return absl::OkStatus();
  }
  if (v.size() > max_prompts)
    return bad("prompt", absl::StrCat("at most ", max_prompts, " prompts in one request (server.max_batch_size), got ",
                                      v.size()));
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string field = absl::StrCat("prompt[", i, "]");
    if (v[i].is_string()) {
      add().set_prompt(v[i].get<std::string>());
    } else if (v[i].is_array()) {
      ZI_ASSIGN_OR_RETURN(pb::TokenIds ids, token_ids(v[i], field));
      *add().mutable_prompt_token_ids() = std::move(ids);
    } else {
      return bad(field, absl::StrCat("must be a string or a list of token ids, got ", v[i].dump()));
    }
  }
  return absl::OkStatus();
}

// messages: [{"role": "...", "content": "..." | [{"type": "text", "text": "..."}, ...] | null, "name": ...}, ...]
Status read_messages(const Json& v, pb::ChatMessages* out) {
  if (!v.is_array()) return bad("messages", "must be a list of messages");
  if (v.empty()) return bad("messages", "must not be empty");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = absl::StrCat("messages[", i, "]");
    const Json& m = v[i];
    if (!m.is_object()) return bad(at, "must be an object with role and content");
    pb::ChatMessage* msg = out->add_messages();
    for (const auto& [k, x] : m.items()) {
      const std::string field = absl::StrCat(at, ".", k);
      if (k == "role") {
        if (!x.is_string()) return bad(field, "must be a string");
        msg->set_role(x.get<std::string>());
      } else if (k == "content") {
        if (x.is_null()) continue;
        if (x.is_string()) {
          msg->set_content(x.get<std::string>());
          continue;
        }
        if (!x.is_array()) return bad(field, "must be a string or a list of content parts");
        std::string text;  // text parts joined by newlines (as vLLM does for text-only content)
        for (size_t j = 0; j < x.size(); ++j) {
          const std::string part = absl::StrCat(field, "[", j, "]");
          if (!x[j].is_object() || x[j].value("type", "") != "text" || !x[j].contains("text") ||
              !x[j]["text"].is_string())
            return bad(absl::StrCat(part, ".type"), "only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
          if (j > 0) text += "\n";
          text += x[j]["text"].get<std::string>();
        }
        msg->set_content(std::move(text));
      } else if (k == "name") {
        if (!x.is_null() && !x.is_string()) return bad(field, "must be a string");
      } else if (k == "tool_calls" || k == "function_call" || k == "tool_call_id" || k == "refusal" || k == "audio") {
        if (!x.is_null() && !is_empty(x)) return bad(field, "tool and audio messages are not supported");
      } else {
        return bad(field, "unrecognized field");
      }
    }
    if (msg->role().empty()) return bad(absl::StrCat(at, ".role"), "is required");
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<OpenAiRequest> parse_completion_request(std::string_view body, uint32_t max_prompts) {
  ZI_ASSIGN_OR_RETURN(Json j, parse_json(body));
  Common c;
  const Json* prompt = nullptr;
  for (const auto& [key, v] : j.items()) {
    if (v.is_null()) continue;
    if (key == "prompt") {
      prompt = &v;
    } else if (key == "logprobs") {
      ZI_ASSIGN_OR_RETURN(int64_t n, integer(v, key));
      if (n < 0 || n > 1)
        return bad(key, absl::StrCat("at most 1 (the chosen token's log-probability; zeroinfer keeps no top-N), got ", n));
      c.out.logprobs = true;
    } else if (key == "echo") {
      ZI_RETURN_IF_ERROR(only_default(v, key, [](const Json& x) { return x == false; }, "false"));
    } else if (key == "suffix") {
      ZI_RETURN_IF_ERROR(only_default(v, key, [](const Json& x) { return x == ""; }, "\"\""));
    } else {
      ZI_RETURN_IF_ERROR(read_common(key, v, c));
    }
  }
  if (!prompt) return bad("prompt", "is required");
  c.proto.set_return_logprobs(c.out.logprobs);
  ZI_RETURN_IF_ERROR(read_prompt(*prompt, c.proto, max_prompts, &c.out.prompts));
  return std::move(c.out);
}

StatusOr<OpenAiRequest> parse_chat_request(std::string_view body) {
  ZI_ASSIGN_OR_RETURN(Json j, parse_json(body));
  Common c;
  c.out.chat = true;
  const Json* messages = nullptr;
  for (const auto& [key, v] : j.items()) {
    if (v.is_null()) continue;
    if (key == "messages") {
      messages = &v;
    } else if (key == "logprobs") {
      ZI_ASSIGN_OR_RETURN(c.out.logprobs, boolean(v, key));
    } else if (key == "top_logprobs") {
      ZI_RETURN_IF_ERROR(only_default(v, key, is_zero, "0 (zeroinfer keeps only the chosen token's log-probability)"));
    } else if (key == "response_format") {
      ZI_RETURN_IF_ERROR(only_default(v, key, [](const Json& x) { return x.is_object() && x.size() == 1 &&
                                                                         x.value("type", "") == "text"; },
                                      "{\"type\": \"text\"}"));
    } else if (key == "tools" || key == "functions") {
      ZI_RETURN_IF_ERROR(only_default(v, key, is_empty, "[]"));
    } else if (key == "tool_choice" || key == "function_call") {
      ZI_RETURN_IF_ERROR(only_default(v, key, [](const Json& x) { return x == "none" || x == "auto"; },
                                      "\"none\" (or \"auto\" without tools)"));
    } else if (key == "parallel_tool_calls") {
      ZI_RETURN_IF_ERROR(boolean(v, key).status());  // without tools it changes nothing
    } else if (key == "store") {
      ZI_RETURN_IF_ERROR(only_default(v, key, [](const Json& x) { return x == false; }, "false"));
    } else if (key == "metadata") {
      ZI_RETURN_IF_ERROR(only_default(v, key, is_empty, "{}"));
    } else if (key == "modalities") {
      ZI_RETURN_IF_ERROR(only_default(v, key, [](const Json& x) { return x == Json::array({"text"}); }, "[\"text\"]"));
    } else if (key == "service_tier") {
      ZI_RETURN_IF_ERROR(only_default(v, key, [](const Json& x) { return x == "auto" || x == "default"; }, "\"auto\""));
    } else {
      ZI_RETURN_IF_ERROR(read_common(key, v, c));
    }
  }
  if (!messages) return bad("messages", "is required");
  c.proto.set_return_logprobs(c.out.logprobs);
  pb::GenerateRequest& r = c.out.prompts.emplace_back(c.proto);
  ZI_RETURN_IF_ERROR(read_messages(*messages, r.mutable_chat()));
  return std::move(c.out);
}

Status with_openai_fields(const Status& status) {
  static const std::pair<std::string_view, std::string_view> kNames[] = {
      {"sampling.", ""},          {"stopping.max_new_tokens", "max_tokens"}, {"stopping.", ""},
      {"prompt_token_ids", "prompt"}, {"chat.messages", "messages"}};
  const std::string text(status.message());
  std::string_view m = text;
  for (const auto& [from, to] : kNames)
    if (m.rfind(from, 0) == 0) return Status(status.code(), std::string(to) + std::string(m.substr(from.size())));
  return status;
}

}  // namespace zi::server::http
