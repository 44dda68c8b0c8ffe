// create_executor: picks the backend for options.device and checks the options this build can honour.
#include "engine/core/log.h"
#include "engine/model/registry.h"
#include "engine/quant/quantized_weights.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/local_executor.h"
#include "engine/zero/layer_pack.h"
#include "engine/zero/placement.h"
#include "engine/zero/streamed_parameters.h"
#if defined(ZI_WITH_CUDA)
#include "engine/backend/cuda/device_probe.h"
#include "engine/zero/cuda/cuda_executor.h"
#endif

namespace zi {

StatusOr<std::unique_ptr<Executor>> create_executor(const EngineOptions& options) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda")
    return absl::InvalidArgumentError(absl::StrCat("device must be auto, cpu or cuda, got '", options.device, "'"));
#if defined(ZI_WITH_CUDA)
  if (options.device == "cuda") return create_cuda_executor(options);
  if (options.device == "auto") {
    const cuda::DeviceProbe probe = cuda::probe_devices();
    if (probe.device_count > 0) return create_cuda_executor(options);
    ZI_LOG(INFO) << "device auto: no usable GPU (" << probe.driver_error << "), using the CPU backend";
  }
#else
  if (options.device == "cuda")
    return absl::FailedPreconditionError("device cuda: this zeroinfer was built without CUDA (use --device cpu)");
#endif
  // The CPU backend computes in fp32 from weights converted at load; quantized weights (quant_bits 8 or 4) are
  // dequantized block by block into the same fp32 math (engine/quant), so the CPU runs what the GPU runs.
  ZI_ASSIGN_OR_RETURN(const QuantConfig quant,
                      make_quant_config(options.quant_bits, options.quant_group_size, options.quant_embeddings));
  if (options.offload_tier == OffloadTier::kCpu) {
    ZI_LOG(INFO) << "offload tier cpu: weights already live in CPU memory on the CPU backend";
  }
  ParamsLoader loader;
  if (options.offload_tier == OffloadTier::kNvme) {
    // NVMe tier on the CPU: layers past offload.gpu_weights_budget (all of them when 0) are read from the store
    // at every step through the same parameter coordinator the GPU uses, into host slots.
    loader = [options, quant](Backend& be, const ModelConfig& cfg, const Architecture& arch, const Checkpoint* ckpt,
                       uint32_t) -> StatusOr<std::unique_ptr<ParameterSource>> {
      PlacementInput in;
      const DType dt = layer_shard_dtype(be, cfg, arch, ckpt);
      for (int l = 0; l < cfg.num_layers; ++l)
        in.layer_bytes.push_back(layer_layout(cfg, arch, l, dt, 1, quant).bytes);
      in.tier = OffloadTier::kNvme;
      in.gpu_weights_budget = options.gpu_weights_budget ? options.gpu_weights_budget : 1;
      in.prefetch_depth = options.prefetch_depth;
      ZI_ASSIGN_OR_RETURN(Placement placement, plan_placement(in));
      StreamingLoad load;
      load.tiers = placement.layers;
      load.prefetch_depth = options.prefetch_depth;
      load.store_dir = options.offload_dir;
      load.quant = quant;
      auto alloc = make_aligned_host_allocator();
      ZI_ASSIGN_OR_RETURN(std::unique_ptr<StreamedParameters> p,
                          load_streamed_parameters(be, cfg, arch, ckpt, options.dummy_seed, load, *alloc,
                                                   [](const HostShards& s) -> StatusOr<std::unique_ptr<ShardTransport>> {
                                                     return make_host_transport(s, true);
                                                   }));
      return std::unique_ptr<ParameterSource>(std::move(p));
    };
  }
  ZI_ASSIGN_OR_RETURN(auto ex, LocalExecutor::Create(options, make_cpu_backend(static_cast<int>(options.cpu_threads)),
                                                     loader));
  return std::unique_ptr<Executor>(std::move(ex));
}

}  // namespace zi
