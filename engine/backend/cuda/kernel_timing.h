// Choosing between kernels by timing them where they will run: on the call's own operands, on its stream. Used by
// LtGemm (which of cuBLASLt's candidate algorithms) and by the decode linear's choice between cuBLASLt and the
// hand-written kernels (decode_linear.h). Host-synchronous: never call it on a stream that is being captured.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <vector>

namespace zi::cuda {

// Whether `stream` is capturing into a CUDA graph (an error reads as capturing: the caller then does not time).
bool stream_capturing(cudaStream_t stream);

// Index of the fastest of `candidates` (each enqueues one run on `stream` and returns false when it refused to),
// by the median of `reps` timed runs after one untimed; -1 when none ran (or an error was already pending). Before
// each timed run a buffer of twice the L2 is read through it: a decode step reads each layer's W once, cold, and
// without the flush a W that fits the L2 (50 MB on an H100) would be timed from it. The buffer is allocated for the
// call and freed after it. Leaves the stream's error state as it found it.
int fastest_candidate(cudaStream_t stream, const std::vector<std::function<bool()>>& candidates, int reps = 5);

}  // namespace zi::cuda
