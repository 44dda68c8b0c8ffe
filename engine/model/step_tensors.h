// A step's inputs on the backend, made once before the layers run: token ids, the attention layout (per-sequence
// slices, positions, block tables) and the rows whose logits are wanted. They are packed into ONE int32 buffer and
// cross to the device in one copy (five small copies, each with its own host round trip, before):
//
//   ids [T] | seqs [n, 4] (slot, row_begin, n_new, past_len) | positions [T] | block tables [n, B] | logit rows [R]
//
// A StepShape may pad every part beyond what the batch needs (decode steps replayed from a CUDA graph need fixed
// sizes and fixed addresses: engine/runtime/step_graphs.h). Padding sequences have n_new = 0 and write or read no
// KV; padding rows hold token 0 at position 0 and are never gathered for logits unless listed; padding logit rows
// repeat row 0; padding table entries are -1.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/kv_cache.h"

namespace zi {

// One step's work, host side. Rows (tokens) of all sequences are flattened in order: sequence s owns rows
// [seqs[s].row_begin, seqs[s].row_begin + seqs[s].n_new).
struct ForwardBatch {
  std::vector<int32_t> tokens;      // [T] token ids (validated < vocab by the caller)
  std::vector<SeqSlice> seqs;       // per sequence: KV cache handle, rows, tokens already cached
  std::vector<int32_t> logit_rows;  // rows whose logits are wanted, in output order
};

// Sizes of the packed parts; each ≥ what the batch needs.
struct StepShape {
  int64_t rows = 0;         // T
  int64_t seqs = 0;         // n
  int64_t table_width = 1;  // B: block-table columns (≥ 1)
  int64_t logit_rows = 0;   // R
  int64_t packed_ints() const { return rows + 4 * seqs + rows + seqs * table_width + logit_rows; }
  bool operator==(const StepShape&) const = default;
};

struct StepTensors {
  Tensor ids;             // int32 [T]
  AttentionBatch attn;    // device parts are views into `packed`; host parts describe the batch as packed
  Tensor logit_rows;      // int32 [R]
  Tensor packed;          // int32 [shape.packed_ints()]: owns the memory of the views above
  StepShape shape;
};

// The shape that fits `batch` exactly (its block tables after kv.reserve()).
StepShape exact_step_shape(const ForwardBatch& batch, const KvCache& kv);

// Grows each sequence's block table to hold its new rows (RESOURCE_EXHAUSTED when blocks run out), then writes the
// step into `packed` (host, resized to shape.packed_ints()) and the host half of `attn` (seqs, tables, sizes) as
// the views of shape describe it. INVALID_ARGUMENT when `shape` is smaller than the batch.
Status pack_step(const ForwardBatch& batch, KvCache& kv, const StepShape& shape, std::vector<int32_t>& packed,
                 AttentionBatch& attn);

// Views of `packed` (int32 [shape.packed_ints()] on the backend) as the step's tensors; `attn` is the host half
// pack_step filled.
StepTensors step_tensors_view(const Tensor& packed, const StepShape& shape, AttentionBatch attn);

// pack_step at the exact shape, one upload, and the views.
StatusOr<StepTensors> upload_step(Backend& backend, const ForwardBatch& batch, KvCache& kv);

}  // namespace zi
