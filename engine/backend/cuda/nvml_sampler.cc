#include "engine/backend/cuda/nvml_sampler.h"

#include <cuda_runtime_api.h>

#include <algorithm>

#include "engine/backend/cuda/nvml.h"

namespace zi::cuda {

StatusOr<std::unique_ptr<NvmlPeakSampler>> NvmlPeakSampler::start(int device, std::chrono::microseconds period) {
  // NVML lists a process on a device once it has a context there: make it (the run would anyway), leaving the
  // calling thread's current device as it was.
  int prev = -1;
  if (cudaGetDevice(&prev) == cudaSuccess && cudaSetDevice(device) == cudaSuccess) {
    cudaFree(nullptr);
    cudaSetDevice(prev);
  }
  cudaGetLastError();
  StatusOr<uint64_t> first = nvml_process_used_bytes(device);
  if (!first.ok()) return first.status();
  const auto p = std::max(period, std::chrono::microseconds(100));  // NVML's query takes ~0.1-1 ms itself
  auto s = std::unique_ptr<NvmlPeakSampler>(new NvmlPeakSampler(device, p));
  s->peak_ = *first;
  s->samples_ = 1;
  s->first_ = s->last_ = std::chrono::steady_clock::now();
  s->thread_ = std::thread([p = s.get()] { p->loop(); });
  return s;
}

NvmlPeakSampler::~NvmlPeakSampler() { stop(); }

void NvmlPeakSampler::sample() {
  StatusOr<uint64_t> b = nvml_process_used_bytes(device_);
  if (!b.ok()) return;  // a transient failure: the peak is over the reads that worked
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = std::max(peak_, *b);
  ++samples_;
  last_ = now;
}

void NvmlPeakSampler::loop() {
  // Deadlines a period apart (not a sleep after each read), so the read's own time does not stretch the period.
  auto next = std::chrono::steady_clock::now() + period_;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (wake_.wait_until(lock, next, [this] { return stopping_; })) return;
    }
    sample();
    next = std::max(next + period_, std::chrono::steady_clock::now());
  }
}

void NvmlPeakSampler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  sample();  // the state at the end of the run
}

uint64_t NvmlPeakSampler::peak_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

uint64_t NvmlPeakSampler::samples() const {
  std::lock_guard<std::mutex> lock(mu_);
  return samples_;
}

double NvmlPeakSampler::mean_interval_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return samples_ > 1 ? std::chrono::duration<double>(last_ - first_).count() / static_cast<double>(samples_ - 1) : 0;
}

}  // namespace zi::cuda
