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
// by the median of `reps` timed runs after one untimed; -1 when none ran. Before each timed run `scratch` is
// rewritten (pass ≥ 32 MiB): a decode step reads each layer's W once, cold, and without the rewrite a W that fits
// the L2 (50 MB on an H100) would be timed from it. Leaves the stream's error state clear.
int fastest_candidate(cudaStream_t stream, void* scratch, size_t scratch_bytes,
                      const std::vector<std::function<bool()>>& candidates, int reps = 5);

}  // namespace zi::cuda
