// The measured rates the throughput planner (throughput_planner.h) works from: host→device copy, disk reads, CPU
// decode attention, GPU HBM reads and GEMM throughput at the token counts a step may carry, and what the process
// holds on the GPU before any weight (CUDA context and library workspaces). Written by `zeroinfer bench
// --probe-rates FILE` on the machine itself, read by `--rates FILE` (so a deployment can be planned on a machine
// without the GPU). Nothing here is assumed: a rate that was not measured is 0 and the planner refuses the choice
// that needs it, naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace zi {

// cuBLASLt GEMM throughput with a model's linear shapes at `tokens` rows (M = T).
struct GemmRate {
  int64_t tokens = 0;
  double tflops = 0;  // 10¹² FLOP/s
};

struct Rates {
  std::string device;                   // where they were measured, e.g. "NVIDIA H100 80GB HBM3"
  std::string gemm_shapes;              // the linears the GEMM rates used, e.g. "hidden 7168, ffn 28672"
  double h2d_bytes_per_second = 0;      // pinned host→device copy (1 GiB, best of 5)
  double disk_bytes_per_second = 0;     // O_DIRECT reads of the offload store or a scratch file (NVMe tier)
  double cpu_attention_bytes_per_second = 0;  // KV bytes the host's cores read per second in decode attention
  double hbm_bytes_per_second = 0;      // device-memory read kernel (4 GiB, best of 5)
  std::vector<GemmRate> gemm;           // ascending tokens
  uint64_t gpu_context_bytes = 0;       // NVML per-process bytes of a fresh backend (context, cuBLAS workspace)
  uint64_t gpu_total_bytes = 0;         // the card's memory (informational)

  // GEMM TFLOPS at `tokens` rows: linear in log2(tokens) between measured points, the end value beyond them.
  // 0 when nothing was measured.
  double gemm_tflops(double tokens) const;
};

// Reads a rates file; errors name the file and the field ("rates.json: h2d_bytes_per_second: must be > 0").
StatusOr<Rates> read_rates(const std::string& path);
// Parses the JSON text (`source` names it in errors).
StatusOr<Rates> parse_rates(const std::string& text, const std::string& source);
std::string rates_json(const Rates& r);
Status write_rates(const Rates& r, const std::string& path);

}  // namespace zi
