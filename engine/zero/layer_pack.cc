#include "engine/zero/layer_pack.h"

#include <cstring>
#include <thread>

#include "engine/io/safetensors.h"
#include "engine/model/registry.h"

namespace zi {
namespace {

std::vector<WeightSpec> specs_of(const ModelConfig& cfg, const Architecture& arch, int layer, LayerWeights& w) {
  std::vector<WeightSpec> specs;
  arch.layer_weights(cfg, layer, w, specs);
  return specs;
}

uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

void store_f32(DType dtype, float v, void* dst) {
  switch (dtype) {
    case DType::kF32: std::memcpy(dst, &v, 4); break;
    case DType::kBF16: { uint16_t h = f32_to_bf16(v); std::memcpy(dst, &h, 2); break; }
    case DType::kF16: { uint16_t h = f32_to_f16(v); std::memcpy(dst, &h, 2); break; }
    default: ZI_CHECK(false && "layer shards hold float tensors");
  }
}

}  // namespace

StoreShard layer_layout(const ModelConfig& cfg, const Architecture& arch, int layer, DType dtype,
                        uint32_t num_ranks) {
  LayerWeights scratch;
  std::vector<TensorBytes> tensors;
  for (const WeightSpec& s : specs_of(cfg, arch, layer, scratch)) {
    uint64_t n = 1;
    for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
    tensors.push_back({s.name, dtype, s.shape, nullptr, n * dtype_size(dtype)});
  }
  return OffloadStoreWriter::layout(absl::StrCat("layer.", layer), tensors, num_ranks);
}

std::vector<WeightInit> layer_inits(const ModelConfig& cfg, const Architecture& arch, int layer) {
  LayerWeights scratch;
  std::vector<WeightInit> out;
  for (const WeightSpec& s : specs_of(cfg, arch, layer, scratch)) out.push_back(s.init);
  return out;
}

Status pack_layer_from_checkpoint(const Checkpoint& checkpoint, const StoreShard& shard, void* dst) {
  char* base = static_cast<char*>(dst);
  std::vector<float> tmp;
  for (const StoreTensor& t : shard.tensors) {
    ZI_ASSIGN_OR_RETURN(const TensorInfo* src, checkpoint.get(t.name));
    if (src->shape != t.shape)
      return absl::InvalidArgumentError(absl::StrCat(src->file, ": tensor '", t.name, "' has an unexpected shape"));
    if (!is_float_weight_dtype(src->dtype))
      return absl::InvalidArgumentError(absl::StrCat(src->file, ": tensor '", t.name, "' has dtype ",
                                                     std::string(dtype_safetensors_name(src->dtype)),
                                                     "; expected F32, F16 or BF16"));
    const size_t n = static_cast<size_t>(src->numel());
    if (src->dtype == t.dtype) {
      std::memcpy(base + t.offset, src->data, t.nbytes);
      continue;
    }
    tmp.resize(n);
    convert_to_f32(src->dtype, src->data, tmp.data(), n);
    const size_t es = dtype_size(t.dtype);
    for (size_t i = 0; i < n; ++i) store_f32(t.dtype, tmp[i], base + t.offset + i * es);
  }
  return absl::OkStatus();
}

namespace {

// Elements [begin, end) of one dummy tensor.
void fill_dummy(const std::string& name, WeightInit init, uint64_t seed, DType dtype, size_t begin, size_t end,
                char* out) {
  const size_t es = dtype_size(dtype);
  if (init != WeightInit::kNormal) {
    const float v = init == WeightInit::kOnes ? 1.0f : 0.0f;
    for (size_t i = begin; i < end; ++i) store_f32(dtype, v, out + i * es);
    return;
  }
  // Uniform on (−a, a) has std a/√3: a = 0.02·√3 matches transformers' normal(0, 0.02) in scale.
  const float a = 0.02f * 1.7320508f;
  const uint64_t key = seed ^ name_hash(name);
  for (size_t i = begin; i < end; ++i) {
    const uint64_t r = mix(key + 0x9e3779b97f4a7c15ull * (i + 1));
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    store_f32(dtype, (2.0f * u - 1.0f) * a, out + i * es);
  }
}

}  // namespace

void pack_layer_dummy(const StoreShard& shard, const std::vector<WeightInit>& init, uint64_t seed, void* dst) {
  ZI_CHECK(init.size() == shard.tensors.size());
  char* base = static_cast<char*>(dst);
  for (size_t k = 0; k < shard.tensors.size(); ++k) {
    const StoreTensor& t = shard.tensors[k];
    fill_dummy(t.name, init[k], seed, t.dtype, 0, t.nbytes / dtype_size(t.dtype), base + t.offset);
  }
}

void upload_dummy_weights(Backend& backend, std::vector<WeightSpec>& specs, uint64_t seed, DType dtype,
                          int threads) {
  std::vector<char> host;
  for (WeightSpec& s : specs) {
    size_t n = 1;
    for (int64_t d : s.shape) n *= static_cast<size_t>(d);
    host.resize(n * dtype_size(dtype));
    const int t = std::max(1, std::min<int>(threads, static_cast<int>(n / 65536) + 1));
    std::vector<std::thread> pool;
    for (int k = 0; k < t; ++k)
      pool.emplace_back([&, k] { fill_dummy(s.name, s.init, seed, dtype, n * k / t, n * (k + 1) / t, host.data()); });
    for (auto& th : pool) th.join();
    *s.slot = backend.upload_weight(dtype, s.shape, host.data());
  }
}


void bind_layer_views(const ModelConfig& cfg, const Architecture& arch, int layer, const StoreShard& shard,
                      void* base, LayerWeights& out) {
  out = LayerWeights{};
  std::vector<WeightSpec> specs = specs_of(cfg, arch, layer, out);
  ZI_CHECK(specs.size() == shard.tensors.size());
  for (size_t k = 0; k < specs.size(); ++k) {
    const StoreTensor& t = shard.tensors[k];
    ZI_CHECK(specs[k].name == t.name);
    *specs[k].slot = Tensor(t.dtype, t.shape, static_cast<char*>(base) + t.offset, nullptr);
  }
}

}  // namespace zi
