// `zeroinfer serve --config FILE [flags]`: the coordinator (see server/coordinator.h).
#include <cstdio>
#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "engine/core/log.h"
#include "server/cli/commands.h"
#include "server/cli/option_binder.h"
#include "server/cli/throughput_planning.h"
#include "absl/strings/str_split.h"
#include "engine/model/config.h"
#include "server/config/config.h"
#include "server/coordinator.h"

namespace zi::cli {
namespace {

struct ServeFlags {
  std::string config;
  std::unique_ptr<OptionBinder> options;
  std::optional<std::string> rates;  // --rates FILE for server.max_batch_size: auto
};

// The file, then the command line's flags over its keys.
StatusOr<server::ServeConfig> load(const ServeFlags& f) {
  ZI_ASSIGN_OR_RETURN(server::ServeConfig c, server::load_config(f.config));
  ZI_RETURN_IF_ERROR(f.options->apply(&c));
  return c;
}

Status plan_for_serving(const ServeFlags& flags, server::ServeConfig* config) {
  EngineOptions& o = config->engine;
  uint32_t ctx = o.max_context;
  if (ctx == 0) {
    ZI_ASSIGN_OR_RETURN(ModelConfig cfg, load_model_config(o.model_dir));
    ctx = static_cast<uint32_t>(cfg.default_max_context);
  }
  if (ctx < 2) return absl::InvalidArgumentError("server.max_batch_size: auto needs model.max_context >= 2");
  PlanningRequest req;
  req.rates_file = flags.rates;
  req.gen_len = std::min(config->max_new_tokens_default, ctx / 2);
  req.prompt_len = ctx - req.gen_len;
  ZI_ASSIGN_OR_RETURN(Planned p, plan_deployment(config, req, /*apply=*/true));
  o.max_context = ctx;
  for (absl::string_view line : absl::StrSplit(plan_text(p), '\n', absl::SkipEmpty()))
    ZI_LOG(INFO) << "planner: " << line;
  return absl::OkStatus();
}

int run(const ServeFlags& flags) {
  auto config = server::load_config(flags.config);
  if (!config.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  if (Status st = flags.options->apply(&*config); !st.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  if (flags.options->print_requested()) {
    std::printf("%s\n", engine_options_json(*config).c_str());
    return 0;
  }
  LogLevel level;
  if (parse_log_level(config->log_level, &level)) set_log_level(level);
  if (config->engine.max_batch_size == 0) {
    // server.max_batch_size: auto — the throughput planner, for sequences that fill the context: gen =
    // min(server.max_new_tokens_default, context / 2), prompt = the rest.
    if (Status st = plan_for_serving(flags, &*config); !st.ok()) {
      std::fprintf(stderr, "zeroinfer: %s\n", std::string(st.message()).c_str());
      return 1;
    }
  }
  // SIGHUP: the same file and the same flags again.
  auto reload = [&flags]() { return load(flags); };
  return server::run_coordinator(*config, "/proc/self/exe", reload);
}

}  // namespace

void register_serve(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("serve", "Serve a model over gRPC (coordinator; spawns the worker processes)");
  auto flags = std::make_shared<ServeFlags>();
  cmd->add_option("--config", flags->config, "YAML deployment file (see config/README.md)")->required();
  cmd->add_option("--rates", flags->rates,
                  "Rates file (bench --probe-rates) for server.max_batch_size: auto (default: measure at start-up)");
  flags->options = std::make_unique<OptionBinder>(cmd, server::kServe);
  cmd->callback([flags, rc] { *rc = run(*flags); });
}

}  // namespace zi::cli
