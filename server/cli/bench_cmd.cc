// `zeroinfer bench`: prefill latency, decode step time, tokens/s, bytes streamed per step, stall time and the
// achieved PCIe bandwidth against a probe it runs itself (1 GiB pinned host→device, best of 5) and the card's
// nominal 54.9 GB/s. `--dummy` makes random weights from config.json alone, so large shapes need no weight files.
// On a GPU it also sets the decode step against the bytes it must read from HBM (a read probe, 4 GiB, best of 5)
// and the prefill against cuBLASLt GEMMs of the model's own linear shapes (engine/runtime/bench_floors.h).
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/core/compute_dtype.h"
#include "engine/core/log.h"
#include "engine/core/size.h"
#include "engine/io/direct_reader.h"
#include "engine/model/config.h"
#include "engine/model/quantized_weights.h"
#include "engine/model/registry.h"
#include "engine/runtime/bench_floors.h"
#include "engine/runtime/benchmark.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/gpu_memory_watch.h"
#include "engine/zero/placement.h"
#include "server/workload/replay.h"
#include "server/cli/commands.h"
#include "server/cli/option_binder.h"
#include "server/cli/throughput_planning.h"
#include "engine/runtime/rate_probes.h"
#include "engine/runtime/throughput_plan.h"
#include "server/worker_pool/start_executor.h"
#if defined(ZI_WITH_CUDA)
#include "engine/backend/cuda/device_probe.h"
#include "engine/zero/cuda/probes.h"
#endif

namespace zi::cli {
namespace {

using server::load_workload;
using server::run_workload;
using server::WorkloadOptions;
using server::WorkloadRequest;

constexpr double kNominalPcie = 54.9e9;  // H100 PCIe Gen5, pinned host→device, measured on the project's card

struct BenchFlags {
  std::string model;
  bool dummy = false;
  BenchConfig bench;
  bool json = false;
  bool probe_disk = false;
  std::string batch_size = "1";               // an integer, or auto (the throughput planner)
  std::optional<std::string> rates;           // --rates FILE: the planner's and the prediction's rates
  std::optional<std::string> probe_rates;     // --probe-rates FILE: measure the rates, write them, exit
  uint32_t planned_batch = 0;                 // --batch-size auto --planned-batch N: plan the rest for batch N
  std::shared_ptr<OptionBinder> options;      // shared: a planned run copies the flags with its own batch
  // --workload: mixed traffic through the scheduler (server/workload/replay.h); policy and token budget come from
  // scheduler.* (--scheduler-policy, --max-num-batched-tokens).
  std::optional<std::string> workload;
  WorkloadOptions workload_opts;
  // --gpu-memory-limit-enforce: a balloon leaves the process only memory.gpu_limit on its GPU (gpu_memory_watch.h).
  bool enforce_gpu_limit = false;
};

// What bench measures against, probed before the executor loads (so nothing competes for device memory):
// pinned host→device, HBM reads, GEMMs of the model's shapes (and the disk when asked).
struct Probes {
  double pcie = 0;       // bytes/s, 1 GiB pinned host→device, best of 5
  double pinning = 0;    // bytes/s of cudaHostRegister over 4 GiB (--probe-disk)
  double disk = 0;       // bytes/s of O_DIRECT reads (--probe-disk)
  double hbm = 0;        // bytes/s, read-only kernel over 4 GiB of device memory, best of 5
  double gemm_tflops = 0;  // 10¹² FLOP/s of one layer's linears as cuBLASLt GEMMs at the prefill's T, best of 3
  int64_t gemm_tokens = 0;  // that T: batch × prompt_len of one rank
};

// The model's shapes from config.json, read before the executor loads (the probes need them). Absent when the
// config cannot be read: the executor then says why.
struct BenchModel {
  ModelConfig cfg;
  const Architecture* arch = nullptr;
  DType act = DType::kBF16;  // the GPU's activation dtype: dense weights, KV cache and the probe's GEMMs
};

std::optional<BenchModel> read_bench_model(const EngineOptions& o) {
  auto cfg = load_model_config(o.model_dir);
  if (!cfg.ok()) return std::nullopt;
  const Architecture* arch = find_architecture(cfg->architecture);
  if (!arch) return std::nullopt;
  return BenchModel{*cfg, arch, gpu_compute_dtype(o.dtype, config_dtype(cfg->dtype))};
}

// The decode step against what it must read, and the prefill against the GEMM probe (zeros when not measured).
struct Floors {
  double hbm_bytes = 0;       // bytes one rank's decode step reads from GPU memory (bench_floors.h)
  DecodeReadBytes parts;      // of which weights, head, KV
  double hbm_floor_s = 0;     // hbm_bytes / HBM probe
  // The decode floor: max(PCIe floor of one rank's streamed bytes, hbm_floor_s) — streaming and resident reads
  // overlap, so the slower bounds the step (decode_floor_seconds). All resident: hbm_floor_s.
  double decode_floor_s = 0;
  double prefill_tflops = 0;  // 2 × decoder-linear weights × one rank's prompt tokens / prefill seconds
};

StatusOr<std::unique_ptr<Executor>> make_bench_executor(const server::ServeConfig& c);

// The NVML peak sampler (every 5 ms), and with --gpu-memory-limit-enforce the balloon first, started just before
// the executor loads (after the probes, whose buffers are freed by then). Null on the CPU and with N > 1 ranks:
// those run in N worker processes, whose GPU memory this process's NVML figure does not include.
StatusOr<std::unique_ptr<GpuMemoryWatch>> start_gpu_watch(const BenchFlags& f, const EngineOptions& o) {
  if (o.device == Device::kCpu || o.world_size > 1) return std::unique_ptr<GpuMemoryWatch>();
  GpuMemoryWatchOptions wo;
  wo.device = static_cast<int>(o.rank);  // the executor's GPU (cuda_executor.cc: one GPU per rank)
  wo.limit_bytes = o.gpu_memory_limit;
  wo.enforce = f.enforce_gpu_limit;
  auto w = GpuMemoryWatch::start(wo);
  if (!w.ok())
    return Status(w.status().code(), absl::StrCat("--gpu-memory-limit-enforce: ", w.status().message()));
  return w;
}

// Ends sampling; warns when the achieved period exceeded 10 ms (an allocation briefer than that may be missed).
void stop_gpu_watch(GpuMemoryWatch* w) {
  if (!w) return;
  w->stop_sampling();
  if (w->mean_interval_seconds() > 0.010) {
    ZI_LOG(WARNING) << "NVML sampled every " << w->mean_interval_seconds() * 1e3
                    << " ms on average (5 ms asked): peak_gpu_bytes_nvml may miss brief allocations";
  }
}

// peak_gpu_bytes_nvml (the process's NVML peak less the balloon) and gpu_balloon_bytes; neither when NVML could
// not be read (or nothing was sampled: CPU, N ranks).
void add_gpu_watch_json(const GpuMemoryWatch* w, nlohmann::json& j) {
  if (!w || !w->peak_bytes()) return;
  j["peak_gpu_bytes_nvml"] = *w->peak_bytes();
  j["gpu_balloon_bytes"] = w->balloon_bytes();
}

void print_gpu_watch(const GpuMemoryWatch* w, const EngineOptions& o) {
  if (!w) return;
  if (!w->peak_bytes()) {
    std::printf("GPU memory   peak unavailable (%s)\n", w->unavailable_reason().c_str());
    return;
  }
  std::printf("GPU memory   peak %s (NVML, this process, every %.1f ms", format_bytes(*w->peak_bytes()).c_str(),
              w->mean_interval_seconds() * 1e3);
  if (w->balloon_bytes() > 0) std::printf("; balloon of %s excluded", format_bytes(w->balloon_bytes()).c_str());
  std::printf(")");
  if (o.gpu_memory_limit > 0)
    std::printf(", limit %s%s", format_bytes(o.gpu_memory_limit).c_str(),
                *w->peak_bytes() > o.gpu_memory_limit ? " EXCEEDED" : "");
  std::printf("\n");
}

// `bench --workload`: the executor sized for the file's longest request, then the replay.
int run_workload_bench(const BenchFlags& f, server::ServeConfig config) {
  EngineOptions& o = config.engine;
  auto reqs = load_workload(*f.workload);
  if (!reqs.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(reqs.status().message()).c_str());
    return 2;
  }
  if (!f.options->given("model.max_context")) {
    uint32_t longest = 0;
    for (const WorkloadRequest& r : *reqs) longest = std::max(longest, r.prompt_tokens + r.output_tokens);
    o.max_context = longest;
  }
  auto watch = start_gpu_watch(f, o);
  if (!watch.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(watch.status().message()).c_str());
    return 1;
  }
  auto ex = make_bench_executor(config);
  if (!ex.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(ex.status().message()).c_str());
    return 1;
  }
  WorkloadOptions wo = f.workload_opts;
  wo.policy = config.scheduler_policy;
  wo.max_num_batched_tokens = config.max_num_batched_tokens;
  wo.max_batch_size = o.max_batch_size * o.world_size;
  auto rep = run_workload(**ex, *reqs, wo);
  stop_gpu_watch(watch->get());
  if (!rep.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(rep.status().message()).c_str());
    return 1;
  }
  (*rep)["model"] = (*ex)->summary().name;
  (*rep)["device"] = (*ex)->summary().device;
  (*rep)["kv_offload"] = o.kv_offload;
  (*rep)["kv_cache_bytes"] = o.kv_cache_bytes;
  (*rep)["gpu_weights_budget"] = o.gpu_weights_budget;
  (*rep)["workload"] = *f.workload;
  add_gpu_watch_json(watch->get(), *rep);
  if (f.json) {
    std::printf("%s\n", rep->dump().c_str());
  } else {
    const nlohmann::json& j = *rep;
    std::printf("workload %s: %zu requests, policy %s, max_batch_size %u: %.2f s, %.1f generated tokens/s "
                "(%.1f with prompts); TTFT p50 %.3f s p90 %.3f s p99 %.3f s; inter-token p50 %.4f s p90 %.4f s "
                "p99 %.4f s; %zu prefill steps %.2f s, %zu decode-only steps of %.4f s; warm-up %.2f s\n",
                f.workload->c_str(), reqs->size(), wo.policy.c_str(), wo.max_batch_size, j["seconds"].get<double>(),
                j["tokens_per_second"].get<double>(), j["total_tokens_per_second"].get<double>(),
                j["ttft_p50_seconds"].get<double>(), j["ttft_p90_seconds"].get<double>(),
                j["ttft_p99_seconds"].get<double>(), j["itl_p50_seconds"].get<double>(),
                j["itl_p90_seconds"].get<double>(), j["itl_p99_seconds"].get<double>(),
                j["prefill_steps"].get<size_t>(), j["prefill_step_seconds_total"].get<double>(),
                j["decode_steps"].get<size_t>(), j["decode_step_seconds_mean"].get<double>(),
                j["warmup_seconds"].get<double>());
    if ((*ex)->summary().device == "cuda") print_gpu_watch(watch->get(), o);
  }
  return 0;
}

// One rank in-process; N ranks as `serve` runs them: N worker processes, each with its own micro-batch of
// batch_size sequences (the batch below is then N × batch_size).
StatusOr<std::unique_ptr<Executor>> make_bench_executor(const server::ServeConfig& c) {
  server::WorkerPoolOptions po;
  static const char* kNames[] = {"debug", "info", "warning", "error"};
  po.log_level = kNames[static_cast<int>(log_level())];
  po.heartbeat_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::duration<double>(c.heartbeat_timeout_seconds));
  return server::start_executor(c.engine, po);
}

// The engine options: defaults sized for the bench's shape, then the flags.
StatusOr<server::ServeConfig> bench_config(const BenchFlags& f) {
  server::ServeConfig c;
  EngineOptions& o = c.engine;
  o.model_dir = f.model;
  o.dummy_weights = f.dummy;
  o.max_batch_size = f.bench.batch_size > 0 ? static_cast<uint32_t>(f.bench.batch_size) : 1;
  o.max_context = static_cast<uint32_t>(f.bench.prompt_len + f.bench.gen_len);
  ZI_RETURN_IF_ERROR(f.options->apply(&c));
  return c;
}

Probes probe(const BenchFlags& f, const EngineOptions& o, const std::optional<BenchModel>& model) {
  Probes p;
#if defined(ZI_WITH_CUDA)
  const bool gpu = o.device != Device::kCpu && cuda::probe_devices().device_count > 0;
  if (o.device != Device::kCpu && !gpu) {
    ZI_LOG(WARNING) << "no GPU: skipping the PCIe, HBM and GEMM probes (no floors in the report)";
  }
  if (gpu) {
    auto r = cuda::probe_h2d_bandwidth(0);
    if (r.ok()) p.pcie = *r;
    else ZI_LOG(WARNING) << "PCIe probe failed: " << r.status();
    if (f.probe_disk) {
      auto pin = cuda::probe_pinning_rate(size_t{4} << 30, 1);
      if (pin.ok()) p.pinning = *pin;
    }
    auto hbm = cuda::probe_hbm_read_bandwidth(0);
    if (hbm.ok()) p.hbm = *hbm;
    else ZI_LOG(WARNING) << "HBM probe failed: " << hbm.status();
    if (model) {
      // The prefill's GEMMs: every decoder layer has the same linears, so one layer's set at the prefill's T (one
      // rank's batch × prompt_len tokens, as each rank prefills its own sequences) has the prefill's FLOP mix.
      p.gemm_tokens = static_cast<int64_t>(f.bench.batch_size) * f.bench.prompt_len;
      std::vector<cuda::GemmShape> shapes;
      for (const LinearShape& s : layer_linear_shapes(model->cfg, *model->arch, 0))
        shapes.push_back({p.gemm_tokens, s.out, s.in, s.bias});
      auto g = cuda::probe_gemm_tflops(0, model->act, shapes);
      if (g.ok()) p.gemm_tflops = g->tflops;
      else ZI_LOG(WARNING) << "GEMM probe failed: " << g.status();
    }
  }
#endif
  if (f.probe_disk && !f.dummy && o.offload_tier != OffloadTier::kNvme) {
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::directory_iterator(f.model))
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    auto r = probe_read_bandwidth(files, uint64_t{4} << 30);
    if (r.ok()) p.disk = *r;
    else ZI_LOG(WARNING) << "disk probe failed: " << r.status();
  }
  return p;
}

// The disk the NVMe tier reads: the store file itself, with the same reader settings (O_DIRECT, io_uring).
double probe_store(const EngineOptions& o) {
  DirectReaderOptions ro;
  ro.block_size = o.aio_block_size;
  ro.queue_depth = o.aio_queue_depth;
  auto r = probe_read_bandwidth({o.offload_dir + "/rank-" + std::to_string(o.rank) + "-of-" +
                                 std::to_string(o.world_size) + ".bin"},
                                uint64_t{4} << 30, ro);
  if (r.ok()) return *r;
  ZI_LOG(WARNING) << "disk probe failed: " << r.status();
  return 0;
}

Floors floors(const BenchFlags& f, const EngineOptions& o, const ModelSummary& m, const BenchReport& rep,
              const Probes& p, const std::optional<BenchModel>& model) {
  Floors fl;
  if (!model || m.device != "cuda") return fl;
  auto quant = make_quant_config(o.quant_bits, o.quant_group_size, o.quant_embeddings);  // the executor's, as loaded
  // Per rank: each rank decodes its own batch_size sequences against its own copy of the resident layers.
  fl.parts = decode_read_bytes(m, model->cfg, *model->arch, model->act, quant.ok() ? *quant : QuantConfig{},
                               f.bench.batch_size, f.bench.prompt_len, f.bench.gen_len, !o.kv_offload);
  fl.hbm_bytes = fl.parts.total();
  if (p.hbm > 0) {
    fl.hbm_floor_s = fl.hbm_bytes / p.hbm;
    fl.decode_floor_s = decode_floor_seconds(rep.fetch_bytes_per_step / o.world_size, p.pcie, fl.hbm_bytes, p.hbm);
  }
  // Linear FLOPs only: attention (QKᵀ, PV) and the LM head over one row per sequence are excluded, so at long
  // prompts the prefill does more work than this counts and the ratio understates it.
  if (rep.prefill_seconds > 0)
    fl.prefill_tflops = 2.0 * static_cast<double>(decoder_linear_parameters(model->cfg, *model->arch)) *
                        f.bench.batch_size * f.bench.prompt_len / rep.prefill_seconds / 1e12;
  return fl;
}

nlohmann::json report_json(const BenchFlags& f, const EngineOptions& o, const ModelSummary& m,
                           const BenchReport& rep, const Probes& p, const Floors& fl, double load_s) {
  const double probe = p.pcie, disk = p.disk;
  const double bw = rep.copy_seconds_per_step > 0 ? rep.fetch_bytes_per_step / rep.copy_seconds_per_step : 0;
  const double floor_s = probe > 0 ? rep.fetch_bytes_per_step / probe : 0;
  return {{"model", m.name},
       {"architecture", m.architecture},
       {"parameters", m.parameters},
       {"dtype", m.dtype},
       {"device", m.device},
       {"dummy", f.dummy},
       {"batch_size", f.bench.batch_size},
       {"prompt_len", f.bench.prompt_len},
       {"gen_len", f.bench.gen_len},
       {"loops", f.bench.loops},
       {"offload_tier", std::string(enum_name(o.offload_tier, kOffloadTierNames))},
       {"gpu_weights_budget", o.gpu_weights_budget},
       {"load_seconds", load_s},
       {"prefill_seconds", rep.prefill_seconds},
       {"prefill_weight_passes", rep.prefill_weight_passes},
       {"prefetch_depth", m.prefetch_depth},
       {"decode_step_seconds", rep.decode_step_seconds},
       {"decode_tokens_per_second", rep.decode_tokens_per_second},
       {"e2e_tokens_per_second", rep.e2e_tokens_per_second},
       {"bytes_streamed_per_step", rep.fetch_bytes_per_step},
       {"copy_seconds_per_step", rep.copy_seconds_per_step},
       {"stall_seconds_per_step", rep.stall_seconds_per_step},
       {"nvme_bytes_per_step", rep.nvme_bytes_per_step},
       {"nvme_read_seconds_per_step", rep.nvme_read_seconds_per_step},
       {"pcie_achieved_bytes_per_second", bw},
       {"pcie_probe_bytes_per_second", probe},
       {"pcie_nominal_bytes_per_second", kNominalPcie},
       {"step_floor_seconds", floor_s},
       {"step_over_floor", floor_s > 0 ? rep.decode_step_seconds / floor_s : 0},
       {"odirect_read_bytes_per_second", disk},
       {"nvme_over_disk", disk > 0 && rep.nvme_read_seconds_per_step > 0
                              ? rep.nvme_bytes_per_step / rep.nvme_read_seconds_per_step / disk : 0},
       {"pinning_bytes_per_second", p.pinning},
       {"num_ranks", o.world_size},
       {"quant_bits", m.quant_bits},
       {"quant_group_size", m.quant_group_size},
       {"layer_weight_bytes", m.layer_weight_bytes},
       {"streamed_layers", std::count_if(m.layer_tiers.begin(), m.layer_tiers.end(),
                                         [](const std::string& t) { return t == "cpu" || t == "nvme"; })},
       {"fetch_bytes_per_rank_per_step", rep.fetch_bytes_per_step / o.world_size},
       {"pcie_achieved_bytes_per_second_per_rank", bw / o.world_size},
       {"allgather_bytes_per_step", rep.allgather_bytes_per_step},
       {"allgather_seconds_per_step", rep.allgather_seconds_per_step},
       {"step_floor_per_rank_seconds", probe > 0 ? rep.fetch_bytes_per_step / o.world_size / probe : 0},
       {"step_over_rank_floor", probe > 0 && rep.fetch_bytes_per_step > 0
                                    ? rep.decode_step_seconds / (rep.fetch_bytes_per_step / o.world_size / probe)
                                    : 0},
       {"hbm_probe_bytes_per_second", p.hbm},
       {"hbm_bytes_per_step", fl.hbm_bytes},
       {"hbm_step_floor_seconds", fl.hbm_floor_s},
       {"resident_step_floor_seconds", fl.decode_floor_s},
       {"resident_step_over_floor", fl.decode_floor_s > 0 ? rep.decode_step_seconds / fl.decode_floor_s : 0},
       {"gemm_reference_tflops", p.gemm_tflops},
       {"gemm_reference_tokens", p.gemm_tokens},
       {"prefill_tflops", fl.prefill_tflops},
       {"prefill_over_gemm_reference", p.gemm_tflops > 0 ? fl.prefill_tflops / p.gemm_tflops : 0}};
}

void print_report(const BenchFlags& f, const EngineOptions& o, const ModelSummary& m, const BenchReport& rep,
                  const Probes& p, const Floors& fl, double load_s) {
  const double probe = p.pcie, disk = p.disk;
  const double bw = rep.copy_seconds_per_step > 0 ? rep.fetch_bytes_per_step / rep.copy_seconds_per_step : 0;
  const double floor_s = probe > 0 ? rep.fetch_bytes_per_step / probe : 0;
  std::printf("model        %s (%s, %.2f B parameters, %s%s) on %s\n", m.name.c_str(), m.architecture.c_str(),
              m.parameters / 1e9, m.dtype.c_str(), f.dummy ? ", dummy weights" : "", m.device.c_str());
  std::printf("load         %.2f s\n", load_s);
  if (m.quant_bits < 16)
    std::printf("weights      %u-bit, groups of %u, %s per layer\n", m.quant_bits, m.quant_group_size,
                format_bytes(m.layer_weight_bytes).c_str());
  std::printf("shape        batch %d, prompt %d, gen %d, %d loops (medians; first loop dropped when > 1)\n",
              f.bench.batch_size, f.bench.prompt_len, f.bench.gen_len, f.bench.loops);
  std::printf("prefill      %.4f s", rep.prefill_seconds);
  if (m.streamed_bytes_per_step > 0) std::printf(" (the streamed layers crossed the bus %.2f times)", rep.prefill_weight_passes);
  std::printf("\n");
  std::printf("decode step  %.4f s", rep.decode_step_seconds);
  if (floor_s > 0)
    std::printf("   floor %.4f s (%s / probe) → %.3f×", floor_s, format_bytes(rep.fetch_bytes_per_step).c_str(),
                rep.decode_step_seconds / floor_s);
  std::printf("\ntokens/s     %.2f decode, %.2f end-to-end\n", rep.decode_tokens_per_second,
              rep.e2e_tokens_per_second);
  std::printf("streamed     %s per step, stall %.4f s per step\n", format_bytes(rep.fetch_bytes_per_step).c_str(),
              rep.stall_seconds_per_step);
  if (bw > 0 || probe > 0)
    std::printf("PCIe         achieved %.2f GB/s, probe %.2f GB/s (%.1f%%), nominal %.1f GB/s (%.1f%%)\n", bw / 1e9,
                probe / 1e9, probe > 0 ? 100 * bw / probe : 0, kNominalPcie / 1e9, 100 * bw / kNominalPcie);
  if (o.world_size > 1)
    std::printf("ranks        %u: %s per rank per step over its PCIe link (%.2f GB/s), all-gather %s in %.4f s per "
                "step, step %.3f× the per-rank floor\n",
                o.world_size, format_bytes(rep.fetch_bytes_per_step / o.world_size).c_str(), bw / o.world_size / 1e9,
                format_bytes(rep.allgather_bytes_per_step).c_str(), rep.allgather_seconds_per_step,
                probe > 0 && rep.fetch_bytes_per_step > 0
                    ? rep.decode_step_seconds / (rep.fetch_bytes_per_step / o.world_size / probe)
                    : 0.0);
  if (rep.nvme_bytes_per_step > 0 && disk > 0)
    std::printf("NVMe/disk    %.3f× the O_DIRECT probe of the store\n",
                rep.nvme_bytes_per_step / std::max(1e-9, rep.nvme_read_seconds_per_step) / disk);
  if (rep.nvme_bytes_per_step > 0)
    std::printf("NVMe         %s per step in %.3f s (%.2f GB/s)\n", format_bytes(rep.nvme_bytes_per_step).c_str(),
                rep.nvme_read_seconds_per_step, rep.nvme_bytes_per_step / std::max(1e-9, rep.nvme_read_seconds_per_step) / 1e9);
  if (disk > 0 || p.pinning > 0)
    std::printf("start-up     O_DIRECT read %.2f GB/s, pinning %.2f GB/s\n", disk / 1e9, p.pinning / 1e9);
  if (p.hbm > 0) {
    std::printf("HBM          hbm read %.1f GB/s (probe)", p.hbm / 1e9);
    if (fl.decode_floor_s > 0)
      std::printf("; a step reads %s (weights %s, head %s, KV %s): decode floor %.4f s%s, step/floor %.3f×",
                  format_bytes(static_cast<uint64_t>(fl.hbm_bytes)).c_str(),
                  format_bytes(fl.parts.layer_weights).c_str(), format_bytes(fl.parts.head).c_str(),
                  format_bytes(static_cast<uint64_t>(fl.parts.kv)).c_str(), fl.decode_floor_s,
                    fl.decode_floor_s > fl.hbm_floor_s ? " (PCIe-bound)" : "",
                  rep.decode_step_seconds / fl.decode_floor_s);
    std::printf("\n");
  }
  if (p.gemm_tflops > 0)
    std::printf("GEMM         gemm reference %.1f TFLOPS (cuBLASLt, one layer's linears at T = %lld); prefill %.1f "
                "TFLOPS (linears only, attention excluded), %.3f× the reference\n",
                p.gemm_tflops, static_cast<long long>(p.gemm_tokens), fl.prefill_tflops,
                fl.prefill_tflops / p.gemm_tflops);
}

// --probe-rates FILE: every rate the planner uses, measured here for this model's shapes, written as JSON.
int run_probe_rates(const BenchFlags& f, const server::ServeConfig& config) {
  const EngineOptions& o = config.engine;
  auto cfg = load_model_config(o.model_dir);
  if (!cfg.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(cfg.status().message()).c_str());
    return 1;
  }
  const Architecture* arch = find_architecture(cfg->architecture);
  const std::string store = o.offload_dir + "/rank-0-of-1.bin";
  auto rates = measure_rates(o, *cfg, *arch, f.bench.prompt_len, 1024,
                             std::filesystem::exists(store) ? store : o.offload_dir + "/.zeroinfer-disk-probe");
  if (!rates.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(rates.status().message()).c_str());
    return 1;
  }
  if (Status s = write_rates(*rates, *f.probe_rates); !s.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("%s\n", rates_json(*rates).c_str());
  return 0;
}

int run_measured(const BenchFlags& f, const server::ServeConfig& sc, std::optional<Planned> planned);

int run(const BenchFlags& f) {
  auto config = bench_config(f);
  if (!config.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (f.options->print_requested()) {
    std::printf("%s\n", engine_options_json(*config).c_str());
    return 0;
  }
  if (f.enforce_gpu_limit) {
    const EngineOptions& o = config->engine;
    const char* bad = nullptr;
#if !defined(ZI_WITH_CUDA)
    bad = "needs a GPU, and this zeroinfer was built without CUDA (ZEROINFER_CUDA=OFF)";
#endif
    if (!bad && o.gpu_memory_limit == 0)
      bad = "needs --gpu-memory-limit SIZE > 0 (memory.gpu_limit): the limit to enforce";
    if (!bad && o.device == Device::kCpu) bad = "needs a GPU run, not --device cpu";
    if (!bad && o.world_size > 1)
      bad = "limits this process only, and with --num-gpus N > 1 the ranks run in worker processes";
    if (!bad && f.probe_rates) bad = "does not apply to --probe-rates (the probes measure the whole card)";
    if (bad) {
      std::fprintf(stderr, "zeroinfer: --gpu-memory-limit-enforce %s\n", bad);
      return 2;
    }
  }
  if (f.workload) return run_workload_bench(f, *config);
  if (f.probe_rates) return run_probe_rates(f, *config);
  // --batch-size auto: the throughput planner chooses the batch and the rest (server/cli/throughput_planning.h);
  // its prediction is printed beside the measurement.
  std::optional<Planned> planned;
  BenchFlags fl = f;
  if (f.bench.batch_size == 0) {
    PlanningRequest req;
    req.rates_file = f.rates;
    req.prompt_len = static_cast<uint32_t>(f.bench.prompt_len);
    req.gen_len = static_cast<uint32_t>(f.bench.gen_len);
    req.fixed_batch = f.planned_batch;
    if (f.options->given("kv_cache.offload")) req.kv_offload = config->engine.kv_offload;
    auto p = plan_deployment(&*config, req, /*apply=*/true);
    if (!p.ok()) {
      std::fprintf(stderr, "zeroinfer: %s\n", std::string(p.status().message()).c_str());
      return absl::IsInvalidArgument(p.status()) ? 2 : 1;
    }
    planned = *std::move(p);
    fl.bench.batch_size = static_cast<int>(planned->plan.choice.batch);
    std::fprintf(stderr, "%s", plan_text(*planned).c_str());
  }
  fl.bench.prefill_step_tokens = static_cast<int>(config->engine.max_step_tokens);
  return run_measured(fl, *config, planned);
}

int run_measured(const BenchFlags& f, const server::ServeConfig& sc, std::optional<Planned> planned) {
  const server::ServeConfig* config = &sc;
  const EngineOptions& o = config->engine;
  const std::optional<BenchModel> model = read_bench_model(o);
  Probes probes = probe(f, o, model);
  auto watch = start_gpu_watch(f, o);
  if (!watch.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(watch.status().message()).c_str());
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto ex = make_bench_executor(*config);
  if (!ex.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(ex.status().message()).c_str());
    return 1;
  }
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (f.probe_disk && o.offload_tier == OffloadTier::kNvme) probes.disk = probe_store(o);
  BenchConfig bc = f.bench;
  bc.batch_size *= static_cast<int>(o.world_size);  // --batch-size is per rank
  auto rep = run_benchmark(**ex, bc);
  stop_gpu_watch(watch->get());
  if (!rep.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(rep.status().message()).c_str());
    return absl::IsInvalidArgument(rep.status()) ? 2 : 1;
  }
  const ModelSummary& m = (*ex)->summary();
  const Floors fl = floors(f, o, m, *rep, probes, model);
  // The cost model's prediction of this run: the plan's, or (with --rates and settings given) the placement the
  // executor made, priced the same way.
  std::optional<Prediction> predicted;
  if (planned) {
    predicted = planned->plan.prediction;
  } else if (f.rates && model) {
    auto rates = read_rates(*f.rates);
    auto quant = make_quant_config(o.quant_bits, o.quant_group_size, o.quant_embeddings);
    if (rates.ok() && quant.ok()) {
      const ModelShape shape = model_shape(model->cfg, *model->arch, model->act, *quant);
      Workload w;
      w.prompt_len = static_cast<uint32_t>(f.bench.prompt_len);
      w.gen_len = static_cast<uint32_t>(f.bench.gen_len);
      w.kv_block_size = o.kv_block_size;
      const int resident = static_cast<int>(std::count(m.layer_tiers.begin(), m.layer_tiers.end(), "gpu"));
      auto p = predict(shape, *rates, w, choice_from_options(o, shape, w, resident, m.prefetch_depth));
      if (p.ok()) predicted = *p;
      else ZI_LOG(WARNING) << "no prediction: " << p.status();
    } else {
      ZI_LOG(WARNING) << "no prediction: " << (rates.ok() ? quant.status() : rates.status());
    }
  }
  if (f.json) {
    nlohmann::json j = report_json(f, o, m, *rep, probes, fl, load_s);
    j["prefill_steps"] = rep->loops.empty() ? 1 : rep->loops.back().prefill_steps;
    j["kv_offload"] = o.kv_offload;
    j["gpu_memory_limit"] = o.gpu_memory_limit;
    add_gpu_watch_json(watch->get(), j);
    if (planned) j.update(plan_json(*planned));
    if (predicted) {
      j["predicted_prefill_seconds"] = predicted->prefill_seconds;
      j["predicted_decode_step_seconds"] = predicted->decode_step_seconds;
      j["predicted_total_seconds"] = predicted->total_seconds;
      j["predicted_e2e_tokens_per_second"] = predicted->tokens_per_second;
      j["measured_over_predicted_e2e"] =
          predicted->tokens_per_second > 0 ? rep->e2e_tokens_per_second / predicted->tokens_per_second : 0;
    }
    std::printf("%s\n", j.dump().c_str());
  } else {
    print_report(f, o, m, *rep, probes, fl, load_s);
    if (m.device == "cuda") print_gpu_watch(watch->get(), o);
    if (predicted) {
      const double measured_total = rep->prefill_seconds + rep->decode_step_seconds * (f.bench.gen_len - 1);
      std::printf("predicted    prefill %.4f s (measured %.4f), decode step %.4f s (%.4f), total %.3f s (%.3f), "
                  "%.2f tokens/s (%.2f, %.2f× the prediction)\n",
                  predicted->prefill_seconds, rep->prefill_seconds, predicted->decode_step_seconds,
                  rep->decode_step_seconds, predicted->total_seconds, measured_total, predicted->tokens_per_second,
                  rep->e2e_tokens_per_second,
                  predicted->tokens_per_second > 0 ? rep->e2e_tokens_per_second / predicted->tokens_per_second : 0.0);
    }
  }
  return 0;
}

}  // namespace

void register_bench(CLI::App& app, int* rc) {
  auto f = std::make_shared<BenchFlags>();
  auto* cmd = app.add_subcommand("bench", "Measure prefill, decode step time, tokens/s and weight-streaming bandwidth");
  cmd->add_option("--model", f->model, "Hugging Face model folder (config.json; weights unless --dummy)")->required();
  cmd->add_flag("--dummy", f->dummy, "Random weights from config.json alone (no weight files)");
  cmd->add_option("--batch-size", f->batch_size, "Sequences decoded together: 1..4096, or auto (the throughput "
                                                 "planner chooses it and the rest of the deployment)");
  cmd->add_option("--rates", f->rates, "Rates file (bench --probe-rates) for --batch-size auto and the prediction");
  cmd->add_option("--planned-batch", f->planned_batch,
                  "With --batch-size auto: plan everything but the batch, which is N (one step either side of the "
                  "planner's batch); --kv-offload[=false] given likewise fixes the KV cache's place")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--probe-rates", f->probe_rates,
                  "Measure the planner's rates on this machine for this model's shapes, write them to FILE (JSON) "
                  "and exit");
  cmd->add_option("--prompt-len", f->bench.prompt_len, "Prompt tokens per sequence")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gen-len", f->bench.gen_len, "New tokens per sequence")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--loops", f->bench.loops, "Repetitions (the first is warm-up when > 1)")->check(CLI::Range(1, 1000));
  cmd->add_option("--workload", f->workload,
                  "Replay a JSONL workload ({\"prompt_tokens\": N, \"output_tokens\": M} a line) through the "
                  "scheduler; --batch-size is then server.max_batch_size");
  cmd->add_option("--request-rate", f->workload_opts.request_rate,
                  "With --workload: Poisson arrivals per second (0 = every request at once)")
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_flag("!--no-warmup", f->workload_opts.warmup,
                "With --workload: start the clock without the warm-up step (one prefill and one decode step first)");
  cmd->add_option("--step-log", f->workload_opts.step_log,
                  "With --workload: write one JSON line per executor step (seconds, tokens, bytes fetched) to FILE");
  cmd->add_flag("--probe-disk", f->probe_disk, "Also measure O_DIRECT read and pinning rates (start-up floor)");
  cmd->add_flag("--json", f->json, "One JSON object on stdout");
  cmd->add_flag("--gpu-memory-limit-enforce", f->enforce_gpu_limit,
                "Make --gpu-memory-limit real: before the executor loads, take all free GPU memory but what the limit "
                "leaves this process (a balloon, freed at the end), so any overshoot fails with out-of-memory");
  f->options = std::make_unique<OptionBinder>(cmd, server::kBench);
  cmd->callback([f, rc] {
    // --batch-size: an integer 1..4096, or auto (batch_size 0 below = plan it).
    if (f->batch_size == "auto") {
      f->bench.batch_size = 0;
    } else {
      int v = 0;
      auto [p, ec] = std::from_chars(f->batch_size.data(), f->batch_size.data() + f->batch_size.size(), v);
      if (ec != std::errc() || p != f->batch_size.data() + f->batch_size.size() || v < 1 || v > 4096) {
        std::fprintf(stderr, "zeroinfer: --batch-size: must be 1..4096 or auto, got '%s'\n", f->batch_size.c_str());
        *rc = 2;
        return;
      }
      f->bench.batch_size = v;
    }
    *rc = run(*f);
  });
}

}  // namespace zi::cli
