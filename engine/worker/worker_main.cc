#include "engine/worker/worker_main.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "engine/core/log.h"
#include "engine/runtime/engine_options.h"
#include "engine/worker/control_client.h"
#include "engine/worker/control_store.h"
#include "engine/worker/convert.h"

namespace zi::worker {
namespace {

void send_error(ControlClient& channel, uint64_t step_id, const Status& status) {
  pb::FromWorker msg;
  to_proto(status, msg.mutable_error());
  msg.mutable_error()->set_step_id(step_id);
  (void)channel.send(msg);  // the coordinator may be gone already; the log line below still tells
}

std::string host_name() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

}  // namespace

int run_worker(const WorkerArgs& args) {
  const bool joining = !args.coordinator_host.empty();
  if (!joining) {
    // Die with the coordinator. The coordinator also sets this between fork and exec; repeating it here covers a
    // worker started by hand. If the parent died before this line, getppid() has already changed. A worker that
    // joined over the network is nobody's child: its control channel tells it when to go (control_client.h).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (args.parent_pid > 0 && getppid() != static_cast<pid_t>(args.parent_pid)) {
      ZI_LOG(ERROR) << "worker rank " << args.rank << ": coordinator (pid " << args.parent_pid << ") is gone";
      return 1;
    }
    // The coordinator handles SIGINT/SIGTERM for the whole process group (Ctrl-C in a terminal reaches both):
    // a spawned worker ignores them and exits when told to, or when its socket closes.
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
  }
  signal(SIGPIPE, SIG_IGN);

  auto connected = joining ? ControlClient::ConnectTls(args.coordinator_host, args.coordinator_port, args.tls,
                                                       args.connect_retry)
                           : ControlClient::ConnectUnix(args.socket_path);
  if (!connected.ok()) {
    ZI_LOG(ERROR) << "worker rank " << args.rank << ": " << connected.status().message();
    return 1;
  }
  ControlClient& channel = **connected;

  pb::FromWorker hello;
  hello.mutable_hello()->set_rank(args.rank);
  hello.mutable_hello()->set_pid(static_cast<uint32_t>(getpid()));
  hello.mutable_hello()->set_world_size(args.world);
  hello.mutable_hello()->set_host(host_name());
  if (Status s = channel.send(hello); !s.ok()) {
    ZI_LOG(ERROR) << "worker rank " << args.rank << ": " << s.message();
    return 1;
  }

  pb::ToWorker init;
  if (Status s = channel.receive(&init); !s.ok() || !init.has_init()) {
    // A coordinator that refuses a joining worker (its certificate, a rank taken, another --world) just closes
    // the channel; its log says why.
    ZI_LOG(ERROR) << "worker rank " << args.rank << ": expected Init from the coordinator"
                  << (s.ok() ? "" : absl::StrCat(": ", s.message()))
                  << (joining && !s.ok() ? " (refused? the coordinator's log says why)" : "");
    return 1;
  }
  channel.set_heartbeat(std::chrono::milliseconds(init.init().heartbeat_interval_ms()),
                        std::chrono::milliseconds(init.init().heartbeat_timeout_ms()));
  // Loading and steps can run for minutes without reading the channel: a coordinator gone meanwhile ends us.
  channel.exit_when_unheard();

  EngineOptions options = from_proto(init.init().options());
  options.rank = args.rank;
  // A Gloo group meets through the coordinator (control_store.h); this rank's peers reach it at the address it
  // reaches the coordinator from (loopback for a spawned worker).
  options.gloo.store = std::make_shared<ControlStore>(&channel, options.gloo.timeout);
  options.gloo.hostname = joining ? channel.local_address() : "127.0.0.1";
  if (options.world_size > 1) {
    // Form the ZeRO-3 group: rank 0 makes the id, the coordinator relays it, everyone joins in create_executor.
    if (options.rank == 0) {
      auto id = create_comm_id(options);
      if (!id.ok()) {
        send_error(channel, 0, id.status());
        return 1;
      }
      options.comm_id = *id;
      pb::FromWorker up;
      up.mutable_comm_id()->set_id(*id);
      if (!channel.send(up).ok()) return 0;
    } else {
      pb::ToWorker down;
      if (Status s = channel.receive(&down); !s.ok() || !down.has_comm_id()) {
        ZI_LOG(ERROR) << "worker rank " << args.rank << ": expected the communicator id from the coordinator"
                      << (s.ok() ? "" : absl::StrCat(": ", s.message()));
        return s.ok() || s.code() != absl::StatusCode::kUnavailable ? 1 : 0;
      }
      options.comm_id = down.comm_id().id();
    }
  }
  auto executor_or = create_executor(options);
  if (!executor_or.ok()) {
    // The coordinator reports it (one line); log here only at debug level.
    ZI_LOG(DEBUG) << "worker rank " << args.rank << ": " << executor_or.status().message();
    send_error(channel, 0, executor_or.status());
    return 1;
  }
  std::unique_ptr<Executor> executor = std::move(executor_or).value();
  pb::FromWorker ready;
  to_proto(executor->summary(), ready.mutable_ready()->mutable_summary());
  if (!channel.send(ready).ok()) return 0;  // coordinator gone while we loaded: nothing to serve
  ZI_LOG(DEBUG) << "worker rank " << args.rank << ": ready";

  for (;;) {
    pb::ToWorker msg;
    Status s = channel.receive(&msg);
    if (!s.ok()) {
      if (s.code() == absl::StatusCode::kUnavailable) return 0;  // coordinator closed the socket
      ZI_LOG(ERROR) << "worker rank " << args.rank << ": " << s.message();
      return 1;
    }
    if (msg.has_shutdown()) return 0;
    if (!msg.has_step()) {
      ZI_LOG(ERROR) << "worker rank " << args.rank << ": unexpected control message";
      send_error(channel, 0, absl::InternalError("worker: unexpected control message"));
      return 1;
    }
    const uint64_t step_id = msg.step().step_id();
    auto out = executor->step(from_proto(msg.step()));
    pb::FromWorker reply;
    if (!out.ok()) {
      send_error(channel, step_id, out.status());
      continue;  // the step failed as a whole; the coordinator decides what to do with its sequences
    }
    reply.mutable_step_reply()->set_step_id(step_id);
    to_proto(*out, reply.mutable_step_reply());
    if (Status ws = channel.send(reply); !ws.ok()) return 0;
  }
}

}  // namespace zi::worker
