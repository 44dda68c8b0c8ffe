// A decoder layer's weights as one contiguous *layer shard*: every tensor in the dtype the backend computes with,
// at a 256-byte-aligned offset (the offload store's layout, OffloadStoreWriter::layout). Streaming moves shards
// as single copies; the forward sees them through LayerWeights views bound to wherever the shard sits.
//
// With quantization on, each linear weight the QuantConfig selects (engine/model/quantized_weights.h) is stored
// packed instead: three consecutive tensors, "<name>" U8 codes [out, row_bytes], "<name>.scales" and "<name>.mins"
// F16 [out, groups] (engine/quant/quantize.h), so PCIe carries the packed bytes. Norms and biases stay dense.
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

// The layout of layer `layer` (tensor order as the architecture lists them) with every dense tensor in `dtype` and
// the weights `quant` selects packed.
StoreShard layer_layout(const ModelConfig& cfg, const Architecture& arch, int layer, DType dtype,
                        uint32_t num_ranks, const QuantConfig& quant = {});

// Writes the layer's tensors from the checkpoint into `dst` (shard.bytes bytes), converting to each tensor's
// layout dtype and quantizing the packed ones with `quant` (the config the layout was made with). Shapes and
// dtypes are checked, NaN/Inf refused where quantized; errors name the file and the tensor.
Status pack_layer_from_checkpoint(const Checkpoint& checkpoint, const StoreShard& shard, void* dst,
                                  const QuantConfig& quant = {});

// Random weights for benchmarks (`--dummy`, engine/model/dummy_weights.h) packed as a layer shard. Packed weights
// are the quantization of the fp32 values. `shard` = layer_layout(cfg, arch, layer, ..., quant).
void pack_layer_dummy(const ModelConfig& cfg, const Architecture& arch, int layer, const StoreShard& shard,
                      uint64_t seed, void* dst, const QuantConfig& quant = {});

// Points `out`'s tensors at the shard's bytes at `base` (host or device memory); packed weights become kQuantized
// LinearWeights. The views do not own the memory: whoever owns `base` keeps it alive while `out` is in use.
void bind_layer_views(const ModelConfig& cfg, const Architecture& arch, int layer, const StoreShard& shard,
                      void* base, LayerWeights& out, const QuantConfig& quant = {});

}  // namespace zi
