// `zeroinfer plan --config F`: what a deployment needs, before loading anything — per GPU the seed's equation
// (weights resident + streaming ring + KV cache + activations), pinned host memory and disk per rank, bytes
// streamed per step and the step-time floor they imply at the bus's rate. Needs only the model's config.json.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "engine/core/compute_dtype.h"
#include "engine/model/config.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"
#include "engine/zero/layer_pack.h"
#include "engine/zero/placement.h"
#include "server/cli/commands.h"
#include "server/cli/option_binder.h"
#include "server/config/config.h"
#if defined(ZI_WITH_CUDA)
#include "engine/backend/cuda/device_probe.h"
#endif

namespace zi::cli {
namespace {

constexpr double kPcieBytesPerSecond = 54.9e9;    // H100 PCIe Gen5, pinned host→device
constexpr uint64_t kAssumedGpuBytes = 80ull << 30;  // when no GPU is visible and --gpu-memory is not given
constexpr uint64_t kGpuMarginBytes = 3ull << 29;    // as the CUDA executor keeps back

struct PlanFlags {
  std::string config;
  std::optional<std::string> gpu_memory;
  bool json = false;
  std::unique_ptr<OptionBinder> options;
};

int fail(const Status& s, int code) {
  std::fprintf(stderr, "zeroinfer: %s\n", std::string(s.message()).c_str());
  return code;
}

int run(const PlanFlags& f) {
  auto config = server::load_config(f.config);
  if (!config.ok()) return fail(config.status(), 1);
  if (Status s = f.options->apply(&*config); !s.ok()) return fail(s, 2);
  if (f.options->print_requested()) {
    std::printf("%s\n", engine_options_json(*config).c_str());
    return 0;
  }
  const EngineOptions& o = config->engine;
  auto cfg = load_model_config(o.model_dir);
  if (!cfg.ok()) return fail(cfg.status(), 1);
  const Architecture* arch = find_architecture(cfg->architecture);
  const DType dtype = gpu_compute_dtype(o.dtype, config_dtype(cfg->dtype));

  uint64_t gpu_bytes = kAssumedGpuBytes;
  std::string gpu_note = "assumed (no GPU visible; pass --gpu-memory)";
  if (f.gpu_memory) {
    auto b = parse_size(*f.gpu_memory, "--gpu-memory");
    if (!b.ok()) return fail(b.status(), 2);
    gpu_bytes = *b;
    gpu_note = "given";
  } else {
#if defined(ZI_WITH_CUDA)
    const cuda::DeviceProbe probe = cuda::probe_devices();
    if (probe.device_count > 0) {
      gpu_bytes = probe.total_memory;
      gpu_note = probe.name;
    }
#endif
  }
  const uint32_t n = o.world_size;
  const uint64_t ctx = o.max_context ? o.max_context : static_cast<uint64_t>(cfg->default_max_context);
  auto quant = make_quant_config(o.quant_bits, o.quant_group_size, o.quant_embeddings);
  if (!quant.ok()) return fail(quant.status(), 2);
  PlacementInput in;
  uint64_t model_bytes = 0;
  for (int l = 0; l < cfg->num_layers; ++l) {
    const StoreShard s = layer_layout(*cfg, *arch, l, dtype, n, *quant);
    in.layer_bytes.push_back(s.partition_bytes * n);
    model_bytes += s.bytes;
  }
  GlobalWeights globals;
  std::vector<WeightSpec> global_specs;
  arch->global_weights(*cfg, globals, global_specs);
  for (const WeightSpec& s : global_specs) {
    uint64_t e = 1;
    for (int64_t d : s.shape) e *= static_cast<uint64_t>(d);
    in.global_bytes += e * dtype_size(dtype);
  }
  model_bytes += in.global_bytes;
  in.kv_cache_bytes = o.kv_offload ? 0 : kv_cache_bytes(cfg->num_layers, o.max_batch_size, ctx, cfg->num_kv_heads,
                                                         cfg->head_dim, dtype_size(dtype));
  in.activation_bytes = activation_bytes(cfg->hidden_size, cfg->intermediate_size, cfg->vocab_size,
                                         o.max_batch_size, ctx, dtype_size(dtype));
  in.gpu_memory_bytes = gpu_bytes > kGpuMarginBytes ? gpu_bytes - kGpuMarginBytes : 1;
  in.tier = o.offload_tier;
  in.gpu_weights_budget = o.gpu_weights_budget;
  in.prefetch_depth = o.prefetch_depth;
  in.h2d_bytes_per_second = kPcieBytesPerSecond;  // what the floor below assumes too
  in.num_ranks = n;
  auto p = plan_placement(in);
  if (!p.ok()) return fail(p.status(), 1);
  const double floor_s = p->pcie_bytes_per_step / kPcieBytesPerSecond;
  const uint64_t kv_host = o.kv_offload ? kv_cache_bytes(cfg->num_layers, o.max_batch_size, ctx, cfg->num_kv_heads,
                                                         cfg->head_dim, dtype_size(dtype))
                                        : 0;
  const std::string tier(enum_name(o.offload_tier, kOffloadTierNames));
  nlohmann::json j = {{"model", o.model_dir}, {"architecture", cfg->architecture},
                      {"layers", cfg->num_layers}, {"dtype", std::string(dtype_torch_name(dtype))},
                      {"quant_bits", o.quant_bits}, {"quant_group_size", o.quant_group_size},
                      {"model_bytes", model_bytes}, {"num_gpus", n}, {"tier", tier},
                      {"gpu_memory_bytes", gpu_bytes}, {"resident_weight_bytes", p->resident_weight_bytes},
                      {"ring_bytes", p->ring_bytes}, {"prefetch_depth", p->prefetch_depth},
                      {"kv_cache_bytes", in.kv_cache_bytes},
                      {"activation_bytes", in.activation_bytes}, {"gpu_total_bytes", p->gpu_total_bytes},
                      {"layers_streamed", p->num_streamed}, {"host_bytes_per_rank", p->host_bytes_per_rank + kv_host},
                      {"disk_bytes_per_rank", p->disk_bytes_per_rank},
                      {"streamed_bytes_per_step", p->streamed_bytes_per_step},
                      {"pcie_bytes_per_step_per_rank", p->pcie_bytes_per_step}, {"step_floor_seconds", floor_s}};
  if (f.json) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model       %s: %s, %ld layers, %s in %s (%s-bit weights in the layers)\n", o.model_dir.c_str(), cfg->architecture.c_str(),
              static_cast<long>(cfg->num_layers), format_bytes(model_bytes).c_str(),
              std::string(dtype_torch_name(dtype)).c_str(), std::to_string(o.quant_bits).c_str());
  std::printf("deployment  %u GPU(s), offload tier %s, batch %u × context %lu, GPU memory %s (%s)\n", n, tier.c_str(),
              o.max_batch_size, static_cast<unsigned long>(ctx), format_bytes(gpu_bytes).c_str(), gpu_note.c_str());
  std::printf("per GPU     weights %s (model %s / %u ranks: %d of %ld layers resident)\n",
              format_bytes(p->resident_weight_bytes).c_str(), format_bytes(model_bytes).c_str(), n,
              static_cast<int>(cfg->num_layers) - p->num_streamed, static_cast<long>(cfg->num_layers));
  std::printf("            + streaming ring %s (%u slots) + KV cache %s + activations %s = %s\n",
              format_bytes(p->ring_bytes).c_str(), p->num_streamed ? p->prefetch_depth : 0,
              format_bytes(in.kv_cache_bytes).c_str(),
              format_bytes(in.activation_bytes).c_str(), format_bytes(p->gpu_total_bytes).c_str());
  std::printf("host        %s per rank (%s)\n", format_bytes(p->host_bytes_per_rank + kv_host).c_str(),
              o.pin_memory ? "pinned" : "pageable");
  std::printf("disk        %s per rank\n", format_bytes(p->disk_bytes_per_rank).c_str());
  std::printf("per step    %s streamed per GPU, %s over each rank's PCIe → floor %.3f s at %.1f GB/s\n",
              format_bytes(p->streamed_bytes_per_step).c_str(), format_bytes(p->pcie_bytes_per_step).c_str(), floor_s,
              kPcieBytesPerSecond / 1e9);
  return 0;
}

}  // namespace

void register_plan(CLI::App& app, int* rc) {
  auto f = std::make_shared<PlanFlags>();
  auto* cmd = app.add_subcommand("plan", "Print the memory, disk and bus a deployment needs, before loading");
  cmd->add_option("--config", f->config, "YAML deployment file")->required();
  cmd->add_option("--gpu-memory", f->gpu_memory, "GPU memory per rank, e.g. 80GiB (default: the GPU's, else 80GiB)");
  cmd->add_flag("--json", f->json, "One JSON object on stdout");
  f->options = std::make_unique<OptionBinder>(cmd, server::kPlan);
  cmd->callback([f, rc] { *rc = run(*f); });
}

}  // namespace zi::cli
