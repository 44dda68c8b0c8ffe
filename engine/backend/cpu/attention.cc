// Attention of a step's new rows over the KV cache on the CPU: one task per (row, head); scores and softmax in fp32
// (max-subtracted), GQA by mapping query head h to kv head h / (nH / nKV).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"

namespace zi::cpu {

void kv_write_f32(const std::vector<SeqSlice>& seqs, const KvGeometry& g, const float* k, const float* v,
                  float* k_cache, float* v_cache) {
  const int64_t row = static_cast<int64_t>(g.n_kv_heads) * g.head_dim;  // floats per token
  for (const SeqSlice& s : seqs) {
    ZI_CHECK(s.slot >= 0 && s.slot < g.slots && s.past_len >= 0 && s.past_len + s.n_new <= g.context);
    const int64_t dst = (static_cast<int64_t>(s.slot) * g.context + s.past_len) * row;
    const int64_t src = static_cast<int64_t>(s.row_begin) * row;
    std::memcpy(k_cache + dst, k + src, sizeof(float) * row * s.n_new);
    std::memcpy(v_cache + dst, v + src, sizeof(float) * row * s.n_new);
  }
}

namespace {

struct HeadTask {
  const float* q;        // [D] this row's query head
  const float* k_base;   // key of position 0 for this kv head; position j at k_base + j·kv_row
  const float* v_base;
  int64_t kv_row;        // floats per cached token
  int64_t first;         // first attended position
  int64_t pos;           // this row's position (last attended)
  float scale;
  float alibi_slope;     // 0 = none
  float* out;            // [D]
};

// softmax(q·Kᵀ·scale + alibi)·V for one (row, head), with `scores` and `acc` as scratch.
ZI_CPU_CLONES
void attend_one(const HeadTask& t, int D, std::vector<float>& scores, std::vector<float>& acc) {
  const int64_t n = t.pos - t.first + 1;
  scores.resize(n);
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    float sc = dot(t.q, t.k_base + (t.first + j) * t.kv_row, D) * t.scale;
    if (t.alibi_slope != 0.0f) sc += t.alibi_slope * static_cast<float>(t.first + j - t.pos);
    scores[j] = sc;
    max_score = std::max(max_score, sc);
  }
  float denom = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    denom += scores[j];
  }
  std::fill(acc.begin(), acc.end(), 0.0f);
  for (int64_t j = 0; j < n; ++j) axpy(scores[j], t.v_base + (t.first + j) * t.kv_row, acc.data(), D);
  const float inv = 1.0f / denom;
  for (int d = 0; d < D; ++d) t.out[d] = acc[d] * inv;
}

}  // namespace

void attention_f32(ThreadPool& pool, const std::vector<SeqSlice>& seqs, int64_t T, const KvGeometry& g,
                   const float* q, const float* k_cache, const float* v_cache, int n_heads, float scale,
                   int sliding_window, const float* alibi_slopes, float* out) {
  const int D = g.head_dim;
  const int group = n_heads / g.n_kv_heads;
  const int64_t kv_row = static_cast<int64_t>(g.n_kv_heads) * D;  // floats per cached token
  const int64_t q_row = static_cast<int64_t>(n_heads) * D;
  // Which sequence each row belongs to.
  std::vector<int32_t> seq_of_row(T, -1);
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int32_t i = 0; i < seqs[s].n_new; ++i) seq_of_row[seqs[s].row_begin + i] = static_cast<int32_t>(s);

  pool.parallel_for(T * n_heads, 4, [&](int64_t task0, int64_t task1) {
    std::vector<float> scores;
    std::vector<float> acc(D);
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t t = task / n_heads;
      const int h = static_cast<int>(task % n_heads);
      const int32_t si = seq_of_row[t];
      ZI_CHECK(si >= 0);
      const SeqSlice& s = seqs[si];
      HeadTask ht;
      ht.pos = s.past_len + (t - s.row_begin);
      ht.first = sliding_window > 0 ? std::max<int64_t>(0, ht.pos - sliding_window + 1) : 0;
      const int kvh = h / group;
      const int64_t slot_base = static_cast<int64_t>(s.slot) * g.context * kv_row + static_cast<int64_t>(kvh) * D;
      ht.q = q + t * q_row + static_cast<int64_t>(h) * D;
      ht.k_base = k_cache + slot_base;
      ht.v_base = v_cache + slot_base;
      ht.kv_row = kv_row;
      ht.scale = scale;
      ht.alibi_slope = alibi_slopes ? alibi_slopes[h] : 0.0f;
      ht.out = out + t * q_row + static_cast<int64_t>(h) * D;
      attend_one(ht, D, scores, acc);
    }
  });
}

}  // namespace zi::cpu
