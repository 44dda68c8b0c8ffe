// The OpenAI-compatible HTTP API of a real `zeroinfer serve`, at the level of bytes on the wire: one server (the
// llama_mha fixture with Zephyr's chat template added) for the whole binary. Completions equal gRPC's for the same
// greedy request; SSE framing; keep-alive; 413 without the body read; malformed JSON; chat through the template
// (and through gRPC's ChatMessages); a client that disconnects cancels its request.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using Json = nlohmann::json;

// A keep-alive connection to the server's HTTP port (Beast's synchronous client).
class HttpConnection {
 public:
  explicit HttpConnection(int port) : stream_(io_) {
    stream_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
    stream_.expires_after(60s);
  }
  bhttp::response<bhttp::string_body> request(bhttp::verb method, const std::string& target,
                                               const std::string& body = "", bool keep_alive = true) {
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
    req.keep_alive(keep_alive);
    req.prepare_payload();
    bhttp::write(stream_, req);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream_, buffer_, res);
    return res;
  }
  auto post(const std::string& target, const Json& body) { return request(bhttp::verb::post, target, body.dump()); }
  // Raw bytes both ways (for requests Beast would not write, and to see the framing).
  void write_raw(const std::string& bytes) { asio::write(stream_, asio::buffer(bytes)); }
  // Reads until `marker` has arrived (or the connection ends); returns everything read so far.
  std::string read_until(const std::string& marker) {
    std::string out;
    beast::error_code ec;
    char buf[4096];
    while (out.find(marker) == std::string::npos) {
      size_t n = stream_.read_some(asio::buffer(buf), ec);
      if (ec) break;
      out.append(buf, n);
    }
    return out;
  }
  void close() { stream_.close(); }

 private:
  asio::io_context io_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

// The `data:` payloads of an SSE body, in order; `framed` turns false on anything but `data: ...\n\n` events.
std::vector<std::string> sse_events(const std::string& body, bool* framed) {
  std::vector<std::string> out;
  *framed = true;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos || body.compare(pos, 6, "data: ") != 0) {
      *framed = false;
      break;
    }
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end + 2;
  }
  return out;
}

class HttpApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A chat fixture: llama_mha's files, and its tokenizer_config.json with Zephyr's chat template added.
    chat_model_ = new std::string(std::filesystem::temp_directory_path() /
                                  ("zi_http_chat_model_" + std::to_string(getpid())));
    const std::filesystem::path src = std::string(ZI_TEST_DATA) + "/models/llama_mha", dst = *chat_model_;
    std::filesystem::create_directories(dst);
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"})
      std::filesystem::create_symlink(src / f, dst / f);
    std::ifstream in(src / "tokenizer_config.json");
    Json config = Json::parse(in);
    std::ifstream tmpl(std::string(ZI_TEST_DATA) + "/chat_templates/zephyr-7b-beta.jinja");
    config["chat_template"] = std::string((std::istreambuf_iterator<char>(tmpl)), {});
    std::ofstream(dst / "tokenizer_config.json") << config.dump();
    // Steps of 10 ms keep a 200-token stream in flight long enough to disconnect from it.
    server_ = start_server("server: {http_max_body_bytes: 64KiB}\ndebug: {step_delay_ms: 10}\n", *chat_model_).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    std::error_code ec;
    std::filesystem::remove_all(*chat_model_, ec);
    delete chat_model_;
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << server_->log();
  }

  static Json completion(const std::string& prompt, int max_tokens, Json extra = Json::object()) {
    Json body = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
    body.update(extra);
    return body;
  }

  static ServerProcess* server_;
  static std::string* chat_model_;
};

ServerProcess* HttpApi::server_ = nullptr;
std::string* HttpApi::chat_model_ = nullptr;

TEST_F(HttpApi, CompletionEqualsGrpcAndStreamsAsServerSentEvents) {
  auto stub = server_->stub();
  StreamResult grpc_result = generate(stub.get(), text_request("Hello world", 12));
  ASSERT_TRUE(grpc_result.status.ok()) << grpc_result.status.error_message();

  HttpConnection c(server_->http_port());
  auto res = c.post("/v1/completions", completion("Hello world", 12));
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  EXPECT_EQ(res[bhttp::field::content_type], "application/json");
  Json j = Json::parse(res.body());
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], std::filesystem::path(*chat_model_).filename().string());
  EXPECT_EQ(j["choices"][0]["text"], grpc_result.text);
  EXPECT_EQ(j["choices"][0]["finish_reason"],
            grpc_result.finish == pb::FINISH_REASON_LENGTH ? "length" : "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], grpc_result.usage.prompt_tokens());
  EXPECT_EQ(j["usage"]["completion_tokens"], grpc_result.usage.completion_tokens());
  EXPECT_EQ(j["usage"]["total_tokens"], grpc_result.usage.prompt_tokens() + grpc_result.usage.completion_tokens());

  // The same request streamed, on the same (kept-alive) connection.
  auto streamed = c.post("/v1/completions", completion("Hello world", 12, {{"stream", true},
                                                                           {"stream_options", {{"include_usage", true}}}}));
  ASSERT_EQ(streamed.result_int(), 200u);
  EXPECT_EQ(streamed[bhttp::field::content_type], "text/event-stream");
  EXPECT_TRUE(streamed.chunked());
  bool framed = false;
  std::vector<std::string> events = sse_events(streamed.body(), &framed);
  EXPECT_TRUE(framed) << streamed.body();
  ASSERT_GE(events.size(), 3u) << streamed.body();
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  int finishes = 0;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    Json e = Json::parse(events[i]);
    EXPECT_EQ(e["object"], "text_completion");
    EXPECT_TRUE(e["usage"].is_null());
    text += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) ++finishes;
  }
  EXPECT_EQ(text, grpc_result.text);
  EXPECT_EQ(finishes, 1);
  Json usage = Json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], grpc_result.usage.completion_tokens());
}

TEST_F(HttpApi, SeveralPromptsAreSeveralChoicesAndTokenIdsAreAccepted) {
  auto stub = server_->stub();
  StreamResult by_ids = generate(stub.get(), ids_request({1, 45, 99}, 6));
  ASSERT_TRUE(by_ids.status.ok());
  HttpConnection c(server_->http_port());
  Json body = {{"prompt", Json::array({Json::array({1, 45, 99}), "Hello world"})}, {"max_tokens", 6}, {"seed", 7}};
  auto res = c.post("/v1/completions", body);
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  Json j = Json::parse(res.body());
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["text"], by_ids.text);
  EXPECT_EQ(j["choices"][1]["index"], 1);
  // stop and max_tokens: generation ends before the stop string, which is not returned.
  const std::string full = j["choices"][0]["text"];
  size_t at = 1;  // an ASCII character past the first: a stop string that is valid UTF-8 on its own
  while (at < full.size() && (static_cast<unsigned char>(full[at]) >= 0x80 || std::isspace(full[at]))) ++at;
  ASSERT_LT(at, full.size()) << full;
  const std::string stop = full.substr(at, 1);
  auto stopped = c.post("/v1/completions", {{"prompt", Json::array({1, 45, 99})}, {"max_tokens", 6}, {"stop", stop}});
  Json s = Json::parse(stopped.body());
  EXPECT_EQ(s["choices"][0]["text"], full.substr(0, full.find(stop))) << stopped.body();
  EXPECT_EQ(s["choices"][0]["finish_reason"], "stop");
  // logprobs: 1 gives the chosen tokens' log-probabilities, as gRPC's return_logprobs.
  auto lp = c.post("/v1/completions", {{"prompt", Json::array({1, 45, 99})}, {"max_tokens", 3}, {"logprobs", 1}});
  Json l = Json::parse(lp.body());
  EXPECT_EQ(l["choices"][0]["logprobs"]["token_logprobs"].size(), 3u) << lp.body();
  for (const Json& v : l["choices"][0]["logprobs"]["token_logprobs"]) EXPECT_LE(v.get<double>(), 0.0);
}

TEST_F(HttpApi, ChatAppliesTheModelsTemplateAsGrpcChatDoes) {
  // What Zephyr's template renders for this conversation (add_generation_prompt), tokenized without special tokens.
  auto stub = server_->stub();
  grpc::ClientContext ctx;
  pb::TokenizeRequest treq;
  treq.set_text("<|system|>\nBe brief.</s>\n<|user|>\nHello world</s>\n<|assistant|>\n");
  pb::TokenizeResponse tres;
  ASSERT_TRUE(stub->Tokenize(&ctx, treq, &tres).ok());
  std::vector<uint32_t> rendered(tres.ids().begin(), tres.ids().end());
  StreamResult expected = generate(stub.get(), ids_request(rendered, 8));
  ASSERT_TRUE(expected.status.ok());

  HttpConnection c(server_->http_port());
  Json body = {{"messages", {{{"role", "system"}, {"content", "Be brief."}},
                             {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hello world"}}}}}}},
               {"max_tokens", 8}, {"temperature", 0}, {"n", 1}, {"presence_penalty", 0}, {"logit_bias", Json::object()}};
  auto res = c.post("/v1/chat/completions", body);
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  Json j = Json::parse(res.body());
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], expected.text);
  EXPECT_EQ(j["usage"]["prompt_tokens"], rendered.size());

  // gRPC's ChatMessages input goes through the same template.
  pb::GenerateRequest chat;
  auto* m = chat.mutable_chat()->add_messages();
  m->set_role("system");
  m->set_content("Be brief.");
  m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Hello world");
  chat.mutable_stopping()->set_max_new_tokens(8);
  StreamResult via_grpc = generate(stub.get(), chat);
  ASSERT_TRUE(via_grpc.status.ok()) << via_grpc.status.error_message();
  EXPECT_EQ(via_grpc.text, expected.text);
  EXPECT_EQ(via_grpc.usage.prompt_tokens(), rendered.size());

  // Streamed chat: the first delta names the role; [DONE] ends it.
  body["stream"] = true;
  auto streamed = c.post("/v1/chat/completions", body);
  bool framed = false;
  auto events = sse_events(streamed.body(), &framed);
  EXPECT_TRUE(framed);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(Json::parse(events[0])["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i)
    text += Json::parse(events[i])["choices"][0]["delta"].value("content", "");
  EXPECT_EQ(text, expected.text);
}

TEST_F(HttpApi, ErrorsHaveOpenAisShapeAndStatus) {
  HttpConnection c(server_->http_port());
  auto error_of = [](const bhttp::response<bhttp::string_body>& r) { return Json::parse(r.body())["error"]; };

  auto malformed = c.request(bhttp::verb::post, "/v1/completions", "{\"prompt\": \"x\",");
  EXPECT_EQ(malformed.result_int(), 400u);
  Json e = error_of(malformed);
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_NE(e["message"].get<std::string>().find("not valid JSON"), std::string::npos) << e;
  EXPECT_TRUE(e["param"].is_null());

  // A value zeroinfer cannot honour is refused naming the field; the connection stays usable.
  auto n2 = c.post("/v1/completions", completion("x", 2, {{"n", 2}}));
  EXPECT_EQ(n2.result_int(), 400u);
  EXPECT_EQ(error_of(n2)["param"], "n");
  auto top = c.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"top_logprobs", 2}});
  EXPECT_EQ(top.result_int(), 400u);
  EXPECT_EQ(error_of(top)["param"], "top_logprobs");
  auto lp = c.post("/v1/completions", completion("x", 2, {{"logprobs", 2}}));
  EXPECT_EQ(error_of(lp)["param"], "logprobs");
  // validate_request's limits, with OpenAI's field names.
  auto big = c.post("/v1/completions", completion("x", 1 << 20));
  EXPECT_EQ(big.result_int(), 400u);
  EXPECT_EQ(error_of(big)["param"], "max_tokens") << big.body();
  auto temp = c.post("/v1/completions", completion("x", 2, {{"temperature", -1}}));
  EXPECT_EQ(error_of(temp)["param"], "temperature") << temp.body();
  auto model = c.post("/v1/completions", completion("x", 2, {{"model", "gpt-4"}}));
  EXPECT_EQ(model.result_int(), 404u);
  EXPECT_EQ(c.request(bhttp::verb::get, "/v1/nothing").result_int(), 404u);
  EXPECT_EQ(c.request(bhttp::verb::get, "/v1/completions").result_int(), 405u);

  auto models = c.request(bhttp::verb::get, "/v1/models");
  ASSERT_EQ(models.result_int(), 200u);
  EXPECT_EQ(Json::parse(models.body())["data"][0]["id"], std::filesystem::path(*chat_model_).filename().string());
  auto health = c.request(bhttp::verb::get, "/health");
  EXPECT_EQ(health.result_int(), 200u);
}

TEST_F(HttpApi, ABodyOverTheLimitIs413WithoutBeingRead) {
  // Content-Length announces 100 MB and nothing follows: the answer comes from the head alone.
  HttpConnection c(server_->http_port());
  c.write_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              "Content-Length: 100000000\r\n\r\n");
  std::string head = c.read_until("\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 413 ", 0), 0u) << head;
  if (head.find("\"}}") == std::string::npos) head += c.read_until("\"}}");
  EXPECT_NE(head.find("server.http_max_body_bytes"), std::string::npos) << head;

  // A chunked body is cut off once it passes the limit (64 KiB here).
  HttpConnection chunked(server_->http_port());
  chunked.write_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  const std::string piece(16 << 10, 'a');
  for (int i = 0; i < 5; ++i) chunked.write_raw("4000\r\n" + piece + "\r\n");
  EXPECT_EQ(chunked.read_until("\r\n\r\n").rfind("HTTP/1.1 413 ", 0), 0u);
}

TEST_F(HttpApi, ServeModelAloneServesAFolderAndChatWithoutATemplateIs400) {
  // `serve --model DIR`, no file: every other key at its default. llama_mha has no chat template.
  ServerProcess plain("", std::string(ZI_TEST_DATA) + "/models/llama_mha", /*no_config=*/true);
  ASSERT_TRUE(plain.wait_listening()) << plain.log();
  ASSERT_TRUE(eventually([&] { return health(plain.channel().get(), "") == 1; }, 60s)) << plain.log();
  HttpConnection c(plain.http_port());
  auto chat = c.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_tokens", 2}});
  EXPECT_EQ(chat.result_int(), 400u);
  EXPECT_NE(chat.body().find("no chat template"), std::string::npos) << chat.body();
  auto done = c.post("/v1/completions", completion("x", 2));
  EXPECT_EQ(done.result_int(), 200u);
  EXPECT_EQ(Json::parse(done.body())["model"], "llama_mha");  // model.name defaults to the folder's name
  EXPECT_NE(plain.log().find("no chat template"), std::string::npos);
}

TEST_F(HttpApi, AClientThatDisconnectsCancelsItsRequest) {
  const std::string cancelled = "zeroinfer_requests_total{finish_reason=\"cancelled\"}";
  const double before = metric(*server_, cancelled);
  {
    HttpConnection c(server_->http_port());
    Json body = completion("Hello world", 200, {{"stream", true}, {"ignore_eos", true}});
    const std::string text = body.dump();
    c.write_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                std::to_string(text.size()) + "\r\n\r\n" + text);
    EXPECT_NE(c.read_until("data: ").find("data: "), std::string::npos);
    c.close();  // mid-stream
  }
  EXPECT_TRUE(eventually([&] { return metric(*server_, cancelled) == before + 1; })) << scrape(server_->metrics_port());
  EXPECT_TRUE(eventually([&] { return metric(*server_, "zeroinfer_requests_running") == 0; }));
  EXPECT_GE(metric(*server_, "zeroinfer_api_requests_total{api=\"http\"}"), 1);
}

}  // namespace
}  // namespace zi::testing
