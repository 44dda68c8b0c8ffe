// Whether a usable CUDA GPU is present. Safe on machines without a GPU driver: cudart loads libcuda lazily
// and reports an error instead of failing to start, and NVML is reached only through dlopen.
#pragma once

#include <string>

#include "engine/core/status.h"

namespace zi::cuda {

struct DeviceProbe {
  int device_count = 0;
  std::string name;             // of device 0
  size_t total_memory = 0;      // bytes, device 0
  std::string driver_error;     // why no device, when device_count == 0
};

DeviceProbe probe_devices();

}  // namespace zi::cuda
