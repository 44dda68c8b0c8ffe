// The ZeRO-Inference parameter coordinator: a ParameterSource whose streamed layers live off the GPU (pinned CPU
// memory or an NVMe store) and pass through a ring of `prefetch_depth` slots on the device.
//
// Streamed layer j (j-th streamed layer in forward order) always uses slot j % depth. fetch(l) makes sure l's
// shard is INFLIGHT (fetching it now if no prefetch did), starts the next depth − 1 streamed layers (their slots
// were released by the layers before l), then has compute wait for l: AVAILABLE. release(l) marks the point after
// which the slot may be overwritten; when the last streamed layer is released, the first ones of the next step are
// prefetched at once, so the copy engine works through the step boundary (sampling, scheduling). When every
// streamed layer fits the ring, shards stay in their slots across steps and are fetched once.
//
// The ShardTransport moves bytes (CUDA: copy stream + events, NCCL all-gather for N ranks; host: memcpy or
// direct reads, which lets CPU tests check the protocol). Not thread-safe: the executor's thread drives it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/io/offload_store.h"
#include "engine/model/weights.h"
#include "engine/zero/placement.h"

namespace zi {

struct Architecture;
class Checkpoint;
class DirectReader;
class Communicator;

// Memory for host copies of streamed partitions: pinned (CUDA) or plain aligned memory.
struct HostBlock {
  void* data = nullptr;
  std::shared_ptr<void> owner;
};
class HostAllocator {
 public:
  virtual ~HostAllocator() = default;
  // 4 KiB-aligned; errors name the size and what to change.
  virtual StatusOr<HostBlock> allocate(size_t bytes) = 0;
};
std::unique_ptr<HostAllocator> make_aligned_host_allocator();

// Where this rank's partitions of the streamed layers come from.
struct HostShards {
  std::vector<StoreShard> layouts;        // [L] every layer's layout (resident ones too)
  std::vector<HostBlock> partitions;      // [L] CPU tier: this rank's partition (partition_bytes), else empty
  std::unique_ptr<OffloadStore> store;    // NVMe tier
  uint32_t rank = 0, num_ranks = 1;
  QuantConfig quant;                      // what the layouts' packed weights were made with
  Communicator* comm = nullptr;           // num_ranks > 1: gathers the other ranks' partitions (not owned)
};

class ShardTransport {
 public:
  virtual ~ShardTransport() = default;
  // Device memory for one slot (every rank's partitions: partition_bytes × N of the largest streamed shard).
  virtual StatusOr<void*> allocate_slot(size_t bytes) = 0;
  // Starts bringing streamed `layer` into `slot` (this rank's partition at rank × partition_bytes, then the
  // others' by all-gather), ordered after the slot's last release. Asynchronous where the device allows.
  virtual Status fetch(int layer, int slot) = 0;
  // Compute enqueued after this waits until `slot`'s last fetch completed.
  virtual Status wait(int slot) = 0;
  // Compute enqueued before this is the last use of `slot`'s current contents.
  virtual Status release(int slot) = 0;
  // Figures since the last call (may wait for recorded timing events).
  virtual StreamStats take_stats() = 0;
};

// Host transport: slots in host memory, fetch = memcpy (CPU tier) or a direct read from the store (NVMe tier).
// Used by the CPU backend and by tests of the protocol.
std::unique_ptr<ShardTransport> make_host_transport(const HostShards& shards, bool verify_checksums);

// Resident globals and layers, the streamed ones through `transport`.
class StreamedParameters final : public ParameterSource {
 public:
  StreamedParameters(const ModelConfig& cfg, const Architecture& arch, GlobalWeights globals,
                     std::vector<LayerWeights> resident, std::vector<LayerTier> tiers,
                     std::shared_ptr<HostShards> shards, std::unique_ptr<ShardTransport> transport,
                     uint32_t prefetch_depth, uint64_t parameter_count, std::string stored_dtype);
  // Allocates the slots; call once before the first fetch.
  Status init();

  int num_layers() const override { return static_cast<int>(tiers_.size()); }
  const GlobalWeights& globals() const override { return globals_; }
  StatusOr<const LayerWeights*> fetch(int layer) override;
  void prefetch(int layer) override;
  void release(int layer) override;
  uint64_t parameter_count() const override { return parameter_count_; }
  std::string stored_dtype() const override { return stored_dtype_; }

  const std::vector<LayerTier>& tiers() const { return tiers_; }
  std::string layer_tier(int layer) const override;
  uint32_t prefetch_depth() const override { return static_cast<uint32_t>(slots_.size()); }
  StreamStats take_stream_stats() override { return transport_->take_stats(); }

 private:
  Status ensure_fetched(int streamed_index);

  ModelConfig cfg_;
  const Architecture& arch_;
  GlobalWeights globals_;
  std::vector<LayerWeights> layers_;    // [L]: resident weights, or the views of the slot a layer last used
  std::vector<LayerTier> tiers_;
  std::vector<int> streamed_;           // forward order of the streamed layers
  std::vector<int> streamed_index_;     // [L] → index in streamed_, −1 when resident
  std::shared_ptr<HostShards> shards_;
  std::unique_ptr<ShardTransport> transport_;
  uint32_t depth_;
  std::vector<void*> slots_;
  std::vector<int> slot_layer_;         // streamed index whose bytes are (or are being) put in the slot; −1 none
  std::vector<bool> slot_released_;     // the slot's current user is done (its next fetch may start)
  Status deferred_error_;               // a prefetch failure, reported by the next fetch
  uint64_t parameter_count_;
  std::string stored_dtype_;
};

// Loads a model with the given placement: globals and GPU-tier layers onto `backend` (as load_resident_parameters
// does), the CPU tier into host partitions from `host_alloc` (filled in parallel), the NVMe tier from the store at
// `store_dir` (built there first when absent). `checkpoint` null = dummy weights from `dummy_seed`.
struct StreamingLoad {
  std::vector<LayerTier> tiers;
  uint32_t prefetch_depth = 2;
  uint32_t rank = 0, num_ranks = 1;
  std::string store_dir;
  bool verify_checksums = true;
  int load_threads = 0;   // 0 = hardware concurrency
  Communicator* comm = nullptr;  // num_ranks > 1 (outlives the parameters)
  QuantConfig quant;      // resident and streamed linear weights quantized (the store's identity carries it)
};
StatusOr<std::shared_ptr<HostShards>> load_host_shards(Backend& backend, const ModelConfig& cfg,
                                                       const Architecture& arch, const Checkpoint* checkpoint,
                                                       uint64_t dummy_seed, const StreamingLoad& load,
                                                       HostAllocator& host_alloc);

// Refuses (needed, available and what to change) when this rank's CPU-tier partitions exceed the host's available
// memory. load_streamed_parameters calls it before loading anything.
Status check_host_tier_fits(const ModelConfig& cfg, const Architecture& arch, DType dtype, const StreamingLoad& load);

// The dtype layer shards hold on `backend`: what it stores weights in for the checkpoint's (or, for dummy
// weights, config.json's) dtype.
DType layer_shard_dtype(Backend& backend, const ModelConfig& cfg, const Architecture& arch,
                        const Checkpoint* checkpoint);
// The identity a store for this model must carry (config digest, dtype, ranks, quantization bits and group size).
StatusOr<StoreIdentity> model_store_identity(const ModelConfig& cfg, DType shard_dtype, uint32_t num_ranks,
                                             const QuantConfig& quant = {});
// Writes every layer of the model (checkpoint, or dummy weights from `dummy_seed`) as an offload store at `dir`
// (linear weights quantized as id.quant_bits / id.quant_group_size say), with progress lines. `zeroinfer convert` and the NVMe tier's first load use it.
Status write_offload_store(const ModelConfig& cfg, const Architecture& arch, const Checkpoint* checkpoint,
                           uint64_t dummy_seed, DType shard_dtype, const StoreIdentity& id, const std::string& dir);

// Everything together: resident globals and GPU-tier layers on `backend`, host shards for the rest, and a
// StreamedParameters over the transport `make_transport` builds for those shards (its slots allocated).
using TransportFactory = std::function<StatusOr<std::unique_ptr<ShardTransport>>(const HostShards&)>;
StatusOr<std::unique_ptr<StreamedParameters>> load_streamed_parameters(
    Backend& backend, const ModelConfig& cfg, const Architecture& arch, const Checkpoint* checkpoint,
    uint64_t dummy_seed, const StreamingLoad& load, HostAllocator& host_alloc, const TransportFactory& make_transport);

}  // namespace zi
