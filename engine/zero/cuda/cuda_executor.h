// The executor for device cuda (see create_executor): CUDA backend + placement + weight streaming.
#pragma once

#include <memory>

#include "engine/runtime/engine_options.h"

namespace zi {

StatusOr<std::unique_ptr<Executor>> create_cuda_executor(const EngineOptions& options);

}  // namespace zi
