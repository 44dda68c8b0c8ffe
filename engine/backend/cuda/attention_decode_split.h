// The split-context decode attention kernel's launch plan (attention_decode_split.cu); attention_decode.cu picks it
// whenever it applies, else the per-head kernel.
#pragma once

#include <cstddef>

#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {

struct DecodeSplitPlan {
  int splits = 0;            // 0: not eligible (a key row is not whole 16-byte vectors, or is over 1 KiB)
  int keys_per_split = 0;    // consecutive keys a block scores (a multiple of 32, ≥ 64)
  int heads_per_block = 1;   // G query heads sharing one KV head, per block (1, 2, 4 or 8)
  int lanes_per_row = 32;    // RP lanes reading one key row (4, 8, 16 or 32)
  int vectors_per_lane = 1;  // CH 16-byte vectors per lane and row (2 only for rows over 512 bytes)
  size_t workspace_bytes = 0;  // fp32 partial results when splits > 1
};

// Depends only on the shapes and kv.max_blocks (not on the sequences' lengths), so a captured graph's plan holds
// for every replay.
DecodeSplitPlan plan_decode_split(DType type, const KvArgs& kv, const AttentionArgs& a);
void launch_attention_decode_split(DType type, const KvArgs& kv, const AttentionArgs& a, const DecodeSplitPlan& plan,
                                   const void* q, void* out, void* workspace, cudaStream_t stream);

}  // namespace zi::cuda
