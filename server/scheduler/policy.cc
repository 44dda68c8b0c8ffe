#include "server/scheduler/policy.h"

#include <algorithm>

namespace zi::server {
namespace {

bool fits_blocks(const WaitingView& w, int64_t free_blocks) { return free_blocks < 0 || w.kv_blocks <= free_blocks; }

}  // namespace

ScheduleDecision ContinuousPolicy::schedule(const std::vector<WaitingView>& waiting, const BatchView& batch) const {
  ScheduleDecision d;
  size_t slots = batch.running < batch.max_batch_size ? batch.max_batch_size - batch.running : 0;
  int64_t blocks = batch.free_kv_blocks;
  size_t tokens = batch.free_step_tokens;
  bool open = true;
  for (const WaitingView& w : waiting) {
    if (open && slots > 0 && tokens > 0 && fits_blocks(w, blocks)) {
      d.scheduled.push_back(w.seq_id);
      --slots;
      if (blocks >= 0) blocks -= w.kv_blocks;
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
  size_t longest_prompt = 0, longest_new = 0;
  int64_t padded = 0;  // blocks per member at the batch's padded length
  for (const WaitingView& w : waiting) {
    if (open && d.scheduled.size() < batch.max_batch_size) {
      const size_t prompt = std::max(longest_prompt, w.prompt_tokens), max_new = std::max(longest_new, w.max_new_tokens);
      // The cache holds the prompt and every generated token but the last.
      const int64_t tokens = static_cast<int64_t>(prompt + std::max<size_t>(max_new, 1) - 1);
      const int64_t bs = std::max<int64_t>(1, batch.kv_block_size);
      const int64_t per = std::max(w.kv_blocks, (tokens + bs - 1) / bs);
      const int64_t need = per * static_cast<int64_t>(d.scheduled.size() + 1);
      if (batch.free_kv_blocks < 0 || need <= batch.free_kv_blocks) {
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
  if (batch.free_kv_blocks >= 0) d.kv_blocks.assign(d.scheduled.size(), padded);
  return d;
}

StatusOr<std::unique_ptr<SchedulingPolicy>> make_policy(const std::string& name) {
  if (name == "continuous") return std::unique_ptr<SchedulingPolicy>(std::make_unique<ContinuousPolicy>());
  if (name == "static") return std::unique_ptr<SchedulingPolicy>(std::make_unique<StaticPolicy>());
  return absl::InvalidArgumentError(
      absl::StrCat("scheduler.policy must be continuous or static, got '", name, "'"));
}

}  // namespace zi::server
