// The KV cache: per layer, keys and values of every sequence slot, [S, C, nKV, D] each in the backend's activation
// dtype (S = slots = the most sequences a step may hold, C = max context). A sequence takes a slot for its life and
// gives it back on release. (A paged layout will replace the fixed slots; callers only see slots and layers.)
// Not thread-safe: owned and driven by the executor's thread.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "engine/backend/backend.h"

namespace zi {

struct KvCacheShape {
  int num_layers = 0;
  int slots = 0;        // sequences held at once
  int context = 0;      // tokens per sequence
  int n_kv_heads = 0;
  int head_dim = 0;
};

class KvCache {
 public:
  // Allocates every layer up front (on the CPU, pages are committed only when first written).
  KvCache(Backend& backend, const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }
  int max_context() const { return shape_.context; }
  int slots() const { return shape_.slots; }
  KvLayer& layer(int i) { return layers_.at(i); }

  // A free slot, or nullopt when all are taken.
  std::optional<int> acquire();
  void release(int slot);
  int free_slots() const { return static_cast<int>(free_.size()); }
  // Bytes held by the cache (all layers, K and V).
  uint64_t bytes() const { return bytes_; }

 private:
  KvCacheShape shape_;
  std::vector<KvLayer> layers_;
  std::vector<int> free_;   // free slots; the lowest is handed out first
  std::vector<bool> used_;
  uint64_t bytes_ = 0;
};

}  // namespace zi
