// `zeroinfer worker`: one rank's process (engine/worker/). Spawned by the coordinator (`--rank R --socket PATH`), or
// started by hand, a launcher (srun) or a pod to join a coordinator run with `parallel.workers: external`:
//   zeroinfer worker --coordinator HOST:PORT --rank R --world N --tls-cert C --tls-key K --tls-ca CA
#include "engine/core/log.h"
#include "engine/worker/worker_main.h"
#include "server/cli/commands.h"
#include "server/config/config.h"

namespace zi::cli {

void register_worker(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("worker", "A worker process: spawned by `zeroinfer serve`, or joining one over TCP");
  auto args = std::make_shared<worker::WorkerArgs>();
  auto level = std::make_shared<std::string>("info");
  auto coordinator = std::make_shared<std::string>();
  auto retry = std::make_shared<double>(300);
  cmd->add_option("--rank", args->rank, "This worker's rank")->required();
  auto* socket = cmd->add_option("--socket", args->socket_path, "(spawned) The coordinator's control socket");
  cmd->add_option("--parent-pid", args->parent_pid, "(spawned) The coordinator's pid (exit at once if it is gone)");
  auto* join = cmd->add_option("--coordinator", *coordinator,
                               "Join the coordinator's parallel.worker_listen HOST:PORT (mutual TLS)");
  cmd->add_option("--world", args->world, "(joining) Ranks in the group: the coordinator's parallel.num_gpus");
  cmd->add_option("--tls-cert", args->tls.cert_file, "(joining) This worker's certificate (PEM), signed by a CA in "
                                                     "the coordinator's server.tls.client_ca_file");
  cmd->add_option("--tls-key", args->tls.key_file, "(joining) Its private key (PEM)");
  cmd->add_option("--tls-ca", args->tls.ca_file, "(joining) CA bundle (PEM) that signs the coordinator's "
                                                 "server.tls certificate");
  cmd->add_option("--connect-retry", *retry, "(joining) Seconds to keep dialling a coordinator that is not up yet");
  socket->excludes(join);
  cmd->add_option("--log-level", *level, "debug|info|warning|error")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  cmd->callback([args, level, coordinator, retry, rc] {
    LogLevel l;
    if (parse_log_level(*level, &l)) set_log_level(l);
    auto usage = [rc](const std::string& msg) {
      std::fprintf(stderr, "zeroinfer worker: %s\n", msg.c_str());
      *rc = 2;
    };
    if (coordinator->empty()) {
      if (args->socket_path.empty()) return usage("--coordinator HOST:PORT (or, spawned, --socket PATH) is required");
    } else {
      auto hp = server::parse_host_port(*coordinator);
      if (!hp.ok()) return usage(absl::StrCat("--coordinator: ", hp.status().message()));
      if (hp->port == 0) return usage("--coordinator: needs a port, got 0");
      if (args->world < 1) return usage("--world N (1..64) is required with --coordinator");
      if (args->rank >= args->world)
        return usage(absl::StrCat("--rank must be 0..", args->world - 1, " for --world ", args->world, ", got ",
                                  args->rank));
      if (*retry < 0 || *retry > 86400) return usage("--connect-retry: must be 0..86400 seconds");
      args->coordinator_host = hp->host;
      args->coordinator_port = hp->port;
      args->connect_retry = std::chrono::milliseconds(static_cast<int64_t>(*retry * 1000));
    }
    *rc = worker::run_worker(*args);
  });
}

}  // namespace zi::cli
