#include "server/cli/bench_workload.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "engine/core/log.h"
#include "server/scheduler/scheduler.h"

namespace zi::cli {
namespace {

using Clock = std::chrono::steady_clock;

// The scheduler streams text as well as ids; the bench compares ids only, so its tokenizer knows no text.
class IdOnlyTokenizer final : public Tokenizer {
 public:
  explicit IdOnlyTokenizer(int32_t vocab) : vocab_(vocab) {}
  StatusOr<std::vector<int32_t>> encode(std::string_view, bool) const override { return std::vector<int32_t>{}; }
  std::string decode(std::span<const int32_t>, bool) const override { return ""; }
  std::string id_to_token(int32_t) const override { return ""; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  int32_t vocab_size() const override { return vocab_; }
  bool is_special(int32_t) const override { return false; }

 private:
  int32_t vocab_;
};

// Records when each token of one request arrived.
class TimingSink final : public server::ResponseSink {
 public:
  TimingSink(std::mutex* mu, std::condition_variable* cv, size_t* done) : mu_(mu), cv_(cv), done_(done) {}
  void send(server::GenerationChunk c) override {
    const Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(*mu_);
    for (size_t i = 0; i < c.token_ids.size(); ++i) times.push_back(now);
    if (c.finish != FinishReason::kNone) finish();
  }
  void fail(const Status& s) override {
    std::lock_guard<std::mutex> lock(*mu_);
    status = s;
    finish();
  }
  bool cancelled() const override { return false; }
  Clock::time_point submitted;
  std::vector<Clock::time_point> times;  // guarded by *mu_
  Status status;

 private:
  void finish() {
    ++*done_;
    cv_->notify_all();
  }
  std::mutex* mu_;
  std::condition_variable* cv_;
  size_t* done_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

StatusOr<std::vector<WorkloadRequest>> load_workload(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the workload file"));
  std::vector<WorkloadRequest> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": not a JSON object"));
    WorkloadRequest r;
    for (auto [key, dst] : {std::pair{"prompt_tokens", &r.prompt_tokens}, {"output_tokens", &r.output_tokens}}) {
      auto it = j.find(key);
      if (it == j.end() || !it->is_number_unsigned() || *it == 0 || it->get<uint64_t>() > (1u << 24))
        return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": ", key, " must be an integer in 1..16777216"));
      *dst = it->get<uint32_t>();
    }
    out.push_back(r);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no requests"));
  return out;
}

StatusOr<nlohmann::json> run_workload(Executor& executor, const std::vector<WorkloadRequest>& requests,
                                      const WorkloadOptions& options) {
  const ModelSummary& m = executor.summary();
  IdOnlyTokenizer tokenizer(static_cast<int32_t>(m.vocab_size));
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<server::SchedulingPolicy> policy, server::make_policy(options.policy));
  server::SchedulerOptions so;
  so.max_queue = static_cast<uint32_t>(requests.size()) + 1;
  so.max_batch_size = options.max_batch_size;
  so.max_num_batched_tokens = options.max_num_batched_tokens;
  server::Scheduler scheduler(&executor, &tokenizer, so, nullptr, std::move(policy));

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(m.vocab_size) - 1);
  std::exponential_distribution<double> gap(options.request_rate > 0 ? options.request_rate : 1.0);
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0;
  std::vector<std::shared_ptr<TimingSink>> sinks;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point next = t0;
  uint64_t prompt_total = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (m.max_context > 0 && requests[i].prompt_tokens + requests[i].output_tokens > m.max_context)
      return absl::InvalidArgumentError(absl::StrCat("workload request ", i + 1, ": ", requests[i].prompt_tokens,
                                                     " + ", requests[i].output_tokens, " tokens exceed max_context ",
                                                     m.max_context, " (--max-context)"));
    if (options.request_rate > 0) {
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
      std::this_thread::sleep_until(next);
    }
    server::GenerationRequest r;
    r.request_id = absl::StrCat("w", i);
    r.prompt.resize(requests[i].prompt_tokens);
    for (int32_t& t : r.prompt) t = token(rng);
    r.max_new_tokens = requests[i].output_tokens;
    r.ignore_eos = true;
    r.sampling.seed = i;
    prompt_total += requests[i].prompt_tokens;
    auto sink = std::make_shared<TimingSink>(&mu, &cv, &done);
    sink->submitted = Clock::now();
    ZI_ASSIGN_OR_RETURN(server::Reservation place, scheduler.reserve());
    scheduler.submit(std::move(place), std::move(r), sink);
    sinks.push_back(std::move(sink));
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done == requests.size(); });
  }
  const Clock::time_point t1 = Clock::now();
  std::vector<double> ttft, itl, latency;
  uint64_t generated = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& s : sinks) {
      if (!s->status.ok()) return s->status;
      if (s->times.empty()) continue;
      generated += s->times.size();
      ttft.push_back(std::chrono::duration<double>(s->times.front() - s->submitted).count());
      latency.push_back(std::chrono::duration<double>(s->times.back() - s->submitted).count());
      for (size_t k = 1; k < s->times.size(); ++k)
        itl.push_back(std::chrono::duration<double>(s->times[k] - s->times[k - 1]).count());
    }
  }
  const double secs = std::chrono::duration<double>(t1 - t0).count();
  nlohmann::json j = {{"policy", options.policy},
                      {"requests", requests.size()},
                      {"max_batch_size", options.max_batch_size},
                      {"max_num_batched_tokens", options.max_num_batched_tokens},
                      {"request_rate", options.request_rate},
                      {"kv_block_size", m.kv_block_size},
                      {"kv_num_blocks", m.kv_num_blocks},
                      {"seconds", secs},
                      {"prompt_tokens", prompt_total},
                      {"generated_tokens", generated},
                      {"tokens_per_second", secs > 0 ? static_cast<double>(generated) / secs : 0},
                      {"total_tokens_per_second", secs > 0 ? static_cast<double>(generated + prompt_total) / secs : 0},
                      {"requests_per_second", secs > 0 ? static_cast<double>(requests.size()) / secs : 0}};
  for (auto [name, v] : {std::pair{"ttft", &ttft}, {"itl", &itl}, {"latency", &latency}})
    for (double p : {50.0, 90.0, 99.0})
      j[absl::StrCat(name, "_p", static_cast<int>(p), "_seconds")] = percentile(*v, p);
  return j;
}

}  // namespace zi::cli
