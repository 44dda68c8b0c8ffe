// The ranks of one ZeRO-3 group and the one collective inference needs: an in-place all-gather of a layer's
// partitions. Two implementations: NCCL between GPU workers (engine/comm/nccl/, device memory, asynchronous on a
// stream) and shared memory between CPU worker processes (this folder, host memory, synchronous).
//
// A group is formed from an id that rank 0 makes and the coordinator hands to the others over the control
// channel (worker.proto CommId): "shm:<segment name>" or "nccl:<hex of ncclUniqueId>". Every rank must issue the
// same collectives in the same order; a rank with nothing to compute still takes part (walk_layers).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "engine/core/status.h"

namespace zi {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // `buf` holds size() partitions of `partition_bytes` each; this rank's is at rank() × partition_bytes. On
  // return (CPU) or once `stream`'s work completes (NCCL: `stream` is a cudaStream_t), every partition holds its
  // rank's bytes.
  virtual Status all_gather(void* buf, size_t partition_bytes, void* stream) = 0;
  virtual std::string kind() const = 0;  // "shm" | "nccl"
};

// Shared-memory group between processes (or threads) on one machine. `create_shm_comm_id` (rank 0) makes the
// segment and returns its id; every rank, rank 0 included, then calls connect_shm_communicator, which returns
// once all `world` ranks have joined (or fails after `join_timeout`, naming the ranks missing). Collectives fail
// (never hang) when a peer process exits or after `op_timeout`.
struct ShmCommOptions {
  std::chrono::milliseconds join_timeout{300000};
  std::chrono::milliseconds op_timeout{600000};
  size_t chunk_bytes = size_t{8} << 20;  // staging per rank: larger partitions move in chunks of this size
};
StatusOr<std::string> create_shm_comm_id(int world, const ShmCommOptions& options = {});
StatusOr<std::unique_ptr<Communicator>> connect_shm_communicator(const std::string& id, int rank, int world,
                                                                 const ShmCommOptions& options = {});

// NCCL group (CUDA builds; libnccl is loaded on first use with dlopen so the binary starts without it).
// create_nccl_comm_id calls ncclGetUniqueId (rank 0); connect_nccl_communicator runs ncclCommInitRank on the
// current CUDA device and returns once every rank joined.
StatusOr<std::string> create_nccl_comm_id();
StatusOr<std::unique_ptr<Communicator>> connect_nccl_communicator(const std::string& id, int rank, int world);

}  // namespace zi
