// memory.gpu_limit made real for a measurement (bench --gpu-memory-limit-enforce, the limit's GPU test): a device
// allocation that takes all the free memory but what the limit leaves this process, so that anything the process
// asks for beyond the limit fails with out-of-memory instead of quietly using the rest of the card.
// NVML counts the balloon as the process's own: CudaBackend::process_device_bytes() subtracts balloon_bytes(), and
// so must anyone who reads nvml_process_used_bytes() while one is inflated.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/core/status.h"

namespace zi::cuda {

class GpuBalloon {
 public:
  // Takes free − (limit_bytes − held) bytes of device `device` (rounded up to 2 MiB, the driver's page), held being
  // what this process holds there now as NVML counts it (the device's used bytes when NVML cannot say, which also
  // counts other processes and so leaves less). ResourceExhausted naming the bytes when limit_bytes < held; an
  // empty balloon when the limit leaves the process more than the device has free.
  static StatusOr<std::unique_ptr<GpuBalloon>> inflate(int device, uint64_t limit_bytes);
  ~GpuBalloon();  // frees it
  GpuBalloon(const GpuBalloon&) = delete;
  GpuBalloon& operator=(const GpuBalloon&) = delete;

  uint64_t bytes() const { return bytes_; }
  uint64_t held_before() const { return held_; }  // the process's bytes when it was inflated (NVML or fallback)
  int device() const { return device_; }

 private:
  GpuBalloon(int device, uint64_t held) : device_(device), held_(held) {}
  int device_;
  uint64_t held_;
  uint64_t bytes_ = 0;
  std::vector<void*> chunks_;  // cudaMalloc'd pieces of at most 1 GiB (one huge block may not be available)
};

// Bytes the live balloons of this process hold on `device`: part of NVML's per-process figure that the engine
// did not ask for.
uint64_t balloon_bytes(int device);

}  // namespace zi::cuda
