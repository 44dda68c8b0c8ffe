// What the process holds on a GPU over a measurement, as NVML counts it (memory.gpu_limit's measure), and with
// `enforce` the limit made real by a balloon (engine/backend/cuda/gpu_balloon.h): bench --gpu-memory-limit-enforce
// and the limit's GPU test. No CUDA types here: the CPU-only build has it too, refuses `enforce` and reports the
// peak as unavailable.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "engine/core/status.h"

namespace zi {

struct GpuMemoryWatchOptions {
  int device = 0;                                 // CUDA device ordinal
  uint64_t limit_bytes = 0;                       // memory.gpu_limit; > 0 when enforce
  bool enforce = false;                           // inflate the balloon before sampling starts
  std::chrono::microseconds period{5000};         // NVML sampling period: 5 ms
};

class GpuMemoryWatch {
 public:
  // Inflates the balloon (with enforce: errors when there is no CUDA or GPU, the limit is 0, or the process holds
  // more than the limit already), then starts the sampler. NVML being unavailable is no error: peak_bytes() is
  // then empty and unavailable_reason() says why.
  static StatusOr<std::unique_ptr<GpuMemoryWatch>> start(const GpuMemoryWatchOptions& options);
  ~GpuMemoryWatch();  // stops sampling and frees the balloon

  // Ends sampling (the run is over); the balloon stays until destruction. Idempotent.
  void stop_sampling();
  uint64_t balloon_bytes() const;
  // The process's NVML peak since start() less the balloon (bytes; what memory.gpu_limit is compared with), or
  // empty when NVML could not be read.
  std::optional<uint64_t> peak_bytes() const;
  const std::string& unavailable_reason() const;
  uint64_t samples() const;
  double mean_interval_seconds() const;  // the sampling period achieved

  struct Impl;

 private:
  explicit GpuMemoryWatch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zi
