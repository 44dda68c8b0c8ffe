// CudaBackend: the Backend interface on one GPU. For CUDA-side code that needs more than the interface — the
// weight-streaming coordinator enqueues copies on its own stream and orders them against compute_stream() with
// events (see stream.h), and sizes its slots from memory_info().
//
// Design:
//  - every op is enqueued on compute_stream() and returns at once; the only host synchronisations are
//    copy_to_host / to_host_f32 (they must return data) and synchronize();
//  - memory comes from a DeviceAllocator (size-class free lists, stream-ordered on the compute stream): a forward's
//    temporaries are recycled, not cudaMalloc'ed every step;
//  - linear = cuBLASLt in bf16/fp16 with fp32 accumulation and the bias fused in the epilogue (lt_gemm.h), or
//    cublasGemmEx (fp32 activations, shapes cuBLASLt refuses) then a bias kernel; both have workspaces allocated
//    at creation, so linear neither allocates nor synchronizes (decode steps can be captured in CUDA graphs);
//  - kernels compute in fp32 and round once to the activation dtype on store.
// Driven by one thread at a time (the Backend contract); ops make the backend's device current on that thread.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/decode_linear.h"
#include "engine/backend/cuda/device_allocator.h"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/cuda/op_timer.h"
#include "engine/backend/cuda/stream.h"

namespace zi::cuda {
class OffloadAttention;
class LtGemm;
}

namespace zi::cuda {

struct MemoryInfo {
  size_t device_free = 0;   // cudaMemGetInfo: free bytes on the device (all processes)
  size_t device_total = 0;
  AllocatorStats allocator;  // this backend's share
};

class CudaBackend final : public Backend {
 public:
  static StatusOr<std::unique_ptr<CudaBackend>> create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  DType activation_dtype() const override { return act_; }
  DType weight_dtype(DType checkpoint_dtype) const override { return act_; }

  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  Tensor from_host(DType dtype, std::vector<int64_t> shape, const void* src) override;
  Tensor upload_weight(DType src_dtype, std::vector<int64_t> shape, const void* src) override;
  std::optional<Tensor> uniform_weight(DType dtype, std::vector<int64_t> shape, uint64_t key, float amplitude) override;
  void upload(Tensor& dst, const void* src) override;
  void copy_to_host(const Tensor& t, void* dst) override;
  std::vector<float> to_host_f32(const Tensor& t) override;
  void fill_zero(Tensor& t) override;
  StatusOr<Tensor> concat_rows(const std::vector<Tensor>& parts) override;

  Tensor embedding(const Tensor& table, const Tensor& ids) override;
  Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) override;
  Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) override;
  Tensor linear(const Tensor& x, const LinearWeight& w) override;
  void rope_inplace(Tensor& x, const Tensor& positions, const Tensor& inv_freq, int n_heads, int head_dim) override;
  void kv_write(KvLayer& cache, const AttentionBatch& batch, const Tensor& k, const Tensor& v) override;
  Tensor attention(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch,
                   const AttentionParams& params) override;
  Tensor silu_mul(const Tensor& gate, const Tensor& up) override;
  Tensor activation(const Tensor& x, Activation kind) override;
  Tensor add(const Tensor& a, const Tensor& b) override;
  void add_inplace(Tensor& a, const Tensor& b) override;
  // Fused ops (fused_ops.cc).
  Tensor add_rms_norm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps) override;
  Tensor add_layer_norm(Tensor& x, const Tensor& delta, const Tensor& weight, const Tensor& bias, float eps) override;
  Tensor qkv_rope_kv_write(const Tensor& qkv, KvLayer& cache, const AttentionBatch& batch, const Tensor& inv_freq,
                           int n_heads, int n_kv_heads, int head_dim) override;
  Tensor gate_up_silu(const Tensor& gate_up) override;
  using Backend::gather_rows;
  Tensor gather_rows(const Tensor& x, const Tensor& rows) override;
  Tensor column_slice(const Tensor& x, int64_t group, int64_t offset, int64_t width) override;
  void synchronize() override;
  // Device memory through try_alloc, or pinned mapped host memory (cudaHostAllocMapped) for KV offload.
  StatusOr<Tensor> alloc_kv(DType dtype, std::vector<int64_t> shape, bool host) override;
  // cudaMemGetInfo's free bytes after returning this backend's cached blocks to the device.
  int64_t device_free_bytes() const override;
  // NVML's used memory of this process on the device (engine/backend/cuda/nvml.h); where NVML cannot say (no
  // driver library, a PID namespace that hides us), total − free: every process's use, so never less than ours.
  int64_t process_device_bytes() const override;
  void observe_weight_stream(uint64_t bytes, double copy_seconds, int layers) override;
  // cudaStreamBeginCapture on the compute stream (relaxed mode), allocations from the allocator's graph pool
  // (device_allocator.h), cudaGraphInstantiate (cuda_graph.cc).
  StatusOr<std::unique_ptr<StepGraph>> capture(const std::function<Status()>& body) override;

  // ---- CUDA specifics ----
  int device() const { return device_; }
  cudaStream_t compute_stream() const { return compute_.get(); }
  DeviceAllocator& allocator() { return *allocator_; }
  // Like alloc(), but out-of-memory is a Status naming the size and the device's free memory (for load-time
  // reservations: weights, KV cache, streaming slots) instead of an abort.
  StatusOr<Tensor> try_alloc(DType dtype, std::vector<int64_t> shape);
  MemoryInfo memory_info() const;
  uint64_t device_memory_used_bytes() const override {
    const MemoryInfo mi = memory_info();
    return mi.device_total > mi.device_free ? mi.device_total - mi.device_free : 0;
  }
  // Makes this backend's device current on the calling thread (ops do it themselves).
  void make_current() const;

 private:
  CudaBackend(const CudaBackendOptions& options, CudaStream compute, cublasHandle_t cublas, void* cublas_workspace,
              std::unique_ptr<LtGemm> lt, std::shared_ptr<DeviceAllocator> allocator);
  // Output of an op: alloc() that aborts with the allocator's message when the device is out of memory.
  Tensor output(DType dtype, std::vector<int64_t> shape);
  KvArgs kv_args(const KvLayer& cache, const AttentionBatch& batch, int n_kv_heads, int head_dim) const;

  const int device_;
  const DType act_;
  CudaStream compute_;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;  // kCublasWorkspaceBytes, given to cublasSetWorkspace
  std::unique_ptr<LtGemm> lt_;        // linear's bf16/fp16 GEMM
  DecodeLinearChoice decode_linear_;  // per decode-sized shape: cuBLASLt or a hand-written kernel (decode_linear.h)
  std::shared_ptr<DeviceAllocator> allocator_;
  const KvOffloadAttention offload_mode_;
  const int host_threads_;
  std::unique_ptr<OffloadAttention> offload_;  // made by the first alloc_kv in host memory
  OpTimes times_;                              // ZI_OP_TIMING=1: GPU time per op (op_timer.h)
};

}  // namespace zi::cuda
