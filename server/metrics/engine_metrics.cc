#include "server/metrics/engine_metrics.h"

#include <string>

namespace zi::server {

EngineMetrics::EngineMetrics(prometheus::Registry& r)
    : fetch_(prometheus::BuildCounter()
                 .Name("zeroinfer_weight_fetch_bytes_total")
                 .Help("Weight bytes a rank streamed to its device, by where they came from (cpu, nvme)")
                 .Register(r)),
      pcie_bw_(prometheus::BuildGauge()
                   .Name("zeroinfer_pcie_h2d_bandwidth_bytes_per_second")
                   .Help("Host-to-device bandwidth of the last step's weight copies (bytes / copy device time)")
                   .Register(r)),
      nvme_bw_(prometheus::BuildGauge()
                   .Name("zeroinfer_nvme_read_bandwidth_bytes_per_second")
                   .Help("Read bandwidth of the last step's NVMe-tier reads")
                   .Register(r)),
      stall_(prometheus::BuildCounter()
                 .Name("zeroinfer_prefetch_stall_seconds_total")
                 .Help("Seconds compute waited for weights the prefetch had not brought yet")
                 .Register(r)),
      allgather_bytes_(prometheus::BuildCounter()
                           .Name("zeroinfer_allgather_bytes_total")
                           .Help("ZeRO-3: bytes of other ranks' weight partitions gathered by this rank")
                           .Register(r)),
      allgather_seconds_(prometheus::BuildCounter()
                             .Name("zeroinfer_allgather_seconds_total")
                             .Help("ZeRO-3: seconds spent in weight all-gathers")
                             .Register(r)),
      step_(prometheus::BuildHistogram()
                .Name("zeroinfer_step_duration_seconds")
                .Help("Engine step wall time per rank; phase prefill when the step appended any prompt tokens")
                .Register(r)),
      gpu_memory_(prometheus::BuildGauge()
                      .Name("zeroinfer_gpu_memory_used_bytes")
                      .Help("GPU memory in use on the rank's device after its last step")
                      .Register(r)),
      kv_usage_(prometheus::BuildGauge()
                    .Name("zeroinfer_kv_cache_usage_ratio")
                    .Help("Fraction of the rank's KV cache blocks in use after its last step")
                    .Register(r)) {}

EngineMetrics::Rank& EngineMetrics::rank(uint32_t r) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ranks_.find(r);
  if (it != ranks_.end()) return it->second;
  const std::string label = std::to_string(r);
  const prometheus::Histogram::BucketBoundaries buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                           0.25,  0.5,    1,     2.5,  5,     10,   30};
  Rank k;
  k.fetch_cpu = &fetch_.Add({{"rank", label}, {"source", "cpu"}});
  k.fetch_nvme = &fetch_.Add({{"rank", label}, {"source", "nvme"}});
  k.pcie_bw = &pcie_bw_.Add({{"rank", label}});
  k.nvme_bw = &nvme_bw_.Add({{"rank", label}});
  k.stall = &stall_.Add({{"rank", label}});
  k.allgather_bytes = &allgather_bytes_.Add({{"rank", label}});
  k.allgather_seconds = &allgather_seconds_.Add({{"rank", label}});
  k.step_prefill = &step_.Add({{"rank", label}, {"phase", "prefill"}}, buckets);
  k.step_decode = &step_.Add({{"rank", label}, {"phase", "decode"}}, buckets);
  k.gpu_memory = &gpu_memory_.Add({{"rank", label}});
  k.kv_usage = &kv_usage_.Add({{"rank", label}});
  return ranks_.emplace(r, k).first->second;
}

void EngineMetrics::observe(const StepStats& s) {
  Rank& k = rank(s.rank);
  const uint64_t nvme = std::min(s.nvme_bytes, s.fetch_bytes);
  k.fetch_cpu->Increment(static_cast<double>(s.fetch_bytes - nvme));
  k.fetch_nvme->Increment(static_cast<double>(nvme));
  if (s.fetch_bytes > 0 && s.copy_seconds > 0) k.pcie_bw->Set(s.fetch_bytes / s.copy_seconds);
  if (s.nvme_bytes > 0 && s.nvme_read_seconds > 0) k.nvme_bw->Set(s.nvme_bytes / s.nvme_read_seconds);
  k.stall->Increment(s.stall_seconds);
  k.allgather_bytes->Increment(static_cast<double>(s.allgather_bytes));
  k.allgather_seconds->Increment(s.allgather_seconds);
  (s.prefill_tokens > 0 ? k.step_prefill : k.step_decode)->Observe(s.seconds);
  k.gpu_memory->Set(static_cast<double>(s.device_memory_used_bytes));
  k.kv_usage->Set(s.kv_usage_ratio);
}

void EngineMetrics::observe_step(const StepOutput& out) {
  if (out.rank_stats.empty()) return observe(out.stats);
  for (const StepStats& s : out.rank_stats) observe(s);
}

}  // namespace zi::server
