// The Backend interface: device memory and the ops the model forwards call. A forward only calls these ops and never
// touches tensor memory itself, so the same forward runs on the CPU backend (fp32 activations, reference math) and on
// the CUDA backend (bf16/fp16 activations). Shapes below use T = tokens in the step (all sequences flattened),
// H = hidden size, nH / nKV = query / key-value heads, D = head dim, V = vocab, NB = KV cache blocks, BS = block size.
//
// Conventions: ops allocate and return their outputs (in activation_dtype()) unless named *_inplace; inputs are
// never modified otherwise. Shape mismatches are bugs in the caller (ZI_CHECK), not user errors. A backend is driven
// by one thread at a time (the executor's); it may use its own threads inside an op.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/enum_names.h"
#include "engine/core/status.h"

namespace zi {

// kv_cache.offload_attention: who computes decode attention over a KV cache offloaded to host memory
// (engine/backend/cuda/offload_attention.h). Backends that keep the cache beside their compute ignore it.
enum class KvOffloadAttention : uint8_t {
  kAuto,  // the GPU (blocks staged by DMA) and the CPU (beside the cache) share it by measured rates
  kGpu,
  kCpu,
};
inline constexpr std::array<EnumName<KvOffloadAttention>, 3> kKvOffloadAttentionNames{
    {{KvOffloadAttention::kAuto, "auto"}, {KvOffloadAttention::kGpu, "gpu"}, {KvOffloadAttention::kCpu, "cpu"}}};

// A typed, shaped view of memory owned by a backend (host memory on the CPU backend, device memory on CUDA).
// Copies share the storage (a handle, like a shared_ptr); the memory is freed when the last handle goes.
class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, std::vector<int64_t> shape, void* data, std::shared_ptr<void> storage)
      : dtype_(dtype), shape_(std::move(shape)), data_(data), storage_(std::move(storage)) {}

  bool defined() const { return data_ != nullptr || (storage_ != nullptr); }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  // Raw pointer (a device pointer on GPU backends): for backend implementations only, never for model code.
  void* data() const { return data_; }
  // The shared storage (for views made outside this class, e.g. packed step inputs).
  const std::shared_ptr<void>& storage() const { return storage_; }
  template <class T>
  T* data_as() const { return static_cast<T*>(data_); }

  // Rows [begin, end) of the first dimension, sharing the storage.
  Tensor rows(int64_t begin, int64_t end) const {
    ZI_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0]);
    std::vector<int64_t> s = shape_;
    s[0] = end - begin;
    const size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / static_cast<size_t>(shape_[0]);
    return Tensor(dtype_, std::move(s), static_cast<char*>(data_) + begin * row_bytes, storage_);
  }
  std::string shape_str() const {
    std::string s = "[";
    for (size_t i = 0; i < shape_.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape_[i]);
    return s + "]";
  }

 private:
  DType dtype_ = DType::kF32;
  std::vector<int64_t> shape_;
  void* data_ = nullptr;
  std::shared_ptr<void> storage_;
};

// The weight argument of linear(): y = x · Wᵀ + b with W [out, in], in one of two formats:
//  - kDense: `weight` in any float dtype the backend stores (fp32 on the CPU, bf16/fp16 on CUDA);
//  - kQuantized: group-wise asymmetric 8- or 4-bit codes (layout and math in engine/quant/quantize.h):
//    W[o, i] = mins[o, g] + q[o, i] · scales[o, g], g = i / group_size, in fp32. The tensors may be views into a
//    layer shard. `weight` stays undefined.
enum class WeightFormat : uint8_t { kDense, kQuantized };

struct LinearWeight {
  WeightFormat format = WeightFormat::kDense;
  Tensor weight;  // kDense: [out, in]
  Tensor bias;    // [out], or undefined for no bias
  // kQuantized:
  Tensor qdata;   // U8 [out, row_bytes]: 8 bits one code a byte; 4 bits two (column 2j in the low nibble)
  Tensor scales;  // F16 [out, ceil(in / group_size)]
  Tensor mins;    // F16 [out, ceil(in / group_size)]
  int32_t bits = 16;
  int32_t group_size = 0;
  int64_t quant_in_features = 0;  // `in` (4-bit rows of odd width do not tell it from row_bytes)
  bool defined() const { return format == WeightFormat::kDense ? weight.defined() : qdata.defined(); }
  int64_t out_features() const { return format == WeightFormat::kDense ? weight.dim(0) : qdata.dim(0); }
  int64_t in_features() const { return format == WeightFormat::kDense ? weight.dim(1) : quant_in_features; }
};

// One sequence's rows in a step: its new tokens are rows [row_begin, row_begin + n_new) of the activations, at
// positions past_len .. past_len + n_new - 1. `slot` is the sequence's handle in the KV cache (engine/runtime/
// kv_cache.h), which supplies its block table; kernels see the table, never the handle.
struct SeqSlice {
  int32_t slot = 0;
  int32_t row_begin = 0;
  int32_t n_new = 0;
  int32_t past_len = 0;  // tokens already in the KV cache before this step
};

// The step's layout, made once per step (KvCache::prepare_step → make_attention_batch) and passed to every layer.
// The KV cache is paged: position p of sequence s lives in block block_tables[s][p / block_size], row
// p % block_size of that block.
struct AttentionBatch {
  std::vector<SeqSlice> seqs;   // host copy
  Tensor seqs_device;           // int32 [n_seqs, 4] (slot, row_begin, n_new, past_len) on the device
  Tensor positions;             // int32 [T]: absolute position of every row in its sequence
  int64_t total_rows = 0;       // T
  int32_t max_past_plus_new = 0;  // longest attended context in the step (sizes scratch buffers)
  int32_t block_size = 0;       // tokens per KV block
  int32_t max_blocks = 0;       // B: columns of the block tables (the longest table in the step)
  std::vector<int32_t> block_tables_host;  // int32 [n_seqs, B], row s = sequence s's blocks, -1 past its end
  Tensor block_tables;          // the same on the device
};

// One layer of the paged KV cache: keys and values, [num_blocks, block_size, nKV, D] each, in activation_dtype()
// (in device memory, or, with KV offload on a GPU, in pinned host memory the kernels read over the bus).
struct KvLayer {
  Tensor k;
  Tensor v;
};

struct AttentionParams {
  int n_heads = 0;
  int n_kv_heads = 0;     // n_heads % n_kv_heads == 0 (GQA: query head h reads kv head h / (n_heads / n_kv_heads))
  int head_dim = 0;
  float scale = 1.0f;     // multiplies q·k (usually 1/sqrt(D))
  int sliding_window = 0; // > 0: a query at position p sees keys at positions > p - sliding_window (Mistral)
  Tensor alibi_slopes;    // f32 [nH] or undefined: adds slope_h × (key_pos − query_pos) to scores (BLOOM)
};

enum class Activation : uint8_t {
  kRelu,      // OPT
  kGeluTanh,  // tanh approximation (BLOOM's bloom_gelu, gelu_pytorch_tanh)
  kGelu,      // exact erf GELU
  kSilu,
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;           // "cpu" | "cuda"
  // Device memory in use on this backend's device (all processes; metrics). 0 on the CPU.
  virtual uint64_t device_memory_used_bytes() const { return 0; }
  virtual DType activation_dtype() const = 0;      // fp32 on the CPU
  // The dtype linear weights are stored in after upload_weight (fp32 on the CPU: converted once at load).
  virtual DType weight_dtype(DType checkpoint_dtype) const = 0;

  // ---- memory ----
  // Uninitialised memory.
  virtual Tensor alloc(DType dtype, std::vector<int64_t> shape) = 0;
  // Copies numel × dtype_size bytes from host memory, no conversion.
  virtual Tensor from_host(DType dtype, std::vector<int64_t> shape, const void* src) = 0;
  // A weight from a checkpoint (`src` any alignment, `src_dtype` F32/F16/BF16), converted to weight_dtype().
  virtual Tensor upload_weight(DType src_dtype, std::vector<int64_t> shape, const void* src) = 0;
  // A weight of dummy_uniform(key, i, amplitude) values (engine/core/dummy_random.h) in `dtype`, made on the
  // backend's own device; nullopt where that is no faster than generating on the host and uploading (the CPU).
  virtual std::optional<Tensor> uniform_weight(DType dtype, std::vector<int64_t> shape, uint64_t key,
                                               float amplitude) {
    (void)dtype, (void)shape, (void)key, (void)amplitude;
    return std::nullopt;
  }
  // Overwrites `dst`'s nbytes() with the bytes at `src` (host memory), ordered before later ops; `src` may be reused
  // when it returns. Refills a step's input buffer in place (the addresses a captured StepGraph reads).
  virtual void upload(Tensor& dst, const void* src) = 0;
  // Copies the tensor's raw bytes to host memory (nbytes()).
  virtual void copy_to_host(const Tensor& t, void* dst) = 0;
  // The tensor as fp32 on the host (converting bf16/fp16).
  virtual std::vector<float> to_host_f32(const Tensor& t) = 0;
  // Zeroes the tensor.
  virtual void fill_zero(Tensor& t) = 0;
  // parts [n_i, d1, ...] of one dtype and the same trailing dims → [Σ n_i, d1, ...], the parts' rows in order. Load
  // time (fusing projection weights, engine/model/fused_weights.h): out of memory is a Status, not an abort.
  virtual StatusOr<Tensor> concat_rows(const std::vector<Tensor>& parts) = 0;

  // ---- ops ----
  // table [V, H] (weight dtype), ids int32 [T] → [T, H].
  virtual Tensor embedding(const Tensor& table, const Tensor& ids) = 0;
  // x [T, H], weight [H] → x / sqrt(mean(x²) + eps) × weight.
  virtual Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) = 0;
  // x [T, H], weight/bias [H] → (x − mean) / sqrt(var + eps) × weight + bias (bias may be undefined).
  virtual Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) = 0;
  // x [T, in] → [T, out] = x · Wᵀ (+ b).
  virtual Tensor linear(const Tensor& x, const LinearWeight& w) = 0;
  // Rotary embedding in place, rotate-half layout as Hugging Face: x [T, n_heads × D], each head's pairs are
  // (i, i + D/2) rotated by angle positions[t] × inv_freq[i]; inv_freq f32 [D/2].
  virtual void rope_inplace(Tensor& x, const Tensor& positions, const Tensor& inv_freq, int n_heads,
                            int head_dim) = 0;
  // Writes k, v [T, nKV × D] of every sequence's new rows to its blocks at positions past_len ... (each sequence's
  // block table covers past_len + n_new positions).
  virtual void kv_write(KvLayer& cache, const AttentionBatch& batch, const Tensor& k, const Tensor& v) = 0;
  // q [T, nH × D] → [T, nH × D]: each new row attends, causally, over its sequence's cached keys/values up to and
  // including its own position (kv_write must have run for this step's rows). Softmax in fp32.
  virtual Tensor attention(const Tensor& q, const KvLayer& cache, const AttentionBatch& batch,
                           const AttentionParams& params) = 0;
  // gate, up [T, F] → silu(gate) × up.
  virtual Tensor silu_mul(const Tensor& gate, const Tensor& up) = 0;
  // Elementwise activation of x.
  virtual Tensor activation(const Tensor& x, Activation kind) = 0;
  // a + b (same shape).
  virtual Tensor add(const Tensor& a, const Tensor& b) = 0;
  // a += b (same shape).
  virtual void add_inplace(Tensor& a, const Tensor& b) = 0;

  // ---- fused ops: one pass where the forward would run several ops; each computes what the unfused sequence
  // named in its comment computes (the same roundings), so a forward may use either ----
  // add_inplace(x, delta) then rms_norm(x, weight, eps): x [T, H] becomes x + delta (rounded to the activation dtype,
  // and the norm is taken of that rounded row); returns the norm [T, H].
  virtual Tensor add_rms_norm(Tensor& x, const Tensor& delta, const Tensor& weight, float eps) = 0;
  // add_inplace(x, delta) then layer_norm(x, weight, bias, eps); bias may be undefined.
  virtual Tensor add_layer_norm(Tensor& x, const Tensor& delta, const Tensor& weight, const Tensor& bias,
                                float eps) = 0;
  // A fused q/k/v projection's output qkv [T, (nH + 2·nKV) × D], columns [q | k | v] → q [T, nH × D] (a new tensor):
  // q and k rotated as rope_inplace(·, batch.positions, inv_freq) does, then k and v written to the cache as kv_write
  // does (sequences with n_new = 0 and rows no sequence covers write nothing; their q rows are still rotated).
  virtual Tensor qkv_rope_kv_write(const Tensor& qkv, KvLayer& cache, const AttentionBatch& batch,
                                   const Tensor& inv_freq, int n_heads, int n_kv_heads, int head_dim) = 0;
  // A fused gate/up projection's output gate_up [T, 2F], columns [gate | up] → silu_mul(gate, up) [T, F].
  virtual Tensor gate_up_silu(const Tensor& gate_up) = 0;

  // x [T, H], rows int32 [R] in backend memory (each < T; a step's StepTensors::logit_rows) → [R, H].
  virtual Tensor gather_rows(const Tensor& x, const Tensor& rows) = 0;
  // The same with a host list (uploads it first).
  Tensor gather_rows(const Tensor& x, const std::vector<int32_t>& rows) {
    return gather_rows(x, from_host(DType::kI32, {static_cast<int64_t>(rows.size())}, rows.data()));
  }
  // x [T, G × n] viewed as [T, n, G]: columns [offset, offset + width) of every group → [T, n × width]
  // (splits fused projections, e.g. BLOOM's per-head [q k v]; group = the whole row for a plain column slice).
  virtual Tensor column_slice(const Tensor& x, int64_t group, int64_t offset, int64_t width) = 0;
  // Waits for queued work (no-op on the CPU).
  virtual void synchronize() {}
  // After each step: the weight bytes streamed host → device over `layers` layers and the copies' device time. A
  // backend that shares the link (CUDA's KV offload) budgets its own transfers around them. No-op by default.
  virtual void observe_weight_stream(uint64_t bytes, double copy_seconds, int layers) {
    (void)bytes, (void)copy_seconds, (void)layers;
  }

  // ---- step graphs ----
  // Records the ops `body` enqueues instead of running them, into a StepGraph that replays them with the same
  // tensors (CUDA graphs: one launch for a whole decode step instead of hundreds). Memory the body allocates comes
  // from a pool kept for the graphs, so its addresses stay valid for every replay; tensors the body leaves alive
  // (its outputs) are rewritten by each replay. The body must not synchronise or read results. Inputs change
  // between replays only through upload() into tensors made before the capture. The body must be idempotent: a
  // backend may run it once eagerly before capturing (CUDA: to time per-shape choices). nullptr when the backend has no
  // graphs (the CPU: every step runs eagerly); an error when the body failed or the capture was refused.
  class StepGraph {
   public:
    virtual ~StepGraph() = default;
    // Enqueues the recorded ops once.
    virtual void replay() = 0;
  };
  virtual StatusOr<std::unique_ptr<StepGraph>> capture(const std::function<Status()>& body) {
    (void)body;
    return std::unique_ptr<StepGraph>();
  }

  // ---- KV cache memory ----
  // Memory for the KV cache, reserved at load time (out of memory is a Status naming the size, not an abort): device
  // memory, or with `host` (KV offload) host memory that this backend's kernels read and write over the bus (pinned
  // and mapped on CUDA). The CPU backend's memory is host memory either way: the same as alloc().
  virtual StatusOr<Tensor> alloc_kv(DType dtype, std::vector<int64_t> shape, bool host) {
    (void)host;
    return alloc(dtype, std::move(shape));
  }
  // Device memory free for the KV cache after the weights, streaming ring and other reservations, or -1 when the
  // backend has no device memory of its own (CPU: the KV cache is sized by a setting).
  virtual int64_t device_free_bytes() const { return -1; }
  // Device memory this process holds on the backend's device, CUDA context included (NVML's per-process figure;
  // memory.gpu_limit is counted against it), or -1 when the backend has no device memory.
  virtual int64_t process_device_bytes() const { return -1; }
};

// Uploads the step's layout (SeqSlice list, per-row positions and block tables) to the backend. `block_tables[s]`
// lists sequence s's KV blocks in position order and must cover past_len + n_new positions.
AttentionBatch make_attention_batch(Backend& backend, std::vector<SeqSlice> seqs, int32_t block_size,
                                    const std::vector<std::vector<int32_t>>& block_tables);

// The shape concat_rows(parts) returns; checks (ZI_CHECK) that the parts have one dtype and the same trailing dims.
std::vector<int64_t> concat_rows_shape(const std::vector<Tensor>& parts);

// The CPU backend; `num_threads` 0 = the machine's cores (or ZI_CPU_THREADS when set).
std::unique_ptr<Backend> make_cpu_backend(int num_threads = 0);

}  // namespace zi
