// A causal language model over a Backend: one forward per step for a micro-batch of sequences.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"
#include "engine/model/kv_cache.h"

namespace zi {

// One step's work, host side. Rows (tokens) of all sequences are flattened in order: sequence s owns rows
// [seqs[s].row_begin, seqs[s].row_begin + seqs[s].n_new).
struct ForwardBatch {
  std::vector<int32_t> tokens;      // [T] token ids (validated < vocab by the caller)
  std::vector<SeqSlice> seqs;       // per sequence: KV cache handle, rows, tokens already cached
  std::vector<int32_t> logit_rows;  // rows whose logits are wanted, in output order
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelConfig& config() const = 0;
  virtual ParameterSource& parameters() = 0;
  // Appends the batch's tokens to their sequences' KV cache and returns the logits of `logit_rows`,
  // [logit_rows.size(), V] in the backend's activation dtype.
  virtual StatusOr<Tensor> forward(const ForwardBatch& batch, KvCache& kv) = 0;
};

}  // namespace zi
