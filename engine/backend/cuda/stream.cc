#include "engine/backend/cuda/stream.h"

#include "engine/backend/cuda/cuda_check.h"

namespace zi::cuda {

// ---- CudaStream ----

StatusOr<CudaStream> CudaStream::create(int device, bool high_priority) {
  ZI_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  int least = 0, greatest = 0;  // numerically: greatest priority is the smallest number
  ZI_RETURN_IF_ERROR(cuda_status(cudaDeviceGetStreamPriorityRange(&least, &greatest),
                                 "cudaDeviceGetStreamPriorityRange"));
  CudaStream s;
  s.device_ = device;
  ZI_RETURN_IF_ERROR(cuda_status(
      cudaStreamCreateWithPriority(&s.stream_, cudaStreamNonBlocking, high_priority ? greatest : least),
      "cudaStreamCreateWithPriority"));
  return s;
}

CudaStream::~CudaStream() {
  if (stream_) cudaStreamDestroy(stream_);  // queued work still completes; the handle is released after
}

CudaStream& CudaStream::operator=(CudaStream&& o) noexcept {
  if (this != &o) {
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = std::exchange(o.stream_, nullptr);
    device_ = o.device_;
  }
  return *this;
}

Status CudaStream::copy_async(void* dst, const void* src, size_t bytes) const {
  return cuda_status(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "cudaMemcpyAsync");
}

Status CudaStream::wait(const CudaEvent& event) const { return wait(stream_, event); }

Status CudaStream::wait(cudaStream_t stream, const CudaEvent& event) {
  return cuda_status(cudaStreamWaitEvent(stream, event.get(), 0), "cudaStreamWaitEvent");
}

Status CudaStream::synchronize() const { return cuda_status(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

// ---- CudaEvent ----

StatusOr<CudaEvent> CudaEvent::create(int device, bool timing) {
  ZI_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  CudaEvent e;
  ZI_RETURN_IF_ERROR(cuda_status(cudaEventCreateWithFlags(&e.event_, timing ? cudaEventDefault
                                                                             : cudaEventDisableTiming),
                                 "cudaEventCreateWithFlags"));
  return e;
}

CudaEvent::~CudaEvent() {
  if (event_) cudaEventDestroy(event_);
}

CudaEvent& CudaEvent::operator=(CudaEvent&& o) noexcept {
  if (this != &o) {
    if (event_) cudaEventDestroy(event_);
    event_ = std::exchange(o.event_, nullptr);
  }
  return *this;
}

Status CudaEvent::record(cudaStream_t stream) const {
  return cuda_status(cudaEventRecord(event_, stream), "cudaEventRecord");
}

StatusOr<bool> CudaEvent::query() const {
  const cudaError_t err = cudaEventQuery(event_);
  if (err == cudaSuccess) return true;
  if (err == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  return cuda_status(err, "cudaEventQuery");
}

Status CudaEvent::synchronize() const { return cuda_status(cudaEventSynchronize(event_), "cudaEventSynchronize"); }

StatusOr<float> CudaEvent::elapsed_ms(const CudaEvent& start, const CudaEvent& end) {
  float ms = 0.0f;
  ZI_RETURN_IF_ERROR(cuda_status(cudaEventElapsedTime(&ms, start.event_, end.event_), "cudaEventElapsedTime"));
  return ms;
}

// ---- PinnedHostBuffer ----

StatusOr<PinnedHostBuffer> PinnedHostBuffer::allocate(size_t bytes) {
  PinnedHostBuffer b;
  const cudaError_t err = cudaHostAlloc(&b.data_, bytes == 0 ? 1 : bytes, cudaHostAllocPortable);
  if (err != cudaSuccess) {
    b.data_ = nullptr;
    Status st = cuda_status(err, "cudaHostAlloc");
    return Status(st.code(), absl::StrCat("cannot allocate ", bytes, " bytes of pinned host memory (", st.message(),
                                          "); lower the pinned footprint or pass --pin-memory 0"));
  }
  b.size_ = bytes;
  return b;
}

PinnedHostBuffer::~PinnedHostBuffer() {
  if (data_) cudaFreeHost(data_);
}

PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&& o) noexcept {
  if (this != &o) {
    if (data_) cudaFreeHost(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

// ---- HostRegistration ----

StatusOr<HostRegistration> HostRegistration::register_range(void* ptr, size_t bytes) {
  HostRegistration r;
  const cudaError_t err = cudaHostRegister(ptr, bytes, cudaHostRegisterPortable);
  if (err != cudaSuccess) {
    Status st = cuda_status(err, "cudaHostRegister");
    return Status(st.code(), absl::StrCat("cannot pin ", bytes, " bytes of host memory (", st.message(),
                                          "); lower the pinned footprint or pass --pin-memory 0"));
  }
  r.ptr_ = ptr;
  r.size_ = bytes;
  return r;
}

HostRegistration::~HostRegistration() {
  if (ptr_) cudaHostUnregister(ptr_);
}

HostRegistration& HostRegistration::operator=(HostRegistration&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaHostUnregister(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

}  // namespace zi::cuda
