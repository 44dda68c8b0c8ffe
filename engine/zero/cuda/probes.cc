#include "engine/zero/cuda/probes.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/backend/cuda/stream.h"

namespace zi::cuda {

StatusOr<double> probe_h2d_bandwidth(int device, size_t bytes, int reps) {
  if (cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError("h2d probe: no usable GPU");
  }
  ZI_ASSIGN_OR_RETURN(PinnedHostBuffer host, PinnedHostBuffer::allocate(bytes));
  std::memset(host.data(), 1, bytes);
  void* dev = nullptr;
  if (cudaMalloc(&dev, bytes) != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError("h2d probe: cannot allocate the device buffer");
  }
  ZI_ASSIGN_OR_RETURN(CudaStream stream, CudaStream::create(device));
  ZI_ASSIGN_OR_RETURN(CudaEvent a, CudaEvent::create(device, true));
  ZI_ASSIGN_OR_RETURN(CudaEvent b, CudaEvent::create(device, true));
  double best = 0;
  Status st = absl::OkStatus();
  for (int i = 0; i < reps + 1 && st.ok(); ++i) {  // the first copy warms up the path
    st = a.record(stream);
    if (st.ok()) st = stream.copy_async(dev, host.data(), bytes);
    if (st.ok()) st = b.record(stream);
    if (st.ok()) st = b.synchronize();
    if (!st.ok() || i == 0) continue;
    auto ms = CudaEvent::elapsed_ms(a, b);
    if (ms.ok() && *ms > 0) best = std::max(best, bytes / (*ms / 1e3));
  }
  cudaFree(dev);
  ZI_RETURN_IF_ERROR(st);
  return best;
}

StatusOr<double> probe_pinning_rate(size_t bytes, int reps) {
  double best = 0;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    ZI_ASSIGN_OR_RETURN(PinnedHostBuffer buf, PinnedHostBuffer::allocate(bytes));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, bytes / std::max(s, 1e-9));
  }
  return best;
}

}  // namespace zi::cuda
