#include "engine/runtime/benchmark.h"

#include <algorithm>
#include <chrono>
#include <random>

namespace zi {
namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

StatusOr<BenchReport> run_benchmark(Executor& ex, const BenchConfig& c) {
  const ModelSummary& m = ex.summary();
  if (c.batch_size < 1 || c.prompt_len < 1 || c.gen_len < 1 || c.loops < 1)
    return absl::InvalidArgumentError("bench: --batch-size, --prompt-len, --gen-len and --loops must be >= 1");
  if (static_cast<uint64_t>(c.prompt_len) + c.gen_len > m.max_context)
    return absl::InvalidArgumentError(absl::StrFormat("bench: --prompt-len %d + --gen-len %d exceeds the context %d",
                                                      c.prompt_len, c.gen_len, m.max_context));
  BenchReport r;
  r.config = c;
  std::mt19937_64 rng(c.seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(m.vocab_size) - 1);
  uint64_t next_id = 1;
  for (int loop = 0; loop < c.loops; ++loop) {
    StepInput in;
    std::vector<uint64_t> ids;
    // Round-robin over the executor's ranks (data parallel: batch_size / num_ranks sequences each).
    const uint32_t ranks = std::max<uint32_t>(1, m.num_ranks);
    for (int b = 0; b < c.batch_size; ++b) {
      SeqStep s;
      s.seq_id = next_id++;
      s.rank = static_cast<uint32_t>(b) % ranks;
      s.first = true;
      s.tokens.resize(c.prompt_len);
      for (auto& t : s.tokens) t = tok(rng);
      ids.push_back(s.seq_id);
      in.seqs.push_back(std::move(s));
    }
    BenchLoop L;
    const size_t per_step =
        c.prefill_step_tokens > 0 ? std::max<size_t>(1, static_cast<size_t>(c.prefill_step_tokens / c.prompt_len))
                                  : in.seqs.size();
    std::vector<int32_t> first_tokens;
    auto t0 = std::chrono::steady_clock::now();
    L.prefill_steps = 0;
    for (size_t b0 = 0; b0 < in.seqs.size(); b0 += per_step) {
      StepInput part;
      for (size_t b = b0; b < std::min(in.seqs.size(), b0 + per_step); ++b) part.seqs.push_back(in.seqs[b]);
      ZI_ASSIGN_OR_RETURN(StepOutput po, ex.step(part));
      L.prefill_fetch_bytes += po.stats.fetch_bytes;
      for (const SeqResult& res : po.results) first_tokens.push_back(res.token);
      ++L.prefill_steps;
    }
    L.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    StepOutput out;
    out.results.resize(first_tokens.size());
    for (size_t b = 0; b < first_tokens.size(); ++b) out.results[b].token = first_tokens[b];
    t0 = std::chrono::steady_clock::now();
    for (int g = 1; g < c.gen_len; ++g) {
      StepInput d;
      for (size_t b = 0; b < ids.size(); ++b) {
        SeqStep s;
        s.seq_id = ids[b];
        s.rank = static_cast<uint32_t>(b) % ranks;
        s.tokens = {out.results[b].token};
        d.seqs.push_back(std::move(s));
      }
      ZI_ASSIGN_OR_RETURN(out, ex.step(d));
      StepStats& t = L.decode_totals;
      t.fetch_bytes += out.stats.fetch_bytes;
      t.nvme_bytes += out.stats.nvme_bytes;
      t.copy_seconds += out.stats.copy_seconds;
      t.nvme_read_seconds += out.stats.nvme_read_seconds;
      t.stall_seconds += out.stats.stall_seconds;
      t.allgather_bytes += out.stats.allgather_bytes;
      t.allgather_seconds += out.stats.allgather_seconds;
      ++L.decode_steps;
    }
    L.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    StepInput release;
    for (size_t b = 0; b < ids.size(); ++b) release.release.emplace_back(ids[b], static_cast<uint32_t>(b) % ranks);
    ZI_RETURN_IF_ERROR(ex.step(release).status());
    r.loops.push_back(L);
  }
  std::vector<double> pre, step, fetch, copy, stall, nvb, nvs, agb, ags, passes;
  const size_t first = r.loops.size() > 1 ? 1 : 0;
  for (size_t i = first; i < r.loops.size(); ++i) {
    const BenchLoop& L = r.loops[i];
    const double n = std::max(1, L.decode_steps);
    pre.push_back(L.prefill_seconds);
    if (m.streamed_bytes_per_step > 0)
      passes.push_back(static_cast<double>(L.prefill_fetch_bytes) / static_cast<double>(m.streamed_bytes_per_step));
    step.push_back(L.decode_steps ? L.decode_seconds / n : 0);
    fetch.push_back(L.decode_totals.fetch_bytes / n);
    copy.push_back(L.decode_totals.copy_seconds / n);
    stall.push_back(L.decode_totals.stall_seconds / n);
    nvb.push_back(L.decode_totals.nvme_bytes / n);
    nvs.push_back(L.decode_totals.nvme_read_seconds / n);
    agb.push_back(L.decode_totals.allgather_bytes / n);
    ags.push_back(L.decode_totals.allgather_seconds / n);
  }
  r.prefill_seconds = median(pre);
  r.prefill_weight_passes = median(passes);
  r.decode_step_seconds = median(step);
  r.fetch_bytes_per_step = median(fetch);
  r.copy_seconds_per_step = median(copy);
  r.stall_seconds_per_step = median(stall);
  r.nvme_bytes_per_step = median(nvb);
  r.nvme_read_seconds_per_step = median(nvs);
  r.allgather_bytes_per_step = median(agb);
  r.allgather_seconds_per_step = median(ags);
  if (r.decode_step_seconds > 0) r.decode_tokens_per_second = c.batch_size / r.decode_step_seconds;
  const double total = r.prefill_seconds + r.decode_step_seconds * (c.gen_len - 1);
  if (total > 0) r.e2e_tokens_per_second = static_cast<double>(c.batch_size) * c.gen_len / total;
  return r;
}

}  // namespace zi
