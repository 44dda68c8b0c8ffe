#include "engine/zero/planner/cost_model.h"

#include <algorithm>
#include <cmath>

namespace zi {

static_assert(ModelShape{}.chunk_rows == kLayerChunkRows, "ModelShape::chunk_rows defaults to the engine's");

double mean_decode_attended(const Workload& w) {
  // Σ_{j=1}^{gen−1} (prompt + j) / (gen − 1) = prompt + gen / 2.
  return static_cast<double>(w.prompt_len) + static_cast<double>(w.gen_len) / 2.0;
}

double stream_rate(const Rates& r, LayerTier tier) {
  if (tier == LayerTier::kNvme) return std::min(r.disk_bytes_per_second, r.h2d_bytes_per_second);
  return r.h2d_bytes_per_second;
}

namespace {

uint64_t kv_bytes_of(const ModelShape& m, const Workload& w, uint32_t batch) {
  const uint64_t ctx = static_cast<uint64_t>(w.prompt_len) + w.gen_len;
  const uint64_t bs = std::max<uint32_t>(1, w.kv_block_size);
  return static_cast<uint64_t>(batch) * ((ctx + bs - 1) / bs) * bs * m.kv_bytes_per_token;
}

// Prompts per prefill step: whole prompts within the step budget, at least one, at most the batch.
uint32_t prompts_per_step(const Workload& w, const PlanChoice& c) {
  const uint32_t n = c.step_tokens / std::max<uint32_t>(1, w.prompt_len);
  return std::clamp<uint32_t>(n, 1, std::max<uint32_t>(1, c.batch));
}

}  // namespace

MemoryNeed memory_need(const ModelShape& m, const Rates& r, const Workload& w, const PlanChoice& c) {
  MemoryNeed n;
  const int streamed = m.layers - c.resident_layers;
  n.context = r.gpu_context_bytes;
  n.slack = kGpuSlackBytes;
  n.weights = m.global_bytes + static_cast<uint64_t>(c.resident_layers) * m.layer_bytes;
  const uint64_t slots = std::min<uint64_t>(c.prefetch_depth, static_cast<uint64_t>(std::max(streamed, 0)));
  n.ring = slots * m.layer_bytes;
  const uint64_t kv = kv_bytes_of(m, w, c.batch);
  (c.kv == KvPlace::kGpu ? n.kv_gpu : n.kv_host) = kv;
  const uint64_t rows = std::max<uint64_t>(static_cast<uint64_t>(prompts_per_step(w, c)) * w.prompt_len, c.batch);
  n.activations =
      activation_bytes_for_rows(m.hidden, m.intermediate, m.vocab, rows, c.batch, m.element_bytes, m.chunk_rows);
  if (streamed > 0) {
    if (c.stream_tier == LayerTier::kNvme) {
      n.host_weights = n.ring;  // staging slots between the store and the device
      n.disk = static_cast<uint64_t>(streamed) * m.layer_bytes;
    } else {
      n.host_weights = static_cast<uint64_t>(streamed) * m.layer_bytes;
    }
  }
  return n;
}

StatusOr<Prediction> predict(const ModelShape& m, const Rates& r, const Workload& w, const PlanChoice& c) {
  if (r.gemm.empty()) return absl::FailedPreconditionError("rates: gemm: not measured (bench --probe-rates)");
  if (r.hbm_bytes_per_second <= 0 || r.h2d_bytes_per_second <= 0)
    return absl::FailedPreconditionError(
        "rates: hbm_bytes_per_second and h2d_bytes_per_second must be measured (bench --probe-rates)");
  const int streamed = m.layers - c.resident_layers;
  if (streamed > 0 && c.stream_tier == LayerTier::kNvme && r.disk_bytes_per_second <= 0)
    return absl::FailedPreconditionError(
        "rates: disk_bytes_per_second: not measured, and the NVMe tier needs it (bench --probe-rates)");
  Prediction p;
  const double hbm = r.hbm_bytes_per_second;
  const double L = m.layers, s = static_cast<double>(m.layer_bytes), H = static_cast<double>(m.head_read_bytes);
  const double bus = streamed > 0 ? streamed * s / stream_rate(r, c.stream_tier) : 0.0;
  const double weight_reads = (L * s + H) / hbm;  // every layer's weights once from HBM (resident or in the ring)
  // A step of `rows` rows over quantized weights past the fused kernels' range: every layer dequantized (write and
  // read of the dense copy) before its GEMMs, once per chunk of at most m.chunk_rows rows.
  const double chunk = static_cast<double>(std::max<uint64_t>(m.chunk_rows, 1));
  auto dequant_seconds = [&](double rows) {
    if (!m.quantized || rows <= kFusedQuantMaxRows) return 0.0;
    return std::ceil(rows / chunk) * 2.0 * m.linear_params * m.element_bytes / hbm;
  };

  // Prefill: ceil(batch / prompts_per_step) steps; each streams every offloaded layer once while the GPU runs the
  // step's GEMMs and attention, so a step takes the slower of the two.
  const uint32_t per_step = prompts_per_step(w, c);
  const double P = w.prompt_len;
  for (uint32_t done = 0; done < c.batch; done += per_step) {
    const double b = std::min<uint32_t>(per_step, c.batch - done);
    const double rows = b * P;
    const double flops = 2.0 * m.linear_params * rows + m.attention_flops_per_pair * b * P * (P + 1) / 2.0 +
                         2.0 * m.head_params * b;
    // The GEMMs run a chunk at a time: their rate is the chunk's.
    const double compute =
        std::max(weight_reads, flops / (r.gemm_tflops(std::min(rows, chunk)) * 1e12)) + dequant_seconds(rows);
    p.prefill_seconds += std::max(bus, compute);
    ++p.prefill_steps;
  }

  // Decode step: B rows. The GPU reads every weight once (or computes the GEMMs, whichever is slower) while the
  // copy engine streams the offloaded layers; KV reads add to the GPU's side (KV in GPU memory), or split between
  // the host's cores and the bus (KV in host memory).
  const double B = c.batch;
  const double kv_read = B * mean_decode_attended(w) * static_cast<double>(m.kv_bytes_per_token);
  const double gemm = 2.0 * (m.linear_params + m.head_params) * B / (r.gemm_tflops(B) * 1e12);
  const double tw = std::max(weight_reads, gemm) + dequant_seconds(B);
  if (c.kv == KvPlace::kGpu) {
    p.decode_bus_seconds = bus;
    p.decode_gpu_seconds = tw + kv_read / hbm;
  } else {
    // f of the rows on the CPU. The GPU's share (1 − f) crosses the bus beside the streamed weights and is then
    // read from its staging buffers; the CPU's share runs while the GPU waits for it (per layer), so
    //   bus(f) = bus + (1 − f)·K/h2d            falls with f,
    //   gpu(f) = tw + (1 − f)·K/hbm + f·K/cpu   rises with f (the host reads slower than HBM),
    // and the step max(bus(f), gpu(f)) is least where they meet:
    //   f = (bus + K/h2d − tw − K/hbm) / (K/h2d − K/hbm + K/cpu), clamped to [0, 1].
    const double kb = kv_read / r.h2d_bytes_per_second, kh = kv_read / hbm;
    double f = 0;
    if (r.cpu_attention_bytes_per_second > 0 && kv_read > 0) {
      const double kc = kv_read / r.cpu_attention_bytes_per_second;
      f = std::clamp((bus + kb - tw - kh) / (kb - kh + kc), 0.0, 1.0);
      p.decode_cpu_seconds = f * kc;
    }
    p.cpu_fraction = f;
    p.decode_bus_seconds = bus + (1 - f) * kb;
    p.decode_gpu_seconds = tw + (1 - f) * kh;
  }
  p.decode_step_seconds = std::max(p.decode_bus_seconds, p.decode_gpu_seconds + p.decode_cpu_seconds);
  const double gen = w.gen_len;
  p.total_seconds = p.prefill_seconds + (gen - 1) * p.decode_step_seconds;
  p.tokens_per_second = p.total_seconds > 0 ? B * gen / p.total_seconds : 0;
  return p;
}

}  // namespace zi
