// CudaBackend::capture: a step's ops recorded once as a CUDA graph and replayed with one cudaGraphLaunch. A resident
// Llama-2-7B decode step is ~20 kernels a layer × 32 layers; launched one by one, the host's ~4–6 µs per launch
// (plus the forward's bookkeeping) is longer than the kernels of a small batch, so the GPU idles between them.
//
// What a replay relies on (the Backend::capture contract):
//  - every address the ops use is fixed at capture: activations come from the allocator's graph pool
//    (device_allocator.h), inputs are tensors made before the capture and refilled with upload();
//  - the ops enqueue work only (no host synchronisation, no host reads) — cuBLAS included: its workspace is set
//    once at backend creation, so a GEMM in the graph allocates nothing;
//  - host-side decisions the ops make from their arguments (grid sizes, kernel choice) are the same at every
//    replay; the caller keys its graphs by whatever changes them (engine/runtime/step_graphs.h).
// The capture runs in cudaStreamCaptureModeRelaxed so that a first-time cudaMalloc by the pool is allowed.
// Before it, body runs once eagerly: per-shape choices made by timing (LtGemm's autotune for decode-sized GEMMs)
// cannot be made inside a capture, and the graph keeps whatever was chosen at capture. A decode step is idempotent
// (the same KV rows written with the same values, the same outputs), so running it twice costs one step per new
// shape and changes nothing.
#include <cuda_runtime_api.h>

#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"

namespace zi::cuda {

namespace {

class CudaStepGraph final : public Backend::StepGraph {
 public:
  CudaStepGraph(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaStepGraph() override { cudaGraphExecDestroy(exec_); }
  CudaStepGraph(const CudaStepGraph&) = delete;
  CudaStepGraph& operator=(const CudaStepGraph&) = delete;

  void replay() override { ZI_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend::StepGraph>> CudaBackend::capture(const std::function<Status()>& body) {
  if (times_.enabled()) return std::unique_ptr<Backend::StepGraph>();  // timed ops run eagerly (op_timer.h)
  make_current();
  ZI_RETURN_IF_ERROR(body());
  ZI_RETURN_IF_ERROR(cuda_status(cudaStreamBeginCapture(compute_.get(), cudaStreamCaptureModeRelaxed),
                                 "cudaStreamBeginCapture"));
  allocator_->begin_graph_pool();
  const Status body_status = body();
  allocator_->end_graph_pool();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(compute_.get(), &graph);
  if (!body_status.ok() || end != cudaSuccess) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    return body_status.ok() ? cuda_status(end, "cudaStreamEndCapture (an op in the step cannot be captured)")
                            : body_status;
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiateWithFlags(&exec, graph, 0);
  cudaGraphDestroy(graph);
  ZI_RETURN_IF_ERROR(cuda_status(inst, "cudaGraphInstantiate"));
  return std::unique_ptr<Backend::StepGraph>(new CudaStepGraph(exec, compute_.get()));
}

}  // namespace zi::cuda
