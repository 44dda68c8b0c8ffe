#include "engine/model/model.h"

#include <algorithm>

namespace zi {

StatusOr<Tensor> CausalLM::forward(std::span<const StepTensors> chunks, KvCache& kv) {
  ZI_CHECK(!chunks.empty());
  chunks_.assign(chunks.size(), ChunkState());
  for (size_t c = 0; c < chunks.size(); ++c) chunks_[c].in = &chunks[c];
  struct Clear {  // per-step tensors go back to the allocator however the forward ends
    std::vector<ChunkState>& s;
    ~Clear() { s.clear(); }
  } clear{chunks_};
  ZI_RETURN_IF_ERROR(embed(kv));
  ParameterSource& params = parameters();
  const int layers = static_cast<int>(config().num_layers);
  params.prefetch(0);
  for (int l = 0; l < layers; ++l) {
    ZI_ASSIGN_OR_RETURN(const LayerWeights* w, params.fetch(l));
    if (l + 1 < layers) params.prefetch(l + 1);
    for (ChunkState& c : chunks_) ZI_RETURN_IF_ERROR(layer(l, *w, c, kv));
    params.release(l);
  }
  std::vector<Tensor> hidden;
  for (ChunkState& c : chunks_) {
    ZI_ASSIGN_OR_RETURN(Tensor h, final_hidden(c));
    c = ChunkState();  // this chunk's residual stream is no longer needed
    hidden.push_back(std::move(h));
  }
  Tensor all;
  if (hidden.size() == 1) {
    all = std::move(hidden[0]);
  } else {
    ZI_ASSIGN_OR_RETURN(all, backend().concat_rows(hidden));
  }
  return backend().linear(all, params.globals().lm_head);  // [ΣR, V]
}

StatusOr<Tensor> CausalLM::forward(const ForwardBatch& batch, KvCache& kv, int64_t chunk_rows) {
  std::vector<StepTensors> steps;
  for (const ForwardBatch& part : split_rows(batch, chunk_rows, exact_when_cut())) {
    ZI_ASSIGN_OR_RETURN(StepTensors s, upload_step(backend(), part, kv));
    steps.push_back(std::move(s));
  }
  return forward(std::span<const StepTensors>(steps), kv);
}

std::vector<ForwardBatch> split_rows(const ForwardBatch& batch, int64_t max_rows, bool cut) {
  const int64_t T = static_cast<int64_t>(batch.tokens.size());
  if (max_rows < 1 || T <= max_rows || !std::is_sorted(batch.logit_rows.begin(), batch.logit_rows.end()))
    return {batch};
  std::vector<ForwardBatch> out(1);
  // Chunks of equal size (within a row): the device allocator reuses blocks per size class, and a short last chunk
  // would bring a second set of temporaries into its cache at every layer.
  // Chunk i holds T / chunks rows, one more for the first T % chunks.
  const int64_t chunks = (T + max_rows - 1) / max_rows;
  auto room = [&] {
    const int64_t i = static_cast<int64_t>(out.size()) - 1;
    const int64_t cap = cut ? T / chunks + (i < T % chunks ? 1 : 0) : max_rows;
    return cap - static_cast<int64_t>(out.back().tokens.size());
  };
  for (const SeqSlice& s : batch.seqs) {
    if (s.n_new == 0) {  // no rows (nothing to write or attend): kept where it stands
      out.back().seqs.push_back(s);
      out.back().seqs.back().row_begin = static_cast<int32_t>(out.back().tokens.size());
      continue;
    }
    int64_t done = 0;  // rows of s placed so far
    while (done < s.n_new) {
      if (room() <= 0 || (!cut && room() < s.n_new && !out.back().tokens.empty())) out.emplace_back();
      const int64_t n = cut ? std::min<int64_t>(s.n_new - done, room()) : s.n_new;
      ForwardBatch& c = out.back();
      SeqSlice piece = s;
      piece.row_begin = static_cast<int32_t>(c.tokens.size());
      piece.n_new = static_cast<int32_t>(n);
      piece.past_len = static_cast<int32_t>(s.past_len + done);
      c.seqs.push_back(piece);
      c.tokens.insert(c.tokens.end(), batch.tokens.begin() + s.row_begin + done,
                      batch.tokens.begin() + s.row_begin + done + n);
      done += n;
    }
  }
  // Logit rows, ascending, to the chunk that holds each.
  size_t ci = 0;
  int64_t begin = 0;
  for (int32_t r : batch.logit_rows) {
    ZI_CHECK(r >= 0 && r < T);  // pack_step's own check, needed here first to find the chunk
    while (r >= begin + static_cast<int64_t>(out[ci].tokens.size())) begin += out[ci++].tokens.size();
    out[ci].logit_rows.push_back(static_cast<int32_t>(r - begin));
  }
  return out;
}

}  // namespace zi
