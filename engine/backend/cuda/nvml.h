// What this process holds on a GPU as NVML counts it: the per-process used memory nvidia-smi shows, CUDA context
// included (memory.gpu_limit is counted against it). libnvidia-ml is opened with dlopen on first use, so the binary
// starts on machines without a GPU driver; no NVML header is needed (the few entry points are declared here).
#pragma once

#include <cstdint>

#include "engine/core/status.h"

namespace zi::cuda {

// Bytes the calling process uses on CUDA device `cuda_device` (matched to NVML by PCI bus id, so
// CUDA_VISIBLE_DEVICES is honoured). Unavailable when NVML cannot be loaded, or does not list this process (a PID
// namespace, MIG without per-process accounting).
StatusOr<uint64_t> nvml_process_used_bytes(int cuda_device);

}  // namespace zi::cuda
