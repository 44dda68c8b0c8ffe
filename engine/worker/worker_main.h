// The worker process (`zeroinfer worker --rank R --socket PATH`): one per rank, spawned by the coordinator.
// It connects to the coordinator's Unix socket, announces its rank, builds its executor from the Init it
// receives, then runs Step after Step until Shutdown, until the socket closes, or until the coordinator dies
// (PR_SET_PDEATHSIG). Protocol: proto/zeroinfer/v1/worker.proto.
#pragma once

#include <cstdint>
#include <string>

namespace zi::worker {

struct WorkerArgs {
  uint32_t rank = 0;
  std::string socket_path;  // the coordinator's listening Unix socket
  int64_t parent_pid = 0;   // the coordinator's pid; when set, a worker whose parent is already gone exits at once
};

// Returns the process exit code: 0 after Shutdown or when the coordinator closed the socket, 1 on an error
// (reported to the coordinator as an Error frame when the socket still works, and logged to stderr).
int run_worker(const WorkerArgs& args);

}  // namespace zi::worker
