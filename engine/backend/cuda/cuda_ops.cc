// CudaBackend ops: shape and dtype checks (a mismatch is a bug in the forward: ZI_CHECK), then one kernel launch
// on the compute stream. Activations are in act_ (bf16 / fp16 / fp32); small per-model vectors (norm weights,
// biases) may be in any float dtype.
#include <algorithm>

#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/offload_attention.h"

namespace zi::cuda {

namespace {

bool is_float(DType t) { return is_float_weight_dtype(t); }

// Rows of a [.., last] tensor.
int64_t rows_of(const Tensor& x) { return x.rank() == 0 || x.dim(-1) == 0 ? 0 : x.numel() / x.dim(-1); }

}  // namespace

Tensor CudaBackend::embedding(const Tensor& table, const Tensor& ids) {
  OpTimer timer(times_, compute_.get(), "embedding");
  ZI_CHECK(table.rank() == 2 && is_float(table.dtype()) && ids.dtype() == DType::kI32);
  make_current();
  const int64_t T = ids.numel(), H = table.dim(1);
  Tensor out = output(act_, {T, H});
  launch_embedding(table.dtype(), table.data(), table.dim(0), H, ids.data_as<int32_t>(), T, act_, out.data(),
                   compute_.get());
  return out;
}

Tensor CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  OpTimer timer(times_, compute_.get(), "rms_norm");
  ZI_CHECK(x.dtype() == act_ && x.rank() >= 1 && is_float(weight.dtype()) && weight.numel() == x.dim(-1));
  make_current();
  Tensor y = output(act_, x.shape());
  launch_rms_norm(act_, x.data(), rows_of(x), x.dim(-1), weight.dtype(), weight.data(), eps, y.data(),
                  compute_.get());
  return y;
}

Tensor CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  OpTimer timer(times_, compute_.get(), "layer_norm");
  ZI_CHECK(x.dtype() == act_ && x.rank() >= 1 && is_float(weight.dtype()) && weight.numel() == x.dim(-1));
  ZI_CHECK(!bias.defined() || (is_float(bias.dtype()) && bias.numel() == x.dim(-1)));
  make_current();
  Tensor y = output(act_, x.shape());
  launch_layer_norm(act_, x.data(), rows_of(x), x.dim(-1), weight.dtype(), weight.data(),
                    bias.defined() ? bias.dtype() : weight.dtype(), bias.defined() ? bias.data() : nullptr, eps,
                    y.data(), compute_.get());
  return y;
}

void CudaBackend::rope_inplace(Tensor& x, const Tensor& positions, const Tensor& inv_freq, int n_heads,
                               int head_dim) {
  OpTimer timer(times_, compute_.get(), "rope");
  ZI_CHECK(x.dtype() == act_ && x.rank() == 2 && x.dim(1) == int64_t{n_heads} * head_dim && head_dim % 2 == 0);
  ZI_CHECK(positions.dtype() == DType::kI32 && positions.numel() == x.dim(0));
  ZI_CHECK(inv_freq.dtype() == DType::kF32 && inv_freq.numel() == head_dim / 2);
  make_current();
  launch_rope(act_, x.data(), x.dim(0), n_heads, head_dim, positions.data_as<int32_t>(), inv_freq.data_as<float>(),
              compute_.get());
}

KvArgs CudaBackend::kv_args(const KvLayer& cache, const AttentionBatch& batch, int n_kv_heads, int head_dim) const {
  const Tensor& kc = cache.k;
  ZI_CHECK(kc.dtype() == act_ && cache.v.dtype() == act_ && kc.rank() == 4 && kc.shape() == cache.v.shape());
  ZI_CHECK(kc.dim(2) == n_kv_heads && kc.dim(3) == head_dim && kc.dim(1) == batch.block_size);
  ZI_CHECK(batch.seqs_device.dtype() == DType::kI32 &&
           batch.seqs_device.numel() == 4 * static_cast<int64_t>(batch.seqs.size()));
  ZI_CHECK(batch.block_tables.dtype() == DType::kI32 &&
           batch.block_tables.numel() == int64_t{batch.max_blocks} * static_cast<int64_t>(batch.seqs.size()) &&
           batch.block_tables_host.size() == static_cast<size_t>(batch.block_tables.numel()));
  KvArgs kv;
  kv.k_cache = kc.data();
  kv.v_cache = cache.v.data();
  kv.num_blocks = kc.dim(0);
  kv.block_size = static_cast<int>(kc.dim(1));
  kv.n_kv_heads = n_kv_heads;
  kv.head_dim = head_dim;
  kv.seqs = batch.seqs_device.data_as<int32_t>();
  kv.tables = batch.block_tables.data_as<int32_t>();
  kv.max_blocks = batch.max_blocks;
  kv.n_seqs = static_cast<int>(batch.seqs.size());
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    const SeqSlice& s = batch.seqs[i];
    ZI_CHECK(s.past_len >= 0 && s.n_new >= 0 && s.row_begin >= 0 &&
             int64_t{s.row_begin} + s.n_new <= batch.total_rows);
    // Every block the kernels will touch exists: the table covers past_len + n_new positions.
    const int64_t nb = (int64_t{s.past_len} + s.n_new + kv.block_size - 1) / kv.block_size;
    ZI_CHECK(nb <= batch.max_blocks);
    for (int64_t b = 0; b < nb; ++b) {
      const int32_t blk = batch.block_tables_host[i * batch.max_blocks + b];
      ZI_CHECK(blk >= 0 && blk < kv.num_blocks);
    }
    kv.max_new = std::max(kv.max_new, s.n_new);
  }
  return kv;
}

void CudaBackend::kv_write(KvLayer& cache, const AttentionBatch& batch, const Tensor& k, const Tensor& v) {
  OpTimer timer(times_, compute_.get(), "kv_write");
  const int nKV = static_cast<int>(cache.k.dim(2)), D = static_cast<int>(cache.k.dim(3));
  ZI_CHECK(k.dtype() == act_ && v.dtype() == act_ && k.shape() == v.shape() && k.rank() == 2 &&
           k.dim(0) == batch.total_rows && k.dim(1) == int64_t{nKV} * D);
  make_current();
  launch_kv_write(act_, kv_args(cache, batch, nKV, D), k.data(), v.data(), compute_.get());
  // An offloaded cache's attention takes the new rows from k/v (device memory) rather than reading them back.
  if (offload_ && offload_->host_address(cache.k) != nullptr) offload_->note_kv_write(cache, k, v);
}

Tensor CudaBackend::attention(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch,
                              const AttentionParams& params) {
  OpTimer timer(times_, compute_.get(), "attention");
  const int nH = params.n_heads, nKV = params.n_kv_heads, D = params.head_dim;
  ZI_CHECK(nH > 0 && nKV > 0 && nH % nKV == 0 && D > 0 && D <= kMaxAttentionHeadDim);
  ZI_CHECK(q.dtype() == act_ && q.rank() == 2 && q.dim(0) == batch.total_rows && q.dim(1) == int64_t{nH} * D);
  ZI_CHECK(!params.alibi_slopes.defined() ||
           (params.alibi_slopes.dtype() == DType::kF32 && params.alibi_slopes.numel() == nH));
  make_current();
  const KvArgs kv = kv_args(cache, batch, nKV, D);
  AttentionArgs a;
  a.n_heads = nH;
  a.scale = params.scale;
  a.sliding_window = params.sliding_window;
  a.alibi_slopes = params.alibi_slopes.defined() ? params.alibi_slopes.data_as<float>() : nullptr;
  Tensor out = output(act_, q.shape());
  // Rows no sequence covers are left as they are (the forward never reads them); zero them so they are defined.
  int64_t covered = 0;
  for (const SeqSlice& s : batch.seqs) covered += s.n_new;
  if (covered != batch.total_rows) fill_zero(out);
  if (offload_ && offload_->host_address(cache.k) != nullptr) {
    timer.detail(" (kv offload)");
    offload_->run(q, cache, batch, kv, a, params, out);
    return out;
  }
  // Decode rows only (sequences with no new rows, e.g. a replayed graph's padding, exit at once).
  const bool all_decode =
      std::all_of(batch.seqs.begin(), batch.seqs.end(), [](const SeqSlice& s) { return s.n_new <= 1; });
  timer.detail(all_decode ? " decode" : " prefill");
  if (all_decode) {
    // Split-context partial results (from the step's pool: inside a captured graph, from the graph's).
    const size_t ws_bytes = attention_decode_workspace_bytes(act_, kv, a);
    Tensor ws = ws_bytes > 0 ? output(DType::kU8, {static_cast<int64_t>(ws_bytes)}) : Tensor();
    launch_attention_decode(act_, kv, a, q.data(), out.data(), ws_bytes > 0 ? ws.data() : nullptr, compute_.get());
  }
  else
    launch_attention_prefill(act_, kv, a, q.data(), out.data(), compute_.get());
  return out;
}

Tensor CudaBackend::silu_mul(const Tensor& gate, const Tensor& up) {
  OpTimer timer(times_, compute_.get(), "silu_mul");
  ZI_CHECK(gate.dtype() == act_ && up.dtype() == act_ && gate.shape() == up.shape());
  make_current();
  Tensor y = output(act_, gate.shape());
  launch_silu_mul(act_, gate.data(), up.data(), gate.numel(), y.data(), compute_.get());
  return y;
}

Tensor CudaBackend::activation(const Tensor& x, Activation kind) {
  OpTimer timer(times_, compute_.get(), "activation");
  ZI_CHECK(x.dtype() == act_);
  make_current();
  Tensor y = output(act_, x.shape());
  launch_activation(act_, x.data(), x.numel(), kind, y.data(), compute_.get());
  return y;
}

Tensor CudaBackend::add(const Tensor& a, const Tensor& b) {
  OpTimer timer(times_, compute_.get(), "add");
  ZI_CHECK(a.dtype() == act_ && b.dtype() == act_ && a.shape() == b.shape());
  make_current();
  Tensor y = output(act_, a.shape());
  launch_add(act_, a.data(), b.data(), a.numel(), y.data(), compute_.get());
  return y;
}

void CudaBackend::add_inplace(Tensor& a, const Tensor& b) {
  OpTimer timer(times_, compute_.get(), "add");
  ZI_CHECK(a.dtype() == act_ && b.dtype() == act_ && a.shape() == b.shape());
  make_current();
  launch_add(act_, a.data(), b.data(), a.numel(), a.data(), compute_.get());
}

Tensor CudaBackend::gather_rows(const Tensor& x, const Tensor& rows) {
  OpTimer timer(times_, compute_.get(), "gather_rows");
  // The ids are device memory the step packer filled and range-checked on the host (engine/model/step_tensors.h).
  ZI_CHECK(x.rank() >= 1 && rows.dtype() == DType::kI32 && rows.rank() == 1);
  make_current();
  std::vector<int64_t> shape = x.shape();
  shape[0] = rows.numel();
  Tensor out = output(x.dtype(), std::move(shape));
  if (rows.numel() == 0) return out;
  const int64_t row_bytes = x.dim(0) == 0 ? 0 : static_cast<int64_t>(x.nbytes()) / x.dim(0);
  launch_gather_rows(x.data(), row_bytes, rows.data_as<int32_t>(), rows.numel(), out.data(), compute_.get());
  return out;
}

Tensor CudaBackend::column_slice(const Tensor& x, int64_t group, int64_t offset, int64_t width) {
  OpTimer timer(times_, compute_.get(), "column_slice");
  ZI_CHECK(x.rank() == 2 && group > 0 && x.dim(1) % group == 0 && offset >= 0 && width >= 0 &&
           offset + width <= group);
  make_current();
  const int64_t n_groups = x.dim(1) / group;
  Tensor out = output(x.dtype(), {x.dim(0), n_groups * width});
  launch_column_slice(dtype_size(x.dtype()), x.data(), x.dim(0), n_groups, group, offset, width, out.data(),
                      compute_.get());
  return out;
}

}  // namespace zi::cuda
