// Scheduling policies: which waiting requests join the running batch at this step boundary.
// A policy is a small pure function of the queue and the batch; the Scheduler applies its decision.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace zi::server {

// What a policy sees of one waiting request.
struct WaitingView {
  uint64_t seq_id = 0;
  size_t prompt_tokens = 0;
};

struct ScheduleDecision {
  std::vector<uint64_t> scheduled;  // join the batch this step (prefill), in this order
  std::vector<uint64_t> deferred;   // stay in the queue
};

class SchedulingPolicy {
 public:
  virtual ~SchedulingPolicy() = default;
  // `waiting` in arrival order; `running` sequences already hold slots of `max_batch_size`.
  virtual ScheduleDecision schedule(const std::vector<WaitingView>& waiting, size_t running,
                                    size_t max_batch_size) const = 0;
};

// First come, first served: fills the free slots from the head of the queue; never overtakes.
class FcfsPolicy final : public SchedulingPolicy {
 public:
  ScheduleDecision schedule(const std::vector<WaitingView>& waiting, size_t running,
                            size_t max_batch_size) const override;
};

}  // namespace zi::server
