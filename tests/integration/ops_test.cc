// Operating `zeroinfer serve` as a daemon, through the real binary: the sd_notify conversation with a fake
// systemd (NOTIFY_SOCKET bound by the test), SIGHUP reloading what can change without a restart, and SIGTERM with
// more streams in flight than the batch holds.
#include <gtest/gtest.h>
#include <sys/un.h>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

namespace fs = std::filesystem;

pb::GenerateRequest long_request(uint32_t n) {
  pb::GenerateRequest r = ids_request({1, 100, 200}, n);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

class Ops : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && server_) std::fprintf(stderr, "--- server log ---\n%s", server_->log().c_str());
  }
  bool log_has(const std::string& s) { return server_->log().find(s) != std::string::npos; }
  std::unique_ptr<ServerProcess> server_;
};

// What systemd sees: a Unix datagram socket; each datagram is one sd_notify() call (lines "KEY=VALUE").
class FakeSystemd {
 public:
  FakeSystemd() {
    path_ = (fs::temp_directory_path() / ("zi_notify_" + std::to_string(getpid()) + ".sock")).string();
    unlink(path_.c_str());
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    bound_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{0, 100000};  // lets the reader look at stop_ ten times a second
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    reader_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::istringstream lines(std::string(buf, static_cast<size_t>(n)));
        std::string line;
        std::lock_guard<std::mutex> lock(mu_);
        while (std::getline(lines, line))
          if (!line.empty()) messages_.push_back(line);
        cv_.notify_all();
      }
    });
  }
  ~FakeSystemd() {
    stop_ = true;
    reader_.join();
    close(fd_);
    unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  const std::string& path() const { return path_; }
  // Waits for a message equal to `m` (60 s hang guard); true when it came.
  bool wait_for(const std::string& m) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 60s, [&] { return std::find(messages_.begin(), messages_.end(), m) != messages_.end(); });
  }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> messages_;
  std::thread reader_;
};

size_t index_of(const std::vector<std::string>& v, const std::string& m) {
  return static_cast<size_t>(std::find(v.begin(), v.end(), m) - v.begin());
}

TEST_F(Ops, SdNotifySaysReadyAfterTheModelLoadedThenWatchdogThenStoppingOnSigterm) {
  FakeSystemd systemd;
  ASSERT_TRUE(systemd.bound()) << systemd.path();
  // The server inherits the environment systemd would give it (set only around the fork).
  setenv("NOTIFY_SOCKET", systemd.path().c_str(), 1);
  setenv("WATCHDOG_USEC", "2000000", 1);
  server_ = std::make_unique<ServerProcess>("");
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  ASSERT_TRUE(server_->wait_listening()) << server_->log();

  ASSERT_TRUE(systemd.wait_for("READY=1")) << server_->log();
  // READY=1 comes once the model is loaded: the server is SERVING by then and answers a request.
  EXPECT_EQ(health(server_->channel().get(), ""), 1);
  auto stub = server_->stub();
  StreamResult r = generate(stub.get(), long_request(2));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  // The watchdog keeps being fed while the step loop turns (every WATCHDOG_USEC / 2).
  ASSERT_TRUE(systemd.wait_for("WATCHDOG=1")) << server_->log();

  int st = server_->signal_and_wait(SIGTERM);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
  ASSERT_TRUE(systemd.wait_for("STOPPING=1"));
  std::vector<std::string> m = systemd.messages();
  std::string all;
  for (const auto& s : m) all += s + "\n";
  const size_t ready = index_of(m, "READY=1"), watchdog = index_of(m, "WATCHDOG=1"), stopping = index_of(m, "STOPPING=1");
  EXPECT_LT(ready, watchdog) << all;
  EXPECT_LT(watchdog, stopping) << all;
  EXPECT_EQ(std::count(m.begin(), m.end(), "READY=1"), 1) << all;
  EXPECT_EQ(std::count(m.begin(), m.end(), "STOPPING=1"), 1) << all;
  for (size_t i = stopping + 1; i < m.size(); ++i) EXPECT_NE(m[i], "WATCHDOG=1") << "after STOPPING=1: " << all;
  // Only the protocol's messages (no worker speaks to systemd).
  for (const auto& s : m)
    EXPECT_TRUE(s == "READY=1" || s == "WATCHDOG=1" || s == "STOPPING=1" || s.rfind("EXTEND_TIMEOUT_USEC=", 0) == 0)
        << s;
}

TEST_F(Ops, SighupReloadsLimitsAndLogLevelAndLogsKeysThatNeedARestart) {
  const std::string base = "server: {max_batch_size: 1, max_queue: 8, max_new_tokens_default: 5}\n";
  server_ = start_server(base + "debug: {step_delay_ms: 30}\n");
  auto stub = server_->stub();
  StreamResult before = generate(stub.get(), long_request(0));  // 0 = the server's default
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();
  EXPECT_EQ(before.tokens.size(), 5u);

  // A file that no longer loads changes nothing.
  const std::string model = "model: {path: " + std::string(ZI_TEST_DATA) + "/models/llama_mha}\n";
  std::ofstream(server_->config_path()) << model << "server: {max_batch_size: 1, max_queue: 0}\n";
  kill(server_->pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] { return log_has("the running configuration is unchanged"); })) << server_->log();
  EXPECT_TRUE(log_has("server.max_queue: must be 1..1000000, got 0"));
  EXPECT_EQ(generate(stub.get(), long_request(0)).tokens.size(), 5u);

  std::ofstream(server_->config_path())
      << model << "server: {max_batch_size: 4, max_queue: 1, max_new_tokens_default: 3, max_prompt_tokens: 2}\n"
      << "logging: {level: debug}\ndebug: {step_delay_ms: 30}\n";
  kill(server_->pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] { return log_has("SIGHUP: reloaded"); })) << server_->log();
  EXPECT_TRUE(log_has("SIGHUP: server.max_new_tokens_default: 5 -> 3"));
  EXPECT_TRUE(log_has("SIGHUP: server.max_queue: 8 -> 1"));
  EXPECT_TRUE(log_has("SIGHUP: server.max_prompt_tokens: 0 -> 2"));
  EXPECT_TRUE(log_has("SIGHUP: logging.level: info -> debug"));
  EXPECT_TRUE(log_has("SIGHUP: server.max_batch_size changed (1 -> 4) but takes a restart; still 1"));
  EXPECT_TRUE(log_has("4 changes applied, 1 waiting for a restart"));

  // max_prompt_tokens: a 3-token prompt is now too long; the refusal is logged at the new level (debug).
  StreamResult too_long = generate(stub.get(), long_request(2));
  EXPECT_EQ(too_long.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(eventually([&] { return log_has("rejected:"); })) << server_->log();
  // max_new_tokens_default.
  // The earlier request's last message can reach the client a moment before the scheduler retires it: wait until
  // the server is idle so the lowered max_queue sees an empty queue.
  ASSERT_TRUE(eventually([&] {
    return metric(*server_, "zeroinfer_requests_running") == 0 && metric(*server_, "zeroinfer_requests_waiting") == 0;
  }));
  pb::GenerateRequest short_prompt = ids_request({1, 100}, 0);
  short_prompt.mutable_stopping()->set_ignore_eos(true);
  StreamResult after = generate(stub.get(), short_prompt);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens.size(), 3u);
  // max_queue: one request runs (the batch still holds one), one waits, the next is refused.
  pb::GenerateRequest long_short = ids_request({1, 100}, 100);
  long_short.mutable_stopping()->set_ignore_eos(true);
  BackgroundStream running(stub.get(), long_short);
  ASSERT_TRUE(running.wait_first_message());
  BackgroundStream waiting(stub.get(), long_short);
  ASSERT_TRUE(eventually([&] { return metric(*server_, "zeroinfer_requests_waiting") == 1; })) << server_->log();
  StreamResult refused = generate(stub.get(), short_prompt);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.status.error_message(), "request queue is full: 1 requests waiting (server.max_queue = 1)");
  running.cancel();
  waiting.cancel();
  running.join();
  waiting.join();

  // Above its start-up value, max_queue takes a restart.
  std::ofstream(server_->config_path())
      << model << "server: {max_batch_size: 1, max_queue: 50, max_new_tokens_default: 3}\ndebug: {step_delay_ms: 30}\n";
  kill(server_->pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] { return log_has("above its start-up value 8 it takes a restart; now 8"); }))
      << server_->log();
  int st = server_->signal_and_wait(SIGTERM);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
}

TEST_F(Ops, SigtermWithMoreStreamsThanTheBatchHoldsEndsEachFinishedOrCancelledAndExitsZero) {
  // Two run, three wait; the grace period is far shorter than their 200 steps of 30 ms.
  server_ = start_server("server: {max_batch_size: 2, shutdown_grace_seconds: 0.5}\ndebug: {step_delay_ms: 30}\n");
  auto stub = server_->stub();
  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (int i = 0; i < 2; ++i) {
    streams.push_back(std::make_unique<BackgroundStream>(stub.get(), long_request(200)));
    ASSERT_TRUE(streams.back()->wait_first_message());
  }
  for (int i = 0; i < 3; ++i) streams.push_back(std::make_unique<BackgroundStream>(stub.get(), long_request(200)));
  ASSERT_TRUE(eventually([&] { return metric(*server_, "zeroinfer_requests_waiting") == 3; })) << server_->log();
  const pid_t worker = server_->worker_pid();
  int st = server_->signal_and_wait(SIGTERM);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
  EXPECT_TRUE(process_gone(worker));
  int cancelled = 0;
  for (auto& s : streams) {
    // None hangs: every stream has ended by the time the server is gone.
    ASSERT_TRUE(eventually([&] { return s->done(); }, 30s));
    StreamResult r = s->join();
    if (r.status.ok()) {
      EXPECT_EQ(r.finish, pb::FINISH_REASON_LENGTH);
      EXPECT_EQ(r.tokens.size(), 200u);
    } else {
      ++cancelled;
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << r.status.error_message();
      EXPECT_NE(r.status.error_message().find("server.shutdown_grace_seconds"), std::string::npos)
          << r.status.error_message();
      EXPECT_LT(r.tokens.size(), 200u);
    }
  }
  EXPECT_GT(cancelled, 0);
  EXPECT_TRUE(log_has("cancelling 5 unfinished requests")) << server_->log();
}

}  // namespace
}  // namespace zi::testing
