// The worker process: one per rank. Spawned by the coordinator (`zeroinfer worker --rank R --socket PATH`), it
// connects to the coordinator's Unix socket; started on its own, on this host or another
// (`zeroinfer worker --coordinator HOST:PORT --rank R --world N --tls-*`), it joins a coordinator run with
// `parallel.workers: external` over TCP with mutual TLS. Either way it announces its rank, builds its executor
// from the Init it receives, then runs Step after Step until Shutdown, until the channel closes or the
// coordinator falls silent (control_client.h), or, when spawned, until the coordinator dies (PR_SET_PDEATHSIG).
// Protocol: proto/zeroinfer/v1/worker.proto.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "engine/worker/control_tls.h"

namespace zi::worker {

struct WorkerArgs {
  uint32_t rank = 0;
  std::string socket_path;  // spawned: the coordinator's listening Unix socket
  int64_t parent_pid = 0;   // spawned: the coordinator's pid; a worker whose parent is already gone exits at once
  // Joining: the coordinator's parallel.worker_listen address, the world size it expects, the TLS files.
  std::string coordinator_host;
  uint16_t coordinator_port = 0;
  uint32_t world = 0;
  ControlTlsFiles tls;
  std::chrono::milliseconds connect_retry{std::chrono::minutes(5)};  // a coordinator that is not up yet
};

// Returns the process exit code: 0 after Shutdown or when the coordinator closed the channel, 1 on an error
// (reported to the coordinator as an Error frame when the channel still works, and logged to stderr).
int run_worker(const WorkerArgs& args);

}  // namespace zi::worker
