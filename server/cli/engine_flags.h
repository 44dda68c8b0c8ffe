// Engine flags shared by generate, bench, serve, plan and convert (DESIGN.md "Engine flags").
// Unset optionals mean "not given on the command line" so that `serve` can let YAML keys stand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/core/status.h"

namespace zi::cli {

struct EngineFlags {
  bool cpu_offload = false;                 // --cpu-offload → offload.tier: cpu
  bool disk_offload = false;                // --disk-offload → offload.tier: nvme
  std::optional<std::string> offload_dir;   // --offload-dir
  std::optional<int> pin_memory;            // --pin-memory [0|1], bare = 1
  std::optional<std::string> gpu_weights_budget;  // --gpu-weights-budget SIZE (e.g. 2GiB)
  std::optional<int> quant_bits;            // --quant_bits 4|8|16
  std::optional<int> quant_group_size;      // --quant_group_size N
  bool quant_embeddings = false;            // --quant-embeddings → quantization.embeddings: true
  bool kv_offload = false;                  // --kv-offload
  std::optional<std::string> kv_cache_bytes;  // --kv-cache-bytes SIZE → kv_cache.max_bytes
  std::optional<std::string> kv_offload_attention;  // --kv-offload-attention → kv_cache.offload_attention
  std::optional<int> num_gpus;              // --num_gpus N
  std::optional<std::string> device;        // --device auto|cpu|cuda
  std::optional<int> max_context;           // --max-context N
};

void add_engine_flags(CLI::App* cmd, EngineFlags* flags);

}  // namespace zi::cli

namespace zi {
struct EngineOptions;
}

namespace zi::cli {

// Applies the flags to engine options (the mapping DESIGN.md gives for the YAML keys); errors name the flag.
Status apply_engine_flags(const EngineFlags& flags, EngineOptions* options);

}  // namespace zi::cli
