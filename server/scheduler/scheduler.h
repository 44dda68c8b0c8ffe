// Iteration-level scheduler: the one thread that drives the executor. Each step it releases finished
// sequences, drops cancelled / expired ones, lets a SchedulingPolicy admit waiting requests (policy.h), builds the
// step — every decoding sequence's next token first, then prompt chunks of prefilling sequences in admission order
// while scheduler.max_num_batched_tokens lasts, so a long prompt is prefilled over several steps beside running
// decodes — runs Executor::step, and turns each sampled token into streamed text (IncrementalDetokenizer + stop
// strings).
//
// Ranks: the executor may run N ranks (ModelSummary::num_ranks; ZeRO-3 data parallelism), each with its own KV
// cache and sequence slots. The scheduler places every sequence on one rank when it is admitted (the policy's
// decision, policy.h: where most room is left) and keeps it there (SeqStep::rank, SeqRelease::rank); it counts
// slots and KV blocks per rank. A rank takes at most ceil(max_batch_size / N) sequences.
//
// KV cache: when the executor reports a paged cache (ModelSummary::kv_num_blocks, per rank), each admitted request
// reserves on its rank the blocks its prompt + max_new_tokens can ever need, and admission waits while no rank has
// them free (the executor allocates blocks as tokens arrive, within the reservation, so it never runs out); a
// finished or cancelled sequence gives its reservation back at once (its blocks are freed by the next step, before
// anything new is allocated). A request that could not fit even in one rank's empty cache is refused
// (INVALID_ARGUMENT naming the limit).
//
// Logits (GenerationRequest::want_logits): every step of such a sequence asks the executor for the logits of each
// position it appends, and each chunk carries the rows gathered since the previous one. A prompt chunk of such a
// sequence is cut so that a rank's logits in one step stay within max_logits_bytes_per_step (they cross a worker
// frame, capped at 256 MiB): chunked prefill then sends them over several steps.
//
// Thread-safety: reserve(), submit(), wake(), start_draining(), fail_all(), counters: any thread.
// The Executor is driven from the scheduler thread only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/runtime/executor.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/metrics/serving_metrics.h"
#include "server/scheduler/policy.h"
#include "server/scheduler/request.h"

namespace zi::server {

// Rows a step carries by default when the model's layers are all resident: short steps keep inter-token latency
// low while prompts are prefilled beside decodes.
inline constexpr uint32_t kResidentStepTokens = 8192;

// scheduler.max_num_batched_tokens as a step budget: `configured` when set, else (0 = auto) the rows the
// activation memory was sized for when layers stream — each step pays the whole weight stream, so a batch's
// prompts should cross in as few steps (weight passes) as memory allows — or kResidentStepTokens.
uint32_t step_token_budget(uint32_t configured, const ModelSummary& m);

struct SchedulerOptions {
  uint32_t max_queue = 256;       // requests reserved/waiting before RESOURCE_EXHAUSTED
  // Sequences per step, all ranks together (serve: server.max_batch_size × ranks); each rank takes at most
  // ceil(max_batch_size / ranks) of them, its engine's slots.
  uint32_t max_batch_size = 16;
  // Tokens per step (decodes + prefill chunks); raised to max_batch_size if below it (every decode runs).
  uint32_t max_num_batched_tokens = 0;  // 0 = auto (scheduler.cc)
  std::vector<int32_t> eos_token_ids;
  // Logits one rank may return in one step, in bytes (rows of vocab_size float32): the rows of want_logits decodes
  // count first, and prompt chunks of want_logits sequences get what is left (rows = bytes / (vocab × 4)), the
  // rank's first such chunk at least one row. 64 MiB keeps a step reply far below the 256 MiB frame cap.
  uint64_t max_logits_bytes_per_step = uint64_t{64} << 20;
};

class Scheduler;

// A place in the bounded queue, taken when a request arrives (before tokenization) so that a full queue is
// refused at once. Released on destruction unless handed to Scheduler::submit. Move-only.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)) {}
  Reservation& operator=(Reservation&& o) noexcept;
  ~Reservation();

 private:
  friend class Scheduler;
  explicit Reservation(Scheduler* owner) : owner_(owner) {}
  Scheduler* owner_ = nullptr;
};

class Scheduler {
 public:
  // `executor` and `tokenizer` are borrowed and must outlive the scheduler; `metrics` may be null, and so may
  // `tokenizer` (then chunks carry token ids only, no text: `generate --prompt-ids` on a folder without one).
  // The executor's summary() must be valid (its model loaded).
  Scheduler(Executor* executor, const Tokenizer* tokenizer, SchedulerOptions options, ServingMetrics* metrics,
            std::unique_ptr<SchedulingPolicy> policy = std::make_unique<ContinuousPolicy>());
  // Fails whatever is still queued or running with UNAVAILABLE and joins the thread.
  ~Scheduler();

  // RESOURCE_EXHAUSTED when max_queue requests already wait; UNAVAILABLE while draining or after the
  // executor was lost.
  StatusOr<Reservation> reserve();
  // Queues a validated request. Never fails: a request that can no longer run (draining is fine, the executor
  // lost is not) is failed through its sink.
  void submit(Reservation reservation, GenerationRequest request, std::shared_ptr<ResponseSink> sink);
  // Makes the scheduler look at cancellations now (cheap; call from OnCancel).
  void wake();

  // New reservations are refused with UNAVAILABLE; what is queued or running goes on.
  void start_draining();
  // Ends every queued and running request with `status` at the next step boundary (the shutdown grace is
  // over, or the executor was lost) and refuses new ones with it.
  void fail_all(const Status& status);
  // Called (on the scheduler thread) when a step fails with UNAVAILABLE: the executor is gone.
  void set_on_executor_lost(std::function<void(const Status&)> fn);

  // Requests reserved, queued or running: 0 once a drain has finished.
  size_t in_flight() const { return in_flight_.load(); }
  size_t running() const { return running_count_.load(); }
  // KV blocks the scheduler counts, all ranks together (-1: the executor reports no paged cache), one rank's, and
  // those reserved by running sequences now (all ranks).
  int64_t kv_blocks_total() const { return kv_per_rank_ < 0 ? -1 : kv_per_rank_ * static_cast<int64_t>(num_ranks_); }
  int64_t kv_blocks_per_rank() const { return kv_per_rank_; }
  int64_t kv_blocks_reserved() const { return kv_reserved_.load(); }
  uint32_t num_ranks() const { return num_ranks_; }
  // Steady-clock time of the loop's last turn (the systemd watchdog checks it).
  Clock::time_point last_turn() const { return Clock::time_point(Clock::duration(last_turn_.load())); }

 private:
  struct Sequence;
  friend class Reservation;

  void unreserve();
  void loop();
  // Steps the running batch once; returns false when there was nothing to do.
  void run_step(std::vector<std::unique_ptr<Sequence>> admitted);
  // KV blocks `request` reserves for its life (0 when blocks are not counted).
  int64_t kv_blocks_for(const GenerationRequest& request) const;
  // Step tokens this step's running sequences take (their decodes and what is left of their prompts).
  size_t running_step_tokens() const;
  // Ends `seq` (not yet finished) with an error; its slot is released with the next step.
  void end_with_error(Sequence& seq, const Status& status, RequestOutcome outcome);
  void handle_token(Sequence& seq, const SeqResult& result, Clock::time_point now);
  void finish(Sequence& seq, GenerationChunk last, FinishReason reason);
  // Marks `seq` done and updates counters and metrics (before its sink's last call).
  void retire(Sequence& seq, RequestOutcome outcome);
  void publish_waiting_locked();
  void count_running(int delta);

  Executor* executor_;
  const Tokenizer* tokenizer_;
  SchedulerOptions options_;
  ServingMetrics* metrics_;
  std::unique_ptr<SchedulingPolicy> policy_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> waiting_;   // guarded by mu_
  size_t reserved_ = 0;                             // reservations not yet submitted; guarded by mu_
  bool draining_ = false;                           // guarded by mu_
  Status refuse_status_;                            // non-OK after fail_all; guarded by mu_
  bool fail_pending_ = false;                       // fail_all not yet applied by the loop; guarded by mu_
  bool stop_ = false;                               // guarded by mu_
  bool woken_ = false;                              // guarded by mu_
  bool awaiting_arrivals_ = false;                  // the policy waits for reserved requests; guarded by mu_
  uint64_t next_seq_id_ = 1;                        // guarded by mu_
  std::function<void(const Status&)> on_executor_lost_;  // guarded by mu_

  // Ranks and KV accounting (see the top of this file); fixed at construction.
  uint32_t num_ranks_ = 1;
  size_t rank_slots_ = 0;                           // sequences per rank: ceil(max_batch_size / num_ranks_)
  int64_t kv_per_rank_ = -1;                        // blocks of one rank's cache; -1 = not counted
  int64_t kv_block_size_ = 0;
  int64_t max_context_ = 0;
  uint64_t logits_row_bytes_ = 0;                   // one position's logits: vocab_size × 4
  size_t step_tokens_ = 0;                          // max_num_batched_tokens, at least max_batch_size

  // Scheduler-thread state.
  std::vector<std::unique_ptr<Sequence>> running_;  // in admission order
  std::vector<SeqRelease> to_release_;
  std::vector<size_t> rank_running_;                // [num_ranks_] sequences placed on each rank and not retired
  std::vector<int64_t> rank_reserved_;              // [num_ranks_] KV blocks they reserve there
  std::atomic<int64_t> kv_reserved_{0};             // sum of rank_reserved_; written by the scheduler thread

  std::atomic<size_t> in_flight_{0};
  std::atomic<size_t> running_count_{0};
  std::atomic<Clock::rep> last_turn_{0};
  std::thread thread_;  // last: starts after every member above is constructed
};

}  // namespace zi::server
