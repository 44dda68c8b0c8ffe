// Host-memory slots: the CPU backend's streaming, and the protocol's test bed. fetch() completes synchronously.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "engine/comm/communicator.h"
#include "engine/io/direct_reader.h"
#include "engine/zero/streamed_parameters.h"

namespace zi {
namespace {

class AlignedHostAllocator final : public HostAllocator {
 public:
  StatusOr<HostBlock> allocate(size_t bytes) override {
    void* p = nullptr;
    if (posix_memalign(&p, 4096, std::max<size_t>(bytes, 4096)) != 0)
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes of host memory"));
    return HostBlock{p, std::shared_ptr<void>(p, [](void* q) { std::free(q); })};
  }
};

class HostTransport final : public ShardTransport {
 public:
  HostTransport(const HostShards& shards, bool verify) : shards_(shards), verify_(verify) {}

  StatusOr<void*> allocate_slot(size_t bytes) override {
    ZI_ASSIGN_OR_RETURN(HostBlock b, alloc_.allocate(bytes));
    blocks_.push_back(b);
    return b.data;
  }

  Status fetch(int layer, int slot) override {
    const StoreShard& shard = shards_.layouts[layer];
    char* dst = static_cast<char*>(blocks_[slot].data) + shards_.rank * shard.partition_bytes;
    const auto t0 = std::chrono::steady_clock::now();
    if (shards_.store) {
      if (!reader_) {
        ZI_ASSIGN_OR_RETURN(reader_, DirectReader::Open(shards_.store->rank_file(shards_.rank), {}));
      }
      const StoreShard* s = shards_.store->find(shard.name);
      if (!s) return absl::DataLossError(absl::StrCat(shards_.store->dir(), ": the store has no shard ", shard.name));
      // Checksums are verified on a partition's first read only (see the CUDA transport).
      if (verified_.empty()) verified_.assign(shards_.layouts.size(), false);
      ZI_RETURN_IF_ERROR(shards_.store->read_partition(*s, shards_.rank, *reader_, dst, verify_ && !verified_[layer]));
      verified_[layer] = true;
      stats_.nvme_bytes += shard.partition_bytes;
    } else {
      std::memcpy(dst, shards_.partitions[layer].data, shard.partition_bytes);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (shards_.store ? stats_.nvme_read_seconds : stats_.copy_seconds) += secs;
    stats_.stall_seconds += secs;  // synchronous: compute waits for every fetch
    stats_.fetch_bytes += shard.partition_bytes;
    ++stats_.fetches;
    if (shards_.comm && shards_.num_ranks > 1) {
      // ZeRO-3: the other ranks' partitions of this layer, into the rest of the slot.
      const auto g0 = std::chrono::steady_clock::now();
      ZI_RETURN_IF_ERROR(shards_.comm->all_gather(blocks_[slot].data, shard.partition_bytes, nullptr));
      const double g = std::chrono::duration<double>(std::chrono::steady_clock::now() - g0).count();
      stats_.allgather_seconds += g;
      stats_.stall_seconds += g;
      stats_.allgather_bytes += shard.partition_bytes * (shards_.num_ranks - 1);
    }
    return absl::OkStatus();
  }
  Status wait(int) override { return absl::OkStatus(); }
  Status release(int) override { return absl::OkStatus(); }
  StreamStats take_stats() override { return std::exchange(stats_, StreamStats{}); }

 private:
  const HostShards& shards_;
  bool verify_;
  AlignedHostAllocator alloc_;
  std::vector<HostBlock> blocks_;
  std::unique_ptr<DirectReader> reader_;
  std::vector<bool> verified_;
  StreamStats stats_;
};

}  // namespace

std::unique_ptr<HostAllocator> make_aligned_host_allocator() { return std::make_unique<AlignedHostAllocator>(); }

std::unique_ptr<ShardTransport> make_host_transport(const HostShards& shards, bool verify_checksums) {
  return std::make_unique<HostTransport>(shards, verify_checksums);
}

}  // namespace zi
