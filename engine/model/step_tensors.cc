#include "engine/model/step_tensors.h"

#include <algorithm>

namespace zi {

namespace {

// Offsets (in int32s) of the packed parts.
struct Offsets {
  int64_t ids, seqs, positions, tables, logits;
};

Offsets offsets_of(const StepShape& s) {
  Offsets o;
  o.ids = 0;
  o.seqs = o.ids + s.rows;
  o.positions = o.seqs + 4 * s.seqs;
  o.tables = o.positions + s.rows;
  o.logits = o.tables + s.seqs * s.table_width;
  return o;
}

Tensor view(const Tensor& packed, int64_t offset, std::vector<int64_t> shape) {
  return Tensor(DType::kI32, std::move(shape), packed.data_as<int32_t>() + offset, packed.storage());
}

}  // namespace

StepShape exact_step_shape(const ForwardBatch& batch, const KvCache& kv) {
  StepShape s;
  s.rows = static_cast<int64_t>(batch.tokens.size());
  s.seqs = static_cast<int64_t>(batch.seqs.size());
  s.logit_rows = static_cast<int64_t>(batch.logit_rows.size());
  for (const SeqSlice& q : batch.seqs) {
    const int64_t held = static_cast<int64_t>(kv.block_table(q.slot).size());
    s.table_width = std::max({s.table_width, held, kv.blocks_for(int64_t{q.past_len} + q.n_new)});
  }
  return s;
}

Status pack_step(const ForwardBatch& batch, KvCache& kv, const StepShape& shape, std::vector<int32_t>& packed,
                 AttentionBatch& attn) {
  const int64_t T = static_cast<int64_t>(batch.tokens.size());
  const int64_t n = static_cast<int64_t>(batch.seqs.size());
  const int64_t R = static_cast<int64_t>(batch.logit_rows.size());
  if (T > shape.rows || n > shape.seqs || R > shape.logit_rows || shape.table_width < 1)
    return absl::InvalidArgumentError(absl::StrCat("step of ", T, " rows, ", n, " sequences and ", R,
                                                   " logit rows does not fit a step shape of ", shape.rows, ", ",
                                                   shape.seqs, " and ", shape.logit_rows));
  for (const SeqSlice& s : batch.seqs) ZI_RETURN_IF_ERROR(kv.reserve(s.slot, int64_t{s.past_len} + s.n_new));
  const Offsets o = offsets_of(shape);
  packed.assign(static_cast<size_t>(shape.packed_ints()), 0);
  attn = AttentionBatch();
  attn.block_size = kv.block_size();
  attn.max_blocks = static_cast<int32_t>(shape.table_width);
  attn.total_rows = shape.rows;
  attn.block_tables_host.assign(static_cast<size_t>(shape.seqs * shape.table_width), -1);
  std::copy(batch.tokens.begin(), batch.tokens.end(), packed.begin() + o.ids);
  int64_t row = 0;
  for (int64_t i = 0; i < shape.seqs; ++i) {
    // Padding sequences: no rows, no blocks, placed after the last real row.
    const SeqSlice s = i < n ? batch.seqs[i] : SeqSlice{0, static_cast<int32_t>(T), 0, 0};
    if (i < n) {
      ZI_CHECK(s.row_begin == row && s.past_len >= 0 && s.n_new >= 0);  // rows are contiguous, in order
      row += s.n_new;
      const std::vector<int32_t>& table = kv.block_table(s.slot);
      if (static_cast<int64_t>(table.size()) > shape.table_width)
        return absl::InvalidArgumentError(absl::StrCat("a block table of ", table.size(),
                                                       " blocks does not fit a step shape of ", shape.table_width));
      std::copy(table.begin(), table.end(), attn.block_tables_host.begin() + i * shape.table_width);
      for (int32_t r = 0; r < s.n_new; ++r) packed[o.positions + s.row_begin + r] = s.past_len + r;
      attn.max_past_plus_new = std::max(attn.max_past_plus_new, s.past_len + s.n_new);
    }
    const int32_t fields[4] = {s.slot, s.row_begin, s.n_new, s.past_len};
    std::copy(fields, fields + 4, packed.begin() + o.seqs + 4 * i);
    attn.seqs.push_back(s);
  }
  ZI_CHECK(row == T);
  std::copy(attn.block_tables_host.begin(), attn.block_tables_host.end(), packed.begin() + o.tables);
  for (int64_t r = 0; r < R; ++r) {
    const int32_t want = batch.logit_rows[r];
    ZI_CHECK(want >= 0 && want < T);  // the gather kernel trusts these
    packed[o.logits + r] = want;
  }
  return absl::OkStatus();
}

StepTensors step_tensors_view(const Tensor& packed, const StepShape& shape, AttentionBatch attn) {
  ZI_CHECK(packed.dtype() == DType::kI32 && packed.numel() == shape.packed_ints());
  const Offsets o = offsets_of(shape);
  StepTensors t;
  t.ids = view(packed, o.ids, {shape.rows});
  t.logit_rows = view(packed, o.logits, {shape.logit_rows});
  attn.seqs_device = view(packed, o.seqs, {shape.seqs, 4});
  attn.positions = view(packed, o.positions, {shape.rows});
  attn.block_tables = view(packed, o.tables, {shape.seqs, shape.table_width});
  t.attn = std::move(attn);
  t.packed = packed;
  t.shape = shape;
  return t;
}

StatusOr<StepTensors> upload_step(Backend& backend, const ForwardBatch& batch, KvCache& kv) {
  const StepShape shape = exact_step_shape(batch, kv);
  std::vector<int32_t> packed;
  AttentionBatch attn;
  ZI_RETURN_IF_ERROR(pack_step(batch, kv, shape, packed, attn));
  const Tensor device = backend.from_host(DType::kI32, {shape.packed_ints()}, packed.data());
  return step_tensors_view(device, shape, std::move(attn));
}

}  // namespace zi
