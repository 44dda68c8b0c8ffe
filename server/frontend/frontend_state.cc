#include "server/frontend/frontend_state.h"

namespace zi::server {

void FrontendState::set_runtime(ServingRuntime runtime) {
  std::lock_guard<std::mutex> lock(mu_);
  runtime_ = std::make_shared<const ServingRuntime>(std::move(runtime));
}

std::shared_ptr<const ServingRuntime> FrontendState::runtime() const {
  std::lock_guard<std::mutex> lock(mu_);
  return runtime_;
}

void FrontendState::set_limits(const RequestLimits& limits) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!runtime_) return;
  auto next = std::make_shared<ServingRuntime>(*runtime_);
  next->limits = limits;
  runtime_ = std::move(next);
}

Status FrontendState::check_lowered_queue_bound(const Scheduler& scheduler) const {
  const uint32_t cap = max_queue_.load();
  if (cap == 0) return absl::OkStatus();
  const size_t running = scheduler.running();
  const size_t in_flight = scheduler.in_flight();
  const size_t waiting = in_flight > running ? in_flight - running : 0;
  if (waiting < cap) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrFormat("request queue is full: %u requests waiting (server.max_queue = %u)", waiting, cap));
}

void FrontendState::set_auth_token(std::optional<std::string> token) {
  std::lock_guard<std::mutex> lock(mu_);
  auth_token_ = token ? std::make_shared<const std::string>(std::move(*token)) : nullptr;
}

std::shared_ptr<const std::string> FrontendState::auth_token() const {
  std::lock_guard<std::mutex> lock(mu_);
  return auth_token_;
}

uint64_t FrontendState::random_u64() {
  std::lock_guard<std::mutex> lock(mu_);
  return rng_();
}

}  // namespace zi::server
