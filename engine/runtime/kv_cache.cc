#include "engine/runtime/kv_cache.h"

#include <algorithm>
#include <functional>

namespace zi {

KvCache::KvCache(Backend& backend, const KvCacheShape& shape) : shape_(shape) {
  ZI_CHECK(shape.num_layers >= 0 && shape.slots > 0 && shape.context > 0 && shape.n_kv_heads > 0 &&
           shape.head_dim > 0);
  const std::vector<int64_t> dims = {shape.slots, shape.context, shape.n_kv_heads, shape.head_dim};
  for (int l = 0; l < shape.num_layers; ++l) {
    KvLayer layer{backend.alloc(backend.activation_dtype(), dims), backend.alloc(backend.activation_dtype(), dims)};
    bytes_ += layer.k.nbytes() + layer.v.nbytes();
    layers_.push_back(std::move(layer));
  }
  used_.assign(shape.slots, false);
  for (int s = shape.slots - 1; s >= 0; --s) free_.push_back(s);  // back() is the lowest
}

std::optional<int> KvCache::acquire() {
  if (free_.empty()) return std::nullopt;
  const int s = free_.back();
  free_.pop_back();
  used_[s] = true;
  return s;
}

void KvCache::release(int slot) {
  ZI_CHECK(slot >= 0 && slot < shape_.slots && used_[slot]);
  used_[slot] = false;
  free_.push_back(slot);
  std::sort(free_.begin(), free_.end(), std::greater<int>());
}

}  // namespace zi
