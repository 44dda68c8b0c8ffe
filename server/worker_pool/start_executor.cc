#include "server/worker_pool/start_executor.h"

namespace zi::server {

StatusOr<std::unique_ptr<Executor>> start_executor(const EngineOptions& options, WorkerPoolOptions pool) {
  if (options.world_size <= 1) return create_executor(options);
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<WorkerPool> workers, WorkerPool::Spawn(options, std::move(pool)));
  for (;;) {
    std::optional<Status> ready = workers->wait_ready(std::chrono::seconds(5));
    if (!ready) continue;  // still loading
    if (!ready->ok()) return *ready;
    return std::unique_ptr<Executor>(std::move(workers));
  }
}

}  // namespace zi::server
