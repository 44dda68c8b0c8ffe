// server.health_listen: a second port that serves grpc.health.v1 and nothing else, in plaintext even off loopback
// (Kubernetes' gRPC probe presents no certificate), whose status follows the main port's: NOT_SERVING while the
// model loads, when a worker is lost, and for good once draining starts.
#include <gtest/gtest.h>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

pb::GenerateRequest long_request(uint32_t n) {
  pb::GenerateRequest r = ids_request({1, 100, 200}, n);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

class HealthPort : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && server_) std::fprintf(stderr, "--- server log ---\n%s", server_->log().c_str());
  }
  // A server whose health port listens on every address (plaintext off loopback), reached over loopback.
  void start(const std::string& extra) {
    server_ = start_server("server: {health_listen: \"0.0.0.0:0\", shutdown_grace_seconds: 30}\n" + extra);
    ASSERT_GT(server_->health_port(), 0) << server_->log();
    health_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->health_port()),
                                  grpc::InsecureChannelCredentials());
  }
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> health_;
};

TEST_F(HealthPort, ServesHealthInPlaintextOffLoopbackAndNothingElse) {
  start("");
  EXPECT_NE(server_->log().find("(plaintext, grpc.health.v1 only)"), std::string::npos) << server_->log();
  EXPECT_EQ(health(health_.get(), ""), 1);
  EXPECT_EQ(health(health_.get(), "zeroinfer.v1.Generation"), 1);
  EXPECT_EQ(health(health_.get(), "no.such.Service"), -static_cast<int>(grpc::StatusCode::NOT_FOUND));

  // The generation service, and reflection, exist only on the main port.
  auto stub = pb::Generation::NewStub(health_);
  StreamResult gen = generate(stub.get(), long_request(3), 20s);
  EXPECT_EQ(gen.status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << gen.status.error_message();
  EXPECT_TRUE(gen.tokens.empty());
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    pb::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&ctx, pb::GetModelInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  EXPECT_EQ(reflection_list_services(health_.get()), "");
  EXPECT_NE(reflection_list_services(server_->channel().get()).find("zeroinfer.v1.Generation"), std::string::npos);
  // The main port still serves generation.
  StreamResult ok = generate(server_->stub().get(), long_request(3));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.tokens.size(), 3u);
}

TEST_F(HealthPort, TurnsNotServingWhileDraining) {
  start("debug: {step_delay_ms: 30}\n");
  auto stub = server_->stub();
  BackgroundStream running(stub.get(), long_request(60));
  ASSERT_TRUE(running.wait_first_message());
  ASSERT_EQ(health(health_.get(), ""), 1);
  kill(server_->pid(), SIGTERM);
  // NOT_SERVING at once; the running request still finishes on the main port.
  EXPECT_TRUE(eventually([&] { return health(health_.get(), "") == 2; }));
  EXPECT_EQ(health(health_.get(), "zeroinfer.v1.Generation"), 2);
  StreamResult r = running.join();
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens.size(), 60u);
  int st = server_->wait_exit(60s);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
}

TEST_F(HealthPort, TurnsNotServingWhenAWorkerIsLost) {
  start("");
  const pid_t worker = server_->worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(health(health_.get(), ""), 1);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  EXPECT_TRUE(eventually([&] { return health(health_.get(), "") == 2; }));
  EXPECT_EQ(health(health_.get(), "zeroinfer.v1.Generation"), 2);
}

// A health port that cannot bind stops the server at start-up with a line naming the key.
TEST_F(HealthPort, ATakenPortStopsStartUpNamingTheKey) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string taken = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  server_ = std::make_unique<ServerProcess>("server: {health_listen: \"" + taken + "\"}\n");
  int st = server_->wait_exit(60s);
  close(fd);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << "wait status " << st;
  EXPECT_NE(server_->log().find("server.health_listen: cannot listen on " + taken), std::string::npos)
      << server_->log();
}

}  // namespace
}  // namespace zi::testing
