// `zeroinfer serve --config FILE [flags]`: the coordinator (see server/coordinator.h).
#include <cstdio>
#include <memory>
#include <string>

#include "engine/core/log.h"
#include "server/cli/commands.h"
#include "server/cli/option_binder.h"
#include "server/config/config.h"
#include "server/coordinator.h"

namespace zi::cli {
namespace {

struct ServeFlags {
  std::string config;
  std::unique_ptr<OptionBinder> options;
};

// The file, then the command line's flags over its keys.
StatusOr<server::ServeConfig> load(const ServeFlags& f) {
  ZI_ASSIGN_OR_RETURN(server::ServeConfig c, server::load_config(f.config));
  ZI_RETURN_IF_ERROR(f.options->apply(&c));
  return c;
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
  // SIGHUP: the same file and the same flags again.
  auto reload = [&flags]() { return load(flags); };
  return server::run_coordinator(*config, "/proc/self/exe", reload);
}

}  // namespace

void register_serve(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("serve", "Serve a model over gRPC (coordinator; spawns the worker processes)");
  auto flags = std::make_shared<ServeFlags>();
  cmd->add_option("--config", flags->config, "YAML deployment file (see config/README.md)")->required();
  flags->options = std::make_unique<OptionBinder>(cmd, server::kServe);
  cmd->callback([flags, rc] { *rc = run(*flags); });
}

}  // namespace zi::cli
