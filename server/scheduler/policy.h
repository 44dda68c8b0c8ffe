// Scheduling policies: which waiting requests join the batch at this step boundary, and on which rank each runs.
// A policy is a small pure function of the queue and the batch's free room (sequence slots and KV blocks of every
// rank, step tokens); the Scheduler applies its decision, and builds each step (decodes first, then prefill chunks
// under scheduler.max_num_batched_tokens). Chosen in YAML: scheduler.policy = continuous | static.
//
// Ranks (data parallelism): every rank has its own KV cache and sequence slots, and a sequence lives on one rank for
// its life, so room is counted per rank and a request is placed where it fits (pick_rank).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace zi::server {

// What a policy sees of one waiting request.
struct WaitingView {
  uint64_t seq_id = 0;
  size_t prompt_tokens = 0;
  int64_t kv_blocks = 0;        // KV blocks it reserves for its life (prompt + max_new_tokens)
  size_t max_new_tokens = 0;
};

// One rank's free room at this step boundary.
struct RankView {
  size_t free_slots = 0;        // sequences it may still take (its share of max_batch_size less those it runs)
  int64_t free_kv_blocks = -1;  // blocks of its cache not reserved by its sequences; -1 = not counted
};

// The batch at this step boundary.
struct BatchView {
  size_t running = 0;           // sequences in the batch (prefilling or decoding), all ranks
  size_t max_batch_size = 0;    // sequences per step, all ranks together
  std::vector<RankView> ranks;  // one per rank (at least one); index = rank
  size_t free_step_tokens = 0;  // of max_num_batched_tokens, what this step's decodes and prefill chunks leave
  size_t arriving = 0;          // requests accepted but not yet queued (being tokenized, or a burst mid-submit)
  int64_t kv_block_size = 16;   // tokens per KV block
};

struct ScheduleDecision {
  std::vector<uint64_t> scheduled;  // join the batch this step, in this order
  std::vector<uint64_t> deferred;   // stay in the queue
  // KV blocks each scheduled request reserves, when not its own kv_blocks (a padded static batch: every member
  // reserves the batch's padded length).
  std::vector<int64_t> kv_blocks;
  std::vector<uint32_t> ranks;      // the rank each scheduled request runs on (one per scheduled, an index of
                                    // BatchView::ranks); its slot and blocks are counted there
};

// Placement: the rank a request that reserves `kv_blocks` goes to. Among the ranks with a free slot and at least
// `kv_blocks` free blocks (or blocks not counted), the one with the most free blocks, then the most free slots
// (fewest sequences), then the lowest index. -1 when no rank has room now.
int pick_rank(const std::vector<RankView>& ranks, int64_t kv_blocks);

class SchedulingPolicy {
 public:
  virtual ~SchedulingPolicy() = default;
  virtual const char* name() const = 0;
  // `waiting` in arrival order.
  virtual ScheduleDecision schedule(const std::vector<WaitingView>& waiting, const BatchView& batch) const = 0;
};

// Continuous batching (iteration-level, as Orca / vLLM): at every step, first come first served, a request joins
// while a sequence slot and its KV blocks are free on some rank (pick_rank) and step tokens for (a first chunk of)
// its prompt are left. Never overtakes: a head that does not fit yet holds the queue (a long request is not starved
// by short ones).
class ContinuousPolicy final : public SchedulingPolicy {
 public:
  const char* name() const override { return "continuous"; }
  ScheduleDecision schedule(const std::vector<WaitingView>& waiting, const BatchView& batch) const override;
};

// Static batching, the baseline (ZeRO-Inference, FlexGen, HF generate): a padded batch of up to max_batch_size
// requests is admitted together into an empty batch and runs until its longest member finishes; nothing joins
// meanwhile. Padded as those systems pad it: every member holds KV for the batch's longest prompt plus its largest
// max_new_tokens (the [B, max_len] cache of HF generate), so the KV budget bounds the batch by that padded length;
// with several ranks the members are spread over them (pick_rank), each rank holding as many as its slots and blocks
// allow.
// While requests are still arriving and the batch is not full, it waits for them (requests that come together run
// together, not split by the microseconds between their submissions).
class StaticPolicy final : public SchedulingPolicy {
 public:
  const char* name() const override { return "static"; }
  ScheduleDecision schedule(const std::vector<WaitingView>& waiting, const BatchView& batch) const override;
};

// "continuous" | "static"; an error names the value and the choices.
StatusOr<std::unique_ptr<SchedulingPolicy>> make_policy(const std::string& name);

}  // namespace zi::server
