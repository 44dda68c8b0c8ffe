#include "server/scheduler/scheduler.h"

#include <algorithm>
#include <optional>

#include "engine/core/log.h"
#include "engine/runtime/stopping.h"

namespace zi::server {

struct Scheduler::Sequence {
  Sequence(uint64_t id, GenerationRequest r, std::shared_ptr<ResponseSink> s, const Tokenizer* tok)
      : seq_id(id),
        req(std::move(r)),
        sink(std::move(s)),
        detok(tok ? std::optional<IncrementalDetokenizer>(std::in_place, *tok, /*skip_special_tokens=*/true)
                  : std::nullopt),
        stop(req.stop),
        criteria{req.max_new_tokens, {}, req.ignore_eos} {}

  uint64_t seq_id;
  GenerationRequest req;
  std::shared_ptr<ResponseSink> sink;
  std::optional<IncrementalDetokenizer> detok;  // none without a tokenizer: token ids only, no text
  StopStringMatcher stop;
  TokenStopCriteria criteria;       // EOS ids filled in by the scheduler
  std::vector<int32_t> next_tokens;  // decoding: the last sampled token, appended by the next step
  size_t prefilled = 0;              // prompt tokens handed to the executor so far (chunked prefill)
  uint32_t rank = 0;                 // where it runs (placed at admission, fixed for its life)
  bool placed = false;               // counted in rank_running_ (admitted by the policy, not yet retired)
  int64_t kv_blocks = 0;             // KV blocks reserved for its life on its rank while admitted
  std::vector<float> pending_logits; // want_logits: [rows × vocab] float32 not yet sent (rows since the last chunk)
  bool sent = false;                 // the executor holds state for it (release it when done)
  bool done = false;                 // its sink got its last call
  bool admitted = false;             // joined the running batch (counted in running_count_)
  uint32_t completion = 0;           // tokens returned so far
  Clock::time_point last_token_at;
};

Reservation& Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    if (owner_) owner_->unreserve();
    owner_ = std::exchange(o.owner_, nullptr);
  }
  return *this;
}

Reservation::~Reservation() {
  if (owner_) owner_->unreserve();
}

uint32_t step_token_budget(uint32_t configured, const ModelSummary& m) {
  if (configured > 0) return configured;
  return m.streamed_bytes_per_step > 0 && m.max_step_tokens > 0 ? m.max_step_tokens : kResidentStepTokens;
}

Scheduler::Scheduler(Executor* executor, const Tokenizer* tokenizer, SchedulerOptions options,
                     ServingMetrics* metrics, std::unique_ptr<SchedulingPolicy> policy)
    : executor_(executor),
      tokenizer_(tokenizer),
      options_(std::move(options)),
      metrics_(metrics),
      policy_(std::move(policy)),
      thread_() {
  const ModelSummary& m = executor_->summary();
  max_context_ = m.max_context;
  num_ranks_ = std::max<uint32_t>(1, m.num_ranks);
  rank_slots_ = std::max<size_t>(1, (options_.max_batch_size + num_ranks_ - 1) / num_ranks_);
  logits_row_bytes_ = uint64_t{m.vocab_size} * sizeof(float);
  step_tokens_ = std::max<size_t>({step_token_budget(options_.max_num_batched_tokens, m), options_.max_batch_size, 1});
  if (m.kv_num_blocks > 0 && m.kv_block_size > 0) {
    kv_block_size_ = m.kv_block_size;
    kv_per_rank_ = static_cast<int64_t>(m.kv_num_blocks);
  }
  rank_running_.assign(num_ranks_, 0);
  rank_reserved_.assign(num_ranks_, 0);
  ZI_LOG(INFO) << "scheduler: policy " << policy_->name() << ", max_batch_size " << options_.max_batch_size << " ("
               << num_ranks_ << " rank" << (num_ranks_ == 1 ? "" : "s") << ", " << rank_slots_
               << " sequences each), max_num_batched_tokens " << step_tokens_ << ", KV "
               << (kv_per_rank_ < 0 ? std::string("not counted")
                                    : absl::StrCat(kv_per_rank_, " blocks of ", kv_block_size_, " tokens",
                                                   num_ranks_ > 1 ? " per rank" : ""));
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  Status st = absl::UnavailableError("server shutting down");
  for (auto& seq : running_)
    if (!seq->done) end_with_error(*seq, st, RequestOutcome::kError);
  for (auto& seq : waiting_)
    if (!seq->done) end_with_error(*seq, st, RequestOutcome::kError);
}

StatusOr<Reservation> Scheduler::reserve() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!refuse_status_.ok()) return refuse_status_;
  if (draining_) return absl::UnavailableError("server is shutting down (draining); not accepting new requests");
  if (reserved_ + waiting_.size() >= options_.max_queue)
    return absl::ResourceExhaustedError(absl::StrFormat(
        "request queue is full: %u requests waiting (server.max_queue = %u)", reserved_ + waiting_.size(),
        options_.max_queue));
  ++reserved_;
  ++in_flight_;
  publish_waiting_locked();
  return Reservation(this);
}

void Scheduler::unreserve() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --reserved_;
    --in_flight_;
    awaiting_arrivals_ = false;
    publish_waiting_locked();
  }
  cv_.notify_all();
}

void Scheduler::submit(Reservation reservation, GenerationRequest request, std::shared_ptr<ResponseSink> sink) {
  ZI_CHECK(reservation.owner_ == this);
  reservation.owner_ = nullptr;  // its place in the queue passes to the sequence
  std::unique_lock<std::mutex> lock(mu_);
  --reserved_;
  awaiting_arrivals_ = false;
  if (!refuse_status_.ok()) {
    Status st = refuse_status_;
    --in_flight_;
    publish_waiting_locked();
    lock.unlock();
    if (metrics_) metrics_->count_request(RequestOutcome::kError);
    sink->fail(st);
    return;
  }
  if (const int64_t need = kv_blocks_for(request); kv_per_rank_ >= 0 && need > kv_per_rank_) {
    // Could never run, even alone on a rank: refuse now rather than hold the queue forever.
    Status st = absl::InvalidArgumentError(absl::StrFormat(
        "prompt (%u tokens) + max_new_tokens (%u) needs %d KV cache blocks of %d tokens; %s holds %d "
        "(%d tokens; kv_cache.max_bytes)",
        request.prompt.size(), request.max_new_tokens, need, kv_block_size_,
        num_ranks_ > 1 ? "each rank's KV cache" : "the KV cache", kv_per_rank_, kv_per_rank_ * kv_block_size_));
    --in_flight_;
    publish_waiting_locked();
    lock.unlock();
    if (metrics_) metrics_->count_request(RequestOutcome::kRejected);
    sink->fail(st);
    return;
  }
  auto seq = std::make_unique<Sequence>(next_seq_id_++, std::move(request), std::move(sink), tokenizer_);
  seq->criteria.eos_token_ids = options_.eos_token_ids;
  waiting_.push_back(std::move(seq));
  publish_waiting_locked();
  lock.unlock();
  cv_.notify_all();
}

void Scheduler::wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void Scheduler::start_draining() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

void Scheduler::fail_all(const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (refuse_status_.ok()) refuse_status_ = status;
    fail_pending_ = true;
  }
  cv_.notify_all();
}

void Scheduler::set_on_executor_lost(std::function<void(const Status&)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  on_executor_lost_ = std::move(fn);
}

void Scheduler::publish_waiting_locked() {
  if (metrics_) metrics_->set_waiting(static_cast<double>(reserved_ + waiting_.size()));
}

void Scheduler::count_running(int delta) {
  size_t now = running_count_.fetch_add(static_cast<size_t>(delta)) + static_cast<size_t>(delta);
  if (metrics_) metrics_->set_running(static_cast<double>(now));
}

void Scheduler::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Idle: wake at least once a second so that last_turn() shows the loop alive.
    cv_.wait_for(lock, std::chrono::seconds(1), [this] {
      return stop_ || fail_pending_ || woken_ || (!waiting_.empty() && !awaiting_arrivals_) || !running_.empty();
    });
    woken_ = false;
    last_turn_.store(Clock::now().time_since_epoch().count());
    if (stop_) return;

    std::vector<std::unique_ptr<Sequence>> failed, dropped, admitted;
    Status fail_status;
    if (fail_pending_) {
      fail_pending_ = false;
      fail_status = refuse_status_;
      for (auto& s : waiting_) failed.push_back(std::move(s));
      waiting_.clear();
    }
    // Queued requests whose client left, or whose deadline passed, never run.
    const Clock::time_point now = Clock::now();
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->sink->cancelled() || now >= (*it)->req.deadline) {
        dropped.push_back(std::move(*it));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
    if (fail_status.ok() && !waiting_.empty()) {
      std::vector<WaitingView> views;
      views.reserve(waiting_.size());
      for (auto& s : waiting_)
        views.push_back({s->seq_id, s->req.prompt.size(), kv_blocks_for(s->req), s->req.max_new_tokens});
      BatchView batch;
      batch.running = std::count_if(running_.begin(), running_.end(), [](auto& s) { return !s->done; });
      batch.max_batch_size = options_.max_batch_size;
      batch.ranks.resize(num_ranks_);
      for (uint32_t r = 0; r < num_ranks_; ++r) {
        batch.ranks[r].free_slots = rank_slots_ - std::min(rank_slots_, rank_running_[r]);
        batch.ranks[r].free_kv_blocks = kv_per_rank_ < 0 ? -1 : std::max<int64_t>(0, kv_per_rank_ - rank_reserved_[r]);
      }
      const size_t taken = running_step_tokens();
      batch.free_step_tokens = taken < step_tokens_ ? step_tokens_ - taken : 0;
      batch.arriving = reserved_;
      batch.kv_block_size = kv_block_size_;
      ScheduleDecision d = policy_->schedule(views, batch);
      // Nothing to run until the arriving requests are queued: sleep until a submit or unreserve.
      awaiting_arrivals_ = d.scheduled.empty() && batch.running == 0 && reserved_ > 0;
      ZI_CHECK(d.kv_blocks.empty() || d.kv_blocks.size() == d.scheduled.size());
      ZI_CHECK(d.ranks.size() == d.scheduled.size());
      for (size_t k = 0; k < d.scheduled.size(); ++k) {
        const uint64_t id = d.scheduled[k];
        auto it = std::find_if(waiting_.begin(), waiting_.end(), [id](auto& s) { return s->seq_id == id; });
        ZI_CHECK(it != waiting_.end());
        Sequence& seq = **it;
        ZI_CHECK(d.ranks[k] < num_ranks_);
        seq.rank = d.ranks[k];
        seq.placed = true;
        seq.kv_blocks = kv_per_rank_ < 0 ? 0 : d.kv_blocks.empty() ? kv_blocks_for(seq.req) : d.kv_blocks[k];
        ++rank_running_[seq.rank];
        rank_reserved_[seq.rank] += seq.kv_blocks;
        kv_reserved_ += seq.kv_blocks;
        admitted.push_back(std::move(*it));
        waiting_.erase(it);
      }
      for (uint32_t r = 0; r < num_ranks_; ++r) {  // the policy never overcommits a rank
        ZI_CHECK(rank_running_[r] <= rank_slots_);
        ZI_CHECK(kv_per_rank_ < 0 || rank_reserved_[r] <= kv_per_rank_);
      }
    }
    publish_waiting_locked();
    lock.unlock();

    for (auto& s : failed) end_with_error(*s, fail_status, RequestOutcome::kError);
    if (!fail_status.ok())
      for (auto& s : running_)
        if (!s->done) end_with_error(*s, fail_status, RequestOutcome::kError);
    for (auto& s : dropped) {
      if (s->sink->cancelled()) end_with_error(*s, absl::CancelledError("cancelled by the client"), RequestOutcome::kCancelled);
      else end_with_error(*s, absl::DeadlineExceededError("deadline exceeded while queued"), RequestOutcome::kCancelled);
    }
    run_step(std::move(admitted));
    lock.lock();
  }
}

void Scheduler::run_step(std::vector<std::unique_ptr<Sequence>> admitted) {
  const Clock::time_point now = Clock::now();
  for (auto& s : running_) {
    if (s->done) continue;
    if (s->sink->cancelled())
      end_with_error(*s, absl::CancelledError("cancelled by the client"), RequestOutcome::kCancelled);
    else if (now >= s->req.deadline)
      end_with_error(*s, absl::DeadlineExceededError(absl::StrCat("deadline exceeded after ", s->completion,
                                                                  " generated tokens")),
                     RequestOutcome::kCancelled);
  }
  std::erase_if(running_, [](auto& s) { return s->done; });
  for (auto& s : admitted) {
    if (metrics_) {
      metrics_->observe_queue_duration(std::chrono::duration<double>(now - s->req.arrival).count());
      metrics_->add_prompt_tokens(s->req.prompt.size());
    }
    s->admitted = true;
    count_running(+1);
    running_.push_back(std::move(s));
  }
  if (running_.empty()) return;  // finished sequences' releases ride along with the next real step

  // The step: every decoding sequence's next token, then prompt chunks in admission order while tokens last.
  StepInput input;
  input.release = std::move(to_release_);
  to_release_.clear();
  input.seqs.reserve(running_.size());
  std::vector<Sequence*> stepped;
  stepped.reserve(running_.size());
  size_t budget = step_tokens_;
  // Logits bytes each rank may still return this step (want_logits sequences): decodes take theirs first.
  std::vector<uint64_t> logits_left(num_ranks_, options_.max_logits_bytes_per_step);
  std::vector<bool> logits_prefill(num_ranks_, false);  // a want_logits prompt chunk is in this step on the rank
  for (auto& s : running_) {
    if (s->prefilled < s->req.prompt.size()) continue;
    SeqStep st;
    st.seq_id = s->seq_id;
    st.rank = s->rank;
    st.tokens = s->next_tokens;
    st.sample = true;
    st.want_logits = s->req.want_logits;
    if (st.want_logits) logits_left[s->rank] -= std::min(logits_left[s->rank], logits_row_bytes_);
    budget -= std::min(budget, st.tokens.size());
    input.seqs.push_back(std::move(st));
    stepped.push_back(s.get());
  }
  for (auto& s : running_) {
    const size_t left = s->req.prompt.size() - s->prefilled;
    if (left == 0 || budget == 0) continue;
    size_t n = std::min(left, budget);
    if (s->req.want_logits && logits_row_bytes_ > 0) {
      uint64_t& bytes = logits_left[s->rank];
      uint64_t rows = bytes / logits_row_bytes_;
      if (rows == 0 && logits_prefill[s->rank]) continue;  // its rank's logits are spent: next step
      // The first such chunk of a rank always advances, by one row at least (far below the frame cap), so that
      // want_logits decodes filling the budget cannot starve every prompt.
      rows = std::max<uint64_t>(rows, 1);
      logits_prefill[s->rank] = true;
      n = static_cast<size_t>(std::min<uint64_t>(n, rows));
      bytes -= std::min<uint64_t>(bytes, n * logits_row_bytes_);
    }
    SeqStep st;
    st.seq_id = s->seq_id;
    st.rank = s->rank;
    st.want_logits = s->req.want_logits;
    st.tokens.assign(s->req.prompt.begin() + static_cast<std::ptrdiff_t>(s->prefilled),
                     s->req.prompt.begin() + static_cast<std::ptrdiff_t>(s->prefilled + n));
    st.first = !s->sent;
    if (st.first) st.sampling = s->req.sampling;
    st.sample = n == left;  // the prompt's last chunk samples the first new token
    s->sent = true;
    s->prefilled += n;
    budget -= n;
    input.seqs.push_back(std::move(st));
    stepped.push_back(s.get());
  }
  if (input.seqs.empty()) {  // cannot happen (the budget covers at least every decode); keep the releases
    to_release_ = std::move(input.release);
    return;
  }
  if (metrics_) metrics_->observe_batch_size(static_cast<double>(input.seqs.size()));

  StatusOr<StepOutput> out = executor_->step(input);
  if (metrics_ && out.ok()) metrics_->observe_step(*out);
  if (out.ok() && out->results.size() != input.seqs.size())
    out = absl::InternalError(absl::StrFormat("engine step returned %u results for %u sequences",
                                              out->results.size(), input.seqs.size()));
  if (!out.ok()) {
    if (out.status().code() == absl::StatusCode::kUnavailable) {
      // The executor is gone (a worker died): nothing can run any more.
      Status st = absl::UnavailableError(absl::StrCat("engine unavailable: ", out.status().message()));
      ZI_LOG(ERROR) << st.message();
      std::function<void(const Status&)> cb;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (refuse_status_.ok()) refuse_status_ = st;
        fail_pending_ = true;  // queued requests fail at the next turn
        cb = on_executor_lost_;
      }
      for (auto& s : running_) end_with_error(*s, st, RequestOutcome::kError);
      running_.clear();
      to_release_.clear();
      if (cb) cb(st);
      return;
    }
    Status st = absl::InternalError(absl::StrCat("engine step failed: ", out.status().message()));
    ZI_LOG(ERROR) << st.message();
    // A refused step applied none of its releases: send them again (releasing twice is harmless).
    to_release_.insert(to_release_.end(), input.release.begin(), input.release.end());
    for (auto& s : running_) end_with_error(*s, st, RequestOutcome::kError);
    running_.clear();
    return;
  }
  const Clock::time_point done_at = Clock::now();
  for (size_t i = 0; i < stepped.size(); ++i) {
    Sequence& s = *stepped[i];
    const SeqStep& in = input.seqs[i];
    SeqResult& r = out->results[i];
    if (r.seq_id != s.seq_id) {
      end_with_error(s, absl::InternalError("engine step returned results out of order"), RequestOutcome::kError);
      continue;
    }
    if (in.want_logits) {
      // Rows [tokens × vocab] of the positions this step appended; sent with the next chunk.
      const size_t want = in.tokens.size() * (logits_row_bytes_ / sizeof(float));
      if (r.logits.size() != want) {
        end_with_error(s, absl::InternalError(absl::StrFormat(
                              "engine step returned %d logits for %d positions of vocab_size %d (want_logits)",
                              r.logits.size(), in.tokens.size(), logits_row_bytes_ / sizeof(float))),
                       RequestOutcome::kError);
        continue;
      }
      if (s.pending_logits.empty()) s.pending_logits = std::move(r.logits);
      else s.pending_logits.insert(s.pending_logits.end(), r.logits.begin(), r.logits.end());
    }
    if (in.sample) handle_token(s, r, done_at);
  }
  std::erase_if(running_, [](auto& s) { return s->done; });
}

int64_t Scheduler::kv_blocks_for(const GenerationRequest& r) const {
  if (kv_per_rank_ < 0) return 0;
  // The cache holds the prompt and every generated token but the last (which is never appended).
  int64_t tokens = static_cast<int64_t>(r.prompt.size()) + std::max<int64_t>(r.max_new_tokens, 1) - 1;
  if (max_context_ > 0) tokens = std::min(tokens, max_context_);
  return (tokens + kv_block_size_ - 1) / kv_block_size_;
}

size_t Scheduler::running_step_tokens() const {
  size_t n = 0;
  for (const auto& s : running_) {
    if (s->done) continue;
    const size_t left = s->req.prompt.size() - s->prefilled;
    n += left > 0 ? left : 1;
  }
  return n;
}

void Scheduler::handle_token(Sequence& s, const SeqResult& r, Clock::time_point now) {
  if (r.token < 0) {
    end_with_error(s, absl::InternalError("engine returned no token for a sampling step"), RequestOutcome::kError);
    return;
  }
  if (metrics_) {
    if (s.completion == 0 && s.last_token_at == Clock::time_point())
      metrics_->observe_time_to_first_token(std::chrono::duration<double>(now - s.req.arrival).count());
    else
      metrics_->observe_inter_token_latency(std::chrono::duration<double>(now - s.last_token_at).count());
  }
  s.last_token_at = now;
  const FinishReason token_stop = check_token(s.criteria, r.token, s.completion + 1);
  GenerationChunk chunk;
  chunk.logits = std::exchange(s.pending_logits, {});  // every row since the last chunk, this token's included
  if (token_stop == FinishReason::kEos) {  // ends generation and is not returned
    StopStringMatcher::Result tail = s.stop.push(s.detok ? s.detok->flush() : std::string());
    chunk.text = std::move(tail.emit);
    if (tail.stopped) return finish(s, std::move(chunk), FinishReason::kStop);
    chunk.text += s.stop.flush();
    return finish(s, std::move(chunk), FinishReason::kEos);
  }
  ++s.completion;
  if (metrics_) metrics_->add_generation_tokens(1);
  chunk.token_ids.push_back(static_cast<uint32_t>(r.token));
  if (s.req.sampling.return_logprobs) chunk.logprobs.push_back(r.logprob);
  StopStringMatcher::Result piece = s.stop.push(s.detok ? s.detok->push(r.token) : std::string());
  chunk.text = std::move(piece.emit);
  if (piece.stopped) return finish(s, std::move(chunk), FinishReason::kStop);
  if (token_stop == FinishReason::kLength) {
    StopStringMatcher::Result tail = s.stop.push(s.detok ? s.detok->flush() : std::string());
    chunk.text += tail.emit;
    if (tail.stopped) return finish(s, std::move(chunk), FinishReason::kStop);
    chunk.text += s.stop.flush();
    return finish(s, std::move(chunk), FinishReason::kLength);
  }
  s.next_tokens.assign(1, r.token);
  s.sink->send(std::move(chunk));
}

void Scheduler::finish(Sequence& s, GenerationChunk last, FinishReason reason) {
  last.finish = reason;
  last.prompt_tokens = static_cast<uint32_t>(s.req.prompt.size());
  last.completion_tokens = s.completion;
  retire(s, reason == FinishReason::kEos    ? RequestOutcome::kEos
            : reason == FinishReason::kStop ? RequestOutcome::kStop
                                            : RequestOutcome::kLength);
  s.sink->send(std::move(last));
}

void Scheduler::end_with_error(Sequence& s, const Status& status, RequestOutcome outcome) {
  retire(s, outcome);
  s.sink->fail(status);
}

void Scheduler::retire(Sequence& s, RequestOutcome outcome) {
  // Counters first: whoever sees the stream end also sees it counted.
  s.done = true;
  if (s.sent) to_release_.emplace_back(s.seq_id, s.rank);
  if (s.admitted) count_running(-1);
  if (std::exchange(s.placed, false)) {  // its slot and blocks are free for the next admission on its rank
    --rank_running_[s.rank];
    rank_reserved_[s.rank] -= s.kv_blocks;
  }
  kv_reserved_ -= std::exchange(s.kv_blocks, 0);  // the next step frees its blocks before allocating any
  --in_flight_;
  if (metrics_) {
    metrics_->observe_request_duration(std::chrono::duration<double>(Clock::now() - s.req.arrival).count());
    metrics_->count_request(outcome);
  }
}

}  // namespace zi::server
