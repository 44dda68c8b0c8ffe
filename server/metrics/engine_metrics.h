// The engine rows of DESIGN.md's metrics table, per rank: what each worker reports with every step reply
// (zi::StepStats) turned into counters, gauges and histograms labelled `rank`. Thread-safe (prometheus-cpp).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "engine/runtime/executor.h"

namespace zi::server {

class EngineMetrics {
 public:
  explicit EngineMetrics(prometheus::Registry& registry);
  // One step's figures: out.rank_stats when the worker pool filled it, else out.stats as rank 0's.
  void observe_step(const StepOutput& out);

 private:
  struct Rank {
    prometheus::Counter* fetch_cpu;
    prometheus::Counter* fetch_nvme;
    prometheus::Gauge* pcie_bw;
    prometheus::Gauge* nvme_bw;
    prometheus::Counter* stall;
    prometheus::Counter* allgather_bytes;
    prometheus::Counter* allgather_seconds;
    prometheus::Histogram* step_prefill;
    prometheus::Histogram* step_decode;
    prometheus::Gauge* gpu_memory;
    prometheus::Gauge* kv_usage;
  };
  Rank& rank(uint32_t r);
  void observe(const StepStats& s);

  prometheus::Family<prometheus::Counter>& fetch_;
  prometheus::Family<prometheus::Gauge>& pcie_bw_;
  prometheus::Family<prometheus::Gauge>& nvme_bw_;
  prometheus::Family<prometheus::Counter>& stall_;
  prometheus::Family<prometheus::Counter>& allgather_bytes_;
  prometheus::Family<prometheus::Counter>& allgather_seconds_;
  prometheus::Family<prometheus::Histogram>& step_;
  prometheus::Family<prometheus::Gauge>& gpu_memory_;
  prometheus::Family<prometheus::Gauge>& kv_usage_;
  std::mutex mu_;
  std::map<uint32_t, Rank> ranks_;  // guarded by mu_ (the metric objects themselves are atomic)
};

}  // namespace zi::server
