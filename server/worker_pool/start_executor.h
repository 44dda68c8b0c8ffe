// The executor a command line runs (generate, bench): one rank in-process (create_executor), N ranks as `serve`
// runs them, N worker processes driven through the worker pool. Blocks until the model is loaded.
#pragma once

#include <memory>

#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"
#include "server/worker_pool/worker_pool.h"

namespace zi::server {

StatusOr<std::unique_ptr<Executor>> start_executor(const EngineOptions& options, WorkerPoolOptions pool);

}  // namespace zi::server
