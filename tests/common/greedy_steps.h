// Drives an Executor the way the scheduler does for a fixed set of sequences: the prompts' first step, then one
// greedy token per sequence per step. Shared by the ZeRO-3 tests on CPU ranks and on GPUs.
#pragma once

#include <vector>

#include "engine/core/status.h"
#include "engine/runtime/executor.h"

namespace zi::testing {

// Continues prompts[i] for each i in `seqs` (sequence id 100 + i) for `steps` steps on `ex`; returns each one's
// tokens. An empty `seqs` still steps (a rank's empty micro-batch). `last`: the final step's figures.
inline StatusOr<std::vector<std::vector<int32_t>>> greedy_steps(Executor& ex,
                                                                 const std::vector<std::vector<int32_t>>& prompts,
                                                                 const std::vector<int>& seqs, int steps,
                                                                 StepStats* last = nullptr,
                                                                 StepStats* streamed = nullptr) {
  std::vector<std::vector<int32_t>> out(seqs.size());
  for (int step = 0; step < steps; ++step) {
    StepInput in;
    for (size_t i = 0; i < seqs.size(); ++i) {
      SeqStep s;
      s.seq_id = 100 + seqs[i];
      s.first = step == 0;
      s.tokens = step == 0 ? prompts[seqs[i]] : std::vector<int32_t>{out[i].back()};
      in.seqs.push_back(std::move(s));
    }
    ZI_ASSIGN_OR_RETURN(StepOutput o, ex.step(in));
    for (size_t i = 0; i < seqs.size(); ++i) out[i].push_back(o.results[i].token);
    if (last) *last = o.stats;
    if (streamed) {  // summed over the steps: a ring that holds every streamed layer fetches them once
      streamed->fetch_bytes += o.stats.fetch_bytes;
      streamed->allgather_bytes += o.stats.allgather_bytes;
      streamed->allgather_seconds += o.stats.allgather_seconds;
    }
  }
  return out;
}

}  // namespace zi::testing
