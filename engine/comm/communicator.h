// The ranks of one ZeRO-3 group and the one collective inference needs: an in-place all-gather of a layer's
// partitions. Three implementations: NCCL between GPU workers (engine/comm/nccl/, device memory, asynchronous on a
// stream); between CPU worker processes, shared memory when they share a host and Gloo over TCP when they do not
// (this folder, host memory, synchronous).
//
// A group is formed from an id that rank 0 makes and the coordinator hands to the others over the control
// channel (worker.proto CommId): "shm:<segment name>", "gloo:<store prefix>" or "nccl:<hex of ncclUniqueId>".
// Every rank must issue the same collectives in the same order; a rank with nothing to compute still takes part
// (walk_layers).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/core/enum_names.h"
#include "engine/core/status.h"

namespace gloo::rendezvous {
class Store;
}

namespace zi {

// parallel.cpu_communicator: how CPU ranks gather. auto = shm when every rank runs on one host, else gloo.
enum class CpuCommunicator : uint8_t { kAuto, kShm, kGloo };
inline constexpr std::array<EnumName<CpuCommunicator>, 3> kCpuCommunicatorNames{
    {{CpuCommunicator::kAuto, "auto"}, {CpuCommunicator::kShm, "shm"}, {CpuCommunicator::kGloo, "gloo"}}};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // `buf` holds size() partitions of `partition_bytes` each; this rank's is at rank() × partition_bytes. On
  // return (CPU) or once `stream`'s work completes (NCCL: `stream` is a cudaStream_t), every partition holds its
  // rank's bytes.
  virtual Status all_gather(void* buf, size_t partition_bytes, void* stream) = 0;
  virtual std::string kind() const = 0;  // "shm" | "gloo" | "nccl"
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

// Gloo group over TCP (its tcp transport): for CPU ranks on different hosts. `create_gloo_comm_id` (rank 0) makes
// a fresh key prefix; every rank then calls connect_gloo_communicator, which exchanges addresses through `store`
// (the coordinator's, over the control channel: engine/worker/control_store.h) and returns once every rank is
// connected to every other. The data plane is plaintext TCP between the ranks' hosts.
struct GlooCommOptions {
  std::shared_ptr<gloo::rendezvous::Store> store;  // where the ranks meet; required
  // The address this rank listens on for its peers: $GLOO_SOCKET_IFNAME's when set (an interface name), else
  // `hostname` (the worker passes the address it reaches the coordinator from), else the host's name.
  std::string hostname;
  std::chrono::milliseconds timeout{600000};  // joining, and each collective
};
std::string create_gloo_comm_id();
StatusOr<std::unique_ptr<Communicator>> connect_gloo_communicator(const std::string& id, int rank, int world,
                                                                  const GlooCommOptions& options);

// NCCL group (CUDA builds; libnccl is loaded on first use with dlopen so the binary starts without it).
// create_nccl_comm_id calls ncclGetUniqueId (rank 0); connect_nccl_communicator runs ncclCommInitRank on the
// current CUDA device and returns once every rank joined.
StatusOr<std::string> create_nccl_comm_id();
StatusOr<std::unique_ptr<Communicator>> connect_nccl_communicator(const std::string& id, int rank, int world);

}  // namespace zi
