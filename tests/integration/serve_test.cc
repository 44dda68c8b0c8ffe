// End to end: `zeroinfer serve` on free ports, driven over real gRPC (health, reflection, Generate, Tokenize,
// GetModelInfo), its /metrics scraped over HTTP, stopped with signals. Steps of the tiny fixture model finish in
// microseconds, so the tests that need requests in flight use the debug step delay (debug.step_delay_ms) and
// wait for observable states (first message received, health, metrics) rather than for time to pass.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

// ---------------------------------------------------------------------------------------------------------------
// One fast server (no step delay) shared by the tests that need no timing control.
class FastServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = start_server(
        "server: {max_queue: 64, max_batch_size: 8, max_prompt_tokens: 200, max_new_tokens_default: 16}\n")
                  .release();
  }
  static void TearDownTestSuite() {
    int st = server_->signal_and_wait(SIGTERM);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st << "\n" << server_->log();
    delete server_;
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "--- server log ---\n%s", server_->log().c_str());
  }
  static ServerProcess* server_;
};
ServerProcess* FastServer::server_ = nullptr;

TEST_F(FastServer, HealthReflectionAndModelInfo) {
  EXPECT_EQ(health(server_->channel().get(), ""), 1);
  EXPECT_EQ(health(server_->channel().get(), "zeroinfer.v1.Generation"), 1);
  EXPECT_EQ(health(server_->channel().get(), "no.such.Service"), -static_cast<int>(grpc::StatusCode::NOT_FOUND));
  std::string services = reflection_list_services(server_->channel().get());
  EXPECT_NE(services.find("zeroinfer.v1.Generation"), std::string::npos);
  EXPECT_NE(services.find("grpc.health.v1.Health"), std::string::npos);

  auto stub = server_->stub();
  grpc::ClientContext ctx;
  pb::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&ctx, pb::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.name(), "llama_mha");
  EXPECT_EQ(info.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(info.vocab_size(), 2048u);
  EXPECT_EQ(info.max_context(), 256u);
  EXPECT_GT(info.parameters(), 0u);
  EXPECT_EQ(info.device(), "cpu");
  EXPECT_EQ(info.num_ranks(), 1u);
  // Placement: every layer resident on the CPU backend, nothing streamed; 16-bit weights.
  EXPECT_EQ(info.quant_bits(), 16u);
  EXPECT_EQ(info.quant_group_size(), 0u);
  EXPECT_GT(info.layer_weight_bytes(), 0u);
  EXPECT_GT(info.layer_tiers_size(), 0);
  for (const std::string& t : info.layer_tiers()) EXPECT_EQ(t, "cpu");
  EXPECT_EQ(info.streamed_bytes_per_step(), 0u);
  EXPECT_EQ(info.prefetch_depth(), 0u);
}

TEST_F(FastServer, GreedyTokensMatchTheFixture) {
  std::ifstream f(std::string(ZI_TEST_DATA) + "/models/llama_mha/reference.json");
  auto ref = nlohmann::json::parse(f);
  auto stub = server_->stub();
  for (size_t i = 0; i < ref["prompts"].size(); ++i) {
    auto prompt = ref["prompts"][i].get<std::vector<uint32_t>>();
    auto greedy = ref["greedy"][i].get<std::vector<uint32_t>>();
    pb::GenerateRequest req = ids_request(prompt, static_cast<uint32_t>(greedy.size()));
    req.set_request_id("fixture-" + std::to_string(i));
    req.set_return_logprobs(true);
    StreamResult r = generate(stub.get(), req);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, greedy) << "prompt " << i;
    EXPECT_EQ(r.finish, pb::FINISH_REASON_LENGTH);
    EXPECT_EQ(r.usage.prompt_tokens(), prompt.size());
    EXPECT_EQ(r.usage.completion_tokens(), greedy.size());
    EXPECT_EQ(r.request_id, "fixture-" + std::to_string(i));
    EXPECT_EQ(r.tokens_per_message_max, 1);
    EXPECT_TRUE(r.finish_only_on_last);
    ASSERT_EQ(r.logprobs.size(), greedy.size());
    for (float lp : r.logprobs) EXPECT_TRUE(lp <= 0.0f && std::isfinite(lp));
    EXPECT_TRUE(valid_utf8(r.text));
  }
}

TEST_F(FastServer, TextPromptMatchesTheGenerateCommand) {
  const std::string prompt = "The quick brown fox";
  auto [st, out] = run(std::string(ZI_BINARY) + " generate --model " + ZI_TEST_DATA +
                       "/models/llama_mha --prompt '" + prompt + "' --max-new-tokens 20 --json 2>/dev/null");
  ASSERT_EQ(st, 0) << out;
  auto expected = nlohmann::json::parse(out.substr(out.rfind('{')));
  auto stub = server_->stub();
  StreamResult r = generate(stub.get(), text_request(prompt, 20));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens, expected["token_ids"].get<std::vector<uint32_t>>());
  EXPECT_EQ(r.text, expected["text"].get<std::string>());
  EXPECT_FALSE(r.request_id.empty());  // made up by the server

  grpc::ClientContext ctx;
  pb::TokenizeRequest treq;
  treq.set_text(prompt);
  treq.set_add_special_tokens(true);
  pb::TokenizeResponse tresp;
  ASSERT_TRUE(stub->Tokenize(&ctx, treq, &tresp).ok());
  EXPECT_EQ(static_cast<uint32_t>(tresp.ids_size()), r.usage.prompt_tokens());
  ASSERT_EQ(tresp.tokens_size(), tresp.ids_size());
  EXPECT_EQ(tresp.ids(0), 1u);  // <s>, added by the post-processor
  EXPECT_EQ(tresp.tokens(0), "<s>");
}

TEST_F(FastServer, DefaultMaxNewTokensIsCappedByTheContext) {
  auto stub = server_->stub();
  pb::GenerateRequest req = ids_request({5, 6, 7}, 0);
  req.mutable_stopping()->set_ignore_eos(true);
  StreamResult r = generate(stub.get(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.usage.completion_tokens(), 16u);  // server.max_new_tokens_default
  std::vector<uint32_t> long_prompt(250, 9);
  // 250 tokens is over server.max_prompt_tokens (200): refused, naming the limit.
  r = generate(stub.get(), ids_request(long_prompt, 0));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("server.max_prompt_tokens"), std::string::npos);
  long_prompt.resize(200);
  req = ids_request(long_prompt, 0);
  req.mutable_stopping()->set_ignore_eos(true);
  r = generate(stub.get(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.usage.completion_tokens(), 16u);
  long_prompt.assign(200, 9);
  req = ids_request(long_prompt, 57);  // 200 + 57 > 256
  r = generate(stub.get(), req);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  req.mutable_stopping()->set_max_new_tokens(56);  // exactly the context
  req.mutable_stopping()->set_ignore_eos(true);
  r = generate(stub.get(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.usage.completion_tokens(), 56u);
}

TEST_F(FastServer, StopStringCutsTheTextBeforeIt) {
  auto stub = server_->stub();
  pb::GenerateRequest req = ids_request({1, 400, 842}, 40);
  req.mutable_stopping()->set_ignore_eos(true);
  StreamResult full = generate(stub.get(), req);
  ASSERT_TRUE(full.status.ok());
  ASSERT_GE(full.text.size(), 12u) << full.text;
  // A stop string taken from the middle of the greedy text: the output ends right before its first occurrence.
  size_t k = full.text.size() / 2;
  while (k > 0 && (static_cast<unsigned char>(full.text[k]) >> 6) == 0x2) --k;  // start on a character
  std::string stop = full.text.substr(k, 3);
  while (!stop.empty() && !valid_utf8(stop)) stop.pop_back();
  ASSERT_FALSE(stop.empty());
  req.mutable_stopping()->add_stop(stop);
  StreamResult cut = generate(stub.get(), req);
  ASSERT_TRUE(cut.status.ok()) << cut.status.error_message();
  EXPECT_EQ(cut.finish, pb::FINISH_REASON_STOP);
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));
  EXPECT_LT(cut.tokens.size(), full.tokens.size());
  EXPECT_EQ(std::vector<uint32_t>(full.tokens.begin(), full.tokens.begin() + cut.tokens.size()), cut.tokens);
}

TEST_F(FastServer, EveryBadInputIsInvalidArgumentNamingTheField) {
  auto stub = server_->stub();
  struct Case {
    std::string name;
    pb::GenerateRequest req;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({"empty prompt", text_request("", 4), "prompt"});
  cases.push_back({"no input", pb::GenerateRequest(), "input"});
  cases.push_back({"id past vocab", ids_request({1, 2048}, 4), "vocab_size 2048"});
  cases.push_back({"over context", ids_request(std::vector<uint32_t>(10, 5), 250), "model context of 256"});
  auto with = [](std::function<void(pb::GenerateRequest&)> f) {
    pb::GenerateRequest r = text_request("hi", 4);
    f(r);
    return r;
  };
  cases.push_back({"negative temperature", with([](auto& r) { r.mutable_sampling()->set_temperature(-1); }),
                   "sampling.temperature"});
  cases.push_back({"NaN temperature", with([](auto& r) { r.mutable_sampling()->set_temperature(std::nanf("")); }),
                   "sampling.temperature"});
  cases.push_back({"top_p 0", with([](auto& r) { r.mutable_sampling()->set_top_p(0); }), "sampling.top_p"});
  cases.push_back({"top_p 1.5", with([](auto& r) { r.mutable_sampling()->set_top_p(1.5f); }), "(0, 1]"});
  cases.push_back({"repetition_penalty 0",
                   with([](auto& r) { r.mutable_sampling()->set_repetition_penalty(0); }),
                   "sampling.repetition_penalty"});
  cases.push_back({"17 stop strings", with([](auto& r) {
                     for (int i = 0; i < 17; ++i) r.mutable_stopping()->add_stop("s" + std::to_string(i));
                   }),
                   "at most 16"});
  cases.push_back({"long stop string",
                   with([](auto& r) { r.mutable_stopping()->add_stop(std::string(257, 'x')); }), "at most 256 bytes"});
  cases.push_back({"greedy with bad top_p",
                   with([](auto& r) {
                     r.mutable_sampling()->set_temperature(0);
                     r.mutable_sampling()->set_top_p(-2);
                   }),
                   "sampling.top_p"});
  for (const Case& c : cases) {
    StreamResult r = generate(stub.get(), c.req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name << ": " << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(c.field), std::string::npos) << c.name << ": " << r.status.error_message();
    EXPECT_EQ(r.messages, 0) << c.name;
  }
  StreamResult ok = generate(stub.get(), text_request("still serving", 3));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_NE(ok.finish, pb::FINISH_REASON_UNSPECIFIED);
}

TEST_F(FastServer, MetricsExposeTheServingSeries) {
  const std::string before = scrape(server_->metrics_port());
  ASSERT_FALSE(before.empty());
  for (const char* name :
       {"zeroinfer_time_to_first_token_seconds_count", "zeroinfer_inter_token_latency_seconds_count",
        "zeroinfer_request_duration_seconds_count", "zeroinfer_queue_duration_seconds_count",
        "zeroinfer_prompt_tokens_total", "zeroinfer_generation_tokens_total", "zeroinfer_requests_running",
        "zeroinfer_requests_waiting", "zeroinfer_batch_size_count"})
    EXPECT_TRUE(sample(before, name).has_value()) << name;
  for (const char* reason : {"length", "eos", "stop", "cancelled", "error", "rejected"})
    EXPECT_TRUE(sample(before, std::string("zeroinfer_requests_total{finish_reason=\"") + reason + "\"}")) << reason;
  EXPECT_NE(before.find("zeroinfer_time_to_first_token_seconds_bucket{le=\""), std::string::npos);

  auto value = [](const std::string& text, const std::string& series) { return sample(text, series).value_or(-1); };
  auto stub = server_->stub();
  pb::GenerateRequest req = ids_request({1, 2, 3, 4}, 5);
  req.mutable_stopping()->set_ignore_eos(true);
  ASSERT_TRUE(generate(stub.get(), req).status.ok());
  EXPECT_FALSE(generate(stub.get(), text_request("", 1)).status.ok());
  const std::string after = scrape(server_->metrics_port());
  const std::string length = "zeroinfer_requests_total{finish_reason=\"length\"}";
  const std::string rejected = "zeroinfer_requests_total{finish_reason=\"rejected\"}";
  EXPECT_EQ(value(after, length), value(before, length) + 1);
  EXPECT_EQ(value(after, rejected), value(before, rejected) + 1);
  EXPECT_EQ(value(after, "zeroinfer_prompt_tokens_total"), value(before, "zeroinfer_prompt_tokens_total") + 4);
  EXPECT_EQ(value(after, "zeroinfer_generation_tokens_total"), value(before, "zeroinfer_generation_tokens_total") + 5);
  EXPECT_EQ(value(after, "zeroinfer_time_to_first_token_seconds_count"),
            value(before, "zeroinfer_time_to_first_token_seconds_count") + 1);
  EXPECT_EQ(value(after, "zeroinfer_inter_token_latency_seconds_count"),
            value(before, "zeroinfer_inter_token_latency_seconds_count") + 4);
  EXPECT_EQ(value(after, "zeroinfer_batch_size_count"), value(before, "zeroinfer_batch_size_count") + 5);
  EXPECT_EQ(value(after, "zeroinfer_requests_running"), 0);
  EXPECT_EQ(value(after, "zeroinfer_requests_waiting"), 0);
  // The engine rows, per rank, from the workers' step replies: 5 steps of that request (one prefill, 4 decode);
  // nothing streams on the CPU with every layer resident.
  const std::string prefill = "zeroinfer_step_duration_seconds_count{phase=\"prefill\",rank=\"0\"}";
  const std::string decode = "zeroinfer_step_duration_seconds_count{phase=\"decode\",rank=\"0\"}";
  auto count = [](const std::string& text, const std::string& series) { return sample(text, series).value_or(0); };
  EXPECT_EQ(count(after, prefill) + count(after, decode), count(before, prefill) + count(before, decode) + 5)
      << after;
  EXPECT_GE(value(after, decode), 4);
  EXPECT_EQ(value(after, "zeroinfer_weight_fetch_bytes_total{rank=\"0\",source=\"cpu\"}"), 0);
  EXPECT_EQ(value(after, "zeroinfer_gpu_memory_used_bytes{rank=\"0\"}"), 0);
  EXPECT_TRUE(sample(after, "zeroinfer_prefetch_stall_seconds_total{rank=\"0\"}").has_value());
  EXPECT_TRUE(sample(after, "zeroinfer_kv_cache_usage_ratio{rank=\"0\"}").has_value());
}

}  // namespace
}  // namespace zi::testing

namespace zi::testing {
namespace {

// ---------------------------------------------------------------------------------------------------------------
// One slow server (every step sleeps 30 ms; 4 sequences per step; 2 queued at most) for requests in flight.
class SlowServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = start_server("server: {max_queue: 2, max_batch_size: 4}\ndebug: {step_delay_ms: 30}\n").release();
  }
  static void TearDownTestSuite() {
    int st = server_->signal_and_wait(SIGTERM);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st << "\n" << server_->log();
    delete server_;
  }
  void TearDown() override {
    // Every test leaves the server idle for the next one.
    EXPECT_TRUE(eventually([] {
      return metric(*server_, "zeroinfer_requests_running") == 0 && metric(*server_, "zeroinfer_requests_waiting") == 0;
    }));
    if (HasFailure()) std::fprintf(stderr, "--- server log ---\n%s", server_->log().c_str());
  }
  static pb::GenerateRequest long_request(uint32_t first_id) {
    pb::GenerateRequest r = ids_request({1, first_id, first_id + 1}, 200);
    r.mutable_stopping()->set_ignore_eos(true);
    return r;
  }
  static ServerProcess* server_;
};
ServerProcess* SlowServer::server_ = nullptr;

TEST_F(SlowServer, SeededSamplingIsReproducibleWhenBatchedWithOthers) {
  auto stub = server_->stub();
  pb::GenerateRequest seeded = text_request("Once upon a time", 24);
  seeded.mutable_sampling()->set_temperature(0.9f);
  seeded.mutable_sampling()->set_top_k(50);
  seeded.mutable_sampling()->set_top_p(0.95f);
  seeded.mutable_sampling()->set_seed(1234);
  seeded.mutable_stopping()->set_ignore_eos(true);
  StreamResult alone = generate(stub.get(), seeded);
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
  ASSERT_EQ(alone.tokens.size(), 24u);

  // Three longer requests run first; the seeded one joins their batch and, being shorter, ends first.
  std::vector<std::unique_ptr<BackgroundStream>> others;
  for (uint32_t i = 0; i < 3; ++i) {
    pb::GenerateRequest r = text_request("Another story number " + std::to_string(i), 60);
    r.mutable_sampling()->set_temperature(1.0f);
    r.mutable_stopping()->set_ignore_eos(true);
    others.push_back(std::make_unique<BackgroundStream>(stub.get(), r));
    ASSERT_TRUE(others.back()->wait_first_message());
  }
  StreamResult batched = generate(stub.get(), seeded);
  ASSERT_TRUE(batched.status.ok()) << batched.status.error_message();
  for (auto& o : others) EXPECT_FALSE(o->done()) << "the seeded request should have shared steps with the others";
  EXPECT_EQ(batched.tokens, alone.tokens);
  EXPECT_EQ(batched.text, alone.text);
  for (auto& o : others) o->cancel();
  for (auto& o : others) o->join();

  seeded.mutable_sampling()->set_seed(4321);
  StreamResult other_seed = generate(stub.get(), seeded);
  ASSERT_TRUE(other_seed.status.ok());
  EXPECT_NE(other_seed.tokens, alone.tokens);
  // Without a seed the server picks a random one: two identical requests differ.
  seeded.mutable_sampling()->clear_seed();
  seeded.mutable_sampling()->set_temperature(1.0f);
  EXPECT_NE(generate(stub.get(), seeded).tokens, generate(stub.get(), seeded).tokens);
}

TEST_F(SlowServer, CancelledStreamStopsAndFreesItsSlot) {
  auto stub = server_->stub();
  const std::string cancelled = "zeroinfer_requests_total{finish_reason=\"cancelled\"}";
  const double before = metric(*server_, cancelled);
  BackgroundStream s(stub.get(), long_request(10));
  ASSERT_TRUE(s.wait_first_message());
  s.cancel();
  StreamResult r = s.join();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(r.tokens.size(), 200u);
  EXPECT_TRUE(eventually([&] { return metric(*server_, cancelled) == before + 1; }));
  EXPECT_TRUE(eventually([&] { return metric(*server_, "zeroinfer_requests_running") == 0; }));
  StreamResult next = generate(stub.get(), ids_request({1, 5}, 3));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
}

TEST_F(SlowServer, FullQueueIsResourceExhausted) {
  auto stub = server_->stub();
  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (uint32_t i = 0; i < 4; ++i) {  // fill the batch
    streams.push_back(std::make_unique<BackgroundStream>(stub.get(), long_request(20 + i)));
    ASSERT_TRUE(streams.back()->wait_first_message());
  }
  for (uint32_t i = 0; i < 2; ++i)  // fill the queue
    streams.push_back(std::make_unique<BackgroundStream>(stub.get(), long_request(30 + i)));
  ASSERT_TRUE(eventually([&] { return metric(*server_, "zeroinfer_requests_waiting") == 2; }));
  const std::string rejected = "zeroinfer_requests_total{finish_reason=\"rejected\"}";
  const double before = metric(*server_, rejected);
  StreamResult r = generate(stub.get(), long_request(40));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("server.max_queue"), std::string::npos) << r.status.error_message();
  EXPECT_EQ(metric(*server_, rejected), before + 1);
  for (auto& s : streams) s->cancel();
  for (auto& s : streams) EXPECT_EQ(s->join().status.error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(SlowServer, DeadlineEndsTheStream) {
  auto stub = server_->stub();
  StreamResult r = generate(stub.get(), long_request(50), 300ms);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(r.tokens.size(), 200u);
}

}  // namespace
}  // namespace zi::testing
