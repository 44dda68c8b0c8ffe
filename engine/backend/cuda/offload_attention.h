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
// The CPU takes decode rows only (prefill attention is compute-bound: the GPU's). `auto` sizes the GPU's share f of
// the step's decode context T so that both finish a layer together, counting the link the GPU's copies share with
// the weight stream (W bytes per layer at B bytes/s): (1 − f)·T / R_cpu = W / B + f·T·g, with R_cpu the CPU's
// measured rate and g the GPU's seconds per context token (its copy: K + V bytes / B; with no weight stream, its
// measured rate when slower). When the weights alone fill the CPU's time the GPU takes none; `cpu` gives it every decode row, `gpu` none (benchmarks compare them). In a mixed step
// (continuous batching, or a static batch still prefilling) the decode rows go to the CPU while the GPU prefills.
// The GPU's rows that a step adds are taken from the k/v kv_write just wrote (it hands them over), so only earlier
// positions are copied.
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

  // The weight stream sharing the link: bytes per layer, and a step's bytes and copy time (its bandwidth).
  void set_weight_stream(double bytes_per_layer, uint64_t step_bytes, double copy_seconds);

 private:
  struct Range {
    const char* device;
    char* host;
    size_t bytes;
  };
  struct CpuRange {
    size_t begin, end;  // sequences [begin, end): decode rows on consecutive rows; empty when begin == end
  };
  // The GPU's part (sequence indices `part`): staged into device scratch, then the decode or prefill kernel there.
  void run_gpu(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch, const KvArgs& kv,
               const AttentionArgs& args, const std::vector<size_t>& part, Tensor& out);
  // The CPU's part: q of its rows staged to the host, host_decode_attention, the output copied back.
  void run_cpu(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch, const AttentionParams& params,
               CpuRange range, Tensor& out);
  // Which decode sequences the CPU takes this layer; `token_bytes`: K + V bytes of one cached position.
  CpuRange split(const AttentionBatch& batch, double token_bytes) const;
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
  double weight_layer_bytes_ = 0;       // the weight stream: bytes per layer
  double h2d_rate_ = 0;                 // and its bandwidth, bytes per second (0: not measured)
  // ALiBi slopes on the host (copied once per slopes tensor).
  const void* slopes_src_ = nullptr;
  std::vector<float> slopes_;
};

}  // namespace zi::cuda
