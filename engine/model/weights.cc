#include "engine/model/weights.h"

#include "engine/core/compute_dtype.h"
#include "engine/model/dummy_weights.h"
#include "engine/model/fused_weights.h"

#include <cmath>
#include <map>

#include "engine/core/log.h"
#include "engine/io/safetensors.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"

namespace zi {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) absl::StrAppend(&out, i ? ", " : "", s[i]);
  return out + "]";
}

}  // namespace

Status load_weights(Backend& backend, const Checkpoint& checkpoint, std::vector<WeightSpec>& specs) {
  std::vector<float> host;
  for (WeightSpec& spec : specs) {
    ZI_ASSIGN_OR_RETURN(const TensorInfo* t, checkpoint.get(spec.name));
    if (t->shape != spec.shape)
      return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor '", spec.name, "' has shape ",
                                                     shape_str(t->shape), " but config.json implies ",
                                                     shape_str(spec.shape)));
    if (!is_float_weight_dtype(t->dtype))
      return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor '", spec.name, "' has dtype ",
                                                     std::string(dtype_safetensors_name(t->dtype)),
                                                     "; expected F32, F16 or BF16"));
    if (spec.quantized) {
      // Quantized at load: the exact fp32 values of the checkpoint's numbers go to the host quantizer.
      host.resize(static_cast<size_t>(t->numel()));
      convert_to_f32(t->dtype, t->data, host.data(), host.size());
      ZI_RETURN_IF_ERROR(upload_quantized(backend, spec, host.data(), t->file));
      continue;
    }
    *spec.slot = backend.upload_weight(t->dtype, spec.shape, t->data);
  }
  return absl::OkStatus();
}

uint64_t count_parameters(const std::vector<WeightSpec>& specs) {
  uint64_t total = 0;
  for (const WeightSpec& s : specs) {
    uint64_t n = 1;
    for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
    total += n;
  }
  return total;
}

namespace {

class ResidentParameters final : public ParameterSource {
 public:
  int num_layers() const override { return static_cast<int>(layers_.size()); }
  const GlobalWeights& globals() const override { return globals_; }
  StatusOr<const LayerWeights*> fetch(int layer) override {
    ZI_CHECK(layer >= 0 && layer < num_layers());
    return &layers_[layer];
  }
  uint64_t parameter_count() const override { return parameter_count_; }
  std::string stored_dtype() const override { return stored_dtype_; }

  GlobalWeights globals_;
  std::vector<LayerWeights> layers_;
  uint64_t parameter_count_ = 0;
  std::string stored_dtype_;
};

}  // namespace

StatusOr<std::unique_ptr<ParameterSource>> load_resident_parameters(Backend& backend, const ModelConfig& config,
                                                                     const Architecture& arch,
                                                                     const Checkpoint* checkpoint,
                                                                     uint64_t dummy_seed, const QuantConfig& quant) {
  auto params = std::make_unique<ResidentParameters>();
  params->layers_.resize(static_cast<size_t>(config.num_layers));
  std::vector<WeightSpec> specs;
  arch.global_weights(config, params->globals_, specs);
  mark_quantized_specs(params->globals_, specs, 0, quant);
  for (int i = 0; i < config.num_layers; ++i) {
    const size_t begin = specs.size();
    arch.layer_weights(config, i, params->layers_[i], specs);
    mark_quantized_specs(params->layers_[i], specs, begin, quant);
  }
  if (checkpoint) {
    ZI_RETURN_IF_ERROR(load_weights(backend, *checkpoint, specs));
    // The checkpoint's dtype: the one holding most parameters.
    std::map<DType, uint64_t> bytes;
    for (const WeightSpec& s : specs) {
      const TensorInfo* t = checkpoint->find(s.name);
      bytes[t->dtype] += t->nbytes;
    }
    DType best = DType::kF32;
    uint64_t most = 0;
    for (auto [d, b] : bytes)
      if (b > most) best = d, most = b;
    params->stored_dtype_ = std::string(dtype_torch_name(best));
  } else {
    // Every core generates, one tensor at a time, in the dtype the backend keeps (no fp32 copy of the model).
    upload_dummy_weights(backend, specs, dummy_seed, backend.weight_dtype(config_dtype(config.dtype)));
    params->stored_dtype_ = config.dtype.empty() ? "float32" : config.dtype;
  }
  if (config.tie_word_embeddings) {
    params->globals_.lm_head.weight = params->globals_.embed_tokens;
    ZI_RETURN_IF_ERROR(quantize_tied_lm_head(backend, params->globals_, quant));
  }
  if (arch.fuse_projections)
    for (LayerWeights& w : params->layers_) ZI_RETURN_IF_ERROR(fuse_layer_projections(backend, w));
  params->parameter_count_ = count_parameters(specs);
  ZI_LOG(DEBUG) << "loaded " << specs.size() << " tensors, " << params->parameter_count_ << " parameters";
  return std::unique_ptr<ParameterSource>(std::move(params));
}

}  // namespace zi

namespace zi {

Status walk_layers(ParameterSource& params) {
  const int L = params.num_layers();
  if (L == 0) return absl::OkStatus();
  params.prefetch(0);
  for (int l = 0; l < L; ++l) {
    ZI_ASSIGN_OR_RETURN(const LayerWeights* w, params.fetch(l));
    (void)w;
    if (l + 1 < L) params.prefetch(l + 1);
    params.release(l);
  }
  return absl::OkStatus();
}

}  // namespace zi
