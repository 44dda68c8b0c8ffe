// The paged KV cache: per layer, keys and values in fixed-size blocks, [NB, BS, nKV, D] each in the backend's
// activation dtype (NB = blocks, BS = tokens per block, 16 by default). A sequence holds a handle ("slot") and a block
// table — the blocks that hold its positions 0..BS-1, BS..2·BS-1, ... — that grows a block at a time as tokens are
// appended; releasing the sequence returns its blocks at once. Blocks of all layers share one table (block b is
// row b of every layer's tensors).
//
// With `host` (KV offload on a GPU backend) the tensors live in pinned host memory that the kernels read and write
// over the bus (Backend::alloc_kv).
//
// Not thread-safe: owned and driven by the executor's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "engine/backend/backend.h"

namespace zi {

struct KvCacheShape {
  int num_layers = 0;
  int slots = 0;        // sequences held at once (handles)
  int context = 0;      // most tokens one sequence may hold
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;  // tokens per block
  int64_t num_blocks = 0;  // 0 = enough for every slot's full context: slots × ceil(context / block_size)
  bool host = false;    // blocks in host memory the backend's kernels can reach (KV offload)
};

// Bytes one block takes over all layers (K and V).
uint64_t kv_block_bytes(int num_layers, int block_size, int n_kv_heads, int head_dim, size_t element_bytes);

class KvCache {
 public:
  // Allocates every layer up front (on the CPU, pages are committed only when first written). Use Create for a
  // Status instead of an abort when memory runs out.
  KvCache(Backend& backend, const KvCacheShape& shape);
  static StatusOr<std::unique_ptr<KvCache>> Create(Backend& backend, const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }
  int max_context() const { return shape_.context; }
  int slots() const { return shape_.slots; }
  int block_size() const { return shape_.block_size; }
  int64_t num_blocks() const { return shape_.num_blocks; }
  KvLayer& layer(int i) { return layers_.at(i); }

  // ---- sequences ----
  // A free handle (with an empty block table), or nullopt when all are taken.
  std::optional<int> acquire();
  // Returns the handle and every block it holds.
  void release(int slot);
  int free_slots() const { return static_cast<int>(free_.size()); }

  // ---- blocks ----
  // Blocks needed to hold `tokens` positions.
  int64_t blocks_for(int64_t tokens) const { return (tokens + shape_.block_size - 1) / shape_.block_size; }
  // Grows the slot's block table to hold `tokens` positions; RESOURCE_EXHAUSTED (nothing taken) when the free
  // blocks do not suffice.
  Status reserve(int slot, int64_t tokens);
  const std::vector<int32_t>& block_table(int slot) const { return tables_.at(slot); }
  int64_t free_blocks() const { return static_cast<int64_t>(free_blocks_.size()); }
  int64_t used_blocks() const { return shape_.num_blocks - free_blocks(); }
  // used / total blocks, in [0, 1].
  double usage_ratio() const {
    return shape_.num_blocks ? static_cast<double>(used_blocks()) / static_cast<double>(shape_.num_blocks) : 0.0;
  }

  // Bytes held by the cache (all layers, K and V).
  uint64_t bytes() const { return bytes_; }

 private:
  KvCache() = default;
  Status init(Backend& backend, const KvCacheShape& shape);

  KvCacheShape shape_;
  std::vector<KvLayer> layers_;
  std::vector<int> free_;   // free handles; the lowest is handed out first
  std::vector<bool> used_;
  std::vector<std::vector<int32_t>> tables_;  // per handle
  std::vector<int32_t> free_blocks_;          // a stack; back() is handed out next
  uint64_t bytes_ = 0;
};

}  // namespace zi
