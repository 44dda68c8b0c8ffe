// The CPU backend: fp32 activations, weights converted to fp32 once at upload, host memory from aligned_alloc
// (untouched pages of a large KV cache are not committed until written).
#include <cstdlib>
#include <cstring>
#include <span>

#include "engine/backend/cpu/kernels.h"

namespace zi {
namespace {

using cpu::ThreadPool;

bool same_shape(const Tensor& a, const Tensor& b) { return a.shape() == b.shape(); }

// A quantized LinearWeight's host view, its tensors checked against the layout.
QuantView quant_view(const LinearWeight& w) {
  ZI_CHECK(w.bits == 4 || w.bits == 8);
  ZI_CHECK(w.group_size >= 1 && w.quant_in_features >= 0);
  const int64_t out = w.qdata.dim(0), in = w.quant_in_features;
  ZI_CHECK(w.qdata.dtype() == DType::kU8 && w.qdata.rank() == 2 && w.qdata.dim(1) == quant_row_bytes(in, w.bits));
  const std::vector<int64_t> gshape = {out, quant_groups(in, w.group_size)};
  ZI_CHECK(w.scales.dtype() == DType::kF16 && w.scales.shape() == gshape);
  ZI_CHECK(w.mins.dtype() == DType::kF16 && w.mins.shape() == gshape);
  QuantView v;
  v.data = w.qdata.data_as<const uint8_t>();
  v.scales = w.scales.data_as<const uint16_t>();
  v.mins = w.mins.data_as<const uint16_t>();
  v.rows = out;
  v.cols = in;
  v.params = {w.bits, w.group_size};
  return v;
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}

  std::string name() const override { return "cpu"; }
  DType activation_dtype() const override { return DType::kF32; }
  DType weight_dtype(DType) const override { return DType::kF32; }

  Tensor alloc(DType dtype, std::vector<int64_t> shape) override {
    int64_t numel = 1;
    for (int64_t d : shape) {
      ZI_CHECK(d >= 0);
      numel *= d;
    }
    // 64-byte aligned, rounded up to a whole number of alignment units as aligned_alloc requires.
    size_t bytes = static_cast<size_t>(numel) * dtype_size(dtype);
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) {
      std::fprintf(stderr, "zeroinfer: out of host memory allocating %zu bytes\n", rounded);
      std::abort();
    }
    return Tensor(dtype, std::move(shape), p, std::shared_ptr<void>(p, [](void* q) { std::free(q); }));
  }

  Tensor from_host(DType dtype, std::vector<int64_t> shape, const void* src) override {
    Tensor t = alloc(dtype, std::move(shape));
    if (t.nbytes()) std::memcpy(t.data(), src, t.nbytes());
    return t;
  }

  void upload(Tensor& dst, const void* src) override {
    if (dst.nbytes()) std::memcpy(dst.data(), src, dst.nbytes());
  }

  Tensor upload_weight(DType src_dtype, std::vector<int64_t> shape, const void* src) override {
    ZI_CHECK(is_float_weight_dtype(src_dtype));
    Tensor t = alloc(DType::kF32, std::move(shape));
    convert_to_f32(src_dtype, src, t.data_as<float>(), static_cast<size_t>(t.numel()));
    return t;
  }

  void copy_to_host(const Tensor& t, void* dst) override {
    if (t.nbytes()) std::memcpy(dst, t.data(), t.nbytes());
  }

  std::vector<float> to_host_f32(const Tensor& t) override {
    std::vector<float> out(static_cast<size_t>(t.numel()));
    if (!out.empty()) convert_to_f32(t.dtype(), t.data(), out.data(), out.size());
    return out;
  }

  void fill_zero(Tensor& t) override {
    if (t.nbytes()) std::memset(t.data(), 0, t.nbytes());
  }

  StatusOr<Tensor> concat_rows(const std::vector<Tensor>& parts) override {
    Tensor out = alloc(parts.at(0).dtype(), concat_rows_shape(parts));
    char* dst = static_cast<char*>(out.data());
    for (const Tensor& p : parts) {
      if (p.nbytes()) std::memcpy(dst, p.data(), p.nbytes());
      dst += p.nbytes();
    }
    return out;
  }

  Tensor embedding(const Tensor& table, const Tensor& ids) override {
    ZI_CHECK(table.rank() == 2 && table.dtype() == DType::kF32 && ids.rank() == 1 && ids.dtype() == DType::kI32);
    const int64_t T = ids.dim(0), V = table.dim(0), H = table.dim(1);
    Tensor y = alloc(DType::kF32, {T, H});
    const int32_t* id = ids.data_as<int32_t>();
    for (int64_t t = 0; t < T; ++t) {
      ZI_CHECK(id[t] >= 0 && id[t] < V);
      std::memcpy(y.data_as<float>() + t * H, table.data_as<float>() + id[t] * H, sizeof(float) * H);
    }
    return y;
  }

  Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) override {
    ZI_CHECK(x.rank() == 2 && weight.rank() == 1 && weight.dim(0) == x.dim(1));
    Tensor y = alloc(DType::kF32, x.shape());
    cpu::rms_norm_f32(pool_, x.data_as<float>(), x.dim(0), x.dim(1), weight.data_as<float>(), eps,
                      y.data_as<float>());
    return y;
  }

  Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) override {
    ZI_CHECK(x.rank() == 2 && weight.rank() == 1 && weight.dim(0) == x.dim(1));
    ZI_CHECK(!bias.defined() || bias.shape() == weight.shape());
    Tensor y = alloc(DType::kF32, x.shape());
    cpu::layer_norm_f32(pool_, x.data_as<float>(), x.dim(0), x.dim(1), weight.data_as<float>(),
                        bias.defined() ? bias.data_as<float>() : nullptr, eps, y.data_as<float>());
    return y;
  }

  Tensor linear(const Tensor& x, const LinearWeight& w) override {
    ZI_CHECK(x.rank() == 2 && x.dim(1) == w.in_features());
    ZI_CHECK(!w.bias.defined() || (w.bias.rank() == 1 && w.bias.dim(0) == w.out_features() &&
                                   w.bias.dtype() == DType::kF32));
    const int64_t T = x.dim(0), out = w.out_features();
    const float* bias = w.bias.defined() ? w.bias.data_as<float>() : nullptr;
    Tensor y = alloc(DType::kF32, {T, out});
    if (w.format == WeightFormat::kQuantized) {
      // Dequantized block by block into fp32, then the dense kernel's math (engine/quant/quantize.h).
      const QuantView q = quant_view(w);
      cpu::linear_quant_f32(pool_, x.data_as<float>(), T, q, bias, y.data_as<float>());
      return y;
    }
    ZI_CHECK(w.format == WeightFormat::kDense && w.weight.dtype() == DType::kF32 && w.weight.rank() == 2);
    cpu::linear_f32(pool_, x.data_as<float>(), T, x.dim(1), w.weight.data_as<float>(), out, bias,
                    y.data_as<float>());
    return y;
  }

  void rope_inplace(Tensor& x, const Tensor& positions, const Tensor& inv_freq, int n_heads, int head_dim) override {
    ZI_CHECK(x.rank() == 2 && x.dim(1) == static_cast<int64_t>(n_heads) * head_dim && head_dim % 2 == 0);
    ZI_CHECK(positions.numel() == x.dim(0) && inv_freq.numel() == head_dim / 2);
    cpu::rope_f32(pool_, x.data_as<float>(), x.dim(0), n_heads, head_dim, positions.data_as<int32_t>(),
                  inv_freq.data_as<float>());
  }

  void kv_write(KvLayer& cache, const AttentionBatch& batch, const Tensor& k, const Tensor& v) override {
    const cpu::KvGeometry g = geometry(cache, batch);
    ZI_CHECK(same_shape(k, v) && k.rank() == 2 && k.dim(0) == batch.total_rows &&
             k.dim(1) == static_cast<int64_t>(g.n_kv_heads) * g.head_dim);
    cpu::kv_write_f32(batch.seqs, g, k.data_as<float>(), v.data_as<float>(), cache.k.data_as<float>(),
                      cache.v.data_as<float>());
  }

  Tensor attention(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch,
                   const AttentionParams& p) override {
    const cpu::KvGeometry g = geometry(cache, batch);
    ZI_CHECK(p.n_kv_heads == g.n_kv_heads && p.head_dim == g.head_dim && p.n_heads % p.n_kv_heads == 0);
    ZI_CHECK(q.rank() == 2 && q.dim(0) == batch.total_rows && q.dim(1) == static_cast<int64_t>(p.n_heads) * p.head_dim);
    ZI_CHECK(!p.alibi_slopes.defined() || p.alibi_slopes.numel() == p.n_heads);
    Tensor out = alloc(DType::kF32, q.shape());
    cpu::attention_f32(pool_, batch.seqs, batch.total_rows, g, q.data_as<float>(), cache.k.data_as<float>(),
                       cache.v.data_as<float>(), p.n_heads, p.scale, p.sliding_window,
                       p.alibi_slopes.defined() ? p.alibi_slopes.data_as<float>() : nullptr, out.data_as<float>());
    return out;
  }

  Tensor silu_mul(const Tensor& gate, const Tensor& up) override {
    ZI_CHECK(same_shape(gate, up));
    Tensor y = alloc(DType::kF32, gate.shape());
    cpu::silu_mul_f32(pool_, gate.data_as<float>(), up.data_as<float>(), gate.numel(), y.data_as<float>());
    return y;
  }

  Tensor activation(const Tensor& x, Activation kind) override {
    Tensor y = alloc(DType::kF32, x.shape());
    cpu::activation_f32(pool_, x.data_as<float>(), x.numel(), kind, y.data_as<float>());
    return y;
  }

  Tensor add(const Tensor& a, const Tensor& b) override {
    ZI_CHECK(same_shape(a, b));
    Tensor y = alloc(DType::kF32, a.shape());
    const float* pa = a.data_as<float>();
    const float* pb = b.data_as<float>();
    float* py = y.data_as<float>();
    for (int64_t i = 0, n = a.numel(); i < n; ++i) py[i] = pa[i] + pb[i];
    return y;
  }

  void add_inplace(Tensor& a, const Tensor& b) override {
    ZI_CHECK(same_shape(a, b));
    float* pa = a.data_as<float>();
    const float* pb = b.data_as<float>();
    for (int64_t i = 0, n = a.numel(); i < n; ++i) pa[i] += pb[i];
  }

  // The fused ops are the reference: literally the unfused sequences they stand for.
  Tensor add_rms_norm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps) override {
    add_inplace(x, delta);
    return rms_norm(x, weight, eps);
  }

  Tensor add_layer_norm(Tensor& x, const Tensor& delta, const Tensor& weight, const Tensor& bias,
                        float eps) override {
    add_inplace(x, delta);
    return layer_norm(x, weight, bias, eps);
  }

  Tensor qkv_rope_kv_write(const Tensor& qkv, KvLayer& cache, const AttentionBatch& batch, const Tensor& inv_freq,
                           int n_heads, int n_kv_heads, int head_dim) override {
    const cpu::KvGeometry g = geometry(cache, batch);
    const int64_t T = batch.total_rows, qw = int64_t{n_heads} * head_dim, kw = int64_t{n_kv_heads} * head_dim;
    ZI_CHECK(g.n_kv_heads == n_kv_heads && g.head_dim == head_dim && head_dim % 2 == 0);
    ZI_CHECK(qkv.rank() == 2 && qkv.dim(0) == T && qkv.dim(1) == qw + 2 * kw);
    ZI_CHECK(batch.positions.numel() == T && inv_freq.numel() == head_dim / 2);
    // The three projections' outputs, as the unfused forward has them.
    Tensor q = alloc(DType::kF32, {T, qw}), k = alloc(DType::kF32, {T, kw}), v = alloc(DType::kF32, {T, kw});
    for (int64_t t = 0; t < T; ++t) {
      const float* row = qkv.data_as<float>() + t * (qw + 2 * kw);
      std::memcpy(q.data_as<float>() + t * qw, row, sizeof(float) * qw);
      std::memcpy(k.data_as<float>() + t * kw, row + qw, sizeof(float) * kw);
      std::memcpy(v.data_as<float>() + t * kw, row + qw + kw, sizeof(float) * kw);
    }
    rope_inplace(q, batch.positions, inv_freq, n_heads, head_dim);
    rope_inplace(k, batch.positions, inv_freq, n_kv_heads, head_dim);
    kv_write(cache, batch, k, v);
    return q;
  }

  Tensor gate_up_silu(const Tensor& gate_up) override {
    ZI_CHECK(gate_up.rank() == 2 && gate_up.dim(1) % 2 == 0);
    const int64_t T = gate_up.dim(0), F = gate_up.dim(1) / 2;
    Tensor y = alloc(DType::kF32, {T, F});
    cpu::gate_up_silu_f32(pool_, gate_up.data_as<float>(), T, F, y.data_as<float>());
    return y;
  }

  using Backend::gather_rows;
  Tensor gather_rows(const Tensor& x, const Tensor& row_ids) override {
    ZI_CHECK(x.rank() == 2 && row_ids.dtype() == DType::kI32);
    const int64_t H = x.dim(1);
    const std::span<const int32_t> rows(row_ids.data_as<int32_t>(), static_cast<size_t>(row_ids.numel()));
    Tensor y = alloc(DType::kF32, {static_cast<int64_t>(rows.size()), H});
    for (size_t r = 0; r < rows.size(); ++r) {
      ZI_CHECK(rows[r] >= 0 && rows[r] < x.dim(0));
      std::memcpy(y.data_as<float>() + r * H, x.data_as<float>() + rows[r] * H, sizeof(float) * H);
    }
    return y;
  }

  Tensor column_slice(const Tensor& x, int64_t group, int64_t offset, int64_t width) override {
    ZI_CHECK(x.rank() == 2 && group > 0 && x.dim(1) % group == 0 && offset >= 0 && width >= 0 &&
             offset + width <= group);
    const int64_t T = x.dim(0), groups = x.dim(1) / group;
    Tensor y = alloc(DType::kF32, {T, groups * width});
    for (int64_t t = 0; t < T; ++t)
      for (int64_t gi = 0; gi < groups; ++gi)
        std::memcpy(y.data_as<float>() + (t * groups + gi) * width, x.data_as<float>() + t * x.dim(1) + gi * group + offset,
                    sizeof(float) * width);
    return y;
  }

 private:
  static cpu::KvGeometry geometry(const KvLayer& cache, const AttentionBatch& batch) {
    ZI_CHECK(cache.k.rank() == 4 && same_shape(cache.k, cache.v) && cache.k.dtype() == DType::kF32);
    ZI_CHECK(batch.block_size == cache.k.dim(1) &&
             batch.block_tables_host.size() == batch.seqs.size() * static_cast<size_t>(batch.max_blocks));
    return cpu::KvGeometry{cache.k.dim(0), cache.k.dim(1), static_cast<int>(cache.k.dim(2)),
                           static_cast<int>(cache.k.dim(3)), batch.block_tables_host.data(), batch.max_blocks};
  }

  ThreadPool pool_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int num_threads) {
  return std::make_unique<CpuBackend>(num_threads > 0 ? num_threads : cpu::default_cpu_threads());
}

}  // namespace zi
