#include "engine/zero/cuda/cuda_transport.h"

#include <chrono>
#include <deque>

#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/stream.h"
#include "engine/comm/communicator.h"
#include "engine/core/log.h"
#include "engine/io/direct_reader.h"

namespace zi::cuda {
namespace {

class PinnedAllocator final : public HostAllocator {
 public:
  StatusOr<HostBlock> allocate(size_t bytes) override {
    ZI_ASSIGN_OR_RETURN(PinnedHostBuffer buf, PinnedHostBuffer::allocate(bytes));
    auto owner = std::make_shared<PinnedHostBuffer>(std::move(buf));
    return HostBlock{owner->data(), owner};
  }
};

// Timing events come in (start, end) pairs on one stream; elapsed times are read once the work is done.
struct TimedSpan {
  CudaEvent start, end;
  uint64_t bytes = 0;
};

class CudaTransport final : public ShardTransport {
 public:
  CudaTransport(CudaBackend& backend, const HostShards& shards, const CudaTransportOptions& opts, CudaStream copy,
                CudaStream comm)
      : backend_(backend), shards_(shards), opts_(opts), copy_(std::move(copy)), comm_(std::move(comm)) {}

  ~CudaTransport() override {
    // Queued copies still target the slots and staging buffers: let them finish before freeing anything.
    (void)copy_.synchronize();
    (void)comm_.synchronize();
    backend_.make_current();
    for (void* p : slots_) cudaFree(p);
  }

  StatusOr<void*> allocate_slot(size_t bytes) override {
    backend_.make_current();
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      const MemoryInfo mi = backend_.memory_info();
      return absl::ResourceExhaustedError(absl::StrFormat(
          "streaming slot of %s: cudaMalloc failed (%s), %s free on the GPU; lower offload.prefetch_depth or "
          "offload.gpu_weights_budget",
          format_bytes(bytes), cudaGetErrorString(e), format_bytes(mi.device_free)));
    }
    slots_.push_back(p);
    ZI_ASSIGN_OR_RETURN(CudaEvent ready, CudaEvent::create(backend_.device()));
    ZI_ASSIGN_OR_RETURN(CudaEvent released, CudaEvent::create(backend_.device()));
    ZI_ASSIGN_OR_RETURN(CudaEvent copied, CudaEvent::create(backend_.device()));
    ready_.push_back(std::move(ready));
    released_.push_back(std::move(released));
    copied_.push_back(std::move(copied));
    slot_bytes_ = std::max(slot_bytes_, bytes);
    return p;
  }

  Status fetch(int layer, int slot) override {
    backend_.make_current();
    const StoreShard& shard = shards_.layouts[layer];
    char* dst = static_cast<char*>(slots_[slot]) + shards_.rank * shard.partition_bytes;
    // The slot's previous shard must be done with before it is overwritten (GPU-side wait).
    ZI_RETURN_IF_ERROR(copy_.wait(released_[slot]));
    const void* src = nullptr;
    int staging = -1;
    if (shards_.store) {
      ZI_ASSIGN_OR_RETURN(staging, read_into_staging(shard));
      src = staging_[staging].data();
    } else {
      src = shards_.partitions[layer].data;
    }
    ZI_ASSIGN_OR_RETURN(TimedSpan * span, new_span());
    ZI_RETURN_IF_ERROR(span->start.record(copy_));
    ZI_RETURN_IF_ERROR(copy_.copy_async(dst, src, shard.partition_bytes));
    ZI_RETURN_IF_ERROR(span->end.record(copy_));
    span->bytes = shard.partition_bytes;
    copies_.push_back(span);
    if (staging >= 0) ZI_RETURN_IF_ERROR(staging_done_[staging].record(copy_));
    stats_.fetch_bytes += shard.partition_bytes;
    ++stats_.fetches;
    if (!shards_.comm || shards_.num_ranks == 1) return ready_[slot].record(copy_);
    // ZeRO-3: once this rank's partition is in, gather the others' over NCCL on the communication stream, so the
    // copy engine is already bringing in the next layer meanwhile.
    ZI_RETURN_IF_ERROR(copied_[slot].record(copy_));
    ZI_RETURN_IF_ERROR(comm_.wait(copied_[slot]));
    ZI_ASSIGN_OR_RETURN(TimedSpan * g, new_span());
    ZI_RETURN_IF_ERROR(g->start.record(comm_));
    ZI_RETURN_IF_ERROR(shards_.comm->all_gather(slots_[slot], shard.partition_bytes, comm_.get()));
    ZI_RETURN_IF_ERROR(g->end.record(comm_));
    g->bytes = shard.partition_bytes * (shards_.num_ranks - 1);
    gathers_.push_back(g);
    stats_.allgather_bytes += g->bytes;
    return ready_[slot].record(comm_);
  }

  Status wait(int slot) override {
    ZI_ASSIGN_OR_RETURN(TimedSpan * span, new_span());
    ZI_RETURN_IF_ERROR(span->start.record(backend_.compute_stream()));
    ZI_RETURN_IF_ERROR(CudaStream::wait(backend_.compute_stream(), ready_[slot]));
    ZI_RETURN_IF_ERROR(span->end.record(backend_.compute_stream()));
    stalls_.push_back(span);
    return absl::OkStatus();
  }

  Status release(int slot) override { return released_[slot].record(backend_.compute_stream()); }

  // Spans still in flight (the next step's prefetch copies, issued at the end of this one) are counted by a later
  // call: waiting for them here would hold the host, and so the next step's launch, until they land.
  StreamStats take_stats() override {
    take_done(copies_, &stats_.copy_seconds);
    take_done(stalls_, &stats_.stall_seconds);
    take_done(gathers_, &stats_.allgather_seconds);
    return std::exchange(stats_, StreamStats{});
  }

 private:
  void take_done(std::vector<TimedSpan*>& spans, double* seconds) {
    std::vector<TimedSpan*> pending;
    for (TimedSpan* s : spans) {
      StatusOr<bool> done = s->end.query();
      if (done.ok() && !*done) {
        pending.push_back(s);
        continue;
      }
      auto ms = CudaEvent::elapsed_ms(s->start, s->end);
      if (ms.ok()) *seconds += *ms / 1e3;
      free_spans_.push_back(s);
    }
    spans.swap(pending);
  }

  StatusOr<TimedSpan*> new_span() {
    if (!free_spans_.empty()) {
      TimedSpan* s = free_spans_.back();
      free_spans_.pop_back();
      return s;
    }
    auto s = std::make_unique<TimedSpan>();
    ZI_ASSIGN_OR_RETURN(s->start, CudaEvent::create(backend_.device(), true));
    ZI_ASSIGN_OR_RETURN(s->end, CudaEvent::create(backend_.device(), true));
    spans_.push_back(std::move(s));
    return spans_.back().get();
  }

  // NVMe tier: reads the partition into the next of two pinned staging buffers (the other may still feed a copy)
  // and returns its index. The disk read blocks this thread: at ~1 GB/s it, not PCIe, sets the pace.
  StatusOr<int> read_into_staging(const StoreShard& shard) {
    if (staging_.empty()) {
      for (int i = 0; i < 2; ++i) {
        ZI_ASSIGN_OR_RETURN(PinnedHostBuffer b, PinnedHostBuffer::allocate(slot_bytes_));
        staging_.push_back(std::move(b));
        ZI_ASSIGN_OR_RETURN(CudaEvent e, CudaEvent::create(backend_.device()));
        staging_done_.push_back(std::move(e));
      }
      DirectReaderOptions ro;
      ro.block_size = opts_.aio_block_size;
      ro.queue_depth = opts_.aio_queue_depth;
      ZI_ASSIGN_OR_RETURN(reader_, DirectReader::Open(shards_.store->rank_file(shards_.rank), ro));
    }
    const StoreShard* s = shards_.store->find(shard.name);
    if (!s) return absl::DataLossError(absl::StrCat(shards_.store->dir(), ": the store has no shard ", shard.name));
    const int b = staging_next_;
    staging_next_ ^= 1;
    // The copy that last read this staging buffer must be complete before the disk overwrites it.
    ZI_RETURN_IF_ERROR(staging_done_[b].synchronize());
    void* buf = staging_[b].data();
    const auto t0 = std::chrono::steady_clock::now();
    // Each partition's checksum is verified on its first read: a damaged or foreign file is refused at the first
    // step that touches it, and later steps read at the disk's full rate.
    if (verified_.empty()) verified_.assign(shards_.layouts.size(), false);
    const size_t idx = static_cast<size_t>(&shard - shards_.layouts.data());
    const bool verify = opts_.verify_checksums && !verified_[idx];
    ZI_RETURN_IF_ERROR(shards_.store->read_partition(*s, shards_.rank, *reader_, buf, verify));
    verified_[idx] = true;
    stats_.nvme_read_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stats_.nvme_bytes += s->partition_bytes;
    return b;
  }

  CudaBackend& backend_;
  const HostShards& shards_;
  CudaTransportOptions opts_;
  CudaStream copy_;
  CudaStream comm_;  // NCCL all-gathers (N > 1)
  std::vector<void*> slots_;
  size_t slot_bytes_ = 0;
  std::vector<CudaEvent> ready_, released_, copied_;
  std::vector<std::unique_ptr<TimedSpan>> spans_;
  std::vector<TimedSpan*> free_spans_, copies_, stalls_, gathers_;
  std::vector<PinnedHostBuffer> staging_;
  std::vector<CudaEvent> staging_done_;
  int staging_next_ = 0;
  std::unique_ptr<DirectReader> reader_;
  std::vector<bool> verified_;  // [L] partition checksum already checked
  StreamStats stats_;
};

}  // namespace

StatusOr<std::unique_ptr<ShardTransport>> make_cuda_transport(CudaBackend& backend, const HostShards& shards,
                                                              const CudaTransportOptions& options) {
  backend.make_current();
  ZI_ASSIGN_OR_RETURN(CudaStream copy, CudaStream::create(backend.device(), /*high_priority=*/false));
  ZI_ASSIGN_OR_RETURN(CudaStream comm, CudaStream::create(backend.device(), /*high_priority=*/false));
  return std::unique_ptr<ShardTransport>(new CudaTransport(backend, shards, options, std::move(copy), std::move(comm)));
}

std::unique_ptr<HostAllocator> make_cuda_host_allocator(bool pinned) {
  if (!pinned) return make_aligned_host_allocator();
  return std::make_unique<PinnedAllocator>();
}

}  // namespace zi::cuda
