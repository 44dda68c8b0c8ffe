// Decode attention on the CPU over a paged KV cache held in host memory in its own dtype (fp32, fp16 or bf16).
//
// Why: with KV offload the CUDA backend keeps the cache in pinned host memory. A decode step must read all of it,
// and the GPU reads it over PCIe at ~30 GB/s on the same link that streams the weights; the host's cores read it
// from DRAM. ZeRO-Inference computes offloaded decode attention on the CPU for this reason; the CUDA backend splits a
// step's sequences between this kernel and its own (engine/backend/cuda/offload_attention.cc).
//
// Shapes: cache [num_blocks, block_size, nKV, D] per layer; each sequence adds one row at position past_len, which
// attends over positions [first_visible, past_len] (causal, optional sliding window), GQA maps query head h to kv
// head h / (nH / nKV), ALiBi adds slope_h × (key_pos − query_pos). q and out are [rows, nH × D] in `io_dtype`.
// Scores, softmax and accumulation are fp32. Each (sequence, kv-head range) is one task reading its cache rows front
// to back (K once, then V once); results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend/cpu/kernels.h"
#include "engine/core/dtype.h"

namespace zi::cpu {

struct HostDecodeAttention {
  const void* k_cache = nullptr;  // [num_blocks, block_size, nKV, D] in cache_dtype
  const void* v_cache = nullptr;
  DType cache_dtype = DType::kF32;
  KvGeometry g;                   // tables: int32 [seqs.size(), max_blocks]
  int n_heads = 0;
  float scale = 1.0f;
  int sliding_window = 0;
  const float* alibi_slopes = nullptr;  // [nH] or null
};

enum class CpuIsa : uint8_t {
  kBest,     // the AVX2 + FMA + F16C copy where the CPU has them, else kGeneric
  kGeneric,  // the baseline copy (tests compare the two)
};

// Runs sequences seqs[s0, s1) (each n_new == 1). Their rows must be the consecutive rows r0 .. r0 + (s1 − s0) − 1 of
// the step; q and out point at row r0 of [rows, nH × D] buffers in io_dtype.
void host_decode_attention(ThreadPool& pool, const HostDecodeAttention& a, const std::vector<SeqSlice>& seqs,
                           size_t s0, size_t s1, DType io_dtype, const void* q, void* out,
                           CpuIsa isa = CpuIsa::kBest);

// Which copy kBest runs on this CPU: "avx2-f16c" or "generic".
const char* host_decode_attention_isa();

}  // namespace zi::cpu
