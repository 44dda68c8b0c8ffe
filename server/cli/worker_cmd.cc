// `zeroinfer worker --rank R --socket PATH`: internal; the coordinator spawns one per rank (engine/worker/).
#include "engine/core/log.h"
#include "engine/worker/worker_main.h"
#include "server/cli/commands.h"

namespace zi::cli {

void register_worker(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("worker", "(internal) a worker process, spawned by `zeroinfer serve`");
  auto args = std::make_shared<worker::WorkerArgs>();
  auto level = std::make_shared<std::string>("info");
  cmd->add_option("--rank", args->rank, "This worker's rank")->required();
  cmd->add_option("--socket", args->socket_path, "The coordinator's control socket")->required();
  cmd->add_option("--parent-pid", args->parent_pid, "The coordinator's pid (exit at once if it is gone)");
  cmd->add_option("--log-level", *level, "debug|info|warning|error")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  cmd->callback([args, level, rc] {
    LogLevel l;
    if (parse_log_level(*level, &l)) set_log_level(l);
    *rc = worker::run_worker(*args);
  });
}

}  // namespace zi::cli
