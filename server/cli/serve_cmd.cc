// `zeroinfer serve --config FILE [flags]`: the coordinator (see server/coordinator.h).
#include <cstdio>
#include <string>

#include "engine/core/log.h"
#include "server/cli/commands.h"
#include "server/cli/engine_flags.h"
#include "server/config/config.h"
#include "server/coordinator.h"

namespace zi::cli {
namespace {

struct ServeFlags {
  std::string config;
  EngineFlags engine;
  std::optional<std::string> listen, metrics_listen, log_level;
  bool allow_insecure = false;
};

// DESIGN.md's flag → key mapping.
StatusOr<server::ConfigOverrides> overrides_from(const ServeFlags& f) {
  server::ConfigOverrides o;
  const EngineFlags& e = f.engine;
  if (e.cpu_offload && e.disk_offload)
    return absl::InvalidArgumentError("--cpu-offload and --disk-offload exclude each other");
  if (e.cpu_offload) o.offload_tier = "cpu";
  if (e.disk_offload) o.offload_tier = "nvme";
  o.offload_dir = e.offload_dir;
  if (e.pin_memory) o.pin_memory = *e.pin_memory != 0;
  o.gpu_weights_budget = e.gpu_weights_budget;
  if (e.max_context) o.max_context = static_cast<uint32_t>(*e.max_context);
  if (e.quant_bits) o.quant_bits = static_cast<uint32_t>(*e.quant_bits);
  if (e.quant_group_size) o.quant_group_size = static_cast<uint32_t>(*e.quant_group_size);
  if (e.quant_embeddings) o.quant_embeddings = true;
  if (e.kv_offload) o.kv_offload = true;
  o.kv_cache_bytes = e.kv_cache_bytes;
  o.kv_offload_attention = e.kv_offload_attention;
  if (e.num_gpus) o.num_gpus = static_cast<uint32_t>(*e.num_gpus);
  o.device = e.device;
  o.listen = f.listen;
  o.metrics_listen = f.metrics_listen;
  o.log_level = f.log_level;
  if (f.allow_insecure) o.allow_insecure = true;
  return o;
}

int run(const ServeFlags& flags) {
  auto config = server::load_config(flags.config);
  if (!config.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  auto overrides = overrides_from(flags);
  Status st = overrides.ok() ? server::apply_overrides(*overrides, &*config) : overrides.status();
  if (!st.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  LogLevel level;
  if (parse_log_level(config->log_level, &level)) set_log_level(level);
  // SIGHUP: the same file and the same flags again.
  auto reload = [path = flags.config, o = *overrides]() -> StatusOr<server::ServeConfig> {
    ZI_ASSIGN_OR_RETURN(server::ServeConfig c, server::load_config(path));
    ZI_RETURN_IF_ERROR(server::apply_overrides(o, &c));
    return c;
  };
  return server::run_coordinator(*config, "/proc/self/exe", reload);
}

}  // namespace

void register_serve(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("serve", "Serve a model over gRPC (coordinator; spawns the worker processes)");
  auto flags = std::make_shared<ServeFlags>();
  cmd->add_option("--config", flags->config, "YAML deployment file (see config/README.md)")->required();
  add_engine_flags(cmd, &flags->engine);
  cmd->add_option("--listen", flags->listen, "gRPC address HOST:PORT (server.listen; port 0 = any free port)");
  cmd->add_option("--metrics-listen", flags->metrics_listen, "Prometheus /metrics address HOST:PORT (server.metrics_listen)");
  cmd->add_option("--log-level", flags->log_level, "debug|info|warning|error (logging.level)")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  cmd->add_flag("--allow-insecure", flags->allow_insecure,
                "Serve plaintext gRPC on an address other than loopback (server.allow_insecure: true)");
  cmd->callback([flags, rc] { *rc = run(*flags); });
}

}  // namespace zi::cli
