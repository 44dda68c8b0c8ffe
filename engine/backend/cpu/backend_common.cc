// Backend-independent helpers declared in engine/backend/backend.h. They live under backend/cpu/ because that folder
// is compiled into zi_engine in every build (the CUDA backend links it too).
#include <algorithm>

#include "engine/backend/backend.h"

namespace zi {

AttentionBatch make_attention_batch(Backend& backend, std::vector<SeqSlice> seqs, int32_t block_size,
                                    const std::vector<std::vector<int32_t>>& block_tables) {
  ZI_CHECK(block_size > 0 && block_tables.size() == seqs.size());
  AttentionBatch b;
  std::vector<int32_t> packed;
  std::vector<int32_t> positions;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SeqSlice& s = seqs[i];
    ZI_CHECK(s.row_begin == static_cast<int32_t>(positions.size()));  // rows are contiguous, in order
    ZI_CHECK(s.past_len >= 0 && s.n_new >= 0 &&
             static_cast<int64_t>(block_tables[i].size()) * block_size >= int64_t{s.past_len} + s.n_new);
    packed.insert(packed.end(), {s.slot, s.row_begin, s.n_new, s.past_len});
    for (int32_t r = 0; r < s.n_new; ++r) positions.push_back(s.past_len + r);
    b.max_past_plus_new = std::max(b.max_past_plus_new, s.past_len + s.n_new);
    b.max_blocks = std::max(b.max_blocks, static_cast<int32_t>(block_tables[i].size()));
  }
  b.block_size = block_size;
  b.max_blocks = std::max(b.max_blocks, 1);  // never an empty tensor
  b.block_tables_host.assign(seqs.size() * static_cast<size_t>(b.max_blocks), -1);
  for (size_t i = 0; i < seqs.size(); ++i)
    std::copy(block_tables[i].begin(), block_tables[i].end(), b.block_tables_host.begin() + i * b.max_blocks);
  b.total_rows = static_cast<int64_t>(positions.size());
  b.seqs_device = backend.from_host(DType::kI32, {static_cast<int64_t>(seqs.size()), 4}, packed.data());
  b.positions = backend.from_host(DType::kI32, {b.total_rows}, positions.data());
  b.block_tables = backend.from_host(DType::kI32, {static_cast<int64_t>(seqs.size()), b.max_blocks},
                                     b.block_tables_host.data());
  b.seqs = std::move(seqs);
  return b;
}

std::vector<int64_t> concat_rows_shape(const std::vector<Tensor>& parts) {
  ZI_CHECK(!parts.empty() && parts[0].rank() >= 1);
  std::vector<int64_t> shape = parts[0].shape();
  shape[0] = 0;
  for (const Tensor& p : parts) {
    ZI_CHECK(p.dtype() == parts[0].dtype() && p.rank() == parts[0].rank() &&
             std::equal(p.shape().begin() + 1, p.shape().end(), parts[0].shape().begin() + 1));
    shape[0] += p.dim(0);
  }
  return shape;
}

}  // namespace zi
