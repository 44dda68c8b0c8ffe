// Drives a real `zeroinfer serve` process for the integration tests: writes its YAML, starts it on free ports
// (--listen/--metrics-listen/--http-listen 127.0.0.1:0, ports read back from its log), checks health and reflection over gRPC
// with hand-encoded protobuf (grpc.health.v1 and reflection have no generated C++ here), scrapes /metrics with a
// plain HTTP GET, and stops it with a signal.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "zeroinfer/v1/generate.grpc.pb.h"

namespace zi::testing {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A `zeroinfer serve` child process. Its stderr is collected line by line (and replayed when a test fails).
class ServerProcess {
 public:
  // `yaml_extra` is appended to a config that serves `model_dir` (default tests/data/models/llama_mha).
  // With `no_config`, `serve --model model_dir` runs without a file (yaml_extra unused).
  explicit ServerProcess(const std::string& yaml_extra,
                         const std::string& model_dir = std::string(ZI_TEST_DATA) + "/models/llama_mha",
                         bool no_config = false) {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("zi_serve_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(dir_);
    config_ = (dir_ / "serve.yaml").string();
    std::ofstream(config_) << "model: {path: " << model_dir << "}\n" << yaml_extra;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) std::abort();  // dup2 below clears CLOEXEC on the child's stderr
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 2);
      close(fds[0]);
      close(fds[1]);
      const char* source[2] = {"--config", config_.c_str()};
      if (no_config) source[0] = "--model", source[1] = model_dir.c_str();
      execl(ZI_BINARY, ZI_BINARY, "serve", source[0], source[1], "--listen", "127.0.0.1:0", "--metrics-listen",
            "127.0.0.1:0", "--http-listen", "127.0.0.1:0", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    reader_ = std::thread([this, fd = fds[0]] { read_log(fd); });
  }

  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      wait_exit(10s);
    }
    if (reader_.joinable()) reader_.join();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Waits for "listening on 127.0.0.1:PORT" and "metrics on ...:PORT"; false when the process died first.
  bool wait_listening(std::chrono::seconds timeout = 60s) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout,
                 [this] { return (grpc_port_ && metrics_port_ && http_port_ && worker_pid_) || log_closed_; });
    return grpc_port_ && metrics_port_ && http_port_;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  // The YAML file it serves (rewrite it and send SIGHUP to test a reload).
  const std::string& config_path() const { return config_; }
  int metrics_port() const { return metrics_port_; }
  // server.health_listen's port, from "health on HOST:PORT" (0 until logged, or when the key is unset).
  int health_port() {
    std::lock_guard<std::mutex> lock(mu_);
    return health_port_;
  }
  int http_port() const { return http_port_; }  // the OpenAI-compatible API
  pid_t pid() const { return pid_; }
  pid_t worker_pid() {
    std::lock_guard<std::mutex> lock(mu_);
    return worker_pid_;
  }
  std::string log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  // Waits for a log line matching `pattern`; its first group ("" when the process ended first).
  std::string wait_log(const std::string& pattern, std::chrono::seconds timeout = 60s) {
    const std::regex re(pattern);
    std::unique_lock<std::mutex> lock(mu_);
    std::smatch m;
    cv_.wait_for(lock, timeout, [&] { return std::regex_search(log_, m, re) || log_closed_; });
    return std::regex_search(log_, m, re) && m.size() > 1 ? m[1].str() : "";
  }

  // Sends `sig` and waits for the exit; returns the wait status (or -1 on timeout).
  int signal_and_wait(int sig, std::chrono::seconds timeout = 60s) {
    kill(pid_, sig);
    return wait_exit(timeout);
  }
  int wait_exit(std::chrono::seconds timeout) {
    const auto until = Clock::now() + timeout;
    int status = 0;
    while (Clock::now() < until) {
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return status;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

  std::shared_ptr<grpc::Channel> channel() {
    if (!channel_) channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
    return channel_;
  }
  std::unique_ptr<::zeroinfer::v1::Generation::Stub> stub() { return ::zeroinfer::v1::Generation::NewStub(channel()); }

 private:
  void read_log(int fd) {
    static const std::regex listening(R"(listening on 127\.0\.0\.1:(\d+))");
    static const std::regex metrics(R"(metrics on http://127\.0\.0\.1:(\d+)/metrics)");
    static const std::regex worker(R"((?:spawned worker rank 0|worker rank 0) \(pid (\d+)(?: on [^)]*)?\))");
    static const std::regex health(R"(health on \S+:(\d+) )");
    static const std::regex http(R"(HTTP API on https?://127\.0\.0\.1:(\d+)/v1)");  // http or https
    std::string pending;
    char buf[4096];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      pending.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        std::smatch m;
        std::lock_guard<std::mutex> lock(mu_);
        log_ += line + "\n";
        if (std::regex_search(line, m, listening)) grpc_port_ = std::stoi(m[1]);
        if (std::regex_search(line, m, metrics)) metrics_port_ = std::stoi(m[1]);
        if (std::regex_search(line, m, worker)) worker_pid_ = std::stoi(m[1]);
        if (std::regex_search(line, m, health)) health_port_ = std::stoi(m[1]);
        if (std::regex_search(line, m, http)) http_port_ = std::stoi(m[1]);
        cv_.notify_all();
      }
    }
    close(fd);
    std::lock_guard<std::mutex> lock(mu_);
    log_closed_ = true;
    cv_.notify_all();
  }

  std::filesystem::path dir_;
  std::string config_;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string log_;
  int grpc_port_ = 0, metrics_port_ = 0, health_port_ = 0, http_port_ = 0;
  pid_t worker_pid_ = 0;
  bool log_closed_ = false;
  std::shared_ptr<grpc::Channel> channel_;
};

inline grpc::ByteBuffer to_buffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

inline std::string from_buffer(const grpc::ByteBuffer& bb) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!bb.Dump(&slices).ok()) return out;
  for (auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// grpc.health.v1.Health/Check: 1 SERVING, 2 NOT_SERVING; -code for an RPC error (e.g. -5 NOT_FOUND).
inline int health(grpc::Channel* channel, const std::string& service) {
  grpc::GenericStub stub(std::shared_ptr<grpc::Channel>(channel, [](grpc::Channel*) {}));
  std::string req;
  if (!service.empty()) req = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
  grpc::ByteBuffer request = to_buffer(req), response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  grpc::Status st = done.get_future().get();
  if (!st.ok()) return -static_cast<int>(st.error_code());
  std::string bytes = from_buffer(response);
  return bytes.size() >= 2 && bytes[0] == 0x08 ? bytes[1] : 0;
}

// Polls `pred` every 20 ms until it holds or `timeout` passes (for states the server reaches on its own).
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// grpc.reflection.v1alpha ServerReflectionInfo with list_services: the raw response bytes.
inline std::string reflection_list_services(grpc::Channel* channel) {
  grpc::GenericStub stub(std::shared_ptr<grpc::Channel>(channel, [](grpc::Channel*) {}));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok = false;
  auto next = [&] { return cq.Next(&tag, &ok) && ok; };
  call->StartCall(reinterpret_cast<void*>(1));
  if (!next()) return "";
  call->Write(to_buffer(std::string("\x3a\x00", 2)), reinterpret_cast<void*>(2));  // list_services: ""
  if (!next()) return "";
  call->WritesDone(reinterpret_cast<void*>(3));
  next();
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  std::string out = next() ? from_buffer(response) : "";
  grpc::Status st;
  call->Finish(&st, reinterpret_cast<void*>(5));
  next();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return out;
}

// GET http://127.0.0.1:PORT/metrics → body ("" on failure).
inline std::string scrape(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return "";
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  size_t body = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.find(" 200 ") == std::string::npos || body == std::string::npos)
    return "";
  std::string headers = resp.substr(0, body);
  std::string out = resp.substr(body + 4);
  if (headers.find("chunked") != std::string::npos) {  // de-chunk
    std::string plain;
    size_t pos = 0;
    while (pos < out.size()) {
      size_t eol = out.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = std::stoul(out.substr(pos, eol - pos), nullptr, 16);
      if (len == 0) break;
      plain += out.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    out = plain;
  }
  return out;
}

// The value of the sample `series` (e.g. `zeroinfer_requests_total{finish_reason="length"}`), or nullopt.
inline std::optional<double> sample(const std::string& metrics_text, const std::string& series) {
  std::istringstream in(metrics_text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

namespace pb = ::zeroinfer::v1;

struct StreamResult {
  grpc::Status status;
  std::vector<uint32_t> tokens;
  std::string text;
  std::vector<float> logprobs;
  pb::FinishReason finish = pb::FINISH_REASON_UNSPECIFIED;
  pb::Usage usage;
  std::string request_id;
  int messages = 0;
  int tokens_per_message_max = 0;
  bool finish_only_on_last = true;
};

inline StreamResult generate(pb::Generation::Stub* stub, const pb::GenerateRequest& req,
                      std::chrono::milliseconds deadline = 60s) {
  StreamResult r;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  auto reader = stub->Generate(&ctx, req);
  pb::GenerateResponse msg;
  while (reader->Read(&msg)) {
    if (r.finish != pb::FINISH_REASON_UNSPECIFIED) r.finish_only_on_last = false;
    ++r.messages;
    r.request_id = msg.request_id();
    r.tokens.insert(r.tokens.end(), msg.token_ids().begin(), msg.token_ids().end());
    r.tokens_per_message_max = std::max(r.tokens_per_message_max, msg.token_ids_size());
    r.text += msg.text();
    r.logprobs.insert(r.logprobs.end(), msg.logprobs().begin(), msg.logprobs().end());
    if (msg.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) {
      r.finish = msg.finish_reason();
      r.usage = msg.usage();
    }
  }
  r.status = reader->Finish();
  return r;
}

inline pb::GenerateRequest ids_request(const std::vector<uint32_t>& ids, uint32_t max_new_tokens) {
  pb::GenerateRequest r;
  for (uint32_t id : ids) r.mutable_prompt_token_ids()->add_ids(id);
  r.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  return r;
}

inline pb::GenerateRequest text_request(const std::string& prompt, uint32_t max_new_tokens) {
  pb::GenerateRequest r;
  r.set_prompt(prompt);
  r.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  return r;
}

inline bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += n;
  }
  return true;
}

// Runs a shell command; returns its wait status and its stdout.
inline std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {-1, out};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  return {pclose(p), out};
}

inline double metric(const ServerProcess& s, const std::string& series) {
  return sample(scrape(s.metrics_port()), series).value_or(-1);
}

inline bool process_gone(pid_t pid) {
  if (kill(pid, 0) != 0) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), {});
  size_t p = all.rfind(')');
  return p == std::string::npos || (p + 2 < all.size() && all[p + 2] == 'Z');  // a zombie has exited
}

// A started server; fails the test (and shows its log) if it does not come up SERVING.
inline std::unique_ptr<ServerProcess> start_server(
    const std::string& yaml, const std::string& model_dir = std::string(ZI_TEST_DATA) + "/models/llama_mha") {
  auto s = std::make_unique<ServerProcess>(yaml, model_dir);
  EXPECT_TRUE(s->wait_listening()) << s->log();
  EXPECT_TRUE(eventually([&] { return health(s->channel().get(), "") == 1; }, 60s)) << s->log();
  return s;
}

// A Generate stream read on its own thread (for requests that must stay in flight while the test goes on).
class BackgroundStream {
 public:
  BackgroundStream(pb::Generation::Stub* stub, pb::GenerateRequest req) : req_(std::move(req)) {
    thread_ = std::thread([this, stub] {
      auto reader = stub->Generate(&ctx_, req_);
      pb::GenerateResponse msg;
      while (reader->Read(&msg)) {
        std::lock_guard<std::mutex> lock(mu_);
        ++result_.messages;
        result_.tokens.insert(result_.tokens.end(), msg.token_ids().begin(), msg.token_ids().end());
        result_.text += msg.text();
        if (msg.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) {
          result_.finish = msg.finish_reason();
          result_.usage = msg.usage();
        }
        cv_.notify_all();
      }
      grpc::Status st = reader->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      result_.status = st;
      done_ = true;
      cv_.notify_all();
    });
  }
  ~BackgroundStream() {
    ctx_.TryCancel();
    if (thread_.joinable()) thread_.join();
  }
  // True once a message arrived (the request is running); false if the stream ended first or 60 s passed.
  bool wait_first_message() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, 60s, [this] { return result_.messages > 0 || done_; });
    return result_.messages > 0;
  }
  bool done() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  void cancel() { ctx_.TryCancel(); }
  StreamResult join() {
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    return result_;
  }

 private:
  pb::GenerateRequest req_;
  grpc::ClientContext ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  StreamResult result_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace zi::testing
