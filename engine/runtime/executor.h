// The engine behind a small facade: one step of a micro-batch of sequences → one new token per sequence.
// The coordinator (or `generate` in-process) decides what runs each step; the executor owns the model, the
// KV cache and each sequence's sampling state (RNG, seen tokens for the repetition penalty).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/runtime/sampling_params.h"

namespace zi {

// What the served model is (GetModelInfo, logs, validation in the coordinator).
struct ModelSummary {
  std::string name;             // served name
  std::string architecture;     // e.g. "LlamaForCausalLM"
  uint64_t parameters = 0;      // total parameter count
  uint32_t vocab_size = 0;
  uint32_t max_context = 0;     // tokens per sequence (prompt + generated)
  std::string dtype;            // weights' stored dtype, e.g. "bfloat16"
  std::string device;           // "cpu" | "cuda"
  // Ranks a step's sequences may be placed on (SeqStep::rank < num_ranks): data parallelism, each rank with its
  // own KV cache and its own micro-batch. An in-process executor has one.
  uint32_t num_ranks = 1;
  uint32_t quant_bits = 16;           // weight quantization: 16 (off), 8 or 4
  uint32_t quant_group_size = 0;      // weights per quantization group (0 when off)
  uint64_t layer_weight_bytes = 0;    // one decoder layer's weights as held and streamed (packed when quantized)
  // Placement (ZeRO-Inference): where each decoder layer's weights live on this rank, and what a step moves.
  std::vector<std::string> layer_tiers;   // [L] "gpu" (resident) | "cpu" (pinned host memory) | "nvme" (store)
  uint64_t streamed_bytes_per_step = 0;   // every streamed layer once, all ranks' partitions together
  uint32_t prefetch_depth = 0;            // slots in the streaming ring (0 when nothing streams)
  std::vector<int32_t> eos_token_ids;  // from generation_config.json, else config.json
  int32_t bos_token_id = -1;
  // Paged KV cache of each rank (0 = not reported: the scheduler then counts sequences only).
  uint32_t kv_block_size = 0;          // tokens per block
  uint64_t kv_num_blocks = 0;          // blocks in one rank's cache (every rank has at least this many)
  // Rows one step may carry within the activation memory reserved at load (engine/zero/placement.h
  // activation_bytes): the scheduler's default step budget when layers stream (0 = not reported).
  uint32_t max_step_tokens = 0;
};

// One sequence's work in a step.
struct SeqStep {
  uint64_t seq_id = 0;
  // The rank that runs it, 0 ≤ rank < ModelSummary::num_ranks: chosen by the scheduler when the sequence starts and
  // the same on every later step (its KV cache lives there). An in-process executor refuses any rank but 0.
  uint32_t rank = 0;
  // Tokens to append to the sequence this step: on its first step the prompt (or a first chunk of it),
  // afterwards the token sampled last step. Positions continue from what the executor already holds.
  std::vector<int32_t> tokens;
  // On the sequence's first step: its sampling settings (kept by the executor until release).
  SamplingParams sampling;
  bool first = false;           // true on the sequence's first step: the executor creates its state
  bool sample = true;           // false for a prefill chunk that is not the prompt's last: no token returned
  bool want_logits = false;     // return the logits of every appended position (generate --logits-out)
};

// A sequence to forget (finished or cancelled), on the rank that holds it. Implicit from an id: a braced list of
// ids releases them on rank 0 (the in-process executor's only rank).
struct SeqRelease {
  SeqRelease(uint64_t id = 0, uint32_t on_rank = 0) : seq_id(id), rank(on_rank) {}
  uint64_t seq_id;
  uint32_t rank;
  bool operator==(const SeqRelease&) const = default;
};

struct StepInput {
  std::vector<SeqStep> seqs;
  std::vector<SeqRelease> release;  // before this step runs
};

struct SeqResult {
  uint64_t seq_id = 0;
  int32_t token = -1;           // -1 when !sample
  float logprob = 0.0f;         // when sampling.return_logprobs
  std::vector<float> logits;    // [tokens.size() × vocab] float32, row i = position i of `tokens`, when want_logits
};

struct StepStats {
  double seconds = 0.0;
  uint64_t prefill_tokens = 0;
  uint64_t decode_tokens = 0;
  // Weight streaming during the step (zeros when every layer is resident).
  uint64_t fetch_bytes = 0;        // host → device bytes this rank moved
  uint64_t nvme_bytes = 0;         // of which read from the NVMe store
  double copy_seconds = 0.0;       // device time of those copies (fetch_bytes / copy_seconds = PCIe bandwidth)
  double nvme_read_seconds = 0.0;
  double stall_seconds = 0.0;      // compute waiting for weights the prefetch had not brought yet
  // ZeRO-3 across ranks: the other ranks' partitions gathered into this rank's slots.
  uint64_t allgather_bytes = 0;    // bytes received from the other ranks
  double allgather_seconds = 0.0;  // time of those collectives (device time on the GPU)
  uint32_t rank = 0;               // which rank these figures are from (per-rank entries below)
  uint64_t device_memory_used_bytes = 0;  // GPU memory in use after the step (0 on the CPU)
  double kv_usage_ratio = 0.0;     // KV cache blocks in use / blocks, after the step
};

struct StepOutput {
  std::vector<SeqResult> results;  // one per SeqStep, in the same order
  // Bytes and tokens summed over ranks, seconds the slowest rank's (the step's wall time).
  StepStats stats;
  std::vector<StepStats> rank_stats;  // one per rank (the worker pool fills it; in-process: empty)
};

class Executor {
 public:
  virtual ~Executor() = default;
  // Runs one step. Not thread-safe: one caller drives the executor. An error fails the whole step.
  virtual StatusOr<StepOutput> step(const StepInput& input) = 0;
  // Thread-safe (immutable after construction).
  virtual const ModelSummary& summary() const = 0;
};

}  // namespace zi
