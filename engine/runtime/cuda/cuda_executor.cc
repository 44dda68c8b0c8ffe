// create_executor's CUDA pieces: the CUDA backend, the placement (resident layers while they fit, the rest streamed
// from pinned CPU memory or NVMe) and the parameter coordinator over the CUDA transport.
#include "engine/runtime/cuda/cuda_executor.h"

#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/comm/communicator.h"
#include "engine/core/log.h"
#include "engine/io/safetensors.h"
#include "engine/core/compute_dtype.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"
#include "engine/zero/cuda/cuda_transport.h"
#include "engine/zero/cuda/probes.h"
#include "engine/zero/layer_pack.h"
#include "engine/zero/placement.h"
#include "engine/zero/planner/cost_model.h"
#include "engine/runtime/host_memory.h"
#include "engine/zero/streamed_parameters.h"

namespace zi {
namespace {

constexpr uint64_t kGpuMarginBytes = uint64_t{3} << 29;  // 1.5 GiB: cuBLAS workspace, CUDA context, fragmentation

uint64_t bytes_of(const std::vector<WeightSpec>& specs, DType dtype) {
  uint64_t n = 0;
  for (const WeightSpec& s : specs) {
    uint64_t e = 1;
    for (int64_t d : s.shape) e *= static_cast<uint64_t>(d);
    n += e * dtype_size(dtype);
  }
  return n;
}

std::string describe(const Placement& p) {
  std::string out;
  int start = 0;
  for (int l = 1; l <= static_cast<int>(p.layers.size()); ++l) {
    if (l < static_cast<int>(p.layers.size()) && p.layers[l] == p.layers[start]) continue;
    absl::StrAppend(&out, out.empty() ? "" : ", ", l - 1 == start ? absl::StrCat("layer ", start)
                                                                  : absl::StrCat("layers ", start, "-", l - 1),
                    " ", layer_tier_name(p.layers[start]));
    start = l;
  }
  return out;
}

}  // namespace

StatusOr<ExecutorParts> make_cuda_parts(const EngineOptions& options, const ModelConfig& config) {
  CudaBackendOptions bo;
  bo.device = static_cast<int>(options.rank);  // one GPU per rank (CUDA_VISIBLE_DEVICES narrows it further)
  bo.activation_dtype = gpu_compute_dtype(options.dtype, config_dtype(config.dtype));
  bo.offload_attention = options.kv_offload_attention;
  // CPU attention threads: the host's cores shared by the ranks on it.
  bo.host_threads = std::max(1, cpu::default_cpu_threads() / static_cast<int>(std::max<uint32_t>(1, options.world_size)));
  auto backend_or = make_cuda_backend(bo);
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, std::move(backend_or));
  auto* cuda = static_cast<cuda::CudaBackend*>(backend.get());

  ZI_ASSIGN_OR_RETURN(const QuantConfig quant,
                      make_quant_config(options.quant_bits, options.quant_group_size, options.quant_embeddings));
  // ZeRO-3 across GPUs: streamed layers are split into N partitions, gathered over NCCL every step. Layers that
  // stay resident are replicated on every GPU (as DeepSpeed keeps small parameters whole).
  std::shared_ptr<Communicator> comm;
  if (options.world_size > 1) {
    cuda->make_current();
    ZI_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> c,
                        connect_nccl_communicator(options.comm_id, static_cast<int>(options.rank),
                                                  static_cast<int>(options.world_size)));
    comm = std::move(c);
  }

  ParamsLoader loader = [options, cuda, quant, comm](Backend& be, const ModelConfig& cfg, const Architecture& arch,
                                        const Checkpoint* ckpt,
                                        uint32_t max_context) -> StatusOr<std::unique_ptr<ParameterSource>> {
    const DType wdt = layer_shard_dtype(be, cfg, arch, ckpt);
    PlacementInput in;
    for (int l = 0; l < cfg.num_layers; ++l)
      in.layer_bytes.push_back(layer_layout(cfg, arch, l, wdt, options.world_size, quant).partition_bytes *
                               options.world_size);
    GlobalWeights gw;
    std::vector<WeightSpec> gspecs;
    arch.global_weights(cfg, gw, gspecs);
    in.global_bytes = bytes_of(gspecs, wdt);
    const size_t act_size = dtype_size(be.activation_dtype());
    // The paged KV cache takes kv_cache.max_bytes when set (else up to max_batch_size full contexts of what is left:
    // LocalExecutor sizes it after the weights are placed).
    in.kv_cache_bytes = options.kv_offload       ? 0
                        : options.kv_cache_bytes ? options.kv_cache_bytes
                                                 : kv_cache_bytes(cfg.num_layers, options.max_batch_size, max_context,
                                                                  cfg.num_kv_heads, cfg.head_dim, act_size);
    const uint64_t rows = options.max_step_tokens
                              ? std::max<uint64_t>(options.max_step_tokens, options.max_batch_size)
                              : activation_tokens(options.max_batch_size, max_context);
    in.activation_bytes = activation_bytes_for_rows(cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, rows,
                                                    options.max_batch_size, act_size, layer_chunk_rows(cfg));
    const uint64_t free_bytes = cuda->memory_info().device_free;
    in.gpu_memory_bytes = free_bytes > kGpuMarginBytes ? free_bytes - kGpuMarginBytes : 1;
    // memory.gpu_limit counts what the process holds (NVML, context included): what it holds now plus the slack the
    // KV sizing keeps free, and the placement's sum, must stay inside it.
    std::string limit_note;
    if (options.gpu_memory_limit > 0) {
      const int64_t held = cuda->process_device_bytes();
      const uint64_t h = held > 0 ? static_cast<uint64_t>(held) : 0;
      if (options.gpu_memory_limit <= h + kGpuSlackBytes)
        return absl::ResourceExhaustedError(absl::StrCat(
            "memory.gpu_limit ", format_bytes(options.gpu_memory_limit), " (", options.gpu_memory_limit,
            " bytes) cannot hold the minimum: the process holds ", format_bytes(h), " (", h,
            " bytes, CUDA context and workspaces) before any weight, plus ", format_bytes(kGpuSlackBytes),
            " kept free"));
      const uint64_t room = options.gpu_memory_limit - h - kGpuSlackBytes;
      if (room < in.gpu_memory_bytes) {
        in.gpu_memory_bytes = room;
        limit_note = absl::StrCat("memory.gpu_limit ", format_bytes(options.gpu_memory_limit), " (the process holds ",
                                  format_bytes(h), " before weights, ", format_bytes(kGpuSlackBytes),
                                  " kept free): ");
      }
    }
    in.tier = options.offload_tier;
    in.gpu_weights_budget = options.gpu_weights_budget;
    in.prefetch_depth = options.prefetch_depth;
    if (in.prefetch_depth == 0 && options.offload_tier != OffloadTier::kNone) {
      // The automatic ring is sized in seconds of copy: measure this link (256 MiB, ~0.05 s).
      StatusOr<double> rate = cuda::probe_h2d_bandwidth(cuda->device(), size_t{256} << 20, 3);
      if (rate.ok()) in.h2d_bytes_per_second = *rate;
      else ZI_LOG(WARNING) << "host→device probe failed (" << rate.status() << "); the ring assumes 25 GB/s";
    }
    in.num_ranks = options.world_size;
    StatusOr<Placement> placed = plan_placement(in);
    if (!placed.ok())
      return Status(placed.status().code(), absl::StrCat(limit_note, placed.status().message()));
    const Placement& placement = *placed;
    // memory.host_limit: pinned weights of the CPU tier (or the NVMe tier's staging slots) and a host KV cache.
    {
      const uint64_t limit = resolve_host_limit(options.host_memory_limit);
      const uint64_t kv_host =
          !options.kv_offload ? 0
          : options.kv_cache_bytes ? options.kv_cache_bytes
                                   : kv_cache_bytes(cfg.num_layers, options.max_batch_size, max_context,
                                                    cfg.num_kv_heads, cfg.head_dim, act_size);
      const uint64_t weights_host = placement.host_bytes_per_rank + (placement.disk_bytes_per_rank ? placement.ring_bytes : 0);
      if (limit > 0 && weights_host + kv_host > limit)
        return absl::ResourceExhaustedError(absl::StrCat(
            "memory.host_limit ", format_bytes(limit), " (", limit, " bytes", options.host_memory_limit ? "" : ", MemAvailable",
            ") cannot hold ", format_bytes(weights_host + kv_host), " (", weights_host + kv_host,
            " bytes): streamed weights ", format_bytes(weights_host), " + KV cache ", format_bytes(kv_host),
            "; raise it, stream from NVMe (offload.tier: nvme) or lower server.max_batch_size"));
    }
    ZI_LOG(INFO) << "placement: " << describe(placement) << "; ring of " << placement.prefetch_depth
                 << " slots; resident weights "
                 << format_bytes(placement.resident_weight_bytes) << ", streamed per step "
                 << format_bytes(placement.streamed_bytes_per_step) << ", ring " << format_bytes(placement.ring_bytes)
                 << ", KV cache " << format_bytes(in.kv_cache_bytes) << ", GPU free " << format_bytes(free_bytes);
    if (placement.num_streamed == 0) {
      return load_resident_parameters(be, cfg, arch, ckpt, options.dummy_seed, quant);
    }
    StreamingLoad load;
    load.tiers = placement.layers;
    load.prefetch_depth = placement.prefetch_depth;
    load.rank = options.rank;
    load.num_ranks = options.world_size;
    load.store_dir = options.offload_dir;
    load.quant = quant;
    load.comm = comm.get();
    auto host_alloc = cuda::make_cuda_host_allocator(options.pin_memory);
    cuda::CudaTransportOptions topts;
    topts.aio_block_size = options.aio_block_size;
    topts.aio_queue_depth = options.aio_queue_depth;
    ZI_ASSIGN_OR_RETURN(
        std::unique_ptr<StreamedParameters> params,
        load_streamed_parameters(be, cfg, arch, ckpt, options.dummy_seed, load, *host_alloc,
                                 [cuda, topts](const HostShards& s) { return cuda::make_cuda_transport(*cuda, s, topts); }));
    return std::unique_ptr<ParameterSource>(std::move(params));
  };
  return ExecutorParts{std::move(backend), std::move(loader), std::move(comm)};
}

}  // namespace zi
