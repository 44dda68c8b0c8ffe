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
#include "engine/model/step_tensors.h"

namespace zi {

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelConfig& config() const = 0;
  virtual ParameterSource& parameters() = 0;
  virtual Backend& backend() = 0;
  // Appends the step's tokens to their sequences' KV cache and returns the logits of step.logit_rows,
  // [R, V] in the backend's activation dtype. Its ops read the step only through step's tensors and the host
  // layout in step.attn, so a capture of it (Backend::capture) replays any step of the same shape whose sequences
  // are replayable().
  virtual StatusOr<Tensor> forward(const StepTensors& step, KvCache& kv) = 0;
  // False when the forward would choose its ops from these sequences' contents, not only the step's shape (e.g.
  // per-sequence RoPE tables past the trained context): such a step must run eagerly.
  virtual bool replayable(const std::vector<SeqSlice>& seqs) const {
    (void)seqs;
    return true;
  }
  // upload_step, then the forward.
  StatusOr<Tensor> forward(const ForwardBatch& batch, KvCache& kv) {
    ZI_ASSIGN_OR_RETURN(StepTensors step, upload_step(backend(), batch, kv));
    return forward(step, kv);
  }
};

}  // namespace zi
