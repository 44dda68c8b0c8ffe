// OpenAI request bodies → zeroinfer GenerateRequests: what is honoured, what is accepted only at its default, and
// the errors (field named, OpenAI's status and shape).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/http/openai_errors.h"
#include "server/http/openai_request.h"

namespace zi::server::http {
namespace {

using Json = nlohmann::json;

std::string error_of(const StatusOr<OpenAiRequest>& r) {
  return r.ok() ? "(ok)" : std::string(r.status().message());
}

TEST(OpenAiRequest, CompletionFieldsBecomeSamplingAndStopping) {
  auto r = parse_completion_request(R"({"model": "m", "prompt": "Hi", "max_tokens": 7, "temperature": 0.5,
      "top_p": 0.9, "seed": 3, "stop": ["a", "b"], "stream": true, "stream_options": {"include_usage": true},
      "logprobs": 1, "n": 1, "best_of": 1, "echo": false, "presence_penalty": 0, "frequency_penalty": 0,
      "logit_bias": {}, "user": "u", "suffix": null, "top_k": 4, "ignore_eos": true})",
                                    4);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->chat);
  EXPECT_EQ(r->model, "m");
  EXPECT_TRUE(r->stream && r->include_usage && r->logprobs);
  ASSERT_EQ(r->prompts.size(), 1u);
  const auto& p = r->prompts[0];
  EXPECT_EQ(p.prompt(), "Hi");
  EXPECT_EQ(p.stopping().max_new_tokens(), 7u);
  EXPECT_FLOAT_EQ(p.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(p.sampling().top_p(), 0.9f);
  EXPECT_EQ(p.sampling().seed(), 3u);
  EXPECT_EQ(p.sampling().top_k(), 4u);
  EXPECT_EQ(p.stopping().stop_size(), 2);
  EXPECT_TRUE(p.stopping().ignore_eos());
  EXPECT_TRUE(p.return_logprobs());
}

TEST(OpenAiRequest, PromptShapes) {
  auto list = parse_completion_request(R"({"prompt": ["a", [5, 6]], "stop": "x"})", 4);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->prompts.size(), 2u);
  EXPECT_EQ(list->prompts[0].prompt(), "a");
  EXPECT_EQ(list->prompts[1].prompt_token_ids().ids_size(), 2);
  EXPECT_EQ(list->prompts[1].stopping().stop(0), "x");  // every prompt gets the shared fields
  auto ids = parse_completion_request(R"({"prompt": [1, 2, 3]})", 4);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->prompts.size(), 1u);
  EXPECT_EQ(error_of(parse_completion_request(R"({"prompt": ["a", "b", "c"]})", 2)),
            "prompt: at most 2 prompts in one request (server.max_batch_size), got 3");
  EXPECT_EQ(error_of(parse_completion_request(R"({"prompt": []})", 2)), "prompt: must not be empty");
  EXPECT_EQ(error_of(parse_completion_request(R"({"prompt": [1, -2]})", 2)),
            "prompt[1]: must be a token id (an integer >= 0), got -2");
  EXPECT_EQ(error_of(parse_completion_request(R"({"max_tokens": 3})", 2)), "prompt: is required");
}

TEST(OpenAiRequest, UnhonouredValuesAndUnknownFieldsAreRefusedNamingTheField) {
  auto refused = [](const std::string& body) { return error_of(parse_completion_request(body, 4)); };
  EXPECT_EQ(refused(R"({"prompt": "x", "n": 2})"), "n: zeroinfer cannot honour 2; only 1 is supported");
  EXPECT_EQ(refused(R"({"prompt": "x", "presence_penalty": 0.5})"),
            "presence_penalty: zeroinfer cannot honour 0.5; only 0 is supported");
  EXPECT_EQ(refused(R"({"prompt": "x", "logit_bias": {"5": 1}})"),
            "logit_bias: zeroinfer cannot honour {\"5\":1}; only {} is supported");
  EXPECT_EQ(refused(R"({"prompt": "x", "logprobs": 5})").rfind("logprobs: at most 1", 0), 0u);
  EXPECT_EQ(refused(R"({"prompt": "x", "echo": true})"), "echo: zeroinfer cannot honour true; only false is supported");
  EXPECT_EQ(refused(R"({"prompt": "x", "frobnicate": 1})"), "frobnicate: unrecognized field");
  EXPECT_EQ(refused(R"({"prompt": "x", "max_tokens": "ten"})"), "max_tokens: must be an integer, got \"ten\"");
  EXPECT_EQ(refused(R"({"prompt": "x", "max_tokens": 0})"), "max_tokens: must be 1..16777216, got 0");
  EXPECT_EQ(refused(R"({"prompt": "x", "stop": [1]})"), "stop[0]: must be a string");
  EXPECT_EQ(refused(R"({"prompt": "x",)").rfind("the request body is not valid JSON: ", 0), 0u);
  EXPECT_EQ(refused("[1]"), "the request body must be a JSON object");
  EXPECT_TRUE(parse_completion_request(R"({"prompt": "x", "n": null, "stream": null})", 4).ok());
}

TEST(OpenAiRequest, ChatMessagesAndChatOnlyFields) {
  auto r = parse_chat_request(R"({"messages": [{"role": "system", "content": "S"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": "x"},
      {"role": "assistant", "content": null, "tool_calls": [], "refusal": null}],
      "logprobs": true, "top_logprobs": 0, "max_completion_tokens": 5, "tools": [], "tool_choice": "none",
      "response_format": {"type": "text"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->chat && r->logprobs);
  ASSERT_EQ(r->prompts.size(), 1u);
  const auto& chat = r->prompts[0].chat();
  ASSERT_EQ(chat.messages_size(), 3);
  EXPECT_EQ(chat.messages(1).content(), "a\nb");
  EXPECT_EQ(chat.messages(2).content(), "");
  EXPECT_EQ(r->prompts[0].stopping().max_new_tokens(), 5u);
  auto refused = [](const std::string& body) { return error_of(parse_chat_request(body)); };
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(refused("{" + m + R"(, "top_logprobs": 2})").rfind("top_logprobs: zeroinfer cannot honour 2", 0), 0u);
  EXPECT_EQ(refused("{" + m + R"(, "tools": [{"type": "function"}]})").rfind("tools: zeroinfer cannot honour", 0), 0u);
  EXPECT_EQ(refused("{" + m + R"(, "response_format": {"type": "json_object"}})").rfind("response_format:", 0), 0u);
  EXPECT_EQ(refused(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"),
            "messages[0].content[0].type: only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
  EXPECT_EQ(refused(R"({"messages": [{"content": "x"}]})"), "messages[0].role: is required");
  EXPECT_EQ(refused(R"({"messages": []})"), "messages: must not be empty");
}

TEST(OpenAiErrors, StatusesMapToOpenAisCodesAndShape) {
  ApiError e = api_error(with_openai_fields(absl::InvalidArgumentError("stopping.max_new_tokens: too many")));
  EXPECT_EQ(e.status, 400u);
  EXPECT_EQ(e.message, "max_tokens: too many");
  EXPECT_EQ(e.param, "max_tokens");
  EXPECT_EQ(api_error(with_openai_fields(absl::InvalidArgumentError("prompt_token_ids[2]: out of range"))).param,
            "prompt[2]");
  EXPECT_EQ(api_error(with_openai_fields(absl::InvalidArgumentError("sampling.top_p: bad"))).param, "top_p");
  EXPECT_EQ(api_error(absl::InvalidArgumentError("the request body is not valid JSON: x")).param, "");
  EXPECT_EQ(api_error(absl::UnauthenticatedError("invalid bearer token")).status, 401u);
  EXPECT_EQ(api_error(absl::ResourceExhaustedError("full")).status, 429u);
  EXPECT_EQ(api_error(absl::UnavailableError("loading")).status, 503u);
  Json j = Json::parse(error_json(api_error(absl::InvalidArgumentError("n: no"))));
  EXPECT_EQ(j, Json::parse(R"({"error": {"message": "n: no", "type": "invalid_request_error", "param": "n",
                                         "code": null}})"));
}

}  // namespace
}  // namespace zi::server::http
