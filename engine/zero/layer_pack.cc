#include "engine/zero/layer_pack.h"

#include "engine/model/dummy_weights.h"

#include <cstring>
#include <thread>

#include "engine/io/safetensors.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"

namespace zi {
namespace {

// The layer's specs, the linear weights `quant` selects marked (their destinations in `w`).
std::vector<WeightSpec> specs_of(const ModelConfig& cfg, const Architecture& arch, int layer, LayerWeights& w,
                                 const QuantConfig& quant) {
  std::vector<WeightSpec> specs;
  arch.layer_weights(cfg, layer, w, specs);
  mark_quantized_specs(w, specs, 0, quant);
  return specs;
}

// A quantized weight's three shard tensors: the codes under the checkpoint name, then its scales and minimums.
std::string scales_name(const std::string& weight) { return weight + ".scales"; }
std::string mins_name(const std::string& weight) { return weight + ".mins"; }

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
                        uint32_t num_ranks, const QuantConfig& quant) {
  LayerWeights scratch;
  std::vector<TensorBytes> tensors;
  for (const WeightSpec& s : specs_of(cfg, arch, layer, scratch, quant)) {
    uint64_t n = 1;
    for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
    if (s.quantized) {
      const int64_t out = s.shape[0], in = s.shape[1], groups = quant_groups(in, s.quant.group_size);
      const int64_t row_bytes = quant_row_bytes(in, s.quant.bits);
      const uint64_t group_bytes = static_cast<uint64_t>(out * groups) * sizeof(uint16_t);
      tensors.push_back({s.name, DType::kU8, {out, row_bytes}, nullptr, static_cast<uint64_t>(out * row_bytes)});
      tensors.push_back({scales_name(s.name), DType::kF16, {out, groups}, nullptr, group_bytes});
      tensors.push_back({mins_name(s.name), DType::kF16, {out, groups}, nullptr, group_bytes});
      continue;
    }
    tensors.push_back({s.name, dtype, s.shape, nullptr, n * dtype_size(dtype)});
  }
  return OffloadStoreWriter::layout(absl::StrCat("layer.", layer), tensors, num_ranks);
}

namespace {

// Quantizes checkpoint tensor `src` ([out, in] float) into the shard's codes / scales / minimums tensors.
Status pack_quantized(const TensorInfo& src, const StoreTensor& data, const StoreTensor& scales,
                      const StoreTensor& mins, const QuantParams& p, char* base) {
  const bool shapes_ok = src.shape.size() == 2 && src.shape[0] == data.shape[0] &&
                         quant_row_bytes(src.shape[1], p.bits) == data.shape[1] &&
                         scales.shape == std::vector<int64_t>{src.shape[0], quant_groups(src.shape[1], p.group_size)};
  if (!shapes_ok)
    return absl::InvalidArgumentError(absl::StrCat(src.file, ": tensor '", data.name, "' has an unexpected shape"));
  ZI_CHECK(mins.shape == scales.shape && scales.name == scales_name(data.name) && mins.name == mins_name(data.name));
  std::vector<float> values(static_cast<size_t>(src.numel()));
  convert_to_f32(src.dtype, src.data, values.data(), values.size());
  const Status s = quantize_rows(values.data(), src.shape[0], src.shape[1], p, data.name,
                                 reinterpret_cast<uint8_t*>(base + data.offset),
                                 reinterpret_cast<uint16_t*>(base + scales.offset),
                                 reinterpret_cast<uint16_t*>(base + mins.offset));
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(src.file, ": ", s.message()));
  return absl::OkStatus();
}

}  // namespace

Status pack_layer_from_checkpoint(const Checkpoint& checkpoint, const StoreShard& shard, void* dst,
                                  const QuantConfig& quant) {
  char* base = static_cast<char*>(dst);
  std::vector<float> tmp;
  for (size_t k = 0; k < shard.tensors.size(); ++k) {
    const StoreTensor& t = shard.tensors[k];
    ZI_ASSIGN_OR_RETURN(const TensorInfo* src, checkpoint.get(t.name));
    if (!is_float_weight_dtype(src->dtype))
      return absl::InvalidArgumentError(absl::StrCat(src->file, ": tensor '", t.name, "' has dtype ",
                                                     std::string(dtype_safetensors_name(src->dtype)),
                                                     "; expected F32, F16 or BF16"));
    if (t.dtype == DType::kU8) {  // a quantized weight: codes, then its scales and minimums
      ZI_CHECK(quant.enabled() && k + 2 < shard.tensors.size());
      ZI_RETURN_IF_ERROR(pack_quantized(*src, t, shard.tensors[k + 1], shard.tensors[k + 2], quant.params, base));
      k += 2;
      continue;
    }
    if (src->shape != t.shape)
      return absl::InvalidArgumentError(absl::StrCat(src->file, ": tensor '", t.name, "' has an unexpected shape"));
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

void pack_layer_dummy(const ModelConfig& cfg, const Architecture& arch, int layer, const StoreShard& shard,
                      uint64_t seed, void* dst, const QuantConfig& quant) {
  LayerWeights scratch;
  const std::vector<WeightSpec> specs = specs_of(cfg, arch, layer, scratch, quant);
  char* base = static_cast<char*>(dst);
  size_t k = 0;
  for (const WeightSpec& s : specs) {
    ZI_CHECK(k < shard.tensors.size() && shard.tensors[k].name == s.name);
    const StoreTensor& t = shard.tensors[k];
    if (s.quantized) {
      // Quantized dummy weights are the quantization of the fp32 dummy values (as upload_dummy_weights does),
      // generated and packed a block of rows at a time.
      pack_dummy_quantized(s, seed, reinterpret_cast<uint8_t*>(base + t.offset),
                           reinterpret_cast<uint16_t*>(base + shard.tensors[k + 1].offset),
                           reinterpret_cast<uint16_t*>(base + shard.tensors[k + 2].offset));
      k += 3;
      continue;
    }
    fill_dummy(t.name, s.init, seed, t.dtype, 0, t.nbytes / dtype_size(t.dtype), base + t.offset);
    ++k;
  }
  ZI_CHECK(k == shard.tensors.size());
}

void bind_layer_views(const ModelConfig& cfg, const Architecture& arch, int layer, const StoreShard& shard,
                      void* base, LayerWeights& out, const QuantConfig& quant) {
  out = LayerWeights{};
  std::vector<WeightSpec> specs = specs_of(cfg, arch, layer, out, quant);
  auto view = [&](const StoreTensor& t) { return Tensor(t.dtype, t.shape, static_cast<char*>(base) + t.offset, nullptr); };
  size_t k = 0;
  for (const WeightSpec& s : specs) {
    ZI_CHECK(k < shard.tensors.size() && s.name == shard.tensors[k].name);
    if (s.quantized) {
      ZI_CHECK(k + 2 < shard.tensors.size());
      set_quantized(*s.quantized, s.quant, s.shape[1], view(shard.tensors[k]), view(shard.tensors[k + 1]),
                    view(shard.tensors[k + 2]));
      k += 3;
      continue;
    }
    *s.slot = view(shard.tensors[k]);
    ++k;
  }
  ZI_CHECK(k == shard.tensors.size());
}

}  // namespace zi
