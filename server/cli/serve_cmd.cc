// `zeroinfer serve (--model DIR | --config FILE) [flags]`: the coordinator (see server/coordinator.h).
//
// --model alone serves a Hugging Face folder with every other key at its default (config/README.md); with
// --config too, the file is read first and every flag, --model included, overrides its key.
#include <cstdio>
#include <algorithm>
#include <filesystem>
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
  std::string model;  // --model: model.path (generate, bench and convert have their own --model, not a knob row)
  std::unique_ptr<OptionBinder> options;
  std::optional<std::string> rates;  // --rates FILE for server.max_batch_size: auto
};

// The folder's name, as model.name defaults to it.
std::string folder_name(const std::string& dir) {
  server::ServeConfig c;
  c.engine.model_dir = dir;
  c.engine.served_name.clear();
  server::finish_config(&c);
  return c.engine.served_name;
}

// The file (or the defaults), then the command line's flags over its keys. `usage` is set when the error is the
// command line's (exit 2) rather than the file's (exit 1).
StatusOr<server::ServeConfig> load(const ServeFlags& f, bool* usage = nullptr) {
  server::ServeConfig c;
  if (!f.config.empty()) {
    ZI_ASSIGN_OR_RETURN(c, server::load_config(f.config));
  } else {
    c.source = "serve";
    c.engine.model_dir.clear();
    c.engine.served_name.clear();
  }
  // --model over a file's model.path: the served name follows the new folder unless the file named it.
  if (!f.model.empty()) {
    if (c.engine.served_name == folder_name(c.engine.model_dir)) c.engine.served_name.clear();
    std::error_code aec;  // absolute: workers and logs see the same folder whatever their directory
    c.engine.model_dir = std::filesystem::absolute(f.model, aec).lexically_normal().string();
  }
  if (usage) *usage = true;
  ZI_RETURN_IF_ERROR(f.options->apply(&c));
  if (c.engine.model_dir.empty())
    return absl::InvalidArgumentError("serve: give --model DIR (a Hugging Face folder) or --config FILE");
  if (usage) *usage = false;
  std::error_code ec;
  if (!f.model.empty() && !std::filesystem::is_directory(c.engine.model_dir, ec))
    return absl::InvalidArgumentError(absl::StrCat("--model: '", c.engine.model_dir, "' is not a folder"));
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
  bool usage = false;
  auto config = load(flags, &usage);
  if (!config.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(config.status().message()).c_str());
    return usage ? 2 : 1;
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
  // SIGHUP: the same file (if any) and the same flags again.
  auto reload = [&flags]() { return load(flags); };
  return server::run_coordinator(*config, "/proc/self/exe", reload);
}

}  // namespace

void register_serve(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("serve", "Serve a model over gRPC and the OpenAI-compatible HTTP API (coordinator; "
                                          "spawns the worker processes)");
  auto flags = std::make_shared<ServeFlags>();
  cmd->add_option("--config", flags->config, "YAML deployment file (see config/README.md); optional with --model");
  cmd->add_option("--model", flags->model, "Hugging Face model folder (model.path); alone, every other key at its "
                                           "default");
  cmd->add_option("--rates", flags->rates,
                  "Rates file (bench --probe-rates) for server.max_batch_size: auto (default: measure at start-up)");
  flags->options = std::make_unique<OptionBinder>(cmd, server::kServe);
  cmd->callback([flags, rc] { *rc = run(*flags); });
}

}  // namespace zi::cli
