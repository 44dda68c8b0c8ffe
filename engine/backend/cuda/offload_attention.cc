#include "engine/backend/cuda/offload_attention.h"

#include <algorithm>
#include <chrono>

#include "engine/backend/cpu/host_decode_attention.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/core/log.h"

namespace zi::cuda {

namespace {

template <class T>
T take(StatusOr<T> v) {
  if (!v.ok()) {
    std::fprintf(stderr, "zeroinfer: KV offload attention: %s\n", std::string(v.status().message()).c_str());
    std::abort();
  }
  return std::move(v).value();
}

int64_t context_tokens(const SeqSlice& s) { return int64_t{s.past_len} + s.n_new; }

}  // namespace

OffloadAttention::OffloadAttention(CudaBackend& backend, KvOffloadAttention mode, int host_threads)
    : be_(backend),
      mode_(mode),
      pool_(host_threads > 0 ? host_threads : cpu::default_cpu_threads()),
      q_ready_(take(CudaEvent::create(backend.device()))) {
  for (int i = 0; i < 2; ++i) {
    gpu_begin_[i] = take(CudaEvent::create(backend.device(), /*timing=*/true));
    gpu_end_[i] = take(CudaEvent::create(backend.device(), /*timing=*/true));
  }
  ZI_LOG(INFO) << "KV offload attention: " << kv_offload_attention_name(mode) << ", CPU kernel "
               << cpu::host_decode_attention_isa() << " on " << pool_.num_threads() << " threads";
}

OffloadAttention::~OffloadAttention() = default;

void OffloadAttention::add_range(const void* device, void* host, size_t bytes) {
  ranges_.push_back({static_cast<const char*>(device), static_cast<char*>(host), bytes});
}

const void* OffloadAttention::host_address(const Tensor& t) const {
  // Newest first: a freed cache's range stays listed, and a later allocation may reuse its addresses.
  const char* p = static_cast<const char*>(t.data());
  for (auto r = ranges_.rbegin(); r != ranges_.rend(); ++r)
    if (p >= r->device && p < r->device + r->bytes) return r->host + (p - r->device);
  return nullptr;
}

void OffloadAttention::note_kv_write(const KvLayer& cache, const Tensor& k, const Tensor& v) {
  pending_cache_ = cache.k.data();
  pending_k_ = k;
  pending_v_ = v;
}

size_t OffloadAttention::split(const AttentionBatch& batch) const {
  const std::vector<SeqSlice>& seqs = batch.seqs;
  const size_t n = seqs.size();
  if (mode_ == KvOffloadAttention::kGpu) return n;
  if (mode_ == KvOffloadAttention::kCpu) return 0;
  // Share the context so that both sides take the same time: the GPU's part ∝ its rate. Before any measurement,
  // half each; afterwards each side keeps at least one sequence so that its rate stays measured.
  int64_t total = 0;
  for (const SeqSlice& s : seqs) total += context_tokens(s);
  const double gpu_frac = gpu_rate_ > 0 && cpu_rate_ > 0 ? gpu_rate_ / (gpu_rate_ + cpu_rate_) : 0.5;
  const double target = gpu_frac * static_cast<double>(total);
  size_t s1 = 0;
  int64_t acc = 0;
  while (s1 < n && static_cast<double>(acc + context_tokens(seqs[s1]) / 2) < target) acc += context_tokens(seqs[s1++]);
  if (n >= 2) s1 = std::clamp<size_t>(s1, 1, n - 1);
  return s1;
}

void OffloadAttention::update_rates() {
  // The previous layer's GPU part (pair_ after that layer's flip): its events completed before this layer's q.
  const int p = pair_;
  if (!gpu_timed_[p]) return;
  gpu_timed_[p] = false;
  StatusOr<float> ms = CudaEvent::elapsed_ms(gpu_begin_[p], gpu_end_[p]);
  if (!ms.ok() || *ms <= 0 || gpu_tokens_[p] <= 0) return;
  const double rate = static_cast<double>(gpu_tokens_[p]) / (*ms * 1e-3);
  gpu_rate_ = gpu_rate_ > 0 ? 0.7 * gpu_rate_ + 0.3 * rate : rate;
}

void OffloadAttention::run(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch, const KvArgs& kv,
                           const AttentionArgs& args, const AttentionParams& params, Tensor& out) {
  const std::vector<SeqSlice>& seqs = batch.seqs;
  const size_t n = seqs.size();
  const bool all_decode = std::all_of(seqs.begin(), seqs.end(), [](const SeqSlice& s) { return s.n_new == 1; });
  size_t s1 = all_decode ? split(batch) : n;
  // The CPU's rows must be consecutive (the executor lays rows out in sequence order).
  for (size_t s = s1; s + 1 < n && s1 < n; ++s)
    if (seqs[s + 1].row_begin != seqs[s].row_begin + 1) s1 = n;

  cudaStream_t stream = be_.compute_stream();
  if (s1 < n) {
    // q for the CPU's rows first, so the host can start while the GPU stages its part.
    const size_t row_bytes = static_cast<size_t>(q.dim(1)) * dtype_size(q.dtype());
    const size_t bytes = row_bytes * (n - s1);
    if (q_host_.size() < bytes) {
      ZI_CUDA_CHECK(cudaStreamSynchronize(stream));  // an earlier output copy may still read out_host_
      q_host_ = take(PinnedHostBuffer::allocate(bytes));
      out_host_ = take(PinnedHostBuffer::allocate(bytes));
    }
    ZI_CUDA_CHECK(cudaMemcpyAsync(q_host_.data(), static_cast<const char*>(q.data()) + row_bytes * seqs[s1].row_begin,
                                  bytes, cudaMemcpyDeviceToHost, stream));
    ZI_CUDA_CHECK(cudaEventRecord(q_ready_.get(), stream));
  }
  if (s1 > 0) {
    const int p = pair_;
    ZI_CUDA_CHECK(cudaEventRecord(gpu_begin_[p].get(), stream));
    run_gpu(q, cache, batch, kv, args, s1, all_decode, out);
    ZI_CUDA_CHECK(cudaEventRecord(gpu_end_[p].get(), stream));
    gpu_timed_[p] = mode_ == KvOffloadAttention::kAuto && all_decode;
    gpu_tokens_[p] = 0;
    for (size_t s = 0; s < s1; ++s) gpu_tokens_[p] += context_tokens(seqs[s]);
    pair_ = p ^ 1;
  }
  if (s1 < n) run_cpu(q, cache, batch, params, s1, out);
  int64_t cpu_tokens = 0, total = 0;
  for (size_t s = 0; s < n; ++s) (s >= s1 ? cpu_tokens : total) += context_tokens(seqs[s]);
  total += cpu_tokens;
  last_cpu_share_ = total > 0 ? static_cast<double>(cpu_tokens) / static_cast<double>(total) : 0.0;
  pending_cache_ = nullptr;
  pending_k_ = Tensor();
  pending_v_ = Tensor();
}

void OffloadAttention::run_cpu(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch,
                               const AttentionParams& params, size_t s0, Tensor& out) {
  const std::vector<SeqSlice>& seqs = batch.seqs;
  const size_t n = seqs.size();
  ZI_CUDA_CHECK(cudaEventSynchronize(q_ready_.get()));  // q is on the host; kv_write's rows are in the cache
  update_rates();
  cpu::HostDecodeAttention a;
  a.k_cache = host_address(cache.k);
  a.v_cache = host_address(cache.v);
  ZI_CHECK(a.k_cache != nullptr && a.v_cache != nullptr);
  a.cache_dtype = cache.k.dtype();
  a.g = cpu::KvGeometry{cache.k.dim(0), cache.k.dim(1), params.n_kv_heads, params.head_dim,
                        batch.block_tables_host.data(), batch.max_blocks};
  a.n_heads = params.n_heads;
  a.scale = params.scale;
  a.sliding_window = params.sliding_window;
  if (params.alibi_slopes.defined()) {
    if (slopes_src_ != params.alibi_slopes.data()) {
      slopes_.resize(static_cast<size_t>(params.n_heads));
      ZI_CUDA_CHECK(cudaMemcpy(slopes_.data(), params.alibi_slopes.data(), slopes_.size() * sizeof(float),
                               cudaMemcpyDeviceToHost));
      slopes_src_ = params.alibi_slopes.data();
    }
    a.alibi_slopes = slopes_.data();
  }
  const auto t0 = std::chrono::steady_clock::now();
  cpu::host_decode_attention(pool_, a, seqs, s0, n, q.dtype(), q_host_.data(), out_host_.data());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t tokens = 0;
  for (size_t s = s0; s < n; ++s) tokens += context_tokens(seqs[s]);
  if (secs > 0 && tokens > 0) {
    const double rate = static_cast<double>(tokens) / secs;
    cpu_rate_ = cpu_rate_ > 0 ? 0.7 * cpu_rate_ + 0.3 * rate : rate;
  }
  const size_t row_bytes = static_cast<size_t>(q.dim(1)) * dtype_size(q.dtype());
  // Ordered on the compute stream: the next layer's q copy (and so the host's next write of out_host_) follows it.
  ZI_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(out.data()) + row_bytes * seqs[s0].row_begin, out_host_.data(),
                                row_bytes * (n - s0), cudaMemcpyHostToDevice, be_.compute_stream()));
}

void OffloadAttention::run_gpu(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch, const KvArgs& kv,
                               const AttentionArgs& args, size_t s1, bool all_decode, Tensor& out) {
  const std::vector<SeqSlice>& seqs = batch.seqs;
  const int BS = kv.block_size;
  const bool have_new = pending_cache_ == cache.k.data() && pending_k_.defined() &&
                        pending_k_.dim(0) == batch.total_rows;
  // Scratch blocks in sequence order; a block is copied when it holds positions before the step's new rows (all of
  // them when kv_write's rows were not handed over).
  std::vector<int32_t> remap(static_cast<size_t>(s1) * batch.max_blocks, -1);
  std::vector<void*> dsts;
  std::vector<const void*> srcs;
  std::vector<size_t> sizes;
  const size_t block_bytes = static_cast<size_t>(BS) * kv.n_kv_heads * kv.head_dim * dtype_size(cache.k.dtype());
  int32_t used = 0;
  struct Run {
    int32_t host_block, scratch_block, count;
  };
  std::vector<Run> runs;
  for (size_t s = 0; s < s1; ++s) {
    const int64_t nb = (context_tokens(seqs[s]) + BS - 1) / BS;
    const int64_t n_copy = have_new ? (int64_t{seqs[s].past_len} + BS - 1) / BS : nb;
    for (int64_t b = 0; b < nb; ++b) {
      const int32_t scratch = used++;
      remap[s * batch.max_blocks + b] = scratch;
      if (b >= n_copy) continue;
      const int32_t host = batch.block_tables_host[s * batch.max_blocks + b];
      if (!runs.empty() && runs.back().host_block + runs.back().count == host &&
          runs.back().scratch_block + runs.back().count == scratch)
        ++runs.back().count;
      else
        runs.push_back({host, scratch, 1});
    }
  }
  KvArgs skv = kv;
  skv.n_seqs = static_cast<int>(s1);
  skv.max_new = 0;
  for (size_t s = 0; s < s1; ++s) skv.max_new = std::max(skv.max_new, seqs[s].n_new);
  StatusOr<Tensor> ks = be_.try_alloc(cache.k.dtype(), {std::max(used, 1), BS, kv.n_kv_heads, kv.head_dim});
  StatusOr<Tensor> vs = ks.ok() ? be_.try_alloc(cache.k.dtype(), {std::max(used, 1), BS, kv.n_kv_heads, kv.head_dim})
                                : ks.status();
  cudaStream_t stream = be_.compute_stream();
  if (!vs.ok()) {
    // No room for the scratch: the kernels read the mapped cache over the bus.
    if (all_decode)
      launch_attention_decode(q.dtype(), skv, args, q.data(), out.data(), stream);
    else
      launch_attention_prefill(q.dtype(), skv, args, q.data(), out.data(), stream);
    return;
  }
  const char* host_k = static_cast<const char*>(host_address(cache.k));
  const char* host_v = static_cast<const char*>(host_address(cache.v));
  ZI_CHECK(host_k != nullptr && host_v != nullptr);
  for (const Run& r : runs) {
    for (int kvi = 0; kvi < 2; ++kvi) {
      srcs.push_back((kvi == 0 ? host_k : host_v) + block_bytes * static_cast<size_t>(r.host_block));
      dsts.push_back(static_cast<char*>((kvi == 0 ? *ks : *vs).data()) + block_bytes * static_cast<size_t>(r.scratch_block));
      sizes.push_back(block_bytes * static_cast<size_t>(r.count));
    }
  }
  if (!sizes.empty()) {
    cudaMemcpyAttributes attr{};
    attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
    size_t attr_index = 0;
    const cudaError_t err = cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), sizes.size(), &attr,
                                                 &attr_index, 1, stream);
    if (err != cudaSuccess) {
      cudaGetLastError();  // an older driver: one copy per run
      for (size_t i = 0; i < sizes.size(); ++i)
        ZI_CUDA_CHECK(cudaMemcpyAsync(dsts[i], srcs[i], sizes[i], cudaMemcpyHostToDevice, stream));
    }
  }
  Tensor table = be_.from_host(DType::kI32, {static_cast<int64_t>(s1), batch.max_blocks}, remap.data());
  skv.k_cache = ks->data();
  skv.v_cache = vs->data();
  skv.num_blocks = std::max(used, 1);
  skv.tables = table.data_as<int32_t>();
  if (have_new) launch_kv_write(q.dtype(), skv, pending_k_.data(), pending_v_.data(), stream);
  if (all_decode)
    launch_attention_decode(q.dtype(), skv, args, q.data(), out.data(), stream);
  else
    launch_attention_prefill(q.dtype(), skv, args, q.data(), out.data(), stream);
}

}  // namespace zi::cuda
