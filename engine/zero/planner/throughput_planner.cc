#include "engine/zero/planner/throughput_planner.h"

#include <algorithm>
#include <optional>

namespace zi {
namespace {

// The most prefill rows one step may carry: activation_tokens' cap (placement.h).
constexpr uint32_t kMaxStepRows = 65536;

bool fits(const MemoryNeed& n, const Limits& l) {
  return n.gpu() <= l.gpu_bytes && n.host() <= l.host_bytes && (n.disk == 0 || n.disk <= l.disk_bytes);
}

// Prefill step budgets for a batch: every prompt in one step (up to kMaxStepRows), then halving the prompts per
// step down to one.
std::vector<uint32_t> step_budgets(uint32_t batch, uint32_t prompt_len) {
  std::vector<uint32_t> out;
  uint32_t per = std::max<uint32_t>(1, std::min<uint32_t>(batch, kMaxStepRows / std::max<uint32_t>(1, prompt_len)));
  for (;;) {
    out.push_back(per * prompt_len);
    if (per == 1) break;
    per = (per + 1) / 2;
  }
  return out;
}

struct Best {
  std::optional<Plan> plan;
  void offer(const Plan& p) {
    if (!plan || p.prediction.tokens_per_second > plan->prediction.tokens_per_second * (1 + 1e-12)) plan = p;
  }
};

std::string gb(uint64_t b) { return format_bytes(b); }

// The smallest deployment: one sequence, every layer streamed through a ring of 2, one prompt per prefill step.
PlanChoice minimum_choice(const PlannerInput& in, KvPlace kv, LayerTier tier) {
  PlanChoice c;
  c.batch = 1;
  c.resident_layers = 0;
  c.stream_tier = tier;
  c.prefetch_depth = 2;
  c.kv = kv;
  c.step_tokens = in.workload.prompt_len;
  return c;
}

Status refuse(const PlannerInput& in) {
  const ModelShape& m = in.model;
  const MemoryNeed g = memory_need(m, in.rates, in.workload, minimum_choice(in, KvPlace::kHost, LayerTier::kNvme));
  if (g.gpu() > in.limits.gpu_bytes)
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory.gpu_limit ", gb(in.limits.gpu_bytes), " (", in.limits.gpu_bytes,
        " bytes) cannot hold the minimum deployment: CUDA context ", gb(g.context), " + slack ", gb(g.slack),
        " + embeddings/head ", gb(g.weights), " + ring of 2 layers ", gb(g.ring), " + activations of one sequence ",
        gb(g.activations), " = ", gb(g.gpu()), " (", g.gpu(), " bytes), with the KV cache in host memory"));
  const MemoryNeed h = memory_need(m, in.rates, in.workload, minimum_choice(in, KvPlace::kGpu, LayerTier::kNvme));
  const MemoryNeed hc = memory_need(m, in.rates, in.workload, minimum_choice(in, KvPlace::kGpu, LayerTier::kCpu));
  if (in.limits.disk_bytes == 0 || h.disk > in.limits.disk_bytes)
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory.host_limit ", gb(in.limits.host_bytes), " (", in.limits.host_bytes,
        " bytes) cannot hold the streamed layers: ", gb(hc.host_weights), " (", hc.host_weights,
        " bytes) pinned with every layer streamed from CPU memory, and the NVMe tier ",
        in.limits.disk_bytes == 0 ? std::string("is not available (no disk rate or offload.dir)")
                                  : absl::StrCat("needs ", gb(h.disk), " of disk, ", gb(in.limits.disk_bytes), " free")));
  return absl::ResourceExhaustedError(absl::StrCat(
      "memory.host_limit ", gb(in.limits.host_bytes), " (", in.limits.host_bytes,
      " bytes) cannot hold the minimum deployment: NVMe staging ring ", gb(h.host_weights), " (", h.host_weights,
      " bytes); and memory.gpu_limit ", gb(in.limits.gpu_bytes), " cannot hold it with the KV cache on the GPU (",
      gb(h.gpu()), ")"));
}

}  // namespace

std::vector<uint32_t> candidate_batches(uint32_t max_batch) {
  std::vector<uint32_t> out;
  for (uint32_t b = 1; b <= max_batch; b += b < 32 ? 1 : b < 128 ? 4 : 8) out.push_back(b);
  return out;
}

std::string describe_choice(const ModelShape& m, const PlanChoice& c, const Prediction& p) {
  const int streamed = m.layers - c.resident_layers;
  std::string layers = absl::StrCat(c.resident_layers, " of ", m.layers, " layers resident");
  if (streamed > 0) absl::StrAppend(&layers, ", ", streamed, " streamed from ", layer_tier_name(c.stream_tier));
  std::string kv = c.kv == KvPlace::kGpu ? "KV cache on the GPU"
                                         : absl::StrFormat("KV cache in host memory (%.0f%% of decode attention "
                                                           "on the CPU)", 100 * p.cpu_fraction);
  return absl::StrCat("batch ", c.batch, ", ", layers, ", ", kv, ", prefill ", c.step_tokens, " tokens per step",
                      streamed > 0 ? absl::StrCat(", ring of ", c.prefetch_depth, " slots") : "");
}

StatusOr<Plan> plan_throughput(const PlannerInput& in) {
  const ModelShape& m = in.model;
  const Workload& w = in.workload;
  if (m.layers < 1 || m.layer_bytes == 0) return absl::InvalidArgumentError("planner: the model has no layers");
  if (w.prompt_len < 1 || w.gen_len < 1) return absl::InvalidArgumentError("planner: prompt and gen must be >= 1");
  if (in.limits.gpu_bytes == 0) return absl::InvalidArgumentError("planner: memory.gpu_limit is not known");
  const bool nvme = in.limits.disk_bytes > 0 && in.rates.disk_bytes_per_second > 0;
  std::vector<LayerTier> tiers = {LayerTier::kCpu};
  if (nvme) tiers.push_back(LayerTier::kNvme);
  const std::vector<uint32_t> batches =
      in.fixed_batch ? std::vector<uint32_t>{in.fixed_batch} : candidate_batches(in.max_batch);

  Best best;
  std::vector<Best> by_batch(batches.size());
  Best by_kv[2];
  Best by_tier[2];
  size_t priced = 0;
  std::vector<Plan> priced_plans;
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const uint32_t B = batches[bi];
    for (KvPlace kv : {KvPlace::kGpu, KvPlace::kHost}) {
      if (in.fixed_kv && kv != *in.fixed_kv) continue;
      for (LayerTier tier : tiers) {
        const uint32_t auto_depth = auto_prefetch_depth(m.layer_bytes, stream_rate(in.rates, tier));
        const std::vector<uint32_t> depths =
            auto_depth > 2 ? std::vector<uint32_t>{auto_depth, 2u} : std::vector<uint32_t>{auto_depth};
        for (uint32_t depth : depths) {
          for (uint32_t U : step_budgets(B, w.prompt_len)) {
            PlanChoice c;
            c.batch = B;
            c.kv = kv;
            c.stream_tier = tier;
            c.prefetch_depth = depth;
            c.step_tokens = U;
            // The most layers that fit: more resident never slows a step (fewer bytes cross the bus).
            std::optional<MemoryNeed> need;
            for (int k = m.layers; k >= 0; --k) {
              // All layers resident: the tier and the ring do not matter; price that once (cpu tier, auto depth).
              if (k == m.layers && (tier != LayerTier::kCpu || depth != auto_depth)) continue;
              if (in.limits.gpu_weights_budget &&
                  m.global_bytes + static_cast<uint64_t>(k) * m.layer_bytes > in.limits.gpu_weights_budget)
                continue;
              c.resident_layers = k;
              MemoryNeed n = memory_need(m, in.rates, w, c);
              if (fits(n, in.limits)) {
                need = n;
                break;
              }
            }
            if (!need) continue;
            ZI_ASSIGN_OR_RETURN(Prediction p, predict(m, in.rates, w, c));
            ++priced;
            Plan plan{c, p, *need, {}, 0};
            best.offer(plan);
            priced_plans.push_back(plan);
            by_batch[bi].offer(plan);
            by_kv[static_cast<int>(kv)].offer(plan);
            if (c.resident_layers < m.layers) by_tier[tier == LayerTier::kNvme].offer(plan);
          }
        }
      }
    }
  }
  if (!best.plan) return refuse(in);

  // When the whole model fits resident, it stays resident (with every layer resident, decode steps replay CUDA
  // graphs and nothing waits on the ring: gains the cost model does not price). Otherwise: the most resident layers
  // among the plans within kResidencyPreference of the best; of those, the fastest.
  Best all_resident;
  for (const Plan& q : priced_plans)
    if (q.choice.resident_layers == m.layers) all_resident.offer(q);
  Plan plan = all_resident.plan ? *all_resident.plan : *best.plan;
  const double floor_tps = best.plan->prediction.tokens_per_second * (1 - kResidencyPreference);
  for (const Plan& q : priced_plans) {
    if (all_resident.plan || q.prediction.tokens_per_second < floor_tps) continue;
    if (q.choice.resident_layers > plan.choice.resident_layers ||
        (q.choice.resident_layers == plan.choice.resident_layers &&
         q.prediction.tokens_per_second > plan.prediction.tokens_per_second * (1 + 1e-12)))
      plan = q;
  }
  plan.candidates = priced;
  const PlanChoice& c = plan.choice;
  const Prediction& p = plan.prediction;
  const MemoryNeed& n = plan.memory;
  const int streamed = m.layers - c.resident_layers;
  // Batch: against the next larger batch (why not more) when one was tried.
  {
    std::string why = absl::StrFormat("batch %u: the most predicted tokens/s (%.2f) of %zu batch sizes", c.batch,
                                      p.tokens_per_second, batches.size());
    for (size_t bi = 0; bi < batches.size(); ++bi) {
      if (batches[bi] <= c.batch) continue;
      if (by_batch[bi].plan)
        absl::StrAppend(&why, absl::StrFormat("; batch %u would give %.2f", batches[bi],
                                              by_batch[bi].plan->prediction.tokens_per_second));
      else
        absl::StrAppend(&why, absl::StrFormat("; batch %u does not fit the limits", batches[bi]));
      break;
    }
    if (in.fixed_batch) why = absl::StrCat("batch ", c.batch, ": given");
    plan.reasons.push_back(why);
  }
  if (best.plan->choice.resident_layers < c.resident_layers)
    plan.reasons.push_back(absl::StrFormat(
        "residency: %d layers resident rather than %d (batch %u, %.2f tokens/s): %s", c.resident_layers,
        best.plan->choice.resident_layers, best.plan->choice.batch, best.plan->prediction.tokens_per_second,
        c.resident_layers == m.layers
            ? "the whole model fits, and all-resident decode replays CUDA graphs with no ring to wait on"
            : absl::StrFormat("within %.0f%% of it, and streaming costs more than its bus time",
                              100 * kResidencyPreference)));
  if (streamed == 0) {
    plan.reasons.push_back(absl::StrCat("layers: all ", m.layers, " resident (", gb(n.weights),
                                        " with embeddings/head): they fit beside the KV cache and activations"));
  } else {
    std::string why = absl::StrCat("layers: ", c.resident_layers, " resident, ", streamed, " streamed (",
                                   gb(m.layer_bytes), " each): ");
    if (in.limits.gpu_weights_budget &&
        n.weights + m.layer_bytes > in.limits.gpu_weights_budget)
      absl::StrAppend(&why, "offload.gpu_weights_budget ", gb(in.limits.gpu_weights_budget), " holds no more");
    else
      absl::StrAppend(&why, "one more would need ", gb(n.gpu() + m.layer_bytes), " of GPU memory, over memory.gpu_limit ",
                      gb(in.limits.gpu_bytes), " (this plan uses ", gb(n.gpu()), ")");
    plan.reasons.push_back(why);
    if (c.stream_tier == LayerTier::kCpu)
      plan.reasons.push_back(absl::StrFormat(
          "tier: pinned host memory (%s of memory.host_limit %s), %.1f GB/s host→device%s", gb(n.host()).c_str(),
          gb(in.limits.host_bytes).c_str(), in.rates.h2d_bytes_per_second / 1e9,
          by_tier[1].plan ? absl::StrFormat(" (NVMe would give %.2f tokens/s)",
                                            by_tier[1].plan->prediction.tokens_per_second)
                          : ""));
    else
      plan.reasons.push_back(absl::StrFormat(
          "tier: NVMe at %.2f GB/s: %s%s", in.rates.disk_bytes_per_second / 1e9,
          by_tier[0].plan ? absl::StrFormat("faster than pinned host memory here (%.2f tokens/s)",
                                            by_tier[0].plan->prediction.tokens_per_second)
                          : absl::StrCat("memory.host_limit ", gb(in.limits.host_bytes),
                                         " cannot hold the streamed layers (", gb(streamed * m.layer_bytes), ")"),
          ""));
  }
  {
    const Best& other = by_kv[c.kv == KvPlace::kGpu ? 1 : 0];
    std::string alt = other.plan ? absl::StrFormat("%.2f tokens/s at best (batch %u)",
                                                   other.plan->prediction.tokens_per_second,
                                                   other.plan->choice.batch)
                                 : std::string("does not fit");
    if (c.kv == KvPlace::kGpu)
      plan.reasons.push_back(absl::StrFormat("KV cache: on the GPU (%s), %.2f tokens/s; in host memory: %s",
                                             gb(n.kv_gpu).c_str(), p.tokens_per_second, alt.c_str()));
    else
      plan.reasons.push_back(absl::StrFormat(
          "KV cache: in host memory (%s), %.0f%% of decode attention on the CPU, %.2f tokens/s; on the GPU: %s",
          gb(n.kv_host).c_str(), 100 * p.cpu_fraction, p.tokens_per_second, alt.c_str()));
  }
  plan.reasons.push_back(absl::StrFormat(
      "prefill: %u step(s) of up to %u tokens (%u prompts each)%s, activations %s", p.prefill_steps, c.step_tokens,
      c.step_tokens / w.prompt_len,
      streamed > 0 ? absl::StrFormat(", each streaming the %d offloaded layers once", streamed) : "",
      gb(n.activations).c_str()));
  if (streamed > 0) {
    const uint32_t want = auto_prefetch_depth(m.layer_bytes, stream_rate(in.rates, c.stream_tier));
    plan.reasons.push_back(
        c.prefetch_depth == want
            ? absl::StrFormat("ring: %u slots, 20 ms of copy at %.1f GB/s beyond the layer in use", c.prefetch_depth,
                              stream_rate(in.rates, c.stream_tier) / 1e9)
            : absl::StrFormat("ring: %u slots (20 ms of copy would take %u): the memory they free buys more "
                              "tokens/s", c.prefetch_depth, want));
  }
  return plan;
}

}  // namespace zi
