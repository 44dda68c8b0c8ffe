#include "server/scheduler/policy.h"

#include <algorithm>

namespace zi::server {
namespace {

// Counts a request placed on `rank`: one slot, and its blocks when blocks are counted.
void take(RankView& rank, int64_t kv_blocks) {
  --rank.free_slots;
  if (rank.free_kv_blocks >= 0) rank.free_kv_blocks -= kv_blocks;
}

}  // namespace

int pick_rank(const std::vector<RankView>& ranks, int64_t kv_blocks) {
  int best = -1;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const RankView& v = ranks[r];
    if (v.free_slots == 0 || (v.free_kv_blocks >= 0 && v.free_kv_blocks < kv_blocks)) continue;
    if (best >= 0) {
      const RankView& b = ranks[static_cast<size_t>(best)];
      if (v.free_kv_blocks < b.free_kv_blocks) continue;
      if (v.free_kv_blocks == b.free_kv_blocks && v.free_slots <= b.free_slots) continue;
    }
    best = static_cast<int>(r);
  }
  return best;
}

ScheduleDecision ContinuousPolicy::schedule(const std::vector<WaitingView>& waiting, const BatchView& batch) const {
  ScheduleDecision d;
  size_t slots = batch.running < batch.max_batch_size ? batch.max_batch_size - batch.running : 0;
  std::vector<RankView> ranks = batch.ranks;
  size_t tokens = batch.free_step_tokens;
  bool open = true;
  for (const WaitingView& w : waiting) {
    const int r = open && slots > 0 && tokens > 0 ? pick_rank(ranks, w.kv_blocks) : -1;
    if (r >= 0) {
      d.scheduled.push_back(w.seq_id);
      d.ranks.push_back(static_cast<uint32_t>(r));
      take(ranks[static_cast<size_t>(r)], w.kv_blocks);
      --slots;
      tokens -= std::min(tokens, w.prompt_tokens);  // its first chunk takes what is left, up to the whole prompt
    } else {
      open = false;  // first come, first served: nobody overtakes the head
      d.deferred.push_back(w.seq_id);
    }
  }
  return d;
}

ScheduleDecision StaticPolicy::schedule(const std::vector<WaitingView>& waiting, const BatchView& batch) const {
  ScheduleDecision d;
  // A batch runs to its end before the next one forms; it forms once nothing more is arriving or it is full.
  bool open = batch.running == 0 && (batch.arriving == 0 || waiting.size() >= batch.max_batch_size);
  const bool counted = !batch.ranks.empty() && batch.ranks[0].free_kv_blocks >= 0;
  // Members of `per` blocks each that the ranks can hold together.
  auto capacity = [&batch](int64_t per) {
    size_t n = 0;
    for (const RankView& r : batch.ranks)
      n += r.free_kv_blocks < 0 || per <= 0 ? r.free_slots
                                            : std::min(r.free_slots, static_cast<size_t>(r.free_kv_blocks / per));
    return n;
  };
  size_t longest_prompt = 0, longest_new = 0;
  int64_t padded = 0;  // blocks per member at the batch's padded length
  for (const WaitingView& w : waiting) {
    if (open && d.scheduled.size() < batch.max_batch_size) {
      const size_t prompt = std::max(longest_prompt, w.prompt_tokens), max_new = std::max(longest_new, w.max_new_tokens);
      // The cache holds the prompt and every generated token but the last.
      const int64_t tokens = static_cast<int64_t>(prompt + std::max<size_t>(max_new, 1) - 1);
      const int64_t bs = std::max<int64_t>(1, batch.kv_block_size);
      const int64_t per = std::max(w.kv_blocks, (tokens + bs - 1) / bs);
      if (capacity(per) >= d.scheduled.size() + 1) {
        d.scheduled.push_back(w.seq_id);
        longest_prompt = prompt;
        longest_new = max_new;
        padded = per;
        continue;
      }
    }
    open = false;
    d.deferred.push_back(w.seq_id);
  }
  // Spread the batch: with equal reservations, placing one member at a time where most room is left fills every
  // rank up to what capacity() counted.
  std::vector<RankView> ranks = batch.ranks;
  const int64_t each = counted ? padded : 0;
  for (size_t k = 0; k < d.scheduled.size(); ++k) {
    const int r = pick_rank(ranks, each);
    if (r < 0) {  // unreachable (capacity() said they fit); keep the rest queued rather than overcommit
      d.deferred.insert(d.deferred.begin(), d.scheduled.begin() + static_cast<std::ptrdiff_t>(k), d.scheduled.end());
      d.scheduled.resize(k);
      break;
    }
    d.ranks.push_back(static_cast<uint32_t>(r));
    take(ranks[static_cast<size_t>(r)], each);
  }
  if (counted) d.kv_blocks.assign(d.scheduled.size(), padded);
  return d;
}

StatusOr<std::unique_ptr<SchedulingPolicy>> make_policy(const std::string& name) {
  if (name == "continuous") return std::unique_ptr<SchedulingPolicy>(std::make_unique<ContinuousPolicy>());
  if (name == "static") return std::unique_ptr<SchedulingPolicy>(std::make_unique<StaticPolicy>());
  return absl::InvalidArgumentError(
      absl::StrCat("scheduler.policy must be continuous or static, got '", name, "'"));
}

}  // namespace zi::server
