// Host-side launchers of the CUDA kernels (one .cu per concern). They take raw device pointers, element counts
// and the stream to enqueue on, and never synchronise. Shapes and dtypes are checked by CudaBackend before a
// launch; here they are trusted. `dtype` arguments are F32 / F16 / BF16 unless noted; "act" = activation dtype.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "engine/backend/backend.h"
#include "engine/core/dtype.h"

namespace zi::cuda {

// convert.cu: y[i] = x[i] converted (round to nearest even), n elements.
void launch_convert(DType src_type, const void* x, DType dst_type, void* y, int64_t n, cudaStream_t stream);
// dummy_fill.cu: y[i] = dummy_uniform(key, i, amplitude) (engine/core/dummy_random.h) rounded to `type`.
void launch_dummy_uniform(DType type, void* y, int64_t n, uint64_t key, float amplitude, cudaStream_t stream);

// gather.cu
// out[t, :] = table[ids[t], :] converted to out_type; ids outside [0, V) give a zero row (the caller validates ids).
void launch_embedding(DType table_type, const void* table, int64_t V, int64_t H, const int32_t* ids, int64_t T,
                      DType out_type, void* out, cudaStream_t stream);
// out[i, :] = x[rows[i], :] for n rows of `row_bytes` bytes (any dtype).
void launch_gather_rows(const void* x, int64_t row_bytes, const int32_t* rows, int64_t n, void* out,
                        cudaStream_t stream);
// x [T, n_groups × group] → out [T, n_groups × width]: columns [offset, offset + width) of each group.
void launch_column_slice(size_t elem_size, const void* x, int64_t T, int64_t n_groups, int64_t group,
                         int64_t offset, int64_t width, void* out, cudaStream_t stream);

// norm.cu: one block per row; fp32 math; weight / bias in their own float dtype (bias may be null).
void launch_rms_norm(DType type, const void* x, int64_t T, int64_t H, DType w_type, const void* w, float eps,
                     void* y, cudaStream_t stream);
void launch_layer_norm(DType type, const void* x, int64_t T, int64_t H, DType w_type, const void* w, DType b_type,
                       const void* b, float eps, void* y, cudaStream_t stream);

// rope.cu: in place on x [T, n_heads × D]; angle = float(positions[t]) × inv_freq[i] in fp32.
void launch_rope(DType type, void* x, int64_t T, int n_heads, int head_dim, const int32_t* positions,
                 const float* inv_freq, cudaStream_t stream);

// activation.cu
void launch_silu_mul(DType type, const void* gate, const void* up, int64_t n, void* y, cudaStream_t stream);
void launch_activation(DType type, const void* x, int64_t n, Activation kind, void* y, cudaStream_t stream);

// binary.cu
// y = a + b, n elements (y may alias a).
void launch_add(DType type, const void* a, const void* b, int64_t n, void* y, cudaStream_t stream);
// y[t, o] += bias[o] for y [T, out].
void launch_bias_add(DType type, void* y, int64_t T, int64_t out, DType b_type, const void* bias,
                     cudaStream_t stream);

// One layer's paged KV cache [NB, BS, nKV, D] and the step's sequences as kernels read them. Position p of sequence
// s lives in block tables[s · max_blocks + p / BS], row p % BS. The cache may be mapped pinned host memory (KV
// offload): kernels then read and write it over the bus.
struct KvArgs {
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  int64_t num_blocks = 0;  // NB
  int block_size = 0;      // BS
  int n_kv_heads = 0;
  int head_dim = 0;
  const int32_t* seqs = nullptr;    // device int32 [n_seqs, 4]: slot (unused), row_begin, n_new, past_len
  const int32_t* tables = nullptr;  // device int32 [n_seqs, max_blocks]
  int max_blocks = 0;
  int n_seqs = 0;
  int max_new = 0;       // largest n_new in the step (sizes the grid)
};

// kv_write.cu: cache[block of (s, past_len + i)] = k/v[row_begin + i] for every sequence; k, v [T, nKV × D].
void launch_kv_write(DType type, const KvArgs& kv, const void* k, const void* v, cudaStream_t stream);

struct AttentionArgs {
  int n_heads = 0;
  float scale = 1.0f;
  int sliding_window = 0;
  const float* alibi_slopes = nullptr;  // device f32 [nH] or null
};

// attention_prefill.cu: any mix of n_new. Tensor cores (64-row tiles of one sequence × one head) for bf16 / fp16 and
// the common head dims, else a scalar fp32 kernel (16-row tiles); set_attention_prefill_flash(false) (or
// ZI_ATTENTION_PREFILL=scalar) forces the scalar one, for A/B comparisons.
void launch_attention_prefill(DType type, const KvArgs& kv, const AttentionArgs& a, const void* q, void* out,
                              cudaStream_t stream);
void set_attention_prefill_flash(bool on);
bool attention_prefill_flash_enabled();
// attention_decode.cu: every sequence has n_new ≤ 1. Split over the context (attention_decode_split.cu) when the
// key rows are whole 16-byte vectors, else one block per (sequence, head). The split kernel needs
// attention_decode_workspace_bytes() of device scratch (0: none; it depends on the shapes and kv.max_blocks only).
// The split kernel is off until validated on a GPU: set_attention_decode_split(true) or ZI_ATTENTION_DECODE=split.
size_t attention_decode_workspace_bytes(DType type, const KvArgs& kv, const AttentionArgs& a);
void launch_attention_decode(DType type, const KvArgs& kv, const AttentionArgs& a, const void* q, void* out,
                             void* workspace, cudaStream_t stream);
void set_attention_decode_split(bool on);
bool attention_decode_split_enabled();

// ---- fused kernels (fused_*.cu): one launch where the forward would run several; each writes what the unfused
// kernels named would, rounded once on store ----
// fused_norm.cu: x [T, H] += delta (stored rounded), y = rms_norm / layer_norm of the new x (weight and bias of one
// float dtype w_type; b may be null). y must not alias x or delta.
void launch_add_rms_norm(DType type, void* x, const void* delta, int64_t T, int64_t H, DType w_type, const void* w,
                         float eps, void* y, cudaStream_t stream);
void launch_add_layer_norm(DType type, void* x, const void* delta, int64_t T, int64_t H, DType w_type,
                           const void* w, const void* b, float eps, void* y, cudaStream_t stream);
// fused_rope_kv.cu: qkv [T, (nH + 2·nKV) × D] (columns [q | k | v]) → q_out [T, nH × D] rotated at positions[t]
// (launch_rope's math), k rotated and v written to kv's cache at each covered row's slot (launch_kv_write's layout).
// nKV and D come from kv.
void launch_qkv_rope_kv_write(DType type, const void* qkv, int64_t T, int n_heads, const int32_t* positions,
                              const float* inv_freq, const KvArgs& kv, void* q_out, cudaStream_t stream);
// fused_swiglu.cu: gate_up [T, 2F] (columns [gate | up]) → y [T, F] = silu(gate) × up.
void launch_gate_up_silu(DType type, const void* gate_up, int64_t T, int64_t F, void* y, cudaStream_t stream);

// Largest head_dim the attention kernels take.
inline constexpr int kMaxAttentionHeadDim = 256;

}  // namespace zi::cuda
