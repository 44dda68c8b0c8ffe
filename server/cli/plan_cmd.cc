// `zeroinfer plan (--config F | --model DIR)`: what a deployment needs, before loading anything — per GPU the
// seed's equation (weights resident + streaming ring + KV cache + activations, within memory.gpu_limit), host
// memory and disk per rank, and bytes streamed per step. Needs only the model's config.json. With a rates file
// (--rates, written by `bench --probe-rates`) also the step floor at the measured bus rate; with
// `--optimize throughput` (or server.max_batch_size: auto) the throughput planner's choice, its predicted times and
// a reason per decision (server/cli/throughput_planning.h). Runs on a machine without a GPU.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "engine/core/compute_dtype.h"
#include "engine/model/model.h"
#include "engine/model/config.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"
#include "engine/runtime/throughput_plan.h"
#include "engine/zero/layer_pack.h"
#include "engine/zero/placement.h"
#include "server/cli/commands.h"
#include "server/cli/option_binder.h"
#include "server/cli/throughput_planning.h"
#include "server/config/config.h"
#if defined(ZI_WITH_CUDA)
#include "engine/backend/cuda/device_probe.h"
#endif

namespace zi::cli {
namespace {

struct PlanFlags {
  std::string config;
  std::string model;
  std::string optimize;
  std::optional<std::string> rates;
  uint32_t prompt_len = 512;
  uint32_t gen_len = 32;
  bool json = false;
  std::unique_ptr<OptionBinder> options;
};

int fail(const Status& s, int code) {
  std::fprintf(stderr, "zeroinfer: %s\n", std::string(s.message()).c_str());
  return code;
}

int run_optimize(const PlanFlags& f, server::ServeConfig* config) {
  PlanningRequest req;
  req.rates_file = f.rates;
  req.prompt_len = f.prompt_len;
  req.gen_len = f.gen_len;
  auto planned = plan_deployment(config, req, /*apply=*/true);
  if (!planned.ok()) return fail(planned.status(), absl::IsInvalidArgument(planned.status()) ? 2 : 1);
  if (f.json) {
    nlohmann::json j = plan_json(*planned);
    j["model"] = config->engine.model_dir;
    j["options"] = nlohmann::json::parse(engine_options_json(*config));
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model       %s (%d layers, %s each, embeddings/head %s)\n", config->engine.model_dir.c_str(),
              planned->shape.layers, format_bytes(planned->shape.layer_bytes).c_str(),
              format_bytes(planned->shape.global_bytes).c_str());
  std::printf("%s", plan_text(*planned).c_str());
  return 0;
}

int run(const PlanFlags& f) {
  if (f.config.empty() == f.model.empty())
    return fail(absl::InvalidArgumentError("plan: give exactly one of --config FILE and --model DIR"), 2);
  server::ServeConfig loaded;
  if (!f.config.empty()) {
    auto c = server::load_config(f.config);
    if (!c.ok()) return fail(c.status(), 1);
    loaded = *std::move(c);
  } else {
    loaded.engine.model_dir = f.model;
  }
  server::ServeConfig* config = &loaded;
  if (Status s = f.options->apply(config); !s.ok()) return fail(s, 2);
  if (f.options->print_requested()) {
    std::printf("%s\n", engine_options_json(*config).c_str());
    return 0;
  }
  if (!f.optimize.empty() || config->engine.max_batch_size == 0) return run_optimize(f, config);
  const EngineOptions& o = config->engine;
  auto cfg = load_model_config(o.model_dir);
  if (!cfg.ok()) return fail(cfg.status(), 1);
  const Architecture* arch = find_architecture(cfg->architecture);
  const DType dtype = gpu_compute_dtype(o.dtype, config_dtype(cfg->dtype));
  std::optional<Rates> rates;
  if (f.rates) {
    auto r = read_rates(*f.rates);
    if (!r.ok()) return fail(r.status(), 1);
    rates = *r;
  }

  // What the process may hold per GPU: memory.gpu_limit, else the visible card's memory, else the rates file's.
  uint64_t gpu_bytes = o.gpu_memory_limit;
  std::string gpu_note = "memory.gpu_limit";
  if (!gpu_bytes) {
#if defined(ZI_WITH_CUDA)
    const cuda::DeviceProbe probe = cuda::probe_devices();
    if (probe.device_count > 0) {
      gpu_bytes = probe.total_memory;
      gpu_note = probe.name;
    }
#endif
    if (!gpu_bytes && rates && rates->gpu_total_bytes) {
      gpu_bytes = rates->gpu_total_bytes;
      gpu_note = "the card of " + *f.rates;
    }
    if (!gpu_bytes)
      return fail(absl::InvalidArgumentError(
                      "plan: no GPU visible: give --gpu-memory-limit SIZE (memory.gpu_limit) or --rates FILE"),
                  2);
  }
  // The process's own hold before any weight (CUDA context, workspaces) is measured into a rates file; without one
  // it is not counted.
  const uint64_t context = rates ? rates->gpu_context_bytes : 0;
  const uint64_t held = context + kGpuSlackBytes;
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
  const uint64_t kv_bytes = o.kv_cache_bytes ? o.kv_cache_bytes
                                             : kv_cache_bytes(cfg->num_layers, o.max_batch_size, ctx,
                                                              cfg->num_kv_heads, cfg->head_dim, dtype_size(dtype));
  in.kv_cache_bytes = o.kv_offload ? 0 : kv_bytes;
  const uint64_t rows = o.max_step_tokens ? o.max_step_tokens : activation_tokens(o.max_batch_size, ctx);
  in.activation_bytes = activation_bytes_for_rows(cfg->hidden_size, cfg->intermediate_size, cfg->vocab_size, rows,
                                                  o.max_batch_size, dtype_size(dtype), layer_chunk_rows(*cfg));
  in.gpu_memory_bytes = gpu_bytes > held ? gpu_bytes - held : 1;
  in.tier = o.offload_tier;
  in.gpu_weights_budget = o.gpu_weights_budget;
  in.prefetch_depth = o.prefetch_depth;
  in.h2d_bytes_per_second = rates ? rates->h2d_bytes_per_second : 0;
  in.num_ranks = n;
  auto p = plan_placement(in);
  if (!p.ok()) return fail(p.status(), 1);
  const double rate = rates ? stream_rate(*rates, p->disk_bytes_per_rank ? LayerTier::kNvme : LayerTier::kCpu) : 0;
  const double floor_s = rate > 0 ? p->pcie_bytes_per_step / rate : 0;
  const uint64_t kv_host = o.kv_offload ? kv_bytes : 0;
  const uint64_t gpu_total = p->gpu_total_bytes + held;
  const std::string tier(enum_name(o.offload_tier, kOffloadTierNames));
  nlohmann::json j = {{"model", o.model_dir}, {"architecture", cfg->architecture},
                      {"layers", cfg->num_layers}, {"dtype", std::string(dtype_torch_name(dtype))},
                      {"quant_bits", o.quant_bits}, {"quant_group_size", o.quant_group_size},
                      {"model_bytes", model_bytes}, {"num_gpus", n}, {"tier", tier},
                      {"gpu_memory_bytes", gpu_bytes}, {"gpu_context_bytes", context},
                      {"gpu_slack_bytes", kGpuSlackBytes}, {"resident_weight_bytes", p->resident_weight_bytes},
                      {"ring_bytes", p->ring_bytes}, {"prefetch_depth", p->prefetch_depth},
                      {"kv_cache_bytes", in.kv_cache_bytes},
                      {"activation_bytes", in.activation_bytes}, {"gpu_total_bytes", gpu_total},
                      {"layers_streamed", p->num_streamed}, {"host_bytes_per_rank", p->host_bytes_per_rank + kv_host},
                      {"disk_bytes_per_rank", p->disk_bytes_per_rank},
                      {"streamed_bytes_per_step", p->streamed_bytes_per_step},
                      {"pcie_bytes_per_step_per_rank", p->pcie_bytes_per_step}, {"step_floor_seconds", floor_s},
                      {"stream_bytes_per_second", rate}};
  if (f.json) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model       %s: %s, %ld layers, %s in %s (%s-bit weights in the layers)\n", o.model_dir.c_str(), cfg->architecture.c_str(),
              static_cast<long>(cfg->num_layers), format_bytes(model_bytes).c_str(),
              std::string(dtype_torch_name(dtype)).c_str(), std::to_string(o.quant_bits).c_str());
  std::printf("deployment  %u GPU(s), offload tier %s, batch %u × context %lu, GPU memory %s (%s)\n", n, tier.c_str(),
              o.max_batch_size, static_cast<unsigned long>(ctx), format_bytes(gpu_bytes).c_str(), gpu_note.c_str());
  std::printf("per GPU     context %s%s + slack %s + weights %s (model %s / %u ranks: %d of %ld layers resident)\n",
              format_bytes(context).c_str(), rates ? "" : " (not counted: no --rates)",
              format_bytes(kGpuSlackBytes).c_str(), format_bytes(p->resident_weight_bytes).c_str(),
              format_bytes(model_bytes).c_str(), n, static_cast<int>(cfg->num_layers) - p->num_streamed,
              static_cast<long>(cfg->num_layers));
  std::printf("            + streaming ring %s (%u slots) + KV cache %s + activations %s = %s\n",
              format_bytes(p->ring_bytes).c_str(), p->num_streamed ? p->prefetch_depth : 0,
              format_bytes(in.kv_cache_bytes).c_str(),
              format_bytes(in.activation_bytes).c_str(), format_bytes(gpu_total).c_str());
  std::printf("host        %s per rank (%s)\n", format_bytes(p->host_bytes_per_rank + kv_host).c_str(),
              o.pin_memory ? "pinned" : "pageable");
  std::printf("disk        %s per rank\n", format_bytes(p->disk_bytes_per_rank).c_str());
  if (rate > 0)
    std::printf("per step    %s streamed per GPU, %s over each rank's link → floor %.3f s at %.1f GB/s (%s)\n",
                format_bytes(p->streamed_bytes_per_step).c_str(), format_bytes(p->pcie_bytes_per_step).c_str(),
                floor_s, rate / 1e9, f.rates->c_str());
  else
    std::printf("per step    %s streamed per GPU, %s over each rank's link (floor: give --rates FILE)\n",
                format_bytes(p->streamed_bytes_per_step).c_str(), format_bytes(p->pcie_bytes_per_step).c_str());
  return 0;
}

}  // namespace

void register_plan(CLI::App& app, int* rc) {
  auto f = std::make_shared<PlanFlags>();
  auto* cmd = app.add_subcommand("plan", "Print the memory, disk and bus a deployment needs, before loading; "
                                         "--optimize throughput chooses the deployment");
  cmd->add_option("--config", f->config, "YAML deployment file");
  cmd->add_option("--model", f->model, "Hugging Face model folder (config.json), instead of --config");
  cmd->add_option("--optimize", f->optimize, "Choose batch, placement, KV place, step tokens and ring depth for "
                                             "the most end-to-end tokens/s")
      ->check(CLI::IsMember({"throughput"}));
  cmd->add_option("--rates", f->rates, "Rates file written by `bench --probe-rates` (default: measure on the GPU)");
  cmd->add_option("--prompt-len", f->prompt_len, "Prompt tokens per sequence the plan is for")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gen-len", f->gen_len, "New tokens per sequence the plan is for")->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--json", f->json, "One JSON object on stdout");
  f->options = std::make_unique<OptionBinder>(cmd, server::kPlan);
  cmd->callback([f, rc] { *rc = run(*f); });
}

}  // namespace zi::cli
