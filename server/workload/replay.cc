#include "server/workload/replay.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "engine/core/log.h"
#include "server/scheduler/scheduler.h"

namespace zi::server {
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
class TimingSink final : public ResponseSink {
 public:
  TimingSink(std::mutex* mu, std::condition_variable* cv, size_t* done) : mu_(mu), cv_(cv), done_(done) {}
  void send(GenerationChunk c) override {
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

// Passes steps through to the executor and keeps each step's statistics (for --step-log and the step summary).
class StepRecorder final : public Executor {
 public:
  explicit StepRecorder(Executor* inner) : inner_(inner) {}
  StatusOr<StepOutput> step(const StepInput& input) override {
    StatusOr<StepOutput> out = inner_->step(input);
    if (out.ok()) steps.push_back(out->stats);  // the scheduler's thread only
    return out;
  }
  const ModelSummary& summary() const override { return inner_->summary(); }
  std::vector<StepStats> steps;

 private:
  Executor* inner_;
};

nlohmann::json step_json(const StepStats& s) {
  return {{"seconds", s.seconds},           {"prefill_tokens", s.prefill_tokens},
          {"decode_tokens", s.decode_tokens}, {"fetch_bytes", s.fetch_bytes},
          {"copy_seconds", s.copy_seconds},   {"stall_seconds", s.stall_seconds},
          {"kv_usage_ratio", s.kv_usage_ratio}};
}

// The warm-up: sequences of the longest prompt (at most max_num_batched_tokens, max_batch_size of them and half
// the KV cache) prefilled in one step, one decode step, then released. Returns its wall time.
StatusOr<double> warm_up(Executor& executor, const std::vector<WorkloadRequest>& requests,
                         const WorkloadOptions& options) {
  const ModelSummary& m = executor.summary();
  const uint32_t step_tokens = step_token_budget(options.max_num_batched_tokens, m);
  uint32_t longest = 1;
  for (const WorkloadRequest& r : requests) longest = std::max(longest, r.prompt_tokens);
  longest = std::min<uint32_t>({longest, step_tokens, std::max<uint32_t>(1, m.max_context - 1)});
  uint64_t budget = step_tokens;
  if (m.kv_num_blocks > 0) budget = std::min<uint64_t>(budget, m.kv_num_blocks * m.kv_block_size / 2);
  const uint64_t n = std::clamp<uint64_t>(budget / longest, 1, std::max<uint32_t>(1, options.max_batch_size));
  const auto t0 = Clock::now();
  StepInput prefill, decode, release;
  constexpr uint64_t kFirstId = uint64_t{1} << 62;  // far from the scheduler's ids
  const uint32_t ranks = std::max<uint32_t>(1, m.num_ranks);
  for (uint64_t i = 0; i < n; ++i) {
    SeqStep s;
    s.seq_id = kFirstId + i;
    s.rank = static_cast<uint32_t>(i % ranks);  // round-robin over the ranks
    s.first = true;
    s.tokens.assign(longest, static_cast<int32_t>(i % m.vocab_size));
    prefill.seqs.push_back(s);
    s.first = false;
    s.tokens.assign(1, 0);
    decode.seqs.push_back(s);
    release.release.emplace_back(s.seq_id, s.rank);  // by a last step with nothing to compute
  }
  ZI_RETURN_IF_ERROR(executor.step(prefill).status());
  ZI_RETURN_IF_ERROR(executor.step(decode).status());
  ZI_RETURN_IF_ERROR(executor.step(release).status());
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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

StatusOr<nlohmann::json> run_workload(Executor& inner, const std::vector<WorkloadRequest>& requests,
                                      const WorkloadOptions& options) {
  const ModelSummary& m = inner.summary();
  double warmup_seconds = 0;
  if (options.warmup) {
    ZI_ASSIGN_OR_RETURN(warmup_seconds, warm_up(inner, requests, options));
  }
  StepRecorder executor(&inner);
  IdOnlyTokenizer tokenizer(static_cast<int32_t>(m.vocab_size));
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<SchedulingPolicy> policy, make_policy(options.policy));
  SchedulerOptions so;
  so.max_queue = static_cast<uint32_t>(requests.size()) + 1;
  so.max_batch_size = options.max_batch_size;
  so.max_num_batched_tokens = options.max_num_batched_tokens;
  Scheduler scheduler(&executor, &tokenizer, so, nullptr, std::move(policy));

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(m.vocab_size) - 1);
  std::exponential_distribution<double> gap(options.request_rate > 0 ? options.request_rate : 1.0);
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0;
  std::vector<std::shared_ptr<TimingSink>> sinks;
  std::vector<Reservation> places;
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
    // All at once: every request is reserved before the first is queued, so a static batch takes all it can.
    if (options.request_rate <= 0 && i == 0)
      for (size_t k = 0; k < requests.size(); ++k) {
        ZI_ASSIGN_OR_RETURN(Reservation place, scheduler.reserve());
        places.push_back(std::move(place));
      }
    GenerationRequest r;
    r.request_id = absl::StrCat("w", i);
    r.prompt.resize(requests[i].prompt_tokens);
    for (int32_t& t : r.prompt) t = token(rng);
    r.max_new_tokens = requests[i].output_tokens;
    r.ignore_eos = true;
    r.sampling.seed = i;
    prompt_total += requests[i].prompt_tokens;
    auto sink = std::make_shared<TimingSink>(&mu, &cv, &done);
    sink->submitted = Clock::now();
    if (places.empty()) {
      ZI_ASSIGN_OR_RETURN(Reservation place, scheduler.reserve());
      places.push_back(std::move(place));
    }
    scheduler.submit(std::move(places.back()), std::move(r), sink);
    places.pop_back();
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
  // Where the time went: steps with prompt tokens (prefill, maybe beside decodes) and decode-only steps.
  double prefill_s = 0, decode_s = 0;
  size_t prefill_n = 0, decode_n = 0;
  for (const StepStats& s : executor.steps) {
    if (s.prefill_tokens > 0) {
      prefill_s += s.seconds;
      ++prefill_n;
    } else if (s.decode_tokens > 0) {
      decode_s += s.seconds;
      ++decode_n;
    }
  }
  j["warmup_seconds"] = warmup_seconds;
  j["prefill_steps"] = prefill_n;
  j["prefill_step_seconds_total"] = prefill_s;
  j["decode_steps"] = decode_n;
  j["decode_step_seconds_mean"] = decode_n ? decode_s / static_cast<double>(decode_n) : 0.0;
  if (!options.step_log.empty()) {
    std::ofstream log(options.step_log);
    for (const StepStats& s : executor.steps) log << step_json(s).dump() << "\n";
    if (!log) return absl::InternalError(absl::StrCat(options.step_log, ": cannot write the step log"));
  }
  return j;
}

}  // namespace zi::server
