// The peak of what this process holds on a GPU over a run, as NVML counts it (memory.gpu_limit's measure): a
// thread of its own reads nvml_process_used_bytes() every `period` (5 ms in bench; allocations that live shorter
// than a period can be missed, which the GPU balloon catches instead). Raw figures: a balloon is included.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "engine/core/status.h"

namespace zi::cuda {

class NvmlPeakSampler {
 public:
  // Takes the first sample before it returns (Unavailable, and no thread, when NVML cannot say), then samples
  // every `period` until stop().
  static StatusOr<std::unique_ptr<NvmlPeakSampler>> start(int device, std::chrono::microseconds period);
  ~NvmlPeakSampler();  // stop()
  NvmlPeakSampler(const NvmlPeakSampler&) = delete;
  NvmlPeakSampler& operator=(const NvmlPeakSampler&) = delete;

  // One last sample, then the thread ends. Idempotent.
  void stop();
  uint64_t peak_bytes() const;  // the largest sample, bytes
  uint64_t samples() const;     // successful reads (a failed read is skipped, not counted)
  // Seconds from the first sample to the last, over samples − 1: the achieved period.
  double mean_interval_seconds() const;

 private:
  NvmlPeakSampler(int device, std::chrono::microseconds period) : device_(device), period_(period) {}
  void sample();
  void loop();

  const int device_;
  const std::chrono::microseconds period_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  uint64_t peak_ = 0;
  uint64_t samples_ = 0;
  std::chrono::steady_clock::time_point first_, last_;
  std::thread thread_;
};

}  // namespace zi::cuda
