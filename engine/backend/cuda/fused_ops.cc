// CudaBackend's fused ops (backend.h, "fused ops") and concat_rows: shape and dtype checks (a mismatch is a bug in
// the forward: ZI_CHECK), then one kernel launch on the compute stream (fused_*.cu). Like every op they neither
// synchronise nor allocate beyond their output, so they can be captured in a step graph.
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/offload_attention.h"

namespace zi::cuda {

namespace {

// Checks x [T, H] += delta → norm with weight / bias [H]; bias (when given) in the weight's dtype (the kernels take
// one type for both: the forwards upload both the same way).
void check_add_norm(DType act, const Tensor& x, const Tensor& delta, const Tensor& weight, const Tensor& bias) {
  ZI_CHECK(x.dtype() == act && delta.dtype() == act && x.rank() == 2 && x.shape() == delta.shape());
  ZI_CHECK(x.data() != delta.data() || x.numel() == 0);
  ZI_CHECK(is_float_weight_dtype(weight.dtype()) && weight.numel() == x.dim(1));
  ZI_CHECK(!bias.defined() || (bias.dtype() == weight.dtype() && bias.numel() == x.dim(1)));
}

}  // namespace

StatusOr<Tensor> CudaBackend::concat_rows(const std::vector<Tensor>& parts) {
  std::vector<int64_t> shape = concat_rows_shape(parts);
  ZI_ASSIGN_OR_RETURN(Tensor out, try_alloc(parts[0].dtype(), std::move(shape)));
  char* dst = static_cast<char*>(out.data());
  for (const Tensor& p : parts) {
    if (p.nbytes())
      ZI_CUDA_CHECK(cudaMemcpyAsync(dst, p.data(), p.nbytes(), cudaMemcpyDeviceToDevice, compute_.get()));
    dst += p.nbytes();
  }
  return out;
}

Tensor CudaBackend::add_rms_norm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps) {
  OpTimer timer(times_, compute_.get(), "add_rms_norm");
  check_add_norm(act_, x, delta, weight, Tensor());
  make_current();
  Tensor y = output(act_, x.shape());
  launch_add_rms_norm(act_, x.data(), delta.data(), x.dim(0), x.dim(1), weight.dtype(), weight.data(), eps, y.data(),
                      compute_.get());
  return y;
}

Tensor CudaBackend::add_layer_norm(Tensor& x, const Tensor& delta, const Tensor& weight, const Tensor& bias,
                                   float eps) {
  OpTimer timer(times_, compute_.get(), "add_layer_norm");
  check_add_norm(act_, x, delta, weight, bias);
  make_current();
  Tensor y = output(act_, x.shape());
  launch_add_layer_norm(act_, x.data(), delta.data(), x.dim(0), x.dim(1), weight.dtype(), weight.data(),
                        bias.defined() ? bias.data() : nullptr, eps, y.data(), compute_.get());
  return y;
}

Tensor CudaBackend::qkv_rope_kv_write(const Tensor& qkv, KvLayer& cache, const AttentionBatch& batch,
                                      const Tensor& inv_freq, int n_heads, int n_kv_heads, int head_dim) {
  OpTimer timer(times_, compute_.get(), "qkv_rope_kv_write");
  const int64_t T = batch.total_rows, qw = int64_t{n_heads} * head_dim, kw = int64_t{n_kv_heads} * head_dim;
  ZI_CHECK(n_heads > 0 && n_kv_heads > 0 && head_dim > 0 && head_dim % 2 == 0);
  ZI_CHECK(qkv.dtype() == act_ && qkv.rank() == 2 && qkv.dim(0) == T && qkv.dim(1) == qw + 2 * kw);
  ZI_CHECK(batch.positions.dtype() == DType::kI32 && batch.positions.numel() == T);
  ZI_CHECK(inv_freq.dtype() == DType::kF32 && inv_freq.numel() == head_dim / 2);
  make_current();
  if (offload_ && offload_->host_address(cache.k) != nullptr) {
    // An offloaded cache's attention takes the step's k/v rows from device tensors that kv_write hands over:
    // the unfused sequence, which makes them.
    Tensor q = column_slice(qkv, qkv.dim(1), 0, qw);
    Tensor k = column_slice(qkv, qkv.dim(1), qw, kw);
    Tensor v = column_slice(qkv, qkv.dim(1), qw + kw, kw);
    rope_inplace(q, batch.positions, inv_freq, n_heads, head_dim);
    rope_inplace(k, batch.positions, inv_freq, n_kv_heads, head_dim);
    kv_write(cache, batch, k, v);
    return q;
  }
  const KvArgs kv = kv_args(cache, batch, n_kv_heads, head_dim);
  Tensor q = output(act_, {T, qw});
  launch_qkv_rope_kv_write(act_, qkv.data(), T, n_heads, batch.positions.data_as<int32_t>(),
                           inv_freq.data_as<float>(), kv, q.data(), compute_.get());
  return q;
}

Tensor CudaBackend::gate_up_silu(const Tensor& gate_up) {
  OpTimer timer(times_, compute_.get(), "gate_up_silu");
  ZI_CHECK(gate_up.dtype() == act_ && gate_up.rank() == 2 && gate_up.dim(1) % 2 == 0);
  make_current();
  const int64_t T = gate_up.dim(0), F = gate_up.dim(1) / 2;
  Tensor y = output(act_, {T, F});
  launch_gate_up_silu(act_, gate_up.data(), T, F, y.data(), compute_.get());
  return y;
}

}  // namespace zi::cuda
