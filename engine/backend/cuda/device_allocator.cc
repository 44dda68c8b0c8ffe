#include "engine/backend/cuda/device_allocator.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>

#include "engine/backend/cuda/cuda_check.h"

namespace zi::cuda {

std::shared_ptr<DeviceAllocator> DeviceAllocator::create(int device) {
  return std::shared_ptr<DeviceAllocator>(new DeviceAllocator(device));
}

DeviceAllocator::~DeviceAllocator() {
  // At process exit the runtime may already be unloading: errors here are ignored on purpose.
  std::lock_guard<std::mutex> lock(mu_);
  int prev = -1;
  if (cudaGetDevice(&prev) == cudaSuccess && prev != device_) cudaSetDevice(device_);
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) cudaFree(p);
  free_.clear();
  if (prev >= 0 && prev != device_) cudaSetDevice(prev);
  cudaGetLastError();
}

size_t DeviceAllocator::round_size(size_t bytes) {
  bytes = std::max<size_t>(bytes, 1);
  constexpr size_t kSmall = size_t{1} << 20;
  if (bytes < kSmall) return (bytes + 511) & ~size_t{511};
  const size_t pow2 = std::bit_floor(bytes);  // largest power of two ≤ bytes
  const size_t step = pow2 / 16;
  return (bytes + step - 1) / step * step;
}

StatusOr<std::shared_ptr<void>> DeviceAllocator::allocate(size_t bytes) {
  const size_t rounded = round_size(bytes);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(rounded);
    if (it != free_.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
      stats_.bytes_cached -= rounded;
    } else {
      int prev = -1;
      cudaGetDevice(&prev);
      if (prev != device_) cudaSetDevice(device_);
      cudaError_t err = cudaMalloc(&ptr, rounded);
      if (err == cudaErrorMemoryAllocation && stats_.bytes_cached > 0) {
        cudaGetLastError();
        free_cached_locked();
        err = cudaMalloc(&ptr, rounded);
      }
      if (err != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cudaGetLastError();
        if (prev >= 0 && prev != device_) cudaSetDevice(prev);
        return Status(err == cudaErrorMemoryAllocation ? absl::StatusCode::kResourceExhausted
                                                       : absl::StatusCode::kInternal,
                      absl::StrCat("GPU ", device_, ": cannot allocate ", rounded, " bytes (", cudaGetErrorName(err),
                                   "); device free ", free_b, " of ", total_b, " bytes, this allocator holds ",
                                   stats_.bytes_in_use, " in use + ", stats_.bytes_cached, " cached"));
      }
      if (prev >= 0 && prev != device_) cudaSetDevice(prev);
      ++stats_.device_mallocs;
    }
    stats_.bytes_in_use += rounded;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    ++stats_.allocations;
  }
  std::shared_ptr<DeviceAllocator> self = shared_from_this();
  return std::shared_ptr<void>(ptr, [self, rounded](void* p) { self->give_back(p, rounded); });
}

void DeviceAllocator::give_back(void* ptr, size_t rounded) {
  std::lock_guard<std::mutex> lock(mu_);
  free_[rounded].push_back(ptr);
  stats_.bytes_in_use -= rounded;
  stats_.bytes_cached += rounded;
}

void DeviceAllocator::free_cached_locked() {
  int prev = -1;
  cudaGetDevice(&prev);
  if (prev != device_) cudaSetDevice(device_);
  // Blocks in the cache may still be used by queued kernels (see the header): wait for them before freeing.
  cudaDeviceSynchronize();
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) cudaFree(p);
  free_.clear();
  stats_.bytes_cached = 0;
  if (prev >= 0 && prev != device_) cudaSetDevice(prev);
  cudaGetLastError();
}

void DeviceAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  free_cached_locked();
}

AllocatorStats DeviceAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace zi::cuda
