// Workers that join over the network (`parallel.workers: external`), through the real binary on the CPU backend:
// a coordinator and two `zeroinfer worker --coordinator` processes over loopback TCP with mutual TLS (the test CA
// of make_test_pki.sh), once gathering with Gloo and once with shared memory. The tokens equal one rank's
// (`zeroinfer generate`); a worker with a certificate of another CA is refused and takes no rank; killing a joined
// worker fails the streams with UNAVAILABLE, health turns NOT_SERVING, and the other worker exits on its own.
#include <gtest/gtest.h>

#include <map>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// `zeroinfer worker --coordinator ...` as a child of the test (not of the coordinator); stderr shared with ours.
class WorkerProcess {
 public:
  WorkerProcess(const std::string& coordinator, int rank, int world, const std::string& pki,
                const std::string& cert = "client") {
    std::vector<std::string> args = {ZI_BINARY, "worker", "--coordinator", coordinator, "--rank",
                                     std::to_string(rank), "--world", std::to_string(world),
                                     "--tls-cert", pki + "/" + cert + ".pem", "--tls-key", pki + "/" + cert + ".key",
                                     "--tls-ca", pki + "/ca.pem", "--connect-retry", "0", "--log-level", "warning"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~WorkerProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      wait_exit(10s);
    }
  }
  pid_t pid() const { return pid_; }
  // The wait status, or nullopt if it still runs after `timeout`.
  std::optional<int> wait_exit(std::chrono::seconds timeout) {
    const auto until = Clock::now() + timeout;
    int status = 0;
    do {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return status;
      }
      std::this_thread::sleep_for(20ms);
    } while (Clock::now() < until);
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// Greedy tokens of one rank: `zeroinfer generate` in-process (once per prompt for the whole suite).
std::vector<uint32_t> one_rank_tokens(const std::vector<uint32_t>& prompt, int n) {
  static std::map<std::pair<std::vector<uint32_t>, int>, std::vector<uint32_t>> cache;
  if (auto it = cache.find({prompt, n}); it != cache.end()) return it->second;
  std::string ids;
  for (uint32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  auto [st, out] = run(std::string(ZI_BINARY) + " generate --model " + ZI_TEST_DATA + "/models/llama_mha --device cpu" +
                       " --prompt-ids " + ids + " --max-new-tokens " + std::to_string(n) + " --ignore-eos --json");
  EXPECT_EQ(st, 0) << out;
  std::vector<uint32_t> tokens;
  std::smatch m;
  std::string line = out.substr(out.rfind('{'));
  if (std::regex_search(line, m, std::regex(R"("token_ids":\s*\[([^\]]*)\])"))) {
    std::stringstream in(m[1].str());
    for (std::string t; std::getline(in, t, ',');) tokens.push_back(static_cast<uint32_t>(std::stoul(t)));
  }
  return cache[{prompt, n}] = tokens;
}

class Join : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    pki_ = (fs::temp_directory_path() / ("zi_join_pki_" + std::to_string(getpid()))).string();
    auto [st, out] = run("sh " + std::string(ZI_SOURCE_DIR) + "/tests/integration/make_test_pki.sh " + pki_ + " 2>&1");
    ASSERT_EQ(st, 0) << "make_test_pki.sh failed (the openssl CLI is needed): " << out;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(pki_, ec);
  }

  // The gRPC port speaks TLS too (server.tls); the test trusts the test CA.
  std::shared_ptr<grpc::Channel> channel(const ServerProcess& s) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = slurp(pki_ + "/ca.pem");
    return grpc::CreateChannel(s.address(), grpc::SslCredentials(o));
  }

  static std::string pki_;
};
std::string Join::pki_;

TEST_P(Join, TwoWorkersJoinOverTcpAndALostOneFailsItsStreams) {
  const std::string comm = GetParam();
  ServerProcess server("device: cpu\n"
                       "server: {tls: {cert_file: " + pki_ + "/server.pem, key_file: " + pki_ + "/server.key, "
                       "client_ca_file: " + pki_ + "/ca.pem}}\n"
                       "parallel: {num_gpus: 2, workers: external, worker_listen: \"127.0.0.1:0\", "
                       "cpu_communicator: " + comm + ", heartbeat_timeout_seconds: 20}\n"
                       "debug: {step_delay_ms: 30}\n");
  const std::string port = server.wait_log(R"(workers join on 127\.0\.0\.1:(\d+))");
  ASSERT_FALSE(port.empty()) << server.log();
  const std::string coordinator = "127.0.0.1:" + port;

  // A certificate of another CA: the handshake fails, the worker exits 1 and takes no rank.
  {
    WorkerProcess rogue(coordinator, 0, 2, pki_, "rogue-client");
    auto st = rogue.wait_exit(60s);
    ASSERT_TRUE(st.has_value()) << "the rogue worker still runs";
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 1) << *st;
    EXPECT_FALSE(server.wait_log("(refused a worker connection from 127\\.0\\.0\\.1)").empty()) << server.log();
  }

  WorkerProcess w0(coordinator, 0, 2, pki_), w1(coordinator, 1, 2, pki_);
  auto ch = channel(server);
  ASSERT_TRUE(eventually([&] { return health(ch.get(), "") == 1; }, 120s)) << server.log();
  EXPECT_NE(server.log().find("CPU ranks gather with " + comm), std::string::npos) << server.log();

  // Two requests at once: one on each rank. Each gets one rank's greedy tokens.
  const std::vector<std::vector<uint32_t>> prompts = {{1, 15, 27, 99}, {1, 300, 5, 6, 7}};
  auto stub = pb::Generation::NewStub(ch);
  std::vector<std::future<StreamResult>> runs;
  for (const auto& p : prompts) {
    pb::GenerateRequest req = ids_request(p, 6);
    req.mutable_stopping()->set_ignore_eos(true);
    runs.push_back(std::async(std::launch::async, [&stub, req] { return generate(stub.get(), req); }));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    StreamResult r = runs[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message() << "\n" << server.log();
    EXPECT_EQ(r.tokens, one_rank_tokens(prompts[i], 6)) << "prompt " << i;
  }

  // Kill rank 1 while a stream runs: the stream fails UNAVAILABLE, health turns NOT_SERVING, and rank 0, whose
  // channel the coordinator closes, exits by itself (it is not the coordinator's child).
  pb::GenerateRequest long_req = ids_request({1, 8, 200}, 200);
  long_req.mutable_stopping()->set_ignore_eos(true);
  BackgroundStream stream(stub.get(), long_req);
  ASSERT_TRUE(stream.wait_first_message()) << server.log();
  ASSERT_EQ(kill(w1.pid(), SIGKILL), 0);
  StreamResult r = stream.join();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("worker rank 1"), std::string::npos) << r.status.error_message();
  EXPECT_TRUE(eventually([&] { return health(ch.get(), "") == 2; })) << server.log();
  auto st0 = w0.wait_exit(60s);
  EXPECT_TRUE(st0.has_value()) << "rank 0 still runs after the coordinator lost rank 1";
  EXPECT_EQ(WEXITSTATUS(st0.value_or(0)), 0);
  EXPECT_EQ(server.signal_and_wait(SIGTERM), 0) << server.log();
}

INSTANTIATE_TEST_SUITE_P(Communicators, Join, ::testing::Values("gloo", "shm"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace zi::testing
