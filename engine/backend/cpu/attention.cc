// Attention of a step's new rows over the paged KV cache on the CPU: one task per (row, head); scores and softmax in
// fp32 (max-subtracted), GQA by mapping query head h to kv head h / (nH / nKV). Keys and values are read through each
// sequence's block table (position p → block table[p / BS], row p % BS).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"

namespace zi::cpu {

namespace {

// Offset (in floats) of position `pos` of sequence `s` in a layer's cache: the start of its token row.
inline int64_t token_offset(const KvGeometry& g, size_t s, int64_t pos, int64_t kv_row) {
  const int32_t block = g.tables[static_cast<int64_t>(s) * g.max_blocks + pos / g.block_size];
  ZI_CHECK(block >= 0 && block < g.num_blocks);
  return (static_cast<int64_t>(block) * g.block_size + pos % g.block_size) * kv_row;
}

}  // namespace

void kv_write_f32(const std::vector<SeqSlice>& seqs, const KvGeometry& g, const float* k, const float* v,
                  float* k_cache, float* v_cache) {
  const int64_t row = static_cast<int64_t>(g.n_kv_heads) * g.head_dim;  // floats per token
  for (size_t si = 0; si < seqs.size(); ++si) {
    const SeqSlice& s = seqs[si];
    ZI_CHECK(s.past_len >= 0 && s.n_new >= 0 && s.past_len + s.n_new <= g.max_blocks * g.block_size);
    for (int32_t i = 0; i < s.n_new; ++i) {
      const int64_t dst = token_offset(g, si, s.past_len + i, row);
      const int64_t src = static_cast<int64_t>(s.row_begin + i) * row;
      std::memcpy(k_cache + dst, k + src, sizeof(float) * row);
      std::memcpy(v_cache + dst, v + src, sizeof(float) * row);
    }
  }
}

namespace {

struct HeadTask {
  const float* q;        // [D] this row's query head
  const float* k_cache;  // the layer's caches, offset to this kv head
  const float* v_cache;
  const KvGeometry* g;
  size_t seq;            // index of the row's sequence in the step (its block table row)
  int64_t kv_row;        // floats per cached token
  int64_t first;         // first attended position
  int64_t pos;           // this row's position (last attended)
  float scale;
  float alibi_slope;     // 0 = none
  float* out;            // [D]
};

// softmax(q·Kᵀ·scale + alibi)·V for one (row, head), with `scores`, `offsets` and `acc` as scratch.
ZI_CPU_CLONES
void attend_one(const HeadTask& t, int D, std::vector<float>& scores, std::vector<int64_t>& offsets,
                std::vector<float>& acc) {
  const int64_t n = t.pos - t.first + 1;
  scores.resize(n);
  offsets.resize(n);
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    offsets[j] = token_offset(*t.g, t.seq, t.first + j, t.kv_row);
    float sc = dot(t.q, t.k_cache + offsets[j], D) * t.scale;
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
  for (int64_t j = 0; j < n; ++j) axpy(scores[j], t.v_cache + offsets[j], acc.data(), D);
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
    std::vector<int64_t> offsets;
    std::vector<float> acc(D);
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t t = task / n_heads;
      const int h = static_cast<int>(task % n_heads);
      const int32_t si = seq_of_row[t];
      if (si < 0) {
        // A row no sequence covers (a padded step): defined as zeros, as the CUDA kernels leave it.
        std::fill_n(out + t * q_row + static_cast<int64_t>(h) * D, D, 0.0f);
        continue;
      }
      const SeqSlice& s = seqs[si];
      HeadTask ht;
      ht.pos = s.past_len + (t - s.row_begin);
      ht.first = sliding_window > 0 ? std::max<int64_t>(0, ht.pos - sliding_window + 1) : 0;
      const int kvh = h / group;
      ht.q = q + t * q_row + static_cast<int64_t>(h) * D;
      ht.k_cache = k_cache + static_cast<int64_t>(kvh) * D;
      ht.v_cache = v_cache + static_cast<int64_t>(kvh) * D;
      ht.g = &g;
      ht.seq = static_cast<size_t>(si);
      ht.kv_row = kv_row;
      ht.scale = scale;
      ht.alibi_slope = alibi_slopes ? alibi_slopes[h] : 0.0f;
      ht.out = out + t * q_row + static_cast<int64_t>(h) * D;
      attend_one(ht, D, scores, offsets, acc);
    }
  });
}

}  // namespace zi::cpu
