// Decode steps replayed from captured graphs (Backend::capture, CUDA graphs on the GPU).
//
// A decode step of a resident model is hundreds of small kernels whose launches cost more host time than the GPU
// spends on them at small batches. Every decode step of the same shape runs the same ops on the same addresses, so
// the first one of each shape is captured and later ones replay it with one launch:
//  - shape = (batch bucket, block-table width bucket). Batches are padded up to 1, 2, 4, 8, then multiples of 8,
//    with sequences that have no new row (the kernels skip them); block tables are padded to a power of two
//    columns, at most the whole context. Padding costs a few rows of a memory-bound step;
//  - each shape owns its packed input buffer (engine/model/step_tensors.h), refilled with one upload before each
//    replay, and its logits [bucket, V], which the replay rewrites;
//  - activations come from the backend's graph pool, shared by all shapes (they replay one at a time).
// Only steps whose every sequence adds one token, wants at most its last row's logits and is replayable() by the
// model take this path; everything else (prefill, streamed layers, KV offload, ZeRO-3 ranks) runs eagerly — the
// executor decides which apply (local_executor.cc). Weight streaming stays outside graphs: its copies and events
// are ordered by the host each step (engine/zero), so models with streamed layers never replay.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/model.h"

namespace zi {

class StepGraphs {
 public:
  // `max_batch` = the executor's max_batch_size; `max_context` sizes the widest block table.
  StepGraphs(CausalLM& model, Backend& backend, KvCache& kv, int max_batch, int max_context);

  // The step's logits [n, V] (a view of the replayed graph's output, valid until the next step) for a decode step
  // whose logit_rows are 0..n-1; nullopt when the step must run eagerly (not a decode step, not replayable, or
  // graphs are off after a capture failed). An error is a failure of the step itself (KV blocks ran out).
  StatusOr<std::optional<Tensor>> run(const ForwardBatch& batch);

  // The bucket a batch of `n` sequences is padded to (0 when n is past the largest bucket).
  static int64_t batch_bucket(int64_t n, int64_t max_batch);
  int captured() const { return static_cast<int>(graphs_.size()); }

 private:
  struct Entry {
    std::unique_ptr<Backend::StepGraph> graph;
    Tensor packed;  // int32 step inputs (step_tensors.h), refilled before each replay
    Tensor logits;  // [bucket, V], written by each replay
  };

  CausalLM& model_;
  Backend& be_;
  KvCache& kv_;
  const int64_t max_batch_;
  const int64_t max_table_width_;
  bool disabled_ = false;
  std::map<std::pair<int64_t, int64_t>, Entry> graphs_;  // (batch bucket, table width) → graph
  std::vector<int32_t> host_;                            // packed inputs, reused
};

}  // namespace zi
