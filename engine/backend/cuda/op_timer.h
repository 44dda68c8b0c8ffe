// Where a step's GPU time goes, op by op: with ZI_OP_TIMING=1 in the environment every CudaBackend op is bracketed
// by two CUDA events on the compute stream, and the elapsed times are summed per op name (linear per weight shape)
// whenever the stream is synchronised anyway (copy_to_host, synchronize). The backend prints the table when it is
// destroyed, and the log shows it (nsys cannot write reports on the device machine; this is what docs/DESIGN.md's
// per-phase timings come from).
//
// Timing makes the ops run eagerly (no graph capture: a captured event cannot be read per replay) and adds two
// event records per op, a few µs each on the host: use it to see proportions, never to report step times.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zi::cuda {

class OpTimes {
 public:
  // Enabled by ZI_OP_TIMING=1 (read once at construction).
  OpTimes();
  ~OpTimes();
  OpTimes(const OpTimes&) = delete;
  OpTimes& operator=(const OpTimes&) = delete;

  bool enabled() const { return enabled_; }
  // Records the op's start event; end() records its end. Both no-ops when disabled.
  int begin(cudaStream_t stream);
  void end(int token, std::string name, cudaStream_t stream);
  // Folds every recorded pair into the totals (call after the stream is synchronised).
  void collect();
  // The totals as a table: name, calls, ms, share of the sum.
  std::string table() const;

 private:
  struct Pending {
    cudaEvent_t start, stop;
    std::string name;
  };
  struct Total {
    uint64_t calls = 0;
    double ms = 0;
  };
  cudaEvent_t take_event();

  bool enabled_ = false;
  std::vector<cudaEvent_t> free_;
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> open_;  // start events by token
  std::map<std::string, Total> totals_;
};

// RAII bracket for one op: OpTimer t(times_, stream, "rms_norm");
class OpTimer {
 public:
  OpTimer(OpTimes& times, cudaStream_t stream, const char* name) : times_(times), stream_(stream), name_(name) {
    if (times_.enabled()) token_ = times_.begin(stream_);
  }
  ~OpTimer() {
    if (times_.enabled()) times_.end(token_, suffix_.empty() ? std::string(name_) : name_ + suffix_, stream_);
  }
  // Adds detail to the name (e.g. linear's weight shape); cheap when disabled.
  void detail(const std::string& s) {
    if (times_.enabled()) suffix_ = s;
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  OpTimes& times_;
  cudaStream_t stream_;
  std::string name_;
  std::string suffix_;
  int token_ = -1;
};

}  // namespace zi::cuda
