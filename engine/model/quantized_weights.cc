#include "engine/model/quantized_weights.h"

#include <cstring>

namespace zi {

StatusOr<QuantConfig> make_quant_config(uint32_t bits, uint32_t group_size, bool embeddings) {
  QuantConfig q;
  q.params.bits = static_cast<int>(std::min<uint32_t>(bits, 1u << 30));
  q.params.group_size = group_size;
  q.embeddings = embeddings;
  ZI_RETURN_IF_ERROR(check_quant_params(q.params));
  return q;
}

std::vector<LinearWeight*> linear_weights(LayerWeights& w) {
  return {&w.q_proj,    &w.k_proj,    &w.v_proj,    &w.qkv_proj,  &w.o_proj,
          &w.gate_proj, &w.up_proj,   &w.down_proj, &w.qkv_fused, &w.gate_up_fused};
}

void mark_quantized_specs(LayerWeights& w, std::vector<WeightSpec>& specs, size_t begin, const QuantConfig& q) {
  if (!q.enabled()) return;
  const std::vector<LinearWeight*> linears = linear_weights(w);
  for (size_t i = begin; i < specs.size(); ++i)
    for (LinearWeight* lw : linears)
      if (specs[i].slot == &lw->weight && specs[i].shape.size() == 2) {
        specs[i].quantized = lw;
        specs[i].quant = q.params;
      }
}

void mark_quantized_specs(GlobalWeights& g, std::vector<WeightSpec>& specs, size_t begin, const QuantConfig& q) {
  if (!q.enabled() || !q.embeddings) return;
  for (size_t i = begin; i < specs.size(); ++i)
    if (specs[i].slot == &g.lm_head.weight && specs[i].shape.size() == 2) {
      specs[i].quantized = &g.lm_head;
      specs[i].quant = q.params;
    }
}

void set_quantized(LinearWeight& lw, const QuantParams& p, int64_t in_features, Tensor data, Tensor scales,
                   Tensor mins) {
  ZI_CHECK(p.enabled() && data.dtype() == DType::kU8 && data.rank() == 2);
  ZI_CHECK(data.dim(1) == quant_row_bytes(in_features, p.bits));
  const std::vector<int64_t> gshape = {data.dim(0), quant_groups(in_features, p.group_size)};
  ZI_CHECK(scales.dtype() == DType::kF16 && scales.shape() == gshape);
  ZI_CHECK(mins.dtype() == DType::kF16 && mins.shape() == gshape);
  lw.format = WeightFormat::kQuantized;
  lw.weight = Tensor();
  lw.qdata = std::move(data);
  lw.scales = std::move(scales);
  lw.mins = std::move(mins);
  lw.bits = p.bits;
  lw.group_size = static_cast<int32_t>(p.group_size);
  lw.quant_in_features = in_features;
}

Status upload_quantized(Backend& backend, const WeightSpec& spec, const float* values, const std::string& where) {
  ZI_CHECK(spec.quantized != nullptr && spec.shape.size() == 2);
  const int64_t out = spec.shape[0], in = spec.shape[1];
  auto q = quantize_matrix(values, out, in, spec.quant, spec.name);
  if (!q.ok())
    return absl::Status(q.status().code(), where.empty() ? std::string(q.status().message())
                                                         : absl::StrCat(where, ": ", q.status().message()));
  const int64_t groups = quant_groups(in, spec.quant.group_size);
  set_quantized(*spec.quantized, spec.quant, in,
                backend.from_host(DType::kU8, {out, quant_row_bytes(in, spec.quant.bits)}, q->data.data()),
                backend.from_host(DType::kF16, {out, groups}, q->scales.data()),
                backend.from_host(DType::kF16, {out, groups}, q->mins.data()));
  return absl::OkStatus();
}

Status quantize_tied_lm_head(Backend& backend, GlobalWeights& g, const QuantConfig& q) {
  if (!q.enabled() || !q.embeddings || g.lm_head.format != WeightFormat::kDense || !g.lm_head.weight.defined())
    return absl::OkStatus();
  const std::vector<float> host = backend.to_host_f32(g.lm_head.weight);
  WeightSpec spec;
  spec.name = "lm_head.weight (tied to model.embed_tokens.weight)";
  spec.shape = g.lm_head.weight.shape();
  spec.quantized = &g.lm_head;
  spec.quant = q.params;
  return upload_quantized(backend, spec, host.data(), "");
}

QuantView host_quant_view(const LinearWeight& lw) {
  ZI_CHECK(lw.format == WeightFormat::kQuantized);
  QuantView v;
  v.data = lw.qdata.data_as<const uint8_t>();
  v.scales = lw.scales.data_as<const uint16_t>();
  v.mins = lw.mins.data_as<const uint16_t>();
  v.rows = lw.qdata.dim(0);
  v.cols = lw.quant_in_features;
  v.params = {lw.bits, lw.group_size};
  return v;
}

LinearWeight dequantized_copy(Backend& backend, const LinearWeight& lw) {
  if (lw.format != WeightFormat::kQuantized) return lw;
  // Bring the packed tensors to the host (they may live on a device), dequantize there, upload as fp32.
  std::vector<uint8_t> data(lw.qdata.nbytes());
  std::vector<uint16_t> scales(static_cast<size_t>(lw.scales.numel())), mins(scales.size());
  backend.copy_to_host(lw.qdata, data.data());
  backend.copy_to_host(lw.scales, scales.data());
  backend.copy_to_host(lw.mins, mins.data());
  QuantView v;
  v.data = data.data();
  v.scales = scales.data();
  v.mins = mins.data();
  v.rows = lw.qdata.dim(0);
  v.cols = lw.quant_in_features;
  v.params = {lw.bits, lw.group_size};
  std::vector<float> dense(static_cast<size_t>(v.rows * v.cols));
  dequantize_rows(v, 0, v.rows, dense.data());
  LinearWeight out;
  out.weight = backend.upload_weight(DType::kF32, {v.rows, v.cols}, dense.data());
  out.bias = lw.bias;
  return out;
}

LayerWeights dequantized_layer(Backend& backend, const LayerWeights& w) {
  LayerWeights out = w;
  for (LinearWeight* lw : linear_weights(out)) *lw = dequantized_copy(backend, *lw);
  return out;
}

}  // namespace zi
