#include "server/cli/throughput_planning.h"

#include <sys/statvfs.h>

#include <filesystem>

#include "engine/core/compute_dtype.h"
#include "engine/core/log.h"
#include "engine/model/quantized_weights.h"
#include "engine/model/registry.h"
#include "engine/runtime/host_memory.h"
#include "engine/runtime/rate_probes.h"

namespace zi::cli {
namespace {

// Free bytes on the file system that holds `dir` (or its nearest existing parent); 0 when none can be found.
uint64_t free_disk_bytes(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::path p = fs::path(dir).lexically_normal();
  std::error_code ec;
  while (!p.empty() && !fs::exists(p, ec)) p = p.parent_path();
  if (p.empty()) return 0;
  struct statvfs st {};
  if (statvfs(p.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

}  // namespace

StatusOr<Rates> obtain_rates(const server::ServeConfig& c, const ModelConfig& cfg, const PlanningRequest& r,
                             std::string* source) {
  if (r.rates_file) {
    *source = *r.rates_file;
    return read_rates(*r.rates_file);
  }
  *source = "measured at start-up";
  const Architecture* arch = find_architecture(cfg.architecture);
  if (!arch) return absl::InvalidArgumentError(absl::StrCat("unsupported architecture ", cfg.architecture));
  const std::string store = c.engine.offload_dir + "/rank-0-of-1.bin";
  return measure_rates(c.engine, cfg, *arch, r.prompt_len, 1024,
                       std::filesystem::exists(store) ? store : c.engine.offload_dir + "/.zeroinfer-disk-probe");
}

StatusOr<Limits> planner_limits(const EngineOptions& o, const Rates& rates) {
  Limits l;
  l.gpu_bytes = o.gpu_memory_limit ? o.gpu_memory_limit : rates.gpu_total_bytes;
  if (l.gpu_bytes == 0)
    return absl::InvalidArgumentError(
        "memory.gpu_limit (--gpu-memory-limit) is needed: the rates file does not give the card's memory "
        "(gpu_total_bytes)");
  l.host_bytes = resolve_host_limit(o.host_memory_limit);
  if (l.host_bytes == 0)
    return absl::InvalidArgumentError("memory.host_limit (--host-memory-limit) is needed: MemAvailable unreadable");
  l.disk_bytes = rates.disk_bytes_per_second > 0 ? free_disk_bytes(o.offload_dir) : 0;
  l.gpu_weights_budget = o.gpu_weights_budget;
  return l;
}

StatusOr<Planned> plan_deployment(server::ServeConfig* c, const PlanningRequest& r, bool apply) {
  EngineOptions& o = c->engine;
  if (o.world_size > 1)
    return absl::UnimplementedError("the throughput planner plans one GPU: parallel.num_gpus must be 1");
  ZI_ASSIGN_OR_RETURN(ModelConfig cfg, load_model_config(o.model_dir));
  const Architecture* arch = find_architecture(cfg.architecture);
  if (!arch) return absl::InvalidArgumentError(absl::StrCat("unsupported architecture ", cfg.architecture));
  ZI_ASSIGN_OR_RETURN(const QuantConfig quant,
                      make_quant_config(o.quant_bits, o.quant_group_size, o.quant_embeddings));
  Planned p;
  p.shape = model_shape(cfg, *arch, gpu_compute_dtype(o.dtype, config_dtype(cfg.dtype)), quant);
  ZI_ASSIGN_OR_RETURN(p.rates, obtain_rates(*c, cfg, r, &p.rates_source));
  ZI_ASSIGN_OR_RETURN(p.limits, planner_limits(o, p.rates));
  p.workload.prompt_len = r.prompt_len;
  p.workload.gen_len = r.gen_len;
  p.workload.kv_block_size = o.kv_block_size;
  PlannerInput in;
  in.model = p.shape;
  in.rates = p.rates;
  in.workload = p.workload;
  in.limits = p.limits;
  in.fixed_batch = r.fixed_batch;
  if (r.kv_offload) in.fixed_kv = *r.kv_offload ? KvPlace::kHost : KvPlace::kGpu;
  ZI_ASSIGN_OR_RETURN(p.plan, plan_throughput(in));
  if (apply) {
    apply_plan(p.plan, p.shape, p.workload, &o);
    if (c->max_num_batched_tokens == 0) c->max_num_batched_tokens = o.max_step_tokens;
  }
  return p;
}

std::string plan_text(const Planned& p) {
  const Prediction& pr = p.plan.prediction;
  std::string out = absl::StrFormat(
      "plan        %s\n"
      "predicted   prefill %.3f s, decode step %.4f s, total %.3f s → %.2f tokens/s (prompt %u, gen %u)\n"
      "limits      GPU %s, host %s%s; rates from %s (%s)\n"
      "memory      GPU %s (context %s + slack %s + weights %s + ring %s + KV %s + activations %s), host %s, disk %s\n",
      describe_choice(p.shape, p.plan.choice, pr), pr.prefill_seconds, pr.decode_step_seconds, pr.total_seconds,
      pr.tokens_per_second, p.workload.prompt_len, p.workload.gen_len, format_bytes(p.limits.gpu_bytes),
      format_bytes(p.limits.host_bytes),
      p.limits.disk_bytes ? absl::StrCat(", disk ", format_bytes(p.limits.disk_bytes)) : std::string(),
      p.rates_source, p.rates.device.empty() ? "device not named" : p.rates.device,
      format_bytes(p.plan.memory.gpu()), format_bytes(p.plan.memory.context), format_bytes(p.plan.memory.slack),
      format_bytes(p.plan.memory.weights), format_bytes(p.plan.memory.ring),
      format_bytes(p.plan.memory.kv_gpu), format_bytes(p.plan.memory.activations),
      format_bytes(p.plan.memory.host()), format_bytes(p.plan.memory.disk));
  for (const std::string& why : p.plan.reasons) absl::StrAppend(&out, "why         ", why, "\n");
  return out;
}

nlohmann::json plan_json(const Planned& p) {
  const PlanChoice& c = p.plan.choice;
  const Prediction& pr = p.plan.prediction;
  const MemoryNeed& m = p.plan.memory;
  return {{"plan_batch_size", c.batch},
          {"plan_resident_layers", c.resident_layers},
          {"plan_streamed_layers", p.shape.layers - c.resident_layers},
          {"plan_stream_tier", c.resident_layers < p.shape.layers ? layer_tier_name(c.stream_tier) : "none"},
          {"plan_kv_place", c.kv == KvPlace::kGpu ? "gpu" : "host"},
          {"plan_cpu_attention_fraction", pr.cpu_fraction},
          {"plan_step_tokens", c.step_tokens},
          {"plan_prefetch_depth", c.resident_layers < p.shape.layers ? c.prefetch_depth : 0},
          {"plan_reasons", p.plan.reasons},
          {"plan_candidates", p.plan.candidates},
          {"predicted_prefill_seconds", pr.prefill_seconds},
          {"predicted_prefill_steps", pr.prefill_steps},
          {"predicted_decode_step_seconds", pr.decode_step_seconds},
          {"predicted_total_seconds", pr.total_seconds},
          {"predicted_e2e_tokens_per_second", pr.tokens_per_second},
          {"predicted_gpu_bytes", m.gpu()},
          {"predicted_host_bytes", m.host()},
          {"predicted_disk_bytes", m.disk},
          {"gpu_limit_bytes", p.limits.gpu_bytes},
          {"host_limit_bytes", p.limits.host_bytes},
          {"rates_source", p.rates_source},
          {"rates_device", p.rates.device},
          {"prompt_len", p.workload.prompt_len},
          {"gen_len", p.workload.gen_len}};
}

}  // namespace zi::cli
