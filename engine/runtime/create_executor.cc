// create_executor: picks the backend for options.device and checks the options this build can honour.
#include "engine/core/log.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/local_executor.h"

namespace zi {

StatusOr<std::unique_ptr<Executor>> create_executor(const EngineOptions& options) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda")
    return absl::InvalidArgumentError(absl::StrCat("device must be auto, cpu or cuda, got '", options.device, "'"));
  if (options.device == "cuda")
    return absl::UnimplementedError("device cuda: this build's executor has no CUDA backend yet (use --device cpu)");
  // The CPU backend computes in fp32 from weights converted at load: quantization and weight streaming are GPU
  // features; the options that would change results or need them are refused, the rest are no-ops on the CPU.
  if (options.quant_bits != 16)
    return absl::UnimplementedError(absl::StrCat("quant_bits ", options.quant_bits,
                                                 ": quantized weights are not available on the CPU backend"));
  if (options.offload_tier == OffloadTier::kNvme)
    return absl::UnimplementedError("offload tier nvme is not available on the CPU backend");
  if (options.offload_tier == OffloadTier::kCpu) {
    ZI_LOG(INFO) << "offload tier cpu: weights already live in CPU memory on the CPU backend";
  }
  ZI_ASSIGN_OR_RETURN(auto ex, LocalExecutor::Create(options, make_cpu_backend(static_cast<int>(options.cpu_threads))));
  return std::unique_ptr<Executor>(std::move(ex));
}

}  // namespace zi
