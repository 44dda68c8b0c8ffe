// Measurements the bench sets its results against, taken on this machine in the same run:
// the host→device bus (pinned copy) and how fast page-locked memory can be made.
#pragma once

#include <cstddef>

#include "engine/core/status.h"

namespace zi::cuda {

// Best of `reps` copies of `bytes` from pinned host memory to the device, in bytes/second.
StatusOr<double> probe_h2d_bandwidth(int device, size_t bytes = size_t{1} << 30, int reps = 5);

// Bytes/second of cudaHostAlloc for `bytes` (pages allocated and pinned), best of `reps`.
StatusOr<double> probe_pinning_rate(size_t bytes = size_t{1} << 30, int reps = 2);

}  // namespace zi::cuda
