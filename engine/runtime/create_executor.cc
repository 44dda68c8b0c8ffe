// create_executor: the one composition root. It reads the model folder once, picks the device, takes that device's
// pieces (backend, ZeRO-3 group, parameter loader) and assembles them into a LocalExecutor; nothing else builds an
// executor.
#include "engine/comm/communicator.h"
#include "engine/core/log.h"
#include "engine/model/registry.h"
#include "engine/model/weights.h"
#include "engine/model/quantized_weights.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/local_executor.h"
#include "engine/zero/layer_pack.h"
#include "engine/zero/placement.h"
#include "engine/zero/streamed_parameters.h"
#if defined(ZI_WITH_CUDA)
#include "engine/backend/cuda/device_probe.h"
#include "engine/runtime/cuda/cuda_executor.h"
#endif

namespace zi {

namespace {

// The device create_executor builds for: cuda when asked, or for auto when a usable GPU is present.
StatusOr<Device> resolve_device(Device device, bool log) {
#if defined(ZI_WITH_CUDA)
  if (device != Device::kAuto) return device;
  const cuda::DeviceProbe probe = cuda::probe_devices();
  if (probe.device_count > 0) return Device::kCuda;
  if (log) {
    ZI_LOG(INFO) << "device auto: no usable GPU (" << probe.driver_error << "), using the CPU backend";
  }
  return Device::kCpu;
#else
  (void)log;
  if (device == Device::kCuda)
    return absl::FailedPreconditionError("device cuda: this zeroinfer was built without CUDA (use --device cpu)");
  return Device::kCpu;
#endif
}

// memory.host_limit on the CPU backend, when set: every weight (dense ones converted to fp32, packed ones kept) and
// the KV cache (fp32, max_batch_size full contexts unless kv_cache.max_bytes) live in host memory.
Status check_cpu_host_limit(const EngineOptions& options, const ModelFolder& model) {
  if (options.host_memory_limit == 0) return absl::OkStatus();
  const ModelConfig& cfg = model.config;
  ZI_ASSIGN_OR_RETURN(const QuantConfig quant,
                      make_quant_config(options.quant_bits, options.quant_group_size, options.quant_embeddings));
  uint64_t weights = 0;
  for (int l = 0; l < cfg.num_layers; ++l) weights += layer_layout(cfg, *model.arch, l, DType::kF32, 1, quant).bytes;
  GlobalWeights g;
  std::vector<WeightSpec> specs;
  model.arch->global_weights(cfg, g, specs);
  for (const WeightSpec& s : specs) {
    uint64_t e = 4;
    for (int64_t d : s.shape) e *= static_cast<uint64_t>(d);
    weights += e;
  }
  const uint64_t ctx = options.max_context ? options.max_context : static_cast<uint64_t>(cfg.default_max_context);
  const uint64_t kv = options.kv_cache_bytes ? options.kv_cache_bytes
                                             : kv_cache_bytes(cfg.num_layers, options.max_batch_size, ctx,
                                                              cfg.num_kv_heads, cfg.head_dim, 4);
  if (weights + kv > options.host_memory_limit)
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory.host_limit ", format_bytes(options.host_memory_limit), " (", options.host_memory_limit,
        " bytes) cannot hold the model on the CPU backend: weights ", format_bytes(weights), " (", weights,
        " bytes) + KV cache ", format_bytes(kv), " (", kv, " bytes) = ", weights + kv, " bytes"));
  return absl::OkStatus();
}

StatusOr<ExecutorParts> make_cpu_parts(const EngineOptions& options) {
  // The CPU backend computes in fp32 from weights converted at load; quantized weights (quant_bits 8 or 4) are
  // dequantized block by block into the same fp32 math (engine/quant), so the CPU runs what the GPU runs.
  ZI_ASSIGN_OR_RETURN(const QuantConfig quant,
                      make_quant_config(options.quant_bits, options.quant_group_size, options.quant_embeddings));
  if (options.offload_tier == OffloadTier::kCpu) {
    ZI_LOG(INFO) << "offload tier cpu: weights already live in CPU memory on the CPU backend";
  }
  // ZeRO-3 over CPU worker processes: every layer is split into N partitions, each rank keeps its own in host
  // memory (or reads it from its store file) and the communicator gathers the rest every step: shared memory on
  // one host, Gloo over TCP across hosts (the id rank 0 made says which).
  std::shared_ptr<Communicator> comm;
  if (options.world_size > 1) {
    const int rank = static_cast<int>(options.rank), world = static_cast<int>(options.world_size);
    ZI_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> c,
                        options.comm_id.rfind("gloo:", 0) == 0
                            ? connect_gloo_communicator(options.comm_id, rank, world, options.gloo)
                            : connect_shm_communicator(options.comm_id, rank, world));
    comm = std::move(c);
  }
  ParamsLoader loader;
  if (options.offload_tier == OffloadTier::kNvme || options.world_size > 1) {
    // NVMe tier on the CPU: layers past offload.gpu_weights_budget (all of them when 0) are read from the store
    // at every step through the same parameter coordinator the GPU uses, into host slots.
    loader = [options, quant, comm](Backend& be, const ModelConfig& cfg, const Architecture& arch,
                                    const Checkpoint* ckpt, uint32_t) -> StatusOr<std::unique_ptr<ParameterSource>> {
      StreamingLoad load;
      if (options.offload_tier == OffloadTier::kNvme) {
        PlacementInput in;
        const DType dt = layer_shard_dtype(be, cfg, arch, ckpt);
        for (int l = 0; l < cfg.num_layers; ++l)
          in.layer_bytes.push_back(layer_layout(cfg, arch, l, dt, options.world_size, quant).partition_bytes *
                                   options.world_size);
        in.tier = OffloadTier::kNvme;
        in.gpu_weights_budget = options.gpu_weights_budget ? options.gpu_weights_budget : 1;
        in.prefetch_depth = options.prefetch_depth;
        in.num_ranks = options.world_size;
        ZI_ASSIGN_OR_RETURN(Placement placement, plan_placement(in));
        load.tiers = placement.layers;
        load.prefetch_depth = placement.prefetch_depth;
      } else {
        load.tiers.assign(cfg.num_layers, LayerTier::kCpu);
        load.prefetch_depth = options.prefetch_depth ? options.prefetch_depth : 2;
      }
      load.store_dir = options.offload_dir;
      load.quant = quant;
      load.rank = options.rank;
      load.num_ranks = options.world_size;
      load.comm = comm.get();
      auto alloc = make_aligned_host_allocator();
      ZI_ASSIGN_OR_RETURN(std::unique_ptr<StreamedParameters> p,
                          load_streamed_parameters(be, cfg, arch, ckpt, options.dummy_seed, load, *alloc,
                                                   [](const HostShards& s) -> StatusOr<std::unique_ptr<ShardTransport>> {
                                                     return make_host_transport(s, true);
                                                   }));
      return std::unique_ptr<ParameterSource>(std::move(p));
    };
  }
  return ExecutorParts{make_cpu_backend(static_cast<int>(options.cpu_threads)), std::move(loader), std::move(comm)};
}

}  // namespace

StatusOr<std::string> create_comm_id(const EngineOptions& options) {
  ZI_ASSIGN_OR_RETURN(const Device device, resolve_device(options.device, /*log=*/false));
#if defined(ZI_WITH_CUDA)
  if (device == Device::kCuda) return create_nccl_comm_id();
#endif
  (void)device;
  if (options.cpu_communicator == CpuCommunicator::kGloo) return create_gloo_comm_id();
  return create_shm_comm_id(static_cast<int>(options.world_size));
}

StatusOr<std::unique_ptr<Executor>> create_executor(const EngineOptions& options) {
  ZI_ASSIGN_OR_RETURN(const Device device, resolve_device(options.device, /*log=*/true));
  ZI_ASSIGN_OR_RETURN(ModelFolder model, open_model_folder(options));
  ExecutorParts parts;
#if defined(ZI_WITH_CUDA)
  if (device == Device::kCuda) {
    ZI_ASSIGN_OR_RETURN(parts, make_cuda_parts(options, model.config));
  }
#endif
  if (device == Device::kCpu) {
    ZI_RETURN_IF_ERROR(check_cpu_host_limit(options, model));
    ZI_ASSIGN_OR_RETURN(parts, make_cpu_parts(options));
  }
  ZI_ASSIGN_OR_RETURN(auto ex, LocalExecutor::Create(options, std::move(model), std::move(parts.backend),
                                                     std::move(parts.loader), std::move(parts.comm)));
  return std::unique_ptr<Executor>(std::move(ex));
}

}  // namespace zi
