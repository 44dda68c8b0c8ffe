#include "engine/runtime/step_graphs.h"

#include <algorithm>
#include <bit>

#include "engine/core/log.h"

namespace zi {

StepGraphs::StepGraphs(CausalLM& model, Backend& backend, KvCache& kv, int max_batch, int max_context)
    : model_(model),
      be_(backend),
      kv_(kv),
      max_batch_(max_batch),
      max_table_width_(std::max<int64_t>(1, kv.blocks_for(max_context))) {}

int64_t StepGraphs::batch_bucket(int64_t n, int64_t max_batch) {
  if (n < 1 || n > max_batch) return 0;
  const int64_t b = n <= 8 ? static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(n))) : (n + 7) / 8 * 8;
  return std::min(b, max_batch);
}

StatusOr<std::optional<Tensor>> StepGraphs::run(const ForwardBatch& batch) {
  const int64_t n = static_cast<int64_t>(batch.seqs.size());
  if (disabled_ || n == 0 || static_cast<int64_t>(batch.tokens.size()) != n) return std::optional<Tensor>();
  for (int64_t i = 0; i < n; ++i)
    if (batch.seqs[i].n_new != 1) return std::optional<Tensor>();
  if (static_cast<int64_t>(batch.logit_rows.size()) != n) return std::optional<Tensor>();
  for (int64_t i = 0; i < n; ++i)
    if (batch.logit_rows[i] != i) return std::optional<Tensor>();
  if (!model_.replayable(batch.seqs)) return std::optional<Tensor>();
  const int64_t bucket = batch_bucket(n, max_batch_);
  if (bucket == 0) return std::optional<Tensor>();

  int64_t width = 1;
  for (const SeqSlice& s : batch.seqs)
    width = std::max({width, static_cast<int64_t>(kv_.block_table(s.slot).size()),
                      kv_.blocks_for(int64_t{s.past_len} + s.n_new)});
  width = std::min<int64_t>(static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(width))), max_table_width_);
  const StepShape shape{bucket, bucket, width, bucket};
  AttentionBatch attn;
  ZI_RETURN_IF_ERROR(pack_step(batch, kv_, shape, host_, attn));

  const std::pair<int64_t, int64_t> key{bucket, width};
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    Entry e;
    e.packed = be_.alloc(DType::kI32, {shape.packed_ints()});  // outside the graph pool: inputs live on
    be_.upload(e.packed, host_.data());
    const StepTensors in = step_tensors_view(e.packed, shape, std::move(attn));
    StatusOr<std::unique_ptr<Backend::StepGraph>> graph = be_.capture([&]() -> Status {
      ZI_ASSIGN_OR_RETURN(e.logits, model_.forward(in, kv_));
      return absl::OkStatus();
    });
    if (!graph.ok() || *graph == nullptr) {
      // A backend without graphs, or a capture it refused: every later step runs eagerly (the step's blocks are
      // reserved already; the eager path's reservation is then a no-op).
      if (!graph.ok()) {
        ZI_LOG(WARNING) << "decode steps run op by op: capturing one failed: " << graph.status();
      }
      disabled_ = true;
      return std::optional<Tensor>();
    }
    e.graph = *std::move(graph);
    ZI_LOG(INFO) << "captured the decode step of batch " << bucket << " (block tables " << width << " wide) as a graph";
    it = graphs_.emplace(key, std::move(e)).first;
  } else {
    be_.upload(it->second.packed, host_.data());
  }
  it->second.graph->replay();
  return std::optional<Tensor>(it->second.logits.rows(0, n));
}

}  // namespace zi
