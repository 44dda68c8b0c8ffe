// RAII wrappers for what the weight-streaming code orders its work with: streams, events and page-locked (pinned)
// host memory. The pattern (no host synchronisation on the hot path):
//
//   CudaStream copy = *CudaStream::create(device, /*high_priority=*/false);
//   CudaEvent ready = *CudaEvent::create(device);
//   ZI_RETURN_IF_ERROR(copy.copy_async(slot_ptr, pinned.data(), bytes));   // H2D on the copy stream
//   ZI_RETURN_IF_ERROR(ready.record(copy));                                  // "layer i is in its slot"
//   ZI_RETURN_IF_ERROR(CudaStream::wait(backend.compute_stream(), ready));   // compute waits on the GPU, not the host
//   ... enqueue layer i's ops on the compute stream ...
//   ZI_RETURN_IF_ERROR(done.record(backend.compute_stream()));               // "layer i no longer needs its slot"
//   ZI_RETURN_IF_ERROR(copy.wait(done));                                     // before overwriting the slot
//
// Host→device copies only overlap compute and reach the bus's rate from pinned memory (PinnedHostBuffer, or an
// existing buffer registered with HostRegistration); from pageable memory cudaMemcpyAsync stages through a driver
// buffer and blocks the host.
// Objects are movable, not copyable; none of them is thread-safe beyond what CUDA itself guarantees.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "engine/core/status.h"

namespace zi::cuda {

class CudaEvent;

class CudaStream {
 public:
  CudaStream() = default;
  // A non-blocking stream (it does not synchronise with the legacy default stream) on `device`.
  // high_priority: the compute stream's kernels go ahead of queued copy-stream work when both are ready.
  static StatusOr<CudaStream> create(int device, bool high_priority = false);
  ~CudaStream();
  CudaStream(CudaStream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)), device_(o.device_) {}
  CudaStream& operator=(CudaStream&& o) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  int device() const { return device_; }
  // Enqueues a copy of `bytes` (any direction: the runtime infers it from the pointers, unified addressing).
  Status copy_async(void* dst, const void* src, size_t bytes) const;
  // Makes this stream's later work wait until `event` has completed (GPU-side; the host does not block).
  Status wait(const CudaEvent& event) const;
  static Status wait(cudaStream_t stream, const CudaEvent& event);
  // Blocks the host until all queued work on the stream is done.
  Status synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
};

class CudaEvent {
 public:
  CudaEvent() = default;
  // timing = false makes record/wait cheaper; pass true to measure with elapsed_ms.
  static StatusOr<CudaEvent> create(int device, bool timing = false);
  ~CudaEvent();
  CudaEvent(CudaEvent&& o) noexcept : event_(std::exchange(o.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& o) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  cudaEvent_t get() const { return event_; }
  // Captures the work queued on `stream` so far; a later wait/synchronize waits for exactly that work.
  Status record(cudaStream_t stream) const;
  Status record(const CudaStream& stream) const { return record(stream.get()); }
  // Non-blocking: true when the recorded work has completed (or nothing was recorded).
  StatusOr<bool> query() const;
  Status synchronize() const;
  // Milliseconds between two recorded timing events (both created with timing = true).
  static StatusOr<float> elapsed_ms(const CudaEvent& start, const CudaEvent& end);

 private:
  cudaEvent_t event_ = nullptr;
};

// Page-locked host memory from cudaHostAlloc (portable: usable from any device's streams). Allocation is slow
// (the kernel pins every page): allocate once at load, reuse for the life of the process.
class PinnedHostBuffer {
 public:
  PinnedHostBuffer() = default;
  // kResourceExhausted names the size when the OS refuses (RLIMIT_MEMLOCK, container memory limit).
  static StatusOr<PinnedHostBuffer> allocate(size_t bytes);
  ~PinnedHostBuffer();
  PinnedHostBuffer(PinnedHostBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  PinnedHostBuffer& operator=(PinnedHostBuffer&& o) noexcept;
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Pins an existing host range (e.g. an aligned buffer that O_DIRECT reads land in) with cudaHostRegister for the
// object's lifetime. The range must stay allocated until the registration is destroyed.
class HostRegistration {
 public:
  HostRegistration() = default;
  static StatusOr<HostRegistration> register_range(void* ptr, size_t bytes);
  ~HostRegistration();
  HostRegistration(HostRegistration&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  HostRegistration& operator=(HostRegistration&& o) noexcept;
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;

  void* data() const { return ptr_; }
  size_t size() const { return size_; }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace zi::cuda
