// The CUDA pieces of an executor (create_executor assembles them): the CUDA backend on GPU `rank`, the NCCL group
// (world_size > 1) and the loader that places layers (resident while they fit, the rest streamed from pinned CPU
// memory or NVMe through the CUDA transport).
#pragma once

#include "engine/runtime/engine_options.h"
#include "engine/runtime/local_executor.h"

namespace zi {

StatusOr<ExecutorParts> make_cuda_parts(const EngineOptions& options, const ModelConfig& config);

}  // namespace zi
