// A causal language model over a Backend: one forward per step for a micro-batch of sequences.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"
#include "engine/model/kv_cache.h"
#include "engine/model/step_tensors.h"

namespace zi {

// Rows one layer processes at once: a step with more is split into chunks of at most this many rows, and each layer
// runs every chunk while its weights are at hand (CausalLM::forward). Large enough that prefill GEMMs stay near the
// tensor-core peak (an H100 reaches it by T = 8192), small enough that a layer's intermediates for one chunk
// (placement.h activation_bytes_for_rows) stay bounded whatever the step's size.
inline constexpr int64_t kLayerChunkRows = 8192;
// The most rows one chunk of this model's steps can hold: kLayerChunkRows, or no bound (INT64_MAX) for dynamic-NTK
// RoPE models, whose sequences are never cut (CausalLM::exact_when_cut): one sequence's rows are one chunk.
inline int64_t layer_chunk_rows(const ModelConfig& cfg) {
  return cfg.rope.type == "dynamic" ? INT64_MAX : kLayerChunkRows;
}

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelConfig& config() const = 0;
  virtual ParameterSource& parameters() = 0;
  virtual Backend& backend() = 0;

  // Appends every chunk's tokens to their sequences' KV cache and returns the logits of the chunks' logit_rows,
  // chunk after chunk: [ΣR, V] in the backend's activation dtype. Layers outside, chunks inside: each layer's
  // weights are fetched once per call however many chunks there are (a streamed layer crosses the bus once per
  // step), while only one chunk's intermediates are alive at a time (the residual stream of every chunk is). A
  // sequence split over chunks is cut at a row: its later chunk reads the earlier one's KV rows, written first in
  // the same layer. The ops read a chunk only through its tensors and the host layout in its attn, so a capture of
  // a one-chunk forward (Backend::capture) replays any step of the same shape whose sequences are replayable().
  StatusOr<Tensor> forward(std::span<const StepTensors> chunks, KvCache& kv);
  StatusOr<Tensor> forward(const StepTensors& step, KvCache& kv) { return forward(std::span(&step, 1), kv); }
  // The batch cut into chunks of at most `chunk_rows` rows (split_rows), each uploaded, then the forward.
  StatusOr<Tensor> forward(const ForwardBatch& batch, KvCache& kv, int64_t chunk_rows = kLayerChunkRows);

  // False when the forward would choose its ops from these sequences' contents, not only the step's shape (e.g.
  // per-sequence RoPE tables past the trained context): such a step must run eagerly.
  virtual bool replayable(const std::vector<SeqSlice>& seqs) const {
    (void)seqs;
    return true;
  }
  // False when cutting a sequence's rows over two chunks changes its result (dynamic NTK RoPE: the table follows
  // the length each forward sees). forward(batch) then cuts only between sequences.
  virtual bool exact_when_cut() const { return true; }

 protected:
  // The residual stream of one chunk between layers: x, and the addend a fused add + norm has yet to add.
  struct ChunkState {
    const StepTensors* in = nullptr;
    Tensor x, pending;
  };
  // The forward's parts, driven by forward() above with chunks_ filled (one step at a time):
  //  - embed: checks and the embeddings of every chunk (chunks_[c].x);
  //  - layer: layer l of one chunk with its weights at hand;
  //  - final_hidden: a chunk's wanted rows after the final norm (and any output projection), [R_c, H'] for the LM
  //    head.
  virtual Status embed(KvCache& kv) = 0;
  virtual Status layer(int l, const LayerWeights& w, ChunkState& c, KvCache& kv) = 0;
  virtual StatusOr<Tensor> final_hidden(ChunkState& c) = 0;

  std::vector<ChunkState> chunks_;
};

// `batch` as consecutive chunks of at most max_rows rows each: sequences in order, a sequence longer than the room
// left cut at a row (the later part's past_len counts the earlier part's rows), each logit row moved to the chunk
// holding it. With cut = false sequences are never cut: one longer than max_rows is a chunk of its own. One chunk
// (the batch itself) when it fits, when max_rows < 1, or when logit_rows are not ascending (the chunks' logits are
// concatenated in chunk order).
std::vector<ForwardBatch> split_rows(const ForwardBatch& batch, int64_t max_rows, bool cut = true);

}  // namespace zi
