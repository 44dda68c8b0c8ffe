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
  for (void* p : graph_blocks_) cudaFree(p);
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

StatusOr<void*> DeviceAllocator::take_locked(size_t rounded, bool graph) {
  if (graph) {
    // The pool's own blocks first; else a block from the main cache (or cudaMalloc) joins the pool for good.
    auto it = graph_free_.find(rounded);
    if (it != graph_free_.end() && !it->second.empty()) {
      void* ptr = it->second.back();
      it->second.pop_back();
      return ptr;
    }
  }
  void* ptr = nullptr;
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
    // Freeing the cache synchronises the device, which a capture in progress cannot survive: fail the capture
    // instead (the executor then runs the step eagerly).
    if (err == cudaErrorMemoryAllocation && stats_.bytes_cached > 0 && !graph) {
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
  if (graph) {
    graph_blocks_.push_back(ptr);
    stats_.graph_pool_bytes += rounded;
  }
  return ptr;
}

StatusOr<std::shared_ptr<void>> DeviceAllocator::allocate(size_t bytes) {
  const size_t rounded = round_size(bytes);
  void* ptr = nullptr;
  bool graph = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    graph = graph_thread_ != std::thread::id() && graph_thread_ == std::this_thread::get_id();
    ZI_ASSIGN_OR_RETURN(ptr, take_locked(rounded, graph));
    stats_.bytes_in_use += rounded;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    ++stats_.allocations;
  }
  std::shared_ptr<DeviceAllocator> self = shared_from_this();
  return std::shared_ptr<void>(ptr, [self, rounded, graph](void* p) { self->give_back(p, rounded, graph); });
}

void DeviceAllocator::give_back(void* ptr, size_t rounded, bool graph) {
  std::lock_guard<std::mutex> lock(mu_);
  (graph ? graph_free_ : free_)[rounded].push_back(ptr);
  stats_.bytes_in_use -= rounded;
  if (!graph) stats_.bytes_cached += rounded;
}

void DeviceAllocator::begin_graph_pool() {
  std::lock_guard<std::mutex> lock(mu_);
  ZI_CHECK(graph_thread_ == std::thread::id());
  graph_thread_ = std::this_thread::get_id();
}

void DeviceAllocator::end_graph_pool() {
  std::lock_guard<std::mutex> lock(mu_);
  graph_thread_ = std::thread::id();
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
