#include "server/scheduler/policy.h"

namespace zi::server {

ScheduleDecision FcfsPolicy::schedule(const std::vector<WaitingView>& waiting, size_t running,
                                      size_t max_batch_size) const {
  ScheduleDecision d;
  size_t free_slots = running < max_batch_size ? max_batch_size - running : 0;
  for (const WaitingView& w : waiting) {
    if (d.scheduled.size() < free_slots) d.scheduled.push_back(w.seq_id);
    else d.deferred.push_back(w.seq_id);
  }
  return d;
}

}  // namespace zi::server
