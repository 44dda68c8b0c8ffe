// Replicas behind nginx: deploy/nginx/zeroinfer.conf itself, run by Debian's nginx (tools/install_deps.sh installs
// it) under a temporary prefix, in front of real `zeroinfer serve` processes. Only the addresses, ports and
// certificate paths are rewritten for this machine (render() below fails loudly when the file no longer has the
// lines it rewrites).
//   - Failover (Variant A, plaintext to the replicas, TLS at nginx): 200 streams through nginx while one of two
//     replicas is killed. Every request ends, completed or failed and then completed on a client retry; none
//     hangs; once the kill is known, every request goes to the living replica at the first try.
//   - Re-encryption (Variant B): nginx terminates the client's TLS and opens TLS with a client certificate to a
//     replica that requires one (mTLS).
#include <gtest/gtest.h>

#include <atomic>
#include <map>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string find_nginx() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"})
    if (access(p, X_OK) == 0) return p;
  return "";
}

// A port nothing listens on now (nginx cannot report a port 0 binding back to us).
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

enum class Variant { kPlaintextReplicas, kTlsReplicas };

// deploy/nginx/zeroinfer.conf for this machine: `replicas` in the upstream (the example's server lines' options
// kept), the listen port, the log and certificate paths under `dir`, and for Variant B its commented lines in
// place of Variant A's grpc_pass. Adds a test failure for each rewrite that found nothing to rewrite.
std::string render(Variant variant, const std::vector<std::string>& replicas, int port, const std::string& dir) {
  std::istringstream in(slurp(fs::path(ZI_SOURCE_DIR) / "deploy/nginx/zeroinfer.conf"));
  static const std::regex upstream_server(R"(^(\s*)server \S+:50051( .*;)$)");
  std::map<std::string, int> hits;
  std::ostringstream out;
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, upstream_server)) {
      if (hits["server"]++ == 0)
        for (const std::string& r : replicas) out << m[1] << "server " << r << m[2] << "\n";
      continue;
    }
    auto swap = [&](const std::string& from, const std::string& to) {
      for (size_t p; (p = line.find(from)) != std::string::npos; ++hits[from]) line.replace(p, from.size(), to);
    };
    swap("listen 443 ssl", "listen 127.0.0.1:" + std::to_string(port) + " ssl");
    swap("/var/log/nginx/zeroinfer.log", dir + "/access.log");
    swap("/etc/nginx/zeroinfer/", dir + "/pki/");
    if (variant == Variant::kTlsReplicas) {
      if (line.find("grpc_pass grpc://zeroinfer;") != std::string::npos) {
        ++hits["variant A"];
        continue;
      }
      static const std::regex commented(R"(^(\s*)#(grpc_\S+ .*)$)");
      if (std::regex_match(line, m, commented)) {
        ++hits["variant B"];
        line = std::string(m[1]) + std::string(m[2]);
      }
      swap("zeroinfer.internal", "localhost");  // the name in the test's server certificate
    }
    out << line << "\n";
  }
  std::vector<std::string> expected = {"server", "listen 443 ssl", "/var/log/nginx/zeroinfer.log",
                                       "/etc/nginx/zeroinfer/"};
  if (variant == Variant::kTlsReplicas)
    expected.insert(expected.end(), {"variant A", "variant B", "zeroinfer.internal"});
  for (const std::string& what : expected)
    EXPECT_GT(hits[what], 0) << "deploy/nginx/zeroinfer.conf no longer has what the test rewrites: " << what;
  return out.str();
}

// Debian's nginx in the foreground, with every path under a temporary prefix (no root-owned path is written).
class Nginx {
 public:
  Nginx(const std::string& dir, const std::string& site, int port) : dir_(dir), port_(port) {
    for (const char* d : {"body", "proxy", "fastcgi", "uwsgi", "scgi"}) fs::create_directories(dir_ + "/tmp/" + d);
    std::ofstream(dir_ + "/zeroinfer.conf") << site;
    std::ofstream(dir_ + "/nginx.conf")
        << "pid " << dir_ << "/nginx.pid;\nworker_processes 2;\nerror_log " << dir_ << "/error.log notice;\n"
        << "events { worker_connections 1024; }\nhttp {\n"
        << "  client_body_temp_path " << dir_ << "/tmp/body;\n  proxy_temp_path " << dir_ << "/tmp/proxy;\n"
        << "  fastcgi_temp_path " << dir_ << "/tmp/fastcgi;\n  uwsgi_temp_path " << dir_ << "/tmp/uwsgi;\n"
        << "  scgi_temp_path " << dir_ << "/tmp/scgi;\n  include " << dir_ << "/zeroinfer.conf;\n}\n";
    const std::string nginx = find_nginx();
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open((dir_ + "/stderr.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      execl(nginx.c_str(), nginx.c_str(), "-p", (dir_ + "/").c_str(), "-e", (dir_ + "/error.log").c_str(), "-c",
            (dir_ + "/nginx.conf").c_str(), "-g", "daemon off;", static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Nginx() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int st;
    waitpid(pid_, &st, 0);
  }
  // True once it accepts connections; false when it exited first (bad config) or 30 s passed.
  bool wait_ready() {
    return eventually([&] { return port_open(port_) || waitpid(pid_, nullptr, WNOHANG) == pid_; }, 30s) &&
           port_open(port_);
  }
  std::string logs() const {
    return "--- nginx stderr ---\n" + slurp(dir_ + "/stderr.log") + "--- nginx error.log ---\n" +
           slurp(dir_ + "/error.log") + "--- zeroinfer.conf as run ---\n" + slurp(dir_ + "/zeroinfer.conf");
  }

 private:
  std::string dir_;
  int port_;
  pid_t pid_ = -1;
};

// Sum of every series of a counter family, e.g. zeroinfer_requests_total{finish_reason="..."}.
double family_sum(const std::string& metrics_text, const std::string& family) {
  std::istringstream in(metrics_text);
  std::string line;
  double sum = 0;
  while (std::getline(in, line))
    if (line.rfind(family + "{", 0) == 0 || line.rfind(family + " ", 0) == 0)
      sum += std::stod(line.substr(line.rfind(' ') + 1));
  return sum;
}

double served(const ServerProcess& s) { return family_sum(scrape(s.metrics_port()), "zeroinfer_requests_total"); }

constexpr uint32_t kTokens = 24;

pb::GenerateRequest request() {
  pb::GenerateRequest r = ids_request({1, 100, 200}, kTokens);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

// One request as a client with a retry policy runs it: on a non-OK status, again (at most 4 attempts).
struct Outcome {
  std::vector<grpc::StatusCode> attempts;  // the status of each attempt, in order
  size_t tokens = 0;                       // of the last attempt
  bool ok() const { return !attempts.empty() && attempts.back() == grpc::StatusCode::OK; }
};

Outcome run_with_retry(pb::Generation::Stub* stub) {
  Outcome o;
  for (int attempt = 0; attempt < 4; ++attempt) {
    StreamResult r = generate(stub, request(), 60s);  // 60 s only bounds a hang; a stream takes well under 1 s
    o.attempts.push_back(r.status.error_code());
    o.tokens = r.tokens.size();
    if (r.status.ok()) break;
  }
  return o;
}

// `n` requests from `threads` client threads; `on_done(i)` after each request `i` ends.
std::vector<Outcome> run_requests(pb::Generation::Stub* stub, int n, int threads,
                                  const std::function<void(int)>& on_done = nullptr) {
  std::vector<Outcome> out(static_cast<size_t>(n));
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i; (i = next++) < n;) {
        out[static_cast<size_t>(i)] = run_with_retry(stub);
        if (on_done) on_done(i);
      }
    });
  for (auto& t : pool) t.join();
  return out;
}

class ReplicaFailover : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(find_nginx(), "") << "nginx is not installed: tools/install_deps.sh installs Debian's nginx";
    dir_ = (fs::temp_directory_path() / ("zi_nginx_test_" + std::to_string(getpid()))).string();
    fs::create_directories(dir_);
    auto [st, out] = run("sh " + std::string(ZI_SOURCE_DIR) + "/tests/integration/make_test_pki.sh " + dir_ +
                         "/pki 2>&1");
    ASSERT_EQ(st, 0) << "make_test_pki.sh: " << out;
    // The certificate names the nginx file uses, on the test PKI (server.pem is for localhost and 127.0.0.1).
    for (auto [name, target] : std::vector<std::pair<const char*, const char*>>{
             {"frontend.pem", "server.pem"}, {"frontend.key", "server.key"}, {"servers-ca.pem", "ca.pem"},
             {"nginx-client.pem", "client.pem"}, {"nginx-client.key", "client.key"}})
      fs::create_symlink(target, dir_ + "/pki/" + name);
  }
  void TearDown() override {
    if (HasFailure()) {
      for (size_t i = 0; i < replicas_.size(); ++i)
        std::fprintf(stderr, "--- replica %zu log ---\n%s", i, replicas_[i]->log().c_str());
      if (nginx_) std::fprintf(stderr, "%s\n", nginx_->logs().c_str());
    }
    nginx_.reset();
    replicas_.clear();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void start_nginx(Variant variant) {
    std::vector<std::string> addresses;
    for (auto& r : replicas_) addresses.push_back(r->address());
    const int port = free_port();
    nginx_ = std::make_unique<Nginx>(dir_, render(variant, addresses, port, dir_), port);
    ASSERT_TRUE(nginx_->wait_ready()) << nginx_->logs();
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = slurp(dir_ + "/pki/ca.pem");
    // An IP literal: a name would be resolved by c-ares, whose one-time allocations LeakSanitizer reports.
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::SslCredentials(tls));
    stub_ = pb::Generation::NewStub(channel_);
  }

  std::string dir_;
  std::vector<std::unique_ptr<ServerProcess>> replicas_;
  std::unique_ptr<Nginx> nginx_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Generation::Stub> stub_;
};

TEST_F(ReplicaFailover, KillingOneOfTwoReplicasMidRunLosesNoRequest) {
  // A step delay keeps streams in flight long enough for the kill to land inside some of them.
  for (int i = 0; i < 2; ++i) replicas_.push_back(start_server("debug: {step_delay_ms: 10}\n"));
  ASSERT_FALSE(HasFailure());
  start_nginx(Variant::kPlaintextReplicas);
  ASSERT_FALSE(HasFailure());
  ServerProcess& living = *replicas_[0];
  ServerProcess& victim = *replicas_[1];

  // Phase 1: 100 streams from 8 client threads; after 20 have ended, the victim is killed (SIGKILL, its workers
  // follow) while it has a stream running.
  std::atomic<int> done{0};
  double victim_served_before_kill = -1;
  std::thread killer([&] {
    if (!eventually([&] { return done >= 20; }, 120s)) return;
    eventually([&] { return metric(victim, "zeroinfer_requests_running") >= 1; }, 60s);
    victim_served_before_kill = served(victim);
    kill(victim.pid(), SIGKILL);
  });
  std::vector<Outcome> phase1 = run_requests(stub_.get(), 100, 8, [&](int) { ++done; });
  killer.join();
  ASSERT_EQ(victim.wait_exit(30s) != -1, true) << "the victim replica did not die";
  // nginx balanced over both before the kill.
  EXPECT_GT(victim_served_before_kill, 0);

  // Phase 2: 100 more, now that the victim is gone.
  const double living_before = served(living);
  std::vector<Outcome> phase2 = run_requests(stub_.get(), 100, 8);

  int retried = 0;
  std::map<grpc::StatusCode, int> failures;
  for (const auto* phase : {&phase1, &phase2})
    for (size_t i = 0; i < phase->size(); ++i) {
      const Outcome& o = (*phase)[i];
      // Every request ends, completed (after retries when it was on the victim).
      EXPECT_TRUE(o.ok()) << "request " << i << " of " << (phase == &phase1 ? "phase 1" : "phase 2")
                          << " never completed; last status " << o.attempts.back();
      EXPECT_EQ(o.tokens, kTokens);
      for (grpc::StatusCode c : o.attempts) {
        EXPECT_NE(c, grpc::StatusCode::DEADLINE_EXCEEDED) << "a stream hung (60 s without ending)";
        if (c != grpc::StatusCode::OK) ++failures[c];
      }
      retried += o.attempts.size() > 1;
    }
  // The kill hit streams in flight; they failed as INTERNAL or UNAVAILABLE (how nginx reports a reset upstream).
  EXPECT_GE(retried, 1);
  for (auto [code, n] : failures)
    EXPECT_TRUE(code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::UNAVAILABLE)
        << n << " attempts failed with status " << code;
  // After the kill, every request completes at the first try, and on the living replica.
  for (size_t i = 0; i < phase2.size(); ++i)
    EXPECT_EQ(phase2[i].attempts.size(), 1u) << "phase 2 request " << i << " needed a retry";
  EXPECT_TRUE(eventually([&] { return served(living) - living_before == 100; }))
      << "the living replica served " << served(living) - living_before << " of phase 2's 100 requests";
}

TEST_F(ReplicaFailover, VariantBReencryptsToAReplicaThatRequiresAClientCertificate) {
  const std::string pki = dir_ + "/pki/";
  auto replica = std::make_unique<ServerProcess>("server: {tls: {cert_file: " + pki + "server.pem, key_file: " + pki +
                                                 "server.key, client_ca_file: " + pki +
                                                 "ca.pem, require_client_cert: true}}\n");
  ASSERT_TRUE(replica->wait_listening()) << replica->log();
  replicas_.push_back(std::move(replica));
  start_nginx(Variant::kTlsReplicas);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(eventually([&] { return health(channel_.get(), "") == 1; }, 60s));
  for (int i = 0; i < 3; ++i) {
    StreamResult r = generate(stub_.get(), request());
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens.size(), kTokens);
  }
  // The replica refuses a client without a certificate: nginx's own certificate is what got these through.
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = slurp(pki + "ca.pem");
  auto direct = grpc::CreateChannel(replicas_[0]->address(), grpc::SslCredentials(no_cert));
  EXPECT_NE(health(direct.get(), ""), 1);
}

}  // namespace
}  // namespace zi::testing
