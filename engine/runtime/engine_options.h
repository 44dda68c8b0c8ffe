// Everything needed to build an Executor for one rank: from YAML + flags (serve) or flags alone (generate, bench),
// through one binder (server/config/knobs.h). Only runtime and what sits above it see this struct: the layers
// below take the few fields they need as arguments.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/backend/backend.h"
#include "engine/comm/communicator.h"
#include "engine/core/compute_dtype.h"
#include "engine/core/enum_names.h"
#include "engine/core/status.h"
#include "engine/runtime/executor.h"
#include "engine/zero/placement.h"

namespace zi {

// device: auto = CUDA when a usable GPU is present, else the CPU backend.
enum class Device : uint8_t { kAuto, kCpu, kCuda };
inline constexpr std::array<EnumName<Device>, 3> kDeviceNames{
    {{Device::kAuto, "auto"}, {Device::kCpu, "cpu"}, {Device::kCuda, "cuda"}}};

struct EngineOptions {
  std::string model_dir;               // Hugging Face folder: config.json, *.safetensors, tokenizer.json
  std::string served_name;             // default: the folder's name
  Device device = Device::kAuto;
  ComputeDtype dtype = ComputeDtype::kAuto;  // compute dtype on the GPU
  uint32_t max_context = 0;            // 0 = from config.json (BLOOM: seq_length, else 2048)
  uint32_t max_batch_size = 16;        // sequences per step the executor must hold KV cache for (0 in a config
                                       // = auto: the throughput planner chooses it before anything is built)
  // Rows the largest step may carry: the activation reserve is sized for it (0 = max_batch_size × context, at
  // most 65536). The throughput planner sets it to its prefill step budget.
  uint32_t max_step_tokens = 0;
  // memory.gpu_limit: bytes this process may hold on each GPU, CUDA context included (NVML's per-process figure);
  // 0 = the whole card. memory.host_limit: pinned + pageable host bytes for weights and KV cache; 0 = MemAvailable
  // at start.
  uint64_t gpu_memory_limit = 0;
  uint64_t host_memory_limit = 0;
  bool dummy_weights = false;          // random weights from config.json alone (bench --dummy)
  uint64_t dummy_seed = 0;
  // Offload / ZeRO-3.
  OffloadTier offload_tier = OffloadTier::kNone;
  std::string offload_dir = "/var/lib/zeroinfer/offload";
  bool pin_memory = true;
  uint64_t gpu_weights_budget = 0;     // bytes; 0 = as many layers as fit
  uint32_t prefetch_depth = 0;          // streaming ring slots; 0 = auto (engine/zero/placement.h)
  uint64_t aio_block_size = 1 << 20;
  uint32_t aio_queue_depth = 8;
  // Quantization.
  uint32_t quant_bits = 16;            // 16 = off
  uint32_t quant_group_size = 64;
  bool quant_embeddings = false;       // quantization.embeddings: the LM head is quantized too
  // KV cache (paged: engine/model/kv_cache.h).
  // CUDA: decode steps of fully resident models replay CUDA graphs (engine/runtime/step_graphs.h) unless set.
  bool enforce_eager = false;
  bool kv_offload = false;             // CUDA: blocks in pinned host memory, read over PCIe (CPU backend: no-op)
  uint64_t kv_cache_bytes = 0;         // 0 = GPU: the device memory left after weights, ring and activations;
                                       //     host (CPU backend or KV offload): max_batch_size full contexts
  uint32_t kv_block_size = 16;         // tokens per KV block
  // KV offload: who computes decode attention over the host cache (engine/backend/cuda/offload_attention.h).
  KvOffloadAttention kv_offload_attention = KvOffloadAttention::kAuto;
  // Ranks.
  uint32_t rank = 0;
  uint32_t world_size = 1;
  // CPU backend, world_size > 1: how the ranks gather (the coordinator resolves auto before a worker sees it).
  CpuCommunicator cpu_communicator = CpuCommunicator::kAuto;
  // world_size > 1: the group's id from rank 0 (engine/comm/communicator.h), filled in by the worker process.
  std::string comm_id;
  // A "gloo:" group: its rendezvous store and this rank's address, filled in by the worker process (not sent).
  GlooCommOptions gloo;
  // Test/debug: sleep this long in every step (lets serving tests observe in-flight streams without races).
  uint32_t debug_step_delay_ms = 0;
  // CPU backend threads per executor (0 = the cores this process may use, or ZI_CPU_THREADS when set).
  uint32_t cpu_threads = 0;
};

// Builds the executor for `options.device` (cpu, or cuda when built with it and a GPU is present).
StatusOr<std::unique_ptr<Executor>> create_executor(const EngineOptions& options);

// Rank 0 of a group of options.world_size > 1: makes the communicator id the other ranks join with (NCCL for
// the CUDA backend; for the CPU backend Gloo when cpu_communicator is gloo, else shared memory), for the device
// create_executor would pick.
StatusOr<std::string> create_comm_id(const EngineOptions& options);

}  // namespace zi
