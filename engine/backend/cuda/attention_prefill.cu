// Prefill attention (any mix of n_new per sequence, paged KV cache): picks the kernel. bf16 / fp16 activations with
// a head dim the tensor-core kernel is built for (attention_prefill_flash.cu: 16, 32, 64, 80, 96, 128, 256) take it;
// fp32 activations (bf16 / fp16 tensor cores would change their numerics), other head dims and unaligned buffers take
// the scalar fp32 kernel (attention_prefill_scalar.cu). ZI_ATTENTION_PREFILL=scalar in the environment, or
// set_attention_prefill_flash(false), sends every call to the scalar kernel (A/B comparisons).
#include <cstdlib>
#include <cstring>

#include "engine/backend/cuda/attention_prefill.h"
#include "engine/backend/cuda/cuda_check.h"

namespace zi::cuda {
namespace {

bool initial_flash() {
  const char* env = std::getenv("ZI_ATTENTION_PREFILL");
  return !(env && std::strcmp(env, "scalar") == 0);
}

bool g_flash = initial_flash();

}  // namespace

void set_attention_prefill_flash(bool on) { g_flash = on; }
bool attention_prefill_flash_enabled() { return g_flash; }

void launch_attention_prefill(DType type, const KvArgs& kv, const AttentionArgs& a, const void* q, void* out,
                              cudaStream_t stream) {
  if (kv.n_seqs == 0 || kv.max_new == 0) return;
  ZI_CHECK(kv.head_dim >= 1 && kv.head_dim <= kMaxAttentionHeadDim && kv.n_seqs <= 65535 && a.n_heads <= 65535);
  if (g_flash && attention_prefill_flash_supports(type, kv, q, out))
    launch_attention_prefill_flash(type, kv, a, q, out, stream);
  else
    launch_attention_prefill_scalar(type, kv, a, q, out, stream);
}

}  // namespace zi::cuda
