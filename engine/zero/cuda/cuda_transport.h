// The GPU side of weight streaming: slots in device memory, host→device copies of each shard on a dedicated copy
// stream (pinned memory: at the bus's rate, overlapped with compute), ordered against the compute stream with
// events only — the host never waits on the hot path. NVMe-tier shards are read (O_DIRECT, io_uring) into a ring
// of pinned staging buffers first.
#pragma once

#include <memory>

#include "engine/zero/streamed_parameters.h"

namespace zi::cuda {

class CudaBackend;

struct CudaTransportOptions {
  bool verify_checksums = true;   // NVMe tier: CRC-32C of each partition read
  uint64_t aio_block_size = 1 << 20;
  uint32_t aio_queue_depth = 8;
};

// `backend` must outlive the transport.
StatusOr<std::unique_ptr<ShardTransport>> make_cuda_transport(CudaBackend& backend, const HostShards& shards,
                                                              const CudaTransportOptions& options);

// Page-locked host memory (cudaHostAlloc) for the CPU tier's partitions; `pinned` false = plain aligned memory
// (--pin-memory 0: copies then run at pageable speed and block the host).
std::unique_ptr<HostAllocator> make_cuda_host_allocator(bool pinned);

}  // namespace zi::cuda
