// Attention over a KV cache offloaded to pinned host memory (kv_cache.offload), for CudaBackend.
//
// A decode step reads the whole cache: at batch 240 × 544 tokens of Llama-2-7B that is 2 GiB per layer. Two readers
// can share that work:
//  - the GPU: the step's blocks are copied into device scratch by the copy engine (batched DMA, ~50 GB/s, the same
//    link that streams the weights) and the usual kernels run there. Kernels reading the mapped cache directly
//    reach only ~30 GB/s, and the prefill kernel would re-read every key once per 16-row tile; that direct path is
//    kept only as a fallback when the scratch does not fit;
//  - the CPU: host_decode_attention (engine/backend/cpu/host_decode_attention.h) reads the cache from DRAM where it
//    lives; only q (D2H) and the output (H2D) cross the bus.
// `auto` gives the CPU a tail of the decode rows sized from both sides' measured rates (context tokens per second,
// updated every layer), so that they finish together; `gpu` and `cpu` force one side (benchmarks compare them).
// Prefill and mixed steps run on the GPU: the rows a step adds are taken from the k/v it just wrote (kv_write hands
// them over), so only earlier positions are copied.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/cuda/stream.h"

namespace zi::cuda {

class CudaBackend;

class OffloadAttention {
 public:
  OffloadAttention(CudaBackend& backend, KvOffloadAttention mode, int host_threads);
  ~OffloadAttention();

  // A host allocation of the cache: `device` is its mapped address (what tensors hold), `host` the host one.
  void add_range(const void* device, void* host, size_t bytes);
  // The host address of a tensor in an offloaded cache, or null when it is device memory.
  const void* host_address(const Tensor& t) const;

  // kv_write's hand-over: this step's new k/v rows [T, nKV × D] for `cache` (the next attention() over it uses them).
  void note_kv_write(const KvLayer& cache, const Tensor& k, const Tensor& v);
  // out [T, nH × D] (allocated, rows no sequence covers already zeroed) ← attention over the offloaded cache.
  void run(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch, const KvArgs& kv,
           const AttentionArgs& args, const AttentionParams& params, Tensor& out);

  // Fraction of decode context the CPU took in the last step, for logs and benchmarks.
  double cpu_share() const { return last_cpu_share_; }

 private:
  struct Range {
    const char* device;
    char* host;
    size_t bytes;
  };
  // The GPU's part: sequences [0, s1) staged into device scratch, then the decode or prefill kernel there.
  void run_gpu(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch, const KvArgs& kv,
               const AttentionArgs& args, size_t s1, bool all_decode, Tensor& out);
  // The CPU's part: decode sequences [s0, n) (consecutive rows), q staged to the host and the output back.
  void run_cpu(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch, const AttentionParams& params,
               size_t s0, Tensor& out);
  // Where the CPU's tail of decode sequences starts (n: none).
  size_t split(const AttentionBatch& batch) const;
  void update_rates();

  CudaBackend& be_;
  const KvOffloadAttention mode_;
  cpu::ThreadPool pool_;
  std::vector<Range> ranges_;
  // kv_write's rows awaiting the attention call over the same cache.
  const void* pending_cache_ = nullptr;
  Tensor pending_k_, pending_v_;
  // Pinned staging of q and the output for the CPU's rows.
  PinnedHostBuffer q_host_, out_host_;
  CudaEvent q_ready_;
  // Timing of the GPU part, in two pairs of events used in turn: a layer's pair is read by the next layer, after the
  // host has waited for that layer's q (which the earlier pair precedes on the stream).
  CudaEvent gpu_begin_[2], gpu_end_[2];
  bool gpu_timed_[2] = {false, false};
  int64_t gpu_tokens_[2] = {0, 0};
  int pair_ = 0;                        // the pair the next GPU part records
  double gpu_rate_ = 0, cpu_rate_ = 0;  // context tokens per second
  double last_cpu_share_ = 0;
  // ALiBi slopes on the host (copied once per slopes tensor).
  const void* slopes_src_ = nullptr;
  std::vector<float> slopes_;
};

}  // namespace zi::cuda
