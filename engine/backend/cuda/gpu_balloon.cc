#include "engine/backend/cuda/gpu_balloon.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/nvml.h"
#include "engine/core/log.h"
#include "engine/core/size.h"

namespace zi::cuda {
namespace {

constexpr uint64_t kPageBytes = uint64_t{2} << 20;   // the driver maps device memory in 2 MiB pages
constexpr uint64_t kChunkBytes = uint64_t{1} << 30;  // 1 GiB a cudaMalloc: no single huge block is needed

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<int, uint64_t>& registry() {  // device → bytes held by live balloons
  static std::map<int, uint64_t> r;
  return r;
}

// cudaSetDevice for the calling thread, put back on scope exit (the caller's current device is not ours to move).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&prev_) != cudaSuccess) prev_ = -1;
    ok_ = cuda_status(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() {
    if (prev_ >= 0) cudaSetDevice(prev_);
  }
  const Status& status() const { return ok_; }

 private:
  int prev_ = -1;
  Status ok_;
};

}  // namespace

uint64_t balloon_bytes(int device) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(device);
  return it == registry().end() ? 0 : it->second;
}

StatusOr<std::unique_ptr<GpuBalloon>> GpuBalloon::inflate(int device, uint64_t limit_bytes) {
  DeviceScope scope(device);
  ZI_RETURN_IF_ERROR(scope.status());
  cudaFree(nullptr);  // create the context first: it is part of what the process holds
  size_t free_bytes = 0, total_bytes = 0;
  ZI_RETURN_IF_ERROR(cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  // What the process holds already, less a balloon inflated earlier on this device (NVML counts it too, and the
  // free bytes already lack it).
  uint64_t held = 0;
  const uint64_t earlier = balloon_bytes(device);
  if (StatusOr<uint64_t> nvml = nvml_process_used_bytes(device); nvml.ok()) {
    held = *nvml > earlier ? *nvml - earlier : 0;
  } else {
    held = total_bytes > free_bytes ? total_bytes - free_bytes : 0;
    held = held > earlier ? held - earlier : 0;
    ZI_LOG(WARNING) << "NVML per-process memory unavailable (" << nvml.status()
                    << "); the GPU balloon counts the device's used memory (" << format_bytes(held)
                    << ", other processes included) as this process's";
  }
  if (limit_bytes < held)
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory.gpu_limit ", format_bytes(limit_bytes), " (", limit_bytes, " bytes) is below what the process "
        "already holds on GPU ", device, ": ", format_bytes(held), " (", held, " bytes, CUDA context included)"));
  auto b = std::unique_ptr<GpuBalloon>(new GpuBalloon(device, held));
  const uint64_t room = limit_bytes - held;  // what the process may still take
  if (room >= free_bytes) {
    ZI_LOG(INFO) << "GPU balloon: empty (memory.gpu_limit leaves " << format_bytes(room) << ", the device has "
                 << format_bytes(free_bytes) << " free)";
    return b;
  }
  // Rounded up to whole pages: the process is left at most `room`, never a page more.
  const uint64_t want = (free_bytes - room + kPageBytes - 1) / kPageBytes * kPageBytes;
  while (b->bytes_ < want) {
    const uint64_t n = std::min(kChunkBytes, want - b->bytes_);
    void* p = nullptr;
    if (cudaError_t e = cudaMalloc(&p, n); e != cudaSuccess) {
      Status s = cuda_status(e, "cudaMalloc");
      return Status(s.code(), absl::StrCat("GPU balloon: took ", format_bytes(b->bytes_), " of ", format_bytes(want),
                                           " (", want, " bytes) on GPU ", device, ", then ", s.message(),
                                           " (did another process take memory meanwhile?)"));
    }
    b->chunks_.push_back(p);
    b->bytes_ += n;
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry()[device] += n;  // as taken, so that the destructor's release matches on any return
  }
  ZI_LOG(INFO) << "GPU balloon: " << format_bytes(b->bytes_) << " taken on GPU " << device << " (" << b->bytes_
               << " bytes): the process holds " << format_bytes(held) << " and may take "
               << format_bytes(room) << " more under memory.gpu_limit " << format_bytes(limit_bytes);
  return b;
}

GpuBalloon::~GpuBalloon() {
  if (chunks_.empty()) return;
  {
    DeviceScope scope(device_);
    for (void* p : chunks_) cudaFree(p);
    cudaGetLastError();
  }
  std::lock_guard<std::mutex> lock(registry_mutex());
  uint64_t& r = registry()[device_];
  r = r > bytes_ ? r - bytes_ : 0;
}

}  // namespace zi::cuda
