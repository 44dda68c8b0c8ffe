// A caching allocator for device memory: blocks are rounded up to a size class and, when their last Tensor handle
// goes, returned to a free list of that class instead of cudaFree, so the per-step activations of a forward cost a
// mutex and a vector pop instead of cudaMalloc/cudaFree (which synchronise the device).
//
// Stream ordering: a block is handed back to the free list as soon as the host drops its last handle, possibly
// while kernels that use it are still queued. That is safe for work on ONE stream (the backend's compute stream):
// the next user of the block is enqueued after those kernels. Memory that another stream (a copy stream) reads or
// writes must either stay referenced until that stream's work is known to be done, or be ordered by an event the
// compute stream waits on before the block is dropped — see stream.h.
//
// Size classes: < 1 MiB rounds up to 512 B; larger sizes round up to 1/16 of their power of two (≤ 6.25 % waste),
// so a layer's weights of slightly different shapes and activations of varying token counts share few classes.
// When cudaMalloc fails the allocator synchronises the device, frees every cached block and tries once more.
// Thread-safe (the deleters may run on any thread).
//
// Graph pool: a captured CUDA graph (CudaBackend::capture) bakes the addresses of the memory its ops use into every
// replay, so that memory must never be handed to anyone else. Blocks allocated by the capturing thread between
// begin_graph_pool() and end_graph_pool() belong to the pool for good: when dropped they go back to the pool's own
// free lists, which only later captures draw from, and release_cached() never frees them. All graphs share the
// pool: they replay one at a time on the compute stream, and a graph's outputs stay referenced by their owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/core/status.h"

namespace zi::cuda {

struct AllocatorStats {
  size_t bytes_in_use = 0;       // rounded bytes held by live handles
  size_t bytes_cached = 0;       // rounded bytes in free lists
  size_t peak_bytes_in_use = 0;
  uint64_t device_mallocs = 0;   // cudaMalloc calls made (a cache hit makes none)
  uint64_t allocations = 0;      // allocate() calls that succeeded
  size_t graph_pool_bytes = 0;   // rounded bytes owned by the graph pool (in use or free)
};

class DeviceAllocator : public std::enable_shared_from_this<DeviceAllocator> {
 public:
  // Use create(): handles keep the allocator alive through a shared_ptr captured by their deleters.
  static std::shared_ptr<DeviceAllocator> create(int device);
  ~DeviceAllocator();
  DeviceAllocator(const DeviceAllocator&) = delete;
  DeviceAllocator& operator=(const DeviceAllocator&) = delete;

  // At least `bytes` (≥ 1) of device memory, 256-byte aligned. Dropping the last copy of the handle returns the block
  // to the cache. kResourceExhausted names the size, the device's free memory and the bytes this allocator holds.
  StatusOr<std::shared_ptr<void>> allocate(size_t bytes);
  // cudaFree every cached block (after a device synchronise). Blocks in use are untouched.
  void release_cached();
  AllocatorStats stats() const;
  // The calling thread's allocations come from, and return to, the graph pool until end_graph_pool().
  void begin_graph_pool();
  void end_graph_pool();
  int device() const { return device_; }

  // The class a request of `bytes` is rounded up to (exposed for tests).
  static size_t round_size(size_t bytes);

 private:
  explicit DeviceAllocator(int device) : device_(device) {}
  void give_back(void* ptr, size_t rounded, bool graph);
  StatusOr<void*> take_locked(size_t rounded, bool graph);
  void free_cached_locked();

  const int device_;
  mutable std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;        // rounded size → free blocks
  std::unordered_map<size_t, std::vector<void*>> graph_free_;  // the graph pool's free blocks
  std::vector<void*> graph_blocks_;                            // every block the pool owns (freed at destruction)
  std::thread::id graph_thread_{};                             // the capturing thread, or none
  AllocatorStats stats_;
};

}  // namespace zi::cuda
