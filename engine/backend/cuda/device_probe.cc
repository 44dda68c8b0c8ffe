#include "engine/backend/cuda/device_probe.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace zi::cuda {

DeviceProbe probe_devices() {
  DeviceProbe p;
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    p.driver_error = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return p;
  }
  p.device_count = n;
  if (n > 0) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
      p.name = prop.name;
      p.total_memory = prop.totalGlobalMem;
    }
  }
  return p;
}

}  // namespace zi::cuda
