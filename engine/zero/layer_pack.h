// A decoder layer's weights as one contiguous *layer shard*: every tensor in the dtype the backend computes with,
// at a 256-byte-aligned offset (the offload store's layout, OffloadStoreWriter::layout). Streaming moves shards
// as single copies; the forward sees them through LayerWeights views bound to wherever the shard sits.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/status.h"
#include "engine/io/offload_store.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"

namespace zi {

class Checkpoint;
struct Architecture;

// The layout of layer `layer` (tensor order as the architecture lists them) with every tensor in `dtype`.
StoreShard layer_layout(const ModelConfig& cfg, const Architecture& arch, int layer, DType dtype,
                        uint32_t num_ranks);

// Writes the layer's tensors from the checkpoint into `dst` (shard.bytes bytes), converting to each tensor's
// layout dtype. Shapes and dtypes are checked; errors name the file and the tensor.
Status pack_layer_from_checkpoint(const Checkpoint& checkpoint, const StoreShard& shard, void* dst);

// Random weights for benchmarks (`--dummy`): uniform with std 0.02 for matrices, ones for norms, zeros for biases,
// from a counter-based generator (seed, tensor name, index): deterministic and parallel. `init` per tensor in the
// layout's order (from the architecture's WeightSpecs).
void pack_layer_dummy(const StoreShard& shard, const std::vector<WeightInit>& init, uint64_t seed, void* dst);
std::vector<WeightInit> layer_inits(const ModelConfig& cfg, const Architecture& arch, int layer);

// The same random weights for tensors that stay resident: generated on `threads` threads in `dtype` and uploaded
// (seconds for a 7B model, where a per-element normal generator takes minutes).
void upload_dummy_weights(Backend& backend, std::vector<WeightSpec>& specs, uint64_t seed, DType dtype,
                          int threads);

// Points `out`'s tensors at the shard's bytes at `base` (host or device memory). The views do not own the
// memory: whoever owns `base` keeps it alive while `out` is in use.
void bind_layer_views(const ModelConfig& cfg, const Architecture& arch, int layer, const StoreShard& shard,
                      void* base, LayerWeights& out);

}  // namespace zi
