#include "engine/model/fused_weights.h"

#include <vector>

namespace zi {

namespace {

// Whether `a` and `b` can be rows of one weight: same format, input width, element layout and bias presence.
bool compatible(const LinearWeight& a, const LinearWeight& b) {
  if (a.format != b.format || a.in_features() != b.in_features()) return false;
  if (a.bias.defined() != b.bias.defined()) return false;
  if (a.bias.defined() && a.bias.dtype() != b.bias.dtype()) return false;
  if (a.format == WeightFormat::kDense) return a.weight.dtype() == b.weight.dtype();
  return a.bits == b.bits && a.group_size == b.group_size && a.qdata.dtype() == b.qdata.dtype() &&
         a.scales.dtype() == b.scales.dtype() && a.mins.dtype() == b.mins.dtype();
}

StatusOr<Tensor> concat(Backend& backend, const std::vector<const LinearWeight*>& parts, Tensor LinearWeight::*field) {
  std::vector<Tensor> tensors;
  for (const LinearWeight* p : parts) tensors.push_back(p->*field);
  return backend.concat_rows(tensors);
}

}  // namespace

StatusOr<LinearWeight> concat_linear_rows(Backend& backend, const std::vector<const LinearWeight*>& parts) {
  if (parts.empty()) return LinearWeight();
  for (const LinearWeight* p : parts)
    if (!p->defined() || !compatible(*parts[0], *p)) return LinearWeight();
  const LinearWeight& first = *parts[0];
  LinearWeight out;
  out.format = first.format;
  if (first.format == WeightFormat::kDense) {
    ZI_ASSIGN_OR_RETURN(out.weight, concat(backend, parts, &LinearWeight::weight));
  } else {
    ZI_ASSIGN_OR_RETURN(out.qdata, concat(backend, parts, &LinearWeight::qdata));
    ZI_ASSIGN_OR_RETURN(out.scales, concat(backend, parts, &LinearWeight::scales));
    ZI_ASSIGN_OR_RETURN(out.mins, concat(backend, parts, &LinearWeight::mins));
    out.bits = first.bits;
    out.group_size = first.group_size;
    out.quant_in_features = first.quant_in_features;
  }
  if (first.bias.defined()) {
    ZI_ASSIGN_OR_RETURN(out.bias, concat(backend, parts, &LinearWeight::bias));
  }
  return out;
}

Status fuse_layer_projections(Backend& backend, LayerWeights& w) {
  // Each group: the separate weights in the fused layout's row order, and where the fused weight goes.
  const std::pair<std::vector<LinearWeight*>, LinearWeight*> groups[] = {
      {{&w.q_proj, &w.k_proj, &w.v_proj}, &w.qkv_fused},
      {{&w.gate_proj, &w.up_proj}, &w.gate_up_fused},
  };
  for (const auto& [separate, fused] : groups) {
    if (fused->defined()) continue;
    const std::vector<const LinearWeight*> parts(separate.begin(), separate.end());
    ZI_ASSIGN_OR_RETURN(LinearWeight f, concat_linear_rows(backend, parts));
    if (!f.defined()) continue;
    *fused = std::move(f);
    for (LinearWeight* s : separate) *s = LinearWeight();  // the last handles: the memory goes back
  }
  return absl::OkStatus();
}

}  // namespace zi
