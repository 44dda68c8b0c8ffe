// Limits of `zeroinfer serve` not covered by serve_test.cc / validate_test.cc (those check every field limit:
// prompt tokens, max_new_tokens, stop strings, sampling, and a full queue): gRPC's message and metadata size
// limits, a near-limit prompt that is refused by its token count, a burst of streams on one connection bounded by
// the queue, and a client that dies mid-stream. After each, the server must still serve.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

class Limits : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && server_) std::fprintf(stderr, "--- server log ---\n%s", server_->log().c_str());
    if (server_) {
      int st = server_->signal_and_wait(SIGTERM);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
    }
  }
  // On a new connection: gRPC closes the connection that carried an oversized header block, so the test's own
  // channel may still be failing its next call while the server itself is fine.
  void expect_still_serving() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own, not the shared one
    auto channel = grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args);
    auto stub = pb::Generation::NewStub(channel);
    StreamResult ok = generate(stub.get(), ids_request({1, 100, 200}, 3));
    EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
    EXPECT_NE(ok.finish, pb::FINISH_REASON_UNSPECIFIED);
    EXPECT_EQ(health(channel.get(), ""), 1);
  }
  std::unique_ptr<ServerProcess> server_;
};

// gRPC's default 4 MiB receive limit: RESOURCE_EXHAUSTED from gRPC itself, before any of our code runs. A prompt
// under it but far over the model's context is tokenized and refused by its token count.
TEST_F(Limits, MessageSizeAndOversizedPrompts) {
  server_ = start_server("");
  auto stub = server_->stub();
  StreamResult big = generate(stub.get(), text_request(std::string(5 << 20, 'a'), 4));
  EXPECT_EQ(big.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.status.error_message();
  EXPECT_EQ(big.messages, 0);

  StreamResult long_text = generate(stub.get(), text_request(std::string(1 << 20, 'a'), 4));
  EXPECT_EQ(long_text.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << long_text.status.error_message();
  EXPECT_NE(long_text.status.error_message().find("over the limit of 256"), std::string::npos)
      << long_text.status.error_message();

  pb::GenerateRequest many_ids;
  for (int i = 0; i < 500000; ++i) many_ids.mutable_prompt_token_ids()->add_ids(5);
  StreamResult ids = generate(stub.get(), many_ids);
  EXPECT_EQ(ids.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ids.status.error_message();
  EXPECT_NE(ids.status.error_message().find("500000 tokens"), std::string::npos) << ids.status.error_message();
  expect_still_serving();
}

// Request metadata past gRPC's limit (8 KiB by default) is RESOURCE_EXHAUSTED from gRPC, which also closes that
// connection (other streams on it fail UNAVAILABLE); the server goes on.
TEST_F(Limits, OversizedMetadataIsRefused) {
  server_ = start_server("");
  auto stub = server_->stub();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  ctx.AddMetadata("x-padding", std::string(64 << 10, 'p'));
  auto reader = stub->Generate(&ctx, ids_request({1, 2, 3}, 2));
  pb::GenerateResponse msg;
  int messages = 0;
  while (reader->Read(&msg)) ++messages;
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_EQ(messages, 0);
  expect_still_serving();
}

// 64 streams opened at once on one connection against 2 batch slots and a queue of 4: every stream gets an
// answer, either its tokens or RESOURCE_EXHAUSTED at once; none is left hanging and the server ends idle.
TEST_F(Limits, BurstOfStreamsOnOneConnectionIsBoundedByTheQueue) {
  server_ = start_server("server: {max_queue: 4, max_batch_size: 2}\ndebug: {step_delay_ms: 20}\n");
  auto stub = server_->stub();
  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (int i = 0; i < 64; ++i) {
    pb::GenerateRequest r = ids_request({1, static_cast<uint32_t>(100 + i)}, 5);
    r.mutable_stopping()->set_ignore_eos(true);
    streams.push_back(std::make_unique<BackgroundStream>(stub.get(), r));
  }
  int completed = 0, rejected = 0;
  for (auto& s : streams) {
    StreamResult r = s->join();
    if (r.status.ok() && r.finish == pb::FINISH_REASON_LENGTH && r.tokens.size() == 5) {
      ++completed;
    } else if (r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++rejected;
      EXPECT_EQ(r.messages, 0);
    } else {
      ADD_FAILURE() << "unexpected outcome: " << r.status.error_code() << " " << r.status.error_message();
    }
  }
  EXPECT_EQ(completed + rejected, 64);
  EXPECT_GE(completed, 2);
  EXPECT_GE(rejected, 1);
  EXPECT_TRUE(eventually([&] {
    return metric(*server_, "zeroinfer_requests_running") == 0 && metric(*server_, "zeroinfer_requests_waiting") == 0;
  }));
  EXPECT_EQ(metric(*server_, "zeroinfer_requests_total{finish_reason=\"rejected\"}"), rejected);
  expect_still_serving();
}

// server.max_streams_per_connection: six streams on one connection with a limit of 2 never have more than two
// requests in the server at once (the rest wait in the client's HTTP/2 layer, not in the queue), and all finish.
TEST_F(Limits, StreamsPerConnectionAreBoundedAndTheRestWait) {
  server_ = start_server("server: {max_streams_per_connection: 2, max_queue: 64, max_batch_size: 8}\n"
                         "debug: {step_delay_ms: 20}\n");
  auto stub = server_->stub();
  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (int i = 0; i < 6; ++i) {
    pb::GenerateRequest r = ids_request({1, static_cast<uint32_t>(200 + i)}, 6);
    r.mutable_stopping()->set_ignore_eos(true);
    streams.push_back(std::make_unique<BackgroundStream>(stub.get(), r));
  }
  double most = 0;
  auto all_done = [&] {
    for (auto& s : streams)
      if (!s->done()) return false;
    return true;
  };
  while (!all_done()) {
    most = std::max(most, metric(*server_, "zeroinfer_requests_running") +
                              metric(*server_, "zeroinfer_requests_waiting"));
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_LE(most, 2) << "more requests in the server than the connection may carry";
  EXPECT_GE(most, 1);
  for (auto& s : streams) {
    StreamResult r = s->join();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens.size(), 6u);
  }
}

// A client process SIGKILLed mid-stream: its connection closes, the server cancels the request and frees the slot.
// (A client that vanishes without closing its connection is only noticed by keepalive: see docs/RELIABILITY.md.)
TEST_F(Limits, ClientKilledMidStreamIsCancelledAndItsSlotFreed) {
  server_ = start_server("debug: {step_delay_ms: 30}\n");
  const std::string addr = server_->address();
  pid_t client = fork();
  if (client == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execl(ZI_BINARY, ZI_BINARY, "client", "--server", addr.c_str(), "--prompt-ids", "1,100,200", "--max-new-tokens",
          "200", "--ignore-eos", static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(client, 0);
  const bool running = eventually([&] { return metric(*server_, "zeroinfer_requests_running") == 1; }, 30s);
  kill(client, SIGKILL);
  int st = 0;
  waitpid(client, &st, 0);
  ASSERT_TRUE(running) << "the client's request never ran";
  EXPECT_TRUE(eventually([&] { return metric(*server_, "zeroinfer_requests_running") == 0; }, 10s))
      << "the dead client's request kept its slot";
  EXPECT_EQ(metric(*server_, "zeroinfer_requests_total{finish_reason=\"cancelled\"}"), 1);
  expect_still_serving();
}

}  // namespace
}  // namespace zi::testing
