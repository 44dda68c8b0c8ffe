// The two prefill attention kernels behind launch_attention_prefill (kernels.h), which picks one per call
// (attention_prefill.cu). Both take the arguments launch_attention_prefill takes, already checked there.
#pragma once

#include "engine/backend/cuda/kernels.h"

namespace zi::cuda {

// attention_prefill_flash.cu: tensor cores (mma.sync, bf16 / fp16 operands, fp32 softmax and accumulation).
// Whether it takes this call: a 16-bit activation dtype, a head dim it is built for, 16-byte aligned q / out / cache.
bool attention_prefill_flash_supports(DType type, const KvArgs& kv, const void* q, const void* out);
void launch_attention_prefill_flash(DType type, const KvArgs& kv, const AttentionArgs& a, const void* q, void* out,
                                    cudaStream_t stream);

// attention_prefill_scalar.cu: fp32 CUDA cores; any float dtype and head dim up to kMaxAttentionHeadDim.
void launch_attention_prefill_scalar(DType type, const KvArgs& kv, const AttentionArgs& a, const void* q, void* out,
                                     cudaStream_t stream);

}  // namespace zi::cuda
