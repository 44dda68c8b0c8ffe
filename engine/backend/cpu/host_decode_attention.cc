// host_decode_attention: the baseline copy of the kernel (host_decode_attention_impl.h), the AVX2 copy's dispatch
// and the split of a step into tasks.
#include "engine/backend/cpu/host_decode_attention.h"

#include <algorithm>
#include <vector>

#include "engine/core/log.h"

#define ZI_HDA_NS generic
#include "engine/backend/cpu/host_decode_attention_impl.h"
#undef ZI_HDA_NS

namespace zi::cpu {

#if defined(__x86_64__) && defined(ZI_HDA_AVX2)
namespace avx2 {
void attend(const HostDecodeAttention& a, const SeqSlice& seq, const int32_t* table, int kv0, int kv1, DType io,
            const void* q_row, void* out_row, float* scratch);
}  // namespace avx2
#define ZI_HDA_HAVE_AVX2 1
#endif

namespace {

using AttendFn = void (*)(const HostDecodeAttention&, const SeqSlice&, const int32_t*, int, int, DType, const void*,
                          void*, float*);

struct Impl {
  AttendFn fn;
  const char* name;
};

Impl pick() {
#if defined(ZI_HDA_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return {&avx2::attend, "avx2-f16c"};
#endif
  return {&generic::attend, "generic"};
}

const Impl& impl() {
  static const Impl i = pick();
  return i;
}

}  // namespace

const char* host_decode_attention_isa() { return impl().name; }

void host_decode_attention(ThreadPool& pool, const HostDecodeAttention& a, const std::vector<SeqSlice>& seqs,
                           size_t s0, size_t s1, DType io_dtype, const void* q, void* out, CpuIsa isa) {
  ZI_CHECK(s0 <= s1 && s1 <= seqs.size());
  if (s0 == s1) return;
  const KvGeometry& g = a.g;
  ZI_CHECK(g.n_kv_heads > 0 && a.n_heads % g.n_kv_heads == 0 && g.head_dim > 0 && g.block_size > 0);
  for (size_t s = s0; s < s1; ++s) {
    ZI_CHECK(seqs[s].n_new == 1 && seqs[s].past_len >= 0 &&
             seqs[s].row_begin == seqs[s0].row_begin + static_cast<int32_t>(s - s0));
    ZI_CHECK(seqs[s].past_len / g.block_size < g.max_blocks);
  }
  // Enough tasks to keep every thread busy: whole sequences when there are many, else kv-head ranges of each.
  const int64_t n = static_cast<int64_t>(s1 - s0);
  const int64_t want = 2 * static_cast<int64_t>(pool.num_threads());
  const int parts = static_cast<int>(std::clamp<int64_t>((want + n - 1) / n, 1, g.n_kv_heads));
  const size_t row_bytes = dtype_size(io_dtype) * static_cast<size_t>(a.n_heads) * g.head_dim;
  const AttendFn fn = isa == CpuIsa::kGeneric ? &generic::attend : impl().fn;
  int64_t longest = 1;
  for (size_t s = s0; s < s1; ++s) longest = std::max<int64_t>(longest, seqs[s].past_len + 1);
  const int max_kv = (g.n_kv_heads + parts - 1) / parts, G = a.n_heads / g.n_kv_heads;
  const size_t scratch_floats = static_cast<size_t>(max_kv) * G * (2 * static_cast<size_t>(g.head_dim) +
                                                                    static_cast<size_t>(longest));
  pool.parallel_for(n * parts, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t / parts;
      const int part = static_cast<int>(t % parts);
      const int kv0 = g.n_kv_heads * part / parts, kv1 = g.n_kv_heads * (part + 1) / parts;
      if (kv0 == kv1) continue;
      const size_t s = s0 + static_cast<size_t>(i);
      fn(a, seqs[s], g.tables + static_cast<int64_t>(s) * g.max_blocks, kv0, kv1, io_dtype,
         static_cast<const uint8_t*>(q) + row_bytes * static_cast<size_t>(i),
         static_cast<uint8_t*>(out) + row_bytes * static_cast<size_t>(i), scratch.data());
    }
  });
}

}  // namespace zi::cpu
