// CPU kernels on raw fp32 buffers (row-major). They are the reference the CUDA kernels are tested against, and what
// CpuBackend's ops call after checking shapes. Threads come from the given pool; results do not depend on the
// thread count (every output element is computed by exactly one thread in a fixed order).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/quant/quantize.h"

namespace zi::cpu {

// y[T, out] = x[T, in] · w[out, in]ᵀ (+ bias[out] when non-null).
void linear_f32(ThreadPool& pool, const float* x, int64_t T, int64_t in, const float* w, int64_t out,
                const float* bias, float* y);
// The same with w quantized ([w.rows, w.cols] = [out, in]): bit-identical to linear_f32 on dequantize_rows(w).
void linear_quant_f32(ThreadPool& pool, const float* x, int64_t T, const QuantView& w, const float* bias, float* y);

// y[t] = x[t] / sqrt(mean(x[t]²) + eps) × weight, rows of H.
void rms_norm_f32(ThreadPool& pool, const float* x, int64_t T, int64_t H, const float* weight, float eps, float* y);
// y[t] = (x[t] − mean) / sqrt(var + eps) × weight (+ bias), rows of H (biased variance, as torch).
void layer_norm_f32(ThreadPool& pool, const float* x, int64_t T, int64_t H, const float* weight, const float* bias,
                    float eps, float* y);

// Rotate-half RoPE in place on x [T, n_heads × D]: angle = float(positions[t]) × inv_freq[i], i < D/2.
void rope_f32(ThreadPool& pool, float* x, int64_t T, int n_heads, int head_dim, const int32_t* positions,
              const float* inv_freq);

// Paged cache geometry of one layer, [NB, BS, nKV, D], and the step's block tables: int32 [n_seqs, max_blocks],
// row s = sequence s's blocks in position order (position p → block tables[s·max_blocks + p / BS], row p % BS).
struct KvGeometry {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  const int32_t* tables = nullptr;
  int64_t max_blocks = 0;
};

// Writes k/v rows [T, nKV × D] of each sequence to its blocks at positions past_len ...
void kv_write_f32(const std::vector<SeqSlice>& seqs, const KvGeometry& g, const float* k, const float* v,
                  float* k_cache, float* v_cache);

// out [T, nH × D]: causal attention of each new row over its sequence's cached blocks (see Backend::attention).
// alibi_slopes: nH floats or null.
void attention_f32(ThreadPool& pool, const std::vector<SeqSlice>& seqs, int64_t T, const KvGeometry& g,
                   const float* q, const float* k_cache, const float* v_cache, int n_heads, float scale,
                   int sliding_window, const float* alibi_slopes, float* out);

void silu_mul_f32(ThreadPool& pool, const float* gate, const float* up, int64_t n, float* y);
// y [T, F] = silu(gate) × up for gate_up [T, 2F] = [gate | up] per row (the same arithmetic as silu_mul_f32).
void gate_up_silu_f32(ThreadPool& pool, const float* gate_up, int64_t T, int64_t F, float* y);
void activation_f32(ThreadPool& pool, const float* x, int64_t n, Activation kind, float* y);

}  // namespace zi::cpu
