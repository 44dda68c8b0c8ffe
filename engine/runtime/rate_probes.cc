#include "engine/runtime/rate_probes.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "engine/backend/cpu/host_decode_attention.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/core/compute_dtype.h"
#include "engine/core/log.h"
#include "engine/io/direct_reader.h"
#include "engine/model/registry.h"
#include "engine/runtime/bench_floors.h"
#if defined(ZI_WITH_CUDA)
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/device_probe.h"
#include "engine/backend/cuda/nvml.h"
#include "engine/zero/cuda/probes.h"
#endif

namespace zi {

StatusOr<double> probe_cpu_decode_attention(int threads, int n_heads, int n_kv_heads, int head_dim, DType cache_dtype,
                                            int context, uint64_t cache_bytes, int reps) {
  if (n_heads < 1 || n_kv_heads < 1 || head_dim < 1 || context < 1 || n_heads % n_kv_heads != 0)
    return absl::InvalidArgumentError("probe_cpu_decode_attention: bad head shape");
  const int BS = 16;
  const size_t elem = dtype_size(cache_dtype);
  const int blocks_per_seq = (context + BS - 1) / BS;
  const uint64_t seq_bytes = 2ull * blocks_per_seq * BS * n_kv_heads * head_dim * elem;  // K and V
  const int n = static_cast<int>(std::max<uint64_t>(1, cache_bytes / seq_bytes));
  const int64_t NB = static_cast<int64_t>(n) * blocks_per_seq;
  std::vector<int32_t> tables(static_cast<size_t>(NB));
  for (int64_t i = 0; i < NB; ++i) tables[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  std::vector<SeqSlice> seqs;
  for (int s = 0; s < n; ++s) seqs.push_back(SeqSlice{s, s, 1, context - 1});
  const size_t cache_elems = static_cast<size_t>(NB) * BS * n_kv_heads * head_dim;
  // Small values in any 16-bit float format: 0x3c00 is 1.0 in fp16, 0x3f80 in bf16; a fixed pattern suffices for
  // a rate (the kernel's time does not depend on the values).
  std::vector<uint8_t> k(cache_elems * elem, 0x3c), v(cache_elems * elem, 0x3c);
  std::vector<uint8_t> q(static_cast<size_t>(n) * n_heads * head_dim * elem, 0x3c);
  std::vector<uint8_t> out(q.size());
  cpu::HostDecodeAttention a;
  a.k_cache = k.data();
  a.v_cache = v.data();
  a.cache_dtype = cache_dtype;
  a.g = cpu::KvGeometry{NB, BS, n_kv_heads, head_dim, tables.data(), blocks_per_seq};
  a.n_heads = n_heads;
  a.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  cpu::ThreadPool pool(std::max(1, threads));
  const double bytes = static_cast<double>(n) * context * 2.0 * n_kv_heads * head_dim * elem;
  double best = 0;
  cpu::host_decode_attention(pool, a, seqs, 0, seqs.size(), cache_dtype, q.data(), out.data());  // warm-up
  for (int r = 0; r < std::max(1, reps); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu::host_decode_attention(pool, a, seqs, 0, seqs.size(), cache_dtype, q.data(), out.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) best = std::max(best, bytes / s);
  }
  return best;
}

std::vector<int64_t> rate_gemm_tokens(int64_t prompt_len, int64_t max_batch) {
  std::vector<int64_t> t;
  for (int64_t b = 1; b < max_batch; b *= 2) t.push_back(b);
  t.push_back(std::max<int64_t>(1, max_batch));
  for (int64_t rows = std::max<int64_t>(1, prompt_len); rows <= 65536; rows *= 2) t.push_back(rows);
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

StatusOr<Rates> measure_rates(const EngineOptions& o, const ModelConfig& cfg, const Architecture& arch,
                              int64_t prompt_len, int64_t max_batch, const std::string& disk_file) {
#if !defined(ZI_WITH_CUDA)
  (void)o, (void)cfg, (void)arch, (void)prompt_len, (void)max_batch, (void)disk_file;
  return absl::FailedPreconditionError(
      "measuring rates needs the CUDA build and a GPU; pass --rates FILE (written by bench --probe-rates on the GPU "
      "machine)");
#else
  const cuda::DeviceProbe dev = cuda::probe_devices();
  if (dev.device_count == 0)
    return absl::FailedPreconditionError(absl::StrCat(
        "no GPU to measure rates on (", dev.driver_error, "); pass --rates FILE (written by bench --probe-rates)"));
  Rates r;
  r.device = dev.name;
  r.gpu_total_bytes = dev.total_memory;
  const DType act = gpu_compute_dtype(o.dtype, config_dtype(cfg.dtype));
  {
    // What the process holds on the GPU before any weight: a fresh backend (context, cuBLAS and cuBLASLt
    // workspaces) as NVML counts it.
    CudaBackendOptions bo;
    bo.activation_dtype = act;
    ZI_ASSIGN_OR_RETURN(std::unique_ptr<Backend> be, make_cuda_backend(bo));
    StatusOr<uint64_t> held = cuda::nvml_process_used_bytes(0);
    if (held.ok()) {
      r.gpu_context_bytes = *held;
    } else {
      ZI_LOG(WARNING) << "NVML per-process memory unavailable (" << held.status()
                      << "); gpu_context_bytes is the device's used memory";
      r.gpu_context_bytes = be->device_memory_used_bytes();
    }
  }
  ZI_ASSIGN_OR_RETURN(r.h2d_bytes_per_second, cuda::probe_h2d_bandwidth(0));
  ZI_ASSIGN_OR_RETURN(r.hbm_bytes_per_second, cuda::probe_hbm_read_bandwidth(0));
  std::vector<LinearShape> linears = layer_linear_shapes(cfg, arch, 0);
  r.gemm_shapes = absl::StrCat(cfg.architecture, " hidden ", cfg.hidden_size, ", ffn ", cfg.intermediate_size);
  for (int64_t t : rate_gemm_tokens(prompt_len, max_batch)) {
    std::vector<cuda::GemmShape> shapes;
    for (const LinearShape& s : linears) shapes.push_back({t, s.out, s.in, s.bias});
    StatusOr<cuda::GemmProbeResult> g = cuda::probe_gemm_tflops(0, act, shapes);
    if (!g.ok()) {
      ZI_LOG(WARNING) << "GEMM probe at T = " << t << " failed: " << g.status() << "; stopping at the last T";
      break;
    }
    r.gemm.push_back({t, g->tflops});
    ZI_LOG(INFO) << "rates: GEMM at T = " << t << ": " << g->tflops << " TFLOPS";
  }
  if (r.gemm.empty()) return absl::InternalError("rates: no GEMM shape could be measured");
  // CPU decode attention over a host cache, threads as the CUDA backend gives it.
  StatusOr<double> cpu = probe_cpu_decode_attention(cpu::default_cpu_threads(), static_cast<int>(cfg.num_heads),
                                                    static_cast<int>(cfg.num_kv_heads), static_cast<int>(cfg.head_dim),
                                                    act, static_cast<int>(prompt_len));
  if (cpu.ok()) r.cpu_attention_bytes_per_second = *cpu;
  else ZI_LOG(WARNING) << "CPU decode attention probe failed: " << cpu.status();
  // Disk: O_DIRECT reads of the offload store when it exists, else of a 1 GiB scratch file written beside it.
  if (!disk_file.empty()) {
    namespace fs = std::filesystem;
    std::string file = disk_file;
    bool scratch = false;
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      scratch = true;
      fs::create_directories(fs::path(file).parent_path(), ec);
      std::ofstream out(file, std::ios::binary);
      std::vector<char> chunk(size_t{64} << 20, 1);
      for (int i = 0; i < 16 && out; ++i) out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      if (!out) ZI_LOG(WARNING) << "disk probe: cannot write " << file;
    }
    StatusOr<double> d = probe_read_bandwidth({file}, uint64_t{1} << 30);
    if (d.ok()) r.disk_bytes_per_second = *d;
    else ZI_LOG(WARNING) << "disk probe failed: " << d.status();
    if (scratch) fs::remove(file, ec);
  }
  return r;
#endif
}

}  // namespace zi
