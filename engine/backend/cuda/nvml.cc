#include "engine/backend/cuda/nvml.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <unistd.h>

#include <mutex>
#include <vector>

namespace zi::cuda {
namespace {

// nvml.h's types, as far as these calls need them (ABI-stable since NVML 11).
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlInsufficientSize = 7;
// nvmlProcessInfo_t of the _v2/_v3 calls.
struct ProcessInfo {
  unsigned int pid;
  unsigned long long used_gpu_memory;  // bytes; ~0ull = not available
  unsigned int gpu_instance_id;
  unsigned int compute_instance_id;
};

struct Nvml {
  bool ok = false;
  std::string error;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*by_pci)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*processes)(nvmlDevice_t, unsigned int*, ProcessInfo*) = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
};

const Nvml& nvml() {
  static Nvml n;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = nullptr;
    for (const char* name : {"libnvidia-ml.so.1", "libnvidia-ml.so"})
      if ((h = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
    if (!h) {
      n.error = "libnvidia-ml.so.1 not found";
      return;
    }
    n.init = reinterpret_cast<nvmlReturn_t (*)()>(dlsym(h, "nvmlInit_v2"));
    n.by_pci = reinterpret_cast<nvmlReturn_t (*)(const char*, nvmlDevice_t*)>(
        dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2"));
    void* p = dlsym(h, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (!p) p = dlsym(h, "nvmlDeviceGetComputeRunningProcesses_v2");
    n.processes = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, ProcessInfo*)>(p);
    n.error_string = reinterpret_cast<const char* (*)(nvmlReturn_t)>(dlsym(h, "nvmlErrorString"));
    if (!n.init || !n.by_pci || !n.processes) {
      n.error = "libnvidia-ml lacks nvmlInit_v2 / nvmlDeviceGetHandleByPciBusId_v2 / "
                "nvmlDeviceGetComputeRunningProcesses_v2";
      return;
    }
    const nvmlReturn_t r = n.init();
    if (r != kNvmlSuccess) {
      n.error = absl::StrCat("nvmlInit_v2: ", n.error_string ? n.error_string(r) : "error ", r);
      return;
    }
    n.ok = true;
  });
  return n;
}

}  // namespace

StatusOr<uint64_t> nvml_process_used_bytes(int cuda_device) {
  const Nvml& n = nvml();
  if (!n.ok) return absl::UnavailableError(n.error);
  char bus[32] = {};
  if (cudaDeviceGetPCIBusId(bus, sizeof(bus), cuda_device) != cudaSuccess) {
    cudaGetLastError();
    return absl::UnavailableError(absl::StrCat("cudaDeviceGetPCIBusId failed for device ", cuda_device));
  }
  nvmlDevice_t dev = nullptr;
  if (nvmlReturn_t r = n.by_pci(bus, &dev); r != kNvmlSuccess)
    return absl::UnavailableError(absl::StrCat("nvmlDeviceGetHandleByPciBusId_v2(", bus, "): error ", r));
  std::vector<ProcessInfo> infos(64);
  unsigned int count = static_cast<unsigned int>(infos.size());
  nvmlReturn_t r = n.processes(dev, &count, infos.data());
  if (r == kNvmlInsufficientSize) {
    infos.resize(count + 16);
    count = static_cast<unsigned int>(infos.size());
    r = n.processes(dev, &count, infos.data());
  }
  if (r != kNvmlSuccess) return absl::UnavailableError(absl::StrCat("nvmlDeviceGetComputeRunningProcesses: error ", r));
  const unsigned int me = static_cast<unsigned int>(getpid());
  for (unsigned int i = 0; i < count; ++i) {
    if (infos[i].pid != me) continue;
    if (infos[i].used_gpu_memory == ~0ull) return absl::UnavailableError("NVML: per-process memory not available");
    return static_cast<uint64_t>(infos[i].used_gpu_memory);
  }
  return absl::UnavailableError(absl::StrCat("NVML does not list process ", me, " on ", bus,
                                             " (a PID namespace?)"));
}

}  // namespace zi::cuda
