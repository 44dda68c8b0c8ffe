// Backend-independent helpers declared in engine/backend/backend.h. They live under backend/cpu/ because that folder
// is compiled into zi_engine in every build (the CUDA backend links it too).
#include <algorithm>

#include "engine/backend/backend.h"

namespace zi {

AttentionBatch make_attention_batch(Backend& backend, std::vector<SeqSlice> seqs) {
  AttentionBatch b;
  std::vector<int32_t> packed;
  std::vector<int32_t> positions;
  for (const SeqSlice& s : seqs) {
    ZI_CHECK(s.row_begin == static_cast<int32_t>(positions.size()));  // rows are contiguous, in order
    packed.insert(packed.end(), {s.slot, s.row_begin, s.n_new, s.past_len});
    for (int32_t i = 0; i < s.n_new; ++i) positions.push_back(s.past_len + i);
    b.max_past_plus_new = std::max(b.max_past_plus_new, s.past_len + s.n_new);
  }
  b.total_rows = static_cast<int64_t>(positions.size());
  b.seqs_device = backend.from_host(DType::kI32, {static_cast<int64_t>(seqs.size()), 4}, packed.data());
  b.positions = backend.from_host(DType::kI32, {b.total_rows}, positions.data());
  b.seqs = std::move(seqs);
  return b;
}

}  // namespace zi
