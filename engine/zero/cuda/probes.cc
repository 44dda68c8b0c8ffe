#include "engine/zero/cuda/probes.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>

#include "engine/backend/cuda/lt_gemm.h"
#include "engine/backend/cuda/stream.h"
#include "engine/core/log.h"
#include "engine/core/size.h"
#include "engine/zero/cuda/probe_kernels.h"

namespace zi::cuda {

namespace {

// A cudaMalloc'ed buffer freed on scope exit (the probes' operands; never on a hot path).
struct DeviceBuffer {
  std::unique_ptr<void, decltype(&cudaFree)> ptr{nullptr, &cudaFree};
  static StatusOr<DeviceBuffer> allocate(size_t bytes, const char* what) {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (err != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(absl::StrCat(what, ": cannot allocate ", format_bytes(bytes),
                                                       " on the device (", cudaGetErrorString(err), ")"));
    }
    DeviceBuffer b;
    b.ptr.reset(p);
    return b;
  }
  void* get() const { return ptr.get(); }
};

Status set_device(int device, const char* what) {
  if (cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(what, ": no usable GPU"));
  }
  return absl::OkStatus();
}

Status launch_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  cudaGetLastError();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(err)));
}

}  // namespace

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

StatusOr<double> probe_hbm_read_bandwidth(int device, size_t bytes, int reps) {
  ZI_RETURN_IF_ERROR(set_device(device, "HBM probe"));
  constexpr size_t kKeepFree = size_t{512} << 20, kMinBytes = size_t{256} << 20, kGranule = size_t{2} << 20;
  size_t free = 0, total = 0;
  ZI_RETURN_IF_ERROR(launch_status(cudaMemGetInfo(&free, &total), "HBM probe: cudaMemGetInfo"));
  size_t use = bytes / kGranule * kGranule;
  if (free < use + kKeepFree) {
    use = free > kKeepFree ? (free - kKeepFree) / kGranule * kGranule : 0;
    if (use < kMinBytes)
      return absl::ResourceExhaustedError(absl::StrCat("HBM probe: only ", format_bytes(free), " free on device ",
                                                       device, "; needs at least ", format_bytes(kMinBytes)));
    ZI_LOG(WARNING) << "HBM probe: " << format_bytes(free) << " free on device " << device << ", reading "
                    << format_bytes(use) << " instead of " << format_bytes(bytes);
  }
  int blocks = 0;
  ZI_RETURN_IF_ERROR(launch_status(hbm_read_blocks(device, &blocks), "HBM probe: occupancy"));
  ZI_ASSIGN_OR_RETURN(DeviceBuffer buf, DeviceBuffer::allocate(use, "HBM probe"));
  ZI_ASSIGN_OR_RETURN(DeviceBuffer sink, DeviceBuffer::allocate(sizeof(uint32_t) * blocks, "HBM probe"));
  ZI_ASSIGN_OR_RETURN(CudaStream stream, CudaStream::create(device));
  ZI_ASSIGN_OR_RETURN(CudaEvent a, CudaEvent::create(device, true));
  ZI_ASSIGN_OR_RETURN(CudaEvent b, CudaEvent::create(device, true));
  // Touch every page first (the memset is not timed).
  ZI_RETURN_IF_ERROR(launch_status(cudaMemsetAsync(buf.get(), 0x5a, use, stream.get()), "HBM probe: memset"));
  double best = 0;
  for (int i = 0; i < reps + 1; ++i) {  // the first pass warms up
    ZI_RETURN_IF_ERROR(a.record(stream));
    ZI_RETURN_IF_ERROR(launch_status(
        launch_hbm_read(buf.get(), use, static_cast<uint32_t*>(sink.get()), blocks, stream.get()), "HBM probe"));
    ZI_RETURN_IF_ERROR(b.record(stream));
    ZI_RETURN_IF_ERROR(b.synchronize());
    if (i == 0) continue;
    ZI_ASSIGN_OR_RETURN(float ms, CudaEvent::elapsed_ms(a, b));
    if (ms > 0) best = std::max(best, use / (ms / 1e3));
  }
  return best;
}

StatusOr<GemmProbeResult> probe_gemm_tflops(int device, DType dtype, const std::vector<GemmShape>& shapes,
                                            int reps) {
  ZI_RETURN_IF_ERROR(set_device(device, "GEMM probe"));
  if (shapes.empty()) return absl::InvalidArgumentError("GEMM probe: no shapes");
  // One buffer per operand, sized for the largest shape; every GEMM reads from the start of each.
  int64_t mk = 0, nk = 0, mn = 0, n_max = 0;
  for (const GemmShape& s : shapes) {
    if (s.m < 1 || s.n < 1 || s.k < 1)
      return absl::InvalidArgumentError(absl::StrCat("GEMM probe: shape ", s.m, "x", s.n, "x", s.k));
    mk = std::max(mk, s.m * s.k);
    nk = std::max(nk, s.n * s.k);
    mn = std::max(mn, s.m * s.n);
    n_max = std::max(n_max, s.n);
  }
  const size_t elem = dtype_size(dtype);
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<LtGemm> lt, LtGemm::create(device));
  ZI_ASSIGN_OR_RETURN(DeviceBuffer x, DeviceBuffer::allocate(mk * elem, "GEMM probe (x)"));
  ZI_ASSIGN_OR_RETURN(DeviceBuffer w, DeviceBuffer::allocate(nk * elem, "GEMM probe (W)"));
  ZI_ASSIGN_OR_RETURN(DeviceBuffer y, DeviceBuffer::allocate(mn * elem, "GEMM probe (y)"));
  ZI_ASSIGN_OR_RETURN(DeviceBuffer bias, DeviceBuffer::allocate(n_max * elem, "GEMM probe (bias)"));
  ZI_ASSIGN_OR_RETURN(CudaStream stream, CudaStream::create(device));
  ZI_ASSIGN_OR_RETURN(CudaEvent a, CudaEvent::create(device, true));
  ZI_ASSIGN_OR_RETURN(CudaEvent b, CudaEvent::create(device, true));
  ZI_RETURN_IF_ERROR(launch_status(launch_fill_uniform(dtype, x.get(), mk, 1, stream.get()), "GEMM probe: fill"));
  ZI_RETURN_IF_ERROR(launch_status(launch_fill_uniform(dtype, w.get(), nk, 2, stream.get()), "GEMM probe: fill"));
  ZI_RETURN_IF_ERROR(
      launch_status(launch_fill_uniform(dtype, bias.get(), n_max, 3, stream.get()), "GEMM probe: fill"));

  GemmProbeResult r;
  double total_flops = 0, total_seconds = 0;
  for (const GemmShape& s : shapes) {
    const double flops = 2.0 * s.m * s.n * s.k;
    auto gemm = [&] {
      Status st = lt->matmul(dtype, x.get(), w.get(), s.bias ? bias.get() : nullptr, y.get(), s.m, s.k, s.n,
                             stream.get());
      if (!st.ok())
        return Status(st.code(), absl::StrCat("GEMM probe ", s.m, "x", s.n, "x", s.k, ": ", st.message()));
      return st;
    };
    for (int i = 0; i < 2; ++i) ZI_RETURN_IF_ERROR(gemm());
    // Calls per timed run: about 1 ms at ~1000 TFLOPS (at least one, at most 1000 for tiny shapes).
    const int calls = static_cast<int>(std::clamp(std::ceil(1e12 / flops), 1.0, 1000.0));
    double best = 0;  // seconds of one call
    for (int rep = 0; rep < std::max(1, reps); ++rep) {
      ZI_RETURN_IF_ERROR(a.record(stream));
      for (int c = 0; c < calls; ++c) ZI_RETURN_IF_ERROR(gemm());
      ZI_RETURN_IF_ERROR(b.record(stream));
      ZI_RETURN_IF_ERROR(b.synchronize());
      ZI_ASSIGN_OR_RETURN(float ms, CudaEvent::elapsed_ms(a, b));
      const double sec = ms / 1e3 / calls;
      if (sec > 0 && (best == 0 || sec < best)) best = sec;
    }
    r.shape_seconds.push_back(best);
    r.shape_tflops.push_back(best > 0 ? flops / best / 1e12 : 0);
    total_flops += flops;
    total_seconds += best;
  }
  r.tflops = total_seconds > 0 ? total_flops / total_seconds / 1e12 : 0;
  return r;
}

}  // namespace zi::cuda
