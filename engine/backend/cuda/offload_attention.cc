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
  ZI_LOG(INFO) << "KV offload attention: " << enum_name(mode, kKvOffloadAttentionNames) << ", CPU kernel "
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

OffloadAttention::CpuRange OffloadAttention::split(const AttentionBatch& batch, double token_bytes) const {
  const std::vector<SeqSlice>& seqs = batch.seqs;
  const size_t n = seqs.size();
  // The CPU takes decode rows only, from the longest run of decode sequences on consecutive rows (the scheduler
  // puts a step's decodes first, before any prefill chunk).
  size_t d0 = 0, d1 = 0;
  for (size_t s = 0; s < n;) {
    if (seqs[s].n_new != 1) {
      ++s;
      continue;
    }
    size_t e = s + 1;
    while (e < n && seqs[e].n_new == 1 && seqs[e].row_begin == seqs[e - 1].row_begin + 1) ++e;
    if (e - s > d1 - d0) d0 = s, d1 = e;
    s = e;
  }
  if (mode_ == KvOffloadAttention::kGpu || d0 == d1) return {d1, d1};
  if (mode_ == KvOffloadAttention::kCpu) return {d0, d1};
  int64_t run = 0;
  for (size_t s = d0; s < d1; ++s) run += context_tokens(seqs[s]);
  const double T = static_cast<double>(run);
  // Before the first measurements: the link at a conservative 25 GB/s, the CPU as fast as the GPU's copies.
  const double B = h2d_rate_ > 0 ? h2d_rate_ : 25e9;
  // With a weight stream the link is the GPU's limit and the model above counts it (its measured rate already
  // includes the weights' share of the link: counting that too would count it twice); without one, its measured rate.
  const double g = weight_layer_bytes_ > 0 ? token_bytes / B
                                           : std::max(token_bytes / B, gpu_rate_ > 0 ? 1.0 / gpu_rate_ : 0.0);
  const double cpu_s = cpu_rate_ > 0 ? T / cpu_rate_ : T * g;  // the CPU's time for the whole run
  const double f = std::clamp((cpu_s - weight_layer_bytes_ / B) / (cpu_s + T * g), 0.0, 1.0);
  size_t c0 = d1;
  int64_t acc = 0;
  const double target = (1.0 - f) * T;  // the CPU's context tokens, from the end of the run
  while (c0 > d0 && static_cast<double>(acc + context_tokens(seqs[c0 - 1]) / 2) < target) acc += context_tokens(seqs[--c0]);
  // Without a weight stream to budget for, each side keeps a sequence so that both rates stay measured.
  if (weight_layer_bytes_ == 0 && d1 - d0 >= 2) c0 = std::clamp(c0, d0 + (d0 == 0 && d1 == n ? 1 : 0), d1 - 1);
  return {c0, d1};
}

void OffloadAttention::set_weight_stream(double bytes_per_layer, uint64_t step_bytes, double copy_seconds) {
  weight_layer_bytes_ = bytes_per_layer;
  if (step_bytes > 0 && copy_seconds > 0) {
    const double rate = static_cast<double>(step_bytes) / copy_seconds;
    h2d_rate_ = h2d_rate_ > 0 ? 0.7 * h2d_rate_ + 0.3 * rate : rate;
  }
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
  const double token_bytes = 2.0 * kv.n_kv_heads * kv.head_dim * static_cast<double>(dtype_size(cache.k.dtype()));
  const CpuRange cpu = split(batch, token_bytes);
  std::vector<size_t> gpu;  // every sequence the CPU does not take
  for (size_t s = 0; s < n; ++s)
    if (s < cpu.begin || s >= cpu.end) gpu.push_back(s);

  cudaStream_t stream = be_.compute_stream();
  if (cpu.begin < cpu.end) {
    // q for the CPU's rows first, so the host can start while the GPU stages its part.
    const size_t row_bytes = static_cast<size_t>(q.dim(1)) * dtype_size(q.dtype());
    const size_t bytes = row_bytes * (cpu.end - cpu.begin);
    if (q_host_.size() < bytes) {
      ZI_CUDA_CHECK(cudaStreamSynchronize(stream));  // an earlier output copy may still read out_host_
      q_host_ = take(PinnedHostBuffer::allocate(bytes));
      out_host_ = take(PinnedHostBuffer::allocate(bytes));
    }
    ZI_CUDA_CHECK(cudaMemcpyAsync(q_host_.data(),
                                  static_cast<const char*>(q.data()) + row_bytes * seqs[cpu.begin].row_begin, bytes,
                                  cudaMemcpyDeviceToHost, stream));
    ZI_CUDA_CHECK(cudaEventRecord(q_ready_.get(), stream));
  }
  if (!gpu.empty()) {
    const int p = pair_;
    bool all_decode = true;
    for (size_t s : gpu) all_decode = all_decode && seqs[s].n_new == 1;
    ZI_CUDA_CHECK(cudaEventRecord(gpu_begin_[p].get(), stream));
    run_gpu(q, cache, batch, kv, args, gpu, out);
    ZI_CUDA_CHECK(cudaEventRecord(gpu_end_[p].get(), stream));
    // Decode-only parts measure the GPU's rate (a prefill's cost is not per context token).
    gpu_timed_[p] = mode_ == KvOffloadAttention::kAuto && all_decode;
    gpu_tokens_[p] = 0;
    for (size_t s : gpu) gpu_tokens_[p] += context_tokens(seqs[s]);
    pair_ = p ^ 1;
  }
  if (cpu.begin < cpu.end) run_cpu(q, cache, batch, params, cpu, out);
  pending_cache_ = nullptr;
  pending_k_ = Tensor();
  pending_v_ = Tensor();
}

void OffloadAttention::run_cpu(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch,
                               const AttentionParams& params, CpuRange range, Tensor& out) {
  const std::vector<SeqSlice>& seqs = batch.seqs;
  const size_t s0 = range.begin, n = range.end;
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
                               const AttentionArgs& args, const std::vector<size_t>& part, Tensor& out) {
  const std::vector<SeqSlice>& seqs = batch.seqs;
  const int BS = kv.block_size;
  const bool have_new = pending_cache_ == cache.k.data() && pending_k_.defined() &&
                        pending_k_.dim(0) == batch.total_rows;
  // The part's sequences as the kernels read them ([m, 4]: slot, row_begin, n_new, past_len) and its blocks in
  // scratch, in order. A block is copied when it holds positions before the step's new rows (all of them when
  // kv_write's rows were not handed over); runs of consecutive blocks are one copy.
  const size_t m = part.size();
  std::vector<int32_t> packed(4 * m), remap(m * static_cast<size_t>(batch.max_blocks), -1);
  struct Run {
    int32_t host_block, scratch_block, count;
  };
  std::vector<Run> runs;
  int32_t used = 0;
  bool all_decode = true;
  KvArgs skv = kv;
  skv.n_seqs = static_cast<int>(m);
  skv.max_new = 0;
  for (size_t i = 0; i < m; ++i) {
    const SeqSlice& sq = seqs[part[i]];
    packed[4 * i] = sq.slot;
    packed[4 * i + 1] = sq.row_begin;
    packed[4 * i + 2] = sq.n_new;
    packed[4 * i + 3] = sq.past_len;
    all_decode = all_decode && sq.n_new == 1;
    skv.max_new = std::max(skv.max_new, sq.n_new);
    const int64_t nb = (context_tokens(sq) + BS - 1) / BS;
    const int64_t n_copy = have_new ? (int64_t{sq.past_len} + BS - 1) / BS : nb;
    for (int64_t b = 0; b < nb; ++b) {
      const int32_t scratch = used++;
      remap[i * batch.max_blocks + b] = scratch;
      if (b >= n_copy) continue;
      const int32_t host = batch.block_tables_host[part[i] * batch.max_blocks + b];
      if (!runs.empty() && runs.back().host_block + runs.back().count == host &&
          runs.back().scratch_block + runs.back().count == scratch)
        ++runs.back().count;
      else
        runs.push_back({host, scratch, 1});
    }
  }
  Tensor seqs_dev = be_.from_host(DType::kI32, {static_cast<int64_t>(m), 4}, packed.data());
  Tensor table = be_.from_host(DType::kI32, {static_cast<int64_t>(m), batch.max_blocks}, remap.data());
  skv.seqs = seqs_dev.data_as<int32_t>();
  cudaStream_t stream = be_.compute_stream();
  auto launch = [&](const KvArgs& a) {
    if (all_decode) {
      const size_t ws_bytes = attention_decode_workspace_bytes(q.dtype(), a, args);
      Tensor ws = ws_bytes > 0 ? be_.alloc(DType::kU8, {static_cast<int64_t>(ws_bytes)}) : Tensor();
      launch_attention_decode(q.dtype(), a, args, q.data(), out.data(), ws_bytes > 0 ? ws.data() : nullptr, stream);
    } else
      launch_attention_prefill(q.dtype(), a, args, q.data(), out.data(), stream);
  };
  const std::vector<int64_t> dims = {std::max(used, 1), BS, kv.n_kv_heads, kv.head_dim};
  StatusOr<Tensor> ks = be_.try_alloc(cache.k.dtype(), dims);
  StatusOr<Tensor> vs = ks.ok() ? be_.try_alloc(cache.k.dtype(), dims) : ks.status();
  if (!vs.ok()) {
    // No room for the scratch: the kernels read the mapped cache over the bus, through the part's own tables.
    std::vector<int32_t> tables(m * static_cast<size_t>(batch.max_blocks));
    for (size_t i = 0; i < m; ++i)
      std::copy_n(batch.block_tables_host.begin() + part[i] * batch.max_blocks, batch.max_blocks,
                  tables.begin() + i * batch.max_blocks);
    Tensor direct = be_.from_host(DType::kI32, {static_cast<int64_t>(m), batch.max_blocks}, tables.data());
    skv.tables = direct.data_as<int32_t>();
    launch(skv);
    return;
  }
  const size_t block_bytes = static_cast<size_t>(BS) * kv.n_kv_heads * kv.head_dim * dtype_size(cache.k.dtype());
  const char* host_k = static_cast<const char*>(host_address(cache.k));
  const char* host_v = static_cast<const char*>(host_address(cache.v));
  ZI_CHECK(host_k != nullptr && host_v != nullptr);
  std::vector<void*> dsts;
  std::vector<const void*> srcs;
  std::vector<size_t> sizes;
  for (const Run& r : runs) {
    for (int kvi = 0; kvi < 2; ++kvi) {
      srcs.push_back((kvi == 0 ? host_k : host_v) + block_bytes * static_cast<size_t>(r.host_block));
      dsts.push_back(static_cast<char*>((kvi == 0 ? *ks : *vs).data()) +
                     block_bytes * static_cast<size_t>(r.scratch_block));
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
  skv.k_cache = ks->data();
  skv.v_cache = vs->data();
  skv.num_blocks = std::max(used, 1);
  skv.tables = table.data_as<int32_t>();
  if (have_new) launch_kv_write(q.dtype(), skv, pending_k_.data(), pending_v_.data(), stream);
  launch(skv);
}

}  // namespace zi::cuda
