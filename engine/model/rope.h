// Rotary embedding frequencies as transformers computes them (ROPE_INIT_FUNCTIONS), on the host, in fp32, and the
// per-step tables a forward rotates q/k with.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/config.h"

namespace zi {

// inv_freq [head_dim / 2] for `rope` (default, linear, llama3, dynamic). `seq_len` matters for dynamic only: the
// sequence's length (cached + new tokens); up to rope.original_max_position_embeddings (the config's
// max_position_embeddings) the plain frequencies, beyond it transformers' dynamic NTK base
//   θ' = θ · (factor · seq_len / max_pos − (factor − 1)) ^ (D / (D − 2)).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim, int64_t seq_len = 0);

// Reads the RoPE settings from either layout: transformers 5 `rope_parameters` {rope_type, rope_theta, factor, ...},
// or transformers 4 top-level `rope_theta` + `rope_scaling` {rope_type|type, factor, ...}. Both present and
// disagreeing is an error naming the key; unsupported rope types are errors listing the supported ones.
Status parse_rope_config(const ConfigReader& config, int64_t max_position_embeddings, RopeConfig* rope);

// The frequency tables of one model, applied step by step. For every type but dynamic one table serves all rows.
// Dynamic NTK: transformers recomputes inv_freq from seq_len = max(position) + 1 of each forward, so a prefill of L
// tokens rotates all L with the table of length L, and each decode step rotates its one new token with the table
// of its length, while cached keys keep the rotation they were written with (what generate() with a KV cache
// computes for a single sequence). Here the length is taken per sequence (rows of one sequence share a table), so
// a sequence's result does not depend on what else is in the batch; transformers instead takes the longest
// sequence of the batch and also keeps its largest table between calls until a call shorter than
// max_position_embeddings resets it, state a server cannot reproduce across unrelated requests.
class RopeTables {
 public:
  RopeTables(Backend& backend, const RopeConfig& rope, int64_t head_dim);
  // True when every row of these sequences rotates with the one shared table (always, unless dynamic scaling
  // gives a sequence past the trained context a table of its own).
  bool shared_table(const std::vector<SeqSlice>& seqs) const;
  // Prepares the tables of this step's sequences (no-op unless dynamic).
  void begin_step(const AttentionBatch& step);
  // Rotates x [T, n_heads × D] in place at step.positions.
  void apply(Tensor& x, const AttentionBatch& step, int n_heads) const;
  // After begin_step: the one table (f32 [D/2]) all of this step's rows rotate with, for fused ops that take a
  // single table (Backend::qkv_rope_kv_write); nullptr when some sequence has a table of its own (use apply()).
  const Tensor* shared_inv_freq() const { return spans_.empty() ? &base_ : nullptr; }

 private:
  struct Span {
    int64_t begin = 0, end = 0;  // rows
    Tensor inv_freq;             // f32 [D/2]
  };
  Backend& be_;
  RopeConfig rope_;
  int64_t head_dim_;
  Tensor base_;              // f32 [D/2]: the table at lengths within max_position_embeddings
  std::vector<Span> spans_;  // dynamic: rows → table for this step; empty = base_ for every row
};

}  // namespace zi
