#include "engine/model/kv_cache.h"

#include <algorithm>
#include <cstdio>
#include <functional>

namespace zi {

uint64_t kv_block_bytes(int num_layers, int block_size, int n_kv_heads, int head_dim, size_t element_bytes) {
  return 2ull * static_cast<uint64_t>(num_layers) * static_cast<uint64_t>(block_size) *
         static_cast<uint64_t>(n_kv_heads) * static_cast<uint64_t>(head_dim) * element_bytes;
}

KvCache::KvCache(Backend& backend, const KvCacheShape& shape) {
  const Status st = init(backend, shape);
  if (!st.ok()) std::fprintf(stderr, "zeroinfer: %s\n", std::string(st.message()).c_str());
  ZI_CHECK(st.ok());
}

StatusOr<std::unique_ptr<KvCache>> KvCache::Create(Backend& backend, const KvCacheShape& shape) {
  auto kv = std::unique_ptr<KvCache>(new KvCache());
  ZI_RETURN_IF_ERROR(kv->init(backend, shape));
  return kv;
}

Status KvCache::init(Backend& backend, const KvCacheShape& shape) {
  ZI_CHECK(shape.num_layers >= 0 && shape.slots > 0 && shape.context > 0 && shape.n_kv_heads > 0 &&
           shape.head_dim > 0 && shape.block_size > 0 && shape.num_blocks >= 0);
  shape_ = shape;
  if (shape_.num_blocks == 0)
    shape_.num_blocks = static_cast<int64_t>(shape.slots) * ((shape.context + shape.block_size - 1) / shape.block_size);
  if (shape_.num_blocks > INT32_MAX)
    return absl::InvalidArgumentError(absl::StrCat("KV cache of ", shape_.num_blocks, " blocks exceeds 2^31 - 1"));
  const std::vector<int64_t> dims = {shape_.num_blocks, shape.block_size, shape.n_kv_heads, shape.head_dim};
  const DType dt = backend.activation_dtype();
  for (int l = 0; l < shape.num_layers; ++l) {
    KvLayer layer;
    ZI_ASSIGN_OR_RETURN(layer.k, backend.alloc_kv(dt, dims, shape.host));
    ZI_ASSIGN_OR_RETURN(layer.v, backend.alloc_kv(dt, dims, shape.host));
    bytes_ += layer.k.nbytes() + layer.v.nbytes();
    layers_.push_back(std::move(layer));
  }
  used_.assign(shape.slots, false);
  tables_.assign(shape.slots, {});
  for (int s = shape.slots - 1; s >= 0; --s) free_.push_back(s);  // back() is the lowest
  free_blocks_.reserve(shape_.num_blocks);
  for (int64_t b = shape_.num_blocks - 1; b >= 0; --b) free_blocks_.push_back(static_cast<int32_t>(b));
  return absl::OkStatus();
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
  std::vector<int32_t>& table = tables_[slot];
  // Back in reverse, so that the sequence's first block is the next handed out (tables stay mostly ascending).
  for (auto it = table.rbegin(); it != table.rend(); ++it) free_blocks_.push_back(*it);
  table.clear();
  free_.push_back(slot);
  std::sort(free_.begin(), free_.end(), std::greater<int>());
}

Status KvCache::reserve(int slot, int64_t tokens) {
  ZI_CHECK(slot >= 0 && slot < shape_.slots && used_[slot] && tokens >= 0);
  if (tokens > shape_.context)
    return absl::OutOfRangeError(absl::StrCat("a sequence of ", tokens, " tokens exceeds max_context ",
                                              shape_.context));
  std::vector<int32_t>& table = tables_[slot];
  const int64_t need = blocks_for(tokens) - static_cast<int64_t>(table.size());
  if (need <= 0) return absl::OkStatus();
  if (need > free_blocks())
    return absl::ResourceExhaustedError(absl::StrCat("KV cache out of blocks: ", need, " more needed, ",
                                                     free_blocks(), " free of ", shape_.num_blocks, " (",
                                                     shape_.block_size, " tokens each)"));
  for (int64_t i = 0; i < need; ++i) {
    table.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return absl::OkStatus();
}

}  // namespace zi
