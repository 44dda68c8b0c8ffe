// `zeroinfer serve` start-up and shutdown: SIGTERM drains (running requests finish, new ones are refused, exit 0),
// the grace period runs out (the rest are CANCELLED), a worker dies, the coordinator dies, the config is bad.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

pb::GenerateRequest long_request(uint32_t n) {
  pb::GenerateRequest r = ids_request({1, 100, 200}, n);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

class Lifecycle : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && server_) std::fprintf(stderr, "--- server log ---\n%s", server_->log().c_str());
  }
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(Lifecycle, SigtermLetsRunningRequestsFinishRefusesNewOnesAndExitsZero) {
  server_ = start_server("server: {shutdown_grace_seconds: 30}\ndebug: {step_delay_ms: 30}\n");
  auto stub = server_->stub();
  BackgroundStream running(stub.get(), long_request(60));
  ASSERT_TRUE(running.wait_first_message());
  const pid_t worker = server_->worker_pid();
  ASSERT_GT(worker, 0);
  kill(server_->pid(), SIGTERM);
  // Draining: health goes NOT_SERVING, after which every new request is UNAVAILABLE.
  ASSERT_TRUE(eventually([&] { return health(server_->channel().get(), "") == 2; }));
  EXPECT_EQ(health(server_->channel().get(), "zeroinfer.v1.Generation"), 2);
  StreamResult refused = generate(stub.get(), long_request(3));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.status.error_message();
  // The request that was running when the signal came completes normally.
  StreamResult r = running.join();
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.finish, pb::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.tokens.size(), 60u);
  int st = server_->wait_exit(60s);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
  EXPECT_TRUE(process_gone(worker));
  EXPECT_NE(server_->log().find("stopped"), std::string::npos);
}

TEST_F(Lifecycle, RequestsStillRunningWhenTheGraceEndsAreCancelled) {
  server_ = start_server("server: {shutdown_grace_seconds: 0.2}\ndebug: {step_delay_ms: 30}\n");
  auto stub = server_->stub();
  BackgroundStream running(stub.get(), long_request(200));  // ~6 s of steps: longer than the grace
  ASSERT_TRUE(running.wait_first_message());
  int st = server_->signal_and_wait(SIGINT);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
  StreamResult r = running.join();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_NE(r.status.error_message().find("shutdown_grace_seconds"), std::string::npos) << r.status.error_message();
  EXPECT_LT(r.tokens.size(), 200u);
}

TEST_F(Lifecycle, ALostWorkerFailsStreamsWithUnavailableAndHealthGoesNotServing) {
  server_ = start_server("debug: {step_delay_ms: 30}\n");
  auto stub = server_->stub();
  BackgroundStream running(stub.get(), long_request(200));
  ASSERT_TRUE(running.wait_first_message());
  const pid_t worker = server_->worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  StreamResult r = running.join();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(r.status.error_message().find("worker rank 0"), std::string::npos) << r.status.error_message();
  EXPECT_TRUE(eventually([&] { return health(server_->channel().get(), "") == 2; }));
  StreamResult after = generate(stub.get(), long_request(2));
  EXPECT_EQ(after.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(after.status.error_message().find("worker rank 0"), std::string::npos) << after.status.error_message();
  EXPECT_EQ(metric(*server_, "zeroinfer_requests_total{finish_reason=\"error\"}"), 1);
  int st = server_->signal_and_wait(SIGTERM);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
}

TEST_F(Lifecycle, TwoRanksEachRunTheirShareOfTheBatch) {
  // Two CPU workers (data parallel): sequences are placed on the least-loaded rank and stay there.
  server_ = start_server("parallel: {num_gpus: 2}\ndebug: {step_delay_ms: 20}\n");
  EXPECT_NE(server_->log().find("spawned worker rank 1"), std::string::npos);
  auto stub = server_->stub();
  grpc::ClientContext ctx;
  pb::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&ctx, pb::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.num_ranks(), 2u);
  std::ifstream f(std::string(ZI_TEST_DATA) + "/models/llama_mha/reference.json");
  auto ref = nlohmann::json::parse(f);
  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (size_t i = 0; i < ref["prompts"].size(); ++i) {
    streams.push_back(std::make_unique<BackgroundStream>(
        stub.get(), ids_request(ref["prompts"][i].get<std::vector<uint32_t>>(), 12)));
    ASSERT_TRUE(streams.back()->wait_first_message());  // the next one joins while this one runs
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    StreamResult r = streams[i]->join();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, ref["greedy"][i].get<std::vector<uint32_t>>()) << "prompt " << i;
  }
  int st = server_->signal_and_wait(SIGTERM);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
}

TEST_F(Lifecycle, WorkersDieWithTheCoordinator) {
  server_ = start_server("");
  const pid_t worker = server_->worker_pid();
  ASSERT_GT(worker, 0);
  EXPECT_FALSE(process_gone(worker));
  server_->signal_and_wait(SIGKILL);
  EXPECT_TRUE(eventually([&] { return process_gone(worker); }, 10s)) << "worker " << worker << " outlived its parent";
}

TEST_F(Lifecycle, BadConfigIsOneLineNamingTheKeyAndExitCodeOne) {
  auto dir = std::filesystem::temp_directory_path() / ("zi_lifecycle_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "bad.yaml").string();
  std::ofstream(path) << "model: {path: " << ZI_TEST_DATA << "/models/llama_mha}\nserver: {max_batch_size: 0}\n";
  auto [st, out] = run(std::string(ZI_BINARY) + " serve --config " + path + " 2>&1");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
  EXPECT_EQ(out, "zeroinfer: " + path + ": server.max_batch_size: must be 1..1024 or auto, got 0\n");
  std::ofstream(path) << "model: {path: /nonexistent/model}\n";
  std::tie(st, out) = run(std::string(ZI_BINARY) + " serve --config " + path + " 2>&1");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
  EXPECT_NE(out.find("model.path: '/nonexistent/model' is not a folder"), std::string::npos) << out;
  std::tie(st, out) = run(std::string(ZI_BINARY) + " serve --config " + path + " --listen nowhere 2>&1");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0) << st;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zi::testing
