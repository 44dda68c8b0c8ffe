// A load generator for `zeroinfer serve`, independent of the server's code (it speaks only the public gRPC API of
// proto/zeroinfer/v1/generate.proto): N concurrent streams on loopback for M seconds, each issuing Generate
// requests back to back with random prompts and lengths, some cancelled by the client after a random number of
// messages, some given a short deadline. Every request is accounted for exactly once:
//
//   completed  status OK and a last message with a finish reason (token count consistent with it)
//   cancelled  the client cancelled it (TryCancel) and the server answered CANCELLED
//   expired    it had a short random deadline and ended DEADLINE_EXCEEDED
//   rejected   RESOURCE_EXHAUSTED (queue full: the server's admission limit working as documented)
//   failed     any other status, or OK without a last message, or a token count that contradicts the finish
//   lost       never answered: still open when the safety deadline (`lost_after`, far above any normal request)
//              expired
//
// Used by the `loadgen` tool (tests/load/loadgen_main.cc) and the bounded CI run (tests/integration/load_test.cc).
// Header-only so that both get it without another library target.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "zeroinfer/v1/generate.grpc.pb.h"

namespace zi::load {

struct LoadOptions {
  std::string server = "127.0.0.1:50051";
  int streams = 16;              // concurrent streams (one thread each)
  int connections = 1;           // gRPC channels; streams are spread over them round robin
  double seconds = 10;           // new requests start until then; requests in flight are then waited for
  uint32_t max_new_tokens = 32;  // each request asks for 1..max_new_tokens
  uint32_t max_prompt_tokens = 32;  // and a prompt of 1..max_prompt_tokens random ids
  double cancel_fraction = 0.15;    // of requests the client cancels after a random number of messages
  double deadline_fraction = 0.15;  // of requests with a deadline of deadline_min_ms..deadline_max_ms
  int deadline_min_ms = 5;
  int deadline_max_ms = 200;
  int lost_after_s = 120;  // safety deadline of every request: still open then = lost
  uint64_t seed = 1;
  int server_pid = 0;      // > 0: report the RSS of this process and its children (the workers)
  int metrics_port = 0;    // > 0: after the run, read requests_running / requests_waiting from 127.0.0.1:PORT
};

struct LoadReport {
  uint64_t sent = 0, completed = 0, cancelled = 0, expired = 0, rejected = 0, failed = 0, lost = 0;
  uint64_t tokens = 0;                      // tokens received by completed requests
  std::map<std::string, uint64_t> failures;  // "CODE: message" (first 80 chars) → count
  double seconds = 0;                       // wall time of the whole run
  double ttft_p50_ms = 0, ttft_p99_ms = 0;  // time to first token of completed requests that got one
  double latency_p50_ms = 0, latency_p99_ms = 0;  // request duration of completed requests
  int64_t rss_before_kb = -1, rss_after_kb = -1, rss_peak_kb = -1;  // server + workers; -1: not measured
  // The server's own gauges once the run is over (it may take a step or two to retire cancelled requests); -1:
  // not measured. Anything but 0 is a request the server still holds that no client waits for.
  double server_running_after = -1, server_waiting_after = -1;

  uint64_t accounted() const { return completed + cancelled + expired + rejected + failed + lost; }
  std::string json() const {
    std::ostringstream o;
    o << "{\"sent\": " << sent << ", \"completed\": " << completed << ", \"cancelled\": " << cancelled
      << ", \"expired\": " << expired << ", \"rejected\": " << rejected << ", \"failed\": " << failed
      << ", \"lost\": " << lost << ", \"tokens\": " << tokens << ", \"seconds\": " << seconds
      << ", \"ttft_p50_ms\": " << ttft_p50_ms << ", \"ttft_p99_ms\": " << ttft_p99_ms
      << ", \"latency_p50_ms\": " << latency_p50_ms << ", \"latency_p99_ms\": " << latency_p99_ms
      << ", \"rss_before_kb\": " << rss_before_kb << ", \"rss_after_kb\": " << rss_after_kb
      << ", \"rss_peak_kb\": " << rss_peak_kb << ", \"server_running_after\": " << server_running_after
      << ", \"server_waiting_after\": " << server_waiting_after << "}";
    return o.str();
  }
};

// Resident set size (kB) of `pid` plus its direct children (a coordinator and its workers); -1 when `pid` is gone.
inline int64_t tree_rss_kb(int pid) {
  auto rss_of = [](const std::string& p) -> int64_t {
    std::ifstream in("/proc/" + p + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
    return -1;
  };
  int64_t total = rss_of(std::to_string(pid));
  if (total < 0) return -1;
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
      std::string all((std::istreambuf_iterator<char>(stat)), {});
      size_t p = all.rfind(')');  // the command name may hold spaces; fields after it are fixed
      if (p == std::string::npos) continue;
      std::istringstream f(all.substr(p + 2));
      std::string state;
      int ppid = 0;
      f >> state >> ppid;
      if (ppid == pid) total += std::max<int64_t>(0, rss_of(e->d_name));
    }
    closedir(d);
  }
  return total;
}

// The value of the un-labelled sample `name` on http://127.0.0.1:PORT/metrics; -1 when unreachable or absent.
inline double scrape_gauge(int port, const std::string& name) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string resp;
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
    }
  }
  if (fd >= 0) close(fd);
  // Chunked or not, a sample is one line "name value" (chunk sizes sit on lines of their own).
  std::istringstream in(resp);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

namespace detail {

namespace pb = ::zeroinfer::v1;
using Clock = std::chrono::steady_clock;

struct Shared {
  std::mutex mu;
  LoadReport report;
  std::vector<double> ttft_ms, latency_ms;
};

// One request, start to end, accounted into `shared`.
inline void one_request(pb::Generation::Stub* stub, const LoadOptions& o, uint32_t vocab, std::mt19937_64& rng,
                        Shared& shared) {
  std::uniform_real_distribution<double> u01(0, 1);
  pb::GenerateRequest req;
  const uint32_t prompt_len = 1 + static_cast<uint32_t>(rng() % o.max_prompt_tokens);
  for (uint32_t i = 0; i < prompt_len; ++i) req.mutable_prompt_token_ids()->add_ids(static_cast<uint32_t>(rng() % vocab));
  const uint32_t max_new = 1 + static_cast<uint32_t>(rng() % o.max_new_tokens);
  req.mutable_stopping()->set_max_new_tokens(max_new);
  const bool ignore_eos = rng() % 2;
  req.mutable_stopping()->set_ignore_eos(ignore_eos);
  if (rng() % 2) {
    req.mutable_sampling()->set_temperature(0.8f);
    req.mutable_sampling()->set_seed(rng());
  }
  const double pick = u01(rng);
  const bool cancel = pick < o.cancel_fraction;
  const bool short_deadline = !cancel && pick < o.cancel_fraction + o.deadline_fraction;
  const int cancel_after = cancel ? static_cast<int>(rng() % (max_new / 2 + 1)) : -1;  // messages read first
  const int deadline_ms =
      o.deadline_min_ms + static_cast<int>(rng() % static_cast<uint64_t>(o.deadline_max_ms - o.deadline_min_ms + 1));

  grpc::ClientContext ctx;
  const auto start = Clock::now();
  ctx.set_deadline(std::chrono::system_clock::now() +
                   (short_deadline ? std::chrono::milliseconds(deadline_ms) : std::chrono::milliseconds(
                                                                                  o.lost_after_s * 1000LL)));
  auto reader = stub->Generate(&ctx, req);
  pb::GenerateResponse msg;
  int messages = 0;
  size_t tokens = 0;
  double ttft = -1;
  bool finished = false, finish_twice = false;
  pb::FinishReason finish = pb::FINISH_REASON_UNSPECIFIED;
  if (cancel_after == 0) ctx.TryCancel();
  while (reader->Read(&msg)) {
    ++messages;
    if (msg.token_ids_size() > 0 && ttft < 0)
      ttft = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    tokens += static_cast<size_t>(msg.token_ids_size());
    if (msg.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) {
      if (finished) finish_twice = true;
      finished = true;
      finish = msg.finish_reason();
    }
    if (messages == cancel_after) ctx.TryCancel();
  }
  const grpc::Status st = reader->Finish();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();

  std::lock_guard<std::mutex> lock(shared.mu);
  LoadReport& r = shared.report;
  ++r.sent;
  auto fail = [&](const std::string& why) {
    ++r.failed;
    ++r.failures[why.substr(0, 80)];
  };
  switch (st.error_code()) {
    case grpc::StatusCode::OK:
      if (!finished || finish_twice) {
        fail(finished ? "OK: more than one message with a finish reason" : "OK: no message with a finish reason");
      } else if (tokens > max_new || (finish == pb::FINISH_REASON_LENGTH && tokens != max_new)) {
        fail("OK: token count contradicts max_new_tokens");
      } else if (finish == pb::FINISH_REASON_CANCELLED && cancel) {
        ++r.cancelled;  // the server saw the cancel first and said so in-band
      } else {
        ++r.completed;
        r.tokens += tokens;
        if (ttft >= 0) shared.ttft_ms.push_back(ttft);
        shared.latency_ms.push_back(ms);
      }
      break;
    case grpc::StatusCode::CANCELLED:
      if (cancel) ++r.cancelled;
      else fail("CANCELLED: " + st.error_message());
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (short_deadline) ++r.expired;
      else ++r.lost;  // the safety deadline: the server never ended this stream
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      ++r.rejected;
      break;
    default:
      fail(std::to_string(static_cast<int>(st.error_code())) + ": " + st.error_message());
  }
}

}  // namespace detail

// Runs the load; blocks until every request has ended. `vocab_size` bounds the random prompt ids (0: asked from
// the server with GetModelInfo).
inline LoadReport run_load(const LoadOptions& o, uint32_t vocab_size = 0) {
  namespace pb = ::zeroinfer::v1;
  std::vector<std::unique_ptr<pb::Generation::Stub>> stubs;
  for (int c = 0; c < std::max(1, o.connections); ++c) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", c);  // distinct arguments: a channel (connection) of its own
    stubs.push_back(pb::Generation::NewStub(
        grpc::CreateCustomChannel(o.server, grpc::InsecureChannelCredentials(), args)));
  }
  if (vocab_size == 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    pb::ModelInfo info;
    grpc::Status st = stubs[0]->GetModelInfo(&ctx, pb::GetModelInfoRequest(), &info);
    vocab_size = st.ok() && info.vocab_size() > 0 ? info.vocab_size() : 256;
  }
  detail::Shared shared;
  LoadReport& r = shared.report;
  if (o.server_pid > 0) r.rss_before_kb = r.rss_peak_kb = tree_rss_kb(o.server_pid);

  std::atomic<bool> sampling{true};
  std::thread rss_sampler;
  if (o.server_pid > 0)
    rss_sampler = std::thread([&] {
      while (sampling.load()) {
        int64_t v = tree_rss_kb(o.server_pid);
        {
          std::lock_guard<std::mutex> lock(shared.mu);
          r.rss_peak_kb = std::max(r.rss_peak_kb, v);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });

  const auto start = detail::Clock::now();
  const auto stop_at = start + std::chrono::duration_cast<detail::Clock::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<std::thread> threads;
  for (int s = 0; s < o.streams; ++s)
    threads.emplace_back([&, s] {
      std::mt19937_64 rng(o.seed * 1000003 + static_cast<uint64_t>(s));
      pb::Generation::Stub* stub = stubs[static_cast<size_t>(s) % stubs.size()].get();
      while (detail::Clock::now() < stop_at) detail::one_request(stub, o, vocab_size, rng, shared);
    });
  for (auto& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(detail::Clock::now() - start).count();
  sampling = false;
  if (rss_sampler.joinable()) rss_sampler.join();
  if (o.server_pid > 0) r.rss_after_kb = tree_rss_kb(o.server_pid);
  if (o.metrics_port > 0) {
    // Cancelled and expired requests leave the batch at the next step boundary: give the server a moment.
    const auto until = detail::Clock::now() + std::chrono::seconds(10);
    do {
      r.server_running_after = scrape_gauge(o.metrics_port, "zeroinfer_requests_running");
      r.server_waiting_after = scrape_gauge(o.metrics_port, "zeroinfer_requests_waiting");
      if (r.server_running_after == 0 && r.server_waiting_after == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (detail::Clock::now() < until);
  }
  r.ttft_p50_ms = percentile(shared.ttft_ms, 0.50);
  r.ttft_p99_ms = percentile(shared.ttft_ms, 0.99);
  r.latency_p50_ms = percentile(shared.latency_ms, 0.50);
  r.latency_p99_ms = percentile(shared.latency_ms, 0.99);
  return r;
}

}  // namespace zi::load
