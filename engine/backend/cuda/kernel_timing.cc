#include "engine/backend/cuda/kernel_timing.h"

#include <algorithm>

namespace zi::cuda {

bool stream_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) {
    cudaGetLastError();
    return true;
  }
  return capture != cudaStreamCaptureStatusNone;
}

int fastest_candidate(cudaStream_t stream, void* scratch, size_t scratch_bytes,
                      const std::vector<std::function<bool()>>& candidates, int reps) {
  reps = std::max(reps, 1);
  std::vector<cudaEvent_t> ev(2 * static_cast<size_t>(reps), nullptr);
  bool events_ok = true;
  for (cudaEvent_t& e : ev) events_ok = events_ok && cudaEventCreate(&e) == cudaSuccess;
  int best = -1;
  float best_ms = 0;
  std::vector<float> ms(static_cast<size_t>(reps));
  for (size_t c = 0; events_ok && c < candidates.size(); ++c) {
    if (!candidates[c]()) continue;  // refused at launch: not a candidate
    bool ok = true;
    for (int r = 0; r < reps && ok; ++r) {
      if (scratch != nullptr && scratch_bytes > 0)
        ok = cudaMemsetAsync(scratch, r, scratch_bytes, stream) == cudaSuccess;
      ok = ok && cudaEventRecord(ev[2 * r], stream) == cudaSuccess && candidates[c]() &&
           cudaEventRecord(ev[2 * r + 1], stream) == cudaSuccess;
    }
    if (!ok || cudaEventSynchronize(ev.back()) != cudaSuccess) continue;
    for (int r = 0; r < reps; ++r) cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1]);
    std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
    if (best < 0 || ms[reps / 2] < best_ms) best = static_cast<int>(c), best_ms = ms[reps / 2];
  }
  for (cudaEvent_t e : ev)
    if (e != nullptr) cudaEventDestroy(e);
  cudaGetLastError();  // a refused candidate's launch error is not the caller's
  return best;
}

}  // namespace zi::cuda
