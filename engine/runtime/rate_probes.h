// The measurements behind a rates file (engine/zero/planner/rates.h), taken on this machine: `bench
// --probe-rates FILE` writes them, and the planner measures them at start-up when no --rates FILE is given. The
// GPU ones reuse bench's probes (engine/zero/cuda/probes.h); CPU decode attention runs the host kernel the CUDA
// backend uses for KV offload (engine/backend/cpu/host_decode_attention.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/status.h"
#include "engine/model/config.h"
#include "engine/runtime/engine_options.h"
#include "engine/zero/planner/rates.h"

namespace zi {

struct Architecture;

// KV bytes per second the host's `threads` cores read in decode attention: sequences of `context` tokens with the
// model's heads over a cache of about `cache_bytes` (K and V, `cache_dtype`), best of `reps`.
StatusOr<double> probe_cpu_decode_attention(int threads, int n_heads, int n_kv_heads, int head_dim, DType cache_dtype,
                                            int context, uint64_t cache_bytes = uint64_t{512} << 20, int reps = 3);

// The GEMM token counts a plan for prompts of `prompt_len` and batches up to `max_batch` considers: decode batches
// 1 .. max_batch and prefill steps of prompt_len .. 65536 rows, powers of two (the planner interpolates between).
std::vector<int64_t> rate_gemm_tokens(int64_t prompt_len, int64_t max_batch);

// Every rate, on device 0 (GPU rates need a CUDA build and a GPU: FailedPrecondition otherwise). `disk_file`:
// what O_DIRECT reads are timed on (an offload store, or a scratch file written first when it does not exist).
StatusOr<Rates> measure_rates(const EngineOptions& o, const ModelConfig& cfg, const Architecture& arch,
                              int64_t prompt_len, int64_t max_batch, const std::string& disk_file);

}  // namespace zi
