// The in-process executor: one model on one Backend, its paged KV cache, and each sequence's state (KV handle, length,
// tokens seen, sampling settings, RNG). create_executor() builds it for the CPU; the CUDA backend plugs in the same
// way with its own Backend.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/io/safetensors.h"
#include "engine/model/config.h"
#include "engine/model/model.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"
#include "engine/model/kv_cache.h"
#include "engine/runtime/sampler.h"
#include "engine/runtime/step_graphs.h"

namespace zi {

class Communicator;
struct Architecture;

// One read of the model folder, shared by everything create_executor builds: config.json and (unless dummy
// weights) the safetensors checkpoint, mapped.
struct ModelFolder {
  ModelConfig config;
  const Architecture* arch = nullptr;      // the registry's entry for config.architecture
  std::unique_ptr<Checkpoint> checkpoint;  // null for dummy weights
};
StatusOr<ModelFolder> open_model_folder(const EngineOptions& options);

// Builds the model's parameters on the backend (default: every layer resident). The CUDA path passes one that
// places layers and streams the rest (engine/zero). `checkpoint` is null for dummy weights.
using ParamsLoader = std::function<StatusOr<std::unique_ptr<ParameterSource>>(
    Backend& backend, const ModelConfig& cfg, const Architecture& arch, const Checkpoint* checkpoint,
    uint32_t max_context)>;

// What a device contributes to an executor (create_executor, the one composition root, assembles them).
struct ExecutorParts {
  std::unique_ptr<Backend> backend;
  ParamsLoader loader;                  // null: every layer resident
  std::shared_ptr<Communicator> comm;   // the ZeRO-3 group (world_size > 1)
};

class LocalExecutor final : public Executor {
 public:
  // Loads `model` (taken: its checkpoint is released once the weights are on the backend) onto `backend`
  // (taken). `comm`: the ZeRO-3 group the loader's parameters gather through (kept alive as long as they are).
  static StatusOr<std::unique_ptr<LocalExecutor>> Create(const EngineOptions& options, ModelFolder model,
                                                         std::unique_ptr<Backend> backend,
                                                         ParamsLoader loader = nullptr,
                                                         std::shared_ptr<Communicator> comm = nullptr);
  ~LocalExecutor() override;

  StatusOr<StepOutput> step(const StepInput& input) override;
  const ModelSummary& summary() const override { return summary_; }

  // Sequences currently held (for tests and stats). Not thread-safe (the driving thread only).
  size_t active_sequences() const { return seqs_.size(); }
  // The paged KV cache (tests: blocks held and freed). The driving thread only.
  const KvCache& kv_cache() const { return *kv_; }
  // Decode-step graphs captured so far (0 when steps run op by op). The driving thread only.
  int captured_step_graphs() const { return graphs_ ? graphs_->captured() : 0; }

 private:
  struct SeqState {
    int slot = -1;                  // KV cache handle (its block table)
    int32_t length = 0;             // tokens in the KV cache
    std::vector<int32_t> history;   // every token appended (prompt + generated): repetition penalty
    SamplingParams sampling;
    SequenceRng rng{0};
  };

  LocalExecutor() = default;
  Status validate(const StepInput& input) const;

  // Declaration order = destruction in reverse: the model and cache go before the backend they live on.
  std::unique_ptr<Backend> backend_;
  std::shared_ptr<Communicator> comm_;  // ZeRO-3 group (N > 1): the parameters' all-gathers use it
  std::unique_ptr<CausalLM> model_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<StepGraphs> graphs_;  // null when every step runs op by op
  std::unordered_map<uint64_t, SeqState> seqs_;
  EngineOptions options_;
  ModelSummary summary_;
};

}  // namespace zi
