#include "engine/zero/streamed_parameters.h"

#include "engine/model/dummy_weights.h"
#include "engine/model/fused_weights.h"

#include <algorithm>

#include "engine/core/log.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"
#include "engine/zero/layer_pack.h"

namespace zi {

StreamedParameters::StreamedParameters(const ModelConfig& cfg, const Architecture& arch, GlobalWeights globals,
                                       std::vector<LayerWeights> resident, std::vector<LayerTier> tiers,
                                       std::shared_ptr<HostShards> shards, std::unique_ptr<ShardTransport> transport,
                                       uint32_t prefetch_depth, uint64_t parameter_count, std::string stored_dtype)
    : cfg_(cfg),
      arch_(arch),
      globals_(std::move(globals)),
      layers_(std::move(resident)),
      tiers_(std::move(tiers)),
      shards_(std::move(shards)),
      transport_(std::move(transport)),
      depth_(prefetch_depth),
      parameter_count_(parameter_count),
      stored_dtype_(std::move(stored_dtype)) {
  ZI_CHECK(layers_.size() == tiers_.size() && depth_ >= 1);
  streamed_index_.assign(tiers_.size(), -1);
  for (size_t l = 0; l < tiers_.size(); ++l)
    if (tiers_[l] != LayerTier::kGpu) {
      streamed_index_[l] = static_cast<int>(streamed_.size());
      streamed_.push_back(static_cast<int>(l));
    }
}

Status StreamedParameters::init() {
  if (streamed_.empty()) return absl::OkStatus();
  uint64_t slot_bytes = 0;
  for (int l : streamed_)
    slot_bytes = std::max(slot_bytes, shards_->layouts[l].partition_bytes * shards_->num_ranks);
  const size_t n_slots = std::min<size_t>(depth_, streamed_.size());
  for (size_t s = 0; s < n_slots; ++s) {
    ZI_ASSIGN_OR_RETURN(void* p, transport_->allocate_slot(slot_bytes));
    slots_.push_back(p);
  }
  slot_layer_.assign(n_slots, -1);
  slot_released_.assign(n_slots, true);
  ZI_LOG(INFO) << "streaming " << streamed_.size() << " of " << tiers_.size() << " layers through " << n_slots
               << " slots of " << format_bytes(slot_bytes);
  return absl::OkStatus();
}

// Starts the fetch of streamed layer `j` into its slot unless it is already there or on its way.
Status StreamedParameters::ensure_fetched(int j) {
  const int slot = j % static_cast<int>(slots_.size());
  if (slot_layer_[slot] == j) return absl::OkStatus();
  // The slot's current user must have been released: fetches never overtake the forward.
  if (!slot_released_[slot]) return absl::OkStatus();
  const int layer = streamed_[j];
  ZI_RETURN_IF_ERROR(transport_->fetch(layer, slot));
  slot_layer_[slot] = j;
  slot_released_[slot] = false;
  return absl::OkStatus();
}

StatusOr<const LayerWeights*> StreamedParameters::fetch(int layer) {
  ZI_CHECK(layer >= 0 && layer < num_layers());
  if (!deferred_error_.ok()) return std::exchange(deferred_error_, absl::OkStatus());
  const int j = streamed_index_[layer];
  if (j < 0) return &layers_[layer];
  const int slot = j % static_cast<int>(slots_.size());
  if (slot_layer_[slot] != j) {
    // Not prefetched (first step, or a forward that skipped hints): the slot must be free by now.
    slot_released_[slot] = true;
    ZI_RETURN_IF_ERROR(ensure_fetched(j));
  }
  slot_released_[slot] = false;  // in use until release(layer)
  // Keep depth − 1 more shards in flight behind this one.
  for (int k = 1; k < static_cast<int>(slots_.size()) && j + k < static_cast<int>(streamed_.size()); ++k)
    ZI_RETURN_IF_ERROR(ensure_fetched(j + k));
  ZI_RETURN_IF_ERROR(transport_->wait(slot));
  bind_layer_views(cfg_, arch_, layer, shards_->layouts[layer], slots_[slot], layers_[layer], shards_->quant);
  return &layers_[layer];
}

void StreamedParameters::prefetch(int layer) {
  const int j = streamed_index_[layer];
  if (j < 0 || !deferred_error_.ok()) return;
  Status s = ensure_fetched(j);
  if (!s.ok()) deferred_error_ = s;
}

void StreamedParameters::release(int layer) {
  const int j = streamed_index_[layer];
  if (j < 0) return;
  const int slot = j % static_cast<int>(slots_.size());
  Status s = transport_->release(slot);
  slot_released_[slot] = true;
  // When the ring holds every streamed shard, they stay put: only a slot that will be reused is refilled.
  const bool ring_holds_all = slots_.size() >= streamed_.size();
  if (s.ok() && !ring_holds_all && j + static_cast<int>(slots_.size()) >= static_cast<int>(streamed_.size())) {
    // No later layer of this step uses the slot: its next occupant is the next step's streamed layer `slot`
    // (slot(j) = j % depth), which does not depend on the step's tokens, so it can start now.
    s = ensure_fetched(slot);
  }
  if (!s.ok() && deferred_error_.ok()) deferred_error_ = s;
}

std::string StreamedParameters::layer_tier(int layer) const {
  return tiers_[layer] == LayerTier::kGpu ? "" : layer_tier_name(tiers_[layer]);
}

}  // namespace zi

#include <map>
#include <thread>

#include "engine/io/safetensors.h"

namespace zi {

StatusOr<std::unique_ptr<StreamedParameters>> load_streamed_parameters(
    Backend& backend, const ModelConfig& cfg, const Architecture& arch, const Checkpoint* checkpoint,
    uint64_t dummy_seed, const StreamingLoad& load, HostAllocator& host_alloc, const TransportFactory& make_transport) {
  const int L = static_cast<int>(cfg.num_layers);
  if (static_cast<int>(load.tiers.size()) != L)
    return absl::InvalidArgumentError(absl::StrCat("placement has ", load.tiers.size(), " layers, the model ", L));
  ZI_RETURN_IF_ERROR(check_host_tier_fits(cfg, arch, layer_shard_dtype(backend, cfg, arch, checkpoint), load));
  GlobalWeights globals;
  std::vector<LayerWeights> layers(L);
  std::vector<WeightSpec> resident_specs, all_specs;
  arch.global_weights(cfg, globals, resident_specs);
  mark_quantized_specs(globals, resident_specs, 0, load.quant);
  for (int l = 0; l < L; ++l) {
    LayerWeights scratch;
    const bool resident = load.tiers[l] == LayerTier::kGpu;
    const size_t begin = resident_specs.size();
    arch.layer_weights(cfg, l, resident ? layers[l] : scratch, resident ? resident_specs : all_specs);
    if (resident) mark_quantized_specs(layers[l], resident_specs, begin, load.quant);
  }
  std::string stored_dtype = cfg.dtype.empty() ? "float32" : cfg.dtype;
  if (checkpoint) {
    ZI_RETURN_IF_ERROR(load_weights(backend, *checkpoint, resident_specs));
    if (!resident_specs.empty())
      if (const TensorInfo* t = checkpoint->find(resident_specs.front().name))
        stored_dtype = std::string(dtype_torch_name(t->dtype));
  } else {
    upload_dummy_weights(backend, resident_specs, dummy_seed, layer_shard_dtype(backend, cfg, arch, nullptr),
                         load.load_threads);
  }
  if (cfg.tie_word_embeddings) {
    globals.lm_head.weight = globals.embed_tokens;
    ZI_RETURN_IF_ERROR(quantize_tied_lm_head(backend, globals, load.quant));
  }
  // GPU-tier layers stay put, so they take fused projections as fully resident models do; streamed ones are rebound
  // to their ring slot's views every step and keep the separate layout the shards hold.
  if (arch.fuse_projections)
    for (int l = 0; l < L; ++l)
      if (load.tiers[l] == LayerTier::kGpu) ZI_RETURN_IF_ERROR(fuse_layer_projections(backend, layers[l]));
  const uint64_t params = count_parameters(resident_specs) + count_parameters(all_specs);

  ZI_ASSIGN_OR_RETURN(std::shared_ptr<HostShards> shards,
                      load_host_shards(backend, cfg, arch, checkpoint, dummy_seed, load, host_alloc));
  shards->comm = load.comm;
  if (load.num_ranks > 1 && !load.comm)
    return absl::InvalidArgumentError(absl::StrCat("streaming over ", load.num_ranks, " ranks needs a communicator"));
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<ShardTransport> transport, make_transport(*shards));
  auto p = std::make_unique<StreamedParameters>(cfg, arch, std::move(globals), std::move(layers), load.tiers,
                                                std::move(shards), std::move(transport), load.prefetch_depth, params,
                                                stored_dtype);
  ZI_RETURN_IF_ERROR(p->init());
  return p;
}

}  // namespace zi
